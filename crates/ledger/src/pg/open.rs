//! Opening the writer: connect, check durability, migrate, read one
//! snapshot of the tables and check it as the file writer's recovery
//! checks a directory (damage, keys, roots, witnesses, unsigned tail)
//! before anything is signed.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use postgres::{Client, IsolationLevel};

use super::options::PgOptions;
use super::scan::{Chain, RowScan, StoredNote, read_notes};
use super::sql::{Sql, Statements, check_durability, connect, create_header, db, migrate};
use super::writer::{Writer, default_holder};
use crate::checkpoint::{NoteError, VerifierKey};
use crate::error::LedgerError;
use crate::files::{self, KeyWalk, PinnedSignature};
use crate::guard::{
    Checked, Damage, Guarded, OpenRules, check_key_in_force, check_signed_roots, ledger_origin,
    pending_rotation,
};
use crate::merkle::TreeBuilder;
use crate::witness::Publisher;

/// What opening found, sent from the writer thread to the opener.
pub(super) struct Opened {
    pub(super) origin: String,
    pub(super) size: u64,
    pub(super) verifier: VerifierKey,
    pub(super) publisher: Option<Arc<Publisher>>,
    /// The last checkpoint: its size and note.
    pub(super) latest: Option<(u64, String)>,
    pub(super) adopted: Option<String>,
    pub(super) unread: Vec<(String, String)>,
}

impl Writer {
    /// Opens the writer thread's session (creating the ledger first if
    /// `create` names its origin), reads one snapshot of the tables and
    /// checks it; nothing is signed before every check passed.
    pub(super) fn open(
        url: &str,
        sql: &Sql,
        create: Option<String>,
        key: SigningKey,
        options: &PgOptions,
    ) -> Result<(Writer, Opened), LedgerError> {
        let holder = options.holder.clone().unwrap_or_else(default_holder);
        let mut client = session(url, sql, create.as_deref(), &key)?;
        // The witnesses first: another process may sign (and update them)
        // after the snapshot below is taken.
        let reads = crate::witness::read_all(&options.witnesses);
        let (scan, stored) = read_snapshot(&mut client, sql)?;
        let checked = check_tables(sql, &key, &scan, &stored)?;
        let guard = guard_tables(sql, &scan, &checked, options, reads)?;
        let stmts = Statements::prepare(&mut client, sql).map_err(db("prepare statements"))?;
        let publisher = (!options.witnesses.is_empty())
            .then(|| Publisher::start(options.witnesses.clone(), guard.held.clone()));
        let mut tree = TreeBuilder::new();
        for leaf in &scan.leaves {
            tree.push(*leaf);
        }
        let opened = Opened {
            origin: checked.origin.clone(),
            size: scan.leaves.len() as u64,
            verifier: checked.verifier.clone(),
            publisher: publisher.clone(),
            latest: stored
                .last()
                .map(|n| (n.size.max(0) as u64, n.note.clone())),
            adopted: guard.adopted,
            unread: guard.unread,
        };
        let writer = Writer {
            client,
            sql: sql.clone(),
            origin: checked.origin,
            key,
            verifier: checked.verifier,
            holder,
            lease_ms: options.lease.as_millis().min(i64::MAX as u128) as i64,
            interval: options.checkpoint_interval,
            deferred_delay: options.deferred_delay,
            chain: Chain {
                scan,
                tree,
                checked_note: stored.last().map_or(0, |n| n.id),
                signed: checked.signed,
            },
            pending: checked.pending,
            stmts,
            publisher,
        };
        Ok((writer, opened))
    }
}

/// The checks both writers make before signing ([`Checked::guard`]): the
/// witnesses and the age of the unsigned tail.
fn guard_tables(
    sql: &Sql,
    scan: &RowScan,
    checked: &Checked,
    options: &PgOptions,
    reads: Vec<Result<Option<String>, String>>,
) -> Result<Guarded, LedgerError> {
    let signed = checked.signed;
    let tail_span = files::unsigned_span(
        scan.leaves.len() as u64,
        signed,
        scan.watch == Some(signed),
        scan.watch_ts,
        scan.last_ts,
    );
    let rules = OpenRules {
        witnesses: &options.witnesses,
        max_unsigned_span: options.max_unsigned_span,
        adopting: options.adopt.is_some(),
    };
    let notes_place = format!("table {}", sql.checkpoints());
    checked.guard(
        &scan.leaves,
        tail_span,
        &notes_place,
        &rules,
        reads,
        &sql.place(),
    )
}

