//! The ledger's latest checkpoint, kept outside the ledger.
//!
//! The secrets store holds it as [`WITNESS_SECRET`] (and `[ledger]
//! witness_file` too, if set), so that deleting checkpoints beside the
//! ledger does not go unnoticed (`docs/ledger.md` §11): every writer open
//! checks the ledger against these witnesses and keeps them up to date as
//! it signs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger::Witness;
use secrets::{Label, SecretName, SecretStore, SecretValue, Selector, StoreError, VersionMeta};
use warden_config::SecretsBackend;

use crate::clock::Clock;

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
pub async fn write_store_witness(
    store: &dyn SecretStore,
    note: &str,
    clock: &dyn Clock,
) -> Result<(), StoreError> {
    let size = note.split('\n').nth(1).unwrap_or("?");
    let meta = VersionMeta {
        operator: crate::os_login(),
        at: clock.now(),
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

/// The witness in the secrets store, for a writer: reads and writes go to
/// the store through the runtime the writer was opened from (from the
/// writer's own threads, never an async one).
pub(crate) struct StoreWitness {
    pub(crate) store: Arc<dyn SecretStore>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) every: Duration,
    pub(crate) place: String,
    pub(crate) clock: Arc<dyn Clock>,
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
            .block_on(write_store_witness(&*self.store, note, &*self.clock))
            .map_err(|e| e.to_string())
    }

    fn min_interval(&self) -> Duration {
        self.every
    }
}

/// A witness read before the writer opened (by an async caller that holds
/// the store only by reference): the writer checks the ledger against it,
/// and what it would write is kept for the caller to store.
pub(crate) struct ReadWitness {
    place: String,
    note: Result<Option<String>, String>,
    written: Mutex<Option<String>>,
}

impl ReadWitness {
    pub(crate) async fn read(store: &dyn SecretStore) -> ReadWitness {
        ReadWitness {
            place: store_witness_place(store),
            note: read_store_witness(store).await.map_err(|e| e.to_string()),
            written: Mutex::new(None),
        }
    }

    /// The latest note the writer handed over, if any.
    pub(crate) fn take_written(&self) -> Option<String> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
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
