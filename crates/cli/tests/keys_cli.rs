//! `keys issue | list | revoke` as an operator runs them.

mod common;

use common::{text, warden as run};

fn warden(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    run(dir, args, None)
}

const CLIENTS: &str = r#"
[[study]]
name = "heart"

[[account]]
name = "heart-etl"
username = "svc_heart_etl"
secret = "redcap/heart/etl"
study = "heart"

[[client]]
name = "etl"
account = "heart-etl"
allow = ["record:export"]
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(
        dir.path(),
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:1/api/",
            "--time-zone",
            "UTC",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let cfg = dir.path().join("warden.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(CLIENTS);
    std::fs::write(cfg, text).unwrap();
    dir
}

#[test]
fn issue_to_a_file_then_reissue_with_overlap_then_revoke() {
    let dir = setup();
    let out = warden(
        dir.path(),
        &[
            "keys",
            "issue",
            "etl",
            "--to-file",
            "etl.key",
            "--reason",
            "first deployment",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let key = std::fs::read_to_string(dir.path().join("etl.key")).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.path().join("etl.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!text(&out).contains(key), "the key was printed");

    let again = warden(
        dir.path(),
        &[
            "keys",
            "issue",
            "etl",
            "--to-file",
            "etl2.key",
            "--reason",
            "rotation",
        ],
    );
    assert!(
        text(&again).contains("keeps working until"),
        "{}",
        text(&again)
    );

    let list = warden(dir.path(), &["keys", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v.as_array().unwrap().iter().all(|k| k["state"] == "active"));
    let id = v[0]["key"]["id"].as_str().unwrap().to_string();

    let revoke = warden(
        dir.path(),
        &["keys", "revoke", &id, "--reason", "laptop stolen"],
    );
    assert!(revoke.status.success(), "{}", text(&revoke));
    let list = warden(dir.path(), &["keys", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["state"], "revoked");

    let tail = warden(dir.path(), &["ledger", "tail", "-n", "3"]);
    let t = String::from_utf8_lossy(&tail.stdout).to_string();
    assert!(
        t.contains("\"action\":\"issue\"")
            && t.contains("\"action\":\"revoke\"")
            && t.contains("laptop stolen"),
        "{t}"
    );
    for file in ["data/client-keys.json", "warden.toml"] {
        let content = std::fs::read_to_string(dir.path().join(file)).unwrap();
        assert!(!content.contains(key), "{file} holds the key");
    }
    assert!(!t.contains(key));
    assert_eq!(
        warden(dir.path(), &["ledger", "verify"]).status.code(),
        Some(0)
    );
}

#[test]
fn issue_into_the_secrets_store() {
    let dir = setup();
    let out = warden(
        dir.path(),
        &[
            "keys",
            "issue",
            "etl",
            "--to-store",
            "clients/etl",
            "--reason",
            "ci",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let hist = warden(dir.path(), &["secrets", "history", "clients/etl"]);
    assert!(text(&hist).contains("client key k-"), "{}", text(&hist));
}

#[test]
fn refusals_are_clear() {
    let dir = setup();
    std::fs::write(dir.path().join("taken.key"), "x").unwrap();
    for (args, needle) in [
        (
            vec![
                "keys",
                "issue",
                "nobody",
                "--to-file",
                "n.key",
                "--reason",
                "x",
            ],
            "no [[client]] named `nobody`",
        ),
        (
            vec![
                "keys",
                "issue",
                "etl",
                "--to-file",
                "taken.key",
                "--reason",
                "x",
            ],
            "already exists",
        ),
        (
            vec!["keys", "revoke", "k-00000000", "--reason", "x"],
            "no client key `k-00000000`",
        ),
        (vec!["keys", "issue", "etl", "--reason", "x"], "--to-file"),
    ] {
        let out = warden(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken.key")).unwrap(),
        "x"
    );
}

#[test]
fn a_quarantined_account_is_listed_and_released_with_a_reason() {
    let dir = setup();
    let status = dir.path().join("data/account-status.json");
    std::fs::write(
        &status,
        r#"{"format":"redcap-warden/account-status/1","quarantined":{"heart-etl":{"since":"2026-11-28T10:00:00Z","reason":"DAG column seen","by":"gateway"}}}"#,
    )
    .unwrap();
    let list = warden(dir.path(), &["accounts", "list"]);
    assert_eq!(list.status.code(), Some(1), "{}", text(&list));
    assert!(text(&list).contains("QUARANTINED"), "{}", text(&list));
    let rel = warden(
        dir.path(),
        &[
            "accounts",
            "release",
            "heart-etl",
            "--reason",
            "DAG restored in REDCap",
        ],
    );
    assert!(rel.status.success(), "{}", text(&rel));
    let list = warden(dir.path(), &["accounts", "list"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let tail = String::from_utf8_lossy(&warden(dir.path(), &["ledger", "tail", "-n", "1"]).stdout)
        .to_string();
    assert!(
        tail.contains("release quarantine")
            && tail.contains("DAG restored in REDCap")
            && tail.contains("DAG column seen"),
        "{tail}"
    );
    let again = warden(
        dir.path(),
        &["accounts", "release", "heart-etl", "--reason", "x"],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("not quarantined"), "{}", text(&again));
}

/// `[paths] data_dir` places every file of the tool's own: an installation
/// whose data directory was moved keeps working once the key names it.
#[test]
fn a_moved_data_directory_is_followed_by_every_command() {
    let dir = setup();
    std::fs::rename(dir.path().join("data"), dir.path().join("state")).unwrap();
    let cfg = dir.path().join("warden.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        toml.contains("\ndata_dir = \"data\"\n"),
        "init writes it: {toml}"
    );
    std::fs::write(
        &cfg,
        toml.replace("data_dir = \"data\"", "data_dir = \"state\""),
    )
    .unwrap();
    let out = warden(
        dir.path(),
        &[
            "keys",
            "issue",
            "etl",
            "--to-file",
            "etl.key",
            "--reason",
            "moved",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("state/client-keys.json").exists());
    let out = warden(dir.path(), &["accounts", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = warden(dir.path(), &["ledger", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("state/ledger"), "{}", text(&out));
    assert!(!dir.path().join("data").exists());
}
