//! Records: Export / Import / Delete, flat and EAV, classic projects (§5.5,
//! §6.1–6.3).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use redcap::error::ValidationLine;
use redcap::{ApiError, ExportRight};
use serde_json::{Map, Value};

use super::validation::{self, DateFormat};
use super::{Ctx, files, text};
use crate::db::{Field, LogKind, Project};
use crate::format::{self, Format, Reply, RowWriter, WriteBody, php_json};
use crate::store::{self, RecordRow};
use std::collections::HashMap;

/// The DAG pseudo-field of flat rows.
const DAG_FIELD: &str = "redcap_data_access_group";

/// One data column of a flat row.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    form: String,
    /// The field it belongs to (`None` for `<form>_complete`).
    field: Option<usize>,
    /// For checkbox columns, the choice code.
    code: Option<String>,
    /// A File Upload field: its value is a doc id, exported as
    /// `[document]` and never written by Import Records.
    file: bool,
}

/// What Export Records shows for a File Upload field that holds a file.
const DOCUMENT: &str = "[document]";

/// The flat columns of a project: each form's fields (checkboxes expanded to
/// `name___code`, descriptive fields skipped), then `<form>_complete`.
fn columns(project: &Project) -> Vec<Column> {
    let mut cols = Vec::new();
    for form in project.forms() {
        for (i, f) in project.metadata.iter().enumerate() {
            if f.form_name != form || f.is_descriptive() {
                continue;
            }
            if f.field_type == "checkbox" {
                for code in f.choice_codes() {
                    cols.push(Column {
                        name: format!("{}___{}", f.field_name, code.to_lowercase()),
                        form: form.clone(),
                        field: Some(i),
                        code: Some(code),
                        file: false,
                    });
                }
            } else {
                cols.push(Column {
                    name: f.field_name.clone(),
                    form: form.clone(),
                    field: Some(i),
                    code: None,
                    file: f.field_type == "file",
                });
            }
        }
        cols.push(Column {
            name: format!("{form}_complete"),
            form: form.clone(),
            field: None,
            code: None,
            file: false,
        });
    }
    cols
}

/// Whether a de-identified export drops this field (§4.5): identifiers,
/// free text, notes and dates.
fn dropped_when_deidentified(f: &Field, is_record_id: bool) -> bool {
    if is_record_id {
        return false;
    }
    let validation = f.text_validation_type_or_show_slider_number.as_str();
    f.identifier == "y"
        || f.field_type == "notes"
        || (f.field_type == "text"
            && (validation.is_empty()
                || validation.starts_with("date")
                || validation.starts_with("time")))
}

/// Export Records (flat or EAV; `records`, `fields`, `forms`,
/// `exportDataAccessGroups`). DAG-assigned callers see only their DAG's
/// records and never the DAG column (§5.5).
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.has_any_export_right() {
        return Err(ApiError::NoExportAccess);
    }
    let project = ctx.project();
    let all = columns(project);
    let field_names: Vec<&str> = project
        .metadata
        .iter()
        .map(|f| f.field_name.as_str())
        .collect();
    let fields = ctx.post.list("fields", true).unwrap_or_default();
    let forms = ctx.post.list("forms", true).unwrap_or_default();
    let bad: Vec<String> = fields
        .iter()
        .filter(|f| {
            !field_names.contains(&f.as_str())
                && !all.iter().any(|c| c.field.is_none() && &c.name == *f)
        })
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "fields",
            values: bad,
        });
    }
    let project_forms = project.forms();
    let bad: Vec<String> = forms
        .iter()
        .filter(|f| !project_forms.contains(f))
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "forms",
            values: bad,
        });
    }
    let rid = project.record_id_field().to_owned();
    let rights = &ctx.caller.rights;
    let selected: Vec<Column> = all
        .iter()
        .filter(|c| {
            if fields.is_empty() && forms.is_empty() {
                return true;
            }
            let field_name = c.field.map(|i| project.metadata[i].field_name.as_str());
            forms.contains(&c.form)
                || fields
                    .iter()
                    .any(|f| Some(f.as_str()) == field_name || *f == c.name)
        })
        .filter(|c| {
            let right = rights
                .forms_export
                .get(&c.form)
                .copied()
                .unwrap_or(ExportRight::NoAccess);
            let field = c.field.map(|i| &project.metadata[i]);
            let is_rid = field.is_some_and(|f| f.field_name == rid);
            match right {
                ExportRight::NoAccess => false,
                ExportRight::FullDataSet => true,
                ExportRight::RemoveIdentifiers => {
                    !field.is_some_and(|f| f.identifier == "y" && !is_rid)
                }
                ExportRight::DeIdentified => {
                    !field.is_some_and(|f| dropped_when_deidentified(f, is_rid))
                }
            }
        })
        .cloned()
        .collect();
    let wanted = ctx.post.list("records", true).filter(|w| !w.is_empty());
    let with_dag = ctx.post.flag("exportDataAccessGroups") && ctx.caller.group_id.is_none();
    let eav = ctx.post.str("type") == "eav";
    let labels = ctx.post.str("rawOrLabel") == "label";
    // Unique DAG names are derived from all labels: compute them once.
    let dag_names: HashMap<u64, String> = project
        .dags
        .iter()
        .map(|d| d.id)
        .zip(project.dag_unique_names())
        .collect();
    // Only the selected columns are read (a filter of the query).
    let stored_fields: Option<Vec<String>> =
        (selected.len() < all.len()).then(|| selected.iter().map(|c| c.name.clone()).collect());
    let flat = FlatRows {
        metadata: project.metadata.clone(),
        selected,
        labels,
        checkbox_label: ctx.post.flag("exportCheckboxLabel"),
        with_dag,
        dag_names,
    };
    let pid = ctx.pid();
    let group_id = ctx.caller.group_id;
    let format = ctx.format;
    let write: WriteBody = Box::new(move |conn, out| {
        let q = store::RecordQuery {
            project_id: pid,
            group_id,
            records: wanted.as_deref(),
            fields: stored_fields.as_deref(),
        };
        if eav {
            flat.write_eav(conn, &q, format, out)
        } else {
            flat.write_flat(conn, &q, format, out)
        }
    });
    let mut details = format!(
        "export_format: {}, rawOrLabel: {}",
        ctx.format.log_name(),
        if labels { "label" } else { "raw" }
    );
    if with_dag {
        details.push_str(", export_data_access_group: Yes");
    }
    ctx.log(LogKind::Export, "Data export (API) ", details, None, None);
    Ok(Reply::streamed(ctx.format, write, Vec::new()))
}

