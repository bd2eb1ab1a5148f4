//! Setting an account's project `expiration` in REDCap (§8.1) the DAG-safe
//! way: Import Users always writes `data_access_group`, and an import
//! without it removes the user from their DAG (§4.6), so the row sent
//! carries the user's current DAG; then the rights are read back to
//! confirm both the new date and the unchanged DAG.
//!
//! A small function of this module until `rights apply`'s import (h-rights)
//! lands; the two should become one.

use jiff::civil::Date;
use redcap::client::{Error, Format, OutboundLimiter, Project, Row};
use redcap::rights::{UserRights, wire_text};
use serde_json::{Map, Value};

/// Why the expiration could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ExpirationError {
    /// A REDCap call failed (its message says why, e.g. a user in a role).
    #[error("{what}: {source}")]
    Redcap {
        /// Which call.
        what: &'static str,
        /// REDCap's or the network's error.
        #[source]
        source: Error,
    },
    /// The user is not in the project.
    #[error("REDCap user `{0}` is not a user of the project")]
    NotInProject(String),
    /// Read back, the rights are not what was written.
    #[error(
        "after the import REDCap reports expiration {expiration:?} and DAG {dag:?} for `{username}` (expected {expected:?} and DAG {expected_dag:?}); check the user in REDCap"
    )]
    NotConfirmed {
        /// The user.
        username: String,
        /// The expiration read back.
        expiration: Option<String>,
        /// The DAG id read back.
        dag: Option<u64>,
        /// The expiration written.
        expected: Option<String>,
        /// The DAG id before.
        expected_dag: Option<u64>,
    },
    /// Export Users sent something unreadable.
    #[error("reading Export Users: {0}")]
    Unreadable(String),
}

/// `username`'s Export Users row, if any.
pub async fn user_row<L: OutboundLimiter>(
    project: &Project<L>,
    username: &str,
) -> Result<Option<Map<String, Value>>, ExpirationError> {
    let raw = project
        .export_users_raw(Format::Json)
        .await
        .map_err(|source| ExpirationError::Redcap {
            what: "Export Users",
            source,
        })?;
    let rows: Vec<Map<String, Value>> =
        serde_json::from_str(&raw).map_err(|e| ExpirationError::Unreadable(e.to_string()))?;
    Ok(rows.into_iter().find(|r| {
        r.get("username")
            .and_then(wire_text)
            .is_some_and(|u| u.eq_ignore_ascii_case(username))
    }))
}

/// Sets `username`'s project expiration to `date` (`None`: no expiry),
/// keeping their DAG, and confirms it by reading back.
pub async fn set_expiration<L: OutboundLimiter>(
    project: &Project<L>,
    username: &str,
    date: Option<Date>,
) -> Result<(), ExpirationError> {
    let unread = |e: redcap::rights::RightsError| ExpirationError::Unreadable(e.to_string());
    let before = user_row(project, username)
        .await?
        .ok_or_else(|| ExpirationError::NotInProject(username.to_string()))?;
    let before = UserRights::from_json(&before).map_err(unread)?;
    let expected = date.map(|d| d.to_string());
    let mut row = Row::new();
    row.insert("username".into(), before.username.clone().into());
    row.insert(
        "expiration".into(),
        expected.clone().unwrap_or_default().into(),
    );
    // Always: without it REDCap takes the user out of their DAG (§4.6).
    row.insert(
        "data_access_group".into(),
        before.data_access_group.clone().unwrap_or_default().into(),
    );
    project
        .import_users(&[row])
        .await
        .map_err(|source| ExpirationError::Redcap {
            what: "Import Users (expiration, with data_access_group)",
            source,
        })?;
    let after = user_row(project, username)
        .await?
        .ok_or_else(|| ExpirationError::NotInProject(username.to_string()))?;
    let after = UserRights::from_json(&after).map_err(unread)?;
    if after.expiration != expected || after.data_access_group_id != before.data_access_group_id {
        return Err(ExpirationError::NotConfirmed {
            username: username.to_string(),
            expiration: after.expiration,
            dag: after.data_access_group_id,
            expected,
            expected_dag: before.data_access_group_id,
        });
    }
    Ok(())
}
