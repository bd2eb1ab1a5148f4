//! The signer lease and the checkpoints signed under it: one process at a
//! time holds the lease row, renews it every checkpoint interval and signs,
//! in a transaction that holds the row locked, the entries that
//! transaction sees committed; before signing it checks what other
//! processes added since it last looked ([`catch_up`]).

use postgres::{Client, Transaction};

use super::queue::{Rotation, Shared, lock};
use super::scan::{RowScan, read_notes};
use super::sql::{Failure, Sql, Statements, at};
use super::writer::{Writer, insert_rows};
use crate::append::Receipt;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::EntryKind;
use crate::error::LedgerError;
use crate::files::{self, ROTATE_ACTION};
use crate::merkle::TreeBuilder;

impl Writer {
    /// [`PgLedger::rotate_key`], on the writer thread: the rotation entry
    /// (unless one is pending), the old key's checkpoint covering it and
    /// the new key's checkpoint of the same tree, in one transaction that
    /// holds the signer lease row and the advisory lock.
    pub(super) fn rotate(&mut self, shared: &Shared, r: &Rotation) -> Result<Receipt, Failure> {
        let new_verifier = VerifierKey::from_signing_key(&self.origin, &r.new);
        self.check_rotation(&new_verifier)?;
        if !self.lease()? {
            return Err(self.not_signer());
        }
        let sql = self.sql.clone();
        let holding = begin_holding(
            &mut self.client,
            &self.stmts,
            &self.holder,
            "begin a key rotation",
        )?;
        if holding.is_none() {
            drop(holding);
            return Err(self.not_signer());
        }
        let mut tx = holding.expect("checked");
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
                let (scan, tree) = (&mut self.scan, &mut self.tree);
                write_rotation_entry(&mut tx, &self.stmts, &sql, scan, tree, kind)?
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
        Ok(receipt)
    }

    /// Refuses a rotation to `new` that cannot be: to the current key, or
    /// to another key than that of the rotation found pending on open.
    fn check_rotation(&self, new: &VerifierKey) -> Result<(), Failure> {
        match &self.pending {
            Some((_, key)) if key != new => Err(Failure::Refused(
                self.pending_error().expect("a pending rotation"),
            )),
            None if *new == self.verifier => Err(Failure::Refused(LedgerError::SameKey)),
            _ => Ok(()),
        }
    }

    /// Takes or renews the signer lease; true if this process holds it.
    pub(super) fn lease(&mut self) -> Result<bool, Failure> {
        let held = self
            .client
            .query_opt(&self.stmts.take_lease, &[&self.holder, &self.lease_ms])
            .map_err(at("take the signer lease"))?;
        Ok(held.is_some())
    }

    /// Once per interval: renew (or take) the lease and, holding it, sign
    /// what is new.
    pub(super) fn tick(&mut self) -> Result<(), Failure> {
        // With a rotation pending nothing is signed: leave the lease to a
        // process that can sign.
        if self.pending.is_none() && self.lease()? {
            self.sign(AfterSigning::KeepLease)?;
        }
        Ok(())
    }

    /// [`PgLedger::checkpoint`], on the writer thread: refused while a
    /// rotation is pending or another process holds the lease.
    pub(super) fn checkpoint_now(&mut self) -> Result<Option<Checkpoint>, Failure> {
        if let Some(e) = self.pending_error() {
            return Err(Failure::Refused(e));
        }
        if !self.lease()? {
            return Err(self.not_signer());
        }
        self.sign(AfterSigning::KeepLease)
    }

    /// Who holds the signer lease, as a refusal for this process (or the
    /// database error reading it).
    fn not_signer(&mut self) -> Failure {
        match self.client.query_opt(&self.stmts.lease_holder, &[]) {
            Ok(row) => Failure::Refused(LedgerError::NotSigner {
                holder: row.map_or_else(|| "unknown".into(), |r| r.get(0)),
            }),
            Err(e) => at("read the signer lease")(e),
        }
    }

