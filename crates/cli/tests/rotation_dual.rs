//! Dual-account rotation end to end against redcap-sandbox with the
//! gateway serving the pair's client: the process killed (SIGKILL, the
//! test-only `REDCAP_WARDEN_FAULT`) after every state of a dual rotation
//! and at the escrow, each time finished by `rotate resume`, ending with
//! exactly one valid `current` token per member — the live one — the old
//! ones dead and the gateway serving; then the wrong tokens pasted at the
//! manual issuer (the partner's, another account's): refused, escrow kept,
//! nothing stored or switched. No token value in any output or file but
//! the store.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use canary::Canary;
use common::site::{ACCOUNT, PARTNER, Site};
use common::{Serving, text, warden};
use secrets::SecretStore;
use serde_json::Value;

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

/// `rotate status --json`, by account.
fn status(dir: &Path) -> Value {
    let out = warden(dir, &["rotate", "status", "--json"], None);
    assert!(out.status.code().unwrap_or(2) < 2, "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row(rows: &Value, account: &str) -> Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == account)
        .unwrap()
        .clone()
}

/// The store's current token of `secret`.
fn current(site: &Site, secret: &str) -> String {
    let store = secrets::FileStore::open(secrets::FileStoreOptions {
        path: site.dir.join("data/secrets.age"),
        identity: site.dir.join("data/identity.txt"),
        keep_versions: 20,
    })
    .unwrap();
    site.sandbox.rt.block_on(async {
        store
            .get(
                &secrets::SecretName::new(secret).unwrap(),
                &secrets::Selector::Label(secrets::Label::Current),
            )
            .await
            .unwrap()
            .value
            .expose()
            .to_string()
    })
}

/// A dual rotation that has done its work ends `done` once ownership is
/// proved; until then it stops before `done`, saying why, and `abort`
/// ends it. Answers every output.
fn finish(site: &Site, out: Output, what: &str) -> Vec<String> {
    let all = text(&out);
    if out.status.success() {
        assert!(all.contains(": done"), "{what}: {all}");
        return vec![all];
    }
    assert_eq!(out.status.code(), Some(2), "{what}: {all}");
    assert!(
        all.contains("does not finish without proof"),
        "{what}: {all}"
    );
    let open = row(&status(&site.dir), ACCOUNT)["open_rotation"].clone();
    assert_eq!(open["state"], "old-revoked-verified", "{what}: {open}");
    let abort = rotate(
        &site.dir,
        &[
            "abort",
            open["id"].as_str().unwrap(),
            "--reason",
            "log checked by hand",
        ],
        None,
        None,
    );
    assert!(abort.status.success(), "{what}: {}", text(&abort));
    vec![all, text(&abort)]
}

/// Each member's store `current` is its live REDCap token, and the pair's
/// client is served.
fn assert_one_valid_current(site: &Site, what: &str) {
    let live = site.live_tokens();
    assert_eq!(current(site, "redcap/heart/site-a"), live[0], "{what}");
    assert_eq!(current(site, "redcap/heart/site-a-2"), live[1], "{what}");
    let (code, body) = site.sandbox.post(
        &format!("http://127.0.0.1:{}/api/", site.port),
        &[("token", &site.key), ("content", "version")],
    );
    assert_eq!(code, 200, "{what}: the gateway serves: {body}");
}

#[test]
fn a_dual_rotation_killed_after_any_state_is_finished_by_resume() {
    let site = Site::new(true, None);
    let _serving = Serving::start(&site.dir, site.port);
    let mut tokens = site.tokens.clone();
    let mut outputs = Vec::new();
    let points = [
        "rotation:planned",
        "rotation:escrowed",
        "rotation:obtained:unrecorded",
        "rotation:obtained",
        "rotation:verified",
        "rotation:stored",
        "rotation:switched:unrecorded",
        "rotation:switched",
        "rotation:second-obtained:unrecorded",
        "rotation:second-obtained",
        "rotation:second-verified",
        "rotation:second-stored",
        "rotation:old-revoked-verified:unrecorded",
        "rotation:old-revoked-verified",
    ];
    for point in points {
        let old = site.live_tokens();
        let active_before = row(&status(&site.dir), ACCOUNT)["dual"]["active"] == true;
        let out = rotate(
            &site.dir,
            &["run", PARTNER, "--reason", "crash test"],
            Some(point),
            None,
        );
        outputs.push(text(&out));
        assert_eq!(out.status.signal(), Some(9), "{point}: {}", text(&out));
        let open = row(&status(&site.dir), PARTNER)["open_rotation"].clone();
        let id = open["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{point}: {open}"))
            .to_string();
        // Another rotation of either member is refused meanwhile.
        let again = rotate(
            &site.dir,
            &["run", ACCOUNT, "--reason", "again"],
            None,
            None,
        );
        assert_eq!(again.status.code(), Some(2), "{point}");
        assert!(
            text(&again).contains("already has an open rotation"),
            "{point}: {}",
            text(&again)
        );
        let out = rotate(&site.dir, &["resume", &id], None, None);
        outputs.extend(finish(&site, out, point));
        let new = site.live_tokens();
        tokens.extend(new.iter().cloned());
        for (o, n) in old.iter().zip(&new) {
            assert_ne!(o, n, "{point}: both members regenerated");
            assert!(!site.works(o), "{point}: an old token is dead");
        }
        assert_one_valid_current(&site, point);
        let active_after = row(&status(&site.dir), ACCOUNT)["dual"]["active"] == true;
        assert_ne!(active_before, active_after, "{point}: the pair switched");
        assert!(
            std::fs::read_dir(site.dir.join("data/rotation"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".escrow.age")),
            "{point}: an escrow was left behind"
        );
    }

    // The wrong tokens pasted at the manual issuer: the partner's current
    // token (the standby is regenerated first; pasted is the active
    // member's), then another account's (the log reader's).
    let rows = status(&site.dir);
    let (active, secret) = if row(&rows, ACCOUNT)["dual"]["active"] == true {
        (ACCOUNT, "redcap/heart/site-a")
    } else {
        (PARTNER, "redcap/heart/site-a-2")
    };
    for (pasted, owner) in [
        (current(&site, secret), active),
        (current(&site, "redcap/heart/log"), "heart-log"),
    ] {
        let before = site.live_tokens();
        let stored = (
            current(&site, "redcap/heart/site-a"),
            current(&site, "redcap/heart/site-a-2"),
        );
        let out = rotate(
            &site.dir,
            &[
                "start",
                ACCOUNT,
                "--reason",
                "wrong paste",
                "--issuer",
                "manual",
            ],
            None,
            Some(&format!("{pasted}\n")),
        );
        let all = text(&out);
        outputs.push(all.clone());
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(
            all.contains(&format!("the current token of account `{owner}`")),
            "{all}"
        );
        let last = row(&status(&site.dir), ACCOUNT)["last_rotation"].clone();
        assert_eq!(last["state"], "failed", "{last}");
        let escrow = site.dir.join(format!(
            "data/rotation/{}.escrow.age",
            last["id"].as_str().unwrap()
        ));
        assert!(escrow.exists(), "the escrow is kept");
        assert_eq!(
            (
                current(&site, "redcap/heart/site-a"),
                current(&site, "redcap/heart/site-a-2")
            ),
            stored,
            "nothing stored"
        );
        assert_eq!(
            row(&status(&site.dir), active)["dual"]["active"],
            true,
            "nothing switched"
        );
        // Nothing was regenerated in REDCap by a person here, so the
        // tokens still work and the gateway serves.
        assert_eq!(site.live_tokens(), before);
        assert_one_valid_current(&site, "after a wrong paste");
    }

    let verify = warden(&site.dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    let tail = warden(&site.dir, &["ledger", "tail", "-n", "100000"], None);
    outputs.push(String::from_utf8_lossy(&tail.stdout).to_string());
    let mut leaks = Vec::new();
    for t in &tokens {
        let c = Canary::new(t);
        for (i, o) in outputs.iter().enumerate() {
            leaks.extend(c.find(&format!("output {i}"), o.as_bytes()));
        }
        leaks.extend(c.scan_dir(&site.dir, &[site.dir.join("data/secrets.age")]));
        c.assert_clean(&leaks);
    }
}
