//! REDCap's own log, as this tool reads it: redacted, placed in time, and
//! sorted by what each row says about who used REDCap and how.
//!
//! - [`FingerprintMask`]: the mask [`redcap::redact`] applies to every row
//!   the client hands out — a token-shaped run becomes its fingerprint
//!   under the installation's key (`fp1:…`), so a regenerated or deleted
//!   token stays recognisable (it can be compared with the fingerprints in
//!   the ledger) without its value ever being kept or shown. Rows can only
//!   leave the REDCap client through the redactor
//!   ([`redcap::client::LogEntry`] has no other constructor).
//! - [`utc_candidates`]: REDCap stamps rows in server-local time, to the
//!   minute, without a zone (redcap-api.md §7.1). A local minute maps to
//!   one UTC instant — or two, when the clock went back (the minute
//!   happened twice) or forward (the minute never happened: REDCap's
//!   clock cannot have written it, so both readings are kept).
//! - [`activity`], [`token_event`], [`rights_change`]: what a row is: a
//!   call of the API, a page of the web UI, the API Playground, a token
//!   regenerated, deleted or viewed, a change to users, roles or DAGs.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use redcap::client::LogEntry;
use redcap::redact::TokenMask;
use secrets::FingerprintKey;

/// Replaces a token-shaped run by its fingerprint under the installation's
/// key: the same token gives the fingerprint the ledger and `secrets list`
/// name it by.
pub struct FingerprintMask<'a>(pub &'a FingerprintKey);

impl TokenMask for FingerprintMask<'_> {
    fn mask(&self, token: &str) -> String {
        self.0.fingerprint_bytes(token.as_bytes()).0
    }
}

/// A timestamp REDCap wrote that is not `YYYY-MM-DD HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("REDCap log timestamp `{0}` is not YYYY-MM-DD HH:MM")]
pub struct BadTimestamp(pub String);

/// The UTC instants at which the local minute `ts` (`YYYY-MM-DD HH:MM`,
/// REDCap's format) began in `tz`: one, or two at a daylight-saving change
/// (ambiguous: both occurrences; skipped: the readings with the offset
/// before and after the gap), earliest first.
pub fn utc_candidates(ts: &str, tz: &TimeZone) -> Result<Vec<Timestamp>, BadTimestamp> {
    let bad = || BadTimestamp(ts.to_string());
    let civil: DateTime = DateTime::strptime("%Y-%m-%d %H:%M", ts.trim()).map_err(|_| bad())?;
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    let mut out = match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => {
            vec![offset.to_timestamp(civil).map_err(|_| bad())?]
        }
        AmbiguousOffset::Gap { before, after } | AmbiguousOffset::Fold { before, after } => vec![
            before.to_timestamp(civil).map_err(|_| bad())?,
            after.to_timestamp(civil).map_err(|_| bad())?,
        ],
    };
    out.sort();
    out.dedup();
    Ok(out)
}

/// `at` as REDCap would stamp it in `tz`: `YYYY-MM-DD HH:MM`.
pub fn local_minute(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// How a row used REDCap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// A page view of the API endpoint: one per API call REDCap received
    /// (redcap-api.md §7.2).
    ApiCall,
    /// A page view of any other page: someone used the web UI.
    UiPage {
        /// The page, as REDCap logged it.
        page: String,
    },
    /// An event written by an API method (` (API)` in its text).
    ApiEvent,
    /// An event written through the API Playground (` (API Playground)`;
    /// any client can send `playground=1`, so it proves UI use or a
    /// request no gateway forwarded — the gateway strips the parameter).
    Playground,
    /// An event not marked as an API action: done in the web UI (or by
    /// REDCap itself).
    UiEvent,
}

