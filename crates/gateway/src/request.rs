//! The request path, in the order DESIGN.md gives it; [`handle`] reads as
//! this list:
//!
//! 1. [`read_body`]: the body exactly as PHP will read it ([`crate::form`],
//!    [`crate::upload`]); anything ambiguous is refused;
//! 2. [`authenticate`]: the client key ([`crate::keys`]), as soon as the
//!    body's first 64 KiB have arrived (or its `token` part): refusals are
//!    answered in REDCap's 403 shape and counted per source and minute;
//! 3. [`authorise`]: the client's allowed methods, source addresses, a
//!    reason for writes, the account's quarantine, exports the DAG guard
//!    cannot check;
//! 4. [`prepare`]: the form as it will be forwarded (the DAG guard's
//!    `exportDataAccessGroups`, `returnContent=ids` for imports);
//! 5. [`hold`]: a token cut-over in progress holds the request;
//! 6. [`record_request`]: the `request` entry is made durable — or the
//!    answer is 503 and nothing is forwarded;
//! 7. [`forward`]: the account's token is injected and the canonical body
//!    sent through the outbound limiter; if REDCap refuses a token the
//!    store has since replaced, the call is retried once;
//! 8. the answer: a record export streams to the client through
//!    [`answer_export`] (the DAG guard decides on its head, record ids and
//!    the body's HMAC are read on the fly, the `response` entry is written
//!    when the stream ends); anything else is read whole by
//!    [`answer_whole`] (record ids of imports, the shape the client asked
//!    for).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use jiff::Timestamp;
use ledger::{Delivery, EntryKind, RecordIds};
use redcap::php_form::{BodyKind, Limits, urlencoded};
use redcap::{Action, Content};
use tokio_util::sync::PollSender;
use warden_config::WriteReason;

use crate::answer;
use crate::connections::{BodyError, Incoming};
use crate::export::{Head, Scanner, Shape};
use crate::form::{self, Form};
use crate::keys::KeyRecord;
use crate::policy::{self, Account, Client};
use crate::reply::{ApiReply, Format, NO_API_PERMISSION};
use crate::server::{Applied, Shared};
use crate::upload::{self, Upload};
use crate::upstream::{OpenAnswer, UpstreamError, UpstreamReply};

/// The client listener: `/api/`, REDCap's protocol.
pub(crate) async fn api(
    State(gw): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let response = match handle(&gw, peer, parts.method, &parts.headers, body).await {
        Ok(r) => r,
        Err(reply) => reply.into_response(),
    };
    gw.metrics
        .observe(response.status().as_u16(), started.elapsed());
    response
}

async fn handle(
    gw: &Arc<Shared>,
    peer: SocketAddr,
    method: Method,
    headers: &HeaderMap,
    body: axum::body::Body,
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
    let plan = prepare(
        &call,
        &mut form,
        applied.config.config.gateway.max_input_vars,
    )?;
    hold(gw, call.account, fmt).await?;
    let recorded = record_request(gw, &call, &form, upload.as_ref(), fmt).await?;
    let request_id = recorded.request_id.clone();
    let export = plan.streamed_export;
    match forward(
        gw,
        &call,
        &form,
        upload.as_ref(),
        &recorded,
        started,
        export,
    )
    .await?
    {
        Forwarded::Stream(open) => {
            Ok(answer_export(gw, &call, &form, &plan, request_id, started, open).await?)
        }
        Forwarded::Whole(reply) => answer_whole(gw, &call, &plan, request_id, started, reply),
    }
}

/// Who is calling: the key and where from.
struct Caller {
    key: KeyRecord,
    source: String,
    now: Timestamp,
}

/// An authorised call: who, for which account, doing what.
struct Call<'a> {
    client: &'a Client,
    account: &'a Account,
    content: Content,
    action: Action,
    reason: Option<String>,
    fmt: Format,
}

impl Caller {
    /// A refusal after the key is known: counted into `denied` entries.
    fn deny(
        &self,
        gw: &Shared,
        why: String,
        status: StatusCode,
        message: String,
        fmt: Format,
    ) -> ApiReply {
        gw.denials
            .count(self.now, &self.source, Some(&self.key.client), &why);
        gw.metrics.denied();
        ApiReply::new(status, message, fmt)
    }
}

