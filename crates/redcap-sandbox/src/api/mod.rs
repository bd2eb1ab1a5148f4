//! The REDCap API: `POST /api/`.
//!
//! [`handle`] runs one request through REDCap's processing order (§1.3):
//! page-view log, token check (super tokens for `version` and Create
//! Project), project-rights expiry, `data` decoding, `content` whitelist,
//! `action` derivation (§1.4), the entry privilege gate by action, then the
//! method. Each method family lives in its own file with the same shape:
//! check the method's privileges, parse the parameters, apply them to the
//! state, write the response.
//!
//! Methods the sandbox does not implement answer as REDCap answers a content
//! it does not know: 400 `The value of the parameter "content" is not valid`.

mod app_rights;
mod dags;
mod events;
mod field_validation;
pub(crate) mod file_repository;
pub(crate) mod files;
mod logging;
pub(crate) mod metadata;
mod pdf;
mod project;
pub(crate) mod project_settings;
mod project_xml;
mod randomize;
mod records;
pub(crate) mod reports;
pub(crate) mod roles;
mod surveys;
pub(crate) mod users;
mod validation;
mod version;

pub(crate) use users::{import_user_row, parse_expiration, user_row, valid_username};

use std::net::IpAddr;
use std::time::{Duration, Instant};

use redcap::{Action, ApiError, Content, Rights};
use serde_json::{Map, Value};

use crate::Config;
use crate::db::{Db, LogKind, LogRow, Project, State};
use crate::format::{Format, Reply, check_rows, decode_rows};
use crate::post::Post;

/// Who is calling, with the rights that apply to this request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub username: String,
    /// `None` for a super token.
    pub project_id: Option<u64>,
    pub admin: bool,
    /// Effective rights: role over user, admin bypass, mobile-app escalation.
    pub rights: Rights,
    /// The caller's DAG; `None` for administrators and unassigned users.
    pub group_id: Option<u64>,
}

/// Server-local time of the request.
#[derive(Clone)]
pub(crate) struct Now {
    /// `YYYY-MM-DD HH:MM` (log timestamps, §7.1).
    pub minute: String,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub second: String,
    /// `YYYY-MM-DD`.
    pub today: String,
}

impl Now {
    pub fn new(config: &Config) -> Now {
        let z = jiff::Timestamp::now()
            .saturating_add(config.clock_offset)
            .expect("a signed duration adds to a timestamp")
            .to_zoned_datetime(config.timezone.clone());
        Now {
            minute: z.strftime("%Y-%m-%d %H:%M").to_string(),
            second: z.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            today: z.strftime("%Y-%m-%d").to_string(),
        }
    }
}

/// Everything a method needs.
pub(crate) struct Ctx<'a> {
    pub state: &'a mut State,
    /// The database, inside this request's transaction.
    pub conn: &'a rusqlite::Connection,
    /// A storage failure: the request is rolled back and answers 500.
    pub failure: Option<anyhow::Error>,
    /// `conn.total_changes()` when the request began: equal now, the
    /// request has written nothing to the database yet.
    pub changes_at_start: u64,
    pub config: &'a Config,
    pub post: &'a Post,
    pub format: Format,
    pub return_format: Format,
    pub caller: Caller,
    pub now: Now,
    /// `data`, decoded in `format` (step 5 of §1.3).
    pub rows: Option<Vec<Map<String, Value>>>,
}

