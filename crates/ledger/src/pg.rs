//! The PostgreSQL backend: several processes (gateway replicas) append to
//! one ledger held in a PostgreSQL database. `docs/ledger.md` §9 specifies
//! the tables.
//!
//! - Entries are rows `(seq, entry)`, `entry` a `bytea` holding exactly the
//!   bytes that are hashed (the line of the file format, no newline). The
//!   whole table is one segment: seq 0 is its header.
//! - Appends are group-committed: a process's entries queue for its writer
//!   thread, which inserts every queued entry in one transaction. The
//!   transaction takes a transaction-scoped advisory lock, reads the last
//!   row, numbers its entries from there and holds the lock until it
//!   commits, so seqs are assigned in commit order and no committed prefix
//!   ever has a hole — whichever process wrote each entry. An appender
//!   returns once the commit is acknowledged, which with
//!   `synchronous_commit = on` (checked at open) means the WAL is on disk.
//! - Checkpoints are rows of a table, each holding the signed note as the
//!   file backend writes it. One process at a time signs them: the holder
//!   of the signer lease (a row with holder and expiry), renewed every
//!   checkpoint interval and taken over by another process once it lapses.
//!   A checkpoint is signed inside a transaction that holds the lease row
//!   locked, over the entries that transaction sees committed (hence
//!   durable).
//! - Any database error poisons the writer, as an I/O error poisons the
//!   file writer: the batch, everything queued and every later append fail
//!   until the ledger is reopened.
//!
//! All database work happens on threads the ledger owns, so it can be
//! opened and used from any thread (the synchronous client must not run on
//! an async runtime's worker).

use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use postgres::{Client, IsolationLevel, NoTls, Statement, Transaction};
use sha2::{Digest, Sha256};

use crate::Witness;
use crate::backend::{DEFAULT_SCHEMA, LedgerBackend, valid_schema};
use crate::checkpoint::{Checkpoint, NoteError, VerifierKey};
use crate::entry::{Entry, EntryKind, FORMAT_VERSION};
use crate::error::{LedgerError, VerifyError};
use crate::files::{self, ConsistencyProof, InclusionProof, ROTATE_ACTION, VerifyReport};
use crate::merkle::{self, Hash, TreeBuilder};
use crate::pending::{Completer, Pending};
use crate::witness::Publisher;
use crate::writer::{
    ADOPT_ACTION, Adoption, GuardInput, Receipt, WITNESS_WAIT, guard_open, witness_alert,
};

/// Rows fetched per round trip when a whole ledger is read.
const FETCH_ROWS: i32 = 10_000;

/// How a PostgreSQL ledger is opened.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The schema holding the tables (created if missing): one ledger per
    /// schema. Lowercase letters, digits and `_`, starting with a letter.
    pub schema: String,
    /// Renew the signer lease and sign a checkpoint this often while
    /// entries arrive (`None`: only on [`PgLedger::checkpoint`] and
    /// [`PgLedger::close`], for deterministic tests).
    pub checkpoint_interval: Option<Duration>,
    /// How long a taken or renewed signer lease lasts.
    pub lease: Duration,
    /// How long a deferred entry waits for a batch to ride along with.
    pub deferred_delay: Duration,
    /// The name this process holds the signer lease under (default: host,
    /// process id and a random suffix).
    pub holder: Option<String>,
    /// Where the latest checkpoint is also kept (`docs/ledger.md` §11):
    /// checked on open, kept up to date by this process while it signs.
    pub witnesses: Vec<Arc<dyn Witness>>,
    /// The longest time the entries past the last checkpoint may span for
    /// the open to go on (see [`PG_MAX_UNSIGNED_SPAN`]).
    pub max_unsigned_span: Duration,
    /// Go on where the open would refuse, recording the decision.
    pub adopt: Option<Adoption>,
}

/// The signer lease's default length.
pub const PG_LEASE: Duration = Duration::from_secs(10);

/// The longest a PostgreSQL ledger's unsigned tail may span: a checkpoint
/// interval, plus a signer lease (a signer that dies is replaced once its
/// lease lapses), plus the same slack as a file ledger's.
pub const PG_MAX_UNSIGNED_SPAN: Duration = files::CHECKPOINT_INTERVAL
    .saturating_add(PG_LEASE)
    .saturating_add(files::UNSIGNED_SLACK);

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: DEFAULT_SCHEMA.into(),
            checkpoint_interval: Some(files::CHECKPOINT_INTERVAL),
            lease: PG_LEASE,
            deferred_delay: Duration::from_millis(5),
            holder: None,
            witnesses: Vec::new(),
            max_unsigned_span: PG_MAX_UNSIGNED_SPAN,
            adopt: None,
        }
    }
}

/// The SQL of one ledger schema.
#[derive(Clone, Debug)]
struct Sql {
    schema: String,
    /// The advisory lock key of this ledger: the first 8 bytes of
    /// SHA-256("redcap-warden ledger\n" ‖ schema), big-endian.
    lock_key: i64,
}

impl Sql {
    fn new(schema: &str) -> Result<Sql, LedgerError> {
        valid_schema(schema).map_err(LedgerError::OutOfRange)?;
        let mut h = Sha256::new();
        h.update(b"redcap-warden ledger\n");
        h.update(schema.as_bytes());
        let d = h.finalize();
        let lock_key = i64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        Ok(Sql {
            schema: schema.to_owned(),
            lock_key,
        })
    }

    fn entries(&self) -> String {
        format!("{}.entries", self.schema)
    }

    fn checkpoints(&self) -> String {
        format!("{}.checkpoints", self.schema)
    }

    /// A name for the ledger in messages.
    fn place(&self) -> std::path::PathBuf {
        format!("postgres schema {}", self.schema).into()
    }

