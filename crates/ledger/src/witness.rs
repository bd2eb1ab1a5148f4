//! Witnesses: the latest checkpoint, kept outside the ledger's own storage
//! (`docs/ledger.md` §11).
//!
//! A checkpoint in `checkpoints.notes` (or the `checkpoints` table) proves
//! nothing once it is deleted: whoever can edit an entry can usually delete
//! the notes that sign it too. A [`Witness`] keeps a copy of the latest
//! checkpoint somewhere else — the secrets store, a file on other storage —
//! so that `verify` and every writer open can check the ledger against it:
//! the ledger must still hold the tree the witness signed.
//!
//! The writer hands each new checkpoint to a [`Publisher`], which writes
//! it to every witness on its own thread, never holding up an append or a
//! checkpoint: a witness is written at most once per
//! [`Witness::min_interval`] while checkpoints keep coming (the newest one
//! wins; those signed meanwhile are skipped), at once on open, and
//! synchronously on close.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use durable::FileSystem;

impl std::fmt::Debug for dyn Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

use crate::checkpoint::{Checkpoint, VerifierKey, parse_unverified};
use crate::error::{VerifyError, VerifyReport};
use crate::merkle::Hash;

/// A place outside the ledger that keeps a copy of its latest checkpoint
/// (a signed note: public, not a secret).
pub trait Witness: Send + Sync {
    /// Where the copy is kept, for messages: `file /mnt/other/witness.note`.
    fn describe(&self) -> String;

    /// The note kept there, if any.
    fn read(&self) -> Result<Option<String>, String>;

    /// Replaces the note kept there with `note`.
    fn write(&self, note: &str) -> Result<(), String>;

    /// The least time between two writes while checkpoints keep coming (the
    /// checkpoints signed meanwhile are coalesced into the next write).
    /// Zero: every checkpoint, except those signed while a write is still
    /// in progress.
    fn min_interval(&self) -> Duration {
        Duration::ZERO
    }
}

/// A witness file (`[ledger] witness_file`): the latest note, replaced
/// atomically (temporary file, fsync, rename, directory fsync) and created
/// with mode 0600. Put it on other storage than the ledger — another disk,
/// a network mount, another machine's share — or it shares the ledger's
/// fate.
pub struct FileWitness {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
}

impl FileWitness {
    /// The witness file at `path`, on the real file system.
    pub fn new(path: &Path) -> FileWitness {
        FileWitness::with_fs(Arc::new(durable::PrivateOsFs), path)
    }

    /// The witness file at `path` on `fs` (tests use `durable::SimFs`).
    pub fn with_fs(fs: Arc<dyn FileSystem>, path: &Path) -> FileWitness {
        FileWitness {
            fs,
            path: path.to_path_buf(),
        }
    }
}

impl Witness for FileWitness {
    fn describe(&self) -> String {
        format!("witness file {}", self.path.display())
    }

