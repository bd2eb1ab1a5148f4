//! The SQLite layer: schema, loading and saving the project settings, the
//! record values, the logs, and the one-time migration from the old
//! `state.json` / `log.jsonl` files.
//!
//! Tables follow REDCap's own (`redcap_projects`, `redcap_user_rights`,
//! `redcap_user_roles`, `redcap_data_access_groups`, `redcap_metadata`,
//! `redcap_record_list`, `redcap_data`, `redcap_log_event`,
//! `redcap_log_view`, `redcap_edocs_metadata`, `redcap_events_arms`,
//! `redcap_events_metadata`), with the sandbox's own simplifications:
//!
//! - rights (of users and roles) are one JSON column in REDCap's export
//!   shape, not REDCap's fifty columns;
//! - record values are rows `(project_id, event_id, record, field_name,
//!   instance, value)`; a classic project has one implicit event, id
//!   [`CLASSIC_EVENT`], and instance 1; checkbox values are stored under the
//!   export column (`name___code` = `1`/`0`), as the sandbox always has;
//! - `redcap_record_list` holds one row per record with its DAG and its sort
//!   key (numbers first, numerically, then names), so exports stream in
//!   REDCap's order through an index.
//!
//! Durability: WAL journal with `synchronous=FULL`: every commit fsyncs the
//! WAL before it returns, so a transaction that committed survives a crash
//! or power loss (NORMAL would only sync at checkpoints and could lose the
//! last commits on power loss, breaking "a 200 answer means durable").

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use crate::db::{Account, Dag, Doc, Field, LogKind, LogRow, Member, Project, Role, State};

/// The event id of a classic project's single event in `redcap_data`.
pub const CLASSIC_EVENT: i64 = 0;
/// The arm of a classic project's records in `redcap_record_list`.
pub const CLASSIC_ARM: i64 = 1;

/// The database file in the data directory.
pub const DB_FILE: &str = "sandbox.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS redcap_config (
    field_name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox_banned_ips (ip TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS redcap_user_information (
    username TEXT PRIMARY KEY,
    user_email TEXT NOT NULL,
    user_firstname TEXT NOT NULL,
    user_lastname TEXT NOT NULL,
    super_user INTEGER NOT NULL,
    user_suspended INTEGER NOT NULL,
    api_token TEXT
);
CREATE TABLE IF NOT EXISTS redcap_projects (
    project_id INTEGER PRIMARY KEY,
    app_title TEXT NOT NULL,
    purpose INTEGER NOT NULL,
    purpose_other TEXT NOT NULL,
    project_note TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    status INTEGER NOT NULL,
    production_time TEXT NOT NULL,
    repeatforms INTEGER NOT NULL,
    surveys_enabled INTEGER NOT NULL,
    auto_inc_set INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS redcap_user_rights (
    project_id INTEGER NOT NULL,
    username TEXT NOT NULL,
    expiration TEXT,
    group_id INTEGER,
    role_id INTEGER,
    rights TEXT NOT NULL,
    api_token TEXT,
    PRIMARY KEY (project_id, username)
);
CREATE TABLE IF NOT EXISTS redcap_user_roles (
    role_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    unique_role_name TEXT NOT NULL,
    role_name TEXT NOT NULL,
    rights TEXT NOT NULL,
    role_order INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS redcap_data_access_groups (
    group_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    group_name TEXT NOT NULL,
    group_order INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS redcap_metadata (
    project_id INTEGER NOT NULL,
    field_order INTEGER NOT NULL,
    field_name TEXT NOT NULL,
    form_name TEXT NOT NULL,
    section_header TEXT NOT NULL,
    field_type TEXT NOT NULL,
    field_label TEXT NOT NULL,
    select_choices_or_calculations TEXT NOT NULL,
    field_note TEXT NOT NULL,
    text_validation_type_or_show_slider_number TEXT NOT NULL,
    text_validation_min TEXT NOT NULL,
    text_validation_max TEXT NOT NULL,
    identifier TEXT NOT NULL,
    branching_logic TEXT NOT NULL,
    required_field TEXT NOT NULL,
    custom_alignment TEXT NOT NULL,
    question_number TEXT NOT NULL,
    matrix_group_name TEXT NOT NULL,
    matrix_ranking TEXT NOT NULL,
    field_annotation TEXT NOT NULL,
    PRIMARY KEY (project_id, field_order)
);
CREATE TABLE IF NOT EXISTS redcap_edocs_metadata (
    doc_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    doc_name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    doc_size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS redcap_record_list (
    project_id INTEGER NOT NULL,
    arm INTEGER NOT NULL,
    record TEXT NOT NULL,
    dag_id INTEGER,
    sort_class INTEGER NOT NULL,
    sort_num INTEGER NOT NULL,
    PRIMARY KEY (project_id, arm, record)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS redcap_record_list_order
    ON redcap_record_list (project_id, arm, sort_class, sort_num, record);
-- A record in every arm at once (deleting or renaming it): without this,
-- each such change scanned the project's whole record list.
CREATE INDEX IF NOT EXISTS redcap_record_list_record
    ON redcap_record_list (project_id, record);
CREATE TABLE IF NOT EXISTS redcap_log_event (
    log_event_id INTEGER PRIMARY KEY,
    project_id INTEGER,
    ts TEXT NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    data_values TEXT NOT NULL,
    pk TEXT,
    group_id INTEGER
);
CREATE INDEX IF NOT EXISTS redcap_log_event_project_ts ON redcap_log_event (project_id, ts);
CREATE INDEX IF NOT EXISTS redcap_log_event_user ON redcap_log_event (project_id, user, ts);
CREATE INDEX IF NOT EXISTS redcap_log_event_pk ON redcap_log_event (project_id, pk);
CREATE TABLE IF NOT EXISTS redcap_log_view (
    log_view_id INTEGER PRIMARY KEY,
    project_id INTEGER,
    ts TEXT NOT NULL,
    user TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    data_values TEXT NOT NULL,
    pk TEXT,
    group_id INTEGER
);
CREATE INDEX IF NOT EXISTS redcap_log_view_project_ts ON redcap_log_view (project_id, ts);
CREATE INDEX IF NOT EXISTS redcap_log_view_user ON redcap_log_view (project_id, user, ts);
";

/// The longitudinal structure: arms, events (with their arm number
/// rather than REDCap's `arm_id`), the instruments designated for each
/// event, and the repeating instruments and events (`event_id` 0 in a
/// classic project). The first layout had empty `redcap_events_arms` and
/// `redcap_events_metadata` tables of another shape: [`upgrade_events_tables`]
/// replaces them.
const EVENTS_TABLES: &str = "
CREATE TABLE IF NOT EXISTS redcap_events_arms (
    project_id INTEGER NOT NULL,
    arm_num INTEGER NOT NULL,
    arm_name TEXT NOT NULL,
    PRIMARY KEY (project_id, arm_num)
);
CREATE TABLE IF NOT EXISTS redcap_events_metadata (
    event_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    arm_num INTEGER NOT NULL,
    event_order INTEGER NOT NULL,
    descrip TEXT NOT NULL,
    day_offset REAL NOT NULL,
    offset_min REAL NOT NULL,
    offset_max REAL NOT NULL,
    custom_event_label TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS redcap_events_metadata_project
    ON redcap_events_metadata (project_id, event_order);
CREATE TABLE IF NOT EXISTS redcap_events_forms (
    project_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    form_order INTEGER NOT NULL,
    form_name TEXT NOT NULL,
    PRIMARY KEY (project_id, event_id, form_order)
);
CREATE TABLE IF NOT EXISTS redcap_form_labels (
    project_id INTEGER NOT NULL,
    form_name TEXT NOT NULL,
    form_label TEXT NOT NULL,
    PRIMARY KEY (project_id, form_name)
);
CREATE TABLE IF NOT EXISTS redcap_events_repeat (
    project_id INTEGER NOT NULL,
    repeat_order INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    form_name TEXT NOT NULL,
    custom_repeat_form_label TEXT NOT NULL,
    PRIMARY KEY (project_id, repeat_order)
);
";

/// Replaces the first layout's (always empty) event tables by
/// [`EVENTS_TABLES`]'s.
fn upgrade_events_tables(conn: &Connection) -> anyhow::Result<()> {
    let old: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('redcap_events_metadata')
         WHERE name = 'arm_id'",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let rows: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM redcap_events_metadata)
              + (SELECT count(*) FROM redcap_events_arms)",
        [],
        |r| r.get(0),
    )?;
    anyhow::ensure!(
        rows == 0,
        "redcap_events_arms/redcap_events_metadata of the first layout hold rows; \
         the sandbox never wrote any: restore the data directory from a backup"
    );
    conn.execute_batch("DROP TABLE redcap_events_metadata; DROP TABLE redcap_events_arms;")?;
    Ok(())
}

/// `redcap_data`: REDCap's columns, then the record's sort key (as in
/// `redcap_record_list`), which leads the primary key after the project: a
/// project's values lie in REDCap's record order, so an export reads them
/// in one ordered scan and new records with growing numbers are appended,
/// not spread over the table as text order (`"10" < "9"`) would spread
/// them.
const DATA_TABLE: &str = "
CREATE TABLE IF NOT EXISTS redcap_data (
    project_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    record TEXT NOT NULL,
    field_name TEXT NOT NULL,
    instance INTEGER NOT NULL DEFAULT 1,
    value TEXT NOT NULL,
    sort_class INTEGER NOT NULL,
    sort_num INTEGER NOT NULL,
    PRIMARY KEY (project_id, sort_class, sort_num, record, event_id, field_name, instance)
) WITHOUT ROWID;
";

/// Opens a connection with the sandbox's settings.
pub fn connect(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(60))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Bounded memory: a 16 MB page cache per connection whatever the size.
    conn.pragma_update(None, "cache_size", -16384)?;
    // Room for every statement shape (put_values has one per count).
    conn.set_prepared_statement_cache_capacity(128);
    conn.pragma_update(None, "temp_store", "FILE")?;
    // A large import's WAL is cut back after its checkpoint.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

/// Opens (or creates) the database in `dir`, converting the old files if
/// there; answers the connection and the settings state.
pub fn open(dir: &Path) -> anyhow::Result<(Connection, State)> {
    let path = dir.join(DB_FILE);
    let conn = connect(&path)?;
    set_private(&path);
    conn.execute_batch(SCHEMA)
        .context("cannot create the sandbox's tables")?;
    conn.execute_batch(crate::api::file_repository::SCHEMA)
        .context("cannot create the File Repository's tables")?;
    conn.execute_batch(crate::api::reports::SCHEMA)
        .context("cannot create the reports table")?;
    conn.execute_batch(crate::api::project_settings::SCHEMA)
        .context("cannot create the project settings table")?;
    conn.execute_batch(crate::surveys::SCHEMA)
        .context("cannot create the survey tables")?;
    // Checkpoints run on their own thread once commits have grown the WAL
    // (db.rs); the writer checkpoints itself only past 256 MB of WAL.
    conn.pragma_update(None, "wal_autocheckpoint", 65536)?;
    upgrade_data_table(&conn).context("cannot upgrade the table redcap_data")?;
    upgrade_events_tables(&conn).context("cannot upgrade the event tables")?;
    conn.execute_batch(EVENTS_TABLES)
        .context("cannot create the event tables")?;
    conn.execute_batch(DATA_TABLE)
        .context("cannot create the sandbox's tables")?;
    migrate(dir, &conn)?;
    let state = load_state(&conn)?;
    Ok((conn, state))
}

/// A database of the first SQLite layout keyed `redcap_data` by the
/// record's text: its rows are copied once into the table keyed by the
/// sort key (taken from `redcap_record_list`), in one transaction.
fn upgrade_data_table(conn: &Connection) -> anyhow::Result<()> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'redcap_data'",
        [],
        |r| r.get(0),
    )?;
    let keyed: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('redcap_data') WHERE name = 'sort_class'",
        [],
        |r| r.get(0),
    )?;
    if !exists || keyed {
        return Ok(());
    }
    eprintln!("redcap-sandbox: re-keying redcap_data by REDCap's record order (once)");
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = conn
        .execute_batch("ALTER TABLE redcap_data RENAME TO redcap_data_old")
        .and_then(|()| conn.execute_batch(DATA_TABLE))
        .and_then(|()| {
            conn.execute(
                "INSERT INTO redcap_data (project_id, event_id, record, field_name, instance,
                     value, sort_class, sort_num)
                 SELECT d.project_id, d.event_id, d.record, d.field_name, d.instance, d.value,
                     r.sort_class, r.sort_num
                 FROM redcap_data_old d JOIN redcap_record_list r
                     ON r.project_id = d.project_id AND r.arm = ?1 AND r.record = d.record",
                [CLASSIC_ARM],
            )
        })
        .and_then(|_| conn.execute_batch("DROP TABLE redcap_data_old; COMMIT"));
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    Ok(())
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for p in [
        path.to_path_buf(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        if p.exists() {
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
        }
    }
}

fn config_get(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM redcap_config WHERE field_name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
}

fn config_set(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO redcap_config (field_name, value) VALUES (?1, ?2)
         ON CONFLICT (field_name) DO UPDATE SET value = excluded.value",
        [name, value],
    )?;
    Ok(())
}

fn rights_json(rights: &redcap::Rights) -> String {
    use redcap::RedcapVersion;
    use redcap::rights::ValueStyle;
    let mut map = Map::new();
    rights.write_json(&mut map, RedcapVersion::SPEC, ValueStyle::Integers, &[]);
    Value::Object(map).to_string()
}

fn rights_from(text: &str) -> rusqlite::Result<redcap::Rights> {
    let map: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    redcap::Rights::from_json(&map).map_err(|e| {
        rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(e.to_string())))
    })
}

