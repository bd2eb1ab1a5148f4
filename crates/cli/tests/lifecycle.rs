//! Ownership and an account's life, end to end against redcap-sandbox:
//!
//! - a rotation proves the new token's ownership through the study's log
//!   reader (REDCap's log, in a time zone far from UTC, shows
//!   verification's call under the account's username); a token of
//!   another user of the same project — which opens the right project — is
//!   refused because the log shows the call under that user, and stays in
//!   escrow; the account is then retired by hand (the manual issuer's
//!   steps, the command run again once the token is deleted);
//! - `accounts enroll` adds a REDCap user to the project in its site's
//!   DAG, applies and proves its profile, and obtains its first token (the
//!   process killed after the escrow, then the command run again finishes
//!   it); the gateway serves it;
//! - `accounts retire` revokes its keys, has the sandbox delete its token
//!   and remove the user, proves the token dead and retires the secret;
//!   `rotate status`, `accounts list` and `sites` show it retired; a new
//!   key for its client is refused; retiring again changes nothing.
//!
//! At the end `ledger verify` accepts the chain, and no token value is in
//! any output or any file but the store and the escrow.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::sandbox::{ADMIN, Sandbox};
use common::{Serving, add_config, free_port, init, issue_key, put_secrets, text, warden};
use serde_json::{Value, json};

/// `redcap-warden ARGS` with `stdin`, and the test-only fault point
/// `fault` (the process kills itself there).
fn run(dir: &Path, args: &[&str], fault: Option<&str>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("redcap-warden"));
    cmd.current_dir(dir)
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

/// REDCap's (the sandbox's) time zone, and `[redcap] time_zone`.
const ZONE: &str = "Pacific/Auckland";

struct Study {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    s: Sandbox,
    pid: u64,
    /// Every token the test has seen: none may leak.
    tokens: Vec<String>,
    port: u16,
    dag_b: String,
}

/// A study with a rights manager, a log reader, site A's account (token
/// stored), another user of the project with a token, and site B's REDCap
/// user, which exists in REDCap but is not in the project yet.
fn study() -> Study {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    std::fs::create_dir(&dir).unwrap();
    // REDCap stamps its log in server-local time: a zone far from UTC, on
    // both sides, so a proof that ignored it would fail.
    let s = Sandbox::start_with(&tmp.path().join("sandbox"), |c| {
        c.timezone = jiff::tz::TimeZone::get(ZONE).unwrap();
    });
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
        {"field_name": "age", "form_name": "demographics", "field_type": "text", "field_label": "Age"}
    ]);
    let (owner, pid) = s.project(Some(md));
    let (dag_a, dag_a_id) = s.dag(&owner, "Site A");
    let (dag_b, dag_b_id) = s.dag(&owner, "Site B");
    s.api(&[
        ("token", &owner),
        ("content", "record"),
        ("format", "json"),
        (
            "data",
            &json!([
                {"record_id": "1", "age": "61", "redcap_data_access_group": dag_a},
                {"record_id": "2", "age": "47", "redcap_data_access_group": dag_b}
            ])
            .to_string(),
        ),
    ]);
    let site_a = s.user(
        pid,
        json!({"username": "svc_site_a", "expiration": "2099-12-31", "data_access_group": dag_a,
            "api_export": 1, "forms": {"demographics": 2}, "forms_export": {"demographics": 3}}),
    );
    let other = s.user(
        pid,
        json!({"username": "svc_other", "expiration": "2099-12-31", "api_export": 1}),
    );
    let manager = s.user(
        pid,
        json!({"username": "svc_rights", "expiration": "2099-12-31",
            "api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1}),
    );
    let reader = s.user(
        pid,
        json!({"username": "svc_log", "expiration": "2099-12-31",
            "api_export": 1, "logging": 1, "forms_export": {"demographics": 2}}),
    );
    // Site B's service account: a REDCap user, not yet in the project.
    s.admin("/sandbox/users", Some(json!({"username": "svc_site_b"})));
    let tokens = vec![
        site_a.clone(),
        other,
        manager.clone(),
        reader.clone(),
        owner,
    ];

    init(&dir, &s.api_url);
    let cfg = dir.join("warden.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    assert!(toml.contains("time_zone = \"UTC\""), "{toml}");
    std::fs::write(
        &cfg,
        toml.replace("time_zone = \"UTC\"", &format!("time_zone = \"{ZONE}\"")),
    )
    .unwrap();
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
log_reader = "heart-log"

[[study.site]]
name = "site-a"
dag_id = {dag_a_id}

[[study.site]]
name = "site-b"
dag_id = {dag_b_id}

[[account]]
name = "heart-site-a"
username = "svc_site_a"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-read"

[[account]]
name = "heart-site-b"
username = "svc_site_b"
secret = "redcap/heart/site-b"
study = "heart"
site = "site-b"
profile = "site-data-read"

[[account]]
name = "heart-rights"
username = "svc_rights"
secret = "redcap/heart/rights"
study = "heart"
profile = "rights-manager"

[[account]]
name = "heart-log"
username = "svc_log"
secret = "redcap/heart/log"
study = "heart"
profile = "log-reader"

[[client]]
name = "app-a"
account = "heart-site-a"
allow = ["record:export", "project", "version"]

[[client]]
name = "app-b"
account = "heart-site-b"
allow = ["record:export", "project", "version"]

[rotation]
issuer = "sandbox"
sandbox_url = "{}"
sandbox_admin_secret_file = "sandbox-admin-secret"
"#,
            s.base
        ),
    );
    let check = warden(&dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    put_secrets(
        &dir,
        &[
            ("redcap/heart/site-a", site_a.as_str()),
            ("redcap/heart/rights", manager.as_str()),
            ("redcap/heart/log", reader.as_str()),
        ],
    );
    Study {
        _tmp: tmp,
        dir,
        s,
        pid,
        tokens,
        port,
        dag_b,
    }
}

