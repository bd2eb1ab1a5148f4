//! What two gateways must agree on, shared through PostgreSQL (issue #15):
//! client keys and revocations, account status, cut-over holds and
//! rotations, each changed through one replica (its admin API or its
//! `redcap-warden` commands) and honoured by the other; and a change whose
//! notification never arrives is still picked up by the periodic re-read.
//!
//! A change reaches the other replica when PostgreSQL delivers its
//! notification (milliseconds), at the latest at the follower's next
//! re-read (every 5 s): the tests wait for it with a generous deadline,
//! never for a time.
//!
//! Runs when WARDEN_TEST_DATABASE_URL names a database the tests may
//! create schemas in (`scripts/test -E 'binary(cluster_state)'` starts
//! one); otherwise each test prints a notice and passes without running.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{ACCOUNT, CLIENT, Cluster, ClusterOptions, db_client};
use common::text;
use reqwest::Method;
use serde_json::json;

/// Waits until `done` holds, failing with `what` after a minute (far past
/// the 5 s re-read: only a change that never arrives gets there).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        // Not faster: each admitted poll is a call to REDCap, inside the
        // gateways' outbound window.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The id of the client's key that is active, through replica `i`'s
/// `GET /admin/keys`.
fn active_key_id(cluster: &Cluster, i: usize) -> String {
    let (status, keys) = cluster.admin(i, Method::GET, "/admin/keys", None);
    assert_eq!(status, 200, "{keys}");
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "active")
        .map(|k| k["key"]["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no active key: {keys}"))
}

/// node-a's host rotates with the sandbox's issuer.
fn rotation_by_sandbox(cluster: &Cluster) {
    let secret = cluster.nodes[0].dir.join("sandbox-admin-secret");
    std::fs::write(&secret, common::sandbox::ADMIN).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    common::add_config(
        &cluster.nodes[0].dir,
        &format!(
            "\n[rotation]\nissuer = \"sandbox\"\nsandbox_url = \"{}\"\nsandbox_admin_secret_file = \"sandbox-admin-secret\"\n",
            cluster.sandbox.base
        ),
    );
}

fn started(test: &str) -> Option<Cluster> {
    started_with(test, ClusterOptions::default())
}

fn started_with(test: &str, options: ClusterOptions) -> Option<Cluster> {
    let mut cluster = Cluster::with(test, options)?;
    cluster.start_all();
    Some(cluster)
}

#[test]
fn a_key_revoked_through_one_gateway_is_refused_by_the_other() {
    let Some(cluster) = started("revoke") else {
        return;
    };
    // Issued by node-a's `keys issue`: node-b admits it too.
    let key = cluster.issue_key(0, CLIENT);
    eventually("node-b admits the key node-a issued", || {
        cluster.version(1, &key).0 == 200
    });
    assert_eq!(cluster.version(0, &key).0, 200);
    // The keys are in PostgreSQL, not in the (shared-by-path) key file,
    // and only as their SHA-256: the key itself is in no row.
    let file = cluster.nodes[0].dir.join("data/client-keys.json");
    assert!(!file.exists(), "{} was written", file.display());
    let rows = db_client(&cluster.database_url)
        .query(
            &format!(
                "SELECT name, convert_from(document, 'UTF8') FROM {}.shared_state",
                cluster.schema
            ),
            &[],
        )
        .unwrap();
    let keys_row = rows
        .iter()
        .find(|r| r.get::<_, &str>(0) == "client-keys")
        .map(|r| r.get::<_, String>(1))
        .expect("the client-keys row");
    assert!(keys_row.contains("\"sha256\""), "{keys_row}");
    for r in &rows {
        let doc: String = r.get(1);
        assert!(
            !doc.contains(&key) && !doc.contains(&key.to_lowercase()),
            "a client key in shared_state"
        );
    }

    let id = active_key_id(&cluster, 1);
    let (status, body) = cluster.admin(
        0,
        Method::POST,
        "/admin/keys/revoke",
        Some(json!({"id": id, "operator": "ana", "reason": "laptop lost"})),
    );
    assert_eq!(status, 200, "{body}");
    // The gateway that revoked refuses at once; the other on its next
    // request after the notification.
    assert_eq!(cluster.version(0, &key).0, 403);
    eventually("node-b refuses the revoked key", || {
        cluster.version(1, &key).0 == 403
    });
    let (_, keys) = cluster.admin(1, Method::GET, "/admin/keys", None);
    assert_eq!(keys[0]["state"], "revoked", "{keys}");

    // The revocation is a `key` entry naming who and why.
    let entries = cluster.entries();
    assert!(
        entries.iter().any(|e| e["kind"] == "key"
            && e["action"] == "revoke"
            && e["reason"] == "laptop lost"
            && e["operator"].as_str().unwrap().contains("ana")),
        "{entries:#?}"
    );

    // And `keys revoke` on node-b's host reaches node-a the same way.
    let second = cluster.issue_key(1, CLIENT);
    eventually("node-a admits node-b's key", || {
        cluster.version(0, &second).0 == 200
    });
    let id = active_key_id(&cluster, 0);
    let revoke = cluster.warden(1, &["keys", "revoke", &id, "--reason", "rotated out"], None);
    assert!(revoke.status.success(), "{}", text(&revoke));
    eventually("node-a refuses the key revoked on node-b's host", || {
        cluster.version(0, &second).0 == 403
    });
    assert_eq!(cluster.version(1, &second).0, 403);
}

