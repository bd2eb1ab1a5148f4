//! The on-disk layout of a file ledger, and reading it: scanning segments,
//! parsing the checkpoints file, verification and proofs.
//!
//! ```text
//! <dir>/seg-<first seq, 20 digits>.jsonl   segments, in seq order
//! <dir>/checkpoints.notes                  signed notes, concatenated
//! <dir>/seg-….jsonl.torn[.N]               bytes moved aside by recovery
//! <dir>/lock                               the writer's exclusive lock
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use durable::FileSystem;

use crate::checkpoint::{Checkpoint, NoteError, VerifierKey, parse_unverified};
use crate::entry::{Entry, EntryKind, FORMAT_VERSION};
use crate::error::{LedgerError, VerifyError, VerifyReport};
use crate::merkle::{self, Hash, TreeBuilder};

pub(crate) const CHECKPOINTS: &str = "checkpoints.notes";
pub(crate) const LOCK: &str = "lock";
/// The `action` of the `key` entry that rotates the checkpoint signing key
/// (its `key_name` is the ledger's origin). See `docs/ledger.md` §4.4.
pub const ROTATE_ACTION: &str = "rotate";

pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.jsonl")
}

pub(crate) fn parse_segment_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("seg-")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files of `dir`, in order.
pub(crate) fn list_segments(fs: &dyn FileSystem, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut segs: Vec<(u64, PathBuf)> = fs
        .list_dir(dir)?
        .into_iter()
        .filter_map(|p| parse_segment_name(&p).map(|n| (n, p)))
        .collect();
    segs.sort();
    Ok(segs.into_iter().map(|(_, p)| p).collect())
}

/// Where and why a scan stopped before the end of the data.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    /// Index into `Scan::segments`.
    pub segment: usize,
    /// Byte offset in that segment where the bad line starts.
    pub offset: u64,
    /// 1-based line number in that segment.
    pub line: u64,
    /// The seq the bad line should have had.
    pub seq: u64,
    pub problem: String,
}

/// Every valid entry of a ledger directory, in order, up to the first
/// incomplete, unparsable or out-of-sequence line.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub segments: Vec<PathBuf>,
    /// Valid length of each segment (all of it unless the scan stopped in it).
    pub lens: Vec<u64>,
    pub leaves: Vec<Hash>,
    pub origin: Option<String>,
    pub key_id: Option<String>,
    /// The key id in the first segment's header: the ledger's first key.
    pub first_key_id: Option<String>,
    pub last_ts: Option<jiff::Timestamp>,
    /// Signing-key rotations: seq of each rotation `key` entry and the
    /// verifier key it carries.
    pub rotations: Vec<(u64, Option<String>)>,
    pub stop: Option<Stop>,
    /// Total bytes from the stop to the end of the data.
    pub remaining_bytes: u64,
    /// The `ts` of the entry the scan was asked to watch (see
    /// [`scan_watching`]), if it is among the valid ones.
    pub watch_ts: Option<jiff::Timestamp>,
}

pub(crate) fn scan(fs: &dyn FileSystem, dir: &Path) -> Result<Scan, (PathBuf, std::io::Error)> {
    scan_with_progress(fs, dir, &|_| {})
}

/// [`scan`], also noting the `ts` of the entry with seq `watch` (the first
/// one no checkpoint signs: how old the unsigned tail is).
pub(crate) fn scan_watching(
    fs: &dyn FileSystem,
    dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
    watch: Option<u64>,
) -> Result<Scan, (PathBuf, std::io::Error)> {
    scan_chunked(fs, dir, progress, CHUNK, watch)
}

/// Bytes read at a time: large enough that a read costs little per byte,
/// small enough that the buffers in flight stay in cache and memory stays
/// bounded however large the segments are.
const CHUNK: usize = 2 << 20;

/// A piece of a segment that ends at a line end (or at the segment's end),
/// on its way from the reader to a worker.
struct Chunk {
    segment: usize,
    /// Position in the log's order of chunks.
    number: usize,
    /// Offset of `buf[0]` in the segment.
    offset: u64,
    /// `buf[..len]` is the data; `buf` is kept initialised for reuse.
    buf: Vec<u8>,
    len: usize,
    /// The segment ends with this chunk.
    last: bool,
    /// Reused for the chunk's leaf hashes.
    leaves: Vec<Hash>,
}

/// A `ts` as text: the canonical form has a fixed width, so byte order is
/// time order (years 0001–9998).
type TsText = [u8; TS_LEN];
const TS_LEN: usize = "2026-11-28T11:20:21.408570602Z".len();

/// A line the fast path does not handle (a header, a key entry, or one it
/// could not vouch for), fully parsed.
struct FullLine {
    /// Index of the line in its chunk.
    index: usize,
    offset: usize,
    entry: Box<Entry>,
    /// The latest fast-path `ts` of the chunk's lines before this one.
    ts_before: Option<TsText>,
}

enum ChunkStop {
    Incomplete(usize),
    Bad(String),
    /// Line `index > 0` has a seq other than the chunk's first seq + index.
    OutOfSequence(u64),
    /// A non-header line opens the segment.
    NoHeader,
}

/// What a worker found in a chunk: every line up to the first one that is
/// wrong without reference to the lines before the chunk.
struct Parsed {
    chunk: Chunk,
    first_seq: Option<u64>,
    fulls: Vec<FullLine>,
    /// Latest fast-path `ts` among the accepted lines.
    max_ts: Option<TsText>,
    stop: Option<(usize, usize, ChunkStop)>,
    /// The index and `ts` of the watched line, if the chunk holds it.
    watch_ts: Option<(usize, jiff::Timestamp)>,
}

fn ts_text(ts: &str) -> Option<TsText> {
    ts.as_bytes().try_into().ok()
}

/// Hashes and checks every line of a chunk on a worker thread. Stops at
/// the first line that is incomplete, unparsable or out of sequence
/// within the chunk; the checks that need earlier chunks run in order on
/// the scanning thread ([`Scanner::take`]).
fn parse_chunk(mut chunk: Chunk, watch: Option<u64>) -> Parsed {
    let data = &chunk.buf[..chunk.len];
    let mut watch_ts = None;
    let mut leaves = std::mem::take(&mut chunk.leaves);
    leaves.clear();
    let mut fulls = Vec::new();
    let mut first_seq = None;
    let mut max_ts: Option<TsText> = None;
    let mut stop = None;
    let mut offset = 0;
    while offset < data.len() {
        let index = leaves.len();
        let (seq, len, ts, full_ts) = match crate::entry::check_next_line_fast(&data[offset..]) {
            Some((fast, len)) => (fast.seq, len, ts_text(fast.ts), None),
            None => {
                let Some(len) = data[offset..].iter().position(|&b| b == b'\n') else {
                    stop = Some((index, offset, ChunkStop::Incomplete(data.len() - offset)));
                    break;
                };
                match Entry::from_line(&data[offset..offset + len]) {
                    Ok(entry) => {
                        let seq = entry.seq;
                        let ts = entry.ts;
                        if seq == first_seq.unwrap_or(seq) + index as u64 {
                            fulls.push(FullLine {
                                index,
                                offset,
                                entry: Box::new(entry),
                                ts_before: max_ts,
                            });
                        }
                        (seq, len, None, Some(ts))
                    }
                    Err(e) => {
                        stop = Some((index, offset, ChunkStop::Bad(e.to_string())));
                        break;
                    }
                }
            }
        };
        let first = *first_seq.get_or_insert(seq);
        if seq != first + index as u64 {
            stop = Some((index, offset, ChunkStop::OutOfSequence(seq)));
            break;
        }
        if let Some(ts) = ts {
            if chunk.offset == 0 && offset == 0 {
                stop = Some((index, offset, ChunkStop::NoHeader));
                break;
            }
            if max_ts.is_none_or(|m| m < ts) {
                max_ts = Some(ts);
            }
        }
        if watch == Some(seq) {
            let ts =
                full_ts.or_else(|| ts.and_then(|t| std::str::from_utf8(&t).ok()?.parse().ok()));
            watch_ts = ts.map(|ts| (index, ts));
        }
        leaves.push(merkle::leaf_hash(&data[offset..offset + len]));
        offset += len + 1;
    }
    chunk.leaves = leaves;
    Parsed {
        chunk,
        first_seq,
        fulls,
        max_ts,
        stop,
        watch_ts,
    }
}

