//! The file ledger end to end: appends, group commit, verification,
//! proofs, tampering, power cuts and I/O faults.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use durable::{DurableFile, Fault, FileId, FileSystem, OsFs, SimFs};
use ed25519_dalek::SigningKey;
use ledger::{
    EntryKind, Ledger, LedgerError, LedgerOptions, Receipt, VerifierKey, VerifyError, merkle,
    prove_consistency, prove_inclusion, read_entries, verify_dir,
};

const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn vkey() -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, &key())
}

fn quiet() -> LedgerOptions {
    LedgerOptions {
        segment_max_bytes: 64 << 20,
        checkpoint_interval: None,
        lock: false,
        ..LedgerOptions::default()
    }
}

fn alert(i: usize) -> EntryKind {
    EntryKind::Alert {
        code: "test".into(),
        message: format!("entry {i}"),
    }
}

fn admin(i: usize) -> EntryKind {
    EntryKind::Admin {
        operator: "ana".into(),
        action: "apply".into(),
        target: format!("account-{i}"),
        reason: "change ticket 7".into(),
    }
}

fn sim_dir() -> (SimFs, PathBuf) {
    let sim = SimFs::new();
    (sim, PathBuf::from("/var/ledger"))
}

#[test]
fn append_close_verify_and_prove_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs);
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), LedgerOptions::default()).unwrap();
    assert_eq!(ledger.verifier_key(), vkey());
    let ledger = Arc::new(ledger);
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
    receipts.sort_by_key(|r| r.seq);
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "seq 0 is the header");
    let final_cp = ledger.close().unwrap().expect("a final checkpoint");
    assert_eq!(final_cp.size, 201);
    assert!(ledger.append(alert(0)).is_err(), "closed");

    let report = verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
    assert_eq!(report.entries, 201);
    assert_eq!(report.anchored, 201);
    assert_eq!(report.unanchored, 0);
    assert_eq!(report.root, final_cp.root);
    assert_eq!(report.origin, ORIGIN);
    // The latest note is the final checkpoint, as signed.
    let note = ledger::latest_note(fs.as_ref(), &dir)
        .unwrap()
        .expect("a note");
    assert_eq!(
        ledger::Checkpoint::verify(&note, &vkey()).unwrap().size,
        201
    );
    assert_eq!(
        ledger::latest_note(fs.as_ref(), &tmp.path().join("none")).unwrap(),
        None,
        "no checkpoint file yet"
    );

    let entries = read_entries(fs.as_ref(), &dir).unwrap();
    for r in &receipts {
        assert_eq!(entries[r.seq as usize].leaf_hash(), r.leaf_hash);
        let p = prove_inclusion(fs.as_ref(), &dir, r.seq, None).unwrap();
        merkle::verify_inclusion(r.seq, 201, &r.leaf_hash, &p.proof, &final_cp.root).unwrap();
    }
    let c = prove_consistency(fs.as_ref(), &dir, 17, 201).unwrap();
    merkle::verify_consistency(17, 201, &c.proof, &c.old_root, &final_cp.root).unwrap();
    assert!(prove_consistency(fs.as_ref(), &dir, 0, 201).is_err());
    assert!(prove_inclusion(fs.as_ref(), &dir, 201, None).is_err());

    // The verifier key string round-trips and a wrong key fails.
    let printed = ledger.verifier_key().to_string();
    assert_eq!(VerifierKey::parse(&printed).unwrap(), vkey());
    let wrong = VerifierKey::from_signing_key(ORIGIN, &SigningKey::from_bytes(&[1; 32]));
    assert!(matches!(
        verify_dir(fs.as_ref(), &dir, &wrong),
        Err(VerifyError::Checkpoint { index: 0, .. })
    ));
}

#[test]
fn second_writer_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs);
    let opts = LedgerOptions {
        checkpoint_interval: None,
        ..LedgerOptions::default()
    };
    let first = Ledger::create(fs.clone(), tmp.path(), ORIGIN, key(), opts.clone()).unwrap();
    assert!(matches!(
        Ledger::open(fs.clone(), tmp.path(), key(), opts.clone()),
        Err(LedgerError::Locked { .. })
    ));
    drop(first);
    Ledger::open(fs, tmp.path(), key(), opts).unwrap();
}

