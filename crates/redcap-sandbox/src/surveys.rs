//! Surveys: which instruments are surveys, the survey queue, participants,
//! responses and their codes, in tables shaped like REDCap's
//! (`redcap_surveys`, `redcap_surveys_queue`, `redcap_surveys_participants`,
//! `redcap_surveys_response`, `redcap_surveys_queue_hashes`).
//!
//! Read in REDCap 15.7.6 (`Classes/Survey.php`, `Classes/REDCap.php`,
//! `Classes/Project.php`, `Config/init_functions.php`), facts only:
//!
//! - an instrument is a survey when the project has surveys enabled and a
//!   `redcap_surveys` row names it;
//! - a record's survey link for an instrument, event and instance is a
//!   participant row (email `''`, its 16-character hash from
//!   `abcdefghijkmnopqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ23456789`) with a
//!   response row (no submit time yet), made the first time it is asked
//!   for; the link is `<public URL>surveys/?s=<hash>`;
//! - an access code is 9 characters from the hand-enterable set
//!   `34789ACDEFHJKLMNPRTWXY`, kept on the participant row; a return code 8
//!   such characters, kept on the response row, unique within the survey;
//! - a record's survey queue hash is 10 characters of the first set, one
//!   per record, the link `<public URL>surveys/?sq=<hash>`;
//! - a response counts once it has a first submit time: its timestamp is
//!   its completion time, or `[not completed]`.
//!
//! The sandbox has no survey pages: a respondent's submission is recorded
//! through the admin endpoint (`POST /sandbox/projects/{pid}/surveys/{form}/responses`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::db::Project;
use crate::store::CLASSIC_EVENT;

/// The survey tables.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS redcap_surveys (
    survey_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    form_name TEXT NOT NULL,
    title TEXT NOT NULL,
    survey_enabled INTEGER NOT NULL DEFAULT 1,
    save_and_return INTEGER NOT NULL DEFAULT 0,
    edit_completed_response INTEGER NOT NULL DEFAULT 0,
    UNIQUE (project_id, form_name)
);
CREATE TABLE IF NOT EXISTS redcap_surveys_queue (
    survey_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (survey_id, event_id)
);
CREATE TABLE IF NOT EXISTS redcap_surveys_participants (
    participant_id INTEGER PRIMARY KEY,
    survey_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    participant_email TEXT,
    participant_identifier TEXT,
    hash TEXT NOT NULL UNIQUE,
    access_code TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS redcap_surveys_participants_survey
    ON redcap_surveys_participants (survey_id, event_id);
CREATE TABLE IF NOT EXISTS redcap_surveys_response (
    response_id INTEGER PRIMARY KEY,
    participant_id INTEGER NOT NULL,
    record TEXT NOT NULL,
    instance INTEGER NOT NULL DEFAULT 1,
    first_submit_time TEXT,
    completion_time TEXT,
    return_code TEXT,
    UNIQUE (participant_id, record, instance)
);
CREATE INDEX IF NOT EXISTS redcap_surveys_response_record
    ON redcap_surveys_response (record);
CREATE INDEX IF NOT EXISTS redcap_surveys_response_return_code
    ON redcap_surveys_response (return_code);
CREATE TABLE IF NOT EXISTS redcap_surveys_queue_hashes (
    project_id INTEGER NOT NULL,
    record TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    PRIMARY KEY (project_id, record)
);
";

/// Characters of REDCap's URL hashes.
const HASH_CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ23456789";
/// Characters of codes meant to be typed by hand.
const CODE_CHARS: &[u8] = b"34789ACDEFHJKLMNPRTWXY";

/// A random string of `len` characters of `set` (REDCap's
/// `generateRandomHash`, which also refuses what reads as a number in
/// scientific notation).
fn random_text(len: usize, set: &[u8]) -> String {
    loop {
        let mut bytes = vec![0u8; len];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        // 256 is not a multiple of the set's size: reject the tail for an
        // even draw.
        let limit = 256 - 256 % set.len();
        if bytes.iter().any(|b| usize::from(*b) >= limit) {
            continue;
        }
        let s: String = bytes
            .iter()
            .map(|b| set[usize::from(*b) % set.len()] as char)
            .collect();
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0
            && s[digits..].starts_with('E')
            && s[digits + 1..].starts_with(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        return s;
    }
}

/// A survey's settings (a row of `redcap_surveys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub id: i64,
    pub form: String,
    pub title: String,
    pub enabled: bool,
    pub save_and_return: bool,
    pub edit_completed_response: bool,
}

/// What enabling a survey sets.
#[derive(Debug, Clone, Default)]
pub struct SurveySettings {
    pub form: String,
    /// Blank: the instrument's label.
    pub title: String,
    pub enabled: bool,
    pub save_and_return: bool,
    pub edit_completed_response: bool,
}

fn survey_row(r: &rusqlite::Row) -> rusqlite::Result<Survey> {
    Ok(Survey {
        id: r.get(0)?,
        form: r.get(1)?,
        title: r.get(2)?,
        enabled: r.get(3)?,
        save_and_return: r.get(4)?,
        edit_completed_response: r.get(5)?,
    })
}

const SURVEY_COLUMNS: &str =
    "survey_id, form_name, title, survey_enabled, save_and_return, edit_completed_response";

/// The project's surveys, in instrument order: none unless the project has
/// surveys enabled; rows of instruments no longer in the project are left
/// out (REDCap's orphaned surveys).
pub fn surveys(conn: &Connection, project: &Project) -> rusqlite::Result<Vec<Survey>> {
    if !project.surveys_enabled {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SURVEY_COLUMNS} FROM redcap_surveys WHERE project_id = ?1"
    ))?;
    let mut all: Vec<Survey> = stmt
        .query_map(params![project.id], survey_row)?
        .collect::<rusqlite::Result<_>>()?;
    let forms = project.forms();
    all.retain(|s| forms.contains(&s.form));
    all.sort_by_key(|s| forms.iter().position(|f| *f == s.form));
    Ok(all)
}

