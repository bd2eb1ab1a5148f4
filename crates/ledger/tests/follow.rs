//! Following a growing file ledger (`Follower`): after a full
//! verification, each look verifies only what was appended, and ends where
//! a full verification of the same ledger ends; a verified prefix that
//! changed under it is named (the caller then verifies in full); new
//! entries or checkpoints that do not verify are refused; a key rotation
//! is followed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{FileSystem, OsFs};
use ed25519_dalek::SigningKey;
use ledger::{
    Entry, EntryKind, FollowError, Followed, Follower, Ledger, LedgerOptions, VerifierKey,
    verify_dir,
};

const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn vkey() -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, &key())
}

fn options() -> LedgerOptions {
    LedgerOptions {
        // Small segments: appends cross segment boundaries.
        segment_max_bytes: 4096,
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

/// Appends `n` entries to the ledger in `dir` (created if `create`),
/// signing a checkpoint every `every` entries, and closes it (which signs
/// the rest).
fn append(dir: &Path, from: usize, n: usize, every: usize, create: bool) {
    let ledger = if create {
        Ledger::create(fs(), dir, ORIGIN, key(), options()).unwrap()
    } else {
        Ledger::open(fs(), dir, key(), options()).unwrap()
    };
    for i in from..from + n {
        ledger.append(admin(i)).unwrap();
        if (i + 1).is_multiple_of(every) {
            ledger.checkpoint().unwrap();
        }
    }
    ledger.close().unwrap();
}

fn figures_of_full(dir: &Path) -> Followed {
    let r = verify_dir(&OsFs, dir, &vkey()).unwrap();
    Followed {
        entries: r.entries,
        checkpoints: r.checkpoints,
        anchored: r.anchored,
        root: r.root,
    }
}

fn start(dir: &Path, seen: &mut Vec<u64>) -> Follower {
    let (follower, figures) =
        Follower::start(&OsFs, dir, &vkey(), &mut |e: &Entry| seen.push(e.seq)).unwrap();
    assert_eq!(figures, figures_of_full(dir));
    follower.expect("the pinned key is the first key: the chain can be followed")
}

fn ledger_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    (tmp, dir)
}

#[test]
fn each_look_ends_where_a_full_verification_ends() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 100, 7, true);
    let mut seen = Vec::new();
    let mut f = start(&dir, &mut seen);
    assert_eq!(f.figures(), figures_of_full(&dir));
    // Nothing new: the same figures.
    assert_eq!(
        f.advance(&OsFs, &mut |_| panic!("nothing new")).unwrap(),
        f.figures()
    );
    for round in 0..3 {
        append(&dir, 100 + round * 60, 60, 11, false);
        let figures = f.advance(&OsFs, &mut |e| seen.push(e.seq)).unwrap();
        assert_eq!(figures, figures_of_full(&dir), "round {round}");
        assert_eq!(
            f.latest_note(),
            ledger::latest_note(&OsFs, &dir).unwrap().as_deref()
        );
    }
    // Every entry was handed over once, in order.
    let all = read_seqs(&dir);
    assert_eq!(seen, all);
    assert!(
        std::fs::read_dir(&dir).unwrap().count() > 5,
        "the test crosses segments"
    );
}

fn read_seqs(dir: &Path) -> Vec<u64> {
    ledger::read_entries(&OsFs, dir)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    s.sort();
    s
}

#[test]
fn a_truncated_or_replaced_segment_is_a_change() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 100, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    // The last segment cut short by one line.
    let last = segments(&dir).pop().unwrap();
    let data = std::fs::read(&last).unwrap();
    let cut = data[..data.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    std::fs::write(&last, &data[..cut]).unwrap();
    let err = f.clone().advance(&OsFs, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FollowError::Changed(_)), "{err}");
    // Put back, as another file renamed over it: still a change.
    let other = last.with_extension("new");
    std::fs::write(&other, &data).unwrap();
    std::fs::rename(&other, &last).unwrap();
    let err = f.advance(&OsFs, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, FollowError::Changed(why) if why.contains("replaced")),
        "{err}"
    );
}

#[test]
fn a_rewritten_checkpoint_file_is_a_change() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 30, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    let notes = dir.join("checkpoints.notes");
    let data = std::fs::read(&notes).unwrap();
    std::fs::write(&notes, &data[..data.len() / 2]).unwrap();
    let err = f.advance(&OsFs, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FollowError::Changed(_)), "{err}");
}

