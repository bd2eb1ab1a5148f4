//! The gateway's end-to-end harness: redcap-sandbox in-process, a real
//! secrets store and ledger, and the sandbox's own log as the witness of
//! what reached "REDCap".

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{FileSystem, OsFs};
use gateway::keys::{KeyFile, KeyPolicy};
use gateway::{RunningGateway, Services};
use ledger::{EntryKind, Ledger, LedgerOptions};
use redcap_sandbox::{Config as SandboxConfig, Server};
use secrets::{
    FileStore, FileStoreOptions, FingerprintKey, Label, SecretName, SecretStore, SecretValue,
    VersionMeta,
};
use serde_json::{Value, json};

pub const SUPER: &str = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";
pub const ADMIN: &str = "sandbox-admin-secret";

pub struct World {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub _sandbox: Server,
    pub sandbox_base: String,
    pub store: Arc<FileStore>,
    pub http: reqwest::Client,
    /// The service account's REDCap token (the canary).
    pub token: String,
    pub pid: u64,
    pub signing: ed25519_dalek::SigningKey,
    /// The project owner's token (not governed; used to change REDCap).
    pub owner: String,
    /// The site account's token.
    pub site_token: String,
    pub dag_id: u64,
    /// Extra lines for the `[gateway]` table (TLS settings).
    pub gateway_extra: std::sync::Mutex<String>,
    /// Sections appended to warden.toml (e.g. `[alerts]`).
    pub extra_sections: std::sync::Mutex<String>,
    /// What the gateway is told about the host clock at start.
    pub clock: std::sync::Mutex<Arc<dyn governance::clock_sync::SyncProbe>>,
    /// Client keys by client name.
    pub keys: std::collections::HashMap<String, String>,
}

pub fn meta(reason: &str) -> VersionMeta {
    VersionMeta {
        operator: "test".into(),
        at: jiff::Timestamp::now(),
        reason: reason.into(),
        fingerprint: None,
        rotation_id: None,
    }
}

impl World {
    pub async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut sc = SandboxConfig::for_tests(dir.join("sandbox"));
        sc.super_token = Some(SUPER.into());
        sc.admin_secret = Some(ADMIN.into());
        let sandbox = Server::start(sc).await.unwrap();
        let sandbox_base = format!("http://{}", sandbox.addr);
        let http = reqwest::Client::new();

