//! Write-once export of a file ledger to S3 Object Lock (`docs/ledger.md`
//! §10), and verification of what was exported.
//!
//! Objects, under the configured prefix:
//!
//! - `seg-<N>.jsonl`: a sealed segment (every segment but the last, which
//!   the writer may still append to), byte for byte;
//! - `checkpoints/<offset>.notes`: the bytes of `checkpoints.notes` from
//!   `<offset>` (20 digits) on, whole notes only. The pieces, in offset
//!   order, are the checkpoints file up to the latest exported checkpoint.
//!
//! Every object is written once with Object Lock in COMPLIANCE mode and a
//! retain-until date; an upload is accepted only once S3 reports the lock
//! and the SHA-256 the ledger computed. Which objects are already there is
//! read from the bucket, so an export ships only what is missing and can
//! be repeated at any time.
//!
//! The S3 client is behind the `s3` cargo feature; without it every entry
//! point answers [`ExportError::NotBuilt`].

#![cfg_attr(not(feature = "s3"), allow(dead_code))]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use durable::{DurableFile, FileId, FileSystem};
use sha2::{Digest, Sha256};

use crate::checkpoint::VerifierKey;
use crate::error::VerifyError;
use crate::files::{self, ExportView};
use crate::merkle::Hash;

/// Where and how to export (`[ledger.export]` in `warden.toml`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportTarget {
    /// The S3 bucket; it must have Object Lock enabled.
    pub bucket: String,
    /// Prepended to every key, e.g. `"site-1/ledger/"`.
    pub prefix: String,
    /// `None`: from the AWS environment.
    pub region: Option<String>,
    /// Another endpoint (moto, an S3-compatible store); path-style.
    pub endpoint_url: Option<String>,
    /// How long each object is locked (COMPLIANCE mode), in days.
    pub retention_days: u32,
    /// Ship the latest checkpoint when the last shipped one is at least
    /// this old, even if no segment was sealed meanwhile.
    pub interval_minutes: u32,
}

impl ExportTarget {
    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn segment_key(&self, path: &Path) -> String {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        format!("{}{name}", self.prefix)
    }

    fn notes_key(&self, offset: u64) -> String {
        format!("{}{NOTES_DIR}{offset:020}.notes", self.prefix)
    }
}

const NOTES_DIR: &str = "checkpoints/";

/// One object written by an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shipped {
    /// The object's key in the bucket.
    pub key: String,
    /// The object's size.
    pub bytes: u64,
    /// Hex SHA-256 of the object, as S3 confirmed it.
    pub sha256: String,
    /// RFC 3339.
    pub retain_until: String,
}

/// What one export did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Segments uploaded now, in order.
    pub segments: Vec<Shipped>,
    /// Seqs of the entries in the segments uploaded now.
    pub entries: Option<std::ops::Range<u64>>,
    /// Sealed segments that were already in the bucket (and match).
    pub already: usize,
    /// The checkpoints piece uploaded now, if any.
    pub checkpoints: Option<Shipped>,
    /// The largest tree size an exported checkpoint signs, after this run.
    pub checkpoint_size: Option<u64>,
    /// Entries in the exported segments, after this run.
    pub exported_entries: u64,
    /// Entries of the local ledger not (yet) exported: the active segment.
    pub local_only: u64,
    /// Checkpoints held back because they follow a signing-key rotation
    /// in the active segment (they are shipped once it is sealed).
    pub held_back: usize,
}

impl ExportReport {
    /// Whether anything was uploaded.
    pub fn shipped_anything(&self) -> bool {
        !self.segments.is_empty() || self.checkpoints.is_some()
    }

    /// One line for the ledger entry that records the export.
    pub fn summary(&self, target: &ExportTarget) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.entries {
            parts.push(format!(
                "{} segment(s), seq {}-{}",
                self.segments.len(),
                r.start,
                r.end.saturating_sub(1)
            ));
        }
        if let (Some(cp), Some(size)) = (&self.checkpoints, self.checkpoint_size) {
            parts.push(format!("checkpoints to tree size {size} ({})", cp.key));
        }
        format!(
            "{}: {}; COMPLIANCE lock {}",
            target.url(),
            parts.join(", "),
            self.segments
                .first()
                .or(self.checkpoints.as_ref())
                .map_or("", |s| s.retain_until.as_str())
        )
    }
}

