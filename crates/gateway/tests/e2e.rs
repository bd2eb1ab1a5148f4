//! The gateway end to end, on loopback, in front of redcap-sandbox: a real
//! REDCap-protocol client (reqwest with a form body, as PyCap sends), real
//! secrets store and ledger, and the sandbox's own log as the witness of
//! what reached "REDCap".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{FileSystem, OsFs, SimFs};
use gateway::keys::{KeyFile, KeyPolicy};
use gateway::{RunningGateway, Services};
use ledger::{EntryKind, Ledger, LedgerOptions};
use redcap_sandbox::{Config as SandboxConfig, Server};
use secrets::{
    FileStore, FileStoreOptions, FingerprintKey, Label, SecretName, SecretStore, SecretValue,
    VersionMeta,
};
use serde_json::{Value, json};

const SUPER: &str = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";
const ADMIN: &str = "sandbox-admin-secret";

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    _sandbox: Server,
    sandbox_base: String,
    store: Arc<FileStore>,
    http: reqwest::Client,
    /// The service account's REDCap token (the canary).
    token: String,
    pid: u64,
    signing: ed25519_dalek::SigningKey,
    /// Client keys by client name.
    keys: std::collections::HashMap<String, String>,
}

fn meta(reason: &str) -> VersionMeta {
    VersionMeta {
        operator: "test".into(),
        at: jiff::Timestamp::now(),
        reason: reason.into(),
        fingerprint: None,
        rotation_id: None,
    }
}

impl World {
    async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut sc = SandboxConfig::for_tests(dir.join("sandbox"));
        sc.super_token = Some(SUPER.into());
        sc.admin_secret = Some(ADMIN.into());
        let sandbox = Server::start(sc).await.unwrap();
        let sandbox_base = format!("http://{}", sandbox.addr);
        let http = reqwest::Client::new();