/// The reader: every segment in order, in chunks that end at a line end,
/// through a pool of reused buffers. Returns on the first read error or
/// when the consumers are gone.
fn read_chunks(
    fs: &dyn FileSystem,
    segments: &[PathBuf],
    pool: &std::sync::mpsc::Receiver<(Vec<u8>, Vec<Hash>)>,
    out: &std::sync::mpsc::SyncSender<Chunk>,
    progress: &(dyn Fn(u64) + Sync),
    chunk_bytes: usize,
) -> Result<(), (PathBuf, std::io::Error)> {
    let mut number = 0;
    let mut done = 0u64;
    // Buffers start small and grow towards `chunk_bytes` while chunks come
    // back full, so a small ledger (tests verify some thousands of times)
    // never zero-fills megabytes of buffer it will not use.
    let mut grow_to = chunk_bytes.min(64 << 10);
    for (segment, path) in segments.iter().enumerate() {
        let mut file = fs.open_read(path).map_err(|e| (path.clone(), e))?;
        let mut offset = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let Ok((mut buf, leaves)) = pool.recv() else {
                return Ok(());
            };
            let want = grow_to.max(2 * carry.len());
            if buf.len() < want {
                buf.resize(want, 0);
            }
            buf[..carry.len()].copy_from_slice(&carry);
            let mut len = carry.len();
            let mut eof = false;
            // Fill the buffer; grow it if a single line is longer.
            loop {
                while len < buf.len() {
                    match file.read(&mut buf[len..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            len += n;
                            done += n as u64;
                            progress(done);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err((path.clone(), e)),
                    }
                }
                // `carry` holds no newline: it is what followed the last one.
                if eof || buf[carry.len()..len].contains(&b'\n') {
                    break;
                }
                buf.resize(buf.len() * 2, 0);
            }
            if !eof {
                grow_to = (grow_to * 2).min(chunk_bytes);
            }
            let end = if eof {
                len
            } else {
                buf[..len]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .expect("the loop above ends at a newline")
                    + 1
            };
            carry.clear();
            carry.extend_from_slice(&buf[end..len]);
            let chunk = Chunk {
                segment,
                number,
                offset,
                buf,
                len: end,
                last: eof,
                leaves,
            };
            number += 1;
            offset += end as u64;
            if out.send(chunk).is_err() {
                return Ok(());
            }
            if eof {
                break;
            }
        }
    }
    Ok(())
}

/// The order-dependent part of a scan: takes parsed chunks in log order.
struct Scanner {
    out: Scan,
    /// Lines of the current segment before the current chunk.
    seg_lines: u64,
    /// Bytes of the current segment before the current chunk.
    seg_bytes: u64,
    fast_ts: Option<TsText>,
    full_ts: Option<jiff::Timestamp>,
}

impl Scanner {
    fn take(&mut self, p: &Parsed) {
        let chunk = &p.chunk;
        let index = chunk.segment;
        if chunk.offset == 0 {
            self.seg_lines = 0;
            self.seg_bytes = 0;
            if self.out.stop.is_none() {
                let expected = self.out.leaves.len() as u64;
                let named =
                    parse_segment_name(&self.out.segments[index]).expect("listed segments parse");
                if named != expected {
                    self.out.stop = Some(Stop {
                        segment: index,
                        offset: 0,
                        line: 1,
                        seq: expected,
                        problem: format!(
                            "segment is named for seq {named}, but the previous segments end before seq {expected}"
                        ),
                    });
                }
            }
        }
        if self.out.stop.is_none() {
            self.take_lines(p);
        }
        self.seg_bytes += chunk.len as u64;
        if chunk.last {
            let len = match &self.out.stop {
                Some(stop) if stop.segment == index => {
                    self.out.remaining_bytes += self.seg_bytes - stop.offset;
                    stop.offset
                }
                Some(_) => {
                    self.out.remaining_bytes += self.seg_bytes;
                    0
                }
                None => self.seg_bytes,
            };
            self.out.lens.push(len);
        }
    }

    fn take_lines(&mut self, p: &Parsed) {
        let chunk = &p.chunk;
        let expected = self.out.leaves.len() as u64;
        // In the order of the per-line checks: a line that is incomplete
        // or unparsable has no seq (`first_seq` is then unset), then the
        // seq, then the structure rules, line by line.
        let mut stop: Option<(usize, usize, String)> = None;
        if let Some(first) = p.first_seq
            && first != expected
        {
            stop = Some((0, 0, format!("out of sequence: line has seq {first}")));
        }
        // The latest fast-path `ts` of the lines accepted, if not all are.
        let mut ts_limit = stop.is_some().then_some(None);
        if stop.is_none() {
            for full in &p.fulls {
                let first_in_segment = chunk.offset == 0 && full.index == 0;
                let seq = expected + full.index as u64;
                if let Some(problem) = check_full(&full.entry, first_in_segment, seq, &mut self.out)
                {
                    stop = Some((full.index, full.offset, problem));
                    ts_limit = Some(full.ts_before);
                    break;
                }
                self.full_ts = Some(self.full_ts.map_or(full.entry.ts, |t| t.max(full.entry.ts)));
            }
        }
        if stop.is_none()
            && let Some((index, offset, why)) = &p.stop
        {
            let problem = match why {
                ChunkStop::Incomplete(n) => {
                    format!("incomplete line ({n} bytes without a newline)")
                }
                ChunkStop::Bad(problem) => problem.clone(),
                ChunkStop::OutOfSequence(seq) => format!("out of sequence: line has seq {seq}"),
                ChunkStop::NoHeader => "a segment must open with a header entry".into(),
            };
            stop = Some((*index, *offset, problem));
        }
        let fast_ts = ts_limit.unwrap_or(p.max_ts);
        if self.fast_ts < fast_ts {
            self.fast_ts = fast_ts;
        }
        let accepted = stop.as_ref().map_or(chunk.leaves.len(), |s| s.0);
        if let Some((index, ts)) = p.watch_ts
            && index < accepted
        {
            self.out.watch_ts = Some(ts);
        }
        self.out.leaves.extend_from_slice(&chunk.leaves[..accepted]);
        if let Some((index, offset, problem)) = stop {
            self.out.stop = Some(Stop {
                segment: chunk.segment,
                offset: chunk.offset + offset as u64,
                line: self.seg_lines + index as u64 + 1,
                seq: expected + index as u64,
                problem,
            });
        }
        self.seg_lines += chunk.leaves.len() as u64;
    }

