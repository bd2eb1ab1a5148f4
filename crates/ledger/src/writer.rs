//! The file ledger's writer: recovery on open, group-committed appends,
//! periodic signed checkpoints, fail-closed poisoning.
//!
//! Group commit: an appender queues its entry and, if no write is in
//! progress, becomes the leader: it takes every queued entry, assigns seqs
//! and timestamps, writes them with one `write_all` and one `sync_data`,
//! then wakes the others. Each appender returns only once the batch holding
//! its entry is durable. Any I/O error poisons the writer: that batch,
//! every queued entry and every later append fail until the ledger is
//! reopened (which runs recovery).
//!
//! Checkpoints are signed from the durable size only (`State::size` moves
//! after the sync), so a checkpoint never covers an entry before its fsync.
//!
//! Async callers do not block a thread: [`Ledger::append_async`] queues the
//! entry and the ledger's committer thread leads its batch at once;
//! the returned [`Pending`] is awaited. Deferred entries
//! ([`Ledger::append_deferred`]) join the queue without asking for a
//! commit: they ride along with the next batch, or the committer commits
//! them after [`LedgerOptions::deferred_delay`]. The gateway uses this for
//! `response` entries, which must become durable but need not hold up the
//! reply, so a request costs one sync, not two.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use durable::{DurableFile, FileSystem};
use ed25519_dalek::SigningKey;
use jiff::Timestamp;

use crate::append::{Receipt, check_appendable};
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::{Entry, EntryKind, FORMAT_VERSION};
use crate::error::LedgerError;
use crate::files::{self, CHECKPOINTS, ROTATE_ACTION, segment_name, take_lock};
use crate::guard::{
    Adoption, OpenRules, WITNESS_WAIT, adoption_entry, settle_witnesses, unread_alert,
    witness_alert,
};
use crate::merkle::{self, Hash};
use crate::pending::{Completer, Pending, Urgency};
use crate::recover::{Recovered, Recovery, Segment, io_err, recover};
use crate::witness::{Publisher, Witness};

/// How a file ledger is opened.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Start a new segment once the active one reaches this size.
    pub segment_max_bytes: u64,
    /// Sign a checkpoint this often while entries arrive (`None`: only on
    /// [`Ledger::checkpoint`] and [`Ledger::close`], for deterministic
    /// tests).
    pub checkpoint_interval: Option<Duration>,
    /// Take the exclusive lock `<dir>/lock` (on the real file system).
    pub lock: bool,
    /// How long a deferred entry waits for an appender's batch to ride
    /// along with before the committer thread commits it on its own.
    pub deferred_delay: Duration,
    /// Where the latest checkpoint is also kept (`docs/ledger.md` §11):
    /// checked on open — the ledger must still hold the tree each one
    /// recorded, or the open is refused — and kept up to date as the
    /// writer signs.
    pub witnesses: Vec<Arc<dyn Witness>>,
    /// The longest time the entries past the last checkpoint may span
    /// (by their timestamps) for the open to sign them: more is not what
    /// a writer leaves, even after a crash, and the open is refused.
    pub max_unsigned_span: Duration,
    /// Sign what the open would refuse to, recording the decision.
    pub adopt: Option<Adoption>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            segment_max_bytes: 64 << 20,
            checkpoint_interval: Some(files::CHECKPOINT_INTERVAL),
            lock: true,
            deferred_delay: Duration::from_millis(5),
            witnesses: Vec::new(),
            max_unsigned_span: files::MAX_UNSIGNED_SPAN,
            adopt: None,
        }
    }
}

/// A file ledger open for writing. Share it between threads with `Arc`.
pub struct Ledger {
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    recovery: Option<Recovery>,
    /// What an [`Adoption`] adopted on open.
    adopted: Option<String>,
    _lock: Option<std::fs::File>,
}

struct Shared {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    origin: String,
    segment_max_bytes: u64,
    state: Mutex<State>,
    wake: Condvar,
    /// Signalled when an entry is queued while a leader gathers a batch.
    arrive: Condvar,
    /// Signalled when a deferred entry is queued, a commit ends, or the
    /// ledger closes: the committer thread's wake-up.
    deferred: Condvar,
    deferred_delay: Duration,
    cp: Mutex<CheckpointFile>,
    stop: Mutex<bool>,
    stop_wake: Condvar,
    /// Batches written (one segment sync each).
    syncs: std::sync::atomic::AtomicU64,
    /// Hands each checkpoint to the witnesses.
    publisher: Option<Arc<Publisher>>,
}

