//! `validation-pack --out DIR` against JUnit reports made here: a whole
//! run gives a pack with every requirement met and the binary's SHA-256;
//! a failed, skipped or missing mapped test makes it say NOT MET and exit 1.

mod common;

use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};

/// Every test the built-in mapping names, as (binary id, test name).
fn mapped() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/validation/requirements.toml"),
    )
    .unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for r in doc["requirement"].as_array().unwrap() {
        for t in r["tests"].as_array().unwrap() {
            let (b, n) = t.as_str().unwrap().split_once(' ').unwrap();
            out.push((b.to_string(), n.to_string()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A JUnit report as nextest writes it, with `status` of each test
/// (`None`: left out).
fn junit(tests: &[(String, String)], status: impl Fn(&str) -> Option<&'static str>) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nextest-run\" timestamp=\"2026-12-07T11:00:00.000+00:00\">\n<testsuite name=\"all\">\n",
    );
    for (b, n) in tests {
        match status(n) {
            None => {}
            Some("pass") => {
                s +=
                    &format!("<testcase name=\"{n}\" classname=\"{b}\" time=\"0.25\"></testcase>\n")
            }
            Some("fail") => {
                s += &format!(
                    "<testcase name=\"{n}\" classname=\"{b}\" time=\"1.0\"><failure type=\"test failure\">panicked</failure></testcase>\n"
                )
            }
            Some(_) => {
                s += &format!("<testcase name=\"{n}\" classname=\"{b}\"><skipped/></testcase>\n")
            }
        }
    }
    s + "</testsuite>\n</testsuites>\n"
}

#[test]
fn the_pack_names_every_requirement_and_fails_on_a_failed_or_missing_test() {
    let dir = tempfile::tempdir().unwrap();
    let tests = mapped();
    assert!(tests.len() >= 10);
    let report = dir.path().join("junit.xml");

    // Every mapped test passed: exit 0, every file written.
    std::fs::write(&report, junit(&tests, |_| Some("pass"))).unwrap();
    let out = warden(
        dir.path(),
        &["validation-pack", "--out", "pack", "--junit", "junit.xml"],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pack = dir.path().join("pack");
    for f in [
        "matrix.md",
        "matrix.html",
        "results.json",
        "results.xml",
        "requirements.toml",
        "binary.sha256",
    ] {
        assert!(pack.join(f).is_file(), "{f} is missing");
    }
    let md = std::fs::read_to_string(pack.join("matrix.md")).unwrap();
    for id in ["R01", "R05", "R10"] {
        assert!(md.contains(&format!("| {id} ")), "{md}");
    }
    assert!(md.contains("Requirements met**: 10 of 10"), "{md}");
    assert!(!md.contains("NOT MET"));
    let html = std::fs::read_to_string(pack.join("matrix.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("a_canary_token_leaks_nowhere"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    // binary.sha256 is the real binary's hash, in sha256sum's format.
    let line = std::fs::read_to_string(pack.join("binary.sha256")).unwrap();
    let (hash, path) = line.trim_end().split_once("  ").unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(hash, hex::encode(Sha256::digest(&bytes)));
    assert!(md.contains(hash));
    assert!(md.contains(&format!("redcap-warden {}", env!("CARGO_PKG_VERSION"))));

    // One failed, one skipped, one missing: exit 1, each named.
    let (failed, skipped, missing) = (&tests[0].1, &tests[1].1, &tests[2].1);
    std::fs::write(
        &report,
        junit(&tests, |n| match n {
            n if n == failed => Some("fail"),
            n if n == skipped => Some("skip"),
            n if n == missing => None,
            _ => Some("pass"),
        }),
    )
    .unwrap();
    let out = warden(
        dir.path(),
        &["validation-pack", "--out", "pack2", "--junit", "junit.xml"],
        None,
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("NOT MET"), "{said}");
    assert!(
        said.contains(&format!("FAILED {} {failed}", tests[0].0)),
        "{said}"
    );
    assert!(
        said.contains(&format!("SKIPPED {} {skipped}", tests[1].0)),
        "{said}"
    );
    assert!(
        said.contains(&format!("NOT RUN {} {missing}", tests[2].0)),
        "{said}"
    );
    let md = std::fs::read_to_string(dir.path().join("pack2/matrix.md")).unwrap();
    assert!(md.contains("**NOT MET**"), "{md}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pack2/results.json")).unwrap())
            .unwrap();
    let statuses: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["results"].as_array().unwrap())
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    for s in ["failed", "skipped", "not-run", "passed"] {
        assert!(statuses.contains(&s), "{statuses:?}");
    }

    // No report: a clear error naming what to do.
    let out = warden(
        dir.path(),
        &["validation-pack", "--out", "pack3", "--junit", "none.xml"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("run the tests first"), "{}", text(&out));
}
