//! `secrets migrate --to vault|aws`: an age-file setup with history and
//! labels is copied into OpenBao / moto (started by scripts/test), read
//! back through the CLI with the new backend configured, and scanned for
//! the token everywhere the CLI wrote.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use canary::Canary;

fn server(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run the tests through scripts/test, which starts {what}")
        }
        _ => {
            eprintln!("skipped: {var} is not set; run through scripts/test to start {what}");
            None
        }
    }
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos:x}", std::process::id())
}

fn warden(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::cargo_bin("redcap-warden").unwrap();
    cmd.current_dir(dir)
        .args(args)
        .env_remove("SUDO_USER")
        // moto takes any credentials; the AWS default chain finds these.
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    if let Some(input) = stdin {
        cmd.write_stdin(input.to_string());
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Everything `history --json` says about each version except its id,
/// which is the destination's own.
fn shape(history: &serde_json::Value) -> Vec<serde_json::Value> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| serde_json::json!({"labels": v["labels"], "meta": v["meta"]}))
        .collect()
}

fn set_backend(dir: &Path, backend: &str) {
    let path = dir.join("warden.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("backend = \"file\""));
    std::fs::write(
        &path,
        text.replace("backend = \"file\"", &format!("backend = \"{backend}\"")),
    )
    .unwrap();
}

/// A file-store setup with two secrets: one with previous, current and
/// pending versions, one with a single version.
fn setup(dir: &Path, canary: &Canary, outputs: &mut Vec<Output>) {
    outputs.push(ok(warden(
        dir,
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:8080/api/",
            "--time-zone",
            "UTC",
        ],
        None,
    )));
    let token = canary.value();
    for (name, value, label, reason) in [
        (
            "redcap/site-a/etl",
            "0123456789ABCDEF0123456789ABCDE0",
            "current",
            "first",
        ),
        ("redcap/site-a/etl", token, "current", "second"),
        (
            "redcap/site-a/etl",
            "0123456789ABCDEF0123456789ABCDE2",
            "pending",
            "rotation",
        ),
        (
            "redcap/site-b/etl",
            "0123456789ABCDEF0123456789ABCDE3",
            "current",
            "site b",
        ),
    ] {
        outputs.push(ok(warden(
            dir,
            &["secrets", "put", name, "--reason", reason, "--label", label],
            Some(value),
        )));
    }
}

fn migrate_and_compare(dir: &Path, backend: &str, table: &str) {
    let canary = Canary::redcap_token();
    let mut outputs = Vec::new();
    setup(dir, &canary, &mut outputs);
    let names = [
        "redcap/site-a/etl",
        "redcap/site-b/etl",
        "warden/fingerprint-key",
    ];
    let before: Vec<_> = names
        .iter()
        .map(|n| {
            shape(&json(&ok(warden(
                dir,
                &["secrets", "history", n, "--json"],
                None,
            ))))
        })
        .collect();
    assert_eq!(before[0].len(), 3);
    // The ledger's witness is not migrated: the first writer to open with
    // the new store writes it there (docs/secrets.md).
    let names_of = |o: &Output| -> Vec<String> {
        json(o)
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .filter(|n| n != "warden/ledger-witness")
            .collect()
    };
    let listed_before = names_of(&ok(warden(dir, &["secrets", "list", "--json"], None)));

    let config = dir.join("warden.toml");
    let mut toml_text = std::fs::read_to_string(&config).unwrap();
    toml_text.push_str(table);
    std::fs::write(&config, toml_text).unwrap();

    let out = ok(warden(
        dir,
        &[
            "secrets",
            "migrate",
            "--to",
            backend,
            "--reason",
            "moving to the institution's store",
        ],
        None,
    ));
    assert!(text_of(&out).contains("Verified"), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("copied `redcap/site-a/etl` (3 versions)"),
        "{}",
        text_of(&out)
    );
    outputs.push(out);

    // Repeating it finds every copy in place and changes nothing.
    let again = ok(warden(
        dir,
        &[
            "secrets", "migrate", "--to", backend, "--reason", "again", "--json",
        ],
        None,
    ));
    let v = json(&again);
    assert!(
        v["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "already-present"),
        "{v}"
    );
    outputs.push(again);

    set_backend(dir, backend);
    let after: Vec<_> = names
        .iter()
        .map(|n| {
            shape(&json(&ok(warden(
                dir,
                &["secrets", "history", n, "--json"],
                None,
            ))))
        })
        .collect();
    assert_eq!(
        after, before,
        "history, labels and metadata survive the move"
    );
    let list = ok(warden(dir, &["secrets", "list", "--json"], None));
    assert_eq!(names_of(&list), listed_before);
    outputs.push(list);
    outputs.push(ok(warden(dir, &["secrets", "check"], None)));
    // The new store works for writing too (the fingerprint key moved).
    outputs.push(ok(warden(
        dir,
        &[
            "secrets",
            "put",
            "redcap/site-c/etl",
            "--reason",
            "after the move",
        ],
        Some("0123456789ABCDEF0123456789ABCDE4"),
    )));
    // Back to the file store as the source, a differing copy is refused.
    set_back(dir, backend);
    outputs.push(ok(warden(
        dir,
        &["secrets", "put", "redcap/site-b/etl", "--reason", "diverge"],
        Some("0123456789ABCDEF0123456789ABCDE5"),
    )));
    let refused = warden(
        dir,
        &["secrets", "migrate", "--to", backend, "--reason", "again"],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("`redcap/site-b/etl` already exists in") && err.contains("differs"),
        "{err}"
    );
    outputs.push(refused);

    for o in &outputs {
        canary.assert_clean(&canary.find("command output", &o.stdout));
        canary.assert_clean(&canary.find("command errors", &o.stderr));
    }
    canary.assert_clean(&canary.scan_dir(dir, &[dir.join("data/secrets.age")]));
}

fn text_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn set_back(dir: &Path, backend: &str) {
    let path = dir.join("warden.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(&format!("backend = \"{backend}\""), "backend = \"file\""),
    )
    .unwrap();
}

#[test]
fn file_to_vault_keeps_every_version_label_and_meta() {
    let Some(addr) = server("WARDEN_TEST_VAULT_ADDR", "OpenBao") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        "\n[secrets.vault]\naddress = \"{addr}\"\nprefix = \"test/{}\"\ntoken_env = \"WARDEN_TEST_VAULT_TOKEN\"\n",
        unique("migrate")
    );
    migrate_and_compare(dir.path(), "vault", &table);
}

#[test]
fn file_to_aws_keeps_every_version_label_and_meta() {
    let Some(endpoint) = server("WARDEN_TEST_AWS_ENDPOINT", "moto") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        "\n[secrets.aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nprefix = \"{}/\"\n",
        unique("migrate")
    );
    migrate_and_compare(dir.path(), "aws", &table);
}

#[test]
fn migrating_to_the_configured_backend_or_a_missing_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let canary = Canary::redcap_token();
    setup(dir.path(), &canary, &mut Vec::new());
    let out = warden(
        dir.path(),
        &["secrets", "migrate", "--to", "file", "--reason", "x"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("already `file`"), "{}", text(&out));
    let out = warden(
        dir.path(),
        &["secrets", "migrate", "--to", "vault", "--reason", "x"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no [secrets.vault] table"),
        "{}",
        text(&out)
    );
}