/// Steps 1 and 2: the body as PHP will read it ([`crate::form`]), or a
/// refusal, and the client key in it ([`authenticate`]). Nothing expensive
/// happens before the key is known: the key must come within the first
/// [`upload::PRE_AUTH_BYTES`] of the body (and before any file part), so a
/// client without a key costs at most that much memory, and no spool file.
/// Uploads are spooled after.
async fn read_body(
    gw: &Shared,
    applied: &Applied,
    headers: &HeaderMap,
    body: axum::body::Body,
    peer: SocketAddr,
) -> Result<(Form, Option<Upload>, Caller), ApiReply> {
    let gateway = &applied.config.config.gateway;
    let limits = php_limits(gateway);
    let limited = axum::body::Body::new(http_body_util::Limited::new(
        body,
        usize::try_from(gateway.max_body_bytes).unwrap_or(usize::MAX),
    ));
    let refused =
        |message: String, fmt: Format| ApiReply::new(StatusCode::BAD_REQUEST, message, fmt);
    let too_large = || {
        refused(
            format!(
                "The request body is larger than the gateway accepts ({} bytes)",
                gateway.max_body_bytes
            ),
            Format::Xml,
        )
    };
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next().map(HeaderValue::as_bytes).unwrap_or_default();
    if types.next().is_some() {
        return Err(refused(
            "The request has more than one Content-Type header; send one".into(),
            Format::Xml,
        ));
    }
    let upload_refused = |e: upload::UploadError| match e {
        upload::UploadError::Spool(_) => {
            ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Format::Xml)
        }
        other => refused(upperfirst(&other.to_string()), Format::Xml),
    };
    let (mut form, upload, presented, caller) = match BodyKind::of(content_type) {
        BodyKind::Multipart => {
            let mut reader = upload::MultipartReader::new(
                limited,
                content_type,
                &limits,
                gateway.max_body_bytes,
            )
            .map_err(upload_refused)?;
            let presented = reader
                .token()
                .await
                .map_err(upload_refused)?
                .unwrap_or_default();
            let caller = authenticate(gw, &presented, peer, Format::Xml).await?;
            let spool = crate::server::data_dir(&applied.config).join("spool");
            let (form, upload) = reader.finish(&spool).await.map_err(upload_refused)?;
            (form, upload, presented, caller)
        }
        BodyKind::Urlencoded => {
            let mut stream = Incoming::new(limited);
            let body_error = |(e, source): (BodyError, Option<axum::Error>)| match source {
                Some(source) if upload::is_too_large(&source) => too_large(),
                _ => refused(upperfirst(&e.to_string()), Format::Xml),
            };
            let mut bytes = Vec::new();
            let mut ended = false;
            while (bytes.len() as u64) < upload::PRE_AUTH_BYTES {
                match stream.next().await.map_err(body_error)? {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(chunk) => bytes.extend_from_slice(&chunk),
                }
            }
            // The key, from the fields complete in what was read.
            let complete = if ended {
                bytes.len()
            } else {
                memchr::memrchr(b'&', &bytes).unwrap_or(0)
            };
            let head = urlencoded::parse(&bytes[..complete], &limits);
            let fmt = crate::reply::error_format_of(&head.post);
            let token = head
                .fields
                .iter()
                .any(|f| f.raw_name == b"token")
                .then(|| head.post.get_name("token"))
                .flatten()
                .and_then(|v| v.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned());
            let presented = match token {
                Some(t) => t,
                // No key at all: REDCap's own refusal.
                None if ended => String::new(),
                None => {
                    return Err(refused(
                        upperfirst(&upload::UploadError::TokenTooLate.to_string()),
                        fmt,
                    ));
                }
            };
            let caller = authenticate(gw, &presented, peer, fmt).await?;
            while let Some(chunk) = stream.next().await.map_err(body_error)? {
                bytes.extend_from_slice(&chunk);
            }
            let parsed = urlencoded::parse(&bytes, &limits);
            drop(bytes);
            let fmt = crate::reply::error_format_of(&parsed.post);
            let form = form::check(parsed, &limits)
                .map_err(|r| refused(upperfirst(&r.to_string()), fmt))?;
            (form, None, presented, caller)
        }
        BodyKind::Other => {
            return Err(refused(
                format!(
                    "PHP reads a request body into $_POST only for the Content-Type application/x-www-form-urlencoded or multipart/form-data; this request's is \"{}\"",
                    String::from_utf8_lossy(content_type)
                ),
                Format::Xml,
            ));
        }
    };
    // The key checked is the one REDCap would read (the rule refuses a
    // second `token`; the two readings must agree whatever the body).
    if form.take("token").unwrap_or_default() != presented {
        return Err(refused(
            "The request's token changed between the first and the whole reading of its body"
                .into(),
            crate::reply::error_format(&form),
        ));
    }
    Ok((form, upload, caller))
}

