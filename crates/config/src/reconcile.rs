//! `[reconcile]` and each study's `log_reader`: what `reconcile` and the
//! API-only check of `rights check` need to read REDCap's Export Logging
//! and pair it with the ledger.

use std::time::Duration;

use jiff::SignedDuration;
use serde::Deserialize;

/// `[reconcile]`: how REDCap's log is paired with the ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSection {
    /// How far apart a REDCap log row and a ledger entry may be and still
    /// be one event (`tolerance_seconds`), beyond the minute REDCap's
    /// timestamps leave open: the two clocks differ, and the ledger stamps
    /// a request when it commits it, before REDCap sees it.
    #[serde(
        rename = "tolerance_seconds",
        default = "default_tolerance",
        deserialize_with = "crate::units::seconds"
    )]
    pub tolerance: Duration,
    /// How much of REDCap's log `rights check` reads for UI use by the
    /// governed (API-only) accounts (`api_only_lookback_days`).
    #[serde(
        rename = "api_only_lookback_days",
        default = "default_lookback",
        deserialize_with = "crate::units::days"
    )]
    pub api_only_lookback: SignedDuration,
    /// How often `serve` reconciles on its own (`every_minutes`; `0`
    /// turns it off): `None` when off.
    #[serde(
        rename = "every_minutes",
        default = "default_every",
        deserialize_with = "minutes_or_off"
    )]
    pub every: Option<Duration>,
}

impl Default for ReconcileSection {
    fn default() -> Self {
        ReconcileSection {
            tolerance: default_tolerance(),
            api_only_lookback: default_lookback(),
            every: default_every(),
        }
    }
}

fn default_tolerance() -> Duration {
    Duration::from_secs(120)
}

fn default_every() -> Option<Duration> {
    Some(Duration::from_secs(60 * 60))
}

/// A whole number of minutes; 0 is "off".
fn minutes_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let minutes = u64::deserialize(d)?;
    Ok((minutes > 0).then(|| Duration::from_secs(minutes.saturating_mul(60))))
}

fn default_lookback() -> SignedDuration {
    crate::units::from_days(30)
}

/// A study's `log_reader` names an account of that study without a site
/// (a DAG member would see only its own DAG's log rows).
pub(crate) fn validate(
    doc: &toml::de::DeTable<'_>,
    text: &str,
    problems: &mut Vec<crate::Problem>,
) {
    use crate::schema::{str_at, tables_at};
    let accounts = tables_at(doc, "account");
    for (i, study, _) in tables_at(doc, "study") {
        let study_name = str_at(study, "name").map_or("?", |(n, _)| n);
        let Some((reader, span)) = str_at(study, "log_reader") else {
            continue;
        };
        let mut push = |message: String, fix: &str| {
            problems.push(crate::Problem::at_offset(
                text,
                span.start,
                Some(format!("study[{i}].log_reader")),
                message,
                fix.to_string(),
            ));
        };
        let Some((_, account, _)) = accounts
            .iter()
            .find(|(_, a, _)| str_at(a, "name").is_some_and(|(n, _)| n == reader))
        else {
            push(
                format!(
                    "study `{study_name}` names log reader `{reader}`, which is not an [[account]]"
                ),
                "add an [[account]] for the REDCap user whose token reads this project's log (API Export, Logging and an export right on one instrument; profile \"log-reader\"), or correct the name",
            );
            continue;
        };
        if str_at(account, "study").is_some_and(|(s, _)| s != study_name) {
            push(
                format!("log reader `{reader}` is an account of another study"),
                "name an account of this study: a token reads the log of its own project only",
            );
        }
        if str_at(account, "site").is_some() {
            push(
                format!("log reader `{reader}` is a site account"),
                "use an account without a site: REDCap shows a DAG member only its own DAG's log rows",
            );
        }
    }
}
