//! The PostgreSQL backend against a real server: the file backend's suite
//! where it applies (appends, verification, proofs, tampering), plus two
//! writer processes, the signer lease, durability settings and a killed
//! connection.
//!
//! Runs when WARDEN_TEST_DATABASE_URL names a database the tests may create
//! schemas in (scripts/test starts a PostgreSQL 15 and sets it); otherwise
//! each test prints a notice and passes without running (under CI it
//! fails instead: `test_database::url`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ledger::{
    EntryKind, LedgerBackend, LedgerError, PgLedger, PgOptions, PgReader, Receipt, VerifierKey,
    VerifyError, merkle,
};
use postgres::{Client, NoTls};
use test_database::url as database;

const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn vkey() -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, &key())
}

/// A fresh schema for one test (dropped first if a previous run left it).
fn fresh_schema(url: &str, name: &str) -> String {
    let schema = format!("t{}_{name}", std::process::id());
    admin(url)
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    schema
}

fn drop_schema(url: &str, schema: &str) {
    admin(url)
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
}

fn admin(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap()
}

fn quiet(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.into(),
        checkpoint_interval: None,
        lease: Duration::from_secs(60),
        ..PgOptions::default()
    }
}

fn holder(schema: &str, name: &str) -> PgOptions {
    PgOptions {
        holder: Some(name.into()),
        ..quiet(schema)
    }
}

fn alert(i: usize) -> EntryKind {
    EntryKind::Alert {
        code: "test".into(),
        message: format!("entry {i}"),
    }
}

fn admin_entry(i: usize) -> EntryKind {
    EntryKind::Admin {
        operator: "ana".into(),
        action: "apply".into(),
        target: format!("account-{i}"),
        reason: "change ticket 7".into(),
    }
}

fn reader(url: &str, schema: &str) -> PgReader {
    PgReader::connect(url, schema).unwrap()
}

#[test]
fn append_close_verify_and_prove() {
    let Some(url) = database("append_close_verify_and_prove") else {
        return;
    };
    let schema = fresh_schema(&url, "basic");
    let ledger = Arc::new(PgLedger::create(&url, ORIGIN, key(), quiet(&schema)).unwrap());
    assert_eq!(ledger.verifier_key(), vkey());
    assert_eq!(ledger.origin(), ORIGIN);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| ledger.append(alert(t * 100 + i)).unwrap())
                    .collect::<Vec<Receipt>>()
            })
        })
        .collect();
    let mut receipts: Vec<Receipt> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // A deferred entry through the trait object.
    let backend: Arc<dyn LedgerBackend> = ledger.clone();
    receipts.push(backend.append_deferred(admin_entry(1)).wait().unwrap());
    receipts.push(backend.append_async(admin_entry(2)).wait().unwrap());
    receipts.sort_by_key(|r| r.seq);
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=202).collect::<Vec<_>>(), "seq 0 is the header");
    assert_eq!(backend.size(), 203);
    let final_cp = backend.close().unwrap().expect("a final checkpoint");
    assert_eq!(final_cp.size, 203);
    assert!(matches!(ledger.append(alert(0)), Err(LedgerError::Closed)));
    assert!(backend.close().unwrap().is_none(), "close is idempotent");

    let mut r = reader(&url, &schema);
    let report = r.verify(&vkey()).unwrap();
    let note = r.latest_note().unwrap().expect("a note");
    assert_eq!(
        ledger::Checkpoint::verify(&note, &vkey()).unwrap().size,
        203
    );
    assert_eq!(report.entries, 203);
    assert_eq!(report.segments, 1);
    assert_eq!(report.anchored, 203);
    assert_eq!(report.unanchored, 0);
    assert_eq!(report.checkpoints, 2, "one at create, one at close");
    assert_eq!(report.root, final_cp.root);
    assert_eq!(report.origin, ORIGIN);

    let entries = r.read_entries().unwrap();
    assert_eq!(entries.len(), 203);
    for rc in &receipts {
        assert_eq!(entries[rc.seq as usize].leaf_hash(), rc.leaf_hash);
        let p = r.prove_inclusion(rc.seq, None).unwrap();
        merkle::verify_inclusion(rc.seq, 203, &rc.leaf_hash, &p.proof, &final_cp.root).unwrap();
    }
    assert_eq!(r.entry(7).unwrap().unwrap(), entries[7]);
    assert!(r.entry(203).unwrap().is_none());
    assert_eq!(r.tail(3).unwrap(), entries[200..].to_vec());
    // The backend's reader, in batches of rows, from any seq.
    for from in [0, 197, 203] {
        let mut read = Vec::new();
        backend.read_from(from, &mut |e| read.push(e)).unwrap();
        assert_eq!(read, entries[from as usize..].to_vec());
    }
    // From a time on (binary search by seq), until told to stop.
    for (from, stop) in [(0usize, 203u64), (150, 160), (202, 203)] {
        let mut read = Vec::new();
        r.read_since(entries[from].ts, &mut |e| {
            let go = e.seq < stop;
            read.push(e);
            go
        })
        .unwrap();
        let first = entries
            .iter()
            .position(|e| e.ts >= entries[from].ts)
            .unwrap();
        let last = (stop as usize).min(202);
        assert_eq!(read, entries[first..=last].to_vec());
    }
    let c = r.prove_consistency(17, 203).unwrap();
    merkle::verify_consistency(17, 203, &c.proof, &c.old_root, &final_cp.root).unwrap();
    assert!(r.prove_consistency(0, 203).is_err());
    assert!(r.prove_inclusion(203, None).is_err());

    let wrong = VerifierKey::from_signing_key(ORIGIN, &SigningKey::from_bytes(&[1; 32]));
    assert!(matches!(
        r.verify(&wrong),
        Err(VerifyError::StoredCheckpoint { index: 0, .. })
    ));
    // The writer refuses a key that is not the ledger's.
    assert!(matches!(
        PgLedger::open(&url, SigningKey::from_bytes(&[1; 32]), quiet(&schema)),
        Err(LedgerError::WrongKey { .. })
    ));
    // A second create over it is refused; an empty schema is no ledger.
    assert!(matches!(
        PgLedger::create(&url, ORIGIN, key(), quiet(&schema)),
        Err(LedgerError::AlreadyExists { .. })
    ));
    let empty = fresh_schema(&url, "basic_empty");
    assert!(matches!(
        PgLedger::open(&url, key(), quiet(&empty)),
        Err(LedgerError::NotALedger { .. })
    ));
    drop_schema(&url, &empty);
    drop_schema(&url, &schema);
}