#[test]
fn create_refuses_an_existing_ledger_and_open_refuses_an_empty_dir() {
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    drop(Ledger::create(fs.clone(), &dir, ORIGIN, key(), quiet()).unwrap());
    assert!(matches!(
        Ledger::create(fs.clone(), &dir, ORIGIN, key(), quiet()),
        Err(LedgerError::AlreadyExists { .. })
    ));
    sim.create_dir_all(Path::new("/empty")).unwrap();
    assert!(matches!(
        Ledger::open(fs, Path::new("/empty"), key(), quiet()),
        Err(LedgerError::NotALedger { .. })
    ));
}

#[test]
fn segments_roll_over_and_verify() {
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let opts = LedgerOptions {
        segment_max_bytes: 700,
        ..quiet()
    };
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), opts.clone()).unwrap();
    for i in 0..30 {
        ledger.append(admin(i)).unwrap();
    }
    ledger.close().unwrap();
    drop(ledger);
    let segs: Vec<_> = sim
        .list_dir(&dir)
        .unwrap()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
        .collect();
    assert!(segs.len() >= 4, "{segs:?}");
    let report = verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
    // One header per segment, plus the 30 entries.
    assert_eq!(report.entries, 30 + segs.len() as u64);
    assert_eq!(report.segments, segs.len());
    // Reopen and keep going in the last segment.
    let ledger = Ledger::open(fs.clone(), &dir, key(), opts).unwrap();
    ledger.append(admin(99)).unwrap();
    ledger.close().unwrap();
    verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
}

/// A file system whose `sync_data` on segments waits at a gate, so a test
/// can hold the first group commit open while more entries queue up.
#[derive(Clone)]
struct GatedFs {
    inner: SimFs,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

struct GatedFile {
    inner: Box<dyn DurableFile>,
    gate: Option<Arc<(Mutex<bool>, Condvar)>>,
}

impl FileSystem for GatedFs {
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
        let gate = path
            .to_string_lossy()
            .ends_with(".jsonl")
            .then(|| self.gate.clone());
        Ok(Box::new(GatedFile {
            inner: self.inner.open_append(path)?,
            gate,
        }))
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn DurableFile>> {
        self.inner.create_new(path)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        self.inner.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn file_id(&self, path: &Path) -> std::io::Result<FileId> {
        self.inner.file_id(path)
    }
}

impl DurableFile for GatedFile {
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        if let Some(gate) = &self.gate {
            let (open, cv) = &**gate;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
        }
        self.inner.sync_data()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn id(&self) -> std::io::Result<FileId> {
        self.inner.id()
    }
}

#[test]
fn concurrent_appends_share_one_write_and_one_sync() {
    let (sim, dir) = sim_dir();
    drop(Ledger::create(Arc::new(sim.clone()), &dir, ORIGIN, key(), quiet()).unwrap());
    let gated = GatedFs {
        inner: sim.clone(),
        gate: Arc::new((Mutex::new(false), Condvar::new())),
    };
    let ledger = Arc::new(Ledger::open(Arc::new(gated.clone()), &dir, key(), quiet()).unwrap());
    // The first append becomes the leader, writes, and blocks in sync_data.
    let ops_before = sim.op_count();
    let first = {
        let l = Arc::clone(&ledger);
        std::thread::spawn(move || l.append(alert(0)).unwrap())
    };
    while sim.op_count() < ops_before + 1 {
        std::thread::yield_now();
    }
    let followers: Vec<_> = (1..=20)
        .map(|i| {
            let l = Arc::clone(&ledger);
            std::thread::spawn(move || l.append(alert(i)).unwrap())
        })
        .collect();
    while ledger.pending() < 20 {
        std::thread::yield_now();
    }
    // Open the gate: the first batch completes, then one more batch holds
    // all twenty followers.
    {
        let (open, cv) = &*gated.gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    first.join().unwrap();
    let mut seqs: Vec<u64> = followers
        .into_iter()
        .map(|t| t.join().unwrap().seq)
        .collect();
    seqs.sort();
    assert_eq!(seqs.len(), 20);
    // The first leader's write and sync, then one write and one sync for
    // all twenty followers.
    assert_eq!(sim.op_count() - ops_before, 4);
    ledger.close().unwrap();
    verify_dir(&sim, &dir, &vkey()).unwrap();
}

/// A closed ledger with a checkpoint after every entry, on the real disk.
fn closed_ledger(dir: &Path, n: usize) -> Vec<u8> {
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs);
    let ledger = Ledger::create(fs, dir, ORIGIN, key(), quiet()).unwrap();
    for i in 0..n {
        ledger
            .append(if i % 2 == 0 { alert(i) } else { admin(i) })
            .unwrap();
        ledger.checkpoint().unwrap();
    }
    ledger.close().unwrap();
    SIGNED.with(|s| s.set(ledger.size()));
    drop(ledger);
    std::fs::read(segment(dir)).unwrap()
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("seg-00000000000000000000.jsonl")
}

/// Line start offsets of `data`.
fn line_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' && i + 1 < data.len() {
            starts.push(i + 1);
        }
    }
    starts
}