/// What `verify --from-export` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportVerifyReport {
    /// Segments found in the export.
    pub segments: usize,
    /// Entries in the exported segments: all verified.
    pub entries: u64,
    /// Root of the exported entries.
    pub root: Hash,
    /// Exported checkpoints, all with a valid signature in the key chain.
    pub checkpoints: usize,
    /// Of those, the ones signing more entries than were exported (their
    /// roots are checked against the local ledger, when given).
    pub beyond: usize,
    /// The largest size an exported checkpoint signs whose root was
    /// checked against the exported entries.
    pub anchored: u64,
    /// Objects found not locked in COMPLIANCE mode (key, what was found).
    pub unlocked: Vec<(String, String)>,
    /// Comparison with the local ledger, when one was given.
    pub local: Option<LocalComparison>,
}

/// How the export compares with the local ledger
/// ([`ExportVerifyReport::local`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalComparison {
    /// Entries in the local ledger.
    pub entries: u64,
    /// Local entries not yet exported (from `entries` of the report on).
    pub not_exported: u64,
    /// The first problem: an exported entry that differs locally, or an
    /// exported checkpoint the local file does not hold.
    pub mismatch: Option<String>,
}

impl ExportVerifyReport {
    /// No finding: every object locked, the local ledger (if compared)
    /// agrees.
    pub fn clean(&self) -> bool {
        self.unlocked.is_empty() && self.local.as_ref().is_none_or(|l| l.mismatch.is_none())
    }
}

/// Why an export, or the verification of one, failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The build lacks the `s3` feature.
    #[error(
        "this build of redcap-warden has no S3 support; rebuild it with `--features ledger/s3` to use `ledger export` and `ledger verify --from-export`"
    )]
    NotBuilt,
    /// The bucket is not write-once: the export refuses to ship to it.
    #[error(
        "bucket {bucket} does not have Object Lock enabled ({detail}); the export must be write-once. fix: create a bucket with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket ...) and name it in [ledger.export] bucket"
    )]
    NoObjectLock {
        /// The bucket.
        bucket: String,
        /// What S3 said about its Object Lock configuration.
        detail: String,
    },
    /// An S3 call failed (network, credentials, permissions, a missing
    /// bucket); the detail is S3's error code and message. Nothing
    /// already shipped is affected: fix the cause and export again.
    #[error("S3 {op} {what} failed: {detail}")]
    S3 {
        /// The S3 operation, e.g. `PutObject`.
        op: &'static str,
        /// The bucket or object it was called on.
        what: String,
        /// S3's error code and message.
        detail: String,
    },
    /// The local ledger failed verification, so nothing was shipped:
    /// run `ledger verify` on it first.
    #[error("the local ledger does not verify, so nothing was exported: {0}")]
    Local(VerifyError),
    /// The bucket holds objects that do not match the local ledger (another
    /// ledger's export, or local segments or checkpoints lost or changed);
    /// nothing is overwritten. The text says what differs and what to do.
    #[error("{0}")]
    Conflict(String),
    /// An uploaded object did not come back as sent: its hash, lock mode
    /// or retain-until date differs from what was asked.
    #[error("{key}: {problem}")]
    Upload {
        /// The object's key.
        key: String,
        /// What differs.
        problem: String,
    },
    /// The exported entries or checkpoints failed verification
    /// (`verify --from-export`): the export was tampered with, or is not
    /// of this ledger.
    #[error("the export does not verify: {0}")]
    Verify(VerifyError),
    /// The objects under the prefix cannot be read as an export: nothing
    /// was exported there, the checkpoint pieces leave a gap, or an object
    /// changed while it was read.
    #[error("the export at {url} is unusable: {problem}")]
    Layout {
        /// The export's `s3://bucket/prefix`.
        url: String,
        /// What is wrong with the objects.
        problem: String,
    },
    /// The export's configuration is incomplete (e.g. no AWS region); the
    /// text says what to set.
    #[error("{0}")]
    Config(String),
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An object listed in the bucket.
#[derive(Clone, Debug)]
struct Listed {
    size: u64,
    /// Seconds since the epoch.
    modified: Option<i64>,
}