    fn read(&self) -> Result<Option<String>, String> {
        match self.fs.read(&self.path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| format!("{} is not UTF-8 text", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    fn write(&self, note: &str) -> Result<(), String> {
        durable::atomic_replace(self.fs.as_ref(), &self.path, note.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

/// A witness's note as read by a verifier: where it came from and what it
/// holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessNote {
    /// Where it was read, for messages (see [`Witness::describe`]).
    pub source: String,
    /// The checkpoint note the witness holds, as text.
    pub note: String,
}

/// What was wrong with a witness, or what it proved.
pub(crate) struct Seen {
    pub size: u64,
}

/// Checks a witness's note against a ledger whose checkpoints were
/// verified: `heads` are their sizes and roots, in file (or row) order;
/// `entries` is how many entries the ledger holds; `root_at(n)` computes
/// the root of its first `n` entries (only asked for when the witness is
/// not one of the checkpoints: something is wrong then, and the answer
/// says what). `keys` are the keys a checkpoint of this ledger may carry
/// a signature of; `notes` names where the checkpoints are, for messages.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_note(
    note: &str,
    origin: &str,
    keys: &[&VerifierKey],
    heads: &[(u64, Hash)],
    entries: u64,
    notes: &str,
    root_at: &mut dyn FnMut(u64) -> Result<Hash, String>,
) -> Result<Seen, String> {
    let (cp, _) = parse_unverified(note).map_err(|e| format!("holds no checkpoint: {e}"))?;
    if cp.origin != origin {
        return Err(format!(
            "holds a checkpoint of another ledger ({:?}), not of {origin:?}",
            cp.origin
        ));
    }
    // The witness is normally one of the checkpoints: a writer publishes a
    // checkpoint only once it is durable beside the ledger.
    if heads
        .iter()
        .rev()
        .any(|&(size, root)| size == cp.size && root == cp.root)
    {
        return Ok(Seen { size: cp.size });
    }
    if !keys.iter().any(|k| Checkpoint::verify(note, k).is_ok()) {
        return Err(format!(
            "holds a checkpoint of {} entries that is not signed by this ledger's key (ids {}): forged, or damaged",
            cp.size,
            keys.iter()
                .map(|k| k.key_id_hex())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let last = heads.last().map_or(0, |h| h.0);
    if cp.size > entries {
        return Err(format!(
            "signs {} entries, but the ledger holds only {entries}: entries from seq {entries} on were removed (truncated, or replaced by an older copy){}",
            cp.size,
            if cp.size > last {
                format!(", and the checkpoints after size {last} were deleted from {notes}")
            } else {
                String::new()
            }
        ));
    }
    let root = root_at(cp.size)?;
    if root != cp.root {
        return Err(format!(
            "signs a tree of {} entries that this ledger does not hold: an entry with seq below {} was changed after the witness recorded it{}",
            cp.size,
            cp.size,
            if cp.size > last {
                format!(
                    ", and the checkpoints after size {last} were deleted from {notes} (so none of them shows it)"
                )
            } else {
                String::new()
            }
        ));
    }
    Err(format!(
        "signs {} entries, which the ledger still holds unchanged, but {notes} lacks that checkpoint (its last signs {last}): checkpoints were deleted",
        cp.size
    ))
}

/// Checks a witness's note against a verified ledger: the note must sign
/// a tree the ledger holds (same size → same root; a smaller tree → a
/// prefix, which it is when the note is one of the ledger's checkpoints;
/// a larger tree → the ledger was truncated). `key` is the key the ledger
/// was verified with. `root_at(n)` computes the root of the first `n`
/// entries; it is called only when something is wrong, to say what (see
/// [`crate::prove_consistency`] or `PgReader::prove_consistency`).
///
/// Returns the size the witness signs.
pub fn check_witness(
    report: &VerifyReport,
    key: &VerifierKey,
    witness: &WitnessNote,
    root_at: &mut dyn FnMut(u64) -> Result<Hash, String>,
) -> Result<u64, VerifyError> {
    let mut keys = vec![key];
    if let Some(current) = &report.signing_key
        && current != key
    {
        keys.push(current);
    }
    let mut root_at = |n: u64| {
        if n == report.entries {
            Ok(report.root)
        } else {
            root_at(n)
        }
    };
    check_note(
        &witness.note,
        &report.origin,
        &keys,
        &report.heads,
        report.entries,
        &report.notes_place,
        &mut root_at,
    )
    .map(|s| s.size)
    .map_err(|problem| VerifyError::Witness {
        witness: witness.source.clone(),
        problem,
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called when a witness starts failing (`Some(error)`) or works again
/// (`None`): the writer records it in the ledger.
pub(crate) type OnChange = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;

/// Writes new checkpoints to the witnesses on its own thread.
pub(crate) struct Publisher {
    inner: Arc<Inner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Inner {
    witnesses: Vec<Arc<dyn Witness>>,
    state: Mutex<PubState>,
    wake: Condvar,
    /// Signalled after each round of writes.
    done: Condvar,
    on_change: Mutex<Option<OnChange>>,
}

#[derive(Default)]
struct PubState {
    /// The newest checkpoint: its size and note.
    latest: Option<(u64, String)>,
    slots: Vec<Slot>,
    /// Flushes asked for, and handled: a flush writes every witness that
    /// lacks the latest note now, whatever its interval.
    flush_asked: u64,
    flush_done: u64,
    stop: bool,
}

#[derive(Default)]
struct Slot {
    /// What the witness holds, as far as this process knows.
    held: Option<(u64, String)>,
    last_attempt: Option<Instant>,
    error: Option<String>,
}

impl PubState {
    fn wants(&self, i: usize) -> bool {
        match (&self.latest, &self.slots[i].held) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((size, note)), Some((held, held_note))) => {
                size > held || (size == held && note != held_note)
            }
        }
    }
}

impl Publisher {
    /// A publisher for `witnesses`, which hold `held` (the notes read on
    /// open, one per witness).
    pub(crate) fn start(
        witnesses: Vec<Arc<dyn Witness>>,
        held: Vec<Option<(u64, String)>>,
    ) -> Arc<Publisher> {
        let slots = held
            .into_iter()
            .map(|held| Slot {
                held,
                ..Slot::default()
            })
            .collect();
        let inner = Arc::new(Inner {
            witnesses,
            state: Mutex::new(PubState {
                slots,
                ..PubState::default()
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            on_change: Mutex::new(None),
        });
        let thread = {
            let inner = Arc::clone(&inner);
            crate::batch_thread::spawn("ledger-witness", move || inner.run()).ok()
        };
        Arc::new(Publisher {
            inner,
            thread: Mutex::new(thread),
        })
    }

    /// Sets who hears of witnesses failing and recovering.
    pub(crate) fn on_change(&self, f: OnChange) {
        *lock(&self.inner.on_change) = Some(f);
    }

    /// A new checkpoint, durable beside the ledger, for the witnesses.
    pub(crate) fn publish(&self, size: u64, note: &str) {
        let mut st = lock(&self.inner.state);
        if st.latest.as_ref().is_some_and(|(s, _)| *s > size) {
            return;
        }
        st.latest = Some((size, note.to_owned()));
        drop(st);
        self.inner.wake.notify_all();
    }

    /// Writes the latest checkpoint to every witness that lacks it, now,
    /// and waits for that (at most `timeout`). Returns the witnesses that
    /// failed, with their errors.
    pub(crate) fn flush(&self, timeout: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.inner.state);
        if st.stop {
            // Finished (a ledger closed twice): nothing writes any more.
            return Vec::new();
        }
        st.flush_asked += 1;
        let want = st.flush_asked;
        self.inner.wake.notify_all();
        while st.flush_done < want {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .inner
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let timed_out = st.flush_done < want;
        (0..self.inner.witnesses.len())
            .filter_map(|i| {
                let w = &self.inner.witnesses[i];
                match &st.slots[i].error {
                    Some(e) => Some((w.describe(), e.clone())),
                    None if timed_out && st.wants(i) => Some((
                        w.describe(),
                        format!("not written within {} s", timeout.as_secs()),
                    )),
                    None => None,
                }
            })
            .collect()
    }

    /// Flushes (at most `timeout`), then stops the thread.
    pub(crate) fn finish(&self, timeout: Duration) -> Vec<(String, String)> {
        let failed = self.flush(timeout);
        lock(&self.inner.state).stop = true;
        self.inner.wake.notify_all();
        *lock(&self.inner.on_change) = None;
        if let Some(t) = lock(&self.thread).take() {
            // A write that hangs past the timeout is left to finish on its
            // own: nothing waits for a thread stuck in it.
            if failed.is_empty() {
                let _ = t.join();
            }
        }
        failed
    }
}

impl Inner {
    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let flushing = st.flush_asked > st.flush_done;
            let flush_gen = st.flush_asked;
            let mut due = Vec::new();
            let mut next: Option<Instant> = None;
            for i in 0..self.witnesses.len() {
                if !st.wants(i) {
                    continue;
                }
                let slot = &st.slots[i];
                let mut wait = self.witnesses[i].min_interval();
                if slot.error.is_some() {
                    wait = wait.max(Duration::from_secs(1));
                }
                let at = slot.last_attempt.map_or(now, |t| t + wait);
                if flushing || at <= now {
                    due.push(i);
                } else {
                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                }
            }
            if due.is_empty() {
                if flushing {
                    st.flush_done = flush_gen;
                    self.done.notify_all();
                    continue;
                }
                if st.stop {
                    return;
                }
                st = match next {
                    Some(at) => {
                        self.wake
                            .wait_timeout(st, at.saturating_duration_since(now))
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    None => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                };
                continue;
            }
            let (size, note) = st.latest.clone().expect("wanted only with a latest note");
            drop(st);
            let mut results = Vec::with_capacity(due.len());
            for &i in &due {
                let w = &self.witnesses[i];
                // A witness is other people's code (a secrets backend): a
                // panic in it must not stop the others.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.write(&note)))
                    .unwrap_or_else(|_| Err("the witness panicked".into()));
                results.push((i, r));
            }
            let mut changes = Vec::new();
            st = lock(&self.state);
            let finished = Instant::now();
            for (i, r) in results {
                let slot = &mut st.slots[i];
                slot.last_attempt = Some(finished);
                match r {
                    Ok(()) => {
                        slot.held = Some((size, note.clone()));
                        if slot.error.take().is_some() {
                            changes.push((i, None));
                        }
                    }
                    Err(e) => {
                        if slot.error.is_none() {
                            changes.push((i, Some(e.clone())));
                        }
                        slot.error = Some(e);
                    }
                }
            }
            if flushing {
                st.flush_done = st.flush_done.max(flush_gen);
            }
            self.done.notify_all();
            if !changes.is_empty() {
                drop(st);
                if let Some(f) = lock(&self.on_change).as_ref() {
                    for (i, e) in changes {
                        f(&self.witnesses[i].describe(), e.as_deref());
                    }
                }
                st = lock(&self.state);
            }
        }
    }
}

/// Reads every witness: its note (`None` if it holds none) or why it could
/// not be read.
pub(crate) fn read_all(witnesses: &[Arc<dyn Witness>]) -> Vec<Result<Option<String>, String>> {
    witnesses
        .iter()
        .map(|w| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.read()))
                .unwrap_or_else(|_| Err("the witness panicked".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        writes: Mutex<Vec<String>>,
        every: Duration,
    }

    impl Witness for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn read(&self) -> Result<Option<String>, String> {
            Ok(lock(&self.writes).last().cloned())
        }
        fn write(&self, note: &str) -> Result<(), String> {
            lock(&self.writes).push(note.to_owned());
            Ok(())
        }
        fn min_interval(&self) -> Duration {
            self.every
        }
    }

    #[test]
    fn writes_are_coalesced_and_flush_writes_the_latest() {
        let w = Arc::new(Counting {
            writes: Mutex::default(),
            every: Duration::from_secs(3600),
        });
        let p = Publisher::start(vec![w.clone()], vec![None]);
        p.publish(1, "one");
        // The first write is due at once.
        assert!(p.flush(Duration::from_secs(5)).is_empty());
        for n in 2..50 {
            p.publish(n, &format!("n{n}"));
        }
        p.publish(10, "older");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(lock(&w.writes).len(), 1, "within the interval: coalesced");
        assert!(p.finish(Duration::from_secs(5)).is_empty());
        assert_eq!(*lock(&w.writes), vec!["one".to_string(), "n49".into()]);
    }

    #[test]
    fn the_witness_file_is_replaced_atomically_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("witness.note");
        let w = FileWitness::new(&path);
        assert_eq!(w.read().unwrap(), None);
        w.write("a note\n").unwrap();
        w.write("another note\n").unwrap();
        assert_eq!(w.read().unwrap().as_deref(), Some("another note\n"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
