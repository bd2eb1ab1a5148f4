//! A project's longitudinal structure and repetition (§6.6): Export /
//! Import / Delete Arms and Events, Export / Import Instrument-Event
//! Mappings, Export / Import Repeating Instruments and Events.
//!
//! Arms and events exist only in longitudinal projects; a classic project
//! answers "You cannot export arms for classic projects" and the like.
//! Changing the structure needs the Design right and a project in
//! development (§6.6). Deleting an event (or an arm, with its events)
//! deletes the records' values in it, and records left without any value.

use std::collections::HashSet;

use redcap::ApiError;
use serde_json::{Map, Value};

use super::{Ctx, text};
use crate::db::{Arm, Event, LogKind, Project, Repeating};
use crate::format::Reply;
use crate::store;

/// A design change: Design right (400 `api_124`), development status
/// (400 `api_102`).
fn check_design(ctx: &Ctx) -> Result<(), ApiError> {
    if !ctx.caller.rights.design {
        return Err(ApiError::DesignPrivilege);
    }
    if ctx.project().status != 0 {
        return Err(ApiError::ProductionDesign);
    }
    Ok(())
}

fn longitudinal(ctx: &Ctx, verb: &'static str, what: &'static str) -> Result<(), ApiError> {
    if ctx.project().is_longitudinal {
        Ok(())
    } else {
        Err(ApiError::ClassicProject { verb, what })
    }
}

fn bad(details: String) -> ApiError {
    ApiError::BadStructure { details }
}

/// The `arms[]` filter of the exports (arm numbers); `None` for all.
fn arms_filter(ctx: &Ctx) -> Option<Vec<u32>> {
    let arms = ctx.post.list("arms", true)?;
    let arms: Vec<u32> = arms.iter().filter_map(|a| a.trim().parse().ok()).collect();
    (!arms.is_empty()).then_some(arms)
}

/// Whether `override=1` was sent.
fn overriding(ctx: &Ctx) -> bool {
    ctx.post.str("override").trim() == "1"
}

/// Deletes the values of events leaving the project (and records left
/// with none); their files go too.
fn drop_event_data(ctx: &mut Ctx, events: &[i64]) -> Result<(), ApiError> {
    let pid = ctx.pid();
    let file_fields: Vec<String> = ctx
        .project()
        .metadata
        .iter()
        .filter(|f| f.field_type == "file")
        .map(|f| f.field_name.clone())
        .collect();
    let docs = ctx.sql(|c| store::delete_event_data(c, pid, events, &file_fields))?;
    for doc in docs.iter().filter_map(|d| d.parse().ok()) {
        ctx.state.remove_doc(doc);
    }
    Ok(())
}

/// Export Arms: `arm_num` (a number in JSON), `name`.
pub fn export_arms(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    longitudinal(ctx, "export", "arms")?;
    let only = arms_filter(ctx);
    let rows: Vec<Map<String, Value>> = ctx
        .project()
        .arms
        .iter()
        .filter(|a| only.as_ref().is_none_or(|o| o.contains(&a.num)))
        .map(|a| {
            let mut m = Map::new();
            m.insert("arm_num".into(), a.num.into());
            m.insert("name".into(), a.name.clone().into());
            m
        })
        .collect();
    ctx.log_manage(LogKind::Manage, "Export arms");
    Ok(ctx.rows_reply(&rows, &["arm_num", "name"], "arms", "item"))
}

/// Import Arms (`arm_num`, `name`): new arms are added, existing ones
/// renamed; with `override=1` arms left out are deleted first, with their
/// events and data.
pub fn import_arms(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_design(ctx)?;
    longitudinal(ctx, "import", "arms")?;
    let rows = ctx.take_rows();
    let mut arms: Vec<Arm> = Vec::with_capacity(rows.len());
    for row in &rows {
        let num = text(row.get("arm_num"));
        let name = text(row.get("name")).trim().to_owned();
        let num: u32 = match num.trim().parse() {
            Ok(n) if n >= 1 && !name.is_empty() => n,
            _ => {
                return Err(bad(format!(
                    "Each arm needs \"arm_num\" (a whole number from 1) and \"name\": arm_num \"{num}\", name \"{name}\" is not valid."
                )));
            }
        };
        if arms.iter().any(|a| a.num == num) {
            return Err(bad(format!("The arm number {num} appears more than once.")));
        }
        arms.push(Arm { num, name });
    }
    if overriding(ctx) {
        let kept: HashSet<u32> = arms.iter().map(|a| a.num).collect();
        let gone: Vec<i64> = ctx
            .project()
            .events
            .iter()
            .filter(|e| !kept.contains(&e.arm_num))
            .map(|e| e.id)
            .collect();
        drop_event_data(ctx, &gone)?;
        let p = ctx.project_mut();
        p.arms.retain(|a| kept.contains(&a.num));
        p.events.retain(|e| kept.contains(&e.arm_num));
        p.repeating.retain(|r| !gone.contains(&r.event_id));
    }
    let n = arms.len();
    let p = ctx.project_mut();
    for arm in arms {
        match p.arms.iter_mut().find(|a| a.num == arm.num) {
            Some(a) => a.name = arm.name,
            None => p.arms.push(arm),
        }
    }
    p.arms.sort_by_key(|a| a.num);
    ctx.log_manage(LogKind::Manage, "Import arms");
    Ok(ctx.count(n))
}

