//! Projects as REDCap XML (CDISC ODM, [`crate::odm`]): Create Project's
//! `odm` parameter (§2.5) and Export Entire Project as REDCap XML
//! (`content=project_xml`).

use std::collections::{BTreeMap, HashMap, HashSet};

use redcap::ApiError;

use super::Ctx;
use crate::db::{Dag, Event, LogKind, Project, Repeating};
use crate::format::{Format, Reply, WriteBody};
use crate::odm::{self, OdmProject};
use crate::store::{self, Slot};

fn bad(details: impl std::fmt::Display) -> ApiError {
    ApiError::BadStructure {
        details: format!("The REDCap XML file (odm) cannot be used: {details}"),
    }
}

/// Reads the `odm` parameter, if sent and not blank.
pub fn read_odm(ctx: &Ctx) -> Result<Option<OdmProject>, ApiError> {
    let xml = ctx.post.str("odm");
    if xml.trim().is_empty() {
        return Ok(None);
    }
    odm::read(xml).map(Some).map_err(bad)
}

/// The server-wide counters a new project's events and DAGs draw from,
/// copied out of the state and written back only once the whole file was
/// found good (a refused file changes nothing).
pub struct Counters {
    pub next_event_id: i64,
    pub next_group_id: u64,
    pub next_role_id: u64,
}

/// Gives a new project what the file holds: its dictionary, instrument
/// labels, arms, events and their instruments, repeating setup, DAGs and
/// roles (new unique role names, as new roles get).
/// Answers the file's unique event names → event ids.
pub fn apply_structure(
    counters: &mut Counters,
    project: &mut Project,
    file: &mut OdmProject,
    version: redcap::RedcapVersion,
) -> Result<HashMap<String, i64>, ApiError> {
    project.metadata = std::mem::take(&mut file.metadata);
    let forms = project.forms();
    for (form, label) in &file.form_labels {
        if forms.contains(form) && super::metadata::form_label(project, form) != *label {
            project.form_labels.insert(form.clone(), label.clone());
        }
    }
    project.is_longitudinal = !file.events.is_empty();
    project.arms = std::mem::take(&mut file.arms);
    let mut ids: HashMap<String, i64> = HashMap::new();
    for e in &file.events {
        if let Some(f) = e.forms.iter().find(|f| !forms.contains(f)) {
            return Err(bad(format!(
                "the event \"{}\" holds the instrument \"{f}\", which the file does not define",
                e.unique_name
            )));
        }
        let id = counters.next_event_id.max(1);
        counters.next_event_id = id + 1;
        ids.insert(e.unique_name.clone(), id);
        project.events.push(Event {
            id,
            arm_num: e.arm_num,
            name: e.name.clone(),
            day_offset: e.day_offset,
            offset_min: e.offset_min,
            offset_max: e.offset_max,
            custom_label: e.custom_label.clone(),
            forms: e.forms.clone(),
        });
    }
    for (event, form, label) in &file.repeating {
        let event_id = if project.is_longitudinal {
            *ids.get(event).ok_or_else(|| {
                bad(format!(
                    "the repeating setup names the unknown event \"{event}\""
                ))
            })?
        } else {
            store::CLASSIC_EVENT
        };
        if !form.is_empty() && !forms.contains(form) {
            return Err(bad(format!(
                "the repeating setup names the unknown instrument \"{form}\""
            )));
        }
        project.repeating.push(Repeating {
            event_id,
            form: form.clone(),
            custom_label: label.clone(),
        });
    }
    for label in &file.dags {
        let id = counters.next_group_id.max(1);
        counters.next_group_id = id + 1;
        project.dags.push(Dag {
            id,
            name: label.clone(),
        });
    }
    for r in &file.reports {
        super::reports::check(project, r)
            .map_err(|e| bad(format!("a report (redcap:Reports): {e}")))?;
    }
    for row in &file.roles {
        let label = super::text(row.get("role_label")).trim().to_owned();
        if label.is_empty() {
            return Err(bad("a role (redcap:UserRoles) has no role_name"));
        }
        let mut rights = redcap::Rights::none(&forms);
        super::users::apply_rights(project, version, &label, row, &mut rights)?;
        project.normalise_forms(&mut rights);
        let id = counters.next_role_id.max(1);
        counters.next_role_id = id + 1;
        let unique_name = super::roles::new_unique_role_name(project);
        project.roles.push(crate::db::Role {
            id,
            unique_name,
            label,
            rights,
        });
    }
    Ok(ids)
}

/// A value ready to be written: text, or a file to store first.
pub enum Value {
    Text(String),
    File(crate::db::Doc, Vec<u8>),
}

