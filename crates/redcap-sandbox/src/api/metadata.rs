//! Metadata (data dictionary) and instruments (§6.4).

use redcap::{ApiError, ExportRight, FormRight};
use serde_json::{Map, Value};

use super::{Ctx, text};
use crate::db::{Field, LogKind};
use crate::format::Reply;

/// Data dictionary columns, in REDCap's order.
pub const COLUMNS: &[&str] = &[
    "field_name",
    "form_name",
    "section_header",
    "field_type",
    "field_label",
    "select_choices_or_calculations",
    "field_note",
    "text_validation_type_or_show_slider_number",
    "text_validation_min",
    "text_validation_max",
    "identifier",
    "branching_logic",
    "required_field",
    "custom_alignment",
    "question_number",
    "matrix_group_name",
    "matrix_ranking",
    "field_annotation",
];

/// Field types REDCap knows.
const FIELD_TYPES: &[&str] = &[
    "text",
    "notes",
    "dropdown",
    "radio",
    "checkbox",
    "yesno",
    "truefalse",
    "file",
    "slider",
    "calc",
    "descriptive",
    "sql",
];

fn field_row(f: &Field) -> Map<String, Value> {
    match serde_json::to_value(f) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Export Metadata, optionally filtered by `fields` / `forms`.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let project = ctx.project();
    let fields = ctx.post.list("fields", true).unwrap_or_default();
    let forms = ctx.post.list("forms", true).unwrap_or_default();
    let bad_fields: Vec<String> = fields
        .iter()
        .filter(|f| !project.metadata.iter().any(|m| &m.field_name == *f))
        .cloned()
        .collect();
    if !bad_fields.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "fields",
            values: bad_fields,
        });
    }
    let all_forms = project.forms();
    let bad_forms: Vec<String> = forms
        .iter()
        .filter(|f| !all_forms.contains(f))
        .cloned()
        .collect();
    if !bad_forms.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "forms",
            values: bad_forms,
        });
    }
    let rows: Vec<_> = project
        .metadata
        .iter()
        .filter(|m| {
            (fields.is_empty() && forms.is_empty())
                || fields.contains(&m.field_name)
                || forms.contains(&m.form_name)
        })
        .map(field_row)
        .collect();
    ctx.log_manage(LogKind::Manage, "Download data dictionary");
    Ok(ctx.rows_reply(&rows, COLUMNS, "records", "item"))
}

/// Import Metadata: Design right (400 `api_124`), development only
/// (400 `api_102`). Replaces the dictionary; answers the number of fields.
///
/// New instruments: users and roles with the Design right get full view and
/// export rights on them, everyone else no access (INF; REDCap's rule for
/// new instruments is not in the specification).
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.design {
        return Err(ApiError::DesignPrivilege);
    }
    if ctx.project().status != 0 {
        return Err(ApiError::ProductionDesign);
    }
    let rows = ctx.take_rows();
    let mut fields = Vec::new();
    for row in &rows {
        let mut strings = Map::new();
        for (k, v) in row {
            strings.insert(k.clone(), Value::String(text(Some(v))));
        }
        let f: Field =
            serde_json::from_value(Value::Object(strings)).map_err(|e| ApiError::BadMetadata {
                details: format!("The data dictionary could not be read: {e}"),
            })?;
        let name_ok = !f.field_name.is_empty()
            && f.field_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && f.field_name.starts_with(|c: char| c.is_ascii_lowercase());
        if !name_ok {
            return Err(ApiError::BadMetadata {
                details: format!(
                    "The variable name \"{}\" is not valid: it must start with a lower-case letter and contain only lower-case letters, numbers and underscores.",
                    f.field_name
                ),
            });
        }
        if f.form_name.is_empty() {
            return Err(ApiError::BadMetadata {
                details: format!("The field \"{}\" has no form name.", f.field_name),
            });
        }
        if !FIELD_TYPES.contains(&f.field_type.as_str()) {
            return Err(ApiError::BadMetadata {
                details: format!(
                    "The field \"{}\" has the invalid field type \"{}\".",
                    f.field_name, f.field_type
                ),
            });
        }
        if fields.iter().any(|g: &Field| g.field_name == f.field_name) {
            return Err(ApiError::BadMetadata {
                details: format!(
                    "The variable name \"{}\" is used more than once.",
                    f.field_name
                ),
            });
        }
        fields.push(f);
    }
    if fields.is_empty() {
        return Err(ApiError::BadMetadata {
            details: "The data dictionary must contain at least one field.".into(),
        });
    }
    let count = fields.len();
    let project = ctx.project_mut();
    let old_forms = project.forms();
    project.metadata = fields;
    let new_forms: Vec<String> = project
        .forms()
        .into_iter()
        .filter(|f| !old_forms.contains(f))
        .collect();
    let grant = |rights: &mut redcap::Rights| {
        for f in &new_forms {
            let (view, export) = if rights.design {
                (FormRight::ViewEditResponses, ExportRight::FullDataSet)
            } else {
                (FormRight::NoAccess, ExportRight::NoAccess)
            };
            rights.forms.insert(f.clone(), view);
            rights.forms_export.insert(f.clone(), export);
        }
    };
    let mut members = std::mem::take(&mut project.members);
    for m in members.values_mut() {
        grant(&mut m.rights);
        project.normalise_forms(&mut m.rights);
    }
    project.members = members;
    let mut roles = std::mem::take(&mut project.roles);
    for r in &mut roles {
        grant(&mut r.rights);
        project.normalise_forms(&mut r.rights);
    }
    project.roles = roles;
    // Instruments that left the project leave the events and the
    // repeating setup. New ones are designated for the event of a
    // one-event project (INF: as REDCap's Online Designer does); with more
    // events a mapping import designates them.
    let forms = project.forms();
    let single_event = project.events.len() == 1;
    for e in &mut project.events {
        e.forms.retain(|f| forms.contains(f));
        if single_event {
            e.forms.extend(new_forms.iter().cloned());
            e.forms
                .sort_by_key(|f| forms.iter().position(|x| x == f).unwrap_or(usize::MAX));
        }
    }
    project
        .repeating
        .retain(|r| r.form.is_empty() || forms.contains(&r.form));
    project.form_labels.retain(|f, _| forms.contains(f));
    ctx.log_manage(LogKind::Manage, "Upload data dictionary");
    Ok(ctx.count(count))
}

