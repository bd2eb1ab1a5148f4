//! [`LedgerBackend`]: what the gateway and the CLI need from a ledger open
//! for writing, whichever store holds it — the file [`Ledger`] or, with the
//! `postgres` feature, [`crate::PgLedger`].

use std::time::Duration;

use ed25519_dalek::SigningKey;

use crate::append::Receipt;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::{Entry, EntryKind};
use crate::error::LedgerError;
use crate::guard::Adoption;
use crate::pending::Pending;
use crate::witness::Witness;
use crate::writer::Ledger;

/// A ledger open for writing. Every implementation is fail-closed: after
/// any write error every append fails until the ledger is reopened.
pub trait LedgerBackend: Send + Sync {
    /// Appends an entry; returns once it is durable. Safe to call from
    /// many threads at once (concurrent entries are group-committed).
    fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError>;

    /// Queues an entry for a group commit at once without blocking the
    /// caller's thread: await (or wait for) the [`Pending`]. For async
    /// callers. The default commits it now, as [`LedgerBackend::append`],
    /// which blocks; both backends override it.
    fn append_async(&self, kind: EntryKind) -> Pending {
        Pending::ready(self.append(kind))
    }

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

    /// What an adoption (`ledger adopt-unsigned`) adopted on open, if the
    /// ledger was opened with one and anything needed adopting.
    fn adopted(&self) -> Option<String> {
        None
    }

    /// Hands `visit` the entries from seq `from` on, as stored, in order,
    /// one at a time: memory stays that of one entry (or one batch of
    /// rows) however many there are (not verified: for a process
    /// rebuilding its own state at start, e.g. the gateway's outbound
    /// window and the requests a crash left unanswered).
    fn read_from(
        &self,
        from: u64,
        visit: &mut (dyn FnMut(Entry) + Send),
    ) -> Result<(), LedgerError> {
        let _ = (from, visit);
        Err(LedgerError::Unsupported {
            operation: "read its entries back",
        })
    }

    /// Rotates the checkpoint signing key to `new` (`docs/ledger.md`
    /// §4.4): a `key` entry carrying the new verifier key, covered by a
    /// checkpoint of the current key, then a checkpoint of the same tree
    /// by `new`, which signs every later one. Returns the entry's receipt.
    /// Finishes a rotation to `new` found pending on open. The default
    /// refuses: a backend that cannot rotate keeps its key.
    fn rotate_key(
        &self,
        new: SigningKey,
        operator: &str,
        reason: &str,
    ) -> Result<Receipt, LedgerError> {
        let _ = (new, operator, reason);
        Err(LedgerError::Unsupported {
            operation: "rotate its signing key (the key stays as it is)",
        })
    }
}

/// Implements [`LedgerBackend`] for a writer type by its inherent methods
/// of the same names: both backends' writers have them all.
macro_rules! backend_by_inherent_methods {
    ($writer:ty) => {
        impl LedgerBackend for $writer {
            fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
                <$writer>::append(self, kind)
            }

            fn append_async(&self, kind: EntryKind) -> Pending {
                <$writer>::append_async(self, kind)
            }

            fn append_deferred(&self, kind: EntryKind) -> Pending {
                <$writer>::append_deferred(self, kind)
            }

            fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
                <$writer>::checkpoint(self)
            }

            fn close(&self) -> Result<Option<Checkpoint>, LedgerError> {
                <$writer>::close(self)
            }

            fn size(&self) -> u64 {
                <$writer>::size(self)
            }

            fn pending(&self) -> usize {
                <$writer>::pending(self)
            }

            fn origin(&self) -> &str {
                <$writer>::origin(self)
            }

            fn verifier_key(&self) -> VerifierKey {
                <$writer>::verifier_key(self)
            }

            fn adopted(&self) -> Option<String> {
                <$writer>::adopted(self).map(str::to_owned)
            }

            fn read_from(
                &self,
                from: u64,
                visit: &mut (dyn FnMut(Entry) + Send),
            ) -> Result<(), LedgerError> {
                <$writer>::read_from(self, from, visit)
            }

            fn rotate_key(
                &self,
                new: SigningKey,
                operator: &str,
                reason: &str,
            ) -> Result<Receipt, LedgerError> {
                <$writer>::rotate_key(self, new, operator, reason)
            }
        }
    };
}

backend_by_inherent_methods!(Ledger);
#[cfg(feature = "postgres")]
backend_by_inherent_methods!(crate::pg::PgLedger);

/// Opens the PostgreSQL ledger in `schema` of the database at `url` for
/// writing (see `PgLedger::open`), signing checkpoints every
/// `checkpoint_interval` while this process holds the signer lease.
///
/// If the schema holds no ledger yet and `import_from` names a file
/// ledger's directory, that ledger is moved into the database first (see
/// `PgLedger::import_dir`; its lock is held meanwhile): this is how an
/// installation changes to the PostgreSQL backend.
///
/// For callers that do not depend on the `postgres` feature themselves; a
/// build without it says so.
pub fn open_postgres(
    url: &str,
    schema: &str,
    key: SigningKey,
    checkpoint_interval: Option<Duration>,
    import_from: Option<&std::path::Path>,
) -> Result<Box<dyn LedgerBackend>, LedgerError> {
    open_postgres_with(
        url,
        schema,
        key,
        checkpoint_interval,
        import_from,
        Vec::new(),
        None,
    )
}

/// [`open_postgres`], checking the ledger against `witnesses` on open and
/// keeping them up to date while this process signs (`docs/ledger.md`
/// §11), and with `adopt`, going on (recorded) where the open would
/// refuse.
pub fn open_postgres_with(
    url: &str,
    schema: &str,
    key: SigningKey,
    checkpoint_interval: Option<Duration>,
    import_from: Option<&std::path::Path>,
    witnesses: Vec<std::sync::Arc<dyn Witness>>,
    adopt: Option<Adoption>,
) -> Result<Box<dyn LedgerBackend>, LedgerError> {
    #[cfg(feature = "postgres")]
    {
        let options = crate::pg::PgOptions {
            schema: schema.to_owned(),
            checkpoint_interval,
            witnesses,
            adopt,
            ..crate::pg::PgOptions::default()
        };
        match crate::pg::PgLedger::open(url, key.clone(), options.clone()) {
            Err(LedgerError::NotALedger { .. })
                if import_from.is_some_and(|d| d.join(crate::files::CHECKPOINTS).exists()) =>
            {
                let dir = import_from.expect("checked");
                let _lock = crate::files::take_lock(dir)?;
                Ok(Box::new(crate::pg::PgLedger::import_dir(
                    &durable::OsFs,
                    dir,
                    url,
                    key,
                    options,
                )?))
            }
            other => Ok(Box::new(other?)),
        }
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = (
            url,
            schema,
            key,
            checkpoint_interval,
            import_from,
            witnesses,
            adopt,
        );
        Err(LedgerError::Database {
            op: "open the ledger",
            detail: "this build of redcap-warden has no PostgreSQL support (cargo feature ledger/postgres)".into(),
        })
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
        assert_eq!(ledger.append_async(alert("c")).wait().unwrap().seq, 3);
        assert_eq!(ledger.size(), 4);
        assert_eq!(ledger.checkpoint().unwrap().unwrap().size, 4);
        assert!(ledger.close().unwrap().is_none(), "nothing new to sign");
        assert!(matches!(
            ledger.append(alert("c")),
            Err(LedgerError::Closed)
        ));
    }
}
