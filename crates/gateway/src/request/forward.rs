//! Step 7: the account's token is injected and the canonical body sent
//! through the outbound limiter; if REDCap refuses a token the store has
//! since replaced (a rotation), the call is retried once.

use std::time::Instant;

use axum::http::StatusCode;
use ledger::{EntryKind, RecordIds};

use super::authorise::Call;
use super::record::Recorded;
use crate::form::Form;
use crate::reply::{ApiReply, NO_API_PERMISSION};
use crate::state::Gateway;
use crate::tokens::CachedToken;
use crate::upload::{self, Upload};
use crate::upstream::{OpenAnswer, UpstreamError, UpstreamReply};

/// What [`forward`] got back.
pub(super) enum Forwarded {
    /// A record export's `200`, its body still to come.
    Stream(OpenAnswer),
    /// Any other answer, read whole.
    Whole(UpstreamReply),
}

/// The request as it goes out: the form, its upload and its recording.
pub(super) struct Outgoing<'a> {
    pub form: &'a Form,
    pub upload: Option<&'a Upload>,
    pub recorded: &'a Recorded,
    pub started: Instant,
    /// A record export: a `200` answer is streamed, not read whole.
    pub stream: bool,
}

/// Step 7: inject the account's token and send; if REDCap refuses a token
/// that the store has since replaced (a rotation), re-read and retry once —
/// after the account's cut-over hold, if one began meanwhile.
pub(super) async fn forward(
    gw: &Gateway,
    call: &Call<'_>,
    out: Outgoing<'_>,
) -> Result<Forwarded, ApiReply> {
    let account = call.account;
    let mut token = gw.tokens().get(&account.secret).await.map_err(|_| {
        unavailable(
            "The gateway cannot read this account's token from its secrets store; nothing was sent to REDCap",
            call,
        )
    })?;
    let mut attempt = 0;
    loop {
        let open = match send(gw, &out, &token).await {
            Ok(open) => open,
            Err(e) => return Err(failed(gw, call, &out, e).await),
        };
        if out.stream && open.status == 200 {
            return Ok(Forwarded::Stream(open));
        }
        let reply = match open.read().await {
            Ok(r) => r,
            Err(e) => return Err(failed(gw, call, &out, e).await),
        };
        let refused =
            reply.status == 403 && String::from_utf8_lossy(&reply.body).contains(NO_API_PERMISSION);
        if refused && attempt == 0 {
            attempt += 1;
            // A request that passed the hold step just before a cut-over
            // began can reach REDCap after the token was regenerated: it
            // waits for the release like the requests held at step 5, then
            // takes the new token (no hold: returns at once).
            let _ = gw.holds().wait(&account.name).await;
            if let Ok(fresh) = gw.tokens().refresh(&account.secret).await
                && fresh.version != token.version
            {
                token = fresh;
                continue;
            }
            let _ = gw
                .ledger()
                .append(EntryKind::Alert {
                    code: "token_refused".into(),
                    message: format!(
                        "REDCap refused the current token of account `{}` ({}); it may have been regenerated or revoked outside redcap-warden",
                        account.name,
                        gw.fingerprint().fingerprint(&token.value)
                    ),
                })
                .await;
        }
        return Ok(Forwarded::Whole(reply));
    }
}

/// One attempt: the canonical body as recorded, then the token (or the
/// upload as multipart, its file from the spool).
async fn send(
    gw: &Gateway,
    out: &Outgoing<'_>,
    token: &CachedToken,
) -> Result<OpenAnswer, UpstreamError> {
    match out.upload {
        None => {
            let canonical = &out.recorded.canonical;
            let with_token = Form::encoded_suffix(canonical, "token", token.value.expose());
            let length = (canonical.len() + with_token.len()) as u64;
            let parts = [canonical.clone(), bytes::Bytes::from(with_token)];
            let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
                parts.map(Ok::<_, std::io::Error>),
            ));
            gw.upstream()
                .open("application/x-www-form-urlencoded", length, body)
                .await
        }
        Some(u) => match upload::outgoing(&out.form.with("token", token.value.expose()), u).await {
            Ok((content_type, length, body)) => {
                gw.upstream().open(&content_type, length, body).await
            }
            Err(e) => Err(UpstreamError::Transport(format!(
                "reading the spooled upload: {e}"
            ))),
        },
    }
}

/// REDCap could not be reached (or banned us): the request's `response`
/// entry says 503, a ban raises an alert, and the client hears why.
async fn failed(gw: &Gateway, call: &Call<'_>, out: &Outgoing<'_>, e: UpstreamError) -> ApiReply {
    let ledger = gw.ledger();
    let _ = ledger
        .append(EntryKind::Response {
            request_id: out.recorded.request_id.clone(),
            status: 503,
            record_ids: RecordIds::new(),
            body_hmac: String::new(),
            body_bytes: 0,
            latency_ms: out.started.elapsed().as_millis() as u64,
            delivery: None,
        })
        .await;
    if matches!(e, UpstreamError::Banned) {
        let _ = ledger
            .append(EntryKind::Alert {
                code: "redcap_ip_banned".into(),
                message: e.to_string(),
            })
            .await;
    }
    unavailable(&format!("{e}; the request was not completed"), call)
}

fn unavailable(what: &str, call: &Call<'_>) -> ApiReply {
    ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, what.to_string(), call.fmt)
}