/// The survey of an instrument, if it is one.
pub fn survey_of(
    conn: &Connection,
    project: &Project,
    form: &str,
) -> rusqlite::Result<Option<Survey>> {
    Ok(surveys(conn, project)?.into_iter().find(|s| s.form == form))
}

/// Makes an instrument a survey (or changes its settings); answers its id.
pub fn enable(conn: &Connection, pid: u64, s: &SurveySettings) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO redcap_surveys (project_id, form_name, title, survey_enabled,
             save_and_return, edit_completed_response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (project_id, form_name) DO UPDATE SET title = ?3,
             survey_enabled = ?4, save_and_return = ?5, edit_completed_response = ?6",
    )?
    .execute(params![
        pid,
        s.form,
        s.title,
        s.enabled,
        s.save_and_return,
        s.edit_completed_response
    ])?;
    conn.prepare_cached(
        "SELECT survey_id FROM redcap_surveys WHERE project_id = ?1 AND form_name = ?2",
    )?
    .query_row(params![pid, s.form], |r| r.get(0))
}

/// A new project's surveys from its REDCap XML file: the settings of the
/// instruments it defines, and the survey queue of its events (unique
/// event names → `events`; a classic project's queue is its one event).
pub fn apply_odm(
    conn: &Connection,
    project: &Project,
    surveys: &[SurveySettings],
    queue: &[(String, String, bool)],
    events: &std::collections::HashMap<String, i64>,
) -> rusqlite::Result<()> {
    let forms = project.forms();
    for s in surveys.iter().filter(|s| forms.contains(&s.form)) {
        let id = enable(conn, project.id, s)?;
        let queued: Vec<i64> = queue
            .iter()
            .filter(|(form, _, active)| *active && *form == s.form)
            .filter_map(|(_, event, _)| {
                if project.is_longitudinal {
                    events.get(event).copied()
                } else {
                    Some(CLASSIC_EVENT)
                }
            })
            .collect();
        set_queue(conn, id, &queued)?;
    }
    Ok(())
}

