//! `rotate status`: each account's current token (by fingerprint), its age
//! against its rotation period, its due date, and its open and last
//! rotations — computed once here for the command, the compliance report
//! and the dashboard.

use jiff::{SignedDuration, Timestamp};
use secrets::{Label, SecretStore, StoreError};
use serde::Serialize;
use warden_config::AccountSection;

use super::Rotation;

/// One account's token as the store and the rotation journals show it.
#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    /// The `[[account]]`.
    pub account: String,
    /// Its study.
    pub study: String,
    /// Its site, for a site account.
    pub site: Option<String>,
    /// The secret holding its token.
    pub secret: String,
    /// The `fp1:…` fingerprint of the current token (never its value).
    pub fingerprint: Option<String>,
    /// The store's version labelled `current` (`None`: no token stored).
    pub token_version: Option<String>,
    /// When that version was written.
    pub token_set_at: Option<Timestamp>,
    /// Whole days since then.
    pub age_days: Option<i64>,
    /// `rotate_every_days`.
    pub rotate_every_days: u32,
    /// When the token is due for rotation.
    pub due: Option<Timestamp>,
    /// Past its due date.
    pub overdue: bool,
    /// A rotation in progress.
    pub open_rotation: Option<Rotation>,
    /// The last rotation that ended (done, aborted or failed).
    pub last_rotation: Option<Rotation>,
}

/// Every account of `accounts` at `now`: the store's history of each
/// secret, and `rotations` (the journals, oldest first).
pub async fn inventory(
    accounts: &[AccountSection],
    store: &dyn SecretStore,
    rotations: &[Rotation],
    now: Timestamp,
) -> Result<Vec<TokenStatus>, StoreError> {
    let mut rows = Vec::new();
    for a in accounts {
        let history = match store.history(&a.secret).await {
            Ok(h) => h,
            // A retired account's secret is deleted, its history kept.
            Err(StoreError::NotFound { .. } | StoreError::Deleted { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let current = history.iter().find(|v| v.labels.contains(&Label::Current));
        let days = i64::from(a.rotate_every_days);
        let due = current.map(|v| {
            v.meta
                .at
                .checked_add(SignedDuration::from_hours(24 * days))
                .unwrap_or(v.meta.at)
        });
        // A dual rotation concerns both members of its pair.
        let mine: Vec<&Rotation> = rotations.iter().filter(|r| r.concerns(&a.name)).collect();
        rows.push(TokenStatus {
            account: a.name.clone(),
            study: a.study.clone(),
            site: a.site.clone(),
            secret: a.secret.to_string(),
            fingerprint: current.and_then(|v| v.meta.fingerprint.clone()),
            token_version: current.map(|v| v.version.0.clone()),
            token_set_at: current.map(|v| v.meta.at),
            age_days: current.map(|v| now.duration_since(v.meta.at).as_hours() / 24),
            rotate_every_days: a.rotate_every_days,
            due,
            overdue: due.is_some_and(|d| now > d),
            open_rotation: mine
                .iter()
                .rev()
                .find(|r| r.state.is_open())
                .map(|r| (*r).clone()),
            last_rotation: mine
                .iter()
                .rev()
                .find(|r| !r.state.is_open())
                .map(|r| (*r).clone()),
        });
    }
    Ok(rows)
}