    /// The idempotent migration (run under the advisory lock).
    fn migration(&self) -> String {
        let s = &self.schema;
        format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.entries (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    entry bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.checkpoints (
    id bigserial PRIMARY KEY,
    size bigint NOT NULL CHECK (size >= 0),
    note text NOT NULL,
    signer text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.signer_lease (
    id smallint PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION {s}.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the redcap-warden ledger table %.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.entries
    FOR EACH ROW EXECUTE FUNCTION {s}.append_only();
CREATE OR REPLACE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.entries
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.append_only();
CREATE OR REPLACE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.checkpoints
    FOR EACH ROW EXECUTE FUNCTION {s}.append_only();
CREATE OR REPLACE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.append_only();"
        )
    }
}

fn db(op: &'static str) -> impl FnOnce(postgres::Error) -> LedgerError {
    move |e| LedgerError::Database {
        op,
        detail: describe(&e),
    }
}

/// A database error in words, never the connection string.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

/// Connects with the connection string `url` (a `postgresql://` URL or
/// `key=value` pairs). The string is never repeated in an error: it may
/// hold a password.
fn connect(url: &str, role: &str) -> Result<Client, LedgerError> {
    let mut config = postgres::Config::from_str(url).map_err(|e| LedgerError::Database {
        op: "parse the connection string",
        detail: format!("{e} (the string itself is not shown: it may hold a password)"),
    })?;
    if config.get_application_name().is_none() {
        config.application_name(&format!("redcap-warden ledger {role}"));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.connect(NoTls).map_err(db("connect"))
}

/// Refuses a session in which a commit may be acknowledged before its WAL
/// is on disk.
fn check_durability(client: &mut Client) -> Result<(), LedgerError> {
    for setting in ["synchronous_commit", "fsync"] {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[&setting])
            .map_err(db("read the server settings"))?
            .get(0);
        if value == "off" {
            return Err(LedgerError::NotDurable {
                setting: setting.into(),
                value,
            });
        }
    }
    Ok(())
}

/// Creates the schema and tables if missing (serialised by the ledger's
/// advisory lock, so concurrent openers do not race).
fn migrate(client: &mut Client, sql: &Sql) -> Result<(), LedgerError> {
    let mut tx = client
        .transaction()
        .map_err(db("begin the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .map_err(db("lock the ledger"))?;
    tx.batch_execute(&sql.migration())
        .map_err(db("create the ledger tables"))?;
    tx.commit().map_err(db("commit the schema migration"))
}

/// Every entry of a ledger, checked row by row as it is read (the PG
/// counterpart of the file scan): the rows' seqs are 0, 1, 2, … without a
/// gap, each entry is canonical and carries its row's seq, the first is a
/// header and no other is.
#[derive(Debug, Default)]
struct RowScan {
    leaves: Vec<Hash>,
    origin: Option<String>,
    first_key_id: Option<String>,
    rotations: Vec<(u64, Option<String>)>,
    last_ts: Option<Timestamp>,
    /// The first bad row: the seq it should have had, and why.
    stop: Option<(u64, String)>,
    /// The seq whose `ts` to note: the first one no checkpoint signs.
    watch: Option<u64>,
    watch_ts: Option<Timestamp>,
}

impl RowScan {
    /// Adds the row `(seq, bytes)`; false once the scan has stopped.
    fn push(&mut self, row_seq: i64, bytes: &[u8]) -> bool {
        if self.stop.is_some() {
            return false;
        }
        let seq = self.leaves.len() as u64;
        match self.check(seq, row_seq, bytes) {
            Ok(leaf) => {
                self.leaves.push(leaf);
                true
            }
            Err(problem) => {
                self.stop = Some((seq, problem));
                false
            }
        }
    }

    fn check(&mut self, seq: u64, row_seq: i64, bytes: &[u8]) -> Result<Hash, String> {
        if row_seq != seq as i64 {
            return Err(format!(
                "no row with seq {seq}: the next row has seq {row_seq}"
            ));
        }
        let entry = Entry::from_line(bytes).map_err(|e| e.to_string())?;
        if entry.seq != seq {
            return Err(format!(
                "out of sequence: the row for seq {seq} holds an entry with seq {}",
                entry.seq
            ));
        }
        match (&entry.kind, seq == 0) {
            (
                EntryKind::Header {
                    version,
                    origin,
                    key_id,
                },
                true,
            ) => {
                if *version != FORMAT_VERSION {
                    return Err(format!("unsupported format version {version}"));
                }
                self.origin = Some(origin.clone());
                self.first_key_id = Some(key_id.clone());
            }
            // A later header marks where a segment of a file ledger that
            // was imported began; the writer itself writes none.
            (
                EntryKind::Header {
                    version, origin, ..
                },
                false,
            ) => {
                if *version != FORMAT_VERSION {
                    return Err(format!("unsupported format version {version}"));
                }
                if self.origin.as_ref() != Some(origin) {
                    return Err(format!(
                        "header names origin {origin:?}, the ledger's is {:?}",
                        self.origin.as_deref().unwrap_or_default()
                    ));
                }
            }
            (_, true) => return Err("seq 0 must be the header entry".into()),
            (_, false) => {}
        }
        if let EntryKind::Key {
            action,
            key_name,
            verifier_key,
            ..
        } = &entry.kind
            && action == ROTATE_ACTION
            && self.origin.as_deref() == Some(key_name.as_str())
        {
            self.rotations.push((seq, verifier_key.clone()));
        }
        self.last_ts = Some(self.last_ts.map_or(entry.ts, |t| t.max(entry.ts)));
        if self.watch == Some(seq) {
            self.watch_ts = Some(entry.ts);
        }
        Ok(merkle::leaf_hash(bytes))
    }

    /// Reads and checks the rows from `self.leaves.len()` on.
    fn read(&mut self, tx: &mut Transaction<'_>, sql: &Sql) -> Result<(), postgres::Error> {
        let from = self.leaves.len() as i64;
        let portal = tx.bind(
            &format!(
                "SELECT seq, entry FROM {} WHERE seq >= $1 ORDER BY seq",
                sql.entries()
            ),
            &[&from],
        )?;
        loop {
            let rows = tx.query_portal(&portal, FETCH_ROWS)?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in &rows {
                if !self.push(row.get(0), row.get(1)) {
                    return Ok(());
                }
            }
        }
    }
}

/// A stored checkpoint: its row id and note.
struct StoredNote {
    id: i64,
    size: i64,
    note: String,
}

fn read_notes(
    tx: &mut Transaction<'_>,
    sql: &Sql,
    after: i64,
) -> Result<Vec<StoredNote>, postgres::Error> {
    Ok(tx
        .query(
            &format!(
                "SELECT id, size, note FROM {} WHERE id > $1 ORDER BY id",
                sql.checkpoints()
            ),
            &[&after],
        )?
        .iter()
        .map(|r| StoredNote {
            id: r.get(0),
            size: r.get(1),
            note: r.get(2),
        })
        .collect())
}

/// A read-only view of a PostgreSQL ledger: verification, proofs and
/// entries for `ledger verify`, `prove`, `show` and `tail`. Each call
/// reads one consistent snapshot.
pub struct PgReader {
    client: Client,
    sql: Sql,
}

impl PgReader {
    /// Connects to the ledger in `schema` of the database at `url`.
    pub fn connect(url: &str, schema: &str) -> Result<PgReader, LedgerError> {
        let sql = Sql::new(schema)?;
        let url = url.to_owned();
        // The synchronous client runs its own runtime: keep it off the
        // caller's thread in case that is an async one.
        let client = std::thread::spawn(move || connect(&url, "reader"))
            .join()
            .map_err(|_| LedgerError::Database {
                op: "connect",
                detail: "the connecting thread panicked".into(),
            })??;
        Ok(PgReader { client, sql })
    }

    /// Where the ledger is, for messages: `postgres schema <name>`.
    pub fn place(&self) -> String {
        self.sql.place().display().to_string()
    }

    fn snapshot(&mut self) -> Result<Transaction<'_>, postgres::Error> {
        self.client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
    }

    fn tables_exist(&mut self) -> Result<bool, postgres::Error> {
        let found: Option<String> = self
            .client
            .query_one("SELECT to_regclass($1)::text", &[&self.sql.entries()])?
            .get(0);
        Ok(found.is_some())
    }

    /// Recomputes every leaf and root and checks every checkpoint's
    /// signature (by `key`, following the key chain) and root: the same
    /// checks as [`crate::verify_dir`], over the tables.
    pub fn verify(&mut self, key: &VerifierKey) -> Result<VerifyReport, VerifyError> {
        let dberr = |e: postgres::Error| VerifyError::Database(describe(&e));
        let sql = self.sql.clone();
        if !self.tables_exist().map_err(dberr)? {
            return Err(VerifyError::NoEntries { dir: sql.place() });
        }
        let mut tx = self.snapshot().map_err(dberr)?;
        let stored = read_notes(&mut tx, &sql, 0).map_err(dberr)?;
        let mut scan = RowScan {
            watch: Some(stored.last().map_or(0, |n| n.size.max(0) as u64)),
            ..RowScan::default()
        };
        scan.read(&mut tx, &sql).map_err(dberr)?;
        tx.commit().map_err(dberr)?;
        verify_scan(&sql, &scan, &stored, key)
    }

    /// Every entry, in order, up to the first bad row.
    pub fn read_entries(&mut self) -> Result<Vec<Entry>, LedgerError> {
        let sql = self.sql.clone();
        let mut tx = self.snapshot().map_err(db("read the entries"))?;
        let portal = tx
            .bind(
                &format!("SELECT seq, entry FROM {} ORDER BY seq", sql.entries()),
                &[],
            )
            .map_err(db("read the entries"))?;
        let mut out = Vec::new();
        'rows: loop {
            let rows = tx
                .query_portal(&portal, FETCH_ROWS)
                .map_err(db("read the entries"))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let (seq, bytes): (i64, &[u8]) = (row.get(0), row.get(1));
                match Entry::from_line(bytes) {
                    Ok(e) if seq == out.len() as i64 && e.seq == seq as u64 => out.push(e),
                    _ => break 'rows,
                }
            }
        }
        tx.commit().map_err(db("read the entries"))?;
        Ok(out)
    }

    /// Hands `visit` the entries from seq `from` on, in order (as stored;
    /// `verify` checks them), a batch of rows at a time.
    pub fn read_from(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(Entry),
    ) -> Result<(), LedgerError> {
        let sql = self.sql.clone();
        let mut tx = self.snapshot().map_err(db("read the entries"))?;
        let portal = tx
            .bind(
                &format!(
                    "SELECT entry FROM {} WHERE seq >= $1 ORDER BY seq",
                    sql.entries()
                ),
                &[&(from.min(i64::MAX as u64) as i64)],
            )
            .map_err(db("read the entries"))?;
        loop {
            let rows = tx
                .query_portal(&portal, FETCH_ROWS)
                .map_err(db("read the entries"))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                visit(parse_stored(row.get(0))?);
            }
        }
        tx.commit().map_err(db("read the entries"))?;
        Ok(())
    }

    /// The last `count` entries (as stored; `verify` checks them).
    pub fn tail(&mut self, count: usize) -> Result<Vec<Entry>, LedgerError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT entry FROM {} ORDER BY seq DESC LIMIT $1",
                    self.sql.entries()
                ),
                &[&(count.min(i64::MAX as usize) as i64)],
            )
            .map_err(db("read the entries"))?;
        let mut out = rows
            .iter()
            .map(|r| parse_stored(r.get(0)))
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// The entry with seq `seq`, if there is one.
    pub fn entry(&mut self, seq: u64) -> Result<Option<Entry>, LedgerError> {
        let row = self
            .client
            .query_opt(
                &format!("SELECT entry FROM {} WHERE seq = $1", self.sql.entries()),
                &[&(seq as i64)],
            )
            .map_err(db("read an entry"))?;
        row.map(|r| parse_stored(r.get(0))).transpose()
    }

    /// The number of rows.
    pub fn count(&mut self) -> Result<u64, LedgerError> {
        let n: i64 = self
            .client
            .query_one(&format!("SELECT count(*) FROM {}", self.sql.entries()), &[])
            .map_err(db("count the entries"))?
            .get(0);
        Ok(n as u64)
    }

    fn leaves(&mut self) -> Result<Vec<Hash>, LedgerError> {
        let sql = self.sql.clone();
        let mut tx = self.snapshot().map_err(db("read the entries"))?;
        let mut scan = RowScan::default();
        scan.read(&mut tx, &sql).map_err(db("read the entries"))?;
        tx.commit().map_err(db("read the entries"))?;
        Ok(scan.leaves)
    }

    /// Proves entry `seq` is in the tree of the first `size` entries
    /// (default: every valid entry).
    pub fn prove_inclusion(
        &mut self,
        seq: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, LedgerError> {
        let leaves = self.leaves()?;
        let size = size.unwrap_or(leaves.len() as u64);
        if size > leaves.len() as u64 {
            return Err(LedgerError::OutOfRange(format!(
                "tree size {size} is larger than the log ({} entries)",
                leaves.len()
            )));
        }
        if seq >= size {
            return Err(LedgerError::OutOfRange(format!(
                "seq {seq} is not in a tree of {size} entries"
            )));
        }
        Ok(InclusionProof {
            seq,
            size,
            leaf_hash: leaves[seq as usize],
            root: merkle::root(&leaves[..size as usize]),
            proof: merkle::inclusion_proof(&leaves, seq, size),
        })
    }

    /// Proves the tree of `new` entries extends the tree of `old` entries.
    pub fn prove_consistency(
        &mut self,
        old: u64,
        new: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        let leaves = self.leaves()?;
        if old == 0 || old > new || new > leaves.len() as u64 {
            return Err(LedgerError::OutOfRange(format!(
                "a consistency proof needs 1 <= old <= new <= {} (the log size); got old {old}, new {new}",
                leaves.len()
            )));
        }
        Ok(ConsistencyProof {
            old,
            new,
            old_root: merkle::root(&leaves[..old as usize]),
            new_root: merkle::root(&leaves[..new as usize]),
            proof: merkle::consistency_proof(&leaves, old, new),
        })
    }
}

