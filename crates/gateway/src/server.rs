//! The gateway's lifecycle: building its state (`crate::state`),
//! starting the client and admin listeners, the once-a-second
//! housekeeping (denied-entry flushes, hold expiry, key-use records,
//! reopening a failed ledger), and graceful shutdown. The request path
//! itself is `crate::request`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use governance::alerts::Alerts;
use governance::clock_sync::SyncProbe;
use ledger::{EntryKind, LedgerError};
use secrets::{FingerprintKey, SecretStore};
use tokio::sync::oneshot;
use warden_config::LoadedConfig;

use crate::admin;
use crate::keys::KeyFile;
use crate::paths;
use crate::state::{Gateway, Parts, StateError, config_change_reason};

pub use crate::state::LedgerOpener;

/// What the gateway is given to run: the loaded configuration and the
/// services it writes to.
pub struct Services {
    /// `warden.toml` as loaded and validated; `/admin/reload` replaces it.
    pub config: LoadedConfig,
    /// The secrets store holding the accounts' tokens (and where keys
    /// issued through the admin listener may be delivered).
    pub store: Arc<dyn SecretStore>,
    /// The installation's HMAC key: it fingerprints tokens (to spot a real
    /// REDCap token presented as a client key) and MACs the bodies the
    /// ledger entries describe.
    pub fingerprint: FingerprintKey,
    /// Opens the ledger, at start and again to reopen it after a failure.
    pub open_ledger: LedgerOpener,
    /// Where the key file lives (normally from the configuration).
    pub keys: KeyFile,
    /// Who started the gateway (recorded in the start and stop entries).
    pub operator: String,
    /// Where alerts go besides the ledger (`[alerts]`:
    /// [`Alerts::from_config`]); the same the ledger opener was given, so
    /// the writer's own alerts and the gateway's go through one sender.
    pub alerts: Alerts,
    /// Asks whether the host clock is synchronised, at start
    /// ([`governance::clock_sync::SystemProbe`] outside tests).
    pub clock: Arc<dyn SyncProbe>,
}

/// Why the gateway did not start. Nothing is served and no client request
/// was forwarded; fix the cause and start again.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The ledger could not be opened. The gateway never serves without
    /// one: a request it cannot record is not forwarded.
    #[error("opening the ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A listener could not be opened: the address is in use, or not this
    /// host's; change `[gateway] listen` or `admin_listen`, or stop what
    /// holds it.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway's shared state could not be built (client keys,
    /// quarantines, the REDCap client, the admin credential).
    #[error(transparent)]
    State(#[from] StateError),
    /// `[gateway] tls_cert` or `tls_key` could not be loaded.
    #[error(
        "loading the TLS certificate {cert} and key {key}: {source}; fix: point [gateway] tls_cert and tls_key at PEM files the gateway can read"
    )]
    Tls {
        /// The certificate file.
        cert: std::path::PathBuf,
        /// The private key file.
        key: std::path::PathBuf,
        /// What went wrong reading or parsing them.
        #[source]
        source: std::io::Error,
    },
}

/// A running gateway; [`RunningGateway::shutdown`] stops it gracefully.
pub struct RunningGateway {
    /// Where the client listener is bound (the real port when
    /// `[gateway] listen` asked for port 0).
    pub addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    shared: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// With the PostgreSQL ledger, the thread following the shared state
    /// (`crate::cluster`); stopped at shutdown.
    follower: Option<crate::cluster::Follower>,
}

/// Starts the client and admin listeners.
pub async fn start(services: Services) -> Result<RunningGateway, StartError> {
    let config = services.config.clone();
    let gw = &config.config.gateway;
    let shared = begin(services).await?;
    let app = Clients(shared.clone());
    let admin = admin::routes().with_state(shared.clone());
    let (listener, addr) = bind(gw.listen).await?;
    let (admin_listener, admin_addr) = bind(gw.admin_listen).await?;

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (admin_stop_tx, admin_stop_rx) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stop_rx.await;
        let _ = admin_stop_tx.send(());
    };
    let serve = serve_clients(&config, listener, app, stopped).await?;
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
                housekeeping(&shared, false).await;
            }
        })
    };
    let follower = follow_shared_state(&shared);
    Ok(RunningGateway {
        addr,
        admin_addr,
        shared,
        stop: Some(stop_tx),
        tasks: vec![serve, admin_serve, ticker],
        follower,
    })
}

