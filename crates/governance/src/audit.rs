//! The tool's own changes, recorded in the ledger.
//!
//! Every change redcap-warden makes — a secret written, a client key issued
//! or revoked, rights applied, a token rotated — is a ledger entry naming
//! the operator and the reason, appended through an [`EntrySink`]. This
//! crate's own sink is the ledger the process holds; while another process
//! (a running gateway) holds it, [`AuditTrail::open`] says so
//! ([`AuditError::Held`]) and the caller plugs in a sink that hands the
//! entries to that process (the gateway crate's admin client): governance
//! knows no HTTP path.
//!
//! A command opens the ledger *before* it changes anything, so a change is
//! never made when it could not be recorded. Opening checks the ledger
//! against its witnesses ([`crate::witness`]) and the signing key against
//! the pin ([`crate::signing_key`]).

use std::path::PathBuf;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ledger::{
    Adoption, EntryKind, FileWitness, Ledger, LedgerBackend, LedgerError, LedgerOptions, Witness,
};
use secrets::{SecretStore, StoreError};
use warden_config::{LedgerStore, LoadedConfig};
use zeroize::Zeroizing;

use crate::alerts::{AlertingWitness, Alerts};
use crate::clock::{Clock, SystemClock};
use crate::signing_key::{self, SIGNING_KEY_SECRET};
use crate::witness::{self, ReadWitness, StoreWitness};

/// Why a change could not be recorded: and so, by the rule that every change
/// is a ledger entry, why it was not made.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `warden.toml` has no `[ledger]` section.
    #[error(
        "{config} has no [ledger] section, and every change redcap-warden makes must be recorded in the ledger; fix: set up with `redcap-warden init`"
    )]
    NotConfigured {
        /// The configuration file.
        config: PathBuf,
    },
    /// The secrets store could not give the signing key.
    #[error("reading the ledger signing key `{SIGNING_KEY_SECRET}`: {0}")]
    Key(#[source] StoreError),
    #[error(
        "the ledger signing key in the secrets store is damaged ({0}); fix: restore the store from backup"
    )]
    /// The stored signing key does not decode (not a 32-byte Ed25519 seed).
    BadKey(String),
    #[error(
        "the ledger signing key in the secrets store does not match the verifier key pinned in {config}; refusing to sign with it. fix: restore the matching store or warden.toml from backup"
    )]
    /// The stored key is not the one `warden.toml` pins.
    KeyMismatch {
        /// The configuration file holding the pin.
        config: PathBuf,
    },
    #[error(
        "an interrupted signing-key rotation was finished (recorded in the ledger), but {config} could not be updated to pin its key; fix: set [ledger] verifier_key in {config} to {verifier}"
    )]
    /// A recovered rotation could not rewrite the pin in `warden.toml`.
    NotPinned {
        /// The configuration file to edit.
        config: PathBuf,
        /// The verifier key to pin there.
        verifier: String,
    },
    /// Another process holds the ledger: hand the entries to it (see
    /// [`AuditTrail::through`]).
    #[error("the ledger {} is held by another process", dir.display())]
    Held {
        /// The ledger directory.
        dir: PathBuf,
    },
    /// The ledger refused or failed the entry (it fails closed).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The blocking task that ran the ledger write panicked or was cancelled.
    #[error("the ledger writer task failed: {0}")]
    Task(String),
    /// A running gateway, holding the ledger, refused or failed the entry.
    #[error("{0}")]
    Gateway(String),
}

/// Where a trail's entries go: the ledger this process holds, or a process
/// that holds it (a running gateway's admin listener).
#[async_trait::async_trait]
pub trait EntrySink: Send + Sync {
    /// Appends one entry; returns once it is durable.
    async fn append(&self, kind: EntryKind) -> Result<(), AuditError>;

