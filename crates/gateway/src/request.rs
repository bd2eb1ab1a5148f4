//! The request path, in the order DESIGN.md gives it:
//!
//! 1. [`read_body`]: the body exactly as PHP will read it ([`crate::php`],
//!    [`crate::upload`]); anything ambiguous is refused;
//! 2. [`authenticate`]: the client key ([`crate::keys`]); refusals are
//!    answered in REDCap's 403 shape and counted per source and minute;
//! 3. authorise: the client's allowed methods, source addresses, a reason
//!    for writes, the account's quarantine, exports the DAG guard cannot
//!    check;
//! 4. the `request` entry is made durable — or the answer is 503 and
//!    nothing is forwarded;
//! 5. [`forward`]: the account's token is injected and the canonical body
//!    sent through the outbound limiter; if REDCap refuses a token the
//!    store has since replaced, the call is retried once;
//! 6. the `response` entry, the DAG guard, and the answer in the shape the
//!    client asked for.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use ledger::EntryKind;
use redcap::php_form::{BodyKind, Limits, urlencoded};
use redcap::{Action, Content};
use warden_config::WriteReason;

use crate::answer;
use crate::form::{self, Form};
use crate::keys::KeyRecord;
use crate::policy;
use crate::reply::{ApiReply, Format, NO_API_PERMISSION};
use crate::server::{Applied, Shared};
use crate::upload::{self, Upload};
use crate::upstream::{UpstreamError, UpstreamReply};

