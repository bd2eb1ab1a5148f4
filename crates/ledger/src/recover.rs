//! Recovery when the file ledger is opened for writing: scan the
//! directory, refuse damage at or below the signed size (and what
//! [`crate::guard`] refuses), move a torn tail aside, cut an incomplete
//! checkpoint note, and open the active segment and the checkpoints file.

use std::path::{Path, PathBuf};

use durable::{DurableFile, FileSystem};
use ed25519_dalek::SigningKey;
use jiff::Timestamp;

use crate::append::Receipt;
use crate::checkpoint::{NoteError, VerifierKey};
use crate::error::LedgerError;
use crate::files::{self, CHECKPOINTS, Notes, PinnedSignature, Scan, Stop, segment_name};
use crate::guard::{
    Checked, Damage, OpenRules, check_key_in_force, check_signed_roots, ledger_origin,
    pending_rotation,
};
use crate::merkle::TreeBuilder;
use crate::witness;

/// What recovery did when the ledger was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes moved from the segments to `torn_file`.
    pub moved_bytes: u64,
    /// The seq the first moved line would have had.
    pub from_seq: u64,
    /// The file the moved bytes were kept in (none if nothing was moved).
    pub torn_file: Option<PathBuf>,
    /// Why the scan stopped there.
    pub reason: String,
    /// Bytes of an incomplete trailing note cut from checkpoints.notes.
    pub checkpoint_tail_bytes: u64,
}

/// The active segment; owned by the leader while it writes.
pub(crate) struct Segment {
    pub(crate) file: Box<dyn DurableFile>,
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
    pub(crate) next_seq: u64,
    pub(crate) last_ts: Timestamp,
    pub(crate) tree: TreeBuilder,
    pub(crate) key_id: String,
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError {
    let path = path.to_path_buf();
    move |source| LedgerError::Io { op, path, source }
}

pub(crate) struct Recovered {
    pub(crate) origin: String,
    pub(crate) segment: Segment,
    pub(crate) checkpoints: Box<dyn DurableFile>,
    pub(crate) signed: u64,
    pub(crate) recovery: Option<Recovery>,
    pub(crate) pending: Option<(Receipt, VerifierKey)>,
    /// The last checkpoint's note.
    pub(crate) latest_note: Option<String>,
    /// What each witness holds (as read on open).
    pub(crate) held: Vec<Option<(u64, String)>>,
    /// What an adoption adopted.
    pub(crate) adopted: Option<String>,
    /// Witnesses that could not be read: recorded as alerts.
    pub(crate) unread: Vec<(String, String)>,
}

/// Scans the directory, refuses damage at or below the signed size, an
/// unsigned tail older than a writer leaves and a ledger that no longer
/// holds what a witness recorded (unless adopted), moves a torn tail
/// aside, and opens the active segment and checkpoints file.
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    key: &SigningKey,
    rules: &OpenRules<'_>,
) -> Result<Recovered, LedgerError> {
    // The witnesses first, as the PostgreSQL writer reads them.
    let reads = witness::read_all(rules.witnesses);
    let (notes, watch, scan) = read_dir(fs, dir)?;
    let checked = check_dir(dir, key, &notes, &scan)?;
    let signed = checked.signed;
    let tail_span = files::unsigned_span(
        scan.leaves.len() as u64,
        signed,
        watch == Some(signed),
        scan.watch_ts,
        scan.last_ts,
    );
    let guard = checked.guard(&scan.leaves, tail_span, CHECKPOINTS, rules, reads, dir)?;
    let (mut recovery, segments) = match &scan.stop {
        Some(stop) => {
            let (recovery, segments) = move_torn_tail(fs, dir, &scan, stop)?;
            (Some(recovery), segments)
        }
        None => (None, scan.segments.clone()),
    };
    let notes_file = open_notes(fs, dir, &notes, &scan, &mut recovery)?;
    let segment = open_active_segment(fs, dir, &scan, &segments, &checked.verifier)?;
    Ok(Recovered {
        segment,
        origin: checked.origin,
        checkpoints: notes_file,
        signed,
        recovery,
        pending: checked.pending,
        latest_note: notes.notes.last().cloned(),
        held: guard.held,
        adopted: guard.adopted,
        unread: guard.unread,
    })
}