/// The PHP limits of the REDCap server, as configured.
fn php_limits(gateway: &warden_config::GatewaySection) -> Limits {
    Limits {
        max_input_vars: gateway.max_input_vars,
        max_input_nesting_level: gateway.max_input_nesting_level,
        ..Limits::default()
    }
}

fn upperfirst(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Step 2: the client key (the form's `token`: REDCap gets the real token
/// instead). A refused key is counted per source and minute; one that is a
/// real REDCap token raises an alert.
async fn authenticate(
    gw: &Shared,
    presented: &str,
    peer: SocketAddr,
    fmt: Format,
) -> Result<Caller, ApiReply> {
    let now = Timestamp::now();
    let source = peer.ip().to_string();
    match gw.check_key(presented, now) {
        Ok(key) => {
            gw.key_use
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.id.clone(), now);
            Ok(Caller { key, source, now })
        }
        Err(why) => {
            let fp = gw.fingerprint.fingerprint_bytes(presented.as_bytes()).0;
            let holder = gw
                .token_fingerprints
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&fp)
                .cloned();
            if let Some(account) = holder {
                let _ = gw
                    .append(EntryKind::Alert {
                        code: "real_token_presented".into(),
                        message: format!(
                            "a client at {source} presented the REDCap token of account `{account}` ({fp}) to the gateway: someone holds the real token; rotate it now"
                        ),
                    })
                    .await;
            }
            gw.denials.count(now, &source, None, why);
            gw.metrics.denied();
            Err(ApiReply::new(StatusCode::FORBIDDEN, NO_API_PERMISSION, fmt))
        }
    }
}

/// Step 3: what the client's policy allows.
fn authorise<'a>(
    gw: &Shared,
    applied: &'a Applied,
    caller: &'a Caller,
    form: &mut Form,
    headers: &HeaderMap,
    fmt: Format,
) -> Result<Call<'a>, ApiReply> {
    let deny = |why: String, status, message| caller.deny(gw, why, status, message, fmt);
    let Some(client) = applied.policy.clients.get(&caller.key.client) else {
        return Err(deny(
            "client no longer configured".into(),
            StatusCode::FORBIDDEN,
            NO_API_PERMISSION.into(),
        ));
    };
    let account = applied
        .policy
        .accounts
        .get(&client.account)
        .expect("validated: every client names an account");
    let ip = caller.source.parse().expect("an IP address printed");
    if !client.source_allowed(ip) {
        return Err(deny(
            format!("source {} not allowed", caller.source),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway does not accept requests for client \"{}\" from this address",
                client.name
            ),
        ));
    }
    let Some(content) = Content::parse(form.get("content").unwrap_or("")) else {
        return Err(ApiReply::new(
            StatusCode::BAD_REQUEST,
            redcap::ApiError::InvalidContent.message(),
            fmt,
        ));
    };
    let action = Action::derive(
        content,
        form.get("action").unwrap_or(""),
        form.get_bytes("data").is_some(),
    )
    .map_err(|e| ApiReply::new(StatusCode::BAD_REQUEST, e.message(), fmt))?;
    if !client.allows(content, action) {
        return Err(deny(
            format!("not allowed: {}:{}", content.as_str(), action.as_str()),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway does not allow client \"{}\" to call {}:{}",
                client.name,
                content.as_str(),
                action.as_str()
            ),
        ));
    }
    let reason = reason_of(headers, form);
    if policy::is_write(action) && client.write_reason == WriteReason::Required && reason.is_none()
    {
        return Err(deny(
            "write without a reason".into(),
            StatusCode::BAD_REQUEST,
            "This client must give a reason for changes: send it in the X-Warden-Reason header or a \"reason\" field".into(),
        ));
    }
    if let Some(q) = gw.quarantine_of(&account.name) {
        return Err(deny(
            "account quarantined".into(),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway has quarantined account \"{}\" since {} ({}); an operator must release it",
                account.name, q.since, q.reason
            ),
        ));
    }
    // REDCap then answers without record ids: the ledger could not say
    // which records changed.
    if answer::php_true(form.get("backgroundProcess")) {
        return Err(deny(
            "backgroundProcess".into(),
            StatusCode::BAD_REQUEST,
            "The gateway does not forward backgroundProcess=true: REDCap would not report which records changed; send the import without it".into(),
        ));
    }
    let site_export = account.dag_id.is_some() && !policy::is_write(action);
    if site_export
        && !client.unchecked_exports
        && let Some(what) = policy::unguarded_export(content, form)
    {
        return Err(deny(
            format!("unchecked export: {}:{}", content.as_str(), action.as_str()),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway cannot check {what} against site \"{}\"'s Data Access Group, and client \"{}\" is not allowed unchecked exports",
                account.site.as_deref().unwrap_or_default(),
                client.name
            ),
        ));
    }
    Ok(Call {
        client,
        account,
        content,
        action,
        reason,
        fmt,
    })
}

