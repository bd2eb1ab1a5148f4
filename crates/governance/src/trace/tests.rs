use std::collections::{HashMap, HashSet};

use jiff::tz::TimeZone;
use ledger::merkle::{self, Hash};
use ledger::{Checkpoint, Entry, EntryKind, RecordIds};
use redcap::client::LogEntry;
use redcap::redact::Placeholder;

use super::*;

fn request(seq: u64, ts: &str, id: &str, account: &str, action: &str, ids: &[&str]) -> Entry {
    Entry {
        seq,
        ts: ts.parse().unwrap(),
        kind: EntryKind::Request {
            request_id: id.into(),
            client: format!("{account}-app"),
            account: account.into(),
            site: Some("site-a".into()),
            content: Some("record".into()),
            action: Some(action.into()),
            format: Some("json".into()),
            params: vec!["content".into()],
            record_ids: ids.iter().collect(),
            filter_hmac: None,
            body_hmac: "00".into(),
            body_bytes: 1,
            // The record's id in another field never counts.
            reason: Some("about \"7\"".into()),
        },
    }
}

fn response(seq: u64, ts: &str, id: &str, ids: &[&str]) -> Entry {
    Entry {
        seq,
        ts: ts.parse().unwrap(),
        kind: EntryKind::Response {
            request_id: id.into(),
            status: 200,
            record_ids: ids.iter().collect::<RecordIds>(),
            body_hmac: "00".into(),
            body_bytes: 1,
            latency_ms: 3,
            delivery: None,
        },
    }
}

fn alert(seq: u64, ts: &str) -> Entry {
    Entry {
        seq,
        ts: ts.parse().unwrap(),
        kind: EntryKind::Alert {
            code: "x".into(),
            message: "record \"7\"".into(),
        },
    }
}

/// A ledger: an import naming 7 (HMACed form in another), an export whose
/// answer names 7, a call of another study's account naming 7, calls not
/// naming it, and a call past the checkpoint.
fn ledger() -> Vec<Vec<u8>> {
    let t = |s: u32| format!("2026-12-07T10:{:02}:{:02}Z", s / 60, s % 60);
    [
        alert(0, &t(0)),
        request(1, &t(1), "r1", "heart-a", "import", &["7"]),
        request(2, &t(2), "r2", "heart-a", "export", &[]),
        response(3, &t(3), "r1", &["7"]),
        response(4, &t(4), "r2", &["1", "7", "9"]),
        request(5, &t(5), "r3", "other", "export", &["7"]),
        response(6, &t(6), "r3", &["7"]),
        request(7, &t(7), "r4", "heart-a", "export", &["1"]),
        response(8, &t(8), "r4", &["1"]),
        request(9, &t(9), "r5", "heart-a", "export", &["hmac-of-7"]),
        alert(10, &t(10)),
        response(11, &t(11), "r5", &[]),
        request(12, &t(600), "r6", "heart-a", "import", &["7"]),
    ]
    .iter()
    .map(Entry::to_line)
    .collect()
}

fn checkpoint(lines: &[Vec<u8>], size: usize) -> Checkpoint {
    let leaves: Vec<Hash> = lines[..size].iter().map(|l| merkle::leaf_hash(l)).collect();
    Checkpoint {
        origin: "test".into(),
        size: size as u64,
        root: merkle::root(&leaves),
    }
}

fn trace(lines: &[Vec<u8>], cp: Option<Checkpoint>) -> Result<Trace, TraceError> {
    let accounts: HashSet<String> = ["heart-a".to_string()].into();
    let mut t = Tracer::new("7", "hmac-of-7", accounts, None, cp);
    for (seq, line) in lines.iter().enumerate() {
        t.push(seq as u64, line)?;
    }
    t.finish()
}

#[test]
fn every_entry_naming_the_record_is_found_and_proved_in_one_pass() {
    let lines = ledger();
    let cp = checkpoint(&lines, 12);
    let t = trace(&lines, Some(cp.clone())).unwrap();
    let ids: Vec<&str> = t.calls.iter().map(|c| c.request_id.as_str()).collect();
    // r3 is another study's, r4 never names 7; the reason and the alert
    // holding "7" do not count.
    assert_eq!(ids, ["r1", "r2", "r5", "r6"]);
    assert_eq!(t.named(), 5);
    assert_eq!(t.entries, 13);
    let r1 = &t.calls[0];
    assert_eq!(r1.client, "heart-a-app");
    assert_eq!(r1.status, Some(200));
    assert!(r1.request.names_record && r1.response.as_ref().unwrap().names_record);
    // The export's request does not name the record (its answer does): it
    // is shown, not proved.
    let r2 = &t.calls[1];
    assert!(!r2.request.names_record && r2.request.proof.is_none());
    assert_eq!(r2.request.seq, 2);
    let proved = r2.response.as_ref().unwrap();
    assert_eq!(proved.seq, 4);
    let p = proved.proof.as_ref().unwrap();
    assert_eq!(p.tree_size, 12);
    let path: Vec<Vec<u8>> = p.path.iter().map(|h| hex::decode(h).unwrap()).collect();
    merkle::verify_inclusion(4, 12, &merkle::leaf_hash(&lines[4]), &path, &cp.root).unwrap();
    // The HMACed form is found too.
    assert!(t.calls[2].request.proof.is_some());
    // Past the checkpoint: found, not proved.
    assert_eq!(t.calls[3].request.seq, 12);
    assert!(t.calls[3].request.proof.is_none());
    assert_eq!(t.checkpoint.as_ref().unwrap().0, 12);
}

