//! Reading the tables back: [`RowScan`] checks the entry rows as it reads
//! them (the PostgreSQL counterpart of the file scan), [`read_notes`] reads
//! the stored checkpoints. Shared by the reader and the writer.

use jiff::Timestamp;
use postgres::Transaction;

use super::sql::{FETCH_ROWS, Failure, Sql, at};
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::{Entry, EntryKind};
use crate::files::{self, check_same_origin, check_version, rotation_of};
use crate::merkle::{self, Hash, TreeBuilder};

/// Every entry of a ledger, checked row by row as it is read (the PG
/// counterpart of the file scan): the rows' seqs are 0, 1, 2, … without a
/// gap, each entry is canonical and carries its row's seq, the first is a
/// header and no other is.
#[derive(Debug, Default)]
pub(super) struct RowScan {
    pub(super) leaves: Vec<Hash>,
    pub(super) origin: Option<String>,
    pub(super) first_key_id: Option<String>,
    pub(super) rotations: Vec<(u64, Option<String>)>,
    pub(super) last_ts: Option<Timestamp>,
    /// The first bad row: the seq it should have had, and why.
    pub(super) stop: Option<(u64, String)>,
    /// The seq whose `ts` to note: the first one no checkpoint signs.
    pub(super) watch: Option<u64>,
    pub(super) watch_ts: Option<Timestamp>,
}

impl RowScan {
    /// Adds the row `(seq, bytes)`; false once the scan has stopped.
    pub(super) fn push(&mut self, row_seq: i64, bytes: &[u8]) -> bool {
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

    pub(super) fn check(&mut self, seq: u64, row_seq: i64, bytes: &[u8]) -> Result<Hash, String> {
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
                check_version(*version)?;
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
                check_version(*version)?;
                check_same_origin(origin, self.origin.as_deref().unwrap_or_default())?;
            }
            (_, true) => return Err("seq 0 must be the header entry".into()),
            (_, false) => {}
        }
        if let Some(key) = rotation_of(&entry.kind, self.origin.as_deref()) {
            self.rotations.push((seq, key.clone()));
        }
        self.last_ts = Some(self.last_ts.map_or(entry.ts, |t| t.max(entry.ts)));
        if self.watch == Some(seq) {
            self.watch_ts = Some(entry.ts);
        }
        Ok(merkle::leaf_hash(bytes))
    }

    /// Reads and checks the rows from `self.leaves.len()` on.
    pub(super) fn read(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &Sql,
    ) -> Result<(), postgres::Error> {
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
pub(super) struct StoredNote {
    pub(super) id: i64,
    pub(super) size: i64,
    pub(super) note: String,
}

pub(super) fn read_notes(
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

/// The log as the writer has checked it: every row read so far and
/// their tree, the last checkpoint row checked and the size it signs.
pub(super) struct Chain {
    pub(super) scan: RowScan,
    pub(super) tree: TreeBuilder,
    pub(super) checked_note: i64,
    pub(super) signed: u64,
}

impl Chain {
    /// Reads and checks, in `tx`, the rows and the checkpoints other
    /// processes added since the writer last looked: the rows as on open,
    /// the checkpoints by `verifier` (the key this process signs with) and
    /// against the rows. A rotation entry this process did not write ends
    /// here: its key must not sign past it.
    pub(super) fn catch_up(
        &mut self,
        tx: &mut Transaction<'_>,
        sql: &Sql,
        verifier: &VerifierKey,
    ) -> Result<(), Failure> {
        let before = self.scan.leaves.len();
        self.scan
            .read(tx, sql)
            .map_err(at("read the new entries"))?;
        if let Some((seq, problem)) = &self.scan.stop {
            return Err(Failure::Damage(format!(
                "{} was changed: entry seq {seq}: {problem}; refusing to sign, run `ledger verify`",
                sql.entries()
            )));
        }
        if let Some((seq, key)) = self
            .scan
            .rotations
            .iter()
            .find(|(s, _)| *s >= before as u64)
        {
            return Err(Failure::Damage(superseded(sql, *seq, key.as_deref())));
        }
        for leaf in &self.scan.leaves[before..] {
            self.tree.push(*leaf);
        }
        // Checkpoints other signers wrote since we last looked.
        let foreign = read_notes(tx, sql, self.checked_note).map_err(at("read the checkpoints"))?;
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
            if (cp.size as i64) != n.size || cp.size < self.signed {
                return Err(Failure::Damage(format!(
                    "checkpoint id {} in {} signs size {} after size {} was signed (or disagrees with its size column)",
                    n.id,
                    sql.checkpoints(),
                    cp.size,
                    self.signed
                )));
            }
            self.signed = cp.size;
            cps.push(cp);
        }
        if let Err(e) = files::check_roots(&self.scan.leaves, &cps) {
            return Err(Failure::Damage(format!(
                "a checkpoint another process signed does not match the entries: {e}"
            )));
        }
        self.checked_note = foreign.last().map_or(self.checked_note, |n| n.id);
        Ok(())
    }
}

/// Why a process stops signing once another one rotated the key.
pub(super) fn superseded(sql: &Sql, seq: u64, key: Option<&str>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