/// A record of the file, checked against the new project.
pub struct Prepared {
    name: String,
    group: Option<u64>,
    slots: BTreeMap<Slot, Vec<(String, Value)>>,
}

/// Checks the file's records against the new project (before anything is
/// written): names, DAGs, fields, events, files.
pub fn prepare_records(
    project: &Project,
    file: &OdmProject,
    events: &HashMap<String, i64>,
) -> Result<Vec<Prepared>, ApiError> {
    let columns: HashSet<String> = super::records::export_columns(project)
        .into_iter()
        .collect();
    let dags: HashMap<String, u64> = project
        .dag_unique_names()
        .into_iter()
        .zip(project.dags.iter().map(|d| d.id))
        .collect();
    let file_fields: HashSet<&str> = project
        .metadata
        .iter()
        .filter(|f| f.field_type == "file")
        .map(|f| f.field_name.as_str())
        .collect();
    // Calculated fields (`calc`, and text fields with @CALCTEXT or
    // @CALCDATE): REDCap's import skips their values (`Records::saveData`,
    // `data_import_tool_197`: "Calculated fields cannot be imported"), and
    // a project created from a file holds none — PyCap's integration test
    // counts 30 EAV values for its simple project, whose file gives `age`
    // and `bmi` to two records (34 with them).
    let calculated: HashSet<&str> = project
        .metadata
        .iter()
        .filter(|f| {
            f.field_type == "calc"
                || (f.field_type == "text"
                    && (f.field_annotation.contains("@CALCTEXT")
                        || f.field_annotation.contains("@CALCDATE")))
        })
        .map(|f| f.field_name.as_str())
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(file.records.len());
    for record in &file.records {
        if record.name.trim().is_empty() {
            return Err(bad("a record (SubjectData) has no SubjectKey"));
        }
        if !seen.insert(record.name.as_str()) {
            return Err(bad(format!(
                "the record \"{}\" appears more than once",
                record.name
            )));
        }
        let group = match record.dag.as_str() {
            "" => None,
            d => Some(*dags.get(d).ok_or_else(|| {
                bad(format!(
                    "the record \"{}\" is in the unknown Data Access Group \"{d}\"",
                    record.name
                ))
            })?),
        };
        let mut slots: BTreeMap<Slot, Vec<(String, Value)>> = BTreeMap::new();
        for v in &record.values {
            if !columns.contains(&v.field) {
                return Err(bad(format!(
                    "the record \"{}\" has a value of \"{}\", which is no field of the file",
                    record.name, v.field
                )));
            }
            let event = if project.is_longitudinal {
                *events.get(&v.event).ok_or_else(|| {
                    bad(format!(
                        "the record \"{}\" has data in the unknown event \"{}\"",
                        record.name, v.event
                    ))
                })?
            } else {
                store::CLASSIC_EVENT
            };
            // A File Upload field holds a file of this project or nothing:
            // a plain value there (another server's doc id) is dropped.
            let value = match (&v.file, file_fields.contains(v.field.as_str())) {
                (Some(f), true) => {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&f.base64)
                        .map_err(|e| {
                            bad(format!(
                                "the file of \"{}\" of the record \"{}\" is not base64: {e}",
                                v.field, record.name
                            ))
                        })?;
                    let doc = crate::db::Doc {
                        project_id: project.id,
                        name: f.name.clone(),
                        mime_type: if f.mime_type.is_empty() {
                            "application/octet-stream".into()
                        } else {
                            f.mime_type.clone()
                        },
                        size: bytes.len() as u64,
                    };
                    Value::File(doc, bytes)
                }
                (_, true) => continue,
                (Some(_), false) => {
                    return Err(bad(format!(
                        "\"{}\" carries a file but is no File Upload field",
                        v.field
                    )));
                }
                (None, false) if v.value.is_empty() => continue,
                (None, false) if calculated.contains(v.field.as_str()) => continue,
                (None, false) => Value::Text(v.value.clone()),
            };
            slots
                .entry(Slot {
                    event,
                    instance: v.instance,
                })
                .or_default()
                .push((v.field.clone(), value));
        }
        out.push(Prepared {
            name: record.name.clone(),
            group,
            slots,
        });
    }
    Ok(out)
}

