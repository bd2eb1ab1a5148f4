//! `content=pdf`: instruments as a PDF document (the writer is
//! [`crate::pdf`]).
//!
//! Read in REDCap 15.7.6's `API/pdf/export.php` and `Classes/PDF.php`
//! (facts only):
//!
//! - "No Access" export rights on every form: 403 (after the entry gate's
//!   API Export);
//! - `instrument` unknown: 400 `Invalid instrument`; with a `record`: in a
//!   longitudinal project an unknown `event` is 400 `Invalid event` (no
//!   `event`: every event), then an unknown record 400 `The record '<r>'
//!   does not exist`;
//! - `repeat_instance` counts where the instrument or event repeats;
//! - what is printed: `allRecords` (or `allrecords`; any value, even
//!   empty) every record's data, ignoring `record`, `instrument` and
//!   `event`; else `instrument` alone one blank instrument, with `record`
//!   that record's data in it; `record` alone every instrument with the
//!   record's data; nothing, every instrument blank; `compactDisplay`
//!   (`1`/`true`) leaves out fields without a value and unselected
//!   choices;
//! - the file name: the instrument's label (one instrument) then the
//!   project's title, each with its words capitalised and everything but
//!   letters and digits removed, cut to 30 characters, then
//!   `_YYYY-MM-DD_HHMM` when it holds data;
//! - logged (Manage/Design, with the record): "Download data entry form as
//!   PDF", "… (with data)", "Download all data entry forms as PDF", "…
//!   (with data)", "… (all records)"; Export Logging's `logtype=export`
//!   shows the "(with data)" rows, `manage` the others.
//!
//! REDCap answers the FPDF string with PHP's default headers; the sandbox
//! sends `Content-Type: application/pdf` and the file name in
//! `Content-Disposition` (see docs/sandbox.md).

use redcap::{ApiError, ExportRight};

use super::{Ctx, metadata, records};
use crate::db::{Field, LogKind, Project};
use crate::format::Reply;
use crate::pdf::{Document, Font};
use crate::store::{self, CLASSIC_EVENT, RecordQuery};

/// What the PDF holds.
enum Mode {
    /// Blank instruments.
    Blank,
    /// One record's data.
    Record(String),
    /// Every record's data.
    AllRecords,
}

pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let project = ctx.project().clone();
    let req = Request::read(ctx, &project)?;
    let bytes = req.document(ctx, &project)?;
    let name = req.file_name(&project, &ctx.now.second);
    req.log(ctx)?;
    Ok(Reply {
        status: 200,
        content_type: "application/pdf".into(),
        body: bytes,
        headers: vec![(
            "content-disposition",
            format!("attachment; filename=\"{name}.pdf\""),
        )],
        stream: None,
    })
}

/// A `pdf` request, checked.
struct Request {
    /// `instrument` (empty: every one).
    form: String,
    /// `record` (empty: none).
    record: String,
    /// The event asked for (a classic project's one event; `None`: every
    /// event of a longitudinal project).
    event: Option<i64>,
    /// The instrument or event repeats: `instance` counts.
    repeats: bool,
    instance: i64,
    compact: bool,
    all_records: bool,
    mode: Mode,
    /// What the log row says.
    description: &'static str,
}