/// What `row` is. `api_path` is the path of the API endpoint (`/api/`,
/// from `[redcap] url`): a page view of it is an API call, of anything
/// else a page of the web UI.
pub fn activity(row: &LogEntry, api_path: &str) -> Activity {
    if row.action().trim() == "Page View" {
        let page = row
            .details()
            .trim()
            .strip_prefix("Page accessed:")
            .unwrap_or(row.details())
            .trim();
        return if is_api_page(page, api_path) {
            Activity::ApiCall
        } else {
            Activity::UiPage {
                page: page.to_string(),
            }
        };
    }
    let text = format!("{} {}", row.action(), row.details());
    if text.contains("(API Playground)") {
        Activity::Playground
    } else if text.contains("(API)") {
        Activity::ApiEvent
    } else {
        Activity::UiEvent
    }
}

/// Whether a logged page (a URL or a path) is the API endpoint.
fn is_api_page(page: &str, api_path: &str) -> bool {
    let path = match page.find("://") {
        Some(i) => page[i + 3..].find('/').map_or("/", |j| &page[i + 3 + j..]),
        None => page,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let want = api_path.trim_end_matches('/');
    let path = path.trim_end_matches("index.php").trim_end_matches('/');
    path == want
}

/// The path of an API URL (`https://host/redcap/api/` → `/redcap/api/`).
pub fn api_path(url: &str) -> String {
    match url.find("://") {
        Some(i) => url[i + 3..]
            .find('/')
            .map_or("/".to_string(), |j| url[i + 3 + j..].to_string()),
        None => url.to_string(),
    }
}

/// A token lifecycle event of redcap-api.md §2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenEvent {
    /// The token was regenerated (the old value is in the row, redacted).
    Regenerated,
    /// The token was deleted.
    Deleted,
    /// An administrator viewed another user's token.
    Viewed,
}

impl std::fmt::Display for TokenEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenEvent::Regenerated => "regenerated",
            TokenEvent::Deleted => "deleted",
            TokenEvent::Viewed => "viewed",
        })
    }
}

/// A regeneration, deletion or view of an API token, and whose token it
/// was (lower case): the user named in `(username = '…')`, or the row's
/// user for "… own API token".
pub fn token_event(row: &LogEntry) -> Option<(String, TokenEvent)> {
    let text = format!("{} {}", row.action(), row.details()).to_lowercase();
    if !text.contains("api token") {
        return None;
    }
    let event = if text.contains("regenerate") {
        TokenEvent::Regenerated
    } else if text.contains("delete") {
        TokenEvent::Deleted
    } else if text.contains("view api token") {
        TokenEvent::Viewed
    } else {
        return None;
    };
    let subject = if text.contains(" own api token") {
        row.username().to_lowercase()
    } else {
        named_user(&text).unwrap_or_else(|| row.username().to_lowercase())
    };
    Some((subject, event))
}

/// The `username = 'x'` of a row's text.
fn named_user(text: &str) -> Option<String> {
    let i = text.find("username = '")? + "username = '".len();
    let rest = &text[i..];
    Some(rest[..rest.find('\'')?].to_string())
}

/// What kind of access change a row records, if any: users, roles and
/// their rights (`rights`), or Data Access Groups and who is in them
/// (`dag`). Exports are not changes.
pub fn rights_change(row: &LogEntry) -> Option<&'static str> {
    let action = row.action().trim().to_lowercase();
    let details = row.details().trim().to_lowercase();
    const RIGHTS_ACTIONS: &[&str] = &[
        "add user",
        "update user",
        "edit user",
        "delete user",
        "create user role",
        "update user role",
        "edit user role",
        "delete user role",
        "user assigned to role",
        "user removed from role",
    ];
    const RIGHTS_DETAILS: &[&str] = &[
        "import users",
        "delete users",
        "import user roles",
        "delete user roles",
        "import user role assignments",
    ];
    const DAG_DETAILS: &[&str] = &[
        "import dags",
        "delete dags",
        "import user-dag assignments",
        "switch dag",
        "create data access group",
        "rename data access group",
        "delete data access group",
        "assign user to data access group",
        "remove user from data access group",
    ];
    if RIGHTS_ACTIONS.iter().any(|a| action.starts_with(a))
        || RIGHTS_DETAILS.iter().any(|d| details.starts_with(d))
    {
        Some("rights")
    } else if DAG_DETAILS.iter().any(|d| details.starts_with(d)) {
        Some("dag")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