struct State {
    /// Entries waiting for a leader, with who to tell when their batch is
    /// durable (or the writer is poisoned).
    queue: Vec<(u64, EntryKind, Waiter)>,
    /// Entries in `queue` with a [`Pending`] rather than a parked thread
    /// (async and deferred ones): the committer thread's business.
    later_queued: usize,
    /// Of those, async ones: the committer leads a batch for them at once.
    urgent_queued: usize,
    next_ticket: u64,
    done: std::collections::HashMap<u64, Receipt>,
    committing: bool,
    closed: bool,
    poisoned: Option<String>,
    io: Option<Segment>,
    /// Durable entries and their root.
    size: u64,
    root: Hash,
    /// Key id for the headers of new segments: the key signing checkpoints.
    key_id: String,
    /// A leader is waiting in [`Shared::gather`] for entries to arrive.
    leader_waiting: bool,
    /// How many queued entries that leader waits for.
    gather_want: usize,
    /// The committer thread waits on `Shared::deferred`.
    committer_waiting: bool,
    /// ... and only until the deferred delay of entries already queued
    /// ends: another deferred entry is no reason to wake it.
    committer_delaying: bool,
    /// Sizes of the last two batches (older first).
    recent_batches: [usize; 2],
    /// Moving average of one batch's write and sync.
    commit_time: Duration,
}

/// Whether a checkpoint is signed when the tree has not grown since the
/// last one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SameSize {
    /// Nothing new to sign.
    Skip,
    /// Sign it again: a new key's first checkpoint, of the tree the old
    /// key's last one signed.
    Sign,
}

/// Who waits for a newly queued entry (see [`Shared::announce`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A parked appender thread.
    Thread,
    /// A [`Pending`]: the committer thread's business.
    Pending(Urgency),
}

/// Who waits for a queued entry.
enum Waiter {
    /// An appender thread, parked until its receipt is in `State::done`.
    Thread(std::thread::Thread),
    /// A deferred entry's [`Pending`].
    Later(Completer),
}

impl Waiter {
    /// Wakes a parked appender (a deferred entry has no thread to wake).
    fn unpark(&self) {
        if let Waiter::Thread(t) = self {
            t.unpark();
        }
    }
}

/// The checkpoints file and the key that signs the next checkpoint; its
/// lock orders checkpoints and key rotations.
struct CheckpointFile {
    file: Option<Box<dyn DurableFile>>,
    last_size: u64,
    key: SigningKey,
    verifier: VerifierKey,
    /// A rotation `key` entry no checkpoint covers yet, found on open (the
    /// writer stopped between writing it and signing the old key's
    /// checkpoint): no checkpoint is signed until [`Ledger::rotate_key`]
    /// finishes it.
    pending: Option<(Receipt, VerifierKey)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh origin `<host>/redcap-warden/<random ledger id>`.
pub fn new_origin(host: &str) -> Result<String, LedgerError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| LedgerError::Random(e.to_string()))?;
    Ok(format!("{host}/redcap-warden/{}", hex::encode(id)))
}

