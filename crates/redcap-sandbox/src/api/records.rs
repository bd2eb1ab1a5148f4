//! Records: Export / Import / Delete, flat and EAV, classic projects (§5.5,
//! §6.1–6.3).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use redcap::error::ValidationLine;
use redcap::{ApiError, ExportRight};
use serde_json::{Map, Value};

use super::validation::{self, DateFormat};
use super::{Ctx, files, metadata, text};
use crate::db::{Field, LogKind, Project};
use crate::filter_logic;
use crate::format::{self, Format, Reply, RowWriter, WriteBody, php_json};
use crate::store::{self, RecordRow, Slot};
use crate::surveys;
use std::collections::HashMap;

/// The DAG pseudo-field of flat rows.
const DAG_FIELD: &str = "redcap_data_access_group";
/// The survey identifier column (`exportSurveyFields`).
const SURVEY_IDENTIFIER: &str = "redcap_survey_identifier";

/// One data column of a flat row.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    form: String,
    /// The field it belongs to (`None` for `<form>_complete`).
    field: Option<usize>,
    /// For checkbox columns, the choice code.
    code: Option<String>,
    /// A File Upload field: its value is a doc id, exported flat as the
    /// file's name (EAV: the doc id) and never written by Import Records.
    file: bool,
}

/// What flat Export Records shows for a File Upload field whose doc has no
/// name (REDCap's `global_01`); a stored file shows its name.
const NO_FILE_NAME: &str = "ERROR";

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

/// The names of a project's flat columns (no pseudo-fields).
pub(crate) fn export_columns(project: &Project) -> Vec<String> {
    columns(project).into_iter().map(|c| c.name).collect()
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
    // `events`: unique event names of a longitudinal project.
    let events = ctx.post.list("events", true).unwrap_or_default();
    let unique_names = project.unique_event_names();
    let bad: Vec<String> = events
        .iter()
        .filter(|e| !unique_names.contains(e))
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "events",
            values: bad,
        });
    }
    let all_slots = project.is_longitudinal || project.has_repeating();
    let filter = match ctx.post.str("filterLogic").trim() {
        "" => None,
        src => Some(row_filter(ctx, src)?),
    };
    let layout = if all_slots {
        event_layouts(project, &selected, &events, labels)
    } else {
        Vec::new()
    };
    // Unique DAG names are derived from all labels: compute them once.
    let dag_names: HashMap<u64, String> = project
        .dags
        .iter()
        .map(|d| d.id)
        .zip(project.dag_unique_names())
        .collect();
    // The columns read: the selected ones, then those only the filter
    // logic needs.
    let mut read_columns: Vec<String> = selected.iter().map(|c| c.name.clone()).collect();
    let mut filter = filter;
    if let Some(f) = &mut filter {
        for (name, _) in &f.logic.columns {
            let i = match read_columns.iter().position(|c| c == name) {
                Some(i) => i,
                None => {
                    read_columns.push(name.clone());
                    read_columns.len() - 1
                }
            };
            f.cols.push(i);
        }
    }
    // Only the columns read are read (a filter of the query); the record
    // ID field too where it tells which events a record has.
    let stored_fields: Option<Vec<String>> = (selected.len() < all.len()).then(|| {
        let mut names = read_columns.clone();
        if all_slots && !names.contains(&rid) {
            names.push(rid.clone());
        }
        names
    });
    let rid_col = selected.iter().position(|c| c.name == rid);
    // `decimalCharacter`: numbers of calc and number-validated fields with
    // this decimal separator.
    let decimal = match ctx.post.str("decimalCharacter") {
        "," => Some(','),
        "." => Some('.'),
        _ => None,
    };
    let decimal_cols = selected
        .iter()
        .map(|c| {
            c.field.is_some_and(|i| {
                let f = &project.metadata[i];
                f.field_type == "calc"
                    || (f.field_type == "text"
                        && f.text_validation_type_or_show_slider_number
                            .starts_with("number"))
            })
        })
        .collect();
    // `csvDelimiter`: `,` (default), `tab`, `;`, `|`, `^`.
    let delimiter = match ctx.post.str("csvDelimiter") {
        "tab" => b'\t',
        ";" => b';',
        "|" => b'|',
        "^" => b'^',
        _ => b',',
    };
    // `dateRangeBegin`/`dateRangeEnd`: records created or changed in the
    // range, by the log (minute precision, as its timestamps).
    let range_end = |name: &'static str, default: &str| -> Result<String, ApiError> {
        let v = ctx.post.str(name).trim();
        if v.is_empty() {
            return Ok(default.to_owned());
        }
        let ok = [10, 16, 19].contains(&v.len())
            && v.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            });
        if !ok {
            return Err(ApiError::InvalidParameterValues {
                parameter: name,
                values: vec![v.to_owned()],
            });
        }
        Ok(v[..v.len().min(16)].to_owned())
    };
    let date_range = match (
        range_end("dateRangeBegin", "")?,
        range_end("dateRangeEnd", "9999-12-31 23:59")?,
    ) {
        (b, e) if b.is_empty() && e.starts_with("9999") => None,
        // A bare end date includes that whole day.
        (b, e) if e.len() == 10 => Some((b, format!("{e} 23:59"))),
        (b, e) => Some((b, e)),
    };
    let pid = ctx.pid();
    let file_names: HashMap<String, String> = if selected.iter().any(|c| c.file) {
        ctx.state
            .docs
            .iter()
            .filter(|(_, d)| d.project_id == pid)
            .map(|(id, d)| (id.to_string(), d.name.clone()))
            .collect()
    } else {
        HashMap::new()
    };
    // `exportSurveyFields`: the survey identifier and timestamps.
    let survey = if ctx.post.flag("exportSurveyFields") {
        let project = project.clone();
        let names: Vec<(&str, &str)> = selected
            .iter()
            .map(|c| (c.name.as_str(), c.form.as_str()))
            .collect();
        ctx.sql(|c| surveys::ExportColumns::new(c, &project, &names))?
    } else {
        None
    };
    let project = ctx.project();
    let flat = FlatRows {
        survey,
        metadata: project.metadata.clone(),
        selected,
        labels,
        checkbox_label: ctx.post.flag("exportCheckboxLabel"),
        with_dag,
        dag_names,
        longitudinal: project.is_longitudinal,
        repeating: project.has_repeating(),
        rid_col,
        layout,
        read_columns,
        filter,
        decimal,
        decimal_cols,
        label_headers: ctx.post.str("rawOrLabelHeaders") == "label",
        eav,
        file_names,
        combine: ctx.post.flag("combineCheckboxOptions"),
        blank_gray: ctx.post.flag("exportBlankForGrayFormStatus"),
    };
    let with_survey_fields = flat.survey.is_some();
    let pid = ctx.pid();
    let group_id = ctx.caller.group_id;
    let format = ctx.format;
    // `events`: only those events' values are read.
    // `[event][field]` in the filter logic reads those events too.
    let event_ids: Option<Vec<i64>> = (!events.is_empty()).then(|| {
        let mut ids: Vec<i64> = events
            .iter()
            .filter_map(|e| project.event_by_unique(e).map(|e| e.id))
            .collect();
        if let Some(f) = &flat.filter {
            ids.extend(
                f.logic
                    .events
                    .iter()
                    .filter(|e| !ids.contains(e))
                    .collect::<Vec<_>>(),
            );
        }
        ids
    });
    let write: WriteBody = Box::new(move |conn, out| {
        let mut wanted = wanted;
        if let Some((begin, end)) = &date_range {
            let changed = store::records_changed(conn, pid, begin, end)?;
            wanted = Some(match wanted {
                Some(w) => w.into_iter().filter(|r| changed.contains(r)).collect(),
                None => changed,
            });
        }
        let q = store::RecordQuery {
            project_id: pid,
            group_id,
            records: wanted.as_deref(),
            fields: stored_fields.as_deref(),
            all_slots,
            events: event_ids.as_deref(),
        };
        if eav {
            flat.write_eav(conn, &q, format, delimiter, out)
        } else {
            flat.write_flat(conn, &q, format, delimiter, out)
        }
    });
    // A report (api/reports.rs) is this export with its `report_id`.
    let report = match ctx.post.str("content") {
        "report" => format!("report_id: {}, ", ctx.post.str("report_id")),
        _ => String::new(),
    };
    let mut details = format!(
        "{report}export_format: {}, rawOrLabel: {}",
        ctx.format.log_name(),
        if labels { "label" } else { "raw" }
    );
    if with_dag {
        details.push_str(", export_data_access_group: Yes");
    }
    if with_survey_fields {
        details.push_str(", export_survey_fields: Yes");
    }
    ctx.log(LogKind::Export, "Data export (API) ", details, None, None);
    Ok(Reply::streamed(ctx.format, write, Vec::new()))
}