/// What [`prepare`] decided.
struct Plan {
    /// The DAG guard reads this export's head.
    dag_guard: bool,
    /// A record export: its answer streams.
    streamed_export: bool,
    /// The import answer the client asked for, when the gateway asked
    /// REDCap for ids instead.
    rewrite_ids: Option<answer::ReturnContent>,
}

/// Step 4: the form as it will be forwarded.
fn prepare(call: &Call<'_>, form: &mut Form, max_input_vars: usize) -> Result<Plan, ApiReply> {
    form.take("backgroundProcess");
    let record = call.content == Content::Record;
    // DAG guard: REDCap never gives a DAG-restricted account the DAG
    // column, so asking for it proves the restriction on every export. (A
    // restricted account's answer has no such column to strip; an
    // unrestricted one's is withheld whole.)
    let dag_guard = record && call.account.dag_id.is_some() && call.action == Action::Export;
    if dag_guard {
        form.set("exportDataAccessGroups", "true");
    }
    // Learn the ids of imported records.
    let wanted = answer::ReturnContent::of(
        form.get("returnContent"),
        answer::php_true(form.get("forceAutoNumber")),
    );
    let rewrite_ids =
        (record && call.action == Action::Import && wanted.needs_rewrite()).then(|| {
            form.set("returnContent", "ids");
            wanted
        });
    // The body was checked before the gateway added its own fields; PHP
    // must still read all of them, the token too.
    let count = form.field_count() + 1;
    if count > max_input_vars {
        let refusal = form::Refusal::TooManyOutgoing {
            count,
            max: max_input_vars,
        };
        return Err(ApiReply::new(
            StatusCode::BAD_REQUEST,
            upperfirst(&refusal.to_string()),
            call.fmt,
        ));
    }
    Ok(Plan {
        dag_guard,
        streamed_export: record && call.action == Action::Export,
        rewrite_ids,
    })
}

/// Step 5: a single-account token cut-over holds the request until the
/// new token is in, within the hold's bound.
async fn hold(gw: &Shared, account: &Account, fmt: Format) -> Result<(), ApiReply> {
    if let Err(expired) = gw.holds.wait(&account.name).await {
        return Err(ApiReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The gateway held this request for {} s while account \"{}\"'s REDCap token was being replaced, and the replacement did not finish; try again later",
                expired.seconds, account.name
            ),
            fmt,
        ));
    }
    Ok(())
}

/// A request made durable by [`record_request`].
struct Recorded {
    request_id: String,
    /// The canonical urlencoded body, without the token: what the entry
    /// hashes, and (the token added) what goes to REDCap.
    canonical: bytes::Bytes,
}

