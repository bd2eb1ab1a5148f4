//! `POST /admin/ledger/append`: while the gateway holds the ledger, other
//! `redcap-warden` commands record their entries here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger::EntryKind;
use serde_json::json;

use super::call::{Refusal, bearer};
use crate::state::Gateway;

/// One JSON `EntryKind` per call, appended durably before the answer.
pub(crate) async fn append(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    bearer(&gw, &headers)?;
    let kind: EntryKind = match serde_json::from_slice(&body) {
        Ok(k) => k,
        Err(e) => {
            return Ok((
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("not a ledger entry: {e}")})),
            )
                .into_response());
        }
    };
    if matches!(
        kind,
        EntryKind::Header { .. } | EntryKind::Request { .. } | EntryKind::Response { .. }
    ) {
        return Ok((StatusCode::BAD_REQUEST, axum::Json(json!({"error": "header, request and response entries are written by the gateway itself"})))
            .into_response());
    }
    Ok(match gw.ledger().append(kind).await {
        Ok(()) => axum::Json(json!({"appended": true})).into_response(),
        Err(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "the ledger is unavailable; nothing was recorded"})),
        )
            .into_response(),
    })
}
