//! The contract every backend keeps.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Result, SecretName, SecretValue};

/// A staging label. At most one version of a secret carries each label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The version in use.
    Current,
    /// A new version being verified before it becomes current.
    Pending,
    /// The version that was current before the current one.
    Previous,
}

impl Label {
    /// Every label, in the order `history` lists them.
    pub const ALL: [Label; 3] = [Label::Current, Label::Pending, Label::Previous];

    /// The label as users type it and the file store and Vault record it
    /// (`current`, `pending`, `previous`); the AWS backend maps it to
    /// `AWSCURRENT`, `AWSPENDING`, `AWSPREVIOUS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Current => "current",
            Label::Pending => "pending",
            Label::Previous => "previous",
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Label, String> {
        Label::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a label; use current, pending or previous"))
    }
}

/// A backend's identifier of one version: "3" for the file store and Vault,
/// a UUID for AWS. Opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionId(pub String);

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which version to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The version carrying this staging label.
    Label(Label),
    /// The version with this backend identifier, labelled or not.
    Version(VersionId),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Label(l) => write!(f, "labelled `{l}`"),
            Selector::Version(v) => write!(f, "`{v}`"),
        }
    }
}

/// What is recorded with every version, on every backend. Never secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Who wrote the version: the OS login (with sudo user and typed name).
    pub operator: String,
    /// When, UTC.
    pub at: jiff::Timestamp,
    /// Why.
    pub reason: String,
    /// `fp1:…` fingerprint of the value, when the value is a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The rotation that produced the version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_id: Option<String>,
}

/// One version read back: value and metadata.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The secret the version belongs to.
    pub name: SecretName,
    /// Which version this is.
    pub version: VersionId,
    /// The value (zeroized on drop, never printed).
    pub value: SecretValue,
    /// Who wrote it, when and why.
    pub meta: VersionMeta,
    /// The staging labels this version carries now (possibly none).
    pub labels: Vec<Label>,
}

/// One version as `history` shows it: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// Which version this is.
    pub version: VersionId,
    /// The staging labels this version carries now (possibly none).
    pub labels: Vec<Label>,
    /// Who wrote it, when and why.
    pub meta: VersionMeta,
}

/// One line of `secrets check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// Whether this check passed.
    pub ok: bool,
    /// What was checked and what was found, e.g. `identity … has mode 600`.
    pub what: String,
    /// How to fix it, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The result of [`SecretStore::check`]: one store's checks, item by item.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The store checked, as [`SecretStore::describe`] names it.
    pub store: String,
    /// Every check made, passed or not.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }
}

/// A secrets backend. Every method is atomic with respect to other writers
/// of the same store (other processes included): no write is ever lost.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync {
    /// The store as messages name it, e.g. `age file store data/secrets.age`.
    fn describe(&self) -> String;

    /// Writes a new version of `name` (creating the secret if needed) and
    /// gives it `label`, which must be `current` or `pending`. A new
    /// `current` makes the old current version `previous`.
    async fn put(
        &self,
        name: &SecretName,
        value: SecretValue,
        meta: VersionMeta,
        label: Label,
    ) -> Result<VersionId>;

    /// Reads one version.
    async fn get(&self, name: &SecretName, which: &Selector) -> Result<Secret>;

    /// Moves `label` to version `to`. Moving `current` makes the old current
    /// `previous` and removes `pending` from `to`.
    async fn move_label(&self, name: &SecretName, label: Label, to: &VersionId) -> Result<()>;

    /// Removes `label` from whichever version has it (not `current`).
    async fn remove_label(&self, name: &SecretName, label: Label) -> Result<()>;

    /// The names of every secret that is not deleted, sorted.
    async fn list(&self) -> Result<Vec<SecretName>>;

    /// Every version of `name`, newest first, without values. Fails with
    /// [`crate::StoreError::Deleted`] while `name` is soft-deleted.
    async fn history(&self, name: &SecretName) -> Result<Vec<VersionInfo>>;

    /// Soft-deletes `name`: reads fail until [`SecretStore::restore`].
    async fn delete(&self, name: &SecretName) -> Result<()>;

    /// Undoes a soft delete.
    async fn restore(&self, name: &SecretName) -> Result<()>;

    /// Reachability and permissions, item by item.
    async fn check(&self) -> Result<CheckReport>;
}
