//! The request path, in the order DESIGN.md gives it:
//!
//! 1. read the body exactly as PHP will ([`crate::php`]) and refuse anything
//!    ambiguous;
//! 2. authenticate the client key ([`crate::keys`]); refusals are answered
//!    in REDCap's 403 shape and counted per source and minute;
//! 3. authorise: the client's allowed methods, source addresses, a reason
//!    for writes where its policy asks for one;
//! 4. make the `request` entry durable in the ledger — or answer 503 and
//!    forward nothing;
//! 5. inject the account's token and forward a canonical body through the
//!    outbound limiter; if REDCap refuses the token, re-read the store once
//!    (a rotation may have happened) and retry;
//! 6. record the `response` entry and return REDCap's answer.
//!
//! If the ledger fails, the gateway is *degraded*: every request gets 503
//! until the ledger has been reopened, and then an `alert` entry records
//! the outage and how many requests were refused.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use jiff::Timestamp;
use ledger::{EntryKind, Ledger, LedgerError};
use redcap::{Action, Content};
use secrets::{FingerprintKey, SecretStore};
use tokio::sync::oneshot;
use warden_config::{LoadedConfig, WriteReason};

use governance::accounts::{AccountStatusFile, Quarantine};

use crate::admin;
use crate::answer;
use crate::denials::Denials;
use crate::keys::{KeyFile, KeyRing, Presented};
use crate::metrics::Metrics;
use crate::php::{self, Form};
use crate::policy::{self, Policy};
use crate::reply::{ApiReply, Format, NO_API_PERMISSION};
use crate::tokens::TokenCache;
use crate::upload;
use crate::upstream::{Upstream, UpstreamError};

/// Opens (or reopens, after a failure) the ledger the gateway writes.
pub type LedgerOpener = Arc<dyn Fn() -> Result<Ledger, LedgerError> + Send + Sync>;

