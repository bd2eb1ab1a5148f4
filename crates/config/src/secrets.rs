//! `[secrets]`: which secrets backend holds the tokens and the tool's keys.

use serde::Deserialize;

/// `[secrets]`: where REDCap tokens and the tool's own keys are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// Which backend holds the secrets.
    #[serde(default)]
    pub backend: SecretsBackend,
    /// Settings of the embedded age-file backend.
    #[serde(default)]
    pub file: FileSecretsSection,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsBackend {
    /// One age-encrypted file beside the configuration (the default).
    #[default]
    File,
}

/// `[secrets.file]`: the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSecretsSection {
    /// The encrypted store.
    #[serde(default = "default_store_path")]
    pub path: std::path::PathBuf,
    /// The X25519 identity the store is encrypted to (mode 0600). Back it
    /// up: without it every token must be re-issued in REDCap's UI.
    #[serde(default = "default_identity_path")]
    pub identity: std::path::PathBuf,
    /// How many old, unlabelled versions of each secret to keep.
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
}

impl Default for FileSecretsSection {
    fn default() -> Self {
        FileSecretsSection {
            path: default_store_path(),
            identity: default_identity_path(),
            keep_versions: default_keep_versions(),
        }
    }
}

fn default_store_path() -> std::path::PathBuf {
    "data/secrets.age".into()
}

fn default_identity_path() -> std::path::PathBuf {
    "data/identity.txt".into()
}

fn default_keep_versions() -> usize {
    20
}