/// The metadata columns, in table order after `project_id, field_order`:
/// the data dictionary's, in REDCap's order.
const FIELD_COLUMNS: &[&str] = crate::api::metadata::COLUMNS;

/// Loads the settings (everything but records and logs): small whatever
/// the size of the project's data.
pub fn load_state(conn: &Connection) -> anyhow::Result<State> {
    let mut state = State::default();
    let num = |name: &str, default: u64| -> anyhow::Result<u64> {
        Ok(config_get(conn, name)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(default))
    };
    state.next_project_id = num("next_project_id", 1)?;
    state.next_group_id = num("next_group_id", 1)?;
    state.next_role_id = num("next_role_id", 1)?;
    state.next_doc_id = num("next_doc_id", 0)?;
    state.next_event_id = i64::try_from(num("next_event_id", 1)?).unwrap_or(1);
    state.api_disabled = num("api_disabled", 0)? == 1;
    let mut stmt = conn.prepare("SELECT ip FROM sandbox_banned_ips")?;
    for ip in stmt.query_map([], |r| r.get::<_, String>(0))? {
        if let Ok(ip) = ip?.parse() {
            state.banned_ips.insert(ip);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT username, user_email, user_firstname, user_lastname, super_user,
                user_suspended, api_token FROM redcap_user_information",
    )?;
    let accounts = stmt.query_map([], |r| {
        Ok(Account {
            username: r.get(0)?,
            email: r.get(1)?,
            firstname: r.get(2)?,
            lastname: r.get(3)?,
            administrator: r.get(4)?,
            suspended: r.get(5)?,
            super_token: r.get(6)?,
        })
    })?;
    for a in accounts {
        let a = a?;
        state.accounts.insert(a.username.clone(), a);
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, app_title, purpose, purpose_other, project_note, creation_time,
                status, production_time, repeatforms, surveys_enabled, auto_inc_set
         FROM redcap_projects",
    )?;
    let projects = stmt.query_map([], |r| {
        Ok(Project {
            id: r.get(0)?,
            title: r.get(1)?,
            purpose: r.get(2)?,
            purpose_other: r.get(3)?,
            notes: r.get(4)?,
            creation_time: r.get(5)?,
            status: r.get(6)?,
            production_time: r.get(7)?,
            is_longitudinal: r.get(8)?,
            surveys_enabled: r.get(9)?,
            record_autonumbering_enabled: r.get(10)?,
            metadata: Vec::new(),
            members: BTreeMap::new(),
            roles: Vec::new(),
            dags: Vec::new(),
            arms: Vec::new(),
            events: Vec::new(),
            repeating: Vec::new(),
            form_labels: BTreeMap::new(),
        })
    })?;
    for p in projects {
        let p = p?;
        state.projects.insert(p.id, p);
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT project_id, {} FROM redcap_metadata ORDER BY project_id, field_order",
        FIELD_COLUMNS.join(", ")
    ))?;
    let fields = stmt.query_map([], |r| {
        let mut m = Map::new();
        for (i, c) in FIELD_COLUMNS.iter().enumerate() {
            m.insert((*c).to_owned(), Value::String(r.get(i + 1)?));
        }
        let field: Field = serde_json::from_value(Value::Object(m))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok((r.get::<_, u64>(0)?, field))
    })?;
    for f in fields {
        let (pid, f) = f?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.metadata.push(f);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, username, expiration, group_id, role_id, rights, api_token
         FROM redcap_user_rights",
    )?;
    let members = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            r.get::<_, String>(1)?,
            Member {
                expiration: r.get(2)?,
                group_id: r.get(3)?,
                role_id: r.get(4)?,
                rights: rights_from(&r.get::<_, String>(5)?)?,
                token: r.get(6)?,
            },
        ))
    })?;
    for m in members {
        let (pid, user, m) = m?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.members.insert(user, m);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, role_id, unique_role_name, role_name, rights
         FROM redcap_user_roles ORDER BY project_id, role_order",
    )?;
    let roles = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            Role {
                id: r.get(1)?,
                unique_name: r.get(2)?,
                label: r.get(3)?,
                rights: rights_from(&r.get::<_, String>(4)?)?,
            },
        ))
    })?;
    for role in roles {
        let (pid, role) = role?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.roles.push(role);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, group_id, group_name FROM redcap_data_access_groups
         ORDER BY project_id, group_order",
    )?;
    let dags = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            Dag {
                id: r.get(1)?,
                name: r.get(2)?,
            },
        ))
    })?;
    for d in dags {
        let (pid, d) = d?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.dags.push(d);
        }
    }
    load_events(conn, &mut state)?;
    let mut stmt = conn.prepare(
        "SELECT doc_id, project_id, doc_name, mime_type, doc_size FROM redcap_edocs_metadata",
    )?;
    let docs = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            Doc {
                project_id: r.get(1)?,
                name: r.get(2)?,
                mime_type: r.get(3)?,
                size: r.get(4)?,
            },
        ))
    })?;
    for d in docs {
        let (id, d) = d?;
        state.docs.insert(id, d);
    }
    Ok(state)
}