/// Opens the ledger and builds the state; marks what a crashed last run
/// left, writes the `start` entry, whether the host clock is synchronised,
/// and this run's marker.
async fn begin(services: Services) -> Result<Arc<Gateway>, StartError> {
    let Services {
        config,
        store,
        fingerprint,
        open_ledger,
        keys,
        operator,
        alerts,
        clock,
    } = services;
    let opener = open_ledger.clone();
    let ledger = tokio::task::spawn_blocking(move || opener())
        .await
        .expect("the opening task panicked")?;
    let shared = Arc::new(Gateway::new(Parts {
        config: config.clone(),
        store,
        fingerprint,
        ledger,
        open_ledger,
        keys,
        operator,
        alerts,
    })?);
    shared.load_token_fingerprints().await;
    let marker = paths::run_marker(&config);
    let start_seq = crate::restart::recover_from_last_run(&shared, &marker).await;
    shared
        .ledger()
        .append(EntryKind::Admin {
            operator: shared.operator().to_string(),
            action: "start".into(),
            target: config.path.display().to_string(),
            reason: config_change_reason(&config),
        })
        .await
        .ok();
    record_clock(&shared, clock).await;
    if let Err(e) = crate::restart::write_marker(&marker, start_seq) {
        tracing::warn!(error = %e, path = %marker.display(), "could not write the gateway's run marker: an unclean stop would go unmarked");
    }
    Ok(shared)
}

/// Whether the host clock is synchronised, as an `admin` entry
/// (`clock.check`); when it is not, or cannot be told, an `alert` too
/// (`clock.unsynchronised`): ledger times are only as good as this clock.
async fn record_clock(gw: &Gateway, probe: Arc<dyn SyncProbe>) {
    let sync = match tokio::task::spawn_blocking(move || probe.probe()).await {
        Ok(s) => s,
        Err(e) => governance::clock_sync::ClockSync::Unknown {
            tried: format!("the probe failed: {e}"),
        },
    };
    let said = sync.describe();
    let ledger = gw.ledger();
    let _ = ledger
        .append(EntryKind::Admin {
            operator: gw.operator().to_string(),
            action: "clock.check".into(),
            target: "host clock".into(),
            reason: said.clone(),
        })
        .await;
    if !sync.is_synchronised() {
        tracing::warn!("{said}");
        let _ = ledger
            .append(EntryKind::Alert {
                code: governance::alerts::CLOCK_UNSYNCHRONISED.into(),
                message: said,
            })
            .await;
    }
}

/// A listener on `addr`, and the address it got.
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// Serves the client listener until `stopped`: one server for plain HTTP
/// and TLS alike, with the connection bounds of [`crate::connections`].
async fn serve_clients(
    config: &LoadedConfig,
    listener: tokio::net::TcpListener,
    service: Clients,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let gw = &config.config.gateway;
    let bind_error = |source| StartError::Bind {
        addr: gw.listen,
        source,
    };
    let std_listener = listener.into_std().map_err(bind_error)?;
    let mut server = axum_server::from_tcp(std_listener)
        .map_err(bind_error)?
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
    Ok(match (&gw.tls_cert, &gw.tls_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (config.resolve(cert), config.resolve(key));
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
    })
}

impl RunningGateway {
    /// Plugs in what gathers the dashboard's evidence (`serve` does, with
    /// the report's gathering); until then the dashboard shows the
    /// gateway's own counters only. `false` if a source was already set.
    pub fn set_evidence_source(&self, source: Arc<dyn crate::state::EvidenceSource>) -> bool {
        self.shared.evidence().set(source)
    }