fn lines(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|&b| b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

/// Verifies `dir` after its segment was replaced by `bytes`; the failure
/// must name a seq range holding `want_seq`. Opening for writing must
/// refuse too, naming the same seq.
fn assert_detected(dir: &Path, bytes: &[u8], want_seq: u64, what: &str) {
    std::fs::write(segment(dir), bytes).unwrap();
    let err = verify_dir(&OsFs, dir, &vkey()).expect_err(what);
    let range = err
        .bad_seqs()
        .unwrap_or_else(|| panic!("{what}: no seq in {err}"));
    assert!(
        range.contains(&want_seq),
        "{what}: want seq {want_seq}, verify said {err}"
    );
    let notes = dir.join("checkpoints.notes");
    let saved = std::fs::read(&notes).unwrap();
    let signed = SIGNED.with(|s| s.get());
    match Ledger::open(Arc::new(OsFs), dir, key(), quiet()) {
        Err(LedgerError::Tampered { seq, .. }) => {
            assert!(
                range.start < signed,
                "{what}: damage past the signed size is recovered, not refused"
            );
            assert_eq!(
                seq, range.start,
                "{what}: open named seq {seq}, verify {err}"
            )
        }
        Err(other) => panic!("{what}: open failed with {other}"),
        // Damage past the last checkpoint is a torn tail: moved aside.
        Ok(ledger) => {
            assert!(
                range.start >= signed,
                "{what}: open accepted a tampered ledger"
            );
            let rec = ledger.recovery().cloned().expect("recovery ran");
            assert_eq!(rec.from_seq, range.start, "{what}");
            drop(ledger);
            for p in std::fs::read_dir(dir).unwrap() {
                let p = p.unwrap().path();
                if p.to_string_lossy().contains(".torn") {
                    std::fs::remove_file(p).unwrap();
                }
            }
            std::fs::write(&notes, saved).unwrap();
        }
    }
}

thread_local! {
    /// The size the last checkpoint of the ledger under test signs.
    static SIGNED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[test]
fn every_flipped_byte_is_detected_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let original = closed_ledger(tmp.path(), 6);
    let starts = line_starts(&original);
    for pos in 0..original.len() {
        let line = starts.iter().rposition(|&s| s <= pos).unwrap() as u64;
        for bit in [0x01u8, 0x20] {
            let mut bytes = original.clone();
            bytes[pos] ^= bit;
            assert_detected(
                tmp.path(),
                &bytes,
                line,
                &format!("flip {bit:#x} at byte {pos}"),
            );
        }
    }
}

#[test]
fn deleted_duplicated_reordered_and_truncated_lines_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let original = closed_ledger(tmp.path(), 6);
    let ls = lines(&original);
    let n = ls.len();
    for k in 0..n {
        let mut del = ls.clone();
        del.remove(k);
        assert_detected(
            tmp.path(),
            &del.concat(),
            k as u64,
            &format!("delete line {k}"),
        );

        let mut dup = ls.clone();
        dup.insert(k, ls[k].clone());
        assert_detected(
            tmp.path(),
            &dup.concat(),
            k as u64 + 1,
            &format!("duplicate line {k}"),
        );

        if k + 1 < n {
            let mut swap = ls.clone();
            swap.swap(k, k + 1);
            assert_detected(
                tmp.path(),
                &swap.concat(),
                k as u64,
                &format!("swap lines {k}, {}", k + 1),
            );
        }

        let truncated = ls[..k].concat();
        assert_detected(tmp.path(), &truncated, k as u64, &format!("keep {k} lines"));
        let mut cut = ls[..=k].concat();
        cut.pop();
        assert_detected(
            tmp.path(),
            &cut,
            k as u64,
            &format!("cut newline of line {k}"),
        );
    }
    // The untouched ledger still verifies.
    std::fs::write(segment(tmp.path()), &original).unwrap();
    verify_dir(&OsFs, tmp.path(), &vkey()).unwrap();
}

