//! Client-key management on the admin listener, for automation that
//! cannot run `redcap-warden keys` on the gateway's host:
//!
//! - `GET /admin/keys`: every key with its state, expiry and last use
//!   (including use not yet flushed to the key file).
//! - `POST /admin/keys/issue` `{client, to_store | to_file, operator, reason}`:
//!   issues a key and delivers it into the secrets store or a new 0600 file
//!   on the gateway's host — never into the HTTP answer.
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
use secrets::{Label, SecretName, SecretValue, VersionMeta};
use serde::Deserialize;
use serde_json::json;

use crate::admin::{Refusal, admit, bearer, ledger_up, record_change, refuse, who_and_why};
use crate::keys::{KeyPolicy, KeyRecord, write_new_key_file};
use crate::server::{Shared, file_stamp};

/// Makes the key file's current content the ring in force now.
fn reload_ring(gw: &Shared) {
    if let Ok(ring) = gw.keys.ring() {
        *gw.ring.write().unwrap_or_else(|e| e.into_inner()) = (ring, file_stamp(gw.keys.path()));
    }
}

pub(crate) async fn list(
    State(gw): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    bearer(&gw, &headers)?;
    let mut keys = gw
        .keys
        .list()
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let unflushed = gw.key_use.lock().unwrap_or_else(|e| e.into_inner()).clone();
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
pub(crate) struct IssueRequest {
    client: String,
    #[serde(default)]
    to_store: Option<String>,
    #[serde(default)]
    to_file: Option<PathBuf>,
    operator: String,
    reason: String,
}

pub(crate) async fn issue(
    State(gw): State<Arc<Shared>>,
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
    enum Destination {
        Store(SecretName),
        File(PathBuf),
    }
    let destination = match (req.to_store, req.to_file) {
        (Some(name), None) => match SecretName::new(&name) {
            Ok(n) => Destination::Store(n),
            Err(e) => return Err(refuse(StatusCode::BAD_REQUEST, format!("`to_store`: {e}"))),
        },
        (None, Some(path)) if path.is_absolute() && !path.exists() => Destination::File(path),
        (None, Some(path)) if !path.is_absolute() => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "`to_file` must be an absolute path on the gateway's host, not {}",
                    path.display()
                ),
            ));
        }
        (None, Some(path)) => {
            return Err(refuse(
                StatusCode::CONFLICT,
                format!(
                    "{} already exists; keys are only written to new files",
                    path.display()
                ),
            ));
        }
        _ => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "give exactly one of `to_store` (a secret name) or `to_file` (a new file on the gateway's host): the key is never sent back in the answer",
            ));
        }
    };
    ledger_up(&gw)?;
    let policy = KeyPolicy::from_config(&applied.config.config.gateway);
    let now = Timestamp::now();
    let (key, record, shortened) = gw
        .keys
        .issue(&req.client, &operator, policy, now)
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let delivered = match &destination {
        Destination::Store(name) => {
            let meta = VersionMeta {
                operator: operator.clone(),
                at: now,
                reason: format!("client key {} for `{}`: {reason}", record.id, req.client),
                fingerprint: None,
                rotation_id: None,
            };
            let value = SecretValue::new(key.expose().to_string());
            gw.tokens
                .store()
                .put(name, value, meta, Label::Current)
                .await
                .map(|v| format!("secret `{name}` version {v}"))
                .map_err(|e| e.to_string())
        }
        Destination::File(path) => write_new_key_file(path, &key)
            .map(|()| format!("{} (mode 0600)", path.display()))
            .map_err(|e| format!("creating {}: {e}", path.display())),
    };
    drop(key);
    let delivered_to = match delivered {
        Ok(d) => d,
        Err(e) => {
            // A key nobody received must not work.
            let _ = gw
                .keys
                .revoke(&record.id, "not delivered", Timestamp::now());
            reload_ring(&gw);
            return Err(refuse(
                StatusCode::BAD_GATEWAY,
                format!(
                    "delivering key {} failed ({e}); it was revoked at once",
                    record.id
                ),
            ));
        }
    };
    reload_ring(&gw);
    let entry = EntryKind::Key {
        operator,
        action: "issue".into(),
        key_name: format!("client:{}/{}", req.client, record.id),
        verifier_key: None,
        reason: format!(
            "{reason} (delivered to {delivered_to}; expires {})",
            record.expires_at
        ),
    };
    let shortened: Vec<_> = shortened
        .iter()
        .map(|k: &KeyRecord| json!({"id": k.id, "expires_at": k.expires_at}))
        .collect();
    let done = json!({"client": req.client, "id": record.id, "expires_at": record.expires_at,
                      "delivered_to": delivered_to, "shortened": shortened});
    record_change(&gw, entry, done).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    id: String,
    operator: String,
    reason: String,
}

pub(crate) async fn revoke(
    State(gw): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let req: RevokeRequest = admit(&gw, &headers, &body)?;
    let (operator, reason) = who_and_why(&req.operator, &req.reason)?;
    ledger_up(&gw)?;
    let record = match gw.keys.revoke(&req.id, &reason, Timestamp::now()) {
        Ok(r) => r,
        Err(e @ crate::keys::KeyError::NoSuchKey { .. }) => {
            return Err(refuse(StatusCode::NOT_FOUND, e.to_string()));
        }
        Err(e @ crate::keys::KeyError::AlreadyRevoked { .. }) => {
            return Err(refuse(StatusCode::CONFLICT, e.to_string()));
        }
        Err(e) => return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    reload_ring(&gw);
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
