//! The request path, in the order DESIGN.md gives it; [`handle`] reads as
//! this list, one function (and file) per step:
//!
//! 1. [`body::read_body`]: the body exactly as PHP will read it
//!    ([`crate::form`], [`crate::upload`]); anything ambiguous is refused;
//! 2. [`authenticate::authenticate`]: the client key ([`crate::keys`]), as
//!    soon as the body's first 64 KiB have arrived (or its `token` part):
//!    refusals are answered in REDCap's 403 shape and counted per source
//!    and minute;
//! 3. [`authorise::authorise`]: the client's allowed methods, source
//!    addresses, a reason for writes, the account's quarantine, exports
//!    the DAG guard cannot check;
//! 4. [`prepare::prepare`]: the form as it will be forwarded (the DAG
//!    guard's `exportDataAccessGroups`, `returnContent=ids` for imports);
//! 5. [`hold::hold`]: a token cut-over in progress holds the request;
//! 6. [`record::record_request`]: the `request` entry is made durable — or
//!    the answer is 503 and nothing is forwarded;
//! 7. [`forward::forward`]: the account's token is injected and the
//!    canonical body sent through the outbound limiter; if REDCap refuses
//!    a token the store has since replaced, the call is retried once;
//! 8. [`guard::guard`]: for a site account's record export, the DAG guard
//!    decides on the answer's head before anything reaches the client;
//! 9. the `response` entry: a record export streams to the client
//!    ([`stream::stream_response`]: record ids and the body's HMAC are read
//!    on the fly, the entry is written when the stream ends); anything
//!    else is read whole ([`respond::record_response`]: record ids of
//!    imports, the shape the client asked for).
//!
//! Each step imports only the steps before it (for what they produced)
//! and [`crate::state`].

mod authenticate;
mod authorise;
mod body;
mod forward;
mod guard;
mod hold;
mod prepare;
mod record;
mod respond;
mod stream;

use std::net::SocketAddr;
use std::time::Instant;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use self::authorise::authorise;
use self::body::read_body;
use self::forward::{Forwarded, Outgoing, forward};
use self::guard::guard;
use self::hold::hold;
use self::prepare::prepare;
use self::record::record_request;
use self::respond::record_response;
use self::stream::{Streaming, stream_response};
use crate::reply::ApiReply;
use crate::state::Gateway;

/// The client listener's `/api/`: REDCap's protocol
/// ([`crate::server`] routes here).
pub(crate) async fn api(
    gw: &Gateway,
    peer: SocketAddr,
    request: axum::http::Request<hyper::body::Incoming>,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let response = match handle(gw, peer, parts.method, &parts.headers, body).await {
        Ok(r) => r,
        Err(reply) => reply.into_response(),
    };
    gw.metrics()
        .observe(response.status().as_u16(), started.elapsed());
    response
}

/// One request, step by step; any step may answer instead.
async fn handle(
    gw: &Gateway,
    peer: SocketAddr,
    method: Method,
    headers: &HeaderMap,
    body: hyper::body::Incoming,
) -> Result<Response, ApiReply> {
    let started = Instant::now();
    if method != Method::POST {
        return Ok((
            StatusCode::NOT_IMPLEMENTED,
            "The requested method is not implemented.",
        )
            .into_response());
    }
    let applied = gw.applied();
    let (mut form, upload, caller) = read_body(gw, &applied, headers, body, peer).await?;
    let fmt = crate::reply::error_format(&form);
    let call = authorise(gw, &applied, &caller, &mut form, headers, fmt)?;
    let max_input_vars = applied.config.config.gateway.max_input_vars;
    let plan = prepare(&call, &mut form, max_input_vars)?;
    hold(gw.holds(), call.account, fmt).await?;
    let recorded = record_request(gw, &call, &plan, &form, upload.as_ref()).await?;
    let out = Outgoing {
        form: &form,
        upload: upload.as_ref(),
        recorded: &recorded,
        started,
        stream: plan.streamed_export,
    };
    let request_id = recorded.request_id.clone();
    match forward(gw, &call, out).await? {
        Forwarded::Stream(open) => {
            let mut answer = Streaming::open(gw, &call, &plan, request_id, started, open).await;
            guard(gw, &call, &plan, &mut answer).await?;
            Ok(stream_response(answer))
        }
        Forwarded::Whole(reply) => Ok(record_response(
            gw, &call, &plan, request_id, started, reply,
        )),
    }
}
