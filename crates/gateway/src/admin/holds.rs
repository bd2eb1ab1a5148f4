//! `POST /admin/accounts/{account}/hold` and `.../release`: the cut-over
//! hold ([`crate::state::Holds`] tells its story). Each takes
//! `{operator, reason}` and is an `admin` entry.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ledger::EntryKind;
use serde::Deserialize;
use serde_json::json;

use super::call::{Refusal, admit, ledger_up, record_change, refuse, who_and_why};
use crate::state::Gateway;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    operator: String,
    reason: String,
}

/// `POST /admin/accounts/{account}/hold`.
pub(crate) async fn start(
    State(gw): State<Arc<Gateway>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let (operator, reason) = admit_hold(&gw, &account, &headers, &body)?;
    let limit = gw.applied().config.config.gateway.cutover_hold;
    // A hold that ran out but that housekeeping has not ended yet owes its
    // alert before a new one replaces it.
    for alert in gw.holds().expire() {
        let _ = gw.ledger().append(alert).await;
    }
    if let Err(since) = gw.holds().start(&account, limit) {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("account `{account}` is already held (since {since}); release it first"),
        ));
    }
    let entry = EntryKind::Admin {
        operator,
        action: "cutover-hold".into(),
        target: format!("account:{account}"),
        reason: format!("{reason} (at most {} s)", limit.as_secs()),
    };
    record_change(
        &gw,
        entry,
        json!({"held": account, "at_most_seconds": limit.as_secs()}),
    )
    .await
}

/// `POST /admin/accounts/{account}/release`: the new token is in the store;
/// the cached token is forgotten so waiting requests read it.
pub(crate) async fn release(
    State(gw): State<Arc<Gateway>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let (operator, reason) = admit_hold(&gw, &account, &headers, &body)?;
    gw.tokens().clear();
    let Some(released) = gw.holds().release(&account) else {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("account `{account}` is not held (never, or its hold already ran out)"),
        ));
    };
    let entry = EntryKind::Admin {
        operator,
        action: "cutover-release".into(),
        target: format!("account:{account}"),
        reason: format!(
            "{reason} ({} requests waited, {} were refused)",
            released.held, released.refused
        ),
    };
    record_change(
        &gw,
        entry,
        json!({"released": account, "waited": released.held, "refused": released.refused}),
    )
    .await
}

/// Bearer, body, a configured account, and a ledger that can record.
fn admit_hold(
    gw: &Gateway,
    account: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, String), Refusal> {
    let req: HoldRequest = admit(gw, headers, body)?;
    let who = who_and_why(&req.operator, &req.reason)?;
    if !gw.applied().policy.accounts.contains_key(account) {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("no [[account]] named `{account}` in the configuration in force"),
        ));
    }
    ledger_up(gw)?;
    Ok(who)
}
