//! Files in File Upload fields: Export / Import / Delete File
//! (`content=file`, `action=export|import|delete`).
//!
//! `redcap-api.md` names these methods (§1.4, §1.5, the Delete Record gate
//! of §1.6, the log descriptions of §7.2) but not their behaviour; what is
//! here follows public copies of REDCap's `API/file/*.php` read for facts
//! (older than 15.7.6), and is marked *observed* in `redcap::error`:
//!
//! - the record's value of the field is the doc id; the bytes are stored
//!   apart with the uploader's name and declared type (`db::Doc`);
//! - Export answers the bytes as they are, with
//!   `Content-Type: <type>; name="<file name>"` (PHP adds `;charset=UTF-8`
//!   to `text/*` types), and logs "Download file (API)";
//! - Import needs a multipart part named `file`, replaces any earlier file,
//!   answers an empty 200 and logs "Upload document (API)";
//! - Delete answers an empty 200 and logs "Delete uploaded document (API)";
//! - checks in REDCap's order: (import: the upload; import/delete: project
//!   status) → record → field → (export/delete: a file is there).
//!
//! Sandbox decisions (INF): records of another DAG answer as missing (the
//! copies read show no DAG check; the specification asks the emulator to
//! scope record methods, §5.5); Import/Delete need view & edit rights on the
//! field's instrument and Delete needs API Import (the DOC's requirement);
//! `event` and `repeat_instance` are accepted and ignored, as REDCap ignores
//! them in a classic project without repeating instruments — the only kind
//! the sandbox has.

use redcap::{ApiError, ExportRight};

use super::Ctx;
use crate::db::{Doc, Field, LogKind, doc_path};
use crate::format::Reply;
use crate::store::{self, Slot};

/// The File Upload field named by `field`, or the REDCap error for it.
fn file_field<'p>(fields: &'p [Field], name: &str) -> Result<&'p Field, ApiError> {
    fields
        .iter()
        .find(|f| f.field_name == name && f.field_type == "file")
        .ok_or_else(|| ApiError::NotAFileField {
            field: name.to_owned(),
        })
}

/// Whether the caller may see the record (own DAG, or no DAG).
fn visible(ctx: &mut Ctx, record: &str) -> Result<bool, ApiError> {
    let pid = ctx.pid();
    let group = ctx.sql(|c| store::record_group(c, pid, record))?;
    Ok(group.is_some_and(|g| ctx.caller.group_id.is_none() || g == ctx.caller.group_id))
}

/// Where the file sits: the event named by `event` (a unique event name;
/// blank: the first event) and the instance `repeat_instance` (blank: 1).
/// A classic project has one event and ignores `event`, as REDCap does; a
/// project without repetition ignores `repeat_instance`.
fn file_slot(ctx: &Ctx) -> Result<Slot, ApiError> {
    let p = ctx.project();
    let event = if p.is_longitudinal {
        let name = ctx.post.str("event").trim();
        let found = if name.is_empty() {
            p.events.first()
        } else {
            p.event_by_unique(name)
        };
        found
            .ok_or_else(|| ApiError::InvalidParameterValues {
                parameter: "event",
                values: vec![name.to_owned()],
            })?
            .id
    } else {
        store::CLASSIC_EVENT
    };
    let instance = if p.has_repeating() {
        match ctx.post.str("repeat_instance").trim() {
            "" => 1,
            v => v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::InvalidParameterValues {
                    parameter: "repeat_instance",
                    values: vec![v.to_owned()],
                }
            })?,
        }
    } else {
        1
    };
    Ok(Slot { event, instance })
}

/// The doc id stored in the record's value of the field, if any.
fn stored_doc(
    ctx: &mut Ctx,
    record: &str,
    slot: Slot,
    field: &str,
) -> Result<Option<u64>, ApiError> {
    let pid = ctx.pid();
    let value = ctx.sql(|c| store::record_value_in(c, pid, record, slot, field))?;
    Ok(value.and_then(|v| v.parse().ok()))
}

