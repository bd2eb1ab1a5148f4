//! `ledger rotate-key` killed (SIGKILL, through the test-only
//! `REDCAP_WARDEN_FAULT` switch) after the new key is stored and before
//! the rotation is finished: the next command that opens the ledger
//! finishes the rotation or rolls it back by itself, records that in the
//! ledger, and the ledger verifies. For the file ledger and PostgreSQL
//! (`WARDEN_TEST_DATABASE_URL`, set by scripts/test).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use assert_cmd::cargo::CommandCargoExt;
use common::{init, text, warden};
use serde_json::Value;

/// Where the rotation is killed (see governance::signing_key).
#[derive(Clone, Copy)]
enum KilledAt {
    /// The new key is `pending` and recorded; the ledger has not rotated.
    Staged,
    /// The ledger signs with the new key; the store's `current` and the
    /// pin in warden.toml are still the old ones.
    Rotated,
}

impl KilledAt {
    fn point(self) -> &'static str {
        match self {
            KilledAt::Staged => "signing-key-staged",
            KilledAt::Rotated => "signing-key-rotated",
        }
    }
}

fn pinned(dir: &Path) -> String {
    let toml = std::fs::read_to_string(dir.join("warden.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("verifier_key = "))
        .expect("a pinned key")
        .trim_matches('"')
        .to_string()
}

fn key_labels(dir: &Path) -> Vec<Vec<String>> {
    let out = warden(
        dir,
        &["secrets", "history", "warden/ledger-signing-key", "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|version| {
            version["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

fn verify(dir: &Path) {
    let out = warden(dir, &["ledger", "verify"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

fn put_secret(dir: &Path, name: &str) {
    let out = warden(
        dir,
        &[
            "secrets",
            "put",
            name,
            "--reason",
            "a change after the crash",
        ],
        Some("AAAABBBBCCCCDDDDEEEEFFFF00001111"),
    );
    assert!(out.status.success(), "{}", text(&out));
}

fn killed_rotation_recovers(dir: &Path, at: KilledAt) {
    let before = pinned(dir);
    let out = std::process::Command::cargo_bin("redcap-warden")
        .unwrap()
        .current_dir(dir)
        .args(["ledger", "rotate-key", "--reason", "annual rotation"])
        .env("REDCAP_WARDEN_FAULT", at.point())
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "rotate-key was not killed at {}: {}",
        at.point(),
        text(&out)
    );
    assert_eq!(pinned(dir), before, "nothing pinned yet");
    assert_eq!(
        key_labels(dir)[..2],
        [vec!["pending".to_string()], vec!["current".to_string()]],
        "the new key is left pending"
    );

    // The next command that opens the ledger settles the rotation itself.
    put_secret(dir, "redcap/after-crash");
    let labels = key_labels(dir);
    let tail = String::from_utf8_lossy(&warden(dir, &["ledger", "tail", "-n", "4"], None).stdout)
        .to_string();
    match at {
        KilledAt::Staged => {
            assert_eq!(pinned(dir), before, "a rolled-back key is never pinned");
            assert!(labels[0].is_empty(), "pending removed: {labels:?}");
            assert_eq!(labels[1], ["current"], "the old key signs on");
            assert!(tail.contains("rotate rolled back"), "{tail}");
        }
        KilledAt::Rotated => {
            assert_ne!(pinned(dir), before, "the new key is pinned");
            assert_eq!(labels[0], ["current"], "{labels:?}");
            assert_eq!(labels[1], ["previous"], "{labels:?}");
            assert!(tail.contains("rotate finished"), "{tail}");
        }
    }
    assert!(tail.contains("a change after the crash"), "{tail}");
    verify(dir);

    // And the key rotates again as usual; with PostgreSQL once the killed
    // process's signer lease has lapsed (it could not give it up).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let again = loop {
        let out = warden(
            dir,
            &["ledger", "rotate-key", "--reason", "after recovery"],
            None,
        );
        if out.status.success()
            || !text(&out).contains("holds the checkpoint signer lease")
            || std::time::Instant::now() > deadline
        {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("now pins"), "{}", text(&again));
    put_secret(dir, "redcap/after-rotation");
    verify(dir);
}

#[test]
fn a_rotation_killed_before_the_ledger_rotates_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "http://127.0.0.1:8080/api/");
    killed_rotation_recovers(dir.path(), KilledAt::Staged);
}

#[test]
fn a_rotation_killed_after_the_ledger_rotates_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "http://127.0.0.1:8080/api/");
    killed_rotation_recovers(dir.path(), KilledAt::Rotated);
}

/// An installation whose ledger is in PostgreSQL (a fresh schema), or
/// `None` when no test database is configured.
fn postgres_installation(test: &str) -> Option<tempfile::TempDir> {
    let url = common::cluster::database(test)?;
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "http://127.0.0.1:8080/api/");
    let path = dir.path().join("warden.toml");
    let toml = std::fs::read_to_string(&path).unwrap().replacen(
        "[ledger]\n",
        "[ledger]\nbackend = \"postgres\"\n",
        1,
    );
    let schema = format!("rotation_{}_{test}", std::process::id());
    std::fs::write(
        &path,
        format!("{toml}\n[ledger.postgres]\nurl = \"{url}\"\nschema = \"{schema}\"\n"),
    )
    .unwrap();
    // The first writer moves the file ledger `init` wrote into the database.
    put_secret(dir.path(), "redcap/before");
    Some(dir)
}

#[test]
fn postgres_a_rotation_killed_before_the_ledger_rotates_is_rolled_back() {
    if let Some(dir) = postgres_installation("staged") {
        killed_rotation_recovers(dir.path(), KilledAt::Staged);
    }
}

#[test]
fn postgres_a_rotation_killed_after_the_ledger_rotates_is_finished() {
    if let Some(dir) = postgres_installation("rotated") {
        killed_rotation_recovers(dir.path(), KilledAt::Rotated);
    }
}