impl Ctx<'_> {
    /// Runs a storage operation; a failure is kept for [`handle`] (which
    /// rolls the request back and answers 500) and ends the method.
    pub fn sql<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ApiError> {
        f(self.conn).map_err(|e| {
            self.failure = Some(e.into());
            // Never shown: the answer becomes a 500.
            ApiError::InvalidContent
        })
    }

    /// Whether this request has written nothing to the database so far
    /// (its settings and log rows wait in the state until the commit).
    pub fn nothing_written(&self) -> bool {
        self.conn.total_changes() == self.changes_at_start
    }

    /// The caller's project id (project-token calls only).
    pub fn pid(&self) -> u64 {
        self.caller.project_id.unwrap_or_default()
    }

    /// A log row of the caller's project, to hand to a streamed answer.
    pub fn log_row(
        &self,
        kind: LogKind,
        action: impl Into<String>,
        details: impl Into<String>,
    ) -> LogRow {
        LogRow {
            id: 0,
            project_id: self.caller.project_id,
            ts: self.now.minute.clone(),
            username: self.caller.username.to_lowercase(),
            kind,
            action: action.into(),
            details: details.into(),
            record: None,
            group_id: None,
        }
    }

    /// The caller's project (project-token calls only).
    pub fn project(&self) -> &Project {
        let id = self.caller.project_id.unwrap_or_default();
        &self.state.projects[&id]
    }

    /// The caller's project, mutable; marks the state changed.
    pub fn project_mut(&mut self) -> &mut Project {
        let id = self.caller.project_id.unwrap_or_default();
        self.state.touch_project(id);
        self.state
            .projects
            .get_mut(&id)
            .expect("a project-token caller's project exists")
    }

    /// Writes an event-log row for the caller's project.
    pub fn log(
        &mut self,
        kind: LogKind,
        action: impl Into<String>,
        details: impl Into<String>,
        record: Option<String>,
        group_id: Option<u64>,
    ) {
        let row = LogRow {
            id: 0,
            project_id: self.caller.project_id,
            ts: self.now.minute.clone(),
            username: self.caller.username.to_lowercase(),
            kind,
            action: action.into(),
            details: details.into(),
            record,
            group_id,
        };
        // Straight into the transaction (a large import's rows are not held
        // until the commit); a failure makes the request a 500.
        let _ = self.sql(|c| crate::store::append_log(c, std::slice::from_ref(&row)));
    }

    /// A Manage/Design row whose details are `description` (e.g.
    /// `Export users (API)`); "(API Playground)" when `playground` is sent
    /// (§10.16).
    pub fn log_manage(&mut self, kind: LogKind, description: &str) {
        let details = self.api_label(description);
        self.log(kind, "Manage/Design ", details, None, None);
    }

    /// `"<text> (API)"`, or `"<text> (API Playground)"`.
    pub fn api_label(&self, text: &str) -> String {
        if self.post.has("playground") {
            format!("{text} (API Playground)")
        } else {
            format!("{text} (API)")
        }
    }

    /// The imported rows; a missing `data` is an empty import.
    pub fn take_rows(&mut self) -> Vec<Map<String, Value>> {
        self.rows.take().unwrap_or_default()
    }

    /// A bare count, the answer of most write methods (§1.6).
    pub fn count(&self, n: usize) -> Reply {
        Reply::ok(self.format, n.to_string())
    }

    /// Rows rendered in `format`.
    pub fn rows_reply(
        &self,
        rows: &[Map<String, Value>],
        empty_header: &[&str],
        root: &str,
        item: &str,
    ) -> Reply {
        Reply::ok(
            self.format,
            crate::format::render_rows(self.format, rows, empty_header, root, item),
        )
    }
}

/// A JSON value as the string PHP would see (`1` → `"1"`).
pub(crate) fn text(value: Option<&Value>) -> String {
    value
        .and_then(redcap::rights::wire_text)
        .unwrap_or_default()
}

/// The per-IP page-hit limiter of §9.1 (step 2 of §1.3): a banned IP gets
/// 429 in plain text; the request that crosses the threshold still
/// completes, later ones are refused until an admin lifts the ban.
fn rate_limit(state: &mut State, config: &Config, ip: IpAddr) -> Option<Reply> {
    if state.banned_ips.contains(&ip) {
        return Some(Reply::text(
            429,
            "text/html; charset=utf-8",
            format!("Your IP address ({ip}) has been banned due to suspected abuse."),
        ));
    }
    let threshold = config.page_hit_threshold.filter(|t| *t > 0)?;
    if config.rate_limit_exempt.contains(&ip) {
        return None;
    }
    let now = Instant::now();
    let window = state.hits.entry(ip).or_default();
    window.push_back(now);
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        window.pop_front();
    }
    if window.len() > threshold as usize {
        state.hits.remove(&ip);
        state.banned_ips.insert(ip);
        state.touch();
        tracing::warn!("banned {ip}: more than {threshold} API requests in a minute");
    }
    None
}

