//! Proving whose token a new token is, by correlation with REDCap's own
//! log (redcap-api.md §3, technique 2).
//!
//! REDCap has no "whoami": no method returns the token owner's username.
//! But every API method writes an event row under the token owner's
//! (lower-cased) username, and Export Project Info — the harmless call
//! verification makes anyway — writes "Export project information (API)".
//! So the study's log reader reads Export Logging for the minutes around
//! that call, filtered to the expected username, before and after it: a
//! row that was not there before is the call, made under the expected
//! username. A token of another user (another site's account pasted, the
//! other account of a dual pair) leaves its row under that user instead,
//! and the proof fails, naming whose new row appeared.
//!
//! REDCap stamps rows in server-local time to the minute (§7.1): the rows
//! are placed in time with the configured `[redcap] time_zone`, and a row
//! counts when its minute ends no earlier than the call's start less the
//! `[reconcile] tolerance_seconds` (REDCap's clock may be behind ours).
//! Reading before the call as well as after means a row of an earlier
//! call in the same minute (the old token's, a client's) never passes for
//! this one. A call of Export Project Info by the same user, from
//! elsewhere, between the two reads cannot be told apart — nothing in
//! REDCap's log can — and would pass; during a rotation the old token is
//! dead or on hold by then.
//!
//! Rows reach this module only through the redactor (REDCap's token rows
//! carry token values): the evidence kept is a redacted row.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use redcap::client::{LogEntry, LogQuery, OutboundLimiter, Project};
use redcap::redact::TokenMask;

use crate::reconcile::LogWindow;
use crate::redcap_log;

/// What REDCap's log says about who made verification's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The call is in REDCap's log under the expected username: the row
    /// (redacted), with its time as REDCap wrote it.
    Proved(String),
    /// Not proved, and why (no log reader configured, …). The rotation
    /// records `ownership: unproven`; dual mode does not finish on it.
    Unproven(String),
    /// REDCap's log shows no such call under the expected username (and,
    /// when it does under others, who): the token is not the account's.
    Refuted(String),
}

impl Ownership {
    /// Whether ownership was proved.
    pub fn is_proved(&self) -> bool {
        matches!(self, Ownership::Proved(_))
    }

    /// `proved`, `unproven` or `refuted`, as the journal records it.
    pub fn word(&self) -> &'static str {
        match self {
            Ownership::Proved(_) => "proved",
            Ownership::Unproven(_) => "unproven",
            Ownership::Refuted(_) => "refuted",
        }
    }

    /// The evidence or the reason, for people.
    pub fn detail(&self) -> &str {
        match self {
            Ownership::Proved(s) | Ownership::Unproven(s) | Ownership::Refuted(s) => s,
        }
    }
}

/// One call of Export Project Info in REDCap's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedCall {
    /// Who REDCap logged it under (lower case).
    pub username: String,
    /// The row, redacted, as evidence ([`evidence`]).
    pub row: String,
}

/// What the log shows, from a moment on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogCalls {
    /// No log can be read, and why: ownership stays unproven.
    NoReader(String),
    /// The rows of Export Project Info calls.
    Rows(Vec<LoggedCall>),
}

/// Reads REDCap's log for the calls of Export Project Info. `Err` means
/// REDCap could not be asked (or refused the log reader): nothing is
/// known, and the rotation stops to be resumed.
#[async_trait::async_trait]
pub trait OwnershipCheck: Send + Sync {
    /// The rows of Export Project Info calls whose minute ends at or after
    /// `since` (less the tolerance), by `username` — or by anyone but the
    /// log reader when `username` is `None`.
    async fn calls(&self, username: Option<&str>, since: Timestamp) -> Result<LogCalls, String>;
}

/// No log reader: ownership is recorded unproven, with the reason.
pub struct NoLogReader(pub String);

#[async_trait::async_trait]
impl OwnershipCheck for NoLogReader {
    async fn calls(&self, _: Option<&str>, _: Timestamp) -> Result<LogCalls, String> {
        Ok(LogCalls::NoReader(self.0.clone()))
    }
}

/// The study's log reader: Export Logging with its token.
pub struct LogCorrelation<'a, L: OutboundLimiter> {
    /// The log reader's project client.
    pub project: Project<L>,
    /// Its REDCap username (its own Export Logging rows are not calls).
    pub reader: String,
    /// `[redcap] time_zone`.
    pub time_zone: TimeZone,
    /// `[reconcile] tolerance_seconds`.
    pub tolerance: SignedDuration,
    /// The redactor's mask (fingerprints under the installation's key).
    pub mask: &'a dyn TokenMask,
    /// When to stop reading (the clock the rotation runs on).
    pub now: &'a (dyn Fn() -> Timestamp + Sync),
}

/// Whether `row` is a call of Export Project Info by `username` (any user
/// but `reader` when `None`) whose minute ends at or after `since`.
pub fn is_call_since(
    row: &LogEntry,
    username: Option<&str>,
    reader: &str,
    since: Timestamp,
    tz: &TimeZone,
) -> bool {
    let user = row.username().trim();
    let who = match username {
        Some(u) => user.eq_ignore_ascii_case(u),
        None => !user.eq_ignore_ascii_case(reader),
    };
    let text = format!("{} {}", row.action(), row.details()).to_lowercase();
    let what = text.contains("export project information (api")
        || text.contains("export project information (api playground)");
    let minute = SignedDuration::from_secs(60);
    let when = redcap_log::utc_candidates(row.timestamp(), tz).is_ok_and(|starts| {
        starts
            .iter()
            .any(|s| s.saturating_add(minute).unwrap_or(*s) >= since)
    });
    who && what && when
}