/// Every file under `dir` but the store and escrows: none may hold a
/// token of `tokens`.
fn assert_no_token_in_files(dir: &Path, tokens: &[String]) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name == "secrets.age" || name.ends_with(".escrow.age") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        for t in tokens {
            assert!(
                !content.contains(t.as_str()) && !content.contains(&t.to_lowercase()),
                "{} holds a token value",
                f.display()
            );
        }
    }
}

fn assert_no_token_in(out: &str, tokens: &[String]) {
    for t in tokens {
        assert!(
            !out.contains(t.as_str()) && !out.contains(&t.to_lowercase()),
            "a token value was printed:\n{out}"
        );
    }
}

/// The rows of a `--json` list command.
fn json_rows(dir: &Path, args: &[&str]) -> Value {
    let out = warden(dir, args, None);
    assert!(out.status.code().unwrap_or(2) < 2, "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ownership_is_proved_through_the_log_reader_and_another_users_token_is_refused() {
    let Study {
        _tmp,
        dir,
        s,
        pid,
        mut tokens,
        ..
    } = study();
    let mut outputs = String::new();

    // The sandbox issuer regenerates site A's own token: proved.
    let out = run(
        &dir,
        &["rotate", "run", "heart-site-a", "--reason", "scheduled"],
        None,
        None,
    );
    outputs.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("ownership: proved"), "{all}");
    assert!(
        all.contains("ownership: proved (REDCap's log: ")
            && all.contains(
                "(Pacific/Auckland) svc_site_a: Manage/Design Export project information (API)"
            ),
        "the verified entry names the log row: {all}"
    );
    let current = s.token(pid, "svc_site_a");
    tokens.push(current.clone());

    // A person pastes the token of another user of the same project: it
    // opens the right project, but REDCap's log shows the call under
    // `svc_other`. (Nobody regenerated: site A's token stays current.)
    let other = s.token(pid, "svc_other");
    let out = run(
        &dir,
        &[
            "rotate",
            "start",
            "heart-site-a",
            "--reason",
            "wrong paste",
            "--issuer",
            "manual",
        ],
        None,
        Some(&format!("{other}\n")),
    );
    outputs.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains(
            "verification failed: REDCap's log shows no Export Project Info by `svc_site_a`"
        ) && all.contains("appears under `svc_other` instead"),
        "{all}"
    );
    assert!(all.contains("ownership: refuted"), "{all}");
    let failed: Value = {
        let st = json_rows(&dir, &["rotate", "status", "--json"]);
        st.as_array()
            .unwrap()
            .iter()
            .find(|r| r["account"] == "heart-site-a")
            .unwrap()
            .clone()
    };
    assert_eq!(failed["last_rotation"]["state"], "failed", "{failed}");
    assert_eq!(failed["last_rotation"]["ownership"], "refuted", "{failed}");
    let id = failed["last_rotation"]["id"].as_str().unwrap();
    assert!(
        dir.join(format!("data/rotation/{id}.escrow.age")).exists(),
        "the escrow is kept"
    );
    // The store still serves site A's own token.
    let key = issue_key(&dir, "app-a");
    let port = {
        let cfg = std::fs::read_to_string(dir.join("warden.toml")).unwrap();
        let line = cfg.lines().find(|l| l.starts_with("listen = ")).unwrap();
        line.rsplit(':')
            .next()
            .unwrap()
            .trim_matches('"')
            .parse::<u16>()
            .unwrap()
    };
    let serving = Serving::start(&dir, port);
    let (status, body) = s.post(
        &format!("http://127.0.0.1:{port}/api/"),
        &[("token", &key), ("content", "project"), ("format", "json")],
    );
    assert_eq!(status, 200, "{body}");
    drop(serving);

    // Retired by hand (the manual issuer): the first run revokes the keys
    // and prints the REDCap steps, but the token still answers, so it
    // stops; once the administrator deleted the token, the second run
    // proves it dead and retires the secret.
    let out = run(
        &dir,
        &[
            "accounts",
            "retire",
            "heart-site-a",
            "--reason",
            "site A closed",
            "--issuer",
            "manual",
        ],
        None,
        None,
    );
    outputs.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("revoked key")
            && all.contains("Control Center → API Tokens")
            && all.contains("delete the token")
            && all.contains("Remove user")
            && all.contains("still authenticates at REDCap"),
        "{all}"
    );
    let rows = json_rows(&dir, &["accounts", "list", "--json"]);
    assert_eq!(rows[0]["retired"], Value::Null, "not retired yet: {rows}");
    s.rt.block_on(async {
        let r = s
            .http
            .delete(format!(
                "{}/sandbox/projects/{pid}/users/svc_site_a/token",
                s.base
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    let out = run(
        &dir,
        &[
            "accounts",
            "retire",
            "heart-site-a",
            "--reason",
            "site A closed",
            "--issuer",
            "manual",
        ],
        None,
        None,
    );
    outputs.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("got REDCap's invalid-token answer"),
        "{}",
        text(&out)
    );

    let verify = warden(&dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    assert_no_token_in(&outputs, &tokens);
    assert_no_token_in_files(&dir, &tokens);
}

#[test]
fn an_account_is_enrolled_served_and_retired() {
    let Study {
        _tmp,
        dir,
        s,
        pid,
        mut tokens,
        port,
        dag_b,
    } = study();
    let mut outputs = String::new();

    // Not enrolled: nothing to rotate, and the command says what to do.
    let out = run(
        &dir,
        &["rotate", "run", "heart-site-b", "--reason", "r"],
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("accounts enroll heart-site-b"),
        "{}",
        text(&out)
    );

    // The rights manager, through which enrolment works, is set up by hand.
    let out = warden(
        &dir,
        &["accounts", "enroll", "heart-rights", "--reason", "r"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot enrol itself") && text(&out).contains("secrets put"),
        "{}",
        text(&out)
    );

    // Enrol, killed right after the first token is escrowed …
    let out = run(
        &dir,
        &[
            "accounts",
            "enroll",
            "heart-site-b",
            "--reason",
            "site B opens",
        ],
        Some("rotation:escrowed"),
        None,
    );
    outputs.push_str(&text(&out));
    assert_eq!(out.status.signal(), Some(9), "{}", text(&out));
    tokens.push(s.token(pid, "svc_site_b"));
    // … and run again: it continues the enrolment from the escrow.
    let out = run(
        &dir,
        &[
            "accounts",
            "enroll",
            "heart-site-b",
            "--reason",
            "site B opens",
        ],
        None,
        None,
    );
    outputs.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("continuing its enrolment"), "{all}");
    assert!(all.contains("recovered from the escrow"), "{all}");
    assert!(all.contains("ownership: proved"), "{all}");
    assert!(
        all.contains("is enrolled: its first token is current"),
        "{all}"
    );
    let first = s.token(pid, "svc_site_b");
    assert_eq!(
        &first,
        tokens.last().unwrap(),
        "the escrowed token, not another"
    );
    // The profile is in REDCap, DAG included.
    let users = s.json(&[
        ("token", &s.token(pid, "svc_rights")),
        ("content", "user"),
        ("format", "json"),
    ]);
    let b = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "svc_site_b")
        .unwrap();
    assert_eq!(b["data_access_group"], dag_b.as_str(), "{b}");
    assert_eq!(b["api_export"], 1, "{b}");
    assert_eq!(b["api_import"], 0, "{b}");
    // Within its profile: what is left is the missing expiration, which
    // re-authorisation sets (a note, not held against the token).
    let check = warden(
        &dir,
        &["rights", "check", "--account", "heart-site-b", "--json"],
        None,
    );
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let codes: Vec<&str> = report[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["no-expiration"], "{}", text(&check));
    // The first run (before the kill) applied the profile: the ledger has
    // its rights entry, with the reason.
    let ledger = ledger_text(&dir);
    assert!(
        ledger.contains("user: added to the project")
            && ledger.contains("data_access_group: (none) -> site_b")
            && ledger.contains("api_export: 0 -> 1"),
        "{ledger}"
    );
    assert!(ledger.contains("site B opens"), "{ledger}");
    let row = json_rows(&dir, &["rotate", "status", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == "heart-site-b")
        .unwrap()
        .clone();
    assert_eq!(row["last_rotation"]["kind"], "enrol", "{row}");
    assert_eq!(row["last_rotation"]["state"], "done", "{row}");
    // Enrolling again is refused: it is a rotation's job now.
    let again = warden(
        &dir,
        &["accounts", "enroll", "heart-site-b", "--reason", "again"],
        None,
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("enrolled already"),
        "{}",
        text(&again)
    );

    // The gateway serves it (site B's record only).
    let key = issue_key(&dir, "app-b");
    let serving = Serving::start(&dir, port);
    let gateway = format!("http://127.0.0.1:{port}/api/");
    let (status, body) = s.post(
        &gateway,
        &[("token", &key), ("content", "record"), ("format", "json")],
    );
    assert_eq!(status, 200, "{body}");
    let records: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(records[0]["record_id"], "2", "{body}");

    // Retire it while the gateway runs.
    let out = run(
        &dir,
        &[
            "accounts",
            "retire",
            "heart-site-b",
            "--reason",
            "site B closed",
        ],
        None,
        None,
    );
    outputs.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("revoked key"), "{all}");
    assert!(
        all.contains("deleted its API token, then removed the user from the project"),
        "{all}"
    );
    assert!(all.contains("got REDCap's invalid-token answer"), "{all}");
    // REDCap: the token is dead, the user gone.
    let (status, _) = s.call(&[("token", &first), ("content", "version")]);
    assert_eq!(status, 403);
    let users = s.json(&[
        ("token", &s.token(pid, "svc_rights")),
        ("content", "user"),
        ("format", "json"),
    ]);
    assert!(
        !users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "svc_site_b")
    );
    // The gateway: the revoked key is refused.
    let (status, body) = s.post(
        &gateway,
        &[("token", &key), ("content", "record"), ("format", "json")],
    );
    assert_eq!(status, 403, "{body}");
    drop(serving);
    // A new key for its client is refused, saying why.
    let issue = warden(
        &dir,
        &[
            "keys",
            "issue",
            "app-b",
            "--to-file",
            "b2.key",
            "--reason",
            "r",
        ],
        None,
    );
    assert_eq!(issue.status.code(), Some(2), "{}", text(&issue));
    assert!(text(&issue).contains("was retired on"), "{}", text(&issue));
    // Shown as retired everywhere.
    let row = json_rows(&dir, &["rotate", "status", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == "heart-site-b")
        .unwrap()
        .clone();
    assert_eq!(row["retired"]["reason"], "site B closed", "{row}");
    assert_eq!(row["overdue"], false, "{row}");
    let status = warden(&dir, &["rotate", "status"], None);
    assert!(
        text(&status)
            .lines()
            .any(|l| l.starts_with("heart-site-b") && l.contains("RETIRED")),
        "{}",
        text(&status)
    );
    let list = warden(&dir, &["accounts", "list"], None);
    assert!(list.status.success(), "{}", text(&list));
    assert!(
        text(&list)
            .lines()
            .any(|l| l.starts_with("heart-site-b") && l.contains("RETIRED since")),
        "{}",
        text(&list)
    );
    let sites = json_rows(&dir, &["sites", "--json"]);
    let b = sites[0]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "site-b")
        .unwrap()
        .clone();
    assert_eq!(b["accounts"][0]["status"]["state"], "retired", "{b}");
    assert_eq!(b["accounts"][0]["fingerprint"], Value::Null, "{b}");
    // The secret: not served, its history kept.
    let get = warden(&dir, &["secrets", "history", "redcap/heart/site-b"], None);
    assert!(!get.status.success(), "{}", text(&get));
    let ledger = ledger_text(&dir);
    assert!(ledger.contains("\"action\":\"retire account\""), "{ledger}");
    assert!(ledger.contains("site B closed"), "{ledger}");
    // Retiring again changes nothing.
    let again = warden(
        &dir,
        &["accounts", "retire", "heart-site-b", "--reason", "again"],
        None,
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("nothing to do"), "{}", text(&again));

    let verify = warden(&dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    assert_no_token_in(&outputs, &tokens);
    assert_no_token_in_files(&dir, &tokens);
}

/// The file ledger's entries, as text.
fn ledger_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir.join("data/ledger"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "jsonl") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    out
}

/// `reconcile` explains the REDCap rows an enrolment and a retirement make
/// for their account — the user added and its profile imported, its first
/// token created, its token deleted and the user removed — by the
/// enrolment (a rotation of kind `enrol`) and the retirement's ledger
/// entries; the same kinds of rows about an account neither enrolled nor
/// retired then (site A's token regenerated and a user added by the
/// administrator) are still findings.
#[test]
fn reconcile_explains_enrolment_and_retirement_rows_and_nothing_else() {
    let Study {
        _tmp,
        dir,
        s,
        pid,
        mut tokens,
        ..
    } = study();
    let since = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap()
        .to_string();
    let out = run(
        &dir,
        &[
            "accounts",
            "enroll",
            "heart-site-b",
            "--reason",
            "site B opens",
        ],
        None,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    tokens.push(s.token(pid, "svc_site_b"));
    let out = run(
        &dir,
        &[
            "accounts",
            "retire",
            "heart-site-b",
            "--reason",
            "site B closed",
        ],
        None,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    // Outside any enrolment or retirement of theirs: site A's token
    // regenerated in the Control Center, another user added by hand.
    let regenerated = s.admin(
        &format!("/sandbox/projects/{pid}/users/svc_site_a/token/regenerate"),
        None,
    );
    tokens.push(regenerated["token"].as_str().unwrap().to_string());
    s.admin("/sandbox/users", Some(json!({"username": "svc_intruder"})));
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({"username": "svc_intruder"})),
    );

    let out = warden(&dir, &["reconcile", "--since", &since, "--json"], None);
    let all = text(&out);
    assert_no_token_in(&all, &tokens);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let findings: Vec<&Value> = report["studies"]
        .as_array()
        .map(|studies| {
            studies
                .iter()
                .flat_map(|s| s["findings"].as_array().into_iter().flatten())
                .collect()
        })
        .unwrap_or_default();
    let about = |user: &str| -> Vec<String> {
        findings
            .iter()
            .filter(|f| {
                f["username"] == user
                    || f["rows"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|r| r.as_str().unwrap_or("").contains(user)))
            })
            .map(|f| format!("{} {}", f["code"], f["detail"]))
            .collect()
    };
    assert!(
        about("svc_site_b").is_empty(),
        "{:#?}\n{all}",
        about("svc_site_b")
    );
    let a = about("svc_site_a");
    assert!(
        a.iter()
            .any(|f| f.contains("token-event") && f.contains("regenerated")),
        "{a:#?}\n{all}"
    );
    let intruder = about("svc_intruder");
    assert!(
        intruder.iter().any(|f| f.contains("access-change")),
        "{intruder:#?}\n{all}"
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
}

/// With a passphrase-protected file store and no passphrase source, a
/// person enrolling an account at a terminal is asked for the passphrase
/// once: the store is opened once and used by every step (here a pty from
/// `script`, given the passphrase once; a second prompt would read the end
/// of input and fail).
#[test]
fn enroll_asks_for_the_store_passphrase_once() {
    let Study {
        _tmp, dir, s: _s, ..
    } = study();
    const PASSPHRASE: &str = "a long enough store passphrase";
    let add = run(
        &dir,
        &["secrets", "passphrase", "--reason", "protect the identity"],
        None,
        Some(&format!("{PASSPHRASE}\n")),
    );
    assert!(add.status.success(), "{}", text(&add));
    let bin = assert_cmd::cargo::cargo_bin("redcap-warden");
    let command = format!(
        "'{}' accounts enroll heart-site-b --reason 'site B opens'",
        bin.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(&dir)
        .env_remove("SUDO_USER")
        .env_remove("REDCAP_WARDEN_FAULT")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux runs the command on a pty");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(format!("{PASSPHRASE}\n").as_bytes())
        .unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(
        all.matches("Passphrase for the secrets-store identity")
            .count(),
        1,
        "{all}"
    );
    assert!(
        all.contains("is enrolled: its first token is current"),
        "{all}"
    );
}
