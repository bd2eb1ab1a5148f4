//! [`PgReader`]: a read-only view of a PostgreSQL ledger for `ledger
//! verify`, `prove`, `show` and `tail`.

use postgres::{Client, IsolationLevel, Transaction};

use super::options::PG_MAX_UNSIGNED_SPAN;
use super::scan::{RowScan, StoredNote, read_notes};
use super::sql::{FETCH_ROWS, Sql, connect, db, describe};
use crate::checkpoint::VerifierKey;
use crate::entry::Entry;
use crate::error::{LedgerError, VerifyError, VerifyReport};
use crate::files::{self, ConsistencyProof, InclusionProof, PinnedSignature};
use crate::merkle::Hash;

/// What [`PgReader::each_row`] hands each row `(seq, entry)` to: true to
/// go on.
type RowVisit<'a> = dyn FnMut(i64, &[u8]) -> Result<bool, LedgerError> + 'a;

/// A read-only view of a PostgreSQL ledger: verification, proofs and
/// entries for `ledger verify`, `prove`, `show` and `tail`. Each call
/// reads one consistent snapshot.
pub struct PgReader {
    pub(super) client: Client,
    pub(super) sql: Sql,
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

    pub(super) fn snapshot(&mut self) -> Result<Transaction<'_>, postgres::Error> {
        self.client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
    }

    pub(super) fn tables_exist(&mut self) -> Result<bool, postgres::Error> {
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
        let mut out = Vec::new();
        self.each_row(0, &mut |seq, bytes| match Entry::from_line(bytes) {
            Ok(e) if seq == out.len() as i64 && e.seq == seq as u64 => {
                out.push(e);
                Ok(true)
            }
            _ => Ok(false),
        })?;
        Ok(out)
    }

    /// Hands `visit` the entries from seq `from` on, in order (as stored;
    /// `verify` checks them), a batch of rows at a time.
    pub fn read_from(
        &mut self,
        from: u64,
        visit: &mut dyn FnMut(Entry),
    ) -> Result<(), LedgerError> {
        self.each_row(from, &mut |_, bytes| {
            visit(parse_stored(bytes)?);
            Ok(true)
        })
    }

    /// Hands `visit` the entries committed at or after `since`, in order,
    /// until it answers `false` (what `reconcile` reads for a window):
    /// the first such seq is found by binary search (entries are in time
    /// order), then rows are read from there.
    pub fn read_since(
        &mut self,
        since: jiff::Timestamp,
        visit: &mut dyn FnMut(Entry) -> bool,
    ) -> Result<(), LedgerError> {
        let (mut lo, mut hi) = (0u64, self.count()?);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid)? {
                Some(e) if e.ts < since => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.each_row(lo, &mut |_, bytes| {
            let entry = parse_stored(bytes)?;
            Ok(entry.ts < since || visit(entry))
        })
    }

    /// Hands `visit` every row as stored — its seq and the entry's bytes,
    /// the bytes its leaf hash is taken over — from the first on, in order,
    /// in one snapshot, until it answers `false` (`trace`: one pass).
    pub fn read_lines(
        &mut self,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), LedgerError> {
        self.each_row(0, &mut |seq, bytes| Ok(visit(seq as u64, bytes)))
    }

    /// Hands `visit` each row `(seq, entry)` from seq `from` on, in order,
    /// in one snapshot, a batch of rows at a time, until it answers false.
    fn each_row(&mut self, from: u64, visit: &mut RowVisit<'_>) -> Result<(), LedgerError> {
        let sql = self.sql.clone();
        let mut tx = self.snapshot().map_err(db("read the entries"))?;
        let portal = tx
            .bind(
                &format!(
                    "SELECT seq, entry FROM {} WHERE seq >= $1 ORDER BY seq",
                    sql.entries()
                ),
                &[&(from.min(i64::MAX as u64) as i64)],
            )
            .map_err(db("read the entries"))?;
        'rows: loop {
            let rows = tx
                .query_portal(&portal, FETCH_ROWS)
                .map_err(db("read the entries"))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                if !visit(row.get(0), row.get(1))? {
                    break 'rows;
                }
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

    /// The text of the latest signed note (`None` before the first
    /// checkpoint); not verified here ([`PgReader::verify`] does that).
    pub fn latest_note(&mut self) -> Result<Option<String>, LedgerError> {
        if !self
            .tables_exist()
            .map_err(db("look for the ledger's tables"))?
        {
            return Ok(None);
        }
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT note FROM {} ORDER BY id DESC LIMIT 1",
                    self.sql.checkpoints()
                ),
                &[],
            )
            .map_err(db("read the latest checkpoint"))?;
        Ok(row.map(|r| r.get(0)))
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

    pub(super) fn leaves(&mut self) -> Result<Vec<Hash>, LedgerError> {
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
        files::inclusion_proof(&self.leaves()?, seq, size)
    }

    /// Proves the tree of `new` entries extends the tree of `old` entries.
    pub fn prove_consistency(
        &mut self,
        old: u64,
        new: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        files::consistency_proof(&self.leaves()?, old, new)
    }
}

pub(super) fn parse_stored(bytes: &[u8]) -> Result<Entry, LedgerError> {
    Entry::from_line(bytes).map_err(|e| LedgerError::Database {
        op: "read an entry",
        detail: format!("a stored entry is not valid ({e}); run `ledger verify`"),
    })
}

/// The checks of `verify` on what was read.
pub(super) fn verify_scan(
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
        PinnedSignature::Needed,
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
