//! Reports: their definitions (`redcap_reports`) and Export Reports
//! (`content=report`, REDCap 15.7.6's `API/report/export.php`).
//!
//! REDCap builds reports in its web UI only; the sandbox defines them
//! through `POST /sandbox/projects/{pid}/reports` (`{"title", "fields",
//! "filter_logic"}`, see `docs/sandbox.md`). A report is a list of fields
//! (none: the record ID field alone, as REDCap shows an empty report) and
//! optional filter logic; `report_id`s are unique across the server.
//!
//! Export Reports checks, in REDCap's order: some export right (403 "No
//! Access"), then that `report_id` is one of the project's reports (403
//! `…report_id=<id> does not belong to this project.`). The rows are then
//! Export Records' own, flat, for the report's fields and filter logic,
//! with the caller's `rawOrLabel`, `rawOrLabelHeaders`,
//! `exportCheckboxLabel`, `csvDelimiter` and `decimalCharacter` and the
//! caller's DAG and export rights applied; REDCap's report export never
//! adds the DAG or survey columns. The log row is "Data export (API) " with
//! `report_id` before the export settings.

use redcap::ApiError;
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;

use super::Ctx;
use crate::db::Project;
use crate::format::Reply;
use crate::post::Post;

/// The reports table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS redcap_reports (
    report_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    title TEXT NOT NULL,
    fields TEXT NOT NULL,
    limiter_logic TEXT NOT NULL
);";

/// A report as the admin endpoint defines it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewReport {
    pub title: String,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub filter_logic: String,
}

/// A stored report.
struct Report {
    fields: Vec<String>,
    limiter_logic: String,
}

/// What is wrong with a definition for this project, if anything.
pub(crate) fn check(project: &Project, report: &NewReport) -> Result<(), String> {
    if report.title.trim().is_empty() {
        return Err("a report needs a \"title\"".into());
    }
    let unknown: Vec<&str> = report
        .fields
        .iter()
        .filter(|f| !project.metadata.iter().any(|m| &m.field_name == *f))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "the project has no field {}: \"fields\" lists field names of its data dictionary",
            unknown.join(", ")
        ));
    }
    Ok(())
}

/// Stores a checked definition; answers its `report_id`.
pub(crate) fn insert(
    conn: &rusqlite::Connection,
    project_id: u64,
    report: &NewReport,
) -> rusqlite::Result<u64> {
    let fields = serde_json::Value::from(report.fields.clone()).to_string();
    conn.prepare_cached(
        "INSERT INTO redcap_reports (project_id, title, fields, limiter_logic) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        project_id,
        report.title.trim(),
        fields,
        report.filter_logic
    ])?;
    Ok(conn.last_insert_rowid() as u64)
}

/// Checks a definition against the project and stores it; answers the
/// new `report_id`, or what is wrong with the definition.
pub(crate) fn define(
    conn: &rusqlite::Connection,
    project: &Project,
    report: &NewReport,
) -> Result<u64, String> {
    check(project, report)?;
    insert(conn, project.id, report).map_err(|e| format!("cannot store the report: {e}"))
}

/// The project's reports, oldest first.
pub(crate) fn of_project(
    conn: &rusqlite::Connection,
    project_id: u64,
) -> rusqlite::Result<Vec<NewReport>> {
    let mut stmt = conn.prepare_cached(
        "SELECT title, fields, limiter_logic FROM redcap_reports WHERE project_id = ?1 ORDER BY report_id",
    )?;
    let rows = stmt.query_map([project_id], |r| {
        Ok(NewReport {
            title: r.get(0)?,
            fields: serde_json::from_str(&r.get::<_, String>(1)?).unwrap_or_default(),
            filter_logic: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// A report of a REDCap XML file (`redcap:Reports`): `title`, the fields
/// of `redcap_reports_fields` (a comma list) and the filter logic, which
/// REDCap writes into `advanced_logic` (`limiter_logic` read when that is
/// blank).
pub(crate) fn from_odm<'a>(attr: impl Fn(&str) -> &'a str) -> NewReport {
    let logic = match attr("advanced_logic") {
        "" => attr("limiter_logic"),
        l => l,
    };
    NewReport {
        title: attr("title").to_owned(),
        fields: attr("redcap_reports_fields")
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        filter_logic: logic.to_owned(),
    }
}

/// A report as `redcap:Reports` attributes, as REDCap writes them
/// (access for all, the logic as advanced logic, no DAG or event
/// limiters); REDCap's `ID` (a hash of the `report_id`, for report
/// folders) is left out, so that a round trip stays identical.
pub(crate) fn odm_attributes(report: &NewReport) -> String {
    use crate::odm::escape;
    format!(
        "title=\"{}\" user_access=\"ALL\" user_edit_access=\"ALL\" advanced_logic=\"{}\" redcap_reports_fields=\"{}\" redcap_reports_filter_dags=\"\" redcap_reports_filter_events=\"\"",
        escape(&report.title),
        escape(&report.filter_logic),
        escape(&report.fields.join(","))
    )
}

/// The project's report of this id, if it is one.
fn find(
    conn: &rusqlite::Connection,
    project_id: u64,
    report_id: &str,
) -> rusqlite::Result<Option<Report>> {
    let Ok(id) = report_id.trim().parse::<i64>() else {
        return Ok(None);
    };
    conn.query_row(
        "SELECT fields, limiter_logic FROM redcap_reports WHERE report_id = ?1 AND project_id = ?2",
        params![id, project_id],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )
    .optional()
    .map(|row| {
        row.map(|(fields, limiter_logic)| Report {
            fields: serde_json::from_str(&fields).unwrap_or_default(),
            limiter_logic,
        })
    })
}

/// `application/x-www-form-urlencoded` of one name or value.
fn form_encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Export Reports.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.has_any_export_right() {
        return Err(ApiError::NoExportAccess);
    }
    let report_id = ctx.post.str("report_id").to_owned();
    let pid = ctx.pid();
    let report = ctx
        .sql(|c| find(c, pid, &report_id))?
        .ok_or(ApiError::ReportNotInProject {
            report_id: report_id.clone(),
        })?;
    let fields = if report.fields.is_empty() {
        vec![ctx.project().record_id_field().to_owned()]
    } else {
        report.fields
    };

    // The report is Export Records of its fields and filter, with the
    // caller's output options.
    let mut body = String::new();
    let mut param = |name: &str, value: &str| {
        if !body.is_empty() {
            body.push('&');
        }
        form_encode(&mut body, name);
        body.push('=');
        form_encode(&mut body, value);
    };
    param("content", "report");
    param("report_id", report_id.trim());
    param("type", "flat");
    for (i, f) in fields.iter().enumerate() {
        param(&format!("fields[{i}]"), f);
    }
    param("filterLogic", &report.limiter_logic);
    for name in [
        "rawOrLabel",
        "rawOrLabelHeaders",
        "exportCheckboxLabel",
        "csvDelimiter",
        "decimalCharacter",
        "playground",
    ] {
        if let Some(v) = ctx.post.get(name).and_then(|v| v.as_str()) {
            param(name, v);
        }
    }
    let post = Post::from_urlencoded(body.as_bytes());
    let mut records = Ctx {
        state: &mut *ctx.state,
        conn: ctx.conn,
        failure: None,
        changes_at_start: ctx.changes_at_start,
        config: ctx.config,
        post: &post,
        format: ctx.format,
        return_format: ctx.return_format,
        caller: ctx.caller.clone(),
        now: ctx.now.clone(),
        rows: None,
    };
    let reply = super::records::export(&mut records);
    ctx.failure = records.failure.take();
    reply
}
