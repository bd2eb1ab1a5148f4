//! Re-authorisation end to end on redcap-sandbox and a running gateway: an
//! idle account lapses (the clocks of the CLI and the sandbox run 40 days
//! ahead: no sleeping), after which REDCap refuses its token and the
//! gateway its client; unsigned, wrongly signed, expired, replayed and
//! self-approved approvals are refused with their reasons; a valid
//! SSH-signed approval restores both, and `ssh-keygen -Y verify` accepts
//! the approval the ledger holds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output};

use assert_cmd::Command;
use common::sandbox::Sandbox;
use common::{Serving, add_config, free_port, init, issue_key, put_secrets, text, warden};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const AHEAD: SignedDuration = SignedDuration::from_hours(40 * 24);

/// `redcap-warden` with the CLI's clock at `now`.
fn at(dir: &Path, now: Timestamp, args: &[&str]) -> Output {
    Command::cargo_bin("redcap-warden")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .env_remove("SUDO_USER")
        .env("REDCAP_WARDEN_TEST_NOW", now.to_string())
        .output()
        .unwrap()
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = StdCommand::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name, "-t", "ed25519", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

/// Signs `file` as an approver does; the signature is `file.sig`.
fn sign(key: &Path, file: &Path) -> PathBuf {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    let out = StdCommand::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "redcap-warden-reauth", "-f"])
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    sig
}

fn os_login() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name
}

/// Exit code and output, checked for the tokens.
fn run(out: Output, tokens: &[&str]) -> (i32, String) {
    let all = text(&out);
    for t in tokens {
        assert!(!all.contains(t), "a token value was printed:\n{all}");
    }
    (out.status.code().unwrap_or(-1), all)
}

