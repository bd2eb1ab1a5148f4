//! `POST /admin/reload`: re-reads `warden.toml`, the key and account-status
//! files, forgets cached tokens; an `admin` entry with the file's SHA-256
//! and a field-level diff.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger::EntryKind;
use serde_json::json;

use super::call::{Refusal, bearer};
use crate::state::{Gateway, remember_applied};

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

pub(crate) async fn reload(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    bearer(&gw, &headers)?;
    let old = gw.applied();
    let new = match warden_config::load(&old.config.path) {
        Ok(c) => c,
        Err(e) => {
            return Ok((
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("not reloaded: {e}")})),
            )
                .into_response());
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
    gw.apply(new.clone());
    gw.tokens().clear();
    gw.keys().reload();
    gw.quarantines().reload();
    gw.load_token_fingerprints().await;
    let _ = remember_applied(&new);
    let recorded = gw
        .ledger()
        .append(EntryKind::Admin {
            operator: "admin-api".into(),
            action: "reload".into(),
            target: new.path.display().to_string(),
            reason,
        })
        .await
        .is_ok();
    Ok(axum::Json(json!({"reloaded": true, "recorded": recorded, "changes": changes, "restart_required": restart})).into_response())
}
