//! [`Pending`]: an entry queued for a later commit, and the way its
//! appender learns that it became durable (or that it never will).
//!
//! A pending entry can be waited for from a thread ([`Pending::wait`]) or
//! awaited from async code (it is a [`Future`]), so an async caller needs no
//! blocking-thread hop for an entry whose durability it only has to learn
//! about, not wait for.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use crate::append::Receipt;
use crate::error::LedgerError;

/// How soon a queued entry is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// An appender awaits it: a batch is committed for it at once.
    Now,
    /// It rides along with the next batch, or is committed after the
    /// backend's deferred delay.
    Deferred,
}

/// An entry on its way to durability. Dropping it does not withdraw the
/// entry: it is still committed, only nobody hears about it.
#[must_use = "a pending entry's outcome is only known by waiting for it"]
pub struct Pending {
    slot: Arc<Slot>,
}

/// The writer's side of a [`Pending`].
pub(crate) struct Completer {
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

/// What to do with an outcome nobody waits or polls for
/// ([`Pending::on_done`]); run by whoever completes the entry.
type Callback = Box<dyn FnOnce(Result<Receipt, LedgerError>) + Send>;

#[derive(Default)]
struct SlotState {
    outcome: Option<Result<Receipt, LedgerError>>,
    waker: Option<Waker>,
    /// A thread blocks in [`Pending::wait`]: only then is the condition
    /// variable signalled (a signal is a system call, made for nobody
    /// otherwise, on every entry).
    thread_waiting: bool,
    /// Run with the outcome instead of storing it.
    callback: Option<Callback>,
    /// The completer was dropped without an outcome.
    abandoned: bool,
}

impl Pending {
    /// A pending entry and the handle that completes it.
    pub(crate) fn new() -> (Completer, Pending) {
        let slot = Arc::new(Slot::default());
        (Completer { slot: slot.clone() }, Pending { slot })
    }

    /// An entry whose outcome is already known (a backend that commits at
    /// once, or a refusal before queueing).
    pub fn ready(outcome: Result<Receipt, LedgerError>) -> Pending {
        let (completer, pending) = Pending::new();
        completer.complete(outcome);
        pending
    }

    /// Blocks until the entry is durable or has failed.
    pub fn wait(self) -> Result<Receipt, LedgerError> {
        let mut st = self.slot.lock();
        loop {
            if let Some(outcome) = st.outcome.take() {
                return outcome;
            }
            if st.abandoned {
                return Err(LedgerError::Closed);
            }
            st.thread_waiting = true;
            st = self.slot.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Hands the outcome to `f` instead of waiting for it: at once if it
    /// is known, else on the thread that completes the entry (keep `f`
    /// short: the ledger's committer runs it). For an appender that only
    /// acts on a failure and must not spend a task or a thread on waiting.
    pub fn on_done(self, f: impl FnOnce(Result<Receipt, LedgerError>) + Send + 'static) {
        let mut st = self.slot.lock();
        let outcome = match st.outcome.take() {
            Some(outcome) => outcome,
            None if st.abandoned => Err(LedgerError::Closed),
            None => {
                st.callback = Some(Box::new(f));
                return;
            }
        };
        drop(st);
        f(outcome);
    }
}

impl Future for Pending {
    type Output = Result<Receipt, LedgerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.slot.lock();
        if let Some(outcome) = st.outcome.take() {
            return Poll::Ready(outcome);
        }
        if st.abandoned {
            return Poll::Ready(Err(LedgerError::Closed));
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Completer {
    /// Delivers the outcome and wakes whoever waits.
    pub(crate) fn complete(self, outcome: Result<Receipt, LedgerError>) {
        let mut st = self.slot.lock();
        if let Some(f) = st.callback.take() {
            // Marks the slot finished for the drop below.
            st.abandoned = true;
            drop(st);
            f(outcome);
            return;
        }
        st.outcome = Some(outcome);
        Self::wake(&self.slot, st);
    }

    fn wake(slot: &Slot, mut st: std::sync::MutexGuard<'_, SlotState>) {
        let waker = st.waker.take();
        let thread = std::mem::take(&mut st.thread_waiting);
        drop(st);
        if thread {
            slot.ready.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        let mut st = self.slot.lock();
        if st.outcome.is_some() || st.abandoned {
            return;
        }
        st.abandoned = true;
        if let Some(f) = st.callback.take() {
            drop(st);
            f(Err(LedgerError::Closed));
            return;
        }
        Self::wake(&self.slot, st);
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::Hash;

    fn receipt(seq: u64) -> Receipt {
        Receipt {
            seq,
            leaf_hash: Hash::default(),
        }
    }

    #[test]
    fn wait_returns_the_outcome_delivered_from_another_thread() {
        let (c, p) = Pending::new();
        let t = std::thread::spawn(move || c.complete(Ok(receipt(7))));
        assert_eq!(p.wait().unwrap(), receipt(7));
        t.join().unwrap();
    }

    #[test]
    fn a_dropped_completer_reports_the_ledger_closed() {
        let (c, p) = Pending::new();
        drop(c);
        assert!(matches!(p.wait(), Err(LedgerError::Closed)));
    }

    #[test]
    fn on_done_runs_once_with_the_outcome_whenever_it_comes() {
        use std::sync::mpsc;
        // Completed after the callback was set, from another thread.
        let (c, p) = Pending::new();
        let (tx, rx) = mpsc::channel();
        p.on_done(move |o| tx.send(o.map(|r| r.seq)).unwrap());
        std::thread::spawn(move || c.complete(Ok(receipt(5))))
            .join()
            .unwrap();
        assert_eq!(rx.recv().unwrap().unwrap(), 5);
        assert!(rx.try_recv().is_err(), "the callback runs once");
        // Already complete: at once.
        let (tx, rx) = mpsc::channel();
        Pending::ready(Ok(receipt(6))).on_done(move |o| tx.send(o.map(|r| r.seq)).unwrap());
        assert_eq!(rx.try_recv().unwrap().unwrap(), 6);
        // Abandoned, before or after the callback was set: the ledger closed.
        let (c, p) = Pending::new();
        let (tx, rx) = mpsc::channel();
        p.on_done(move |o| tx.send(o.is_err()).unwrap());
        drop(c);
        assert!(rx.recv().unwrap());
        let (c, p) = Pending::new();
        drop(c);
        let (tx, rx) = mpsc::channel();
        p.on_done(move |o| tx.send(matches!(o, Err(LedgerError::Closed))).unwrap());
        assert!(rx.try_recv().unwrap());
    }

    #[test]
    fn ready_is_already_complete() {
        let p = Pending::ready(Ok(receipt(3)));
        assert_eq!(p.wait().unwrap().seq, 3);
    }
}