#[test]
fn tampered_checkpoints_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    closed_ledger(tmp.path(), 3);
    let path = tmp.path().join("checkpoints.notes");
    let original = std::fs::read(&path).unwrap();
    let seg = std::fs::read(segment(tmp.path())).unwrap();
    let last_note_start = original.len()
        - String::from_utf8(original.clone())
            .unwrap()
            .rsplit_once("\n\u{2014} ")
            .map(|(_, sig)| sig.len())
            .unwrap();
    let last_note_start = String::from_utf8_lossy(&original[..last_note_start])
        .rmatch_indices("test.example/")
        .next()
        .unwrap()
        .0;
    let (mut refused, mut torn) = (0, 0);
    for pos in 0..original.len() {
        let mut bytes = original.clone();
        bytes[pos] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(segment(tmp.path()), &seg).unwrap();
        assert!(
            verify_dir(&OsFs, tmp.path(), &vkey()).is_err(),
            "flip at checkpoint byte {pos}"
        );
        match Ledger::open(Arc::new(OsFs), tmp.path(), key(), quiet()) {
            Err(_) => refused += 1,
            // Only damage that looks like an interrupted write of the last
            // note is recovered (dropping that note, as a truncated file
            // would); it is recorded in an alert entry.
            Ok(l) => {
                let rec = l
                    .recovery()
                    .cloned()
                    .unwrap_or_else(|| panic!("flip at {pos} ignored"));
                assert!(rec.checkpoint_tail_bytes > 0, "flip at {pos}");
                assert!(
                    pos >= last_note_start,
                    "flip at {pos} dropped more than the last note"
                );
                torn += 1;
            }
        }
    }
    assert!(refused > 0 && torn > 0, "refused {refused}, torn {torn}");
}

/// The append scenario for the power-cut test: entries one by one, a
/// checkpoint every third, small segments so rollovers happen. Returns the
/// acknowledged receipts with their entries, up to the first failure.
fn scenario(fs: Arc<dyn FileSystem>, dir: &Path) -> Vec<(Receipt, EntryKind)> {
    let opts = LedgerOptions {
        segment_max_bytes: 900,
        ..quiet()
    };
    let mut acked = Vec::new();
    let Ok(ledger) = Ledger::open(fs, dir, key(), opts) else {
        return acked;
    };
    for i in 0..14 {
        let kind = if i % 3 == 0 { admin(i) } else { alert(i) };
        match ledger.append(kind.clone()) {
            Ok(r) => acked.push((r, kind)),
            Err(_) => break,
        }
        if i % 3 == 2 && ledger.checkpoint().is_err() {
            break;
        }
    }
    let _ = ledger.close();
    acked
}