/// Loads arms, events, their instruments and the repeating setup.
fn load_events(conn: &Connection, state: &mut State) -> anyhow::Result<()> {
    use crate::db::{Arm, Event, Repeating};
    let mut stmt =
        conn.prepare("SELECT project_id, arm_num, arm_name FROM redcap_events_arms ORDER BY 1, 2")?;
    let arms = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            Arm {
                num: r.get(1)?,
                name: r.get(2)?,
            },
        ))
    })?;
    for a in arms {
        let (pid, a) = a?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.arms.push(a);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, event_id, arm_num, descrip, day_offset, offset_min, offset_max,
                custom_event_label
         FROM redcap_events_metadata ORDER BY project_id, event_order",
    )?;
    let events = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            Event {
                id: r.get(1)?,
                arm_num: r.get(2)?,
                name: r.get(3)?,
                day_offset: r.get(4)?,
                offset_min: r.get(5)?,
                offset_max: r.get(6)?,
                custom_label: r.get(7)?,
                forms: Vec::new(),
            },
        ))
    })?;
    for e in events {
        let (pid, e) = e?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.events.push(e);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, event_id, form_name FROM redcap_events_forms
         ORDER BY project_id, event_id, form_order",
    )?;
    let forms = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for f in forms {
        let (pid, event_id, form) = f?;
        if let Some(e) = state
            .projects
            .get_mut(&pid)
            .and_then(|p| p.events.iter_mut().find(|e| e.id == event_id))
        {
            e.forms.push(form);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT project_id, event_id, form_name, custom_repeat_form_label
         FROM redcap_events_repeat ORDER BY project_id, repeat_order",
    )?;
    let repeats = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            Repeating {
                event_id: r.get(1)?,
                form: r.get(2)?,
                custom_label: r.get(3)?,
            },
        ))
    })?;
    for rep in repeats {
        let (pid, rep) = rep?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.repeating.push(rep);
        }
    }
    let mut stmt =
        conn.prepare("SELECT project_id, form_name, form_label FROM redcap_form_labels")?;
    let labels = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for l in labels {
        let (pid, form, label) = l?;
        if let Some(p) = state.projects.get_mut(&pid) {
            p.form_labels.insert(form, label);
        }
    }
    Ok(())
}

