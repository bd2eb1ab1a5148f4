//! The admin listener: its own address, never the clients'.
//!
//! - `GET /health`, `GET /ready`: for load balancers; reveal nothing.
//! - `GET /metrics`: Prometheus text (bearer).
//! - `POST /admin/reload`: re-read `warden.toml` and the key and status
//!   files, forget cached tokens (bearer). The ledger entry carries the new
//!   file's SHA-256 and a field-level diff.
//! - `POST /admin/ledger/append`: while the gateway holds the ledger, the
//!   CLI submits its entries here (bearer).
//! - `GET /admin/keys`, `POST /admin/keys/issue`, `POST /admin/keys/revoke`:
//!   client-key management (bearer; see [`crate::admin_keys`]).
//! - `POST /admin/accounts/{account}/hold`, `.../release`: the cut-over
//!   hold (bearer; see [`crate::hold`]).
//!
//! The bearer credential is a random value in a 0600 file beside the data
//! (`[gateway] admin_token_file`), created at first start: whoever can read
//! the data directory can administer the gateway, and nobody else.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use ledger::EntryKind;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use warden_config::LoadedConfig;
use zeroize::Zeroizing;

use crate::policy::Policy;
use crate::server::{Applied, Shared, file_stamp};

/// The admin bearer credential.
pub struct AdminToken(Zeroizing<String>);

impl AdminToken {
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

/// Reads the credential, creating the 0600 file with a random value if it
/// does not exist yet.
pub fn load_or_create_token(path: &Path) -> Result<AdminToken, std::io::Error> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => {
            return Ok(AdminToken(Zeroizing::new(t.trim().to_string())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let token = hex::encode(bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(AdminToken(Zeroizing::new(token)))
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .route("/admin/ledger/append", post(ledger_append))
        .route("/admin/keys", get(crate::admin_keys::list))
        .route("/admin/keys/issue", post(crate::admin_keys::issue))
        .route("/admin/keys/revoke", post(crate::admin_keys::revoke))
        .route(
            "/admin/accounts/{account}/hold",
            post(crate::hold::start_hold),
        )
        .route(
            "/admin/accounts/{account}/release",
            post(crate::hold::release_hold),
        )
}

const UNAUTHORISED: &str = "missing or wrong bearer credential (see [gateway] admin_token_file)";

fn unauthorised() -> Response {
    refuse(StatusCode::UNAUTHORIZED, UNAUTHORISED).into_response()
}

async fn health(State(gw): State<Arc<Shared>>) -> Response {
    let degraded = gw.degraded();
    let ledger_size = gw.ledger_size();
    let outage = gw.outage_summary().map(|(since, cause, refused)| {
        json!({"since": since.to_string(), "cause": cause, "requests_refused": refused})
    });
    let body = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "ledger_entries": ledger_size,
        "ledger_outage": outage,
        "requests": gw.requests.load(Ordering::Relaxed),
        "outbound_in_window": gw.upstream.limiter().in_window(),
        "redcap_banned": gw.upstream.is_banned(),
        "held_accounts": gw.holds.list().into_iter().map(|(a, since)| json!({"account": a, "since": since})).collect::<Vec<_>>(),
    });
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

async fn ready(State(gw): State<Arc<Shared>>) -> StatusCode {
    if gw.degraded() || gw.upstream.is_banned() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn metrics(State(gw): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !gw.admin_token.matches(&headers) {
        return unauthorised();
    }
    let ledger = gw.ledger.read().unwrap_or_else(|e| e.into_inner()).clone();
    let applied = gw.applied();
    let now = Timestamp::now();
    let mut ages: Vec<(String, f64)> = gw
        .tokens
        .written_at()
        .into_iter()
        .filter_map(|(secret, at)| {
            let account = applied
                .policy
                .accounts
                .values()
                .find(|a| a.secret == secret)?;
            Some((
                account.name.clone(),
                (now - at).as_secs_f64().max(0.0).floor(),
            ))
        })
        .collect();
    ages.sort_by(|a, b| a.0.cmp(&b.0));
    let gauges = [
        (
            "warden_ledger_entries",
            "Entries in the ledger.",
            ledger.as_ref().map_or(0.0, |l| l.size() as f64),
        ),
        (
            "warden_ledger_pending",
            "Entries waiting for their group commit (ledger lag).",
            ledger.as_ref().map_or(0.0, |l| l.pending() as f64),
        ),
        (
            "warden_ledger_degraded",
            "1 while the ledger is unavailable and requests are refused.",
            if gw.degraded() { 1.0 } else { 0.0 },
        ),
        (
            "warden_outbound_in_window",
            "Calls to REDCap in the last 60 s.",
            gw.upstream.limiter().in_window() as f64,
        ),
        (
            "warden_redcap_banned",
            "1 after REDCap answered 429.",
            if gw.upstream.is_banned() { 1.0 } else { 0.0 },
        ),
    ];
    let mut r = gw.metrics.render(&gauges, &ages).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4".parse().expect("valid"),
    );
    r
}

/// Settings a reload cannot apply: they need a restart.
const RESTART_ONLY: &[&str] = &[
    "gateway.listen",
    "gateway.admin_listen",
    "gateway.outbound_per_minute",
    "gateway.max_body_bytes",
    "redcap.url",
    "ledger.",
    "secrets.",
];

async fn reload(State(gw): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !gw.admin_token.matches(&headers) {
        return unauthorised();
    }
    let old = gw.applied();
    let new = match warden_config::load(&old.config.path) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("not reloaded: {e}")})),
            )
                .into_response();
        }
    };
    let changes = warden_config::field_diff(&old.config.text, &new.text);
    let restart: Vec<&String> = changes
        .iter()
        .filter(|c| RESTART_ONLY.iter().any(|p| c.starts_with(p)))
        .collect();
    let reason = format!(
        "reload: warden.toml sha256 {}; {}",
        new.sha256,
        if changes.is_empty() {
            "no changes".to_string()
        } else {
            format!("changes: {}", changes.join("; "))
        }
    );
    *gw.applied.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Applied {
        policy: Policy::from_config(&new.config),
        config: new.clone(),
    });
    gw.tokens.clear();
    if let Ok(ring) = gw.keys.ring() {
        *gw.ring.write().unwrap_or_else(|e| e.into_inner()) = (ring, file_stamp(gw.keys.path()));
    }
    if let Ok(q) = gw.status.quarantined() {
        *gw.quarantined.write().unwrap_or_else(|e| e.into_inner()) =
            (q, file_stamp(gw.status.path()));
    }
    gw.load_token_fingerprints().await;
    let _ = remember_applied(&new);
    let recorded = gw
        .append(EntryKind::Admin {
            operator: "admin-api".into(),
            action: "reload".into(),
            target: new.path.display().to_string(),
            reason,
        })
        .await
        .is_ok();
    axum::Json(json!({"reloaded": true, "recorded": recorded, "changes": changes, "restart_required": restart})).into_response()
}

