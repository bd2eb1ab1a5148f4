//! Errors of the file ledger and of verification.

use std::io;
use std::path::PathBuf;

use crate::checkpoint::NoteError;
use crate::checkpoint::VerifierKey;
use crate::merkle::{Hash, ProofError};

/// What went wrong opening, writing or proving from a ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger I/O: cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "ledger {dir} is locked by another process; stop it (or submit entries through the running gateway)"
    )]
    Locked { dir: PathBuf },
    #[error("{dir} already holds a ledger; refusing to create another over it")]
    AlreadyExists { dir: PathBuf },
    #[error("{dir} holds no ledger (no segment starting with a valid header); run init")]
    NotALedger { dir: PathBuf },
    #[error(
        "ledger {dir} is damaged at or below its signed size {signed}: first bad entry is seq {seq} ({detail}); refusing to open: this is tampering or disk corruption, run `ledger verify` and restore from the export"
    )]
    Tampered {
        dir: PathBuf,
        signed: u64,
        seq: u64,
        detail: String,
    },
    #[error(
        "ledger {dir}: checkpoint #{index} in checkpoints.notes is not valid: {source}; refusing to open"
    )]
    BadCheckpoint {
        dir: PathBuf,
        index: usize,
        #[source]
        source: NoteError,
    },
    #[error(
        "the ledger writer stopped after an I/O error and accepts no more entries until restart and recovery: {cause}"
    )]
    Poisoned { cause: String },
    #[error("the ledger is closed")]
    Closed,
    #[error(
        "ledger {dir}: the signing key given (id {given}) is not the one in force ({current}); use the key of the latest rotation"
    )]
    WrongKey {
        dir: PathBuf,
        given: String,
        current: String,
    },
    #[error(
        "the signing-key rotation entry at seq {seq} (to {key}) is not yet covered by a checkpoint of the previous key: open the ledger with the previous key and call rotate_key with the new key to finish it; no checkpoint is signed until then"
    )]
    RotationPending { seq: u64, key: String },
    #[error(
        "tree size {size} is larger than the log ({entries} entries); fix: give a size of at most {entries}, or none for the whole log"
    )]
    TreeBeyondLog { size: u64, entries: u64 },
    #[error(
        "seq {seq} is not in a tree of {size} entries; fix: give a seq below {size}, or a larger tree size"
    )]
    SeqBeyondTree { seq: u64, size: u64 },
    #[error(
        "a consistency proof needs 1 <= old <= new <= {entries} (the log size); got old {old}, new {new}; fix: give sizes in that range (a proof from the empty tree proves nothing)"
    )]
    BadProofRange { old: u64, new: u64, entries: u64 },
    #[error(
        "schema {schema:?} is not a plain lowercase name (a-z, 0-9 and _, starting with a letter, at most 63 characters, not pg_…); fix: set [ledger.postgres] schema to such a name"
    )]
    BadSchema { schema: String },
    #[error(
        "the file ledger {dir} does not verify ({source}); nothing was imported. fix: run `redcap-warden ledger verify` on it and restore it from the export or a backup, then import again"
    )]
    ImportUnverified {
        dir: PathBuf,
        #[source]
        source: Box<VerifyError>,
    },
    #[error(
        "the file ledger {dir} changed while it was read; nothing was imported. fix: stop every process writing it (the gateway) and import again"
    )]
    ImportChanged { dir: PathBuf },
    #[error(
        "the new signing key is the one already in force; nothing was rotated. fix: rotate to a newly generated key"
    )]
    SameKey,
    #[error(
        "this ledger backend cannot {operation}; fix: use the file or the PostgreSQL backend, which can"
    )]
    Unsupported { operation: &'static str },
    #[error(
        "header entries are written by the ledger itself, at the start of a segment; fix: append an entry of another kind"
    )]
    HeaderEntry,
    #[error(
        "signing-key rotation entries (action `rotate` naming the ledger's origin) are written only by rotate_key, which signs the checkpoints around them; fix: rotate with `redcap-warden ledger rotate-key`"
    )]
    RotationEntry,
    #[error(
        "{config} has no [ledger] section, and every change redcap-warden makes must be recorded in the ledger; fix: set up with `redcap-warden init`"
    )]
    NotConfigured { config: PathBuf },
    #[error(
        "keeping the ledger's witness in the secrets store needs a tokio runtime, and none is running on this thread; fix: open the ledger from one of the runtime's blocking threads"
    )]
    NoRuntime,
    #[error("ledger database: cannot {op}: {detail}")]
    Database { op: &'static str, detail: String },
    #[error(
        "the ledger database runs with {setting} = {value}, so a commit can be acknowledged before it is on disk; refusing to open. fix: set {setting} = on for the ledger's role or database (ALTER ROLE ... SET {setting} = on) or in postgresql.conf"
    )]
    NotDurable { setting: String, value: String },
    #[error(
        "another process ({holder}) holds the checkpoint signer lease of this ledger; it signs the checkpoints (its lease is taken over once it lapses)"
    )]
    NotSigner { holder: String },
    #[error("cannot generate a random ledger id: {0}")]
    Random(String),
    #[error(
        "ledger {dir}: the {entries} entries from seq {from_seq} on are signed by no checkpoint and their timestamps span {}, more than a writer leaves unsigned ({}: it signs at least every second, and on open what a crash left); refusing to sign them: checkpoints may have been deleted. Run `redcap-warden ledger verify` and compare with a checkpoint kept elsewhere; if the entries are genuine, `redcap-warden ledger adopt-unsigned --reason R` records that and signs them",
        span_text(*span),
        span_text(*limit)
    )]
    UnsignedTail {
        dir: PathBuf,
        from_seq: u64,
        entries: u64,
        span: std::time::Duration,
        limit: std::time::Duration,
    },
    #[error(
        "ledger {dir}: {witness} {problem}; refusing to sign: run `redcap-warden ledger verify`, and restore the ledger from the export or a backup; to accept the ledger as it is (recorded, with your login and reason), run `redcap-warden ledger adopt-unsigned --reason R`"
    )]
    Witness {
        dir: PathBuf,
        witness: String,
        problem: String,
    },
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// What `verify_dir` (or `PgReader::verify`) found: a log whose every entry, root and checkpoint
/// checks out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub origin: String,
    pub segments: usize,
    pub entries: u64,
    pub root: Hash,
    pub checkpoints: usize,
    /// The size the last checkpoint signs (0 if none).
    pub anchored: u64,
    /// Entries past the last checkpoint, not yet covered by a signature.
    pub unanchored: u64,
    /// The key that signs the next checkpoint: the pinned key, or the last
    /// key a covered rotation put in force (§4.4).
    pub signing_key: Option<VerifierKey>,
    /// Signing-key rotations in force (each covered by a checkpoint of the
    /// key before it).
    pub key_rotations: usize,
    /// The size and root of every checkpoint whose root was checked, in
    /// order: what a witness's note is compared with
    /// ([`crate::check_witness`]).
    pub heads: Vec<(u64, Hash)>,
    /// Where the checkpoints are, for messages: `checkpoints.notes`, or the
    /// PostgreSQL table.
    pub notes_place: String,
    /// How much time the unsigned entries span, by their timestamps: from
    /// the first entry past the last checkpoint to the newest entry
    /// (`None` if every entry is signed).
    pub unsigned_span: Option<std::time::Duration>,
    /// The longest span a writer leaves unsigned ([`crate::MAX_UNSIGNED_SPAN`] for
    /// a file ledger): `verify` fails past it.
    pub max_unsigned_span: std::time::Duration,
}

