//! Where REDCap tokens live.
//!
//! A [`SecretStore`] keeps named secrets as a history of versions. Each
//! version carries its value and its metadata ([`VersionMeta`]: who wrote it,
//! when, why, the token's fingerprint, the rotation it belongs to), so the
//! story of a token travels with it on every backend. Versions are pointed at
//! by staging labels — `current`, `pending`, `previous` — that move as AWS
//! Secrets Manager moves them: making a version `current` makes the old
//! current one `previous`.
//!
//! Values are [`SecretValue`]s: zeroized on drop and never printed by
//! `Debug`. Nothing in this crate formats a value into a message.
//!
//! Backends: [`FileStore`] (one age-encrypted file, the embedded default),
//! [`VaultStore`] (OpenBao / HashiCorp Vault KV version 2), and with the
//! `aws` feature `AwsStore` (AWS Secrets Manager).
//! Every backend passes the same contract suite (`tests/contract/`).

#![warn(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
mod error;
pub mod file;
mod fingerprint;
mod labels;
mod name;
mod open;
mod store;
mod value;
pub mod vault;

#[cfg(feature = "aws")]
pub use aws::AwsStore;
pub use error::StoreError;
pub use file::{FileStore, FileStoreOptions};
pub use fingerprint::{FINGERPRINT_KEY_SECRET, Fingerprint, FingerprintKey, HmacStream};
pub use name::SecretName;
pub use open::{AwsStoreOptions, open_aws};
pub use store::{
    CheckItem, CheckReport, Label, Secret, SecretStore, Selector, VersionId, VersionInfo,
    VersionMeta,
};
pub use value::SecretValue;
pub use vault::{CredentialSource, VaultAuth, VaultStore, VaultStoreOptions};

/// The result of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
