//! The HTTP/1.1 connections to REDCap, kept open and reused.
//!
//! hyper's own client connection (`hyper::client::conn::http1`): each
//! connection is driven by one task for its whole life; a call takes the
//! most recently used idle connection, or opens one (TCP, then for an
//! `https` URL TLS with rustls and the platform's certificate verifier, as
//! reqwest did), and gives it back when REDCap's answer has been read to
//! its end. An answer dropped half-read closes its connection.
//!
//! Why not reqwest, which the gateway used until #10 item 5: per call it
//! parsed the URL twice (in its redirect layer, even with redirects off),
//! cloned its connector and URI, and went through a tower stack and
//! hyper-util's pool — a fifth of the gateway's CPU per request on
//! `bench/gateway.sh` (docs/benchmarks.md). What it did that matters is
//! kept: 10 s to connect, 600 s for the whole call, no redirect followed,
//! `TCP_NODELAY`, and a call that found its idle connection closed by
//! REDCap before the request left is sent again on another (never one
//! that may have reached REDCap).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, Method, Request, Response, Uri, header};
use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

/// The longest a connection (TCP and TLS) may take to open.
const CONNECT: Duration = Duration::from_secs(10);
/// The longest a whole call may take, its answer read to the end.
const CALL: Duration = Duration::from_secs(600);
/// An idle connection unused this long is closed rather than reused.
const IDLE: Duration = Duration::from_secs(90);
/// At most this many idle connections are kept.
const MAX_IDLE: usize = 256;

/// A request's body: in memory (the canonical form with the token), or
/// streamed (a multipart upload from its spool). Its length is always
/// known and sent as `Content-Length`.
pub enum OutBody {
    /// The whole body (`None` once sent).
    Whole(Option<Bytes>),
    /// A stream of parts.
    Stream(Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>),
}