/// Reads the checkpoints, then scans the segments, noting the timestamp
/// of the first entry no checkpoint signs (`watch`, its seq).
fn read_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(Notes, Option<u64>, Scan), LedgerError> {
    let notes = files::read_notes(fs, dir).map_err(|(path, e)| io_err("read", &path)(e))?;
    let watch = notes.notes.last().map_or(Some(0), |n| {
        crate::checkpoint::parse_unverified(n)
            .ok()
            .map(|(cp, _)| cp.size)
    });
    let scan = files::scan_watching(fs, dir, &|_| {}, watch).map_err(|(path, source)| {
        LedgerError::Io {
            op: "read",
            path,
            source,
        }
    })?;
    Ok((notes, watch, scan))
}

/// The checks of everything the checkpoints sign: the key chain, the
/// key given, the checkpoints file, the header, the entries and roots up
/// to the signed size. Damage past it is a torn tail, recovered later.
fn check_dir(
    dir: &Path,
    key: &SigningKey,
    notes: &Notes,
    scan: &Scan,
) -> Result<Checked, LedgerError> {
    let Some(origin) = ledger_origin(
        notes.notes.first().map(String::as_str),
        scan.origin.as_deref(),
    ) else {
        return Err(LedgerError::NotALedger {
            dir: dir.to_path_buf(),
        });
    };
    let verifier = VerifierKey::from_signing_key(&origin, key);
    // The writer holds the current key only: checkpoints older than it are
    // checked with the keys the log records (§4.4); `verify` checks them
    // from the pinned key.
    let walk = files::walk_keys(
        &notes.notes,
        &scan.rotations,
        &verifier,
        scan.first_key_id.as_deref(),
        PinnedSignature::NotNeeded,
    )
    .map_err(|(index, source)| LedgerError::BadCheckpoint {
        dir: dir.to_path_buf(),
        index,
        source,
    })?;
    check_key_in_force(&walk, &scan.rotations, &verifier, dir)?;
    let signed = walk.checkpoints.last().map_or(0, |c| c.size);
    let damage = Damage { place: dir, signed };
    let pending = pending_rotation(
        &walk,
        &scan.rotations,
        &scan.leaves,
        |_| true,
        &damage,
        "key rotation entry without a valid verifier key",
    )?;
    if notes.valid_len < notes.total_len && !files::plausible_torn_note(&notes.tail) {
        return Err(LedgerError::BadCheckpoint {
            dir: dir.to_path_buf(),
            index: notes.notes.len(),
            source: NoteError::Malformed(format!(
                "{CHECKPOINTS} is damaged from byte {} on (not an interrupted write)",
                notes.valid_len
            )),
        });
    }
    if signed > 0 && scan.origin.as_deref() != Some(origin.as_str()) {
        return Err(damage.at(
            0,
            format!(
                "the header of the first segment does not name origin {origin:?}, which the checkpoints sign"
            ),
        ));
    }
    if let Some(stop) = &scan.stop
        && stop.seq < signed
    {
        return Err(damage.at(
            stop.seq,
            format!(
                "{} line {}: {}",
                scan.segments[stop.segment].display(),
                stop.line,
                stop.problem
            ),
        ));
    }
    check_signed_roots(&scan.leaves, &walk.checkpoints, &damage)?;
    Ok(Checked {
        origin,
        verifier,
        checkpoints: walk.checkpoints,
        signed,
        pending,
    })
}

/// Moves everything from the scan's stop on (a torn tail past the signed
/// size) into a `.torn` file, cuts it from the segments, and returns what
/// was done and the segments that remain.
fn move_torn_tail(
    fs: &dyn FileSystem,
    dir: &Path,
    scan: &Scan,
    stop: &Stop,
) -> Result<(Recovery, Vec<PathBuf>), LedgerError> {
    let seg_path = &scan.segments[stop.segment];
    let mut torn_bytes = fs.read(seg_path).map_err(io_err("read", seg_path))?;
    torn_bytes.drain(..stop.offset as usize);
    for later in &scan.segments[stop.segment + 1..] {
        torn_bytes.extend(fs.read(later).map_err(io_err("read", later))?);
    }
    let torn = move_aside(fs, dir, seg_path, &torn_bytes)?;
    if stop.offset == 0 {
        fs.remove_file(seg_path)
            .map_err(io_err("remove", seg_path))?;
    } else {
        let mut f = fs.open_append(seg_path).map_err(io_err("open", seg_path))?;
        f.set_len(stop.offset)
            .map_err(io_err("truncate", seg_path))?;
        f.sync_data().map_err(io_err("sync", seg_path))?;
    }
    for later in &scan.segments[stop.segment + 1..] {
        fs.remove_file(later).map_err(io_err("remove", later))?;
    }
    fs.sync_dir(dir).map_err(io_err("sync", dir))?;
    let mut segments = scan.segments.clone();
    segments.truncate(stop.segment + usize::from(stop.offset > 0));
    let recovery = Recovery {
        moved_bytes: scan.remaining_bytes,
        from_seq: stop.seq,
        torn_file: Some(torn),
        reason: stop.problem.clone(),
        checkpoint_tail_bytes: 0,
    };
    Ok((recovery, segments))
}