/// The event pseudo-field of a longitudinal project's rows.
const EVENT_FIELD: &str = "redcap_event_name";
/// The repeating pseudo-fields.
const REPEAT_INSTRUMENT: &str = "redcap_repeat_instrument";
const REPEAT_INSTANCE: &str = "redcap_repeat_instance";

/// How one event's slots become rows (longitudinal or repeating projects).
struct EventLayout {
    id: i64,
    /// The `redcap_event_name` value: the unique name, or the event's
    /// label with `rawOrLabel=label` (empty in a classic project).
    name: String,
    /// The whole event repeats: each instance is one row.
    repeats: bool,
    /// Its repeating instruments: (name as exported, columns kept).
    forms: Vec<(String, String, Vec<bool>)>,
    /// The columns of its non-repeating row (those of no repeating
    /// instrument).
    base: Vec<bool>,
}

/// An event's label as REDCap shows it in labelled exports, messages and
/// logs: its name, with `(Arm <n>: <arm name>)` when the project has more
/// than one arm holding events (REDCap's `multiple_arms` counts the arms of
/// its events: an arm without events does not count).
pub(crate) fn event_label(project: &Project, e: &crate::db::Event) -> String {
    if project.events.iter().all(|x| x.arm_num == e.arm_num) {
        return e.name.clone();
    }
    let arm = project
        .arms
        .iter()
        .find(|a| a.num == e.arm_num)
        .map(|a| a.name.as_str())
        .unwrap_or_default();
    format!("{} (Arm {}: {arm})", e.name, e.arm_num)
}

/// The layouts of the exported events, in the project's order (the classic
/// project's one implicit event when not longitudinal).
fn event_layouts(
    project: &Project,
    selected: &[Column],
    only: &[String],
    labels: bool,
) -> Vec<EventLayout> {
    let names = project.unique_event_names();
    let events: Vec<(i64, String)> = if project.is_longitudinal {
        project
            .events
            .iter()
            .zip(&names)
            .filter(|(_, n)| only.is_empty() || only.contains(n))
            .map(|(e, n)| {
                let shown = if labels {
                    event_label(project, e)
                } else {
                    n.clone()
                };
                (e.id, shown)
            })
            .collect()
    } else {
        vec![(store::CLASSIC_EVENT, String::new())]
    };
    let forms = project.forms();
    events
        .into_iter()
        .map(|(id, name)| {
            let repeating: Vec<&String> = forms
                .iter()
                .filter(|f| project.repeats_form(id, f))
                .collect();
            EventLayout {
                id,
                name,
                repeats: project.repeats_event(id),
                forms: repeating
                    .iter()
                    .map(|f| {
                        let shown = if labels {
                            metadata::form_label(project, f)
                        } else {
                            (*f).clone()
                        };
                        let keep = selected.iter().map(|c| &c.form == *f).collect();
                        ((*f).clone(), shown, keep)
                    })
                    .collect(),
                base: selected
                    .iter()
                    .map(|c| !repeating.contains(&&c.form))
                    .collect(),
            }
        })
        .collect()
}