/// Writes one project's arms, events, designations and repeating setup
/// (after its old rows were deleted).
fn save_events(conn: &Connection, p: &Project) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO redcap_events_arms (project_id, arm_num, arm_name) VALUES (?1, ?2, ?3)",
    )?;
    for a in &p.arms {
        stmt.execute(params![p.id, a.num, a.name])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO redcap_events_metadata (event_id, project_id, arm_num, event_order, descrip,
             day_offset, offset_min, offset_max, custom_event_label)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut forms = conn.prepare_cached(
        "INSERT INTO redcap_events_forms (project_id, event_id, form_order, form_name)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, e) in p.events.iter().enumerate() {
        stmt.execute(params![
            e.id,
            p.id,
            e.arm_num,
            i,
            e.name,
            e.day_offset,
            e.offset_min,
            e.offset_max,
            e.custom_label
        ])?;
        for (j, f) in e.forms.iter().enumerate() {
            forms.execute(params![p.id, e.id, j, f])?;
        }
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO redcap_events_repeat (project_id, repeat_order, event_id, form_name,
             custom_repeat_form_label) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (i, r) in p.repeating.iter().enumerate() {
        stmt.execute(params![p.id, i, r.event_id, r.form, r.custom_label])?;
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO redcap_form_labels (project_id, form_name, form_label) VALUES (?1, ?2, ?3)",
    )?;
    for (form, label) in &p.form_labels {
        stmt.execute(params![p.id, form, label])?;
    }
    Ok(())
}

/// Writes the settings: the rows of what changed are replaced. Settings
/// are small (accounts, projects, users, roles, DAGs, metadata, file
/// names), so a changed part is rewritten whole; records and logs are
/// never touched here.
pub fn save_state(
    conn: &Connection,
    state: &State,
    dirty: &crate::db::Dirty,
) -> anyhow::Result<()> {
    // The counters go with any change (a new DAG or role of a project
    // advances them).
    config_set(conn, "next_project_id", &state.next_project_id.to_string())?;
    config_set(conn, "next_group_id", &state.next_group_id.to_string())?;
    config_set(conn, "next_role_id", &state.next_role_id.to_string())?;
    config_set(conn, "next_doc_id", &state.next_doc_id.to_string())?;
    config_set(conn, "next_event_id", &state.next_event_id.to_string())?;
    if dirty.system {
        config_set(
            conn,
            "api_disabled",
            if state.api_disabled { "1" } else { "0" },
        )?;
        conn.execute("DELETE FROM sandbox_banned_ips", [])?;
        let mut stmt = conn.prepare_cached("INSERT INTO sandbox_banned_ips (ip) VALUES (?1)")?;
        for ip in &state.banned_ips {
            stmt.execute([ip.to_string()])?;
        }
        conn.execute("DELETE FROM redcap_user_information", [])?;
        let mut stmt = conn.prepare_cached(
            "INSERT INTO redcap_user_information (username, user_email, user_firstname,
                 user_lastname, super_user, user_suspended, api_token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for a in state.accounts.values() {
            stmt.execute(params![
                a.username,
                a.email,
                a.firstname,
                a.lastname,
                a.administrator,
                a.suspended,
                a.super_token
            ])?;
        }
    }
    let pids: Vec<u64> = if dirty.system {
        // A project may have been created or dropped: all of them.
        let mut all: Vec<u64> = state.projects.keys().copied().collect();
        let mut stmt = conn.prepare("SELECT project_id FROM redcap_projects")?;
        for id in stmt.query_map([], |r| r.get::<_, u64>(0))? {
            all.push(id?);
        }
        all.sort_unstable();
        all.dedup();
        all
    } else {
        dirty.projects.iter().copied().collect()
    };
    for pid in pids {
        for table in [
            "redcap_projects",
            "redcap_metadata",
            "redcap_user_rights",
            "redcap_user_roles",
            "redcap_data_access_groups",
            "redcap_events_arms",
            "redcap_events_metadata",
            "redcap_events_forms",
            "redcap_events_repeat",
            "redcap_form_labels",
        ] {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE project_id = ?1"))?
                .execute([pid])?;
        }
        let Some(p) = state.projects.get(&pid) else {
            continue;
        };
        conn.prepare_cached(
            "INSERT INTO redcap_projects (project_id, app_title, purpose, purpose_other,
                 project_note, creation_time, status, production_time, repeatforms,
                 surveys_enabled, auto_inc_set)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            p.id,
            p.title,
            p.purpose,
            p.purpose_other,
            p.notes,
            p.creation_time,
            p.status,
            p.production_time,
            p.is_longitudinal,
            p.surveys_enabled,
            p.record_autonumbering_enabled
        ])?;
        let placeholders: Vec<String> = (3..3 + FIELD_COLUMNS.len())
            .map(|i| format!("?{i}"))
            .collect();
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO redcap_metadata (project_id, field_order, {}) VALUES (?1, ?2, {})",
            FIELD_COLUMNS.join(", "),
            placeholders.join(", ")
        ))?;
        for (order, f) in p.metadata.iter().enumerate() {
            let map = match serde_json::to_value(f)? {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            let mut values: Vec<String> = Vec::with_capacity(FIELD_COLUMNS.len());
            for c in FIELD_COLUMNS {
                values.push(map.get(*c).and_then(Value::as_str).unwrap_or("").to_owned());
            }
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&pid, &order];
            for v in &values {
                args.push(v);
            }
            stmt.execute(args.as_slice())?;
        }
        let mut stmt = conn.prepare_cached(
            "INSERT INTO redcap_user_rights (project_id, username, expiration, group_id,
                 role_id, rights, api_token) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (user, m) in &p.members {
            stmt.execute(params![
                pid,
                user,
                m.expiration,
                m.group_id,
                m.role_id,
                rights_json(&m.rights),
                m.token
            ])?;
        }
        let mut stmt = conn.prepare_cached(
            "INSERT INTO redcap_user_roles (role_id, project_id, unique_role_name, role_name,
                 rights, role_order) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (i, r) in p.roles.iter().enumerate() {
            stmt.execute(params![
                r.id,
                pid,
                r.unique_name,
                r.label,
                rights_json(&r.rights),
                i
            ])?;
        }
        let mut stmt = conn.prepare_cached(
            "INSERT INTO redcap_data_access_groups (group_id, project_id, group_name,
                 group_order) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (i, d) in p.dags.iter().enumerate() {
            stmt.execute(params![d.id, pid, d.name, i])?;
        }
        save_events(conn, p)?;
    }
    Ok(())
}

/// Adds or removes one file's row (`redcap_edocs_metadata`).
pub fn save_doc(conn: &Connection, id: u64, doc: Option<&Doc>) -> rusqlite::Result<()> {
    match doc {
        Some(d) => conn
            .prepare_cached(
                "INSERT OR REPLACE INTO redcap_edocs_metadata (doc_id, project_id, doc_name,
                     mime_type, doc_size) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, d.project_id, d.name, d.mime_type, d.size])?,
        None => conn
            .prepare_cached("DELETE FROM redcap_edocs_metadata WHERE doc_id = ?1")?
            .execute([id])?,
    };
    Ok(())
}

// ----- logs -----

fn kind_name(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Manage => "manage",
        LogKind::User => "user",
        LogKind::Export => "export",
        LogKind::RecordAdd => "record_add",
        LogKind::RecordEdit => "record_edit",
        LogKind::RecordDelete => "record_delete",
        LogKind::PageView => "page_view",
    }
}

fn kind_of(name: &str) -> LogKind {
    match name {
        "manage" => LogKind::Manage,
        "user" => LogKind::User,
        "export" => LogKind::Export,
        "record_add" => LogKind::RecordAdd,
        "record_edit" => LogKind::RecordEdit,
        "record_delete" => LogKind::RecordDelete,
        _ => LogKind::PageView,
    }
}

/// Appends log rows: page views to `redcap_log_view`, the rest to
/// `redcap_log_event`.
pub fn append_log(conn: &Connection, rows: &[LogRow]) -> rusqlite::Result<()> {
    for row in rows {
        let sql = if row.kind == LogKind::PageView {
            "INSERT INTO redcap_log_view (project_id, ts, user, kind, description, data_values,
                 pk, group_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        } else {
            "INSERT INTO redcap_log_event (project_id, ts, user, kind, description, data_values,
                 pk, group_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        };
        conn.prepare_cached(sql)?.execute(params![
            row.project_id,
            row.ts,
            row.username,
            kind_name(row.kind),
            row.action,
            row.details,
            row.record,
            row.group_id
        ])?;
    }
    Ok(())
}

/// The records created or changed between `begin` and `end` (log
/// timestamps, `YYYY-MM-DD HH:MM`, both ends included), in no order: Export
/// Records' `dateRangeBegin`/`dateRangeEnd`, read through the log's
/// (project, time) index.
pub fn records_changed(
    conn: &Connection,
    project_id: u64,
    begin: &str,
    end: &str,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT pk FROM redcap_log_event
         WHERE project_id = ?1 AND ts >= ?2 AND ts <= ?3
           AND kind IN ('record_add', 'record_edit') AND pk IS NOT NULL",
    )?;
    let rows = stmt.query_map(params![project_id, begin, end], |r| r.get(0))?;
    rows.collect()
}

/// What Export Logging asks for.
pub struct LogQuery<'a> {
    pub project_id: u64,
    /// Page views (`redcap_log_view`) or events.
    pub page_views: bool,
    /// Event kinds to keep (empty: all).
    pub kinds: &'a [LogKind],
    pub user: Option<&'a str>,
    pub record: Option<&'a str>,
    pub begin: Option<&'a str>,
    pub end: Option<&'a str>,
}

/// Calls `f` with each matching row, newest first, through the indexes on
/// (project, time) and (project, user, time): a date range reads only
/// that range.
pub fn for_each_log_row(
    conn: &Connection,
    q: &LogQuery,
    mut f: impl FnMut(LogRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (table, id) = if q.page_views {
        ("redcap_log_view", "log_view_id")
    } else {
        ("redcap_log_event", "log_event_id")
    };
    let kinds: Vec<&str> = q.kinds.iter().map(|k| kind_name(*k)).collect();
    let mut sql = format!(
        "SELECT {id}, project_id, ts, user, kind, description, data_values, pk, group_id
         FROM {table} WHERE project_id = ?"
    );
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(q.project_id)];
    if !kinds.is_empty() {
        sql.push_str(" AND kind IN (SELECT value FROM json_each(?))");
        args.push(Box::new(serde_json::to_string(&kinds)?));
    }
    for (cond, value) in [
        (" AND user = ?", q.user),
        (" AND pk = ?", q.record),
        (" AND ts >= ?", q.begin),
        (" AND ts <= ?", q.end),
    ] {
        if let Some(v) = value {
            sql.push_str(cond);
            args.push(Box::new(v.to_owned()));
        }
    }
    sql.push_str(&format!(" ORDER BY ts DESC, {id} DESC"));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    while let Some(r) = rows.next()? {
        f(LogRow {
            id: r.get(0)?,
            project_id: r.get(1)?,
            ts: r.get(2)?,
            username: r.get(3)?,
            kind: kind_of(r.get_ref(4)?.as_str()?),
            action: r.get(5)?,
            details: r.get(6)?,
            record: r.get(7)?,
            group_id: r.get(8)?,
        })?;
    }
    Ok(())
}

