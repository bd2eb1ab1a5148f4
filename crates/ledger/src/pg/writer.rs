//! The writer thread: owns the database connection, commits each batch of
//! queued entries in one transaction, and answers the handle's requests
//! (checkpoint, close, key rotation). Opening it is [`super::open`];
//! signing under the lease is [`super::lease`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use postgres::{Client, Transaction};

use super::queue::{CheckpointReply, Request, RotationReply, Shared, lock};
use super::scan::Chain;
use super::sql::{Failure, Sql, Statements, at};
use crate::append::Receipt;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::{Entry, EntryKind};
use crate::error::LedgerError;
use crate::merkle;
use crate::pending::Completer;
use crate::witness::Publisher;

/// The writer thread: owns the connection, commits batches, renews the
/// lease and signs checkpoints.
pub(super) struct Writer {
    pub(super) client: Client,
    pub(super) sql: Sql,
    pub(super) origin: String,
    pub(super) key: SigningKey,
    pub(super) verifier: VerifierKey,
    pub(super) holder: String,
    pub(super) lease_ms: i64,
    pub(super) interval: Option<Duration>,
    pub(super) deferred_delay: Duration,
    /// The checked prefix of the log (all entries read so far).
    pub(super) chain: Chain,
    /// A rotation `key` entry no checkpoint covers, found on open: no
    /// checkpoint is signed until [`crate::PgLedger::rotate_key`] finishes it.
    pub(super) pending: Option<(Receipt, VerifierKey)>,
    pub(super) stmts: Statements,
    /// Hands each checkpoint this process signs to the witnesses.
    pub(super) publisher: Option<Arc<Publisher>>,
}

/// What one turn of the writer loop took from the queue.
struct Work {
    batch: Vec<(EntryKind, Completer)>,
    requests: Vec<Request>,
    closing: bool,
}

/// The answers to one turn's requests, sent once the turn's outcome is
/// known.
#[derive(Default)]
struct Answers {
    /// Checkpoint and close requests.
    checkpoints: Vec<(CheckpointReply, Result<Option<Checkpoint>, LedgerError>)>,
    rotations: Vec<(RotationReply, Result<Receipt, LedgerError>)>,
}

impl Answers {
    /// The writer is poisoned: every request fails with the cause.
    fn poisoned(self, cause: &str) {
        let err = || LedgerError::Poisoned {
            cause: cause.to_owned(),
        };
        for (reply, _) in self.checkpoints {
            let _ = reply.send(Err(err()));
        }
        for (reply, _) in self.rotations {
            let _ = reply.send(Err(err()));
        }
    }

    fn send_rotations(&mut self) {
        for (reply, r) in self.rotations.drain(..) {
            let _ = reply.send(r);
        }
    }

    fn send_checkpoints(self) {
        for (reply, r) in self.checkpoints {
            let _ = reply.send(r);
        }
    }
}

/// The signer-lease holder name of this process: host, process id and a
/// random suffix.
pub(super) fn default_holder() -> String {
    format!(
        "{} pid {} {}",
        durable::host_name(),
        std::process::id(),
        durable::random_hex(4)
    )
}

impl Writer {
    /// The writer thread's loop, until close or poisoning: each turn
    /// commits what is queued, signs once per interval and answers the
    /// requests taken with the batch.
    pub(super) fn run(&mut self, shared: &Shared) {
        let mut next_tick = self.interval.map(|i| Instant::now() + i);
        loop {
            let work = self.wait_for_work(shared, next_tick);
            let mut result = Ok(());
            if !work.batch.is_empty() {
                result = self.commit(shared, work.batch);
            }
            if result.is_ok() && next_tick.is_some_and(|t| Instant::now() >= t) {
                next_tick = self.interval.map(|i| Instant::now() + i);
                result = self.tick();
            }
            let mut answers = self.serve(shared, work.requests, &mut result);
            if let Err(f) = result {
                let cause: String = f.into();
                self.poison(shared, cause.clone());
                answers.poisoned(&cause);
                return;
            }
            answers.send_rotations();
            if work.closing {
                self.finish(shared, answers);
                return;
            }
            answers.send_checkpoints();
        }
    }

