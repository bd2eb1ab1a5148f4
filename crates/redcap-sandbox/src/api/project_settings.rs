//! Import Project Information (`content=project_settings`, §6.5), as
//! REDCap 15.7.6's `API/project_settings/import.php` does it: the Design
//! right (else 400 `api_228`), the row "Import project information (API)"
//! logged before `data` is read, then every attribute of the 18 REDCap
//! lets a client change that `data` holds is written; the answer is the
//! number of attributes `data` holds — changeable or not (REDCap answers
//! `count($data)`). `data` is one object (JSON), the first row (CSV) or
//! `<items>` (XML); a JSON array is counted by its items and changes
//! nothing (REDCap looks the attributes up on the array itself).
//!
//! Attributes the sandbox keeps in its project row (title, purpose and
//! its text, notes, surveys and auto-numbering flags) change there; the
//! rest (language, custom record label, secondary unique field,
//! scheduling, randomization, IRB and grant numbers, PI names, the
//! today/now button, the branching-erase prompt) are kept in
//! `redcap_project_settings` and shown by Export Project Info.
//! `is_longitudinal=1` turns a classic project longitudinal as REDCap
//! shows one: arm 1 (`Arm 1`) with one event (`Event 1`) holding every
//! instrument, where its values (kept without an event in a classic
//! project) and its repeating setup move. `is_longitudinal=0` turns a
//! project of one event back (REDCap would accept more and hide the other
//! events' data: the sandbox refuses that, saying why).

use std::collections::BTreeMap;

use redcap::ApiError;
use rusqlite::params;
use serde_json::{Map, Value};

use super::{Ctx, text};
use crate::db::{Arm, Event, LogKind};
use crate::format::{Format, Reply};
use crate::store;

/// The table of the attributes the sandbox's project row has no column
/// for (REDCap keeps them in `redcap_projects`).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS redcap_project_settings (
    project_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
);";

/// Changeable attributes kept in `redcap_project_settings`; `true` for the
/// 0/1 flags (exported as numbers).
const KEPT: &[(&str, bool)] = &[
    ("project_language", false),
    ("custom_record_label", false),
    ("secondary_unique_field", false),
    ("scheduling_enabled", true),
    ("randomization_enabled", true),
    ("project_irb_number", false),
    ("project_grant_number", false),
    ("project_pi_firstname", false),
    ("project_pi_lastname", false),
    ("display_today_now_button", true),
    ("bypass_branching_erase_field_prompt", true),
];

