//! Out-of-band admin endpoints under `/sandbox/`.
//!
//! REDCap manages tokens, accounts and suspensions only in its web UI; tests
//! and demos need to do the same without a browser. Every endpoint takes and
//! answers JSON, needs `Authorization: Bearer <admin secret>`, and writes the
//! log rows REDCap would (token rows of §2.3 carry the full token, as
//! REDCap's do: these are test credentials). Documented in `docs/sandbox.md`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::api::Now;
use crate::db::{Account, LogKind, LogRow, Project, State as Data};
use crate::{AppState, SITE_ADMIN};

/// An admin endpoint failure: status and a message for the operator.
#[derive(Debug)]
pub struct AdminError(pub(crate) StatusCode, pub(crate) String);

impl AdminError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        AdminError(StatusCode::NOT_FOUND, what.into())
    }
    pub(crate) fn bad(what: impl Into<String>) -> Self {
        AdminError(StatusCode::BAD_REQUEST, what.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) type Answer = Result<Json<Value>, AdminError>;

/// The `/sandbox/` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandbox/users", post(create_user))
        .route("/sandbox/users/{username}/suspend", post(suspend))
        .route("/sandbox/users/{username}/unsuspend", post(unsuspend))
        .route("/sandbox/users/{username}/super-token", post(super_token))
        .route("/sandbox/projects", get(list_projects))
        .route("/sandbox/projects/{pid}/users", post(add_project_user))
        .route(
            "/sandbox/projects/{pid}/users/{username}",
            axum::routing::delete(remove_project_user),
        )
        .route(
            "/sandbox/projects/{pid}/users/{username}/token",
            post(create_token).get(show_token).delete(delete_token),
        )
        .route(
            "/sandbox/projects/{pid}/users/{username}/token/regenerate",
            post(regenerate_token),
        )
        .route(
            "/sandbox/projects/{pid}/users/{username}/expiration",
            post(set_expiration).put(set_expiration),
        )
        .route(
            "/sandbox/projects/{pid}/dags/{group_id}/rename",
            post(rename_dag),
        )
        .route("/sandbox/projects/{pid}/page-view", post(page_view))
        .route("/sandbox/projects/{pid}/status", post(set_status))
        .route("/sandbox/projects/{pid}/reports", post(define_report))
        .route("/sandbox/banned-ips", get(list_banned))
        .route("/sandbox/system", post(set_system))
        .route("/sandbox/banned-ips/{ip}", axum::routing::delete(unban))
}

/// Constant-time comparison of the bearer secret.
pub(crate) fn authorised(app: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(secret) = &app.config.admin_secret else {
        return Err(AdminError(
            StatusCode::FORBIDDEN,
            "the admin endpoints are disabled: start the sandbox with --admin-secret".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin secret (Authorization: Bearer <secret>)".into(),
        ))
    }
}

