//! Export Logging (§7.1).

use serde::Deserialize;

use super::rows::text;
use super::{Error, Format, OutboundLimiter, Params, Project};
use crate::Content;

/// `logtype` of Export Logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    Export,
    Manage,
    User,
    Record,
    RecordAdd,
    RecordEdit,
    RecordDelete,
    LockRecord,
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEntry {
    #[serde(deserialize_with = "text")]
    pub timestamp: String,
    #[serde(deserialize_with = "text")]
    pub username: String,
    #[serde(deserialize_with = "text")]
    pub action: String,
    #[serde(deserialize_with = "text", default)]
    pub details: String,
    #[serde(deserialize_with = "text", default)]
    pub record: String,
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