/// Writes the checked records into the new project (the caller's), each
/// slot's values in one statement; files are stored first.
///
/// Each record-event is logged as REDCap's import (`Records::saveData`)
/// logs it, before the creation's own row: `Create record (API) <r>` for
/// the record's first slot, `Update record (API) <r>` for the others
/// (with the event's label in a longitudinal project), the values as
/// `field = 'value'`, then the DAG assignment.
pub fn write_records(ctx: &mut Ctx, records: Vec<Prepared>) -> Result<(), ApiError> {
    let pid = ctx.pid();
    let labels: HashMap<i64, String> = {
        let project = ctx.project();
        if project.is_longitudinal {
            project
                .events
                .iter()
                .map(|e| (e.id, super::records::event_label(project, e)))
                .collect()
        } else {
            HashMap::new()
        }
    };
    let dag_names: HashMap<u64, String> = {
        let project = ctx.project();
        project
            .dags
            .iter()
            .map(|d| d.id)
            .zip(project.dag_unique_names())
            .collect()
    };
    let checkboxes: HashSet<String> = ctx
        .project()
        .metadata
        .iter()
        .filter(|f| f.field_type == "checkbox")
        .map(|f| f.field_name.clone())
        .collect();
    for record in records {
        let mut log_rows: Vec<(LogKind, String, String)> = Vec::new();
        let mut slots: Vec<(Slot, Vec<(String, String)>)> = Vec::with_capacity(record.slots.len());
        for (slot, values) in record.slots {
            let values: Vec<(String, String)> = values
                .into_iter()
                .map(|(field, v)| match v {
                    Value::Text(t) => (field, t),
                    Value::File(doc, bytes) => {
                        let id = ctx.state.add_doc(doc, bytes.into());
                        (field, id.to_string())
                    }
                })
                .collect();
            let verb = if slots.is_empty() {
                "Create record"
            } else {
                "Update record"
            };
            let kind = if slots.is_empty() {
                LogKind::RecordAdd
            } else {
                LogKind::RecordEdit
            };
            let mut action = format!("{} {}", ctx.api_label(verb), record.name);
            if let Some(label) = labels.get(&slot.event) {
                action = format!("{action} ({label})");
            }
            let mut details: Vec<String> = Vec::with_capacity(values.len());
            if slot.instance > 1 {
                details.push(format!("[instance = {}]", slot.instance));
            }
            for (field, value) in &values {
                match field.split_once("___") {
                    Some((base, code)) if checkboxes.contains(base) => {
                        if value == "1" {
                            details.push(format!("{base}({code}) = checked"));
                        }
                    }
                    _ => details.push(format!("{field} = '{value}'")),
                }
            }
            log_rows.push((kind, action, details.join(", ")));
            slots.push((slot, values));
        }
        if let Some(name) = record.group.and_then(|g| dag_names.get(&g)) {
            log_rows.push((
                LogKind::RecordEdit,
                format!("{} {}", ctx.api_label("Update record"), record.name),
                ctx.api_label(&format!(
                    "Assign record to Data Access Group (redcap_data_access_group = '{name}')"
                )),
            ));
        }
        ctx.sql(|c| {
            store::insert_record(c, pid, &record.name, record.group)?;
            for (slot, values) in &slots {
                let values: Vec<(&str, &str)> = values
                    .iter()
                    .map(|(f, v)| (f.as_str(), v.as_str()))
                    .collect();
                store::put_values_in(c, pid, &record.name, *slot, &values)?;
            }
            Ok(())
        })?;
        for (kind, action, details) in log_rows {
            ctx.log(
                kind,
                action,
                details,
                Some(record.name.clone()),
                record.group,
            );
        }
    }
    Ok(())
}