/// Runs one API request start to finish inside one critical section.
pub fn handle(db: &Db, config: &Config, post: &Post, ip: IpAddr) -> Reply {
    let format = Format::from_param(post.str("format"));
    let return_format = Format::return_format(post.str("returnFormat"), format);
    let mut txn = db.begin();
    let (state, conn) = txn.parts();
    let mut failure = None;
    let reply = match rate_limit(state, config, ip) {
        Some(refused) => refused,
        None => match process(
            state,
            conn,
            &mut failure,
            config,
            post,
            format,
            return_format,
        ) {
            Ok(reply) => reply,
            Err(err) => Reply::error(&err, return_format),
        },
    };
    let result = match failure {
        // A storage failure part way: nothing of the request stays.
        Some(e) => {
            txn.rollback();
            Err(e)
        }
        None => finish(txn, reply),
    };
    result.unwrap_or_else(|e| {
        tracing::error!("cannot persist the sandbox state: {e:#}");
        Reply::text(
            500,
            "text/plain; charset=utf-8",
            "The sandbox could not save its state; see its log.".into(),
        )
    })
}

/// Commits the request. A streamed answer gets its snapshot here, inside
/// the critical section: it sees everything committed before it (this
/// request's page view included) and nothing after; the rows it logs
/// after building its answer (Export Logging's own row) are committed
/// after the snapshot was taken.
fn finish(mut txn: crate::db::Txn<'_>, mut reply: Reply) -> anyhow::Result<Reply> {
    let Some(stream) = reply.stream.as_mut() else {
        txn.commit()?;
        return Ok(reply);
    };
    txn.checkpoint()?;
    stream.snapshot = Some(txn.db().snapshot()?);
    for row in std::mem::take(&mut stream.log_after) {
        txn.state().log(row);
    }
    txn.commit()?;
    Ok(reply)
}

fn resolve_caller(
    state: &State,
    post: &Post,
    content: &str,
    has_data: bool,
) -> Result<Caller, ApiError> {
    let token = post.str("token");
    let super_route = content == "version" || (content == "project" && has_data);
    if super_route && token.len() == 64 {
        let account = state
            .accounts
            .values()
            .find(|a| a.super_token.as_deref() == Some(token) && !a.suspended)
            .ok_or(ApiError::SuperTokenRequired)?;
        return Ok(Caller {
            username: account.username.clone(),
            project_id: None,
            admin: account.administrator,
            rights: Rights::default(),
            group_id: None,
        });
    }
    // Only [A-Za-z0-9]+ is looked up; nothing is trimmed (§1.7, §10.11).
    let well_formed = !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric());
    if content == "project" && has_data {
        return Err(if well_formed {
            ApiError::SuperTokenRequired
        } else {
            ApiError::NoApiPermission
        });
    }
    if !well_formed {
        return Err(ApiError::NoApiPermission);
    }
    let (pid, username) = state.find_token(token).ok_or(ApiError::NoApiPermission)?;
    let project = &state.projects[&pid];
    let member = &project.members[&username];
    let admin = state
        .accounts
        .get(&username)
        .is_some_and(|a| a.administrator);
    let mut rights = if admin {
        let mut all = Rights::full(&project.forms());
        all.random_perform = Some(true);
        all
    } else {
        project.member_rights(member)
    };
    // §4.8: the Mobile App right plus mobile_app=1 escalates this request.
    let mobile = post.str("mobile_app") == "1" || post.str("mobileApp") == "1";
    if mobile && (rights.mobile_app || admin) {
        rights.escalate_for_mobile_app();
    }
    Ok(Caller {
        username,
        project_id: Some(pid),
        admin,
        rights,
        group_id: if admin { None } else { member.group_id },
    })
}

/// The entry gate of §1.3 step 7 (32-character tokens).
fn entry_gate(content: Content, action: Action, rights: &Rights) -> Result<(), ApiError> {
    match action {
        // REDCap's gate skips `list` (File Repository): no API right needed.
        Action::Export if !rights.api_export => Err(ApiError::NoApiExport),
        Action::List if content == Content::User && !rights.api_import => {
            Err(ApiError::NoApiImport)
        }
        Action::Import | Action::ImportApp | Action::CreateFolder if !rights.api_import => {
            Err(ApiError::NoApiImport)
        }
        Action::Delete => match content {
            Content::User => {
                if !rights.api_import {
                    Err(ApiError::NoApiImport)
                } else if !rights.record_delete {
                    Err(ApiError::NoDeleteRecord)
                } else {
                    Ok(())
                }
            }
            Content::FileRepository if !rights.api_import => Err(ApiError::NoApiImport),
            // Delete DAGs checks only the DAG right, in its handler (§5.1).
            Content::Dag | Content::FileRepository => Ok(()),
            _ if !rights.record_delete => Err(ApiError::NoDeleteRecord),
            _ => Ok(()),
        },
        Action::Rename if !rights.record_rename => Err(ApiError::NoRenameRecord),
        Action::Randomize if rights.random_perform != Some(true) => Err(ApiError::NoRandomize),
        _ => Ok(()),
    }
}