#[test]
fn power_cut_at_every_operation_never_loses_an_acknowledged_entry() {
    let dir = PathBuf::from("/var/ledger");
    let fresh = || {
        let sim = SimFs::new();
        drop(Ledger::create(Arc::new(sim.clone()), &dir, ORIGIN, key(), quiet()).unwrap());
        sim
    };
    let probe = fresh();
    let base = probe.op_count();
    let all = scenario(Arc::new(probe.clone()), &dir);
    assert_eq!(all.len(), 14);
    let total = probe.op_count() - base;
    assert!(total > 40, "only {total} operations");
    for torn in [0usize, 5, 300] {
        for k in 0..=total {
            let sim = fresh();
            sim.crash_after(sim.op_count() + k);
            let acked = scenario(Arc::new(sim.clone()), &dir);
            let after = sim.crash_keeping(torn);
            let fs: Arc<dyn FileSystem> = Arc::new(after.clone());
            let ledger = Ledger::open(fs.clone(), &dir, key(), quiet())
                .unwrap_or_else(|e| panic!("reopen after cut at op {k} (torn {torn}): {e}"));
            let entries = read_entries(fs.as_ref(), &dir).unwrap();
            for (receipt, kind) in &acked {
                let e = entries.get(receipt.seq as usize).unwrap_or_else(|| {
                    panic!("op {k} torn {torn}: lost acked seq {}", receipt.seq)
                });
                assert_eq!(e.leaf_hash(), receipt.leaf_hash, "op {k} torn {torn}");
                assert_eq!(&e.kind, kind);
            }
            // The recovered ledger accepts entries and verifies.
            ledger.append(alert(1000)).unwrap();
            ledger.close().unwrap();
            drop(ledger);
            verify_dir(fs.as_ref(), &dir, &vkey())
                .unwrap_or_else(|e| panic!("verify after cut at op {k} torn {torn}: {e}"));
        }
    }
}

fn assert_poisons(fault: impl Fn(&SimFs, &Path)) {
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), quiet()).unwrap();
    let kept = ledger.append(alert(1)).unwrap();
    fault(&sim, &dir);
    let err = ledger.append(alert(2)).unwrap_err();
    assert!(matches!(err, LedgerError::Poisoned { .. }), "{err}");
    sim.clear_faults();
    // Poisoned for good: later appends and checkpoints fail too.
    assert!(matches!(
        ledger.append(alert(3)),
        Err(LedgerError::Poisoned { .. })
    ));
    assert!(ledger.checkpoint().is_err());
    drop(ledger);
    // Restart: recovery keeps every acknowledged entry.
    let ledger = Ledger::open(fs.clone(), &dir, key(), quiet()).unwrap();
    let entries = read_entries(fs.as_ref(), &dir).unwrap();
    assert_eq!(entries[kept.seq as usize].leaf_hash(), kept.leaf_hash);
    ledger.append(alert(4)).unwrap();
    ledger.close().unwrap();
    verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
}

#[test]
fn write_eio_poisons() {
    assert_poisons(|sim, _| sim.fail(Fault::WriteEio));
}

#[test]
fn sync_eio_poisons() {
    assert_poisons(|sim, _| sim.fail(Fault::SyncEio));
}

#[test]
fn no_space_poisons_and_the_short_write_is_recovered() {
    assert_poisons(|sim, _| sim.fail(Fault::NoSpace));
    // The half line the short write left is moved aside on reopen.
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), quiet()).unwrap();
    sim.fail(Fault::NoSpace);
    assert!(ledger.append(alert(1)).is_err());
    drop(ledger);
    sim.clear_faults();
    let ledger = Ledger::open(fs.clone(), &dir, key(), quiet()).unwrap();
    let rec = ledger.recovery().cloned().expect("recovery ran");
    assert!(rec.moved_bytes > 0);
    let torn = rec.torn_file.unwrap();
    assert_eq!(sim.read(&torn).unwrap().len() as u64, rec.moved_bytes);
    let entries = read_entries(fs.as_ref(), &dir).unwrap();
    match &entries.last().unwrap().kind {
        EntryKind::Alert { code, message } => {
            assert_eq!(code, "ledger.recovered");
            assert!(
                message.contains(&format!("moved {} bytes", rec.moved_bytes)),
                "{message}"
            );
        }
        other => panic!("last entry is {other:?}"),
    }
    drop(ledger);
    verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
}

#[test]
fn unlinked_live_file_poisons() {
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), quiet()).unwrap();
    ledger.append(alert(1)).unwrap();
    sim.unlink_live(&segment(&dir)).unwrap();
    let err = ledger.append(alert(2)).unwrap_err();
    assert!(
        err.to_string().contains("no longer names the open segment"),
        "{err}"
    );
    assert!(matches!(
        ledger.append(alert(3)),
        Err(LedgerError::Poisoned { .. })
    ));
}

