//! Export Logging (`content=log`, §7.1).

use redcap::ApiError;
use serde_json::Map;

use super::Ctx;
use crate::db::{LogKind, LogRow};
use crate::format::Reply;

fn matches_logtype(kind: LogKind, logtype: &str) -> bool {
    use LogKind as K;
    match logtype {
        "export" => kind == K::Export,
        "manage" => kind == K::Manage,
        "user" => kind == K::User,
        "record" => matches!(kind, K::RecordAdd | K::RecordEdit | K::RecordDelete),
        "record_add" => kind == K::RecordAdd,
        "record_edit" => kind == K::RecordEdit,
        "record_delete" => kind == K::RecordDelete,
        // No locking in the sandbox: nothing matches.
        "lock_record" => false,
        "page_view" => kind == K::PageView,
        // Unknown or empty: every event row (page views live elsewhere).
        _ => kind != K::PageView,
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
    let pid = ctx.caller.project_id;
    let project = ctx.project();
    // DAG scoping: rows on the DAG's records, and other rows by the DAG's users.
    let in_dag = |row: &LogRow, g: u64| match &row.record {
        Some(_) => row.group_id == Some(g),
        None => project
            .members
            .get(&row.username)
            .is_some_and(|m| m.group_id == Some(g)),
    };
    let rows: Vec<Map<String, serde_json::Value>> = ctx
        .state
        .log
        .iter()
        .rev()
        .filter(|r| r.project_id == pid && matches_logtype(r.kind, logtype))
        .filter(|r| user.is_empty() || r.username == user)
        .filter(|r| record.is_empty() || r.record.as_deref() == Some(record.as_str()))
        .filter(|r| dag.is_none_or(|g| in_dag(r, g)))
        .filter(|r| ctx.caller.group_id.is_none_or(|g| in_dag(r, g)))
        .filter(|r| begin.as_ref().is_none_or(|b| r.ts.as_str() >= b.as_str()))
        .filter(|r| end.as_ref().is_none_or(|e| r.ts.as_str() <= e.as_str()))
        .map(|r| {
            let mut m = Map::new();
            m.insert("timestamp".into(), r.ts.clone().into());
            m.insert("username".into(), r.username.clone().into());
            m.insert("action".into(), r.action.clone().into());
            m.insert(
                "details".into(),
                r.details.replace(['\r', '\n'], " ").into(),
            );
            m.insert("record".into(), r.record.clone().unwrap_or_default().into());
            m
        })
        .collect();
    let reply = ctx.rows_reply(
        &rows,
        &["timestamp", "username", "action", "details", "record"],
        "logs",
        "log",
    );
    ctx.log_manage(LogKind::Manage, "Export Logging");
    Ok(reply)
}