/// An instrument's label: the one a REDCap XML file gave, else made from
/// its name (`my_first_instrument` → `My First Instrument`).
pub fn form_label(project: &crate::db::Project, form: &str) -> String {
    if let Some(l) = project.form_labels.get(form) {
        return l.clone();
    }
    form.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|first| first.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Export Instruments: `instrument_name`, `instrument_label`.
pub fn export_instruments(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let project = ctx.project();
    let rows: Vec<_> = project
        .forms()
        .into_iter()
        .map(|f| {
            let mut m = Map::new();
            let label = form_label(project, &f);
            m.insert("instrument_name".into(), f.into());
            m.insert("instrument_label".into(), label.into());
            m
        })
        .collect();
    ctx.log_manage(LogKind::Manage, "Export instruments");
    Ok(ctx.rows_reply(
        &rows,
        &["instrument_name", "instrument_label"],
        "instruments",
        "item",
    ))
}

/// Export List of Export Field Names: `original_field_name`, `choice_value`,
/// `export_field_name` (checkboxes expand to `name___code`; descriptive
/// fields have none). Optional `field` limits it to one field.
pub fn export_field_names(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let project = ctx.project();
    let only = ctx.post.str("field").trim().to_owned();
    let forms = project.forms();
    let is_complete = |name: &str| forms.iter().any(|f| format!("{f}_complete") == name);
    if !only.is_empty()
        && !project.metadata.iter().any(|f| f.field_name == only)
        && !is_complete(&only)
    {
        return Err(ApiError::InvalidParameterValues {
            parameter: "field",
            values: vec![only],
        });
    }
    // Each instrument's fields, then its `<form>_complete`; descriptive and
    // File Upload fields (signatures too) are left out, as REDCap's answer
    // in PyCap's doctest shows (its `upload_field` is missing,
    // `form_1_complete` listed); calc fields stay (PyCap's integration test
    // counts 16 names for its simple project, two calc fields among them).
    let mut rows = Vec::new();
    let mut push = |original: &str, choice: &str, export: String| {
        let mut m = Map::new();
        m.insert("original_field_name".into(), original.into());
        m.insert("choice_value".into(), choice.into());
        m.insert("export_field_name".into(), export.into());
        rows.push(m);
    };
    for form in &forms {
        for f in project.metadata.iter().filter(|f| &f.form_name == form) {
            if f.is_descriptive()
                || f.field_type == "file"
                || (!only.is_empty() && f.field_name != only)
            {
                continue;
            }
            if f.field_type == "checkbox" {
                for code in f.choice_codes() {
                    let export = format!("{}___{}", f.field_name, code.to_lowercase());
                    push(&f.field_name, &code, export);
                }
            } else {
                push(&f.field_name, "", f.field_name.clone());
            }
        }
        let complete = format!("{form}_complete");
        if only.is_empty() || only == complete {
            push(&complete, "", complete.clone());
        }
    }
    ctx.log_manage(LogKind::Manage, "Export list of export field names");
    Ok(ctx.rows_reply(
        &rows,
        &["original_field_name", "choice_value", "export_field_name"],
        "fields",
        "field",
    ))
}