/// Step 6: the `request` entry, durable before anything reaches REDCap.
async fn record_request(
    gw: &Shared,
    call: &Call<'_>,
    form: &Form,
    upload: Option<&Upload>,
    fmt: Format,
) -> Result<Recorded, ApiReply> {
    if gw.degraded() {
        gw.count_refused();
        return Err(ledger_unavailable(fmt));
    }
    let request_id = crate::random_hex(12);
    // What the request entry hashes: the canonical fields, and for an
    // upload the SHA-256 of the file after a line break.
    let canonical = form.encode();
    let body_bytes = canonical.len() as u64 + upload.map_or(0, |u| u.size);
    let mut params = form.names();
    let mut body_hmac = gw.fingerprint.hmac_stream();
    body_hmac.update(canonical.as_bytes());
    if let Some(u) = upload {
        body_hmac.update(b"\n");
        body_hmac.update(hex::encode(u.sha256).as_bytes());
        params.push(u.field.clone());
    }
    let mut record_ids: RecordIds = form.list("records").into();
    if let Some(r) = form.get("record") {
        record_ids.push(r);
    }
    // An import names the records it changes: read from its payload with
    // the same reader as an export's answer (linear, any format and type).
    if call.content == Content::Record
        && call.action == Action::Import
        && let Some(data) = form.get_bytes("data")
    {
        let eav = form.get("type") == Some("eav");
        let field = if eav {
            None
        } else {
            gw.record_id_field(call.account).await
        };
        let mut scanner = Scanner::new(export_shape(form), eav, field);
        scanner.feed(data);
        scanner.finish();
        record_ids = scanner.into_ids();
    }
    let entry = EntryKind::Request {
        request_id: request_id.clone(),
        client: call.client.name.clone(),
        account: call.account.name.clone(),
        site: call.account.site.clone(),
        content: Some(call.content.as_str().into()),
        action: Some(call.action.as_str().into()),
        format: form.get("format").map(str::to_string),
        params,
        record_ids,
        filter_hmac: form
            .get_bytes("filterLogic")
            .map(|f| gw.fingerprint.hmac_hex(f)),
        body_hmac: body_hmac.finish_hex(),
        body_bytes,
        reason: call.reason.clone(),
    };
    if gw.append(entry).await.is_err() {
        gw.count_refused();
        return Err(ledger_unavailable(fmt));
    }
    gw.requests.fetch_add(1, Ordering::Relaxed);
    Ok(Recorded {
        request_id,
        canonical: canonical.into(),
    })
}

/// What [`forward`] got back.
enum Forwarded {
    /// A record export's `200`, its body still to come.
    Stream(OpenAnswer),
    /// Any other answer, read whole.
    Whole(UpstreamReply),
}

/// Step 7: inject the account's token and send; if REDCap refuses a token
/// that the store has since replaced (a rotation), re-read and retry once.
async fn forward(
    gw: &Shared,
    call: &Call<'_>,
    form: &Form,
    upload: Option<&Upload>,
    recorded: &Recorded,
    started: Instant,
    stream: bool,
) -> Result<Forwarded, ApiReply> {
    let account = call.account;
    let request_id = recorded.request_id.as_str();
    let unavailable =
        |what: &str| ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, what.to_string(), call.fmt);
    let mut token = gw
        .tokens
        .get(&account.secret)
        .await
        .map_err(|_| unavailable("The gateway cannot read this account's token from its secrets store; nothing was sent to REDCap"))?;
    let mut attempt = 0;
    loop {
        let sent = match upload {
            // The canonical body as recorded, then the token.
            None => {
                let with_token =
                    Form::encoded_suffix(&recorded.canonical, "token", token.value.expose());
                let length = (recorded.canonical.len() + with_token.len()) as u64;
                let parts = [recorded.canonical.clone(), bytes::Bytes::from(with_token)];
                let body = reqwest::Body::wrap_stream(futures_util::stream::iter(
                    parts.map(Ok::<_, std::io::Error>),
                ));
                gw.upstream
                    .open("application/x-www-form-urlencoded", length, body)
                    .await
            }
            Some(u) => match upload::outgoing(&form.with("token", token.value.expose()), u).await {
                Ok((content_type, length, body)) => {
                    gw.upstream.open(&content_type, length, body).await
                }
                Err(e) => Err(UpstreamError::Transport(format!(
                    "reading the spooled upload: {e}"
                ))),
            },
        };
        let failed = |e: UpstreamError| async move {
            let _ = gw
                .append(EntryKind::Response {
                    request_id: request_id.to_string(),
                    status: 503,
                    record_ids: RecordIds::new(),
                    body_hmac: String::new(),
                    body_bytes: 0,
                    latency_ms: started.elapsed().as_millis() as u64,
                    delivery: None,
                })
                .await;
            if matches!(e, UpstreamError::Banned) {
                let _ = gw
                    .append(EntryKind::Alert {
                        code: "redcap_ip_banned".into(),
                        message: e.to_string(),
                    })
                    .await;
            }
            unavailable(&format!("{e}; the request was not completed"))
        };
        let open = match sent {
            Ok(open) => open,
            Err(e) => return Err(failed(e).await),
        };
        if stream && open.status == 200 {
            return Ok(Forwarded::Stream(open));
        }
        let reply = match open.read().await {
            Ok(r) => r,
            Err(e) => return Err(failed(e).await),
        };
        let refused =
            reply.status == 403 && String::from_utf8_lossy(&reply.body).contains(NO_API_PERMISSION);
        if refused && attempt == 0 {
            attempt += 1;
            if let Ok(fresh) = gw.tokens.refresh(&account.secret).await
                && fresh.version != token.version
            {
                token = fresh;
                continue;
            }
            let _ = gw
                .append(EntryKind::Alert {
                    code: "token_refused".into(),
                    message: format!(
                        "REDCap refused the current token of account `{}` ({}); it may have been regenerated or revoked outside redcap-warden",
                        account.name,
                        gw.fingerprint.fingerprint(&token.value)
                    ),
                })
                .await;
        }
        return Ok(Forwarded::Whole(reply));
    }
}

