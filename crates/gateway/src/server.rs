//! The gateway's lifecycle and shared state: starting the listeners,
//! the state every request reads ([`Shared`]), the once-a-second
//! housekeeping (denied-entry flushes, key-use records, reopening a failed
//! ledger), and graceful shutdown. The request path itself is
//! [`crate::request`].
//!
//! If the ledger fails, the gateway is *degraded*: every request gets 503
//! until the ledger has been reopened, and then an `alert` entry records
//! the outage and how many requests were refused.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use jiff::Timestamp;
use ledger::{EntryKind, LedgerBackend, LedgerError};
use secrets::{FingerprintKey, SecretStore};
use tokio::sync::oneshot;
use warden_config::LoadedConfig;

use governance::accounts::{AccountStatusFile, Quarantine};

use crate::admin;
use crate::denials::Denials;
use crate::keys::{KeyFile, KeyRing, Presented};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::tokens::TokenCache;
use crate::upstream::{Upstream, UpstreamError};

/// Opens (or reopens, after a failure) the ledger the gateway writes.
pub type LedgerOpener = Arc<dyn Fn() -> Result<Arc<dyn LedgerBackend>, LedgerError> + Send + Sync>;

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

pub(crate) struct Outage {
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
    pub(crate) operator: String,
    pub(crate) tokens: TokenCache,
    pub(crate) fingerprint: FingerprintKey,
    /// Fingerprints of the accounts' current tokens: a client presenting
    /// one of these holds a real REDCap token.
    pub(crate) token_fingerprints: RwLock<HashMap<String, String>>,
    pub(crate) keys: KeyFile,
    pub(crate) ring: RwLock<(KeyRing, Option<FileStamp>)>,
    pub(crate) status: AccountStatusFile,
    /// Quarantines as last read from `status`, and that file's mtime.
    pub(crate) quarantined: RwLock<(BTreeMap<String, Quarantine>, Option<FileStamp>)>,
    pub(crate) key_use: Mutex<HashMap<String, Timestamp>>,
    pub(crate) key_use_flushed: Mutex<std::time::Instant>,
    pub(crate) ledger: RwLock<Option<Arc<dyn LedgerBackend>>>,
    pub(crate) open_ledger: LedgerOpener,
    pub(crate) outage: Mutex<Option<Outage>>,
    pub(crate) upstream: Upstream,
    pub(crate) denials: Denials,
    pub(crate) requests: AtomicU64,
    pub(crate) metrics: Metrics,
    /// Bearer credential of the admin listener's state-changing endpoints.
    pub(crate) admin_token: admin::AdminToken,
    /// Accounts whose requests wait for a token cut-over.
    pub(crate) holds: crate::hold::Holds,
    /// Each account's project's record id field, and when it was read
    /// (`None`: the read failed) — [`crate::record_field`].
    pub(crate) record_fields:
        Mutex<HashMap<String, (Option<crate::export::RecordIdField>, std::time::Instant)>>,
    /// The ledger's size when last seen, for `/health` while it is being
    /// reopened.
    pub(crate) last_ledger_size: AtomicU64,
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
    let ledger = tokio::task::spawn_blocking(move || opener())
        .await
        .expect("the opening task panicked")?;
    let ring = keys.ring()?;
    let ring_mtime = file_stamp(keys.path());
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
        quarantined: RwLock::new((status.quarantined()?, file_stamp(status.path()))),
        status,
        key_use: Mutex::new(HashMap::new()),
        key_use_flushed: Mutex::new(std::time::Instant::now()),
        ledger: RwLock::new(Some(ledger)),
        open_ledger,
        outage: Mutex::new(None),
        upstream,
        denials: Denials::default(),
        holds: Default::default(),
        record_fields: Default::default(),
        last_ledger_size: AtomicU64::new(0),
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
    let marker = crate::restart::marker_path(&data_dir(&config));
    let start_seq = shared.recover_from_last_run(&marker).await;
    shared
        .append(EntryKind::Admin {
            operator: shared.operator.clone(),
            action: "start".into(),
            target: config.path.display().to_string(),
            reason: admin::config_change_reason(&config),
        })
        .await
        .ok();
    if let Err(e) = crate::restart::write_marker(&marker, start_seq) {
        tracing::warn!(error = %e, path = %marker.display(), "could not write the gateway's run marker: an unclean stop would go unmarked");
    }