/// Runs `f` in one critical section on a blocking thread, then persists.
async fn run<F>(app: AppState, headers: HeaderMap, f: F) -> Answer
where
    F: FnOnce(&mut Data, &Now) -> Result<Value, AdminError> + Send + 'static,
{
    authorised(&app, &headers)?;
    tokio::task::spawn_blocking(move || {
        let now = Now::new(&app.config);
        let mut txn = app.db.begin();
        let result = f(txn.state(), &now);
        txn.commit().map_err(|e| {
            AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot save: {e:#}"),
            )
        })?;
        result.map(Json)
    })
    .await
    .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Like [`run`], with the request's database connection too (inside its
/// transaction): endpoints that write tables of their own.
pub(crate) async fn run_db<F>(app: AppState, headers: HeaderMap, f: F) -> Answer
where
    F: FnOnce(&mut Data, &rusqlite::Connection, &Now) -> Result<Value, AdminError> + Send + 'static,
{
    authorised(&app, &headers)?;
    tokio::task::spawn_blocking(move || {
        let now = Now::new(&app.config);
        let mut txn = app.db.begin();
        let (state, conn) = txn.parts();
        let result = f(state, conn, &now);
        if result.is_err() {
            txn.rollback();
            return result.map(Json);
        }
        txn.commit().map_err(|e| {
            AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot save: {e:#}"),
            )
        })?;
        result.map(Json)
    })
    .await
    .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

pub(crate) fn project_mut(state: &mut Data, pid: u64) -> Result<&mut Project, AdminError> {
    state
        .projects
        .get_mut(&pid)
        .ok_or_else(|| AdminError::not_found(format!("no project {pid}")))
}

/// A token-management row in the project's log (§2.3).
fn log_user_row(state: &mut Data, now: &Now, pid: u64, details: String) {
    state.log(LogRow {
        id: 0,
        project_id: Some(pid),
        ts: now.minute.clone(),
        username: SITE_ADMIN.into(),
        kind: LogKind::User,
        action: "Manage/Design ".into(),
        details,
        record: None,
        group_id: None,
    });
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    firstname: String,
    #[serde(default)]
    lastname: String,
    #[serde(default)]
    administrator: bool,
}

/// `POST /sandbox/users`: create (or update) an account.
async fn create_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<NewUser>,
) -> Answer {
    run(app, headers, move |state, _| {
        let username = body.username.trim().to_lowercase();
        if !crate::api::valid_username(&username) {
            return Err(AdminError::bad(format!(
                "{username:?} is not a valid REDCap username"
            )));
        }
        let account = state
            .accounts
            .entry(username.clone())
            .or_insert_with(|| Account {
                username: username.clone(),
                ..Account::default()
            });
        account.email = body.email;
        account.firstname = body.firstname;
        account.lastname = body.lastname;
        account.administrator = body.administrator;
        state.touch();
        Ok(json!({ "username": username, "administrator": body.administrator }))
    })
    .await
}

fn set_suspended(state: &mut Data, username: &str, suspended: bool) -> Result<Value, AdminError> {
    let account = state
        .accounts
        .get_mut(username)
        .ok_or_else(|| AdminError::not_found(format!("no account {username}")))?;
    account.suspended = suspended;
    state.touch();
    Ok(json!({ "username": username, "suspended": suspended }))
}

/// `POST /sandbox/users/{u}/suspend`: its tokens then get the generic 403.
async fn suspend(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Answer {
    run(app, headers, move |state, _| {
        set_suspended(state, &username, true)
    })
    .await
}

/// `POST /sandbox/users/{u}/unsuspend`.
async fn unsuspend(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Answer {
    run(app, headers, move |state, _| {
        set_suspended(state, &username, false)
    })
    .await
}

/// `POST /sandbox/users/{u}/super-token`: issue (or replace) the user's
/// super token; the account is created if needed.
async fn super_token(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Answer {
    run(app, headers, move |state, _| {
        let username = username.to_lowercase();
        if !crate::api::valid_username(&username) {
            return Err(AdminError::bad(format!(
                "{username:?} is not a valid REDCap username"
            )));
        }
        let token = state.new_super_token();
        let account = state
            .accounts
            .entry(username.clone())
            .or_insert_with(|| Account {
                username: username.clone(),
                ..Account::default()
            });
        let replaced = account.super_token.replace(token.clone());
        state.touch();
        Ok(json!({ "username": username, "token": token, "replaced": replaced }))
    })
    .await
}

/// `GET /sandbox/projects`: id, title and users of every project.
async fn list_projects(State(app): State<AppState>, headers: HeaderMap) -> Answer {
    run(app, headers, |state, _| {
        let list: Vec<Value> = state
            .projects
            .values()
            .map(|p| json!({ "project_id": p.id, "project_title": p.title, "users": p.members.keys().collect::<Vec<_>>() }))
            .collect();
        Ok(Value::Array(list))
    })
    .await
}

/// `POST /sandbox/projects/{pid}/users`: add or update a project user with
/// an Import Users row (`username`, rights, `forms`, `data_access_group`,
/// `expiration` …). Same semantics as Import Users, including the DAG reset
/// when `data_access_group` is left out.
async fn add_project_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(pid): Path<u64>,
    Json(row): Json<Map<String, Value>>,
) -> Answer {
    let version = app.config.version;
    run(app, headers, move |state, now| {
        let project = project_mut(state, pid)?;
        let mut copy = project.clone();
        let (username, is_new) = crate::api::import_user_row(&mut copy, version, &row)
            .map_err(|e| AdminError::bad(e.message()))?;
        *project = copy;
        state.touch();
        let verb = if is_new { "Add user" } else { "Update user" };
        state.log(LogRow {
            id: 0,
            project_id: Some(pid),
            ts: now.minute.clone(),
            username: SITE_ADMIN.into(),
            kind: LogKind::User,
            action: format!("{verb} {username}"),
            details: format!("user = '{username}'"),
            record: None,
            group_id: None,
        });
        let project = &state.projects[&pid];
        Ok(Value::Object(crate::api::user_row(
            state, project, version, &username,
        )))
    })
    .await
}

/// `DELETE /sandbox/projects/{pid}/users/{u}`: removes the user from the
/// project as the User Rights page does — its rights row goes, and with it
/// its API token (§2.4: the token then gets the generic 403). Logged
/// "Delete user …" as REDCap does.
async fn remove_project_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, username)): Path<(u64, String)>,
) -> Answer {
    run(app, headers, move |state, now| {
        let username = username.to_lowercase();
        let project = project_mut(state, pid)?;
        let removed = project.members.remove(&username).ok_or_else(|| {
            AdminError::not_found(format!("{username} is not a user of project {pid}"))
        })?;
        state.touch();
        state.log(LogRow {
            id: 0,
            project_id: Some(pid),
            ts: now.minute.clone(),
            username: SITE_ADMIN.into(),
            kind: LogKind::User,
            action: format!("Delete user {username}"),
            details: format!("user = '{username}'"),
            record: None,
            group_id: None,
        });
        Ok(json!({ "project_id": pid, "username": username, "had_token": removed.token.is_some() }))
    })
    .await
}