#[test]
fn reopen_continues_the_log_and_checkpoints_are_consistent() {
    let Some(url) = database("reopen_continues_the_log_and_checkpoints_are_consistent") else {
        return;
    };
    let schema = fresh_schema(&url, "reopen");
    let mut roots = Vec::new();
    {
        let ledger = PgLedger::create(&url, ORIGIN, key(), quiet(&schema)).unwrap();
        for i in 0..5 {
            ledger.append(alert(i)).unwrap();
            roots.push(ledger.checkpoint().unwrap().unwrap());
        }
        assert!(ledger.checkpoint().unwrap().is_none(), "nothing new");
    }
    let ledger = PgLedger::open(&url, key(), quiet(&schema)).unwrap();
    assert_eq!(ledger.size(), 6);
    assert_eq!(ledger.append(admin_entry(9)).unwrap().seq, 6);
    roots.push(ledger.close().unwrap().unwrap());
    let mut r = reader(&url, &schema);
    assert_eq!(r.verify(&vkey()).unwrap().checkpoints, 7);
    for old in &roots {
        for new in roots.iter().filter(|n| n.size >= old.size) {
            let p = r.prove_consistency(old.size, new.size).unwrap();
            assert_eq!(p.old_root, old.root);
            assert_eq!(p.new_root, new.root);
            merkle::verify_consistency(old.size, new.size, &p.proof, &old.root, &new.root).unwrap();
        }
    }
    drop_schema(&url, &schema);
}

/// A closed ledger with a checkpoint after every entry; its rows.
fn closed_ledger(url: &str, schema: &str, n: usize) -> Vec<(i64, Vec<u8>)> {
    let ledger = PgLedger::create(url, ORIGIN, key(), quiet(schema)).unwrap();
    for i in 0..n {
        ledger
            .append(if i % 2 == 0 { alert(i) } else { admin_entry(i) })
            .unwrap();
        ledger.checkpoint().unwrap();
    }
    ledger.close().unwrap();
    rows(url, schema)
}