/// What a flat export row is made of (owned: it is written after the
/// request's lock is released).
struct FlatRows {
    metadata: Vec<Field>,
    selected: Vec<Column>,
    labels: bool,
    checkbox_label: bool,
    with_dag: bool,
    dag_names: HashMap<u64, String>,
}

impl FlatRows {
    /// Calls `cell` with each (column, value) of one flat row, in export
    /// order.
    fn for_each_cell<'r>(
        &'r self,
        record: &'r RecordRow,
        mut cell: impl FnMut(&'r str, Cow<'r, str>),
    ) {
        for (i, c) in self.selected.iter().enumerate() {
            let mut raw = record.values[i].as_str();
            if c.file && !raw.is_empty() {
                raw = DOCUMENT;
            }
            let value = if self.labels {
                Cow::Owned(label_of(&self.metadata, c, raw, self.checkbox_label))
            } else {
                Cow::Borrowed(raw)
            };
            cell(c.name.as_str(), value);
            if self.with_dag && i == 0 {
                let dag = record
                    .group_id
                    .and_then(|g| self.dag_names.get(&g).map(String::as_str))
                    .unwrap_or_default();
                cell(DAG_FIELD, Cow::Borrowed(dag));
            }
        }
    }

    /// Flat rows, streamed from the database in REDCap's record order.
    fn write_flat(
        &self,
        conn: &rusqlite::Connection,
        q: &store::RecordQuery,
        format: Format,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        let header: Vec<&str> = self.selected.iter().map(|c| c.name.as_str()).collect();
        let mut w = RowWriter::begin(format, out, &header, "records", "item")?;
        let width = header.len() + 1;
        store::for_each_record(conn, q, &header, |record| {
            let mut cells: Vec<(&str, Cow<str>)> = Vec::with_capacity(width);
            self.for_each_cell(record, |k, v| cells.push((k, v)));
            w.row(&cells)?;
            Ok(())
        })?;
        w.end()?;
        Ok(())
    }

    /// EAV rows (`record`, `field_name`, `value`), streamed likewise.
    fn write_eav(
        &self,
        conn: &rusqlite::Connection,
        q: &store::RecordQuery,
        format: Format,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        let header = ["record", "field_name", "value"];
        let columns: Vec<&str> = self.selected.iter().map(|c| c.name.as_str()).collect();
        let mut w = RowWriter::begin(format, out, &header, "records", "item")?;
        store::for_each_record(conn, q, &columns, |record| {
            for (c, v) in self.selected.iter().zip(&record.values) {
                let mut v = v.as_str();
                if c.file && !v.is_empty() {
                    v = DOCUMENT;
                }
                let (field, value) = match (&c.code, c.field) {
                    (Some(code), Some(i)) if v == "1" => {
                        (self.metadata[i].field_name.as_str(), code.as_str())
                    }
                    (Some(_), _) => continue,
                    _ if v.is_empty() => continue,
                    _ => (c.name.as_str(), v),
                };
                w.row(&[
                    ("record", record.name.as_str()),
                    ("field_name", field),
                    ("value", value),
                ])?;
            }
            Ok(())
        })?;
        w.end()?;
        Ok(())
    }
}