// ----- records -----

/// REDCap's record order: numbers first, numerically, then names (§6.1).
/// Answers (class, number); names of class 1 sort by their text.
pub fn sort_key(name: &str) -> (i64, i64) {
    match name.parse::<u64>() {
        Ok(n) => (0, i64::try_from(n).unwrap_or(i64::MAX)),
        Err(_) => (1, 0),
    }
}

/// Whether the record exists, and its DAG: `None` if it does not exist.
pub fn record_group(
    conn: &Connection,
    pid: u64,
    record: &str,
) -> rusqlite::Result<Option<Option<u64>>> {
    conn.prepare_cached(
        "SELECT dag_id FROM redcap_record_list WHERE project_id = ?1 AND arm = ?2 AND record = ?3",
    )?
    .query_row(params![pid, CLASSIC_ARM, record], |r| r.get(0))
    .optional()
}

/// Adds a record (no values).
pub fn insert_record(
    conn: &Connection,
    pid: u64,
    record: &str,
    group: Option<u64>,
) -> rusqlite::Result<()> {
    let (class, num) = sort_key(record);
    conn.prepare_cached(
        "INSERT INTO redcap_record_list (project_id, arm, record, dag_id, sort_class, sort_num)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![pid, CLASSIC_ARM, record, group, class, num])?;
    Ok(())
}

/// Moves a record to a DAG (or none).
pub fn set_record_group(
    conn: &Connection,
    pid: u64,
    record: &str,
    group: Option<u64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE redcap_record_list SET dag_id = ?4 WHERE project_id = ?1 AND arm = ?2 AND record = ?3",
    )?
    .execute(params![pid, CLASSIC_ARM, record, group])?;
    Ok(())
}

/// The `WHERE` of one record's values: its key in `redcap_data`'s order.
const RECORD_KEY: &str = "project_id = ?1 AND sort_class = ?2 AND sort_num = ?3 AND record = ?4";

/// Where a value sits in a record: its event and its instance (1 unless
/// the instrument or event repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub event: i64,
    pub instance: i64,
}

impl Slot {
    /// A classic project's only slot.
    pub const CLASSIC: Slot = Slot {
        event: CLASSIC_EVENT,
        instance: 1,
    };
}

/// A record's values by field (export column) name.
#[cfg(test)]
pub fn record_values(
    conn: &Connection,
    pid: u64,
    record: &str,
) -> rusqlite::Result<BTreeMap<String, String>> {
    record_values_in(conn, pid, record, Slot::CLASSIC)
}

/// A record's values in one slot, by field (export column) name.
pub fn record_values_in(
    conn: &Connection,
    pid: u64,
    record: &str,
    slot: Slot,
) -> rusqlite::Result<BTreeMap<String, String>> {
    let (class, num) = sort_key(record);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT field_name, value FROM redcap_data
         WHERE {RECORD_KEY} AND event_id = ?5 AND instance = ?6"
    ))?;
    let rows = stmt.query_map(
        params![pid, class, num, record, slot.event, slot.instance],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.collect()
}

/// Every value of a record: (slot, field, value), in key order.
pub fn record_all_values(
    conn: &Connection,
    pid: u64,
    record: &str,
) -> rusqlite::Result<Vec<(Slot, String, String)>> {
    let (class, num) = sort_key(record);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT event_id, instance, field_name, value FROM redcap_data WHERE {RECORD_KEY}"
    ))?;
    let rows = stmt.query_map(params![pid, class, num, record], |r| {
        Ok((
            Slot {
                event: r.get(0)?,
                instance: r.get(1)?,
            },
            r.get(2)?,
            r.get(3)?,
        ))
    })?;
    rows.collect()
}

/// One value of a record in one slot.
pub fn record_value_in(
    conn: &Connection,
    pid: u64,
    record: &str,
    slot: Slot,
    field: &str,
) -> rusqlite::Result<Option<String>> {
    let (class, num) = sort_key(record);
    conn.prepare_cached(&format!(
        "SELECT value FROM redcap_data
         WHERE {RECORD_KEY} AND event_id = ?5 AND field_name = ?6 AND instance = ?7"
    ))?
    .query_row(
        params![pid, class, num, record, slot.event, field, slot.instance],
        |r| r.get(0),
    )
    .optional()
}

/// One value of a record (classic slot).
#[cfg(test)]
pub fn record_value(
    conn: &Connection,
    pid: u64,
    record: &str,
    field: &str,
) -> rusqlite::Result<Option<String>> {
    record_value_in(conn, pid, record, Slot::CLASSIC, field)
}

/// Sets a value (replacing any).
pub fn put_value(
    conn: &Connection,
    pid: u64,
    record: &str,
    field: &str,
    value: &str,
) -> rusqlite::Result<()> {
    put_values(conn, pid, record, &[(field, value)])
}

/// Sets a value of one slot unless the record already has one there.
pub fn put_value_if_absent_in(
    conn: &Connection,
    pid: u64,
    record: &str,
    slot: Slot,
    field: &str,
    value: &str,
) -> rusqlite::Result<()> {
    let (class, num) = sort_key(record);
    conn.prepare_cached(
        "INSERT OR IGNORE INTO redcap_data (project_id, event_id, record, field_name, instance,
             value, sort_class, sort_num)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        pid,
        slot.event,
        record,
        field,
        slot.instance,
        value,
        class,
        num
    ])?;
    Ok(())
}

/// The highest instance of a record's values of `fields` in an event (0
/// if none).
pub fn max_instance(
    conn: &Connection,
    pid: u64,
    record: &str,
    event: i64,
    fields: &[String],
) -> rusqlite::Result<i64> {
    let (class, num) = sort_key(record);
    let list = serde_json::to_string(fields).unwrap_or_default();
    conn.prepare_cached(&format!(
        "SELECT coalesce(max(instance), 0) FROM redcap_data
         WHERE {RECORD_KEY} AND event_id = ?5
             AND field_name IN (SELECT value FROM json_each(?6))"
    ))?
    .query_row(params![pid, class, num, record, event, list], |r| r.get(0))
}

/// Removes every value of a project's events (a deleted event or arm)
/// and the records left with no value; answers the values' doc ids
/// candidates (every value of `file_fields`).
pub fn delete_event_data(
    conn: &Connection,
    pid: u64,
    events: &[i64],
    file_fields: &[String],
) -> rusqlite::Result<Vec<String>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let events = serde_json::to_string(events).unwrap_or_default();
    let files = serde_json::to_string(file_fields).unwrap_or_default();
    let mut stmt = conn.prepare(
        "SELECT value FROM redcap_data WHERE project_id = ?1
             AND event_id IN (SELECT value FROM json_each(?2))
             AND field_name IN (SELECT value FROM json_each(?3))",
    )?;
    let docs = stmt
        .query_map(params![pid, events, files], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    conn.execute(
        "DELETE FROM redcap_data WHERE project_id = ?1
             AND event_id IN (SELECT value FROM json_each(?2))",
        params![pid, events],
    )?;
    conn.execute(
        "DELETE FROM redcap_record_list WHERE project_id = ?1 AND NOT EXISTS (
             SELECT 1 FROM redcap_data d WHERE d.project_id = ?1
                 AND d.sort_class = redcap_record_list.sort_class
                 AND d.sort_num = redcap_record_list.sort_num
                 AND d.record = redcap_record_list.record)",
        [pid],
    )?;
    Ok(docs)
}

