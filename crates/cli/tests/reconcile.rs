//! `reconcile` end to end against redcap-sandbox: a study with a site
//! account, a rights manager and a log reader; calls through the gateway
//! reconcile clean; a record export made straight against the sandbox
//! with the site account's token (the bypass) is found, and nothing else.
//! A token regenerated in REDCap (whose log then holds the old value) is
//! a finding named by fingerprint. No token value ever appears in the
//! output or the ledger.

mod common;

use std::time::Duration;

use common::study::{Study, next_minute, study};
use common::{Serving, text, warden};
use serde_json::{Value, json};
use std::path::Path;

/// `reconcile` with `extra` arguments: its exit code and JSON report;
/// no token may appear in anything it printed.
fn reconcile(dir: &Path, since: &str, tokens: &[&str]) -> (i32, Value, String) {
    let out = warden(dir, &["reconcile", "--since", since, "--json"], None);
    let all = text(&out);
    for t in tokens {
        assert!(!all.contains(t), "a token value was printed:\n{all}");
        assert!(
            !all.contains(&t.to_lowercase()),
            "a token value was printed:\n{all}"
        );
    }
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, all)
}

#[test]
fn reconcile_is_clean_through_the_gateway_and_finds_the_bypass() {
    let Study {
        _tmp,
        dir,
        s,
        pid,
        site,
        tokens,
        key,
        port,
    } = study("");
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let since = next_minute();
    let serving = Serving::start(&dir, port);
    let gateway = format!("http://127.0.0.1:{port}/api/");
    for params in [
        &[
            ("token", key.as_str()),
            ("content", "record"),
            ("format", "json"),
        ][..],
        &[
            ("token", key.as_str()),
            ("content", "metadata"),
            ("format", "json"),
        ][..],
    ] {
        let (status, body) = s.post(&gateway, params);
        assert_eq!(status, 200, "{body}");
    }

    // Through the gateway only: clean.
    let (code, report, all) = reconcile(&dir, &since, &tokens);
    assert_eq!(code, 0, "{all}");
    let study = &report["studies"][0];
    assert_eq!(study["study"], "heart", "{all}");
    assert_eq!(study["findings"], json!([]), "{all}");
    assert!(study["forwarded"].as_u64().unwrap() >= 2, "{all}");

    // The bypass: the site account's own token, straight at REDCap.
    s.api(&[("token", &site), ("content", "record"), ("format", "json")]);
    let (code, report, all) = reconcile(&dir, &since, &tokens);
    assert_eq!(code, 1, "{all}");
    let findings = report["studies"][0]["findings"].as_array().unwrap().clone();
    assert_eq!(findings.len(), 1, "{all}");
    assert_eq!(findings[0]["code"], "unexplained-api-activity", "{all}");
    assert_eq!(findings[0]["account"], "heart-site-a", "{all}");
    assert_eq!(findings[0]["severity"], "critical", "{all}");
    assert!(
        findings[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("Data export (API)")),
        "{all}"
    );
    assert!(
        findings[0]["detail"]
            .as_str()
            .unwrap()
            .contains("1 call(s) have no forwarded request"),
        "{all}"
    );

    // The token regenerated in REDCap: its log now holds the old value;
    // reconcile names it by fingerprint and never repeats it.
    let regen = s.admin(
        &format!("/sandbox/projects/{pid}/users/svc_site_a/token/regenerate"),
        None,
    );
    let new = regen["token"].as_str().unwrap().to_string();
    let mut all_tokens = tokens.clone();
    all_tokens.push(&new);
    let (code, report, all) = reconcile(&dir, &since, &all_tokens);
    assert_eq!(code, 1, "{all}");
    let findings = report["studies"][0]["findings"].as_array().unwrap();
    let event = findings
        .iter()
        .find(|f| f["code"] == "token-event")
        .unwrap_or_else(|| panic!("no token event in {all}"));
    assert_eq!(event["account"], "heart-site-a");
    let row = event["rows"][0].as_str().unwrap();
    assert!(row.contains("Replaced token = fp"), "{row}");
    drop(serving);

    // The API-only check of `rights check`: clean for UI use until the site
    // account views a page of the web UI and uses the API Playground.
    let rights = |tokens: &[&str]| {
        let out = warden(&dir, &["rights", "check", "--json"], None);
        let all = text(&out);
        for t in tokens {
            assert!(!all.contains(t), "a token value was printed:\n{all}");
        }
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let codes: Vec<String> = report[0]["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("{all}"))
            .iter()
            .map(|f| format!("{} {}", f["code"].as_str().unwrap(), f["account"]))
            .collect();
        (out.status.code().unwrap_or(-1), codes, all)
    };
    let (_, codes, all) = rights(&all_tokens);
    assert!(
        !codes
            .iter()
            .any(|c| c.starts_with("ui-") || c.starts_with("api-playground")),
        "{all}"
    );
    assert!(!codes.iter().any(|c| c.contains("heart-log")), "{all}");
    s.admin(
        &format!("/sandbox/projects/{pid}/page-view"),
        Some(json!({"username": "svc_site_a"})),
    );
    s.api(&[
        ("token", &new),
        ("content", "metadata"),
        ("format", "json"),
        ("playground", "1"),
    ]);
    let (code, codes, all) = rights(&all_tokens);
    assert_eq!(code, 1, "{all}");
    for want in [
        "ui-page-view \"heart-site-a\"",
        "api-playground \"heart-site-a\"",
    ] {
        assert!(codes.iter().any(|c| c == want), "{want} missing: {all}");
    }

    // Each run is a reconcile entry; nothing of the ledger holds a token.
    let tail = warden(&dir, &["ledger", "tail", "--count", "50"], None);
    let tail_text = text(&tail);
    assert!(tail_text.matches("reconcile").count() >= 3, "{tail_text}");
    for entry in std::fs::read_dir(dir.join("data/ledger"))
        .unwrap()
        .flatten()
    {
        let bytes = std::fs::read(entry.path()).unwrap();
        let body = String::from_utf8_lossy(&bytes);
        for t in &all_tokens {
            assert!(!body.contains(t), "a token in {}", entry.path().display());
        }
    }
    let verify = warden(&dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
}

/// `serve` reconciles on its own (`[reconcile] every_minutes`): a record
/// export made straight against REDCap just before the gateway starts is in
/// the first scheduled run's window, which records a `reconcile` entry and
/// raises an `alert`. The series resumes where the ledger's last reconcile
/// of the study ended (here a run by hand up to five minutes ago), so a
/// restart leaves no span uncovered.
#[test]
fn serve_reconciles_on_a_schedule_and_raises_an_alert() {
    let study = study("\n[reconcile]\ntolerance_seconds = 1\nevery_minutes = 1\n");
    let s = &study.s;
    s.api(&[
        ("token", &study.site),
        ("content", "record"),
        ("format", "json"),
    ]);
    let now = jiff::Timestamp::now();
    let ended = jiff::Timestamp::from_second(now.as_second() - 300).unwrap();
    let began = jiff::Timestamp::from_second(now.as_second() - 600).unwrap();
    warden(
        &study.dir,
        &[
            "reconcile",
            "--since",
            &began.to_string(),
            "--until",
            &ended.to_string(),
        ],
        None,
    );
    std::thread::sleep(Duration::from_secs(2));
    let _serving = Serving::start(&study.dir, study.port);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let tail = loop {
        let out = warden(&study.dir, &["ledger", "tail", "-n", "200"], None);
        let tail = text(&out);
        if tail.contains("reconcile.findings") {
            break tail;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled reconcile alert:\n{tail}"
        );
        std::thread::sleep(Duration::from_secs(5));
    };
    assert!(tail.contains("unexplained-api-activity"), "{tail}");
    let resumed = format!(r#""window_start":"{ended}""#);
    assert!(
        tail.matches(&resumed).count() == 1 && tail.contains(&format!(r#""window_end":"{ended}""#)),
        "the scheduled run does not resume at {ended}:\n{tail}"
    );
    for t in &study.tokens {
        assert!(!tail.contains(t.as_str()), "a token in the ledger:\n{tail}");
    }
}