/// The label of a flat value (`rawOrLabel=label`): choice labels for
/// radio/dropdown, Yes/No, True/False, form status names; checkboxes give
/// Checked/Unchecked, or the choice label / blank with `exportCheckboxLabel`.
fn label_of(metadata: &[Field], col: &Column, raw: &str, checkbox_label: bool) -> String {
    let Some(i) = col.field else {
        return match raw {
            "0" => "Incomplete",
            "1" => "Unverified",
            "2" => "Complete",
            _ => raw,
        }
        .to_owned();
    };
    let field = &metadata[i];
    let choice_label = |code: &str| {
        field
            .select_choices_or_calculations
            .split('|')
            .filter_map(|c| c.split_once(','))
            .find(|(k, _)| k.trim() == code)
            .map(|(_, l)| l.trim().to_owned())
    };
    match (field.field_type.as_str(), &col.code) {
        ("checkbox", Some(code)) => match (raw == "1", checkbox_label) {
            (true, true) => choice_label(code).unwrap_or_default(),
            (false, true) => String::new(),
            (true, false) => "Checked".into(),
            (false, false) => "Unchecked".into(),
        },
        ("yesno", _) => match raw {
            "1" => "Yes".into(),
            "0" => "No".into(),
            _ => raw.to_owned(),
        },
        ("truefalse", _) => match raw {
            "1" => "True".into(),
            "0" => "False".into(),
            _ => raw.to_owned(),
        },
        ("radio" | "dropdown", _) => choice_label(raw).unwrap_or_else(|| raw.to_owned()),
        _ => raw.to_owned(),
    }
}

/// Groups the rows of an EAV import (`record`, `field_name`, `value`) into
/// flat rows, records in the order they first appear. A record's values
/// may be anywhere in the import, so these rows are held until its end.
struct EavRows<'p> {
    rid: &'p str,
    checkboxes: HashSet<&'p str>,
    flat: Vec<Map<String, Value>>,
    /// Each record's row in `flat`, found in O(1).
    at: HashMap<String, usize>,
}

impl<'p> EavRows<'p> {
    fn new(rid: &'p str, project: &'p Project) -> EavRows<'p> {
        EavRows {
            rid,
            checkboxes: project
                .metadata
                .iter()
                .filter(|f| f.field_type == "checkbox")
                .map(|f| f.field_name.as_str())
                .collect(),
            flat: Vec::new(),
            at: HashMap::new(),
        }
    }

    fn add(&mut self, row: &Map<String, Value>) {
        let record = text(row.get("record"));
        let field = text(row.get("field_name"));
        let value = text(row.get("value"));
        let flat = &mut self.flat;
        let rid = self.rid;
        let pos = *self.at.entry(record).or_insert_with_key(|record| {
            let mut m = Map::new();
            m.insert(rid.to_owned(), record.clone().into());
            flat.push(m);
            flat.len() - 1
        });
        if self.checkboxes.contains(field.as_str()) {
            flat[pos].insert(format!("{field}___{}", value.to_lowercase()), "1".into());
        } else {
            flat[pos].insert(field, value.into());
        }
    }
}

/// A JSON value as PHP would see it, borrowed when it is a string.
fn text_of(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        v => Cow::Owned(text(Some(v))),
    }
}