impl Ledger {
    /// Creates a new ledger in `dir` (created if missing, must hold no
    /// ledger): the first segment with its header, durably, and a first
    /// checkpoint. `origin` names the ledger and its key (see
    /// [`new_origin`]).
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        origin: &str,
        key: SigningKey,
        options: LedgerOptions,
    ) -> Result<Ledger, LedgerError> {
        durable::create_dir_all_durable(fs.as_ref(), dir)
            .map_err(io_err("create the directory", dir))?;
        let lock_file = options.lock.then(|| take_lock(dir)).transpose()?;
        let existing = files::list_segments(fs.as_ref(), dir).map_err(io_err("list", dir))?;
        if !existing.is_empty() || fs.exists(&dir.join(CHECKPOINTS)) {
            return Err(LedgerError::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        let verifier = VerifierKey::from_signing_key(origin, &key);
        let header = Entry::first_header(origin, verifier.key_id_hex());
        let seg = dir.join(segment_name(0));
        let mut file = fs.create_new(&seg).map_err(io_err("create", &seg))?;
        let mut line = header.to_line();
        line.push(b'\n');
        file.write_all(&line).map_err(io_err("write", &seg))?;
        file.sync_data().map_err(io_err("sync", &seg))?;
        let notes = dir.join(CHECKPOINTS);
        fs.create_new(&notes).map_err(io_err("create", &notes))?;
        fs.sync_dir(dir).map_err(io_err("sync", dir))?;
        drop(file);
        let ledger = Ledger::open_inner(fs, dir, key, options, lock_file)?;
        ledger.checkpoint()?;
        Ok(ledger)
    }

    /// Opens the ledger in `dir` for writing, recovering a torn tail (see
    /// the module docs and `docs/ledger.md`). Refuses to open if anything
    /// at or below the last signed checkpoint is damaged.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        key: SigningKey,
        options: LedgerOptions,
    ) -> Result<Ledger, LedgerError> {
        let lock_file = options.lock.then(|| take_lock(dir)).transpose()?;
        Ledger::open_inner(fs, dir, key, options, lock_file)
    }

    fn open_inner(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        key: SigningKey,
        options: LedgerOptions,
        lock_file: Option<std::fs::File>,
    ) -> Result<Ledger, LedgerError> {
        let rules = OpenRules {
            witnesses: &options.witnesses,
            max_unsigned_span: options.max_unsigned_span,
            adopting: options.adopt.is_some(),
        };
        let Recovered {
            origin,
            segment,
            checkpoints,
            signed,
            recovery,
            pending,
            latest_note,
            held,
            adopted,
            unread,
        } = recover(fs.as_ref(), dir, &key, &rules)?;
        let verifier = VerifierKey::from_signing_key(&origin, &key);
        let publisher = (!options.witnesses.is_empty())
            .then(|| Publisher::start(options.witnesses.clone(), held));
        let cp = CheckpointFile {
            file: Some(checkpoints),
            last_size: signed,
            key,
            verifier,
            pending,
        };
        let shared = Arc::new(Shared::new(
            fs, dir, origin, &options, segment, cp, publisher,
        ));
        let ledger = Ledger::start(shared, &options, lock_file, recovery, adopted);
        ledger.record_open(
            options.adopt.as_ref(),
            &unread,
            latest_note.as_deref().map(|n| (signed, n)),
        )?;
        Ok(ledger)
    }

    /// Starts the threads of an opened ledger: the checkpoint ticker (if
    /// checkpoints are timed) and the committer; witnesses that fail, and
    /// recover, are recorded in the ledger.
    fn start(
        shared: Arc<Shared>,
        options: &LedgerOptions,
        lock_file: Option<std::fs::File>,
        recovery: Option<Recovery>,
        adopted: Option<String>,
    ) -> Ledger {
        if let Some(p) = &shared.publisher {
            let weak = Arc::downgrade(&shared);
            p.on_change(Box::new(move |witness, error| {
                if let Some(sh) = weak.upgrade() {
                    drop(sh.append_later(witness_alert(witness, error), Urgency::Deferred));
                }
            }));
        }
        let ticker = options.checkpoint_interval.map(|every| {
            let shared = Arc::clone(&shared);
            crate::batch_thread::spawn("ledger-checkpoint", move || shared.tick(every))
                .expect("starting the ledger's checkpoint thread")
        });
        let committer = {
            let shared = Arc::clone(&shared);
            crate::batch_thread::spawn("ledger-commit", move || shared.commit_later())
                .expect("starting the ledger's committer thread")
        };
        Ledger {
            shared,
            ticker: Mutex::new(ticker),
            committer: Mutex::new(Some(committer)),
            recovery,
            adopted,
            _lock: lock_file,
        }
    }

    /// Records what the open found (a recovery, witnesses it could not
    /// read, an adoption), signs what a crash left unsigned and brings the
    /// witnesses up to date with the last checkpoint (`latest`).
    fn record_open(
        &self,
        adopt: Option<&Adoption>,
        unread: &[(String, String)],
        latest: Option<(u64, &str)>,
    ) -> Result<(), LedgerError> {
        if let Some(r) = &self.recovery {
            self.append(recovery_alert(r))?;
        }
        for (witness, error) in unread {
            self.append(unread_alert(witness, error))?;
        }
        if let (Some(adoption), Some(what)) = (adopt, &self.adopted) {
            self.append_any(adoption_entry(adoption, what))?;
        }
        // What a crash left unsigned (checked on open: no older than a
        // writer leaves, or adopted) is signed now, before new entries
        // join it.
        let signed_now = if lock(&self.shared.cp).pending.is_none() {
            self.checkpoint()?
        } else {
            None
        };
        if let Some(p) = &self.shared.publisher {
            for alert in settle_witnesses(p, signed_now.is_some(), latest) {
                self.append(alert)?;
            }
        }
        Ok(())
    }

    /// Appends an entry; returns once it is durable. Safe to call from many
    /// threads at once: concurrent entries share one write and one sync.
    pub fn append(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
        check_appendable(&kind, &self.shared.origin)?;
        self.append_any(kind)
    }

    /// Queues an entry without waiting for it: it is committed with the
    /// next appender's batch, or by the committer thread after
    /// [`LedgerOptions::deferred_delay`], whichever comes first. The
    /// returned [`Pending`] says when it is durable, or why it never will
    /// be. Use it for entries that must become durable but need not be
    /// before the caller goes on.
    pub fn append_deferred(&self, kind: EntryKind) -> Pending {
        self.append_later(kind, Urgency::Deferred)
    }

    /// Queues an entry for the committer thread, which leads its batch at
    /// once (concurrent entries share it, as with [`Ledger::append`]);
    /// await the returned [`Pending`] for the receipt. For async callers,
    /// which must not block a thread while the batch syncs.
    pub fn append_async(&self, kind: EntryKind) -> Pending {
        self.append_later(kind, Urgency::Now)
    }

    fn append_later(&self, kind: EntryKind, urgency: Urgency) -> Pending {
        if let Err(e) = check_appendable(&kind, &self.shared.origin) {
            return Pending::ready(Err(e));
        }
        self.shared.append_later(kind, urgency)
    }

    fn append_any(&self, kind: EntryKind) -> Result<Receipt, LedgerError> {
        let sh = &self.shared;
        let mut st = lock(&sh.state);
        if let Some(e) = LedgerError::refusing(st.poisoned.as_ref(), st.closed) {
            return Err(e);
        }
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue
            .push((ticket, kind, Waiter::Thread(std::thread::current())));
        sh.announce(&mut st, Waiting::Thread);
        loop {
            if let Some(receipt) = st.done.remove(&ticket) {
                return Ok(receipt);
            }
            if let Some(cause) = &st.poisoned {
                let cause = cause.clone();
                // Nobody commits after a poisoning: take the entry back, so
                // that close() does not wait for it.
                st.queue.retain(|(t, _, _)| *t != ticket);
                return Err(LedgerError::Poisoned { cause });
            }
            if st.committing {
                // Targeted wake-ups: the leader unparks exactly the threads
                // of its batch, and one queued thread to lead the next, so a
                // commit does not wake every waiter. Park tokens make an
                // unpark before the park harmless; spurious wake-ups loop.
                drop(st);
                std::thread::park();
                st = lock(&sh.state);
                continue;
            }
            st = sh.lead(st);
        }
    }

    /// Signs a checkpoint of the durable tree now, unless the last one
    /// already covers it. Returns the new checkpoint, if any.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        self.shared.checkpoint()
    }

    /// Rotates the checkpoint signing key to `new` (`docs/ledger.md` §4.4):
    /// appends a `key` entry (action `rotate`, key name the origin) carrying
    /// the new verifier key, signs a checkpoint covering it with the current
    /// key, then signs the same tree with `new`, which signs every later
    /// checkpoint and whose key id heads every later segment. Returns the
    /// `key` entry's receipt once both checkpoints are durable.
    ///
    /// Entries appended meanwhile are unaffected. If the process stops
    /// after the entry is durable but before the old key's checkpoint is,
    /// the ledger reopens only with the old key, signs no checkpoint, and
    /// this call with the same `new` key finishes the rotation (without a
    /// second entry).
    pub fn rotate_key(
        &self,
        new: SigningKey,
        operator: &str,
        reason: &str,
    ) -> Result<Receipt, LedgerError> {
        let sh = &self.shared;
        let mut cp = lock(&sh.cp);
        if cp.file.is_none() {
            return Err(LedgerError::Closed);
        }
        let new_verifier = VerifierKey::from_signing_key(&sh.origin, &new);
        let receipt = match cp.pending.take() {
            Some((receipt, key)) if key == new_verifier => receipt,
            Some((receipt, key)) => {
                let err = LedgerError::RotationPending {
                    seq: receipt.seq,
                    key: key.to_string(),
                };
                cp.pending = Some((receipt, key));
                return Err(err);
            }
            None => {
                if new_verifier == cp.verifier {
                    return Err(LedgerError::SameKey);
                }
                self.append_any(EntryKind::Key {
                    operator: operator.to_owned(),
                    action: ROTATE_ACTION.into(),
                    key_name: sh.origin.clone(),
                    verifier_key: Some(new_verifier.to_string()),
                    reason: reason.to_owned(),
                })?
            }
        };
        // The old key covers the entry: the durable size includes it, since
        // the append returned only after its batch synced.
        sh.sign_locked(&mut cp, SameSize::Skip)?;
        cp.key = new;
        cp.verifier = new_verifier;
        lock(&sh.state).key_id = cp.verifier.key_id_hex();
        // The new key's first checkpoint, of the same tree if nothing
        // arrived meanwhile.
        sh.sign_locked(&mut cp, SameSize::Sign)?;
        Ok(receipt)
    }

    /// Stops accepting entries, waits for those in flight, signs a final
    /// checkpoint. Idempotent; also run on drop.
    pub fn close(&self) -> Result<Option<Checkpoint>, LedgerError> {
        *lock(&self.shared.stop) = true;
        self.shared.stop_wake.notify_all();
        if let Some(t) = lock(&self.ticker).take() {
            let _ = t.join();
        }
        lock(&self.shared.state).closed = true;
        self.shared.deferred.notify_all();
        if let Some(t) = lock(&self.committer).take() {
            let _ = t.join();
        }
        {
            // Commit what is still queued: appenders parked behind a
            // commit, and deferred entries nobody took along.
            let mut st = lock(&self.shared.state);
            loop {
                if st.committing {
                    st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                } else if !st.queue.is_empty() && st.poisoned.is_none() {
                    st = self.shared.lead(st);
                } else {
                    break;
                }
            }
        }
        let last = self.shared.checkpoint();
        if let Some(p) = &self.shared.publisher {
            p.finish(WITNESS_WAIT);
        }
        last
    }

    /// What `LedgerOptions::adopt` adopted on open (recorded in the
    /// ledger), if anything needed adopting.
    pub fn adopted(&self) -> Option<&str> {
        self.adopted.as_deref()
    }

    /// The verifier key for this ledger's checkpoints
    /// (`name+keyid+base64key` when displayed): the current signing key's,
    /// which changes on [`Ledger::rotate_key`].
    pub fn verifier_key(&self) -> VerifierKey {
        lock(&self.shared.cp).verifier.clone()
    }

    /// The ledger's origin: the name its checkpoints and key carry.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The ledger's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Entries waiting for the next group commit.
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).queue.len()
    }

    /// Group commits since the ledger was opened: each is one write and
    /// one sync of the segment, covering every entry waiting for it.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The number of durable entries.
    pub fn size(&self) -> u64 {
        lock(&self.shared.state).size
    }

    /// The entries on disk from seq `from` on (read line by line, as the gateway does at start).
    pub fn read_from(
        &self,
        from: u64,
        visit: &mut dyn FnMut(crate::Entry),
    ) -> Result<(), LedgerError> {
        crate::files::read_from(self.shared.fs.as_ref(), &self.shared.dir, from, visit)
    }

    /// The root of the durable tree.
    pub fn root(&self) -> Hash {
        lock(&self.shared.state).root
    }

    /// What recovery did when this ledger was opened, if anything.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The `alert` entry recording what recovery did.
