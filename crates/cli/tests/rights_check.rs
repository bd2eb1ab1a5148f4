//! `rights check` end to end against redcap-sandbox: a clean study, then
//! one drift at a time put into REDCap through the rights manager's token
//! (design, mobile_app, a dropped DAG, a role), each found with its exit
//! code. No token value ever appears in the output.

mod common;

use std::path::Path;

use common::sandbox::{SUPER, Sandbox};
use common::{add_config, init, put_secrets, text, warden, webhook_receiver};
use serde_json::{Value, json};

fn check(dir: &Path, tokens: &[&str], extra: &[&str]) -> (i32, String) {
    let mut args = vec!["rights", "check"];
    args.extend_from_slice(extra);
    let out = warden(dir, &args, None);
    let all = text(&out);
    for t in tokens {
        assert!(!all.contains(t), "a token value was printed:\n{all}");
    }
    (out.status.code().unwrap_or(-1), all)
}

#[test]
fn rights_check_finds_each_drift_against_the_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Sandbox::start(&tmp.path().join("sandbox"));
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
        {"field_name": "sbp", "form_name": "visit", "field_type": "text", "field_label": "BP"}
    ]);
    let (owner, pid) = s.project(Some(md));
    let (unique, dag_id) = s.dag(&owner, "Site A");

    let expiration = "2099-12-31";
    let manager = s.user(
        pid,
        json!({"username": "svc_rights", "expiration": expiration,
            "api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1}),
    );
    let site = s.user(
        pid,
        json!({"username": "svc_site_a", "expiration": expiration, "data_access_group": unique,
            "api_export": 1, "api_import": 1, "record_create": 1,
            "forms": {"demographics": 1, "visit": 2},
            "forms_export": {"demographics": 3, "visit": 2}}),
    );
    // The project's creator keeps its account, without API rights: an
    // API-capable user no [[account]] governs would be a finding.
    let users: Vec<Value> = serde_json::from_str(&s.api(&[
        ("token", &manager),
        ("content", "user"),
        ("format", "json"),
    ]))
    .unwrap();
    let creator = users
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .find(|u| u != "svc_rights" && u != "svc_site_a")
        .unwrap();
    let import_users = |rows: Value| {
        s.api(&[
            ("token", &manager),
            ("content", "user"),
            ("format", "json"),
            ("data", &rows.to_string()),
        ])
    };
    import_users(
        json!([{"username": creator, "api_export": 0, "api_import": 0, "api_modules": 0, "mobile_app": 0,
            "user_rights": 0, "data_access_groups": 0, "data_access_group": ""}]),
    );

    let dir = tmp.path().join("warden");
    std::fs::create_dir(&dir).unwrap();
    init(&dir, &format!("{}/api/", s.base));
    put_secrets(
        &dir,
        &[
            ("redcap/heart/rights", manager.as_str()),
            ("redcap/heart/site-a", site.as_str()),
        ],
    );
    add_config(
        &dir,
        &format!(
            r#"
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
profile = "rights-manager"

[[account]]
name = "heart-site-a"
username = "svc_site_a"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-import"
"#
        ),
    );
    let tokens = [owner.as_str(), manager.as_str(), site.as_str(), SUPER];
    // Critical findings are alerts: to a webhook (with its secret header,
    // read from the store) and syslog as well as the ledger.
    let (hook, posts) = webhook_receiver();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    put_secrets(&dir, &[("alerts/webhook", "hook-secret-for-the-test")]);
    add_config(
        &dir,
        &format!(
            "\n[alerts]\nwebhook = \"{hook}\"\nwebhook_secret = \"alerts/webhook\"\nsyslog = \"udp://{}\"\n",
            syslog.local_addr().unwrap()
        ),
    );

    let (code, out) = check(&dir, &tokens, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("every governed account is within its profile"),
        "{out}"
    );

    // design = 1 (the DAG sent along, as every rights import must).
    import_users(json!([{"username": "svc_site_a", "design": 1, "data_access_group": unique}]));
    let (code, out) = check(&dir, &tokens, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let findings = report[0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{out}");
    assert_eq!(findings[0]["code"], "right-beyond-profile");
    assert_eq!(findings[0]["severity"], "critical");
    assert_eq!(findings[0]["account"], "heart-site-a");
    assert!(
        findings[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("design = 1")
    );
    assert_eq!(report[0]["digest"].as_str().unwrap().len(), 64);
    let (headers, alert) = posts
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the critical finding reaches the webhook");
    assert_eq!(alert["code"], "rights.critical", "{alert}");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["ledger"], "recorded");
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.contains("heart-site-a right-beyond-profile: design = 1"),
        "{message}"
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-redcap-warden-secret" && v == "hook-secret-for-the-test"),
        "{headers:?}"
    );
    let mut buf = [0; 4096];
    let n = syslog.recv(&mut buf).expect("and syslog");
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        line.starts_with("<82>1 ") && line.contains(" rights.critical - "),
        "{line}"
    );
    for t in tokens {
        assert!(
            !message.contains(t) && !line.contains(t),
            "a token in an alert"
        );
    }

    // mobile_app = 1 instead.
    import_users(
        json!([{"username": "svc_site_a", "design": 0, "mobile_app": 1, "data_access_group": unique}]),
    );
    let (code, out) = check(
        &dir,
        &tokens,
        &["--study", "heart", "--account", "heart-site-a"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CRITICAL heart-site-a (svc_site_a): right-beyond-profile: mobile_app = 1"),
        "{out}"
    );

    // A rights import without data_access_group drops the account's DAG.
    import_users(json!([{"username": "svc_site_a", "mobile_app": 0}]));
    let (code, out) = check(&dir, &tokens, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no-dag: not in a Data Access Group (site `site-a` is DAG"),
        "{out}"
    );
    assert!(
        out.contains("sees and changes the records of every site"),
        "{out}"
    );
    import_users(json!([{"username": "svc_site_a", "data_access_group": unique}]));
    assert_eq!(check(&dir, &tokens, &[]).0, 0);

    // Placed in a role.
    s.api(&[
        ("token", &manager),
        ("content", "userRole"),
        ("format", "json"),
        (
            "data",
            r#"[{"unique_role_name":"","role_label":"Site staff"}]"#,
        ),
    ]);
    let roles: Vec<Value> = serde_json::from_str(&s.api(&[
        ("token", &manager),
        ("content", "userRole"),
        ("format", "json"),
    ]))
    .unwrap();
    let role = roles[0]["unique_role_name"].as_str().unwrap();
    s.api(&[
        ("token", &manager),
        ("content", "userRoleMapping"),
        ("format", "json"),
        (
            "data",
            &json!([{"username": "svc_site_a", "unique_role_name": role}]).to_string(),
        ),
    ]);
    let (code, out) = check(&dir, &tokens, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("in-role: the user is in role {role}")),
        "{out}"
    );

    // Each run is a `rights` entry in the ledger, with the digest.
    let tail = warden(&dir, &["ledger", "tail", "--count", "50"], None);
    let tail = text(&tail);
    assert!(tail.matches("digest sha256:").count() >= 6, "{tail}");
    for t in tokens {
        assert!(!tail.contains(t));
    }

    // A second site whose secret holds site A's token.
    s.api(&[
        ("token", &manager),
        ("content", "dag"),
        ("action", "import"),
        ("format", "json"),
        (
            "data",
            r#"[{"data_access_group_name":"Site B","unique_group_name":""}]"#,
        ),
    ]);
    let put = warden(
        &dir,
        &["secrets", "put", "redcap/heart/site-b", "--reason", "t"],
        Some(&site),
    );
    assert!(put.status.success(), "{}", text(&put));
    let path = dir.join("warden.toml");
    let toml = std::fs::read_to_string(&path).unwrap().replace(
        "\n[[account]]\nname = \"heart-rights\"",
        &format!("\n[[study.site]]\nname = \"site-b\"\ndag_id = {}\n\n[[account]]\nname = \"heart-rights\"", dag_id + 1),
    );
    std::fs::write(&path, toml).unwrap();
    add_config(
        &dir,
        "\n[[account]]\nname = \"heart-site-b\"\nusername = \"svc_site_b\"\nsecret = \"redcap/heart/site-b\"\nstudy = \"heart\"\nsite = \"site-b\"\nprofile = \"site-data-read\"\n",
    );
    let (code, out) = check(&dir, &tokens, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("shared-token: holds the same token (same fingerprint, fp1:")
            && out.contains(") as `heart-site-a` of site `site-a`"),
        "{out}"
    );

    // A rights manager without User Rights: REDCap's message and the fix.
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({"username": "svc_rights", "user_rights": 0})),
    );
    let (code, out) = check(&dir, &tokens, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("Export Users with the token of rights manager `heart-rights`: privilege refused: Insufficient user privileges"),
        "{out}"
    );
    assert!(
        out.contains("fix: give REDCap user `svc_rights` API Export, User Rights"),
        "{out}"
    );

    // An unknown study is an error (exit 2).
    let (code, out) = check(&dir, &tokens, &["--study", "lung"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no [[study]] named `lung`"), "{out}");
}
