//! Errors of the file ledger and of verification.

use std::io;
use std::path::PathBuf;

use crate::checkpoint::NoteError;
use crate::checkpoint::VerifierKey;
use crate::merkle::{Hash, ProofError};

/// What went wrong opening, writing or proving from a ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file operation failed (permissions, a full disk, a missing
    /// directory); a writer that hits this stops taking entries
    /// ([`LedgerError::Poisoned`]). Fix the cause named and restart.
    #[error("ledger I/O: cannot {op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `open`, `sync`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process (usually the gateway) holds the ledger's lock file;
    /// one writer at a time.
    #[error(
        "ledger {dir} is locked by another process; stop it (or submit entries through the running gateway)"
    )]
    Locked {
        /// The ledger's directory.
        dir: PathBuf,
    },
    /// Creating a ledger where one already is; nothing was changed.
    #[error("{dir} already holds a ledger; refusing to create another over it")]
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
    },
    /// Opening a directory with no ledger in it: wrong path, or not set up
    /// yet (`redcap-warden init`).
    #[error("{dir} holds no ledger (no segment starting with a valid header); run init")]
    NotALedger {
        /// The directory.
        dir: PathBuf,
    },
    /// An entry a checkpoint signs is damaged or missing; the writer
    /// refuses to open. Run `ledger verify` and restore from the export
    /// or a backup.
    #[error(
        "ledger {dir} is damaged at or below its signed size {signed}: first bad entry is seq {seq} ({detail}); refusing to open: this is tampering or disk corruption, run `ledger verify` and restore from the export"
    )]
    Tampered {
        /// The ledger's directory.
        dir: PathBuf,
        /// The size the latest checkpoint signs.
        signed: u64,
        /// The first bad entry.
        seq: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// A note in `checkpoints.notes` does not parse or verify under the
    /// ledger's keys; the writer refuses to open. Run `ledger verify`.
    #[error(
        "ledger {dir}: checkpoint #{index} in checkpoints.notes is not valid: {source}; refusing to open"
    )]
    BadCheckpoint {
        /// The ledger's directory.
        dir: PathBuf,
        /// The note's position in the file, from 0.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: NoteError,
    },
    /// The writer hit an I/O error earlier and, failing closed, takes no
    /// more entries; restart the process so that recovery runs.
    #[error(
        "the ledger writer stopped after an I/O error and accepts no more entries until restart and recovery: {cause}"
    )]
    Poisoned {
        /// The error that stopped it.
        cause: String,
    },
    /// An append or request after the writer was closed (during shutdown).
    #[error("the ledger is closed")]
    Closed,
    /// The ledger was opened with a signing key other than the one in
    /// force; use the key of the latest rotation.
    #[error(
        "ledger {dir}: the signing key given (id {given}) is not the one in force ({current}); use the key of the latest rotation"
    )]
    WrongKey {
        /// The ledger's directory.
        dir: PathBuf,
        /// The id of the key given.
        given: String,
        /// The id of the key in force.
        current: String,
    },
    /// A signing-key rotation was begun but not finished; the message says
    /// how to finish it. No checkpoint is signed until then.
    #[error(
        "the signing-key rotation entry at seq {seq} (to {key}) is not yet covered by a checkpoint of the previous key: open the ledger with the previous key and call rotate_key with the new key to finish it; no checkpoint is signed until then"
    )]
    RotationPending {
        /// The rotation entry's seq.
        seq: u64,
        /// The new key's id.
        key: String,
    },
    /// A proof was asked for a tree larger than the log.
    #[error(
        "tree size {size} is larger than the log ({entries} entries); fix: give a size of at most {entries}, or none for the whole log"
    )]
    TreeBeyondLog {
        /// The tree size asked for.
        size: u64,
        /// Entries in the log.
        entries: u64,
    },
    /// An inclusion proof was asked for an entry outside the tree.
    #[error(
        "seq {seq} is not in a tree of {size} entries; fix: give a seq below {size}, or a larger tree size"
    )]
    SeqBeyondTree {
        /// The entry asked for.
        seq: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked for sizes out of order or out of the
    /// log.
    #[error(
        "a consistency proof needs 1 <= old <= new <= {entries} (the log size); got old {old}, new {new}; fix: give sizes in that range (a proof from the empty tree proves nothing)"
    )]
    BadProofRange {
        /// The older size asked for.
        old: u64,
        /// The newer size asked for.
        new: u64,
        /// Entries in the log.
        entries: u64,
    },
    /// The PostgreSQL schema name configured is not a plain identifier
    /// (so it could not be used unquoted); fix `[ledger.postgres] schema`.
    #[error(
        "schema {schema:?} is not a plain lowercase name (a-z, 0-9 and _, starting with a letter, at most 63 characters, not pg_…); fix: set [ledger.postgres] schema to such a name"
    )]
    BadSchema {
        /// The name given.
        schema: String,
    },
    /// Importing a file ledger into PostgreSQL: the file ledger failed
    /// verification, so nothing was imported.
    #[error(
        "the file ledger {dir} does not verify ({source}); nothing was imported. fix: run `redcap-warden ledger verify` on it and restore it from the export or a backup, then import again"
    )]
    ImportUnverified {
        /// The file ledger's directory.
        dir: PathBuf,
        /// What verification found.
        #[source]
        source: Box<VerifyError>,
    },
    /// Importing a file ledger into PostgreSQL: it was written to during
    /// the import, so nothing was imported; stop its writers and retry.
    #[error(
        "the file ledger {dir} changed while it was read; nothing was imported. fix: stop every process writing it (the gateway) and import again"
    )]
    ImportChanged {
        /// The file ledger's directory.
        dir: PathBuf,
    },
    /// A key rotation to the key already in force; nothing was done.
    #[error(
        "the new signing key is the one already in force; nothing was rotated. fix: rotate to a newly generated key"
    )]
    SameKey,
    /// The backend does not implement what was asked (the
    /// [`LedgerBackend`](crate::LedgerBackend) default); use the file or
    /// PostgreSQL backend.
    #[error(
        "this ledger backend cannot {operation}; fix: use the file or the PostgreSQL backend, which can"
    )]
    Unsupported {
        /// What was asked.
        operation: &'static str,
    },
    /// A caller tried to append a `header` entry, which only the ledger
    /// writes; nothing was appended.
    #[error(
        "header entries are written by the ledger itself, at the start of a segment; fix: append an entry of another kind"
    )]
    HeaderEntry,
    /// A caller tried to append a signing-key rotation entry, which only
    /// `rotate_key` writes; nothing was appended.
    #[error(
        "signing-key rotation entries (action `rotate` naming the ledger's origin) are written only by rotate_key, which signs the checkpoints around them; fix: rotate with `redcap-warden ledger rotate-key`"
    )]
    RotationEntry,
    /// The configuration has no `[ledger]` section, so no change can be
    /// recorded and none is made; set up with `redcap-warden init`.
    #[error(
        "{config} has no [ledger] section, and every change redcap-warden makes must be recorded in the ledger; fix: set up with `redcap-warden init`"
    )]
    NotConfigured {
        /// The configuration file read.
        config: PathBuf,
    },
    /// The ledger's witness lives in the secrets store, which needs a tokio
    /// runtime, and the ledger was opened outside one.
    #[error(
        "keeping the ledger's witness in the secrets store needs a tokio runtime, and none is running on this thread; fix: open the ledger from one of the runtime's blocking threads"
    )]
    NoRuntime,
    /// A PostgreSQL operation failed (connection, permissions, a lost
    /// transaction); as with I/O errors, the entry was not made durable.
    #[error("ledger database: cannot {op}: {detail}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// The database's or driver's error.
        detail: String,
    },
    /// The database may acknowledge commits before they are on disk
    /// (`synchronous_commit` or `fsync` off), so the PostgreSQL backend
    /// refuses to open; set the setting to `on`.
    #[error(
        "the ledger database runs with {setting} = {value}, so a commit can be acknowledged before it is on disk; refusing to open. fix: set {setting} = on for the ledger's role or database (ALTER ROLE ... SET {setting} = on) or in postgresql.conf"
    )]
    NotDurable {
        /// The setting, e.g. `synchronous_commit`.
        setting: String,
        /// Its value.
        value: String,
    },
    /// Asked to sign a checkpoint while another process holds the
    /// PostgreSQL signer lease: that process signs instead; not a fault.
    #[error(
        "another process ({holder}) holds the checkpoint signer lease of this ledger; it signs the checkpoints (its lease is taken over once it lapses)"
    )]
    NotSigner {
        /// Who holds the lease, as it named itself in the lease row.
        holder: String,
    },
    /// The operating system's random source failed when a new ledger's
    /// origin was made.
    #[error("cannot generate a random ledger id: {0}")]
    Random(String),
    /// Entries past the last checkpoint span longer than a writer leaves
    /// unsigned, so checkpoints may have been deleted; the writer refuses
    /// to sign them until an operator checks and adopts them
    /// (`ledger adopt-unsigned`).
    #[error(
        "ledger {dir}: the {entries} entries from seq {from_seq} on are signed by no checkpoint and their timestamps span {}, more than a writer leaves unsigned ({}: it signs at least every second, and on open what a crash left); refusing to sign them: checkpoints may have been deleted. Run `redcap-warden ledger verify` and compare with a checkpoint kept elsewhere; if the entries are genuine, `redcap-warden ledger adopt-unsigned --reason R` records that and signs them",
        span_text(*span),
        span_text(*limit)
    )]
    UnsignedTail {
        /// The ledger's directory.
        dir: PathBuf,
        /// The first unsigned entry.
        from_seq: u64,
        /// How many entries are unsigned.
        entries: u64,
        /// How much time their timestamps span.
        span: std::time::Duration,
        /// The longest span a writer leaves unsigned.
        limit: std::time::Duration,
    },
    /// A witness holds a checkpoint the ledger no longer agrees with (or
    /// cannot be read); the writer refuses to sign. Verify, restore, or
    /// adopt the ledger as it is.
    #[error(
        "ledger {dir}: {witness} {problem}; refusing to sign: run `redcap-warden ledger verify`, and restore the ledger from the export or a backup; to accept the ledger as it is (recorded, with your login and reason), run `redcap-warden ledger adopt-unsigned --reason R`"
    )]
    Witness {
        /// The ledger's directory.
        dir: PathBuf,
        /// Which witness, for messages.
        witness: String,
        /// What is wrong.
        problem: String,
    },
    /// A proof could not be made or did not check out.
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// What `verify_dir` (or `PgReader::verify`) found: a log whose every entry, root and checkpoint
/// checks out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The ledger's origin.
    pub origin: String,
    /// Segment files read (1 for a PostgreSQL ledger).
    pub segments: usize,
    /// Entries in the log.
    pub entries: u64,
    /// The root of the whole log.
    pub root: Hash,
    /// Checkpoints found, all with a valid signature.
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
    /// A file could not be read (permissions, a missing file); nothing is
    /// known about the ledger yet.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The directory holds no entries: wrong path, or not a ledger.
    #[error("{dir} holds no ledger entries")]
    NoEntries {
        /// The directory.
        dir: PathBuf,
    },
    /// A line of a segment is not a valid entry where it is (bad JSON,
    /// not canonical, wrong seq, time going back): tampering or disk
    /// corruption; restore from the export or a backup.
    #[error("{segment} line {line}: entry seq {seq}: {problem}")]
    Entry {
        /// The segment file.
        segment: PathBuf,
        /// The line number, from 1.
        line: u64,
        /// The seq the entry has or should have.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint note does not parse, verify, or fit the log (a wrong
    /// key, a size going back); checkpoints were tampered with.
    #[error("checkpoint #{index} in checkpoints.notes: {problem}")]
    Checkpoint {
        /// The note's position in the file, from 0.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The PostgreSQL ledger could not be read (connection, permissions);
    /// nothing is known about the ledger yet.
    #[error("cannot read the ledger database: {0}")]
    Database(String),
    /// A PostgreSQL entry row is not a valid entry where it is (the
    /// database counterpart of [`VerifyError::Entry`]).
    #[error("table {table}, entry seq {seq}: {problem}")]
    Row {
        /// The table.
        table: String,
        /// The row's seq.
        seq: u64,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint row of the PostgreSQL ledger does not parse, verify, or
    /// fit the log (the counterpart of [`VerifyError::Checkpoint`]).
    #[error("table {table}, checkpoint #{index} (id {id}): {problem}")]
    StoredCheckpoint {
        /// The table.
        table: String,
        /// The checkpoint's position in order, from 0.
        index: usize,
        /// The row's id.
        id: i64,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint signs more entries than the log holds: entries at the
    /// end were removed.
    #[error(
        "checkpoint #{index} signs {size} entries but the log holds only {entries}: entries from seq {entries} on are missing"
    )]
    CheckpointBeyondLog {
        /// The checkpoint's position, from 0.
        index: usize,
        /// The size it signs.
        size: u64,
        /// Entries in the log.
        entries: u64,
    },
    /// Everything checks out, but the entries past the last checkpoint
    /// span longer than a writer leaves unsigned: checkpoints may have been
    /// deleted. Compare with a checkpoint kept elsewhere; adopt the entries
    /// if genuine.
    #[error(
        "the {entries} entries from seq {from_seq} on are signed by no checkpoint in {place}, and their timestamps span {}: a writer leaves at most {} unsigned (it signs at least every second, and on open what a crash left). Checkpoints were deleted, or a writer stopped signing: compare with a checkpoint kept elsewhere (the witness, --trusted-checkpoint, the S3 export); if the entries are genuine, `redcap-warden ledger adopt-unsigned --reason R` signs them",
        span_text(*span),
        span_text(*limit)
    )]
    UnsignedTail {
        /// The first unsigned entry.
        from_seq: u64,
        /// How many entries are unsigned.
        entries: u64,
        /// How much time their timestamps span.
        span: std::time::Duration,
        /// The longest span a writer leaves unsigned.
        limit: std::time::Duration,
        /// Where the checkpoints are, for the message.
        place: String,
        /// Everything else checked out: the report, for a caller that
        /// goes on to check witnesses.
        report: Box<VerifyReport>,
    },
    /// A witness's note is not a valid checkpoint of this log (its
    /// signature, origin or root does not check out, or it signs more than
    /// the log holds): the ledger was rewritten or truncated after the
    /// witness saw it, or the witness is not this ledger's.
    #[error("{witness} {problem}")]
    Witness {
        /// Which witness, for messages.
        witness: String,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint's root differs from the root of the entries it signs:
    /// an entry in the range was changed.
    #[error(
        "checkpoint #{index} signs a different tree of {size} entries: an entry with seq in {first_seq}..{size} was changed"
    )]
    RootMismatch {
        /// The checkpoint's position, from 0.
        index: usize,
        /// The size it signs.
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