/// The writer's connection: durable commits checked, a lock timeout set,
/// the tables migrated, and with `create`, the header of a new ledger.
fn session(
    url: &str,
    sql: &Sql,
    create: Option<&str>,
    key: &SigningKey,
) -> Result<Client, LedgerError> {
    let mut client = connect(url, "writer")?;
    check_durability(&mut client)?;
    client
        .batch_execute("SET lock_timeout = '30s'")
        .map_err(db("configure the session"))?;
    migrate(&mut client, sql)?;
    if let Some(origin) = create {
        create_header(&mut client, sql, origin, key)?;
    }
    Ok(client)
}

/// Every stored checkpoint and every entry row, read in one snapshot.
fn read_snapshot(
    client: &mut Client,
    sql: &Sql,
) -> Result<(RowScan, Vec<StoredNote>), LedgerError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .map_err(db("read the ledger"))?;
    let stored = read_notes(&mut tx, sql, 0).map_err(db("read the checkpoints"))?;
    let mut scan = RowScan {
        watch: Some(stored.last().map_or(0, |n| n.size.max(0) as u64)),
        ..RowScan::default()
    };
    scan.read(&mut tx, sql).map_err(db("read the entries"))?;
    tx.commit().map_err(db("read the ledger"))?;
    Ok((scan, stored))
}

/// The checks of the snapshot. Committed rows are acknowledged entries:
/// unlike a file's torn tail, any damage here is tampering, signed or not.
fn check_tables(
    sql: &Sql,
    key: &SigningKey,
    scan: &RowScan,
    stored: &[StoredNote],
) -> Result<Checked, LedgerError> {
    let Some(origin) = ledger_origin(
        stored.first().map(|n| n.note.as_str()),
        scan.origin.as_deref(),
    ) else {
        return Err(LedgerError::NotALedger { dir: sql.place() });
    };
    let verifier = VerifierKey::from_signing_key(&origin, key);
    let signed = stored.last().map_or(0, |n| n.size.max(0) as u64);
    let place = sql.place();
    let damage = Damage {
        place: &place,
        signed,
    };
    if let Some((seq, problem)) = &scan.stop {
        return Err(damage.at(*seq, problem.clone()));
    }
    if scan.origin.as_deref() != Some(origin.as_str()) {
        return Err(damage.at(
            0,
            format!("the header does not name origin {origin:?}, which the checkpoints sign"),
        ));
    }
    let walk = walk_stored_keys(sql, scan, stored, &verifier, &damage)?;
    check_key_in_force(&walk, &scan.rotations, &verifier, &place)?;
    let pending = pending_rotation(
        &walk,
        &scan.rotations,
        &scan.leaves,
        |k| k.name == origin,
        &damage,
        "signing-key rotation entry without a valid verifier key for this ledger",
    )?;
    for (cp, row) in walk.checkpoints.iter().zip(stored) {
        if cp.size as i64 != row.size {
            return Err(damage.at(
                0,
                format!(
                    "checkpoint id {} has size column {} but signs {}",
                    row.id, row.size, cp.size
                ),
            ));
        }
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

/// The stored checkpoints along the key chain, from the key this writer
/// was given. A checkpoint without its signature is a rotation to this
/// key no checkpoint covers yet, or the wrong key; any other failure is
/// damage.
fn walk_stored_keys(
    sql: &Sql,
    scan: &RowScan,
    stored: &[StoredNote],
    verifier: &VerifierKey,
    damage: &Damage<'_>,
) -> Result<KeyWalk, LedgerError> {
    let notes: Vec<String> = stored.iter().map(|n| n.note.clone()).collect();
    let signed = damage.signed;
    files::walk_keys(
        &notes,
        &scan.rotations,
        verifier,
        scan.first_key_id.as_deref(),
        PinnedSignature::NotNeeded,
    )
    .map_err(|(index, e)| match e {
        // The key of a rotation no checkpoint covers yet.
        NoteError::NoSignature { .. }
            if scan.rotations.iter().any(|(seq, k)| {
                *seq >= signed && k.as_deref() == Some(verifier.to_string().as_str())
            }) =>
        {
            LedgerError::RotationPending {
                seq: scan
                    .rotations
                    .iter()
                    .find(|(seq, _)| *seq >= signed)
                    .map_or(0, |(seq, _)| *seq),
                key: verifier.to_string(),
            }
        }
        // No signature by this key at all: the key is not this
        // ledger's (a forged signature line is `BadSignature`).
        NoteError::NoSignature { .. } => LedgerError::WrongKey {
            dir: sql.place(),
            given: verifier.key_id_hex(),
            current: format!("the key that signed checkpoint #{index}"),
        },
        e => damage.at(
            0,
            format!(
                "checkpoint #{index} (id {}) in {} is not valid: {e}",
                stored[index].id,
                sql.checkpoints()
            ),
        ),
    })
}
