//! Client-key management on the admin listener, for automation that
//! cannot run `redcap-warden keys` on the gateway's host:
//!
//! - `GET /admin/keys`: every key with its state, expiry and last use
//!   (including use not yet flushed to the key file).
//! - `POST /admin/keys/issue` `{client, to_store | to_file, operator, reason}`:
//!   issues a key and delivers it into the secrets store or a new 0600 file
//!   on the gateway's host — never into the HTTP answer
//!   ([`crate::keys::issue_and_deliver`], as `keys issue` does).
//! - `POST /admin/keys/revoke` `{id, operator, reason}`: the key is refused
//!   from the next request on.
//!
//! Both changes are `key` entries. The entry's operator is `admin-api`
//! (what authenticated: the bearer credential) with the name the caller
//! typed added in parentheses, never in its place. While the ledger is
//! down nothing is changed: a change that cannot be recorded is not made.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use ledger::EntryKind;
use secrets::SecretName;
use serde::Deserialize;
use serde_json::json;

use super::call::{
    Refusal, admit, bearer, ledger_up, record_change, refuse, unrecorded, who_and_why,
};
use crate::keys::{IssueError, IssuedKey, KeyDestination, KeyError, KeyOrder, KeyPolicy};
use crate::state::Gateway;

pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    bearer(&gw, &headers)?;
    let mut keys = gw
        .keys()
        .file()
        .list()
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let unflushed = gw.keys().unflushed_use();
    for k in &mut keys {
        if let Some(&t) = unflushed.get(&k.id) {
            k.last_used = Some(k.last_used.map_or(t, |u| u.max(t)));
        }
    }
    let now = Timestamp::now();
    let rows: Vec<_> = keys
        .iter()
        .map(|k| json!({"state": k.state(now), "key": k}))
        .collect();
    Ok(axum::Json(rows).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    client: String,
    #[serde(default)]
    to_store: Option<String>,
    #[serde(default)]
    to_file: Option<PathBuf>,
    operator: String,
    reason: String,
}

pub(crate) async fn issue(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let req: IssueRequest = admit(&gw, &headers, &body)?;
    let (operator, reason) = who_and_why(&req.operator, &req.reason)?;
    let applied = gw.applied();
    if !applied.policy.clients.contains_key(&req.client) {
        let mut known: Vec<&str> = applied.policy.clients.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no [[client]] named `{}` in the configuration in force; known clients: {}",
                req.client,
                known.join(", ")
            ),
        ));
    }
    let destination = destination(req.to_store, req.to_file)?;
    ledger_up(&gw)?;
    let order = KeyOrder {
        client: &req.client,
        destination: &destination,
        operator: &operator,
        reason: &reason,
        policy: KeyPolicy::from_config(&applied.config.config.gateway),
    };
    let ledger = gw.ledger();
    let record = move |entry| async move {
        ledger
            .append(entry)
            .await
            .map_err(|()| "the ledger is unavailable")
    };
    let store = gw.tokens().store();
    let issued = crate::keys::issue_and_deliver(gw.keys().file(), &**store, &order, record).await;
    gw.keys().reload();
    match issued {
        Ok(issued) => Ok(axum::Json(issued_json(&req.client, &issued)).into_response()),
        Err(IssueError::Unrecorded { issued, .. }) => {
            Err(unrecorded(&issued_json(&req.client, &issued)))
        }
        Err(e @ (IssueError::NotDelivered { .. } | IssueError::NotRevoked { .. })) => {
            Err(refuse(StatusCode::BAD_GATEWAY, e.to_string()))
        }
        Err(e @ IssueError::Keys(_)) => {
            Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        }
    }
}

/// Exactly one of a secret name or a new absolute path on the gateway's
/// host.
fn destination(
    to_store: Option<String>,
    to_file: Option<PathBuf>,
) -> Result<KeyDestination, Refusal> {
    match (to_store, to_file) {
        (Some(name), None) => SecretName::new(&name)
            .map(KeyDestination::Store)
            .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("`to_store`: {e}"))),
        (None, Some(path)) if path.is_absolute() && !path.exists() => {
            Ok(KeyDestination::File(path))
        }
        (None, Some(path)) if !path.is_absolute() => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "`to_file` must be an absolute path on the gateway's host, not {}",
                path.display()
            ),
        )),
        (None, Some(path)) => Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "{} already exists; keys are only written to new files",
                path.display()
            ),
        )),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "give exactly one of `to_store` (a secret name) or `to_file` (a new file on the gateway's host): the key is never sent back in the answer",
        )),
    }
}

fn issued_json(client: &str, issued: &IssuedKey) -> serde_json::Value {
    let shortened: Vec<_> = issued
        .shortened
        .iter()
        .map(|k| json!({"id": k.id, "expires_at": k.expires_at}))
        .collect();
    json!({"client": client, "id": issued.record.id, "expires_at": issued.record.expires_at,
           "delivered_to": issued.delivered_to, "shortened": shortened})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    id: String,
    operator: String,
    reason: String,
}

pub(crate) async fn revoke(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let req: RevokeRequest = admit(&gw, &headers, &body)?;
    let (operator, reason) = who_and_why(&req.operator, &req.reason)?;
    ledger_up(&gw)?;
    let record = match gw.keys().file().revoke(&req.id, &reason, Timestamp::now()) {
        Ok(r) => r,
        Err(e @ KeyError::NoSuchKey { .. }) => {
            return Err(refuse(StatusCode::NOT_FOUND, e.to_string()));
        }
        Err(e @ KeyError::AlreadyRevoked { .. }) => {
            return Err(refuse(StatusCode::CONFLICT, e.to_string()));
        }
        Err(e) => return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    gw.keys().reload();
    let entry = EntryKind::Key {
        operator,
        action: "revoke".into(),
        key_name: format!("client:{}/{}", record.client, record.id),
        verifier_key: None,
        reason,
    };
    let done = json!({"revoked": record.id, "client": record.client});
    record_change(&gw, entry, done).await
}
