//! Opens the secrets store that warden.toml names.

use std::sync::Arc;

use anyhow::Context;
use secrets::{FileStore, FileStoreOptions, SecretStore};
use warden_config::{LoadedConfig, SecretsBackend};

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

pub fn open_store(config: &LoadedConfig) -> anyhow::Result<Arc<dyn SecretStore>> {
    match config.config.secrets.backend {
        SecretsBackend::File => {
            let store = FileStore::open(file_store_options(config)).with_context(|| {
                format!(
                    "opening the secrets store named in {}",
                    config.path.display()
                )
            })?;
            Ok(Arc::new(store))
        }
    }
}
