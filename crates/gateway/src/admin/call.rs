//! What every admin endpoint checks first, and how it answers: the bearer
//! credential, a well-formed JSON body, who and why, a ledger that can
//! record — and a refusal as `{"error": ...}` saying what is wrong.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger::EntryKind;
use serde::Deserialize;
use serde_json::json;

use crate::state::Gateway;

const UNAUTHORISED: &str = "missing or wrong bearer credential (see [gateway] admin_token_file)";

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
/// credential and a well-formed JSON body.
pub(crate) fn admit<T: for<'de> Deserialize<'de>>(
    gw: &Gateway,
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
pub(crate) fn bearer(gw: &Gateway, headers: &HeaderMap) -> Result<(), Refusal> {
    if gw.admin_token().matches(headers) {
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
pub(crate) fn ledger_up(gw: &Gateway) -> Result<(), Refusal> {
    if gw.ledger().degraded() {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ledger is unavailable, so this change could not be recorded; nothing was changed",
        ));
    }
    Ok(())
}

/// The answer to a change made whose entry could not be written: the
/// gateway is degraded, and the caller hears that the change stands
/// unrecorded.
pub(crate) fn unrecorded(done: &serde_json::Value) -> Refusal {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the change was made ({done}) but its ledger entry could not be written; the gateway is degraded until the ledger is back"
        ),
    )
}

/// Records an admin change, then answers `done`.
pub(crate) async fn record_change(
    gw: &Gateway,
    entry: EntryKind,
    done: serde_json::Value,
) -> Result<Response, Refusal> {
    match gw.ledger().append(entry).await {
        Ok(()) => Ok(axum::Json(done).into_response()),
        Err(()) => Err(unrecorded(&done)),
    }
}
