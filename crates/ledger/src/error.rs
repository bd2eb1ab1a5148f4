//! Errors of the file ledger and of verification.

use std::io;
use std::path::PathBuf;

use crate::checkpoint::NoteError;
use crate::merkle::ProofError;

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
    #[error("{0}")]
    OutOfRange(String),
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
        report: Box<crate::files::VerifyReport>,
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
    pub fn into_unsigned_tail(self) -> Result<(crate::files::VerifyReport, String), VerifyError> {
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