/// What the gateway is given to run: the loaded configuration and the
/// services it writes to.
pub struct Services {
    pub config: LoadedConfig,
    pub store: Arc<dyn SecretStore>,
    pub fingerprint: FingerprintKey,
    pub open_ledger: LedgerOpener,
    /// Where the key file lives (normally from the configuration).
    pub keys: KeyFile,
    /// Who started the gateway (recorded in the start and stop entries).
    pub operator: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Status(#[from] governance::accounts::StatusError),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error(
        "loading the TLS certificate {cert} and key {key}: {source}; fix: point [gateway] tls_cert and tls_key at PEM files the gateway can read"
    )]
    Tls {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin credential {path}: {source}; fix: check the data directory's permissions")]
    AdminToken {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The configuration in force and what the request path reads from it.
pub(crate) struct Applied {
    pub config: LoadedConfig,
    pub policy: Policy,
}

struct Outage {
    since: Timestamp,
    refused: u64,
    /// Entries that could not be written (responses to requests already
    /// forwarded); written first when the ledger is back.
    missing: Vec<EntryKind>,
    cause: String,
}

pub(crate) struct Shared {
    /// The configuration in force and the policy compiled from it; both
    /// are replaced together by a reload.
    pub(crate) applied: RwLock<Arc<Applied>>,
    operator: String,
    pub(crate) tokens: TokenCache,
    fingerprint: FingerprintKey,
    /// Fingerprints of the accounts' current tokens: a client presenting
    /// one of these holds a real REDCap token.
    token_fingerprints: RwLock<HashMap<String, String>>,
    pub(crate) keys: KeyFile,
    pub(crate) ring: RwLock<(KeyRing, Option<std::time::SystemTime>)>,
    pub(crate) status: AccountStatusFile,
    /// Quarantines as last read from `status`, and that file's mtime.
    pub(crate) quarantined: RwLock<(BTreeMap<String, Quarantine>, Option<std::time::SystemTime>)>,
    key_use: Mutex<HashMap<String, Timestamp>>,
    pub(crate) ledger: RwLock<Option<Arc<Ledger>>>,
    open_ledger: LedgerOpener,
    outage: Mutex<Option<Outage>>,
    pub(crate) upstream: Upstream,
    denials: Denials,
    pub(crate) requests: AtomicU64,
    pub(crate) metrics: Metrics,
    /// Bearer credential of the admin listener's state-changing endpoints.
    pub(crate) admin_token: admin::AdminToken,
}

/// A running gateway; [`RunningGateway::shutdown`] stops it gracefully.
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the client and admin listeners.
pub async fn start(services: Services) -> Result<RunningGateway, StartError> {
    let Services {
        config,
        store,
        fingerprint,
        open_ledger,
        keys,
        operator,
    } = services;
    let gw = config.config.gateway.clone();
    let opener = open_ledger.clone();
    let ledger = Arc::new(
        tokio::task::spawn_blocking(move || opener())
            .await
            .expect("the opening task panicked")?,
    );
    let ring = keys.ring()?;
    let ring_mtime = file_mtime(keys.path());
    let status = AccountStatusFile::new(&config.resolve(&config.config.gateway.accounts_file));
    let admin_token_path = config.resolve(&config.config.gateway.admin_token_file);
    let upstream = Upstream::new(config.config.redcap.url(), gw.outbound_per_minute)?;
    let shared = Arc::new(Shared {
        applied: RwLock::new(Arc::new(Applied {
            policy: Policy::from_config(&config.config),
            config: config.clone(),
        })),
        tokens: TokenCache::new(store, Duration::from_secs(gw.token_cache_seconds)),
        fingerprint,
        token_fingerprints: RwLock::new(HashMap::new()),
        keys,
        ring: RwLock::new((ring, ring_mtime)),
        quarantined: RwLock::new((status.quarantined()?, file_mtime(status.path()))),
        status,
        key_use: Mutex::new(HashMap::new()),
        ledger: RwLock::new(Some(ledger)),
        open_ledger,
        outage: Mutex::new(None),
        upstream,
        denials: Denials::default(),
        requests: AtomicU64::new(0),
        metrics: Metrics::default(),
        admin_token: admin::load_or_create_token(&admin_token_path).map_err(|source| {
            StartError::AdminToken {
                path: admin_token_path.clone(),
                source,
            }
        })?,
        operator,
    });
    shared.load_token_fingerprints().await;
    shared
        .append(EntryKind::Admin {
            operator: shared.operator.clone(),
            action: "start".into(),
            target: config.path.display().to_string(),
            reason: admin::config_change_reason(&config),
        })
        .await
        .ok();

    let app = Router::new()
        .route("/api/", any(api))
        .route("/api", any(api))
        .layer(DefaultBodyLimit::max(
            usize::try_from(gw.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .with_state(shared.clone());
    let admin = admin::routes().with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(gw.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: gw.listen,
            source,
        })?;
    let admin_listener = tokio::net::TcpListener::bind(gw.admin_listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: gw.admin_listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: gw.listen,
        source,
    })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: gw.admin_listen,
            source,
        })?;

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (admin_stop_tx, admin_stop_rx) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stop_rx.await;
        let _ = admin_stop_tx.send(());
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let serve = match (&gw.tls_cert, &gw.tls_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (
                config.resolve(cert.get_ref()),
                config.resolve(key.get_ref()),
            );
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|source| StartError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            let listener = listener.into_std().map_err(|source| StartError::Bind {
                addr: gw.listen,
                source,
            })?;
            let server =
                axum_server::from_tcp_rustls(listener, tls).map_err(|source| StartError::Bind {
                    addr: gw.listen,
                    source,
                })?;
            let handle = axum_server::Handle::new();
            let drain = handle.clone();
            tokio::spawn(async move {
                stopped.await;
                drain.graceful_shutdown(Some(Duration::from_secs(30)));
            });
            tokio::spawn(async move {
                let _ = server.handle(handle).serve(service).await;
            })
        }
        _ => tokio::spawn(async move {
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(stopped)
                .await;
        }),
    };
    let admin_serve = tokio::spawn(async move {
        let _ = axum::serve(admin_listener, admin)
            .with_graceful_shutdown(async move {
                let _ = admin_stop_rx.await;
            })
            .await;
    });
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                shared.housekeeping(false).await;
            }
        })
    };
    Ok(RunningGateway {
        addr,
        admin_addr,
        shared,
        stop: Some(stop_tx),
        tasks: vec![serve, admin_serve, ticker],
    })
}

impl RunningGateway {
    /// Stops accepting, lets requests in flight finish, writes what is
    /// pending (denials, a stop entry) and signs a final checkpoint.
    pub async fn shutdown(mut self) -> Result<(), LedgerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ticker = self.tasks.pop();
        if let Some(t) = ticker {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        self.shared.housekeeping(true).await;
        self.shared
            .append(EntryKind::Admin {
                operator: self.shared.operator.clone(),
                action: "stop".into(),
                target: self.shared.applied().config.path.display().to_string(),
                reason: format!(
                    "{} requests served",
                    self.shared.requests.load(Ordering::Relaxed)
                ),
            })
            .await
            .ok();
        let ledger = self
            .shared
            .ledger
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(ledger) = ledger {
            tokio::task::spawn_blocking(move || ledger.close())
                .await
                .expect("the closing task panicked")?;
        }
        Ok(())
    }