fn rows(url: &str, schema: &str) -> Vec<(i64, Vec<u8>)> {
    admin(url)
        .query(
            &format!("SELECT seq, entry FROM {schema}.entries ORDER BY seq"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Replaces the entries table's rows by `rows`, as someone with the
/// owner's rights would (the append-only triggers switched off first).
fn set_rows(url: &str, schema: &str, rows: &[(i64, Vec<u8>)]) {
    let mut c = admin(url);
    let mut tx = c.transaction().unwrap();
    tx.batch_execute(&format!(
        "ALTER TABLE {schema}.entries DISABLE TRIGGER USER; DELETE FROM {schema}.entries;"
    ))
    .unwrap();
    for (seq, entry) in rows {
        tx.execute(
            &format!("INSERT INTO {schema}.entries (seq, entry) VALUES ($1, $2)"),
            &[seq, entry],
        )
        .unwrap();
    }
    tx.batch_execute(&format!("ALTER TABLE {schema}.entries ENABLE TRIGGER USER"))
        .unwrap();
    tx.commit().unwrap();
}

/// With the table holding `tampered`, verify must fail naming a seq range
/// that holds `want_seq`, and opening for writing must refuse, naming the
/// first seq of that range.
fn assert_detected(
    url: &str,
    schema: &str,
    tampered: &[(i64, Vec<u8>)],
    want_seq: u64,
    what: &str,
) {
    set_rows(url, schema, tampered);
    let err = reader(url, schema).verify(&vkey()).expect_err(what);
    let range = err
        .bad_seqs()
        .unwrap_or_else(|| panic!("{what}: no seq in {err}"));
    assert!(
        range.contains(&want_seq),
        "{what}: want seq {want_seq}, verify said {err}"
    );
    match PgLedger::open(url, key(), quiet(schema)) {
        Err(LedgerError::Tampered { seq, .. }) => {
            assert_eq!(
                seq, range.start,
                "{what}: open named seq {seq}, verify {err}"
            )
        }
        Err(other) => panic!("{what}: open failed with {other}"),
        Ok(_) => panic!("{what}: open accepted a tampered ledger"),
    }
}

#[test]
fn updated_deleted_swapped_and_truncated_rows_are_detected() {
    let Some(url) = database("updated_deleted_swapped_and_truncated_rows_are_detected") else {
        return;
    };
    let schema = fresh_schema(&url, "tamper");
    let original = closed_ledger(&url, &schema, 6);
    let n = original.len();
    assert_eq!(n, 7);
    // The tables refuse changes as such.
    let mut c = admin(&url);
    for sql in [
        format!("UPDATE {schema}.entries SET entry = entry WHERE seq = 1"),
        format!("DELETE FROM {schema}.entries WHERE seq = 1"),
        format!("TRUNCATE {schema}.entries"),
        format!("DELETE FROM {schema}.checkpoints"),
    ] {
        let err = c.batch_execute(&sql).expect_err(&sql);
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{sql}: {err:?}"
        );
    }
    for k in 0..n {
        let seq = k as u64;
        // UPDATE a row's bytes: a flipped bit at the start, middle and end.
        let len = original[k].1.len();
        for pos in [0, 1, len / 2, len - 2, len - 1] {
            for bit in [0x01u8, 0x20] {
                let mut t = original.clone();
                t[k].1[pos] ^= bit;
                assert_detected(
                    &url,
                    &schema,
                    &t,
                    seq,
                    &format!("flip {bit:#x} at byte {pos} of seq {k}"),
                );
            }
        }
        // DELETE the row.
        let mut t = original.clone();
        t.remove(k);
        assert_detected(&url, &schema, &t, seq, &format!("delete seq {k}"));
        // Swap two rows' seq.
        if k + 1 < n {
            let mut t = original.clone();
            t[k].0 = k as i64 + 1;
            t[k + 1].0 = k as i64;
            assert_detected(&url, &schema, &t, seq, &format!("swap seqs {k}, {}", k + 1));
        }
        // Keep only the rows before it.
        assert_detected(
            &url,
            &schema,
            &original[..k],
            seq,
            &format!("keep {k} rows"),
        );
        // A copy of the row appended at the end.
        let mut t = original.clone();
        t.push((n as i64, original[k].1.clone()));
        assert_detected(
            &url,
            &schema,
            &t,
            n as u64,
            &format!("duplicate seq {k} at the end"),
        );
    }
    // The untouched ledger still verifies and opens.
    set_rows(&url, &schema, &original);
    reader(&url, &schema).verify(&vkey()).unwrap();
    PgLedger::open(&url, key(), quiet(&schema))
        .unwrap()
        .close()
        .unwrap();
    drop_schema(&url, &schema);
}

#[test]
fn tampered_checkpoints_are_detected() {
    let Some(url) = database("tampered_checkpoints_are_detected") else {
        return;
    };
    let schema = fresh_schema(&url, "tamper_cp");
    closed_ledger(&url, &schema, 3);
    let mut c = admin(&url);
    let run = |c: &mut Client, sql: &str| {
        c.batch_execute(&format!(
            "ALTER TABLE {schema}.checkpoints DISABLE TRIGGER USER; {sql}; ALTER TABLE {schema}.checkpoints ENABLE TRIGGER USER"
        ))
        .unwrap()
    };
    // A changed size column.
    run(
        &mut c,
        &format!(
            "UPDATE {schema}.checkpoints SET size = size + 1 WHERE id = (SELECT max(id) FROM {schema}.checkpoints)"
        ),
    );
    assert!(matches!(
        reader(&url, &schema).verify(&vkey()),
        Err(VerifyError::StoredCheckpoint { .. })
    ));
    assert!(matches!(
        PgLedger::open(&url, key(), quiet(&schema)),
        Err(LedgerError::Tampered { .. })
    ));
    run(
        &mut c,
        &format!(
            "UPDATE {schema}.checkpoints SET size = size - 1 WHERE id = (SELECT max(id) FROM {schema}.checkpoints)"
        ),
    );
    reader(&url, &schema).verify(&vkey()).unwrap();
    // A changed note (its size line) no longer verifies.
    run(
        &mut c,
        &format!(
            "UPDATE {schema}.checkpoints SET note = replace(note, E'\\n4\\n', E'\\n3\\n') WHERE size = 4"
        ),
    );
    assert!(matches!(
        reader(&url, &schema).verify(&vkey()),
        Err(VerifyError::StoredCheckpoint { .. })
    ));
    drop_schema(&url, &schema);
}

#[test]
fn the_signer_lease_is_held_by_one_process_and_taken_over_when_it_lapses() {
    let Some(url) =
        database("the_signer_lease_is_held_by_one_process_and_taken_over_when_it_lapses")
    else {
        return;
    };
    let schema = fresh_schema(&url, "lease");
    let a = PgLedger::create(&url, ORIGIN, key(), holder(&schema, "writer-a")).unwrap();
    let b = PgLedger::open(&url, key(), holder(&schema, "writer-b")).unwrap();
    let rb = b.append(alert(1)).unwrap();
    assert_eq!(rb.seq, 1);
    let ra = a.append(alert(2)).unwrap();
    assert_eq!(ra.seq, 2, "the two writers share one sequence");
    match b.checkpoint() {
        Err(LedgerError::NotSigner { holder }) => assert!(holder.contains("writer-a"), "{holder}"),
        other => panic!("b signed while a holds the lease: {other:?}"),
    }
    // a signs b's entry too.
    assert_eq!(a.checkpoint().unwrap().unwrap().size, 3);
    // a stops renewing (as a hung or killed process would): its lease lapses.
    admin(&url)
        .batch_execute(&format!(
            "UPDATE {schema}.signer_lease SET expires_at = now() - interval '1 second'"
        ))
        .unwrap();
    b.append(alert(3)).unwrap();
    let cp = b.checkpoint().unwrap().expect("b took the lease over");
    assert_eq!(cp.size, 4);
    match a.checkpoint() {
        Err(LedgerError::NotSigner { holder }) => assert!(holder.contains("writer-b"), "{holder}"),
        other => panic!("a signed after b took over: {other:?}"),
    }
    // b closes and gives the lease up; a takes it at once and signs the rest.
    a.append(alert(4)).unwrap();
    assert_eq!(b.close().unwrap().unwrap().size, 5);
    a.append(alert(5)).unwrap();
    assert_eq!(a.checkpoint().unwrap().unwrap().size, 6);
    a.close().unwrap();
    let report = reader(&url, &schema).verify(&vkey()).unwrap();
    assert_eq!((report.entries, report.anchored), (6, 6));
    drop_schema(&url, &schema);
}

/// `url` with a server option set for the session.
fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20{}", option.replace('=', "%3D"))
}

#[test]
fn synchronous_commit_off_is_refused() {
    let Some(url) = database("synchronous_commit_off_is_refused") else {
        return;
    };
    let schema = fresh_schema(&url, "sync_off");
    let off = with_option(&url, "synchronous_commit=off");
    match PgLedger::create(&off, ORIGIN, key(), quiet(&schema)) {
        Err(LedgerError::NotDurable { setting, value }) => {
            assert_eq!(
                (setting.as_str(), value.as_str()),
                ("synchronous_commit", "off")
            );
            let message = LedgerError::NotDurable { setting, value }.to_string();
            assert!(message.contains("synchronous_commit = on"), "{message}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("opened with synchronous_commit = off"),
    }
    // Nothing was created, and the same database with the setting on works.
    PgLedger::create(&url, ORIGIN, key(), quiet(&schema))
        .unwrap()
        .close()
        .unwrap();
    let on = with_option(&url, "synchronous_commit=on");
    PgLedger::open(&on, key(), quiet(&schema))
        .unwrap()
        .close()
        .unwrap();
    assert!(matches!(
        PgLedger::open(&off, key(), quiet(&schema)),
        Err(LedgerError::NotDurable { .. })
    ));
    drop_schema(&url, &schema);
}

#[test]
fn a_killed_connection_poisons_the_writer() {
    let Some(url) = database("a_killed_connection_poisons_the_writer") else {
        return;
    };
    let schema = fresh_schema(&url, "killed");
    let app = format!("warden_{schema}");
    let sep = if url.contains('?') { '&' } else { '?' };
    let named = format!("{url}{sep}application_name={app}");
    let ledger = PgLedger::create(&named, ORIGIN, key(), quiet(&schema)).unwrap();
    ledger.append(alert(1)).unwrap();
    let killed: i64 = admin(&url)
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the writer's connection");
    let err = ledger.append(alert(2)).expect_err("the connection is gone");
    assert!(matches!(err, LedgerError::Poisoned { .. }), "{err}");
    // Every later call fails too, without touching the database.
    assert!(matches!(
        ledger.append(alert(3)),
        Err(LedgerError::Poisoned { .. })
    ));
    assert!(matches!(
        ledger.append_deferred(alert(4)).wait(),
        Err(LedgerError::Poisoned { .. })
    ));
    assert!(matches!(
        ledger.checkpoint(),
        Err(LedgerError::Poisoned { .. })
    ));
    drop(ledger);
    // Reopening recovers: the acknowledged entry is there, nothing else.
    let reopened = PgLedger::open(&url, key(), quiet(&schema)).unwrap();
    assert_eq!(reopened.size(), 2);
    assert_eq!(reopened.append(alert(5)).unwrap().seq, 2);
    reopened.close().unwrap();
    reader(&url, &schema).verify(&vkey()).unwrap();
    drop_schema(&url, &schema);
}

const CHILD_ENV: &str = "WARDEN_PG_LEDGER_CHILD";

/// Two processes append to one ledger at once (each from four threads,
/// each signing checkpoints whenever it holds the lease): every seq from
/// 1 is written exactly once, there is no hole, and the tree verifies.
#[test]
fn two_writer_processes_share_one_gapless_log() {
    let Some(url) = database("two_writer_processes_share_one_gapless_log") else {
        return;
    };
    let schema = fresh_schema(&url, "two_procs");
    PgLedger::create(&url, ORIGIN, key(), quiet(&schema))
        .unwrap()
        .close()
        .unwrap();
    let per_process = 300;
    let children: Vec<_> = ["one", "two"]
        .iter()
        .map(|name| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{schema} {name} {per_process}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "a writer process failed: {stdout}");
        let seqs: Vec<u64> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("SEQ "))
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            seqs.len(),
            per_process,
            "every append of one process acknowledged"
        );
        all.extend(seqs);
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a seq was handed out twice");
    assert_eq!(
        distinct.into_iter().collect::<Vec<_>>(),
        (1..=2 * per_process as u64).collect::<Vec<_>>(),
        "a hole in the sequence"
    );
    let mut r = reader(&url, &schema);
    let report = r.verify(&vkey()).unwrap();
    assert_eq!(report.entries, 2 * per_process as u64 + 1);
    assert_eq!(
        report.anchored, report.entries,
        "the last to close signed everything"
    );
    let signers: i64 = admin(&url)
        .query_one(
            &format!("SELECT count(DISTINCT signer) FROM {schema}.checkpoints"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(signers >= 1);
    drop_schema(&url, &schema);
}

/// One writer process of [`two_writer_processes_share_one_gapless_log`]
/// (run by it with the child environment variable set).
#[test]
#[ignore = "a child process of two_writer_processes_share_one_gapless_log"]
fn child_writer() {
    let spec = std::env::var(CHILD_ENV).expect("run by two_writer_processes_share_one_gapless_log");
    let mut parts = spec.split(' ');
    let (schema, name, count) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let url = std::env::var("WARDEN_TEST_DATABASE_URL").unwrap();
    let ledger = Arc::new(
        PgLedger::open(
            &url,
            key(),
            PgOptions {
                schema,
                checkpoint_interval: Some(Duration::from_millis(20)),
                lease: Duration::from_secs(5),
                holder: Some(format!("process {name}")),
                ..PgOptions::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let ledger = ledger.clone();
            let name = name.clone();
            std::thread::spawn(move || {
                (0..count / 4)
                    .map(|i| {
                        let kind = EntryKind::Admin {
                            operator: name.clone(),
                            action: "append".into(),
                            target: format!("thread {t} entry {i}"),
                            reason: "two-process test".into(),
                        };
                        if i % 5 == 0 {
                            ledger.append_deferred(kind).wait().unwrap().seq
                        } else {
                            ledger.append(kind).unwrap().seq
                        }
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    // A line of its own: libtest may have printed "test child_writer ... ".
    let mut out = String::from("\n");
    for t in threads {
        for seq in t.join().unwrap() {
            out.push_str(&format!("SEQ {seq}\n"));
        }
    }
    ledger.close().unwrap();
    print!("{out}");
}

/// Changing an installation to the PostgreSQL backend: its file ledger
/// (several segments) moves into the database on the first open, and the
/// log continues there: same entries, same checkpoints, same tree.
#[test]
fn a_file_ledger_is_imported_on_first_open() {
    let Some(url) = database("a_file_ledger_is_imported_on_first_open") else {
        return;
    };
    let schema = fresh_schema(&url, "import");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let file = ledger::Ledger::create(
        Arc::new(durable::OsFs),
        &dir,
        ORIGIN,
        key(),
        ledger::LedgerOptions {
            segment_max_bytes: 600,
            checkpoint_interval: None,
            ..ledger::LedgerOptions::default()
        },
    )
    .unwrap();
    for i in 0..12 {
        file.append(admin_entry(i)).unwrap();
        if i % 4 == 3 {
            file.checkpoint().unwrap();
        }
    }
    file.close().unwrap();
    drop(file);
    let before = ledger::verify_dir(&durable::OsFs, &dir, &vkey()).unwrap();
    assert!(before.segments > 1, "several segments, several headers");

    // A damaged file ledger is not imported.
    let seg = dir.join("seg-00000000000000000000.jsonl");
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    std::fs::write(&seg, &bad).unwrap();
    assert!(ledger::open_postgres(&url, &schema, key(), None, Some(&dir)).is_err());
    assert!(matches!(
        reader(&url, &schema).verify(&vkey()),
        Err(VerifyError::NoEntries { .. })
    ));
    std::fs::write(&seg, &good).unwrap();

    let pg = ledger::open_postgres(&url, &schema, key(), None, Some(&dir)).unwrap();
    assert_eq!(
        pg.size(),
        before.entries + 1,
        "and the import's alert entry"
    );
    let last = pg.append(alert(99)).unwrap();
    assert_eq!(last.seq, before.entries + 1);
    pg.close().unwrap();
    drop(pg);
    let mut r = reader(&url, &schema);
    let after = r.verify(&vkey()).unwrap();
    assert_eq!(after.entries, before.entries + 2);
    assert_eq!(after.checkpoints, before.checkpoints + 1);
    assert_eq!(after.unanchored, 0);
    let entries = r.read_entries().unwrap();
    assert_eq!(
        entries[..before.entries as usize].to_vec(),
        ledger::read_entries(&durable::OsFs, &dir).unwrap()
    );
    let alert_entry = String::from_utf8(entries[before.entries as usize].to_line()).unwrap();
    assert!(alert_entry.contains("ledger.imported"), "{alert_entry}");
    // The file ledger's last checkpoint is consistent with the new tree.
    let p = r.prove_consistency(before.entries, after.entries).unwrap();
    assert_eq!(p.old_root, before.root);
    assert_eq!(p.new_root, after.root);
    // Later opens do not import again.
    let again = ledger::open_postgres(&url, &schema, key(), None, Some(&dir)).unwrap();
    assert_eq!(again.size(), after.entries);
    again.close().unwrap();
    drop_schema(&url, &schema);
}

// Signing-key rotation (docs/ledger.md §4.4, §9.6): the expectations of
// tests/key_rotation.rs for the file backend, plus the signer lease and a
// second process still holding the old key.

fn new_key() -> SigningKey {
    SigningKey::from_bytes(&[43; 32])
}

fn forger_key() -> SigningKey {
    SigningKey::from_bytes(&[66; 32])
}

fn vkey_of(key: &SigningKey) -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, key)
}

fn rotation(to: &SigningKey) -> EntryKind {
    EntryKind::Key {
        operator: "mallory".into(),
        action: ledger::ROTATE_ACTION.into(),
        key_name: ORIGIN.into(),
        verifier_key: Some(vkey_of(to).to_string()),
        reason: "rotate".into(),
    }
}

/// Inserts a rotation entry to `to` after the last row, as a writer that
/// stopped half-way (or an attacker with INSERT rights) would leave it;
/// returns its seq.
fn insert_rotation_row(url: &str, schema: &str, to: &SigningKey) -> u64 {
    let rows = rows(url, schema);
    let last = ledger::Entry::from_line(&rows.last().unwrap().1).unwrap();
    let entry = ledger::Entry {
        seq: last.seq + 1,
        ts: last.ts,
        kind: rotation(to),
    };
    admin(url)
        .execute(
            &format!("INSERT INTO {schema}.entries (seq, entry) VALUES ($1, $2)"),
            &[&(entry.seq as i64), &entry.to_line()],
        )
        .unwrap();
    entry.seq
}

/// Inserts a checkpoint of every row, signed by `key`.
fn insert_note(url: &str, schema: &str, key: &SigningKey) {
    let leaves: Vec<merkle::Hash> = rows(url, schema)
        .iter()
        .map(|(_, e)| merkle::leaf_hash(e))
        .collect();
    let note = ledger::Checkpoint {
        origin: ORIGIN.into(),
        size: leaves.len() as u64,
        root: merkle::root(&leaves),
    }
    .sign(key);
    admin(url)
        .execute(
            &format!(
                "INSERT INTO {schema}.checkpoints (size, note, signer) VALUES ($1, $2, 'forger')"
            ),
            &[&(leaves.len() as i64), &note],
        )
        .unwrap();
}

fn rotation_rows(url: &str, schema: &str) -> usize {
    rows(url, schema)
        .iter()
        .filter(|(_, e)| {
            matches!(
                ledger::Entry::from_line(e).unwrap().kind,
                EntryKind::Key { ref action, .. } if action == ledger::ROTATE_ACTION
            )
        })
        .count()
}

#[test]
fn rotation_is_followed_from_the_old_and_from_the_new_pinned_key() {
    let Some(url) = database("rotation_is_followed_from_the_old_and_from_the_new_pinned_key")
    else {
        return;
    };
    let schema = fresh_schema(&url, "rotate");
    let ledger = PgLedger::create(&url, ORIGIN, key(), quiet(&schema)).unwrap();
    for i in 0..20 {
        ledger.append(admin_entry(i)).unwrap();
    }
    // Rotation entries are written by rotate_key only, and to a new key.
    assert!(matches!(
        ledger.append(rotation(&forger_key())),
        Err(LedgerError::RotationEntry)
    ));
    assert!(matches!(
        ledger.rotate_key(key(), "ana", "same key"),
        Err(LedgerError::SameKey)
    ));
    let receipt = ledger
        .rotate_key(new_key(), "ana", "annual rotation")
        .unwrap();
    assert_eq!(receipt.seq, 21);
    assert_eq!(ledger.verifier_key(), vkey_of(&new_key()));
    for i in 20..40 {
        ledger.append(admin_entry(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);

    let stored = rows(&url, &schema);
    assert_eq!(stored.len(), 42);
    match ledger::Entry::from_line(&stored[21].1).unwrap().kind {
        EntryKind::Key {
            action,
            key_name,
            verifier_key,
            ..
        } => {
            assert_eq!(action, ledger::ROTATE_ACTION);
            assert_eq!(key_name, ORIGIN);
            assert_eq!(verifier_key, Some(vkey_of(&new_key()).to_string()));
        }
        other => panic!("not a key entry: {other:?}"),
    }
    for pinned in [vkey(), vkey_of(&new_key())] {
        let report = reader(&url, &schema).verify(&pinned).unwrap();
        assert_eq!(report.key_rotations, 1);
        assert_eq!(report.signing_key, Some(vkey_of(&new_key())));
        assert_eq!((report.entries, report.unanchored), (42, 0));
    }
    assert!(
        reader(&url, &schema)
            .verify(&vkey_of(&forger_key()))
            .is_err()
    );

    // The old key no longer opens the ledger for writing; the new one
    // does, and rotates again.
    match PgLedger::open(&url, key(), quiet(&schema)) {
        Err(LedgerError::WrongKey { .. }) => {}
        other => panic!("want WrongKey, got {:?}", other.err()),
    }
    let third = SigningKey::from_bytes(&[44; 32]);
    let ledger = PgLedger::open(&url, new_key(), quiet(&schema)).unwrap();
    ledger.append(admin_entry(40)).unwrap();
    // Through the trait, as governance calls it.
    let backend: &dyn LedgerBackend = &ledger;
    backend.rotate_key(third.clone(), "ana", "second").unwrap();
    ledger.append(admin_entry(41)).unwrap();
    ledger.close().unwrap();
    drop(ledger);
    for pinned in [vkey(), vkey_of(&new_key()), vkey_of(&third)] {
        let report = reader(&url, &schema).verify(&pinned).unwrap();
        assert_eq!(report.key_rotations, 2);
        assert_eq!(report.signing_key, Some(vkey_of(&third)));
        assert_eq!(report.anchored, report.entries);
    }
    drop_schema(&url, &schema);
}

#[test]
fn only_the_lease_holder_rotates_and_an_old_key_process_stops_signing() {
    let Some(url) = database("only_the_lease_holder_rotates_and_an_old_key_process_stops_signing")
    else {
        return;
    };
    let schema = fresh_schema(&url, "rotate_two");
    let a = PgLedger::create(&url, ORIGIN, key(), holder(&schema, "writer-a")).unwrap();
    let b = PgLedger::open(&url, key(), holder(&schema, "writer-b")).unwrap();
    b.append(alert(1)).unwrap();
    // a holds the lease (it signed the first checkpoint): b may not rotate,
    // and nothing is written.
    match b.rotate_key(new_key(), "ana", "rotate") {
        Err(LedgerError::NotSigner { holder }) => assert!(holder.contains("writer-a"), "{holder}"),
        other => panic!("b rotated while a holds the lease: {other:?}"),
    }
    assert_eq!(rotation_rows(&url, &schema), 0);
    assert_eq!(b.verifier_key(), vkey());

    a.rotate_key(new_key(), "ana", "rotate").unwrap();
    // b still appends (a, the signer, signs its entries) ...
    b.append(alert(2)).unwrap();
    a.close().unwrap();
    // ... but once it could sign, it sees the rotation and refuses, for
    // good: it must be restarted with the new key.
    match b.checkpoint() {
        Err(LedgerError::Poisoned { cause }) => {
            assert!(cause.contains("rotates the signing key"), "{cause}");
            assert!(cause.contains("Restart"), "{cause}");
        }
        other => panic!("b signed with the old key after the rotation: {other:?}"),
    }
    assert!(matches!(
        b.append(alert(3)),
        Err(LedgerError::Poisoned { .. })
    ));
    // It gave the lease up: a process with the new key signs at once.
    let c = PgLedger::open(&url, new_key(), holder(&schema, "writer-c")).unwrap();
    c.append(alert(4)).unwrap();
    assert!(c.checkpoint().unwrap().is_some());
    c.close().unwrap();
    drop((a, b, c));
    let report = reader(&url, &schema).verify(&vkey()).unwrap();
    assert_eq!(report.key_rotations, 1);
    assert_eq!(report.signing_key, Some(vkey_of(&new_key())));
    assert_eq!(report.anchored, report.entries);
    drop_schema(&url, &schema);
}

#[test]
fn interrupted_rotation_is_finished_by_rotating_again() {
    let Some(url) = database("interrupted_rotation_is_finished_by_rotating_again") else {
        return;
    };
    let schema = fresh_schema(&url, "rotate_pending");
    closed_ledger(&url, &schema, 5);
    // A rotation entry no checkpoint of the old key covers (a file ledger
    // imported mid-rotation leaves one).
    let seq = insert_rotation_row(&url, &schema, &new_key());

    match PgLedger::open(&url, new_key(), quiet(&schema)) {
        Err(LedgerError::RotationPending { seq: s, .. }) => assert_eq!(s, seq),
        other => panic!("want RotationPending, got {:?}", other.err()),
    }
    // The old key opens it but signs nothing, not even on close.
    let ledger = PgLedger::open(&url, key(), quiet(&schema)).unwrap();
    ledger.append(admin_entry(99)).unwrap();
    assert!(matches!(
        ledger.close(),
        Err(LedgerError::RotationPending { .. })
    ));
    drop(ledger);

    let ledger = PgLedger::open(&url, key(), quiet(&schema)).unwrap();
    ledger.append(admin_entry(100)).unwrap();
    assert!(matches!(
        ledger.checkpoint(),
        Err(LedgerError::RotationPending { .. })
    ));
    assert!(matches!(
        ledger.rotate_key(forger_key(), "ana", "other"),
        Err(LedgerError::RotationPending { .. })
    ));
    let receipt = ledger.rotate_key(new_key(), "ana", "finish").unwrap();
    assert_eq!(receipt.seq, seq);
    assert_eq!(ledger.verifier_key(), vkey_of(&new_key()));
    ledger.append(admin_entry(101)).unwrap();
    ledger.close().unwrap();
    drop(ledger);
    assert_eq!(rotation_rows(&url, &schema), 1, "no second rotation entry");
    for pinned in [vkey(), vkey_of(&new_key())] {
        let report = reader(&url, &schema).verify(&pinned).unwrap();
        assert_eq!(report.key_rotations, 1);
        assert_eq!(report.unanchored, 0);
    }
    PgLedger::open(&url, new_key(), quiet(&schema))
        .unwrap()
        .close()
        .unwrap();
    drop_schema(&url, &schema);
}

#[test]
fn forged_rotation_entries_are_rejected() {
    let Some(url) = database("forged_rotation_entries_are_rejected") else {
        return;
    };
    // A forged rotation past the last checkpoint changes nothing, and a
    // writer that was open refuses to sign over it.
    let schema = fresh_schema(&url, "rotate_forged");
    closed_ledger(&url, &schema, 5);
    let open = PgLedger::open(&url, key(), quiet(&schema)).unwrap();
    insert_rotation_row(&url, &schema, &forger_key());
    let report = reader(&url, &schema).verify(&vkey()).unwrap();
    assert_eq!((report.unanchored, report.key_rotations), (1, 0));
    assert_eq!(report.signing_key, Some(vkey()));
    assert!(
        reader(&url, &schema)
            .verify(&vkey_of(&forger_key()))
            .is_err()
    );
    match open.checkpoint() {
        Err(LedgerError::Poisoned { cause }) => assert!(cause.contains("did not write"), "{cause}"),
        other => panic!("signed over a forged rotation entry: {other:?}"),
    }
    drop(open);

    // The forger signs a checkpoint covering it with their own key.
    insert_note(&url, &schema, &forger_key());
    let last = reader(&url, &schema)
        .verify(&vkey())
        .map(|_| ())
        .unwrap_err();
    match last {
        VerifyError::StoredCheckpoint { index, problem, .. } => {
            assert_eq!(index, 6, "the forger's note, after the 6 real ones");
            assert!(
                problem.contains("before a checkpoint signed by the key in force"),
                "{problem}"
            );
        }
        other => panic!("want the forged checkpoint rejected, got {other:?}"),
    }
    assert!(
        reader(&url, &schema)
            .verify(&vkey_of(&forger_key()))
            .is_err()
    );
    assert!(PgLedger::open(&url, key(), quiet(&schema)).is_err());
    assert!(PgLedger::open(&url, forger_key(), quiet(&schema)).is_err());
    drop_schema(&url, &schema);

    // A real rotation entry with a new-key checkpoint covering it, but no
    // old-key checkpoint in between.
    let schema = fresh_schema(&url, "rotate_skipped");
    closed_ledger(&url, &schema, 5);
    insert_rotation_row(&url, &schema, &new_key());
    insert_note(&url, &schema, &new_key());
    match reader(&url, &schema).verify(&vkey()) {
        Err(VerifyError::StoredCheckpoint { problem, .. }) => assert!(
            problem.contains("before a checkpoint signed by the key in force"),
            "{problem}"
        ),
        other => panic!("want a checkpoint error, got {other:?}"),
    }
    assert!(reader(&url, &schema).verify(&vkey_of(&new_key())).is_err());
    drop_schema(&url, &schema);
}

/// Deletes checkpoint rows (`where` selects them), as the table's owner
/// can.
fn delete_checkpoints(url: &str, schema: &str, which: &str) {
    admin(url)
        .batch_execute(&format!(
            "ALTER TABLE {schema}.checkpoints DISABLE TRIGGER USER; DELETE FROM {schema}.checkpoints WHERE {which}; ALTER TABLE {schema}.checkpoints ENABLE TRIGGER USER"
        ))
        .unwrap();
}

fn replace_in_row(rows: &mut [(i64, Vec<u8>)], from: &str, to: &str) {
    let row = rows
        .iter_mut()
        .find(|(_, e)| String::from_utf8_lossy(e).contains(from))
        .unwrap();
    row.1 = String::from_utf8(row.1.clone())
        .unwrap()
        .replacen(from, to, 1)
        .into_bytes();
}

#[test]
fn a_deleted_checkpoints_table_and_an_edited_entry_are_caught_by_the_witness() {
    let Some(url) =
        database("a_deleted_checkpoints_table_and_an_edited_entry_are_caught_by_the_witness")
    else {
        return;
    };
    let schema = fresh_schema(&url, "witness");
    let other = tempfile::tempdir().unwrap();
    let witness_path = other.path().join("witness.note");
    let witnessed = |adopt: Option<ledger::Adoption>| PgOptions {
        witnesses: vec![Arc::new(ledger::FileWitness::new(&witness_path))],
        adopt,
        ..quiet(&schema)
    };
    let ledger = PgLedger::create(&url, ORIGIN, key(), witnessed(None)).unwrap();
    for i in 0..5 {
        ledger.append(alert(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    let witness = ledger::WitnessNote {
        source: ledger::Witness::describe(&ledger::FileWitness::new(&witness_path)),
        note: std::fs::read_to_string(&witness_path).unwrap(),
    };
    let check = |report: &ledger::VerifyReport| {
        let mut r = reader(&url, &schema);
        let mut root_at = |n: u64| {
            r.prove_consistency(n, report.entries)
                .map(|p| p.old_root)
                .map_err(|e| e.to_string())
        };
        ledger::check_witness(report, &vkey(), &witness, &mut root_at)
    };
    let report = reader(&url, &schema).verify(&vkey()).unwrap();
    assert_eq!(check(&report).unwrap(), 6);
    // The owner edits an entry and deletes every checkpoint.
    let mut tampered = rows(&url, &schema);
    replace_in_row(&mut tampered, "entry 3", "entry X");
    set_rows(&url, &schema, &tampered);
    delete_checkpoints(&url, &schema, "true");
    let report = reader(&url, &schema).verify(&vkey()).unwrap();
    assert_eq!((report.checkpoints, report.unanchored), (0, 6));
    match check(&report) {
        Err(VerifyError::Witness { witness, problem }) => {
            assert!(witness.contains("witness file"), "{witness}");
            assert!(problem.contains("was changed"), "{problem}");
            assert!(problem.contains("checkpoints"), "{problem}");
        }
        other => panic!("want a witness failure, got {other:?}"),
    }
    // No writer signs it, until it is adopted.
    assert!(matches!(
        PgLedger::open(&url, key(), witnessed(None)),
        Err(LedgerError::Witness { .. })
    ));
    let adoption = ledger::Adoption {
        operator: "ana".into(),
        reason: "restored the entry's meaning from the paper record".into(),
    };
    let ledger = PgLedger::open(&url, key(), witnessed(Some(adoption))).unwrap();
    assert!(ledger.adopted().unwrap().contains("witness file"));
    ledger.close().unwrap();
    drop(ledger);
    let report = reader(&url, &schema).verify(&vkey()).unwrap();
    assert_eq!(report.unanchored, 0);
    let last = reader(&url, &schema).tail(1).unwrap().remove(0);
    assert!(
        matches!(&last.kind, EntryKind::Admin { action, .. } if action == ledger::ADOPT_ACTION),
        "{last:?}"
    );
    let now = ledger::WitnessNote {
        note: std::fs::read_to_string(&witness_path).unwrap(),
        ..witness.clone()
    };
    let mut r = reader(&url, &schema);
    let mut root_at = |n: u64| {
        r.prove_consistency(n, report.entries)
            .map(|p| p.old_root)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        ledger::check_witness(&report, &vkey(), &now, &mut root_at).unwrap(),
        report.entries
    );
    drop_schema(&url, &schema);
}

#[test]
fn an_old_unsigned_tail_fails_verify_and_is_refused_on_open() {
    let Some(url) = database("an_old_unsigned_tail_fails_verify_and_is_refused_on_open") else {
        return;
    };
    let schema = fresh_schema(&url, "old_tail");
    closed_ledger(&url, &schema, 4);
    reader(&url, &schema).verify(&vkey()).unwrap();
    // Every checkpoint but the first deleted, and the first entry after it
    // a year older than it was: the unsigned rows span a year.
    delete_checkpoints(
        &url,
        &schema,
        &format!("id > (SELECT min(id) FROM {schema}.checkpoints)"),
    );
    let mut tampered = rows(&url, &schema);
    let row = &mut tampered[1].1;
    let text = String::from_utf8(row.clone()).unwrap();
    let at = text.find("\"ts\":\"").unwrap() + 6;
    let year: u32 = text[at..at + 4].parse().unwrap();
    *row = format!("{}{}{}", &text[..at], year - 1, &text[at + 4..]).into_bytes();
    set_rows(&url, &schema, &tampered);
    match reader(&url, &schema).verify(&vkey()) {
        Err(e @ VerifyError::UnsignedTail { .. }) => {
            assert!(e.to_string().contains("from seq 1 on"), "{e}");
            assert!(
                e.to_string().contains(&format!("{schema}.checkpoints")),
                "{e}"
            );
        }
        other => panic!("want an unsigned-tail failure, got {other:?}"),
    }
    assert!(matches!(
        PgLedger::open(&url, key(), quiet(&schema)),
        Err(LedgerError::UnsignedTail { .. })
    ));
    drop_schema(&url, &schema);
}