#[test]
fn checkpoints_are_signed_while_entries_arrive() {
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let opts = LedgerOptions {
        checkpoint_interval: Some(std::time::Duration::from_millis(5)),
        ..quiet()
    };
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), opts).unwrap();
    let r = ledger.append(alert(1)).unwrap();
    // Wait (without a deadline assertion) until the ticker has signed a
    // checkpoint covering the entry.
    loop {
        let report = verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
        if report.anchored > r.seq {
            assert_eq!(report.unanchored, 0);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Closing adds nothing when everything is anchored.
    assert_eq!(ledger.close().unwrap(), None);
}

#[test]
fn unanchored_entries_are_reported() {
    let (sim, dir) = sim_dir();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    let ledger = Ledger::create(fs.clone(), &dir, ORIGIN, key(), quiet()).unwrap();
    for i in 0..5 {
        ledger.append(alert(i)).unwrap();
    }
    let report = verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
    assert_eq!(
        (report.entries, report.anchored, report.unanchored),
        (6, 1, 5)
    );
    ledger.close().unwrap();
    let report = verify_dir(fs.as_ref(), &dir, &vkey()).unwrap();
    assert_eq!((report.anchored, report.unanchored), (6, 0));
}

/// The example in docs/ledger.md §8 is a real ledger: it verifies.
#[test]
fn documented_example_verifies() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ledger.md"))
            .unwrap();
    let example = doc.split("## 8. Example").nth(1).unwrap();
    let blocks: Vec<&str> = example
        .split("```text\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let (vkey_text, segment_text, notes_text) = (blocks[0], blocks[1], blocks[2]);
    let key = VerifierKey::parse(vkey_text.trim()).unwrap();
    assert_eq!(
        key,
        VerifierKey::from_signing_key(&key.name, &SigningKey::from_bytes(&[7; 32]))
    );
    let sim = SimFs::new();
    let dir = Path::new("/doc");
    sim.create_dir_all(dir).unwrap();
    for (name, text) in [
        ("seg-00000000000000000000.jsonl", segment_text),
        ("checkpoints.notes", notes_text),
    ] {
        let mut f = sim.create_new(&dir.join(name)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
    let report = verify_dir(&sim, dir, &key).unwrap();
    assert_eq!(
        (report.entries, report.anchored, report.checkpoints),
        (2, 2, 2)
    );
    assert_eq!(
        hex::encode(report.root),
        "d6c3f84b74e65107a5275ce79c2c2170ed802a1e653f70167fb228ee85f05e46"
    );
}

/// Concurrent writers and a power cut at many points: whatever batches the
/// scheduler forms, no acknowledged entry is lost.
#[test]
fn power_cut_under_concurrent_writers_never_loses_an_acknowledged_entry() {
    let dir = PathBuf::from("/var/ledger");
    for k in (0..60).step_by(3) {
        let sim = SimFs::new();
        drop(Ledger::create(Arc::new(sim.clone()), &dir, ORIGIN, key(), quiet()).unwrap());
        sim.crash_after(sim.op_count() + k);
        let opened = Ledger::open(
            Arc::new(sim.clone()),
            &dir,
            key(),
            LedgerOptions {
                segment_max_bytes: 1500,
                ..quiet()
            },
        );
        // Recovery itself syncs: a cut that early fails the open.
        let Ok(ledger) = opened else {
            assert!(sim.is_powered_off());
            continue;
        };
        let ledger = Arc::new(ledger);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l = Arc::clone(&ledger);
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..10 {
                        match l.append(alert(t * 10 + i)) {
                            Ok(r) => acked.push(r),
                            Err(_) => break,
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<Receipt> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        drop(ledger);
        let after = sim.crash_keeping(11);
        drop(Ledger::open(Arc::new(after.clone()), &dir, key(), quiet()).unwrap());
        let entries = read_entries(&after, &dir).unwrap();
        for r in &acked {
            let e = entries
                .get(r.seq as usize)
                .unwrap_or_else(|| panic!("cut after {k}: lost seq {}", r.seq));
            assert_eq!(e.leaf_hash(), r.leaf_hash, "cut after {k}");
        }
        verify_dir(&after, &dir, &vkey()).unwrap();
    }
}