fn recovery_alert(r: &Recovery) -> EntryKind {
    let message = match &r.torn_file {
        Some(torn) => format!(
            "recovery moved {} bytes from seq {} on ({}) to {}; {} bytes of an incomplete checkpoint dropped",
            r.moved_bytes,
            r.from_seq,
            r.reason,
            torn.display(),
            r.checkpoint_tail_bytes
        ),
        None => format!(
            "recovery dropped {} bytes of an incomplete checkpoint at the end of {CHECKPOINTS}",
            r.checkpoint_tail_bytes
        ),
    };
    EntryKind::Alert {
        code: "ledger.recovered".into(),
        message,
    }
}

impl Shared {
    /// The state of a ledger just recovered: `segment` active, `cp` signing.
    fn new(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        origin: String,
        options: &LedgerOptions,
        segment: Segment,
        cp: CheckpointFile,
        publisher: Option<Arc<Publisher>>,
    ) -> Shared {
        Shared {
            origin,
            dir: dir.to_path_buf(),
            segment_max_bytes: options.segment_max_bytes,
            state: Mutex::new(State {
                queue: Vec::new(),
                later_queued: 0,
                urgent_queued: 0,
                next_ticket: 0,
                done: Default::default(),
                committing: false,
                closed: false,
                poisoned: None,
                size: segment.tree.size(),
                root: segment.tree.root(),
                key_id: cp.verifier.key_id_hex(),
                io: Some(segment),
                leader_waiting: false,
                gather_want: 0,
                committer_waiting: false,
                committer_delaying: false,
                recent_batches: [0, 0],
                commit_time: Duration::ZERO,
            }),
            wake: Condvar::new(),
            arrive: Condvar::new(),
            deferred: Condvar::new(),
            deferred_delay: options.deferred_delay,
            cp: Mutex::new(cp),
            stop: Mutex::new(false),
            stop_wake: Condvar::new(),
            syncs: Default::default(),
            publisher,
            fs,
        }
    }

