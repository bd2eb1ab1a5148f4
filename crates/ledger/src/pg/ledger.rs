//! [`PgLedger`]: the handle appenders hold. Entries and requests
//! (checkpoint, close, key rotation) queue in [`Shared`] for the writer
//! thread ([`super::writer`]), which owns the database connection; opening
//! starts that thread and waits for what it found.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ed25519_dalek::SigningKey;

use super::open::Opened;
use super::options::PgOptions;
use super::queue::{Request, Rotation, Shared, State, lock};
use super::reader::PgReader;
use super::sql::Sql;
use super::writer::Writer;
use crate::append::{Receipt, check_appendable};
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::{Entry, EntryKind};
use crate::error::LedgerError;
use crate::guard::{
    Adoption, WITNESS_WAIT, adoption_entry, settle_witnesses, unread_alert, witness_alert,
};
use crate::pending::{Pending, Urgency};
use crate::witness::Publisher;

/// A PostgreSQL ledger open for writing. Share it between threads with
/// `Arc`; any number of processes may hold the same ledger open.
pub struct PgLedger {
    shared: Arc<Shared>,
    /// Where to read entries back from ([`PgLedger::read_from`]).
    url: String,
    schema: String,
    worker: Mutex<Option<JoinHandle<()>>>,
    publisher: Option<Arc<Publisher>>,
    /// What `PgOptions::adopt` adopted on open.
    adopted: Option<String>,
}

/// A writer thread that opened the ledger and waits for the shared state.
struct Started {
    worker: JoinHandle<()>,
    /// What the open found.
    opened: Opened,
    /// Where the thread is handed the shared state, then runs.
    state_tx: mpsc::Sender<Arc<Shared>>,
}