/// The project's surveys and survey queue as REDCap XML writes them
/// (`redcap:Surveys`, `redcap:SurveysQueue` attributes, the settings the
/// sandbox keeps; a classic project's queue names its hidden first event,
/// `event_1_arm_1`).
pub fn odm_attributes(
    conn: &Connection,
    project: &Project,
) -> rusqlite::Result<(Vec<String>, Vec<String>)> {
    let e = crate::odm::escape;
    let b = |v: bool| if v { "1" } else { "0" };
    let names = project.unique_event_names();
    let mut list = Vec::new();
    let mut queue = Vec::new();
    for s in surveys(conn, project)? {
        list.push(format!(
            "form_name=\"{}\" title=\"{}\" survey_enabled=\"{}\" save_and_return=\"{}\" edit_completed_response=\"{}\"",
            e(&s.form),
            e(&s.title),
            b(s.enabled),
            b(s.save_and_return),
            b(s.edit_completed_response)
        ));
        for event in queue_events(conn, s.id)? {
            let name = if project.is_longitudinal {
                match project.events.iter().position(|ev| ev.id == event) {
                    Some(i) => names[i].clone(),
                    None => continue,
                }
            } else {
                "event_1_arm_1".to_owned()
            };
            queue.push(format!(
                "active=\"1\" auto_start=\"0\" condition_andor=\"AND\" condition_logic=\"\" event_id=\"{}\" survey_id=\"{}\"",
                e(&name),
                e(&s.form)
            ));
        }
    }
    Ok((list, queue))
}

/// Puts a survey in the survey queue of these events (active), or takes
/// it out of every event (`events` empty).
pub fn set_queue(conn: &Connection, survey_id: i64, events: &[i64]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM redcap_surveys_queue WHERE survey_id = ?1")?
        .execute(params![survey_id])?;
    for e in events {
        conn.prepare_cached(
            "INSERT INTO redcap_surveys_queue (survey_id, event_id, active) VALUES (?1, ?2, 1)",
        )?
        .execute(params![survey_id, e])?;
    }
    Ok(())
}

/// The events where a survey is in the queue (active).
pub fn queue_events(conn: &Connection, survey_id: i64) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT event_id FROM redcap_surveys_queue WHERE survey_id = ?1 AND active = 1
         ORDER BY event_id",
    )?
    .query_map(params![survey_id], |r| r.get(0))?
    .collect()
}

