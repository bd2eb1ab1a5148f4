//! Opens the secrets store that warden.toml names.

use std::sync::Arc;

use anyhow::{Context, bail};
use secrets::file::{PASSPHRASE_CREDENTIAL, PassphraseSource, StoreIdentity};
use secrets::{
    AwsStoreOptions, CredentialSource, FileStore, FileStoreOptions, SecretStore, VaultAuth,
    VaultStore, VaultStoreOptions,
};
use warden_config::{CredentialFrom, LoadedConfig, SecretsBackend, VaultAuthSection};

/// Loads warden.toml (every problem reported with its fix).
pub fn load_config(path: &std::path::Path) -> anyhow::Result<LoadedConfig> {
    Ok(warden_config::load(path)?)
}

pub fn file_store_options(config: &LoadedConfig) -> FileStoreOptions {
    let file = &config.config.secrets.file;
    FileStoreOptions {
        path: config.resolve(&file.path),
        identity: config.resolve(&file.identity),
        keep_versions: file.keep_versions,
    }
}

/// Where the passphrase of a protected identity comes from, in order:
/// `[secrets.file] passphrase_file`, then the systemd credential
/// `$CREDENTIALS_DIRECTORY/redcap-warden-identity-passphrase` (the variable
/// holds a directory, never the passphrase). Neither the command line nor
/// the environment ever carries the passphrase itself.
pub fn passphrase_sources(config: &LoadedConfig) -> Vec<PassphraseSource> {
    let mut sources = Vec::new();
    if let Some(f) = &config.config.secrets.file.passphrase_file {
        sources.push(PassphraseSource::File(config.resolve(f)));
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        sources.push(PassphraseSource::Credential(
            std::path::Path::new(&dir).join(PASSPHRASE_CREDENTIAL),
        ));
    }
    sources
}

/// Whether a person can be asked: a terminal on standard input or error.
pub fn terminal_attached() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() || std::io::stderr().is_terminal()
}

/// Asks on the terminal without echo.
pub fn prompt_secret(prompt: &str) -> anyhow::Result<secrets::file::SecretString> {
    let typed = zeroize::Zeroizing::new(
        rpassword::prompt_password(prompt).context("reading from the terminal")?,
    );
    Ok(secrets::file::SecretString::from(typed.to_string()))
}

/// The file store's identity, unlocked: with the configured passphrase
/// sources, or — when none gives a passphrase and a terminal is attached —
/// a no-echo prompt.
pub fn unlock_identity(config: &LoadedConfig) -> anyhow::Result<StoreIdentity> {
    let opts = file_store_options(config);
    let store = format!("age file store {}", opts.path.display());
    let mut sources = passphrase_sources(config);
    let available = sources.iter().any(|s| match s {
        PassphraseSource::Credential(p) => p.exists(),
        _ => true,
    });
    if !available
        && terminal_attached()
        && secrets::file::identity_is_protected(&opts.identity).unwrap_or(false)
    {
        let passphrase = prompt_secret(&format!(
            "Passphrase for the secrets-store identity {} (not echoed): ",
            opts.identity.display()
        ))?;
        sources.push(PassphraseSource::Given {
            passphrase,
            from: "typed at the terminal".into(),
        });
    }
    Ok(secrets::file::load_identity(
        &opts.identity,
        &store,
        &sources,
    )?)
}

/// The store `[secrets] backend` names.
pub fn open_store(config: &LoadedConfig) -> anyhow::Result<Arc<dyn SecretStore>> {
    open_backend(config, config.config.secrets.backend)
}