/// Import Records: `overwriteBehavior`, `forceAutoNumber`, `returnContent`,
/// the DAG rules of §5.5–5.6, per-form edit rights, Create Records right.
///
/// The rows are read from `data` one at a time (a large import is never
/// held whole; EAV rows are grouped by record first), each validated and —
/// while nothing has failed — written at once, in the request's
/// transaction. The first failure stops the writing; the rest is still
/// validated, so the answer lists every bad value as REDCap's does, and
/// what was written is rolled back: an import that fails changes nothing
/// (REDCap's all-or-nothing import).
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.project().status == 2 {
        return Err(ApiError::AnalysisCleanup);
    }
    // The settings part of the project (records are in the database).
    let project = ctx.project().clone();
    let mut import = Import::new(ctx, &project)?;
    let post = ctx.post;
    let format = ctx.format;
    // A missing `data` is an empty import.
    let data = post.get("data").and_then(|d| d.as_str());
    // Undoing a failed import: when the request has written nothing
    // before it, by rolling the transaction back and beginning anew (what
    // the request holds for its commit — page view, settings — waits in
    // the state, untouched); else by a savepoint, whose sub-journal copies
    // every page the import changes (a fifth of a large import's time).
    let clean = ctx.nothing_written();
    if !clean {
        ctx.sql(|c| c.execute_batch("SAVEPOINT record_import"))?;
    }
    let read = match data {
        None => Ok(()),
        Some(data) if post.str("type") == "eav" => {
            let mut eav = EavRows::new(project.record_id_field(), &project);
            format::for_each_row(format, data, |row| {
                eav.add(&row);
                Ok(())
            })
            .and_then(|()| {
                let rows = std::mem::take(&mut eav.flat);
                drop(eav);
                rows.into_iter().try_for_each(|row| import.row(ctx, row))
            })
        }
        Some(data) => format::for_each_row(format, data, |row| import.row(ctx, row)),
    };
    match read.and_then(|()| import.verdict()) {
        Ok(()) => {
            if !clean {
                ctx.sql(|c| c.execute_batch("RELEASE record_import"))?;
            }
            Ok(import_reply(ctx, &import.ids, &import.id_map, import.auto))
        }
        Err(e) => {
            // A storage failure rolls the whole request back (`handle`).
            if ctx.failure.is_none() {
                let undo = if clean {
                    "ROLLBACK; BEGIN IMMEDIATE"
                } else {
                    "ROLLBACK TO record_import; RELEASE record_import"
                };
                ctx.sql(|c| c.execute_batch(undo))?;
            }
            Err(e)
        }
    }
}

/// One Import Records request: what its rows are checked against, what
/// was found wrong so far, and the ids it has seen.
struct Import<'p> {
    project: &'p Project,
    pid: u64,
    rid: String,
    overwrite: bool,
    auto: bool,
    caller_dag: Option<u64>,
    record_create: bool,
    date_format: DateFormat,
    cols: Vec<Column>,
    /// Column index by name.
    by_name: HashMap<String, usize>,
    /// Per column: whether the caller may edit its form.
    can_edit: Vec<bool>,
    /// Per column of a radio/dropdown/yesno/truefalse field: its codes.
    codes: Vec<Vec<String>>,
    /// DAG ids by unique name.
    dags: HashMap<String, u64>,
    /// Auto-numbering: the prefix (`<group_id>-` for DAG users) and the
    /// next number.
    prefix: String,
    next: u64,
    /// Original id → new id (auto-numbering).
    id_map: BTreeMap<String, String>,
    /// Ids in the order they first appear.
    ids: Vec<String>,
    seen: HashSet<String>,
    // What is wrong, by REDCap's precedence.
    dag_field_in_dag: bool,
    bad_dags: Vec<String>,
    other_dag: Vec<String>,
    other_dag_seen: HashSet<String>,
    lines: Vec<ValidationLine>,
}