impl LedgerError {
    /// Why a writer takes no more entries or requests, if it takes none:
    /// it was poisoned (by `cause`) or closed.
    pub(crate) fn refusing(poisoned: Option<&String>, closed: bool) -> Option<LedgerError> {
        match poisoned {
            Some(cause) => Some(LedgerError::Poisoned {
                cause: cause.clone(),
            }),
            None if closed => Some(LedgerError::Closed),
            None => None,
        }
    }
}

/// The first thing `verify_dir` found wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{dir} holds no ledger entries")]
    NoEntries { dir: PathBuf },
    #[error("{segment} line {line}: entry seq {seq}: {problem}")]
    Entry {
        segment: PathBuf,
        line: u64,
        seq: u64,
        problem: String,
    },
    #[error("checkpoint #{index} in checkpoints.notes: {problem}")]
    Checkpoint { index: usize, problem: String },
    #[error("cannot read the ledger database: {0}")]
    Database(String),
    #[error("table {table}, entry seq {seq}: {problem}")]
    Row {
        table: String,
        seq: u64,
        problem: String,
    },
    #[error("table {table}, checkpoint #{index} (id {id}): {problem}")]
    StoredCheckpoint {
        table: String,
        index: usize,
        id: i64,
        problem: String,
    },
    #[error(
        "checkpoint #{index} signs {size} entries but the log holds only {entries}: entries from seq {entries} on are missing"
    )]
    CheckpointBeyondLog {
        index: usize,
        size: u64,
        entries: u64,
    },
    #[error(
        "the {entries} entries from seq {from_seq} on are signed by no checkpoint in {place}, and their timestamps span {}: a writer leaves at most {} unsigned (it signs at least every second, and on open what a crash left). Checkpoints were deleted, or a writer stopped signing: compare with a checkpoint kept elsewhere (the witness, --trusted-checkpoint, the S3 export); if the entries are genuine, `redcap-warden ledger adopt-unsigned --reason R` signs them",
        span_text(*span),
        span_text(*limit)
    )]
    UnsignedTail {
        from_seq: u64,
        entries: u64,
        span: std::time::Duration,
        limit: std::time::Duration,
        place: String,
        /// Everything else checked out: the report, for a caller that
        /// goes on to check witnesses.
        report: Box<VerifyReport>,
    },
    #[error("{witness} {problem}")]
    Witness { witness: String, problem: String },
    #[error(
        "checkpoint #{index} signs a different tree of {size} entries: an entry with seq in {first_seq}..{size} was changed"
    )]
    RootMismatch {
        index: usize,
        size: u64,
        /// The previous checkpoint's size (verified): the change is at or
        /// after this seq.
        first_seq: u64,
    },
}

