//! What the [`super::PgLedger`] handle and its writer thread share: the
//! queue of entries and requests, and the writer's state as appenders see
//! it (size, verifier key, closed, poisoned), under one lock; the writer
//! thread is woken through [`Shared::work`].

use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use ed25519_dalek::SigningKey;

use crate::append::Receipt;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::EntryKind;
use crate::error::LedgerError;
use crate::pending::{Completer, Pending, Urgency};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) struct Shared {
    pub(super) origin: String,
    pub(super) state: Mutex<State>,
    /// Wakes the writer thread.
    pub(super) work: Condvar,
}

impl Shared {
    /// Queues an entry for the writer thread.
    pub(super) fn enqueue(&self, kind: EntryKind, urgency: Urgency) -> Pending {
        let mut st = lock(&self.state);
        if let Some(e) = LedgerError::refusing(st.poisoned.as_ref(), st.closed) {
            return Pending::ready(Err(e));
        }
        let (completer, pending) = Pending::new();
        st.queue.push((kind, completer));
        if urgency == Urgency::Now {
            st.urgent += 1;
        } else if st.oldest_deferred.is_none() {
            st.oldest_deferred = Some(Instant::now());
        }
        drop(st);
        self.work.notify_one();
        pending
    }
}

/// Where the writer thread answers a checkpoint or close request.
pub(super) type CheckpointReply = mpsc::Sender<Result<Option<Checkpoint>, LedgerError>>;

/// Where the writer thread answers a key rotation.
pub(super) type RotationReply = mpsc::Sender<Result<Receipt, LedgerError>>;

/// What the handle asks of the writer thread besides entries.
pub(super) enum Request {
    Checkpoint(CheckpointReply),
    Close(CheckpointReply),
    Rotate(Box<Rotation>),
}

/// A [`crate::PgLedger::rotate_key`] for the writer thread.
pub(super) struct Rotation {
    pub(super) new: SigningKey,
    pub(super) operator: String,
    pub(super) reason: String,
    pub(super) reply: RotationReply,
}

impl Request {
    /// Answers the request with an error.
    pub(super) fn fail(self, e: LedgerError) {
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

pub(super) struct State {
    pub(super) queue: Vec<(EntryKind, Completer)>,
    /// Queued entries an appender waits for (not deferred).
    pub(super) urgent: usize,
    /// When the oldest queued deferred entry was queued.
    pub(super) oldest_deferred: Option<Instant>,
    pub(super) requests: Vec<Request>,
    /// Entries taken by the writer thread and not yet committed.
    pub(super) in_flight: usize,
    pub(super) closed: bool,
    pub(super) poisoned: Option<String>,
    /// Durable entries this process knows of.
    pub(super) size: u64,
    pub(super) verifier: VerifierKey,
}
