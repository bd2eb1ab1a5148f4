//! Step 9, for an answer read whole (anything but a record export): the
//! `response` entry, and the answer in the shape the client asked for
//! (record ids of imports). A record export's answer streams instead
//! ([`super::stream`]).

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger::{EntryKind, RecordIds};
use redcap::{Action, Content};

use super::authorise::Call;
use super::prepare::Plan;
use crate::answer;
use crate::reply::with_content_type;
use crate::state::Gateway;
use crate::upstream::UpstreamReply;

/// Step 9: the `response` entry of an answer read whole, and the answer.
pub(super) fn record_response(
    gw: &Gateway,
    call: &Call<'_>,
    plan: &Plan,
    request_id: String,
    started: Instant,
    reply: UpstreamReply,
) -> Response {
    let ok = reply.status == 200;
    let record_ids: RecordIds = match (call.content, call.action) {
        (Content::Record, Action::Import) if ok => {
            answer::import_ids(&String::from_utf8_lossy(&reply.body), call.fmt)
                .unwrap_or_default()
                .into()
        }
        _ => RecordIds::new(),
    };
    let body = match plan.rewrite_ids {
        Some(wanted) if ok => {
            axum::body::Bytes::from(answer::rebuild_import_answer(wanted, &record_ids, call.fmt))
        }
        _ => reply.body.clone(),
    };
    // REDCap has acted; its answer goes back without waiting for this
    // entry's sync (it rides along with the next one), and even if the entry
    // fails (the gateway is then degraded and writes it when the ledger is
    // back).
    gw.ledger().append_soon(EntryKind::Response {
        request_id,
        status: reply.status,
        record_ids,
        body_hmac: gw.fingerprint().hmac_hex(&reply.body),
        body_bytes: reply.body.len() as u64,
        latency_ms: started.elapsed().as_millis() as u64,
        delivery: None,
    });
    with_content_type(
        (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY),
            body,
        )
            .into_response(),
        reply.content_type.as_deref(),
    )
}
