//! The signer lease and the checkpoints signed under it: one process at a
//! time holds the lease row, renews it every checkpoint interval and signs,
//! in a transaction that holds the row locked, the entries that
//! transaction sees committed; before signing it checks what other
//! processes added since it last looked ([`super::scan::Chain::catch_up`]).

use postgres::{Client, Transaction};

use super::queue::{Rotation, Shared, lock};
use super::scan::RowScan;
use super::sql::{Failure, Sql, Statements, at};
use super::writer::{Writer, insert_rows};
use crate::append::Receipt;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::EntryKind;
use crate::error::LedgerError;
use crate::files::ROTATE_ACTION;
use crate::merkle::TreeBuilder;

impl Writer {
    /// [`crate::PgLedger::rotate_key`], on the writer thread: the rotation entry
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
        self.chain.catch_up(&mut tx, &sql, &self.verifier)?;
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
                let (scan, tree) = (&mut self.chain.scan, &mut self.chain.tree);
                write_rotation_entry(&mut tx, &self.stmts, &sql, scan, tree, kind)?
            }
        };
        let size = self.chain.tree.size();
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.chain.tree.root(),
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
        self.chain.signed = size;
        self.chain.checked_note = id;
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

    /// [`crate::PgLedger::checkpoint`], on the writer thread: refused while a
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
        self.chain.catch_up(&mut tx, &sql, &self.verifier)?;
        let size = self.chain.tree.size();
        if size <= self.chain.signed {
            end_signing(tx, &self.stmts, &self.holder, after)?;
            return Ok(None);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.chain.tree.root(),
        };
        let note = cp.sign(&self.key);
        let id: i64 = tx
            .query_one(&self.stmts.add_note, &[&(size as i64), &note, &self.holder])
            .map_err(at("store the checkpoint"))?
            .get(0);
        end_signing(tx, &self.stmts, &self.holder, after)?;
        self.chain.checked_note = id;
        self.chain.signed = size;
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
