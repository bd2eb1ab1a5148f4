//! The state every request shares: one type, [`Gateway`], owning each
//! part, and each part saying what its lock guards, who writes it and who
//! reads it. Handlers and the request path's steps call the parts'
//! methods; no lock is taken outside this module and the leaf types it
//! owns ([`TokenCache`], [`Upstream`], [`Denials`], [`Metrics`]).
//!
//! Files other processes change while the gateway runs (client keys,
//! account status) are each one [`watched::Watched`] value: re-read when
//! the file's stamp moves, the stamp taken before the read.
//!
//! Modules import in one direction: handlers ([`crate::request::api`],
//! [`crate::admin`], [`crate::server`]) -> steps ([`crate::request`]'s
//! steps, [`crate::record_field`], [`crate::restart`]) -> this state ->
//! the leaf types.

mod admin_token;
mod client_keys;
mod config;
mod evidence;
mod holds;
mod ledger;
mod quarantines;
mod reachability;
mod record_fields;
mod watched;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use secrets::{FingerprintKey, SecretStore};
use warden_config::LoadedConfig;

use crate::denials::Denials;
use crate::keys::KeyFile;
use crate::metrics::Metrics;
use crate::paths;
use crate::tokens::TokenCache;
use crate::upstream::{Upstream, UpstreamError};

pub use admin_token::{AdminToken, load_or_create_token};
pub(crate) use client_keys::ClientKeys;
pub(crate) use config::{Applied, config_change_reason, remember_applied};
pub(crate) use evidence::EvidenceSlot;
pub use evidence::EvidenceSource;
pub(crate) use holds::{Holds, Released};
pub use ledger::LedgerOpener;
pub(crate) use ledger::{LedgerLink, Owed};
pub(crate) use quarantines::{Quarantines, Refusal};
pub(crate) use reachability::{Reachability, Service};
pub(crate) use record_fields::RecordFields;

