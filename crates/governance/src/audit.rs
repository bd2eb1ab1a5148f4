//! The tool's own changes, recorded in the ledger.
//!
//! Every change redcap-warden makes — a secret written, a client key issued
//! or revoked, rights applied, a token rotated — is a ledger entry naming
//! the operator and the reason. The ledger's checkpoint signing key lives
//! in the secrets store (never beside the ledger); its verifier key is
//! pinned in `warden.toml`, and a signing key that does not match the pin
//! is refused rather than used.
//!
//! A command opens the ledger *before* it changes anything, so a change is
//! never made when it could not be recorded.
//!
//! The latest checkpoint is also kept outside the ledger — in the secrets
//! store as [`WITNESS_SECRET`], and in `[ledger] witness_file` if set —
//! so that deleting checkpoints beside the ledger does not go unnoticed
//! (`docs/ledger.md` §11): every writer open checks the ledger against
//! these witnesses and keeps them up to date as it signs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ledger::{
    Adoption, EntryKind, FileWitness, Ledger, LedgerBackend, LedgerError, LedgerOptions,
    VerifierKey, Witness,
};
use secrets::{Label, SecretName, SecretStore, SecretValue, Selector, StoreError, VersionMeta};
use warden_config::{LedgerBackendKind, LedgerStore, LoadedConfig, SecretsBackend};
use zeroize::Zeroizing;

/// The store entry holding the checkpoint signing key (hex of the Ed25519
/// seed).
pub const SIGNING_KEY_SECRET: &str = "warden/ledger-signing-key";

/// The store entry holding the ledger's latest checkpoint (a public signed
/// note, kept in the store because the store is another trust domain than
/// the ledger's directory or database): the witness `ledger verify` and
/// every writer open check the ledger against.
pub const WITNESS_SECRET: &str = "warden/ledger-witness";

/// How often a writer that signs every second updates the witness in the
/// secrets store while checkpoints keep coming (it also does on open and
/// on close): every minute for the age file store and OpenBao/Vault (each
/// update is a new version; the file store keeps `keep_versions` of them,
/// Vault its `max_versions`), every ten minutes for AWS Secrets Manager,
/// which asks for no more than one new version per secret every ten
/// minutes. The witness file is updated with every checkpoint.
pub fn store_witness_interval(backend: SecretsBackend) -> Duration {
    match backend {
        SecretsBackend::Aws => Duration::from_secs(600),
        _ => Duration::from_secs(60),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "{config} has no [ledger] section, and every change redcap-warden makes must be recorded in the ledger; fix: set up with `redcap-warden init`"
    )]
    NotConfigured { config: PathBuf },
    #[error("reading the ledger signing key `{SIGNING_KEY_SECRET}`: {0}")]
    Key(#[source] StoreError),
    #[error(
        "the ledger signing key in the secrets store is damaged ({0}); fix: restore the store from backup"
    )]
    BadKey(String),
    #[error(
        "the ledger signing key in the secrets store does not match the verifier key pinned in {config}; refusing to sign with it. fix: restore the matching store or warden.toml from backup"
    )]
    KeyMismatch { config: PathBuf },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the ledger writer task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Gateway(String),
}

/// A fresh signing key and the ledger origin `<host>/redcap-warden/<id>`.
pub fn new_signing_key() -> SigningKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *seed).expect("the operating system's random source failed");
    SigningKey::from_bytes(&seed)
}

/// This machine's host name, for the origin.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Stores the signing key as the current version of [`SIGNING_KEY_SECRET`].
pub async fn save_signing_key(
    store: &dyn SecretStore,
    key: &SigningKey,
    meta: VersionMeta,
) -> Result<String, StoreError> {
    let value = SecretValue::new(Zeroizing::new(hex::encode(key.to_bytes())).to_string());
    let v = store
        .put(&signing_key_name(), value, meta, Label::Current)
        .await?;
    Ok(v.0)
}

/// Reads the signing key and checks it against the pinned verifier key.
pub async fn load_signing_key(
    config: &LoadedConfig,
    store: &dyn SecretStore,
) -> Result<(SigningKey, VerifierKey), AuditError> {
    let pinned = ledger_section(config)?.verifier_key();
    let secret = store
        .get(&signing_key_name(), &Selector::Label(Label::Current))
        .await
        .map_err(AuditError::Key)?;
    let bytes = Zeroizing::new(
        hex::decode(secret.value.expose()).map_err(|e| AuditError::BadKey(e.to_string()))?,
    );
    let seed: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| AuditError::BadKey("not 32 bytes".into()))?;
    let key = SigningKey::from_bytes(seed);
    if key.verifying_key() != pinned.key {
        return Err(AuditError::KeyMismatch {
            config: config.path.clone(),
        });
    }
    Ok((key, pinned))
}