impl VerifyError {
    /// For an unsigned tail older than a writer leaves: the report of the
    /// rest of the verification (which passed), and the failure as text;
    /// any other failure is given back.
    pub fn into_unsigned_tail(self) -> Result<(VerifyReport, String), VerifyError> {
        let text = self.to_string();
        match self {
            VerifyError::UnsignedTail { report, .. } => Ok((*report, text)),
            other => Err(other),
        }
    }

    /// The range of seqs that holds the first bad entry, when the failure
    /// is about entries: exact for a bad line, the span between two
    /// checkpoints for a root mismatch.
    pub fn bad_seqs(&self) -> Option<std::ops::Range<u64>> {
        match self {
            VerifyError::Entry { seq, .. } | VerifyError::Row { seq, .. } => Some(*seq..*seq + 1),
            VerifyError::CheckpointBeyondLog { entries, .. } => Some(*entries..*entries + 1),
            VerifyError::UnsignedTail {
                from_seq, entries, ..
            } => Some(*from_seq..*from_seq + *entries),
            VerifyError::RootMismatch {
                size, first_seq, ..
            } => Some(*first_seq..*size),
            _ => None,
        }
    }
}

/// A duration for people: `0.4 s`, `42 s`, `17 min 3 s`, `5 h 12 min`,
/// `3 d 4 h`.
pub fn span_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}