    /// Queues an async ([`Urgency::Now`]) or deferred entry (see
    /// [`Ledger::append_async`] and [`Ledger::append_deferred`]).
    fn append_later(&self, kind: EntryKind, urgency: Urgency) -> Pending {
        let sh = self;
        let mut st = lock(&sh.state);
        if let Some(e) = LedgerError::refusing(st.poisoned.as_ref(), st.closed) {
            return Pending::ready(Err(e));
        }
        let (completer, pending) = Pending::new();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, kind, Waiter::Later(completer)));
        st.later_queued += 1;
        st.urgent_queued += usize::from(urgency == Urgency::Now);
        sh.announce(&mut st, Waiting::Pending(urgency));
        pending
    }

    /// Lets a new leader wait, briefly, for the writers its predecessor
    /// just released to queue their next entries.
    ///
    /// Without this, closed-loop writers split into two alternating halves:
    /// while one batch syncs the other half queues, and the writers a sync
    /// releases arrive just after the next leader took the queue, so every
    /// sync carries only about half of them. The leader waits until the
    /// queue is as long as the larger of the last two batches, or for as
    /// long as a typical write and sync takes (at most 2 ms), whichever
    /// comes first. A lone writer never waits: its last batches held one
    /// entry. (A quarter of a sync, as until #10 item 5, left the gateway
    /// at 32 connections syncing once per 10 requests, each sync costing
    /// it about 70 µs of CPU; a whole one, once per 15.)
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let want = st.recent_batches[0].max(st.recent_batches[1]);
        if want < 2 || st.queue.len() >= want {
            return st;
        }
        let deadline = Instant::now() + st.commit_time.min(Duration::from_millis(2));
        st.leader_waiting = true;
        st.gather_want = want;
        while st.queue.len() < want && !st.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .arrive
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.leader_waiting = false;
        st
    }

    /// Commits every queued entry as one batch. The caller found no commit
    /// in progress and becomes the leader; it gets the state back locked,
    /// with every entry of the batch durable and its waiter told, or the
    /// writer poisoned and every waiter told.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.committing = true;
        st = self.gather(st);
        let queued = std::mem::take(&mut st.queue);
        st.later_queued = 0;
        st.urgent_queued = 0;
        let mut batch = Vec::with_capacity(queued.len());
        let mut waiters = Vec::with_capacity(queued.len());
        for (ticket, kind, waiter) in queued {
            batch.push((ticket, kind));
            waiters.push(waiter);
        }
        let mut seg = st
            .io
            .take()
            .expect("the segment is home when no one commits");
        seg.key_id.clone_from(&st.key_id);
        drop(st);
        let batch_len = batch.len();
        let started = Instant::now();
        let result = self.commit(&mut seg, batch);
        let took = started.elapsed();
        st = lock(&self.state);
        st.recent_batches = [st.recent_batches[1], batch_len];
        // Exponential moving average, weight 1/8.
        st.commit_time = (st.commit_time * 7 + took) / 8;
        st.io = Some(seg);
        st.committing = false;
        let me = std::thread::current().id();
        match result {
            Ok((receipts, size, root)) => {
                st.size = size;
                st.root = root;
                for ((ticket, receipt), waiter) in receipts.into_iter().zip(waiters) {
                    match waiter {
                        Waiter::Thread(t) => {
                            st.done.insert(ticket, receipt);
                            if t.id() != me {
                                t.unpark();
                            }
                        }
                        Waiter::Later(c) => c.complete(Ok(receipt)),
                    }
                }
            }
            Err(cause) => {
                for waiter in waiters {
                    match waiter {
                        Waiter::Thread(t) => t.unpark(),
                        Waiter::Later(c) => c.complete(Err(LedgerError::Poisoned {
                            cause: cause.clone(),
                        })),
                    }
                }
                st.poisoned = Some(cause);
            }
        }
        if st.poisoned.is_some() {
            fail_queue(&mut st);
        } else if let Some((_, _, next)) = st
            .queue
            .iter()
            .find(|(_, _, w)| matches!(w, Waiter::Thread(_)))
        {
            // The next leader.
            next.unpark();
        }
        if st.later_queued > 0
            && st.committer_waiting
            && (!st.committer_delaying || st.urgent_queued > 0)
        {
            st.committer_waiting = false;
            self.deferred.notify_one();
        }
        if st.closed {
            // close() may wait for this commit.
            self.wake.notify_all();
        }
        st
    }

    /// Wakes whoever must hear of a newly queued entry: a gathering leader
    /// once the queue holds what it waits for, and the committer thread if
    /// it waits and the entry (one with a [`Pending`]: async or deferred)
    /// is its business. A wake-up is a system call and a context switch, so
    /// nobody is woken for nothing, nor twice before it runs.
    fn announce(&self, st: &mut State, waiting: Waiting) {
        if st.leader_waiting && st.queue.len() >= st.gather_want {
            self.arrive.notify_one();
        }
        let wakes = match waiting {
            Waiting::Thread => false,
            Waiting::Pending(Urgency::Now) => true,
            Waiting::Pending(Urgency::Deferred) => !st.committer_delaying,
        };
        if wakes && st.committer_waiting && !st.committing {
            st.committer_waiting = false;
            self.deferred.notify_one();
        }
    }

    /// The committer thread: leads a batch at once for async entries, and
    /// for deferred entries that no batch took along within
    /// `deferred_delay`. Exits when the ledger closes; close() commits
    /// what is left.
    fn commit_later(&self) {
        let mut st = lock(&self.state);
        loop {
            if st.closed {
                return;
            }
            if st.later_queued == 0 || st.committing || st.poisoned.is_some() {
                st.committer_waiting = true;
                st = self.deferred.wait(st).unwrap_or_else(|e| e.into_inner());
                st.committer_waiting = false;
                continue;
            }
            let deadline = Instant::now() + self.deferred_delay;
            while !st.closed && st.later_queued > 0 && st.urgent_queued == 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                st.committer_waiting = true;
                st.committer_delaying = true;
                st = self
                    .deferred
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                st.committer_waiting = false;
                st.committer_delaying = false;
            }
            if !st.closed && st.later_queued > 0 && !st.committing && st.poisoned.is_none() {
                st = self.lead(st);
            }
        }
    }

    /// Writes one batch; returns receipts, the new durable size and root,
    /// or the cause that poisons the writer.
    #[allow(clippy::type_complexity)]
    fn commit(
        &self,
        seg: &mut Segment,
        batch: Vec<(u64, EntryKind)>,
    ) -> Result<(Vec<(u64, Receipt)>, u64, Hash), String> {
        let fs = self.fs.as_ref();
        match fs.same_file(&seg.path, seg.file.as_ref()) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "{} no longer names the open segment (deleted or replaced)",
                    seg.path.display()
                ));
            }
            Err(e) => return Err(format!("cannot check {}: {e}", seg.path.display())),
        }
        if seg.len >= self.segment_max_bytes || (seg.len > 0 && crossed_utc_midnight(seg.last_ts)) {
            let path = self.dir.join(segment_name(seg.next_seq));
            let file = fs
                .create_new(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            fs.sync_dir(&self.dir)
                .map_err(|e| format!("cannot sync {}: {e}", self.dir.display()))?;
            seg.file = file;
            seg.path = path;
            seg.len = 0;
        }
        let mut buf = Vec::new();
        let mut receipts = Vec::with_capacity(batch.len());
        let mut push = |seg: &mut Segment, kind: EntryKind| {
            let now = Timestamp::now().max(seg.last_ts);
            let entry = Entry {
                seq: seg.next_seq,
                ts: now,
                kind,
            };
            let start = buf.len();
            entry.write_line(&mut buf);
            let leaf = merkle::leaf_hash(&buf[start..]);
            buf.push(b'\n');
            seg.tree.push(leaf);
            seg.next_seq += 1;
            seg.last_ts = now;
            Receipt {
                seq: entry.seq,
                leaf_hash: leaf,
            }
        };
        if seg.len == 0 {
            let header = EntryKind::Header {
                version: FORMAT_VERSION,
                origin: self.origin.clone(),
                key_id: seg.key_id.clone(),
            };
            push(seg, header);
        }
        for (ticket, kind) in batch {
            receipts.push((ticket, push(seg, kind)));
        }
        seg.file
            .write_all(&buf)
            .map_err(|e| format!("cannot write {}: {e}", seg.path.display()))?;
        seg.file
            .sync_data()
            .map_err(|e| format!("cannot sync {}: {e}", seg.path.display()))?;
        seg.len += buf.len() as u64;
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((receipts, seg.tree.size(), seg.tree.root()))
    }

    fn checkpoint(&self) -> Result<Option<Checkpoint>, LedgerError> {
        let mut cp = lock(&self.cp);
        self.sign_locked(&mut cp, SameSize::Skip)
    }

    /// Signs a checkpoint of the durable tree with the current key, unless
    /// the last one covers it ([`SameSize::Sign`]: also when it has the
    /// same size, for a new key's first checkpoint).
    fn sign_locked(
        &self,
        cp: &mut CheckpointFile,
        same_size: SameSize,
    ) -> Result<Option<Checkpoint>, LedgerError> {
        if let Some((receipt, key)) = &cp.pending {
            return Err(LedgerError::RotationPending {
                seq: receipt.seq,
                key: key.to_string(),
            });
        }
        let (size, root) = {
            let st = lock(&self.state);
            if let Some(cause) = &st.poisoned {
                return Err(LedgerError::Poisoned {
                    cause: cause.clone(),
                });
            }
            (st.size, st.root)
        };
        if size < cp.last_size || (size == cp.last_size && same_size == SameSize::Skip) {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        };
        let note = checkpoint.sign(&cp.key);
        let path = self.dir.join(CHECKPOINTS);
        let Some(file) = cp.file.as_mut() else {
            return Err(LedgerError::Closed);
        };
        if let Err(e) = file
            .write_all(note.as_bytes())
            .and_then(|()| file.sync_data())
        {
            let cause = format!("cannot write checkpoint to {}: {e}", path.display());
            {
                let mut st = lock(&self.state);
                st.poisoned = Some(cause.clone());
                fail_queue(&mut st);
            }
            self.wake.notify_all();
            return Err(LedgerError::Poisoned { cause });
        }
        cp.last_size = size;
        if let Some(p) = &self.publisher {
            p.publish(size, &note);
        }
        Ok(Some(checkpoint))
    }

    fn tick(&self, every: Duration) {
        let mut stopped = lock(&self.stop);
        loop {
            let (guard, _) = self
                .stop_wake
                .wait_timeout(stopped, every)
                .unwrap_or_else(|e| e.into_inner());
            stopped = guard;
            if *stopped {
                return;
            }
            drop(stopped);
            // A failure poisons the writer; appenders report it.
            let _ = self.checkpoint();
            stopped = lock(&self.stop);
        }
    }
}