/// What a flat export row is made of (owned: it is written after the
/// request's lock is released).
struct FlatRows {
    /// `exportSurveyFields`: the survey columns (`None`: off, or no survey).
    survey: Option<surveys::ExportColumns>,
    metadata: Vec<Field>,
    selected: Vec<Column>,
    labels: bool,
    checkbox_label: bool,
    with_dag: bool,
    dag_names: HashMap<u64, String>,
    /// Rows carry `redcap_event_name`.
    longitudinal: bool,
    /// Rows carry `redcap_repeat_instrument` and `redcap_repeat_instance`.
    repeating: bool,
    /// The record ID field's column, if selected: every row shows the
    /// record's name there.
    rid_col: Option<usize>,
    /// Per event, how its slots become rows; empty for a classic project
    /// without repetition (one row per record).
    layout: Vec<EventLayout>,
    /// The columns read: `selected`'s, then those only `filter` reads.
    read_columns: Vec<String>,
    /// `filterLogic`: only the rows it passes are exported.
    filter: Option<RowFilter>,
    /// `decimalCharacter`, and per selected column whether it applies.
    decimal: Option<char>,
    decimal_cols: Vec<bool>,
    /// `rawOrLabelHeaders=label`: a flat CSV's header shows labels.
    label_headers: bool,
    /// `combineCheckboxOptions` (flat only): a checkbox is one column.
    combine: bool,
    /// `exportBlankForGrayFormStatus`: a form without a status shows
    /// blank, not `0`.
    blank_gray: bool,
    /// An EAV export: File Upload fields show their stored doc id, as
    /// REDCap's EAV path reads `redcap_data` as it is.
    eav: bool,
    /// The project's file names by doc id, when a File Upload column is
    /// selected: a flat export shows the name (REDCap 15.7.6's
    /// `Records::getData` swaps `[document]` for `Files::getEdocName`).
    file_names: HashMap<String, String>,
}

/// One exported row of a record: a slot's values, the columns it shows,
/// and its pseudo-fields.
struct OutRow<'r> {
    /// The slot's values (every column read).
    values: &'r [String],
    /// The slot's event id ([`store::CLASSIC_EVENT`] in a classic project).
    event_id: i64,
    /// Columns shown (`None`: all).
    keep: Option<&'r [bool]>,
    event: &'r str,
    instrument: &'r str,
    instance: String,
}

impl FlatRows {
    /// Calls `row` with each row of a record in REDCap's order: by event,
    /// then its non-repeating row, then each repeating instrument's (in
    /// instrument order) or the repeating event's instances, ascending.
    fn for_each_row<'r>(
        &'r self,
        record: &'r RecordRow,
        mut emit: impl FnMut(OutRow<'r>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        // `filterLogic`: each row is checked as it is made.
        let mut row = |r: OutRow<'r>| match &self.filter {
            Some(f) if !f.passes(self, record, &r) => Ok(()),
            _ => emit(r),
        };
        if self.layout.is_empty() {
            let values = record.slots.first().map(|(_, v)| v.as_slice());
            return row(OutRow {
                values: values.unwrap_or_default(),
                event_id: store::CLASSIC_EVENT,
                keep: None,
                event: "",
                instrument: "",
                instance: String::new(),
            });
        }
        let mut instances: Vec<(i64, &'r [String])> = Vec::new();
        for e in &self.layout {
            instances.clear();
            instances.extend(
                record
                    .slots
                    .iter()
                    .filter(|(s, _)| s.event == e.id)
                    .map(|(s, v)| (s.instance, v.as_slice())),
            );
            if instances.is_empty() {
                continue;
            }
            instances.sort_unstable_by_key(|(i, _)| *i);
            if e.repeats {
                for (i, values) in &instances {
                    row(OutRow {
                        values,
                        event_id: e.id,
                        keep: None,
                        event: &e.name,
                        instrument: "",
                        instance: i.to_string(),
                    })?;
                }
                continue;
            }
            if let Some((1, values)) = instances.first() {
                row(OutRow {
                    values,
                    event_id: e.id,
                    keep: Some(&e.base),
                    event: &e.name,
                    instrument: "",
                    instance: String::new(),
                })?;
            }
            for (_, shown, keep) in &e.forms {
                for (i, values) in &instances {
                    let has_data = values
                        .iter()
                        .zip(keep)
                        .enumerate()
                        .any(|(c, (v, k))| *k && !v.is_empty() && Some(c) != self.rid_col);
                    if has_data {
                        row(OutRow {
                            values,
                            event_id: e.id,
                            keep: Some(keep),
                            event: &e.name,
                            instrument: shown,
                            instance: i.to_string(),
                        })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The header of flat rows: the selected columns with the
    /// pseudo-fields after the first.
    fn header(&self) -> Vec<String> {
        let mut header = Vec::with_capacity(self.selected.len() + 4);
        for (i, c) in self.selected.iter().enumerate() {
            if let Some((_, column)) = self.timestamp_before(i) {
                header.push(column.to_owned());
            }
            match self.combined(i) {
                Some(None) => {}
                Some(Some(f)) => header.push(self.metadata[f].field_name.clone()),
                None => header.push(c.name.clone()),
            }
            if i == 0 {
                header.extend(self.pseudo_names().into_iter().map(str::to_owned));
                if self.survey.is_some() {
                    header.push(SURVEY_IDENTIFIER.to_owned());
                }
            }
        }
        header
    }

    /// The survey (instrument, column name) whose timestamp column comes
    /// before column `i`.
    fn timestamp_before(&self, i: usize) -> Option<(&str, &str)> {
        self.survey
            .as_ref()
            .and_then(|s| s.before.get(i))
            .and_then(|f| f.as_ref())
            .map(|(form, column)| (form.as_str(), column.as_str()))
    }

    /// The header of a flat CSV with `rawOrLabelHeaders=label`: each
    /// field's label (tags removed), `<label> (choice=<choice label>)` for a
    /// checkbox column, `Complete?` for a form's status, and the
    /// pseudo-fields' names as REDCap's labelled exports show them (INF).
    fn label_header(&self) -> Vec<String> {
        let mut header = Vec::with_capacity(self.selected.len() + 4);
        for (i, c) in self.selected.iter().enumerate() {
            if self.timestamp_before(i).is_some() {
                header.push("Survey Timestamp".to_owned());
            }
            match self.combined(i) {
                Some(None) => continue,
                Some(Some(f)) => {
                    header.push(strip_tags(&self.metadata[f].field_label));
                    continue;
                }
                None => {}
            }
            header.push(match c.field {
                None => "Complete?".to_owned(),
                Some(f) => {
                    let field = &self.metadata[f];
                    let label = strip_tags(&field.field_label);
                    match &c.code {
                        Some(code) => format!(
                            "{label} (choice={})",
                            strip_tags(&label_of(&self.metadata, c, "1", true))
                        )
                        .replace("(choice=)", &format!("(choice={code})")),
                        None => label,
                    }
                }
            });
            if i == 0 {
                header.extend(self.pseudo_names().into_iter().map(|p| {
                    match p {
                        EVENT_FIELD => "Event Name",
                        REPEAT_INSTRUMENT => "Repeat Instrument",
                        REPEAT_INSTANCE => "Repeat Instance",
                        _ => "Data Access Group",
                    }
                    .to_owned()
                }));
                if self.survey.is_some() {
                    header.push("Survey Identifier".to_owned());
                }
            }
        }
        header
    }

    fn pseudo_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.longitudinal {
            names.push(EVENT_FIELD);
        }
        if self.repeating {
            names.push(REPEAT_INSTRUMENT);
            names.push(REPEAT_INSTANCE);
        }
        if self.with_dag {
            names.push(DAG_FIELD);
        }
        names
    }

    /// The value shown in column `i` of a row (`None`: not shown there).
    fn value<'r>(&'r self, record: &'r RecordRow, row: &OutRow<'r>, i: usize) -> &'r str {
        if Some(i) == self.rid_col && !self.layout.is_empty() {
            return &record.name;
        }
        if row.keep.is_some_and(|k| !k[i]) {
            return "";
        }
        let raw = row.values.get(i).map(String::as_str).unwrap_or_default();
        let col = &self.selected[i];
        if col.file && !raw.is_empty() && !self.eav {
            self.file_names
                .get(raw)
                .map(String::as_str)
                .unwrap_or(NO_FILE_NAME)
        } else if raw.is_empty() && col.code.is_some() {
            // An unchecked box is `0` in every row that shows it (REDCap
            // stores only checked ones; PyCap's doctests show `'0'`).
            "0"
        } else if raw.is_empty() && col.field.is_none() && !self.eav && !self.blank_gray {
            // A form without a status (gray) is Incomplete, `0`, in a flat
            // row that shows it — blank with `exportBlankForGrayFormStatus`
            // (REDCap 15.7.6's getData defaults).
            "0"
        } else {
            raw
        }
    }

    /// A value with `decimalCharacter` applied (number fields only).
    fn decimal<'r>(&self, i: usize, v: &'r str) -> Cow<'r, str> {
        match self.decimal {
            Some(d) if self.decimal_cols[i] => {
                let other = if d == ',' { '.' } else { ',' };
                if v.contains(other) {
                    Cow::Owned(v.replace(other, &d.to_string()))
                } else {
                    Cow::Borrowed(v)
                }
            }
            _ => Cow::Borrowed(v),
        }
    }

