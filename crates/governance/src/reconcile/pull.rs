//! Reading REDCap's Export Logging for a window: day by day (in REDCap's
//! local time, so the requests neither overlap nor leave a gap), event
//! rows and page views, every call through the client's outbound limiter,
//! every row through the redactor.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use redcap::client::{Error, LogEntry, LogQuery, LogType, OutboundLimiter, Project};
use redcap::redact::TokenMask;

use crate::redcap_log::local_minute;

/// The span of REDCap's log to read, UTC.
#[derive(Debug, Clone, Copy)]
pub struct LogWindow {
    /// From (inclusive).
    pub from: Timestamp,
    /// To (inclusive).
    pub to: Timestamp,
}

impl LogWindow {
    /// The local-time requests covering the window: one per local day,
    /// `(beginTime, endTime)`, both inclusive, `YYYY-MM-DD HH:MM`. An hour
    /// is added on each side, so a window that crosses a daylight-saving
    /// change (where local time runs back) is still covered.
    pub fn requests(&self, tz: &TimeZone) -> Vec<(String, String)> {
        let hour = jiff::SignedDuration::from_hours(1);
        let begin = local_minute(self.from.checked_sub(hour).unwrap_or(self.from), tz);
        let end = local_minute(self.to.checked_add(hour).unwrap_or(self.to), tz);
        let (Ok(first), Ok(last)) = (date_of(&begin), date_of(&end)) else {
            return vec![(begin, end)];
        };
        let mut out = Vec::new();
        let mut day = first;
        while day <= last {
            let from = if day == first {
                begin.clone()
            } else {
                format!("{day} 00:00")
            };
            let to = if day == last {
                end.clone()
            } else {
                format!("{day} 23:59")
            };
            out.push((from, to));
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        out
    }
}

fn date_of(minute: &str) -> Result<Date, jiff::Error> {
    minute.get(..10).unwrap_or_default().parse()
}

/// Every event row and page view of `window` (both logs), redacted with
/// `mask`. `progress` is told `(done, total)` after each local day.
pub async fn pull_log<L: OutboundLimiter>(
    project: &Project<L>,
    window: LogWindow,
    tz: &TimeZone,
    mask: &dyn TokenMask,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Vec<LogEntry>, Error> {
    let requests = window.requests(tz);
    let mut rows = Vec::new();
    for (i, (begin, end)) in requests.iter().enumerate() {
        for logtype in [None, Some(LogType::PageView)] {
            let query = LogQuery {
                logtype,
                begin_time: Some(begin.clone()),
                end_time: Some(end.clone()),
                ..LogQuery::default()
            };
            let got = project.export_logging(&query, mask).await?;
            // Page views come from their own request; an event export that
            // includes them would count each twice.
            rows.extend(
                got.into_iter()
                    .filter(|r| logtype.is_some() || r.action().trim() != "Page View"),
            );
        }
        progress(i + 1, requests.len());
    }
    Ok(rows)
}
