//! `rotate` end to end against redcap-sandbox, with the gateway running:
//! a rotation from start to done (the gateway keeps serving the account,
//! with the new token), then the process killed (SIGKILL) after every
//! state and at the escrow, each time finished by `rotate resume`; the
//! manual issuer from standard input, a wrong token pasted, and a second
//! rotation of the account refused while one is in progress. At the end
//! `ledger verify` accepts the chain, and no token value — the first or any
//! of the new ones — is in any output or any file but the store.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use canary::Canary;
use common::sandbox::{ADMIN, SUPER, Sandbox};
use common::{Serving, add_config, free_port, init, issue_key, text, warden};
use serde_json::{Value, json};

const ACCOUNT: &str = "heart-site-a";

/// Whether REDCap accepts `token`.
fn works(s: &Sandbox, token: &str) -> bool {
    let (status, _) = s.call(&[("token", token), ("content", "version")]);
    status == 200
}

/// An `[sop]` whose approved copy is `approved-sop.md`.
const SOP: &str = r#"
[sop]
document_id = "SOP-T"
version = "1"
approved = "approved-sop.md"
owner = { name = "Owner", deputy = "Owner's deputy" }
approver = { name = "Approver", deputy = "Approver's deputy" }
operator = { name = "Operator", deputy = "Operator's deputy" }
redcap_admin = { name = "Admin", deputy = "Admin's deputy" }
[[sop.revision]]
version = "1"
date = "2026-12-01"
author = "Owner"
change = "first issue"
"#;

