//! The admin listener's state-changing endpoints: client-key management
//! and the cut-over hold.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use durable::OsFs;
use ledger::EntryKind;
use secrets::{Label, SecretName, SecretStore};
use serde_json::{Value, json};

/// POSTs JSON to the admin listener with the bearer credential; returns
/// the status and the JSON answer.
async fn admin_post(
    w: &World,
    gw: &gateway::RunningGateway,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let token = std::fs::read_to_string(w.dir.join("data/gateway-admin-token")).unwrap();
    let r = w
        .http
        .post(format!("http://{}{path}", gw.admin_addr))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn key_entries(dir: &std::path::Path) -> Vec<(String, String, String)> {
    entries(&OsFs, dir)
        .into_iter()
        .filter_map(|k| match k {
            EntryKind::Key {
                operator,
                action,
                key_name,
                ..
            } => Some((operator, action, key_name)),
            EntryKind::Admin {
                operator,
                action,
                target,
                ..
            } if action.starts_with("cutover") => Some((operator, action, target)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_issued_listed_and_revoked_through_the_admin_listener() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let keyfile = w.dir.join("etl-new.key");

    // Refusals say what is wrong.
    let r = w
        .http
        .get(format!("http://{}/admin/keys", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the bearer credential is required");
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/keys/issue",
        json!({"client": "etl", "to_file": keyfile, "operator": "", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("`operator`"), "{b}");
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/keys/issue",
        json!({"client": "nobody", "to_file": keyfile, "operator": "ana", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 404, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("known clients"),
        "{b}"
    );
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/keys/issue",
        json!({"client": "etl", "operator": "ana", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 400, "no destination: {b}");
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/keys/issue",
        json!({"client": "etl", "to_file": "relative.key", "operator": "ana", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");

    // Issue into a 0600 file: the key works on the next request, and the
    // answer does not carry it.
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/keys/issue",
        json!({"client": "etl", "to_file": keyfile, "operator": "ana", "reason": "new ETL host"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let id = b["id"].as_str().unwrap().to_string();
    let key = std::fs::read_to_string(&keyfile)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(key.len(), 32);
    assert!(
        !b.to_string().contains(&key),
        "the key is never in the answer"
    );
    assert_eq!(
        std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        w.call(&gw, &[("token", &key), ("content", "version")])
            .await
            .0,
        200
    );
    let (s, _) = admin_post(
        &w,
        &gw,
        "/admin/keys/issue",
        json!({"client": "etl", "to_file": keyfile, "operator": "ana", "reason": "again"}),
    )
    .await;
    assert_eq!(s, 409, "an existing file is never overwritten");

    // Issue into the secrets store.
    let (s, b) = admin_post(&w, &gw, "/admin/keys/issue", json!({"client": "etl", "to_store": "clients/etl", "operator": "ana", "reason": "vault delivery"})).await;
    assert_eq!(s, 200, "{b}");
    let stored = w
        .store
        .get(
            &SecretName::new("clients/etl").unwrap(),
            &secrets::Selector::Label(Label::Current),
        )
        .await
        .unwrap();
    assert_eq!(
        w.call(
            &gw,
            &[("token", stored.value.expose()), ("content", "version")]
        )
        .await
        .0,
        200
    );

    // The list shows the key and its use.
    let list: Value = w
        .http
        .get(format!("http://{}/admin/keys", gw.admin_addr))
        .bearer_auth(
            std::fs::read_to_string(w.dir.join("data/gateway-admin-token"))
                .unwrap()
                .trim(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"]["id"] == id.as_str())
        .expect("listed");
    assert_eq!(row["state"], "active");
    assert!(row["key"]["last_used"].is_string(), "{row}");
    assert!(!list.to_string().contains(&key));

    // Revoke: refused from the next request on.
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/keys/revoke",
        json!({"id": id, "operator": "ana", "reason": "host retired"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        w.call(&gw, &[("token", &key), ("content", "version")])
            .await
            .0,
        403
    );
    let (s, _) = admin_post(
        &w,
        &gw,
        "/admin/keys/revoke",
        json!({"id": id, "operator": "ana", "reason": "again"}),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = admin_post(
        &w,
        &gw,
        "/admin/keys/revoke",
        json!({"id": "k-00000000", "operator": "ana", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 404);

    gw.shutdown().await.unwrap();
    let recorded = key_entries(&ledger_dir);
    let ops: Vec<(&str, &str)> = recorded
        .iter()
        .map(|(o, a, _)| (o.as_str(), a.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("admin-api (ana)", "issue"),
            ("admin-api (ana)", "issue"),
            ("admin-api (ana)", "revoke")
        ]
    );
    assert!(recorded[2].2.ends_with(&id));
    canary::Canary::new(&key).assert_clean(&canary::Canary::new(&key).scan_dir(&ledger_dir, &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_account_waits_for_its_new_token_then_goes_through() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let etl = w.keys["etl"].clone();
    assert_eq!(
        w.call(&gw, &[("token", &etl), ("content", "version")])
            .await
            .0,
        200
    );

    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/heart-etl/hold",
        json!({"operator": "ana", "reason": "SOP-7 rotation"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = admin_post(
        &w,
        &gw,
        "/admin/accounts/heart-etl/hold",
        json!({"operator": "ana", "reason": "again"}),
    )
    .await;
    assert_eq!(s, 409, "a hold in force is not restarted");
    let (s, _) = admin_post(
        &w,
        &gw,
        "/admin/accounts/nobody/hold",
        json!({"operator": "ana", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 404);

    // A request arrives during the cut-over and waits.
    let before = w.redcap_log().await.len();
    let held = {
        let (http, addr, etl) = (w.http.clone(), gw.addr, etl.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("http://{addr}/api/"))
                .form(&[
                    ("token", etl.as_str()),
                    ("content", "record"),
                    ("format", "json"),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "the request waits while the account is held"
    );

    // The token is regenerated in REDCap's UI (the old one dies) and stored.
    let new_token = w.regenerate_and_store_etl_token().await;
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/heart-etl/release",
        json!({"operator": "ana", "reason": "new token stored"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["waited"], 1);
    let (status, body) = held.await.unwrap();
    assert_eq!(
        status, 200,
        "the held request went through with the new token: {body}"
    );
    // Only the held request reached REDCap after the hold began, and with
    // the new token (the old one would have been refused and retried).
    let log = w.redcap_log().await;
    assert!(log.len() > before);

    let (s, _) = admin_post(
        &w,
        &gw,
        "/admin/accounts/heart-etl/release",
        json!({"operator": "ana", "reason": "again"}),
    )
    .await;
    assert_eq!(s, 409, "nothing to release");
    gw.shutdown().await.unwrap();
    let recorded = key_entries(&ledger_dir);
    assert_eq!(
        recorded,
        vec![
            (
                "admin-api (ana)".into(),
                "cutover-hold".into(),
                "account:heart-etl".into()
            ),
            (
                "admin-api (ana)".into(),
                "cutover-release".into(),
                "account:heart-etl".into()
            ),
        ]
    );
    let canary = canary::Canary::new(&new_token);
    canary.assert_clean(&canary.scan_dir(&ledger_dir, &[]));
}

/// A dual pair `pair-1` / `pair-2` (two sandbox users) and a client
/// naming `pair-1`: the gateway serves it with the active member, which the
/// account-status file names; `activate` confirms a switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dual_pair_is_served_by_its_active_member_and_switches_without_a_hold() {
    let w = World::new().await;
    let mut tokens = Vec::new();
    for (n, user) in [(1, "svc_pair_1"), (2, "svc_pair_2")] {
        let base = format!("{}/sandbox/projects/{}/users", w.sandbox_base, w.pid);
        let r = w
            .http
            .post(&base)
            .bearer_auth(ADMIN)
            .json(&json!({"username": user, "api_export": 1, "forms": {"demographics": 1}, "forms_export": {"demographics": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let t: Value = w
            .http
            .post(format!("{base}/{user}/token"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = t["token"].as_str().unwrap().to_string();
        w.store
            .put(
                &SecretName::new(&format!("redcap/pair-{n}")).unwrap(),
                secrets::SecretValue::new(token.clone()),
                meta("initial"),
                Label::Current,
            )
            .await
            .unwrap();
        tokens.push(token);
    }
    *w.gateway_extra.lock().unwrap() = r#"
[[account]]
name = "pair-1"
username = "svc_pair_1"
secret = "redcap/pair-1"
study = "heart"
mode = "dual"
partner = "pair-2"

[[account]]
name = "pair-2"
username = "svc_pair_2"
secret = "redcap/pair-2"
study = "heart"
mode = "dual"
partner = "pair-1"

[[client]]
name = "pair-app"
account = "pair-1"
allow = ["version", "record:export"]
"#
    .into();
    let keyfile = gateway::keys::KeyFile::new(&w.dir.join("data/client-keys.json"));
    let policy = gateway::keys::KeyPolicy {
        lifetime: jiff::SignedDuration::from_hours(24),
        overlap: jiff::SignedDuration::from_hours(1),
    };
    let (key, _, _) = keyfile
        .issue("pair-app", "test", policy, jiff::Timestamp::now())
        .unwrap();
    let key = key.expose().to_string();
    let (gw, ledger_dir) = w.start_on_disk().await;
    let export = [
        ("token", key.as_str()),
        ("content", "record"),
        ("format", "json"),
    ];
    // No switch yet: the member whose name sorts first serves.
    let (s, b) = w.call(&gw, &export).await;
    assert_eq!(s, 200, "{b}");

    // A rotation makes pair-2 active (durably, in the account-status
    // file); the gateway confirms; the next request goes with pair-2's
    // token — pair-1's may die now without any request failing.
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/pair-2/activate",
        json!({"operator": "ana", "reason": "rotation r1"}),
    )
    .await;
    assert_eq!(s, 409, "the file does not name pair-2 yet: {b}");
    governance::accounts::AccountStatusFile::new(&w.dir.join("data/account-status.json"))
        .set_active("pair-1", "pair-2", "ana", "r1")
        .unwrap();
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/pair-2/activate",
        json!({"operator": "ana", "reason": "rotation r1"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["active"], "pair-2");
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/heart-etl/activate",
        json!({"operator": "ana", "reason": "x"}),
    )
    .await;
    assert_eq!(s, 404, "not a dual pair: {b}");
    let r: Value = w
        .http
        .post(format!(
            "{}/sandbox/projects/{}/users/svc_pair_1/token/regenerate",
            w.sandbox_base, w.pid
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens.push(r["token"].as_str().unwrap().to_string());
    for _ in 0..3 {
        let (s, b) = w.call(&gw, &export).await;
        assert_eq!(s, 200, "served by pair-2: {b}");
    }

    // A request that took the active member's token just before the pair
    // switched and reaches REDCap after that member was regenerated: REDCap
    // refuses it, and the gateway retries with the new active member's
    // token. (Held here at step 5 to order it: it was authorised while
    // pair-2 served.)
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/pair-2/hold",
        json!({"operator": "ana", "reason": "order the test"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let caught = {
        let (http, addr, key) = (w.http.clone(), gw.addr, key.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("http://{addr}/api/"))
                .form(&[
                    ("token", key.as_str()),
                    ("content", "record"),
                    ("format", "json"),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!caught.is_finished(), "the request waits at the hold");
    governance::accounts::AccountStatusFile::new(&w.dir.join("data/account-status.json"))
        .set_active("pair-1", "pair-1", "ana", "r2")
        .unwrap();
    let r: Value = w
        .http
        .post(format!(
            "{}/sandbox/projects/{}/users/svc_pair_1/token/regenerate",
            w.sandbox_base, w.pid
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = r["token"].as_str().unwrap().to_string();
    tokens.push(fresh.clone());
    w.store
        .put(
            &SecretName::new("redcap/pair-1").unwrap(),
            secrets::SecretValue::new(fresh),
            meta("rotated"),
            Label::Current,
        )
        .await
        .unwrap();
    let r: Value = w
        .http
        .post(format!(
            "{}/sandbox/projects/{}/users/svc_pair_2/token/regenerate",
            w.sandbox_base, w.pid
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens.push(r["token"].as_str().unwrap().to_string());
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/pair-2/release",
        json!({"operator": "ana", "reason": "order the test"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = caught.await.unwrap();
    assert_eq!(s, 200, "retried with pair-1's new token: {b}");
    gw.shutdown().await.unwrap();
    let entries = entries(&OsFs, &ledger_dir);
    let served: Vec<&str> = entries
        .iter()
        .filter_map(|e| match e {
            EntryKind::Request {
                client, account, ..
            } if client == "pair-app" => Some(account.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(served, ["pair-1", "pair-2", "pair-2", "pair-2", "pair-2"]);
    assert!(entries.iter().any(|e| matches!(
        e,
        EntryKind::Admin { action, target, .. } if action == "dual-activate" && target == "account:pair-2"
    )));
    for t in &tokens {
        let canary = canary::Canary::new(t);
        canary.assert_clean(&canary.scan_dir(&ledger_dir, &[]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_that_runs_out_refuses_in_redcaps_shape_and_says_so_in_the_ledger() {
    let w = World::new().await;
    *w.gateway_extra.lock().unwrap() = "cutover_hold_seconds = 1\n".into();
    let (gw, ledger_dir) = w.start_on_disk().await;
    let etl = w.keys["etl"].clone();
    let (s, b) = admin_post(
        &w,
        &gw,
        "/admin/accounts/heart-etl/hold",
        json!({"operator": "ana", "reason": "rotation"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, body) = w
        .call(
            &gw,
            &[
                ("token", &etl),
                ("content", "version"),
                ("returnFormat", "json"),
            ],
        )
        .await;
    assert_eq!(s, 503, "{body}");
    let err: Value = serde_json::from_str(&body).expect("REDCap's JSON error shape");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("held this request for 1 s"),
        "{body}"
    );
    // Housekeeping ends the hold with an alert; requests flow again.
    let mut flowing = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if w.call(&gw, &[("token", &etl), ("content", "version")])
            .await
            .0
            == 200
        {
            flowing = true;
            break;
        }
    }
    assert!(flowing, "after the hold ran out requests flow again");
    gw.shutdown().await.unwrap();
    let alert = entries(&OsFs, &ledger_dir)
        .into_iter()
        .find_map(|k| match k {
            EntryKind::Alert { code, message } if code == "cutover_hold_expired" => Some(message),
            _ => None,
        });
    let alert = alert.expect("an alert for the expired hold");
    assert!(
        alert.contains("heart-etl") && alert.contains("were refused"),
        "{alert}"
    );
}