fn signing_key_name() -> SecretName {
    SecretName::new(SIGNING_KEY_SECRET).expect("valid constant name")
}

/// The ledger directory named in the configuration.
pub fn ledger_dir(config: &LoadedConfig) -> Result<PathBuf, AuditError> {
    Ok(config.resolve(&ledger_section(config)?.dir))
}

/// Where the witness in the secrets store is, for messages.
pub fn store_witness_place(store: &dyn SecretStore) -> String {
    format!("witness {WITNESS_SECRET} in {}", store.describe())
}

/// The witness in the secrets store: the latest note, or `None` if the
/// store holds none (yet).
pub async fn read_store_witness(store: &dyn SecretStore) -> Result<Option<String>, StoreError> {
    match store
        .get(&witness_name(), &Selector::Label(Label::Current))
        .await
    {
        Ok(secret) => Ok(Some(secret.value.expose().to_string())),
        Err(StoreError::NotFound { .. } | StoreError::LabelNotSet { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the witness in the secrets store with `note`.
pub async fn write_store_witness(store: &dyn SecretStore, note: &str) -> Result<(), StoreError> {
    let size = note.split('\n').nth(1).unwrap_or("?");
    let meta = VersionMeta {
        operator: os_login(),
        at: jiff::Timestamp::now(),
        reason: format!("the ledger's latest checkpoint (tree size {size}), kept as its witness"),
        fingerprint: None,
        rotation_id: None,
    };
    store
        .put(
            &witness_name(),
            SecretValue::new(note.to_string()),
            meta,
            Label::Current,
        )
        .await
        .map(|_| ())
}

fn witness_name() -> SecretName {
    SecretName::new(WITNESS_SECRET).expect("valid constant name")
}

/// The login of this process, for the witness's version metadata.
fn os_login() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}

/// The witness in the secrets store, for a writer: reads and writes go to
/// the store through the runtime the writer was opened from (from the
/// writer's own threads, never an async one).
struct StoreWitness {
    store: Arc<dyn SecretStore>,
    runtime: tokio::runtime::Handle,
    every: Duration,
    place: String,
}

impl Witness for StoreWitness {
    fn describe(&self) -> String {
        self.place.clone()
    }

    fn read(&self) -> Result<Option<String>, String> {
        self.runtime
            .block_on(read_store_witness(&*self.store))
            .map_err(|e| e.to_string())
    }

    fn write(&self, note: &str) -> Result<(), String> {
        self.runtime
            .block_on(write_store_witness(&*self.store, note))
            .map_err(|e| e.to_string())
    }

    fn min_interval(&self) -> Duration {
        self.every
    }
}

/// A witness read before the writer opened (by an async caller that holds
/// the store only by reference): the writer checks the ledger against it,
/// and what it would write is kept for the caller to store.
struct ReadWitness {
    place: String,
    note: Result<Option<String>, String>,
    written: Mutex<Option<String>>,
}

impl Witness for ReadWitness {
    fn describe(&self) -> String {
        self.place.clone()
    }

    fn read(&self) -> Result<Option<String>, String> {
        self.note.clone()
    }

    fn write(&self, note: &str) -> Result<(), String> {
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = Some(note.to_string());
        Ok(())
    }
}

/// What else a writer is opened with (see [`open_writer_with`]).
#[derive(Default)]
pub struct WriterOptions {
    /// Keep the witness in this secrets store ([`WITNESS_SECRET`]): checked
    /// on open and updated while the writer signs. Needs a tokio runtime
    /// (the writer is opened from one of its blocking threads).
    pub store: Option<Arc<dyn SecretStore>>,
    /// Further witnesses.
    pub witnesses: Vec<Arc<dyn Witness>>,
    /// Sign what the open would refuse to (`ledger adopt-unsigned`).
    pub adopt: Option<Adoption>,
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
            place: store_witness_place(&*store),
            store,
            runtime,
            every: store_witness_interval(config.config.secrets.backend),
        }));
    }
    witnesses.extend(options.witnesses);
    let adopt = options.adopt;
    match &section.store {
        LedgerStore::File => Ok(Arc::new(Ledger::open(
            Arc::new(durable::OsFs),
            &config.resolve(&section.dir),
            key,
            LedgerOptions {
                checkpoint_interval,
                witnesses,
                adopt,
                ..LedgerOptions::default()
            },
        )?)),
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
fn ledger_section(config: &LoadedConfig) -> Result<&warden_config::LedgerSection, AuditError> {
    config
        .config
        .ledger
        .as_ref()
        .ok_or_else(|| AuditError::NotConfigured {
            config: config.path.clone(),
        })
}

/// The ledger open for a command's changes: entries are appended durably,
/// and closing signs a final checkpoint. While a gateway holds the ledger,
/// entries go through its admin listener instead (it appends them to the
/// same ledger and signs them in its next checkpoint).
pub struct AuditTrail {
    writer: Writer,
}

enum Writer {
    Local(Arc<dyn LedgerBackend>),
    Gateway {
        url: String,
        token: Zeroizing<String>,
        http: reqwest::Client,
    },
}

impl AuditTrail {
    /// Opens the ledger for writing (taking its lock) before any change;
    /// if a running gateway holds it, entries go through the gateway.
    ///
    /// The ledger is checked against its witnesses first (the one in
    /// `store` included) and, once open, the witness in `store` is brought
    /// up to the last checkpoint. It signs every second while the command
    /// runs, so a long command never leaves a long unsigned tail.
    pub async fn open(
        config: &LoadedConfig,
        store: &dyn SecretStore,
    ) -> Result<AuditTrail, AuditError> {
        let (key, _) = load_signing_key(config, store).await?;
        let read = Arc::new(ReadWitness {
            place: store_witness_place(store),
            note: read_store_witness(store).await.map_err(|e| e.to_string()),
            written: Mutex::new(None),
        });
        let cfg = config.clone();
        let witness: Arc<dyn Witness> = read.clone();
        let opened = tokio::task::spawn_blocking(move || {
            open_writer_with(
                &cfg,
                key,
                Some(ledger::CHECKPOINT_INTERVAL),
                WriterOptions {
                    witnesses: vec![witness],
                    ..WriterOptions::default()
                },
            )
        })
        .await
        .map_err(|e| AuditError::Task(e.to_string()))?;
        match opened {
            Ok(ledger) => {
                let latest = read
                    .written
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(note) = latest
                    && let Err(e) = write_store_witness(store, &note).await
                {
                    let l = ledger.clone();
                    let place = store_witness_place(store);
                    tokio::task::spawn_blocking(move || {
                        l.append(EntryKind::Alert {
                            code: ledger::WITNESS_FAILED.into(),
                            message: format!(
                                "the latest checkpoint cannot be kept in {place}: {e}"
                            ),
                        })
                    })
                    .await
                    .map_err(|e| AuditError::Task(e.to_string()))??;
                }
                Ok(AuditTrail {
                    writer: Writer::Local(ledger),
                })
            }
            Err(LedgerError::Locked { dir }) => AuditTrail::through_gateway(config, &dir),
            Err(e) => Err(e.into()),
        }
    }

    /// The running gateway's admin listener, reached with the credential
    /// in `[gateway] admin_token_file`.
    fn through_gateway(
        config: &LoadedConfig,
        dir: &std::path::Path,
    ) -> Result<AuditTrail, AuditError> {
        let gw = &config.config.gateway;
        let token_file = config.resolve(&gw.admin_token_file);
        let token = std::fs::read_to_string(&token_file).map_err(|e| {
            AuditError::Gateway(format!(
                "the ledger {} is held by another process, and the gateway's admin credential {} cannot be read ({e}); stop the other process or run this command where the gateway's data directory is readable",
                dir.display(),
                token_file.display()
            ))
        })?;
        Ok(AuditTrail {
            writer: Writer::Gateway {
                url: format!("http://{}/admin/ledger/append", gw.admin_listen),
                token: Zeroizing::new(token.trim().to_string()),
                http: reqwest::Client::new(),
            },
        })
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
        let ledger = tokio::task::spawn_blocking(move || {
            Ledger::create(Arc::new(durable::OsFs), &dir, &origin, key, options)
        })
        .await
        .map_err(|e| AuditError::Task(e.to_string()))??;
        Ok(AuditTrail {
            writer: Writer::Local(Arc::new(ledger)),
        })
    }

    /// Appends one entry; returns once it is durable.
    pub async fn record(&self, kind: EntryKind) -> Result<(), AuditError> {
        match &self.writer {
            Writer::Local(ledger) => {
                let ledger = ledger.clone();
                tokio::task::spawn_blocking(move || ledger.append(kind))
                    .await
                    .map_err(|e| AuditError::Task(e.to_string()))??;
                Ok(())
            }
            Writer::Gateway { url, token, http } => {
                let resp = http
                    .post(url)
                    .bearer_auth(token.as_str())
                    .json(&kind)
                    .send()
                    .await
                    .map_err(|e| {
                        AuditError::Gateway(format!(
                            "the gateway holds the ledger but cannot be reached at {url}: {}",
                            e.without_url()
                        ))
                    })?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    return Err(AuditError::Gateway(format!(
                        "the gateway refused the ledger entry ({status}): {body}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Signs a final checkpoint and releases the ledger (a running gateway
    /// signs its own checkpoints).
    pub async fn close(self) -> Result<(), AuditError> {
        if let Writer::Local(ledger) = self.writer {
            tokio::task::spawn_blocking(move || ledger.close())
                .await
                .map_err(|e| AuditError::Task(e.to_string()))??;
        }
        Ok(())
    }
}

/// Rotates the checkpoint signing key: the new key becomes the store's
/// current version (the old one stays as `previous`), a `key` entry naming
/// the new verifier key is appended and covered by a checkpoint of the old
/// key, and the ledger signs with the new key from then on. Returns the new
/// verifier key, which must then be pinned in `warden.toml`. Works for both
/// backends; with PostgreSQL this process must be able to take the signer
/// lease (no running gateway holds it).
///
/// Finishes an interrupted rotation too: if the ledger reports one pending,
/// it is opened with the previous key and completed with the current one.
pub async fn rotate_signing_key(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    operator: &str,
    reason: &str,
) -> Result<VerifierKey, AuditError> {
    let postgres = ledger_section(config)?.backend() == LedgerBackendKind::Postgres;
    let stored = |label| async move {
        let secret = store
            .get(&signing_key_name(), &Selector::Label(label))
            .await
            .map_err(AuditError::Key)?;
        let bytes = Zeroizing::new(
            hex::decode(secret.value.expose()).map_err(|e| AuditError::BadKey(e.to_string()))?,
        );
        let seed: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AuditError::BadKey("not 32 bytes".into()))?;
        Ok::<_, AuditError>(SigningKey::from_bytes(seed))
    };
    let current = stored(Label::Current).await?;
    let open = |key: SigningKey| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || open_writer(&config, key, None))
                .await
                .map_err(|e| AuditError::Task(e.to_string()))?
                .map_err(AuditError::from)
        }
    };
    let held = |detail: String| {
        AuditError::Gateway(format!(
            "{detail}; stop every gateway that uses this ledger, rotate the key, then start them again (they load the new key from the secrets store)"
        ))
    };
    let (ledger, new) = match open(current.clone()).await {
        // An earlier rotation stopped between its entry and the old key's
        // checkpoint: the current stored key is the new one.
        Err(AuditError::Ledger(LedgerError::RotationPending { .. })) => {
            (open(stored(Label::Previous).await?).await?, current)
        }
        Err(AuditError::Ledger(LedgerError::Locked { dir })) => {
            return Err(held(format!(
                "the ledger {} is held by a running gateway",
                dir.display()
            )));
        }
        Err(e) => return Err(e),
        Ok(ledger) => {
            if postgres {
                // Only the signer lease's holder rotates: take it (signing
                // what is new) before a new key is stored.
                let l = ledger.clone();
                match tokio::task::spawn_blocking(move || l.checkpoint())
                    .await
                    .map_err(|e| AuditError::Task(e.to_string()))?
                {
                    Err(e @ LedgerError::NotSigner { .. }) => {
                        let _ = tokio::task::spawn_blocking(move || ledger.close()).await;
                        return Err(held(e.to_string()));
                    }
                    other => {
                        other?;
                    }
                }
            }
            let new = new_signing_key();
            let meta = VersionMeta {
                operator: operator.to_string(),
                at: jiff::Timestamp::now(),
                reason: reason.to_string(),
                fingerprint: None,
                rotation_id: None,
            };
            let version = save_signing_key(store, &new, meta)
                .await
                .map_err(AuditError::Key)?;
            let l = ledger.clone();
            let (op, why) = (operator.to_string(), reason.to_string());
            tokio::task::spawn_blocking(move || {
                l.append(EntryKind::Secret {
                    operator: op,
                    name: SIGNING_KEY_SECRET.into(),
                    version,
                    action: "rotate".into(),
                    fingerprint: None,
                    reason: why,
                })
            })
            .await
            .map_err(|e| AuditError::Task(e.to_string()))??;
            (ledger, new)
        }
    };
    let (op, why) = (operator.to_string(), reason.to_string());
    tokio::task::spawn_blocking(move || {
        ledger.rotate_key(new, &op, &why)?;
        let verifier = ledger.verifier_key();
        ledger.close()?;
        Ok::<_, LedgerError>(verifier)
    })
    .await
    .map_err(|e| AuditError::Task(e.to_string()))?
    .map_err(|e| match e {
        // PostgreSQL: a gateway took the signer lease meanwhile.
        LedgerError::NotSigner { .. } => held(e.to_string()),
        e => AuditError::from(e),
    })
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
) -> Result<Option<String>, AuditError> {
    let (key, _) = load_signing_key(config, &*store).await?;
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