    fn finish(mut self) -> Scan {
        let fast_ts = self.fast_ts.and_then(|t| {
            std::str::from_utf8(&t)
                .ok()?
                .parse::<jiff::Timestamp>()
                .ok()
        });
        for ts in [fast_ts, self.full_ts].into_iter().flatten() {
            self.out.last_ts = Some(self.out.last_ts.map_or(ts, |t| t.max(ts)));
        }
        self.out
    }
}

/// [`scan`], calling `progress` with the number of segment bytes read so
/// far. One thread reads the segments in chunks through reused buffers,
/// the available CPUs hash and check the lines of each chunk, and this
/// thread applies the checks that depend on order as the chunks complete.
pub(crate) fn scan_with_progress(
    fs: &dyn FileSystem,
    dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Scan, (PathBuf, std::io::Error)> {
    scan_chunked(fs, dir, progress, CHUNK, None)
}

fn scan_chunked(
    fs: &dyn FileSystem,
    dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
    chunk_bytes: usize,
    watch: Option<u64>,
) -> Result<Scan, (PathBuf, std::io::Error)> {
    use std::sync::mpsc;
    let segments = list_segments(fs, dir).map_err(|e| (dir.to_path_buf(), e))?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut scanner = Scanner {
        out: Scan {
            segments: segments.clone(),
            ..Scan::default()
        },
        seg_lines: 0,
        seg_bytes: 0,
        fast_ts: None,
        full_ts: None,
    };
    let (pool_tx, pool_rx) = mpsc::channel::<(Vec<u8>, Vec<Hash>)>();
    for _ in 0..workers + 3 {
        pool_tx
            .send((Vec::new(), Vec::new()))
            .expect("the receiver is alive");
    }
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(workers + 1);
    let chunk_rx = std::sync::Mutex::new(chunk_rx);
    let (done_tx, done_rx) = mpsc::channel::<Parsed>();
    std::thread::scope(|scope| {
        let segments = &segments;
        let reader = scope
            .spawn(move || read_chunks(fs, segments, &pool_rx, &chunk_tx, progress, chunk_bytes));
        for _ in 0..workers {
            let (chunk_rx, done_tx) = (&chunk_rx, done_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = chunk_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(chunk)) = next else { break };
                    if done_tx.send(parse_chunk(chunk, watch)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        for parsed in done_rx.iter() {
            waiting.insert(parsed.chunk.number, parsed);
            while let Some(parsed) = waiting.remove(&next) {
                scanner.take(&parsed);
                next += 1;
                let Chunk { buf, leaves, .. } = parsed.chunk;
                // The reader may be done and gone.
                let _ = pool_tx.send((buf, leaves));
            }
        }
        drop(pool_tx);
        reader.join().expect("the segment reader panicked")
    })?;
    Ok(scanner.finish())
}

/// A header's format version must be ours (§2.4).
pub(crate) fn check_version(version: u32) -> Result<(), String> {
    if version == FORMAT_VERSION {
        Ok(())
    } else {
        Err(format!("unsupported format version {version}"))
    }
}

/// A later header must name the ledger's origin (§2.4 rule 2).
pub(crate) fn check_same_origin(origin: &str, ledger: &str) -> Result<(), String> {
    if origin == ledger {
        Ok(())
    } else {
        Err(format!(
            "header names origin {origin:?}, the ledger's is {ledger:?}"
        ))
    }
}

/// The new verifier key of a rotation of the signing key of the ledger
/// named `origin` (a `key` entry with action `rotate` naming it), if
/// `kind` is one.
pub(crate) fn rotation_of<'a>(
    kind: &'a EntryKind,
    origin: Option<&str>,
) -> Option<&'a Option<String>> {
    match kind {
        EntryKind::Key {
            action,
            key_name,
            verifier_key,
            ..
        } if action == ROTATE_ACTION && origin == Some(key_name.as_str()) => Some(verifier_key),
        _ => None,
    }
}

/// The order-dependent checks of a fully parsed entry (§2.4), and the
/// rotation entries it records; returns the problem, if any.
fn check_full(entry: &Entry, first_in_segment: bool, seq: u64, out: &mut Scan) -> Option<String> {
    match (&entry.kind, first_in_segment) {
        (
            EntryKind::Header {
                version,
                origin,
                key_id,
            },
            true,
        ) => {
            if let Err(problem) = check_version(*version) {
                return Some(problem);
            }
            if let Some(first) = &out.origin
                && let Err(problem) = check_same_origin(origin, first)
            {
                return Some(problem);
            }
            out.origin = Some(origin.clone());
            out.key_id = Some(key_id.clone());
            if out.first_key_id.is_none() {
                out.first_key_id = Some(key_id.clone());
            }
        }
        (EntryKind::Header { .. }, false) => {
            return Some("header entry in the middle of a segment".into());
        }
        (_, true) => return Some("a segment must open with a header entry".into()),
        (_, false) => {}
    }
    if let Some(key) = rotation_of(&entry.kind, out.origin.as_deref()) {
        out.rotations.push((seq, key.clone()));
    }
    None
}

/// The checkpoints file of the ledger in `dir` split into notes (none if
/// there is no file yet); on error, the file's path and the error.
pub(crate) fn read_notes(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Notes, (PathBuf, std::io::Error)> {
    let path = dir.join(CHECKPOINTS);
    match fs.read(&path) {
        Ok(data) => Ok(parse_notes(&data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Notes::default()),
        Err(e) => Err((path, e)),
    }
}

/// The checkpoints file split into notes.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub notes: Vec<String>,
    /// Length of the complete notes; bytes past it are an incomplete tail.
    pub valid_len: u64,
    pub total_len: u64,
    /// The bytes past `valid_len`.
    pub tail: Vec<u8>,
}

/// Whether `tail` can be the start of one note cut short by a power cut
/// (rather than damage): at most three text lines, and at most one
/// unfinished signature line after the blank line.
pub(crate) fn plausible_torn_note(tail: &[u8]) -> bool {
    const SIG: &[u8] = "\u{2014} ".as_bytes();
    let newlines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
    match tail.windows(2).position(|w| w == b"\n\n") {
        None => newlines(tail) <= 3,
        Some(i) => {
            let rest = &tail[i + 2..];
            newlines(&tail[..i]) == 2
                && newlines(rest) == 0
                && (rest.starts_with(SIG) || SIG.starts_with(rest))
        }
    }
}

/// Splits the checkpoints file: each note is its text, a blank line, and
/// one or more lines starting with "— ". Bytes that do not complete a note
/// form the tail.
pub(crate) fn parse_notes(data: &[u8]) -> Notes {
    const SIG: &[u8] = "\u{2014} ".as_bytes();
    let mut out = Notes {
        total_len: data.len() as u64,
        ..Notes::default()
    };
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(blank) = data[pos..].windows(2).position(|w| w == b"\n\n") else {
            break;
        };
        let mut end = pos + blank + 2;
        let mut sigs = 0;
        while data[end..].starts_with(SIG) {
            match data[end..].iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    end += nl + 1;
                    sigs += 1;
                }
                None => break,
            }
        }
        let Ok(note) = std::str::from_utf8(&data[pos..end]) else {
            break;
        };
        if sigs == 0 {
            break;
        }
        out.notes.push(note.to_owned());
        pos = end;
        out.valid_len = pos as u64;
    }
    out.tail = data[out.valid_len as usize..].to_vec();
    out
}