    let app = Router::new()
        .route("/api/", any(crate::request::api))
        .route("/api", any(crate::request::api))
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
    // One server for plain HTTP and TLS alike, with the connection bounds
    // of `crate::connections`.
    let std_listener = listener.into_std().map_err(|source| StartError::Bind {
        addr: gw.listen,
        source,
    })?;
    let mut server = axum_server::from_tcp(std_listener)
        .map_err(|source| StartError::Bind {
            addr: gw.listen,
            source,
        })?
        .first_request_timeout(crate::connections::FIRST_REQUEST);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(crate::connections::HEADER_READ);
    let limit = crate::connections::ConnectionLimit::default();
    let handle = axum_server::Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        stopped.await;
        drain.graceful_shutdown(Some(Duration::from_secs(30)));
    });
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
            let server = server
                .acceptor(axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(limit))
                .handle(handle);
            tokio::spawn(async move {
                let _ = server.serve(service).await;
            })
        }
        _ => {
            let server = server.acceptor(limit).handle(handle);
            tokio::spawn(async move {
                let _ = server.serve(service).await;
            })
        }
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
        // Stopped cleanly: the next start has nothing to mark.
        crate::restart::remove_marker(&crate::restart::marker_path(&data_dir(
            &self.shared.applied().config,
        )));
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

/// What identifies a version of a small state file: the files are replaced
/// atomically (a new inode each time), so inode, length and modification
/// time together change on every write, even two writes within one tick
/// of the file system's clock.
pub(crate) type FileStamp = (u64, u64, std::time::SystemTime);

pub(crate) fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

const REOPENING: &str = "the ledger is being reopened";

/// The gateway's data directory (where its key, account-status and run
/// files, and the upload spool, live): the directory of `accounts_file`.
pub(crate) fn data_dir(config: &warden_config::LoadedConfig) -> std::path::PathBuf {
    durable::parent_dir(&config.resolve(&config.config.gateway.accounts_file)).to_path_buf()
}