impl Request {
    /// The parameters, checked in REDCap's order.
    fn read(ctx: &mut Ctx, project: &Project) -> Result<Request, ApiError> {
        if !ctx.caller.rights.has_any_export_right() {
            return Err(ApiError::NoExportAccess);
        }
        let form = ctx.post.str("instrument").to_owned();
        if !form.is_empty() && !project.forms().contains(&form) {
            return Err(ApiError::InvalidInstrument);
        }
        let record = ctx.post.str("record").to_owned();
        let mut event: Option<i64> = (!project.is_longitudinal).then_some(CLASSIC_EVENT);
        if !record.is_empty() {
            if project.is_longitudinal {
                let name = ctx.post.str("event");
                if !name.is_empty() {
                    let e = project
                        .event_by_unique(name)
                        .ok_or(ApiError::InvalidEvent)?;
                    event = Some(e.id);
                }
            }
            let pid = ctx.pid();
            let group = ctx.sql(|c| store::record_group(c, pid, &record))?;
            // A record outside the caller's DAG reads as missing (INF:
            // REDCap prints it without data).
            let visible = match (group, ctx.caller.group_id) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(g), Some(mine)) => g == Some(mine),
            };
            if !visible {
                return Err(ApiError::FileDeleteRecordMissing { record });
            }
        }
        let first_event = project
            .events
            .first()
            .map(|e| e.id)
            .unwrap_or(CLASSIC_EVENT);
        let instance_event = event.unwrap_or(first_event);
        let repeats = project.repeats_form(instance_event, &form)
            || (project.is_longitudinal && project.repeats_event(instance_event));
        let instance: i64 = if repeats {
            let raw = ctx.post.str("repeat_instance").trim();
            raw.parse().ok().filter(|n| *n > 0).unwrap_or(1)
        } else {
            1
        };
        let compact_param = ctx.post.str("compactDisplay");
        let compact = compact_param == "1" || compact_param.eq_ignore_ascii_case("true");
        let all_records = ctx.post.has("allRecords") || ctx.post.has("allrecords");
        let (mode, description) = if all_records {
            (
                Mode::AllRecords,
                "Download all data entry forms as PDF (all records)",
            )
        } else if !form.is_empty() && record.is_empty() {
            (Mode::Blank, "Download data entry form as PDF")
        } else if !form.is_empty() {
            (
                Mode::Record(record.clone()),
                "Download data entry form as PDF (with data)",
            )
        } else if record.is_empty() {
            (Mode::Blank, "Download all data entry forms as PDF")
        } else {
            (
                Mode::Record(record.clone()),
                "Download all data entry forms as PDF (with data)",
            )
        };
        Ok(Request {
            form,
            record,
            event,
            repeats,
            instance,
            compact,
            all_records,
            mode,
            description,
        })
    }

    /// The PDF file.
    fn document(&self, ctx: &mut Ctx, project: &Project) -> Result<Vec<u8>, ApiError> {
        // Instruments printed: the one asked for (not with `allRecords`),
        // else all; with data, only those the caller may export (INF).
        let forms: Vec<String> = project
            .forms()
            .into_iter()
            .filter(|f| self.all_records || self.form.is_empty() || *f == self.form)
            .filter(|f| {
                matches!(self.mode, Mode::Blank)
                    || ctx
                        .caller
                        .rights
                        .forms_export
                        .get(f)
                        .is_some_and(|r| *r != ExportRight::NoAccess)
            })
            .collect();
        let mut doc = Document::new(&project.title, &project.title);
        if matches!(self.mode, Mode::Blank) {
            for f in &forms {
                instrument_page(&mut doc, project, f, None, "", self.compact);
            }
        } else if let Err(e) = self.data_pages(ctx, project, &forms, &mut doc) {
            ctx.failure = Some(e);
            return Err(ApiError::InvalidContent);
        }
        let created: String = ctx
            .now
            .second
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        Ok(doc.finish(&created))
    }

    /// The pages of the records' data: per record, event and instance,
    /// each instrument the event holds (a repeating one only where it has
    /// data, or the instance asked for).
    fn data_pages(
        &self,
        ctx: &Ctx,
        project: &Project,
        forms: &[String],
        doc: &mut Document,
    ) -> anyhow::Result<()> {
        let columns = records::export_columns(project);
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let only = match &self.mode {
            Mode::Record(r) => Some(vec![r.clone()]),
            _ => None,
        };
        let q = RecordQuery {
            project_id: project.id,
            group_id: ctx.caller.group_id,
            records: only.as_deref(),
            fields: None,
            all_slots: project.is_longitudinal || project.has_repeating(),
            events: None,
        };
        let one_slot = matches!(self.mode, Mode::Record(_)) && !self.form.is_empty();
        let rid = project.record_id_field().to_owned();
        store::for_each_record(ctx.conn, &q, &names, |rec| {
            for (slot, values) in &rec.slots {
                if !self.all_records && self.event.is_some_and(|e| e != slot.event) {
                    continue;
                }
                if one_slot && self.repeats && slot.instance != self.instance {
                    continue;
                }
                let event = project
                    .events
                    .iter()
                    .find(|e| e.id == slot.event)
                    .filter(|_| project.is_longitudinal);
                let event_label = event.map(|e| format!(" ({})", e.name)).unwrap_or_default();
                for f in forms {
                    if event.is_some_and(|e| !e.forms.contains(f)) {
                        continue;
                    }
                    let repeating =
                        project.repeats_form(slot.event, f) || project.repeats_event(slot.event);
                    let has_data = columns.iter().zip(values).any(|(c, v)| {
                        !v.is_empty()
                            && *c != rid
                            && column_form(project, c).is_some_and(|cf| cf == f)
                    });
                    if slot.instance > 1 && !repeating {
                        continue;
                    }
                    if repeating && !has_data && !(one_slot && slot.instance == self.instance) {
                        continue;
                    }
                    let title = if repeating {
                        format!("Record ID {}{event_label} (#{})", rec.name, slot.instance)
                    } else {
                        format!("Record ID {}{event_label}", rec.name)
                    };
                    let data = Data {
                        columns: &columns,
                        values,
                        record: &rec.name,
                        rid: &rid,
                    };
                    instrument_page(doc, project, f, Some(&data), &title, self.compact);
                }
            }
            Ok(())
        })
    }

    /// The file name (REDCap's `PDF::output`): the instrument's label (one
    /// instrument), the project's title, cut to 30 characters, then the
    /// time (`now` is `YYYY-MM-DD HH:MM:SS`) when the document holds data.
    fn file_name(&self, project: &Project, now: &str) -> String {
        let mut name = String::new();
        if !self.form.is_empty() && !self.all_records {
            name.push_str(&camel(&metadata::form_label(project, &self.form)));
            name.push('_');
        }
        name.push_str(&camel(&project.title));
        name.truncate(30);
        if !matches!(self.mode, Mode::Blank) {
            name.push_str(&format!("_{}_{}{}", &now[..10], &now[11..13], &now[14..16]));
        }
        name
    }

    /// The log row: REDCap's `logtype=export` takes Manage/Design rows "…
    /// PDF (with data)", `logtype=manage` the others (RC
    /// `Logging::setEventFilterSql`).
    fn log(&self, ctx: &mut Ctx) -> Result<(), ApiError> {
        let label = ctx.api_label(self.description);
        let with_record = !self.record.is_empty() && !self.all_records;
        let group = if with_record {
            let pid = ctx.pid();
            ctx.sql(|c| store::record_group(c, pid, &self.record))?
                .flatten()
        } else {
            None
        };
        let kind = if self.description.ends_with("(with data)") {
            LogKind::Export
        } else {
            LogKind::Manage
        };
        let record = with_record.then(|| self.record.clone());
        ctx.log(kind, "Manage/Design ", label, record, group);
        Ok(())
    }
}