/// Whether the UTC day changed since `last` (the segment's latest entry):
/// segments are sealed daily as well as at a size, so a day's entries can
/// be exported once the day is over.
fn crossed_utc_midnight(last: Timestamp) -> bool {
    // Unix time has no leap seconds: every UTC day is 86,400 of its seconds.
    let day = |t: Timestamp| t.as_second().div_euclid(86_400);
    day(Timestamp::now()) > day(last)
}

/// After a poisoning: fails every queued deferred entry and wakes every
/// queued appender (each takes its own entry back and reports the cause).
fn fail_queue(st: &mut State) {
    let cause = st.poisoned.clone().unwrap_or_default();
    let queued = std::mem::take(&mut st.queue);
    for (ticket, kind, waiter) in queued {
        match waiter {
            Waiter::Thread(t) => {
                t.unpark();
                st.queue.push((ticket, kind, Waiter::Thread(t)));
            }
            Waiter::Later(c) => c.complete(Err(LedgerError::Poisoned {
                cause: cause.clone(),
            })),
        }
    }
    st.later_queued = 0;
    st.urgent_queued = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_is_sealed_once_its_utc_day_is_over() {
        let now = Timestamp::now();
        assert!(!crossed_utc_midnight(now));
        assert!(crossed_utc_midnight(
            now - jiff::SignedDuration::from_hours(25)
        ));
    }
}