/// The copy of an entry an outage keeps, to write when the ledger is back:
/// only `response` entries, whose requests REDCap has already acted on
/// (anything else failed before it could matter, and is not cloned on
/// every request for nothing).
fn owed(kind: &EntryKind) -> Option<EntryKind> {
    matches!(kind, EntryKind::Response { .. }).then(|| kind.clone())
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
        let Some(ledger) = self.current_ledger() else {
            self.note_outage(REOPENING.into(), None);
            return Err(());
        };
        let owed = owed(&kind);
        match ledger.append_async(kind).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.note_outage(e.to_string(), owed);
                Err(())
            }
        }
    }

    /// Queues an entry that must become durable but need not hold up the
    /// caller (a `response` entry: REDCap has acted, its answer goes back).
    /// It rides along with the next request's sync; if it fails, the
    /// gateway turns degraded and writes it when the ledger is back.
    pub(crate) fn append_soon(self: &Arc<Self>, kind: EntryKind) {
        let Some(ledger) = self.current_ledger() else {
            self.note_outage(REOPENING.into(), Some(kind));
            return;
        };
        let pending = ledger.append_deferred(kind.clone());
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = pending.await {
                gw.note_outage(e.to_string(), Some(kind));
            }
        });
    }

    /// The open ledger, or `None` while it is being reopened.
    fn current_ledger(&self) -> Option<Arc<dyn LedgerBackend>> {
        self.ledger
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        o.missing.extend(missing);
    }

    /// Every ten seconds of an outage, a line on stderr saying so (the
    /// operator sees it in the journal while it lasts, not only after).
    fn warn_outage(&self) {
        let outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = outage.as_ref() {
            let secs = Timestamp::now().duration_since(o.since).as_secs().max(0) as u64;
            if secs > 0 && secs.is_multiple_of(10) {
                tracing::error!(
                    since = %o.since,
                    refused = o.refused,
                    cause = %o.cause,
                    "the ledger is still unavailable: requests are refused until it is back"
                );
            }
        }
    }

    /// The last size the ledger reported (kept while it is being reopened).
    pub(crate) fn ledger_size(&self) -> Option<u64> {
        if let Some(l) = self.current_ledger() {
            let size = l.size();
            self.last_ledger_size
                .store(size, std::sync::atomic::Ordering::Relaxed);
            return Some(size);
        }
        match self
            .last_ledger_size
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            0 => None,
            n => Some(n),
        }
    }

    /// The outage, for `/health`: since when and why.
    pub(crate) fn outage_summary(&self) -> Option<(Timestamp, String, u64)> {
        self.outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|o| (o.since, o.cause.clone(), o.refused))
    }

    /// Counts a request refused because the ledger is down (for the
    /// outage's alert).
    pub(crate) fn count_refused(&self) {
        if let Some(o) = self
            .outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            o.refused += 1;
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
            self.warn_outage();
            self.try_recover().await;
        }
        let now = Timestamp::now();
        for entry in self.denials.drain(now, everything) {
            let _ = self.append(entry).await;
        }
        for entry in self.holds.expire() {
            let _ = self.append(entry).await;
        }
        // Key use goes to the key file once a minute, not per request.
        let used: HashMap<String, Timestamp> = {
            let mut last = self
                .key_use_flushed
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if everything || last.elapsed() >= Duration::from_secs(60) {
                *last = std::time::Instant::now();
                std::mem::take(&mut *self.key_use.lock().unwrap_or_else(|e| e.into_inner()))
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
            Ok(l) => l,
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
        // Written one by one: those written are not owed any more, so a
        // failure part-way never writes one twice at the next attempt. And
        // a response whose batch failed to sync may still have reached the
        // disk (the write went through, the sync did not): recovery kept
        // it, so it is not written again.
        let ledger = reopened.clone();
        let unwritten = tokio::task::spawn_blocking(move || {
            let mut survived = std::collections::HashSet::new();
            let from = ledger.size().saturating_sub(missing.len() as u64 * 4 + 64);
            let _ = ledger.read_from(from, &mut |e| {
                if let EntryKind::Response { request_id, .. } = e.kind {
                    survived.insert(request_id);
                }
            });
            let missing: Vec<EntryKind> = missing
                .into_iter()
                .filter(|e| {
                    !matches!(e, EntryKind::Response { request_id, .. } if survived.contains(request_id))
                })
                .collect();
            let mut rest = missing.into_iter();
            for (i, e) in rest.by_ref().enumerate() {
                if let Err(err) = ledger.append(e.clone()) {
                    tracing::warn!(error = %err, written = i, "owed ledger entries not all written yet");
                    return std::iter::once(e).chain(rest).collect::<Vec<_>>();
                }
            }
            Vec::new()
        })
        .await
        .unwrap_or_default();
        if !unwritten.is_empty() {
            if let Some(o) = self
                .outage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                o.missing = unwritten;
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
    pub(crate) fn quarantine_of(&self, account: &str) -> Option<Quarantine> {
        let mtime = file_stamp(self.status.path());
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
    pub(crate) fn quarantine_now(&self, account: &str, reason: &str) {
        let mut q = self.quarantined.write().unwrap_or_else(|e| e.into_inner());
        q.0.entry(account.to_string())
            .or_insert_with(|| Quarantine {
                since: Timestamp::now(),
                reason: reason.to_string(),
                by: "gateway".into(),
            });
    }

    /// Checks a presented key against the key file as it is now: if the
    /// file changed since it was loaded (one `stat` per request), it is
    /// re-read first, so a key issued or revoked a moment ago by
    /// `keys issue`/`keys revoke` counts from the next request.
    pub(crate) fn check_key(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<crate::keys::KeyRecord, &'static str> {
        let stamp = file_stamp(self.keys.path());
        if self.ring.read().unwrap_or_else(|e| e.into_inner()).1 != stamp {
            match self.keys.ring() {
                Ok(ring) => *self.ring.write().unwrap_or_else(|e| e.into_inner()) = (ring, stamp),
                // Keep the keys last read: a half-written or unreadable file
                // must not lock every client out, nor resurrect a key.
                Err(e) => tracing::warn!(error = %e, "could not reload client keys"),
            }
        }
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        match ring.0.check(presented, now) {
            Presented::Valid(r) => Ok(r.clone()),
            Presented::Expired(_) => Err("expired key"),
            Presented::Revoked(_) => Err("revoked key"),
            Presented::Unknown => Err("unknown key"),
        }
    }
}