/// Why the gateway's state could not be built at start (a part of
/// [`StartError`](crate::StartError)).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The client key file could not be read or is damaged; the
    /// [`KeyError`](crate::keys::KeyError) says which and what to do.
    #[error("{0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The shared state in PostgreSQL could not be named or read.
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The shared state in PostgreSQL could not be read at start.
    #[error("the shared state in PostgreSQL: {0}; fix: check that PostgreSQL answers")]
    Shared(#[from] durable::DocumentError),
    /// The account-status file (the quarantines) could not be read or is
    /// damaged.
    #[error("{0}")]
    Status(#[from] governance::accounts::StatusError),
    /// The HTTP client for REDCap could not be built.
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The admin credential (`[gateway] admin_token_file`) could not be
    /// read, or created on a first start.
    #[error("the admin credential {path}: {source}; fix: check the data directory's permissions")]
    AdminToken {
        /// The credential file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What the gateway's state is built from.
pub(crate) struct Parts {
    pub config: LoadedConfig,
    pub store: Arc<dyn SecretStore>,
    pub fingerprint: FingerprintKey,
    pub ledger: Arc<dyn ::ledger::LedgerBackend>,
    pub open_ledger: LedgerOpener,
    pub keys: KeyFile,
    pub operator: String,
    pub alerts: governance::alerts::Alerts,
}

/// The state every request shares. Each field's lock story is on its
/// type; here, who uses it.
pub(crate) struct Gateway {
    /// Who started the gateway (the start and stop entries). Never changes.
    operator: String,
    /// The configuration and policy in force ([`config::InForce`]):
    /// replaced by a reload, read by every request.
    config: config::InForce,
    /// Fingerprints tokens and answers for the ledger. Never changes.
    fingerprint: FingerprintKey,
    /// The accounts' tokens from the secrets store ([`TokenCache`], one
    /// `Mutex`): filled by forwarding, cleared by reload and hold release.
    tokens: TokenCache,
    /// Fingerprint -> account of the accounts' current tokens, to tell a
    /// client presenting a real REDCap token. Lock story: `RwLock`,
    /// written at start and reload, read on each refused key.
    token_holders: RwLock<HashMap<String, String>>,
    /// The client keys ([`ClientKeys`]).
    keys: ClientKeys,
    /// Quarantined accounts ([`Quarantines`]).
    quarantines: Quarantines,
    /// The ledger and its outage ([`LedgerLink`]); an `Arc` because a
    /// streamed answer writes its `response` entry after its request.
    ledger: Arc<LedgerLink>,
    /// REDCap, through the outbound limiter ([`Upstream`]: one `Mutex`
    /// over the sliding window, an atomic for a ban): every call to
    /// REDCap takes a place in the window; `/health` reads it.
    upstream: Upstream,
    /// Refusals counted per source and minute ([`Denials`], one `Mutex`):
    /// written by each refusal, drained by housekeeping.
    denials: Denials,
    /// Cut-over holds ([`Holds`]).
    holds: Holds,
    /// Record id fields of the accounts' projects ([`RecordFields`]).
    record_fields: RecordFields,
    /// Requests forwarded since start (atomic; `/health`, the stop entry).
    requests: AtomicU64,
    /// `/metrics` counters ([`Metrics`]: atomics, one `Mutex` for counts
    /// by status).
    metrics: Metrics,
    /// The admin listener's bearer credential. Never changes.
    admin_token: AdminToken,
    /// The dashboard's evidence ([`EvidenceSlot`]): its source set once
    /// after start, the last gathering cached.
    evidence: EvidenceSlot,
    /// Whether REDCap and the secrets store answer ([`Reachability`]).
    reachability: Reachability,
    /// With the PostgreSQL ledger: the shared holds and reloads, and when
    /// the shared documents were last confirmed ([`crate::cluster::Link`]).
    /// Never replaced.
    cluster: Option<crate::cluster::Link>,
}

impl Gateway {
    /// Builds the state: reads the key and status files and the admin
    /// credential.
    pub(crate) fn new(parts: Parts) -> Result<Gateway, StateError> {
        let Parts {
            config,
            store,
            fingerprint,
            ledger,
            open_ledger,
            keys,
            operator,
            alerts,
        } = parts;
        let gw = &config.config.gateway;
        let admin_token_path = paths::admin_token_file(&config);
        let admin_token =
            load_or_create_token(&admin_token_path).map_err(|source| StateError::AdminToken {
                path: admin_token_path.clone(),
                source,
            })?;
        let cluster = crate::cluster::Cluster::from_config(&config)?
            .map(crate::cluster::Link::new)
            .transpose()?;
        Ok(Gateway {
            cluster,
            operator,
            tokens: TokenCache::new(store, gw.token_cache),
            fingerprint,
            token_holders: RwLock::new(HashMap::new()),
            keys: ClientKeys::new(keys)?,
            quarantines: Quarantines::new(crate::cluster::status_file(&config)?)?,
            ledger: Arc::new(LedgerLink::new(ledger, open_ledger, alerts)),
            upstream: Upstream::for_config(&config)?,
            denials: Denials::default(),
            holds: Holds::default(),
            record_fields: RecordFields::default(),
            requests: AtomicU64::new(0),
            metrics: Metrics::default(),
            admin_token,
            evidence: EvidenceSlot::default(),
            reachability: Reachability::default(),
            config: config::InForce::new(config),
        })
    }

    /// The configuration and policy in force, for one request or call.
    pub(crate) fn applied(&self) -> Arc<Applied> {
        self.config.get()
    }

    /// Puts a reloaded configuration in force.
    pub(crate) fn apply(&self, config: LoadedConfig) {
        self.config.replace(config);
    }

    pub(crate) fn operator(&self) -> &str {
        &self.operator
    }

    pub(crate) fn fingerprint(&self) -> &FingerprintKey {
        &self.fingerprint
    }

    pub(crate) fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    pub(crate) fn keys(&self) -> &ClientKeys {
        &self.keys
    }

    pub(crate) fn quarantines(&self) -> &Quarantines {
        &self.quarantines
    }

    pub(crate) fn ledger(&self) -> &Arc<LedgerLink> {
        &self.ledger
    }

    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub(crate) fn denials(&self) -> &Denials {
        &self.denials
    }

    pub(crate) fn holds(&self) -> &Holds {
        &self.holds
    }

    pub(crate) fn record_fields(&self) -> &RecordFields {
        &self.record_fields
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn reachability(&self) -> &Reachability {
        &self.reachability
    }

    pub(crate) fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    pub(crate) fn evidence(&self) -> &EvidenceSlot {
        &self.evidence
    }

    /// The shared state in PostgreSQL, with the PostgreSQL ledger.
    pub(crate) fn cluster(&self) -> Option<&crate::cluster::Link> {
        self.cluster.as_ref()
    }

    /// Counts a request forwarded.
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests forwarded since start.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The account whose current REDCap token has fingerprint `fp`.
    pub(crate) fn token_holder(&self, fp: &str) -> Option<String> {
        self.token_holders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(fp)
            .cloned()
    }

    /// Reads every account's current token from the store and keeps their
    /// fingerprints (at start and reload).
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
            .token_holders
            .write()
            .unwrap_or_else(|e| e.into_inner()) = map;
    }
}