fn rotate(dir: &Path, args: &[&str], fault: Option<&str>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("redcap-warden"));
    cmd.current_dir(dir)
        .arg("rotate")
        .args(args)
        .env_remove("SUDO_USER")
        .env_remove("REDCAP_WARDEN_FAULT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(f) = fault {
        cmd.env("REDCAP_WARDEN_FAULT", f);
    }
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn status_json(dir: &Path) -> Value {
    let out = warden(dir, &["rotate", "status", "--json"], None);
    assert!(out.status.code().unwrap_or(2) < 2, "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == ACCOUNT)
        .unwrap()
        .clone()
}

#[test]
fn rotations_against_the_sandbox_end_with_one_valid_current_token() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Sandbox::start(&tmp.path().join("sandbox"));
    let (owner, pid) = s.project(None);
    for (user, rights) in [
        ("svc_site_a", json!({"api_export": 1})),
        ("svc_other", json!({"api_export": 1})),
        (
            "svc_rights",
            json!({"api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1}),
        ),
    ] {
        let mut rights = rights;
        rights["username"] = json!(user);
        rights["expiration"] = json!("2099-12-31");
        s.admin(&format!("/sandbox/projects/{pid}/users"), Some(rights));
        s.admin(&format!("/sandbox/projects/{pid}/users/{user}/token"), None);
    }
    // A token of another project, for the wrong paste.
    let (_, foreign_owner) = s.call(&[
        ("token", SUPER),
        ("content", "project"),
        ("format", "json"),
        ("data", r#"[{"project_title":"Other","purpose":2}]"#),
    ]);
    let first = s.token(pid, "svc_site_a");
    let mut tokens = vec![first.clone(), owner.clone(), foreign_owner.clone()];

    let dir = tmp.path().join("warden");
    std::fs::create_dir(&dir).unwrap();
    init(&dir, &format!("{}/api/", s.base));
    let put = warden(
        &dir,
        &[
            "secrets",
            "put",
            "redcap/heart/site-a",
            "--reason",
            "first token",
        ],
        Some(&first),
    );
    assert!(put.status.success(), "{}", text(&put));
    let manager = s.token(pid, "svc_rights");
    tokens.push(manager.clone());
    let put = warden(
        &dir,
        &[
            "secrets",
            "put",
            "redcap/heart/rights",
            "--reason",
            "rights manager",
        ],
        Some(&manager),
    );
    assert!(put.status.success(), "{}", text(&put));
    let secret_file = dir.join("sandbox-admin-secret");
    std::fs::write(&secret_file, format!("{ADMIN}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (port, admin) = (free_port(), free_port());
    add_config(
        &dir,
        &format!(
            r#"
[gateway]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"

[[study]]
name = "heart"
project_id = {pid}
rights_manager = "heart-rights"

[[account]]
name = "heart-rights"
username = "svc_rights"
secret = "redcap/heart/rights"
study = "heart"

[[account]]
name = "{ACCOUNT}"
username = "svc_site_a"
secret = "redcap/heart/site-a"
study = "heart"
profile = "site-data-read"
rotate_every_days = 30

[[account]]
name = "heart-other"
username = "svc_other"
secret = "redcap/heart/other"
study = "heart"

[[client]]
name = "app"
account = "{ACCOUNT}"
allow = ["version", "project"]
write_reason = "optional"

[rotation]
issuer = "sandbox"
sandbox_url = "{}"
sandbox_admin_secret_file = "sandbox-admin-secret"
after_switch = ["/bin/sh", "-c", "test -z \"$CARGO_MANIFEST_DIR\" && echo \"$1 $2 $3\" >> hook.log", "hook", "{{rotation_id}}", "{{account}}", "{{fingerprint}}"]
"#,
            s.base
        ),
    );
    let check = warden(&dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    // The approved SOP is of an older configuration (the account rotated
    // every 60 days): the first rotation warns and records it.
    add_config(&dir, SOP);
    let sop = warden(&dir, &["sop", "--out", "sop"], None);
    assert!(sop.status.success(), "{}", text(&sop));
    let current_sop = std::fs::read_to_string(dir.join("sop/SOP-T.md")).unwrap();
    assert!(current_sop.contains("| 30 days |"), "{current_sop}");
    std::fs::write(
        dir.join("approved-sop.md"),
        current_sop.replace("| 30 days |", "| 60 days |"),
    )
    .unwrap();
    let key = issue_key(&dir, "app");
    let through_gateway = || {
        s.post(
            &format!("http://127.0.0.1:{port}/api/"),
            &[("token", &key), ("content", "project"), ("format", "json")],
        )
    };
    let mut outputs: Vec<String> = Vec::new();

    let serving = Serving::start(&dir, port);
    assert_eq!(through_gateway().0, 200);
    let before = status_json(&dir);
    assert_eq!(before["overdue"], false, "{before}");
    assert_eq!(before["age_days"], 0, "{before}");
    assert!(before["last_rotation"].is_null());

    // 1. From start to done, the gateway holding and releasing the account,
    //    under continuous load through the gateway: no request fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, url, key) = (
            stop.clone(),
            format!("http://127.0.0.1:{port}/api/"),
            key.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let http = reqwest::Client::new();
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = rt.block_on(async {
                    let r = http
                        .post(&url)
                        .form(&[("token", key.as_str()), ("content", "version")])
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.text().await.unwrap())
                });
                if status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("{status}: {body}"));
                }
            }
            (ok, failed)
        })
    };
    let out = rotate(
        &dir,
        &["run", ACCOUNT, "--reason", "scheduled rotation"],
        None,
        None,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 0);
    let all = text(&out);
    outputs.push(all.clone());
    assert!(out.status.success(), "{all}");
    assert!(all.contains(": done"), "{all}");
    assert!(all.contains("the gateway holds the requests"), "{all}");
    assert!(all.contains("the gateway released"), "{all}");
    assert!(all.contains("ownership: unproven"), "{all}");
    assert!(all.contains("rights and DAG within its profile"), "{all}");
    assert!(all.contains("warning: the approved SOP is stale"), "{all}");
    assert!(all.contains("§ 4. Schedule"), "{all}");
    assert!(
        all.contains("sop: stale (approved-sop.md: 4. Schedule)"),
        "{all}"
    );
    // Approved again: the rotations below record nothing about the SOP.
    std::fs::write(dir.join("approved-sop.md"), &current_sop).unwrap();
    let now = s.token(pid, "svc_site_a");
    tokens.push(now.clone());
    assert_ne!(now, first);
    assert!(!works(&s, &first), "the old token is dead");
    assert_eq!(
        through_gateway().0,
        200,
        "the gateway serves with the new token"
    );
    let after = status_json(&dir);
    assert_eq!(after["last_rotation"]["state"], "done", "{after}");
    assert!(
        after["last_rotation"]["proof"]
            .as_str()
            .unwrap()
            .contains("403"),
        "{after}"
    );
    assert!(after["open_rotation"].is_null(), "{after}");

    // 2. Killed after every state and at the escrow; resume finishes.
    let points = [
        "rotation:planned",
        "rotation:escrowed",
        "rotation:obtained:unrecorded",
        "rotation:obtained",
        "rotation:verified",
        "rotation:stored",
        "rotation:switched:unrecorded",
        "rotation:switched",
        "rotation:old-revoked-verified",
    ];
    for point in points {
        let old = s.token(pid, "svc_site_a");
        let out = rotate(
            &dir,
            &["run", ACCOUNT, "--reason", "crash test"],
            Some(point),
            None,
        );
        outputs.push(text(&out));
        assert_eq!(out.status.signal(), Some(9), "{point}: {}", text(&out));
        let open = status_json(&dir)["open_rotation"].clone();
        let id = open["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{point}: {open}"));
        // A second rotation of the account is refused while one is open.
        let again = rotate(&dir, &["run", ACCOUNT, "--reason", "again"], None, None);
        outputs.push(text(&again));
        assert_eq!(again.status.code(), Some(2), "{point}");
        assert!(
            text(&again).contains("already has an open rotation"),
            "{}",
            text(&again)
        );
        let out = rotate(&dir, &["resume", id], None, None);
        let all = text(&out);
        outputs.push(all.clone());
        assert!(out.status.success(), "{point}: {all}");
        assert!(all.contains(": done"), "{point}: {all}");
        let new = s.token(pid, "svc_site_a");
        tokens.push(new.clone());
        assert_ne!(new, old, "{point}");
        assert!(!works(&s, &old), "{point}: the old token is dead");
        assert_eq!(through_gateway().0, 200, "{point}: the gateway serves");
        assert!(
            std::fs::read_dir(dir.join("data/rotation"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".escrow.age")),
            "{point}: an escrow was left behind"
        );
    }

    // 3. The manual issuer: the token from standard input (REDCap's UI
    //    regenerated it — here the sandbox's admin endpoint).
    let regenerated = s.admin(
        &format!("/sandbox/projects/{pid}/users/svc_site_a/token/regenerate"),
        None,
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    tokens.push(regenerated.clone());
    let out = rotate(
        &dir,
        &["start", ACCOUNT, "--reason", "manual", "--issuer", "manual"],
        None,
        Some(&format!("{regenerated}\n")),
    );
    let all = text(&out);
    outputs.push(all.clone());
    assert!(out.status.success(), "{all}");
    assert!(all.contains("Control Center"), "{all}");
    assert_eq!(through_gateway().0, 200);

    // 3b. While one process is in a rotation (waiting for the person),
    //     another is refused at once, by the account's lock.
    let mut waiting = Command::new(assert_cmd::cargo::cargo_bin("redcap-warden"))
        .current_dir(&dir)
        .args([
            "rotate", "start", ACCOUNT, "--reason", "slow", "--issuer", "manual",
        ])
        .env_remove("SUDO_USER")
        .env_remove("REDCAP_WARDEN_FAULT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while status_json(&dir)["open_rotation"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let busy = rotate(
        &dir,
        &["run", ACCOUNT, "--reason", "concurrent"],
        None,
        None,
    );
    outputs.push(text(&busy));
    assert_eq!(busy.status.code(), Some(2));
    assert!(
        text(&busy).contains("another redcap-warden process is rotating"),
        "{}",
        text(&busy)
    );
    let regenerated = s.admin(
        &format!("/sandbox/projects/{pid}/users/svc_site_a/token/regenerate"),
        None,
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    tokens.push(regenerated.clone());
    let mut pipe = waiting.stdin.take().unwrap();
    pipe.write_all(regenerated.as_bytes()).unwrap();
    drop(pipe);
    let out = waiting.wait_with_output().unwrap();
    outputs.push(text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(through_gateway().0, 200);

    // 4. A token of another project pasted: failed, exit 1, store untouched.
    let out = rotate(
        &dir,
        &[
            "start",
            ACCOUNT,
            "--reason",
            "wrong paste",
            "--issuer",
            "manual",
        ],
        None,
        Some(&foreign_owner),
    );
    let all = text(&out);
    outputs.push(all.clone());
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(": failed") && all.contains("not this account's token"),
        "{all}"
    );
    assert_eq!(through_gateway().0, 200, "the current token is unchanged");
    let failed = status_json(&dir)["last_rotation"].clone();
    assert_eq!(failed["state"], "failed", "{failed}");

    // 5. `run` refuses the manual issuer; abort before anything is obtained.
    let out = rotate(
        &dir,
        &["run", ACCOUNT, "--reason", "r", "--issuer", "manual"],
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("needs an issuer that works without a person"));
    let out = rotate(
        &dir,
        &["run", ACCOUNT, "--reason", "r"],
        Some("rotation:planned"),
        None,
    );
    assert_eq!(out.status.signal(), Some(9));
    let id = status_json(&dir)["open_rotation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = rotate(
        &dir,
        &["abort", &id, "--reason", "changed my mind"],
        None,
        None,
    );
    outputs.push(text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(": aborted"), "{}", text(&out));
    assert_eq!(through_gateway().0, 200);

    // 6. An emergency: the account's clients are refused first, and stay
    //    refused after the rotation until an operator releases them.
    let out = rotate(
        &dir,
        &[
            "start",
            ACCOUNT,
            "--reason",
            "token seen in a log",
            "--issuer",
            "sandbox",
            "--emergency",
        ],
        None,
        None,
    );
    let all = text(&out);
    outputs.push(all.clone());
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("is quarantined") && all.contains("stays quarantined"),
        "{all}"
    );
    tokens.push(s.token(pid, "svc_site_a"));
    assert_eq!(through_gateway().0, 403, "the clients are refused");
    let release = warden(
        &dir,
        &[
            "accounts",
            "release",
            ACCOUNT,
            "--reason",
            "clients checked",
        ],
        None,
    );
    assert!(release.status.success(), "{}", text(&release));
    assert_eq!(
        through_gateway().0,
        200,
        "released: served with the new token"
    );

    // 7. Rights drift (mobile_app, which the Control Center path can set):
    //    the new token waits in escrow until the rights are fixed.
    let drift = |mobile: u8| {
        s.admin(
            &format!("/sandbox/projects/{pid}/users"),
            Some(json!({"username": "svc_site_a", "api_export": 1, "mobile_app": mobile, "expiration": "2099-12-31"})),
        );
    };
    drift(1);
    let out = rotate(&dir, &["run", ACCOUNT, "--reason", "drift"], None, None);
    let all = text(&out);
    outputs.push(all.clone());
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("differ from its profile") && all.contains("mobile_app"),
        "{all}"
    );
    let open = status_json(&dir)["open_rotation"].clone();
    assert_eq!(open["state"], "obtained", "{open}");
    tokens.push(s.token(pid, "svc_site_a"));
    drift(0);
    let out = rotate(&dir, &["resume", open["id"].as_str().unwrap()], None, None);
    outputs.push(text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(through_gateway().0, 200);

    drop(serving);
    let verify = warden(&dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    let tail = warden(&dir, &["ledger", "tail", "-n", "100000"], None);
    let entries = String::from_utf8_lossy(&tail.stdout).to_string();
    let done = entries
        .lines()
        .filter(|l| l.contains("\"kind\":\"rotation\"") && l.contains("\"to\":\"done\""))
        .count();
    assert_eq!(done, 5 + points.len(), "one done per finished rotation");
    let stale: Vec<&str> = entries
        .lines()
        .filter(|l| l.contains("\"to\":\"planned\"") && l.contains("sop: stale"))
        .collect();
    assert_eq!(
        stale.len(),
        1,
        "only the first rotation's SOP was stale: {stale:?}"
    );
    outputs.push(entries);
    // The after_switch hook ran once per switch, told the fingerprint (and
    // given no environment of ours).
    let hook = std::fs::read_to_string(dir.join("hook.log")).unwrap();
    assert_eq!(hook.lines().count(), done, "{hook}");
    assert!(
        hook.lines()
            .all(|l| l.contains(ACCOUNT) && l.contains("fp1:")),
        "{hook}"
    );

    // `rotate status`: a token stored 91 days ago is overdue (exit 1); one
    //  without a token is listed as such; the rotated one is not overdue.
    let store = secrets::FileStore::open(secrets::FileStoreOptions {
        path: dir.join("data/secrets.age"),
        identity: dir.join("data/identity.txt"),
        keep_versions: 20,
    })
    .unwrap();
    let status = warden(&dir, &["rotate", "status", "--json"], None);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(rows[2]["token_version"].is_null(), "{rows}");
    let other = s.token(pid, "svc_other");
    tokens.push(other.clone());
    s.rt.block_on(async {
        use secrets::SecretStore;
        store
            .put(
                &secrets::SecretName::new("redcap/heart/other").unwrap(),
                secrets::SecretValue::new(other.clone()),
                secrets::VersionMeta {
                    operator: "test".into(),
                    at: jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 91),
                    reason: "stored long ago".into(),
                    fingerprint: None,
                    rotation_id: None,
                },
                secrets::Label::Current,
            )
            .await
            .unwrap();
    });
    let status = warden(&dir, &["rotate", "status", "--json"], None);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[1]["overdue"], false, "{rows}");
    assert_eq!(rows[2]["overdue"], true, "{rows}");
    assert_eq!(rows[2]["age_days"], 91, "{rows}");
    assert_eq!(rows[2]["rotate_every_days"], 90, "{rows}");
    let table = warden(&dir, &["rotate", "status"], None);
    assert_eq!(table.status.code(), Some(1));
    assert!(text(&table).contains("OVERDUE"), "{}", text(&table));
    outputs.push(text(&status));
    outputs.push(text(&table));

    // No token value anywhere but the store (the sandbox's own data plays
    // REDCap and is outside `dir`).
    let mut leaks = Vec::new();
    for t in &tokens {
        let c = Canary::new(t);
        for (i, o) in outputs.iter().enumerate() {
            leaks.extend(c.find(&format!("output {i}"), o.as_bytes()));
        }
        leaks.extend(c.scan_dir(&dir, &[dir.join("data/secrets.age")]));
        c.assert_clean(&leaks);
    }
}
