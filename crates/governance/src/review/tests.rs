use std::process::Command;

use ledger::{Approval, Entry, EntryKind};

use super::*;

#[test]
fn periods_are_months_days_or_ranges() {
    let p = Period::parse("2026-11").unwrap();
    assert_eq!(p.from.to_string(), "2026-11-01T00:00:00Z");
    assert_eq!(p.until.to_string(), "2026-12-01T00:00:00Z");
    let p = Period::parse("2026-12-07").unwrap();
    assert_eq!(p.until.to_string(), "2026-12-08T00:00:00Z");
    let p = Period::parse("2026-11-01..2026-11-15").unwrap();
    assert_eq!(p.until.to_string(), "2026-11-16T00:00:00Z");
    let p = Period::parse("2026-11-01T08:00:00Z..2026-11-01T09:30:00Z").unwrap();
    assert_eq!(p.until.to_string(), "2026-11-01T09:30:00Z");
    for bad in [
        "",
        "2026",
        "2026-13",
        "2026-11-15..2026-11-01",
        "yesterday",
        "2026-1",
    ] {
        assert!(Period::parse(bad).is_err(), "{bad}");
    }
}

fn entry(seq: u64, ts: &str, kind: EntryKind) -> Vec<u8> {
    Entry {
        seq,
        ts: ts.parse().unwrap(),
        kind,
    }
    .to_line()
}

fn reconcile(findings: u64) -> EntryKind {
    EntryKind::Reconcile {
        window_start: "a".into(),
        window_end: "b".into(),
        findings,
        summary: format!("{findings} finding(s)"),
    }
}

fn alert() -> EntryKind {
    EntryKind::Alert {
        code: "c".into(),
        message: "m".into(),
    }
}

/// A ledger: the header on Nov 30, entries on Dec 1 and 2, a reconcile
/// run with findings and one without, an entry past the checkpoint.
fn lines() -> Vec<Vec<u8>> {
    vec![
        entry(
            0,
            "2026-11-30T10:00:00Z",
            EntryKind::Header {
                version: 1,
                origin: "test/redcap-warden/1".into(),
                key_id: "00000000".into(),
            },
        ),
        entry(1, "2026-12-01T10:00:00Z", alert()),
        entry(2, "2026-12-01T11:00:00Z", reconcile(2)),
        entry(3, "2026-12-01T12:00:00Z", reconcile(0)),
        entry(4, "2026-12-02T10:00:00Z", alert()),
        entry(5, "2026-12-01T23:59:59Z", alert()),
    ]
}

fn facts(period: &str, cap: u64, lines: &[Vec<u8>]) -> ReviewFacts {
    let mut f = ReviewFacts::new(Some(Period::parse(period).unwrap()), cap);
    for (i, l) in lines.iter().enumerate() {
        f.push(i as u64, l);
    }
    f
}

#[test]
fn the_facts_are_the_periods_entries_under_the_checkpoint() {
    let l = lines();
    let f = facts("2026-12-01", 5, &l);
    assert_eq!(
        f.range,
        Some(Range {
            first_seq: 1,
            last_seq: 3,
            count: 3
        })
    );
    assert_eq!(f.reconcile_runs, 2);
    assert_eq!(f.findings.len(), 1);
    assert_eq!(f.findings[0].seq, 2);
    let leaves: Vec<_> = l[..5].iter().map(|x| merkle::leaf_hash(x)).collect();
    assert_eq!(f.root, Some(merkle::root(&leaves)));
    assert_eq!(f.origin.as_deref(), Some("test/redcap-warden/1"));
}

/// An Ed25519 key made by ssh-keygen, and a signature by it.
struct Key {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    line: String,
}

fn key(principal: &str) -> Key {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", "t", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    Key {
        line: format!("{principal} {}", public.trim()),
        path,
        _dir: dir,
    }
}

fn sign(key: &Key, namespace: &str, text: &[u8]) -> Vec<u8> {
    let file = key.path.with_extension("statement");
    std::fs::write(&file, text).unwrap();
    // ssh-keygen keeps an existing signature file.
    let _ = std::fs::remove_file(file.with_extension("statement.sig"));
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(&key.path)
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read(file.with_extension("statement.sig")).unwrap()
}