/// Delete Arms (`arms[]`): the arms, their events and every value in them.
pub fn delete_arms(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_design(ctx)?;
    longitudinal(ctx, "delete", "arms")?;
    let asked = ctx.post.list("arms", false).unwrap_or_default();
    if asked.is_empty() {
        return Err(ApiError::ListParameterMissing { parameter: "arms" });
    }
    let project = ctx.project();
    let unknown: Vec<String> = asked
        .iter()
        .filter(|a| {
            a.trim()
                .parse::<u32>()
                .map_or(true, |n| !project.arms.iter().any(|arm| arm.num == n))
        })
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "arms",
            values: unknown,
        });
    }
    let nums: HashSet<u32> = asked.iter().filter_map(|a| a.trim().parse().ok()).collect();
    let gone: Vec<i64> = project
        .events
        .iter()
        .filter(|e| nums.contains(&e.arm_num))
        .map(|e| e.id)
        .collect();
    drop_event_data(ctx, &gone)?;
    let p = ctx.project_mut();
    p.arms.retain(|a| !nums.contains(&a.num));
    p.events.retain(|e| !nums.contains(&e.arm_num));
    p.repeating.retain(|r| !gone.contains(&r.event_id));
    ctx.log_manage(LogKind::Manage, "Delete arms");
    Ok(ctx.count(nums.len()))
}

/// Export Events: `event_name`, `arm_num`, `unique_event_name`,
/// `custom_event_label`, `event_id` (numbers in JSON). The scheduling
/// columns (`day_offset`, `offset_min`, `offset_max`) come only with
/// scheduling on, which the sandbox does not offer.
pub fn export_events(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    longitudinal(ctx, "export", "events")?;
    let only = arms_filter(ctx);
    let project = ctx.project();
    let rows: Vec<Map<String, Value>> = project
        .events
        .iter()
        .zip(project.unique_event_names())
        .filter(|(e, _)| only.as_ref().is_none_or(|o| o.contains(&e.arm_num)))
        .map(|(e, unique)| {
            let mut m = Map::new();
            m.insert("event_name".into(), e.name.clone().into());
            m.insert("arm_num".into(), e.arm_num.into());
            m.insert("unique_event_name".into(), unique.into());
            m.insert("custom_event_label".into(), e.custom_label.clone().into());
            m.insert("event_id".into(), e.id.into());
            m
        })
        .collect();
    ctx.log_manage(LogKind::Manage, "Export events");
    Ok(ctx.rows_reply(
        &rows,
        &[
            "event_name",
            "arm_num",
            "unique_event_name",
            "custom_event_label",
            "event_id",
        ],
        "events",
        "item",
    ))
}

/// A number column of an event row (`day_offset`, …): blank is 0.
fn offset(row: &Map<String, Value>, key: &str) -> Result<f64, ApiError> {
    let v = text(row.get(key));
    let v = v.trim();
    if v.is_empty() {
        return Ok(0.0);
    }
    v.parse()
        .map_err(|_| bad(format!("The value \"{v}\" of \"{key}\" is not a number.")))
}