/// Sets several values of one record (replacing any): one statement per
/// [`VALUES_PER_STATEMENT`] values, not one per value.
pub fn put_values<V: AsRef<str>>(
    conn: &Connection,
    pid: u64,
    record: &str,
    values: &[(&str, V)],
) -> rusqlite::Result<()> {
    put_values_in(conn, pid, record, Slot::CLASSIC, values)
}

/// [`put_values`] in one slot.
pub fn put_values_in<V: AsRef<str>>(
    conn: &Connection,
    pid: u64,
    record: &str,
    slot: Slot,
    values: &[(&str, V)],
) -> rusqlite::Result<()> {
    let (class, num) = sort_key(record);
    for chunk in values.chunks(VALUES_PER_STATEMENT) {
        let mut stmt = conn.prepare_cached(put_values_sql(chunk.len()))?;
        stmt.raw_bind_parameter(1, pid)?;
        stmt.raw_bind_parameter(2, record)?;
        stmt.raw_bind_parameter(3, class)?;
        stmt.raw_bind_parameter(4, num)?;
        stmt.raw_bind_parameter(5, slot.event)?;
        stmt.raw_bind_parameter(6, slot.instance)?;
        for (i, (field, value)) in chunk.iter().enumerate() {
            stmt.raw_bind_parameter(7 + 2 * i, field)?;
            stmt.raw_bind_parameter(8 + 2 * i, value.as_ref())?;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// The most values [`put_values`] writes in one statement.
const VALUES_PER_STATEMENT: usize = 32;

/// The statement of [`put_values_in`] for `n` values (1 to
/// [`VALUES_PER_STATEMENT`]), made once.
fn put_values_sql(n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=VALUES_PER_STATEMENT)
            .map(|n| {
                let rows: Vec<String> = (0..n)
                    .map(|i| format!("(?1, ?5, ?2, ?{}, ?6, ?{}, ?3, ?4)", 7 + 2 * i, 8 + 2 * i))
                    .collect();
                format!(
                    "INSERT OR REPLACE INTO redcap_data (project_id, event_id, record, field_name,
                         instance, value, sort_class, sort_num) VALUES {}",
                    rows.join(", ")
                )
            })
            .collect()
    });
    &all[n]
}

/// Removes a value of one slot.
pub fn delete_value_in(
    conn: &Connection,
    pid: u64,
    record: &str,
    slot: Slot,
    field: &str,
) -> rusqlite::Result<()> {
    let (class, num) = sort_key(record);
    conn.prepare_cached(&format!(
        "DELETE FROM redcap_data
         WHERE {RECORD_KEY} AND event_id = ?5 AND field_name = ?6 AND instance = ?7"
    ))?
    .execute(params![
        pid,
        class,
        num,
        record,
        slot.event,
        field,
        slot.instance
    ])?;
    Ok(())
}

/// Removes a record and its values.
pub fn delete_record(conn: &Connection, pid: u64, record: &str) -> rusqlite::Result<()> {
    let (class, num) = sort_key(record);
    conn.prepare_cached(&format!("DELETE FROM redcap_data WHERE {RECORD_KEY}"))?
        .execute(params![pid, class, num, record])?;
    conn.prepare_cached("DELETE FROM redcap_record_list WHERE project_id = ?1 AND record = ?2")?
        .execute(params![pid, record])?;
    crate::surveys::delete_record(conn, pid, record)?;
    Ok(())
}

/// Renames a record (its values follow).
pub fn rename_record(conn: &Connection, pid: u64, old: &str, new: &str) -> rusqlite::Result<()> {
    let (class, num) = sort_key(new);
    conn.prepare_cached(
        "UPDATE redcap_record_list SET record = ?3, sort_class = ?4, sort_num = ?5
         WHERE project_id = ?1 AND record = ?2",
    )?
    .execute(params![pid, old, new, class, num])?;
    let (old_class, old_num) = sort_key(old);
    conn.prepare_cached(&format!(
        "UPDATE redcap_data SET record = ?5, sort_class = ?6, sort_num = ?7 WHERE {RECORD_KEY}"
    ))?
    .execute(params![pid, old_class, old_num, old, new, class, num])?;
    crate::surveys::rename_record(conn, pid, old, new)?;
    Ok(())
}

/// The highest `<prefix><n>` record number (0 if none): auto-numbering
/// and Generate Next Record Name.
pub fn max_record_number(conn: &Connection, pid: u64, prefix: &str) -> rusqlite::Result<u64> {
    if prefix.is_empty() {
        let max: Option<i64> = conn
            .prepare_cached(
                "SELECT max(sort_num) FROM redcap_record_list
                 WHERE project_id = ?1 AND arm = ?2 AND sort_class = 0",
            )?
            .query_row(params![pid, CLASSIC_ARM], |r| r.get(0))?;
        return Ok(max.map_or(0, |m| u64::try_from(m).unwrap_or(0)));
    }
    // Names starting with the prefix: a range of the primary key.
    let mut upper = prefix.to_owned();
    upper.push(char::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT record FROM redcap_record_list
         WHERE project_id = ?1 AND arm = ?2 AND record >= ?3 AND record < ?4",
    )?;
    let mut rows = stmt.query(params![pid, CLASSIC_ARM, prefix, upper])?;
    let mut max = 0;
    while let Some(r) = rows.next()? {
        let name = r.get_ref(0)?.as_str()?;
        if let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            max = max.max(n);
        }
    }
    Ok(max)
}

/// Which records an export reads.
pub struct RecordQuery<'a> {
    pub project_id: u64,
    /// Only this DAG's records.
    pub group_id: Option<u64>,
    /// Only these records (`None`: all).
    pub records: Option<&'a [String]>,
    /// Only these stored fields (`None`: all).
    pub fields: Option<&'a [String]>,
    /// Every event and instance (longitudinal or repeating projects);
    /// `false` reads only the classic slot.
    pub all_slots: bool,
    /// Only these events' values (`None`: all).
    pub events: Option<&'a [i64]>,
}

/// One record as an export reads it.
#[derive(Debug, Default)]
pub struct RecordRow {
    pub name: String,
    pub group_id: Option<u64>,
    /// The record's slots with values, each with the values of the
    /// export's columns in their order (`""`: none). A classic read has
    /// exactly one slot, [`Slot::CLASSIC`], even when it holds nothing.
    pub slots: Vec<(Slot, Vec<String>)>,
    /// Value buffers of earlier records, reused.
    spare: Vec<Vec<String>>,
}

impl RecordRow {
    /// A record of a classic read (tests).
    #[cfg(test)]
    pub fn classic(name: &str, group_id: Option<u64>, values: Vec<String>) -> RecordRow {
        RecordRow {
            name: name.to_owned(),
            group_id,
            slots: vec![(Slot::CLASSIC, values)],
            spare: Vec::new(),
        }
    }

    /// The values of a slot, added (empty) if new.
    fn slot_mut(&mut self, slot: Slot, width: usize) -> &mut Vec<String> {
        let pos = match self.slots.last() {
            Some((s, _)) if *s == slot => Some(self.slots.len() - 1),
            _ => self.slots.iter().position(|(s, _)| *s == slot),
        };
        let pos = pos.unwrap_or_else(|| {
            let mut values = self.spare.pop().unwrap_or_default();
            values.resize(width, String::new());
            self.slots.push((slot, values));
            self.slots.len() - 1
        });
        &mut self.slots[pos].1
    }

    /// Empties the record for the next one, keeping its buffers.
    fn clear(&mut self) {
        for (_, mut values) in self.slots.drain(..) {
            for v in &mut values {
                v.clear();
            }
            self.spare.push(values);
        }
    }
}

