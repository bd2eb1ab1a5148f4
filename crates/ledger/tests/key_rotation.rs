//! Signing-key rotation (`docs/ledger.md` §4.4): a `key` entry carrying the
//! new verifier key, covered by a checkpoint of the old key, puts the new
//! key in force; `verify_dir` follows the chain from the pinned key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{FileSystem, OsFs};
use ed25519_dalek::SigningKey;
use ledger::{
    Checkpoint, Entry, EntryKind, Ledger, LedgerError, LedgerOptions, ROTATE_ACTION, VerifierKey,
    VerifyError, merkle, read_entries, verify_dir,
};

const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

fn old_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn new_key() -> SigningKey {
    SigningKey::from_bytes(&[43; 32])
}

fn forger_key() -> SigningKey {
    SigningKey::from_bytes(&[66; 32])
}

fn vkey(key: &SigningKey) -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, key)
}

fn options() -> LedgerOptions {
    LedgerOptions {
        segment_max_bytes: 2048,
        checkpoint_interval: None,
        lock: false,
        ..LedgerOptions::default()
    }
}

fn fs() -> Arc<dyn FileSystem> {
    Arc::new(OsFs)
}

fn admin(i: usize) -> EntryKind {
    EntryKind::Admin {
        operator: "ana".into(),
        action: "apply".into(),
        target: format!("account-{i}"),
        reason: "change ticket 7".into(),
    }
}

