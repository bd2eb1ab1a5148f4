//! Moving a file ledger into PostgreSQL ([`PgLedger::import_dir`]): the
//! entries and checkpoint notes are copied as they are, so the database
//! log is the file log continued.

use ed25519_dalek::SigningKey;

use super::ledger::PgLedger;
use super::options::PgOptions;
use super::sql::{FETCH_ROWS, Sql, check_durability, connect, db, migrate};
use crate::checkpoint::VerifierKey;
use crate::entry::{Entry, EntryKind};
use crate::error::LedgerError;
use crate::files;

impl PgLedger {
    /// Moves the file ledger in `dir` into an empty schema (created if
    /// missing), then opens it: every entry with its bytes and seq, every
    /// checkpoint note as it is, in order, so the PostgreSQL log *is* the
    /// file log continued — same origin, same tree, every old checkpoint
    /// and proof still valid. The directory is verified first with `key`'s
    /// verifier key and left untouched; from then on only the database is
    /// written. An `alert` entry (`ledger.imported`) records the import.
    pub fn import_dir(
        fs: &dyn durable::FileSystem,
        dir: &std::path::Path,
        url: &str,
        key: SigningKey,
        options: PgOptions,
    ) -> Result<PgLedger, LedgerError> {
        let sql = Sql::new(&options.schema)?;
        let copy = read_file_ledger(fs, dir, &key)?;
        let (n_entries, n_notes) = (copy.lines.len(), copy.notes.len());
        let owned_url = url.to_owned();
        // The synchronous client must not run on an async runtime's thread.
        std::thread::spawn(move || copy_into(&owned_url, &sql, &copy))
            .join()
            .map_err(|_| LedgerError::Database {
                op: "import the ledger",
                detail: "the importing thread panicked".into(),
            })??;
        let ledger = PgLedger::open(url, key, options)?;
        ledger.append(EntryKind::Alert {
            code: "ledger.imported".into(),
            message: format!(
                "imported {n_entries} entries and {n_notes} checkpoints from the file ledger in {}; it is no longer written",
                dir.display()
            ),
        })?;
        Ok(ledger)
    }
}

/// A verified file ledger, as it is copied: its entry lines, its notes
/// with the size each signs, and whence they came.
struct FileCopy {
    lines: Vec<Vec<u8>>,
    notes: Vec<String>,
    sizes: Vec<i64>,
    signer: String,
}

/// Reads the file ledger in `dir` and verifies it with `key`'s verifier
/// key; refuses one that does not verify or changed while it was read.
fn read_file_ledger(
    fs: &dyn durable::FileSystem,
    dir: &std::path::Path,
    key: &SigningKey,
) -> Result<FileCopy, LedgerError> {
    let entries = files::read_entries(fs, dir)?;
    let Some(Entry {
        kind: EntryKind::Header { origin, .. },
        ..
    }) = entries.first()
    else {
        return Err(LedgerError::NotALedger {
            dir: dir.to_path_buf(),
        });
    };
    let verifier = VerifierKey::from_signing_key(origin, key);
    let report =
        files::verify_dir(fs, dir, &verifier).map_err(|source| LedgerError::ImportUnverified {
            dir: dir.to_path_buf(),
            source: Box::new(source),
        })?;
    if report.entries != entries.len() as u64 {
        return Err(LedgerError::ImportChanged {
            dir: dir.to_path_buf(),
        });
    }
    let notes_path = dir.join(files::CHECKPOINTS);
    let notes = files::parse_notes(&fs.read(&notes_path).map_err(|source| LedgerError::Io {
        op: "read",
        path: notes_path.clone(),
        source,
    })?)
    .notes;
    let sizes = notes
        .iter()
        .map(|n| {
            n.split('\n')
                .nth(1)
                .and_then(|s| s.parse::<i64>().ok())
                .expect("verified notes have a size line")
        })
        .collect::<Vec<i64>>();
    Ok(FileCopy {
        lines: entries.iter().map(Entry::to_line).collect(),
        notes,
        sizes,
        signer: format!("imported from {}", dir.display()),
    })
}

/// Copies the file ledger into the empty schema in one transaction under
/// the ledger's advisory lock (refused if the schema holds any row).
fn copy_into(url: &str, sql: &Sql, copy: &FileCopy) -> Result<(), LedgerError> {
    let mut client = connect(url, "import")?;
    check_durability(&mut client)?;
    migrate(&mut client, sql)?;
    let mut tx = client.transaction().map_err(db("begin the import"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .map_err(db("lock the ledger"))?;
    let existing: i64 = tx
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})",
                sql.entries(),
                sql.checkpoints()
            ),
            &[],
        )
        .map_err(db("count the rows"))?
        .get(0);
    if existing > 0 {
        return Err(LedgerError::AlreadyExists { dir: sql.place() });
    }
    let insert = format!(
        "INSERT INTO {} (seq, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        sql.entries()
    );
    for (c, chunk) in copy.lines.chunks(FETCH_ROWS as usize).enumerate() {
        let from = (c * FETCH_ROWS as usize) as i64;
        let seqs: Vec<i64> = (from..from + chunk.len() as i64).collect();
        tx.execute(&insert, &[&seqs, &chunk])
            .map_err(db("import the entries"))?;
    }
    let add = format!(
        "INSERT INTO {} (size, note, signer) VALUES ($1, $2, $3)",
        sql.checkpoints()
    );
    for (note, size) in copy.notes.iter().zip(&copy.sizes) {
        tx.execute(&add, &[size, note, &copy.signer])
            .map_err(db("import the checkpoints"))?;
    }
    tx.commit().map_err(db("commit the import"))
}