fn parse_stored(bytes: &[u8]) -> Result<Entry, LedgerError> {
    Entry::from_line(bytes).map_err(|e| LedgerError::Database {
        op: "read an entry",
        detail: format!("a stored entry is not valid ({e}); run `ledger verify`"),
    })
}

/// The checks of `verify` on what was read.
fn verify_scan(
    sql: &Sql,
    scan: &RowScan,
    stored: &[StoredNote],
    key: &VerifierKey,
) -> Result<VerifyReport, VerifyError> {
    let table = sql.entries();
    if let Some((seq, problem)) = &scan.stop {
        return Err(VerifyError::Row {
            table,
            seq: *seq,
            problem: problem.clone(),
        });
    }
    let origin = match scan.origin.clone() {
        Some(origin) => origin,
        // Every entry is gone but checkpoints remain: the size check below
        // names the missing entries.
        None if !stored.is_empty() => key.name.clone(),
        None => return Err(VerifyError::NoEntries { dir: sql.place() }),
    };
    if origin != key.name {
        return Err(VerifyError::Row {
            table,
            seq: 0,
            problem: format!(
                "the header names origin {origin:?}, the verifier key is for {:?}",
                key.name
            ),
        });
    }
    let stored_err = |index: usize, problem: String| match stored.get(index) {
        Some(row) => VerifyError::StoredCheckpoint {
            table: sql.checkpoints(),
            index,
            id: row.id,
            problem,
        },
        // About the chain as a whole (no checkpoint by the pinned key),
        // past the last row.
        None => VerifyError::Checkpoint { index, problem },
    };
    let notes: Vec<String> = stored.iter().map(|n| n.note.clone()).collect();
    let walk = files::walk_keys(
        &notes,
        &scan.rotations,
        key,
        scan.first_key_id.as_deref(),
        true,
    )
    .map_err(|(index, e)| stored_err(index, e.to_string()))?;
    for (index, (cp, row)) in walk.checkpoints.iter().zip(stored).enumerate() {
        if cp.size as i64 != row.size {
            return Err(stored_err(
                index,
                format!(
                    "the row's size column says {}, its signed note {}",
                    row.size, cp.size
                ),
            ));
        }
    }
    let root = files::check_roots(&scan.leaves, &walk.checkpoints)?;
    let entries = scan.leaves.len() as u64;
    let anchored = walk.checkpoints.last().map_or(0, |c| c.size);
    let report = VerifyReport {
        origin,
        segments: 1,
        entries,
        root,
        checkpoints: walk.checkpoints.len(),
        anchored,
        unanchored: entries - anchored,
        signing_key: walk.current,
        key_rotations: walk.applied,
        heads: walk.checkpoints.iter().map(|c| (c.size, c.root)).collect(),
        notes_place: format!("table {}", sql.checkpoints()),
        unsigned_span: files::unsigned_span(
            entries,
            anchored,
            scan.watch == Some(anchored),
            scan.watch_ts,
            scan.last_ts,
        ),
        max_unsigned_span: PG_MAX_UNSIGNED_SPAN,
    };
    files::check_unsigned_tail(&report)?;
    Ok(report)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A PostgreSQL ledger open for writing. Share it between threads with
/// `Arc`; any number of processes may hold the same ledger open.
pub struct PgLedger {
    shared: Arc<Shared>,
    /// Where to read entries back from ([`LedgerBackend::tail`]).
    url: String,
    schema: String,
    worker: Mutex<Option<JoinHandle<()>>>,
    publisher: Option<Arc<Publisher>>,
    /// What `PgOptions::adopt` adopted on open.
    adopted: Option<String>,
}

struct Shared {
    origin: String,
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
}

impl Shared {
    /// Queues an entry for the writer thread.
    fn enqueue(&self, kind: EntryKind, urgent: bool) -> Pending {
        let mut st = lock(&self.state);
        if let Some(cause) = &st.poisoned {
            return Pending::ready(Err(LedgerError::Poisoned {
                cause: cause.clone(),
            }));
        }
        if st.closed {
            return Pending::ready(Err(LedgerError::Closed));
        }
        let (completer, pending) = Pending::new();
        st.queue.push((kind, completer));
        if urgent {
            st.urgent += 1;
        } else if st.oldest_deferred.is_none() {
            st.oldest_deferred = Some(Instant::now());
        }
        drop(st);
        self.work.notify_one();
        pending
    }
}

enum Request {
    Checkpoint(mpsc::Sender<Result<Option<Checkpoint>, LedgerError>>),
    Close(mpsc::Sender<Result<Option<Checkpoint>, LedgerError>>),
    Rotate(Box<Rotation>),
}

/// A [`PgLedger::rotate_key`] for the writer thread.
struct Rotation {
    new: SigningKey,
    operator: String,
    reason: String,
    reply: mpsc::Sender<Result<Receipt, LedgerError>>,
}

impl Request {
    /// Answers the request with an error.
    fn fail(self, e: LedgerError) {
        match self {
            Request::Checkpoint(reply) | Request::Close(reply) => {
                let _ = reply.send(Err(e));
            }
            Request::Rotate(r) => {
                let _ = r.reply.send(Err(e));
            }
        }
    }
}

struct State {
    queue: Vec<(EntryKind, Completer)>,
    /// Queued entries an appender waits for (not deferred).
    urgent: usize,
    /// When the oldest queued deferred entry was queued.
    oldest_deferred: Option<Instant>,
    requests: Vec<Request>,
    /// Entries taken by the writer thread and not yet committed.
    in_flight: usize,
    closed: bool,
    poisoned: Option<String>,
    /// Durable entries this process knows of.
    size: u64,
    verifier: VerifierKey,
}

/// What opening found, sent from the writer thread to the opener.
struct Opened {
    origin: String,
    size: u64,
    verifier: VerifierKey,
    publisher: Option<Arc<Publisher>>,
    /// The last checkpoint: its size and note.
    latest: Option<(u64, String)>,
    adopted: Option<String>,
    unread: Vec<(String, String)>,
}

impl PgLedger {
    /// Creates a new ledger in `options.schema` of the database at `url`
    /// (tables created if missing; refused if the schema already holds
    /// entries or checkpoints): the header as seq 0, then a first
    /// checkpoint.
    pub fn create(
        url: &str,
        origin: &str,
        key: SigningKey,
        options: PgOptions,
    ) -> Result<PgLedger, LedgerError> {
        let ledger = PgLedger::start(url, Some(origin.to_owned()), key, options)?;
        ledger.checkpoint()?;
        Ok(ledger)
    }

    /// Opens the ledger in `options.schema` of the database at `url` for
    /// writing. Checks that commits are durable (`synchronous_commit` and
    /// `fsync` not `off`), runs the idempotent migration, then reads and
    /// checks every entry and checkpoint: any damage, or a key that is not
    /// the one in force, refuses the open.
    pub fn open(url: &str, key: SigningKey, options: PgOptions) -> Result<PgLedger, LedgerError> {
        PgLedger::start(url, None, key, options)
    }

    fn start(
        url: &str,
        create: Option<String>,
        key: SigningKey,
        options: PgOptions,
    ) -> Result<PgLedger, LedgerError> {
        let sql = Sql::new(&options.schema)?;
        let url = url.to_owned();
        let (reader_url, schema) = (url.clone(), options.schema.clone());
        let adoption = options.adopt.clone();
        let (tx, rx) = mpsc::channel();
        let (shared_tx, shared_rx) = mpsc::channel::<Arc<Shared>>();
        let worker = std::thread::Builder::new()
            .name("ledger-pg-writer".into())
            .spawn(move || {
                let opened = Writer::open(&url, &sql, create, key, &options);
                let mut writer = match opened {
                    Ok((writer, opened)) => {
                        let _ = tx.send(Ok(opened));
                        writer
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if let Ok(shared) = shared_rx.recv() {
                    writer.run(&shared);
                }
            })
            .map_err(|e| LedgerError::Database {
                op: "start the writer thread",
                detail: e.to_string(),
            })?;
        let opened = match rx.recv() {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(LedgerError::Database {
                    op: "open the ledger",
                    detail: "the writer thread stopped".into(),
                });
            }
        };
        let Opened {
            publisher,
            latest,
            adopted,
            unread,
            ..
        } = opened;
        let shared = Arc::new(Shared {
            origin: opened.origin,
            state: Mutex::new(State {
                queue: Vec::new(),
                urgent: 0,
                oldest_deferred: None,
                requests: Vec::new(),
                in_flight: 0,
                closed: false,
                poisoned: None,
                size: opened.size,
                verifier: opened.verifier,
            }),
            work: Condvar::new(),
        });
        shared_tx
            .send(shared.clone())
            .expect("the writer thread waits for its state");
        if let Some(p) = &publisher {
            // Witnesses that fail, and recover, are recorded in the ledger.
            let weak = Arc::downgrade(&shared);
            p.on_change(Box::new(move |witness, error| {
                if let Some(sh) = weak.upgrade() {
                    drop(sh.enqueue(witness_alert(witness, error), false));
                }
            }));
        }
        let ledger = PgLedger {
            shared,
            url: reader_url,
            schema,
            worker: Mutex::new(Some(worker)),
            publisher: publisher.clone(),
            adopted: adopted.clone(),
        };
        for (witness, error) in &unread {
            ledger.append(witness_alert(
                witness,
                Some(&format!("{error} (not checked on open)")),
            ))?;
        }
        let mut signed_now = None;
        if let (Some(adoption), Some(what)) = (&adoption, &adopted) {
            ledger.append(EntryKind::Admin {
                operator: adoption.operator.clone(),
                action: ADOPT_ACTION.into(),
                target: what.clone(),
                reason: adoption.reason.clone(),
            })?;
            // Signed now if this process can take the signer lease, else
            // by the process that holds it.
            match ledger.checkpoint() {
                Ok(cp) => signed_now = cp,
                Err(LedgerError::NotSigner { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(p) = &publisher {
            if signed_now.is_none()
                && let Some((size, note)) = &latest
            {
                // The witnesses catch up with the last checkpoint.
                p.publish(*size, note);
            }
            for (witness, error) in p.flush(WITNESS_WAIT) {
                ledger.append(witness_alert(&witness, Some(&error)))?;
            }
        }
        Ok(ledger)
    }

    /// What `PgOptions::adopt` adopted on open (recorded in the ledger),
    /// if anything needed adopting.
    pub fn adopted(&self) -> Option<&str> {
        self.adopted.as_deref()
    }

    /// Moves the file ledger in `dir` into an empty schema (created if
    /// missing), then opens it: every entry with its bytes and seq, every
    /// checkpoint note as it is, in order, so the PostgreSQL log *is* the
    /// file log continued — same origin, same tree, every old checkpoint
    /// and proof still valid. The directory is verified first with `key`'s
    /// verifier key and left untouched; from then on only the database is
    /// written. An `alert` entry (`ledger.imported`) records the import.
    pub fn import_dir(
        fs: &dyn durable::FileSystem,
        dir: &std::path::Path,
        url: &str,
        key: SigningKey,
        options: PgOptions,
    ) -> Result<PgLedger, LedgerError> {
        let sql = Sql::new(&options.schema)?;
        let entries = files::read_entries(fs, dir)?;
        let Some(Entry {
            kind: EntryKind::Header { origin, .. },
            ..
        }) = entries.first()
        else {
            return Err(LedgerError::NotALedger {
                dir: dir.to_path_buf(),
            });
        };
        let verifier = VerifierKey::from_signing_key(origin, &key);
        let report = files::verify_dir(fs, dir, &verifier).map_err(|e| {
            LedgerError::OutOfRange(format!(
                "the file ledger {} does not verify ({e}); nothing was imported",
                dir.display()
            ))
        })?;
        if report.entries != entries.len() as u64 {
            return Err(LedgerError::OutOfRange(format!(
                "the file ledger {} changed while it was read; nothing was imported",
                dir.display()
            )));
        }
        let notes_path = dir.join(files::CHECKPOINTS);
        let notes =
            files::parse_notes(&fs.read(&notes_path).map_err(|source| LedgerError::Io {
                op: "read",
                path: notes_path.clone(),
                source,
            })?)
            .notes;
        let sizes = notes
            .iter()
            .map(|n| {
                n.split('\n')
                    .nth(1)
                    .and_then(|s| s.parse::<i64>().ok())
                    .expect("verified notes have a size line")
            })
            .collect::<Vec<i64>>();
        let lines: Vec<Vec<u8>> = entries.iter().map(Entry::to_line).collect();
        let signer = format!("imported from {}", dir.display());
        let (n_entries, n_notes) = (lines.len(), notes.len());
        let owned_url = url.to_owned();
        std::thread::spawn(move || -> Result<(), LedgerError> {
            let mut client = connect(&owned_url, "import")?;
            check_durability(&mut client)?;
            migrate(&mut client, &sql)?;
            let mut tx = client.transaction().map_err(db("begin the import"))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
                .map_err(db("lock the ledger"))?;
            let existing: i64 = tx
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})",
                        sql.entries(),
                        sql.checkpoints()
                    ),
                    &[],
                )
                .map_err(db("count the rows"))?
                .get(0);
            if existing > 0 {
                return Err(LedgerError::AlreadyExists { dir: sql.place() });
            }
            let insert = format!(
                "INSERT INTO {} (seq, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                sql.entries()
            );
            for (c, chunk) in lines.chunks(FETCH_ROWS as usize).enumerate() {
                let from = (c * FETCH_ROWS as usize) as i64;
                let seqs: Vec<i64> = (from..from + chunk.len() as i64).collect();
                tx.execute(&insert, &[&seqs, &chunk])
                    .map_err(db("import the entries"))?;
            }
            let add = format!(
                "INSERT INTO {} (size, note, signer) VALUES ($1, $2, $3)",
                sql.checkpoints()
            );
            for (note, size) in notes.iter().zip(&sizes) {
                tx.execute(&add, &[size, note, &signer])
                    .map_err(db("import the checkpoints"))?;
            }
            tx.commit().map_err(db("commit the import"))
        })
        .join()
        .map_err(|_| LedgerError::Database {
            op: "import the ledger",
            detail: "the importing thread panicked".into(),
        })??;
        let ledger = PgLedger::open(url, key, options)?;
        ledger.append(EntryKind::Alert {
            code: "ledger.imported".into(),
            message: format!(
                "imported {n_entries} entries and {n_notes} checkpoints from the file ledger in {}; it is no longer written",
                dir.display()
            ),
        })?;
        Ok(ledger)
    }

    fn enqueue(&self, kind: EntryKind, urgent: bool) -> Pending {
        if let Err(e) = crate::backend::check_appendable(&kind, &self.shared.origin) {
            return Pending::ready(Err(e));
        }
        self.shared.enqueue(kind, urgent)
    }

    /// Appends an entry; returns once its transaction has committed.
    pub fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
        self.enqueue(kind, true).wait()
    }

    /// Queues an entry for the writer thread's next transaction without
    /// waiting: await (or wait for) the [`Pending`]. For async callers.
    pub fn append_async(&self, kind: EntryKind) -> Pending {
        self.enqueue(kind, true)
    }

    /// Queues an entry to ride along with the next batch (or be committed
    /// after [`PgOptions::deferred_delay`]).
    pub fn append_deferred(&self, kind: EntryKind) -> Pending {
        self.enqueue(kind, false)
    }

    fn request(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<Option<Checkpoint>, LedgerError>>) -> Request,
        closing: bool,
    ) -> Result<Option<Checkpoint>, LedgerError> {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = lock(&self.shared.state);
            if let Some(cause) = &st.poisoned {
                return Err(LedgerError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.closed {
                return if closing {
                    Ok(None)
                } else {
                    Err(LedgerError::Closed)
                };
            }
            if closing {
                st.closed = true;
            }
            st.requests.push(make(tx));
        }
        self.shared.work.notify_one();
        let outcome = rx.recv().unwrap_or_else(|_| {
            Err(lock(&self.shared.state)
                .poisoned
                .clone()
                .map_or(LedgerError::Closed, |cause| LedgerError::Poisoned { cause }))
        });
        if closing && let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
        outcome
    }

    /// Signs a checkpoint of every committed entry now, unless the last
    /// one covers them; takes the signer lease if it is free or lapsed.
    /// [`LedgerError::NotSigner`] if another process holds it.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        self.request(Request::Checkpoint, false)
    }

    /// Stops accepting entries, commits those queued, signs a final
    /// checkpoint if this process holds (or can take) the signer lease,
    /// and gives the lease up. Idempotent; also run on drop.
    pub fn close(&self) -> Result<Option<Checkpoint>, LedgerError> {
        let last = self.request(Request::Close, true);
        if let Some(p) = &self.publisher {
            p.finish(WITNESS_WAIT);
        }
        last
    }

    /// Rotates the checkpoint signing key to `new` (`docs/ledger.md` §4.4
    /// and §9.3), as [`crate::Ledger::rotate_key`] does for a file ledger:
    /// in **one transaction**, holding the signer lease row and the
    /// ledger's advisory lock, appends the `key` entry (action `rotate`,
    /// key name the origin) carrying the new verifier key, a checkpoint
    /// covering it signed with the current key, and a checkpoint of the
    /// same tree signed with `new`, which signs every later checkpoint.
    /// Other processes see all of it or none of it.
    ///
    /// Only the holder of the signer lease rotates: if another process
    /// holds it, [`LedgerError::NotSigner`] names it. A process that still
    /// holds the old key refuses to sign (and gives the lease up, poisoned)
    /// once it sees the rotation: it must be restarted with the new key.
    ///
    /// If the ledger was opened with a rotation entry no checkpoint covers
    /// (a file ledger imported mid-rotation), nothing is signed until this
    /// call with that entry's key finishes it, without a second entry;
    /// another key gets [`LedgerError::RotationPending`].
    pub fn rotate_key(
        &self,
        new: SigningKey,
        operator: &str,
        reason: &str,
    ) -> Result<Receipt, LedgerError> {
        let (reply, rx) = mpsc::channel();
        {
            let mut st = lock(&self.shared.state);
            if let Some(cause) = &st.poisoned {
                return Err(LedgerError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if st.closed {
                return Err(LedgerError::Closed);
            }
            st.requests.push(Request::Rotate(Box::new(Rotation {
                new,
                operator: operator.to_owned(),
                reason: reason.to_owned(),
                reply,
            })));
        }
        self.shared.work.notify_one();
        rx.recv().unwrap_or_else(|_| {
            Err(lock(&self.shared.state)
                .poisoned
                .clone()
                .map_or(LedgerError::Closed, |cause| LedgerError::Poisoned { cause }))
        })
    }

    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The verifier key of the key that signs this process's checkpoints;
    /// it changes on [`PgLedger::rotate_key`].
    pub fn verifier_key(&self) -> VerifierKey {
        lock(&self.shared.state).verifier.clone()
    }

    /// Durable entries this process knows of (its own commits and the
    /// rows it has read; other processes may have committed more).
    pub fn size(&self) -> u64 {
        lock(&self.shared.state).size
    }

    /// Entries waiting for their commit.
    pub fn pending(&self) -> usize {
        let st = lock(&self.shared.state);
        st.queue.len() + st.in_flight
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        let _ = self.close();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

impl LedgerBackend for PgLedger {
    fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
        PgLedger::append(self, kind)
    }

    fn read_from(
        &self,
        from: u64,
        visit: &mut (dyn FnMut(Entry) + Send),
    ) -> Result<(), LedgerError> {
        // The synchronous client must not run on an async runtime's thread.
        std::thread::scope(|s| {
            s.spawn(|| PgReader::connect(&self.url, &self.schema)?.read_from(from, visit))
                .join()
                .map_err(|_| LedgerError::Database {
                    op: "read the entries",
                    detail: "the reading thread panicked".into(),
                })?
        })
    }

    fn append_async(&self, kind: EntryKind) -> Pending {
        PgLedger::append_async(self, kind)
    }

    fn append_deferred(&self, kind: EntryKind) -> Pending {
        PgLedger::append_deferred(self, kind)
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        PgLedger::checkpoint(self)
    }

    fn close(&self) -> Result<Option<Checkpoint>, LedgerError> {
        PgLedger::close(self)
    }

    fn size(&self) -> u64 {
        PgLedger::size(self)
    }

    fn pending(&self) -> usize {
        PgLedger::pending(self)
    }

    fn origin(&self) -> &str {
        PgLedger::origin(self)
    }

    fn verifier_key(&self) -> VerifierKey {
        PgLedger::verifier_key(self)
    }

    fn adopted(&self) -> Option<String> {
        PgLedger::adopted(self).map(str::to_owned)
    }

    fn rotate_key(
        &self,
        new: SigningKey,
        operator: &str,
        reason: &str,
    ) -> Result<Receipt, LedgerError> {
        PgLedger::rotate_key(self, new, operator, reason)
    }
}

/// The writer thread: owns the connection, commits batches, renews the
/// lease and signs checkpoints.
struct Writer {
    client: Client,
    sql: Sql,
    origin: String,
    key: SigningKey,
    verifier: VerifierKey,
    holder: String,
    lease_ms: i64,
    interval: Option<Duration>,
    deferred_delay: Duration,
    /// The checked prefix of the log (all entries read so far).
    scan: RowScan,
    tree: TreeBuilder,
    /// The last checkpoint row checked, and the size it signs.
    checked_note: i64,
    signed: u64,
    /// A rotation `key` entry no checkpoint covers, found on open: no
    /// checkpoint is signed until [`PgLedger::rotate_key`] finishes it.
    pending: Option<(Receipt, VerifierKey)>,
    stmts: Statements,
    /// Hands each checkpoint this process signs to the witnesses.
    publisher: Option<Arc<Publisher>>,
}

struct Statements {
    lock: Statement,
    last: Statement,
    insert: Statement,
    take_lease: Statement,
    hold_lease: Statement,
    lease_holder: Statement,
    add_note: Statement,
    release: Statement,
}

/// What a commit or a checkpoint may fail with: a database error poisons
/// the writer, as does damage found in the tables.
enum Failure {
    Db(&'static str, postgres::Error),
    Damage(String),
}

impl From<Failure> for String {
    fn from(f: Failure) -> String {
        match f {
            Failure::Db(op, e) => format!("ledger database: cannot {op}: {}", describe(&e)),
            Failure::Damage(d) => d,
        }
    }
}

fn at(op: &'static str) -> impl FnOnce(postgres::Error) -> Failure {
    move |e| Failure::Db(op, e)
}

fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!("{host} pid {} {}", std::process::id(), hex::encode(r))
}

impl Writer {
    fn open(
        url: &str,
        sql: &Sql,
        create: Option<String>,
        key: SigningKey,
        options: &PgOptions,
    ) -> Result<(Writer, Opened), LedgerError> {
        let holder = options.holder.clone().unwrap_or_else(default_holder);
        let mut client = connect(url, "writer")?;
        check_durability(&mut client)?;
        client
            .batch_execute("SET lock_timeout = '30s'")
            .map_err(db("configure the session"))?;
        migrate(&mut client, sql)?;
        if let Some(origin) = &create {
            create_header(&mut client, sql, origin, &key)?;
        }
        let place = sql.place();
        let tampered = |signed: u64, seq: u64, detail: String| LedgerError::Tampered {
            dir: place.clone(),
            signed,
            seq,
            detail,
        };
        // The witnesses first: another process may sign (and update them)
        // after the snapshot below is taken.
        let reads = crate::witness::read_all(&options.witnesses);
        let (scan, stored) = {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .start()
                .map_err(db("read the ledger"))?;
            let stored = read_notes(&mut tx, sql, 0).map_err(db("read the checkpoints"))?;
            let mut scan = RowScan {
                watch: Some(stored.last().map_or(0, |n| n.size.max(0) as u64)),
                ..RowScan::default()
            };
            scan.read(&mut tx, sql).map_err(db("read the entries"))?;
            tx.commit().map_err(db("read the ledger"))?;
            (scan, stored)
        };
        let signed_origin = stored
            .first()
            .and_then(|n| n.note.split('\n').next())
            .map(str::to_owned);
        let Some(origin) = signed_origin.or_else(|| scan.origin.clone()) else {
            return Err(LedgerError::NotALedger { dir: sql.place() });
        };
        let verifier = VerifierKey::from_signing_key(&origin, &key);
        let signed = stored.last().map_or(0, |n| n.size.max(0) as u64);
        // Committed rows are acknowledged entries: unlike a file's torn
        // tail, any damage here is tampering, signed or not.
        if let Some((seq, problem)) = &scan.stop {
            return Err(tampered(signed, *seq, problem.clone()));
        }
        if scan.origin.as_deref() != Some(origin.as_str()) {
            return Err(tampered(
                signed,
                0,
                format!("the header does not name origin {origin:?}, which the checkpoints sign"),
            ));
        }
        let notes: Vec<String> = stored.iter().map(|n| n.note.clone()).collect();
        let walk = files::walk_keys(
            &notes,
            &scan.rotations,
            &verifier,
            scan.first_key_id.as_deref(),
            false,
        )
        .map_err(|(index, e)| match e {
            // The key of a rotation no checkpoint covers yet.
            NoteError::NoSignature { .. }
                if scan.rotations.iter().any(|(seq, k)| {
                    *seq >= signed && k.as_deref() == Some(verifier.to_string().as_str())
                }) =>
            {
                LedgerError::RotationPending {
                    seq: scan
                        .rotations
                        .iter()
                        .find(|(seq, _)| *seq >= signed)
                        .map_or(0, |(seq, _)| *seq),
                    key: verifier.to_string(),
                }
            }
            // No signature by this key at all: the key is not this
            // ledger's (a forged signature line is `BadSignature`).
            NoteError::NoSignature { .. } => LedgerError::WrongKey {
                dir: sql.place(),
                given: verifier.key_id_hex(),
                current: format!("the key that signed checkpoint #{index}"),
            },
            e => tampered(
                signed,
                0,
                format!(
                    "checkpoint #{index} (id {}) in {} is not valid: {e}",
                    stored[index].id,
                    sql.checkpoints()
                ),
            ),
        })?;
        if walk.current.as_ref() != Some(&verifier) {
            // Rotating to this key, and no checkpoint of the old key
            // covers the rotation yet?
            let uncovered = scan.rotations[walk.applied..]
                .iter()
                .find(|(_, k)| k.as_deref() == Some(verifier.to_string().as_str()));
            return Err(match uncovered {
                Some((seq, _)) => LedgerError::RotationPending {
                    seq: *seq,
                    key: verifier.to_string(),
                },
                None => LedgerError::WrongKey {
                    dir: sql.place(),
                    given: verifier.key_id_hex(),
                    current: walk
                        .current
                        .as_ref()
                        .map_or("the ledger's first key".into(), |k| {
                            format!("key id {}", k.key_id_hex())
                        }),
                },
            });
        }
        let pending = match scan.rotations.get(walk.applied) {
            None => None,
            Some((seq, key)) => {
                let key = key
                    .as_deref()
                    .and_then(|k| VerifierKey::parse(k).ok())
                    .filter(|k| k.name == origin)
                    .ok_or_else(|| {
                        tampered(
                            signed,
                            *seq,
                            "signing-key rotation entry without a valid verifier key for this ledger".into(),
                        )
                    })?;
                Some((
                    Receipt {
                        seq: *seq,
                        leaf_hash: scan.leaves[*seq as usize],
                    },
                    key,
                ))
            }
        };
        for (cp, row) in walk.checkpoints.iter().zip(&stored) {
            if cp.size as i64 != row.size {
                return Err(tampered(
                    signed,
                    0,
                    format!(
                        "checkpoint id {} has size column {} but signs {}",
                        row.id, row.size, cp.size
                    ),
                ));
            }
        }
        match files::check_roots(&scan.leaves, &walk.checkpoints) {
            Ok(_) => {}
            Err(VerifyError::CheckpointBeyondLog { entries, .. }) => {
                return Err(tampered(
                    signed,
                    entries,
                    format!("entries from seq {entries} on are missing"),
                ));
            }
            Err(VerifyError::RootMismatch {
                first_seq, size, ..
            }) => {
                return Err(tampered(
                    signed,
                    first_seq,
                    format!(
                        "an entry with seq in {first_seq}..{size} differs from what was signed"
                    ),
                ));
            }
            Err(other) => return Err(tampered(signed, 0, other.to_string())),
        }
        let heads: Vec<(u64, Hash)> = walk.checkpoints.iter().map(|c| (c.size, c.root)).collect();
        let notes_place = format!("table {}", sql.checkpoints());
        let guard = guard_open(
            &GuardInput {
                origin: &origin,
                verifier: &verifier,
                heads: &heads,
                leaves: &scan.leaves,
                signed,
                tail_span: files::unsigned_span(
                    scan.leaves.len() as u64,
                    signed,
                    scan.watch == Some(signed),
                    scan.watch_ts,
                    scan.last_ts,
                ),
                rotation_pending: pending.is_some(),
                notes_place: &notes_place,
            },
            &options.witnesses,
            reads,
            options.max_unsigned_span,
            options.adopt.is_some(),
        )
        .map_err(|refusal| refusal.into_error(&sql.place()))?;
        let publisher = (!options.witnesses.is_empty())
            .then(|| Publisher::start(options.witnesses.clone(), guard.held.clone()));
        let mut tree = TreeBuilder::new();
        for leaf in &scan.leaves {
            tree.push(*leaf);
        }
        let stmts = Statements::prepare(&mut client, sql).map_err(db("prepare statements"))?;
        let size = scan.leaves.len() as u64;
        let writer = Writer {
            client,
            sql: sql.clone(),
            origin: origin.clone(),
            key,
            verifier: verifier.clone(),
            holder,
            lease_ms: options.lease.as_millis().min(i64::MAX as u128) as i64,
            interval: options.checkpoint_interval,
            deferred_delay: options.deferred_delay,
            scan,
            tree,
            checked_note: stored.last().map_or(0, |n| n.id),
            signed,
            pending,
            stmts,
            publisher: publisher.clone(),
        };
        Ok((
            writer,
            Opened {
                origin,
                size,
                verifier,
                publisher,
                latest: stored
                    .last()
                    .map(|n| (n.size.max(0) as u64, n.note.clone())),
                adopted: guard.adopted,
                unread: guard.unread,
            },
        ))
    }

    /// The writer thread's loop, until close or poisoning.
    fn run(&mut self, shared: &Shared) {
        let mut next_tick = self.interval.map(|i| Instant::now() + i);
        loop {
            let (batch, requests, closing) = {
                let mut st = lock(&shared.state);
                loop {
                    let now = Instant::now();
                    let deferred_due = st
                        .oldest_deferred
                        .is_some_and(|t| now >= t + self.deferred_delay);
                    let tick_due = next_tick.is_some_and(|t| now >= t);
                    if st.urgent > 0
                        || deferred_due
                        || tick_due
                        || !st.requests.is_empty()
                        || st.closed
                    {
                        break;
                    }
                    let deadline = [
                        st.oldest_deferred.map(|t| t + self.deferred_delay),
                        next_tick,
                    ]
                    .into_iter()
                    .flatten()
                    .min();
                    st = match deadline {
                        Some(d) => {
                            shared
                                .work
                                .wait_timeout(st, d.saturating_duration_since(now))
                                .unwrap_or_else(|e| e.into_inner())
                                .0
                        }
                        None => shared.work.wait(st).unwrap_or_else(|e| e.into_inner()),
                    };
                }
                let batch = std::mem::take(&mut st.queue);
                st.in_flight = batch.len();
                st.urgent = 0;
                st.oldest_deferred = None;
                (batch, std::mem::take(&mut st.requests), st.closed)
            };
            let mut result: Result<(), String> = Ok(());
            if !batch.is_empty() {
                result = self.commit(shared, batch).map_err(String::from);
            }
            if result.is_ok() && next_tick.is_some_and(|t| Instant::now() >= t) {
                next_tick = self.interval.map(|i| Instant::now() + i);
                result = self.tick().map_err(String::from);
            }
            let mut replies = Vec::new();
            let mut rotated = Vec::new();
            for request in requests {
                match request {
                    Request::Checkpoint(reply) if result.is_ok() => match self.checkpoint_now() {
                        Ok(r) => replies.push((reply, r)),
                        Err(f) => {
                            result = Err(f.into());
                            replies.push((reply, Ok(None)));
                        }
                    },
                    Request::Checkpoint(reply) | Request::Close(reply) => {
                        replies.push((reply, Ok(None)));
                    }
                    Request::Rotate(r) if result.is_ok() => match self.rotate(shared, &r) {
                        Ok(outcome) => rotated.push((r.reply, outcome)),
                        Err(f) => {
                            result = Err(f.into());
                            rotated.push((r.reply, Err(LedgerError::Closed)));
                        }
                    },
                    Request::Rotate(r) => rotated.push((r.reply, Err(LedgerError::Closed))),
                }
            }
            if let Err(cause) = result {
                self.poison(shared, cause.clone());
                for (reply, _) in replies {
                    let _ = reply.send(Err(LedgerError::Poisoned {
                        cause: cause.clone(),
                    }));
                }
                for (reply, _) in rotated {
                    let _ = reply.send(Err(LedgerError::Poisoned {
                        cause: cause.clone(),
                    }));
                }
                return;
            }
            for (reply, r) in rotated {
                let _ = reply.send(r);
            }
            if closing {
                // Entries queued before close() are in `batch`; append
                // refuses new ones once `closed` is set.
                let last = match self.final_checkpoint() {
                    Ok(cp) => Ok(cp),
                    Err(f) => {
                        let cause: String = f.into();
                        self.poison(shared, cause.clone());
                        Err(LedgerError::Poisoned { cause })
                    }
                };
                for (reply, r) in replies {
                    let _ = reply.send(match (&last, r) {
                        (Err(e), _) => Err(LedgerError::Poisoned {
                            cause: e.to_string(),
                        }),
                        (Ok(cp), Ok(None)) => match self.pending_error() {
                            // Nothing was signed: say why, as a file
                            // ledger's close does.
                            Some(e) => Err(e),
                            None => Ok(cp.clone()),
                        },
                        (_, other) => other,
                    });
                }
                return;
            }
            for (reply, r) in replies {
                let _ = reply.send(r);
            }
        }
    }

    fn poison(&mut self, shared: &Shared, cause: String) {
        let mut st = lock(&shared.state);
        st.poisoned = Some(cause.clone());
        st.in_flight = 0;
        for (_, completer) in st.queue.drain(..) {
            completer.complete(Err(LedgerError::Poisoned {
                cause: cause.clone(),
            }));
        }
        for r in st.requests.drain(..) {
            r.fail(LedgerError::Poisoned {
                cause: cause.clone(),
            });
        }
        drop(st);
        // A poisoned writer signs nothing more: let another process take
        // the lease now rather than when it lapses (best effort: the
        // connection may be what failed).
        let _ = self.client.execute(&self.stmts.release, &[&self.holder]);
    }

    /// One transaction for the whole batch, under the advisory lock held
    /// to commit. On failure every entry of the batch fails.
    fn commit(
        &mut self,
        shared: &Shared,
        batch: Vec<(EntryKind, Completer)>,
    ) -> Result<(), Failure> {
        let (kinds, completers): (Vec<EntryKind>, Vec<Completer>) = batch.into_iter().unzip();
        match self.insert(kinds) {
            Ok(receipts) => {
                let size = receipts.last().map_or(0, |r| r.seq + 1);
                {
                    let mut st = lock(&shared.state);
                    st.in_flight = 0;
                    st.size = st.size.max(size);
                }
                for (c, r) in completers.into_iter().zip(receipts) {
                    c.complete(Ok(r));
                }
                Ok(())
            }
            Err(f) => {
                let cause: String = f.into();
                for c in completers {
                    c.complete(Err(LedgerError::Poisoned {
                        cause: cause.clone(),
                    }));
                }
                Err(Failure::Damage(cause))
            }
        }
    }

    fn insert(&mut self, kinds: Vec<EntryKind>) -> Result<Vec<Receipt>, Failure> {
        let mut tx = self.client.transaction().map_err(at("begin a commit"))?;
        let receipts = insert_rows(&mut tx, &self.stmts, &self.sql, kinds)?;
        tx.commit().map_err(at("commit the entries"))?;
        Ok(receipts)
    }

    /// Takes or renews the signer lease; true if this process holds it.
    fn lease(&mut self) -> Result<bool, Failure> {
        let held = self
            .client
            .query_opt(&self.stmts.take_lease, &[&self.holder, &self.lease_ms])
            .map_err(at("take the signer lease"))?;
        Ok(held.is_some())
    }

    /// Once per interval: renew (or take) the lease and, holding it, sign
    /// what is new.
    fn tick(&mut self) -> Result<(), Failure> {
        // With a rotation pending nothing is signed: leave the lease to a
        // process that can sign.
        if self.pending.is_none() && self.lease()? {
            self.sign(false, false)?;
        }
        Ok(())
    }

    fn checkpoint_now(&mut self) -> Result<Result<Option<Checkpoint>, LedgerError>, Failure> {
        if let Some(e) = self.pending_error() {
            return Ok(Err(e));
        }
        if !self.lease()? {
            return self.not_signer().map(Err);
        }
        self.sign(false, false).map(Ok)
    }

    /// Who holds the signer lease, as an error for this process.
    fn not_signer(&mut self) -> Result<LedgerError, Failure> {
        let holder: String = self
            .client
            .query_opt(&self.stmts.lease_holder, &[])
            .map_err(at("read the signer lease"))?
            .map_or_else(|| "unknown".into(), |r| r.get(0));
        Ok(LedgerError::NotSigner { holder })
    }

    /// Why nothing is signed while a rotation found on open is unfinished.
    fn pending_error(&self) -> Option<LedgerError> {
        self.pending
            .as_ref()
            .map(|(receipt, key)| LedgerError::RotationPending {
                seq: receipt.seq,
                key: key.to_string(),
            })
    }

    /// [`PgLedger::rotate_key`], on the writer thread: the rotation entry
    /// (unless one is pending), the old key's checkpoint covering it and
    /// the new key's checkpoint of the same tree, in one transaction that
    /// holds the signer lease row and the advisory lock.
    fn rotate(
        &mut self,
        shared: &Shared,
        r: &Rotation,
    ) -> Result<Result<Receipt, LedgerError>, Failure> {
        let new_verifier = VerifierKey::from_signing_key(&self.origin, &r.new);
        match &self.pending {
            Some((_, key)) if *key != new_verifier => {
                return Ok(Err(self.pending_error().expect("a pending rotation")));
            }
            None if new_verifier == self.verifier => {
                return Ok(Err(LedgerError::OutOfRange(
                    "the new signing key is the current one".into(),
                )));
            }
            _ => {}
        }
        if !self.lease()? {
            return self.not_signer().map(Err);
        }
        let sql = self.sql.clone();
        let mut tx = self
            .client
            .transaction()
            .map_err(at("begin a key rotation"))?;
        if tx
            .query_opt(&self.stmts.hold_lease, &[&self.holder])
            .map_err(at("lock the signer lease"))?
            .is_none()
        {
            drop(tx);
            return self.not_signer().map(Err);
        }
        // No entry commits until this transaction does: its checkpoints
        // sign exactly the rows it sees.
        tx.execute(&self.stmts.lock, &[&sql.lock_key])
            .map_err(at("take the ledger's advisory lock"))?;
        catch_up(
            &mut tx,
            &sql,
            &mut self.scan,
            &mut self.tree,
            &self.verifier,
            &mut self.signed,
            &mut self.checked_note,
        )?;
        let receipt = match &self.pending {
            Some((receipt, _)) => *receipt,
            None => {
                let kind = EntryKind::Key {
                    operator: r.operator.clone(),
                    action: ROTATE_ACTION.into(),
                    key_name: self.origin.clone(),
                    verifier_key: Some(new_verifier.to_string()),
                    reason: r.reason.clone(),
                };
                let receipt = insert_rows(&mut tx, &self.stmts, &sql, vec![kind])?[0];
                // Read back as every row is: the scan records the rotation.
                let before = self.scan.leaves.len();
                self.scan
                    .read(&mut tx, &sql)
                    .map_err(at("read the rotation entry"))?;
                if self.scan.stop.is_some() || self.scan.leaves.len() != receipt.seq as usize + 1 {
                    return Err(Failure::Damage(format!(
                        "the rotation entry at seq {} does not read back from {}; run `ledger verify`",
                        receipt.seq,
                        sql.entries()
                    )));
                }
                for leaf in &self.scan.leaves[before..] {
                    self.tree.push(*leaf);
                }
                receipt
            }
        };
        let size = self.tree.size();
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.tree.root(),
        };
        // The old key covers the rotation entry; then the new key signs
        // the same tree (an equal size is allowed).
        tx.query_one(
            &self.stmts.add_note,
            &[&(size as i64), &cp.sign(&self.key), &self.holder],
        )
        .map_err(at("store the old key's checkpoint"))?;
        let new_note = cp.sign(&r.new);
        let id: i64 = tx
            .query_one(
                &self.stmts.add_note,
                &[&(size as i64), &new_note, &self.holder],
            )
            .map_err(at("store the new key's checkpoint"))?
            .get(0);
        tx.commit().map_err(at("commit the key rotation"))?;
        if let Some(p) = &self.publisher {
            p.publish(size, &new_note);
        }
        self.key = r.new.clone();
        self.verifier = new_verifier.clone();
        self.pending = None;
        self.signed = size;
        self.checked_note = id;
        let mut st = lock(&shared.state);
        st.verifier = new_verifier;
        st.size = st.size.max(size);
        Ok(Ok(receipt))
    }

    fn final_checkpoint(&mut self) -> Result<Option<Checkpoint>, Failure> {
        let cp = if self.pending.is_none() && self.lease()? {
            self.sign(false, true)?
        } else {
            None
        };
        self.client
            .execute(&self.stmts.release, &[&self.holder])
            .map_err(at("release the signer lease"))?;
        Ok(cp)
    }

    /// Signs every committed entry, in a transaction holding the lease row
    /// locked (so a takeover waits for it). `None` if this process no
    /// longer holds the lease or nothing is new. With `release`, the lease
    /// is given up in the same transaction: a process closing at the same
    /// moment waits on the row, then takes the lease and signs what this
    /// checkpoint did not cover — the last to close signs everything.
    fn sign(&mut self, again: bool, release: bool) -> Result<Option<Checkpoint>, Failure> {
        let sql = self.sql.clone();
        let mut tx = self
            .client
            .transaction()
            .map_err(at("begin a checkpoint"))?;
        if tx
            .query_opt(&self.stmts.hold_lease, &[&self.holder])
            .map_err(at("lock the signer lease"))?
            .is_none()
        {
            return Ok(None);
        }
        catch_up(
            &mut tx,
            &sql,
            &mut self.scan,
            &mut self.tree,
            &self.verifier,
            &mut self.signed,
            &mut self.checked_note,
        )?;
        let size = self.tree.size();
        if size < self.signed || (size == self.signed && !again) {
            end_signing(tx, &self.stmts, &self.holder, release)?;
            return Ok(None);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.tree.root(),
        };
        let note = cp.sign(&self.key);
        let id: i64 = tx
            .query_one(&self.stmts.add_note, &[&(size as i64), &note, &self.holder])
            .map_err(at("store the checkpoint"))?
            .get(0);
        end_signing(tx, &self.stmts, &self.holder, release)?;
        self.checked_note = id;
        self.signed = size;
        if let Some(p) = &self.publisher {
            p.publish(size, &note);
        }
        Ok(Some(cp))
    }
}

/// Commits a signing transaction, giving the signer lease up in it first
/// if asked.
fn end_signing(
    mut tx: Transaction<'_>,
    stmts: &Statements,
    holder: &str,
    release: bool,
) -> Result<(), Failure> {
    if release {
        tx.execute(&stmts.release, &[&holder])
            .map_err(at("release the signer lease"))?;
    }
    tx.commit().map_err(at("commit the checkpoint"))
}

/// Inserts `kinds` as the entries after the last row, in `tx`, under the
/// ledger's advisory lock (held until `tx` ends).
fn insert_rows(
    tx: &mut Transaction<'_>,
    stmts: &Statements,
    sql: &Sql,
    kinds: Vec<EntryKind>,
) -> Result<Vec<Receipt>, Failure> {
    tx.execute(&stmts.lock, &[&sql.lock_key])
        .map_err(at("take the ledger's advisory lock"))?;
    let last = tx
        .query_opt(&stmts.last, &[])
        .map_err(at("read the last entry"))?
        .ok_or_else(|| {
            Failure::Damage(format!(
                "{} holds no entries (not even the header): the ledger was emptied",
                sql.entries()
            ))
        })?;
    let (last_seq, last_bytes): (i64, &[u8]) = (last.get(0), last.get(1));
    let last_entry = Entry::from_line(last_bytes)
        .ok()
        .filter(|e| e.seq as i64 == last_seq)
        .ok_or_else(|| {
            Failure::Damage(format!(
                "the last row of {} (seq {last_seq}) is not a valid entry for its seq: the table was changed; run `ledger verify`",
                sql.entries()
            ))
        })?;
    let mut ts = last_entry.ts;
    let mut seqs = Vec::with_capacity(kinds.len());
    let mut lines = Vec::with_capacity(kinds.len());
    let mut receipts = Vec::with_capacity(kinds.len());
    for (seq, kind) in (last_seq as u64 + 1..).zip(kinds) {
        ts = Timestamp::now().max(ts);
        let line = Entry { seq, ts, kind }.to_line();
        receipts.push(Receipt {
            seq,
            leaf_hash: merkle::leaf_hash(&line),
        });
        seqs.push(seq as i64);
        lines.push(line);
    }
    tx.execute(&stmts.insert, &[&seqs, &lines])
        .map_err(at("insert the entries"))?;
    Ok(receipts)
}

/// Reads and checks, in `tx`, the rows and the checkpoints other processes
/// added since the writer last looked: the rows as on open, the
/// checkpoints by `verifier` (the key this process signs with) and
/// against the rows. A rotation entry this process did not write ends
/// here: its key must not sign past it.
fn catch_up(
    tx: &mut Transaction<'_>,
    sql: &Sql,
    scan: &mut RowScan,
    tree: &mut TreeBuilder,
    verifier: &VerifierKey,
    signed: &mut u64,
    checked_note: &mut i64,
) -> Result<(), Failure> {
    let before = scan.leaves.len();
    scan.read(tx, sql).map_err(at("read the new entries"))?;
    if let Some((seq, problem)) = &scan.stop {
        return Err(Failure::Damage(format!(
            "{} was changed: entry seq {seq}: {problem}; refusing to sign, run `ledger verify`",
            sql.entries()
        )));
    }
    if let Some((seq, key)) = scan.rotations.iter().find(|(s, _)| *s >= before as u64) {
        return Err(Failure::Damage(superseded(sql, *seq, key.as_deref())));
    }
    for leaf in &scan.leaves[before..] {
        tree.push(*leaf);
    }
    // Checkpoints other signers wrote since we last looked.
    let foreign = read_notes(tx, sql, *checked_note).map_err(at("read the checkpoints"))?;
    if foreign.is_empty() {
        return Ok(());
    }
    let mut cps = Vec::with_capacity(foreign.len());
    for n in &foreign {
        let cp = Checkpoint::verify(&n.note, verifier).map_err(|e| {
            Failure::Damage(format!(
                "checkpoint id {} in {} does not verify with this process's signing key (id {}): {e}. If the signing key was rotated, restart this process so that it loads the new key from the secrets store; otherwise run `ledger verify`",
                n.id,
                sql.checkpoints(),
                verifier.key_id_hex()
            ))
        })?;
        if (cp.size as i64) != n.size || cp.size < *signed {
            return Err(Failure::Damage(format!(
                "checkpoint id {} in {} signs size {} after size {} was signed (or disagrees with its size column)",
                n.id,
                sql.checkpoints(),
                cp.size,
                signed
            )));
        }
        *signed = cp.size;
        cps.push(cp);
    }
    if let Err(e) = files::check_roots(&scan.leaves, &cps) {
        return Err(Failure::Damage(format!(
            "a checkpoint another process signed does not match the entries: {e}"
        )));
    }
    *checked_note = foreign.last().map_or(*checked_note, |n| n.id);
    Ok(())
}

/// Why a process stops signing once another one rotated the key.
fn superseded(sql: &Sql, seq: u64, key: Option<&str>) -> String {
    let to = key
        .and_then(|k| VerifierKey::parse(k).ok())
        .map_or("a key this process cannot read".into(), |k| {
            format!("key id {}", k.key_id_hex())
        });
    format!(
        "entry seq {seq} in {} rotates the signing key to {to}, and this process did not write it: it holds the old key and signs nothing more. Restart it (it loads the current key from the secrets store); if nobody rotated the key, the row was forged: run `ledger verify`",
        sql.entries()
    )
}

impl Statements {
    fn prepare(client: &mut Client, sql: &Sql) -> Result<Statements, postgres::Error> {
        let s = &sql.schema;
        Ok(Statements {
            lock: client.prepare("SELECT pg_advisory_xact_lock($1)")?,
            last: client.prepare(&format!(
                "SELECT seq, entry FROM {s}.entries ORDER BY seq DESC LIMIT 1"
            ))?,
            insert: client.prepare(&format!(
                "INSERT INTO {s}.entries (seq, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
            ))?,
            take_lease: client.prepare(&format!(
                "INSERT INTO {s}.signer_lease AS l (id, holder, expires_at)
                 VALUES (1, $1, now() + $2::bigint * interval '1 millisecond')
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
                 RETURNING holder"
            ))?,
            hold_lease: client.prepare(&format!(
                "SELECT holder FROM {s}.signer_lease WHERE id = 1 AND holder = $1 AND expires_at > now() FOR UPDATE"
            ))?,
            lease_holder: client.prepare(&format!(
                "SELECT holder || ' until ' || expires_at::text FROM {s}.signer_lease WHERE id = 1"
            ))?,
            add_note: client.prepare(&format!(
                "INSERT INTO {s}.checkpoints (size, note, signer) VALUES ($1, $2, $3) RETURNING id"
            ))?,
            release: client.prepare(&format!(
                "DELETE FROM {s}.signer_lease WHERE id = 1 AND holder = $1"
            ))?,
        })
    }
}

/// Writes the header as seq 0 of an empty ledger (under the advisory
/// lock, so two creators cannot both succeed).
fn create_header(
    client: &mut Client,
    sql: &Sql,
    origin: &str,
    key: &SigningKey,
) -> Result<(), LedgerError> {
    let mut tx = client
        .transaction()
        .map_err(db("begin creating the ledger"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .map_err(db("lock the ledger"))?;
    let entries: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", sql.entries()), &[])
        .map_err(db("count the entries"))?
        .get(0);
    let notes: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", sql.checkpoints()), &[])
        .map_err(db("count the checkpoints"))?
        .get(0);
    if entries > 0 || notes > 0 {
        return Err(LedgerError::AlreadyExists { dir: sql.place() });
    }
    let header = Entry {
        seq: 0,
        ts: Timestamp::now(),
        kind: EntryKind::Header {
            version: FORMAT_VERSION,
            origin: origin.to_owned(),
            key_id: VerifierKey::from_signing_key(origin, key).key_id_hex(),
        },
    };
    tx.execute(
        &format!("INSERT INTO {} (seq, entry) VALUES (0, $1)", sql.entries()),
        &[&header.to_line()],
    )
    .map_err(db("write the header"))?;
    tx.commit().map_err(db("commit the header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["redcap_warden", "l1", "a"] {
            assert!(valid_schema(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a;drop",
            "pg_x",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(valid_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_schema_has_its_own_lock_key() {
        let a = Sql::new("a").unwrap().lock_key;
        let b = Sql::new("b").unwrap().lock_key;
        assert_ne!(a, b);
        assert_eq!(a, Sql::new("a").unwrap().lock_key);
    }

    #[test]
    fn the_row_scan_names_the_first_bad_row() {
        let origin = "t/redcap-warden/00";
        let header = Entry {
            seq: 0,
            ts: Timestamp::UNIX_EPOCH,
            kind: EntryKind::Header {
                version: 1,
                origin: origin.into(),
                key_id: "01020304".into(),
            },
        };
        let alert = |seq| Entry {
            seq,
            ts: Timestamp::UNIX_EPOCH,
            kind: EntryKind::Alert {
                code: "c".into(),
                message: "m".into(),
            },
        };
        let mut scan = RowScan::default();
        assert!(scan.push(0, &header.to_line()));
        assert!(scan.push(1, &alert(1).to_line()));
        // A missing row 2.
        assert!(!scan.push(3, &alert(3).to_line()));
        assert_eq!(scan.stop.as_ref().unwrap().0, 2);
        // An entry in the wrong row.
        let mut scan = RowScan::default();
        scan.push(0, &header.to_line());
        assert!(!scan.push(1, &alert(2).to_line()));
        assert_eq!(scan.stop.as_ref().unwrap().0, 1);
        // No header first.
        let mut scan = RowScan::default();
        assert!(!scan.push(0, &alert(0).to_line()));
        assert_eq!(scan.origin, None);
    }
}