#[test]
fn an_idle_account_lapses_in_redcap_and_the_gateway_and_a_signed_approval_restores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Sandbox::start_with(&tmp.path().join("sandbox"), |sc| sc.clock_offset = AHEAD);
    let (owner, pid) = r.project(None);
    let (unique, dag_id) = r.dag(&owner, "Site A");
    let manager = r.user(
        pid,
        json!({"username": "svc_rights", "expiration": "2099-12-31",
            "api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1}),
    );
    let site = r.user(
        pid,
        json!({"username": "svc_site_a", "expiration": "2099-12-31", "data_access_group": unique,
            "api_export": 1, "record_create": 1}),
    );
    let tokens = [manager.as_str(), site.as_str()];

    let dir = tmp.path().join("warden");
    std::fs::create_dir(&dir).unwrap();
    init(&dir, &format!("{}/api/", r.base));
    put_secrets(
        &dir,
        &[
            ("redcap/heart/rights", manager.as_str()),
            ("redcap/heart/site-a", site.as_str()),
        ],
    );
    let (ana, ana_pub) = keygen(tmp.path(), "ana");
    let (eve, _) = keygen(tmp.path(), "eve");
    let (me, me_pub) = keygen(tmp.path(), "me");
    let login = os_login();
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
rights_manager = "heart-rights"

[[study.site]]
name = "site-a"
dag_id = {dag_id}

[[account]]
name = "heart-rights"
username = "svc_rights"
secret = "redcap/heart/rights"
study = "heart"

[[account]]
name = "heart-a"
username = "svc_site_a"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-import"
reauth_every_days = 90
lapse_after_inactive_days = 30
approvers = ["ana@example.org {ana_pub}", "{login}@example.org {me_pub}"]

[[client]]
name = "app"
account = "heart-a"
allow = ["version"]
write_reason = "optional"
"#
        ),
    );
    let check = warden(&dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    let key = issue_key(&dir, "app");
    let serving = Serving::start(&dir, port);
    let gateway = format!("http://127.0.0.1:{port}/api/");
    let through_gateway = || r.post(&gateway, &[("token", &key), ("content", "version")]);
    let direct = || {
        r.post(
            &format!("{}/api/", r.base),
            &[("token", &site), ("content", "version")],
        )
    };
    assert_eq!(
        through_gateway().0,
        200,
        "a request, so the account was used"
    );

    // 40 days on, with no request in 30: the sweep lapses the account.
    let later = Timestamp::now().checked_add(AHEAD).unwrap();
    let (code, out) = run(at(&dir, later, &["reauth", "status"]), &tokens);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("LAPSES at the next sweep"), "{out}");
    let (code, out) = run(at(&dir, later, &["reauth", "sweep"]), &tokens);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Account `heart-a` lapsed (no request forwarded for 30 days"),
        "{out}"
    );
    let (code, out) = run(at(&dir, later, &["reauth", "sweep"]), &tokens);
    assert_eq!(
        (code, out.trim()),
        (0, "No account lapsed."),
        "a lapse is made once"
    );

    // REDCap refuses the token, the gateway the client.
    let (status, body) = direct();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("privileges have expired"), "{body}");
    let (status, body) = through_gateway();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("re-authorisation lapsed"), "{body}");
    let (code, out) = run(at(&dir, later, &["reauth", "status", "--json"]), &tokens);
    assert_eq!(code, 1);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status[0]["account"], "heart-a");
    assert_eq!(status[0]["lapsed"], true);
    assert_eq!(status[0]["lapse_recorded"], true);
    assert!(status[0]["last_use"].is_string());
    // `sites` shows the lapse beside the account (exit 1: not active).
    let (code, out) = run(at(&dir, later, &["sites", "--json"]), &tokens);
    assert_eq!(code, 1, "{out}");
    let sites: Value = serde_json::from_str(&out).unwrap();
    let account = sites[0]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["accounts"].as_array().unwrap())
        .find(|a| a["name"] == "heart-a")
        .expect("heart-a is a site's account");
    assert_eq!(account["status"]["state"], "lapsed", "{out}");

    // The statement to sign.
    let statement_at = |now: Timestamp, name: &str| {
        let out = at(
            &dir,
            now,
            &[
                "reauth",
                "statement",
                "heart-a",
                "--reason",
                "quarterly review",
            ],
        );
        let (code, all) = run(out.clone(), &tokens);
        assert_eq!(code, 0, "{all}");
        let file = tmp.path().join(name);
        std::fs::write(&file, &out.stdout).unwrap();
        file
    };
    let statement = statement_at(later, "statement.json");
    let printed: Value = serde_json::from_slice(&std::fs::read(&statement).unwrap()).unwrap();
    assert_eq!(printed["account"], "heart-a");
    assert_eq!(printed["study"], "heart");
    assert!(
        printed["rights_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let approve = |now: Timestamp, sig: &Path, extra: &[&str]| {
        let sig = sig.display().to_string();
        let mut args = vec![
            "reauth",
            "heart-a",
            "--reason",
            "reviewed with the PI",
            "--signature",
            &sig,
        ];
        args.extend_from_slice(extra);
        run(at(&dir, now, &args), &tokens)
    };
    let refused = |result: (i32, String), says: &str| {
        assert_eq!(result.0, 2, "{}", result.1);
        assert!(
            result.1.contains(says),
            "expected `{says}` in:\n{}",
            result.1
        );
    };

    // Unsigned: the statement itself given as its signature.
    let st = statement.display().to_string();
    refused(
        approve(later, &statement, &["--statement", &st]),
        "is unsigned",
    );
    // Wrongly signed: eve is no approver.
    let eve_copy = tmp.path().join("eve.json");
    std::fs::copy(&statement, &eve_copy).unwrap();
    refused(approve(later, &sign(&eve, &eve_copy), &[]), "wrong signer");
    // Expired: presented eight days after it was printed.
    let sig = sign(&ana, &statement);
    let eight_days = later
        .checked_add(SignedDuration::from_hours(8 * 24))
        .unwrap();
    refused(approve(eight_days, &sig, &[]), "(expired)");
    // Nothing refused changed anything.
    assert_eq!(direct().0, 403);

    // A valid approval restores both.
    let (code, out) = approve(later, &sig, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("re-approved by ana@example.org"), "{out}");
    assert!(out.contains("the gateway accepts it again"), "{out}");
    assert_eq!(direct().0, 200, "REDCap accepts the token again");
    assert_eq!(
        through_gateway().0,
        200,
        "the gateway accepts the client again"
    );
    let users: Vec<Value> = serde_json::from_str(&r.api(&[
        ("token", &manager),
        ("content", "user"),
        ("format", "json"),
    ]))
    .unwrap();
    let row = users
        .iter()
        .find(|u| u["username"] == "svc_site_a")
        .unwrap();
    assert_eq!(row["expiration"], printed["period"]["until"]);
    assert_eq!(row["data_access_group"], unique.as_str(), "the DAG is kept");
    let (code, out) = run(warden(&dir, &["reauth", "status"], None), &tokens);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("by ana@example.org"), "{out}");

    // Replayed: the same statement and signature again.
    refused(approve(later, &sig, &[]), "(replayed)");

    // Self-approval: the operator who last changed the account's rights
    // may not approve. Someone gives the account design=1 in REDCap (with
    // its DAG); `rights apply`, run by this login, takes it away again.
    r.api(&[
        ("token", &manager),
        ("content", "user"),
        ("format", "json"),
        (
            "data",
            &json!([{"username": "svc_site_a", "design": 1, "data_access_group": unique}])
                .to_string(),
        ),
    ]);
    let (code, out) = run(
        warden(
            &dir,
            &["rights", "apply", "--reason", "design is not for ETL"],
            None,
        ),
        &tokens,
    );
    // (Exit 1: the project's creator is left for a person.)
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("design: 1 -> 0"), "{out}");
    // (A minute on: a statement of the same second would be the same
    // statement, and so a replay.)
    let next = later.checked_add(SignedDuration::from_secs(60)).unwrap();
    let mine = statement_at(next, "mine.json");
    refused(approve(next, &sign(&me, &mine), &[]), "(self-approval)");
    // ... while another approver may.
    let (code, out) = approve(next, &sign(&ana, &mine), &[]);
    assert_eq!(code, 0, "{out}");

    // The ledger holds the approval; ssh-keygen verifies it without us.
    let tail = warden(&dir, &["ledger", "tail", "--count", "40"], None);
    let approval: Value = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "reauth" && e["action"] == "approve")
        .expect("a reauth approve entry");
    let a = &approval["approval"];
    let files = tmp.path().join("audit");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(
        files.join("signers"),
        format!("{}\n", a["allowed_signer"].as_str().unwrap()),
    )
    .unwrap();
    std::fs::write(files.join("sig"), a["signature"].as_str().unwrap()).unwrap();
    std::fs::write(files.join("statement"), a["statement"].as_str().unwrap()).unwrap();
    let verify = StdCommand::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "redcap-warden-reauth", "-I"])
        .arg(a["signer"].as_str().unwrap())
        .arg("-f")
        .arg(files.join("signers"))
        .arg("-s")
        .arg(files.join("sig"))
        .stdin(std::fs::File::open(files.join("statement")).unwrap())
        .output()
        .unwrap();
    assert!(verify.status.success(), "ssh-keygen -Y verify: {verify:?}");
    let lapse = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["kind"] == "reauth" && e["action"] == "lapse")
        .expect("a reauth lapse entry");
    assert_eq!(lapse["until"], Value::Null);
    assert_eq!(lapse["operator"], login.as_str());

    // `serve` sweeps at start: restarted when the approval's period is
    // long over, it lapses the account itself and refuses its client.
    drop(serving);
    let months = Timestamp::now()
        .checked_add(SignedDuration::from_hours(200 * 24))
        .unwrap();
    let _serving = Serving::start_at(&dir, port, &months.to_string());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, body) = through_gateway();
        if status == 403 {
            assert!(body.contains("not re-approved by its due date"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not sweep: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, out) = run(warden(&dir, &["accounts", "list"], None), &tokens);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("LAPSED since"), "{out}");
}
