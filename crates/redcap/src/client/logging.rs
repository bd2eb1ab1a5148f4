//! Export Logging (§7.1).

use serde::Deserialize;

use super::rows::text;
use super::{Error, Format, OutboundLimiter, Params, Project};
use crate::Content;
use crate::redact::{TokenMask, redact};

/// `logtype` of Export Logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    /// Data exports, including downloads of exported files and PDFs with
    /// data.
    Export,
    /// Manage/Design events.
    Manage,
    /// User rights events: token lifecycle (whose rows hold token values),
    /// API user and role exports.
    User,
    /// Every record event.
    Record,
    /// Records created.
    RecordAdd,
    /// Records updated.
    RecordEdit,
    /// Records deleted.
    RecordDelete,
    /// Locking and e-signatures.
    LockRecord,
    /// The page-view table.
    PageView,
}

impl LogType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogType::Export => "export",
            LogType::Manage => "manage",
            LogType::User => "user",
            LogType::Record => "record",
            LogType::RecordAdd => "record_add",
            LogType::RecordEdit => "record_edit",
            LogType::RecordDelete => "record_delete",
            LogType::LockRecord => "lock_record",
            LogType::PageView => "page_view",
        }
    }
}

/// Filters of Export Logging; `None` means "no filter".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogQuery {
    /// Which kind of event.
    pub logtype: Option<LogType>,
    /// Exact username.
    pub user: Option<String>,
    /// One record name.
    pub record: Option<String>,
    /// The DAG's numeric `group_id` (not its unique name).
    pub dag: Option<u64>,
    /// `YYYY-MM-DD HH:MM`, server local time, inclusive.
    pub begin_time: Option<String>,
    /// `YYYY-MM-DD HH:MM`, server local time, inclusive.
    pub end_time: Option<String>,
}

impl LogQuery {
    fn params(&self) -> Params {
        Params::export(Content::Log)
            .set_opt("logtype", self.logtype.map(LogType::as_str))
            .set_opt("user", self.user.clone())
            .set_opt("record", self.record.clone())
            .set_opt("dag", self.dag.map(|d| d.to_string()))
            .set_opt("beginTime", self.begin_time.clone())
            .set_opt("endTime", self.end_time.clone())
    }
}

/// One log row, newest first; `timestamp` has minute precision.
///
/// REDCap's log text holds full token values (a regeneration logs
/// `Replaced token = <the old token>`, a deletion the deleted one): a
/// `LogEntry` can only be built through the redactor ([`LogEntry::new`],
/// which [`Project::export_logging`] uses), so every field of a row that
/// left the client has had its token-shaped runs replaced
/// ([`crate::redact`]). `details` also holds record values: `Debug` shows
/// only its length, so a row that reaches a log line, an error or a panic
/// message carries no detail text.
#[derive(Clone, PartialEq, Eq)]
pub struct LogEntry {
    timestamp: String,
    username: String,
    action: String,
    details: String,
    record: String,
}

/// A row as REDCap sends it, before redaction; never leaves this module.
#[derive(Deserialize)]
struct RawEntry {
    #[serde(deserialize_with = "text")]
    timestamp: String,
    #[serde(deserialize_with = "text")]
    username: String,
    #[serde(deserialize_with = "text")]
    action: String,
    #[serde(deserialize_with = "text", default)]
    details: String,
    #[serde(deserialize_with = "text", default)]
    record: String,
}

impl LogEntry {
    /// A row from its fields, each passed through the redactor with `mask`.
    pub fn new(
        timestamp: &str,
        username: &str,
        action: &str,
        details: &str,
        record: &str,
        mask: &dyn TokenMask,
    ) -> LogEntry {
        let r = |s: &str| redact(s, mask).into_owned();
        LogEntry {
            timestamp: r(timestamp),
            username: r(username),
            action: r(action),
            details: r(details),
            record: r(record),
        }
    }

    /// `YYYY-MM-DD HH:MM`, server local time, no zone.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// The lower-cased REDCap username (`SYSTEM` for cron; an
    /// impersonating admin as `admin (user)`).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The event's label, e.g. `Manage/Design ` (with REDCap's trailing
    /// space) or `Update record (API) 12`.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// REDCap's description of the event, redacted: record values remain
    /// (see the type's documentation).
    pub fn details(&self) -> &str {
        &self.details
    }

    /// The record name for record events, else empty.
    pub fn record(&self) -> &str {
        &self.record
    }
}

impl std::fmt::Debug for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEntry")
            .field("timestamp", &self.timestamp)
            .field("username", &self.username)
            .field("action", &self.action)
            .field(
                "details",
                &format_args!("<{} bytes, not shown>", self.details.len()),
            )
            .field("record", &self.record)
            .finish()
    }
}

impl<L: OutboundLimiter> Project<L> {
    /// Export Logging with filters; every row redacted with `mask`.
    ///
    /// The body is redacted before it is decoded too, so a decoding error
    /// cannot quote a token.
    pub async fn export_logging(
        &self,
        query: &LogQuery,
        mask: &dyn TokenMask,
    ) -> Result<Vec<LogEntry>, Error> {
        let body = self.export_logging_raw(Format::Json, query, mask).await?;
        let rows: Vec<RawEntry> = serde_json::from_str(&body).map_err(|e| Error::Decode {
            what: "Export Logging",
            detail: e.to_string(),
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                LogEntry::new(
                    &r.timestamp,
                    &r.username,
                    &r.action,
                    &r.details,
                    &r.record,
                    mask,
                )
            })
            .collect())
    }

    /// Export Logging in `format`: the body as REDCap sent it, redacted
    /// with `mask`.
    pub async fn export_logging_raw(
        &self,
        format: Format,
        query: &LogQuery,
        mask: &dyn TokenMask,
    ) -> Result<String, Error> {
        let body = self.call(query.params().format(format)).await?.body;
        Ok(redact(&body, mask).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Placeholder;

    #[test]
    fn a_row_is_redacted_when_built_and_debug_shows_no_detail_text() {
        let token = "0123456789ABCDEF0123456789ABCDEF";
        let details = format!("User regenerate own API token; Replaced token = {token}");
        let row = LogEntry::new(
            "2026-01-02 03:04",
            "alice",
            "Manage/Design ",
            &details,
            "",
            &Placeholder,
        );
        assert_eq!(
            row.details(),
            "User regenerate own API token; Replaced token = [token]"
        );
        for shown in [
            format!("{row:?}"),
            format!("{row:#?}"),
            format!("{:?}", vec![row.clone()]),
        ] {
            assert!(!shown.contains(token), "{shown}");
            assert!(!shown.contains("Replaced token"), "{shown}");
            assert!(
                shown.contains("alice") && shown.contains("not shown"),
                "{shown}"
            );
        }
    }
}