/// The CLI's entries while the gateway holds the ledger: one JSON
/// `EntryKind` per call, appended durably before the answer.
async fn ledger_append(
    State(gw): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !gw.admin_token.matches(&headers) {
        return unauthorised();
    }
    let kind: EntryKind = match serde_json::from_slice(&body) {
        Ok(k) => k,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("not a ledger entry: {e}")})),
            )
                .into_response();
        }
    };
    if matches!(
        kind,
        EntryKind::Header { .. } | EntryKind::Request { .. } | EntryKind::Response { .. }
    ) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "header, request and response entries are written by the gateway itself"})))
            .into_response();
    }
    match gw.append(kind).await {
        Ok(()) => axum::Json(json!({"appended": true})).into_response(),
        Err(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "the ledger is unavailable; nothing was recorded"})),
        )
            .into_response(),
    }
}

/// Where the last applied configuration text is kept, to diff against at
/// the next start.
fn applied_copy(config: &LoadedConfig) -> std::path::PathBuf {
    let status = config.resolve(&config.config.gateway.accounts_file);
    durable::parent_dir(&status).join("gateway-applied.toml")
}

fn remember_applied(config: &LoadedConfig) -> std::io::Result<()> {
    durable::atomic_replace(
        &durable::OsFs,
        &applied_copy(config),
        config.text.as_bytes(),
    )
}

/// The reason of the start entry: the file's hash and what changed since
/// the configuration the gateway last ran with.
pub(crate) fn config_change_reason(config: &LoadedConfig) -> String {
    let changes = match std::fs::read_to_string(applied_copy(config)) {
        Ok(previous) => {
            let d = warden_config::field_diff(&previous, &config.text);
            if d.is_empty() {
                "no changes since the last start".to_string()
            } else {
                format!("changes since the last start: {}", d.join("; "))
            }
        }
        Err(_) => "first start with this data directory".to_string(),
    };
    let _ = remember_applied(config);
    format!("warden.toml sha256 {}; {changes}", config.sha256)
}

// Helpers of the state-changing admin endpoints (keys, holds).

/// A refused admin call: its status and a JSON `{"error": ...}` body that
/// says what is wrong.
#[derive(Debug)]
pub(crate) struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal(status, message.into())
}

/// What every state-changing admin call checks first: the bearer
/// credential, a well-formed JSON body, and who and why.
pub(crate) fn admit<T: for<'de> Deserialize<'de>>(
    gw: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Refusal> {
    bearer(gw, headers)?;
    serde_json::from_slice(body).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the request body is not what this endpoint takes: {e}"),
        )
    })
}

/// The bearer credential, or 401.
pub(crate) fn bearer(gw: &Shared, headers: &HeaderMap) -> Result<(), Refusal> {
    if gw.admin_token.matches(headers) {
        Ok(())
    } else {
        Err(refuse(StatusCode::UNAUTHORIZED, UNAUTHORISED))
    }
}

/// `operator` and `reason` are both required and non-blank; the recorded
/// operator is `admin-api (<operator>)`.
pub(crate) fn who_and_why(operator: &str, reason: &str) -> Result<(String, String), Refusal> {
    let (operator, reason) = (operator.trim(), reason.trim());
    if operator.is_empty() || reason.is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "`operator` (who you are) and `reason` (why) are both required: every change is recorded with them",
        ));
    }
    Ok((format!("admin-api ({operator})"), reason.to_string()))
}

/// Refuses while the ledger is down: the change could not be recorded.
pub(crate) fn ledger_up(gw: &Shared) -> Result<(), Refusal> {
    if gw.degraded() {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ledger is unavailable, so this change could not be recorded; nothing was changed",
        ));
    }
    Ok(())
}

/// Records an admin change; if the entry fails the gateway is degraded and
/// the caller hears that the change stands unrecorded.
pub(crate) async fn record_change(
    gw: &Shared,
    entry: EntryKind,
    done: serde_json::Value,
) -> Result<Response, Refusal> {
    match gw.append(entry).await {
        Ok(()) => Ok(axum::Json(done).into_response()),
        Err(()) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the change was made ({done}) but its ledger entry could not be written; the gateway is degraded until the ledger is back"
            ),
        )),
    }
}