/// The client listener: `/api/`, REDCap's protocol.
pub(crate) async fn api(
    State(gw): State<std::sync::Arc<Shared>>,
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
    gw: &std::sync::Arc<Shared>,
    peer: SocketAddr,
    method: Method,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiReply> {
    let started = Instant::now();
    let now = Timestamp::now();
    let source = peer.ip().to_string();
    if method != Method::POST {
        return Ok((
            StatusCode::NOT_IMPLEMENTED,
            "The requested method is not implemented.",
        )
            .into_response());
    }
    let applied = gw.applied();
    let (mut form, upload) = read_body(&applied, headers, body).await?;
    let fmt = crate::reply::error_format(&form);

    let presented = form.take("token").unwrap_or_default();
    let key = authenticate(gw, &presented, now, &source, fmt).await?;
    gw.key_use
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.id.clone(), now);
    let deny = |reason: String, status: StatusCode, message: String| {
        gw.denials.count(now, &source, Some(&key.client), &reason);
        gw.metrics.denied();
        ApiReply::new(status, message, fmt)
    };
    let Some(client) = applied.policy.clients.get(&key.client) else {
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
    if !client.source_allowed(peer.ip()) {
        return Err(deny(
            format!("source {source} not allowed"),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway does not accept requests for client \"{}\" from this address",
                client.name
            ),
        ));
    }

    // Step 3: authorise.
    let content_raw = form.get("content").unwrap_or("").to_string();
    let Some(content) = Content::parse(&content_raw) else {
        return Err(ApiReply::new(
            StatusCode::BAD_REQUEST,
            redcap::ApiError::InvalidContent.message(),
            fmt,
        ));
    };
    let action = Action::derive(
        content,
        form.get("action").unwrap_or(""),
        form.get("data").is_some(),
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
    let reason = reason_of(headers, &mut form);
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
    form.take("backgroundProcess");
    let site_export = account.dag_id.is_some() && !policy::is_write(action);
    if site_export
        && !client.unchecked_exports
        && let Some(what) = policy::unguarded_export(content, &form)
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
    // DAG guard: REDCap never gives a DAG-restricted account the DAG
    // column, so asking for it proves the restriction on every export. (A
    // restricted account's answer has no such column to strip; an
    // unrestricted one's is withheld whole.)
    let dag_guard = site_export && content == Content::Record;
    if dag_guard {
        form.set("exportDataAccessGroups", "true");
    }
    // Learn the ids of imported records.
    let wanted = answer::ReturnContent::of(
        form.get("returnContent"),
        answer::php_true(form.get("forceAutoNumber")),
    );
    let rewrite_ids =
        content == Content::Record && action == Action::Import && wanted.needs_rewrite();
    if rewrite_ids {
        form.set("returnContent", "ids");
    }

    // A single-account token cut-over: wait for the new token, within
    // the hold's bound.
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
    if gw.degraded() {
        gw.count_refused();
        return Err(ledger_unavailable(fmt));
    }

    // Step 4: the request entry, durable before anything reaches REDCap.
    let request_id = request_id();
    // What the request entry hashes: the canonical fields, and for an
    // upload the SHA-256 of the file after a line break.
    let mut canonical_without_token = form.encode();
    let body_bytes = canonical_without_token.len() as u64 + upload.as_ref().map_or(0, |u| u.size);
    let mut params = form.names();
    if let Some(u) = &upload {
        canonical_without_token.push('\n');
        canonical_without_token.push_str(&hex::encode(u.sha256));
        params.push(u.field.clone());
    }
    let record_ids = {
        let mut ids = form.list("records");
        ids.extend(form.get("record").map(str::to_string));
        ids
    };
    let entry = EntryKind::Request {
        request_id: request_id.clone(),
        client: client.name.clone(),
        account: account.name.clone(),
        site: account.site.clone(),
        content: Some(content.as_str().into()),
        action: Some(action.as_str().into()),
        format: form.get("format").map(str::to_string),
        params,
        record_ids,
        filter_hmac: form
            .get("filterLogic")
            .map(|f| gw.fingerprint.hmac_hex(f.as_bytes())),
        body_hmac: gw.fingerprint.hmac_hex(canonical_without_token.as_bytes()),
        body_bytes,
        reason,
    };
    if gw.append(entry).await.is_err() {
        gw.count_refused();
        return Err(ledger_unavailable(fmt));
    }
    gw.requests.fetch_add(1, Ordering::Relaxed);

    let reply = forward(
        gw,
        account,
        &form,
        upload.as_ref(),
        &request_id,
        started,
        fmt,
    )
    .await?;

    // Step 6: the response entry, the DAG guard, the client's answer.
    let body_text = String::from_utf8_lossy(&reply.body);
    let ok = reply.status == 200;
    let record_ids = match (content, action) {
        (Content::Record, Action::Import) if ok => {
            answer::import_ids(&body_text, fmt).unwrap_or_default()
        }
        (Content::Record, Action::Export) if ok => answer::export_ids(
            &body_text,
            crate::reply::data_format(&form),
            form.get("type") == Some("eav"),
        ),
        _ => Vec::new(),
    };
    let response_entry = EntryKind::Response {
        request_id,
        status: reply.status,
        record_ids: record_ids.clone(),
        body_hmac: gw.fingerprint.hmac_hex(&reply.body),
        body_bytes: reply.body.len() as u64,
        latency_ms: started.elapsed().as_millis() as u64,
    };
    // REDCap has acted; its answer goes back without waiting for this
    // entry's sync (it rides along with the next one), and even if the entry
    // fails (the gateway is then degraded and writes it when the ledger is
    // back).
    gw.append_soon(response_entry);

    if dag_guard
        && ok
        && answer::has_dag_column(
            &body_text,
            crate::reply::data_format(&form),
            answer::csv_delimiter(form.get("csvDelimiter")),
        )
    {
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
        return Err(ApiReply::new(
            StatusCode::FORBIDDEN,
            format!(
                "The gateway withheld this export: REDCap no longer restricts account \"{}\" to its Data Access Group. The account is quarantined until an operator releases it",
                account.name
            ),
            fmt,
        ));
    }
    let body = if rewrite_ids && ok {
        axum::body::Bytes::from(answer::rebuild_import_answer(wanted, &record_ids, fmt))
    } else {
        reply.body
    };
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY),
        body,
    )
        .into_response();
    if let Some(ct) = reply
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