/// The checkpoints, checked along the signing-key chain.
#[derive(Debug)]
pub(crate) struct KeyWalk {
    pub checkpoints: Vec<Checkpoint>,
    /// The key in force after the last checkpoint: it signs the next one.
    /// `None` only when that is still the ledger's first key and the walk
    /// started from a later one (the log names the first key by id only).
    pub current: Option<VerifierKey>,
    /// Rotations in force (each covered by a checkpoint).
    pub applied: usize,
}

/// Whether [`walk_keys`] needs a checkpoint signed by the pinned key when
/// it is a key some rotation introduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinnedSignature {
    /// Verification: the pinned key must have signed.
    Needed,
    /// A writer reopening its own ledger with the key in force.
    NotNeeded,
}

/// The header of the scanned log must name the verifier key's origin.
fn check_origin(scanned: &Scan, origin: &str, key: &VerifierKey) -> Result<(), VerifyError> {
    if origin == key.name {
        return Ok(());
    }
    Err(VerifyError::Entry {
        segment: scanned.segments[0].clone(),
        line: 1,
        seq: 0,
        problem: format!(
            "the header names origin {origin:?}, the verifier key is for {:?}",
            key.name
        ),
    })
}

/// [`walk_keys`] for verification, from the pinned key `key`.
fn walk_pinned(notes: &Notes, scanned: &Scan, key: &VerifierKey) -> Result<KeyWalk, VerifyError> {
    walk_keys(
        &notes.notes,
        &scanned.rotations,
        key,
        scanned.first_key_id.as_deref(),
        PinnedSignature::Needed,
    )
    .map_err(|(index, e)| VerifyError::Checkpoint {
        index,
        problem: e.to_string(),
    })
}

/// Checks every checkpoint's signature along the chain of signing keys
/// (`docs/ledger.md` §4.4): the key in force signs each checkpoint; a
/// rotation `key` entry puts its key in force once a checkpoint signed by
/// the key in force before it covers it (size > its seq).
///
/// The walk starts from `pinned` as the ledger's first key. If that fails
/// and `pinned` is a key some rotation introduces, it starts there instead:
/// checkpoints before that rotation was in force are checked with the keys
/// the log records (the first one by key id, `first_key_id`), and then at
/// least one checkpoint must be signed by `pinned` or a key after it,
/// unless [`PinnedSignature::NotNeeded`] (the writer reopening its own
/// ledger). Every root is checked against the log separately
/// ([`check_roots`]): that is what makes the keys taken from the log
/// trustworthy.
pub(crate) fn walk_keys(
    notes: &[String],
    rotations: &[(u64, Option<String>)],
    pinned: &VerifierKey,
    first_key_id: Option<&str>,
    pinned_signature: PinnedSignature,
) -> Result<KeyWalk, (usize, NoteError)> {
    let keys: Vec<Result<VerifierKey, String>> = rotations
        .iter()
        .map(|(_, key)| {
            let key = key.as_deref().ok_or("carries no verifier key")?;
            let key = VerifierKey::parse(key).map_err(|e| e.to_string())?;
            if key.name != pinned.name {
                return Err(format!(
                    "names key {:?}, not the ledger's origin {:?}",
                    key.name, pinned.name
                ));
            }
            Ok(key)
        })
        .collect();
    let forward = walk_from(notes, rotations, &keys, pinned, 0, first_key_id);
    if forward.is_ok() {
        return forward;
    }
    let Some(at) = keys.iter().position(|k| k.as_ref() == Ok(pinned)) else {
        return forward;
    };
    let walk = walk_from(notes, rotations, &keys, pinned, at + 1, first_key_id)?;
    let pinned_signed = walk.applied > at && {
        // The checkpoint that put `pinned` in force was signed by the key
        // before it; a later one must be signed by `pinned` (or later).
        let first_by_pinned = walk
            .checkpoints
            .iter()
            .position(|c| c.size > rotations[at].0)
            .map(|i| i + 1);
        first_by_pinned.is_some_and(|i| i < walk.checkpoints.len())
    };
    if pinned_signature == PinnedSignature::Needed && !pinned_signed {
        return Err((
            notes.len(),
            NoteError::KeyChain(format!(
                "no checkpoint is signed by the pinned key {} (id {}), which the key entry at seq {} introduces",
                pinned.name,
                pinned.key_id_hex(),
                rotations[at].0
            )),
        ));
    }
    Ok(walk)
}

/// One walk of [`walk_keys`]: `start` is the chain position of `pinned`
/// (0: the first key; i: the key of rotation i − 1).
fn walk_from(
    notes: &[String],
    rotations: &[(u64, Option<String>)],
    keys: &[Result<VerifierKey, String>],
    pinned: &VerifierKey,
    start: usize,
    first_key_id: Option<&str>,
) -> Result<KeyWalk, (usize, NoteError)> {
    let mut applied = 0usize;
    let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(notes.len());
    for (index, note) in notes.iter().enumerate() {
        let in_force = match (applied, start) {
            (0, 0) => Some(pinned),
            (0, _) => None,
            (n, _) => Some(keys[n - 1].as_ref().expect("checked when applied")),
        };
        let cp = match in_force {
            Some(key) => Checkpoint::verify(note, key).map_err(|e| {
                // Signed by a key whose rotation is not yet in force?
                let early = (applied..keys.len()).find(|&j| {
                    keys[j]
                        .as_ref()
                        .is_ok_and(|k| Checkpoint::verify(note, k).is_ok())
                });
                match early {
                    Some(j) => NoteError::KeyChain(format!(
                        "signed by key id {}, which the key entry at seq {} introduces, before a checkpoint signed by the key in force (id {}) covered that entry",
                        keys[j].as_ref().map(|k| k.key_id_hex()).unwrap_or_default(),
                        rotations[j].0,
                        key.key_id_hex()
                    )),
                    None => e,
                }
            }),
            None => parse_unverified(note).and_then(|(cp, ids)| {
                if cp.origin != pinned.name {
                    return Err(NoteError::WrongOrigin {
                        got: cp.origin,
                        want: pinned.name.clone(),
                    });
                }
                match first_key_id {
                    Some(id) if !ids.iter().any(|i| hex::encode(i) == id) => {
                        Err(NoteError::NoSignature {
                            name: pinned.name.clone(),
                            key_id: id.to_owned(),
                        })
                    }
                    _ => Ok(cp),
                }
            }),
        }
        .map_err(|e| (index, e))?;
        if let Some(prev) = checkpoints.last()
            && cp.size < prev.size
        {
            return Err((
                index,
                NoteError::Malformed(format!(
                    "signs size {} after an earlier one signed {}",
                    cp.size, prev.size
                )),
            ));
        }
        while applied < rotations.len() && rotations[applied].0 < cp.size {
            if let Err(problem) = &keys[applied] {
                return Err((
                    index,
                    NoteError::KeyChain(format!(
                        "covers the key rotation entry at seq {}, which {problem}",
                        rotations[applied].0
                    )),
                ));
            }
            applied += 1;
        }
        checkpoints.push(cp);
    }
    let current = match (applied, start) {
        (0, 0) => Some(pinned.clone()),
        (0, _) => None,
        (n, _) => keys[n - 1].as_ref().ok().cloned(),
    };
    Ok(KeyWalk {
        checkpoints,
        current,
        applied,
    })
}

