//! Export Logging (`content=log`, §7.1).

use std::collections::HashMap;

use redcap::ApiError;

use super::Ctx;
use crate::db::{LogKind, LogRow};
use crate::format::{Reply, RowWriter, WriteBody};
use crate::store;

/// The log table and event kinds a `logtype` reads (page views live in
/// their own table).
fn kinds_of(logtype: &str) -> (bool, &'static [LogKind]) {
    use LogKind as K;
    match logtype {
        "export" => (false, &[K::Export]),
        "manage" => (false, &[K::Manage]),
        "user" => (false, &[K::User]),
        "record" => (false, &[K::RecordAdd, K::RecordEdit, K::RecordDelete]),
        "record_add" => (false, &[K::RecordAdd]),
        "record_edit" => (false, &[K::RecordEdit]),
        "record_delete" => (false, &[K::RecordDelete]),
        // No locking in the sandbox: nothing matches (no event row is a
        // page view).
        "lock_record" => (false, &[K::PageView]),
        "page_view" => (true, &[]),
        // Unknown or empty: every event row.
        _ => (false, &[]),
    }
}

/// `YYYY-MM-DD HH:MM`: cut after 16 characters (seconds dropped).
fn minute(value: &str) -> Option<String> {
    let v = value.trim();
    if v.is_empty() {
        None
    } else {
        Some(v.chars().take(16).collect())
    }
}

/// Export Logging: needs API Export (entry), a non-zero export right on some
/// form (403 "No Access") and the Logging right (403). Newest first; logs
/// itself after building the answer.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.has_any_export_right() {
        return Err(ApiError::NoExportAccess);
    }
    if !ctx.caller.rights.logging {
        return Err(ApiError::NoLoggingRight);
    }
    let logtype = ctx.post.str("logtype");
    // For non-record logtypes the record and DAG filters are cleared.
    let record_types = !matches!(logtype, "export" | "manage" | "user" | "page_view");
    let user = ctx.post.str("user").trim().to_lowercase();
    let record = if record_types {
        ctx.post.str("record").trim().to_owned()
    } else {
        String::new()
    };
    let dag: Option<u64> = if record_types {
        ctx.post.str("dag").trim().parse().ok()
    } else {
        None
    };
    let begin = minute(ctx.post.str("beginTime"));
    let end = minute(ctx.post.str("endTime"));
    let pid = ctx.pid();
    let project = ctx.project();
    // DAG scoping: rows on the DAG's records, and other rows by the DAG's
    // users.
    let member_groups: HashMap<String, Option<u64>> = project
        .members
        .iter()
        .map(|(u, m)| (u.clone(), m.group_id))
        .collect();
    let in_dag = move |row: &LogRow, g: u64| match &row.record {
        Some(_) => row.group_id == Some(g),
        None => member_groups.get(&row.username) == Some(&Some(g)),
    };
    let caller_group = ctx.caller.group_id;
    let format = ctx.format;
    let (page_views, kinds) = kinds_of(logtype);
    let write: WriteBody = Box::new(move |conn, out| {
        let q = store::LogQuery {
            project_id: pid,
            page_views,
            kinds,
            user: (!user.is_empty()).then_some(user.as_str()),
            record: (!record.is_empty()).then_some(record.as_str()),
            begin: begin.as_deref(),
            end: end.as_deref(),
        };
        let header = ["timestamp", "username", "action", "details", "record"];
        let mut w = RowWriter::begin(format, out, &header, "logs", "log")?.log_shapes();
        store::for_each_log_row(conn, &q, |r| {
            if dag.is_some_and(|g| !in_dag(&r, g)) || caller_group.is_some_and(|g| !in_dag(&r, g)) {
                return Ok(());
            }
            let details = r.details.replace(['\r', '\n'], " ");
            w.row(&[
                ("timestamp", r.ts.as_str()),
                ("username", r.username.as_str()),
                ("action", r.action.as_str()),
                ("details", details.as_str()),
                ("record", r.record.as_deref().unwrap_or_default()),
            ])?;
            Ok(())
        })?;
        w.end()?;
        Ok(())
    });
    // Logged after the answer's snapshot: the row is not in its own answer.
    let details = ctx.api_label("Export Logging");
    let row = ctx.log_row(LogKind::Manage, "Manage/Design ", details);
    Ok(Reply::streamed(format, write, vec![row]))
}
