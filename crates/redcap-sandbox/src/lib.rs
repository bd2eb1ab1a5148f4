//! redcap-sandbox: a faithful emulator of the part of REDCap's API that
//! token governance touches, for tests and demos.
//!
//! - [`api`]: `POST /api/`, REDCap's methods with its processing order,
//!   rights, DAG rules, error texts and logging (`redcap-api.md`).
//! - `admin`: `/sandbox/…`, out-of-band endpoints for what REDCap does only
//!   in its web UI (accounts, project tokens, super tokens, suspension,
//!   expiry), guarded by the admin secret.
//! - `db`: the shared state, its lock and its transactions;
//! - `store`: the SQLite tables (settings, records, logs) and the
//!   migration from the old files.
//!
//! Tests start it in-process with [`Server::start`] on `127.0.0.1:0`.

#![warn(missing_docs)]

mod admin;
pub mod api;
mod db;
mod filter_logic;
mod format;
mod odm;
mod pdf;
pub mod post;
mod store;
mod survey_admin;
mod surveys;
mod xml;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use redcap::RedcapVersion;

use crate::db::{Account, Db};
use crate::post::Post;

/// The username that holds `--super-token` and performs admin-endpoint
/// actions in the log.
pub const SITE_ADMIN: &str = "site_admin";

/// How the sandbox runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// The state directory.
    pub data: PathBuf,
    /// A 64-hex super token given to the `site_admin` account at start.
    pub super_token: Option<String>,
    /// Bearer secret for `/sandbox/`; without it those endpoints refuse.
    pub admin_secret: Option<String>,
    /// The URL clients use (for page-view rows); default `http://<listen>/`.
    pub public_url: Option<String>,
    /// Server-local time zone of log timestamps.
    pub timezone: jiff::tz::TimeZone,
    /// The REDCap version played (answers `version`, picks encodings).
    pub version: RedcapVersion,
    /// Per-IP page hits per minute above which the IP is banned for good
    /// (§9.1); `None` (the default) switches the limiter off.
    pub page_hit_threshold: Option<u32>,
    /// IPs the limiter never counts.
    pub rate_limit_exempt: Vec<std::net::IpAddr>,
    /// How far the sandbox's clock runs ahead of the system's (zero by
    /// default): tests of date-driven behaviour, such as a project
    /// expiration (§8.1), let days pass without waiting.
    pub clock_offset: jiff::SignedDuration,
}

impl Config {
    /// A config for tests: loopback, free port, UTC, the spec's version.
    pub fn for_tests(data: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data,
            super_token: None,
            admin_secret: None,
            public_url: None,
            timezone: jiff::tz::TimeZone::UTC,
            version: RedcapVersion::SPEC,
            page_hit_threshold: None,
            rate_limit_exempt: Vec::new(),
            clock_offset: jiff::SignedDuration::ZERO,
        }
    }

    /// The public base URL, ending in `/`.
    pub fn public_url(&self) -> String {
        let mut url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}/", self.listen));
        if !url.ends_with('/') {
            url.push('/');
        }
        url
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
}

/// Builds the HTTP application over an opened state.
pub(crate) fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/", any(api_endpoint))
        .route("/api", any(api_endpoint))
        .merge(admin::routes())
        .merge(survey_admin::routes())
        .layer(DefaultBodyLimit::max(512 * 1024 * 1024))
        .with_state(state)
}

/// Opens the state in `config.data` and installs `--super-token`.
pub fn open_state(config: &Config) -> anyhow::Result<Db> {
    let db = Db::open(&config.data)?;
    if let Some(token) = &config.super_token {
        redcap::SuperToken::parse(token).context("--super-token")?;
        let mut txn = db.begin();
        let taken = txn
            .state()
            .accounts
            .values()
            .any(|a| a.super_token.as_deref() == Some(token.as_str()));
        if !taken {
            let account = txn
                .state()
                .accounts
                .entry(SITE_ADMIN.to_owned())
                .or_insert_with(|| Account {
                    username: SITE_ADMIN.to_owned(),
                    administrator: true,
                    ..Account::default()
                });
            account.super_token = Some(token.clone());
            txn.state().touch();
        }
        txn.commit()?;
    }
    Ok(db)
}

/// `/api/`: POST only (501 otherwise, §1.1); the body read like `$_POST`.
async fn api_endpoint(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if req.method() != Method::POST {
        return (
            StatusCode::NOT_IMPLEMENTED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "The requested method is not implemented.",
        )
            .into_response();
    }
    let post = match read_post(req).await {
        Ok(p) => p,
        Err(msg) => {
            return (StatusCode::BAD_REQUEST, msg).into_response();
        }
    };
    let db = app.db.clone();
    let config = app.config.clone();
    let reply =
        tokio::task::spawn_blocking(move || api::handle(&db, &config, &post, peer.ip())).await;
    match reply {
        Ok(r) => {
            let mut headers = HeaderMap::new();
            // A stored file name can hold bytes a header may not; REDCap
            // would send them anyway, the sandbox falls back to no name.
            let content_type = HeaderValue::from_str(&r.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            headers.insert(header::CONTENT_TYPE, content_type);
            for (name, value) in &r.headers {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(*name, v);
                }
            }
            let status =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match r.stream {
                Some(stream) => (status, headers, streamed_body(stream)).into_response(),
                // `Body::from(Vec<u8>)` takes the buffer over: no copy.
                None => (status, headers, r.body).into_response(),
            }
        }
        Err(e) => {
            tracing::error!("API request failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A streamed answer: written from its snapshot on a blocking thread, in
/// chunks through a small channel (memory stays bounded: a slow client
/// holds back the writer). A failure part way ends the body with an error,
/// so the client sees a broken answer, never a short one that parses.
fn streamed_body(stream: format::Streamed) -> axum::body::Body {
    const CHUNK: usize = 64 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = match &stream.snapshot {
            Some(s) => (stream.write)(s.conn(), &mut w),
            None => Err(anyhow::anyhow!("a streamed answer without its snapshot")),
        };
        let result = result.and_then(|()| Ok(std::io::Write::flush(&mut w)?));
        drop(stream.snapshot);
        if let Err(e) = result {
            tracing::error!("streamed answer failed: {e:#}");
            let _ = tx.blocking_send(Err(std::io::Error::other("the export failed")));
        }
    });
    axum::body::Body::new(ChannelBody(rx))
}

/// Buffers writes into chunks sent to the response body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(64 * 1024),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

/// The receiving end as an HTTP body.
struct ChannelBody(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(http_body::Frame::data)))
    }
}

/// Reads the body as PHP fills `$_POST` and `$_FILES` ([`post`]).
async fn read_post(req: Request) -> Result<Post, String> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let bytes = Bytes::from_request(req, &())
        .await
        .map_err(|e| format!("unreadable body: {e}"))?;
    Post::from_body(&content_type, &bytes)
}

/// A running sandbox.
pub struct Server {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://<addr>/api/`, for clients.
    pub api_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the state and starts serving on `config.listen`.
    pub async fn start(mut config: Config) -> anyhow::Result<Server> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        config.listen = addr;
        let db = open_state(&config)?;
        let app = app(AppState {
            db,
            config: Arc::new(config),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
        });
        Ok(Server {
            addr,
            api_url: format!("http://{addr}/api/"),
            shutdown: Some(tx),
            task,
        })
    }

    /// Stops accepting requests and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }
}
