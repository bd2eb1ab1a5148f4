//! The plaintext inside the age file: one JSON document holding every
//! secret, its versions (value + metadata) and its labels. It exists only in
//! zeroized buffers and in the encrypted file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::{SecretName, SecretValue, VersionId, VersionMeta};

pub(crate) const FORMAT: &str = "redcap-warden/secrets-file/1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    pub format: String,
    pub secrets: BTreeMap<SecretName, Entry>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// Version numbers are never reused, even after pruning.
    pub next_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<jiff::Timestamp>,
    pub labels: Labels,
    /// Oldest first.
    pub versions: Vec<StoredVersion>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredVersion {
    pub version: VersionId,
    #[serde(with = "plain_value")]
    pub value: SecretValue,
    pub meta: VersionMeta,
}

impl Document {
    pub fn empty() -> Document {
        Document {
            format: FORMAT.to_string(),
            secrets: BTreeMap::new(),
        }
    }
}

impl Entry {
    pub fn version(&self, id: &VersionId) -> Option<&StoredVersion> {
        self.versions.iter().find(|v| &v.version == id)
    }

    /// Drops the oldest versions that carry no label until at most `keep`
    /// remain. Labelled versions are never dropped.
    pub fn prune(&mut self, keep: usize) {
        while self.versions.len() > keep {
            let labels = &self.labels;
            let Some(i) = self
                .versions
                .iter()
                .position(|v| !labels.values().any(|l| l == &v.version))
            else {
                return;
            };
            self.versions.remove(i);
        }
    }
}

/// The value's plaintext goes into the (encrypted) document and nowhere
/// else; this is the only serde path that exposes it.
mod plain_value {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::SecretValue;

    pub fn serialize<S: Serializer>(v: &SecretValue, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
        String::deserialize(d).map(SecretValue::new)
    }
}