fn member_token(state: &Data, pid: u64, username: &str) -> Result<Option<String>, AdminError> {
    let project = state
        .projects
        .get(&pid)
        .ok_or_else(|| AdminError::not_found(format!("no project {pid}")))?;
    let member = project.members.get(username).ok_or_else(|| {
        AdminError::not_found(format!("{username} is not a user of project {pid}"))
    })?;
    Ok(member.token.clone())
}

fn set_token(state: &mut Data, pid: u64, username: &str, token: Option<String>) {
    if let Some(m) = state
        .projects
        .get_mut(&pid)
        .and_then(|p| p.members.get_mut(username))
    {
        m.token = token;
    }
    state.touch();
}

/// `POST …/users/{u}/token`: create the user's project token (409 if one
/// exists: regenerate instead).
async fn create_token(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, username)): Path<(u64, String)>,
) -> Answer {
    run(app, headers, move |state, now| {
        if member_token(state, pid, &username)?.is_some() {
            return Err(AdminError(
                StatusCode::CONFLICT,
                format!("{username} already has a token in project {pid}; regenerate it instead"),
            ));
        }
        let token = state.new_project_token();
        set_token(state, pid, &username, Some(token.clone()));
        log_user_row(
            state,
            now,
            pid,
            format!("Create API token for user (username = '{username}')"),
        );
        Ok(json!({ "project_id": pid, "username": username, "token": token }))
    })
    .await
}

/// `GET …/users/{u}/token`: view the token (as the Control Center can).
async fn show_token(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, username)): Path<(u64, String)>,
) -> Answer {
    run(app, headers, move |state, _| {
        let token = member_token(state, pid, &username)?;
        Ok(json!({ "project_id": pid, "username": username, "token": token }))
    })
    .await
}

/// `POST …/users/{u}/token/regenerate`: overwrite in place — the old token
/// fails on the very next request (§2.3).
async fn regenerate_token(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, username)): Path<(u64, String)>,
) -> Answer {
    run(app, headers, move |state, now| {
        let old = member_token(state, pid, &username)?.ok_or_else(|| {
            AdminError::not_found(format!("{username} has no token in project {pid}"))
        })?;
        let token = state.new_project_token();
        set_token(state, pid, &username, Some(token.clone()));
        log_user_row(
            state,
            now,
            pid,
            format!(
                "Regenerate API token for user (username = '{username}'); Replaced token = {old}"
            ),
        );
        log_user_row(
            state,
            now,
            pid,
            format!("Create API token for user (username = '{username}')"),
        );
        Ok(json!({ "project_id": pid, "username": username, "token": token, "replaced": old }))
    })
    .await
}