/// The text of the latest complete signed note in the ledger in `dir`
/// (`None` before the first checkpoint), as `checkpoints.notes` holds it:
/// what a report shows and a third party checks with the verifier key.
/// The note is not verified here; [`verify_dir`] does that.
pub fn latest_note(fs: &dyn FileSystem, dir: &Path) -> Result<Option<String>, LedgerError> {
    let notes = read_notes(fs, dir).map_err(|(path, source)| LedgerError::Io {
        op: "read",
        path,
        source,
    })?;
    Ok(notes.notes.last().cloned())
}

/// Recomputes every leaf and root of the ledger in `dir` and checks every
/// checkpoint's signature (by `key`) and root. Strict: any incomplete line
/// or incomplete checkpoint counts as a failure (opening the ledger for
/// writing recovers a torn tail; verification never modifies anything).
pub fn verify_dir(
    fs: &dyn FileSystem,
    dir: &Path,
    key: &VerifierKey,
) -> Result<VerifyReport, VerifyError> {
    verify_dir_with_progress(fs, dir, key, &|_| {})
}

/// [`verify_dir`], calling `progress` with the number of segment bytes
/// read so far (from the reading thread, as reading proceeds).
pub fn verify_dir_with_progress(
    fs: &dyn FileSystem,
    dir: &Path,
    key: &VerifierKey,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, VerifyError> {
    verify_log(fs, dir, key, progress, false).map(|(report, _)| report)
}

/// [`verify_dir`]; with `beyond_ok`, checkpoints that sign more entries
/// than the directory holds are allowed (an export holds only sealed
/// segments but may hold later checkpoints): their signatures and the key
/// chain are checked, their roots are not. Returns how many there are.
pub(crate) fn verify_log(
    fs: &dyn FileSystem,
    dir: &Path,
    key: &VerifierKey,
    progress: &(dyn Fn(u64) + Sync),
    beyond_ok: bool,
) -> Result<(VerifyReport, usize), VerifyError> {
    // The checkpoints first: a writer appends a note only once the entries
    // it signs are durable, so every note read here covers entries the
    // scan below sees (a running writer's newer entries are its tail).
    let notes = read_notes(fs, dir).map_err(|(path, source)| VerifyError::Io { path, source })?;
    let has_notes = notes.total_len > 0;
    // The first entry no checkpoint signs: its `ts` says how old the
    // unsigned tail is.
    let watch = notes
        .notes
        .last()
        .map_or(Some(0), |n| parse_unverified(n).ok().map(|(cp, _)| cp.size));
    let scanned = scan_watching(fs, dir, progress, watch)
        .map_err(|(path, source)| VerifyError::Io { path, source })?;
    if let Some(stop) = &scanned.stop {
        return Err(VerifyError::Entry {
            segment: scanned.segments[stop.segment].clone(),
            line: stop.line,
            seq: stop.seq,
            problem: stop.problem.clone(),
        });
    }
    let origin = match scanned.origin.clone() {
        Some(origin) => origin,
        // Every entry is gone but checkpoints remain: the check of their
        // sizes below names the missing entries.
        None if has_notes => key.name.clone(),
        None => {
            return Err(VerifyError::NoEntries {
                dir: dir.to_path_buf(),
            });
        }
    };
    check_origin(&scanned, &origin, key)?;
    if notes.valid_len != notes.total_len {
        return Err(VerifyError::Checkpoint {
            index: notes.notes.len(),
            problem: format!(
                "incomplete or malformed note at byte {} of {CHECKPOINTS}",
                notes.valid_len
            ),
        });
    }
    let walk = walk_pinned(&notes, &scanned, key)?;
    let checkpoints = walk.checkpoints;
    let entries = scanned.leaves.len() as u64;
    // Sizes are non-decreasing: the ones beyond the log are a suffix.
    let within = if beyond_ok {
        checkpoints.iter().take_while(|c| c.size <= entries).count()
    } else {
        checkpoints.len()
    };
    let root = check_roots(&scanned.leaves, &checkpoints[..within])?;
    let anchored = checkpoints[..within].last().map_or(0, |c| c.size);
    let unsigned_span = unsigned_span(
        entries,
        anchored,
        watch == Some(anchored),
        scanned.watch_ts,
        scanned.last_ts,
    );
    let report = VerifyReport {
        origin,
        segments: scanned.segments.len(),
        entries,
        root,
        checkpoints: checkpoints.len(),
        anchored,
        unanchored: entries - anchored,
        signing_key: walk.current,
        key_rotations: walk.applied,
        heads: checkpoints[..within]
            .iter()
            .map(|c| (c.size, c.root))
            .collect(),
        notes_place: CHECKPOINTS.into(),
        unsigned_span,
        max_unsigned_span: MAX_UNSIGNED_SPAN,
    };
    // An export's entries past its last checkpoint are a writer's tail
    // only if no later checkpoint signs them; `verify --from-export` says
    // how far the export reaches instead.
    if !beyond_ok {
        check_unsigned_tail(&report)?;
    }
    Ok((report, checkpoints.len() - within))
}

/// How long a writer may leave entries unsigned: it signs a checkpoint at
/// least every [`CHECKPOINT_INTERVAL`] while entries arrive, and on open
/// signs at once what a crash left unsigned (`docs/ledger.md` §11.3).
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The slack on top of [`CHECKPOINT_INTERVAL`]: the time one batch's write
/// and fsync and one checkpoint's write and fsync may take on a slow or
/// busy disk, and clock steps. A tail whose timestamps span more than
/// [`MAX_UNSIGNED_SPAN`] is not what a writer leaves, even after a crash.
pub const UNSIGNED_SLACK: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a file ledger's unsigned tail may span ([`CHECKPOINT_INTERVAL`]
/// + [`UNSIGNED_SLACK`]).
pub const MAX_UNSIGNED_SPAN: std::time::Duration =
    CHECKPOINT_INTERVAL.saturating_add(UNSIGNED_SLACK);

/// The time the unsigned tail spans: from the first entry no checkpoint
/// signs to the newest entry (`first_ts` is that first entry's `ts` if
/// `first_known`). `None` if every entry is signed.
pub(crate) fn unsigned_span(
    entries: u64,
    anchored: u64,
    first_known: bool,
    first_ts: Option<jiff::Timestamp>,
    last_ts: Option<jiff::Timestamp>,
) -> Option<std::time::Duration> {
    if entries <= anchored {
        return None;
    }
    match (first_known, first_ts, last_ts) {
        (true, Some(first), Some(last)) => Some(
            std::time::Duration::try_from(last.duration_since(first))
                .unwrap_or(std::time::Duration::ZERO),
        ),
        _ => None,
    }
}

/// Fails when the unsigned tail spans more than a writer leaves.
pub(crate) fn check_unsigned_tail(report: &VerifyReport) -> Result<(), VerifyError> {
    match report.unsigned_span {
        Some(span) if span > report.max_unsigned_span => Err(VerifyError::UnsignedTail {
            from_seq: report.anchored,
            entries: report.unanchored,
            span,
            limit: report.max_unsigned_span,
            place: report.notes_place.clone(),
            report: Box::new(report.clone()),
        }),
        _ => Ok(()),
    }
}

/// The local ledger as `ledger export` sees it, checked first: the
/// complete notes of the checkpoints file (read before the segments, so
/// every checkpoint covers entries the scan sees), every entry up to an
/// incomplete tail of the active segment, every checkpoint's signature
/// (key chain from `key`) and root.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) struct ExportView {
    pub segments: Vec<PathBuf>,
    /// The seq of each segment's first entry (from its name).
    pub firsts: Vec<u64>,
    /// The complete notes of `checkpoints.notes`.
    pub notes: Vec<u8>,
    /// For each note: its end offset in `notes` and the size it signs.
    pub note_ends: Vec<(u64, u64)>,
    /// Seqs of the signing-key rotation entries.
    pub rotations: Vec<u64>,
    pub entries: u64,
}