/// Calls `f` with each record in REDCap's order, one at a time, with the
/// values of `columns` in each of its slots: the filters are part of the
/// queries, memory holds one record (its buffers reused from record to
/// record).
///
/// Two ordered reads side by side: the records (`redcap_record_list`
/// through its sort-key index, with the DAG and record filters) and their
/// values (`redcap_data`, whose key is the same order, with the field
/// filter); each value row is matched to its record as both advance — one
/// pass over each, no lookup per record. With a `records` filter (usually
/// a few records) each record's values are read by their key instead.
pub fn for_each_record(
    conn: &Connection,
    q: &RecordQuery,
    columns: &[&str],
    mut f: impl FnMut(&RecordRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let index: HashMap<&str, usize, FieldHash> =
        columns.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let width = columns.len();
    let mut sql = String::from(
        "SELECT record, dag_id, sort_class, sort_num FROM redcap_record_list
         WHERE project_id = ? AND arm = ?",
    );
    let mut args: Vec<Box<dyn rusqlite::ToSql>> =
        vec![Box::new(q.project_id), Box::new(CLASSIC_ARM)];
    if let Some(g) = q.group_id {
        sql.push_str(" AND dag_id = ?");
        args.push(Box::new(g));
    }
    if let Some(records) = q.records {
        sql.push_str(" AND record IN (SELECT value FROM json_each(?))");
        args.push(Box::new(serde_json::to_string(records)?));
    }
    sql.push_str(" ORDER BY sort_class, sort_num, record");
    let mut list = conn.prepare(&sql)?;
    let mut records = list.query(rusqlite::params_from_iter(args.iter()))?;

    // The value filters, each a JSON list bound after the key's
    // parameters (an unnumbered `?` takes the next number).
    let mut filter = String::new();
    let mut lists: Vec<String> = Vec::new();
    if let Some(fields) = q.fields {
        filter.push_str(" AND field_name IN (SELECT value FROM json_each(?))");
        lists.push(serde_json::to_string(fields)?);
    }
    if let Some(events) = q.events {
        filter.push_str(" AND event_id IN (SELECT value FROM json_each(?))");
        lists.push(serde_json::to_string(events)?);
    }
    // A classic read: only the classic slot, named in the query.
    let slot_filter = if q.all_slots {
        String::new()
    } else {
        format!(" AND event_id = {CLASSIC_EVENT} AND instance = 1")
    };
    let all_slots = q.all_slots;
    let mut current = RecordRow::default();
    let mut key = (0i64, 0i64);
    // The next record of the list into `current` (values cleared).
    let mut next_record = |current: &mut RecordRow, key: &mut (i64, i64)| -> anyhow::Result<bool> {
        let Some(r) = records.next()? else {
            return Ok(false);
        };
        current.clear();
        current.name.clear();
        current.name.push_str(r.get_ref(0)?.as_str()?);
        current.group_id = r.get(1)?;
        *key = (r.get(2)?, r.get(3)?);
        if !all_slots {
            current.slot_mut(Slot::CLASSIC, width);
        }
        Ok(true)
    };
    // A value row: (record, field, value, event, instance).
    let put = |current: &mut RecordRow, r: &rusqlite::Row| -> anyhow::Result<()> {
        if let Some(&i) = index.get(r.get_ref(1)?.as_str()?) {
            let slot = if all_slots {
                Slot {
                    event: r.get(3)?,
                    instance: r.get(4)?,
                }
            } else {
                Slot::CLASSIC
            };
            current.slot_mut(slot, width)[i].push_str(r.get_ref(2)?.as_str()?);
        }
        Ok(())
    };

    if q.records.is_some() {
        let mut values = conn.prepare(&format!(
            "SELECT record, field_name, value, event_id, instance FROM redcap_data
             WHERE {RECORD_KEY}{slot_filter}{filter}"
        ))?;
        while next_record(&mut current, &mut key)? {
            let mut args: Vec<&dyn rusqlite::ToSql> =
                vec![&q.project_id, &key.0, &key.1, &current.name];
            args.extend(lists.iter().map(|l| l as &dyn rusqlite::ToSql));
            let mut rows = values.query(args.as_slice())?;
            while let Some(r) = rows.next()? {
                put(&mut current, r)?;
            }
            drop(rows);
            f(&current)?;
        }
        return Ok(());
    }

    let mut values = conn.prepare(&format!(
        "SELECT record, field_name, value, event_id, instance FROM redcap_data
         WHERE project_id = ?1{slot_filter}{filter}
         ORDER BY sort_class, sort_num, record"
    ))?;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&q.project_id];
    args.extend(lists.iter().map(|l| l as &dyn rusqlite::ToSql));
    let mut rows = values.query(args.as_slice())?;
    let mut have = next_record(&mut current, &mut key)?;
    while have && let Some(r) = rows.next()? {
        // Nearly always a further value of the current record: its name
        // alone says so.
        if r.get_ref(0)?.as_bytes()? == current.name.as_bytes() {
            put(&mut current, r)?;
            continue;
        }
        // The stored sort key is the name's (`sort_key`): computed here
        // rather than read with every value.
        let name = r.get_ref(0)?.as_str()?;
        let row_key = sort_key(name);
        // Records before this value's are complete (or have no values).
        loop {
            match (key, current.name.as_str()).cmp(&(row_key, name)) {
                std::cmp::Ordering::Less => {
                    f(&current)?;
                    have = next_record(&mut current, &mut key)?;
                    if !have {
                        break;
                    }
                }
                std::cmp::Ordering::Equal => {
                    put(&mut current, r)?;
                    break;
                }
                // A value of a record the filters left out.
                std::cmp::Ordering::Greater => break,
            }
        }
    }
    while have {
        f(&current)?;
        have = next_record(&mut current, &mut key)?;
    }
    Ok(())
}

/// FNV-1a: the export looks up the column of every value by its field
/// name, and these short, trusted keys need no SipHash.
#[derive(Default, Clone, Copy)]
struct FieldHasher(u64);

impl std::hash::Hasher for FieldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FieldHash = std::hash::BuildHasherDefault<FieldHasher>;

// ----- migration -----

/// The old file format's projects, for their records.
#[derive(serde::Deserialize)]
struct OldState {
    #[serde(default)]
    projects: BTreeMap<u64, OldProject>,
}

#[derive(serde::Deserialize)]
struct OldProject {
    #[serde(default)]
    records: BTreeMap<String, OldRecord>,
}

#[derive(serde::Deserialize)]
struct OldRecord {
    #[serde(default)]
    group_id: Option<u64>,
    values: BTreeMap<String, String>,
}

/// Converts a data directory of the file format (`state.json`,
/// `log.jsonl`) once, in one transaction; the old files are then renamed
/// to `*.migrated` as a backup.
fn migrate(dir: &Path, conn: &Connection) -> anyhow::Result<()> {
    let state_path = dir.join("state.json");
    let log_path = dir.join("log.jsonl");
    if !state_path.exists() && !log_path.exists() {
        return Ok(());
    }
    if config_get(conn, "migrated_from_files")?.is_none() {
        eprintln!(
            "redcap-sandbox: converting {} and {} into {} (once; the old files are kept as *.migrated)",
            state_path.display(),
            log_path.display(),
            dir.join(DB_FILE).display()
        );
        let _ = fs::remove_file(dir.join("state.json.tmp"));
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = migrate_in(conn, &state_path, &log_path);
        match result {
            Ok((records, rows)) => {
                conn.execute_batch("COMMIT")?;
                eprintln!("redcap-sandbox: converted {records} records and {rows} log rows");
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.context("cannot convert the old state files"));
            }
        }
    }
    for p in [state_path, log_path] {
        if p.exists() {
            let mut backup = p.clone().into_os_string();
            backup.push(".migrated");
            fs::rename(&p, &backup).with_context(|| format!("cannot rename {}", p.display()))?;
        }
    }
    Ok(())
}

