//! Project methods: Export Project Info and Create Project (§2.5, §6.5).

use redcap::{ApiError, Rights};
use serde_json::{Map, Value};

use super::{Ctx, project_xml, text};
use crate::db::{Arm, Event, Field, LogKind, Member, Project};
use crate::format::Reply;

/// Export Project Info: one object (JSON) / one row (CSV) / `<items>` (XML).
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let p = ctx.project();
    let b = |v: bool| Value::from(u8::from(v));
    let mut m = Map::new();
    m.insert("project_id".into(), p.id.into());
    m.insert("project_title".into(), p.title.clone().into());
    m.insert("creation_time".into(), p.creation_time.clone().into());
    m.insert("production_time".into(), p.production_time.clone().into());
    m.insert("in_production".into(), p.status.into());
    m.insert("project_language".into(), "English".into());
    m.insert("purpose".into(), p.purpose.into());
    m.insert("purpose_other".into(), p.purpose_other.clone().into());
    m.insert("project_notes".into(), p.notes.clone().into());
    m.insert("custom_record_label".into(), "".into());
    m.insert("secondary_unique_field".into(), "".into());
    m.insert("is_longitudinal".into(), b(p.is_longitudinal));
    m.insert(
        "has_repeating_instruments_or_events".into(),
        b(p.has_repeating()),
    );
    m.insert("surveys_enabled".into(), b(p.surveys_enabled));
    m.insert("scheduling_enabled".into(), b(false));
    m.insert(
        "record_autonumbering_enabled".into(),
        b(p.record_autonumbering_enabled),
    );
    m.insert("randomization_enabled".into(), b(false));
    m.insert("ddp_enabled".into(), b(false));
    m.insert("project_irb_number".into(), "".into());
    m.insert("project_grant_number".into(), "".into());
    m.insert("project_pi_firstname".into(), "".into());
    m.insert("project_pi_lastname".into(), "".into());
    if ctx.config.version >= redcap::RedcapVersion::new(15, 8, 2) {
        m.insert("project_pi_email".into(), "".into());
    }
    m.insert("display_today_now_button".into(), b(true));
    m.insert("missing_data_codes".into(), "".into());
    m.insert("external_modules".into(), "".into());
    m.insert("bypass_branching_erase_field_prompt".into(), b(false));
    // What Import Project Information changed of the rest.
    let pid = p.id;
    for (name, value) in ctx.sql(|c| super::project_settings::stored(c, pid))? {
        m.insert(name, value);
    }
    ctx.log_manage(LogKind::Manage, "Export project information");
    Ok(match ctx.format {
        crate::format::Format::Json => {
            Reply::ok(ctx.format, crate::format::php_json(&Value::Object(m)))
        }
        _ => ctx.rows_reply(&[m], &[], "items", "item"),
    })
}

