use jiff::Timestamp;
use ledger::{Entry, EntryKind};

use super::html::{Page, render};
use super::*;
use crate::rotation::TokenStatus;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn token(account: &str, age: i64, period: u32, overdue: bool) -> TokenStatus {
    TokenStatus {
        account: account.into(),
        study: "heart".into(),
        site: Some("a".into()),
        secret: format!("redcap/{account}"),
        fingerprint: Some(format!("fp1:{account}")),
        token_version: Some("1".into()),
        token_set_at: Some(ts("2026-01-01T00:00:00Z")),
        age_days: Some(age),
        rotate_every_days: period,
        due: Some(ts("2026-04-01T00:00:00Z")),
        overdue,
        open_rotation: None,
        last_rotation: None,
    }
}

fn entry(seq: u64, at: &str, kind: EntryKind) -> Entry {
    Entry {
        seq,
        ts: ts(at),
        kind,
    }
}

fn evidence(scan: LedgerScan, verified: Result<VerifySummary, String>) -> Evidence {
    Evidence {
        generated_at: ts("2026-05-01T12:00:00Z"),
        config_path: "/srv/warden.toml".into(),
        redcap_time_zone: "Europe/Berlin".into(),
        tokens: vec![
            token("heart-a", 10, 90, false),
            token("heart-<b>", 120, 90, true),
        ],
        rights: RightsView::Unavailable {
            reason: "REDCap at http://127.0.0.1:1 does not answer".into(),
        },
        reauth: Vec::new(),
        ledger: LedgerView {
            place: "/srv/ledger".into(),
            verifier_key: "warden+abc".into(),
            verified,
            latest_checkpoint: Some("origin\n3\nroot=\n\n— warden sig\n".into()),
            how: super::VerifiedHow::Full,
            changed: None,
        },
        scan,
        keys: Vec::new(),
        live: None,
    }
}

fn ok() -> Result<VerifySummary, String> {
    Ok(VerifySummary {
        entries: 3,
        checkpoints: 1,
        anchored: 3,
        unanchored: 0,
        root: "00".into(),
    })
}

#[test]
fn the_scan_keeps_the_latest_reconcile_and_rights_check_per_study() {
    let mut scan = LedgerScan::default();
    let rec = |findings, summary: &str| EntryKind::Reconcile {
        window_start: "2026-05-01T00:00:00Z".into(),
        window_end: "2026-05-01T01:00:00Z".into(),
        findings,
        summary: summary.into(),
    };
    scan.push(&entry(
        0,
        "2026-05-01T10:00:00Z",
        rec(2, "study heart: 2 finding(s)"),
    ));
    scan.push(&entry(
        1,
        "2026-05-01T10:01:00Z",
        rec(0, "study heart: 0 finding(s)"),
    ));
    scan.push(&entry(
        2,
        "2026-05-01T10:02:00Z",
        rec(1, "study lung: 1 finding(s)"),
    ));
    scan.push(&entry(
        3,
        "2026-05-01T10:03:00Z",
        EntryKind::Rights {
            operator: "alice".into(),
            account: "*".into(),
            project: "heart".into(),
            changes: vec!["check: 4 finding(s), digest sha256:ab".into()],
            reason: "rights check".into(),
        },
    ));
    scan.push(&entry(
        4,
        "2026-05-01T10:03:30Z",
        EntryKind::Denied {
            source: "127.0.0.1".into(),
            client: None,
            reason: "unknown key".into(),
            count: 3,
        },
    ));
    assert_eq!(scan.reconciles["heart"].findings, 0);
    assert_eq!(scan.reconciles["lung"].findings, 1);
    assert_eq!(scan.rights_checks["heart"].findings, 4);
    assert_eq!(scan.denied_total, 3);
    assert_eq!(scan.entries, 5);
}

#[test]
fn a_reconcile_discrepancy_or_a_failed_verification_is_critical_an_overdue_token_is_not() {
    let clean = evidence(LedgerScan::default(), ok());
    let found = clean.findings();
    assert!(
        found
            .iter()
            .any(|f| f.section == sections::TOKENS && f.severity == Severity::High)
    );
    assert!(
        found
            .iter()
            .any(|f| f.section == sections::RIGHTS && f.text.contains("could not be checked"))
    );
    assert!(!clean.has_critical());

    let failed = evidence(LedgerScan::default(), Err("leaf 2 changed".into()));
    assert!(failed.has_critical());
    assert_eq!(failed.findings()[0].section, sections::LEDGER);

    let mut scan = LedgerScan::default();
    scan.push(&entry(
        0,
        "2026-05-01T10:00:00Z",
        EntryKind::Reconcile {
            window_start: "a".into(),
            window_end: "b".into(),
            findings: 1,
            summary: "study heart: 1 finding(s) (token-event 1)".into(),
        },
    ));
    assert!(evidence(scan, ok()).has_critical());
}

#[test]
fn the_page_is_self_contained_escaped_and_names_every_section() {
    let mut scan = LedgerScan::default();
    for (i, m) in ["10:00", "10:01", "10:07"].iter().enumerate() {
        scan.push(&entry(
            i as u64,
            &format!("2026-05-01T{m}:00Z"),
            EntryKind::Alert {
                code: "x".into(),
                message: "<script>alert(1)</script>".into(),
            },
        ));
    }
    let e = evidence(scan, ok());
    let page = render(
        &e,
        &Page {
            title: "Compliance report".into(),
            refresh_seconds: None,
        },
    );
    for id in [
        "findings",
        "tokens",
        "rotations",
        "rights",
        "reauth",
        "ledger",
        "reconcile",
        "keys",
        "activity",
        "reviews",
        "compliance",
    ] {
        assert!(page.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    assert!(!page.contains("<script"), "no script, and text is escaped");
    assert!(page.contains("heart-&lt;b&gt;"));
    assert!(!page.contains("<link") && !page.contains("src=") && !page.contains("url("));
    assert!(page.contains("<svg"), "charts are inline SVG");
    assert!(page.contains("fp1:heart-a"));
    assert!(page.contains("— warden sig"), "the checkpoint's text");
    assert_eq!(compliance::requirements(&e).len(), 10);
    assert!(!page.contains("http-equiv=\"refresh\""));
}