#[cfg_attr(not(feature = "s3"), allow(dead_code))]
pub(crate) fn export_view(
    fs: &dyn FileSystem,
    dir: &Path,
    key: &VerifierKey,
) -> Result<ExportView, VerifyError> {
    let notes = read_notes(fs, dir).map_err(|(path, source)| VerifyError::Io { path, source })?;
    let scanned = scan(fs, dir).map_err(|(path, source)| VerifyError::Io { path, source })?;
    if let Some(stop) = &scanned.stop
        && stop.segment + 1 < scanned.segments.len()
    {
        return Err(VerifyError::Entry {
            segment: scanned.segments[stop.segment].clone(),
            line: stop.line,
            seq: stop.seq,
            problem: format!("{} (in a sealed segment)", stop.problem),
        });
    }
    let Some(origin) = &scanned.origin else {
        return Err(VerifyError::NoEntries {
            dir: dir.to_path_buf(),
        });
    };
    check_origin(&scanned, origin, key)?;
    let walk = walk_pinned(&notes, &scanned, key)?;
    check_roots(&scanned.leaves, &walk.checkpoints)?;
    let mut end = 0u64;
    let note_ends = notes
        .notes
        .iter()
        .zip(&walk.checkpoints)
        .map(|(note, cp)| {
            end += note.len() as u64;
            (end, cp.size)
        })
        .collect();
    Ok(ExportView {
        firsts: scanned
            .segments
            .iter()
            .map(|p| parse_segment_name(p).expect("listed segments parse"))
            .collect(),
        segments: scanned.segments,
        notes: notes.notes.concat().into_bytes(),
        note_ends,
        rotations: scanned.rotations.iter().map(|(seq, _)| *seq).collect(),
        entries: scanned.leaves.len() as u64,
    })
}

/// Leaves per block whose root [`block_roots`] computes ahead.
const BLOCK: usize = 4096;

/// The roots of the complete, aligned blocks of `BLOCK` leaves, computed
/// on the available CPUs: interior hashing is the one part of verification
/// that is otherwise sequential.
fn block_roots(leaves: &[Hash]) -> Vec<Hash> {
    let blocks: Vec<&[Hash]> = leaves.chunks_exact(BLOCK).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(blocks.len() / 8)
        .max(1);
    if threads == 1 {
        return blocks.iter().map(|b| merkle::root(b)).collect();
    }
    let per = blocks.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = blocks
            .chunks(per)
            .map(|part| {
                scope.spawn(move || part.iter().map(|b| merkle::root(b)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a hashing thread panicked"))
            .collect()
    })
}

/// Checks each checkpoint's root against the leaves, in one pass; returns
/// the root of all the leaves.
pub(crate) fn check_roots(
    leaves: &[Hash],
    checkpoints: &[Checkpoint],
) -> Result<Hash, VerifyError> {
    let blocks = block_roots(leaves);
    let mut tree = TreeBuilder::new();
    let grow = |tree: &mut TreeBuilder, to: usize| {
        while (tree.size() as usize) < to {
            let at = tree.size() as usize;
            if at.is_multiple_of(BLOCK) && at + BLOCK <= to {
                tree.push_subtree(blocks[at / BLOCK], BLOCK as u64);
            } else {
                tree.push(leaves[at]);
            }
        }
    };
    let mut prev_size = 0;
    for (index, cp) in checkpoints.iter().enumerate() {
        if cp.size > leaves.len() as u64 {
            return Err(VerifyError::CheckpointBeyondLog {
                index,
                size: cp.size,
                entries: leaves.len() as u64,
            });
        }
        grow(&mut tree, cp.size as usize);
        if tree.root() != cp.root {
            return Err(VerifyError::RootMismatch {
                index,
                size: cp.size,
                first_seq: prev_size,
            });
        }
        prev_size = cp.size;
    }
    grow(&mut tree, leaves.len());
    Ok(tree.root())
}

/// An inclusion proof of entry `seq` in the tree of `size` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry proved (its leaf index).
    pub seq: u64,
    /// The size of the tree it is proved in.
    pub size: u64,
    /// The entry's leaf hash.
    pub leaf_hash: Hash,
    /// The root of the tree of `size` entries.
    pub root: Hash,
    /// The RFC 6962 audit path, from the leaf up.
    pub proof: Vec<Hash>,
}

/// A consistency proof between the trees of `old` and `new` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The size of the older tree.
    pub old: u64,
    /// The size of the newer tree.
    pub new: u64,
    /// The root of the older tree.
    pub old_root: Hash,
    /// The root of the newer tree.
    pub new_root: Hash,
    /// The RFC 6962 consistency proof from `old_root` to `new_root`.
    pub proof: Vec<Hash>,
}

/// Takes the file ledger's exclusive lock `<dir>/lock` (held while the
/// returned file is open).
pub(crate) fn take_lock(dir: &Path) -> Result<std::fs::File, LedgerError> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| LedgerError::Io {
            op: "open the lock file",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(LedgerError::Io {
            op: "lock",
            path,
            source,
        }),
    }
}

/// Every complete, valid entry of the ledger in `dir`, in order (stopping
/// at the first incomplete or invalid line). For `show` and `tail`.
pub fn read_entries(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<Entry>, LedgerError> {
    let scanned = scan(fs, dir).map_err(|(path, source)| LedgerError::Io {
        op: "read",
        path,
        source,
    })?;
    let mut out = Vec::with_capacity(scanned.leaves.len());
    for (i, path) in scanned.segments.iter().enumerate() {
        let data = fs.read(path).map_err(|source| LedgerError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let valid = &data[..(scanned.lens[i] as usize).min(data.len())];
        for line in valid.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if out.len() == scanned.leaves.len() {
                break;
            }
            out.push(Entry::from_line(line).expect("scanned lines parse"));
        }
    }
    Ok(out)
}

/// Hands `visit` the entries of the ledger in `dir` from seq `from` on, in
/// order, reading only the segments that hold them, a line at a time: what
/// a gateway reads at start to rebuild its outbound window and to find the
/// requests a crash left unanswered, in the memory of one entry however
/// long the ledger. A torn last line is skipped. No lock needed.
pub fn read_from(
    fs: &dyn FileSystem,
    dir: &Path,
    from: u64,
    visit: &mut dyn FnMut(Entry),
) -> Result<(), LedgerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LedgerError::Io {
            op: "read",
            path,
            source,
        }
    };
    let segments = list_segments(fs, dir).map_err(io(dir))?;
    // The segment holding `from`: the last one starting at or before it.
    let first = segments
        .iter()
        .rposition(|p| parse_segment_name(p).is_some_and(|n| n <= from))
        .unwrap_or(0);
    let mut line = Vec::new();
    for path in &segments[first..] {
        let mut reader = std::io::BufReader::new(fs.open_read(path).map_err(io(path))?);
        loop {
            line.clear();
            let n =
                std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(io(path))?;
            if n == 0 {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            let Ok(entry) = Entry::from_line(text) else {
                break;
            };
            if entry.seq >= from {
                visit(entry);
            }
        }
    }
    Ok(())
}