    /// What `POST /admin/reload` does, asked from inside the process
    /// (`serve` on SIGHUP): re-reads `warden.toml` and the key and
    /// account-status files, forgets cached tokens, and records an `admin`
    /// `reload` entry by `operator` whose reason names `trigger` (e.g.
    /// `SIGHUP`). A file that does not load changes nothing and is the
    /// error.
    pub async fn reload(
        &self,
        operator: &str,
        trigger: &str,
    ) -> Result<crate::admin::Reloaded, warden_config::LoadError> {
        crate::admin::apply_reload(&self.shared, operator, Some(trigger)).await
    }

    /// Stops accepting, lets requests in flight finish, writes what is
    /// pending (denials, a stop entry) and signs a final checkpoint.
    pub async fn shutdown(mut self) -> Result<(), LedgerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(follower) = self.follower.take() {
            let _ = tokio::task::spawn_blocking(move || drop(follower)).await;
        }
        let ticker = self.tasks.pop();
        if let Some(t) = ticker {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        housekeeping(&self.shared, true).await;
        let ledger = self.shared.ledger();
        // A client may have its last byte while its answer's `response`
        // entry is still being made (the record ids and HMAC finish on
        // threads of their own): wait for those before closing.
        let owed = ledger.settle(std::time::Duration::from_secs(30)).await;
        if owed > 0 {
            tracing::error!(
                owed,
                "stopping with streamed answers whose response entries were not made; the next start records their requests as interrupted"
            );
        }
        ledger
            .append(EntryKind::Admin {
                operator: self.shared.operator().to_string(),
                action: "stop".into(),
                target: self.shared.applied().config.path.display().to_string(),
                reason: format!("{} requests served", self.shared.requests()),
            })
            .await
            .ok();
        if let Some(ledger) = ledger.take() {
            tokio::task::spawn_blocking(move || ledger.close())
                .await
                .expect("the closing task panicked")?;
        }
        // Stopped cleanly: the next start has nothing to mark (unless an
        // answer's entry was never made: then it marks that request).
        if owed == 0 {
            crate::restart::remove_marker(&paths::run_marker(&self.shared.applied().config));
        }
        Ok(())
    }

    /// Whether the ledger failed and requests are being refused.
    pub fn degraded(&self) -> bool {
        self.shared.ledger().degraded()
    }
}

/// Once a second: flush finished minutes of denials and key use; end holds
/// that ran out; try to reopen a failed ledger. At shutdown, flush
/// everything.
async fn housekeeping(gw: &Gateway, everything: bool) {
    let ledger = gw.ledger();
    if ledger.degraded() {
        ledger.warn_outage();
        ledger.try_recover().await;
    }
    let now = jiff::Timestamp::now();
    for entry in gw.denials().drain(now, everything) {
        let _ = ledger.append(entry).await;
    }
    let mut expired = false;
    for entry in gw.holds().expire() {
        expired = true;
        let _ = ledger.append(entry).await;
    }
    if expired
        && let Some(link) = gw.cluster()
        && let Err(e) = link.holds.forget_expired(now)
    {
        tracing::warn!(error = %e, "could not remove the holds that ran out from PostgreSQL");
    }
    gw.keys().flush_use(everything);
}

/// With the PostgreSQL ledger, starts the thread that keeps this
/// gateway's copy of the shared state current (`crate::cluster`): on each
/// notification, and every few seconds whatever it heard.
fn follow_shared_state(gw: &Arc<Gateway>) -> Option<crate::cluster::Follower> {
    let link = gw.cluster()?;
    let weak = Arc::downgrade(gw);
    let runtime = tokio::runtime::Handle::current();
    Some(crate::cluster::Follower::start(
        link.cluster.database(),
        crate::cluster::REREAD,
        move |changed| {
            if let Some(gw) = weak.upgrade() {
                follow(&gw, changed, &runtime);
            }
        },
    ))
}

