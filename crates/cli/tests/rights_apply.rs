//! #11's "done when" for rights, end to end against redcap-sandbox: every
//! drift at once — design=1, a DAG dropped by a rights import without
//! `data_access_group`, mobile_app=1, a role, a renamed DAG, a coordinator
//! holding an API right, two sites sharing a REDCap user, a governed
//! account made administrator — each found (exit 1); `rights plan` shows
//! the changes; `rights apply` fixes what it may, records each account in
//! the ledger and leaves the rest to a person; once the person has done
//! their part a second check is clean and every site account is still in
//! its DAG. No token value is ever printed.

mod common;

use std::path::Path;

use common::sandbox::{SUPER, Sandbox};
use common::{add_config, init, text, warden};
use serde_json::{Value, json};

fn run(dir: &Path, tokens: &[String], args: &[&str]) -> (i32, String) {
    let out = warden(dir, args, None);
    let all = text(&out);
    for t in tokens {
        assert!(
            !all.contains(t.as_str()),
            "a token value was printed:\n{all}"
        );
    }
    (out.status.code().unwrap_or(-1), all)
}

/// The findings of a `rights check --json` as (code, account or site).
fn findings(out: &str) -> Vec<(String, String)> {
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    report[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let who = f["account"]
                .as_str()
                .or(f["site"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| f["username"].as_str().unwrap().to_string());
            (f["code"].as_str().unwrap().to_string(), who)
        })
        .collect()
}

