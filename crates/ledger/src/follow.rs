//! Following a file ledger that grows: verify it once in full, then on
//! each look verify only what was appended since, as strongly — the new
//! entries must chain onto the verified prefix (seq, segment headers,
//! origin) and extend its Merkle tree, and every new signed checkpoint is
//! checked along the signing-key chain from the pinned key and must sign
//! the root of that extended tree (which makes it consistent with every
//! checkpoint before it). What the dashboard re-reads every 30 seconds
//! (docs/report.md).
//!
//! What a look cannot see is an old entry changed in place: its bytes are
//! not read again. Each look checks that the verified prefix is still
//! where it was — the same segment files (by identity), each ending with
//! the line it ended with, no sealed segment grown or shrunk, the last
//! verified checkpoint still in place — and says [`FollowError::Changed`]
//! when it is not; the caller then verifies in full. A change inside the
//! prefix that keeps all of that is found by the next full verification,
//! which the caller runs periodically.
//!
//! Memory: the Merkle tree's frontier (O(log n)), one line per segment,
//! and the entries no checkpoint signs yet — not the ledger.

use std::io::Read;
use std::path::{Path, PathBuf};

use durable::{FileId, FileSystem};

use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::{Entry, EntryKind};
use crate::error::VerifyError;
use crate::files::{
    CHECKPOINTS, MAX_UNSIGNED_SPAN, check_same_origin, check_version, list_segments, parse_notes,
    parse_segment_name, rotation_of, verify_dir,
};
use crate::merkle::{self, Hash, TreeBuilder};

/// The figures of a verified ledger, as [`crate::VerifyReport`] gives
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Followed {
    /// Entries in the log.
    pub entries: u64,
    /// Checkpoints, every signature valid.
    pub checkpoints: usize,
    /// The size the last checkpoint signs.
    pub anchored: u64,
    /// The root of the whole log.
    pub root: Hash,
}

/// Why a look could not extend the verified prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowError {
    /// The verified prefix is no longer what was verified (a segment
    /// replaced, truncated or rewritten; the checkpoints file rewritten):
    /// verify in full.
    Changed(String),
    /// What was appended does not verify.
    Invalid(String),
    /// The ledger could not be read.
    Io(String),
}

impl std::fmt::Display for FollowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowError::Changed(why) => write!(f, "the verified ledger changed: {why}"),
            FollowError::Invalid(why) => write!(f, "{why}"),
            FollowError::Io(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for FollowError {}

/// A segment as far as it was verified.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    id: FileId,
    /// Bytes verified.
    len: u64,
    /// Its last verified line, with its newline (empty: none yet).
    last_line: Vec<u8>,
}

/// An entry no checkpoint signs yet.
#[derive(Debug, Clone)]
struct Unsigned {
    leaf: Hash,
    ts: jiff::Timestamp,
}

/// A verified file ledger, ready to take in what is appended to it.
#[derive(Debug, Clone)]
pub struct Follower {
    dir: PathBuf,
    pinned: VerifierKey,
    origin: String,
    segments: Vec<Segment>,
    /// The tree of every verified entry.
    tree: TreeBuilder,
    /// The tree of the entries the last checkpoint signs.
    anchored: TreeBuilder,
    /// The entries after them, oldest first.
    unsigned: Vec<Unsigned>,
    /// While starting: entries below this seq go straight to `anchored`.
    anchor_to: u64,
    last_ts: Option<jiff::Timestamp>,
    /// Bytes of `checkpoints.notes` verified, and the last verified note.
    notes_len: u64,
    last_note: Option<String>,
    checkpoints: usize,
    /// The key that signs the next checkpoint.
    current: VerifierKey,
    /// Key rotations no checkpoint covers yet (seq, new verifier key).
    rotations: Vec<(u64, Option<String>)>,
}

fn io_error(path: &Path, e: std::io::Error) -> FollowError {
    FollowError::Io(format!("reading {}: {e}", path.display()))
}

