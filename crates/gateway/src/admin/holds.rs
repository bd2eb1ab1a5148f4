//! `POST /admin/accounts/{account}/hold` and `.../release`: the cut-over
//! hold ([`crate::state::Holds`] tells its story); `.../activate`: a dual
//! pair's switch. Each takes `{operator, reason}` and is an `admin` entry.

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
    if let Err(since) = start_hold(&gw, &account, limit, &operator)? {
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
    let Some(released) = release_hold(&gw, &account)? else {
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

/// Starts the hold here, and with the PostgreSQL ledger first in the
/// shared holds every gateway follows (`crate::cluster::holds`).
fn start_hold(
    gw: &Gateway,
    account: &str,
    limit: std::time::Duration,
    operator: &str,
) -> Result<Result<(), jiff::Timestamp>, Refusal> {
    let Some(link) = gw.cluster() else {
        return Ok(gw.holds().start(account, limit));
    };
    let now = jiff::Timestamp::now();
    match link.holds.start(account, limit, operator, now) {
        Ok(Ok(hold)) => {
            let left = hold.left(now).unwrap_or_default();
            gw.holds().mirror(account, hold.since, left, limit);
            Ok(Ok(()))
        }
        Ok(Err(since)) => Ok(Err(since)),
        Err(e) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the hold was not started: {e}"),
        )),
    }
}

/// Releases the hold here, and with the PostgreSQL ledger in the shared
/// holds too (the other gateways release theirs when they see it gone).
/// `None` when the account was not held.
fn release_hold(gw: &Gateway, account: &str) -> Result<Option<crate::state::Released>, Refusal> {
    let here = gw.holds().release(account);
    let Some(link) = gw.cluster() else {
        return Ok(here);
    };
    match link.holds.release(account) {
        Ok(Some(_)) => Ok(Some(here.unwrap_or(crate::state::Released {
            held: 0,
            refused: 0,
        }))),
        Ok(None) => Ok(here),
        Err(e) => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "released on this gateway only: {e}; the other gateways keep holding until it runs out or a release reaches PostgreSQL"
            ),
        )),
    }
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

/// `POST /admin/accounts/{account}/activate`: a dual rotation has made
/// `account` the active member of its pair in the account status file;
/// the gateway re-reads the file now and confirms that it serves the
/// pair's clients with `account` from their next request (no hold: the
/// partner's token keeps working until it is regenerated, and a request
/// caught by that retries with the new member's token). 409 when the file
/// names the other member.
pub(crate) async fn activate(
    State(gw): State<Arc<Gateway>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let (operator, reason) = admit_hold(&gw, &account, &headers, &body)?;
    let applied = gw.applied();
    let Some(pair) = applied.policy.accounts[&account].pair.clone() else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!(
                "account `{account}` is not of a dual pair (mode = \"dual\") in the configuration in force"
            ),
        ));
    };
    gw.quarantines().reload();
    let active = gw.quarantines().active_of(&pair);
    if active != account {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "the account status file names `{active}` as the active member of pair `{pair}`, not `{account}`"
            ),
        ));
    }
    let entry = EntryKind::Admin {
        operator,
        action: "dual-activate".into(),
        target: format!("account:{account}"),
        reason: format!("{reason} (pair `{pair}`)"),
    };
    record_change(&gw, entry, json!({"active": account, "pair": pair})).await
}