/// Step 8, for an answer read whole: the `response` entry, and the answer
/// in the shape the client asked for.
fn answer_whole(
    gw: &Arc<Shared>,
    call: &Call<'_>,
    plan: &Plan,
    request_id: String,
    started: Instant,
    reply: UpstreamReply,
) -> Result<Response, ApiReply> {
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
    gw.append_soon(EntryKind::Response {
        request_id,
        status: reply.status,
        record_ids,
        body_hmac: gw.fingerprint.hmac_hex(&reply.body),
        body_bytes: reply.body.len() as u64,
        latency_ms: started.elapsed().as_millis() as u64,
        delivery: None,
    });
    Ok(with_content_type(
        (
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY),
            body,
        )
            .into_response(),
        reply.content_type.as_deref(),
    ))
}

fn with_content_type(mut response: Response, content_type: Option<&str>) -> Response {
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

/// The most of a record export's head the gateway holds back while the
/// DAG guard decides (one record's row, or the CSV header).
const HEAD_LIMIT: usize = 16 * 1024 * 1024;

/// Step 8, for a record export: the answer streams to the client. The DAG
/// guard first holds back the head (the CSV header, the first JSON object
/// or XML item) and decides; record ids, the body's size and HMAC are read
/// as the bytes pass; the `response` entry is written when the stream ends
/// — saying whether the client received all of it.
async fn answer_export(
    gw: &Arc<Shared>,
    call: &Call<'_>,
    form: &Form,
    plan: &Plan,
    request_id: String,
    started: Instant,
    open: OpenAnswer,
) -> Result<Response, ApiReply> {
    let field = gw.record_id_field(call.account).await;
    let shape = export_shape(form);
    let eav = form.get("type") == Some("eav");
    let OpenAnswer {
        status,
        content_type,
        content_length,
        response,
    } = open;
    let mut tally = Tally {
        gw: Arc::clone(gw),
        request_id,
        status,
        started,
        scanner: Scanner::new(shape, eav, field),
        mac: Some(gw.fingerprint.hmac_stream()),
        bytes: 0,
        written: false,
    };
    let mut upstream: ChunkStream = Box::pin(response.bytes_stream());
    let mut held: Vec<bytes::Bytes> = Vec::new();
    let mut ended = false;
    if plan.dag_guard {
        let mut held_bytes = 0usize;
        while tally.scanner.head() == Head::Pending && !tally.scanner.broken() {
            match upstream.next().await {
                None => {
                    tally.scanner.finish();
                    ended = true;
                }
                Some(Ok(chunk)) => {
                    tally.pass(&chunk);
                    held_bytes += chunk.len();
                    held.push(chunk);
                    if held_bytes > HEAD_LIMIT {
                        break;
                    }
                }
                Some(Err(e)) => {
                    tally.write(Delivery::UpstreamFailed);
                    return Err(ApiReply::new(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "REDCap's answer broke off ({}); nothing was sent to the client",
                            e.without_url()
                        ),
                        call.fmt,
                    ));
                }
            }
        }
        match tally.scanner.head() {
            Head::Clean => {}
            Head::DagColumn => {
                tally.write(Delivery::Withheld);
                return Err(withhold_and_quarantine(gw, call).await);
            }
            Head::Pending => {
                tally.write(Delivery::Withheld);
                let why = if tally.scanner.broken() {
                    "REDCap's answer is not the format it was asked for".to_string()
                } else {
                    format!("its first record is larger than {} MB", HEAD_LIMIT >> 20)
                };
                return Err(ApiReply::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "The gateway withheld this export because it could not check it against the site's Data Access Group: {why}"
                    ),
                    call.fmt,
                ));
            }
        }
    }
    let body = ExportBody {
        held: held.into(),
        upstream: (!ended).then_some(upstream),
        length: content_length,
        sent: 0,
        next: None,
        done: false,
        tally: tally.spawn(),
    };
    let mut response = Response::new(axum::body::Body::from_stream(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Some(len) = content_length.map(HeaderValue::from) {
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
    }
    Ok(with_content_type(response, content_type.as_deref()))
}

/// The shape of records sent or answered in this form's `format`.
fn export_shape(form: &Form) -> Shape {
    match form.get("format").unwrap_or("") {
        "json" => Shape::Json,
        "csv" => Shape::Csv(answer::csv_delimiter(form.get("csvDelimiter"))),
        "odm" => Shape::Odm,
        _ => Shape::Xml,
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// What the gateway learns from an answer as it passes, and the `response`
/// entry it owes: written exactly once, when the stream ends, breaks, or
/// the client goes away.
struct Tally {
    gw: Arc<Shared>,
    request_id: String,
    status: u16,
    started: Instant,
    scanner: Scanner,
    mac: Option<secrets::HmacStream>,
    bytes: u64,
    written: bool,
}

impl Tally {
    fn pass(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk);
        if let Some(m) = self.mac.as_mut() {
            m.update(chunk);
        }
        self.bytes += chunk.len() as u64;
    }

    fn write(&mut self, delivery: Delivery) {
        let hmac = self.mac.take().map(|m| m.finish_hex()).unwrap_or_default();
        self.write_with(delivery, hmac);
    }

    fn write_with(&mut self, delivery: Delivery, body_hmac: String) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        if delivery == Delivery::Complete {
            self.scanner.finish();
        }
        let scanner = std::mem::replace(&mut self.scanner, Scanner::new(Shape::Json, false, None));
        self.gw.append_soon(EntryKind::Response {
            request_id: std::mem::take(&mut self.request_id),
            status: self.status,
            record_ids: scanner.into_ids(),
            body_hmac,
            body_bytes: self.bytes,
            latency_ms: self.started.elapsed().as_millis() as u64,
            delivery: Some(delivery),
        });
    }

    /// Moves the reading of the rest of the answer to threads of its own,
    /// so it runs beside the forwarding instead of adding to it: one reads
    /// the record ids, one computes the HMAC (each about a gigabyte a
    /// second, together the pace of the forwarding). Chunks reach them
    /// through short queues (bounded memory: the forwarding waits for
    /// them), and the `response` entry is written when they are told how
    /// the stream ended — or, if the body is dropped first, as
    /// `client_disconnected`.
    fn spawn(mut self) -> PollSender<Passed> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Passed>(8);
        let (to_mac, chunks) = std::sync::mpsc::sync_channel::<bytes::Bytes>(8);
        let mac = self.mac.take().map(|mut mac| {
            std::thread::spawn(move || {
                for chunk in chunks {
                    mac.update(&chunk);
                }
                mac.finish_hex()
            })
        });
        tokio::task::spawn_blocking(move || {
            let mut delivery = Delivery::ClientDisconnected;
            while let Some(passed) = rx.blocking_recv() {
                let (chunk, end) = match passed {
                    Passed::Chunk(chunk) => (chunk, None),
                    Passed::Last(chunk) => (chunk, Some(Delivery::Complete)),
                    Passed::End(d) => (bytes::Bytes::new(), Some(d)),
                };
                self.scanner.feed(&chunk);
                self.bytes += chunk.len() as u64;
                let _ = to_mac.send(chunk);
                if let Some(d) = end {
                    delivery = d;
                    break;
                }
            }
            // The HMAC thread ends with its queue.
            drop(to_mac);
            let hmac = mac.and_then(|m| m.join().ok()).unwrap_or_default();
            self.write_with(delivery, hmac);
        });
        PollSender::new(tx)
    }
}