/// Hands `visit` the entries of the ledger in `dir` committed at or after
/// `since`, in order, until it answers `false`: what `reconcile` reads for a
/// window of a long ledger. Entries are in time order and every segment
/// starts with a header, so the reading starts at the last segment whose
/// header was committed at or before `since` (found by binary search over
/// the segments' first lines) and ends where `visit` says: the segments
/// before and after the window are not read. A torn last line is skipped.
/// No lock needed.
pub fn read_since(
    fs: &dyn FileSystem,
    dir: &Path,
    since: jiff::Timestamp,
    visit: &mut dyn FnMut(Entry) -> bool,
) -> Result<(), LedgerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LedgerError::Io {
            op: "read",
            path,
            source,
        }
    };
    let segments = list_segments(fs, dir).map_err(io(dir))?;
    // The time of each segment's first entry; a segment whose first line
    // cannot be read counts as "after" (the reading then starts earlier).
    let first_ts = |path: &Path| -> Result<Option<jiff::Timestamp>, LedgerError> {
        let mut reader = std::io::BufReader::new(fs.open_read(path).map_err(io(path))?);
        let mut line = Vec::new();
        std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(io(path))?;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        Ok(Entry::from_line(text).ok().map(|e| e.ts))
    };
    let (mut lo, mut hi) = (0usize, segments.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if first_ts(&segments[mid])?.is_some_and(|t| t <= since) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let start = lo.saturating_sub(1);
    let mut line = Vec::new();
    for path in segments.iter().skip(start) {
        let mut reader = std::io::BufReader::new(fs.open_read(path).map_err(io(path))?);
        loop {
            line.clear();
            let n =
                std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(io(path))?;
            if n == 0 {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            let Ok(entry) = Entry::from_line(text) else {
                break;
            };
            if entry.ts >= since && !visit(entry) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Hands `visit` every complete line of the ledger in `dir` as stored —
/// its seq (its position) and its bytes without the newline, the bytes
/// its leaf hash is taken over — from the first on, in order, until it
/// answers `false`: one pass for readers that hash and search the lines
/// themselves (`trace`). Reading stops at a line without its newline (a
/// write in progress). No lock needed; nothing is checked (the caller
/// proves what it uses against a signed checkpoint).
pub fn read_lines(
    fs: &dyn FileSystem,
    dir: &Path,
    visit: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> Result<(), LedgerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LedgerError::Io {
            op: "read",
            path,
            source,
        }
    };
    let segments = list_segments(fs, dir).map_err(io(dir))?;
    let mut line = Vec::new();
    let mut seq = 0u64;
    for path in &segments {
        let mut reader =
            std::io::BufReader::with_capacity(1 << 20, fs.open_read(path).map_err(io(path))?);
        loop {
            line.clear();
            let n =
                std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(io(path))?;
            if n == 0 {
                break;
            }
            let Some(text) = line.strip_suffix(b"\n") else {
                return Ok(());
            };
            if !visit(seq, text) {
                return Ok(());
            }
            seq += 1;
        }
    }
    Ok(())
}

fn valid_leaves(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<Hash>, LedgerError> {
    let scanned = scan(fs, dir).map_err(|(path, source)| LedgerError::Io {
        op: "read",
        path,
        source,
    })?;
    Ok(scanned.leaves)
}

/// Proves entry `seq` is in the tree of the first `size` entries (default:
/// every complete entry). Reads the directory; needs no lock.
pub fn prove_inclusion(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    size: Option<u64>,
) -> Result<InclusionProof, LedgerError> {
    inclusion_proof(&valid_leaves(fs, dir)?, seq, size)
}

/// [`prove_inclusion`] over `leaves`, the log's leaf hashes (both
/// backends).
pub(crate) fn inclusion_proof(
    leaves: &[Hash],
    seq: u64,
    size: Option<u64>,
) -> Result<InclusionProof, LedgerError> {
    let entries = leaves.len() as u64;
    let size = size.unwrap_or(entries);
    if size > entries {
        return Err(LedgerError::TreeBeyondLog { size, entries });
    }
    if seq >= size {
        return Err(LedgerError::SeqBeyondTree { seq, size });
    }
    Ok(InclusionProof {
        seq,
        size,
        leaf_hash: leaves[seq as usize],
        root: merkle::root(&leaves[..size as usize]),
        proof: merkle::inclusion_proof(leaves, seq, size),
    })
}

/// Proves the tree of `new` entries extends the tree of `old` entries.
/// `old` must be at least 1: a proof from the empty tree proves nothing.
pub fn prove_consistency(
    fs: &dyn FileSystem,
    dir: &Path,
    old: u64,
    new: u64,
) -> Result<ConsistencyProof, LedgerError> {
    consistency_proof(&valid_leaves(fs, dir)?, old, new)
}

/// [`prove_consistency`] over `leaves`, the log's leaf hashes (both
/// backends).
pub(crate) fn consistency_proof(
    leaves: &[Hash],
    old: u64,
    new: u64,
) -> Result<ConsistencyProof, LedgerError> {
    let entries = leaves.len() as u64;
    if old == 0 || old > new || new > entries {
        return Err(LedgerError::BadProofRange { old, new, entries });
    }
    Ok(ConsistencyProof {
        old,
        new,
        old_root: merkle::root(&leaves[..old as usize]),
        new_root: merkle::root(&leaves[..new as usize]),
        proof: merkle::consistency_proof(leaves, old, new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        assert_eq!(segment_name(42), "seg-00000000000000000042.jsonl");
        assert_eq!(
            parse_segment_name(Path::new("/l/seg-00000000000000000042.jsonl")),
            Some(42)
        );
        for other in [
            "seg-00000000000000000042.jsonl.torn",
            "seg-42.jsonl",
            "checkpoints.notes",
            "seg-0000000000000000004x.jsonl",
        ] {
            assert_eq!(parse_segment_name(Path::new(other)), None, "{other}");
        }
    }

    /// Segments of a small valid log: headers, ordinary entries, a key
    /// rotation entry (full parse) and lines long enough to span chunks.
    fn small_log() -> Vec<Vec<u8>> {
        use crate::entry::{Entry, EntryKind};
        let origin = "t.example/redcap-warden/0011223344556677";
        let mut ts: jiff::Timestamp = "2026-11-28T11:20:21.408570602Z".parse().unwrap();
        let mut seq = 0;
        let mut segments = Vec::new();
        for s in 0..3 {
            let mut seg = Vec::new();
            for i in 0..12 {
                let kind = match i {
                    0 => EntryKind::Header {
                        version: FORMAT_VERSION,
                        origin: origin.into(),
                        key_id: "0a0b0c0d".into(),
                    },
                    5 if s == 1 => EntryKind::Key {
                        operator: "ana".into(),
                        action: ROTATE_ACTION.into(),
                        key_name: origin.into(),
                        verifier_key: Some("not checked by a scan".into()),
                        reason: "yearly".into(),
                    },
                    7 => EntryKind::Alert {
                        code: "long".into(),
                        message: "x\"y\\z\n".repeat(40 + s * 7),
                    },
                    _ => EntryKind::Admin {
                        operator: "ana".into(),
                        action: "apply".into(),
                        target: format!("account-{seq}"),
                        reason: "ticket \u{e9}7".into(),
                    },
                };
                ts += std::time::Duration::from_micros(37);
                seg.extend_from_slice(&Entry { seq, ts, kind }.to_line());
                seg.push(b'\n');
                seq += 1;
            }
            segments.push(seg);
        }
        segments
    }

    /// `read_from` starts in the segment holding `from`, keeps order
    /// across segments and stops a segment at a torn line.
    #[test]
    fn read_from_visits_the_entries_from_a_seq_on_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = 0;
        let segments = small_log();
        for (i, seg) in segments.iter().enumerate() {
            let mut seg = seg.clone();
            if i == 2 {
                seg.extend_from_slice(b"{\"seq\":36,\"ts\""); // torn
            }
            std::fs::write(tmp.path().join(segment_name(first)), seg).unwrap();
            first += 12;
        }
        let seqs = |from| {
            let mut got = Vec::new();
            read_from(&durable::OsFs, tmp.path(), from, &mut |e| got.push(e.seq)).unwrap();
            got
        };
        assert_eq!(seqs(0), (0..36).collect::<Vec<_>>());
        assert_eq!(seqs(17), (17..36).collect::<Vec<_>>());
        assert_eq!(seqs(24), (24..36).collect::<Vec<_>>());
        assert_eq!(seqs(35), [35]);
        assert!(seqs(36).is_empty());
        assert!(seqs(1000).is_empty());
    }

    /// `read_since` starts in the segment holding the first entry at or
    /// after the time, skips what comes before it, and stops when told.
    #[test]
    fn read_since_starts_near_the_time_and_stops_when_told() {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = 0;
        let segments = small_log();
        for seg in &segments {
            std::fs::write(tmp.path().join(segment_name(first)), seg).unwrap();
            first += 12;
        }
        let mut all = Vec::new();
        read_from(&durable::OsFs, tmp.path(), 0, &mut |e| all.push(e)).unwrap();
        let since = |from: jiff::Timestamp, stop_after: u64| {
            let mut got = Vec::new();
            read_since(&durable::OsFs, tmp.path(), from, &mut |e| {
                got.push(e.seq);
                e.seq < stop_after
            })
            .unwrap();
            got
        };
        assert_eq!(since(all[0].ts, u64::MAX), (0..36).collect::<Vec<_>>());
        assert_eq!(since(all[17].ts, u64::MAX), (17..36).collect::<Vec<_>>());
        assert_eq!(since(all[24].ts, u64::MAX), (24..36).collect::<Vec<_>>());
        assert_eq!(since(all[13].ts, 20), (13..=20).collect::<Vec<_>>());
        let later = all[35].ts + std::time::Duration::from_secs(1);
        assert!(since(later, u64::MAX).is_empty());
        let earlier = all[0].ts - std::time::Duration::from_secs(1);
        assert_eq!(since(earlier, 3), [0, 1, 2, 3]);
    }

    fn scan_of(segments: &[Vec<u8>], chunk: usize) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = 0;
        for seg in segments {
            std::fs::write(tmp.path().join(segment_name(first)), seg).unwrap();
            first += seg.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        let scan = scan_chunked(&durable::OsFs, tmp.path(), &|_| {}, chunk, Some(17)).unwrap();
        // The directory differs from run to run; everything else must not.
        let names: Vec<_> = scan
            .segments
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        format!(
            "{names:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            scan.watch_ts,
            scan.lens,
            scan.leaves,
            scan.origin,
            scan.key_id,
            scan.first_key_id,
            scan.last_ts,
            scan.rotations,
            scan.stop,
            scan.remaining_bytes
        )
    }

    /// The scan reads segments in chunks; whatever the chunk size, and
    /// wherever a damaged line falls relative to chunk boundaries, it must
    /// find exactly what a scan of whole segments finds.
    #[test]
    fn chunk_size_never_changes_what_a_scan_finds() {
        let log = small_log();
        let mut cases: Vec<Vec<Vec<u8>>> = vec![log.clone()];
        let lines = |seg: &[u8]| -> Vec<Vec<u8>> {
            seg.split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect()
        };
        for s in 0..log.len() {
            let seg_lines = lines(&log[s]);
            for at in (0..log[s].len()).step_by(97) {
                let mut flipped = log.clone();
                flipped[s][at] ^= 0x04;
                cases.push(flipped);
                let mut cut = log.clone();
                cut[s].truncate(at);
                cases.push(cut);
            }
            for k in 0..seg_lines.len() {
                let mut deleted = seg_lines.clone();
                deleted.remove(k);
                let mut duplicated = seg_lines.clone();
                duplicated.insert(k, seg_lines[k].clone());
                let mut swapped = seg_lines.clone();
                swapped.swap(k, (k + 1) % seg_lines.len());
                for changed in [deleted, duplicated, swapped] {
                    let mut case = log.clone();
                    case[s] = changed.concat();
                    cases.push(case);
                }
            }
        }
        let mut dropped = log.clone();
        dropped.remove(1);
        cases.push(dropped);
        cases.push(vec![log[0].clone(), Vec::new(), log[1].clone()]);
        for (n, case) in cases.iter().enumerate() {
            let whole = scan_of(case, 1 << 20);
            for chunk in [1, 64, 333, 1000] {
                assert_eq!(scan_of(case, chunk), whole, "case {n}, chunk {chunk}");
            }
        }
    }

    #[test]
    fn torn_note_prefixes_are_plausible_damage_is_not() {
        let note = "o\n2\nBBBB\n\n\u{2014} o sig2\n".as_bytes();
        for cut in 0..note.len() {
            assert!(plausible_torn_note(&note[..cut]), "cut {cut}");
        }
        for bad in [
            "o\n2\nBBBB\n\nX o sig2",
            "o\n2\nBBBB\nextra\n\n",
            "o\n2\n\n\u{2014} o sig2",
            "o\n2\nBBBB\n\n\u{2014} o sig2\nmore",
            "o\n2\nBBBB\nX\n",
        ] {
            assert!(!plausible_torn_note(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn notes_split_and_tail() {
        let a = "o\n1\nAAAA\n\n\u{2014} o sig1\n";
        let b = "o\n2\nBBBB\n\n\u{2014} o sig2\n\u{2014} w sig3\n";
        let both = format!("{a}{b}");
        let n = parse_notes(both.as_bytes());
        assert_eq!(n.notes, vec![a.to_owned(), b.to_owned()]);
        assert_eq!(n.valid_len, both.len() as u64);
        let first_sig_end = b.find("sig2\n").unwrap() + 5;
        for cut in 1..b.len() {
            let mut torn = a.as_bytes().to_vec();
            torn.extend_from_slice(&b.as_bytes()[..cut]);
            let n = parse_notes(&torn);
            // A torn note still counts once a whole signature line of it
            // survived: that much of it is a complete, verifiable note.
            if cut >= first_sig_end {
                assert_eq!(n.notes.len(), 2, "cut {cut}");
                assert_eq!(n.valid_len, (a.len() + first_sig_end) as u64, "cut {cut}");
            } else {
                assert_eq!(n.notes, vec![a.to_owned()], "cut {cut}");
                assert_eq!(n.valid_len, a.len() as u64);
            }
        }
    }
}