    /// Ends the writing (a local ledger signs a final checkpoint and is
    /// released; a process that holds the ledger signs its own).
    async fn close(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// The ledger this process holds, and where the alerts among its entries
/// go besides ([`crate::alerts`]; a process that holds the ledger for us
/// sends those of the entries we hand it).
struct HeldLedger {
    ledger: Arc<dyn LedgerBackend>,
    alerts: Alerts,
}

#[async_trait::async_trait]
impl EntrySink for HeldLedger {
    async fn append(&self, kind: EntryKind) -> Result<(), AuditError> {
        let ledger = self.ledger.clone();
        let raised = if self.alerts.is_on() {
            crate::alerts::alert_of(&kind)
        } else {
            None
        };
        let outcome = blocking(move || ledger.append(kind)).await;
        if let Some(r) = raised {
            let not_recorded = outcome.as_ref().err().map(ToString::to_string);
            self.alerts.raise(r, not_recorded.as_deref());
        }
        outcome?;
        Ok(())
    }

    async fn close(&self) -> Result<(), AuditError> {
        let ledger = self.ledger.clone();
        let closed = blocking(move || ledger.close()).await;
        // A command's alerts go out before it exits (a bounded wait).
        let alerts = self.alerts.clone();
        let _ = tokio::task::spawn_blocking(move || alerts.flush(crate::alerts::FLUSH_LIMIT)).await;
        closed?;
        Ok(())
    }
}

/// Runs ledger work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, AuditError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::Task(e.to_string()))??)
}

/// What else a writer is opened with (see [`open_writer_with`]).
pub struct WriterOptions {
    /// Keep the witness in this secrets store
    /// ([`witness::WITNESS_SECRET`]): checked on open and updated while the
    /// writer signs. Needs a tokio runtime (the writer is opened from one
    /// of its blocking threads).
    pub store: Option<Arc<dyn SecretStore>>,
    /// The time stamped on the witness's versions in `store`.
    pub clock: Arc<dyn Clock>,
    /// More witnesses to check and keep up to date.
    pub witnesses: Vec<Arc<dyn Witness>>,
    /// Adopt what the writer would otherwise refuse (`ledger adopt-unsigned`).
    pub adopt: Option<Adoption>,
    /// Where the alerts the writer records by itself (a witness failing, a
    /// recovery on open) go besides the ledger ([`crate::alerts`]).
    pub alerts: Alerts,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            store: None,
            clock: Arc::new(SystemClock),
            witnesses: Vec::new(),
            adopt: None,
            alerts: Alerts::off(),
        }
    }
}

/// Opens the configured ledger for writing: the file ledger in
/// `[ledger] dir`, or the PostgreSQL ledger of `[ledger.postgres]`, with
/// the witness file of `[ledger] witness_file` if one is configured.
/// Blocking; call it from a blocking thread.
pub fn open_writer(
    config: &LoadedConfig,
    key: SigningKey,
    checkpoint_interval: Option<std::time::Duration>,
) -> Result<Arc<dyn LedgerBackend>, LedgerError> {
    open_writer_with(config, key, checkpoint_interval, WriterOptions::default())
}

/// The witness file of `[ledger] witness_file`, if one is configured.
pub fn witness_file(config: &LoadedConfig) -> Option<PathBuf> {
    let section = config.config.ledger.as_ref()?;
    section.witness_file.as_ref().map(|f| config.resolve(f))
}

