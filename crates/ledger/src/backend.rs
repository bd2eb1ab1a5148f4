//! [`LedgerBackend`]: what the gateway and the CLI need from a ledger open
//! for writing, whichever store holds it — the file [`Ledger`] or, with the
//! `postgres` feature, [`crate::PgLedger`].

use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::EntryKind;
use crate::error::LedgerError;
use crate::pending::Pending;
use crate::writer::{Ledger, Receipt};

/// A ledger open for writing. Every implementation is fail-closed: after
/// any write error every append fails until the ledger is reopened.
pub trait LedgerBackend: Send + Sync {
    /// Appends an entry; returns once it is durable. Safe to call from
    /// many threads at once (concurrent entries are group-committed).
    fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError>;

    /// Queues an entry that must become durable but need not be before the
    /// caller goes on; the [`Pending`] says when it is, or why it never
    /// will be. The default commits it now, as [`LedgerBackend::append`].
    fn append_deferred(&self, kind: EntryKind) -> Pending {
        Pending::ready(self.append(kind))
    }

    /// Signs a checkpoint of the durable tree now, unless the last one
    /// already covers it. Returns the new checkpoint, if any.
    fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError>;

    /// Stops accepting entries, commits those in flight, signs a final
    /// checkpoint. Idempotent.
    fn close(&self) -> Result<Option<Checkpoint>, LedgerError>;

    /// The number of durable entries this writer knows of.
    fn size(&self) -> u64;

    /// Entries waiting for their group commit.
    fn pending(&self) -> usize;

    /// The ledger's origin, `<host>/redcap-warden/<ledger id>`.
    fn origin(&self) -> &str;

    /// The verifier key of the key that signs this writer's checkpoints.
    fn verifier_key(&self) -> VerifierKey;
}

impl LedgerBackend for Ledger {
    fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
        Ledger::append(self, kind)
    }

    fn append_deferred(&self, kind: EntryKind) -> Pending {
        Ledger::append_deferred(self, kind)
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        Ledger::checkpoint(self)
    }

    fn close(&self) -> Result<Option<Checkpoint>, LedgerError> {
        Ledger::close(self)
    }

    fn size(&self) -> u64 {
        Ledger::size(self)
    }

    fn pending(&self) -> usize {
        Ledger::pending(self)
    }

    fn origin(&self) -> &str {
        Ledger::origin(self)
    }

    fn verifier_key(&self) -> VerifierKey {
        Ledger::verifier_key(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::writer::LedgerOptions;

    #[test]
    fn the_file_ledger_through_the_trait() {
        let tmp = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let origin = "t.example/redcap-warden/0011223344556677";
        let ledger: Arc<dyn LedgerBackend> = Arc::new(
            Ledger::create(
                Arc::new(durable::OsFs),
                tmp.path(),
                origin,
                key.clone(),
                LedgerOptions {
                    checkpoint_interval: None,
                    lock: false,
                    ..LedgerOptions::default()
                },
            )
            .unwrap(),
        );
        assert_eq!(ledger.origin(), origin);
        assert_eq!(
            ledger.verifier_key(),
            VerifierKey::from_signing_key(origin, &key)
        );
        let alert = |m: &str| EntryKind::Alert {
            code: "t".into(),
            message: m.into(),
        };
        assert_eq!(ledger.append(alert("a")).unwrap().seq, 1);
        assert_eq!(ledger.append_deferred(alert("b")).wait().unwrap().seq, 2);
        assert_eq!(ledger.size(), 3);
        assert_eq!(ledger.checkpoint().unwrap().unwrap().size, 3);
        assert!(ledger.close().unwrap().is_none(), "nothing new to sign");
        assert!(matches!(
            ledger.append(alert("c")),
            Err(LedgerError::Closed)
        ));
    }
}