impl OutBody {
    /// A body held whole.
    pub fn whole(body: Bytes) -> OutBody {
        OutBody::Whole(Some(body).filter(|b| !b.is_empty()))
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            OutBody::Whole(body) => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream(s) => s
                .as_mut()
                .poll_next(cx)
                .map(|p| p.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Whole(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OutBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Where calls go: REDCap's API URL, taken apart once.
struct Target {
    /// The host to connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: HeaderValue,
    /// The request target: the URL's path and query.
    path: Uri,
    /// For an `https` URL: the TLS connector and the name the
    /// certificate must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

struct Idle {
    sender: SendRequest<OutBody>,
    since: Instant,
}

/// The connections to one REDCap.
pub struct Connections {
    target: Target,
    idle: Mutex<Vec<Idle>>,
}

impl Connections {
    /// Connections to `url` (`http` or `https`; REDCap's API URL).
    pub fn new(url: &str) -> Result<Arc<Connections>, String> {
        Connections::trusting(url, Vec::new())
    }

    /// As [`Connections::new`], also trusting certificates issued by
    /// `roots` (the tests' own certificate authority).
    fn trusting(
        url: &str,
        roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Arc<Connections>, String> {
        let uri: Uri = url.parse().map_err(|e| {
            format!("[redcap] url is not a URL ({e}): write it as https://host/redcap/api/")
        })?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("[redcap] url must start with https:// or http://".into()),
        };
        let authority = uri
            .authority()
            .ok_or("[redcap] url names no host")?
            .as_str();
        if authority.contains('@') {
            return Err("[redcap] url must not carry a user name or password".into());
        }
        let host = uri
            .host()
            .ok_or("[redcap] url names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("[redcap] url's host cannot be checked by TLS: {e}"))?;
            Some((tls_connector(roots)?, name))
        } else {
            None
        };
        Ok(Arc::new(Connections {
            target: Target {
                host,
                port,
                authority: HeaderValue::from_str(authority)
                    .map_err(|e| format!("[redcap] url's host: {e}"))?,
                path: Uri::try_from(uri.path_and_query().map_or("/", |p| p.as_str()))
                    .map_err(|e| format!("[redcap] url's path: {e}"))?,
                tls,
            },
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// POSTs `body` and returns REDCap's answer as soon as its status and
    /// headers are in; its body is read through [`AnswerBody`].
    pub async fn post(
        self: &Arc<Self>,
        content_type: HeaderValue,
        length: u64,
        body: OutBody,
    ) -> Result<(Response<()>, AnswerBody), String> {
        let mut deadline = Box::pin(tokio::time::sleep(CALL));
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.target.path.clone())
            .header(header::HOST, self.target.authority.clone())
            .header(header::ACCEPT, HeaderValue::from_static("*/*"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .map_err(|e| format!("building the request: {e}"))?;
        loop {
            let (mut sender, reused) = match self.take_idle().await {
                Some(s) => (s, true),
                // Boxed: opening a connection (TCP, a TLS handshake) is a
                // future of kilobytes that every call would otherwise carry
                // inline and be copied with, though most reuse one.
                None => (
                    within(&mut deadline, Box::pin(self.connect())).await??,
                    false,
                ),
            };
            match within(&mut deadline, sender.try_send_request(request)).await? {
                Ok(response) => {
                    let (head, incoming) = response.into_parts();
                    let body = AnswerBody {
                        incoming,
                        keep: Some((sender, Arc::clone(self))),
                        deadline,
                        done: false,
                    };
                    return Ok((Response::from_parts(head, ()), body));
                }
                Err(mut e) => match e.take_message() {
                    // The idle connection was closed before anything was
                    // written to it: nothing reached REDCap, send again.
                    Some(r) if reused => request = r,
                    _ => return Err(describe(&e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection still open, if any.
    async fn take_idle(&self) -> Option<SendRequest<OutBody>> {
        loop {
            let Idle { mut sender, since } = self.lock().pop()?;
            if sender.is_closed() || since.elapsed() > IDLE {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn give_back(&self, sender: SendRequest<OutBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a connection: TCP, TLS for `https`, the HTTP/1.1 handshake;
    /// its task runs until the connection closes.
    async fn connect(&self) -> Result<SendRequest<OutBody>, String> {
        let t = &self.target;
        let opening = async {
            let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            tcp.set_nodelay(true)
                .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
            match &t.tls {
                None => handshake(tcp).await,
                Some((connector, name)) => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    handshake(tls).await
                }
            }
        };
        match tokio::time::timeout(CONNECT, opening).await {
            Ok(r) => r,
            Err(_) => Err(format!("no connection within {} s", CONNECT.as_secs())),
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<OutBody>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| describe(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %describe(&e), "a connection to REDCap ended");
        }
    });
    Ok(sender)
}

/// TLS as reqwest set it up: the process's rustls crypto provider (or
/// aws-lc-rs), TLS 1.2 and 1.3, the platform's certificate verifier (on
/// Linux the system's roots, or those `SSL_CERT_FILE` names) and `roots`,
/// no client certificate, ALPN `http/1.1`.
fn tls_connector(
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = if roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
    }
    .map_err(|e| format!("the platform's certificate verifier: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Runs `f` unless the call's deadline passes first.
async fn within<F: Future>(deadline: &mut Pin<Box<Sleep>>, f: F) -> Result<F::Output, String> {
    tokio::select! {
        biased;
        out = f => Ok(out),
        () = deadline.as_mut() => Err(timed_out()),
    }
}

fn timed_out() -> String {
    format!("no complete answer within {} s", CALL.as_secs())
}

/// An error with its causes ("connection error: Connection reset by
/// peer"): hyper's own text alone is terse. Never holds the URL or a body.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// REDCap's answer body as it arrives; read to its end, it gives its
/// connection back for the next call.
pub struct AnswerBody {
    incoming: Incoming,
    keep: Option<(SendRequest<OutBody>, Arc<Connections>)>,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl Stream for AnswerBody {
    type Item = Result<Bytes, String>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.incoming).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    _ => continue, // empty, or trailers
                },
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.keep = None;
                    return Poll::Ready(Some(Err(describe(&e))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    if let Some((sender, connections)) = this.keep.take() {
                        connections.give_back(sender);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        this.keep = None;
                        return Poll::Ready(Some(Err(timed_out())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
