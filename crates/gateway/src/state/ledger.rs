//! The ledger the gateway writes, and its outage.
//!
//! If the ledger fails, the gateway is *degraded*: every request gets 503
//! until the ledger has been reopened (by the once-a-second housekeeping,
//! [`LedgerLink::try_recover`]), and then an `alert` entry records the
//! outage and how many requests were refused. `response` entries that
//! could not be written are kept and written first when it is back.
//!
//! Every entry appended here that raises an alert ([`alerts::alert_of`]:
//! the gateway's own and those other commands hand it) goes to the
//! webhook and syslog too; the ledger failing is raised there at once,
//! since the ledger itself cannot take it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governance::alerts::{self, Alerts, Raised};
use jiff::Timestamp;
use ledger::{EntryKind, LedgerBackend, LedgerError};

/// Opens (or reopens, after a failure) the ledger the gateway writes.
pub type LedgerOpener = Arc<dyn Fn() -> Result<Arc<dyn LedgerBackend>, LedgerError> + Send + Sync>;

const REOPENING: &str = "the ledger is being reopened";

struct Outage {
    since: Timestamp,
    refused: u64,
    /// Entries that could not be written (responses to requests already
    /// forwarded); written first when the ledger is back.
    missing: Vec<EntryKind>,
    cause: String,
}

/// The open ledger, or the outage while it cannot be written.
///
/// Lock stories:
/// - `ledger` (`RwLock`): written when the ledger fails and is reopened
///   (housekeeping) and at shutdown; read (the `Arc` cloned) by every
///   append.
/// - `outage` (`Mutex`): written by a failing append, by each refused
///   request (its count) and by recovery; read by every request
///   ([`LedgerLink::degraded`]) and by `/health`.
/// - `last_size` (atomic): the size last seen, for `/health` while the
///   ledger is being reopened.
pub(crate) struct LedgerLink {
    ledger: RwLock<Option<Arc<dyn LedgerBackend>>>,
    open: LedgerOpener,
    outage: Mutex<Option<Outage>>,
    last_size: AtomicU64,
    alerts: Alerts,
    /// Streamed answers whose `response` entry is still to be queued
    /// ([`LedgerLink::owe`]); shutdown waits for them.
    owed: AtomicUsize,
    settled: tokio::sync::Notify,
}

/// A `response` entry a streamed answer still owes the ledger: while any
/// is alive, [`LedgerLink::settle`] waits, so a gateway stopping right
/// after a client got its last byte still records that answer.
pub(crate) struct Owed(Arc<LedgerLink>);