/// Import Events (`event_name`, `arm_num`, optional `unique_event_name` to
/// rename an existing event — an unknown one adds a new event —, `day_offset`, `offset_min`, `offset_max`,
/// `custom_event_label`); with `override=1` events left out are deleted
/// first, with their data. New events hold no instruments until a mapping
/// import designates some.
pub fn import_events(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_design(ctx)?;
    longitudinal(ctx, "import", "events")?;
    let rows = ctx.take_rows();
    let project = ctx.project().clone();
    let names = project.unique_event_names();
    // (existing event id, the event as imported)
    let mut imported: Vec<(Option<i64>, Event)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let name = text(row.get("event_name")).trim().to_owned();
        let arm = text(row.get("arm_num"));
        let arm_num: u32 = match arm.trim().parse() {
            Ok(n) if !name.is_empty() => n,
            _ => {
                return Err(bad(format!(
                    "Each event needs \"event_name\" and \"arm_num\": event_name \"{name}\", arm_num \"{arm}\" is not valid."
                )));
            }
        };
        if !project.arms.iter().any(|a| a.num == arm_num) {
            return Err(bad(format!(
                "The arm number {arm_num} of the event \"{name}\" does not exist in the project."
            )));
        }
        // REDCap looks the name up and updates that event; a name it does
        // not know (or none) adds a new event, whose unique name is then
        // derived from its label (`Event::addEvents`).
        let unique = text(row.get("unique_event_name")).trim().to_owned();
        let existing = names
            .iter()
            .position(|n| !unique.is_empty() && *n == unique)
            .map(|i| project.events[i].id);
        imported.push((
            existing,
            Event {
                id: existing.unwrap_or_default(),
                arm_num,
                name,
                day_offset: offset(row, "day_offset")?,
                offset_min: offset(row, "offset_min")?,
                offset_max: offset(row, "offset_max")?,
                custom_label: text(row.get("custom_event_label")),
                forms: Vec::new(),
            },
        ));
    }
    if overriding(ctx) {
        let kept: HashSet<i64> = imported.iter().filter_map(|(id, _)| *id).collect();
        let gone: Vec<i64> = project
            .events
            .iter()
            .map(|e| e.id)
            .filter(|id| !kept.contains(id))
            .collect();
        drop_event_data(ctx, &gone)?;
        let p = ctx.project_mut();
        p.events.retain(|e| kept.contains(&e.id));
        p.repeating.retain(|r| !gone.contains(&r.event_id));
    }
    let n = imported.len();
    for (existing, mut event) in imported {
        match existing {
            Some(id) => {
                let p = ctx.project_mut();
                if let Some(e) = p.events.iter_mut().find(|e| e.id == id) {
                    event.forms = std::mem::take(&mut e.forms);
                    *e = event;
                }
            }
            None => {
                let id = ctx.state.next_event_id.max(1);
                ctx.state.next_event_id = id + 1;
                ctx.state.touch();
                event.id = id;
                ctx.project_mut().events.push(event);
            }
        }
    }
    // Events stay grouped by arm, in their order within it.
    ctx.project_mut().events.sort_by_key(|e| e.arm_num);
    ctx.log_manage(LogKind::Manage, "Import events");
    Ok(ctx.count(n))
}

/// Delete Events (`events[]`, unique event names): the events and every
/// value in them.
pub fn delete_events(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_design(ctx)?;
    longitudinal(ctx, "delete", "events")?;
    let asked = ctx.post.list("events", false).unwrap_or_default();
    if asked.is_empty() {
        return Err(ApiError::ListParameterMissing {
            parameter: "events",
        });
    }
    let project = ctx.project();
    let unknown: Vec<String> = asked
        .iter()
        .filter(|u| project.event_by_unique(u).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::InvalidParameterValues {
            parameter: "events",
            values: unknown,
        });
    }
    let gone: Vec<i64> = asked
        .iter()
        .filter_map(|u| project.event_by_unique(u).map(|e| e.id))
        .collect::<HashSet<i64>>()
        .into_iter()
        .collect();
    drop_event_data(ctx, &gone)?;
    let p = ctx.project_mut();
    p.events.retain(|e| !gone.contains(&e.id));
    p.repeating.retain(|r| !gone.contains(&r.event_id));
    ctx.log_manage(LogKind::Manage, "Delete events");
    Ok(ctx.count(gone.len()))
}

/// Export Instrument-Event Mappings (`arms[]`): `arm_num` (a number in
/// JSON), `unique_event_name`, `form`, by event then instrument order.
pub fn export_mappings(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    longitudinal(ctx, "export", "form/event mappings")?;
    let only = arms_filter(ctx);
    let project = ctx.project();
    let mut rows: Vec<Map<String, Value>> = Vec::new();
    for (e, unique) in project.events.iter().zip(project.unique_event_names()) {
        if only.as_ref().is_some_and(|o| !o.contains(&e.arm_num)) {
            continue;
        }
        for form in &e.forms {
            let mut m = Map::new();
            m.insert("arm_num".into(), e.arm_num.into());
            m.insert("unique_event_name".into(), unique.clone().into());
            m.insert("form".into(), form.clone().into());
            rows.push(m);
        }
    }
    ctx.log_manage(LogKind::Manage, "Export instrument-event mappings");
    Ok(ctx.rows_reply(
        &rows,
        &["arm_num", "unique_event_name", "form"],
        "items",
        "item",
    ))
}