#[test]
fn a_quarantine_applied_through_one_gateway_is_honoured_by_the_other() {
    let Some(cluster) = started("quarantine") else {
        return;
    };
    let key = cluster.issue_key(0, CLIENT);
    eventually("both admit the key", || {
        cluster.version(0, &key).0 == 200 && cluster.version(1, &key).0 == 200
    });
    rotation_by_sandbox(&cluster);
    // node-a's host quarantines the account (an emergency rotation's first
    // step), straight into PostgreSQL; node-b refuses its clients.
    let quarantine = cluster.warden(
        0,
        &[
            "rotate",
            "start",
            ACCOUNT,
            "--emergency",
            "--issuer",
            "sandbox",
            "--reason",
            "token seen in a log",
        ],
        None,
    );
    let out = text(&quarantine);
    let quarantined = |i: usize| {
        let (status, body) = cluster.version(i, &key);
        status == 403 && body.contains("quarantined")
    };
    eventually("node-b refuses the quarantined account", || quarantined(1));
    assert!(quarantined(0), "{out}");
    let list = cluster.warden(1, &["accounts", "list"], None);
    assert!(
        text(&list).contains("QUARANTINED"),
        "node-b's host sees the quarantine: {}\n{out}",
        text(&list)
    );

    // Released on node-b's host: node-a serves again.
    let release = cluster.warden(
        1,
        &[
            "accounts",
            "release",
            ACCOUNT,
            "--reason",
            "rotated, checked",
        ],
        None,
    );
    assert!(release.status.success(), "{}", text(&release));
    eventually("node-a serves the released account", || {
        cluster.version(0, &key).0 == 200
    });
    eventually("node-b serves the released account", || {
        cluster.version(1, &key).0 == 200
    });
    let entries = cluster.entries();
    assert!(
        entries.iter().any(|e| e["kind"] == "admin"
            && e["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("rotated, checked")),
        "the release is recorded with its reason: {entries:#?}"
    );
}

#[test]
fn a_hold_started_through_one_gateway_holds_the_other_until_released() {
    let Some(cluster) = started("hold") else {
        return;
    };
    let key = cluster.issue_key(0, CLIENT);
    eventually("node-b admits the key", || {
        cluster.version(1, &key).0 == 200
    });
    let who = json!({"operator": "ana", "reason": "regenerating in the UI"});
    let (status, body) = cluster.admin(
        0,
        Method::POST,
        &format!("/admin/accounts/{ACCOUNT}/hold"),
        Some(who.clone()),
    );
    assert_eq!(status, 200, "{body}");
    eventually("node-b holds the account", || {
        cluster.health(1)["held_accounts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|h| h["account"] == ACCOUNT))
    });
    // A second hold through node-b is refused: one hold, shared.
    let (status, body) = cluster.admin(
        1,
        Method::POST,
        &format!("/admin/accounts/{ACCOUNT}/hold"),
        Some(who.clone()),
    );
    assert_eq!(status, 409, "{body}");

    // A request through node-b waits...
    let url = cluster.nodes[1].api_url();
    let waiting = {
        let key = key.clone();
        cluster.sandbox.rt.spawn(async move {
            reqwest::Client::new()
                .post(&url)
                .form(&[("token", key.as_str()), ("content", "version")])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "node-b did not hold the request");
    // ...until the hold is released through node-a.
    let (status, body) = cluster.admin(
        0,
        Method::POST,
        &format!("/admin/accounts/{ACCOUNT}/release"),
        Some(json!({"operator": "ana", "reason": "new token stored"})),
    );
    assert_eq!(status, 200, "{body}");
    let answered = cluster.sandbox.rt.block_on(waiting).unwrap();
    assert_eq!(answered, 200, "the held request went on");
    eventually("node-b's hold ended", || {
        cluster.health(1)["held_accounts"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
}

#[test]
fn a_rotation_started_through_one_gateway_is_honoured_by_both_under_load() {
    let Some(cluster) = started("rotation") else {
        return;
    };
    rotation_by_sandbox(&cluster);
    let key = cluster.issue_key(0, CLIENT);
    eventually("both admit the key", || {
        cluster.version(0, &key).0 == 200 && cluster.version(1, &key).0 == 200
    });

    // Clients loop through both gateways for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loops: Vec<_> = (0..2)
        .map(|i| {
            let url = cluster.nodes[i].api_url();
            let (key, stop, ok, failures) =
                (key.clone(), stop.clone(), ok.clone(), failures.clone());
            cluster.sandbox.rt.spawn(async move {
                let http = reqwest::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("n{i}-{n}");
                    let data = format!(r#"[{{"record_id":"{id}","age":"42"}}]"#);
                    let answer = http
                        .post(&url)
                        .form(&[
                            ("token", key.as_str()),
                            ("content", "record"),
                            ("action", "import"),
                            ("format", "json"),
                            ("data", &data),
                        ])
                        .send()
                        .await;
                    let answer = match answer {
                        Ok(r) => Ok((r.status().as_u16(), r.text().await.unwrap_or_default())),
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok((200, _)) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok((status, body)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("node {i} {id}: {status} {body}")),
                        Err(e) => failures.lock().unwrap().push(format!("node {i} {id}: {e}")),
                    }
                }
            })
        })
        .collect();
    eventually("the load runs", || ok.load(Ordering::SeqCst) >= 8);
    let before = ok.load(Ordering::SeqCst);
    let rotation = cluster.warden(
        0,
        &["rotate", "run", ACCOUNT, "--reason", "scheduled"],
        None,
    );
    let out = text(&rotation);
    eventually("the load goes on after the rotation", || {
        ok.load(Ordering::SeqCst) >= before + 8
    });
    stop.store(true, Ordering::SeqCst);
    cluster.sandbox.rt.block_on(async {
        for l in loops {
            l.await.unwrap();
        }
    });
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}\n{out}");

    // The rotation held and released the account through node-a; node-b
    // mirrored both, and serves with the new token.
    let entries = cluster.entries();
    let admin = |action: &str| {
        entries
            .iter()
            .filter(|e| e["kind"] == "admin" && e["action"] == action)
            .count()
    };
    assert_eq!(admin("cutover-hold"), 1, "{out}\n{entries:#?}");
    assert_eq!(admin("cutover-release"), 1, "{out}\n{entries:#?}");
    let switched = entries
        .iter()
        .any(|e| e["kind"] == "rotation" && e["to"] == "switched");
    assert!(switched, "{out}");
    assert_eq!(cluster.version(1, &key).0, 200);
    assert_eq!(cluster.version(0, &key).0, 200);
    // No token value in the rotation's output.
    for t in &cluster.tokens {
        assert!(!out.contains(t.as_str()));
    }
}

#[test]
fn a_change_whose_notification_is_missed_is_read_by_the_periodic_re_read() {
    let Some(cluster) = started("missed") else {
        return;
    };
    let key = cluster.issue_key(0, CLIENT);
    eventually("both admit the key", || {
        cluster.version(0, &key).0 == 200 && cluster.version(1, &key).0 == 200
    });
    let mut db = db_client(&cluster.database_url);
    // The key is revoked by a change no notification announces: only
    // the periodic re-read can see it.
    let changed = db
        .execute(
            &format!(
                "UPDATE {}.shared_state SET version = version + 1, document = convert_to(
                    jsonb_set(jsonb_set(convert_from(document, 'UTF8')::jsonb,
                        '{{keys,0,revoked_at}}', '\"2026-01-01T00:00:00Z\"'),
                        '{{keys,0,revoked_reason}}', '\"revoked behind the gateways'' backs\"')::text,
                    'UTF8') WHERE name = 'client-keys'",
                cluster.schema
            ),
            &[],
        )
        .unwrap();
    assert_eq!(changed, 1);
    eventually(
        "node-b refuses the key revoked without a notification",
        || cluster.version(1, &key).0 == 403,
    );
    eventually("node-a refuses it too", || {
        cluster.version(0, &key).0 == 403
    });

    // The listeners' connections die (a failover, a proxy's idle cut):
    // each gateway reconnects and re-reads.
    let killed: i64 = db
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'redcap-warden state listener'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 2, "both replicas listen ({killed} listeners)");
    // They come back: a change announced now arrives as before.
    eventually("both listen again", || {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'redcap-warden state listener'",
                &[],
            )
            .unwrap()
            .get(0);
        n >= 2
    });
    let next = cluster.issue_key(1, CLIENT);
    eventually("node-a admits node-b's new key", || {
        cluster.version(0, &next).0 == 200
    });
    let logs = cluster.nodes[1].log();
    assert!(
        logs.contains("reconnecting"),
        "node-b said it lost its listener: {logs}"
    );
}

#[test]
fn init_starts_straight_on_postgresql() {
    let Some(url) = common::cluster::database("init_postgres") else {
        return;
    };
    let schema = format!("init_pg_{}", std::process::id());
    let mut db = db_client(&url);
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let url_file = dir.join("db.url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    std::fs::set_permissions(
        &url_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // A readable-by-others connection file is refused, and nothing is made.
    std::fs::set_permissions(
        &url_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let refused = common::warden(
        dir,
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:9/api/",
            "--time-zone",
            "UTC",
            "--postgres-url-file",
            "db.url",
            "--postgres-schema",
            &schema,
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("chmod 600"), "{}", text(&refused));
    assert!(!dir.join("warden.toml").exists() && !dir.join("data").exists());
    std::fs::set_permissions(
        &url_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let init = common::warden(
        dir,
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:9/api/",
            "--time-zone",
            "UTC",
            "--postgres-url-file",
            "db.url",
            "--postgres-schema",
            &schema,
        ],
        None,
    );
    assert!(init.status.success(), "{}", text(&init));
    assert!(
        text(&init).contains(&format!("PostgreSQL schema {schema}")),
        "{}",
        text(&init)
    );
    let toml = std::fs::read_to_string(dir.join("warden.toml")).unwrap();
    assert!(toml.contains("backend = \"postgres\""), "{toml}");
    assert!(
        !toml.contains(&url),
        "the connection string stays in its file"
    );
    // No file ledger was written: the entries are in the database.
    assert!(!dir.join("data/ledger").exists());
    let entries: Vec<serde_json::Value> = db
        .query(
            &format!("SELECT entry FROM {schema}.entries ORDER BY seq"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(r.get::<_, &[u8]>(0)).unwrap())
        .collect();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "admin" && e["action"] == "init"),
        "{entries:#?}"
    );
    let check = common::warden(dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    let verify = common::warden(dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    // Changes made from here go to the database too: a secret's entry.
    common::put_secrets(dir, &[("redcap/x", "0123456789ABCDEF0123456789ABCDEF")]);
    let after: i64 = db
        .query_one(&format!("SELECT count(*) FROM {schema}.entries"), &[])
        .unwrap()
        .get(0);
    assert!(after as usize > entries.len());
    assert!(!dir.join("data/ledger").exists());
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
}

#[test]
fn a_reload_through_one_gateway_reloads_the_other() {
    let Some(cluster) = started("reload") else {
        return;
    };
    let (status, body) = cluster.admin(0, Method::POST, "/admin/reload", None);
    assert_eq!(status, 200, "{body}");
    // node-b reloads too, and records it as its own `reload` entry naming
    // where the reload came from.
    eventually("node-b records the reload it was told of", || {
        cluster.entries().iter().any(|e| {
            e["kind"] == "admin"
                && e["action"] == "reload"
                && e["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("announced through PostgreSQL")
        })
    });
    let reloads = cluster
        .entries()
        .iter()
        .filter(|e| e["kind"] == "admin" && e["action"] == "reload")
        .count();
    assert_eq!(reloads, 2, "one reload on each gateway, not an echo");
    let key = cluster.issue_key(0, CLIENT);
    eventually("both still serve", || {
        cluster.version(0, &key).0 == 200 && cluster.version(1, &key).0 == 200
    });
}

#[test]
fn a_gateway_that_cannot_confirm_the_keys_refuses_them() {
    let Some(cluster) = started("unconfirmed") else {
        return;
    };
    let key = cluster.issue_key(0, CLIENT);
    eventually("both admit the key", || {
        cluster.version(0, &key).0 == 200 && cluster.version(1, &key).0 == 200
    });
    // The shared documents cannot be read (the ledger still can): a
    // revocation made meanwhile would be invisible, so after a few missed
    // re-reads every key is refused rather than trusted. A session holds
    // the table locked: every read waits, and times out.
    let mut db = db_client(&cluster.database_url);
    let mut lock = db.transaction().unwrap();
    lock.batch_execute(&format!(
        "LOCK TABLE {0}.shared_state IN ACCESS EXCLUSIVE MODE",
        cluster.schema
    ))
    .unwrap();
    eventually("node-b refuses keys it cannot confirm", || {
        let (status, body) = cluster.version(1, &key);
        status == 503 && body.contains("could not confirm client keys")
    });
    let (status, _) = cluster.version(0, &key);
    assert_eq!(status, 503);
    lock.rollback().unwrap();
    eventually("both admit the key again", || {
        cluster.version(0, &key).0 == 200 && cluster.version(1, &key).0 == 200
    });
    // The refusals are counted into `denied` entries (flushed at stop).
    let mut cluster = cluster;
    cluster.stop(1);
    let entries = cluster.entries();
    assert!(
        entries.iter().any(|e| e["kind"] == "denied"
            && e.to_string()
                .contains("client keys not confirmed with PostgreSQL")),
        "{entries:#?}"
    );
}