/// One row as evidence: REDCap's time (its zone named), user, action and
/// details — all redacted already.
pub fn evidence(row: &LogEntry, tz: &TimeZone) -> String {
    format!(
        "{} ({}) {}: {} {}",
        row.timestamp().trim(),
        tz.iana_name().unwrap_or("REDCap's time zone"),
        row.username().trim(),
        row.action().trim(),
        row.details().trim()
    )
}

#[async_trait::async_trait]
impl<L: OutboundLimiter + Clone + 'static> OwnershipCheck for LogCorrelation<'_, L> {
    async fn calls(&self, username: Option<&str>, since: Timestamp) -> Result<LogCalls, String> {
        let since = since.saturating_sub(self.tolerance).unwrap_or(since);
        let window = LogWindow {
            from: since,
            to: (self.now)()
                .saturating_add(self.tolerance)
                .unwrap_or_else(|_| (self.now)()),
        };
        let mut rows = Vec::new();
        for (begin, end) in window.requests(&self.time_zone) {
            let query = LogQuery {
                user: username.map(str::to_lowercase),
                begin_time: Some(begin),
                end_time: Some(end),
                ..LogQuery::default()
            };
            let got = self
                .project
                .export_logging(&query, self.mask)
                .await
                .map_err(|e| {
                    format!(
                        "Export Logging with the token of the log reader `{}`: {e}",
                        self.reader
                    )
                })?;
            rows.extend(
                got.iter()
                    .filter(|r| is_call_since(r, username, &self.reader, since, &self.time_zone))
                    .map(|r| LoggedCall {
                        username: r.username().trim().to_lowercase(),
                        row: evidence(r, &self.time_zone),
                    }),
            );
        }
        Ok(LogCalls::Rows(rows))
    }
}

/// The calls of `after` that were not in `before` (as a multiset: a row
/// REDCap wrote twice in one minute counts twice).
pub fn new_rows(before: &[LoggedCall], after: &[LoggedCall]) -> Vec<LoggedCall> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for r in before {
        *seen.entry(r.row.as_str()).or_default() += 1;
    }
    after
        .iter()
        .filter(|r| match seen.get_mut(r.row.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use redcap::redact::Placeholder;

    use super::*;

    fn row(ts: &str, user: &str, details: &str) -> LogEntry {
        LogEntry::new(ts, user, "Manage/Design ", details, "", &Placeholder)
    }

    #[test]
    fn a_call_is_placed_in_redcaps_time_zone_and_matched_by_user_and_method() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 10:30 in Berlin (winter) is 09:30 UTC; the minute ends 09:31.
        let since: Timestamp = "2026-12-07T09:30:40Z".parse().unwrap();
        let call = row(
            "2026-12-07 10:30",
            "svc_a",
            "Export project information (API)",
        );
        assert!(is_call_since(
            &call,
            Some("SVC_A"),
            "svc_log",
            since,
            &berlin
        ));
        // "09:30" is the call's minute in UTC, but in Berlin it ended an
        // hour before the call began.
        let nine = row(
            "2026-12-07 09:30",
            "svc_a",
            "Export project information (API)",
        );
        assert!(is_call_since(
            &nine,
            Some("svc_a"),
            "svc_log",
            since,
            &TimeZone::UTC
        ));
        assert!(!is_call_since(
            &nine,
            Some("svc_a"),
            "svc_log",
            since,
            &berlin
        ));
        // A minute that ended before the call began is an earlier call.
        let earlier = row(
            "2026-12-07 10:29",
            "svc_a",
            "Export project information (API)",
        );
        assert!(!is_call_since(
            &earlier,
            Some("svc_a"),
            "svc_log",
            since,
            &berlin
        ));
        // Another user, another method, the log reader itself.
        assert!(!is_call_since(
            &call,
            Some("svc_b"),
            "svc_log",
            since,
            &berlin
        ));
        let other = row("2026-12-07 10:30", "svc_a", "Export users (API)");
        assert!(!is_call_since(
            &other,
            Some("svc_a"),
            "svc_log",
            since,
            &berlin
        ));
        let reader = row(
            "2026-12-07 10:30",
            "svc_log",
            "Export project information (API)",
        );
        assert!(!is_call_since(&reader, None, "svc_log", since, &berlin));
        assert!(is_call_since(&call, None, "svc_log", since, &berlin));
        // A row that is not REDCap's minute never matches.
        let bad = row("yesterday", "svc_a", "Export project information (API)");
        assert!(!is_call_since(
            &bad,
            Some("svc_a"),
            "svc_log",
            since,
            &berlin
        ));
        assert_eq!(
            evidence(&call, &berlin),
            "2026-12-07 10:30 (Europe/Berlin) svc_a: Manage/Design Export project information (API)"
        );
    }

    #[test]
    fn only_rows_missing_before_the_call_are_new() {
        let call = |u: &str, row: &str| LoggedCall {
            username: u.into(),
            row: row.into(),
        };
        let a = call("svc_a", "10:30 svc_a");
        let b = call("svc_b", "10:30 svc_b");
        let one = vec![a.clone()];
        let two = vec![a.clone(), a.clone()];
        assert_eq!(new_rows(&one, &one), vec![]);
        assert_eq!(new_rows(&one, &two), vec![a.clone()]);
        assert_eq!(new_rows(&one, &[b.clone(), a]), vec![b]);
    }
}