/// The store of any backend whose section warden.toml holds (`secrets
/// migrate --to` opens its destination this way).
pub fn open_backend(
    config: &LoadedConfig,
    backend: SecretsBackend,
) -> anyhow::Result<Arc<dyn SecretStore>> {
    let context = || {
        format!(
            "opening the {} secrets store named in {}",
            backend.as_str(),
            config.path.display()
        )
    };
    let secrets = &config.config.secrets;
    let missing = || {
        anyhow::anyhow!(
            "{} has no [secrets.{b}] table; add one (docs/secrets.md lists its keys)",
            config.path.display(),
            b = backend.as_str()
        )
    };
    match backend {
        SecretsBackend::File => {
            let identity = unlock_identity(config).with_context(context)?;
            let store = FileStore::open_with_identity(file_store_options(config), identity)
                .with_context(context)?;
            Ok(Arc::new(store))
        }
        SecretsBackend::Vault => {
            let v = secrets.vault.as_ref().ok_or_else(missing)?;
            let source = |c: &CredentialFrom| match c {
                CredentialFrom::File(p) => CredentialSource::File(config.resolve(p)),
                CredentialFrom::Env(name) => CredentialSource::Env(name.clone()),
            };
            let auth = match &v.auth {
                VaultAuthSection::Token(c) => VaultAuth::Token(source(c)),
                VaultAuthSection::AppRole {
                    mount,
                    role_id,
                    secret_id,
                } => VaultAuth::AppRole {
                    mount: mount.clone(),
                    role_id: source(role_id),
                    secret_id: source(secret_id),
                },
            };
            let store = VaultStore::open(VaultStoreOptions {
                address: v.address.clone(),
                mount: v.mount.clone(),
                prefix: v.prefix.clone(),
                namespace: v.namespace.clone(),
                ca_file: v.ca_file.as_ref().map(|p| config.resolve(p)),
                auth,
                max_versions: v.max_versions,
                timeout: v.timeout,
            })
            .with_context(context)?;
            Ok(Arc::new(store))
        }
        SecretsBackend::Aws => {
            let a = secrets.aws.as_ref().ok_or_else(missing)?;
            if a.prefix.is_empty() {
                bail!(
                    "{}: [secrets.aws] prefix is empty; give redcap-warden its own prefix, e.g. \"redcap-warden/\"",
                    config.path.display()
                );
            }
            secrets::open_aws(AwsStoreOptions {
                region: a.region.clone(),
                endpoint_url: a.endpoint_url.clone(),
                prefix: a.prefix.clone(),
                recovery_window_days: a.recovery_window_days,
                kms_key_id: a.kms_key_id.clone(),
            })
            .with_context(context)
        }
    }
}

/// The audit trail a command records its changes in, opened before it
/// changes anything: the ledger itself, or, while a running gateway holds
/// it, the gateway's admin listener (which appends to the same ledger).
pub async fn open_trail(
    config: &LoadedConfig,
    store: &dyn SecretStore,
) -> anyhow::Result<governance::audit::AuditTrail> {
    use governance::audit::{AuditError, AuditTrail};
    match AuditTrail::open(config, store, &governance::clock::SystemClock).await {
        Err(AuditError::Held { dir }) => {
            let client = gateway::admin_client::AdminClient::from_config(config).map_err(|e| {
                anyhow::anyhow!(
                    "the ledger {} is held by another process, and {e}; stop the other process or run this command where the gateway's data directory is readable",
                    dir.display()
                )
            })?;
            Ok(AuditTrail::through(Box::new(client)))
        }
        other => Ok(other?),
    }
}

/// The configured ledger, opened for reading without its writer's lock (as
/// `ledger tail` does, so a running gateway may keep writing). Every reader
/// of the ledger outside the `ledger` commands (re-authorisation,
/// reconcile, trace, the report and the dashboard) opens it here.
pub enum LedgerSource {
    /// The file ledger's directory.
    File(std::path::PathBuf),
    /// A reader of the PostgreSQL ledger.
    Postgres(Box<ledger::PgReader>),
}

impl LedgerSource {
    /// Opens the ledger `config` names.
    pub fn open(config: &LoadedConfig) -> anyhow::Result<LedgerSource> {
        let section = governance::audit::ledger_section(config)?;
        Ok(match &section.store {
            warden_config::LedgerStore::File => LedgerSource::File(config.resolve(&section.dir)),
            warden_config::LedgerStore::Postgres(pg) => {
                let url = zeroize::Zeroizing::new(
                    pg.connection_string(|p| config.resolve(p))
                        .map_err(anyhow::Error::msg)?,
                );
                LedgerSource::Postgres(Box::new(
                    ledger::PgReader::connect(&url, &pg.schema)
                        .context("opening the PostgreSQL ledger")?,
                ))
            }
        })
    }
}

/// Hands `visit` every entry of the configured ledger from seq `from` on,
/// in one pass.
pub fn read_ledger_from(
    config: &LoadedConfig,
    from: u64,
    visit: &mut dyn FnMut(ledger::Entry),
) -> anyhow::Result<()> {
    match LedgerSource::open(config)? {
        LedgerSource::File(dir) => ledger::read_from(&durable::OsFs, &dir, from, visit)
            .with_context(|| format!("reading the ledger in {}", dir.display())),
        LedgerSource::Postgres(mut r) => r
            .read_from(from, visit)
            .context("reading the PostgreSQL ledger"),
    }
}
