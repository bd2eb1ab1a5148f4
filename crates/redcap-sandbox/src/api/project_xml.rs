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

/// Gives a new project what the file holds: its dictionary, instrument
/// labels, arms, events and their instruments, repeating setup and DAGs.
/// Answers the file's unique event names → event ids.
pub fn apply_structure(
    ctx: &mut Ctx,
    project: &mut Project,
    file: &mut OdmProject,
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
        let id = ctx.state.next_event_id.max(1);
        ctx.state.next_event_id = id + 1;
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
        let id = ctx.state.next_group_id.max(1);
        ctx.state.next_group_id = id + 1;
        project.dags.push(Dag {
            id,
            name: label.clone(),
        });
    }
    Ok(ids)
}

/// Writes the file's records into the new project (the caller's project),
/// each slot's values in one statement. Answers how many records.
pub fn import_records(
    ctx: &mut Ctx,
    file: &OdmProject,
    events: &HashMap<String, i64>,
) -> Result<usize, ApiError> {
    let project = ctx.project().clone();
    let columns: HashSet<String> = super::records::export_columns(&project)
        .into_iter()
        .collect();
    let dags: HashMap<String, u64> = project
        .dag_unique_names()
        .into_iter()
        .zip(project.dags.iter().map(|d| d.id))
        .collect();
    let pid = ctx.pid();
    let mut seen: HashSet<&str> = HashSet::new();
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
        let mut slots: BTreeMap<Slot, Vec<(&str, &str)>> = BTreeMap::new();
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
            if v.value.is_empty() {
                continue;
            }
            slots
                .entry(Slot {
                    event,
                    instance: v.instance,
                })
                .or_default()
                .push((&v.field, &v.value));
        }
        ctx.sql(|c| {
            store::insert_record(c, pid, &record.name, group)?;
            for (slot, values) in &slots {
                store::put_values_in(c, pid, &record.name, *slot, values)?;
            }
            Ok(())
        })?;
    }
    Ok(file.records.len())
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
    let head = odm::write_metadata(&odm::Metadata {
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
        let writer = odm::RecordWriter::new(&project.metadata, &forms, layout);
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        let q = store::RecordQuery {
            project_id: pid,
            group_id,
            records: wanted.as_deref(),
            fields: None,
            all_slots: true,
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