    /// With `combineCheckboxOptions`, how column `i` shows: `None` for a
    /// column shown as it is, `Some(Some(field))` for the first column of
    /// a checkbox (the one combined column), `Some(None)` for its others.
    fn combined(&self, i: usize) -> Option<Option<usize>> {
        if !self.combine {
            return None;
        }
        let c = &self.selected[i];
        c.code.as_ref()?;
        let first = i == 0 || self.selected[i - 1].field != c.field;
        Some(if first { c.field } else { None })
    }

    /// A checkbox's one combined cell (`combineCheckboxOptions`, flat
    /// only): the codes — with `rawOrLabel=label` the labels — of its
    /// checked choices, joined by commas (REDCap's `getData`).
    fn combined_value(&self, record: &RecordRow, row: &OutRow, first: usize) -> String {
        let field = self.selected[first].field;
        let mut checked: Vec<String> = Vec::new();
        for (i, c) in self.selected.iter().enumerate().skip(first) {
            if c.field != field || c.code.is_none() {
                break;
            }
            if self.value(record, row, i) == "1" {
                let code = c.code.clone().unwrap_or_default();
                checked.push(if self.labels {
                    label_of(&self.metadata, c, "1", true)
                } else {
                    code
                });
            }
        }
        checked.join(",")
    }