/// What the client's body hands to the tally's thread.
enum Passed {
    /// A chunk on its way to the client.
    Chunk(bytes::Bytes),
    /// The last chunk (REDCap's `Content-Length` reached): the answer is
    /// complete once it is passed on.
    Last(bytes::Bytes),
    /// The stream ended this way.
    End(Delivery),
}

/// The client's body of a streamed export: first what the guard held back,
/// then REDCap's answer as it comes. Each chunk is handed to the tally's
/// thread before it goes to the client.
struct ExportBody {
    held: std::collections::VecDeque<bytes::Bytes>,
    upstream: Option<ChunkStream>,
    /// REDCap's `Content-Length`: hyper stops asking for more once it has
    /// that many bytes, so the answer is complete then, not at the end of
    /// the stream.
    length: Option<u64>,
    /// Bytes passed to the client so far.
    sent: u64,
    /// A chunk (or the end) waiting for room in the tally's queue.
    next: Option<Passed>,
    /// The end was handed over.
    done: bool,
    tally: PollSender<Passed>,
}

impl Stream for ExportBody {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.next.is_none() {
                this.next = Some(match this.held.pop_front() {
                    Some(chunk) => this.passed(chunk),
                    None => match this.upstream.as_mut() {
                        None => Passed::End(Delivery::Complete),
                        Some(upstream) => match upstream.as_mut().poll_next(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Some(Ok(chunk))) => this.passed(chunk),
                            Poll::Ready(Some(Err(e))) => {
                                this.upstream = None;
                                this.done = true;
                                let _ = this.tally.send_item(Passed::End(Delivery::UpstreamFailed));
                                return Poll::Ready(Some(Err(std::io::Error::other(format!(
                                    "REDCap's answer broke off: {}",
                                    e.without_url()
                                )))));
                            }
                            Poll::Ready(None) => {
                                this.upstream = None;
                                Passed::End(Delivery::Complete)
                            }
                        },
                    },
                });
            }
            match this.tally.poll_reserve(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {} // the tally's thread is gone: pass on anyway
                Poll::Ready(Ok(())) => {}
            }
            let next = this.next.take().expect("set above");
            let chunk = match &next {
                Passed::Chunk(c) | Passed::Last(c) => Some(c.clone()),
                Passed::End(_) => None,
            };
            if matches!(next, Passed::Last(_) | Passed::End(_)) {
                this.done = true;
            }
            let _ = this.tally.send_item(next);
            if let Some(chunk) = chunk {
                return Poll::Ready(Some(Ok(chunk)));
            }
        }
    }
}