        // A project, its data dictionary, a record, and a service account.
        let api = format!("{sandbox_base}/api/");
        let admin_token = http
            .post(&api)
            .form(&[
                ("token", SUPER),
                ("content", "project"),
                ("format", "json"),
                ("data", r#"[{"project_title":"Heart","purpose":2}]"#),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(admin_token.len(), 32, "{admin_token}");
        let info: Value = http
            .post(&api)
            .form(&[
                ("token", admin_token.as_str()),
                ("content", "project"),
                ("format", "json"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pid = info["project_id"].as_u64().unwrap();
        let md = json!([
            {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
            {"field_name": "age", "form_name": "demographics", "field_type": "text", "field_label": "Age"}
        ]);
        let r = http
            .post(&api)
            .form(&[
                ("token", admin_token.as_str()),
                ("content", "metadata"),
                ("format", "json"),
                ("data", &md.to_string()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let data =
            json!([{"record_id": "1", "age": "40"}, {"record_id": "2", "age": "51"}]).to_string();
        let r = http
            .post(&api)
            .form(&[
                ("token", admin_token.as_str()),
                ("content", "record"),
                ("format", "json"),
                ("data", &data),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let add = http
            .post(format!("{sandbox_base}/sandbox/projects/{pid}/users"))
            .bearer_auth(ADMIN)
            .json(
                &json!({"username": "svc_etl", "api_export": 1, "api_import": 1, "record_create": 1,
                          "forms": {"demographics": 1}, "forms_export": {"demographics": 1}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(add.status(), 200, "{}", add.text().await.unwrap());
        let t: Value = http
            .post(format!(
                "{sandbox_base}/sandbox/projects/{pid}/users/svc_etl/token"
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = t["token"].as_str().unwrap().to_string();

        // The warden side: store, fingerprint key, the account's token.
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let opts = FileStoreOptions {
            path: dir.join("data/secrets.age"),
            identity: dir.join("data/identity.txt"),
            keep_versions: 10,
        };
        secrets::file::write_identity_file(&opts.identity, &secrets::file::generate_identity())
            .unwrap();
        let store = Arc::new(FileStore::create(opts).unwrap());
        FingerprintKey::generate(1)
            .save(&*store, meta("init"))
            .await
            .unwrap();
        store
            .put(
                &SecretName::new("redcap/heart/etl").unwrap(),
                SecretValue::new(token.clone()),
                meta("initial"),
                Label::Current,
            )
            .await
            .unwrap();

        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let mut w = World {
            _tmp: tmp,
            dir,
            _sandbox: sandbox,
            sandbox_base,
            store,
            http,
            token,
            pid,
            signing,
            keys: Default::default(),
        };
        let keyfile = KeyFile::new(&w.dir.join("data/client-keys.json"));
        let policy = KeyPolicy {
            lifetime: jiff::SignedDuration::from_hours(24),
            overlap: jiff::SignedDuration::from_hours(1),
        };
        for client in ["etl", "reader"] {
            let (k, _, _) = keyfile
                .issue(client, "test", policy, jiff::Timestamp::now())
                .unwrap();
            w.keys.insert(client.into(), k.expose().to_string());
        }
        w
    }

    fn config_text(&self) -> String {
        format!(
            r#"
[redcap]
url = "{base}/api/"
time_zone = "UTC"

[gateway]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
keys_file = "data/client-keys.json"

[[study]]
name = "heart"

[[account]]
name = "heart-etl"
username = "svc_etl"
secret = "redcap/heart/etl"
study = "heart"

[[client]]
name = "etl"
account = "heart-etl"
allow = ["record:export", "record:import", "version", "project"]

[[client]]
name = "reader"
account = "heart-etl"
allow = ["record:export"]
"#,
            base = self.sandbox_base
        )
    }

    fn create_ledger(&self, fs: Arc<dyn FileSystem>, dir: &Path) {
        fs.create_dir_all(dir).unwrap();
        let opts = LedgerOptions {
            lock: false,
            ..LedgerOptions::default()
        };
        Ledger::create(
            fs,
            dir,
            "test/redcap-warden/0011223344556677",
            self.signing.clone(),
            opts,
        )
        .unwrap()
        .close()
        .unwrap();
    }

    async fn start_gateway(&self, fs: Arc<dyn FileSystem>, ledger_dir: PathBuf) -> RunningGateway {
        let path = self.dir.join("warden.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        let config = warden_config::load(&path).unwrap();
        let signing = self.signing.clone();
        let opener: gateway::LedgerOpener = Arc::new(move || {
            Ledger::open(
                fs.clone(),
                &ledger_dir,
                signing.clone(),
                LedgerOptions {
                    lock: false,
                    ..LedgerOptions::default()
                },
            )
        });
        let store: Arc<dyn SecretStore> = self.store.clone();
        let fingerprint = FingerprintKey::load(&*store).await.unwrap();
        gateway::start(Services {
            keys: KeyFile::new(&self.dir.join("data/client-keys.json")),
            config,
            store,
            fingerprint,
            open_ledger: opener,
            operator: "tester".into(),
        })
        .await
        .unwrap()
    }

    async fn start_on_disk(&self) -> (RunningGateway, PathBuf) {
        let dir = self.dir.join("data/ledger");
        self.create_ledger(Arc::new(OsFs), &dir);
        (self.start_gateway(Arc::new(OsFs), dir.clone()).await, dir)
    }

    /// POSTs a form to the gateway.
    async fn call(&self, gw: &RunningGateway, params: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("http://{}/api/", gw.addr))
            .form(params)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The sandbox's own log rows for the service account (what reached REDCap).
    async fn redcap_log(&self) -> Vec<Value> {
        let api = format!("{}/api/", self.sandbox_base);
        // The project creator (site_admin) reads the log through the super
        // token's project token: fetch it through the admin endpoint.
        let t: Value = self
            .http
            .get(format!(
                "{}/sandbox/projects/{}/users/site_admin/token",
                self.sandbox_base, self.pid
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let admin_token = t["token"].as_str().unwrap().to_string();
        let rows: Value = self
            .http
            .post(&api)
            .form(&[
                ("token", admin_token.as_str()),
                ("content", "log"),
                ("format", "json"),
                ("user", "svc_etl"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rows.as_array().cloned().unwrap_or_default()
    }
}

fn entries(fs: &dyn FileSystem, dir: &Path) -> Vec<EntryKind> {
    ledger::read_entries(fs, dir)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

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
        json!([{"record_id": "2", "age": "51", "demographics_complete": "0"}])
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
            EntryKind::Request { reason, .. } => reason.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["visit 3 entered"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_and_expired_keys_are_refused() {
    let w = World::new().await;
    let (gw, _) = w.start_on_disk().await;
    let keyfile = KeyFile::new(&w.dir.join("data/client-keys.json"));
    let list = keyfile.list().unwrap();
    let reader = list.iter().find(|k| k.client == "reader").unwrap();
    keyfile
        .revoke(&reader.id, "test", jiff::Timestamp::now())
        .unwrap();
    // The gateway notices the changed key file on the next unknown key at
    // the latest; force a reload by presenting a fresh key.
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
    let (s, _) = w
        .call(
            &gw,
            &[
                ("token", &w.keys["reader"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 403, "a revoked key is refused");
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
    let t: Value = w
        .http
        .post(format!(
            "{}/sandbox/projects/{}/users/svc_etl/token/regenerate",
            w.sandbox_base, w.pid
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_token = t["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, w.token);
    w.store
        .put(
            &SecretName::new("redcap/heart/etl").unwrap(),
            SecretValue::new(new_token.clone()),
            meta("rotated"),
            Label::Current,
        )
        .await
        .unwrap();
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
async fn the_admin_listener_reports_health() {
    let w = World::new().await;
    let (gw, _) = w.start_on_disk().await;
    let h: Value = w
        .http
        .get(format!("http://{}/health", gw.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["redcap_banned"], false);
    gw.shutdown().await.unwrap();
}

/// The live segment is unlinked behind the writer's back: the writer
/// notices before its next batch and fails closed; with the segment gone
/// there is nothing to reopen, so the gateway stays refusing.
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