    /// Calls `cell` with each (column, value) of one flat row, in export
    /// order.
    fn for_each_cell<'r>(
        &'r self,
        record: &'r RecordRow,
        row: &OutRow<'r>,
        mut cell: impl FnMut(&'r str, Cow<'r, str>),
    ) {
        for (i, c) in self.selected.iter().enumerate() {
            if let (Some((form, column)), Some(s)) = (self.timestamp_before(i), &self.survey) {
                // Shown where the instrument's columns are.
                let shown = row.keep.is_none_or(|k| k[i]);
                let instance = row.instance.parse().unwrap_or(1);
                let ts = if shown {
                    s.timestamp(row.event_id, form, instance)
                } else {
                    String::new()
                };
                cell(column, Cow::Owned(ts));
            }
            match self.combined(i) {
                Some(None) => continue,
                Some(Some(f)) => {
                    let value = self.combined_value(record, row, i);
                    cell(self.metadata[f].field_name.as_str(), Cow::Owned(value));
                    continue;
                }
                None => {}
            }
            let raw = self.decimal(i, self.value(record, row, i));
            let value = if self.labels {
                Cow::Owned(label_of(&self.metadata, c, &raw, self.checkbox_label))
            } else {
                raw
            };
            cell(c.name.as_str(), value);
            if i == 0 {
                if self.longitudinal {
                    cell(EVENT_FIELD, Cow::Borrowed(row.event));
                }
                if self.repeating {
                    cell(REPEAT_INSTRUMENT, Cow::Borrowed(row.instrument));
                    cell(REPEAT_INSTANCE, Cow::Owned(row.instance.clone()));
                }
                if self.with_dag {
                    let dag = record
                        .group_id
                        .and_then(|g| self.dag_names.get(&g).map(String::as_str))
                        .unwrap_or_default();
                    cell(DAG_FIELD, Cow::Borrowed(dag));
                }
                if let Some(s) = &self.survey {
                    cell(SURVEY_IDENTIFIER, Cow::Owned(s.identifier()));
                }
            }
        }
    }

    /// Flat rows, streamed from the database in REDCap's record order.
    fn write_flat(
        &self,
        conn: &rusqlite::Connection,
        q: &store::RecordQuery,
        format: Format,
        delimiter: u8,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        let header = self.header();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let columns: Vec<&str> = self.read_columns.iter().map(String::as_str).collect();
        let mut w = RowWriter::begin(format, out, &header, "records", "item")?
            .numeric(&[REPEAT_INSTANCE])
            .delimiter(delimiter)?;
        if self.label_headers {
            w = w.csv_header(self.label_header());
        }
        let width = header.len();
        store::for_each_record(conn, q, &columns, |record| {
            if let Some(s) = &self.survey {
                s.load(conn, &record.name)?;
            }
            self.for_each_row(record, |row| {
                let mut cells: Vec<(&str, Cow<str>)> = Vec::with_capacity(width);
                self.for_each_cell(record, &row, |k, v| cells.push((k, v)));
                w.row(&cells)?;
                Ok(())
            })
        })?;
        w.end()?;
        Ok(())
    }

    /// EAV rows (`record`, the pseudo-fields, `field_name`, `value`),
    /// streamed likewise.
    fn write_eav(
        &self,
        conn: &rusqlite::Connection,
        q: &store::RecordQuery,
        format: Format,
        delimiter: u8,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<()> {
        let mut header = vec!["record"];
        if self.longitudinal {
            header.push(EVENT_FIELD);
        }
        if self.repeating {
            header.push(REPEAT_INSTRUMENT);
            header.push(REPEAT_INSTANCE);
        }
        header.extend(["field_name", "value"]);
        let columns: Vec<&str> = self.read_columns.iter().map(String::as_str).collect();
        let mut w = RowWriter::begin(format, out, &header, "records", "item")?
            .numeric(&[REPEAT_INSTANCE])
            .delimiter(delimiter)?;
        // `exportSurveyFields`: the instruments exported, for their
        // timestamp rows.
        let mut exported: Vec<&str> = Vec::new();
        for c in &self.selected {
            if !exported.contains(&c.form.as_str()) {
                exported.push(&c.form);
            }
        }
        store::for_each_record(conn, q, &columns, |record| {
            if let Some(s) = &self.survey {
                s.load(conn, &record.name)?;
            }
            let mut events_seen: Vec<i64> = Vec::new();
            self.for_each_row(record, |row| {
                for (i, c) in self.selected.iter().enumerate() {
                    let v = self.value(record, &row, i);
                    if row.keep.is_some_and(|k| !k[i]) {
                        continue;
                    }
                    let (field, value) = match (&c.code, c.field) {
                        (Some(code), Some(f)) if v == "1" => {
                            (self.metadata[f].field_name.as_str(), code.as_str())
                        }
                        (Some(_), _) => continue,
                        _ if v.is_empty() => continue,
                        _ => (c.name.as_str(), v),
                    };
                    let value = self.decimal(i, value);
                    let value = value.as_ref();
                    let mut cells: Vec<(&str, &str)> = vec![("record", record.name.as_str())];
                    if self.longitudinal {
                        cells.push((EVENT_FIELD, row.event));
                    }
                    if self.repeating {
                        cells.push((REPEAT_INSTRUMENT, row.instrument));
                        cells.push((REPEAT_INSTANCE, row.instance.as_str()));
                    }
                    cells.push(("field_name", field));
                    cells.push(("value", value));
                    w.row(&cells)?;
                    // After a record's first value row in an event, its
                    // survey rows (REDCap's EAV export), without instance.
                    if let Some(s) = &self.survey
                        && !events_seen.contains(&row.event_id)
                    {
                        events_seen.push(row.event_id);
                        for (field, value) in s.eav_rows(row.event_id, &exported) {
                            let mut cells: Vec<(&str, &str)> =
                                vec![("record", record.name.as_str())];
                            if self.longitudinal {
                                cells.push((EVENT_FIELD, row.event));
                            }
                            if self.repeating {
                                cells.push((REPEAT_INSTRUMENT, ""));
                                cells.push((REPEAT_INSTANCE, ""));
                            }
                            cells.push(("field_name", &field));
                            cells.push(("value", &value));
                            w.row(&cells)?;
                        }
                    }
                }
                Ok(())
            })
        })?;
        w.end()?;
        Ok(())
    }
}

/// Text without HTML tags, trimmed (labels in headers and PDFs).
pub(super) fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

/// `filterLogic`, checked against the project, with what its evaluation
/// needs from a row.
struct RowFilter {
    logic: filter_logic::Logic,
    /// Per column of the logic, its index among the columns read.
    cols: Vec<usize>,
    /// Per column of the logic: whether it is the record ID field, a
    /// checkbox column.
    is_rid: Vec<bool>,
    is_checkbox: Vec<bool>,
    /// Per column of the logic, the events where its instrument repeats;
    /// and the events that repeat whole.
    repeats_in: Vec<HashSet<i64>>,
    repeating_events: HashSet<i64>,
    /// Event id → unique name, label, arm number.
    events: HashMap<i64, (String, String, u32)>,
    /// The caller (`[user-name]`).
    user: String,
}

/// Parses `filterLogic` against the project (400 when it is bad).
fn row_filter(ctx: &Ctx, src: &str) -> Result<RowFilter, ApiError> {
    let project = ctx.project();
    let mut fields: HashMap<String, (String, bool, Vec<String>)> = project
        .metadata
        .iter()
        .filter(|f| !f.is_descriptive())
        .map(|f| {
            let checkbox = f.field_type == "checkbox";
            let codes = if checkbox {
                f.choice_codes()
            } else {
                Vec::new()
            };
            (f.field_name.clone(), (f.form_name.clone(), checkbox, codes))
        })
        .collect();
    let forms = project.forms();
    for form in &forms {
        fields.insert(
            format!("{form}_complete"),
            (form.clone(), false, Vec::new()),
        );
    }
    let names = project.unique_event_names();
    let schema = filter_logic::Schema {
        fields,
        events: if project.is_longitudinal {
            names
                .iter()
                .zip(&project.events)
                .map(|(n, e)| (n.clone(), e.id))
                .collect()
        } else {
            HashMap::new()
        },
        now: ctx.now.second.clone(),
    };
    let logic = filter_logic::parse(src, &schema)
        .map_err(|e| ApiError::InvalidFilterLogic { reason: e.0 })?;
    let rid = project.record_id_field();
    let mut events: HashMap<i64, (String, String, u32)> = project
        .events
        .iter()
        .zip(names)
        .map(|(e, n)| (e.id, (n, event_label(project, e), e.arm_num)))
        .collect();
    events
        .entry(store::CLASSIC_EVENT)
        .or_insert_with(|| (String::new(), String::new(), 1));
    let event_ids: Vec<i64> = events.keys().copied().collect();
    Ok(RowFilter {
        is_rid: logic.columns.iter().map(|(c, _)| c == rid).collect(),
        is_checkbox: logic
            .columns
            .iter()
            .map(|(c, _)| c.contains("___") && !fields_has(project, c))
            .collect(),
        repeats_in: logic
            .columns
            .iter()
            .map(|(_, form)| {
                event_ids
                    .iter()
                    .copied()
                    .filter(|&e| project.repeats_form(e, form))
                    .collect()
            })
            .collect(),
        repeating_events: event_ids
            .iter()
            .copied()
            .filter(|&e| project.repeats_event(e))
            .collect(),
        cols: Vec::new(),
        events,
        user: ctx.caller.username.to_lowercase(),
        logic,
    })
}