impl Drop for Owed {
    fn drop(&mut self) {
        if self.0.owed.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

/// The copy of an entry an outage keeps, to write when the ledger is back:
/// only `response` entries, whose requests REDCap has already acted on
/// (anything else failed before it could matter, and is not cloned on
/// every request for nothing).
fn owed(kind: &EntryKind) -> Option<EntryKind> {
    matches!(kind, EntryKind::Response { .. }).then(|| kind.clone())
}

impl LedgerLink {
    pub(crate) fn new(
        ledger: Arc<dyn LedgerBackend>,
        open: LedgerOpener,
        alerts: Alerts,
    ) -> LedgerLink {
        LedgerLink {
            ledger: RwLock::new(Some(ledger)),
            open,
            outage: Mutex::new(None),
            last_size: AtomicU64::new(0),
            alerts,
            owed: AtomicUsize::new(0),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// Counts a `response` entry owed by an answer still streaming; drop
    /// the guard once the entry is queued ([`LedgerLink::append_soon`]).
    pub(crate) fn owe(self: &Arc<Self>) -> Owed {
        self.owed.fetch_add(1, Ordering::AcqRel);
        Owed(Arc::clone(self))
    }

    /// Waits (at most `bound`) until no streamed answer owes its
    /// `response` entry; says how many still did if the bound passed.
    pub(crate) async fn settle(&self, bound: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                if self.owed.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
        self.owed.load(Ordering::Acquire)
    }

    /// Appends durably, or records the outage and fails. An entry that
    /// raises an alert raises it either way, saying whether the ledger
    /// holds it.
    pub(crate) async fn append(&self, kind: EntryKind) -> Result<(), ()> {
        let raised = if self.alerts.is_on() {
            alerts::alert_of(&kind)
        } else {
            None
        };
        let outcome = self.append_entry(kind).await;
        if let Some(r) = raised {
            self.alerts
                .raise(r, outcome.as_ref().err().map(String::as_str));
        }
        outcome.map_err(|_| ())
    }

    async fn append_entry(&self, kind: EntryKind) -> Result<(), String> {
        let Some(ledger) = self.current() else {
            self.note_outage(REOPENING.into(), None);
            return Err(REOPENING.into());
        };
        let owed = owed(&kind);
        match ledger.append_async(kind).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let why = e.to_string();
                self.note_outage(why.clone(), owed);
                Err(why)
            }
        }
    }

    /// Queues an entry that must become durable but need not hold up the
    /// caller (a `response` entry: REDCap has acted, its answer goes back).
    /// It rides along with the next request's sync; if it fails, the
    /// gateway turns degraded and writes it when the ledger is back.
    pub(crate) fn append_soon(self: &Arc<Self>, kind: EntryKind) {
        let Some(ledger) = self.current() else {
            self.note_outage(REOPENING.into(), Some(kind));
            return;
        };
        let pending = ledger.append_deferred(kind.clone());
        let link = Arc::clone(self);
        // No task waits for it: the ledger's committer reports a failure.
        pending.on_done(move |outcome| {
            if let Err(e) = outcome {
                link.note_outage(e.to_string(), Some(kind));
            }
        });
    }

    /// The open ledger, or `None` while it is being reopened.
    pub(crate) fn current(&self) -> Option<Arc<dyn LedgerBackend>> {
        self.ledger
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes the ledger out, to close it (shutdown).
    pub(crate) fn take(&self) -> Option<Arc<dyn LedgerBackend>> {
        self.ledger
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn lock_outage(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.outage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note_outage(&self, cause: String, missing: Option<EntryKind>) {
        let mut outage = self.lock_outage();
        let o = outage.get_or_insert_with(|| {
            tracing::error!(%cause, "ledger unavailable: refusing requests until it is back");
            // Fail closed, and say so where someone is listening: the
            // ledger cannot take this one (it is recorded when the ledger
            // is back, as `ledger_unavailable`).
            self.alerts.raise(
                Raised::new(
                    alerts::LEDGER_FAILED,
                    format!(
                        "the gateway's audit ledger failed ({cause}): every client request is refused (503) until it can be written again; the gateway retries every second"
                    ),
                ),
                Some(&cause),
            );
            Outage {
                since: Timestamp::now(),
                refused: 0,
                missing: Vec::new(),
                cause,
            }
        });
        o.missing.extend(missing);
    }

    /// Every ten seconds of an outage, a line on stderr saying so (the
    /// operator sees it in the journal while it lasts, not only after).
    pub(crate) fn warn_outage(&self) {
        let outage = self.lock_outage();
        if let Some(o) = outage.as_ref() {
            let secs = Timestamp::now().duration_since(o.since).as_secs().max(0) as u64;
            if secs > 0 && secs.is_multiple_of(10) {
                tracing::error!(
                    since = %o.since,
                    refused = o.refused,
                    cause = %o.cause,
                    "the ledger is still unavailable: requests are refused until it is back"
                );
            }
        }
    }

    /// The last size the ledger reported (kept while it is being reopened).
    pub(crate) fn size(&self) -> Option<u64> {
        if let Some(l) = self.current() {
            let size = l.size();
            self.last_size.store(size, Ordering::Relaxed);
            return Some(size);
        }
        match self.last_size.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// The outage, for `/health`: since when, why, and how many requests
    /// were refused.
    pub(crate) fn outage_summary(&self) -> Option<(Timestamp, String, u64)> {
        self.lock_outage()
            .as_ref()
            .map(|o| (o.since, o.cause.clone(), o.refused))
    }

    /// Counts a request refused because the ledger is down (for the
    /// outage's alert).
    pub(crate) fn count_refused(&self) {
        if let Some(o) = self.lock_outage().as_mut() {
            o.refused += 1;
        }
    }

    /// Whether the ledger failed and requests are being refused.
    pub(crate) fn degraded(&self) -> bool {
        self.lock_outage().is_some()
    }

    /// Reopens a failed ledger, writes the entries owed, and ends the
    /// outage with its alert.
    pub(crate) async fn try_recover(&self) {
        // Drop our handle first so the old writer releases its lock.
        drop(self.take());
        let opener = self.open.clone();
        let reopened = match tokio::task::spawn_blocking(move || opener())
            .await
            .expect("the opening task panicked")
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "the ledger cannot be reopened yet");
                return;
            }
        };
        // Entries owed from before the failure go in first.
        let missing = self
            .lock_outage()
            .as_mut()
            .map(|o| std::mem::take(&mut o.missing))
            .unwrap_or_default();
        let ledger = reopened.clone();
        let unwritten = tokio::task::spawn_blocking(move || write_owed(&*ledger, missing))
            .await
            .unwrap_or_default();
        if !unwritten.is_empty() {
            if let Some(o) = self.lock_outage().as_mut() {
                o.missing = unwritten;
            }
            return;
        }
        // Install the ledger before ending the outage, so a request that
        // sees the gateway healthy also finds a ledger to write to.
        *self.ledger.write().unwrap_or_else(|e| e.into_inner()) = Some(reopened);
        let Some(outage) = self.lock_outage().take() else {
            return;
        };
        let message = format!(
            "ledger unavailable from {} to {}, {} requests refused ({})",
            outage.since,
            Timestamp::now(),
            outage.refused,
            outage.cause
        );
        tracing::info!("ledger reopened; requests are accepted again");
        let _ = self
            .append(EntryKind::Alert {
                code: "ledger_unavailable".into(),
                message,
            })
            .await;
    }
}

/// Writes the entries an outage owes, one by one: those written are not
/// owed any more, so a failure part-way never writes one twice at the next
/// attempt. And a response whose batch failed to sync may still have
/// reached the disk (the write went through, the sync did not): recovery
/// kept it, so it is not written again. Returns what is still owed.
fn write_owed(ledger: &dyn LedgerBackend, missing: Vec<EntryKind>) -> Vec<EntryKind> {
    let mut survived = std::collections::HashSet::new();
    let from = ledger.size().saturating_sub(missing.len() as u64 * 4 + 64);
    let _ = ledger.read_from(from, &mut |e| {
        if let EntryKind::Response { request_id, .. } = e.kind {
            survived.insert(request_id);
        }
    });
    let mut rest = missing.into_iter().filter(
        |e| !matches!(e, EntryKind::Response { request_id, .. } if survived.contains(request_id)),
    );
    let mut written = 0;
    while let Some(e) = rest.next() {
        if let Err(err) = ledger.append(e.clone()) {
            tracing::warn!(error = %err, written, "owed ledger entries not all written yet");
            return std::iter::once(e).chain(rest).collect();
        }
        written += 1;
    }
    Vec::new()
}
