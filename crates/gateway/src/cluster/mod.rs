//! What several gateways must agree on, kept in PostgreSQL when
//! `[ledger] backend = "postgres"`: the client keys and their
//! revocations, the account status (quarantines, lapses, retirements, each
//! dual pair's active member), the cut-over holds, and reloads.
//!
//! Each is one JSON document — the same document the file backend keeps
//! in a file — in a row of `<schema>.shared_state`, beside the ledger's
//! tables (`database`: the table, the migration, the connection). A
//! change is a transaction holding the row locked, so changes from any
//! gateway or `redcap-warden` command are serialised by PostgreSQL's own
//! locking, and announced with `NOTIFY` on commit. Each gateway's
//! follower thread (`follow`) listens and re-reads what was announced,
//! and re-reads everything every [`REREAD`] whatever it heard: a missed
//! notification delays a change by at most that long, never loses it.
//! Requests read the documents as last read, from memory.
//!
//! When PostgreSQL is unreachable the gateway fails closed: the ledger
//! cannot record, so nothing is forwarded; and a gateway whose documents
//! have not been confirmed for [`STALE_AFTER`] refuses client keys
//! (503) rather than admit one that may have been revoked meanwhile.
//!
//! Nothing here is a home-made protocol: one database, its row locks, its
//! `LISTEN/NOTIFY`. The synchronous `postgres` client never runs on an
//! async worker (`database::off_runtime`).
//!
//! The parts: `document` (a row as a [`durable::SharedDocument`]),
//! `holds` (the cut-over holds), `reload` (reload fan-out),
//! `follow` (the listener thread).

mod database;
mod document;
mod follow;
mod holds;
mod reload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governance::accounts::AccountStatusFile;
use warden_config::{LedgerStore, LoadedConfig};
use zeroize::Zeroizing;

use crate::keys::KeyFile;

pub use document::PgDocument;
pub use follow::REREAD;
pub(crate) use follow::{Changed, Follower};
pub(crate) use holds::{SharedHold, SharedHolds};
pub(crate) use reload::{Asked, ReloadLog};

/// How long a gateway admits client keys after it last confirmed the
/// shared documents with PostgreSQL: three re-reads missed, and a margin.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * REREAD.as_secs() + 5);

/// The names of the documents in `shared_state`.
pub mod names {
    /// The client keys (`redcap-warden/client-keys/1`).
    pub const CLIENT_KEYS: &str = "client-keys";
    /// The account status (`redcap-warden/account-status/1`).
    pub const ACCOUNT_STATUS: &str = "account-status";
    /// The cut-over holds.
    pub const CUTOVER_HOLDS: &str = "cutover-holds";
    /// The reload generation.
    pub const RELOAD: &str = "reload";
}

/// Why the shared state's database cannot be named.
#[derive(Debug, thiserror::Error)]
#[error("the shared state in PostgreSQL: {0}")]
pub struct ClusterError(String);

/// The shared-state database of an installation whose ledger is in
/// PostgreSQL.
#[derive(Clone)]
pub struct Cluster {
    db: Arc<database::Database>,
}

impl Cluster {
    /// The database `[ledger.postgres]` names; `None` with the file
    /// ledger (then every document is a file, as on one machine).
    pub fn from_config(config: &LoadedConfig) -> Result<Option<Cluster>, ClusterError> {
        let Some(section) = config.config.ledger.as_ref() else {
            return Ok(None);
        };
        let LedgerStore::Postgres(pg) = &section.store else {
            return Ok(None);
        };
        let url = Zeroizing::new(
            pg.connection_string(|p| config.resolve(p))
                .map_err(ClusterError)?,
        );
        Ok(Some(Cluster {
            db: Arc::new(database::Database::new(url, &pg.schema)),
        }))
    }

    /// The document `name` of `shared_state`.
    pub fn document(&self, name: &'static str) -> PgDocument {
        PgDocument::new(self.db.clone(), name)
    }

    pub(crate) fn database(&self) -> Arc<database::Database> {
        self.db.clone()
    }
}

/// The client keys of the installation `config` describes: the key file,
/// or with the PostgreSQL ledger the shared document.
pub fn key_file(config: &LoadedConfig) -> Result<KeyFile, ClusterError> {
    Ok(match Cluster::from_config(config)? {
        Some(c) => KeyFile::shared(Arc::new(c.document(names::CLIENT_KEYS))),
        None => KeyFile::new(&crate::paths::keys_file(config)),
    })
}

/// The account status of the installation `config` describes: the status
/// file, or with the PostgreSQL ledger the shared document.
pub fn status_file(config: &LoadedConfig) -> Result<AccountStatusFile, ClusterError> {
    Ok(match Cluster::from_config(config)? {
        Some(c) => AccountStatusFile::shared(Arc::new(c.document(names::ACCOUNT_STATUS))),
        None => AccountStatusFile::new(&crate::paths::status_file(config)),
    })
}

/// When the shared documents were last all read from PostgreSQL.
///
/// On the monotonic clock: a wall clock stepped back must not make old
/// documents look fresh (that would admit keys unconfirmed).
///
/// Lock story: one atomic (milliseconds since `base`); written by the
/// follower after each complete re-read, read by every request.
pub(crate) struct Confirmed {
    base: Instant,
    at: AtomicU64,
}

impl Confirmed {
    pub(crate) fn now() -> Confirmed {
        Confirmed {
            base: Instant::now(),
            at: AtomicU64::new(0),
        }
    }

    fn since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn mark(&self) {
        self.at.store(self.since_base(), Ordering::Relaxed);
    }

    /// How long ago, when longer than [`STALE_AFTER`].
    pub(crate) fn stale(&self) -> Option<Duration> {
        let ago = self
            .since_base()
            .saturating_sub(self.at.load(Ordering::Relaxed));
        let ago = Duration::from_millis(ago);
        (ago > STALE_AFTER).then_some(ago)
    }
}

/// A name for this process among the gateways (host, pid, random).
pub(crate) fn process_name() -> String {
    format!(
        "{}:{}:{}",
        durable::host_name(),
        std::process::id(),
        durable::random_hex(3)
    )
}

/// A gateway's link to the shared state: the holds and reload documents
/// (the keys and status are read through their own types), and when it
/// last confirmed them all.
pub(crate) struct Link {
    pub cluster: Cluster,
    pub holds: SharedHolds,
    pub reloads: ReloadLog,
    pub confirmed: Confirmed,
}

impl Link {
    /// The link of a gateway on `cluster`: reads the reload generation.
    pub(crate) fn new(cluster: Cluster) -> Result<Link, durable::DocumentError> {
        Ok(Link {
            holds: SharedHolds(cluster.document(names::CUTOVER_HOLDS)),
            reloads: ReloadLog::new(cluster.document(names::RELOAD), process_name())?,
            confirmed: Confirmed::now(),
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_not_confirmed_for_long_are_stale() {
        assert_eq!(Confirmed::now().stale(), None);
        // Confirmed when a clock started STALE_AFTER + 1 s ago read 0.
        let c = Confirmed {
            base: Instant::now() - STALE_AFTER - Duration::from_secs(1),
            at: AtomicU64::new(0),
        };
        assert!(c.stale().is_some_and(|ago| ago > STALE_AFTER));
        c.mark();
        assert_eq!(c.stale(), None, "a complete re-read confirms them again");
    }
}