#[test]
fn a_changed_or_missing_entry_fails_against_the_checkpoint() {
    let lines = ledger();
    let cp = checkpoint(&lines, 12);
    let mut changed = lines.clone();
    changed[2] = request(2, "2026-12-07T10:00:02Z", "r2", "heart-a", "delete", &[]).to_line();
    assert!(matches!(
        trace(&changed, Some(cp.clone())),
        Err(TraceError::RootMismatch { size: 12 })
    ));
    assert!(matches!(
        trace(&lines[..10], Some(cp)),
        Err(TraceError::Truncated {
            size: 12,
            entries: 10
        })
    ));
    let t = trace(&lines, None).unwrap();
    assert!(t.calls.iter().all(|c| c.request.proof.is_none()));
}

#[test]
fn since_keeps_the_recent_calls() {
    let lines = ledger();
    let accounts: HashSet<String> = ["heart-a".to_string()].into();
    let since = "2026-12-07T10:05:00Z".parse().ok();
    let mut t = Tracer::new(
        "7",
        "hmac-of-7",
        accounts,
        since,
        Some(checkpoint(&lines, 13)),
    );
    for (seq, line) in lines.iter().enumerate() {
        t.push(seq as u64, line).unwrap();
    }
    let t = t.finish().unwrap();
    assert_eq!(t.calls.len(), 1);
    assert!(t.calls[0].request.proof.is_some());
}

fn row(ts: &str, user: &str, action: &str, record: &str) -> LogEntry {
    let details = if record.is_empty() {
        "export_format: json"
    } else {
        "record_id = '7'"
    };
    LogEntry::new(ts, user, action, details, record, &Placeholder)
}

#[test]
fn redcap_rows_pair_within_the_tolerance_and_the_rest_are_unexplained() {
    let lines = ledger();
    let mut t = trace(&lines, Some(checkpoint(&lines, 13))).unwrap();
    let usernames: HashMap<String, String> = [
        ("heart-a".to_string(), "svc_a".to_string()),
        ("heart-b".to_string(), "svc_b".to_string()),
    ]
    .into();
    let page = |ts: &str| {
        LogEntry::new(
            ts,
            "svc_a",
            "Page View",
            "Page accessed: https://redcap.example.org/api/",
            "",
            &Placeholder,
        )
    };
    let rows = [
        // Berlin is UTC+1: 11:00 local is 10:00 UTC.
        row("2026-12-07 11:00", "svc_a", "Update record (API) 7", "7"),
        row("2026-12-07 11:00", "svc_a", "Data export (API)", ""),
        row("2026-12-07 11:00", "svc_a", "Data export (API)", ""),
        page("2026-12-07 11:00"),
        page("2026-12-07 11:00"),
        // Ten minutes later: no call of svc_a near it.
        row("2026-12-07 11:05", "svc_a", "Update record (API) 7", "7"),
        // Another governed account, and a person.
        row("2026-12-07 11:00", "svc_b", "Update record (API) 7", "7"),
        row("2026-12-07 11:00", "nurse", "Update record 7", "7"),
    ];
    t.attach_rows(
        &rows,
        &TimeZone::get("Europe/Berlin").unwrap(),
        SignedDuration::from_secs(120),
        &usernames,
        "/api/",
    )
    .unwrap();
    // One to one, by method: the import (r1) takes the record row and the
    // first page view, the export (r2) an export row and the second page
    // view; the second export row goes to the next export (r5).
    let r1 = &t.calls[0].redcap_rows;
    assert_eq!(r1.len(), 2, "{r1:?}");
    assert!(r1[0].contains("Update record (API) 7"), "{r1:?}");
    assert!(r1[1].contains("Page View"), "{r1:?}");
    let r2 = &t.calls[1].redcap_rows;
    assert_eq!(r2.len(), 2, "{r2:?}");
    assert!(r2[0].contains("Data export (API)"), "{r2:?}");
    // Record rows show their record name only, never field values.
    assert!(r1.iter().all(|r| !r.contains("record_id =")));
    assert_eq!(t.unexplained.len(), 3, "{:?}", t.unexplained);
    assert_eq!(t.findings(), 2);
    let nurse = t
        .unexplained
        .iter()
        .find(|u| u.username == "nurse")
        .unwrap();
    assert_eq!(nurse.account, None);
}

/// One pass over a million entries, one in ten naming the record among
/// a hundred ids: prints the time (run with --ignored --nocapture; tests
/// never assert timings).
#[test]
#[ignore]
fn trace_scales_to_a_million_entries() {
    let n = 1_000_000u64;
    let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut lines = Vec::with_capacity(n as usize);
    let mut tree = merkle::TreeBuilder::new();
    for seq in 0..n {
        let ts = format!("2026-12-07T10:00:00.{:09}Z", seq);
        let id = format!("r{}", seq / 2);
        let line = if seq % 2 == 0 {
            request(seq, &ts, &id, "heart-a", "export", &[])
        } else if seq % 20 == 1 {
            response(seq, &ts, &id, &id_refs)
        } else {
            response(seq, &ts, &id, &id_refs[..3])
        }
        .to_line();
        tree.push(merkle::leaf_hash(&line));
        lines.push(line);
    }
    let cp = Checkpoint {
        origin: "test".into(),
        size: n,
        root: tree.root(),
    };
    let started = std::time::Instant::now();
    let accounts: HashSet<String> = ["heart-a".to_string()].into();
    let mut t = Tracer::new("7", "hmac-of-7", accounts, None, Some(cp));
    for (seq, line) in lines.iter().enumerate() {
        t.push(seq as u64, line).unwrap();
    }
    let t = t.finish().unwrap();
    eprintln!(
        "trace: {} entries, {} calls naming the record, every proof verified, in {:?}",
        t.entries,
        t.calls.len(),
        started.elapsed()
    );
    assert_eq!(t.calls.len(), 50_000);
}