    /// Waits until there is something to do: an urgent entry, a deferred
    /// one past its delay, a checkpoint tick, a request or close; then
    /// takes the queue.
    fn wait_for_work(&self, shared: &Shared, next_tick: Option<Instant>) -> Work {
        let mut st = lock(&shared.state);
        loop {
            let now = Instant::now();
            let deferred_due = st
                .oldest_deferred
                .is_some_and(|t| now >= t + self.deferred_delay);
            let tick_due = next_tick.is_some_and(|t| now >= t);
            if st.urgent > 0 || deferred_due || tick_due || !st.requests.is_empty() || st.closed {
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
        Work {
            batch,
            requests: std::mem::take(&mut st.requests),
            closing: st.closed,
        }
    }

    /// Carries out the requests while `result` is fine; a failure stops
    /// the rest (they are answered as the failure decides).
    fn serve(
        &mut self,
        shared: &Shared,
        requests: Vec<Request>,
        result: &mut Result<(), Failure>,
    ) -> Answers {
        let mut answers = Answers::default();
        for request in requests {
            match request {
                Request::Checkpoint(reply) if result.is_ok() => match self.checkpoint_now() {
                    Ok(cp) => answers.checkpoints.push((reply, Ok(cp))),
                    Err(Failure::Refused(e)) => answers.checkpoints.push((reply, Err(e))),
                    Err(f) => {
                        *result = Err(f);
                        answers.checkpoints.push((reply, Ok(None)));
                    }
                },
                Request::Checkpoint(reply) | Request::Close(reply) => {
                    answers.checkpoints.push((reply, Ok(None)));
                }
                Request::Rotate(r) if result.is_ok() => match self.rotate(shared, &r) {
                    Ok(receipt) => answers.rotations.push((r.reply, Ok(receipt))),
                    Err(Failure::Refused(e)) => answers.rotations.push((r.reply, Err(e))),
                    Err(f) => {
                        *result = Err(f);
                        answers.rotations.push((r.reply, Err(LedgerError::Closed)));
                    }
                },
                Request::Rotate(r) => answers.rotations.push((r.reply, Err(LedgerError::Closed))),
            }
        }
        answers
    }

    /// On close: signs the final checkpoint and answers the checkpoint
    /// and close requests with it. Entries queued before close() were in
    /// the last batch; append refuses new ones once `closed` is set.
    fn finish(&mut self, shared: &Shared, answers: Answers) {
        let last = match self.final_checkpoint() {
            Ok(cp) => Ok(cp),
            Err(f) => {
                let cause: String = f.into();
                self.poison(shared, cause.clone());
                Err(LedgerError::Poisoned { cause })
            }
        };
        for (reply, r) in answers.checkpoints {
            let _ = reply.send(match (&last, r) {
                (Err(e), _) => Err(LedgerError::Poisoned {
                    cause: e.to_string(),
                }),
                (Ok(cp), Ok(None)) => match self.pending_error() {
                    // Nothing was signed: say why, as a file ledger's
                    // close does.
                    Some(e) => Err(e),
                    None => Ok(cp.clone()),
                },
                (_, other) => other,
            });
        }
    }

    pub(super) fn poison(&mut self, shared: &Shared, cause: String) {
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
    pub(super) fn commit(
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

    pub(super) fn insert(&mut self, kinds: Vec<EntryKind>) -> Result<Vec<Receipt>, Failure> {
        let mut tx = self.client.transaction().map_err(at("begin a commit"))?;
        let receipts = insert_rows(&mut tx, &self.stmts, &self.sql, kinds)?;
        tx.commit().map_err(at("commit the entries"))?;
        Ok(receipts)
    }
}

/// Inserts `kinds` as the entries after the last row, in `tx`, under the
/// ledger's advisory lock (held until `tx` ends).
pub(super) fn insert_rows(
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
