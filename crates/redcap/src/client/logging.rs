//! Export Logging (§7.1).

use serde::Deserialize;

use super::rows::text;
use super::{Error, Format, OutboundLimiter, Params, Project};
use crate::Content;

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
/// `details` is REDCap's own text, which holds full token values (a
/// regeneration logs `Replaced token = <the old token>`, a deletion the
/// deleted one) and record values: `Debug` shows only its length, so a
/// row that reaches a log line, an error or a panic message carries no
/// detail text. Never store or show `details` as it is: REDCap's log rows
/// are redacted first (DESIGN.md, invariants).
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct LogEntry {
    /// `YYYY-MM-DD HH:MM`, server local time, no zone.
    #[serde(deserialize_with = "text")]
    pub timestamp: String,
    /// The lower-cased REDCap username (`SYSTEM` for cron; an
    /// impersonating admin as `admin (user)`).
    #[serde(deserialize_with = "text")]
    pub username: String,
    /// The event's label, e.g. `Manage/Design ` (with REDCap's trailing
    /// space) or `Update record (API) 12`.
    #[serde(deserialize_with = "text")]
    pub action: String,
    /// REDCap's description of the event: may hold full token values and
    /// record values (see the type's documentation).
    #[serde(deserialize_with = "text", default)]
    pub details: String,
    /// The record name for record events, else empty.
    #[serde(deserialize_with = "text", default)]
    pub record: String,
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
    /// Export Logging with filters.
    pub async fn export_logging(&self, query: &LogQuery) -> Result<Vec<LogEntry>, Error> {
        self.call_json("Export Logging", query.params()).await
    }

    /// Export Logging in `format`: the body exactly as REDCap sent it.
    pub async fn export_logging_raw(
        &self,
        format: Format,
        query: &LogQuery,
    ) -> Result<String, Error> {
        Ok(self.call(query.params().format(format)).await?.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_detail_text() {
        let token = "0123456789ABCDEF0123456789ABCDEF";
        let row: LogEntry = serde_json::from_str(&format!(
            r#"{{"timestamp":"2026-01-02 03:04","username":"alice","action":"Manage/Design ","details":"User regenerate own API token; Replaced token = {token}","record":""}}"#
        ))
        .unwrap();
        assert!(row.details.contains(token), "the row keeps its text");
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