/// Whether `name` is a field of the project (not a checkbox column).
fn fields_has(project: &Project, name: &str) -> bool {
    project.metadata.iter().any(|f| f.field_name == name)
}

impl RowFilter {
    /// Whether the filter logic passes on this row of `record`.
    fn passes(&self, flat: &FlatRows, record: &RecordRow, row: &OutRow) -> bool {
        let instance = row.instance.parse::<i64>().unwrap_or(1);
        self.logic.matches(&FilterRow {
            filter: self,
            flat,
            record,
            row,
            instance,
        })
    }

    /// A column's value in one event's first instance.
    fn in_event<'r>(&self, record: &'r RecordRow, event: i64, i: usize) -> &'r str {
        record
            .slots
            .iter()
            .find(|(s, _)| s.event == event && s.instance == 1)
            .and_then(|(_, v)| v.get(i))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// One row as the filter logic sees it.
struct FilterRow<'a> {
    filter: &'a RowFilter,
    flat: &'a FlatRows,
    record: &'a RecordRow,
    row: &'a OutRow<'a>,
    instance: i64,
}

impl filter_logic::Row for FilterRow<'_> {
    fn value(&self, col: usize, event: Option<i64>) -> &str {
        let f = self.filter;
        if f.is_rid[col] {
            return &self.record.name;
        }
        let i = f.cols[col];
        let here = self.row.event_id;
        let v = match event {
            Some(e) => f.in_event(self.record, e, i),
            None => {
                let repeating_form = f.repeats_in[col].contains(&here);
                if repeating_form && self.row.instrument.is_empty() {
                    // The event's non-repeating row does not show it.
                    ""
                } else if repeating_form
                    || f.repeating_events.contains(&here)
                    || self.flat.layout.is_empty()
                {
                    self.row
                        .values
                        .get(i)
                        .map(String::as_str)
                        .unwrap_or_default()
                } else {
                    f.in_event(self.record, here, i)
                }
            }
        };
        if v.is_empty() && f.is_checkbox[col] {
            "0"
        } else {
            v
        }
    }

    fn value_at(&self, col: usize, event: Option<i64>, instance: i64) -> &str {
        let f = self.filter;
        if f.is_rid[col] {
            return &self.record.name;
        }
        let i = f.cols[col];
        let event = event.unwrap_or(self.row.event_id);
        let v = self
            .record
            .slots
            .iter()
            .find(|(s, _)| s.event == event && s.instance == instance)
            .and_then(|(_, v)| v.get(i))
            .map(String::as_str)
            .unwrap_or_default();
        if v.is_empty() && f.is_checkbox[col] {
            "0"
        } else {
            v
        }
    }

    fn smart(&self, s: filter_logic::Smart) -> String {
        use filter_logic::Smart;
        let event = self.filter.events.get(&self.row.event_id);
        match s {
            Smart::RecordName => self.record.name.clone(),
            Smart::EventName => event.map(|e| e.0.clone()).unwrap_or_default(),
            Smart::EventLabel => event.map(|e| e.1.clone()).unwrap_or_default(),
            Smart::ArmNumber => event.map(|e| e.2.to_string()).unwrap_or_default(),
            Smart::RecordDagName => self
                .record
                .group_id
                .and_then(|g| self.flat.dag_names.get(&g).cloned())
                .unwrap_or_default(),
            Smart::CurrentInstance => self.instance.to_string(),
            Smart::UserName => self.filter.user.clone(),
        }
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
        // A record's values group by their slot's pseudo-fields, if sent.
        let pseudo: Vec<(&str, String)> = [EVENT_FIELD, REPEAT_INSTRUMENT, REPEAT_INSTANCE]
            .into_iter()
            .filter_map(|k| row.get(k).map(|v| (k, text(Some(v)))))
            .collect();
        let mut key = record.clone();
        for (_, v) in &pseudo {
            key.push('\0');
            key.push_str(v);
        }
        let flat = &mut self.flat;
        let rid = self.rid;
        let pos = *self.at.entry(key).or_insert_with(|| {
            let mut m = Map::new();
            m.insert(rid.to_owned(), record.clone().into());
            for (k, v) in pseudo {
                m.insert(k.to_owned(), v.into());
            }
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
    /// The project has events or repetition: rows name their slot.
    slotted: bool,
    /// Unique event names, aligned with `project.events`.
    event_names: Vec<String>,
}

/// Where an imported row's values go.
struct Target {
    slot: Slot,
    /// Its event's label (`Event 1 (Arm 1: Arm 1)`), in messages and the
    /// log (empty in a classic project).
    event_label: String,
    /// The repeating instrument the row is for.
    instrument: Option<String>,
    /// The slot holding the record ID value for this event: the
    /// instance's own for a repeating event, else instance 1.
    anchor: Slot,
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
            slotted: project.is_longitudinal || project.has_repeating(),
            event_names: project.unique_event_names(),
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
        let target = self.target(ctx, &id, &row)?;
        self.check(&id, existing, &row, target.as_ref());
        if self.seen.insert(id.clone()) {
            self.ids.push(id.clone());
        }
        let Some(target) = target else {
            return Ok(());
        };
        if self.failed() {
            return Ok(());
        }
        self.apply(ctx, id, existing, &row, &target)
    }

    /// The slot a row's values go to: its `redcap_event_name` (the first
    /// event when blank), `redcap_repeat_instrument` and
    /// `redcap_repeat_instance` (`new`: the next instance). `None` (with
    /// the line saying why) when they name no slot.
    fn target(
        &mut self,
        ctx: &mut Ctx,
        id: &str,
        row: &Map<String, Value>,
    ) -> Result<Option<Target>, ApiError> {
        let project = self.project;
        if !self.slotted {
            return Ok(Some(Target {
                slot: Slot::CLASSIC,
                event_label: String::new(),
                instrument: None,
                anchor: Slot::CLASSIC,
            }));
        }
        let (event, event_label) = if project.is_longitudinal {
            let name = text(row.get(EVENT_FIELD));
            let name = name.trim();
            let found = if name.is_empty() {
                project.events.first()
            } else {
                self.event_names
                    .iter()
                    .position(|n| n == name)
                    .map(|i| &project.events[i])
            };
            let Some(e) = found else {
                self.lines
                    .push(line(id, EVENT_FIELD, name, ValidationLine::BAD_EVENT));
                return Ok(None);
            };
            (e.id, event_label(project, e))
        } else {
            (store::CLASSIC_EVENT, String::new())
        };
        let instrument = text(row.get(REPEAT_INSTRUMENT)).trim().to_owned();
        let instance = text(row.get(REPEAT_INSTANCE)).trim().to_owned();
        let repeats_event = project.repeats_event(event);
        if !instrument.is_empty() && !project.repeats_form(event, &instrument) {
            let l = line(
                id,
                REPEAT_INSTRUMENT,
                &instrument,
                ValidationLine::BAD_REPEAT_INSTRUMENT,
            );
            self.lines.push(l);
            return Ok(None);
        }
        let repeating = !instrument.is_empty() || repeats_event;
        let instance = match (repeating, instance.as_str()) {
            (false, "") => 1,
            (false, v) => {
                let l = line(
                    id,
                    REPEAT_INSTANCE,
                    v,
                    ValidationLine::MISSING_REPEAT_INSTANCE,
                );
                self.lines.push(l);
                return Ok(None);
            }
            (true, "") if instrument.is_empty() => 1,
            (true, "") => {
                let l = line(
                    id,
                    REPEAT_INSTANCE,
                    "",
                    ValidationLine::MISSING_REPEAT_INSTANCE,
                );
                self.lines.push(l);
                return Ok(None);
            }
            (true, "new") => {
                // The next instance of this instrument (or event) for the
                // record: after every stored one.
                let fields: Vec<String> = self
                    .cols
                    .iter()
                    .filter(|c| instrument.is_empty() || c.form == instrument)
                    .map(|c| c.name.clone())
                    .collect();
                let pid = self.pid;
                ctx.sql(|c| store::max_instance(c, pid, id, event, &fields))? + 1
            }
            (true, v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    let l = line(id, REPEAT_INSTANCE, v, ValidationLine::BAD_REPEAT_INSTANCE);
                    self.lines.push(l);
                    return Ok(None);
                }
            },
        };
        let slot = Slot { event, instance };
        Ok(Some(Target {
            slot,
            event_label,
            instrument: (!instrument.is_empty()).then_some(instrument),
            anchor: if repeats_event {
                slot
            } else {
                Slot { event, instance: 1 }
            },
        }))
    }

    /// Why a value of `col` cannot go to the row's slot, if it cannot: its
    /// instrument is not designated for the event, or the row is for
    /// another (or no) repeating instrument.
    fn misplaced(&self, col: &Column, t: &Target) -> Option<String> {
        if !self.slotted {
            return None;
        }
        let project = self.project;
        let name = col.field.map(|i| project.metadata[i].field_name.as_str());
        if name == Some(self.rid.as_str()) {
            return None;
        }
        if project.is_longitudinal
            && !project
                .events
                .iter()
                .any(|e| e.id == t.slot.event && e.forms.contains(&col.form))
        {
            return Some(
                ValidationLine::NOT_DESIGNATED
                    .replace("{field}", name.unwrap_or(&col.name))
                    .replace("{event}", &t.event_label),
            );
        }
        match &t.instrument {
            Some(form) if *form != col.form => Some(ValidationLine::OTHER_INSTRUMENT.into()),
            None if project.repeats_form(t.slot.event, &col.form) => {
                Some(ValidationLine::MISSING_REPEAT_INSTANCE.into())
            }
            _ => None,
        }
    }

    /// Whether a column of the row is one of the slot's pseudo-fields.
    fn is_pseudo(&self, k: &str) -> bool {
        self.slotted && [EVENT_FIELD, REPEAT_INSTRUMENT, REPEAT_INSTANCE].contains(&k)
    }

    /// REDCap's checks of one row's record and values.
    fn check(
        &mut self,
        id: &str,
        existing: Option<Option<u64>>,
        row: &Map<String, Value>,
        target: Option<&Target>,
    ) {
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
            if k == rid || k == DAG_FIELD || self.is_pseudo(k) {
                continue;
            }
            let value = text_of(v);
            let Some(&c) = self.by_name.get(k.as_str()) else {
                self.lines
                    .push(line(id, k, &value, ValidationLine::NO_SUCH_FIELD));
                continue;
            };
            let col = &self.cols[c];
            if let Some(t) = target
                && !value.is_empty()
                && let Some(message) = self.misplaced(col, t)
            {
                self.lines.push(line(id, k, &value, &message));
                continue;
            }
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
        target: &Target,
    ) -> Result<(), ApiError> {
        let (pid, rid) = (self.pid, self.rid.as_str());
        let slot = target.slot;
        let is_new = existing.is_none();
        let mut group = existing.flatten();
        let mut changes = String::new();
        let mut puts: Vec<(&str, Cow<str>)> = Vec::with_capacity(row.len() + 2);
        if is_new {
            group = self.caller_dag;
            ctx.sql(|c| store::insert_record(c, pid, &id, group))?;
            changes = format!("{rid} = '{id}'");
        }
        // A new record has no values to compare with: nothing is read.
        let old_values = if is_new {
            if !self.slotted {
                puts.push((rid, Cow::Borrowed(id.as_str())));
            }
            BTreeMap::new()
        } else {
            ctx.sql(|c| store::record_values_in(c, pid, &id, slot))?
        };
        // The record ID value marks the event as holding the record.
        if self.slotted {
            let anchor = target.anchor;
            if anchor == slot {
                if !old_values.contains_key(rid) {
                    puts.push((rid, Cow::Borrowed(id.as_str())));
                }
            } else {
                ctx.sql(|c| store::put_value_if_absent_in(c, pid, &id, anchor, rid, &id))?;
            }
        }
        let mut touched_forms: Vec<&str> = Vec::new();
        for (k, v) in row {
            let col = self.by_name.get(k.as_str()).map(|&c| &self.cols[c]);
            if k == rid || k == DAG_FIELD || self.is_pseudo(k) || col.is_some_and(|c| c.file) {
                continue;
            }
            let value = text_of(v);
            if value.is_empty() && !self.overwrite {
                continue;
            }
            let old = old_values.get(k).map(String::as_str).unwrap_or_default();
            if old != value {
                if value.is_empty() {
                    ctx.sql(|c| store::delete_value_in(c, pid, &id, slot, k))?;
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
        ctx.sql(|c| store::put_values_in(c, pid, &id, slot, &puts))?;
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
            let mut action = format!("{} {id}", ctx.api_label(verb));
            if !target.event_label.is_empty() {
                action = format!("{action} ({})", target.event_label);
            }
            if slot.instance > 1 {
                changes = format!("[instance = {}], {changes}", slot.instance);
            }
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
    // Part of each record: an event (`event`), an arm's events (`arm`),
    // an instance (`repeat_instance`), an instrument (`instrument`).
    let event = ctx.post.str("event").trim().to_owned();
    let event_id = if event.is_empty() {
        None
    } else {
        match project.event_by_unique(&event) {
            Some(e) if project.is_longitudinal => Some(e.id),
            _ => {
                return Err(ApiError::InvalidParameterValues {
                    parameter: "event",
                    values: vec![event],
                });
            }
        }
    };
    let arm = ctx.post.str("arm").trim().to_owned();
    let arm_events: Option<Vec<i64>> = if arm.is_empty() || !project.is_longitudinal {
        None
    } else {
        match arm.parse::<u32>() {
            Ok(n) if project.arms.iter().any(|a| a.num == n) => Some(
                project
                    .events
                    .iter()
                    .filter(|e| e.arm_num == n)
                    .map(|e| e.id)
                    .collect(),
            ),
            _ => {
                return Err(ApiError::InvalidParameterValues {
                    parameter: "arm",
                    values: vec![arm],
                });
            }
        }
    };
    let instance_param = ctx.post.str("repeat_instance").trim().to_owned();
    let instance = if instance_param.is_empty() || !project.has_repeating() {
        None
    } else {
        match instance_param.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ApiError::InvalidParameterValues {
                    parameter: "repeat_instance",
                    values: vec![instance_param],
                });
            }
        }
    };
    let partial =
        !instrument.is_empty() || event_id.is_some() || arm_events.is_some() || instance.is_some();
    let cols: HashSet<String> = columns(project)
        .into_iter()
        .filter(|c| c.form == instrument)
        .map(|c| c.name)
        .collect();
    let rid = project.record_id_field().to_owned();
    let removes = |slot: Slot, field: &str| {
        event_id.is_none_or(|e| slot.event == e)
            && arm_events
                .as_ref()
                .is_none_or(|events| events.contains(&slot.event))
            && instance.is_none_or(|i| slot.instance == i)
            && (instrument.is_empty() || (cols.contains(field) && field != rid))
    };
    let mut deleted = Vec::new();
    let mut deleted_ids: BTreeSet<&str> = BTreeSet::new();
    let mut docs = Vec::new();
    for r in &records {
        if !deleted_ids.insert(r.as_str()) {
            continue;
        }
        let Some(group) = ctx.sql(|c| store::record_group(c, pid, r))? else {
            continue;
        };
        if partial {
            let all = ctx.sql(|c| store::record_all_values(c, pid, r))?;
            let mut gone: BTreeMap<String, String> = BTreeMap::new();
            let mut left = 0usize;
            for (slot, field, value) in all {
                if removes(slot, &field) {
                    ctx.sql(|c| store::delete_value_in(c, pid, r, slot, &field))?;
                    gone.insert(field, value);
                } else {
                    left += 1;
                }
            }
            docs.extend(files::record_docs(&project.metadata, &gone, None));
            // An event (or arm) emptied of the record's values: nothing of
            // the record is left there; a record with no values left is gone.
            if left == 0 {
                ctx.sql(|c| store::delete_record(c, pid, r))?;
            }
        } else {
            let all = ctx.sql(|c| store::record_all_values(c, pid, r))?;
            let values: BTreeMap<String, String> =
                all.into_iter().map(|(_, f, v)| (f, v)).collect();
            docs.extend(files::record_docs(&project.metadata, &values, None));
            ctx.sql(|c| store::delete_record(c, pid, r))?;
        }
        deleted.push((r.clone(), group));
    }
    // The record's files go with it.
    for doc in docs {
        ctx.state.remove_doc(doc);
    }
    let n = deleted.len();
    for (r, group) in deleted {
        let mut action = format!("{} {r}", ctx.api_label("Delete record"));
        if let Some(e) = event_id.and_then(|id| project.events.iter().find(|e| e.id == id)) {
            action = format!("{action} ({})", event_label(project, e));
        }
        let mut details = if instrument.is_empty() {
            format!("{rid} = '{r}'")
        } else {
            format!("instrument = '{instrument}'")
        };
        if let Some(i) = instance {
            details = format!("[instance = {i}], {details}");
        }
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
            survey: None,
            metadata: project.metadata.clone(),
            selected: cols.clone(),
            labels: false,
            checkbox_label: false,
            with_dag: true,
            dag_names,
            longitudinal: false,
            repeating: false,
            rid_col: Some(0),
            layout: Vec::new(),
            read_columns: cols.iter().map(|c| c.name.clone()).collect(),
            filter: None,
            decimal: None,
            decimal_cols: vec![false; cols.len()],
            label_headers: false,
            eav: false,
            file_names: HashMap::new(),
            combine: false,
            blank_gray: false,
        };
        let records = [
            RecordRow::classic(
                "1",
                Some(7),
                ["1", "a/b \"q\" \\ é\n\u{1}, <x> & y", "0"]
                    .map(String::from)
                    .to_vec(),
            ),
            RecordRow::classic("2", None, ["2", "", ""].map(String::from).to_vec()),
        ];
        fn row_of(r: &RecordRow) -> OutRow<'_> {
            OutRow {
                values: &r.slots[0].1,
                event_id: store::CLASSIC_EVENT,
                keep: None,
                event: "",
                instrument: "",
                instance: String::new(),
            }
        }
        let maps: Vec<Map<String, Value>> = records
            .iter()
            .map(|r| {
                let mut m = Map::new();
                flat.for_each_cell(r, &row_of(r), |k, v| {
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
                    flat.for_each_cell(r, &row_of(r), |k, v| cells.push((k, v)));
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