/// Export Entire Project as REDCap XML: settings, arms and events, the
/// dictionary, DAGs, the repeating setup and — unless
/// `returnMetadataOnly` — the records the caller may export (`records`
/// limits them; `exportDataAccessGroups` names each record's DAG).
/// Records stream from a snapshot like Export Records.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let project = ctx.project().clone();
    let metadata_only =
        ctx.post.flag("returnMetadataOnly") || !ctx.caller.rights.has_any_export_right();
    let names = project.unique_event_names();
    let forms: Vec<(String, String)> = project
        .forms()
        .into_iter()
        .map(|f| {
            let label = super::metadata::form_label(&project, &f);
            (f, label)
        })
        .collect();
    let event_name = |id: i64| {
        project
            .events
            .iter()
            .position(|e| e.id == id)
            .map(|i| names[i].clone())
            .unwrap_or_default()
    };
    let repeating: Vec<(String, String, String)> = project
        .repeating
        .iter()
        .map(|r| {
            (
                event_name(r.event_id),
                r.form.clone(),
                r.custom_label.clone(),
            )
        })
        .collect();
    let version = ctx.config.version.to_string();
    let pid = project.id;
    let reports = ctx.sql(|c| super::reports::of_project(c, pid))?;
    let (surveys, survey_queue) = ctx.sql(|c| crate::surveys::odm_attributes(c, &project))?;
    let head = odm::write_metadata(&odm::Metadata {
        surveys,
        survey_queue,
        title: &project.title,
        version: &version,
        now: &ctx.now.second,
        purpose: project.purpose,
        purpose_other: &project.purpose_other,
        notes: &project.notes,
        autonumbering: project.record_autonumbering_enabled,
        surveys_enabled: project.surveys_enabled,
        metadata: &project.metadata,
        forms: &forms,
        arms: &project.arms,
        events: project.events.iter().zip(names.iter().cloned()).collect(),
        repeating,
        dags: project.dags.iter().map(|d| d.name.clone()).collect(),
        roles: project
            .roles
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("unique_role_name".into(), r.unique_name.clone().into());
                m.insert("role_label".into(), r.label.clone().into());
                let mut rights = r.rights.clone();
                project.normalise_forms(&mut rights);
                rights.write_json(
                    &mut m,
                    ctx.config.version,
                    redcap::rights::ValueStyle::Strings,
                    &project.forms(),
                );
                odm::role_attributes(&m)
            })
            .collect(),
        reports: reports.iter().map(super::reports::odm_attributes).collect(),
    });
    ctx.log(
        LogKind::Export,
        "Data export (API) ",
        if metadata_only {
            "export_format: ODM, metadata only"
        } else {
            "export_format: ODM"
        },
        None,
        None,
    );
    if metadata_only {
        return Ok(Reply::ok(Format::Xml, format!("{head}</ODM>\n")));
    }
    let layout: Vec<odm::EventLayout> = project
        .event_ids()
        .into_iter()
        .map(|id| odm::EventLayout {
            id,
            unique_name: event_name(id),
            repeats: project.repeats_event(id),
            repeating_forms: project
                .forms()
                .into_iter()
                .filter(|f| project.repeats_form(id, f))
                .collect(),
        })
        .collect();
    let columns = super::records::export_columns(&project);
    let wanted = ctx.post.list("records", true).filter(|w| !w.is_empty());
    let with_dag = ctx.post.flag("exportDataAccessGroups") && ctx.caller.group_id.is_none();
    let dag_names: HashMap<u64, String> = project
        .dags
        .iter()
        .map(|d| d.id)
        .zip(project.dag_unique_names())
        .collect();
    let pid = ctx.pid();
    // `exportFiles`: File Upload fields' files go into the file (their
    // names and types as stored now; bytes read as the answer is written).
    let with_files = ctx.post.flag("exportFiles").then(|| {
        let docs: HashMap<u64, crate::db::Doc> = ctx
            .state
            .docs
            .iter()
            .filter(|(_, d)| d.project_id == pid)
            .map(|(id, d)| (*id, d.clone()))
            .collect();
        (ctx.config.data.clone(), docs)
    });
    let group_id = ctx.caller.group_id;
    let study = odm::study_oid(&project.title);
    let mdv = odm::metadata_oid(&project.title, &ctx.now.second);
    let write: WriteBody = Box::new(move |conn, out| {
        out.write_all(head.as_bytes())?;
        writeln!(
            out,
            "<ClinicalData StudyOID=\"{}\" MetaDataVersionOID=\"{}\">",
            odm::escape(&study),
            odm::escape(&mdv)
        )?;
        let mut writer = odm::RecordWriter::new(&project.metadata, &forms, layout);
        if let Some((dir, docs)) = &with_files {
            writer.files = Some(Box::new(move |value: &str| {
                let id: u64 = value.parse().ok()?;
                let doc = docs.get(&id)?;
                let bytes = std::fs::read(crate::db::doc_path(dir, id)).ok()?;
                Some((doc.name.clone(), doc.mime_type.clone(), bytes))
            }));
        }
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        let q = store::RecordQuery {
            project_id: pid,
            group_id,
            records: wanted.as_deref(),
            fields: None,
            all_slots: true,
            events: None,
        };
        let mut buf = String::with_capacity(64 * 1024);
        store::for_each_record(conn, &q, &cols, |record| {
            let dag = if with_dag {
                record
                    .group_id
                    .and_then(|g| dag_names.get(&g))
                    .map(String::as_str)
            } else {
                None
            };
            writer.write(&mut buf, record, &cols, dag);
            if buf.len() >= 60 * 1024 {
                out.write_all(buf.as_bytes())?;
                buf.clear();
            }
            Ok(())
        })?;
        out.write_all(buf.as_bytes())?;
        out.write_all(b"</ClinicalData>\n</ODM>\n")?;
        Ok(())
    });
    Ok(Reply::streamed(Format::Xml, write, Vec::new()))
}
