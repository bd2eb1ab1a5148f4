//! The gateway end to end, on loopback, in front of redcap-sandbox: a real
//! REDCap-protocol client (reqwest with a form body, as PyCap sends), real
//! secrets store and ledger, and the sandbox's own log as the witness of
//! what reached "REDCap".

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use durable::{FileSystem, OsFs, SimFs};
use gateway::keys::{KeyFile, KeyPolicy};
use ledger::{EntryKind, Ledger, LedgerOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_goes_through_with_a_client_key_and_both_entries_are_written() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let key = &w.keys["etl"];
    let (status, body) = w
        .call(
            &gw,
            &[
                ("token", key),
                ("content", "record"),
                ("format", "json"),
                ("records[0]", "2"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        rows,
        json!([{"record_id": "2", "age": "51", "consent": "", "demographics_complete": "0"}])
    );
    gw.shutdown().await.unwrap();

    let kinds = entries(&OsFs, &ledger_dir);
    let req = kinds.iter().find_map(|k| match k {
        EntryKind::Request {
            client,
            account,
            content,
            action,
            record_ids,
            params,
            ..
        } => Some((
            client.clone(),
            account.clone(),
            content.clone(),
            action.clone(),
            record_ids.clone(),
            params.clone(),
        )),
        _ => None,
    });
    let (client, account, content, action, record_ids, params) = req.expect("a request entry");
    assert_eq!((client.as_str(), account.as_str()), ("etl", "heart-etl"));
    assert_eq!(
        (content.as_deref(), action.as_deref()),
        (Some("record"), Some("export"))
    );
    assert_eq!(record_ids, ["2"]);
    assert!(
        !params.contains(&"token".to_string()),
        "the token parameter is not part of what is recorded"
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EntryKind::Response { status: 200, .. }))
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EntryKind::Admin { action, .. } if action == "stop"))
    );

    // REDCap saw the call as the service account.
    let log = w.redcap_log().await;
    assert!(
        log.iter()
            .any(|r| r["action"].as_str().unwrap_or("").contains("Data export")),
        "{log:?}"
    );

    // The token never appears in the ledger, the key file or the answer.
    let canary = canary::Canary::new(&w.token);
    canary.assert_clean(&canary.find("gateway answer", body.as_bytes()));
    canary.assert_clean(&canary.scan_dir(&w.dir.join("data"), &[w.dir.join("data/secrets.age")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_use_redcaps_shapes_and_are_recorded() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let before = w.redcap_log().await.len();

    // Unknown key, in each format REDCap answers errors in.
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", "0123456789ABCDEF0123456789ABCDEF"),
                ("content", "version"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(
        (s, b.as_str()),
        (
            403,
            r#"{"error":"You do not have permissions to use the API"}"#
        )
    );
    let (s, b) = w
        .call(
            &gw,
            &[("token", "nope"), ("content", "version"), ("format", "csv")],
        )
        .await;
    assert_eq!(
        (s, b.as_str()),
        (403, "ERROR: You do not have permissions to use the API")
    );

    // A client not allowed to import.
    let reader = &w.keys["reader"];
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", reader),
                ("content", "record"),
                ("format", "json"),
                ("data", "[]"),
            ],
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b.contains("does not allow client \\\"reader\\\" to call record:import"),
        "{b}"
    );

    // A write without a reason, then with one.
    let etl = &w.keys["etl"];
    let data = r#"[{"record_id":"3","age":"33"}]"#;
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", etl),
                ("content", "record"),
                ("format", "json"),
                ("data", data),
            ],
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("reason"), "{b}");
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", etl),
                ("content", "record"),
                ("format", "json"),
                ("data", data),
                ("reason", "visit 3 entered"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Ambiguous bodies never reach REDCap.
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", etl),
                ("content", "record"),
                ("content", "user"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, _) = w
        .call(
            &gw,
            &[("token", etl), ("content", "record"), ("mobile.app", "1")],
        )
        .await;
    assert_eq!(s, 400);

    // A body of max_input_vars fields that the gateway's own
    // `returnContent=ids` and the token would push past it: refused before
    // anything is recorded or forwarded.
    let site = &w.keys["site-app"];
    let filler: Vec<(String, String)> = (0..996).map(|i| (format!("x{i}"), "1".into())).collect();
    let mut params = vec![
        ("token", site.as_str()),
        ("content", "record"),
        ("format", "json"),
        ("data", r#"[{"record_id":"9"}]"#),
    ];
    params.extend(filler.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (s, b) = w.call(&gw, &params).await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains("1001 fields") && b.contains("max_input_vars"),
        "{b}"
    );

    gw.shutdown().await.unwrap();
    let after = w.redcap_log().await;
    let new_rows: Vec<&Value> = after.iter().take(after.len() - before).collect();
    assert!(
        new_rows
            .iter()
            .all(|r| !r["action"].as_str().unwrap_or("").contains("export")),
        "only the one import reached REDCap: {new_rows:?}"
    );
    let kinds = entries(&OsFs, &ledger_dir);
    let denied: Vec<(String, u64)> = kinds
        .iter()
        .filter_map(|k| match k {
            EntryKind::Denied { reason, count, .. } => Some((reason.clone(), *count)),
            _ => None,
        })
        .collect();
    assert!(denied.contains(&("unknown key".into(), 2)), "{denied:?}");
    assert!(
        denied
            .iter()
            .any(|(r, _)| r == "not allowed: record:import"),
        "{denied:?}"
    );
    assert!(
        denied.iter().any(|(r, _)| r == "write without a reason"),
        "{denied:?}"
    );
    let reasons: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            EntryKind::Request { reason, client, .. } if client != "gateway" => reason.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["visit 3 entered"]);
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, EntryKind::Request { client, .. } if client == "site-app")),
        "the refused import was not recorded"
    );
}