/// The edit right on the field's instrument (Import/Delete, INF).
fn check_edit(ctx: &Ctx, field: &Field) -> Result<(), ApiError> {
    let can_edit = ctx
        .caller
        .rights
        .forms
        .get(&field.form_name)
        .is_some_and(|r| r.can_edit());
    if can_edit {
        Ok(())
    } else {
        Err(ApiError::FileFormNotEditable {
            field: field.field_name.clone(),
        })
    }
}

/// The record's DAG, for the log row.
fn record_group(ctx: &mut Ctx, record: &str) -> Result<Option<u64>, ApiError> {
    let pid = ctx.pid();
    Ok(ctx.sql(|c| store::record_group(c, pid, record))?.flatten())
}

/// A type for a file the uploader sent without one, from its extension.
pub(crate) fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "xml" => "text/xml",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// `Content-Type` of a download: REDCap sends `<type>; name="<name>"`, and
/// PHP appends its default charset to `text/*` types that name none.
pub fn download_content_type(mime: &str, name: &str) -> String {
    let mut ct = format!("{mime}; name=\"{name}\"");
    if mime.to_ascii_lowercase().starts_with("text/") && !mime.contains("charset=") {
        ct.push_str(";charset=UTF-8");
    }
    ct
}

/// Export File: the stored bytes, as they were uploaded.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let (record, doc_id, doc) = exported_doc(ctx)?;
    let path = doc_path(&ctx.config.data, doc_id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("cannot read {}: {e}", path.display());
            return Err(ApiError::StoredFileMissing {
                path: path.display().to_string(),
                name: doc.name,
            });
        }
    };
    let details = ctx.api_label("Download file");
    let group = record_group(ctx, &record)?;
    ctx.log(
        LogKind::Manage,
        "Manage/Design ",
        details,
        Some(record),
        group,
    );
    Ok(Reply {
        status: 200,
        content_type: download_content_type(&doc.mime_type, &doc.name).into(),
        body: bytes,
        headers: vec![("content-security-policy", "script-src 'none'".into())],
        stream: None,
    })
}

/// `content=fileinfo` (and the older `filesize`), REDCap's Mobile App
/// method: Export File's checks and errors, then `{"size": <bytes>,
/// "name": "<file name>"}` as JSON whatever the `format`, logging nothing
/// (15.7.6's `API/file/export.php` with `fileinfo` set).
pub fn info(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let (_, _, doc) = exported_doc(ctx)?;
    let body = crate::format::php_json(&serde_json::json!({"size": doc.size, "name": doc.name}));
    Ok(Reply::ok(crate::format::Format::Json, body))
}

/// Export File's checks, in REDCap's order: the record's file of the
/// field, its doc id and its edoc row.
fn exported_doc(ctx: &mut Ctx) -> Result<(String, u64, Doc), ApiError> {
    // Export rights first, as REDCap checks them before anything else.
    let rights = &ctx.caller.rights;
    if !rights.has_any_export_right() {
        return Err(ApiError::NoExportAccess);
    }
    let record = ctx.post.str("record").to_owned();
    let field_name = ctx.post.str("field").to_owned();
    let project = ctx.project();
    if let Some(f) = project.metadata.iter().find(|f| f.field_name == field_name) {
        match rights
            .forms_export
            .get(&f.form_name)
            .copied()
            .unwrap_or(ExportRight::NoAccess)
        {
            ExportRight::NoAccess => return Err(ApiError::NoExportAccess),
            ExportRight::DeIdentified | ExportRight::RemoveIdentifiers if f.identifier == "y" => {
                return Err(ApiError::FileIdentifierExport);
            }
            _ => {}
        }
    }
    if !visible(ctx, &record)? {
        return Err(ApiError::FileRecordMissing { record });
    }
    file_field(&ctx.project().metadata, &field_name)?;
    let slot = file_slot(ctx)?;
    let doc_id = stored_doc(ctx, &record, slot, &field_name)?.ok_or(ApiError::NoFileToDownload)?;
    let doc = ctx
        .state
        .docs
        .get(&doc_id)
        .filter(|d| Some(d.project_id) == ctx.caller.project_id)
        .cloned()
        .ok_or(ApiError::NoFileToDownload)?;
    Ok((record, doc_id, doc))
}