fn process(
    state: &mut State,
    conn: &rusqlite::Connection,
    failure: &mut Option<anyhow::Error>,
    config: &Config,
    post: &Post,
    format: Format,
    return_format: Format,
) -> Result<Reply, ApiError> {
    let changes_at_start = conn.total_changes();
    let now = Now::new(config);
    let content_raw = post.str("content");
    let has_data = post.has("data");

    // Step 3: the API switched off system-wide.
    if state.api_disabled {
        return Err(ApiError::ApiDisabled);
    }

    // Step 5: token. Unknown tokens leave no row in any project (§1.6).
    let caller = resolve_caller(state, post, content_raw, has_data)?;

    // Step 2: the page-view row, written for every authenticated request,
    // including those refused below (§7.2).
    state.log(LogRow {
        id: 0,
        project_id: caller.project_id,
        ts: now.minute.clone(),
        username: caller.username.to_lowercase(),
        kind: LogKind::PageView,
        action: "Page View".into(),
        details: format!("Page accessed: {}api/", config.public_url()),
        record: None,
        group_id: None,
    });

    // Step 5: project-rights expiry (administrators are exempt, §8.1).
    if let Some(pid) = caller.project_id
        && !caller.admin
    {
        let member = &state.projects[&pid].members[&caller.username];
        if let Some(exp) = &member.expiration
            && exp.as_str() <= now.today.as_str()
        {
            return Err(ApiError::RightsExpired { date: exp.clone() });
        }
    }

    // Step 5: `data` decoding. Records are read from `data` one row at a
    // time by the method (a large import is never held whole): here they
    // are only checked, so a decoding error still comes first.
    let streamed = Content::parse(content_raw) == Some(Content::Record);
    let rows = match post.get("data").and_then(|d| d.as_str()) {
        Some(data) if streamed => {
            check_rows(format, data)?;
            None
        }
        Some(data) => Some(decode_rows(format, data)?),
        None => None,
    };

    // Step 6: content whitelist and action.
    let content = Content::parse(content_raw).ok_or(ApiError::InvalidContent)?;
    let action = Action::derive(content, post.str("action"), has_data)?;
    // `fileinfo`/`filesize` check `action` as `file` does, then take the
    // derived one (REDCap's API/index.php).
    if matches!(content, Content::FileInfo | Content::FileSize)
        && !["export", "import", "import_app", "delete"]
            .contains(&post.str("action").to_ascii_lowercase().as_str())
    {
        return Err(ApiError::InvalidAction);
    }

    // Step 7: privilege gate for project tokens.
    if caller.project_id.is_some() {
        entry_gate(content, action, &caller.rights)?;
    }

    let mut ctx = Ctx {
        state,
        conn,
        failure: None,
        changes_at_start,
        config,
        post,
        format,
        return_format,
        caller,
        now,
        rows,
    };

    // Super tokens reach only `version` and Create Project.
    let result = dispatch(&mut ctx, content, action);
    *failure = ctx.failure.take();
    result
}