/// Step 1: the body as PHP will read it ([`crate::form`]), or a refusal.
/// Uploads are spooled.
async fn read_body(
    applied: &Applied,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(Form, Option<Upload>), ApiReply> {
    let gateway = &applied.config.config.gateway;
    let limits = php_limits(gateway);
    let limited = axum::body::Body::new(http_body_util::Limited::new(
        body,
        usize::try_from(gateway.max_body_bytes).unwrap_or(usize::MAX),
    ));
    let refused =
        |message: String, fmt: Format| ApiReply::new(StatusCode::BAD_REQUEST, message, fmt);
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next().map(HeaderValue::as_bytes).unwrap_or_default();
    if types.next().is_some() {
        return Err(refused(
            "The request has more than one Content-Type header; send one".into(),
            Format::Xml,
        ));
    }
    match BodyKind::of(content_type) {
        BodyKind::Multipart => {
            let spool = applied.config.resolve(&gateway.accounts_file);
            let spool = durable::parent_dir(&spool).join("spool");
            upload::read(
                limited,
                content_type,
                &spool,
                &limits,
                gateway.max_body_bytes,
            )
            .await
            .map_err(|e| match e {
                upload::UploadError::Spool(_) => {
                    ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Format::Xml)
                }
                other => refused(upperfirst(&other.to_string()), Format::Xml),
            })
        }
        BodyKind::Urlencoded => {
            let bytes = axum::body::to_bytes(limited, usize::MAX)
                .await
                .map_err(|_| {
                    refused(
                        format!(
                            "The request body is larger than the gateway accepts ({} bytes)",
                            gateway.max_body_bytes
                        ),
                        Format::Xml,
                    )
                })?;
            let parsed = urlencoded::parse(&bytes, &limits);
            form::check(&parsed, &limits)
                .map(|f| (f, None))
                .map_err(|r| {
                    refused(
                        upperfirst(&r.to_string()),
                        crate::reply::error_format_of(&parsed.post),
                    )
                })
        }
        BodyKind::Other => Err(refused(
            format!(
                "PHP reads a request body into $_POST only for the Content-Type application/x-www-form-urlencoded or multipart/form-data; this request's is \"{}\"",
                String::from_utf8_lossy(content_type)
            ),
            Format::Xml,
        )),
    }
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

/// Step 2: the client key. A refused key is counted per source and minute;
/// one that is a real REDCap token raises an alert.
async fn authenticate(
    gw: &Shared,
    presented: &str,
    now: Timestamp,
    source: &str,
    fmt: Format,
) -> Result<KeyRecord, ApiReply> {
    match gw.check_key(presented, now) {
        Ok(k) => Ok(k),
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
            gw.denials.count(now, source, None, why);
            gw.metrics.denied();
            Err(ApiReply::new(StatusCode::FORBIDDEN, NO_API_PERMISSION, fmt))
        }
    }
}

/// Step 5: inject the account's token and send; if REDCap refuses a token
/// that the store has since replaced (a rotation), re-read and retry once.
async fn forward(
    gw: &Shared,
    account: &policy::Account,
    form: &Form,
    upload: Option<&Upload>,
    request_id: &str,
    started: Instant,
    fmt: Format,
) -> Result<UpstreamReply, ApiReply> {
    let unavailable =
        |what: &str| ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, what.to_string(), fmt);
    let mut token = gw
        .tokens
        .get(&account.secret)
        .await
        .map_err(|_| unavailable("The gateway cannot read this account's token from its secrets store; nothing was sent to REDCap"))?;
    let mut attempt = 0;
    let reply = loop {
        let mut outgoing = form.clone();
        outgoing.set("token", token.value.expose());
        let sent = match upload {
            None => gw.upstream.post(outgoing.encode()).await,
            Some(u) => match upload::outgoing(&outgoing, u).await {
                Ok((content_type, length, body)) => {
                    gw.upstream.send(&content_type, length, body).await
                }
                Err(e) => Err(UpstreamError::Transport(format!(
                    "reading the spooled upload: {e}"
                ))),
            },
        };
        let reply = match sent {
            Ok(r) => r,
            Err(e) => {
                let _ = gw
                    .append(EntryKind::Response {
                        request_id: request_id.to_string(),
                        status: 503,
                        record_ids: vec![],
                        body_hmac: String::new(),
                        body_bytes: 0,
                        latency_ms: started.elapsed().as_millis() as u64,
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
                return Err(unavailable(&format!("{e}; the request was not completed")));
            }
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
        break reply;
    };

    Ok(reply)
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

fn request_id() -> String {
    crate::random_hex(12)
}