/// [`open_writer`], with the witness in the secrets store and an adoption
/// as `options` asks.
pub fn open_writer_with(
    config: &LoadedConfig,
    key: SigningKey,
    checkpoint_interval: Option<std::time::Duration>,
    options: WriterOptions,
) -> Result<Arc<dyn LedgerBackend>, LedgerError> {
    let section = config
        .config
        .ledger
        .as_ref()
        .ok_or_else(|| LedgerError::NotConfigured {
            config: config.path.clone(),
        })?;
    let mut witnesses: Vec<Arc<dyn Witness>> = Vec::new();
    if let Some(file) = witness_file(config) {
        witnesses.push(Arc::new(FileWitness::new(&file)));
    }
    if let Some(store) = options.store {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LedgerError::NoRuntime)?;
        witnesses.push(Arc::new(StoreWitness {
            place: witness::store_witness_place(&*store),
            store,
            runtime,
            every: witness::store_witness_interval(config.config.secrets.backend),
            clock: options.clock,
        }));
    }
    witnesses.extend(options.witnesses);
    let alerts = options.alerts;
    let witnesses = witnesses
        .into_iter()
        .map(|w| AlertingWitness::wrap(w, &alerts))
        .collect();
    let adopt = options.adopt;
    match &section.store {
        LedgerStore::File => {
            let ledger = Ledger::open(
                Arc::new(durable::OsFs),
                &config.resolve(&section.dir),
                key,
                LedgerOptions {
                    checkpoint_interval,
                    witnesses,
                    adopt,
                    ..LedgerOptions::default()
                },
            )?;
            if let Some(r) = ledger.recovery() {
                alerts.raise(crate::alerts::recovered(r), None);
            }
            Ok(Arc::new(ledger))
        }
        LedgerStore::Postgres(pg) => {
            let url = Zeroizing::new(pg.connection_string(|p| config.resolve(p)).map_err(
                |detail| LedgerError::Database {
                    op: "read the connection string",
                    detail,
                },
            )?);
            // The first open moves the file ledger (written by `init`)
            // into the database.
            Ok(Arc::from(ledger::open_postgres_with(
                &url,
                &pg.schema,
                key,
                checkpoint_interval,
                Some(&config.resolve(&section.dir)),
                witnesses,
                adopt,
            )?))
        }
    }
}

/// `[ledger]`, which every change needs.
pub fn ledger_section(config: &LoadedConfig) -> Result<&warden_config::LedgerSection, AuditError> {
    config
        .config
        .ledger
        .as_ref()
        .ok_or_else(|| AuditError::NotConfigured {
            config: config.path.clone(),
        })
}

/// The ledger directory named in the configuration.
pub fn ledger_dir(config: &LoadedConfig) -> Result<PathBuf, AuditError> {
    Ok(config.resolve(&ledger_section(config)?.dir))
}

/// The trail a command records its changes in: entries are appended
/// durably, and closing ends the writing (see [`EntrySink::close`]).
pub struct AuditTrail {
    sink: Box<dyn EntrySink>,
}

impl AuditTrail {
    /// Opens the ledger for writing (taking its lock) before any change.
    /// [`AuditError::Held`] means another process (a running gateway)
    /// holds it: hand the entries to that process with [`AuditTrail::through`].
    ///
    /// The signing key is loaded first, which finishes or rolls back a key
    /// rotation that stopped half-way ([`signing_key::load_signing_key`]).
    /// The ledger is checked against its witnesses (the one in `store`
    /// included) and, once open, the witness in `store` is brought up to
    /// the last checkpoint. It signs every second while the command runs,
    /// so a long command never leaves a long unsigned tail.
    pub async fn open(
        config: &LoadedConfig,
        store: &dyn SecretStore,
        clock: &dyn Clock,
    ) -> Result<AuditTrail, AuditError> {
        let (key, _) = signing_key::load_signing_key(config, store).await?;
        let read = Arc::new(ReadWitness::read(store).await);
        let cfg = config.clone();
        let witness: Arc<dyn Witness> = read.clone();
        let alerts = Alerts::from_config(config, store).await;
        let writer_alerts = alerts.clone();
        let opened = tokio::task::spawn_blocking(move || {
            open_writer_with(
                &cfg,
                key,
                Some(ledger::CHECKPOINT_INTERVAL),
                WriterOptions {
                    witnesses: vec![witness],
                    alerts: writer_alerts,
                    ..WriterOptions::default()
                },
            )
        })
        .await
        .map_err(|e| AuditError::Task(e.to_string()))?;
        let ledger = match opened {
            Ok(ledger) => ledger,
            Err(LedgerError::Locked { dir }) => return Err(AuditError::Held { dir }),
            Err(e) => return Err(e.into()),
        };
        let trail = AuditTrail::through(Box::new(HeldLedger { ledger, alerts }));
        if let Some(note) = read.take_written()
            && let Err(e) = witness::write_store_witness(store, &note, clock).await
        {
            let place = witness::store_witness_place(store);
            trail
                .record(EntryKind::Alert {
                    code: ledger::WITNESS_FAILED.into(),
                    message: format!("the latest checkpoint cannot be kept in {place}: {e}"),
                })
                .await?;
        }
        Ok(trail)
    }

