//! Checkpoints that cannot be deleted unnoticed (`docs/ledger.md` §11):
//! a witness kept outside the ledger, the age of the unsigned tail, what
//! a writer open refuses to sign, and adopting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use durable::{Fault, FileSystem, OsFs, SimFs};
use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use ledger::{
    ADOPT_ACTION, Adoption, Checkpoint, Entry, EntryKind, FORMAT_VERSION, FileWitness, Ledger,
    LedgerError, LedgerOptions, VerifierKey, VerifyError, VerifyReport, Witness, WitnessNote,
    check_witness, merkle, prove_consistency, read_entries, verify_dir,
};

const ORIGIN: &str = "t.example/redcap-warden/0011223344556677";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn vkey() -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, &key())
}

fn alert(i: usize) -> EntryKind {
    EntryKind::Alert {
        code: "test".into(),
        message: format!("entry {i}"),
    }
}

/// A ledger directory and a witness file on "other storage" (another
/// directory), and options that keep that witness.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    witness: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ledger");
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        Setup {
            witness: other.join("witness.note"),
            dir,
            _tmp: tmp,
        }
    }

    fn options(&self) -> LedgerOptions {
        LedgerOptions {
            checkpoint_interval: None,
            lock: false,
            witnesses: vec![Arc::new(FileWitness::new(&self.witness))],
            ..LedgerOptions::default()
        }
    }

    fn create(&self) -> Ledger {
        Ledger::create(Arc::new(OsFs), &self.dir, ORIGIN, key(), self.options()).unwrap()
    }

    fn open(&self) -> Result<Ledger, LedgerError> {
        Ledger::open(Arc::new(OsFs), &self.dir, key(), self.options())
    }

    fn segment(&self) -> PathBuf {
        self.dir.join("seg-00000000000000000000.jsonl")
    }

    fn notes(&self) -> PathBuf {
        self.dir.join("checkpoints.notes")
    }

    fn witness_note(&self) -> WitnessNote {
        let w = FileWitness::new(&self.witness);
        WitnessNote {
            source: w.describe(),
            note: w.read().unwrap().expect("the writer kept a witness"),
        }
    }

    /// Checks the ledger (verified) against the witness file.
    fn check(&self, report: &VerifyReport) -> Result<u64, VerifyError> {
        let mut root_at = |n: u64| {
            prove_consistency(&OsFs, &self.dir, n, report.entries)
                .map(|p| p.old_root)
                .map_err(|e| e.to_string())
        };
        check_witness(report, &vkey(), &self.witness_note(), &mut root_at)
    }

    /// Replaces `from` by `to` in the segment.
    fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.segment()).unwrap();
        assert!(text.contains(from));
        std::fs::write(self.segment(), text.replacen(from, to, 1)).unwrap();
    }
}

fn witness_size(setup: &Setup) -> u64 {
    Checkpoint::verify(&setup.witness_note().note, &vkey())
        .unwrap()
        .size
}

fn expect_witness_failure(result: Result<u64, VerifyError>, want: &str) -> String {
    match result {
        Err(VerifyError::Witness { witness, problem }) => {
            assert!(witness.contains("witness file"), "{witness}");
            assert!(problem.contains(want), "{problem}");
            format!("{witness} {problem}")
        }
        other => panic!("want a witness failure ({want}), got {other:?}"),
    }
}

#[test]
fn every_checkpoint_reaches_the_witness_and_normal_ledgers_verify() {
    let s = Setup::new();
    // Fresh: the first checkpoint is the witness.
    let ledger = s.create();
    assert_eq!(witness_size(&s), 1);
    // Running: entries signed meanwhile, the witness follows (written on
    // its own thread; the witness may lag, never lead).
    for i in 0..5 {
        ledger.append(alert(i)).unwrap();
    }
    ledger.checkpoint().unwrap();
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    let held = s.check(&report).unwrap();
    assert!(held == 1 || held == 6, "{held}");
    ledger.append(alert(9)).unwrap();
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    assert_eq!(report.unanchored, 1);
    assert!(report.unsigned_span.unwrap() < Duration::from_secs(1));
    s.check(&report).unwrap();
    // A clean shutdown: the final checkpoint is the witness.
    ledger.close().unwrap();
    assert_eq!(witness_size(&s), 7);
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    assert_eq!(s.check(&report).unwrap(), 7);
    assert_eq!(report.unanchored, 0);
    drop(ledger);
    // Reopening checks it and says nothing new.
    let ledger = s.open().unwrap();
    assert!(ledger.adopted().is_none());
    ledger.close().unwrap();
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&s.witness).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600);
}