/// Opens the checkpoints file for appending (creating it if missing),
/// cutting an incomplete last note, which `recovery` records.
fn open_notes(
    fs: &dyn FileSystem,
    dir: &Path,
    notes: &Notes,
    scan: &Scan,
    recovery: &mut Option<Recovery>,
) -> Result<Box<dyn DurableFile>, LedgerError> {
    let notes_path = dir.join(CHECKPOINTS);
    let tail = notes.total_len - notes.valid_len;
    let mut notes_file = fs
        .open_append(&notes_path)
        .map_err(io_err("open", &notes_path))?;
    if tail > 0 {
        notes_file
            .set_len(notes.valid_len)
            .map_err(io_err("truncate", &notes_path))?;
        notes_file
            .sync_data()
            .map_err(io_err("sync", &notes_path))?;
        recovery
            .get_or_insert(Recovery {
                moved_bytes: 0,
                from_seq: scan.leaves.len() as u64,
                torn_file: None,
                reason: String::new(),
                checkpoint_tail_bytes: 0,
            })
            .checkpoint_tail_bytes = tail;
    }
    // The checkpoints file may have just been created.
    fs.sync_dir(dir).map_err(io_err("sync", dir))?;
    Ok(notes_file)
}

/// Opens the last remaining segment for appending (a new one after the
/// last entry if none remains), with the tree of every valid entry.
fn open_active_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    scan: &Scan,
    segments: &[PathBuf],
    verifier: &VerifierKey,
) -> Result<Segment, LedgerError> {
    let next_seq = scan.leaves.len() as u64;
    let path = segments
        .last()
        .cloned()
        .unwrap_or_else(|| dir.join(segment_name(next_seq)));
    let file = fs.open_append(&path).map_err(io_err("open", &path))?;
    let len = file.len().map_err(io_err("stat", &path))?;
    if len == 0 {
        fs.sync_dir(dir).map_err(io_err("sync", dir))?;
    }
    let mut tree = TreeBuilder::new();
    for leaf in &scan.leaves {
        tree.push(*leaf);
    }
    Ok(Segment {
        file,
        path,
        len,
        next_seq,
        last_ts: scan.last_ts.unwrap_or(Timestamp::UNIX_EPOCH),
        tree,
        key_id: verifier.key_id_hex(),
    })
}

/// Moves `bytes` (a torn tail) into a new `<segment>.torn[.k]` file,
/// durably. A file that could not be written whole is removed again, so a
/// reopen that keeps failing (a full disk) leaves no file behind; if an
/// earlier attempt already moved exactly these bytes (and failed after),
/// its file is reused.
fn move_aside(
    fs: &dyn FileSystem,
    dir: &Path,
    seg: &Path,
    bytes: &[u8],
) -> Result<PathBuf, LedgerError> {
    if let Some(same) = torn_files(fs, seg)
        .into_iter()
        .find(|p| fs.read(p).is_ok_and(|d| d == bytes))
    {
        return Ok(same);
    }
    let torn = unique_torn_path(fs, seg);
    let mut file = fs.create_new(&torn).map_err(io_err("create", &torn))?;
    let written = file
        .write_all(bytes)
        .map_err(io_err("write", &torn))
        .and_then(|()| file.sync_data().map_err(io_err("sync", &torn)));
    drop(file);
    if let Err(e) = written {
        // Best effort: the error that matters is the write's.
        let _ = fs.remove_file(&torn);
        let _ = fs.sync_dir(dir);
        return Err(e);
    }
    fs.sync_dir(dir).map_err(io_err("sync", dir))?;
    Ok(torn)
}

/// The `<segment>.torn` and `<segment>.torn.<k>` files that exist.
fn torn_files(fs: &dyn FileSystem, seg: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let base = format!("{}.torn", seg.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while fs.exists(&candidate) {
        out.push(candidate);
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    out
}

fn unique_torn_path(fs: &dyn FileSystem, seg: &Path) -> PathBuf {
    let base = format!("{}.torn", seg.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while fs.exists(&candidate) {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}