    /// A trail whose entries go to `sink` (a process that holds the
    /// ledger).
    pub fn through(sink: Box<dyn EntrySink>) -> AuditTrail {
        AuditTrail { sink }
    }

    /// A trail over a ledger this process already holds (its alerts go
    /// to the ledger only).
    pub fn writing_to(ledger: Arc<dyn LedgerBackend>) -> AuditTrail {
        AuditTrail::through(Box::new(HeldLedger {
            ledger,
            alerts: Alerts::off(),
        }))
    }

    /// Creates a new ledger (used by `init`).
    pub async fn create(
        dir: PathBuf,
        origin: String,
        key: SigningKey,
    ) -> Result<AuditTrail, AuditError> {
        let options = LedgerOptions {
            checkpoint_interval: None,
            ..LedgerOptions::default()
        };
        let ledger =
            blocking(move || Ledger::create(Arc::new(durable::OsFs), &dir, &origin, key, options))
                .await?;
        Ok(AuditTrail::writing_to(Arc::new(ledger)))
    }

    /// Appends one entry; returns once it is durable.
    pub async fn record(&self, kind: EntryKind) -> Result<(), AuditError> {
        self.sink.append(kind).await
    }

    /// Signs a final checkpoint and releases the ledger (a process that
    /// holds the ledger signs its own checkpoints).
    pub async fn close(self) -> Result<(), AuditError> {
        self.sink.close().await
    }
}

/// `ledger adopt-unsigned`: opens the ledger with an [`Adoption`] by
/// `operator` for `reason`, so that a ledger the writer would refuse to
/// sign — an unsigned tail older than a writer leaves, or a ledger that no
/// longer holds the tree a witness recorded — is recorded as adopted (an
/// `admin` entry saying what was adopted, with the operator and reason)
/// and signed; the witnesses then hold the new checkpoint. Returns what
/// was adopted, or `None` when nothing needed it (nothing is recorded
/// then).
pub async fn adopt_unsigned(
    config: &LoadedConfig,
    store: Arc<dyn SecretStore>,
    operator: &str,
    reason: &str,
    clock: Arc<dyn Clock>,
) -> Result<Option<String>, AuditError> {
    let (key, _) = signing_key::load_signing_key(config, &*store).await?;
    let cfg = config.clone();
    let adoption = Adoption {
        operator: operator.to_string(),
        reason: reason.to_string(),
    };
    let opened = tokio::task::spawn_blocking(move || {
        let ledger = open_writer_with(
            &cfg,
            key,
            None,
            WriterOptions {
                store: Some(store),
                clock,
                adopt: Some(adoption),
                ..WriterOptions::default()
            },
        )?;
        let adopted = ledger.adopted();
        ledger.close()?;
        Ok::<_, LedgerError>(adopted)
    })
    .await
    .map_err(|e| AuditError::Task(e.to_string()))?;
    match opened {
        Err(LedgerError::Locked { dir }) => Err(AuditError::Gateway(format!(
            "the ledger {} is held by a running gateway, which opened it (so there was nothing to adopt then); stop it first if its open is what failed",
            dir.display()
        ))),
        other => Ok(other?),
    }
}
