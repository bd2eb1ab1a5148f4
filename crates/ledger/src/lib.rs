//! The ledger: redcap-warden's tamper-evident audit log.
//!
//! Every API call and every state change becomes one line of JSON (an
//! [`Entry`]) in an append-only file. The lines are the leaves of an RFC
//! 6962 Merkle tree ([`merkle`]); signed checkpoints ([`checkpoint`], C2SP
//! signed notes) commit to the tree's root, so anyone with the verifier key
//! can check that nothing signed was changed, removed or reordered
//! ([`verify_dir`]) and that one checkpoint extends another
//! ([`prove_consistency`]). The format is specified in `docs/ledger.md`.
//!
//! [`Ledger`] is the file backend's writer: group-committed, crash-safe
//! appends through the [`durable::FileSystem`] trait, fail-closed on any
//! I/O error. [`LedgerBackend`] is what the gateway and the CLI write
//! through; with the `postgres` feature, `PgLedger` implements it over a
//! PostgreSQL database that several processes share, and `PgReader`
//! verifies and proves from it.
//!
//! # Modules
//!
//! In layers: a module imports only from layers below its own, so the
//! imports run one way.
//!
//! ```text
//! backend         LedgerBackend over both writers; open_postgres
//!    │
//! pg │ writer     the PostgreSQL backend (pg/mod.rs has its own layers);
//!    │            the file writer: group commit, checkpoints, rotation
//!    │  recover   the file writer's recovery on open
//!    ▼
//! guard           what both writers check on open before signing
//! pending         Pending: an entry on its way to durability
//! append          Receipt, and the entries no caller may append
//! files, witness  the file format, scan, verification, proofs; witnesses
//!   (export)      shipping sealed segments to write-once storage
//! entry, checkpoint, merkle, error, record_ids, schema
//!                 the format itself, errors, schema name rules
//! ```

#![warn(missing_docs)]

mod append;
mod backend;
mod batch_thread;
pub mod checkpoint;
pub mod entry;
mod error;
pub mod export;
mod files;
mod follow;
mod guard;
pub mod merkle;
mod pending;
#[cfg(feature = "postgres")]
mod pg;
mod record_ids;
mod recover;
mod schema;
mod witness;
mod writer;

pub use append::Receipt;
pub use backend::{LedgerBackend, open_postgres, open_postgres_with};
pub use checkpoint::{Checkpoint, NoteError, VerifierKey};
pub use entry::{Approval, Entry, EntryKind, FORMAT_VERSION, ReauthAction};
pub use error::{LedgerError, VerifyError, VerifyReport, span_text};
pub use files::{
    CHECKPOINT_INTERVAL, ConsistencyProof, InclusionProof, MAX_UNSIGNED_SPAN, ROTATE_ACTION,
    UNSIGNED_SLACK, latest_note, prove_consistency, prove_inclusion, read_entries, read_from,
    read_lines, read_since, verify_dir, verify_dir_with_progress,
};
pub use follow::{FollowError, Followed, Follower};
pub use guard::{ADOPT_ACTION, Adoption, WITNESS_FAILED};
pub use pending::Pending;
#[cfg(feature = "postgres")]
pub use pg::{PG_LEASE, PG_MAX_UNSIGNED_SPAN, PgLedger, PgOptions, PgReader};
pub use record_ids::{Delivery, RecordIds};
pub use recover::Recovery;
pub use schema::{DEFAULT_SCHEMA, valid_schema};
pub use witness::{FileWitness, Witness, WitnessNote, check_witness};
pub use writer::{Ledger, LedgerOptions, new_origin};