impl ExportBody {
    fn passed(&mut self, chunk: bytes::Bytes) -> Passed {
        self.sent += chunk.len() as u64;
        if self.length == Some(self.sent) && self.held.is_empty() {
            Passed::Last(chunk)
        } else {
            Passed::Chunk(chunk)
        }
    }
}

/// The DAG guard found the column: the export is withheld, an alert
/// written and the account quarantined.
async fn withhold_and_quarantine(gw: &Shared, call: &Call<'_>) -> ApiReply {
    let account = call.account;
    let why = format!(
        "REDCap returned the Data Access Group column to site account `{}` (site `{}`, DAG id {}): it is not restricted to its DAG (removed from the DAG, or made an administrator); its export was withheld",
        account.name,
        account.site.as_deref().unwrap_or_default(),
        account.dag_id.unwrap_or_default()
    );
    let _ = gw
        .append(EntryKind::Alert {
            code: "dag_guard".into(),
            message: why.clone(),
        })
        .await;
    if let Err(e) = gw.status.quarantine(&account.name, &why, "gateway") {
        tracing::error!(error = %e, account = %account.name, "could not persist the quarantine");
    }
    gw.quarantine_now(&account.name, &why);
    ApiReply::new(
        StatusCode::FORBIDDEN,
        format!(
            "The gateway withheld this export: REDCap no longer restricts account \"{}\" to its Data Access Group. The account is quarantined until an operator releases it",
            account.name
        ),
        call.fmt,
    )
}

fn ledger_unavailable(fmt: Format) -> ApiReply {
    ApiReply::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The gateway cannot record this request in its audit ledger, so it was not sent to REDCap; try again later",
        fmt,
    )
}

/// The reason for a change: the `X-Warden-Reason` header or a `reason`
/// field (removed before forwarding: REDCap has no such parameter).
fn reason_of(headers: &HeaderMap, form: &mut Form) -> Option<String> {
    let field = form.take("reason");
    let header = headers
        .get("x-warden-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    header
        .or(field)
        .map(|r| r.trim().chars().take(1000).collect::<String>())
        .filter(|r| !r.is_empty())
}