    /// Whether the ledger failed and requests are being refused.
    pub fn degraded(&self) -> bool {
        self.shared
            .outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

pub(crate) fn file_mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Shared {
    pub(crate) fn applied(&self) -> Arc<Applied> {
        self.applied
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Appends durably, or records the outage and fails.
    pub(crate) async fn append(&self, kind: EntryKind) -> Result<(), ()> {
        let ledger = self
            .ledger
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(ledger) = ledger else {
            self.note_outage("the ledger is being reopened".into(), None);
            return Err(());
        };
        let pending = kind.clone();
        match tokio::task::spawn_blocking(move || ledger.append(kind)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.note_outage(e.to_string(), Some(pending));
                Err(())
            }
            Err(e) => {
                self.note_outage(format!("the append task failed: {e}"), Some(pending));
                Err(())
            }
        }
    }

    fn note_outage(&self, cause: String, missing: Option<EntryKind>) {
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        let o = outage.get_or_insert_with(|| {
            tracing::error!(%cause, "ledger unavailable: refusing requests until it is back");
            Outage {
                since: Timestamp::now(),
                refused: 0,
                missing: Vec::new(),
                cause,
            }
        });
        if let Some(EntryKind::Response { .. }) = &missing {
            o.missing.extend(missing);
        }
    }

    pub(crate) fn degraded(&self) -> bool {
        self.outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Once a second: flush finished minutes of denials and key use; try
    /// to reopen a failed ledger. At shutdown, flush everything.
    async fn housekeeping(&self, everything: bool) {
        if self.degraded() {
            self.try_recover().await;
        }
        let now = Timestamp::now();
        for entry in self.denials.drain(now, everything) {
            let _ = self.append(entry).await;
        }
        let used: HashMap<String, Timestamp> = {
            let mut u = self.key_use.lock().unwrap_or_else(|e| e.into_inner());
            if everything || now.as_second() % 60 == 0 {
                std::mem::take(&mut *u)
            } else {
                HashMap::new()
            }
        };
        if let Err(e) = self.keys.record_use(&used) {
            tracing::warn!(error = %e, "could not record client key use");
        }
    }

    async fn try_recover(&self) {
        // Drop our handle first so the old writer releases its lock.
        drop(
            self.ledger
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let opener = self.open_ledger.clone();
        let reopened = match tokio::task::spawn_blocking(move || opener())
            .await
            .expect("the opening task panicked")
        {
            Ok(l) => Arc::new(l),
            Err(e) => {
                tracing::warn!(error = %e, "the ledger cannot be reopened yet");
                return;
            }
        };
        // Entries owed from before the failure go in first.
        let missing = self
            .outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(|o| std::mem::take(&mut o.missing))
            .unwrap_or_default();
        let ledger = reopened.clone();
        let owed = missing.clone();
        let written = tokio::task::spawn_blocking(move || {
            owed.into_iter()
                .try_for_each(|e| ledger.append(e).map(|_| ()))
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            if let Some(o) = self
                .outage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                o.missing = missing;
            }
            return;
        }
        // Install the ledger before ending the outage, so a request that
        // sees the gateway healthy also finds a ledger to write to.
        *self.ledger.write().unwrap_or_else(|e| e.into_inner()) = Some(reopened);
        let Some(outage) = self.outage.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let message = format!(
            "ledger unavailable from {} to {}, {} requests refused ({})",
            outage.since,
            Timestamp::now(),
            outage.refused,
            outage.cause
        );
        tracing::info!("ledger reopened; requests are accepted again");
        let _ = self
            .append(EntryKind::Alert {
                code: "ledger_unavailable".into(),
                message,
            })
            .await;
    }

    pub(crate) async fn load_token_fingerprints(&self) {
        let mut map = HashMap::new();
        for account in self.applied().policy.accounts.values() {
            if let Ok(t) = self.tokens.refresh(&account.secret).await {
                map.insert(
                    self.fingerprint.fingerprint(&t.value).0,
                    account.name.clone(),
                );
            }
        }
        *self
            .token_fingerprints
            .write()
            .unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// The account's quarantine, re-reading the status file when it changed
    /// (an operator released the account).
    fn quarantine_of(&self, account: &str) -> Option<Quarantine> {
        let mtime = file_mtime(self.status.path());
        if self.quarantined.read().unwrap_or_else(|e| e.into_inner()).1 != mtime {
            match self.status.quarantined() {
                Ok(q) => *self.quarantined.write().unwrap_or_else(|e| e.into_inner()) = (q, mtime),
                Err(e) => tracing::warn!(error = %e, "could not re-read account status"),
            }
        }
        self.quarantined
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(account)
            .cloned()
    }

    /// Quarantines in memory at once, whether or not the file could be written.
    fn quarantine_now(&self, account: &str, reason: &str) {
        let mut q = self.quarantined.write().unwrap_or_else(|e| e.into_inner());
        q.0.entry(account.to_string())
            .or_insert_with(|| Quarantine {
                since: Timestamp::now(),
                reason: reason.to_string(),
                by: "gateway".into(),
            });
    }

    /// Checks a presented key, re-reading the key file once if it changed
    /// since it was loaded (a key issued a moment ago works at once).
    fn check_key(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<crate::keys::KeyRecord, &'static str> {
        for attempt in 0..2 {
            {
                let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
                match ring.0.check(presented, now) {
                    Presented::Valid(r) => return Ok(r.clone()),
                    Presented::Expired(_) => return Err("expired key"),
                    Presented::Revoked(_) => return Err("revoked key"),
                    Presented::Unknown if attempt == 1 => return Err("unknown key"),
                    Presented::Unknown => {}
                }
            }
            let mtime = file_mtime(self.keys.path());
            let stale = self.ring.read().unwrap_or_else(|e| e.into_inner()).1 != mtime;
            if !stale {
                return Err("unknown key");
            }
            match self.keys.ring() {
                Ok(ring) => *self.ring.write().unwrap_or_else(|e| e.into_inner()) = (ring, mtime),
                Err(e) => {
                    tracing::warn!(error = %e, "could not reload client keys");
                    return Err("unknown key");
                }
            }
        }
        Err("unknown key")
    }
}

/// The client listener: `/api/`, REDCap's protocol.
async fn api(
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
    gw: &Shared,
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
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let applied = gw.applied();
    let limits = &applied.config.config.gateway;
    let limited = axum::body::Body::new(http_body_util::Limited::new(
        body,
        usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX),
    ));
    let refused = |message: String| ApiReply::new(StatusCode::BAD_REQUEST, message, Format::Xml);
    let (mut form, upload) = if content_type.starts_with("multipart/form-data") {
        let spool = applied.config.resolve(&limits.accounts_file);
        let spool = durable::parent_dir(&spool).join("spool");
        upload::read(limited, content_type, &spool, limits.max_input_vars)
            .await
            .map_err(|e| match e {
                upload::UploadError::Spool(_) => {
                    ApiReply::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Format::Xml)
                }
                other => refused(other.to_string()),
            })?
    } else {
        let bytes = axum::body::to_bytes(limited, usize::MAX)
            .await
            .map_err(|_| {
                refused(format!(
                    "The request body is larger than the gateway accepts ({} bytes)",
                    limits.max_body_bytes
                ))
            })?;
        (
            php::parse_form(&bytes, limits.max_input_vars).map_err(|r| refused(r.to_string()))?,
            None,
        )
    };
    let fmt = Format::of(&form);

    // Authenticate.
    let presented = form.take("token").unwrap_or_default();
    let key = match gw.check_key(&presented, now) {
        Ok(k) => k,
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
            return Err(ApiReply::new(StatusCode::FORBIDDEN, NO_API_PERMISSION, fmt));
        }
    };
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

    // Authorise the method.
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
    if site_export && policy::unchecked_export(content) && !client.unchecked_exports {
        return Err(deny(
            format!("unchecked export: {}", content.as_str()),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway cannot check the rows of a {} export against site \"{}\"'s Data Access Group, and client \"{}\" is not allowed unchecked exports",
                content.as_str(),
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

    if gw.degraded() {
        if let Some(o) = gw.outage.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            o.refused += 1;
        }
        return Err(ledger_unavailable(fmt));
    }

    // Record the request durably before anything reaches REDCap.
    let request_id = request_id();
    // What the request entry hashes: the canonical fields, and for an
    // upload the SHA-256 of the file after a line break.
    let mut canonical_without_token = form.encode();
    let mut params = form.names();
    if let Some(u) = &upload {
        canonical_without_token.push('\n');
        canonical_without_token.push_str(&hex::encode(u.sha256));
        params.push(u.field.clone());
    }
    let body_bytes = form.encode().len() as u64 + upload.as_ref().map_or(0, |u| u.size);
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
        if let Some(o) = gw.outage.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            o.refused += 1;
        }
        return Err(ledger_unavailable(fmt));
    }
    gw.requests.fetch_add(1, Ordering::Relaxed);

    // Inject the token and forward; retry once if REDCap refuses a token
    // that the store has since replaced.
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
        let sent = match &upload {
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
                        request_id: request_id.clone(),
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

    let body_text = String::from_utf8_lossy(&reply.body).into_owned();
    let ok = reply.status == 200;
    let record_ids = match (content, action) {
        (Content::Record, Action::Import) if ok => {
            answer::import_ids(&body_text, fmt).unwrap_or_default()
        }
        (Content::Record, Action::Export) if ok => answer::export_ids(
            &body_text,
            Format::of_data(&form),
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
    // REDCap has acted; its answer goes back even if this entry fails (the
    // gateway is then degraded and writes the entry when the ledger is back).
    let _ = gw.append(response_entry).await;

    if dag_guard && ok && answer::has_dag_column(&body_text, Format::of_data(&form)) {
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
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    hex::encode(b)
}