impl<'p> Import<'p> {
    fn new(ctx: &mut Ctx, project: &'p Project) -> Result<Import<'p>, ApiError> {
        let pid = ctx.pid();
        let rid = project.record_id_field().to_owned();
        let auto = ctx.post.flag("forceAutoNumber");
        let caller_dag = ctx.caller.group_id;
        let prefix = caller_dag.map(|g| format!("{g}-")).unwrap_or_default();
        let next = if auto {
            ctx.sql(|c| store::max_record_number(c, pid, &prefix))? + 1
        } else {
            0
        };
        let cols = columns(project);
        let rights = &ctx.caller.rights;
        let can_edit = cols
            .iter()
            .map(|c| rights.forms.get(&c.form).is_some_and(|r| r.can_edit()))
            .collect();
        let codes = cols
            .iter()
            .map(|c| match (c.field, &c.code) {
                (Some(i), None) => project.metadata[i].choice_codes(),
                _ => Vec::new(),
            })
            .collect();
        Ok(Import {
            project,
            pid,
            overwrite: ctx.post.str("overwriteBehavior") == "overwrite",
            auto,
            caller_dag,
            record_create: rights.record_create,
            date_format: DateFormat::from_param(ctx.post.str("dateFormat")),
            by_name: cols
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
            can_edit,
            codes,
            cols,
            dags: project
                .dag_unique_names()
                .into_iter()
                .zip(project.dags.iter().map(|d| d.id))
                .collect(),
            prefix,
            next,
            rid,
            id_map: BTreeMap::new(),
            ids: Vec::new(),
            seen: HashSet::new(),
            dag_field_in_dag: false,
            bad_dags: Vec::new(),
            other_dag: Vec::new(),
            other_dag_seen: HashSet::new(),
            lines: Vec::new(),
        })
    }

    /// Whether anything was found wrong (nothing more is written).
    fn failed(&self) -> bool {
        self.dag_field_in_dag
            || !self.bad_dags.is_empty()
            || !self.other_dag.is_empty()
            || !self.lines.is_empty()
    }

    /// The import's answer once every row was read: the first of REDCap's
    /// checks that failed, in its order.
    fn verdict(&mut self) -> Result<(), ApiError> {
        if self.dag_field_in_dag {
            return Err(ApiError::IllegalDagField);
        }
        let mut bad = std::mem::take(&mut self.bad_dags);
        bad.dedup();
        if !bad.is_empty() {
            return Err(ApiError::InvalidRecordDags { names: bad });
        }
        if !self.other_dag.is_empty() {
            let records = std::mem::take(&mut self.other_dag);
            return Err(ApiError::RecordsInOtherDag { records });
        }
        if !self.lines.is_empty() {
            let lines = std::mem::take(&mut self.lines);
            return Err(ApiError::RecordValidation { lines });
        }
        Ok(())
    }

    /// Validates one row and, while nothing has failed, writes it. An
    /// error is a storage failure (the request becomes a 500).
    fn row(&mut self, ctx: &mut Ctx, mut row: Map<String, Value>) -> Result<(), ApiError> {
        // DAG column rules (§5.5).
        if let Some(v) = row.get(DAG_FIELD) {
            if self.caller_dag.is_some() {
                self.dag_field_in_dag = true;
            } else {
                let name = text_of(v);
                let name = name.trim();
                if !name.is_empty() && !self.dags.contains_key(name) {
                    self.bad_dags.push(name.to_owned());
                }
            }
        }
        // Auto-numbering: `<group_id>-<n>` for DAG users, by the id as sent.
        let auto_id = self.auto.then(|| {
            let original = text(row.get(&self.rid));
            let (prefix, next) = (&self.prefix, &mut self.next);
            self.id_map
                .entry(original)
                .or_insert_with(|| {
                    let id = format!("{prefix}{next}");
                    *next += 1;
                    id
                })
                .clone()
        });
        // Dates arrive in `dateFormat` and are stored as YYYY-MM-DD.
        if self.date_format != DateFormat::Ymd {
            for (k, v) in row.iter_mut() {
                let Some(i) = self.by_name.get(k).and_then(|&c| self.cols[c].field) else {
                    continue;
                };
                let vtype = &self.project.metadata[i].text_validation_type_or_show_slider_number;
                if let Some(ymd) = validation::to_ymd(vtype, text(Some(v)).trim(), self.date_format)
                {
                    *v = Value::String(ymd);
                }
            }
        }
        let id = match auto_id {
            Some(id) => id,
            None => text(row.get(&self.rid)).trim().to_owned(),
        };
        if id.is_empty() {
            let line = line("", &self.rid, "", ValidationLine::BLANK_RECORD_ID);
            self.lines.push(line);
            return Ok(());
        }
        let pid = self.pid;
        let existing = ctx.sql(|c| store::record_group(c, pid, &id))?;
        self.check(&id, existing, &row);
        if self.seen.insert(id.clone()) {
            self.ids.push(id.clone());
        }
        if self.failed() {
            return Ok(());
        }
        self.apply(ctx, id, existing, &row)
    }

    /// REDCap's checks of one row's record and values.
    fn check(&mut self, id: &str, existing: Option<Option<u64>>, row: &Map<String, Value>) {
        let rid = self.rid.as_str();
        match existing {
            Some(existing_group) => match (self.caller_dag, existing_group) {
                (Some(mine), Some(theirs))
                    if mine != theirs && self.other_dag_seen.insert(id.to_owned()) =>
                {
                    self.other_dag.push(id.to_owned());
                }
                (Some(_), None) => self
                    .lines
                    .push(line(id, rid, id, ValidationLine::OTHER_DAG)),
                _ => {}
            },
            None if !self.record_create && !self.seen.contains(id) => {
                self.lines
                    .push(line(id, rid, id, ValidationLine::NO_RECORD_CREATE));
            }
            None => {}
        }
        for (k, v) in row {
            if k == rid || k == DAG_FIELD {
                continue;
            }
            let value = text_of(v);
            let Some(&c) = self.by_name.get(k.as_str()) else {
                self.lines
                    .push(line(id, k, &value, ValidationLine::NO_SUCH_FIELD));
                continue;
            };
            let col = &self.cols[c];
            // REDCap's record import skips File Upload fields (files come
            // only through Import File).
            if col.file {
                continue;
            }
            if !self.can_edit[c] && !value.is_empty() {
                self.lines
                    .push(line(id, k, &value, ValidationLine::NO_FORM_EDIT));
                continue;
            }
            let ok = match (col.field, &col.code) {
                (None, _) => ["", "0", "1", "2"].contains(&&*value),
                (Some(_), Some(_)) => ["", "0", "1"].contains(&&*value),
                (Some(_), None) => {
                    let codes = &self.codes[c];
                    value.is_empty() || codes.is_empty() || codes.iter().any(|x| *x == value)
                }
            };
            if !ok {
                self.lines
                    .push(line(id, k, &value, ValidationLine::BAD_CHOICE));
                continue;
            }
            if let Some(i) = col.field {
                let f = &self.project.metadata[i];
                if f.field_type == "text"
                    && !value.is_empty()
                    && !validation::valid(&f.text_validation_type_or_show_slider_number, &value)
                {
                    self.lines
                        .push(line(id, k, &value, ValidationLine::BAD_FORMAT));
                }
            }
        }
    }

    /// Writes one valid row: its record if new, the values that changed
    /// (one statement for all of them), the form status of the forms it
    /// touched, its DAG, its log rows.
    fn apply(
        &mut self,
        ctx: &mut Ctx,
        id: String,
        existing: Option<Option<u64>>,
        row: &Map<String, Value>,
    ) -> Result<(), ApiError> {
        let (pid, rid) = (self.pid, self.rid.as_str());
        let is_new = existing.is_none();
        let mut group = existing.flatten();
        let mut changes = String::new();
        let mut puts: Vec<(&str, Cow<str>)> = Vec::with_capacity(row.len() + 2);
        let old_values = if is_new {
            group = self.caller_dag;
            ctx.sql(|c| store::insert_record(c, pid, &id, group))?;
            puts.push((rid, Cow::Borrowed(id.as_str())));
            changes = format!("{rid} = '{id}'");
            BTreeMap::new()
        } else {
            ctx.sql(|c| store::record_values(c, pid, &id))?
        };
        let mut touched_forms: Vec<&str> = Vec::new();
        for (k, v) in row {
            let col = self.by_name.get(k.as_str()).map(|&c| &self.cols[c]);
            if k == rid || k == DAG_FIELD || col.is_some_and(|c| c.file) {
                continue;
            }
            let value = text_of(v);
            if value.is_empty() && !self.overwrite {
                continue;
            }
            let old = old_values.get(k).map(String::as_str).unwrap_or_default();
            if old != value {
                if value.is_empty() {
                    ctx.sql(|c| store::delete_value(c, pid, &id, k))?;
                }
                if !changes.is_empty() {
                    changes.push_str(", ");
                }
                changes.push_str(k);
                changes.push_str(" = '");
                changes.push_str(&value);
                changes.push('\'');
                if !value.is_empty() {
                    puts.push((k.as_str(), value.clone()));
                }
            }
            if let Some(c) = col
                && !value.is_empty()
                && !touched_forms.contains(&c.form.as_str())
            {
                touched_forms.push(&c.form);
            }
        }
        let statuses: Vec<String> = touched_forms
            .iter()
            .map(|form| format!("{form}_complete"))
            .filter(|s| !old_values.contains_key(s) && !puts.iter().any(|(k, _)| k == s))
            .collect();
        for s in &statuses {
            puts.push((s.as_str(), Cow::Borrowed("0")));
        }
        puts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        ctx.sql(|c| store::put_values(c, pid, &id, &puts))?;
        drop(puts);
        let mut dag_change = None;
        if let Some(v) = row.get(DAG_FIELD) {
            let name = text_of(v);
            let name = name.trim();
            let new_group = if name.is_empty() {
                None
            } else {
                self.dags.get(name).copied()
            };
            if (new_group.is_some() || self.overwrite) && group != new_group {
                ctx.sql(|c| store::set_record_group(c, pid, &id, new_group))?;
                group = new_group;
                dag_change = Some(if name.is_empty() {
                    "Remove record from Data Access Group".to_owned()
                } else {
                    format!(
                        "Assign record to Data Access Group (redcap_data_access_group = '{name}')"
                    )
                });
            }
        }
        let (kind, verb) = if is_new {
            (LogKind::RecordAdd, "Create record")
        } else {
            (LogKind::RecordEdit, "Update record")
        };
        if is_new || !changes.is_empty() {
            let action = format!("{} {id}", ctx.api_label(verb));
            ctx.log(kind, action, changes, Some(id.clone()), group);
        }
        if let Some(d) = dag_change {
            let action = format!("{} {id}", ctx.api_label("Update record"));
            let details = ctx.api_label(&d);
            ctx.log(LogKind::RecordEdit, action, details, Some(id), group);
        }
        if let Some(e) = ctx.failure.as_ref() {
            tracing::debug!("record import stopped: {e:#}");
            return Err(ApiError::InvalidContent);
        }
        Ok(())
    }
}

fn line(record: &str, field: &str, value: &str, message: &str) -> ValidationLine {
    ValidationLine {
        record: record.to_owned(),
        field: field.to_owned(),
        value: value.to_owned(),
        message: message.to_owned(),
    }
}

/// The answer of Import Records, by `returnContent` and `returnFormat` (§6.2).
fn import_reply(ctx: &Ctx, ids: &[String], id_map: &BTreeMap<String, String>, auto: bool) -> Reply {
    let f = ctx.return_format;
    let xml_head = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>";
    let list = |items: Vec<String>, csv_header: &str| match f {
        Format::Json => php_json(&Value::Array(
            items.into_iter().map(Value::String).collect(),
        )),
        Format::Xml => format!(
            "{xml_head}<ids>{}</ids>",
            items
                .iter()
                .map(|i| format!("<id>{i}</id>"))
                .collect::<String>()
        ),
        Format::Csv => {
            let mut s = format!("{csv_header}\n");
            for i in items {
                s.push_str(&i);
                s.push('\n');
            }
            s
        }
    };
    let body = match ctx.post.str("returnContent") {
        "ids" => list(ids.to_vec(), "id"),
        "auto_ids" if auto => {
            let pairs = id_map.iter().map(|(orig, new)| (new.clone(), orig.clone()));
            let mut pairs: Vec<(String, String)> = pairs.collect();
            let order: HashMap<&str, usize> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            pairs.sort_by_key(|(new, _)| order.get(new.as_str()).copied());
            list(
                pairs.into_iter().map(|(n, o)| format!("{n},{o}")).collect(),
                "id,original_id",
            )
        }
        "nothing" => String::new(),
        _ => match f {
            Format::Json => format!("{{\"count\": {}}}", ids.len()),
            Format::Xml => format!("{xml_head}<count>{}</count>", ids.len()),
            Format::Csv => ids.len().to_string(),
        },
    };
    Reply::ok(f, body)
}

/// Delete Records (`records[]`, optional `instrument`): API Import is checked
/// here (400 `api_135`); records outside the caller's DAG count as missing.
pub fn delete(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.api_import {
        return Err(ApiError::RecordDeleteNeedsImport);
    }
    let records = match ctx.post.get("records") {
        Some(v) => v.array_strings().ok_or(ApiError::RecordsNotArray)?,
        None => Vec::new(),
    };
    let records: Vec<String> = records.into_iter().filter(|r| !r.is_empty()).collect();
    if records.is_empty() {
        return Err(ApiError::NoRecordsGiven);
    }
    let instrument = ctx.post.str("instrument").to_owned();
    let project = ctx.project().clone();
    let project = &project;
    let pid = ctx.pid();
    if !instrument.is_empty() && !project.forms().contains(&instrument) {
        return Err(ApiError::InvalidParameterValues {
            parameter: "instrument",
            values: vec![instrument],
        });
    }
    let mut missing: Vec<String> = Vec::new();
    for r in &records {
        let found = ctx.sql(|c| store::record_group(c, pid, r))?;
        let hidden =
            found.is_none_or(|group| ctx.caller.group_id.is_some() && group != ctx.caller.group_id);
        if hidden {
            missing.push(r.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::RecordsDoNotExist { records: missing });
    }
    let cols: Vec<String> = columns(project)
        .into_iter()
        .filter(|c| c.form == instrument)
        .map(|c| c.name)
        .collect();
    let rid = project.record_id_field().to_owned();
    let mut deleted = Vec::new();
    let mut deleted_ids: BTreeSet<&str> = BTreeSet::new();
    let mut docs = Vec::new();
    let form = (!instrument.is_empty()).then_some(instrument.as_str());
    for r in &records {
        if !deleted_ids.insert(r.as_str()) {
            continue;
        }
        let Some(group) = ctx.sql(|c| store::record_group(c, pid, r))? else {
            continue;
        };
        let values = ctx.sql(|c| store::record_values(c, pid, r))?;
        docs.extend(files::record_docs(&project.metadata, &values, form));
        if instrument.is_empty() {
            ctx.sql(|c| store::delete_record(c, pid, r))?;
        } else {
            ctx.sql(|c| {
                for k in values.keys() {
                    if cols.contains(k) && *k != rid {
                        store::delete_value(c, pid, r, k)?;
                    }
                }
                Ok(())
            })?;
        }
        deleted.push((r.clone(), group));
    }
    // The record's files go with it.
    for doc in docs {
        ctx.state.remove_doc(doc);
    }
    let n = deleted.len();
    for (r, group) in deleted {
        let action = format!("{} {r}", ctx.api_label("Delete record"));
        let details = if instrument.is_empty() {
            format!("{rid} = '{r}'")
        } else {
            format!("instrument = '{instrument}'")
        };
        ctx.log(LogKind::RecordDelete, action, details, Some(r), group);
    }
    Ok(ctx.count(n))
}

/// Rename Record (`record`, `new_record_name`): Rename right at the entry
/// gate; validation failures come back with HTTP 200 and a plain message
/// (§10.3). Records outside the caller's DAG count as missing.
pub fn rename(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    use redcap::error::rename as msg;
    let old = ctx.post.str("record").trim().to_owned();
    let new = ctx.post.str("new_record_name").trim().to_owned();
    let format = ctx.format;
    let plain = |m: &str| Ok(Reply::ok(format, m.to_owned()));
    if old.is_empty() {
        return plain(msg::RECORD_MISSING);
    }
    let pid = ctx.pid();
    let found = ctx.sql(|c| store::record_group(c, pid, &old))?;
    let visible = found.is_some_and(|g| ctx.caller.group_id.is_none() || g == ctx.caller.group_id);
    if !visible {
        return plain(msg::RECORD_UNKNOWN);
    }
    if new.is_empty() {
        return plain(msg::NEW_NAME_MISSING);
    }
    if ctx.sql(|c| store::record_group(c, pid, &new))?.is_some() {
        return plain(msg::NEW_NAME_TAKEN);
    }
    let rid = ctx.project().record_id_field().to_owned();
    let group = found.flatten();
    ctx.sql(|c| {
        store::rename_record(c, pid, &old, &new)?;
        store::put_value(c, pid, &new, &rid, &new)
    })?;
    let action = format!("{} {new}", ctx.api_label("Update record"));
    let details = ctx.api_label(&format!("Rename record ({rid} = '{old}' -> '{new}')"));
    ctx.log(LogKind::RecordEdit, action, details, Some(new), group);
    Ok(Reply::ok(ctx.format, "1".into()))
}

/// Generate Next Record Name: the next integer, or `<group_id>-<n>` for a
/// DAG-assigned caller (§5.5). Needs some export right (403 "No Access").
pub fn next_record_name(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.has_any_export_right() {
        return Err(ApiError::NoExportAccess);
    }
    let prefix = ctx
        .caller
        .group_id
        .map(|g| format!("{g}-"))
        .unwrap_or_default();
    let pid = ctx.pid();
    let next = ctx.sql(|c| store::max_record_number(c, pid, &prefix))? + 1;
    Ok(Reply::ok(ctx.format, format!("{prefix}{next}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed writer answers what `render_rows` (and so PHP's
    /// json_encode) answers for the same rows, in every format.
    #[test]
    fn streamed_rows_match_render_rows() {
        let project: Project = serde_json::from_value(serde_json::json!({
            "id": 1, "title": "t", "purpose": 0, "creation_time": "",
            "members": {},
            "metadata": [
                {"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "R"},
                {"field_name": "name", "form_name": "f", "field_type": "text", "field_label": "N"}
            ],
            "dags": [{"id": 7, "name": "Site/A"}]
        }))
        .unwrap();
        let cols = columns(&project);
        let dag_names = project
            .dags
            .iter()
            .map(|d| d.id)
            .zip(project.dag_unique_names())
            .collect();
        let flat = FlatRows {
            metadata: project.metadata.clone(),
            selected: cols.clone(),
            labels: false,
            checkbox_label: false,
            with_dag: true,
            dag_names,
        };
        let records = [
            RecordRow {
                name: "1".into(),
                group_id: Some(7),
                values: ["1", "a/b \"q\" \\ é\n\u{1}, <x> & y", "0"]
                    .map(String::from)
                    .to_vec(),
            },
            RecordRow {
                name: "2".into(),
                group_id: None,
                values: ["2", "", ""].map(String::from).to_vec(),
            },
        ];
        let maps: Vec<Map<String, Value>> = records
            .iter()
            .map(|r| {
                let mut m = Map::new();
                flat.for_each_cell(r, |k, v| {
                    m.insert(k.to_owned(), Value::String(v.into_owned()));
                });
                m
            })
            .collect();
        let header: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        for format in [Format::Json, Format::Csv, Format::Xml] {
            for n in [0, 2] {
                let mut out = Vec::new();
                let mut w = RowWriter::begin(format, &mut out, &header, "records", "item").unwrap();
                for r in &records[..n] {
                    let mut cells = Vec::new();
                    flat.for_each_cell(r, |k, v| cells.push((k, v)));
                    w.row(&cells).unwrap();
                }
                w.end().unwrap();
                let expected =
                    crate::format::render_rows(format, &maps[..n], &header, "records", "item");
                assert_eq!(String::from_utf8(out).unwrap(), expected, "{format:?} {n}");
            }
        }
        let mut out = Vec::new();
        let w = RowWriter::begin(Format::Json, &mut out, &header, "records", "item").unwrap();
        w.end().unwrap();
        assert_eq!(out, b"[]");
        assert!(
            php_json(&Value::Array(maps.into_iter().map(Value::Object).collect()))
                .contains("a\\/b")
        );
    }
}