#[test]
fn deleted_checkpoints_of_an_edited_entry_are_caught_by_the_witness() {
    let s = Setup::new();
    let ledger = s.create();
    for i in 0..5 {
        ledger.append(alert(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    s.edit("entry 3", "entry X");
    std::fs::remove_file(s.notes()).unwrap();
    // Nothing beside the ledger shows it: no checkpoint is left, and the
    // ledger is young enough for its unsigned tail.
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    assert_eq!((report.checkpoints, report.unanchored), (0, 6));
    // The witness does.
    let failure = expect_witness_failure(s.check(&report), "was changed");
    assert!(
        failure.contains(&s.witness.display().to_string()),
        "{failure}"
    );
    // And the next writer refuses to sign the edited entries.
    match s.open() {
        Err(LedgerError::Witness {
            witness, problem, ..
        }) => {
            assert!(witness.contains("witness file"), "{witness}");
            assert!(problem.contains("was changed"), "{problem}");
        }
        other => panic!("want a refusal, got {:?}", other.err()),
    }
    assert!(!s.notes().exists() || std::fs::read(s.notes()).unwrap().is_empty());
}

#[test]
fn a_checkpoints_file_cut_to_its_first_note_is_caught() {
    let s = Setup::new();
    let ledger = s.create();
    let first = std::fs::read(s.notes()).unwrap();
    for i in 0..5 {
        ledger.append(alert(i)).unwrap();
        ledger.checkpoint().unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    s.edit("entry 4", "entry Y");
    std::fs::write(s.notes(), &first).unwrap();
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    assert_eq!((report.checkpoints, report.anchored), (1, 1));
    expect_witness_failure(s.check(&report), "was changed");
    assert!(matches!(s.open(), Err(LedgerError::Witness { .. })));
}

#[test]
fn a_witness_larger_than_the_ledger_is_a_truncation() {
    let s = Setup::new();
    let ledger = s.create();
    for i in 0..5 {
        ledger.append(alert(i)).unwrap();
    }
    ledger.checkpoint().unwrap();
    let (seg, notes) = (
        std::fs::read(s.segment()).unwrap(),
        std::fs::read(s.notes()).unwrap(),
    );
    for i in 5..10 {
        ledger.append(alert(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    assert_eq!(witness_size(&s), 11);
    // Back to an older copy: entries and checkpoints agree, nothing beside
    // the ledger shows the five entries that are gone.
    std::fs::write(s.segment(), seg).unwrap();
    std::fs::write(s.notes(), notes).unwrap();
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    assert_eq!((report.entries, report.unanchored), (6, 0));
    let failure = expect_witness_failure(s.check(&report), "holds only 6");
    assert!(failure.contains("removed"), "{failure}");
    match s.open() {
        Err(LedgerError::Witness { problem, .. }) => {
            assert!(problem.contains("holds only 6"), "{problem}")
        }
        other => panic!("want a refusal, got {:?}", other.err()),
    }
}

#[test]
fn adopting_records_an_entry_and_signs() {
    let s = Setup::new();
    let ledger = s.create();
    for i in 0..3 {
        ledger.append(alert(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    s.edit("entry 2", "entry Z");
    std::fs::remove_file(s.notes()).unwrap();
    assert!(s.open().is_err());
    let ledger = Ledger::open(
        Arc::new(OsFs),
        &s.dir,
        key(),
        LedgerOptions {
            adopt: Some(Adoption {
                operator: "ana".into(),
                reason: "compared with the paper log".into(),
            }),
            ..s.options()
        },
    )
    .unwrap();
    let adopted = ledger.adopted().expect("something was adopted").to_owned();
    assert!(adopted.contains("witness file"), "{adopted}");
    ledger.close().unwrap();
    drop(ledger);
    let entries = read_entries(&OsFs, &s.dir).unwrap();
    match &entries.last().unwrap().kind {
        EntryKind::Admin {
            operator,
            action,
            target,
            reason,
        } => {
            assert_eq!(operator, "ana");
            assert_eq!(action, ADOPT_ACTION);
            assert_eq!(target, &adopted);
            assert_eq!(reason, "compared with the paper log");
        }
        other => panic!("last entry is {other:?}"),
    }
    // Signed: the ledger verifies, the witness holds the new checkpoint,
    // and the next open needs no adoption.
    let report = verify_dir(&OsFs, &s.dir, &vkey()).unwrap();
    assert_eq!(report.unanchored, 0);
    assert_eq!(s.check(&report).unwrap(), entries.len() as u64);
    let ledger = s.open().unwrap();
    assert!(ledger.adopted().is_none());
}

/// A ledger written by hand with the given timestamps, signed at `signed`
/// sizes (no witness).
fn handmade(dir: &Path, ts: &[Timestamp], signed: &[u64]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut seg = Vec::new();
    let mut leaves = Vec::new();
    for (seq, t) in ts.iter().enumerate() {
        let kind = if seq == 0 {
            EntryKind::Header {
                version: FORMAT_VERSION,
                origin: ORIGIN.into(),
                key_id: vkey().key_id_hex(),
            }
        } else {
            alert(seq)
        };
        let line = Entry {
            seq: seq as u64,
            ts: *t,
            kind,
        }
        .to_line();
        leaves.push(merkle::leaf_hash(&line));
        seg.extend_from_slice(&line);
        seg.push(b'\n');
    }
    std::fs::write(dir.join("seg-00000000000000000000.jsonl"), seg).unwrap();
    let notes: String = signed
        .iter()
        .map(|&n| {
            Checkpoint {
                origin: ORIGIN.into(),
                size: n,
                root: merkle::root(&leaves[..n as usize]),
            }
            .sign(&key())
        })
        .collect();
    std::fs::write(dir.join("checkpoints.notes"), notes).unwrap();
}

fn timestamps(n: usize, step: Duration) -> Vec<Timestamp> {
    let start = Timestamp::now() - jiff::SignedDuration::from_hours(2);
    (0..n).map(|i| start + step * i as u32).collect()
}

#[test]
fn an_old_unsigned_tail_fails_verify_and_the_writer_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Ten entries a minute apart, only the first two signed: no writer
    // leaves that (a checkpoints file cut short does).
    handmade(
        tmp.path(),
        &timestamps(10, Duration::from_secs(60)),
        &[1, 2],
    );
    match verify_dir(&OsFs, tmp.path(), &vkey()) {
        Err(e @ VerifyError::UnsignedTail { .. }) => {
            let text = e.to_string();
            assert!(text.contains("the 8 entries from seq 2 on"), "{text}");
            assert!(text.contains("span 7 min 0 s"), "{text}");
            assert_eq!(e.bad_seqs(), Some(2..10));
            let (report, _) = e.into_unsigned_tail().unwrap();
            assert_eq!((report.anchored, report.unanchored), (2, 8));
        }
        other => panic!("want an unsigned-tail failure, got {other:?}"),
    }
    let options = LedgerOptions {
        checkpoint_interval: None,
        lock: false,
        ..LedgerOptions::default()
    };
    match Ledger::open(Arc::new(OsFs), tmp.path(), key(), options.clone()) {
        Err(e @ LedgerError::UnsignedTail { .. }) => {
            assert!(e.to_string().contains("adopt-unsigned"), "{e}")
        }
        other => panic!("want a refusal, got {:?}", other.err()),
    }
    // Nothing was signed by the refused open.
    assert!(verify_dir(&OsFs, tmp.path(), &vkey()).is_err());
    let ledger = Ledger::open(
        Arc::new(OsFs),
        tmp.path(),
        key(),
        LedgerOptions {
            adopt: Some(Adoption {
                operator: "ana".into(),
                reason: "restored from the export".into(),
            }),
            ..options
        },
    )
    .unwrap();
    assert!(
        ledger
            .adopted()
            .unwrap()
            .contains("the 8 entries from seq 2 on were signed by no checkpoint"),
        "{:?}",
        ledger.adopted()
    );
    drop(ledger);
    let report = verify_dir(&OsFs, tmp.path(), &vkey()).unwrap();
    assert_eq!((report.entries, report.unanchored), (11, 0));
}

#[test]
fn a_short_unsigned_tail_is_what_a_crash_leaves_and_is_signed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    handmade(tmp.path(), &timestamps(6, Duration::from_secs(1)), &[1, 2]);
    let report = verify_dir(&OsFs, tmp.path(), &vkey()).unwrap();
    assert_eq!(report.unanchored, 4);
    assert_eq!(report.unsigned_span, Some(Duration::from_secs(3)));
    // A writer crash: acknowledged entries nobody signed yet.
    let sim = SimFs::new();
    let dir = Path::new("/l");
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let quiet = LedgerOptions {
        checkpoint_interval: None,
        lock: false,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::create(fs, dir, ORIGIN, key(), quiet.clone()).unwrap();
    for i in 0..3 {
        ledger.append(alert(i)).unwrap();
    }
    let after = sim.crash();
    drop(ledger);
    let report = verify_dir(&after, dir, &vkey()).unwrap();
    assert_eq!(report.unanchored, 3);
    // Opening signs them at once, before new entries can join them.
    let reopened = Ledger::open(Arc::new(after.clone()), dir, key(), quiet).unwrap();
    let report = verify_dir(&after, dir, &vkey()).unwrap();
    assert_eq!((report.entries, report.unanchored), (4, 0));
    drop(reopened);
}

#[test]
fn reopening_on_a_full_disk_leaves_no_torn_files_behind() {
    let sim = SimFs::new();
    let dir = Path::new("/l");
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let quiet = LedgerOptions {
        checkpoint_interval: None,
        lock: false,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::create(fs.clone(), dir, ORIGIN, key(), quiet.clone()).unwrap();
    ledger.append(alert(1)).unwrap();
    sim.fail(Fault::NoSpace);
    assert!(ledger.append(alert(2)).is_err(), "a short write poisons");
    drop(ledger);
    let before = sim.list_dir(dir).unwrap();
    for attempt in 0..5 {
        assert!(
            Ledger::open(fs.clone(), dir, key(), quiet.clone()).is_err(),
            "attempt {attempt}: the disk is still full"
        );
        assert_eq!(sim.list_dir(dir).unwrap(), before, "attempt {attempt}");
    }
    sim.clear_faults();
    let ledger = Ledger::open(fs.clone(), dir, key(), quiet).unwrap();
    let torn: Vec<_> = sim
        .list_dir(dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".torn"))
        .collect();
    assert_eq!(torn.len(), 1, "{torn:?}");
    assert!(!sim.read(&torn[0]).unwrap().is_empty());
    drop(ledger);
    verify_dir(&sim, dir, &vkey()).unwrap();
}

/// `verify` beside a busy writer: the witness is read first, the ledger
/// next, so the witness is never ahead of what is verified.
#[test]
fn verifying_beside_a_busy_writer_never_fails() {
    let s = Setup::new();
    let ledger = Arc::new(
        Ledger::create(
            Arc::new(OsFs),
            &s.dir,
            ORIGIN,
            key(),
            LedgerOptions {
                checkpoint_interval: Some(Duration::from_millis(2)),
                ..s.options()
            },
        )
        .unwrap(),
    );
    let writer = {
        let ledger = Arc::clone(&ledger);
        std::thread::spawn(move || {
            for i in 0..400 {
                ledger.append(alert(i)).unwrap();
            }
        })
    };
    let mut checked = 0;
    while !writer.is_finished() || checked == 0 {
        let witness = s.witness_note();
        match verify_dir(&OsFs, &s.dir, &vkey()) {
            Ok(report) => {
                let mut root_at = |n: u64| {
                    prove_consistency(&OsFs, &s.dir, n, report.entries)
                        .map(|p| p.old_root)
                        .map_err(|e| e.to_string())
                };
                check_witness(&report, &vkey(), &witness, &mut root_at).unwrap();
                checked += 1;
            }
            // A line being written as it is read: the next pass sees it.
            Err(VerifyError::Entry { problem, .. }) if problem.contains("incomplete") => {}
            Err(e) => panic!("{e}"),
        }
    }
    writer.join().unwrap();
    ledger.close().unwrap();
    assert!(checked > 0);
}