    /// Why nothing is signed while a rotation found on open is unfinished.
    pub(super) fn pending_error(&self) -> Option<LedgerError> {
        self.pending
            .as_ref()
            .map(|(receipt, key)| LedgerError::RotationPending {
                seq: receipt.seq,
                key: key.to_string(),
            })
    }

    pub(super) fn final_checkpoint(&mut self) -> Result<Option<Checkpoint>, Failure> {
        let cp = if self.pending.is_none() && self.lease()? {
            self.sign(AfterSigning::ReleaseLease)?
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
    /// longer holds the lease or nothing is new. With
    /// [`AfterSigning::ReleaseLease`], the lease is given up in the same
    /// transaction: a process closing at the same moment waits on the row,
    /// then takes the lease and signs what this checkpoint did not cover —
    /// the last to close signs everything.
    fn sign(&mut self, after: AfterSigning) -> Result<Option<Checkpoint>, Failure> {
        let sql = self.sql.clone();
        let holding = begin_holding(
            &mut self.client,
            &self.stmts,
            &self.holder,
            "begin a checkpoint",
        )?;
        let Some(mut tx) = holding else {
            return Ok(None);
        };
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
        if size <= self.signed {
            end_signing(tx, &self.stmts, &self.holder, after)?;
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
        end_signing(tx, &self.stmts, &self.holder, after)?;
        self.checked_note = id;
        self.signed = size;
        if let Some(p) = &self.publisher {
            p.publish(size, &note);
        }
        Ok(Some(cp))
    }
}

/// Begins a transaction that holds the signer lease row locked (a
/// takeover waits for it); `None` if this process no longer holds an
/// unexpired lease.
fn begin_holding<'c>(
    client: &'c mut Client,
    stmts: &Statements,
    holder: &str,
    op: &'static str,
) -> Result<Option<Transaction<'c>>, Failure> {
    let mut tx = client.transaction().map_err(at(op))?;
    let held = tx
        .query_opt(&stmts.hold_lease, &[&holder])
        .map_err(at("lock the signer lease"))?;
    Ok(held.map(|_| tx))
}

/// Inserts the rotation entry `kind` in `tx` and reads it back as every
/// row is read (the scan records the rotation), growing `tree`.
fn write_rotation_entry(
    tx: &mut Transaction<'_>,
    stmts: &Statements,
    sql: &Sql,
    scan: &mut RowScan,
    tree: &mut TreeBuilder,
    kind: EntryKind,
) -> Result<Receipt, Failure> {
    let receipt = insert_rows(tx, stmts, sql, vec![kind])?[0];
    let before = scan.leaves.len();
    scan.read(tx, sql).map_err(at("read the rotation entry"))?;
    if scan.stop.is_some() || scan.leaves.len() != receipt.seq as usize + 1 {
        return Err(Failure::Damage(format!(
            "the rotation entry at seq {} does not read back from {}; run `ledger verify`",
            receipt.seq,
            sql.entries()
        )));
    }
    for leaf in &scan.leaves[before..] {
        tree.push(*leaf);
    }
    Ok(receipt)
}

/// What a signing transaction does with the signer lease.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterSigning {
    /// Keeps it (renewed by the next tick).
    KeepLease,
    /// Gives it up in the same transaction (on close).
    ReleaseLease,
}

/// Commits a signing transaction, giving the signer lease up in it first
/// if asked.
fn end_signing(
    mut tx: Transaction<'_>,
    stmts: &Statements,
    holder: &str,
    after: AfterSigning,
) -> Result<(), Failure> {
    if after == AfterSigning::ReleaseLease {
        tx.execute(&stmts.release, &[&holder])
            .map_err(at("release the signer lease"))?;
    }
    tx.commit().map_err(at("commit the checkpoint"))
}

/// Reads and checks, in `tx`, the rows and the checkpoints other processes
/// added since the writer last looked: the rows as on open, the
/// checkpoints by `verifier` (the key this process signs with) and
/// against the rows. A rotation entry this process did not write ends
/// here: its key must not sign past it.
pub(super) fn catch_up(
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
