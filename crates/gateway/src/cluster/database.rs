//! The shared-state database: one connection for reads and changes, the
//! table's idempotent migration, and running the synchronous `postgres`
//! client where it cannot stall an async runtime.
//!
//! The table sits in the ledger's schema (`[ledger.postgres] schema`):
//!
//! ```sql
//! CREATE TABLE shared_state (
//!     name text PRIMARY KEY,        -- client-keys, account-status, cutover-holds, reload
//!     version bigint NOT NULL,      -- +1 on every change
//!     document bytea,               -- the JSON document; NULL: never written
//!     changed_at timestamptz NOT NULL DEFAULT now()
//! );
//! ```
//!
//! A change is one transaction: the row is locked (`SELECT … FOR
//! UPDATE`), replaced, and `pg_notify('redcap_warden_state',
//! '<schema>:<name>')` is sent, which PostgreSQL delivers to every
//! listener when, and only if, the transaction commits.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use durable::DocumentError;
use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The channel every change is announced on; the payload is
/// `<schema>:<document name>`.
pub(crate) const CHANNEL: &str = "redcap_warden_state";

/// How long one statement on the shared state may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A database error in words, never the connection string.
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

/// The shared-state database of one ledger schema.
///
/// Lock story: one `Mutex` over the connection (`None` until the first use
/// and after any error, so a broken connection is replaced on the next
/// call); held for one read or one change, on a thread of its own
/// ([`off_runtime`]).
pub(crate) struct Database {
    url: Zeroizing<String>,
    schema: String,
    client: Mutex<Option<Client>>,
}

impl Database {
    pub(crate) fn new(url: Zeroizing<String>, schema: &str) -> Database {
        Database {
            url,
            schema: schema.to_string(),
            client: Mutex::new(None),
        }
    }

    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// `<schema>.shared_state`.
    pub(crate) fn table(&self) -> String {
        format!("{}.shared_state", self.schema)
    }

    /// A new session (the listener has its own), named `role` in
    /// `pg_stat_activity`.
    pub(crate) fn connect(&self, role: &str) -> Result<Client, DocumentError> {
        let mut config =
            postgres::Config::from_str(&self.url).map_err(|e| DocumentError::Database {
                op: "parse the connection string",
                detail: format!("{e} (the string itself is not shown: it may hold a password)"),
            })?;
        if config.get_application_name().is_none() {
            config.application_name(&format!("redcap-warden {role}"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let mut client = config.connect(NoTls).map_err(db("connect"))?;
        // A database that hangs is an error after a while, not a wait
        // without end: the follower goes on, and fails closed.
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                STATEMENT_TIMEOUT.as_millis()
            ))
            .map_err(db("connect"))?;
        Ok(client)
    }

    /// Runs `work` on the shared connection, connecting (and creating the
    /// table) first when there is none; a failed call drops the
    /// connection.
    pub(crate) fn run<T: Send>(
        &self,
        op: &'static str,
        work: impl FnOnce(&mut Client, &str) -> Result<T, DocumentError> + Send,
    ) -> Result<T, DocumentError> {
        off_runtime(|| {
            let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                let mut client = self.connect("shared state")?;
                migrate(&mut client, &self.schema)?;
                *slot = Some(client);
            }
            let client = slot.as_mut().expect("connected above");
            let out = work(client, &self.table());
            if out.is_err() {
                *slot = None;
            }
            out.map_err(|e| match e {
                DocumentError::Database { detail, .. } => DocumentError::Database { op, detail },
                other => other,
            })
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Closing a session blocks on the client's own runtime: never on
        // an async worker either.
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(c) = client {
            off_runtime(move || drop(c));
        }
    }
}

/// A `postgres` error as a [`DocumentError`] of `op`.
pub(crate) fn db(op: &'static str) -> impl FnOnce(postgres::Error) -> DocumentError {
    move |e| DocumentError::Database {
        op,
        detail: describe(&e),
    }
}

/// The advisory lock key the ledger's own migration takes for `schema`
/// (`ledger::pg::sql`): creating the schema and tables under the same
/// key keeps a gateway and a ledger opening at once from racing.
fn lock_key(schema: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"redcap-warden ledger\n");
    h.update(schema.as_bytes());
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Creates the schema and the `shared_state` table if missing.
pub(crate) fn migrate(client: &mut Client, schema: &str) -> Result<(), DocumentError> {
    let mut tx = client.transaction().map_err(db("begin the migration"))?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .map_err(db("begin the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .map_err(db("lock the schema"))?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.shared_state (
    name text PRIMARY KEY,
    version bigint NOT NULL DEFAULT 0,
    document bytea,
    changed_at timestamptz NOT NULL DEFAULT now()
);"
    ))
    .map_err(db("create the shared_state table"))?;
    tx.commit().map_err(db("commit the migration"))
}

/// Runs `work` on a thread of its own and waits for it — inside
/// `block_in_place` on a multi-threaded runtime's worker, so other tasks
/// move to other workers meanwhile. The synchronous `postgres` client
/// drives a runtime of its own and must never run on an async worker.
pub(crate) fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let run = || {
        std::thread::scope(|s| {
            s.spawn(work)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
}
