//! `GET /health`, `GET /ready` (no credential, nothing secret) and
//! `GET /metrics` (bearer).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::json;

use super::call::{Refusal, bearer};
use crate::state::Gateway;

pub(crate) async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    gw.upstream().limiter().refresh().await;
    let ledger = gw.ledger();
    let degraded = ledger.degraded();
    let outage = ledger.outage_summary().map(|(since, cause, refused)| {
        json!({"since": since.to_string(), "cause": cause, "requests_refused": refused})
    });
    let body = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "ledger_entries": ledger.size(),
        "ledger_outage": outage,
        "requests": gw.requests(),
        "outbound_in_window": gw.upstream().limiter().in_window(),
        "outbound_window": if gw.upstream().limiter().is_shared() { "shared" } else { "local" },
        "redcap_banned": gw.upstream().is_banned(),
        "held_accounts": gw.holds().list().into_iter().map(|(a, since)| json!({"account": a, "since": since})).collect::<Vec<_>>(),
    });
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

pub(crate) async fn ready(State(gw): State<Arc<Gateway>>) -> StatusCode {
    if gw.ledger().degraded() || gw.upstream().is_banned() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

pub(crate) async fn metrics(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    bearer(&gw, &headers)?;
    gw.upstream().limiter().refresh().await;
    let ledger = gw.ledger().current();
    let applied = gw.applied();
    let now = Timestamp::now();
    let mut ages: Vec<(String, f64)> = gw
        .tokens()
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
            if gw.ledger().degraded() { 1.0 } else { 0.0 },
        ),
        (
            "warden_outbound_in_window",
            "Calls to REDCap in the last 60 s (all replicas' with the shared window).",
            gw.upstream().limiter().in_window() as f64,
        ),
        (
            "warden_redcap_banned",
            "1 after REDCap answered 429.",
            if gw.upstream().is_banned() { 1.0 } else { 0.0 },
        ),
    ];
    let mut r = gw.metrics().render(&gauges, &ages).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4".parse().expect("valid"),
    );
    Ok(r)
}
