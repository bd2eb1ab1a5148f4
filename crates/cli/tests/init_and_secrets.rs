//! `init` and `secrets put | list | history | check`, run as an operator
//! would, with a canary token scanned for everywhere afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use canary::Canary;
use common::{text, warden};

fn init(dir: &Path) -> Output {
    warden(
        dir,
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:8080/api/",
            "--time-zone",
            "Europe/Berlin",
        ],
        None,
    )
}

fn os_login() -> String {
    String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string()
}

#[test]
fn init_creates_a_working_setup_and_refuses_to_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let out = init(dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Back up"), "{}", text(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data/identity.txt"), 0o600);
    assert_eq!(mode("data"), 0o700);
    let check = warden(dir.path(), &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    let check = warden(dir.path(), &["secrets", "check"], None);
    assert!(check.status.success(), "{}", text(&check));

    let before = std::fs::read(dir.path().join("data/secrets.age")).unwrap();
    let again = init(dir.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    assert_eq!(
        std::fs::read(dir.path().join("data/secrets.age")).unwrap(),
        before,
        "init touched an existing store"
    );
}

#[test]
fn init_with_a_bad_url_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(
        dir.path(),
        &[
            "init",
            "--redcap-url",
            "http://redcap.example.org/",
            "--time-zone",
            "UTC",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("redcap.url"), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "init left files behind"
    );
}

#[test]
fn init_refuses_an_existing_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/keep.txt"), "precious").unwrap();
    let out = init(dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/keep.txt")).unwrap(),
        "precious"
    );
    assert!(!dir.path().join("warden.toml").exists());
}

#[test]
fn put_list_history_never_print_the_value_and_record_the_os_login() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path()).status.success());
    let canary = Canary::redcap_token();
    let mut outputs = Vec::new();

    let put = warden(
        dir.path(),
        &[
            "--operator",
            "Dr. Ada Smith",
            "secrets",
            "put",
            "redcap/site-a/etl",
            "--reason",
            "initial token for site A",
        ],
        Some(&format!("{}\n", canary.value())),
    );
    assert!(put.status.success(), "{}", text(&put));
    assert!(text(&put).contains("as current (fp1:"), "{}", text(&put));
    outputs.push(put);

    let list = warden(dir.path(), &["secrets", "list"], None);
    assert!(text(&list).contains("redcap/site-a/etl"), "{}", text(&list));
    outputs.push(list);

    let history = warden(
        dir.path(),
        &["secrets", "history", "redcap/site-a/etl", "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let operator = v[0]["meta"]["operator"].as_str().unwrap();
    assert_eq!(operator, format!("{} as \"Dr. Ada Smith\"", os_login()));
    assert_eq!(v[0]["meta"]["reason"], "initial token for site A");
    assert_eq!(v[0]["labels"][0], "current");
    outputs.push(history);

    let pending = warden(
        dir.path(),
        &[
            "secrets",
            "put",
            "redcap/site-a/etl",
            "--reason",
            "rotation",
            "--label",
            "pending",
        ],
        Some("0123456789ABCDEF0123456789ABCDE1"),
    );
    assert!(pending.status.success(), "{}", text(&pending));
    let list = warden(dir.path(), &["secrets", "list", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["current"]["version"], "1");
    assert_eq!(v[0]["pending"], "2");
    outputs.push(list);

    for o in &outputs {
        canary.assert_clean(&canary.find("command output", &o.stdout));
        canary.assert_clean(&canary.find("command errors", &o.stderr));
    }
    let allowed: Vec<PathBuf> = vec![dir.path().join("data/secrets.age")];
    canary.assert_clean(&canary.scan_dir(dir.path(), &allowed));
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path()).status.success());
    for (args, stdin, needle) in [
        (
            vec!["secrets", "put", "Bad Name", "--reason", "x"],
            "v",
            "lower-case letters",
        ),
        (
            vec!["secrets", "put", "warden/fingerprint-key", "--reason", "x"],
            "v",
            "reserved",
        ),
        (
            vec!["secrets", "put", "ok", "--reason", "  "],
            "v",
            "--reason is empty",
        ),
        (
            vec!["secrets", "put", "ok", "--reason", "x"],
            "",
            "the value is empty",
        ),
        (
            vec!["secrets", "put", "ok", "--reason", "x"],
            "a\nb\n",
            "control characters",
        ),
        (
            vec!["secrets", "history", "nope"],
            "",
            "no secret named `nope`",
        ),
    ] {
        let out = warden(dir.path(), &args, Some(stdin));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}

#[test]
fn a_damaged_setup_is_reported_by_check_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path()).status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("data/identity.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = warden(dir.path(), &["secrets", "check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
}