/// `DELETE …/users/{u}/token`.
async fn delete_token(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, username)): Path<(u64, String)>,
) -> Answer {
    run(app, headers, move |state, now| {
        let old = member_token(state, pid, &username)?.ok_or_else(|| {
            AdminError::not_found(format!("{username} has no token in project {pid}"))
        })?;
        set_token(state, pid, &username, None);
        log_user_row(
            state,
            now,
            pid,
            format!("Delete API token for user (username = '{username}'); Deleted token = {old}"),
        );
        Ok(json!({ "project_id": pid, "username": username, "deleted": old }))
    })
    .await
}

#[derive(Deserialize)]
struct Expiration {
    expiration: Option<String>,
}

/// `PUT …/users/{u}/expiration` `{"expiration": "YYYY-MM-DD" | null}`.
async fn set_expiration(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, username)): Path<(u64, String)>,
    Json(body): Json<Expiration>,
) -> Answer {
    run(app, headers, move |state, now| {
        member_token(state, pid, &username)?;
        let expiration = match body.expiration.as_deref() {
            None => None,
            Some(v) => crate::api::parse_expiration(&username, v)
                .map_err(|e| AdminError::bad(e.message()))?,
        };
        let project = project_mut(state, pid)?;
        if let Some(m) = project.members.get_mut(&username) {
            m.expiration = expiration.clone();
        }
        state.touch();
        state.log(LogRow {
            id: 0,
            project_id: Some(pid),
            ts: now.minute.clone(),
            username: SITE_ADMIN.into(),
            kind: LogKind::User,
            action: format!("Update user {username}"),
            details: format!(
                "user = '{username}', expiration = '{}'",
                expiration.clone().unwrap_or_default()
            ),
            record: None,
            group_id: None,
        });
        Ok(json!({ "project_id": pid, "username": username, "expiration": expiration }))
    })
    .await
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

/// `POST /sandbox/projects/{pid}/dags/{group_id}/rename` `{"name": …}`:
/// renames a DAG as the UI does; unique names are recomputed (§10.15).
async fn rename_dag(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((pid, group_id)): Path<(u64, u64)>,
    Json(body): Json<Rename>,
) -> Answer {
    run(app, headers, move |state, now| {
        let name = body.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(AdminError::bad("a DAG name has 1 to 100 characters"));
        }
        let project = project_mut(state, pid)?;
        let dag = project
            .dags
            .iter_mut()
            .find(|d| d.id == group_id)
            .ok_or_else(|| AdminError::not_found(format!("no DAG {group_id} in project {pid}")))?;
        dag.name = name.clone();
        let unique = project.dag_name(group_id).unwrap_or_default();
        state.touch();
        state.log(LogRow {
            id: 0,
            project_id: Some(pid),
            ts: now.minute.clone(),
            username: SITE_ADMIN.into(),
            kind: LogKind::Manage,
            action: "Manage/Design ".into(),
            details: format!("Rename data access group (group = '{name}')"),
            record: None,
            group_id: None,
        });
        Ok(json!({ "project_id": pid, "data_access_group_id": group_id, "data_access_group_name": name, "unique_group_name": unique }))
    })
    .await
}

#[derive(Deserialize)]
struct PageView {
    username: String,
    #[serde(default)]
    page: Option<String>,
}