/// Create Project with a super token: answers the creator's new token, bare
/// (§2.5, §10.13).
pub fn create(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let rows = ctx.take_rows();
    if rows.len() > 1 {
        return Err(ApiError::OneProjectOnly);
    }
    let row = rows.into_iter().next().unwrap_or_default();
    let title = text(row.get("project_title")).trim().to_owned();
    let purpose = text(row.get("purpose"));
    let purpose: u8 = match purpose.trim().parse() {
        Ok(p) if p <= 4 && !title.is_empty() => p,
        _ => return Err(ApiError::ProjectAttributesMissing),
    };
    let purpose_other = text(row.get("purpose_other"));
    if purpose == 1 && purpose_other.trim().is_empty() {
        return Err(ApiError::PurposeOtherMissing);
    }
    let flag = |k: &str, default: bool| match text(row.get(k)).trim() {
        "" => default,
        v => v == "1",
    };

    // A REDCap XML file (`odm`) seeds the project; it is read before
    // anything changes.
    let mut file = project_xml::read_odm(ctx)?;
    let state = &mut *ctx.state;
    let id = state.next_project_id.max(1);
    let creator = ctx.caller.username.clone();
    let metadata = vec![Field {
        field_name: "record_id".into(),
        form_name: "my_first_instrument".into(),
        field_type: "text".into(),
        field_label: "Record ID".into(),
        ..Field::default()
    }];
    let token = state.new_project_token();
    let mut project = Project {
        id,
        title,
        purpose,
        purpose_other,
        notes: text(row.get("project_notes")),
        creation_time: ctx.now.second.clone(),
        status: 0,
        production_time: String::new(),
        is_longitudinal: flag("is_longitudinal", false),
        surveys_enabled: flag("surveys_enabled", false),
        record_autonumbering_enabled: flag("record_autonumbering_enabled", true),
        metadata,
        members: Default::default(),
        roles: Vec::new(),
        dags: Vec::new(),
        arms: Vec::new(),
        events: Vec::new(),
        repeating: Vec::new(),
        form_labels: Default::default(),
    };
    let mut counters = project_xml::Counters {
        next_event_id: ctx.state.next_event_id,
        next_group_id: ctx.state.next_group_id,
        next_role_id: ctx.state.next_role_id,
    };
    let mut survey_setup = None;
    let records = match file.as_mut() {
        Some(f) => {
            if f.autonumbering.is_some()
                && text(row.get("record_autonumbering_enabled"))
                    .trim()
                    .is_empty()
            {
                project.record_autonumbering_enabled = f.autonumbering.unwrap_or(true);
            }
            if text(row.get("surveys_enabled")).trim().is_empty() {
                project.surveys_enabled = f.surveys_enabled;
            }
            let events =
                project_xml::apply_structure(&mut counters, &mut project, f, ctx.config.version)?;
            survey_setup = Some((
                std::mem::take(&mut f.surveys),
                std::mem::take(&mut f.survey_queue),
                events.clone(),
            ));
            project_xml::prepare_records(&project, f, &events)?
        }
        None => Vec::new(),
    };
    let reports = file
        .as_mut()
        .map(|f| std::mem::take(&mut f.reports))
        .unwrap_or_default();
    // The file was found good: from here on the project is made.
    let state = &mut *ctx.state;
    state.next_project_id = id + 1;
    state.next_event_id = counters.next_event_id;
    state.next_group_id = counters.next_group_id;
    state.next_role_id = counters.next_role_id;
    // A longitudinal project starts with one arm and one event holding
    // every instrument (§2.5).
    if project.is_longitudinal && file.is_none() {
        let event_id = state.next_event_id.max(1);
        state.next_event_id = event_id + 1;
        project.arms.push(Arm {
            num: 1,
            name: "Arm 1".into(),
        });
        project.events.push(Event {
            id: event_id,
            arm_num: 1,
            name: "Event 1".into(),
            day_offset: 0.0,
            offset_min: 0.0,
            offset_max: 0.0,
            custom_label: String::new(),
            forms: project.forms(),
        });
    }
    let rights = Rights::full(&project.forms());
    project.members.insert(
        creator.clone(),
        Member {
            expiration: None,
            group_id: None,
            role_id: None,
            rights,
            token: Some(token.clone()),
        },
    );
    let surveys_of_file = survey_setup.map(|s| (project.clone(), s));
    state.projects.insert(id, project);
    state.touch();
    // The rest of the request logs into the new project.
    ctx.caller.project_id = Some(id);
    if let Some((project, (surveys, queue, events))) = surveys_of_file {
        ctx.sql(|c| crate::surveys::apply_odm(c, &project, &surveys, &queue, &events))?;
    }
    if file.is_some() {
        project_xml::write_records(ctx, records)?;
        ctx.sql(|c| {
            for r in &reports {
                super::reports::insert(c, id, r)?;
            }
            Ok(())
        })?;
        ctx.log_manage(LogKind::Manage, "Create project using REDCap XML file");
    } else {
        ctx.log_manage(LogKind::Manage, "Create project");
    }
    // REDCap's `Project::apiCreate` gives the creator a token without a
    // log row of its own (`RedCapDB::setAPIToken` logs nothing): the
    // creation's row above is the last one.
    Ok(Reply::ok(ctx.format, token))
}