/// The exported checkpoint pieces, checked to follow one another from
/// offset 0: returns their (offset, size) in order.
fn notes_pieces(
    target: &ExportTarget,
    listed: &BTreeMap<String, Listed>,
) -> Result<Vec<(u64, u64, String)>, ExportError> {
    let dir = format!("{}{NOTES_DIR}", target.prefix);
    let mut pieces = Vec::new();
    for (key, obj) in listed.range(dir.clone()..) {
        let Some(name) = key.strip_prefix(&dir) else {
            break;
        };
        let offset = name
            .strip_suffix(".notes")
            .filter(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        if let Some(offset) = offset {
            pieces.push((offset, obj.size, key.clone()));
        }
    }
    let mut end = 0;
    for (offset, size, key) in &pieces {
        if *offset != end {
            return Err(ExportError::Layout {
                url: target.url(),
                problem: format!(
                    "checkpoint piece {key} starts at byte {offset}, but the pieces before it end at byte {end}"
                ),
            });
        }
        end += size;
    }
    Ok(pieces)
}

/// The exported segments: (first seq, key), in order.
fn segment_objects(target: &ExportTarget, listed: &BTreeMap<String, Listed>) -> Vec<(u64, String)> {
    listed
        .keys()
        .filter_map(|key| {
            let name = key.strip_prefix(&target.prefix)?;
            let n = files::parse_segment_name(Path::new(name))?;
            (!name.contains('/')).then(|| (n, key.clone()))
        })
        .collect()
}

/// The plan of an export, decided from the local ledger and the listing.
struct Plan {
    /// Sealed segments to upload: (path, key, first seq, next first seq).
    upload: Vec<(PathBuf, String, u64, u64)>,
    /// Sealed segments already exported: (path, key).
    present: Vec<(PathBuf, String)>,
    /// Checkpoint bytes to upload: `[from, to)` of the notes, and the size
    /// the last of them signs.
    notes: Option<(u64, u64, u64)>,
    exported_entries: u64,
    held_back: usize,
    checkpoint_size: Option<u64>,
}

fn plan(
    view: &ExportView,
    target: &ExportTarget,
    listed: &BTreeMap<String, Listed>,
    now_secs: i64,
) -> Result<Plan, ExportError> {
    let sealed = view.segments.len().saturating_sub(1);
    let mut upload = Vec::new();
    let mut present = Vec::new();
    for i in 0..sealed {
        let key = target.segment_key(&view.segments[i]);
        if listed.contains_key(&key) {
            present.push((view.segments[i].clone(), key));
        } else {
            upload.push((
                view.segments[i].clone(),
                key,
                view.firsts[i],
                view.firsts[i + 1],
            ));
        }
    }
    // A segment in the bucket that the local ledger does not have sealed:
    // the two have diverged.
    let local: std::collections::BTreeSet<String> = view.segments[..sealed]
        .iter()
        .map(|p| target.segment_key(p))
        .collect();
    if let Some((_, key)) = segment_objects(target, listed)
        .into_iter()
        .find(|(_, key)| !local.contains(key))
    {
        return Err(ExportError::Conflict(format!(
            "{key} is in the bucket but is not a sealed segment of the local ledger: the export belongs to another ledger or the local one lost segments; export to another prefix, or run `ledger verify --from-export`"
        )));
    }
    let exported_entries = if sealed == 0 { 0 } else { view.firsts[sealed] };
    // Checkpoints: whole notes, from where the exported pieces end, up to
    // the latest one an exporter may ship: one signed after a key
    // rotation that is not exported yet could not be checked from the
    // export, so the notes stop at the first one covering such a rotation.
    let pieces = notes_pieces(target, listed)?;
    let shipped_end = pieces.last().map_or(0, |(o, s, _)| o + s);
    if shipped_end > 0 && !view.note_ends.iter().any(|(end, _)| *end == shipped_end) {
        return Err(ExportError::Conflict(format!(
            "the exported checkpoints end at byte {shipped_end}, which is not the end of a checkpoint in the local checkpoints.notes ({} bytes): the export belongs to another ledger or the local checkpoints file was changed",
            view.notes.len()
        )));
    }
    let unexported_rotation = view
        .rotations
        .iter()
        .copied()
        .find(|&seq| seq >= exported_entries);
    let allowed = match unexported_rotation {
        None => view.note_ends.len(),
        Some(r) => view
            .note_ends
            .iter()
            .position(|(_, size)| *size > r)
            .map_or(view.note_ends.len(), |i| i + 1),
    };
    let held_back = view.note_ends.len() - allowed;
    let (to, size) = view.note_ends[..allowed].last().copied().unwrap_or((0, 0));
    let last_piece_age = pieces
        .last()
        .and_then(|(_, _, key)| listed.get(key)?.modified)
        .map(|t| now_secs - t);
    let interval = i64::from(target.interval_minutes) * 60;
    // A run from a timer every `interval` must not skip every other one.
    let due = last_piece_age.is_none_or(|age| age >= interval - (interval / 10).min(60));
    let notes =
        (to > shipped_end && (!upload.is_empty() || due)).then_some((shipped_end, to, size));
    let checkpoint_size = match notes {
        Some((_, _, size)) => Some(size),
        None => view
            .note_ends
            .iter()
            .find(|(end, _)| *end == shipped_end)
            .map(|(_, size)| *size),
    };
    Ok(Plan {
        upload,
        present,
        notes,
        exported_entries,
        held_back,
        checkpoint_size,
    })
}

/// A read-only directory in memory holding downloaded objects, for the
/// same scan `verify_dir` runs.
struct MemDir(BTreeMap<PathBuf, Vec<u8>>);

fn read_only() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "the export is read-only")
}