fn migrate_in(conn: &Connection, state_path: &Path, log_path: &Path) -> anyhow::Result<(u64, u64)> {
    let mut records = 0;
    if state_path.exists() {
        let bytes = fs::read(state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?;
        let state: State = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a sandbox state file", state_path.display()))?;
        let all = crate::db::Dirty {
            system: true,
            projects: Default::default(),
        };
        save_state(conn, &state, &all)?;
        for (id, doc) in &state.docs {
            save_doc(conn, *id, Some(doc))?;
        }
        drop(state);
        let old: OldState = serde_json::from_slice(&bytes)?;
        drop(bytes);
        for (pid, p) in old.projects {
            for (name, r) in p.records {
                insert_record(conn, pid, &name, r.group_id)?;
                for (k, v) in &r.values {
                    put_value(conn, pid, &name, k, v)?;
                }
                records += 1;
            }
        }
    }
    let mut rows = 0;
    if log_path.exists() {
        let file = fs::File::open(log_path)
            .with_context(|| format!("cannot read {}", log_path.display()))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {}", log_path.display()))?;
            match serde_json::from_str::<LogRow>(&line) {
                Ok(row) => {
                    append_log(conn, std::slice::from_ref(&row))?;
                    rows += 1;
                }
                // Only a torn final line is expected; it was never
                // acknowledged.
                Err(_) => {
                    tracing::warn!("{}: ignoring unreadable line {}", log_path.display(), n + 1)
                }
            }
        }
    }
    config_set(conn, "migrated_from_files", "1")?;
    Ok((records, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(conn: &Connection, q: &RecordQuery) -> Vec<String> {
        let mut out = Vec::new();
        for_each_record(conn, q, &["record_id", "x"], |r| {
            let n = r.slots[0].1.iter().filter(|v| !v.is_empty()).count();
            out.push(format!("{}:{n}", r.name));
            Ok(())
        })
        .unwrap();
        out
    }

    /// Records come back in REDCap's order (numbers numerically, then
    /// names), with the record, DAG and field filters applied in the query.
    #[test]
    fn records_stream_in_redcap_order_with_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let (conn, _) = open(tmp.path()).unwrap();
        for (name, group) in [
            ("10", None),
            ("b", Some(3)),
            ("2", Some(3)),
            ("a", None),
            ("01", None),
        ] {
            insert_record(&conn, 1, name, group).unwrap();
            put_value(&conn, 1, name, "record_id", name).unwrap();
            put_value(&conn, 1, name, "x", "1").unwrap();
        }
        insert_record(&conn, 2, "1", None).unwrap();
        let all = RecordQuery {
            project_id: 1,
            group_id: None,
            records: None,
            fields: None,
            all_slots: false,
            events: None,
        };
        assert_eq!(names(&conn, &all), ["01:2", "2:2", "10:2", "a:2", "b:2"]);
        let dag = RecordQuery {
            group_id: Some(3),
            ..all
        };
        assert_eq!(names(&conn, &dag), ["2:2", "b:2"]);
        let some = ["a".to_owned(), "10".to_owned(), "zz".to_owned()];
        let only = ["x".to_owned()];
        let q = RecordQuery {
            project_id: 1,
            group_id: None,
            records: Some(&some),
            fields: Some(&only),
            all_slots: false,
            events: None,
        };
        assert_eq!(names(&conn, &q), ["10:1", "a:1"]);
        // A field filter alone (the merged scan): records without a value
        // of the field still come, empty.
        insert_record(&conn, 1, "7", None).unwrap();
        let only_x = RecordQuery {
            project_id: 1,
            group_id: None,
            records: None,
            fields: Some(&only),
            all_slots: false,
            events: None,
        };
        assert_eq!(
            names(&conn, &only_x),
            ["01:1", "2:1", "7:0", "10:1", "a:1", "b:1"]
        );
        delete_record(&conn, 1, "7").unwrap();
        assert_eq!(max_record_number(&conn, 1, "").unwrap(), 10);
        insert_record(&conn, 1, "3-7", Some(3)).unwrap();
        insert_record(&conn, 1, "3-12", Some(3)).unwrap();
        assert_eq!(max_record_number(&conn, 1, "3-").unwrap(), 12);
        rename_record(&conn, 1, "a", "11").unwrap();
        assert_eq!(max_record_number(&conn, 1, "").unwrap(), 11);
        delete_record(&conn, 1, "11").unwrap();
        assert_eq!(record_group(&conn, 1, "11").unwrap(), None);
        assert_eq!(record_values(&conn, 1, "10").unwrap().len(), 2);
    }

    /// A database of the first SQLite layout (`redcap_data` keyed by the
    /// record's text) is re-keyed once at start, its values kept.
    #[test]
    fn the_first_layout_is_rekeyed() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let conn = connect(&tmp.path().join(DB_FILE)).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "CREATE TABLE redcap_data (project_id INTEGER NOT NULL,
                     event_id INTEGER NOT NULL, record TEXT NOT NULL,
                     field_name TEXT NOT NULL, instance INTEGER NOT NULL DEFAULT 1,
                     value TEXT NOT NULL,
                     PRIMARY KEY (project_id, record, event_id, field_name, instance))
                 WITHOUT ROWID",
            )
            .unwrap();
            for name in ["10", "9", "a"] {
                insert_record(&conn, 1, name, None).unwrap();
                conn.execute(
                    "INSERT INTO redcap_data VALUES (1, 0, ?1, 'record_id', 1, ?1)",
                    [name],
                )
                .unwrap();
            }
        }
        let (conn, _) = open(tmp.path()).unwrap();
        let all = RecordQuery {
            project_id: 1,
            group_id: None,
            records: None,
            fields: None,
            all_slots: false,
            events: None,
        };
        assert_eq!(names(&conn, &all), ["9:1", "10:1", "a:1"]);
        assert_eq!(
            record_value(&conn, 1, "10", "record_id")
                .unwrap()
                .as_deref(),
            Some("10")
        );
        drop(conn);
        // Once: a second start finds the new layout.
        let (conn, _) = open(tmp.path()).unwrap();
        assert_eq!(names(&conn, &all), ["9:1", "10:1", "a:1"]);
    }

    /// A data directory of the old format is converted once: settings,
    /// records and log rows arrive, the old files stay as `*.migrated`.
    #[test]
    fn old_files_are_converted_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut state = State::default();
        state.next_project_id = 2;
        state.next_group_id = 1;
        state.next_role_id = 1;
        let project: Project = serde_json::from_value(serde_json::json!({
            "id": 1, "title": "Old", "purpose": 0, "creation_time": "2026-01-01 00:00:00",
            "members": {},
            "metadata": [
                {"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "R"}
            ]
        }))
        .unwrap();
        state.projects.insert(1, project);
        let mut json = serde_json::to_value(&state).unwrap();
        json["projects"]["1"]["records"] = serde_json::json!({
            "1": {"values": {"record_id": "1", "f_complete": "0"}},
            "x": {"group_id": 4, "values": {"record_id": "x"}}
        });
        fs::write(dir.join("state.json"), json.to_string()).unwrap();
        let row = LogRow {
            id: 1,
            project_id: Some(1),
            ts: "2026-01-01 00:00".into(),
            username: "alice".into(),
            kind: LogKind::RecordAdd,
            action: "Create record (API) 1".into(),
            details: "record_id = '1'".into(),
            record: Some("1".into()),
            group_id: None,
        };
        let mut log = serde_json::to_string(&row).unwrap();
        log.push_str("\n{\"torn");
        fs::write(dir.join("log.jsonl"), log).unwrap();

        let (conn, loaded) = open(dir).unwrap();
        assert_eq!(loaded.projects[&1].title, "Old");
        assert_eq!(loaded.next_project_id, 2);
        assert_eq!(record_group(&conn, 1, "x").unwrap(), Some(Some(4)));
        assert_eq!(record_values(&conn, 1, "1").unwrap().len(), 2);
        let mut rows = Vec::new();
        let q = LogQuery {
            project_id: 1,
            page_views: false,
            kinds: &[],
            user: Some("alice"),
            record: None,
            begin: Some("2026-01-01 00:00"),
            end: None,
        };
        for_each_log_row(&conn, &q, |r| {
            rows.push(r.action);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows, ["Create record (API) 1"]);
        assert!(!dir.join("state.json").exists());
        assert!(dir.join("state.json.migrated").exists());
        assert!(dir.join("log.jsonl.migrated").exists());
        drop(conn);
        // A second start finds nothing to convert.
        let (conn, _) = open(dir).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM redcap_data", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }
}