#[test]
fn every_drift_is_found_apply_fixes_what_it_may_and_every_dag_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Sandbox::start(&tmp.path().join("sandbox"));
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
        {"field_name": "sbp", "form_name": "visit", "field_type": "text", "field_label": "BP"}
    ]);
    let (owner, pid) = s.project(Some(md));
    let sites = ["a", "b", "c", "d", "e", "f"];
    let labels: Vec<Value> = sites
        .iter()
        .map(|x| json!({"data_access_group_name": format!("Site {}", x.to_uppercase()), "unique_group_name": ""}))
        .collect();
    s.api(&[
        ("token", &owner),
        ("content", "dag"),
        ("action", "import"),
        ("format", "json"),
        ("data", &Value::Array(labels).to_string()),
    ]);
    let dags = s.json(&[("token", &owner), ("content", "dag"), ("format", "json")]);
    let dag = |x: &str| {
        let d = dags
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["unique_group_name"] == format!("site_{x}"))
            .unwrap();
        d["data_access_group_id"].as_u64().unwrap()
    };

    let expiration = "2099-12-31";
    let mut tokens = vec![owner.clone(), SUPER.to_string()];
    let manager = s.user(
        pid,
        json!({"username": "svc_rights", "expiration": expiration,
            "api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1}),
    );
    tokens.push(manager.clone());
    // Site e's user; site f's account will name it too (shared).
    for x in ["a", "b", "c", "d", "e"] {
        let t = s.user(
            pid,
            json!({"username": format!("svc_site_{x}"), "expiration": expiration,
                "data_access_group": format!("site_{x}"),
                "api_export": 1, "api_import": 1, "record_create": 1,
                "forms": {"demographics": 1, "visit": 2},
                "forms_export": {"demographics": 3, "visit": 2}}),
        );
        tokens.push(t);
    }
    // A study coordinator working in REDCap's UI, no API right yet.
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({"username": "coordinator", "expiration": expiration, "data_access_group": "site_a",
            "forms": {"demographics": 1, "visit": 1}})),
    );
    let import_users = |rows: Value| {
        s.api(&[
            ("token", &manager),
            ("content", "user"),
            ("format", "json"),
            ("data", &rows.to_string()),
        ])
    };
    let creator = s
        .json(&[("token", &manager), ("content", "user"), ("format", "json")])
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .find(|u| u != "svc_rights" && !u.starts_with("svc_site_") && u != "coordinator")
        .unwrap();
    // The project's creator stays, without API rights or rights over
    // rights (each would be an ungoverned-user finding).
    import_users(
        json!([{"username": creator, "api_export": 0, "api_import": 0, "api_modules": 0,
        "mobile_app": 0, "user_rights": 0, "data_access_groups": 0, "data_access_group": ""}]),
    );

    let dir = tmp.path().join("warden");
    std::fs::create_dir(&dir).unwrap();
    init(&dir, &format!("{}/api/", s.base));
    let put = |name: &str, token: &str| {
        let out = warden(
            &dir,
            &["secrets", "put", name, "--reason", "t"],
            Some(token),
        );
        assert!(out.status.success(), "{}", text(&out));
    };
    put("redcap/heart/rights", &manager);
    for (i, x) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        put(&format!("redcap/heart/site-{x}"), &tokens[3 + i]);
    }
    let mut toml =
        String::from("\n[[study]]\nname = \"heart\"\nrights_manager = \"heart-rights\"\n");
    for x in sites {
        toml.push_str(&format!(
            "\n[[study.site]]\nname = \"site-{x}\"\ndag_id = {}\ndag_name = \"site_{x}\"\n",
            dag(x)
        ));
    }
    toml.push_str(
        "\n[[account]]\nname = \"heart-rights\"\nusername = \"svc_rights\"\nsecret = \"redcap/heart/rights\"\nstudy = \"heart\"\nprofile = \"rights-manager\"\n",
    );
    for x in ["a", "b", "c", "d", "e"] {
        let profile = if x == "a" {
            "site-data-import"
        } else {
            "site-data-read"
        };
        toml.push_str(&format!(
            "\n[[account]]\nname = \"heart-site-{x}\"\nusername = \"svc_site_{x}\"\nsecret = \"redcap/heart/site-{x}\"\nstudy = \"heart\"\nsite = \"site-{x}\"\nprofile = \"{profile}\"\n"
        ));
    }
    add_config(&dir, &toml);
    // A rights manager with read-only User Rights can read but not write:
    // apply stops with REDCap's own message and the fix (exit 2).
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({"username": "svc_rights", "user_rights": 2})),
    );
    let (code, out) = run(&dir, &tokens, &["rights", "apply", "--reason", "t"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("Import Users for `heart-site-b` with the token of rights manager `heart-rights` failed. REDCap said: "),
        "{out}"
    );
    assert!(
        out.contains("fix: give REDCap user `svc_rights` (rights manager `heart-rights`) API Import and User Rights = Full access (1)"),
        "{out}"
    );
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({"username": "svc_rights", "user_rights": 1})),
    );

    // Site b, c, d, e accounts read only: their forms come down first.
    let (code, out) = run(
        &dir,
        &tokens,
        &["rights", "apply", "--reason", "first alignment"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("heart-site-b (svc_site_b):"), "{out}");
    assert!(
        out.contains("forms demographics: view_edit -> read_only"),
        "{out}"
    );
    let (code, out) = run(&dir, &tokens, &["rights", "check"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&dir, &tokens, &["rights", "plan"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to change"), "{out}");

    // `sites`: each site's DAG, accounts, fingerprints, status, clients.
    add_config(
        &dir,
        "\n[[client]]\nname = \"etl-b\"\naccount = \"heart-site-b\"\nallow = [\"record:export\"]\n",
    );
    let (code, out) = run(
        &dir,
        &tokens,
        &[
            "keys",
            "issue",
            "etl-b",
            "--to-file",
            "etl-b.key",
            "--reason",
            "t",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let key = std::fs::read_to_string(dir.join("etl-b.key")).unwrap();
    tokens.push(key.trim().to_string());
    let (code, out) = run(&dir, &tokens, &["sites", "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let site_b = &report[0]["sites"][1];
    assert_eq!(site_b["name"], "site-b");
    assert_eq!(site_b["dag_id"], json!(dag("b")));
    assert_eq!(site_b["live_name"], "site_b");
    assert_eq!(site_b["live_label"], "Site B");
    let account = &site_b["accounts"][0];
    assert_eq!(account["name"], "heart-site-b");
    assert!(
        account["fingerprint"].as_str().unwrap().starts_with("fp1:"),
        "{out}"
    );
    assert_eq!(account["status"]["state"], "active");
    assert_eq!(account["clients"][0]["name"], "etl-b");
    assert_eq!(account["clients"][0]["active_keys"], 1);
    assert_eq!(report[0]["sites"][5]["accounts"], json!([]));

    // Every drift at once.
    // design = 1 (the DAG sent along, as every rights import must).
    import_users(json!([{"username": "svc_site_a", "design": 1, "data_access_group": "site_a"}]));
    // A rights import without data_access_group drops site b's DAG.
    import_users(json!([{"username": "svc_site_b", "calendar": 0}]));
    // mobile_app = 1.
    import_users(
        json!([{"username": "svc_site_c", "mobile_app": 1, "data_access_group": "site_c"}]),
    );
    // Site d's user placed in a role that may delete records.
    s.api(&[
        ("token", &manager),
        ("content", "userRole"),
        ("format", "json"),
        (
            "data",
            r#"[{"unique_role_name":"","role_label":"Site staff"}]"#,
        ),
    ]);
    let role = s.json(&[
        ("token", &manager),
        ("content", "userRole"),
        ("format", "json"),
    ])[0]["unique_role_name"]
        .as_str()
        .unwrap()
        .to_string();
    s.api(&[
        ("token", &manager),
        ("content", "userRole"),
        ("format", "json"),
        (
            "data",
            &json!([{"unique_role_name": role, "role_label": "Site staff", "api_export": 1, "record_delete": 1}])
                .to_string(),
        ),
    ]);
    s.api(&[
        ("token", &manager),
        ("content", "userRoleMapping"),
        ("format", "json"),
        (
            "data",
            &json!([{"username": "svc_site_d", "unique_role_name": role}]).to_string(),
        ),
    ]);
    // Site a's DAG renamed in REDCap's UI.
    s.admin(
        &format!("/sandbox/projects/{pid}/dags/{}/rename", dag("a")),
        Some(json!({"name": "Site A North"})),
    );
    // The coordinator given API export.
    import_users(
        json!([{"username": "coordinator", "api_export": 1, "data_access_group": "site_a_north"}]),
    );
    // Site f's account names site e's REDCap user. `config check` refuses
    // the same name twice; REDCap folds case, so this is the same user.
    add_config(
        &dir,
        "\n[[account]]\nname = \"heart-site-f\"\nusername = \"SVC_SITE_E\"\nsecret = \"redcap/heart/site-f\"\nstudy = \"heart\"\nsite = \"site-f\"\nprofile = \"site-data-read\"\n",
    );
    // Site a's user made a REDCap administrator.
    s.admin(
        "/sandbox/users",
        Some(json!({"username": "svc_site_a", "administrator": true})),
    );

    // `sites` shows the rename and a quarantine (as the gateway writes it).
    let status = dir.join("data/account-status.json");
    std::fs::write(
        &status,
        r#"{"format":"redcap-warden/account-status/1","quarantined":{"heart-site-c":{"since":"2026-11-28T10:00:00Z","reason":"DAG column seen","by":"gateway"}}}"#,
    )
    .unwrap();
    let (code, out) = run(&dir, &tokens, &["sites", "--study", "heart"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "site `site-a`: DAG {} — REDCap calls it site_a_north (label Site A North), warden.toml site_a: renamed"
        , dag("a"))),
        "{out}"
    );
    assert!(
        out.contains("account `heart-site-c` (REDCap user svc_site_c): token fp1:"),
        "{out}"
    );
    assert!(
        out.contains("QUARANTINED since 2026-11-28 10:00:00 by gateway: DAG column seen"),
        "{out}"
    );
    assert!(
        out.contains("client `etl-b`: 1 active key(s), last expires"),
        "{out}"
    );
    std::fs::remove_file(&status).unwrap();

    let (code, out) = run(&dir, &tokens, &["rights", "check", "--json"]);
    assert_eq!(code, 1, "{out}");
    let got = findings(&out);
    let has = |code: &str, who: &str| got.iter().any(|(c, w)| c == code && w == who);
    for (code, who) in [
        ("right-beyond-profile", "heart-site-a"), // design
        ("administrator", "heart-site-a"),
        ("no-dag", "heart-site-b"),
        ("right-beyond-profile", "heart-site-c"), // mobile_app
        ("in-role", "heart-site-d"),
        ("dag-renamed", "site-a"),
        ("ungoverned-api-access", "coordinator"),
        ("shared-account", "heart-site-f"),
        ("wrong-dag", "heart-site-f"),
    ] {
        assert!(has(code, who), "no {code} for {who}: {got:?}\n{out}");
    }

    // The plan: per field, lowering only; the rest left for a person.
    let (code, out) = run(&dir, &tokens, &["rights", "plan"]);
    assert_eq!(code, 1, "{out}");
    for line in [
        "heart-site-a (svc_site_a):",
        "design: 1 -> 0",
        "data_access_group: (none) -> site_b",
        "mobile_app: 1 -> 0",
        &format!("role: {role} -> (none)"),
        "heart-site-f: cannot be planned for: it is the same REDCap user as `heart-site-e`",
        "left for a person",
        "administrator",
        "dag-renamed",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }
    let (_, json_plan) = run(&dir, &tokens, &["rights", "plan", "--json"]);
    let plan: Value = serde_json::from_str(json_plan.lines().next().unwrap()).unwrap();
    assert!(
        plan[0]["plans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["account"] == "heart-site-c"
                && p["changes"][0] == json!({"field": "mobile_app", "live": "1", "wanted": "0"})),
        "{json_plan}"
    );

    // apply fixes what it may; findings for a person remain: exit 1.
    let (code, out) = run(
        &dir,
        &tokens,
        &["rights", "apply", "--reason", "quarterly review #7"],
    );
    assert_eq!(code, 1, "{out}");
    let (_, out) = run(&dir, &tokens, &["rights", "check", "--json"]);
    let left = findings(&out);
    for fixed in ["heart-site-b", "heart-site-c", "heart-site-d"] {
        assert!(
            !left.iter().any(|(_, w)| w == fixed),
            "{fixed} still has findings: {left:?}"
        );
    }
    assert!(
        !left
            .iter()
            .any(|(c, w)| c == "right-beyond-profile" && w == "heart-site-a"),
        "{left:?}"
    );
    assert!(left.iter().any(|(c, _)| c == "administrator"), "{left:?}");
    assert!(
        left.iter()
            .any(|(c, w)| c == "ungoverned-api-access" && w == "coordinator"),
        "apply touched an ungoverned user: {left:?}"
    );

    // Each changed account is one `rights` entry with operator, reason,
    // before and after.
    let tail = text(&warden(&dir, &["ledger", "tail", "--count", "60"], None));
    for t in &tokens {
        assert!(!tail.contains(t.as_str()));
    }
    for line in [
        "design: 1 -> 0",
        "data_access_group: (none) -> site_b",
        "mobile_app: 1 -> 0",
        &format!("role: {role} -> (none)"),
        "quarterly review #7",
        "probe: Export DAGs with the token of `heart-site-a` (administrator test; answered)",
        "probe: Export DAGs with the token of `heart-site-b` (administrator test; refused)",
    ] {
        assert!(tail.contains(line), "no `{line}` in the ledger:\n{tail}");
    }

    // The person's part: REDCap's administrator flag, the confirmed DAG
    // name, the coordinator's API right, one REDCap user per site.
    s.admin(
        "/sandbox/users",
        Some(json!({"username": "svc_site_a", "administrator": false})),
    );
    import_users(
        json!([{"username": "coordinator", "api_export": 0, "data_access_group": "site_a_north"}]),
    );
    let path = dir.join("warden.toml");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("dag_name = \"site_a\"", "dag_name = \"site_a_north\"")
        .replace(
            "\n[[account]]\nname = \"heart-site-f\"\nusername = \"SVC_SITE_E\"\nsecret = \"redcap/heart/site-f\"\nstudy = \"heart\"\nsite = \"site-f\"\nprofile = \"site-data-read\"\n",
            "",
        );
    std::fs::write(&path, edited).unwrap();
    let (code, out) = run(&dir, &tokens, &["rights", "check"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&dir, &tokens, &["rights", "apply", "--reason", "again"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to change"), "{out}");

    let (code, out) = run(&dir, &tokens, &["sites"]);
    assert_eq!(code, 0, "{out}");

    // Every site account is still in its own DAG.
    let users = s.json(&[("token", &manager), ("content", "user"), ("format", "json")]);
    for x in ["a", "b", "c", "d", "e"] {
        let u = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == format!("svc_site_{x}"))
            .unwrap();
        assert_eq!(u["data_access_group_id"], json!(dag(x)), "{u}");
    }
}