        // A project, its data dictionary, records, a DAG, and two service
        // accounts: one study-wide, one bound to site A's DAG.
        let api = format!("{sandbox_base}/api/");
        let redcap = |params: Vec<(&'static str, String)>| {
            let (http, api) = (http.clone(), api.clone());
            async move {
                let r = http.post(&api).form(&params).send().await.unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                assert_eq!(status, 200, "{params:?}: {body}");
                body
            }
        };
        let admin = |path: String, body: Option<Value>| {
            let (http, base) = (http.clone(), sandbox_base.clone());
            async move {
                let mut req = http.post(format!("{base}{path}")).bearer_auth(ADMIN);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200, "{path}");
                r.json::<Value>().await.unwrap()
            }
        };
        let call = |token: &str, content: &str, data: Option<String>| {
            let mut p = vec![
                ("token", token.to_string()),
                ("content", content.to_string()),
                ("format", "json".to_string()),
            ];
            p.extend(data.map(|d| ("data", d)));
            p
        };
        let project = r#"[{"project_title":"Heart","purpose":2}]"#.to_string();
        let admin_token = redcap(call(SUPER, "project", Some(project))).await;
        assert_eq!(admin_token.len(), 32, "{admin_token}");
        let info: Value =
            serde_json::from_str(&redcap(call(&admin_token, "project", None)).await).unwrap();
        let pid = info["project_id"].as_u64().unwrap();
        let md = json!([
            {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
            {"field_name": "age", "form_name": "demographics", "field_type": "text", "field_label": "Age"},
            {"field_name": "consent", "form_name": "demographics", "field_type": "file", "field_label": "Signed consent"}
        ]);
        redcap(call(&admin_token, "metadata", Some(md.to_string()))).await;
        let records = json!([{"record_id": "1", "age": "40"}, {"record_id": "2", "age": "51"}]);
        redcap(call(&admin_token, "record", Some(records.to_string()))).await;
        let mut dag_import = call(
            &admin_token,
            "dag",
            Some(
                json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]).to_string(),
            ),
        );
        dag_import.push(("action", "import".into()));
        redcap(dag_import).await;
        let dags: Value =
            serde_json::from_str(&redcap(call(&admin_token, "dag", None)).await).unwrap();
        let dag_id = dags[0]["data_access_group_id"].as_u64().unwrap();
        let site_record =
            json!([{"record_id": "3", "age": "33", "redcap_data_access_group": "site_a"}]);
        redcap(call(&admin_token, "record", Some(site_record.to_string()))).await;

        let mut tokens = Vec::new();
        for (user, dag) in [("svc_etl", None), ("svc_site", Some("site_a"))] {
            let mut rights = json!({"username": user, "api_export": 1, "api_import": 1, "record_create": 1,
                                    "forms": {"demographics": 1}, "forms_export": {"demographics": 1}});
            if let Some(d) = dag {
                rights["data_access_group"] = json!(d);
            } else {
                // Deleting an uploaded file needs REDCap's Delete Record right.
                rights["record_delete"] = json!(1);
            }
            admin(format!("/sandbox/projects/{pid}/users"), Some(rights)).await;
            let t = admin(format!("/sandbox/projects/{pid}/users/{user}/token"), None).await;
            tokens.push(t["token"].as_str().unwrap().to_string());
        }
        let (token, site_token) = (tokens[0].clone(), tokens[1].clone());

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
        store
            .put(
                &SecretName::new("redcap/heart/site-a").unwrap(),
                SecretValue::new(site_token.clone()),
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
            owner: admin_token,
            gateway_extra: Default::default(),
            extra_sections: Default::default(),
            clock: std::sync::Mutex::new(Arc::new(governance::clock_sync::FixedProbe(
                governance::clock_sync::ClockSync::Synchronised {
                    source: "the test says so".into(),
                },
            ))),
            site_token,
            dag_id,
        };
        let keyfile = KeyFile::new(&w.dir.join("data/client-keys.json"));
        let policy = KeyPolicy {
            lifetime: jiff::SignedDuration::from_hours(24),
            overlap: jiff::SignedDuration::from_hours(1),
        };
        for client in ["etl", "reader", "site-app"] {
            let (k, _, _) = keyfile
                .issue(client, "test", policy, jiff::Timestamp::now())
                .unwrap();
            w.keys.insert(client.into(), k.expose().to_string());
        }
        w
    }

    pub fn config_text(&self) -> String {
        format!(
            r#"
[redcap]
url = "{base}/api/"
time_zone = "UTC"

[gateway]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
keys_file = "data/client-keys.json"
{gateway_extra}

[[study]]
name = "heart"

[[study.site]]
name = "site-a"
dag_id = {dag_id}

[[account]]
name = "heart-etl"
username = "svc_etl"
secret = "redcap/heart/etl"
study = "heart"

[[client]]
name = "etl"
account = "heart-etl"
allow = ["record:export", "record:import", "metadata", "version", "project", "file:export", "file:import", "file:delete"]

[[client]]
name = "reader"
account = "heart-etl"
allow = ["record:export"]

[[account]]
name = "heart-site-a"
username = "svc_site"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-import"

[[client]]
name = "site-app"
account = "heart-site-a"
allow = ["record:export", "record:import", "metadata", "log", "report", "pdf", "file:export", "fileinfo", "filesize", "fileRepository:export", "participantList", "surveyLink", "surveyAccessCode", "surveyQueueLink", "surveyReturnCode", "project_xml", "tableau", "mycap"]
write_reason = "optional"

{extra_sections}
"#,
            extra_sections = self.extra_sections.lock().unwrap(),
            base = self.sandbox_base,
            gateway_extra = self.gateway_extra.lock().unwrap(),
            dag_id = self.dag_id
        )
    }

    pub fn create_ledger(&self, fs: Arc<dyn FileSystem>, dir: &Path) {
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

    pub async fn try_start_gateway(
        &self,
        fs: Arc<dyn FileSystem>,
        ledger_dir: PathBuf,
    ) -> Result<RunningGateway, gateway::StartError> {
        let keys = KeyFile::new(&self.dir.join("data/client-keys.json"));
        self.try_start_gateway_with_keys(fs, ledger_dir, keys).await
    }

    /// Starts the gateway reading its client keys through `keys`.
    pub async fn try_start_gateway_with_keys(
        &self,
        fs: Arc<dyn FileSystem>,
        ledger_dir: PathBuf,
        keys: KeyFile,
    ) -> Result<RunningGateway, gateway::StartError> {
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
            .map(|l| Arc::new(l) as Arc<dyn ledger::LedgerBackend>)
        });
        let store: Arc<dyn SecretStore> = self.store.clone();
        let fingerprint = FingerprintKey::load(&*store).await.unwrap();
        let clock = self.clock.lock().unwrap().clone();
        let alerts = governance::alerts::Alerts::from_config(&config, &*store).await;
        gateway::start(Services {
            keys,
            config,
            store,
            fingerprint,
            open_ledger: opener,
            operator: "tester".into(),
            alerts,
            clock,
        })
        .await
    }

    pub async fn start_gateway(
        &self,
        fs: Arc<dyn FileSystem>,
        ledger_dir: PathBuf,
    ) -> RunningGateway {
        self.try_start_gateway(fs, ledger_dir).await.unwrap()
    }

    pub async fn start_on_disk(&self) -> (RunningGateway, PathBuf) {
        let dir = self.dir.join("data/ledger");
        self.create_ledger(Arc::new(OsFs), &dir);
        (self.start_gateway(Arc::new(OsFs), dir.clone()).await, dir)
    }

    /// POSTs a form to the gateway.
    pub async fn call(&self, gw: &RunningGateway, params: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("http://{}/api/", gw.addr))
            .form(params)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// What a person does in REDCap's UI and then with `secrets put`:
    /// regenerates svc_etl's token (the old one dies at once) and stores the
    /// new one as `current`. Returns the new token.
    pub async fn regenerate_and_store_etl_token(&self) -> String {
        let t: Value = self
            .http
            .post(format!(
                "{}/sandbox/projects/{}/users/svc_etl/token/regenerate",
                self.sandbox_base, self.pid
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let new_token = t["token"].as_str().unwrap().to_string();
        assert_ne!(new_token, self.token);
        self.store
            .put(
                &secrets::SecretName::new("redcap/heart/etl").unwrap(),
                secrets::SecretValue::new(new_token.clone()),
                meta("rotated"),
                secrets::Label::Current,
            )
            .await
            .unwrap();
        new_token
    }

    /// The sandbox's own log rows for the service account (what reached REDCap).
    pub async fn redcap_log(&self) -> Vec<Value> {
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

pub fn entries(fs: &dyn FileSystem, dir: &Path) -> Vec<EntryKind> {
    ledger::read_entries(fs, dir)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}