/// An old entry changed in place, its length kept: a look does not read
/// it again — the full verification the caller runs periodically does, and
/// fails (docs/report.md).
#[test]
fn an_old_entry_changed_in_place_is_left_to_the_full_verification() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 100, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    let first = &segments(&dir)[0];
    let data = std::fs::read(first).unwrap();
    let text = String::from_utf8(data).unwrap();
    assert!(text.contains("account-1\""));
    std::fs::write(first, text.replacen("account-1\"", "account-9\"", 1)).unwrap();
    f.advance(&OsFs, &mut |_| {}).unwrap();
    let full = verify_dir(&OsFs, &dir, &vkey()).unwrap_err();
    assert!(full.to_string().contains("was changed"), "{full}");
    assert!(
        Follower::start(&OsFs, &dir, &vkey(), &mut |_| {}).is_err(),
        "starting again verifies in full"
    );
}

#[test]
fn a_forged_new_checkpoint_is_refused() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 20, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    append(&dir, 20, 10, 100, false);
    // A note with the ledger's true size and root, signed by another key,
    // appended after the real ones: only its signature is wrong.
    let truth = figures_of_full(&dir);
    let forged = ledger::Checkpoint {
        origin: ORIGIN.into(),
        size: truth.entries,
        root: truth.root,
    }
    .sign(&SigningKey::from_bytes(&[66; 32]));
    let notes = dir.join("checkpoints.notes");
    let mut data = std::fs::read(&notes).unwrap();
    data.extend_from_slice(forged.as_bytes());
    std::fs::write(&notes, data).unwrap();
    // Rewriting the file in place keeps its prefix: the look reads on.
    let err = f.advance(&OsFs, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FollowError::Invalid(_)), "{err}");
}

#[test]
fn a_bad_appended_line_is_refused() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 20, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    let last = segments(&dir).pop().unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    // A well-formed entry, but not the next seq.
    let skipped = Entry {
        seq: f.figures().entries + 1,
        ts: jiff::Timestamp::now(),
        kind: admin(999),
    };
    let mut line = skipped.to_line();
    line.push(b'\n');
    std::io::Write::write_all(&mut file, &line).unwrap();
    let err = f.advance(&OsFs, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FollowError::Invalid(_)), "{err}");
}

#[test]
fn bytes_appended_to_the_checkpoints_that_are_no_note_are_refused() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 20, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    let notes = notes_of(&dir);
    let mut data = std::fs::read(&notes).unwrap();
    // Not a note cut short by a power cut: many lines, no signature.
    data.extend_from_slice(b"x\ny\nz\nw\nv\n");
    std::fs::write(&notes, data).unwrap();
    let err = f.advance(&OsFs, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, FollowError::Invalid(m) if m.contains("not a checkpoint note")),
        "{err}"
    );
    // A note still being written (its first line) is left for later.
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 20, 10, true);
    let mut f = start(&dir, &mut Vec::new());
    let truth = figures_of_full(&dir);
    let mut data = std::fs::read(notes_of(&dir)).unwrap();
    data.extend_from_slice(ORIGIN.as_bytes());
    std::fs::write(notes_of(&dir), data).unwrap();
    assert_eq!(f.advance(&OsFs, &mut |_| {}).unwrap(), truth);
}

fn notes_of(dir: &Path) -> PathBuf {
    dir.join("checkpoints.notes")
}

#[test]
fn a_key_rotation_is_followed() {
    let (_tmp, dir) = ledger_dir();
    append(&dir, 0, 10, 5, true);
    let mut f = start(&dir, &mut Vec::new());
    let new = SigningKey::from_bytes(&[43; 32]);
    let ledger = Ledger::open(fs(), &dir, key(), options()).unwrap();
    ledger.rotate_key(new.clone(), "ana", "yearly").unwrap();
    ledger.close().unwrap();
    let ledger = Ledger::open(fs(), &dir, new, options()).unwrap();
    for i in 0..5 {
        ledger.append(admin(100 + i)).unwrap();
    }
    ledger.close().unwrap();
    assert_eq!(
        f.advance(&OsFs, &mut |_| {}).unwrap(),
        figures_of_full(&dir)
    );
}