/// `POST /sandbox/projects/{pid}/page-view` `{"username", "page"?}`: records
/// a web-UI page view (to test detection of UI use by API-only accounts).
async fn page_view(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(pid): Path<u64>,
    Json(body): Json<PageView>,
) -> Answer {
    let base = app.config.public_url();
    let version = app.config.version;
    run(app, headers, move |state, now| {
        project_mut(state, pid)?;
        let page = body
            .page
            .unwrap_or_else(|| format!("{base}redcap_v{version}/index.php?pid={pid}"));
        state.log(LogRow {
            id: 0,
            project_id: Some(pid),
            ts: now.minute.clone(),
            username: body.username.to_lowercase(),
            kind: LogKind::PageView,
            action: "Page View".into(),
            details: format!("Page accessed: {page}"),
            record: None,
            group_id: None,
        });
        Ok(json!({ "project_id": pid, "username": body.username, "page": page }))
    })
    .await
}

#[derive(Deserialize)]
struct Status {
    /// 0 development, 1 production, 2 analysis/cleanup.
    status: u8,
}

/// `POST /sandbox/projects/{pid}/status` `{"status": 0|1|2}`: move the
/// project between development, production and analysis/cleanup.
async fn set_status(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(pid): Path<u64>,
    Json(body): Json<Status>,
) -> Answer {
    run(app, headers, move |state, now| {
        if body.status > 2 {
            return Err(AdminError::bad(
                "status is 0 (development), 1 (production) or 2 (analysis/cleanup)",
            ));
        }
        let project = project_mut(state, pid)?;
        project.status = body.status;
        if body.status == 1 && project.production_time.is_empty() {
            project.production_time = now.second.clone();
        }
        state.touch();
        Ok(json!({ "project_id": pid, "status": body.status }))
    })
    .await
}

/// `GET /sandbox/banned-ips`: IPs banned by the page-hit limiter.
async fn list_banned(State(app): State<AppState>, headers: HeaderMap) -> Answer {
    run(app, headers, |state, _| Ok(json!(state.banned_ips))).await
}

/// `DELETE /sandbox/banned-ips/{ip}`: lift a ban (Control Center "Banned IP
/// Addresses").
async fn unban(State(app): State<AppState>, headers: HeaderMap, Path(ip): Path<String>) -> Answer {
    run(app, headers, move |state, _| {
        let addr: std::net::IpAddr = ip
            .parse()
            .map_err(|_| AdminError::bad(format!("{ip:?} is not an IP address")))?;
        if !state.banned_ips.remove(&addr) {
            return Err(AdminError::not_found(format!("{addr} is not banned")));
        }
        state.touch();
        Ok(json!({ "unbanned": addr }))
    })
    .await
}

#[derive(Deserialize)]
struct System {
    api_enabled: bool,
}

/// `POST /sandbox/system` `{"api_enabled": bool}`: the Control Center switch
/// that turns the whole API off (400 `api_01`).
async fn set_system(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<System>,
) -> Answer {
    run(app, headers, move |state, _| {
        state.api_disabled = !body.api_enabled;
        state.touch();
        Ok(json!({ "api_enabled": body.api_enabled }))
    })
    .await
}

/// `POST /sandbox/projects/{pid}/reports` `{"title", "fields"?,
/// "filter_logic"?}`: define a report (REDCap does it in its web UI),
/// logged as REDCap logs a new report; answers `{"report_id"}`.
async fn define_report(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(pid): Path<u64>,
    Json(body): Json<crate::api::reports::NewReport>,
) -> Answer {
    authorised(&app, &headers)?;
    tokio::task::spawn_blocking(move || {
        let now = Now::new(&app.config);
        let mut txn = app.db.begin();
        let (state, conn) = txn.parts();
        let project = state
            .projects
            .get(&pid)
            .ok_or_else(|| AdminError::not_found(format!("no project {pid}")))?;
        let report_id =
            crate::api::reports::define(conn, project, &body).map_err(AdminError::bad)?;
        state.log(LogRow {
            id: 0,
            project_id: Some(pid),
            ts: now.minute.clone(),
            username: SITE_ADMIN.into(),
            kind: LogKind::Manage,
            action: "Manage/Design ".into(),
            details: format!(
                "Create report (report: \"{}\", report_id: {report_id})",
                body.title.trim()
            ),
            record: None,
            group_id: None,
        });
        txn.commit().map_err(|e| {
            AdminError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot save: {e:#}"),
            )
        })?;
        Ok(Json(json!({ "report_id": report_id })))
    })
    .await
    .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}
