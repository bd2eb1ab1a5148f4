//! Step 1: the body exactly as PHP will read it ([`crate::form`],
//! [`crate::upload`]); anything ambiguous is refused. Nothing expensive
//! happens before the key is known ([`super::authenticate`]): the key must
//! come within the first [`upload::PRE_AUTH_BYTES`] of the body (and
//! before any file part), so a client without a key costs at most that
//! much memory, and no spool file. Uploads are spooled after.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use redcap::php_form::{BodyKind, Limits, Parsed, urlencoded};

use super::authenticate::{Caller, authenticate};
use crate::connections::{BodyError, Incoming};
use crate::form::{self, Form};
use crate::reply::{ApiReply, Format, upperfirst};
use crate::state::{Applied, Gateway};
use crate::upload::{self, Upload};

/// A body read: the form, its upload, the key it presented and who that is.
type Read = (Form, Option<Upload>, String, Caller);

/// Steps 1 and 2: the body as PHP will read it, or a refusal, and the
/// client key in it.
pub(super) async fn read_body(
    gw: &Gateway,
    applied: &Applied,
    headers: &HeaderMap,
    body: hyper::body::Incoming,
    peer: SocketAddr,
) -> Result<(Form, Option<Upload>, Caller), ApiReply> {
    let gateway = &applied.config.config.gateway;
    let limits = php_limits(gateway);
    let limited = axum::body::Body::new(http_body_util::Limited::new(
        body,
        usize::try_from(gateway.max_body_bytes).unwrap_or(usize::MAX),
    ));
    let content_type = content_type(headers)?;
    let (mut form, upload, presented, caller) = match BodyKind::of(content_type) {
        // Boxed: an upload's reader is large and rare; every request's
        // future would otherwise carry it.
        BodyKind::Multipart => {
            Box::pin(read_multipart(
                gw,
                applied,
                limited,
                content_type,
                &limits,
                peer,
            ))
            .await?
        }
        BodyKind::Urlencoded => {
            read_urlencoded(gw, limited, &limits, gateway.max_body_bytes, peer).await?
        }
        BodyKind::Other => {
            return Err(ApiReply::bad_request(
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
        return Err(ApiReply::bad_request(
            "The request's token changed between the first and the whole reading of its body",
            crate::reply::error_format(&form),
        ));
    }
    Ok((form, upload, caller))
}

/// The request's one `Content-Type` (empty when there is none).
fn content_type(headers: &HeaderMap) -> Result<&[u8], ApiReply> {
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next().map(HeaderValue::as_bytes).unwrap_or_default();
    if types.next().is_some() {
        return Err(ApiReply::bad_request(
            "The request has more than one Content-Type header; send one",
            Format::Xml,
        ));
    }
    Ok(content_type)
}

/// The PHP limits of the REDCap server, as configured.
fn php_limits(gateway: &warden_config::GatewaySection) -> Limits {
    Limits {
        max_input_vars: gateway.max_input_vars,
        max_input_nesting_level: gateway.max_input_nesting_level,
        ..Limits::default()
    }
}

fn upload_refused(e: upload::UploadError) -> ApiReply {
    match e {
        upload::UploadError::Spool(_) => {
            ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Format::Xml)
        }
        other => ApiReply::bad_request(upperfirst(&other.to_string()), Format::Xml),
    }
}

/// A multipart body: the `token` part first, then (the key accepted) the
/// rest, the file spooled.
async fn read_multipart(
    gw: &Gateway,
    applied: &Applied,
    body: axum::body::Body,
    content_type: &[u8],
    limits: &Limits,
    peer: SocketAddr,
) -> Result<Read, ApiReply> {
    let max_body_bytes = applied.config.config.gateway.max_body_bytes;
    let mut reader = upload::MultipartReader::new(body, content_type, limits, max_body_bytes)
        .map_err(upload_refused)?;
    let presented = reader
        .token()
        .await
        .map_err(upload_refused)?
        .unwrap_or_default();
    let caller = authenticate(gw, &presented, peer, Format::Xml).await?;
    let spool = crate::paths::spool_dir(&applied.config);
    let (form, upload) = reader.finish(&spool).await.map_err(upload_refused)?;
    Ok((form, upload, presented, caller))
}

/// A urlencoded body: the key from its first [`upload::PRE_AUTH_BYTES`],
/// then (the key accepted) the whole body, checked.
async fn read_urlencoded(
    gw: &Gateway,
    body: axum::body::Body,
    limits: &Limits,
    max_body_bytes: u64,
    peer: SocketAddr,
) -> Result<Read, ApiReply> {
    let mut stream = Incoming::new(body);
    let body_error = |(e, source): (BodyError, Option<axum::Error>)| match source {
        Some(source) if upload::is_too_large(&source) => ApiReply::bad_request(
            format!("The request body is larger than the gateway accepts ({max_body_bytes} bytes)"),
            Format::Xml,
        ),
        _ => ApiReply::bad_request(upperfirst(&e.to_string()), Format::Xml),
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
    let (presented, fmt, whole) = presented_key(&bytes, ended, limits)?;
    let caller = authenticate(gw, &presented, peer, fmt).await?;
    let parsed = match whole {
        // The body ended within the first read: it was parsed whole.
        Some(parsed) => parsed,
        None => {
            while let Some(chunk) = stream.next().await.map_err(body_error)? {
                bytes.extend_from_slice(&chunk);
            }
            urlencoded::parse(&bytes, limits)
        }
    };
    drop(bytes);
    let fmt = crate::reply::error_format_of(&parsed.post);
    let form = form::check(parsed, limits)
        .map_err(|r| ApiReply::bad_request(upperfirst(&r.to_string()), fmt))?;
    Ok((form, None, presented, caller))
}

/// The key in the fields complete in the body's first bytes (`ended`: the
/// whole body, then also returned parsed, so it is parsed once), and the
/// format refusals take. No `token` field there: the body ended without
/// one (an empty key, REDCap's own refusal), or it comes too late.
fn presented_key(
    bytes: &[u8],
    ended: bool,
    limits: &Limits,
) -> Result<(String, Format, Option<Parsed>), ApiReply> {
    let complete = if ended {
        bytes.len()
    } else {
        memchr::memrchr(b'&', bytes).unwrap_or(0)
    };
    let head = urlencoded::parse(&bytes[..complete], limits);
    let fmt = crate::reply::error_format_of(&head.post);
    let token = head
        .fields
        .iter()
        .any(|f| f.raw_name == b"token")
        .then(|| head.post.get_name("token"))
        .flatten()
        .and_then(|v| v.as_bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned());
    // A body that ended was parsed whole: the caller need not again.
    let whole = ended.then_some(head);
    match token {
        Some(t) => Ok((t, fmt, whole)),
        None if ended => Ok((String::new(), fmt, whole)),
        None => Err(ApiReply::bad_request(
            upperfirst(&upload::UploadError::TokenTooLate.to_string()),
            fmt,
        )),
    }
}
