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
    "alerts.",
];

pub(crate) async fn reload(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    bearer(&gw, &headers)?;
    match apply_reload(&gw, "admin-api", None).await {
        Ok(done) => Ok(axum::Json(json!({
            "reloaded": true,
            "recorded": done.recorded,
            "changes": done.changes,
            "restart_required": done.restart_required,
        }))
        .into_response()),
        Err(e) => Ok((
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": format!("not reloaded: {e}")})),
        )
            .into_response()),
    }
}

/// What a reload applied.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The `admin` entry naming it is in the ledger.
    pub recorded: bool,
    /// Field-level changes of `warden.toml`.
    pub changes: Vec<String>,
    /// The changes that take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// Re-reads `warden.toml` (nothing is applied if it does not load), the
/// key and account-status files, forgets cached tokens, and records an
/// `admin` `reload` entry by `operator`; its reason names the `trigger`
/// when there is one (`reload (SIGHUP): …`). Shared by `POST /admin/reload`
/// and `serve`'s SIGHUP.
///
/// With the PostgreSQL ledger the reload is then announced to every other
/// gateway (`crate::cluster::reload`), which reloads as
/// [`follow_reload`] does.
pub(crate) async fn apply_reload(
    gw: &Gateway,
    operator: &str,
    trigger: Option<&str>,
) -> Result<Reloaded, warden_config::LoadError> {
    let done = reload_here(gw, operator, trigger).await?;
    if let Some(link) = gw.cluster()
        && let Err(e) = link.reloads.publish(operator)
    {
        tracing::error!(error = %e, "reloaded here, but the reload could not be announced to the other gateways; reload each of them");
    }
    Ok(done)
}

/// A reload another gateway announced: this one reloads too, recording
/// its own `reload` entry by the operator who asked.
pub(crate) async fn follow_reload(gw: &Gateway, asked: &crate::cluster::Asked) {
    let trigger = format!("announced through PostgreSQL by gateway {}", asked.origin);
    if let Err(e) = reload_here(gw, &asked.operator, Some(&trigger)).await {
        tracing::error!(error = %e, "another gateway reloaded, but this one's warden.toml does not load; keeping the configuration in force");
    }
}

async fn reload_here(
    gw: &Gateway,
    operator: &str,
    trigger: Option<&str>,
) -> Result<Reloaded, warden_config::LoadError> {
    let old = gw.applied();
    let new = warden_config::load(&old.config.path)?;
    let changes = warden_config::field_diff(&old.config.text, &new.text);
    let restart_required: Vec<String> = changes
        .iter()
        .filter(|c| RESTART_ONLY.iter().any(|p| c.starts_with(p)))
        .cloned()
        .collect();
    let reason = format!(
        "reload{}: warden.toml sha256 {}; {}",
        trigger.map(|t| format!(" ({t})")).unwrap_or_default(),
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
            operator: operator.into(),
            action: "reload".into(),
            target: new.path.display().to_string(),
            reason,
        })
        .await
        .is_ok();
    Ok(Reloaded {
        recorded,
        changes,
        restart_required,
    })
}