impl Follower {
    /// Verifies the ledger in `dir` in full against the pinned `key` (as
    /// [`verify_dir`]: every entry, signature and root, and the unsigned
    /// tail), then reads the entries it verified once more, in order,
    /// handing each to `visit`, to keep what extending it needs. `None`
    /// (with the figures) when the key chain cannot be followed from here
    /// (the pinned key is a later rotation's and the first key is known
    /// only by id): every look must then verify in full.
    pub fn start(
        fs: &dyn FileSystem,
        dir: &Path,
        key: &VerifierKey,
        visit: &mut dyn FnMut(&Entry),
    ) -> Result<(Option<Follower>, Followed), FollowError> {
        let report = verify_dir(fs, dir, key)
            .map_err(|e: VerifyError| FollowError::Invalid(e.to_string()))?;
        let figures = Followed {
            entries: report.entries,
            checkpoints: report.checkpoints,
            anchored: report.anchored,
            root: report.root,
        };
        let notes = fs
            .read(&dir.join(CHECKPOINTS))
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(Vec::new()),
                _ => Err(e),
            })
            .map_err(|e| io_error(&dir.join(CHECKPOINTS), e))?;
        let notes = parse_notes(&notes);
        if notes.notes.len() < report.checkpoints {
            return Err(FollowError::Changed(format!(
                "{CHECKPOINTS} holds {} notes after {} verified",
                notes.notes.len(),
                report.checkpoints
            )));
        }
        let verified_notes = &notes.notes[..report.checkpoints];
        let mut follower = Follower {
            dir: dir.to_path_buf(),
            pinned: key.clone(),
            origin: report.origin.clone(),
            segments: Vec::new(),
            tree: TreeBuilder::new(),
            anchored: TreeBuilder::new(),
            unsigned: Vec::new(),
            anchor_to: report.anchored,
            last_ts: None,
            notes_len: verified_notes.iter().map(|n| n.len() as u64).sum(),
            last_note: verified_notes.last().cloned(),
            checkpoints: report.checkpoints,
            current: key.clone(),
            rotations: Vec::new(),
        };
        let mut rotations = Vec::new();
        follower.read_entries(fs, Some(report.entries), &mut rotations, visit)?;
        if follower.tree.size() != report.entries || follower.tree.root() != report.root {
            return Err(FollowError::Changed(
                "the entries read after verification are not the ones verified".into(),
            ));
        }
        follower.anchor_to = 0;
        let Some(current) = report.signing_key else {
            return Ok((None, figures));
        };
        follower.current = current;
        follower.rotations = rotations.split_off(report.key_rotations.min(rotations.len()));
        Ok((Some(follower), figures))
    }

    /// The figures of what is verified.
    pub fn figures(&self) -> Followed {
        Followed {
            entries: self.tree.size(),
            checkpoints: self.checkpoints,
            anchored: self.anchored.size(),
            root: self.tree.root(),
        }
    }

    /// The text of the latest verified signed note.
    pub fn latest_note(&self) -> Option<&str> {
        self.last_note.as_deref()
    }

    /// Checks that the verified prefix is still in place, then verifies
    /// what was appended since — handing each new entry to `visit` — and
    /// the checkpoints signed since. On an error the follower may have
    /// taken part of the new entries: drop it and start again.
    pub fn advance(
        &mut self,
        fs: &dyn FileSystem,
        visit: &mut dyn FnMut(&Entry),
    ) -> Result<Followed, FollowError> {
        self.check_prefix(fs)?;
        // The notes before the entries: a writer appends a note only once
        // the entries it signs are durable.
        let notes_path = self.dir.join(CHECKPOINTS);
        let mut new_notes = Vec::new();
        fs.open_read_at(&notes_path, self.notes_len)
            .and_then(|mut f| f.read_to_end(&mut new_notes))
            .map_err(|e| io_error(&notes_path, e))?;
        // A note being written is left for the next look; bytes that
        // cannot be one are damage (as `verify_dir` says of them).
        let new_notes = parse_notes(&new_notes);
        if !new_notes.tail.is_empty() && !crate::files::plausible_torn_note(&new_notes.tail) {
            return Err(FollowError::Invalid(format!(
                "{CHECKPOINTS} holds {} bytes after byte {} that are not a checkpoint note",
                new_notes.tail.len(),
                self.notes_len + new_notes.valid_len
            )));
        }
        let mut rotations = std::mem::take(&mut self.rotations);
        self.read_entries(fs, None, &mut rotations, visit)?;
        self.rotations = rotations;
        for note in new_notes.notes {
            self.take_note(note)?;
        }
        if let (Some(first), Some(last)) = (self.unsigned.first(), self.last_ts) {
            let span =
                std::time::Duration::try_from(last.duration_since(first.ts)).unwrap_or_default();
            if span > MAX_UNSIGNED_SPAN {
                return Err(FollowError::Invalid(format!(
                    "{} entries from seq {} are not covered by a signed checkpoint and span {:?}, longer than a writer leaves ({:?})",
                    self.unsigned.len(),
                    self.anchored.size(),
                    span,
                    MAX_UNSIGNED_SPAN
                )));
            }
        }
        Ok(self.figures())
    }

    /// The verified prefix is where it was.
    fn check_prefix(&self, fs: &dyn FileSystem) -> Result<(), FollowError> {
        let listed = list_segments(fs, &self.dir).map_err(|e| io_error(&self.dir, e))?;
        for (i, seg) in self.segments.iter().enumerate() {
            let name = seg.path.display();
            if listed.get(i) != Some(&seg.path) {
                return Err(FollowError::Changed(format!("segment {name} is gone")));
            }
            match fs.file_id(&seg.path) {
                Ok(id) if id == seg.id => {}
                Ok(_) => {
                    return Err(FollowError::Changed(format!(
                        "segment {name} was replaced by another file"
                    )));
                }
                Err(e) => return Err(io_error(&seg.path, e)),
            }
            let start = seg.len - seg.last_line.len() as u64;
            let mut now = Vec::with_capacity(seg.last_line.len() + 1);
            let read = fs.open_read_at(&seg.path, start).and_then(|f| {
                // One byte more for a sealed segment: it must end there.
                let want = seg.last_line.len() as u64 + u64::from(i + 1 < self.segments.len());
                f.take(want).read_to_end(&mut now)
            });
            // The file ends before what was verified: opening past its end
            // fails so, a short read otherwise.
            let shorter = match read {
                Ok(_) => now.len() < seg.last_line.len(),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
                Err(e) => return Err(io_error(&seg.path, e)),
            };
            if shorter {
                return Err(FollowError::Changed(format!(
                    "segment {name} is shorter than the {} bytes verified",
                    seg.len
                )));
            }
            if !now.starts_with(&seg.last_line) {
                return Err(FollowError::Changed(format!(
                    "the last verified line of segment {name} (up to byte {}) changed",
                    seg.len
                )));
            }
            if now.len() > seg.last_line.len() {
                return Err(FollowError::Changed(format!(
                    "sealed segment {name} grew past the {} bytes verified",
                    seg.len
                )));
            }
        }
        if let Some(note) = &self.last_note {
            let path = self.dir.join(CHECKPOINTS);
            let mut now = Vec::new();
            let read = fs
                .open_read_at(&path, self.notes_len - note.len() as u64)
                .and_then(|f| f.take(note.len() as u64).read_to_end(&mut now));
            let shorter = match read {
                Ok(_) => now.len() < note.len(),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => true,
                Err(e) => return Err(io_error(&path, e)),
            };
            if shorter {
                return Err(FollowError::Changed(format!(
                    "{CHECKPOINTS} is shorter than the {} bytes verified",
                    self.notes_len
                )));
            }
            if now != note.as_bytes() {
                return Err(FollowError::Changed(format!(
                    "the last verified checkpoint in {CHECKPOINTS} changed"
                )));
            }
        }
        Ok(())
    }

    /// Reads complete lines from the end of the verified prefix on (up to
    /// `limit` entries in all), checking each as verification does, and
    /// extends the tree with them.
    fn read_entries(
        &mut self,
        fs: &dyn FileSystem,
        limit: Option<u64>,
        rotations: &mut Vec<(u64, Option<String>)>,
        visit: &mut dyn FnMut(&Entry),
    ) -> Result<(), FollowError> {
        let listed = list_segments(fs, &self.dir).map_err(|e| io_error(&self.dir, e))?;
        let from = self.segments.len().saturating_sub(1);
        for (index, path) in listed.iter().enumerate().skip(from) {
            if limit.is_some_and(|l| self.tree.size() >= l) {
                break;
            }
            if index == self.segments.len() {
                // A new segment: named for the next seq, and only once the
                // one before it ended (a sealed segment is complete).
                let named = parse_segment_name(path).unwrap_or(u64::MAX);
                if named != self.tree.size() {
                    return Err(FollowError::Invalid(format!(
                        "segment {} is named for seq {named}, but the previous segments end before seq {}",
                        path.display(),
                        self.tree.size()
                    )));
                }
                let id = fs.file_id(path).map_err(|e| io_error(path, e))?;
                self.segments.push(Segment {
                    path: path.clone(),
                    id,
                    len: 0,
                    last_line: Vec::new(),
                });
            }
            let sealed = index + 1 < listed.len();
            let complete = self.read_segment(fs, index, limit, rotations, visit)?;
            if sealed && !complete && limit.is_none_or(|l| self.tree.size() < l) {
                return Err(FollowError::Invalid(format!(
                    "segment {} ends with an incomplete line, but a later segment follows",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Takes in the complete lines of segment `index` past its verified
    /// length; whether it ended at a line end.
    fn read_segment(
        &mut self,
        fs: &dyn FileSystem,
        index: usize,
        limit: Option<u64>,
        rotations: &mut Vec<(u64, Option<String>)>,
        visit: &mut dyn FnMut(&Entry),
    ) -> Result<bool, FollowError> {
        let path = self.segments[index].path.clone();
        let file = fs
            .open_read_at(&path, self.segments[index].len)
            .map_err(|e| io_error(&path, e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut line = Vec::new();
        loop {
            if limit.is_some_and(|l| self.tree.size() >= l) {
                return Ok(true);
            }
            line.clear();
            let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut line)
                .map_err(|e| io_error(&path, e))?;
            if n == 0 {
                return Ok(true);
            }
            if line.last() != Some(&b'\n') {
                // A line being written: the next look takes it.
                return Ok(false);
            }
            let seq = self.tree.size();
            let seg = &self.segments[index];
            let bad = |problem: String| {
                FollowError::Invalid(format!(
                    "{} at byte {}: seq {seq}: {problem}",
                    path.display(),
                    seg.len
                ))
            };
            let text = &line[..line.len() - 1];
            let entry = Entry::from_line(text).map_err(|e| bad(e.to_string()))?;
            if entry.seq != seq {
                return Err(bad(format!("out of sequence: line has seq {}", entry.seq)));
            }
            match (&entry.kind, seg.len == 0) {
                (
                    EntryKind::Header {
                        version, origin, ..
                    },
                    true,
                ) => {
                    check_version(*version).map_err(&bad)?;
                    check_same_origin(origin, &self.origin).map_err(&bad)?;
                }
                (EntryKind::Header { .. }, false) => {
                    return Err(bad("header entry in the middle of a segment".into()));
                }
                (_, true) => return Err(bad("a segment must open with a header entry".into())),
                (_, false) => {}
            }
            if let Some(key) = rotation_of(&entry.kind, Some(&self.origin)) {
                rotations.push((seq, key.clone()));
            }
            let leaf = merkle::leaf_hash(text);
            self.tree.push(leaf);
            if seq < self.anchor_to {
                self.anchored.push(leaf);
            } else {
                self.unsigned.push(Unsigned { leaf, ts: entry.ts });
            }
            self.last_ts = Some(self.last_ts.map_or(entry.ts, |t| t.max(entry.ts)));
            let seg = &mut self.segments[index];
            seg.len += line.len() as u64;
            seg.last_line.clear();
            seg.last_line.extend_from_slice(&line);
            visit(&entry);
        }
    }

    /// Verifies the next checkpoint: signed by the key in force, no
    /// smaller than the last one, signing the root of the verified tree at
    /// its size; then puts in force the key rotations it covers.
    fn take_note(&mut self, note: String) -> Result<(), FollowError> {
        let index = self.checkpoints;
        let bad = |problem: String| FollowError::Invalid(format!("checkpoint {index}: {problem}"));
        let cp: Checkpoint = match Checkpoint::verify(&note, &self.current) {
            Ok(cp) => cp,
            Err(e) => {
                // Signed by a key whose rotation is not in force yet?
                let early = self.rotations.iter().find(|(_, k)| {
                    k.as_deref()
                        .and_then(|k| VerifierKey::parse(k).ok())
                        .is_some_and(|k| Checkpoint::verify(&note, &k).is_ok())
                });
                return Err(bad(match early {
                    Some((seq, _)) => format!(
                        "signed by the key the key entry at seq {seq} introduces, before a checkpoint signed by the key in force (id {}) covered that entry",
                        self.current.key_id_hex()
                    ),
                    None => e.to_string(),
                }));
            }
        };
        let anchored = self.anchored.size();
        if cp.size < anchored {
            return Err(bad(format!(
                "signs size {} after an earlier one signed {anchored}",
                cp.size
            )));
        }
        let ahead = cp.size - anchored;
        if ahead > self.unsigned.len() as u64 {
            return Err(bad(format!(
                "signs {} entries, the log holds {}",
                cp.size,
                self.tree.size()
            )));
        }
        let mut tree = self.anchored.clone();
        for u in &self.unsigned[..ahead as usize] {
            tree.push(u.leaf);
        }
        if tree.root() != cp.root {
            return Err(bad(format!(
                "its root is not the root of entries 0..{} as the log holds them",
                cp.size
            )));
        }
        let covered = self
            .rotations
            .iter()
            .take_while(|(seq, _)| *seq < cp.size)
            .count();
        for (seq, key) in self.rotations.drain(..covered) {
            let key = key.as_deref().ok_or_else(|| {
                bad(format!(
                    "covers the key rotation entry at seq {seq}, which carries no verifier key"
                ))
            })?;
            let key = VerifierKey::parse(key).map_err(|e| {
                bad(format!(
                    "covers the key rotation entry at seq {seq}, whose key is {e}"
                ))
            })?;
            if key.name != self.pinned.name {
                return Err(bad(format!(
                    "covers the key rotation entry at seq {seq}, which names key {:?}, not the ledger's origin {:?}",
                    key.name, self.pinned.name
                )));
            }
            self.current = key;
        }
        self.anchored = tree;
        self.unsigned.drain(..ahead as usize);
        self.notes_len += note.len() as u64;
        self.last_note = Some(note);
        self.checkpoints += 1;
        Ok(())
    }
}