/// Starts the writer thread, which opens the ledger ([`Writer::open`]) and
/// then, once it is handed the shared state, runs; returns the thread,
/// what the open found and where to hand the state.
fn spawn_writer(
    url: String,
    sql: Sql,
    create: Option<String>,
    key: SigningKey,
    options: PgOptions,
) -> Result<Started, LedgerError> {
    let (tx, rx) = mpsc::channel();
    let (state_tx, state_rx) = mpsc::channel::<Arc<Shared>>();
    let worker = crate::batch_thread::spawn("ledger-pg-writer", move || {
        let mut writer = match Writer::open(&url, &sql, create, key, &options) {
            Ok((writer, opened)) => {
                let _ = tx.send(Ok(opened));
                writer
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        if let Ok(shared) = state_rx.recv() {
            writer.run(&shared);
        }
    })
    .map_err(|e| LedgerError::Database {
        op: "start the writer thread",
        detail: e.to_string(),
    })?;
    match rx.recv() {
        Ok(Ok(opened)) => Ok(Started {
            worker,
            opened,
            state_tx,
        }),
        Ok(Err(e)) => {
            let _ = worker.join();
            Err(e)
        }
        Err(_) => {
            let _ = worker.join();
            Err(LedgerError::Database {
                op: "open the ledger",
                detail: "the writer thread stopped".into(),
            })
        }
    }
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
        let (url, schema) = (url.to_owned(), options.schema.clone());
        let adoption = options.adopt.clone();
        let Started {
            worker,
            opened,
            state_tx,
        } = spawn_writer(url.clone(), sql, create, key, options)?;
        let Opened {
            origin,
            size,
            verifier,
            publisher,
            latest,
            adopted,
            unread,
        } = opened;
        let shared = Arc::new(Shared {
            origin,
            state: Mutex::new(State {
                queue: Vec::new(),
                urgent: 0,
                oldest_deferred: None,
                requests: Vec::new(),
                in_flight: 0,
                closed: false,
                poisoned: None,
                size,
                verifier,
            }),
            work: Condvar::new(),
        });
        state_tx
            .send(shared.clone())
            .expect("the writer thread waits for its state");
        if let Some(p) = &publisher {
            // Witnesses that fail, and recover, are recorded in the ledger.
            let weak = Arc::downgrade(&shared);
            p.on_change(Box::new(move |witness, error| {
                if let Some(sh) = weak.upgrade() {
                    drop(sh.enqueue(witness_alert(witness, error), Urgency::Deferred));
                }
            }));
        }
        let ledger = PgLedger {
            shared,
            url,
            schema,
            worker: Mutex::new(Some(worker)),
            publisher,
            adopted,
        };
        let latest = latest.as_ref().map(|(size, note)| (*size, note.as_str()));
        ledger.record_open(adoption.as_ref(), &unread, latest)?;
        Ok(ledger)
    }

    /// Records what the open found (witnesses it could not read, an
    /// adoption, signed now if this process can take the signer lease) and
    /// brings the witnesses up to date with the last checkpoint (`latest`).
    fn record_open(
        &self,
        adoption: Option<&Adoption>,
        unread: &[(String, String)],
        latest: Option<(u64, &str)>,
    ) -> Result<(), LedgerError> {
        for (witness, error) in unread {
            self.append(unread_alert(witness, error))?;
        }
        let mut signed_now = None;
        if let (Some(adoption), Some(what)) = (adoption, &self.adopted) {
            self.append(adoption_entry(adoption, what))?;
            // Signed now if this process can take the signer lease, else
            // by the process that holds it.
            match self.checkpoint() {
                Ok(cp) => signed_now = cp,
                Err(LedgerError::NotSigner { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(p) = &self.publisher {
            for alert in settle_witnesses(p, signed_now.is_some(), latest) {
                self.append(alert)?;
            }
        }
        Ok(())
    }

    /// What `PgOptions::adopt` adopted on open (recorded in the ledger),
    /// if anything needed adopting.
    pub fn adopted(&self) -> Option<&str> {
        self.adopted.as_deref()
    }

    fn enqueue(&self, kind: EntryKind, urgency: Urgency) -> Pending {
        if let Err(e) = check_appendable(&kind, &self.shared.origin) {
            return Pending::ready(Err(e));
        }
        self.shared.enqueue(kind, urgency)
    }

    /// Appends an entry; returns once its transaction has committed.
    pub fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
        self.enqueue(kind, Urgency::Now).wait()
    }

    /// Queues an entry for the writer thread's next transaction without
    /// waiting: await (or wait for) the [`Pending`]. For async callers.
    pub fn append_async(&self, kind: EntryKind) -> Pending {
        self.enqueue(kind, Urgency::Now)
    }

    /// Queues an entry to ride along with the next batch (or be committed
    /// after [`PgOptions::deferred_delay`]).
    pub fn append_deferred(&self, kind: EntryKind) -> Pending {
        self.enqueue(kind, Urgency::Deferred)
    }

    /// Queues a request for the writer thread (a close request also
    /// closes the ledger to new entries) and returns where its answer will
    /// come; refused if the ledger is poisoned or closed.
    fn submit<T>(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<T, LedgerError>>) -> Request,
    ) -> Result<mpsc::Receiver<Result<T, LedgerError>>, LedgerError> {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = lock(&self.shared.state);
            if let Some(e) = LedgerError::refusing(st.poisoned.as_ref(), st.closed) {
                return Err(e);
            }
            let request = make(tx);
            if matches!(request, Request::Close(_)) {
                st.closed = true;
            }
            st.requests.push(request);
        }
        self.shared.work.notify_one();
        Ok(rx)
    }

    /// The writer thread's answer; if it stopped without one, why.
    fn answer<T>(&self, rx: mpsc::Receiver<Result<T, LedgerError>>) -> Result<T, LedgerError> {
        rx.recv().unwrap_or_else(|_| {
            Err(lock(&self.shared.state)
                .poisoned
                .clone()
                .map_or(LedgerError::Closed, |cause| LedgerError::Poisoned { cause }))
        })
    }

    /// Signs a checkpoint of every committed entry now, unless the last
    /// one covers them; takes the signer lease if it is free or lapsed.
    /// [`LedgerError::NotSigner`] if another process holds it.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        self.answer(self.submit(Request::Checkpoint)?)
    }

    /// Stops accepting entries, commits those queued, signs a final
    /// checkpoint if this process holds (or can take) the signer lease,
    /// and gives the lease up. Idempotent; also run on drop.
    pub fn close(&self) -> Result<Option<Checkpoint>, LedgerError> {
        let last = match self.submit(Request::Close) {
            Ok(rx) => {
                let last = self.answer(rx);
                if let Some(worker) = lock(&self.worker).take() {
                    let _ = worker.join();
                }
                last
            }
            Err(LedgerError::Closed) => Ok(None),
            Err(e) => Err(e),
        };
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
        let rx = self.submit(|reply| {
            Request::Rotate(Box::new(Rotation {
                new,
                operator: operator.to_owned(),
                reason: reason.to_owned(),
                reply,
            }))
        })?;
        self.answer(rx)
    }

    /// Hands `visit` the entries from seq `from` on, in order, through a
    /// reader connection of its own ([`PgReader::read_from`]).
    pub fn read_from(
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

    /// The ledger's origin: the name its checkpoints and key carry.
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
