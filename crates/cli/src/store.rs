//! Opens the secrets store that warden.toml names.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
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
            let store = FileStore::open(file_store_options(config)).with_context(context)?;
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
                timeout: Duration::from_secs(v.timeout_seconds),
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