fn dispatch(ctx: &mut Ctx, content: Content, action: Action) -> Result<Reply, ApiError> {
    if ctx.caller.project_id.is_none() {
        return match (content, action) {
            (Content::Version, _) => version::export(ctx),
            (Content::Project, Action::Import) => project::create(ctx),
            _ => Err(ApiError::NoApiPermission),
        };
    }

    use Action as A;
    use Content as C;
    match (content, action) {
        (C::Version, _) => version::export(ctx),
        (C::Project, A::Export) => project::export(ctx),
        (C::Metadata, A::Export) => metadata::export(ctx),
        (C::Metadata, A::Import) => metadata::import(ctx),
        (C::Instrument, A::Export) => metadata::export_instruments(ctx),
        (C::ExportFieldNames, A::Export) => metadata::export_field_names(ctx),
        (C::GenerateNextRecordName, A::Export) => records::next_record_name(ctx),
        (C::User, A::Export) => users::export(ctx),
        (C::User, A::Import) => users::import(ctx),
        (C::User, A::Delete) => users::delete(ctx),
        (C::UserRole, A::Export) => roles::export(ctx),
        (C::UserRole, A::Import) => roles::import(ctx),
        (C::UserRole, A::Delete) => roles::delete(ctx),
        (C::UserRoleMapping, A::Export) => roles::export_mapping(ctx),
        (C::UserRoleMapping, A::Import) => roles::import_mapping(ctx),
        (C::Dag, A::Export) => dags::export(ctx),
        (C::Dag, A::Import) => dags::import(ctx),
        (C::Dag, A::Delete) => dags::delete(ctx),
        (C::Dag, A::Switch) => dags::switch(ctx),
        (C::UserDagMapping, A::Export) => dags::export_mapping(ctx),
        (C::UserDagMapping, A::Import) => dags::import_mapping(ctx),
        (C::Record, A::Export) => records::export(ctx),
        (C::Record, A::Import) => records::import(ctx),
        (C::Record, A::Delete) => records::delete(ctx),
        (C::Record, A::Rename) => records::rename(ctx),
        (C::Log, A::Export) => logging::export(ctx),
        (C::ProjectXml, A::Export) => project_xml::export(ctx),
        (C::Arm, A::Export) => events::export_arms(ctx),
        (C::Arm, A::Import) => events::import_arms(ctx),
        (C::Arm, A::Delete) => events::delete_arms(ctx),
        (C::Event, A::Export) => events::export_events(ctx),
        (C::Event, A::Import) => events::import_events(ctx),
        (C::Event, A::Delete) => events::delete_events(ctx),
        (C::FormEventMapping, A::Export) => events::export_mappings(ctx),
        (C::FormEventMapping, A::Import) => events::import_mappings(ctx),
        (C::RepeatingFormsEvents, A::Export) => events::export_repeating(ctx),
        (C::RepeatingFormsEvents, A::Import) => events::import_repeating(ctx),
        (C::File, A::Export) => files::export(ctx),
        (C::File, A::Import) => files::import(ctx),
        (C::File, A::Delete) => files::delete(ctx),
        (C::FileRepository, A::CreateFolder) => file_repository::create_folder(ctx),
        (C::FileRepository, A::List) => file_repository::list(ctx),
        (C::FileRepository, A::Export) => file_repository::export(ctx),
        (C::FileRepository, A::Import) => file_repository::import(ctx),
        (C::FileRepository, A::Delete) => file_repository::delete(ctx),
        (C::SurveyLink, A::Export) => surveys::link(ctx),
        (C::SurveyQueueLink, A::Export) => surveys::queue_link(ctx),
        (C::SurveyAccessCode, A::Export) => surveys::access_code(ctx),
        (C::SurveyReturnCode, A::Export) => surveys::return_code(ctx),
        (C::ParticipantList, A::Export) => surveys::participant_list(ctx),
        (C::Pdf, A::Export) => pdf::export(ctx),
        (C::FileInfo | C::FileSize, A::Import) => files::import(ctx),
        (C::FileInfo | C::FileSize, _) => files::info(ctx),
        (C::Report, A::Export) => reports::export(ctx),
        (C::ProjectSettings, A::Import) => project_settings::import(ctx),
        (C::Record, A::Randomize) => randomize::randomize(ctx),
        (C::AppRightsCheck, _) => app_rights::check(ctx),
        (C::FieldValidation, A::Export) => field_validation::export(ctx),
        // REDCap includes `<content>/<action>.php`, which does not exist
        // for these: PHP carries on and the answer is an empty 200 (INF).
        (C::Report | C::ProjectSettings | C::FieldValidation, _) => {
            Ok(Reply::text(200, "text/html; charset=UTF-8", String::new()))
        }
        // Not implemented: answered like an unknown content.
        (C::Project, A::Import) => Err(ApiError::SuperTokenRequired),
        (C::Dag | C::User | C::UserRole | C::Arm | C::Event, _) => Err(ApiError::InvalidAction),
        (C::Record | C::File | C::FileRepository, _) => Err(ApiError::InvalidAction),
        _ => Err(ApiError::InvalidContent),
    }
}