/// The smuggling of issue #20: PHP cuts a name at its first NUL, so
/// `content\0` and `action\0` overwrite `content` and `action` in REDCap.
/// Both bodies are refused, naming the parameter, and nothing reaches
/// REDCap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_php_cuts_at_a_nul_never_reach_redcap() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let before = w.redcap_log().await.len();
    let requests_before = entries(&OsFs, &ledger_dir)
        .iter()
        .filter(|k| matches!(k, EntryKind::Request { .. }))
        .count();
    let raw = |key: &str, rest: &str| {
        let body = format!("token={key}&{rest}");
        let http = w.http.clone();
        let url = format!("http://{}/api/", gw.addr);
        async move {
            let r = http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, b) = raw(
        &w.keys["etl"],
        "content=version&content%00=user&format=json",
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains(
            r#"The parameter name \"content\\0\" is read by PHP, and so by REDCap, as \"content\""#
        ),
        "{b}"
    );
    let (s, b) = raw(
        &w.keys["reader"],
        "content=record&action=export&format=json&action%00=delete&records%5B0%5D=1",
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains(r#"as \"action\""#), "{b}");
    // The same smuggling in a multipart body, with a NUL byte in the name.
    let multipart = "--B\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nKEY\r\n--B\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nversion\r\n--B\r\nContent-Disposition: form-data; name=\"content\0x\"\r\n\r\nuser\r\n--B--\r\n"
        .replace("KEY", &w.keys["etl"]);
    let r = w
        .http
        .post(format!("http://{}/api/", gw.addr))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let b = r.text().await.unwrap();
    assert!(b.contains("NUL byte"), "{b}");

    gw.shutdown().await.unwrap();
    assert_eq!(w.redcap_log().await.len(), before, "nothing reached REDCap");
    let requests_after = entries(&OsFs, &ledger_dir)
        .iter()
        .filter(|k| matches!(k, EntryKind::Request { .. }))
        .count();
    assert_eq!(requests_after, requests_before, "nothing was forwarded");
}

/// The real file system, with a hook that runs once, between reading the
/// key file and returning what was read: another process's write landing
/// in the window between the gateway's read and its stamp of the file.
struct WriteWhileReading {
    path: PathBuf,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    fired: std::sync::atomic::AtomicBool,
}

impl FileSystem for WriteWhileReading {
    fn open_append(&self, path: &Path) -> std::io::Result<Box<dyn durable::DurableFile>> {
        OsFs.open_append(path)
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Box<dyn durable::DurableFile>> {
        OsFs.create_new(path)
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let bytes = OsFs.read(path)?;
        if path == self.path
            && let Some(hook) = self.hook.lock().unwrap().take()
        {
            hook();
            self.fired.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(bytes)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        OsFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        OsFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        OsFs.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        OsFs.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        OsFs.list_dir(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        OsFs.exists(path)
    }
    fn file_id(&self, path: &Path) -> std::io::Result<durable::FileId> {
        OsFs.file_id(path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_written_while_the_gateway_reads_the_key_file_counts_at_once() {
    let w = World::new().await;
    let ledger_dir = w.dir.join("data/ledger");
    w.create_ledger(Arc::new(OsFs), &ledger_dir);
    let path = w.dir.join("data/client-keys.json");
    let slow = Arc::new(WriteWhileReading {
        path: path.clone(),
        hook: std::sync::Mutex::new(None),
        fired: Default::default(),
    });
    let gw = w
        .try_start_gateway_with_keys(
            Arc::new(OsFs),
            ledger_dir,
            KeyFile::with_fs(&path, slow.clone()),
        )
        .await
        .unwrap();
    let keyfile = KeyFile::new(&path);
    let reader = keyfile
        .list()
        .unwrap()
        .into_iter()
        .find(|k| k.client == "reader")
        .unwrap();
    let export = [
        ("token", w.keys["reader"].as_str()),
        ("content", "record"),
        ("format", "json"),
    ];
    assert_eq!(w.call(&gw, &export).await.0, 200, "the key works");
    // `keys revoke` lands while the gateway reads the key file after
    // another change (`keys issue` for another client).
    let revoker = KeyFile::new(&path);
    *slow.hook.lock().unwrap() = Some(Box::new(move || {
        revoker
            .revoke(&reader.id, "leaked", jiff::Timestamp::now())
            .unwrap();
    }));
    let policy = KeyPolicy {
        lifetime: jiff::SignedDuration::from_hours(24),
        overlap: jiff::SignedDuration::from_hours(1),
    };
    keyfile
        .issue("etl", "test", policy, jiff::Timestamp::now())
        .unwrap();
    let (s, _) = w.call(&gw, &export).await;
    assert!(
        slow.fired.load(std::sync::atomic::Ordering::SeqCst),
        "the revocation was written between the gateway's read and its stamp"
    );
    assert_eq!(s, 403, "the revoked key is refused from the next request");
    assert_eq!(w.call(&gw, &export).await.0, 403, "and stays refused");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_and_expired_keys_are_refused() {
    let w = World::new().await;
    let (gw, _) = w.start_on_disk().await;
    let keyfile = KeyFile::new(&w.dir.join("data/client-keys.json"));
    let list = keyfile.list().unwrap();
    let reader = list.iter().find(|k| k.client == "reader").unwrap();
    let export = [
        ("token", w.keys["reader"].as_str()),
        ("content", "record"),
        ("format", "json"),
    ];
    let (s, _) = w.call(&gw, &export).await;
    assert_eq!(s, 200, "the key works before it is revoked");
    keyfile
        .revoke(&reader.id, "test", jiff::Timestamp::now())
        .unwrap();
    // A revocation counts from the very next request: no reload needed.
    let (s, _) = w.call(&gw, &export).await;
    assert_eq!(s, 403, "a revoked key is refused");
    let policy = KeyPolicy {
        lifetime: jiff::SignedDuration::from_secs(1),
        overlap: jiff::SignedDuration::from_secs(0),
    };
    let (short, _, _) = keyfile
        .issue(
            "etl",
            "test",
            policy,
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5),
        )
        .unwrap();
    let (s, _) = w
        .call(&gw, &[("token", short.expose()), ("content", "version")])
        .await;
    assert_eq!(s, 403, "an expired key is refused");
    gw.shutdown().await.unwrap();
}

/// The ledger fails under the gateway (each fault of the file-system
/// layer): the request is answered 503 and REDCap never sees it; when the
/// ledger is usable again, an alert records the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_ledger_refuses_requests_and_forwards_nothing() {
    for fault in [
        durable::Fault::WriteEio,
        durable::Fault::SyncEio,
        durable::Fault::NoSpace,
    ] {
        let w = World::new().await;
        let sim = SimFs::new();
        let dir = PathBuf::from("/ledger");
        w.create_ledger(Arc::new(sim.clone()), &dir);
        let gw = w.start_gateway(Arc::new(sim.clone()), dir.clone()).await;
        let before = w.redcap_log().await.len();
        sim.fail(fault);
        let etl = &w.keys["etl"];
        let (s, b) = w
            .call(
                &gw,
                &[("token", etl), ("content", "record"), ("format", "json")],
            )
            .await;
        assert_eq!(s, 503, "{fault:?}: {b}");
        assert!(b.contains("audit ledger"), "{b}");
        let (s, _) = w
            .call(
                &gw,
                &[("token", etl), ("content", "record"), ("format", "json")],
            )
            .await;
        assert_eq!(s, 503, "{fault:?}: still degraded");
        assert!(gw.degraded());
        // /health says what is wrong, and keeps the last size it knew.
        let health: Value = w
            .http
            .get(format!("http://{}/health", gw.admin_addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "degraded", "{health}");
        assert!(
            health["ledger_entries"].as_u64().is_some_and(|n| n > 0),
            "{fault:?}: {health}"
        );
        assert!(health["ledger_outage"]["cause"].is_string(), "{health}");
        assert_eq!(health["ledger_outage"]["requests_refused"], 2, "{health}");
        assert_eq!(
            w.redcap_log().await.len(),
            before,
            "{fault:?}: nothing reached REDCap"
        );

        sim.clear_faults();
        for _ in 0..100 {
            if !gw.degraded() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            !gw.degraded(),
            "{fault:?}: the gateway recovers once the ledger works"
        );
        let (s, b) = w
            .call(
                &gw,
                &[("token", etl), ("content", "record"), ("format", "json")],
            )
            .await;
        assert_eq!(s, 200, "{fault:?}: {b}");
        gw.shutdown().await.unwrap();
        let alert = entries(&sim, &dir).into_iter().find_map(|k| match k {
            EntryKind::Alert { code, message } if code == "ledger_unavailable" => Some(message),
            _ => None,
        });
        let alert = alert.unwrap_or_else(|| panic!("{fault:?}: no outage alert"));
        assert!(alert.contains("2 requests refused"), "{alert}");
        // No response is written twice.
        let mut answered = std::collections::HashSet::new();
        for k in entries(&sim, &dir) {
            if let EntryKind::Response { request_id, .. } = k {
                assert!(
                    answered.insert(request_id.clone()),
                    "{fault:?}: {request_id} twice"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_regenerated_and_stored_is_picked_up_without_restart() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let etl = &w.keys["etl"];
    assert_eq!(
        w.call(&gw, &[("token", etl), ("content", "version")])
            .await
            .0,
        200
    );
    // Someone regenerates the token in REDCap's UI and stores the new one.
    let new_token = w.regenerate_and_store_etl_token().await;
    let (s, b) = w.call(&gw, &[("token", etl), ("content", "version")]).await;
    assert_eq!(
        s, 200,
        "the old cached token was refused, the store re-read, the call retried: {b}"
    );
    gw.shutdown().await.unwrap();
    let canary = canary::Canary::new(&new_token);
    canary.assert_clean(&canary.scan_dir(&ledger_dir, &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presenting_a_real_redcap_token_raises_an_alert() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let (s, _) = w
        .call(&gw, &[("token", &w.token), ("content", "version")])
        .await;
    assert_eq!(s, 403);
    gw.shutdown().await.unwrap();
    let alert = entries(&OsFs, &ledger_dir)
        .into_iter()
        .find_map(|k| match k {
            EntryKind::Alert { code, message } if code == "real_token_presented" => Some(message),
            _ => None,
        });
    let alert = alert.expect("an alert");
    assert!(alert.contains("heart-etl"), "{alert}");
    let canary = canary::Canary::new(&w.token);
    canary.assert_clean(&canary.find("alert", alert.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unlinked_ledger_file_stops_forwarding() {
    let w = World::new().await;
    let sim = SimFs::new();
    let dir = PathBuf::from("/ledger");
    w.create_ledger(Arc::new(sim.clone()), &dir);
    let gw = w.start_gateway(Arc::new(sim.clone()), dir.clone()).await;
    let before = w.redcap_log().await.len();
    let segment = sim
        .list_dir(&dir)
        .unwrap()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    sim.unlink_live(&segment).unwrap();
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &w.keys["etl"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 503, "{b}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        gw.degraded(),
        "a ledger whose segment vanished is not silently replaced"
    );
    assert_eq!(w.redcap_log().await.len(), before, "nothing reached REDCap");
    gw.shutdown().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_listener_serves_metrics_reloads_and_takes_cli_entries() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let admin = format!("http://{}", gw.admin_addr);
    let token = std::fs::read_to_string(w.dir.join("data/gateway-admin-token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(w.dir.join("data/gateway-admin-token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let h: Value = w
        .http
        .get(format!("{admin}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (h["status"].as_str(), h["redcap_banned"].as_bool()),
        (Some("ok"), Some(false))
    );
    let reader = w.keys["reader"].clone();
    assert_eq!(
        w.call(&gw, &[("token", &reader), ("content", "version")])
            .await
            .0,
        403
    );
    assert_eq!(
        w.http
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let m = w
        .http
        .get(format!("{admin}/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("warden_requests_total{status=\"403\"} 1"), "{m}");
    assert!(m.contains("warden_denied_total 1"), "{m}");
    assert!(
        m.contains("warden_token_age_seconds{account=\"heart-etl\"}"),
        "{m}"
    );

    // Allow the reader `version`, then reload.
    let path = w.dir.join("warden.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "name = \"reader\"\naccount = \"heart-etl\"\nallow = [\"record:export\"]",
        "name = \"reader\"\naccount = \"heart-etl\"\nallow = [\"record:export\", \"version\"]",
    );
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        w.http
            .post(format!("{admin}/admin/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r: Value = w
        .http
        .post(format!("{admin}/admin/reload"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["reloaded"], true);
    assert_eq!(
        r["changes"][0],
        r#"client[reader].allow: ["record:export"] → ["record:export", "version"]"#,
        "{r}"
    );
    assert_eq!(
        w.call(&gw, &[("token", &reader), ("content", "version")])
            .await
            .0,
        200
    );

    // A broken file is not applied.
    std::fs::write(&path, "[redcap\n").unwrap();
    let r = w
        .http
        .post(format!("{admin}/admin/reload"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        w.call(&gw, &[("token", &reader), ("content", "version")])
            .await
            .0,
        200,
        "the old policy stays"
    );

    // The CLI's entries while the gateway holds the ledger.
    let entry = json!({"kind": "admin", "operator": "alice", "action": "test", "target": "x", "reason": "because"});
    let r = w
        .http
        .post(format!("{admin}/admin/ledger/append"))
        .bearer_auth(&token)
        .json(&entry)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let forged = json!({"kind": "response", "request_id": "x", "status": 200, "record_ids": [], "body_hmac": "", "body_bytes": 0, "latency_ms": 0});
    let r = w
        .http
        .post(format!("{admin}/admin/ledger/append"))
        .bearer_auth(&token)
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    gw.shutdown().await.unwrap();

    let kinds = entries(&OsFs, &ledger_dir);
    assert!(kinds.iter().any(|k| matches!(k, EntryKind::Admin { action, reason, .. } if action == "reload" && reason.contains("client[reader].allow"))));
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, EntryKind::Admin { operator, .. } if operator == "alice"))
    );
    assert!(kinds.iter().any(|k| matches!(k, EntryKind::Admin { action, reason, .. } if action == "start" && reason.contains("first start"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_goes_through_the_gateway_byte_for_byte_with_its_name() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let etl = w.keys["etl"].clone();
    let api = format!("http://{}/api/", gw.addr);
    // Bytes that are not UTF-8, so no text conversion can pass them intact.
    let scan: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let form = reqwest::multipart::Form::new()
        .text("token", etl.clone())
        .text("content", "file")
        .text("action", "import")
        .text("record", "1")
        .text("field", "consent")
        .part(
            "file",
            reqwest::multipart::Part::bytes(scan.clone()).file_name("consent scan.pdf"),
        );
    let r = w
        .http
        .post(&api)
        .header("X-Warden-Reason", "signed consent received")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let r = w
        .http
        .post(&api)
        .form(&[
            ("token", etl.as_str()),
            ("content", "file"),
            ("action", "export"),
            ("record", "1"),
            ("field", "consent"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.contains("name=\"consent scan.pdf\""),
        "clients read the file name from the content type: {content_type}"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), scan.as_slice());

    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &etl),
                ("content", "file"),
                ("action", "delete"),
                ("record", "1"),
                ("field", "consent"),
                ("reason", "consent withdrawn"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &etl),
                ("content", "file"),
                ("action", "export"),
                ("record", "1"),
                ("field", "consent"),
                ("returnFormat", "json"),
            ],
        )
        .await;
    assert_eq!(s, 400, "nothing left to export: {b}");
    gw.shutdown().await.unwrap();

    let requests: Vec<(Option<String>, Vec<String>)> = entries(&OsFs, &ledger_dir)
        .into_iter()
        .filter_map(|k| match k {
            EntryKind::Request {
                content: Some(c),
                action,
                record_ids,
                ..
            } if c == "file" => Some((action, record_ids.to_vec())),
            _ => None,
        })
        .collect();
    let actions: Vec<_> = requests.iter().map(|(a, _)| a.as_deref()).collect();
    assert_eq!(
        actions,
        vec![
            Some("import"),
            Some("export"),
            Some("delete"),
            Some("export")
        ]
    );
    assert!(
        requests.iter().all(|(_, ids)| ids == &["1"]),
        "{requests:?}"
    );
}

/// Record exports stream through the gateway (#10): in json, csv and xml
/// the `response` entry names the records that left and says the client
/// received the answer whole; the record id field comes from one ledgered
/// metadata call of the gateway's own, and an export of fields without
/// the record id names no records (never another field's values).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn record_exports_stream_and_name_their_records_in_every_format() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let key = &w.keys["etl"];
    for format in ["json", "csv", "xml"] {
        let (s, b) = w
            .call(
                &gw,
                &[("token", key), ("content", "record"), ("format", format)],
            )
            .await;
        assert_eq!(s, 200, "{format}: {b}");
    }
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", key),
                ("content", "record"),
                ("format", "json"),
                ("fields[0]", "age"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(!b.contains("record_id"), "{b}");
    gw.shutdown().await.unwrap();

    let kinds = entries(&OsFs, &ledger_dir);
    let exports: Vec<String> = kinds
        .iter()
        .filter_map(|k| match k {
            EntryKind::Request {
                request_id,
                client,
                content: Some(c),
                ..
            } if c == "record" && client == "etl" => Some(request_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(exports.len(), 4);
    let answer = |id: &str| {
        kinds
            .iter()
            .find_map(|k| match k {
                EntryKind::Response {
                    request_id,
                    record_ids,
                    delivery,
                    body_bytes,
                    ..
                } if request_id == id => Some((record_ids.to_vec(), *delivery, *body_bytes)),
                _ => None,
            })
            .expect("a response entry")
    };
    for id in &exports[..3] {
        let (ids, delivery, bytes) = answer(id);
        assert_eq!(ids, ["1", "2", "3"]);
        assert_eq!(delivery, Some(ledger::Delivery::Complete));
        assert!(bytes > 0);
    }
    assert!(
        answer(&exports[3]).0.is_empty(),
        "no record id in the answer"
    );
    let metadata_calls = kinds
        .iter()
        .filter(|k| matches!(k, EntryKind::Request { client, content: Some(c), .. } if client == "gateway" && c == "metadata"))
        .count();
    assert_eq!(
        metadata_calls, 1,
        "the record id field is read once and cached"
    );
}

/// A client that goes away in the middle of a streamed export leaves a
/// `response` entry that says so, with what had passed by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_leaving_mid_export_is_recorded_as_such() {
    let w = World::new().await;
    // 40,000 records: a few megabytes of JSON.
    let rows: Vec<Value> = (10..40_010)
        .map(|i| json!({"record_id": i.to_string(), "age": format!("{:0>40}", i)}))
        .collect();
    let r = w
        .http
        .post(format!("{}/api/", w.sandbox_base))
        .form(&[
            ("token", w.owner.as_str()),
            ("content", "record"),
            ("format", "json"),
            ("data", &Value::Array(rows).to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (gw, ledger_dir) = w.start_on_disk().await;
    let mut r = w
        .http
        .post(format!("http://{}/api/", gw.addr))
        .form(&[
            ("token", w.keys["etl"].as_str()),
            ("content", "record"),
            ("format", "json"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = 0;
    while got < 256 * 1024 {
        got += r.chunk().await.unwrap().expect("more body").len();
    }
    drop(r);
    // The gateway notices when it next writes to the closed connection.
    let mut delivery = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        delivery = entries(&OsFs, &ledger_dir)
            .into_iter()
            .find_map(|k| match k {
                EntryKind::Response {
                    delivery: Some(d),
                    record_ids,
                    body_bytes,
                    ..
                } => Some((d, record_ids.len(), body_bytes)),
                _ => None,
            });
        if delivery.is_some() {
            break;
        }
    }
    gw.shutdown().await.unwrap();
    let (d, ids, bytes) = delivery.expect("a response entry");
    assert_eq!(d, ledger::Delivery::ClientDisconnected);
    assert!(ids > 0 && ids < 40_003, "{ids} records had passed");
    assert!(bytes >= 256 * 1024, "{bytes}");
}

/// Issue #19, item 2: a connection that trickles its headers (a line
/// every two seconds, never finishing) is closed once its first request's
/// headers are late, and 64 connections from one address are all it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_too_many_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::new().await;
    let (gw, _) = w.start_on_disk().await;
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /api/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        if slow.write_all(b"X-Trickle: 1\r\n").await.is_err() {
            break true;
        }
        let mut b = [0u8; 64];
        match tokio::time::timeout(std::time::Duration::from_millis(10), slow.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => break true, // an error answer, then the close
            Err(_) => {}
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            break false;
        }
    };
    assert!(closed, "the trickling connection was not closed");
    assert!(started.elapsed() < std::time::Duration::from_secs(16));

    // One connection more than the limit: each asks for the version; the
    // one over the limit (whichever the gateway counted last) is closed
    // unanswered.
    let mut open = Vec::new();
    for _ in 0..=gateway::connections::PER_SOURCE {
        open.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    let request = format!(
        "POST /api/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\ntoken={}&content=version",
        "token=&content=version".len() + w.keys["etl"].len(),
        w.keys["etl"]
    );
    let mut answered = 0;
    for c in &mut open {
        let _ = c.write_all(request.as_bytes()).await;
    }
    for c in &mut open {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut b))
            .await
            .expect("answered or closed, not left hanging")
            .unwrap_or(0);
        if n > 0 {
            answered += 1;
        }
    }
    assert_eq!(answered, gateway::connections::PER_SOURCE);
    drop(open);
    // Once the others are gone, connections are served again.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (s, _) = w
        .call(&gw, &[("token", &w.keys["etl"]), ("content", "version")])
        .await;
    assert_eq!(s, 200);
    gw.shutdown().await.unwrap();
}

/// Issue #19, items 3 and 4: a gateway that died without its stop entry
/// leaves its marker; the next start marks each forwarded request without
/// a response `interrupted`, raises an `unclean_stop` alert, and rebuilds
/// the outbound window from the requests of the last minute. An import's
/// `request` entry names the records of its payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_after_a_crash_marks_the_unanswered_and_keeps_the_window() {
    let w = World::new().await;
    let dir = w.dir.join("data/ledger");
    w.create_ledger(Arc::new(OsFs), &dir);
    // A run that crashed: its start, three forwarded requests, one
    // answered — and the marker it left.
    let ledger = Ledger::open(
        Arc::new(OsFs),
        &dir,
        w.signing.clone(),
        LedgerOptions {
            lock: false,
            ..LedgerOptions::default()
        },
    )
    .unwrap();
    let start_seq = ledger.size();
    let request = |id: &str| EntryKind::Request {
        request_id: id.into(),
        client: "etl".into(),
        account: "heart-etl".into(),
        site: None,
        content: Some("record".into()),
        action: Some("import".into()),
        format: Some("json".into()),
        params: vec!["content".into()],
        record_ids: ["7"].into_iter().collect(),
        filter_hmac: None,
        body_hmac: "hm1:00".into(),
        body_bytes: 1,
        reason: None,
    };
    for id in ["r-a", "r-b", "r-c"] {
        ledger.append(request(id)).unwrap();
    }
    ledger
        .append(EntryKind::Response {
            request_id: "r-b".into(),
            status: 200,
            record_ids: ["7"].into_iter().collect(),
            body_hmac: "hm1:00".into(),
            body_bytes: 1,
            latency_ms: 1,
            delivery: None,
        })
        .unwrap();
    ledger.close().unwrap();
    std::fs::write(
        w.dir.join("data/gateway.running"),
        format!(r#"{{"start_seq":{start_seq},"pid":1,"started":"2026-12-04T00:00:00Z"}}"#),
    )
    .unwrap();

    let gw = w.start_gateway(Arc::new(OsFs), dir.clone()).await;
    let health: Value = w
        .http
        .get(format!("http://{}/health", gw.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["outbound_in_window"], 3,
        "the three requests of the last minute count: {health}"
    );
    assert!(
        w.dir.join("data/gateway.running").exists(),
        "this run's marker"
    );
    // An import names the records of its payload.
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &w.keys["etl"]),
                ("content", "record"),
                ("format", "json"),
                (
                    "data",
                    r#"[{"record_id":"41","age":"1"},{"record_id":"42","age":"2"}]"#,
                ),
                ("reason", "visit"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    gw.shutdown().await.unwrap();
    assert!(
        !w.dir.join("data/gateway.running").exists(),
        "a clean stop removes it"
    );

    let kinds = entries(&OsFs, &dir);
    let interrupted: Vec<String> = kinds
        .iter()
        .filter_map(|k| match k {
            EntryKind::Interrupted { request_id, .. } => Some(request_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(interrupted, ["r-a", "r-c"]);
    let alert = kinds
        .iter()
        .find_map(|k| match k {
            EntryKind::Alert { code, message } if code == "unclean_stop" => Some(message.clone()),
            _ => None,
        })
        .expect("an unclean_stop alert");
    assert!(alert.contains("2 forwarded request(s)"), "{alert}");
    let import = kinds
        .iter()
        .find_map(|k| match k {
            EntryKind::Request {
                client,
                action: Some(a),
                record_ids,
                ..
            } if client == "etl"
                && a == "import"
                && !record_ids.is_empty()
                && record_ids.len() == 2 =>
            {
                Some(record_ids.to_vec())
            }
            _ => None,
        })
        .expect("the import's request entry");
    assert_eq!(import, ["41", "42"]);
}

/// `[redcap] url` answers with a redirect (an http:// address in front of an
/// https:// REDCap, a moved server): the gateway follows none, so neither
/// the token nor the call goes anywhere else; the client hears a 503 that
/// names where REDCap points and the fix, and the `response` entry says 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redirect_from_redcap_is_never_followed() {
    let mut w = World::new().await;
    let target = format!("{}/api/", w.sandbox_base);
    for status in [302u16, 307] {
        let to = target.clone();
        let app = axum::Router::new().route(
            "/api/",
            axum::routing::post(move || {
                let to = to.clone();
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::LOCATION, format!("{to}?moved=1"))],
                        "moved",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let before = w.redcap_log().await.len();
        let dir = w.dir.join(format!("data/ledger-{status}"));
        w.create_ledger(Arc::new(OsFs), &dir);
        // The gateway reads `[redcap] url` from the configuration at start.
        let real = std::mem::replace(&mut w.sandbox_base, format!("http://{addr}"));
        let gw = w.start_gateway(Arc::new(OsFs), dir.clone()).await;
        w.sandbox_base = real;
        let (code, body) = w
            .call(&gw, &[("token", &w.keys["etl"]), ("content", "version")])
            .await;
        assert_eq!(code, 503, "{status}: {body}");
        assert!(
            body.contains(&target) && body.contains("[redcap] url") && !body.contains("moved=1"),
            "{status}: {body}"
        );
        assert_eq!(
            w.redcap_log().await.len(),
            before,
            "{status}: nothing reached REDCap through the redirect"
        );
        gw.shutdown().await.unwrap();
        let statuses: Vec<u16> = entries(&OsFs, &dir)
            .into_iter()
            .filter_map(|e| match e {
                EntryKind::Response { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [503], "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_listener_serves_api_with_or_without_its_slash_and_nothing_else() {
    let w = World::new().await;
    let (gw, _ledger_dir) = w.start_on_disk().await;
    let key = &w.keys["etl"];
    let form = [("token", key.as_str()), ("content", "version")];
    let post = |path: &str| {
        w.http
            .post(format!("http://{}{path}", gw.addr))
            .form(&form)
            .send()
    };
    for path in ["/api/", "/api"] {
        let r = post(path).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            !r.text().await.unwrap().is_empty(),
            "{path}: REDCap's version"
        );
    }
    // Any other path: 404 with an empty body (what the router answered).
    for path in ["/", "/api/x", "/redcap/api/", "/API/"] {
        let r = post(path).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert_eq!(r.text().await.unwrap(), "", "{path}");
    }
    // Any method reaches the request path, which answers as REDCap does.
    let r = w
        .http
        .get(format!("http://{}/api/", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 501);
    assert_eq!(
        r.text().await.unwrap(),
        "The requested method is not implemented."
    );
    gw.shutdown().await.unwrap();
}