/// Re-reads what `changed` names (on the follower's thread: blocking
/// reads are its job; a reload another gateway announced runs on the
/// runtime).
fn follow(gw: &Gateway, changed: crate::cluster::Changed<'_>, runtime: &tokio::runtime::Handle) {
    use crate::cluster::{Changed, names};
    let Some(link) = gw.cluster() else {
        return;
    };
    let wants = |name: &str| changed == Changed::All || changed == Changed::One(name);
    let mut confirmed = true;
    if wants(names::CLIENT_KEYS)
        && let Err(e) = gw.keys().try_reload()
    {
        tracing::warn!(error = %e, "could not re-read the client keys from PostgreSQL");
        confirmed = false;
    }
    if wants(names::ACCOUNT_STATUS)
        && let Err(e) = gw.quarantines().try_reload()
    {
        tracing::warn!(error = %e, "could not re-read the account status from PostgreSQL");
        confirmed = false;
    }
    if wants(names::CUTOVER_HOLDS) {
        let read_at = jiff::Timestamp::now();
        match link.holds.in_force(read_at) {
            Ok(shared) => follow_holds(gw, &shared, read_at),
            Err(e) => {
                tracing::warn!(error = %e, "could not re-read the cut-over holds from PostgreSQL");
                confirmed = false;
            }
        }
    }
    if wants(names::RELOAD) {
        match link.reloads.asked() {
            Ok(Some(asked)) => runtime.block_on(crate::admin::follow_reload(gw, &asked)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read the reload generation from PostgreSQL");
                confirmed = false;
            }
        }
    }
    if changed == Changed::All && confirmed {
        link.confirmed.mark();
    }
}

/// Holds what the shared holds hold, and releases what they no longer do
/// (forgetting cached tokens: the new one is in the store). A hold that
/// started after `read_at` is not in what was read, and stays.
fn follow_holds(
    gw: &Gateway,
    shared: &std::collections::BTreeMap<String, crate::cluster::SharedHold>,
    read_at: jiff::Timestamp,
) {
    let now = jiff::Timestamp::now();
    let limit = gw.applied().config.config.gateway.cutover_hold;
    for (account, hold) in shared {
        if let Some(left) = hold.left(now) {
            gw.holds().mirror(account, hold.since, left, limit);
        }
    }
    let ended: Vec<String> = gw
        .holds()
        .list()
        .into_iter()
        .filter(|(account, since)| {
            *since < read_at && shared.get(account).is_none_or(|h| h.since != *since)
        })
        .map(|(account, _)| account)
        .collect();
    if !ended.is_empty() {
        // Forgotten before the waiters go on, so they read the new token.
        gw.tokens().clear();
    }
    for account in ended {
        gw.holds().release(&account);
    }
}

/// The client listener's connections: each gets a [`ClientService`] that
/// knows its peer's address.
#[derive(Clone)]
struct Clients(Arc<Gateway>);

impl tower_service::Service<SocketAddr> for Clients {
    type Response = ClientService;
    type Error = Infallible;
    type Future = std::future::Ready<Result<ClientService, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, peer: SocketAddr) -> Self::Future {
        std::future::ready(Ok(ClientService {
            gw: Arc::clone(&self.0),
            peer,
        }))
    }
}

/// The client listener's one route: REDCap's `/api/` (and `/api`), any
/// method (the request path answers all but `POST` with REDCap's 501), to
/// [`crate::request::api`]; any other path is 404 with an empty body. No
/// router: it would cost a few allocations and a boxed future per request
/// for one route (#10 item 5).
#[derive(Clone)]
struct ClientService {
    gw: Arc<Gateway>,
    peer: SocketAddr,
}

impl tower_service::Service<Request<hyper::body::Incoming>> for ClientService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        if !matches!(request.uri().path(), "/api/" | "/api") {
            return Box::pin(std::future::ready(
                Ok(StatusCode::NOT_FOUND.into_response()),
            ));
        }
        let (gw, peer) = (Arc::clone(&self.gw), self.peer);
        Box::pin(async move { Ok(crate::request::api(&gw, peer, request).await) })
    }
}