impl FileSystem for MemDir {
    fn open_append(&self, _: &Path) -> io::Result<Box<dyn DurableFile>> {
        Err(read_only())
    }
    fn create_new(&self, _: &Path) -> io::Result<Box<dyn DurableFile>> {
        Err(read_only())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn remove_file(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only())
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .0
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.contains_key(path)
    }
    fn file_id(&self, _: &Path) -> io::Result<FileId> {
        Err(read_only())
    }
}

/// Verifies downloaded objects: `segments` (first seq, bytes) and the
/// checkpoint pieces concatenated.
fn verify_downloaded(
    target: &ExportTarget,
    segments: Vec<(String, Vec<u8>)>,
    notes: Vec<u8>,
    key: &VerifierKey,
    local: Option<(&dyn FileSystem, &Path)>,
    unlocked: Vec<(String, String)>,
) -> Result<ExportVerifyReport, ExportError> {
    let root = PathBuf::from(format!("/s3/{}/{}", target.bucket, target.prefix));
    let root = root.join("export");
    let mut files = BTreeMap::new();
    for (key, data) in segments {
        let name = key.rsplit('/').next().unwrap_or(&key).to_owned();
        files.insert(root.join(name), data);
    }
    let exported_notes = notes.clone();
    files.insert(root.join(files::CHECKPOINTS), notes);
    let mem = MemDir(files);
    let (report, beyond) =
        files::verify_log(&mem, &root, key, &|_| {}, true).map_err(ExportError::Verify)?;
    let local = match local {
        None => None,
        Some((fs, dir)) => Some(compare_local(fs, dir, &mem, &root, &exported_notes)?),
    };
    Ok(ExportVerifyReport {
        segments: report.segments,
        entries: report.entries,
        root: report.root,
        checkpoints: report.checkpoints,
        beyond,
        anchored: report.anchored,
        unlocked,
        local,
    })
}

/// The exported entries and checkpoints must be exactly the local ones.
fn compare_local(
    fs: &dyn FileSystem,
    dir: &Path,
    mem: &MemDir,
    root: &Path,
    exported_notes: &[u8],
) -> Result<LocalComparison, ExportError> {
    let exported = files::scan(mem, root)
        .map_err(|(path, source)| ExportError::Verify(VerifyError::Io { path, source }))?;
    let local = files::scan(fs, dir)
        .map_err(|(path, source)| ExportError::Local(VerifyError::Io { path, source }))?;
    let mut mismatch = exported
        .leaves
        .iter()
        .zip(&local.leaves)
        .position(|(a, b)| a != b)
        .map(|seq| format!("entry seq {seq} differs between the export and the local ledger"));
    if mismatch.is_none() && local.leaves.len() < exported.leaves.len() {
        mismatch = Some(format!(
            "the local ledger holds {} entries, fewer than the {} exported",
            local.leaves.len(),
            exported.leaves.len()
        ));
    }
    if mismatch.is_none() {
        let local_notes = fs.read(&dir.join(files::CHECKPOINTS)).unwrap_or_default();
        if !local_notes.starts_with(exported_notes) {
            mismatch = Some(
                "the local checkpoints.notes does not begin with the exported checkpoints".into(),
            );
        }
    }
    let entries = local.leaves.len() as u64;
    Ok(LocalComparison {
        entries,
        not_exported: entries.saturating_sub(exported.leaves.len() as u64),
        mismatch,
    })
}

#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "s3")]
pub use s3::S3Export;

/// Without the `s3` feature: the same entry points, each answering
/// [`ExportError::NotBuilt`].
#[cfg(not(feature = "s3"))]
pub struct S3Export(());

#[cfg(not(feature = "s3"))]
impl S3Export {
    /// Always [`ExportError::NotBuilt`]: this build has no S3 client.
    pub async fn connect(_target: ExportTarget) -> Result<S3Export, ExportError> {
        Err(ExportError::NotBuilt)
    }

    /// Always [`ExportError::NotBuilt`]: this build has no S3 client.
    pub async fn export(
        &self,
        _fs: &dyn FileSystem,
        _dir: &Path,
        _key: &VerifierKey,
    ) -> Result<ExportReport, ExportError> {
        Err(ExportError::NotBuilt)
    }

    /// Always [`ExportError::NotBuilt`]: this build has no S3 client.
    pub async fn verify(
        &self,
        _key: &VerifierKey,
        _local: Option<(&dyn FileSystem, &Path)>,
    ) -> Result<ExportVerifyReport, ExportError> {
        Err(ExportError::NotBuilt)
    }
}
