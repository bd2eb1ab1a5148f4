//! The PostgreSQL backend: several processes (gateway replicas) append to
//! one ledger held in a PostgreSQL database. `docs/ledger.md` §9 specifies
//! the tables.
//!
//! - Entries are rows `(seq, entry)`, `entry` a `bytea` holding exactly the
//!   bytes that are hashed (the line of the file format, no newline). The
//!   whole table is one segment: seq 0 is its header.
//! - Appends are group-committed: a process's entries queue for its writer
//!   thread, which inserts every queued entry in one transaction. The
//!   transaction takes a transaction-scoped advisory lock, reads the last
//!   row, numbers its entries from there and holds the lock until it
//!   commits, so seqs are assigned in commit order and no committed prefix
//!   ever has a hole — whichever process wrote each entry. An appender
//!   returns once the commit is acknowledged, which with
//!   `synchronous_commit = on` (checked at open) means the WAL is on disk.
//! - Checkpoints are rows of a table, each holding the signed note as the
//!   file backend writes it. One process at a time signs them: the holder
//!   of the signer lease (a row with holder and expiry), renewed every
//!   checkpoint interval and taken over by another process once it lapses.
//!   A checkpoint is signed inside a transaction that holds the lease row
//!   locked, over the entries that transaction sees committed (hence
//!   durable).
//! - Any database error poisons the writer, as an I/O error poisons the
//!   file writer: the batch, everything queued and every later append fail
//!   until the ledger is reopened.
//!
//! All database work happens on threads the ledger owns, so it can be
//! opened and used from any thread (the synchronous client must not run on
//! an async runtime's worker).
//!
//! The parts, in layers: each imports only from layers below its own.
//!
//! ```text
//! import                 moving a file ledger in (PgLedger::import_dir)
//! ledger                 PgLedger, the handle: queues entries and
//!                        requests, starts the writer thread
//! open, lease            the writer's open checks; the signer lease,
//!                        checkpoints and key rotation
//! writer, reader         the writer thread (batches, requests); PgReader
//! queue, options, scan   what handle and thread share; PgOptions; rows
//!                        and notes read back and checked
//! sql                    session, schema SQL, statements, errors
//! ```
//!
//! The schema name rules ([`crate::DEFAULT_SCHEMA`],
//! [`crate::valid_schema`]) are in `schema.rs`, built without the
//! `postgres` feature too: configuration checks them.

mod import;
mod lease;
mod ledger;
mod open;
mod options;
mod queue;
mod reader;
mod scan;
mod sql;
mod writer;

pub use ledger::PgLedger;
pub use options::{PG_LEASE, PG_MAX_UNSIGNED_SPAN, PgOptions};
pub use reader::PgReader;