/// PHP's `str_replace(' ', '', ucwords(preg_replace('/[^a-zA-Z0-9]/', ' ', s)))`.
fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if start { c.to_ascii_uppercase() } else { c });
            start = false;
        } else {
            start = true;
        }
    }
    out
}

/// The instrument of an export column (`name`, `name___code` or
/// `<form>_complete`).
fn column_form<'p>(project: &'p Project, column: &str) -> Option<&'p str> {
    let field = column.split("___").next().unwrap_or(column);
    project
        .metadata
        .iter()
        .find(|f| f.field_name == field)
        .map(|f| f.form_name.as_str())
        .or_else(|| {
            column.strip_suffix("_complete").and_then(|form| {
                project
                    .metadata
                    .iter()
                    .find(|f| f.form_name == form)
                    .map(|f| f.form_name.as_str())
            })
        })
}

/// One slot's values, by export column.
struct Data<'a> {
    columns: &'a [String],
    values: &'a [String],
    record: &'a str,
    rid: &'a str,
}

impl Data<'_> {
    fn get(&self, column: &str) -> &str {
        if column == self.rid {
            return self.record;
        }
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| self.values.get(i))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// The choices of a field: (code, label).
fn choices(f: &Field) -> Vec<(String, String)> {
    match f.field_type.as_str() {
        "yesno" => vec![("1".into(), "Yes".into()), ("0".into(), "No".into())],
        "truefalse" => vec![("1".into(), "True".into()), ("0".into(), "False".into())],
        _ => f
            .select_choices_or_calculations
            .split('|')
            .filter_map(|c| {
                c.split_once(',').map(|(code, label)| {
                    (code.trim().to_owned(), records::strip_tags(label.trim()))
                })
            })
            .filter(|(c, _)| !c.is_empty())
            .collect(),
    }
}