#[test]
fn every_change_is_in_the_ledger_and_verify_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path()).status.success());
    let put = warden(
        dir.path(),
        &["secrets", "put", "redcap/x", "--reason", "because"],
        Some("AAAABBBBCCCCDDDDEEEEFFFF00001111"),
    );
    assert!(put.status.success(), "{}", text(&put));

    let tail = warden(dir.path(), &["ledger", "tail"], None);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["header", "admin", "key", "secret", "secret", "secret"]
    );
    let last = lines.last().unwrap();
    assert_eq!(last["name"], "redcap/x");
    assert_eq!(last["reason"], "because");
    assert_eq!(last["operator"], os_login());
    assert!(last["fingerprint"].as_str().unwrap().starts_with("fp1:"));

    let verify = warden(dir.path(), &["ledger", "verify", "--json"], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["entries"], 6);
    assert_eq!(v["unanchored"], 0, "closing a command signs a checkpoint");

    // Flip one byte of the reason of the last entry.
    let seg = std::fs::read_dir(dir.path().join("data/ledger"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let content = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, content.replace("\"because\"", "\"becausf\"")).unwrap();
    let verify = warden(dir.path(), &["ledger", "verify"], None);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(text(&verify).contains("FAILED"), "{}", text(&verify));
}

#[test]
fn verify_refuses_a_checkpoint_from_another_key() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(init(a.path()).status.success());
    assert!(init(b.path()).status.success());
    let other = warden(b.path(), &["ledger", "public-key", "--json"], None);
    let key: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    let verify = warden(
        a.path(),
        &[
            "ledger",
            "verify",
            "--key",
            key["verifier_key"].as_str().unwrap(),
        ],
        None,
    );
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    assert!(text(&verify).contains("(--key)"), "{}", text(&verify));
}

#[test]
fn the_signing_key_rotates_and_the_ledger_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path()).status.success());
    let before = std::fs::read_to_string(dir.path().join("warden.toml")).unwrap();
    let out = warden(
        dir.path(),
        &["ledger", "rotate-key", "--reason", "annual rotation"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let after = std::fs::read_to_string(dir.path().join("warden.toml")).unwrap();
    assert_ne!(before, after, "the new verifier key is pinned");
    assert!(text(&out).contains("now pins"), "{}", text(&out));
    // Later changes are signed with the new key; the whole chain verifies.
    let put = warden(
        dir.path(),
        &["secrets", "put", "redcap/x", "--reason", "after"],
        Some("AAAABBBBCCCCDDDDEEEEFFFF00001111"),
    );
    assert!(put.status.success(), "{}", text(&put));
    let verify = warden(dir.path(), &["ledger", "verify"], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let tail =
        String::from_utf8_lossy(&warden(dir.path(), &["ledger", "tail", "-n", "3"], None).stdout)
            .to_string();
    assert!(
        tail.contains("\"action\":\"rotate\"") && tail.contains("annual rotation"),
        "{tail}"
    );
    let hist = warden(
        dir.path(),
        &["secrets", "history", "warden/ledger-signing-key", "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&hist.stdout).unwrap();
    assert_eq!(v[0]["labels"][0], "current");
    assert_eq!(v[1]["labels"][0], "previous", "the old key stays reachable");
}