/// Whether the survey queue is enabled: an active queue entry of an
/// enabled survey, in an event of the project (that holds the instrument,
/// in a longitudinal project) — REDCap's `Survey::surveyQueueEnabled`.
pub fn queue_enabled(conn: &Connection, project: &Project) -> rusqlite::Result<bool> {
    for s in surveys(conn, project)? {
        if !s.enabled {
            continue;
        }
        for e in queue_events(conn, s.id)? {
            let ok = if project.is_longitudinal {
                project
                    .events
                    .iter()
                    .any(|ev| ev.id == e && ev.forms.contains(&s.form))
            } else {
                true
            };
            if ok {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The first event of an event's arm (a classic project's one event).
pub fn first_in_arm(project: &Project, event_id: i64) -> i64 {
    if !project.is_longitudinal {
        return CLASSIC_EVENT;
    }
    let arm = project
        .events
        .iter()
        .find(|e| e.id == event_id)
        .map(|e| e.arm_num);
    project
        .events
        .iter()
        .find(|e| Some(e.arm_num) == arm)
        .map(|e| e.id)
        .unwrap_or(event_id)
}

/// The participant (id, hash) of a record's response to a survey in an
/// event and instance, made (with an empty response) if there is none —
/// REDCap's `getFollowupSurveyParticipantIdHash`.
pub fn participant_for(
    conn: &Connection,
    survey_id: i64,
    event_id: i64,
    record: &str,
    instance: i64,
) -> rusqlite::Result<(i64, String)> {
    let found: Option<(i64, String)> = conn
        .prepare_cached(
            // From the record's few responses (CROSS JOIN keeps SQLite from
            // starting at every participant of the survey: a participant
            // list of N records asks this N times).
            "SELECT p.participant_id, p.hash FROM redcap_surveys_response r
             CROSS JOIN redcap_surveys_participants p ON p.participant_id = r.participant_id
             WHERE p.survey_id = ?1 AND p.event_id = ?2 AND p.participant_email IS NOT NULL
               AND r.record = ?3 AND r.instance = ?4
             ORDER BY p.participant_id LIMIT 1",
        )?
        .query_row(params![survey_id, event_id, record, instance], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some(found) = found {
        return Ok(found);
    }
    let hash = unique(
        conn,
        16,
        HASH_CHARS,
        "SELECT 1 FROM redcap_surveys_participants WHERE hash = ?1",
    )?;
    conn.prepare_cached(
        "INSERT INTO redcap_surveys_participants (survey_id, event_id, participant_email, hash)
         VALUES (?1, ?2, '', ?3)",
    )?
    .execute(params![survey_id, event_id, hash])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO redcap_surveys_response (participant_id, record, instance) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id, record, instance])?;
    Ok((id, hash))
}

/// A fresh random text that `taken` (a query with one parameter) does not
/// find.
fn unique(conn: &Connection, len: usize, set: &[u8], taken: &str) -> rusqlite::Result<String> {
    loop {
        let candidate = random_text(len, set);
        let exists = conn
            .prepare_cached(taken)?
            .query_row(params![candidate], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return Ok(candidate);
        }
    }
}

/// A participant's access code, made the first time.
pub fn access_code(conn: &Connection, participant_id: i64) -> rusqlite::Result<String> {
    let code: Option<String> = conn
        .prepare_cached(
            "SELECT access_code FROM redcap_surveys_participants WHERE participant_id = ?1",
        )?
        .query_row(params![participant_id], |r| r.get(0))?;
    if let Some(code) = code.filter(|c| !c.is_empty()) {
        return Ok(code);
    }
    let code = unique(
        conn,
        9,
        CODE_CHARS,
        "SELECT 1 FROM redcap_surveys_participants WHERE access_code = ?1",
    )?;
    conn.prepare_cached(
        "UPDATE redcap_surveys_participants SET access_code = ?2 WHERE participant_id = ?1",
    )?
    .execute(params![participant_id, code])?;
    Ok(code)
}

/// A record's return code for a survey in an event and instance, made the
/// first time (its response too, if none) — REDCap's
/// `Survey::getSurveyReturnCode`.
pub fn return_code(
    conn: &Connection,
    survey_id: i64,
    event_id: i64,
    record: &str,
    instance: i64,
) -> rusqlite::Result<String> {
    let find = |conn: &Connection| -> rusqlite::Result<Option<(i64, Option<String>)>> {
        conn.prepare_cached(
            "SELECT r.response_id, r.return_code FROM redcap_surveys_participants p
             JOIN redcap_surveys_response r ON r.participant_id = p.participant_id
             WHERE p.survey_id = ?1 AND p.event_id = ?2 AND r.record = ?3 AND r.instance = ?4
             ORDER BY p.participant_email DESC, r.response_id LIMIT 1",
        )?
        .query_row(params![survey_id, event_id, record, instance], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    };
    let (response_id, code) = match find(conn)? {
        Some(found) => found,
        None => {
            participant_for(conn, survey_id, event_id, record, instance)?;
            find(conn)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?
        }
    };
    if let Some(code) = code.filter(|c| !c.is_empty()) {
        return Ok(code.to_uppercase());
    }
    let code = loop {
        let candidate = random_text(8, CODE_CHARS);
        let taken = conn
            .prepare_cached(
                "SELECT 1 FROM redcap_surveys_response r
                 CROSS JOIN redcap_surveys_participants p ON p.participant_id = r.participant_id
                 WHERE r.return_code = ?2 AND p.survey_id = ?1",
            )?
            .query_row(params![survey_id, candidate], |_| Ok(()))
            .optional()?
            .is_some();
        if !taken {
            break candidate;
        }
    };
    conn.prepare_cached(
        "UPDATE redcap_surveys_response SET return_code = ?2 WHERE response_id = ?1",
    )?
    .execute(params![response_id, code])?;
    Ok(code)
}

/// A record's survey queue hash, made the first time.
pub fn queue_hash(conn: &Connection, pid: u64, record: &str) -> rusqlite::Result<String> {
    let found: Option<String> = conn
        .prepare_cached(
            "SELECT hash FROM redcap_surveys_queue_hashes WHERE project_id = ?1 AND record = ?2",
        )?
        .query_row(params![pid, record], |r| r.get(0))
        .optional()?;
    if let Some(h) = found {
        return Ok(h);
    }
    let hash = unique(
        conn,
        10,
        HASH_CHARS,
        "SELECT 1 FROM redcap_surveys_queue_hashes WHERE hash = ?1",
    )?;
    conn.prepare_cached(
        "INSERT INTO redcap_surveys_queue_hashes (project_id, record, hash) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![pid, record, hash])?;
    Ok(hash)
}

/// A respondent's submission, as the admin endpoint records it.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub record: String,
    pub event_id: i64,
    pub instance: i64,
    /// `YYYY-MM-DD HH:MM:SS`: the first submit time.
    pub time: String,
    /// Whether the response is complete (its completion time is `time`).
    pub completed: bool,
    /// The participant's email and identifier, if given.
    pub email: Option<String>,
    pub identifier: Option<String>,
}

/// Records a submission: the response's first submit time (kept if set),
/// its completion time, and the participant's email and identifier.
pub fn submit(conn: &Connection, survey_id: i64, s: &Submission) -> rusqlite::Result<()> {
    let (participant, _) = participant_for(conn, survey_id, s.event_id, &s.record, s.instance)?;
    conn.prepare_cached(
        "UPDATE redcap_surveys_response
         SET first_submit_time = coalesce(first_submit_time, ?4),
             completion_time = CASE WHEN ?5 THEN ?4 ELSE NULL END
         WHERE participant_id = ?1 AND record = ?2 AND instance = ?3",
    )?
    .execute(params![
        participant,
        s.record,
        s.instance,
        s.time,
        s.completed
    ])?;
    if let Some(email) = &s.email {
        conn.prepare_cached(
            "UPDATE redcap_surveys_participants SET participant_email = ?2 WHERE participant_id = ?1",
        )?
        .execute(params![participant, email])?;
    }
    if let Some(identifier) = &s.identifier {
        conn.prepare_cached(
            "UPDATE redcap_surveys_participants SET participant_identifier = ?2
             WHERE participant_id = ?1",
        )?
        .execute(params![
            participant,
            (!identifier.is_empty()).then_some(identifier)
        ])?;
    }
    Ok(())
}

/// One response of a record as exports show it.
#[derive(Debug, Clone)]
pub struct Response {
    pub event_id: i64,
    pub form: String,
    pub instance: i64,
    /// The completion time, or `[not completed]`.
    pub timestamp: String,
    pub identifier: String,
}

/// The responses of a record that have been submitted (a first submit
/// time), oldest completion first (unfinished ones first, as MySQL sorts
/// NULL).
pub fn responses(conn: &Connection, pid: u64, record: &str) -> rusqlite::Result<Vec<Response>> {
    conn.prepare_cached(
        "SELECT p.event_id, s.form_name, r.instance, r.completion_time,
                coalesce(p.participant_identifier, '')
         FROM redcap_surveys_response r
         JOIN redcap_surveys_participants p ON p.participant_id = r.participant_id
         JOIN redcap_surveys s ON s.survey_id = p.survey_id
         WHERE s.project_id = ?1 AND r.record = ?2 AND r.first_submit_time IS NOT NULL
         ORDER BY r.completion_time IS NOT NULL, r.completion_time, r.response_id",
    )?
    .query_map(params![pid, record], |r| {
        let completion: Option<String> = r.get(3)?;
        Ok(Response {
            event_id: r.get(0)?,
            form: r.get(1)?,
            instance: r.get(2)?,
            timestamp: completion.unwrap_or_else(|| "[not completed]".into()),
            identifier: r.get(4)?,
        })
    })?
    .collect()
}

/// One participant of a survey's list, before it is shaped for the answer.
#[derive(Debug, Clone)]
pub struct Participant {
    pub id: i64,
    pub email: String,
    pub identifier: String,
    pub hash: String,
    pub record: String,
    pub instance: i64,
    /// 0 no response, 1 partial, 2 completed.
    pub response: u8,
}

/// The participants of a survey in an event (every row with an email,
/// `''` included), with their response.
pub fn participants(
    conn: &Connection,
    survey_id: i64,
    event_id: i64,
) -> rusqlite::Result<Vec<Participant>> {
    conn.prepare_cached(
        "SELECT p.participant_id, coalesce(p.participant_email, ''),
                coalesce(p.participant_identifier, ''), p.hash,
                coalesce(r.record, ''), coalesce(r.instance, 1),
                CASE WHEN r.completion_time IS NOT NULL THEN 2
                     WHEN r.first_submit_time IS NOT NULL THEN 1 ELSE 0 END
         FROM redcap_surveys_participants p
         LEFT JOIN redcap_surveys_response r ON r.participant_id = p.participant_id
         WHERE p.survey_id = ?1 AND p.event_id = ?2 AND p.participant_email IS NOT NULL
         ORDER BY p.participant_id",
    )?
    .query_map(params![survey_id, event_id], |r| {
        Ok(Participant {
            id: r.get(0)?,
            email: r.get(1)?,
            identifier: r.get(2)?,
            hash: r.get(3)?,
            record: r.get(4)?,
            instance: r.get(5)?,
            response: r.get(6)?,
        })
    })?
    .collect()
}

/// Forgets a record's responses, codes and queue hash (the record is
/// deleted); participant rows left without a response go too, but those
/// with an email address (the participant list's own entries).
///
/// Each statement starts from the record's own rows: Delete Records of N
/// records calls this N times.
pub fn delete_record(conn: &Connection, pid: u64, record: &str) -> rusqlite::Result<()> {
    let participants: Vec<i64> = conn
        .prepare_cached(
            "DELETE FROM redcap_surveys_response WHERE record = ?2 AND EXISTS (
                 SELECT 1 FROM redcap_surveys_participants p
                 JOIN redcap_surveys s ON s.survey_id = p.survey_id
                 WHERE p.participant_id = redcap_surveys_response.participant_id
                   AND s.project_id = ?1)
             RETURNING participant_id",
        )?
        .query_map(params![pid, record], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut orphan = conn.prepare_cached(
        "DELETE FROM redcap_surveys_participants WHERE participant_id = ?1
           AND participant_email = ''
           AND NOT EXISTS (SELECT 1 FROM redcap_surveys_response WHERE participant_id = ?1)",
    )?;
    for participant in participants {
        orphan.execute(params![participant])?;
    }
    conn.prepare_cached(
        "DELETE FROM redcap_surveys_queue_hashes WHERE project_id = ?1 AND record = ?2",
    )?
    .execute(params![pid, record])?;
    Ok(())
}

/// Moves a project's survey participants and queue entries from one
/// event to another (a classic project made longitudinal, or back).
pub fn move_event(conn: &Connection, pid: u64, from: i64, to: i64) -> rusqlite::Result<()> {
    for table in ["redcap_surveys_participants", "redcap_surveys_queue"] {
        conn.prepare_cached(&format!(
            "UPDATE {table} SET event_id = ?3 WHERE event_id = ?2
             AND survey_id IN (SELECT survey_id FROM redcap_surveys WHERE project_id = ?1)"
        ))?
        .execute(params![pid, from, to])?;
    }
    Ok(())
}

/// Moves a record's survey rows to its new name.
pub fn rename_record(conn: &Connection, pid: u64, old: &str, new: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE redcap_surveys_response SET record = ?3 WHERE record = ?2 AND EXISTS (
             SELECT 1 FROM redcap_surveys_participants p
             JOIN redcap_surveys s ON s.survey_id = p.survey_id
             WHERE p.participant_id = redcap_surveys_response.participant_id
               AND s.project_id = ?1)",
    )?
    .execute(params![pid, old, new])?;
    conn.prepare_cached(
        "UPDATE redcap_surveys_queue_hashes SET record = ?3 WHERE project_id = ?1 AND record = ?2",
    )?
    .execute(params![pid, old, new])?;
    Ok(())
}

/// The survey columns of an Export Records answer with
/// `exportSurveyFields=true` (REDCap's `Records::getData`): after the
/// pseudo-fields, `redcap_survey_identifier`; before the first exported
/// column (the record ID aside) of each survey, `<form>_timestamp`.
#[derive(Debug)]
pub struct ExportColumns {
    pub pid: u64,
    /// Per selected column, the survey whose timestamp column comes
    /// before it: (instrument, `<instrument>_timestamp`).
    pub before: Vec<Option<(String, String)>>,
    /// The project's first instrument, and each event's arm's first event
    /// (EAV's identifier row).
    pub first_form: String,
    pub first_in_arm: std::collections::HashMap<i64, i64>,
    /// The record being written: its submitted responses.
    current: std::cell::RefCell<Vec<Response>>,
}

impl ExportColumns {
    /// The columns for the selected ones (`(name, form)`), or `None` when
    /// the project has no survey (REDCap then adds nothing).
    pub fn new(
        conn: &Connection,
        project: &Project,
        selected: &[(&str, &str)],
    ) -> rusqlite::Result<Option<ExportColumns>> {
        let list = surveys(conn, project)?;
        if list.is_empty() {
            return Ok(None);
        }
        let rid = project.record_id_field();
        let mut seen: Vec<&str> = Vec::new();
        let before = selected
            .iter()
            .map(|(name, form)| {
                if *name == rid || seen.contains(form) || !list.iter().any(|s| s.form == *form) {
                    return None;
                }
                seen.push(form);
                Some(((*form).to_owned(), format!("{form}_timestamp")))
            })
            .collect();
        Ok(Some(ExportColumns {
            pid: project.id,
            before,
            first_form: project.forms().first().cloned().unwrap_or_default(),
            first_in_arm: project
                .events
                .iter()
                .map(|e| (e.id, first_in_arm(project, e.id)))
                .collect(),
            current: Default::default(),
        }))
    }

    /// Reads the responses of the record about to be written.
    pub fn load(&self, conn: &Connection, record: &str) -> rusqlite::Result<()> {
        *self.current.borrow_mut() = responses(conn, self.pid, record)?;
        Ok(())
    }

    /// The record's survey identifier (the last one given).
    pub fn identifier(&self) -> String {
        self.current
            .borrow()
            .iter()
            .rev()
            .find(|r| !r.identifier.is_empty())
            .map(|r| r.identifier.clone())
            .unwrap_or_default()
    }

    /// A survey's timestamp in a slot (`""`: no response).
    pub fn timestamp(&self, event_id: i64, form: &str, instance: i64) -> String {
        self.current
            .borrow()
            .iter()
            .rev()
            .find(|r| r.event_id == event_id && r.form == form && r.instance == instance)
            .map(|r| r.timestamp.clone())
            .unwrap_or_default()
    }

    /// EAV: the rows REDCap adds after the first value row of a record's
    /// event — the identifier (when the first instrument has a response in
    /// the first event of the event's arm) and each exported survey's
    /// timestamp there, in completion order.
    pub fn eav_rows(&self, event_id: i64, exported: &[&str]) -> Vec<(String, String)> {
        let current = self.current.borrow();
        let first = self
            .first_in_arm
            .get(&event_id)
            .copied()
            .unwrap_or(event_id);
        let mut rows = Vec::new();
        if let Some(r) = current
            .iter()
            .rev()
            .find(|r| r.event_id == first && r.form == self.first_form)
        {
            rows.push(("redcap_survey_identifier".to_owned(), r.identifier.clone()));
        }
        let mut forms: Vec<(&str, &str)> = Vec::new();
        for r in current.iter().filter(|r| r.event_id == event_id) {
            if !exported.contains(&r.form.as_str()) {
                continue;
            }
            match forms.iter_mut().find(|(f, _)| *f == r.form) {
                Some(slot) => slot.1 = &r.timestamp,
                None => forms.push((&r.form, &r.timestamp)),
            }
        }
        rows.extend(
            forms
                .into_iter()
                .map(|(f, t)| (format!("{f}_timestamp"), t.to_owned())),
        );
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_texts_use_their_sets() {
        for _ in 0..200 {
            let h = random_text(16, HASH_CHARS);
            assert_eq!(h.len(), 16);
            assert!(h.bytes().all(|b| HASH_CHARS.contains(&b)), "{h}");
            let c = random_text(9, CODE_CHARS);
            assert!(c.bytes().all(|b| CODE_CHARS.contains(&b)), "{c}");
        }
    }
}