/// Import File: a multipart part named `file`; replaces the field's file.
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let upload = ctx.post.file("file").ok_or(ApiError::NoFileUploaded)?;
    if upload.filename.is_empty() || upload.error != 0 {
        return Err(ApiError::FileUploadProblem);
    }
    if ctx.project().status == 2 {
        return Err(ApiError::FileUploadAnalysisCleanup);
    }
    let record = ctx.post.str("record").to_owned();
    let field_name = ctx.post.str("field").to_owned();
    if !visible(ctx, &record)? {
        return Err(ApiError::FileUploadRecordMissing { record });
    }
    let field = file_field(&ctx.project().metadata, &field_name)?.clone();
    check_edit(ctx, &field)?;

    // REDCap drops apostrophes from the stored name.
    let name = upload.filename.replace('\'', "");
    let mime_type = upload
        .content_type
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| guess_mime(&name).to_owned());
    let bytes = upload.bytes.clone();
    let pid = ctx.caller.project_id.unwrap_or_default();
    let slot = file_slot(ctx)?;
    let old = stored_doc(ctx, &record, slot, &field_name)?;
    let doc_id = ctx.state.add_doc(
        Doc {
            project_id: pid,
            name,
            mime_type,
            size: bytes.len() as u64,
        },
        bytes,
    );
    if let Some(old) = old {
        ctx.state.remove_doc(old);
    }
    let status_field = format!("{}_complete", field.form_name);
    let pid = ctx.pid();
    ctx.sql(|c| {
        store::put_values_in(
            c,
            pid,
            &record,
            slot,
            &[(field_name.as_str(), doc_id.to_string())],
        )?;
        store::put_value_if_absent_in(c, pid, &record, slot, &status_field, "0")
    })?;
    let group = record_group(ctx, &record)?;
    let action = format!("{} {record}", ctx.api_label("Upload document"));
    let details = format!("{field_name} = '{doc_id}'");
    ctx.log(LogKind::RecordEdit, action, details, Some(record), group);
    Ok(Reply::ok(ctx.return_format, String::new()))
}

/// Delete File: forgets the field's file and its bytes.
pub fn delete(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.api_import {
        return Err(ApiError::NoApiImport);
    }
    if ctx.project().status == 2 {
        return Err(ApiError::FileDeleteAnalysisCleanup);
    }
    let record = ctx.post.str("record").to_owned();
    let field_name = ctx.post.str("field").to_owned();
    if !visible(ctx, &record)? {
        return Err(ApiError::FileDeleteRecordMissing { record });
    }
    let field = file_field(&ctx.project().metadata, &field_name)?.clone();
    check_edit(ctx, &field)?;
    let slot = file_slot(ctx)?;
    let doc_id = stored_doc(ctx, &record, slot, &field_name)?.ok_or(ApiError::NoFileToDelete)?;
    ctx.state.remove_doc(doc_id);
    let pid = ctx.pid();
    ctx.sql(|c| store::delete_value_in(c, pid, &record, slot, &field_name))?;
    let group = record_group(ctx, &record)?;
    let action = format!("{} {record}", ctx.api_label("Delete uploaded document"));
    ctx.log(LogKind::RecordEdit, action, field_name, Some(record), group);
    Ok(Reply::ok(ctx.return_format, String::new()))
}

/// The doc ids held by a record's File Upload fields (optionally only those
/// on one instrument): what deleting the record must remove.
pub fn record_docs(
    metadata: &[Field],
    values: &std::collections::BTreeMap<String, String>,
    form: Option<&str>,
) -> Vec<u64> {
    metadata
        .iter()
        .filter(|f| f.field_type == "file" && form.is_none_or(|form| f.form_name == form))
        .filter_map(|f| values.get(&f.field_name)?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_types_carry_the_name_and_phps_charset_for_text() {
        assert_eq!(
            download_content_type("text/plain", "a b.txt"),
            "text/plain; name=\"a b.txt\";charset=UTF-8"
        );
        assert_eq!(
            download_content_type("application/pdf", "x.pdf"),
            "application/pdf; name=\"x.pdf\""
        );
        assert_eq!(guess_mime("scan.PDF"), "application/pdf");
        assert_eq!(guess_mime("noext"), "application/octet-stream");
    }
}