#[test]
fn a_signed_review_is_checked_and_every_bad_one_refused_with_its_reason() {
    let l = lines();
    let period = Period::parse("2026-12-01").unwrap();
    let f = facts("2026-12-01", 5, &l);
    let root = hex::encode(f.root.unwrap());
    let now: Timestamp = "2026-12-03T09:00:00Z".parse().unwrap();
    let cp = CheckpointRef { size: 5, root };
    let st = statement(
        &f,
        &period,
        "test/redcap-warden/1",
        cp.clone(),
        "ana",
        "ok",
        now,
    )
    .unwrap();
    let text = st.to_text();
    let ana = key("ana@example.org");
    let bob = key("bob");
    let reviewers = vec![
        Approver::parse_for(&ana.line, REVIEW_NAMESPACE).unwrap(),
        Approver::parse_for(&bob.line, REVIEW_NAMESPACE).unwrap(),
    ];
    let ledger = Ledger {
        origin: "test/redcap-warden/1",
        facts: &f,
    };
    let sig = sign(&ana, REVIEW_NAMESPACE, text.as_bytes());
    let ok = verify(&reviewers, text.as_bytes(), &sig, &ledger, "ana", now).unwrap();
    assert_eq!(ok.signer.principals, ["ana@example.org"]);
    assert!(
        ok.statement
            .outcome()
            .contains("2 finding(s) of 1 reconcile run(s)")
    );

    let refused = |statement: &[u8], sig: &[u8], operator: &str, facts: &ReviewFacts| {
        let ledger = Ledger {
            origin: "test/redcap-warden/1",
            facts,
        };
        verify(&reviewers, statement, sig, &ledger, operator, now).unwrap_err()
    };
    // Unsigned.
    assert!(matches!(
        refused(text.as_bytes(), b"", "ana", &f),
        Refusal::Unsigned(_)
    ));
    assert!(matches!(
        refused(text.as_bytes(), text.as_bytes(), "ana", &f),
        Refusal::Unsigned(_)
    ));
    // Wrongly signed: another namespace, a key not listed, another text.
    let reauth = sign(&ana, "redcap-warden-reauth", text.as_bytes());
    assert!(matches!(
        refused(text.as_bytes(), &reauth, "ana", &f),
        Refusal::WrongNamespace(_)
    ));
    let eve = key("eve");
    let by_eve = sign(&eve, REVIEW_NAMESPACE, text.as_bytes());
    assert!(matches!(
        refused(text.as_bytes(), &by_eve, "ana", &f),
        Refusal::NotAReviewer(_)
    ));
    let changed = text.replace("\"note\":\"ok\"", "\"note\":\"ko\"");
    assert!(matches!(
        refused(changed.as_bytes(), &sig, "ana", &f),
        Refusal::BadSignature
    ));
    // Not the reviewer: recorded by someone else, or with another's key.
    assert!(matches!(
        refused(text.as_bytes(), &sig, "bob", &f),
        Refusal::NotTheReviewer(_)
    ));
    let by_bob = sign(&bob, REVIEW_NAMESPACE, text.as_bytes());
    assert!(matches!(
        refused(text.as_bytes(), &by_bob, "ana", &f),
        Refusal::NotTheReviewer(_)
    ));
    // Self-incoherent: a finding left out, a range the ledger does not
    // have, a root that is not the ledger's.
    for bad in [
        Statement {
            findings: Vec::new(),
            ..st.clone()
        },
        Statement {
            entries: Range {
                first_seq: 2,
                ..st.entries.clone()
            },
            ..st.clone()
        },
        Statement {
            checkpoint: CheckpointRef {
                size: 5,
                root: "00".repeat(32),
            },
            ..st.clone()
        },
        Statement {
            until: "2026-12-03T00:00:00Z".into(),
            ..st.clone()
        },
    ] {
        let t = bad.to_text();
        let s = sign(&ana, REVIEW_NAMESPACE, t.as_bytes());
        let e = refused(t.as_bytes(), &s, "ana", &f);
        assert!(matches!(e, Refusal::Incoherent(_)), "{e}");
    }
    // Expired.
    let old = Statement {
        ts: "2026-11-20T00:00:00Z".parse().unwrap(),
        ..st.clone()
    };
    let t = old.to_text();
    let s = sign(&ana, REVIEW_NAMESPACE, t.as_bytes());
    assert!(matches!(
        refused(t.as_bytes(), &s, "ana", &f),
        Refusal::Expired(_)
    ));
    // Replayed: once its review entry is in the ledger.
    let mut l2 = l.clone();
    l2.push(entry(
        6,
        "2026-12-03T09:00:00Z",
        EntryKind::Review {
            reviewer: "ana".into(),
            scope: st.scope(),
            outcome: st.outcome(),
            note: "ok".into(),
            signed: Some(Approval {
                signer: "ana@example.org".into(),
                allowed_signer: ana.line.clone(),
                statement: text.clone(),
                signature: String::from_utf8(sig.clone()).unwrap(),
            }),
        },
    ));
    let f2 = facts("2026-12-01", 5, &l2);
    assert_eq!(f2.reviews.len(), 1);
    assert!(matches!(
        refused(text.as_bytes(), &sig, "ana", &f2),
        Refusal::Replayed(6)
    ));
    // No reviewers configured.
    let e = verify(&[], text.as_bytes(), &sig, &ledger, "ana", now).unwrap_err();
    assert!(matches!(e, Refusal::NoReviewers));
}
