//! Deferred appends: entries that must become durable but need not hold up
//! their caller (the gateway's `response` entries).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use durable::{Fault, FileSystem, SimFs};
use ed25519_dalek::SigningKey;
use ledger::{
    EntryKind, Ledger, LedgerError, LedgerOptions, VerifierKey, read_entries, verify_dir,
};

const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn alert(i: usize) -> EntryKind {
    EntryKind::Alert {
        code: "test".into(),
        message: format!("entry {i}"),
    }
}

/// A ledger on the simulated file system whose committer waits `delay`.
fn ledger(delay: Duration) -> (SimFs, PathBuf, Ledger) {
    let sim = SimFs::new();
    let dir = PathBuf::from("/var/ledger");
    let opts = LedgerOptions {
        checkpoint_interval: None,
        lock: false,
        deferred_delay: delay,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::create(Arc::new(sim.clone()), &dir, ORIGIN, key(), opts).unwrap();
    (sim, dir, ledger)
}

#[test]
fn the_committer_commits_a_deferred_entry_nobody_takes_along() {
    let (_sim, _dir, ledger) = ledger(Duration::from_millis(1));
    let syncs = ledger.syncs();
    let receipt = ledger.append_deferred(alert(1)).wait().unwrap();
    assert_eq!(receipt.seq, 1);
    assert_eq!(
        ledger.size(),
        2,
        "header and the deferred entry are durable"
    );
    assert_eq!(ledger.syncs(), syncs + 1);
}

#[test]
fn a_deferred_entry_rides_along_with_the_next_append() {
    // The committer would wait an hour: only the append can commit it.
    let (_sim, _dir, ledger) = ledger(Duration::from_secs(3600));
    let syncs = ledger.syncs();
    let deferred = ledger.append_deferred(alert(1));
    assert_eq!(ledger.pending(), 1, "queued, not committed");
    let appended = ledger.append(alert(2)).unwrap();
    let deferred = deferred.wait().unwrap();
    assert_eq!((deferred.seq, appended.seq), (1, 2), "queue order is kept");
    assert_eq!(ledger.syncs(), syncs + 1, "one sync covered both");
}

/// Wakes the thread that polls.
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn a_deferred_entry_can_be_awaited() {
    let (_sim, _dir, ledger) = ledger(Duration::from_millis(1));
    let mut pending = std::pin::pin!(ledger.append_deferred(alert(1)));
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let receipt = loop {
        match pending.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => break r.unwrap(),
            std::task::Poll::Pending => std::thread::park(),
        }
    };
    assert_eq!(receipt.seq, 1);
}

#[test]
fn close_commits_deferred_entries_and_later_ones_are_refused() {
    let (sim, dir, ledger) = ledger(Duration::from_secs(3600));
    let pending: Vec<_> = (0..3).map(|i| ledger.append_deferred(alert(i))).collect();
    let cp = ledger.close().unwrap().expect("a final checkpoint");
    assert_eq!(cp.size, 4);
    let seqs: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap().seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(matches!(
        ledger.append_deferred(alert(9)).wait(),
        Err(LedgerError::Closed)
    ));
    let vkey = VerifierKey::from_signing_key(ORIGIN, &key());
    let report = verify_dir(&sim, &dir, &vkey).unwrap();
    assert_eq!((report.entries, report.unanchored), (4, 0));
    let entries = read_entries(&sim as &dyn FileSystem, &dir).unwrap();
    assert_eq!(entries.len(), 4);
}

#[test]
fn a_failed_sync_fails_deferred_entries_in_the_batch_and_in_the_queue() {
    let (sim, _dir, ledger) = ledger(Duration::from_secs(3600));
    let in_batch = ledger.append_deferred(alert(1));
    sim.fail(Fault::SyncEio);
    assert!(matches!(
        ledger.append(alert(2)),
        Err(LedgerError::Poisoned { .. })
    ));
    assert!(matches!(in_batch.wait(), Err(LedgerError::Poisoned { .. })));
    assert!(matches!(
        ledger.append_deferred(alert(3)).wait(),
        Err(LedgerError::Poisoned { .. })
    ));
}

#[test]
fn header_entries_are_refused_deferred_too() {
    let (_sim, _dir, ledger) = ledger(Duration::from_millis(1));
    let header = EntryKind::Header {
        version: ledger::FORMAT_VERSION,
        origin: ORIGIN.into(),
        key_id: "00000000".into(),
    };
    assert!(matches!(
        ledger.append_deferred(header).wait(),
        Err(LedgerError::HeaderEntry)
    ));
}

#[test]
fn async_entries_are_committed_at_once_and_share_batches() {
    // Deferred entries would wait an hour: only urgency commits these.
    let (_sim, _dir, ledger) = ledger(Duration::from_secs(3600));
    let ledger = Arc::new(ledger);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| ledger.append_async(alert(t * 100 + i)).wait().unwrap().seq)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(ledger.size(), 201);
}

#[test]
fn an_async_entry_takes_queued_deferred_entries_along() {
    let (_sim, _dir, ledger) = ledger(Duration::from_secs(3600));
    let syncs = ledger.syncs();
    let deferred = ledger.append_deferred(alert(1));
    let urgent = ledger.append_async(alert(2)).wait().unwrap();
    assert_eq!((deferred.wait().unwrap().seq, urgent.seq), (1, 2));
    assert_eq!(ledger.syncs(), syncs + 1);
}