/// One instrument on a new page: the record line (with data), the
/// instrument's label, each field's label and value (or blanks to fill
/// in), then its status.
fn instrument_page(
    doc: &mut Document,
    project: &Project,
    form: &str,
    data: Option<&Data>,
    title: &str,
    compact: bool,
) {
    doc.page();
    if !title.is_empty() {
        doc.text(title, Font::Regular, 9.0, 0.0);
        doc.space(4.0);
    }
    doc.text(&metadata::form_label(project, form), Font::Bold, 14.0, 0.0);
    doc.space(8.0);
    for f in project.metadata.iter().filter(|f| f.form_name == form) {
        let label = records::strip_tags(&f.field_label);
        if !f.section_header.is_empty() {
            doc.space(4.0);
            doc.text(
                &records::strip_tags(&f.section_header),
                Font::Bold,
                11.0,
                0.0,
            );
            doc.space(2.0);
        }
        if f.is_descriptive() {
            doc.text(&label, Font::Regular, 10.0, 0.0);
            doc.space(4.0);
            continue;
        }
        match f.field_type.as_str() {
            "checkbox" => {
                let picked: Vec<(String, String, bool)> = choices(f)
                    .into_iter()
                    .map(|(code, l)| {
                        let col = format!("{}___{}", f.field_name, code.to_lowercase());
                        let on = data.is_some_and(|d| d.get(&col) == "1");
                        (code, l, on)
                    })
                    .collect();
                if compact && data.is_some() && !picked.iter().any(|(_, _, on)| *on) {
                    continue;
                }
                let lines: Vec<String> = picked
                    .iter()
                    .filter(|(_, _, on)| !compact || *on || data.is_none())
                    .map(|(_, l, on)| format!("[{}] {l}", if *on { "X" } else { " " }))
                    .collect();
                doc.columns(&label, &lines.join("\n"), 10.0);
            }
            "radio" | "dropdown" | "yesno" | "truefalse" => {
                let value = data.map(|d| d.get(&f.field_name)).unwrap_or_default();
                if compact && data.is_some() && value.is_empty() {
                    continue;
                }
                let lines: Vec<String> = choices(f)
                    .into_iter()
                    .filter(|(code, _)| !compact || data.is_none() || code == value)
                    .map(|(code, l)| {
                        format!(
                            "({}) {l}",
                            if data.is_some() && code == value {
                                "X"
                            } else {
                                " "
                            }
                        )
                    })
                    .collect();
                doc.columns(&label, &lines.join("\n"), 10.0);
            }
            _ => {
                let value = data.map(|d| d.get(&f.field_name)).unwrap_or_default();
                if compact && data.is_some() && value.is_empty() {
                    continue;
                }
                let shown = match (data, f.field_type.as_str()) {
                    (None, _) => "________________________________".to_owned(),
                    (Some(_), "file") if !value.is_empty() => "[document]".to_owned(),
                    (Some(_), _) => value.to_owned(),
                };
                doc.columns(&label, &shown, 10.0);
            }
        }
        doc.space(3.0);
    }
    // The form status.
    let status = data
        .map(|d| d.get(&format!("{form}_complete")))
        .unwrap_or_default();
    if !(compact && data.is_some() && status.is_empty()) {
        doc.space(6.0);
        doc.text("Form Status", Font::Bold, 11.0, 0.0);
        let shown = match (data, status) {
            (None, _) => "( ) Incomplete  ( ) Unverified  ( ) Complete".to_owned(),
            (Some(_), "2") => "Complete".to_owned(),
            (Some(_), "1") => "Unverified".to_owned(),
            (Some(_), _) => "Incomplete".to_owned(),
        };
        doc.columns("Complete?", &shown, 10.0);
    }
}