/// Import Instrument-Event Mappings (`arm_num`, `unique_event_name`,
/// `form`): the rows replace every designation of the project.
pub fn import_mappings(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_design(ctx)?;
    longitudinal(ctx, "import", "form/event mappings")?;
    let rows = ctx.take_rows();
    let project = ctx.project();
    let forms = project.forms();
    let names = project.unique_event_names();
    let mut designated: Vec<(usize, String)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let unique = text(row.get("unique_event_name")).trim().to_owned();
        let form = text(row.get("form")).trim().to_owned();
        let Some(i) = names.iter().position(|n| *n == unique) else {
            return Err(bad(format!(
                "The unique event name \"{unique}\" does not exist in the project."
            )));
        };
        if !forms.contains(&form) {
            return Err(bad(format!(
                "The instrument \"{form}\" does not exist in the project."
            )));
        }
        let arm = text(row.get("arm_num"));
        if !arm.trim().is_empty() && arm.trim() != project.events[i].arm_num.to_string() {
            return Err(bad(format!("The event \"{unique}\" is not in arm {arm}.")));
        }
        designated.push((i, form));
    }
    let n = designated.len();
    let p = ctx.project_mut();
    for e in &mut p.events {
        e.forms.clear();
    }
    for (i, form) in designated {
        if !p.events[i].forms.contains(&form) {
            p.events[i].forms.push(form);
        }
    }
    // Instruments in data-dictionary order within each event.
    for e in &mut p.events {
        e.forms
            .sort_by_key(|f| forms.iter().position(|x| x == f).unwrap_or(usize::MAX));
    }
    ctx.log_manage(LogKind::Manage, "Import instrument-event mappings");
    Ok(ctx.count(n))
}

/// Export Repeating Instruments and Events: `event_name` (the unique event
/// name; longitudinal projects only), `form_name` (blank: the whole event
/// repeats), `custom_form_label`.
pub fn export_repeating(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.design {
        return Err(ApiError::DesignPrivilege);
    }
    let project = ctx.project();
    let names = project.unique_event_names();
    let rows: Vec<Map<String, Value>> = project
        .repeating
        .iter()
        .map(|r| {
            let mut m = Map::new();
            if project.is_longitudinal {
                let i = project.events.iter().position(|e| e.id == r.event_id);
                let name = i.map(|i| names[i].clone()).unwrap_or_default();
                m.insert("event_name".into(), name.into());
            }
            m.insert("form_name".into(), r.form.clone().into());
            m.insert("custom_form_label".into(), r.custom_label.clone().into());
            m
        })
        .collect();
    let header: &[&str] = if project.is_longitudinal {
        &["event_name", "form_name", "custom_form_label"]
    } else {
        &["form_name", "custom_form_label"]
    };
    ctx.log_manage(LogKind::Manage, "Export repeating instruments and events");
    Ok(ctx.rows_reply(&rows, header, "repeatingFormsEvents", "item"))
}

/// Import Repeating Instruments and Events: the rows replace the
/// project's repeating setup.
pub fn import_repeating(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    check_design(ctx)?;
    let rows = ctx.take_rows();
    let repeating = parse_repeating(ctx.project(), &rows)?;
    let n = repeating.len();
    ctx.project_mut().repeating = repeating;
    ctx.log_manage(LogKind::Manage, "Import repeating instruments and events");
    Ok(ctx.count(n))
}

/// Checks repeating-setup rows against the project.
pub(crate) fn parse_repeating(
    project: &Project,
    rows: &[Map<String, Value>],
) -> Result<Vec<Repeating>, ApiError> {
    let forms = project.forms();
    let mut out: Vec<Repeating> = Vec::with_capacity(rows.len());
    for row in rows {
        let form = text(row.get("form_name")).trim().to_owned();
        let event_id = if project.is_longitudinal {
            let unique = text(row.get("event_name")).trim().to_owned();
            match project.event_by_unique(&unique) {
                Some(e) => {
                    if !form.is_empty() && !e.forms.contains(&form) {
                        return Err(bad(format!(
                            "The instrument \"{form}\" is not designated for the event \"{unique}\"."
                        )));
                    }
                    e.id
                }
                None => {
                    return Err(bad(format!(
                        "The unique event name \"{unique}\" does not exist in the project."
                    )));
                }
            }
        } else {
            if form.is_empty() {
                return Err(bad(
                    "Each row needs \"form_name\": a classic project repeats instruments only."
                        .into(),
                ));
            }
            store::CLASSIC_EVENT
        };
        if !form.is_empty() && !forms.contains(&form) {
            return Err(bad(format!(
                "The instrument \"{form}\" does not exist in the project."
            )));
        }
        if out.iter().any(|r| r.event_id == event_id && r.form == form) {
            continue;
        }
        // An event repeats whole or by instruments, not both.
        let whole = out
            .iter()
            .any(|r| r.event_id == event_id && r.form.is_empty());
        let parts = out
            .iter()
            .any(|r| r.event_id == event_id && !r.form.is_empty());
        if (form.is_empty() && parts) || (!form.is_empty() && whole) {
            return Err(bad(
                "An event repeats either as a whole or by some of its instruments, not both."
                    .into(),
            ));
        }
        out.push(Repeating {
            event_id,
            form,
            custom_label: text(row.get("custom_form_label")),
        });
    }
    Ok(out)
}