/// A closed ledger of `n` entries after its header, signed by the old key.
fn closed_ledger(n: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let ledger = Ledger::create(fs(), &dir, ORIGIN, old_key(), options()).unwrap();
    for i in 0..n {
        ledger.append(admin(i)).unwrap();
    }
    ledger.close().unwrap();
    (tmp, dir)
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Appends a rotation `key` entry by hand, as an attacker (or a writer
/// that stopped half-way) would leave it; returns its seq.
fn append_rotation_line(dir: &Path, to: &SigningKey) -> u64 {
    let entries = read_entries(&OsFs, dir).unwrap();
    let last = entries.last().unwrap();
    let entry = Entry {
        seq: last.seq + 1,
        ts: last.ts,
        kind: EntryKind::Key {
            operator: "mallory".into(),
            action: ROTATE_ACTION.into(),
            key_name: ORIGIN.into(),
            verifier_key: Some(vkey(to).to_string()),
            reason: "rotate".into(),
        },
    };
    let mut line = entry.to_line();
    line.push(b'\n');
    let seg = last_segment(dir);
    let mut data = std::fs::read(&seg).unwrap();
    data.extend_from_slice(&line);
    std::fs::write(&seg, data).unwrap();
    entry.seq
}

/// A checkpoint of the first `size` entries, signed by `key`.
fn note(dir: &Path, size: usize, key: &SigningKey) -> String {
    let leaves: Vec<merkle::Hash> = read_entries(&OsFs, dir)
        .unwrap()
        .iter()
        .map(Entry::leaf_hash)
        .collect();
    Checkpoint {
        origin: ORIGIN.into(),
        size: size as u64,
        root: merkle::root(&leaves[..size]),
    }
    .sign(key)
}

fn append_note(dir: &Path, note: &str) {
    let path = dir.join("checkpoints.notes");
    let mut data = std::fs::read_to_string(&path).unwrap();
    data.push_str(note);
    std::fs::write(path, data).unwrap();
}

fn entry_count(dir: &Path) -> usize {
    read_entries(&OsFs, dir).unwrap().len()
}

#[test]
fn rotation_is_followed_from_the_old_and_from_the_new_pinned_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let ledger = Ledger::create(fs(), &dir, ORIGIN, old_key(), options()).unwrap();
    for i in 0..20 {
        ledger.append(admin(i)).unwrap();
    }
    let receipt = ledger
        .rotate_key(new_key(), "ana", "annual rotation")
        .unwrap();
    assert_eq!(ledger.verifier_key(), vkey(&new_key()));
    // 40 more entries roll over segments: their headers name the new key.
    for i in 20..60 {
        ledger.append(admin(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);

    let entries = read_entries(&OsFs, &dir).unwrap();
    match &entries[receipt.seq as usize].kind {
        EntryKind::Key {
            action,
            key_name,
            verifier_key,
            ..
        } => {
            assert_eq!(action, ROTATE_ACTION);
            assert_eq!(key_name, ORIGIN);
            assert_eq!(
                verifier_key.as_deref(),
                Some(vkey(&new_key()).to_string().as_str())
            );
        }
        other => panic!("not a key entry: {other:?}"),
    }
    let last_header = entries
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EntryKind::Header { key_id, .. } => Some((e.seq, key_id.clone())),
            _ => None,
        })
        .unwrap();
    assert!(last_header.0 > receipt.seq);
    assert_eq!(last_header.1, vkey(&new_key()).key_id_hex());

    for pinned in [vkey(&old_key()), vkey(&new_key())] {
        let report = verify_dir(&OsFs, &dir, &pinned).unwrap();
        assert_eq!(report.key_rotations, 1);
        assert_eq!(report.signing_key, Some(vkey(&new_key())));
        assert_eq!(report.unanchored, 0);
    }
    // A key the chain never names verifies nothing.
    assert!(verify_dir(&OsFs, &dir, &vkey(&forger_key())).is_err());

    // The old key no longer opens the ledger for writing; the new one does.
    match Ledger::open(fs(), &dir, old_key(), options()) {
        Err(LedgerError::WrongKey { .. }) => {}
        other => panic!("want WrongKey, got {:?}", other.err()),
    }
    let ledger = Ledger::open(fs(), &dir, new_key(), options()).unwrap();
    ledger.append(admin(60)).unwrap();
    ledger.close().unwrap();
    drop(ledger);
    let report = verify_dir(&OsFs, &dir, &vkey(&old_key())).unwrap();
    assert_eq!(report.anchored, report.entries);
}

#[test]
fn rotating_twice_chains_three_keys() {
    let (_tmp, dir) = closed_ledger(3);
    let third = SigningKey::from_bytes(&[44; 32]);
    let ledger = Ledger::open(fs(), &dir, old_key(), options()).unwrap();
    ledger.rotate_key(new_key(), "ana", "first").unwrap();
    ledger.append(admin(3)).unwrap();
    ledger.rotate_key(third.clone(), "ana", "second").unwrap();
    ledger.append(admin(4)).unwrap();
    ledger.close().unwrap();
    drop(ledger);
    for pinned in [vkey(&old_key()), vkey(&new_key()), vkey(&third)] {
        let report = verify_dir(&OsFs, &dir, &pinned).unwrap();
        assert_eq!(report.key_rotations, 2);
        assert_eq!(report.signing_key, Some(vkey(&third)));
    }
}

#[test]
fn rotation_entries_are_written_only_by_rotate_key() {
    let (_tmp, dir) = closed_ledger(1);
    let ledger = Ledger::open(fs(), &dir, old_key(), options()).unwrap();
    let forged = EntryKind::Key {
        operator: "mallory".into(),
        action: ROTATE_ACTION.into(),
        key_name: ORIGIN.into(),
        verifier_key: Some(vkey(&forger_key()).to_string()),
        reason: "x".into(),
    };
    assert!(matches!(
        ledger.append(forged),
        Err(LedgerError::RotationEntry)
    ));
    // Other key entries (client keys, the init record) are ordinary.
    ledger
        .append(EntryKind::Key {
            operator: "ana".into(),
            action: "issue".into(),
            key_name: "client:etl/k1".into(),
            verifier_key: None,
            reason: "x".into(),
        })
        .unwrap();
    assert!(matches!(
        ledger.rotate_key(old_key(), "ana", "same key"),
        Err(LedgerError::SameKey)
    ));
}

#[test]
fn forged_key_entry_not_covered_by_an_old_key_checkpoint_is_rejected() {
    let (_tmp, dir) = closed_ledger(5);
    // The attacker appends a rotation to their own key and signs a
    // checkpoint covering it with that key.
    append_rotation_line(&dir, &forger_key());
    let n = entry_count(&dir);
    append_note(&dir, &note(&dir, n, &forger_key()));
    let notes = std::fs::read_to_string(dir.join("checkpoints.notes")).unwrap();
    let last_index = notes.matches("\n\n").count() - 1;

    match verify_dir(&OsFs, &dir, &vkey(&old_key())) {
        Err(VerifyError::Checkpoint { index, problem }) => {
            assert_eq!(index, last_index);
            assert!(
                problem.contains("before a checkpoint signed by the key in force"),
                "{problem}"
            );
        }
        other => panic!("want a checkpoint error, got {other:?}"),
    }
    // Pinning the forger's key does not help: nothing the first key signed
    // leads to it.
    assert!(verify_dir(&OsFs, &dir, &vkey(&forger_key())).is_err());
    // Nor does the writer accept it.
    assert!(Ledger::open(fs(), &dir, forger_key(), options()).is_err());
    assert!(Ledger::open(fs(), &dir, old_key(), options()).is_err());
}

#[test]
fn forged_key_entry_past_the_last_checkpoint_changes_nothing() {
    let (_tmp, dir) = closed_ledger(5);
    append_rotation_line(&dir, &forger_key());
    let report = verify_dir(&OsFs, &dir, &vkey(&old_key())).unwrap();
    assert_eq!(report.unanchored, 1);
    assert_eq!(report.key_rotations, 0);
    assert_eq!(report.signing_key, Some(vkey(&old_key())));
    assert!(verify_dir(&OsFs, &dir, &vkey(&forger_key())).is_err());
}

#[test]
fn new_key_checkpoint_before_the_rotation_entry_is_rejected() {
    // A legitimate rotation, then a checkpoint by the new key of a tree
    // from before the rotation entry, placed first.
    let (_tmp, dir) = closed_ledger(5);
    let ledger = Ledger::open(fs(), &dir, old_key(), options()).unwrap();
    ledger.rotate_key(new_key(), "ana", "rotate").unwrap();
    ledger.close().unwrap();
    drop(ledger);
    verify_dir(&OsFs, &dir, &vkey(&old_key())).unwrap();
    let path = dir.join("checkpoints.notes");
    let notes = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{}{notes}", note(&dir, 3, &new_key()))).unwrap();
    for pinned in [vkey(&old_key()), vkey(&new_key())] {
        match verify_dir(&OsFs, &dir, &pinned) {
            Err(VerifyError::Checkpoint { index: 0, .. }) => {}
            other => panic!("want checkpoint #0 rejected, got {other:?}"),
        }
    }

    // The rotation entry with a new-key checkpoint covering it, but no
    // old-key checkpoint in between.
    let (_tmp, dir) = closed_ledger(5);
    append_rotation_line(&dir, &new_key());
    let n = entry_count(&dir);
    append_note(&dir, &note(&dir, n, &new_key()));
    match verify_dir(&OsFs, &dir, &vkey(&old_key())) {
        Err(VerifyError::Checkpoint { problem, .. }) => {
            assert!(
                problem.contains("before a checkpoint signed by the key in force"),
                "{problem}"
            );
        }
        other => panic!("want a checkpoint error, got {other:?}"),
    }
    assert!(verify_dir(&OsFs, &dir, &vkey(&new_key())).is_err());
}

#[test]
fn interrupted_rotation_is_finished_by_rotating_again() {
    // The writer stopped after the rotation entry was durable, before the
    // old key's checkpoint covering it.
    let (_tmp, dir) = closed_ledger(5);
    let seq = append_rotation_line(&dir, &new_key());

    match Ledger::open(fs(), &dir, new_key(), options()) {
        Err(LedgerError::RotationPending { seq: s, .. }) => assert_eq!(s, seq),
        other => panic!("want RotationPending, got {:?}", other.err()),
    }
    let ledger = Ledger::open(fs(), &dir, old_key(), options()).unwrap();
    ledger.append(admin(99)).unwrap();
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
    ledger.append(admin(100)).unwrap();
    ledger.close().unwrap();
    drop(ledger);
    let report = verify_dir(&OsFs, &dir, &vkey(&old_key())).unwrap();
    assert_eq!(report.key_rotations, 1);
    assert_eq!(report.unanchored, 0);
    Ledger::open(fs(), &dir, new_key(), options())
        .unwrap()
        .close()
        .unwrap();
}