/// The attributes of `redcap_project_settings` a project has, as Export
/// Project Info shows them (flags as numbers).
pub(crate) fn stored(
    conn: &rusqlite::Connection,
    project_id: u64,
) -> rusqlite::Result<BTreeMap<String, Value>> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM redcap_project_settings WHERE project_id = ?1")?;
    let rows = stmt.query_map([project_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (name, value) = row?;
        let flag = KEPT.iter().any(|(n, f)| *n == name && *f);
        let value = match value.parse::<i64>() {
            Ok(n) if flag => Value::from(n),
            _ => Value::from(value),
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// A 0/1 attribute: `1`/`true` or `0`/`false`/blank.
fn flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.trim() {
        "1" => Ok(true),
        "0" | "" => Ok(false),
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        v => Err(ApiError::BadStructure {
            details: format!("The value \"{v}\" of \"{name}\" is not valid: it must be 0 or 1."),
        }),
    }
}

/// Import Project Information.
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.design {
        return Err(ApiError::ProjectSettingsPrivilege);
    }
    ctx.log_manage(LogKind::Manage, "Import project information");
    let json_array =
        ctx.format == Format::Json && ctx.post.str("data").trim_start().starts_with('[');
    let rows = ctx.take_rows();
    let (row, count): (Map<String, Value>, usize) = if json_array {
        (Map::new(), rows.len())
    } else {
        let row = rows.into_iter().next().ok_or(ApiError::DataNotInFormat)?;
        let n = row.len();
        (row, n)
    };
    let get = |name: &str| row.get(name).map(|v| text(Some(v)));

    // Check everything before changing anything.
    let purpose = match get("purpose") {
        Some(p) => match p.trim().parse::<u8>() {
            Ok(n) if n <= 4 => Some(n),
            _ => {
                return Err(ApiError::BadStructure {
                    details: format!(
                        "The value \"{p}\" of \"purpose\" is not valid: it must be 0, 1, 2, 3, or 4."
                    ),
                });
            }
        },
        None => None,
    };
    let surveys = get("surveys_enabled")
        .map(|v| flag("surveys_enabled", &v))
        .transpose()?;
    let autonumbering = get("record_autonumbering_enabled")
        .map(|v| flag("record_autonumbering_enabled", &v))
        .transpose()?;
    let longitudinal = match get("is_longitudinal") {
        Some(v) => Some(flag("is_longitudinal", &v)?),
        None => None,
    }
    .filter(|on| *on != ctx.project().is_longitudinal);
    if longitudinal == Some(false) && ctx.project().events.len() != 1 {
        return Err(ApiError::BadStructure {
            details: format!(
                "The project has {} events: the sandbox turns a longitudinal project classic only when it has one event (delete the others first), as REDCap would otherwise hide their data.",
                ctx.project().events.len()
            ),
        });
    }
    let mut kept = Vec::new();
    for (name, is_flag) in KEPT {
        if let Some(v) = get(name) {
            let v = if *is_flag {
                u8::from(flag(name, &v)?).to_string()
            } else {
                v
            };
            kept.push((*name, v));
        }
    }

    let pid = ctx.pid();
    ctx.sql(|c| {
        let mut stmt = c.prepare_cached(
            "INSERT INTO redcap_project_settings (project_id, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value",
        )?;
        for (name, value) in &kept {
            stmt.execute(params![pid, name, value])?;
        }
        Ok(())
    })?;
    match longitudinal {
        Some(true) => make_longitudinal(ctx)?,
        Some(false) => make_classic(ctx)?,
        None => {}
    }
    let title = get("project_title");
    let purpose_other = get("purpose_other");
    let notes = get("project_notes");
    if title.is_some()
        || purpose.is_some()
        || purpose_other.is_some()
        || notes.is_some()
        || surveys.is_some()
        || autonumbering.is_some()
    {
        let p = ctx.project_mut();
        if let Some(v) = title {
            p.title = v;
        }
        if let Some(v) = purpose {
            p.purpose = v;
        }
        if let Some(v) = purpose_other {
            p.purpose_other = v;
        }
        if let Some(v) = notes {
            p.notes = v;
        }
        if let Some(v) = surveys {
            p.surveys_enabled = v;
        }
        if let Some(v) = autonumbering {
            p.record_autonumbering_enabled = v;
        }
    }
    Ok(ctx.count(count))
}

/// Moves a project's values and repeating setup from `from` to `to` (an
/// event id, or [`store::CLASSIC_EVENT`]).
fn move_event(ctx: &mut Ctx, from: i64, to: i64) -> Result<(), ApiError> {
    let pid = ctx.pid();
    ctx.sql(|c| {
        c.execute(
            "UPDATE redcap_data SET event_id = ?3 WHERE project_id = ?1 AND event_id = ?2",
            params![pid, from, to],
        )?;
        crate::surveys::move_event(c, pid, from, to)
    })?;
    for r in &mut ctx.project_mut().repeating {
        if r.event_id == from {
            r.event_id = to;
        }
    }
    Ok(())
}

/// A classic project becomes longitudinal: `Arm 1`, `Event 1` with every
/// instrument, the values moved there.
fn make_longitudinal(ctx: &mut Ctx) -> Result<(), ApiError> {
    let id = ctx.state.next_event_id.max(1);
    ctx.state.next_event_id = id + 1;
    ctx.state.touch();
    move_event(ctx, store::CLASSIC_EVENT, id)?;
    let p = ctx.project_mut();
    let forms = p.forms();
    p.arms = vec![Arm {
        num: 1,
        name: "Arm 1".into(),
    }];
    p.events = vec![Event {
        id,
        arm_num: 1,
        name: "Event 1".into(),
        day_offset: 0.0,
        offset_min: 0.0,
        offset_max: 0.0,
        custom_label: String::new(),
        forms,
    }];
    p.is_longitudinal = true;
    Ok(())
}

/// A longitudinal project of one event becomes classic: its values leave
/// the event, the arm and event go.
fn make_classic(ctx: &mut Ctx) -> Result<(), ApiError> {
    let id = ctx.project().events[0].id;
    move_event(ctx, id, store::CLASSIC_EVENT)?;
    let p = ctx.project_mut();
    p.arms.clear();
    p.events.clear();
    p.is_longitudinal = false;
    Ok(())
}
