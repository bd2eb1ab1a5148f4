//! Two gateway replicas sharing one PostgreSQL, for the scale-out tests
//! (issue #15): one redcap-sandbox, one PostgreSQL ledger schema, and two
//! `redcap-warden serve` processes deployed as replicas are — each with
//! its own configuration file and data directory, on its own ports.
//!
//! What the replicas share, as two machines behind a load balancer would:
//!
//! - the ledger: `[ledger] backend = "postgres"`, one schema of the test
//!   database (`WARDEN_TEST_DATABASE_URL`, set by `scripts/test`), so one
//!   gap-free log and one signer lease;
//! - whatever else the PostgreSQL backend keeps there (the outbound rate
//!   window, and the state the cluster modules move in);
//! - the secrets store: `node-a`'s age file store and identity, named by
//!   absolute path in both configurations (standing in for a shared
//!   OpenBao or AWS Secrets Manager);
//! - the client-key and account-status files, also by absolute path
//!   (where the PostgreSQL backend keeps these itself, the paths are
//!   simply unused).
//!
//! Each replica keeps its own data directory: the run marker (crash
//! detection is per process), the upload spool, the copy of the applied
//! configuration, the admin credential.
//!
//! The sandbox's API is called by the test itself from 127.0.0.2, so its
//! page-hit limiter (set with [`ClusterOptions::page_hit_threshold`])
//! counts the gateways' calls (from 127.0.0.1) only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value, json};

use super::sandbox::Sandbox;
use super::{free_port, init, put_secrets, text, warden};

/// The account every client of the cluster calls REDCap through.
pub const ACCOUNT: &str = "heart";
/// Its secret in the store.
pub const SECRET: &str = "redcap/heart";
/// The REDCap user behind it.
pub const USER: &str = "svc_heart";
/// The client the setup configures (allowed record export and import,
/// `version` and `project`).
pub const CLIENT: &str = "app";
/// The test's own address toward the sandbox (see the module doc).
pub const TEST_SOURCE: [u8; 4] = [127, 0, 0, 2];

/// What a test may change in the setup.
#[derive(Default, Clone)]
pub struct ClusterOptions {
    /// TOML added to both configurations' `[gateway]` section, e.g.
    /// `outbound_per_minute = 10`.
    pub gateway: String,
    /// TOML appended to both configurations (more clients, say).
    pub extra: String,
    /// The sandbox bans an IP past this many API calls in 60 s (REDCap's
    /// page-hit limiter); off unless set.
    pub page_hit_threshold: Option<u32>,
}

/// One replica: its installation directory (warden.toml, data/), ports,
/// and the `serve` process while it runs.
pub struct Node {
    pub name: &'static str,
    pub dir: PathBuf,
    /// The client listener's port.
    pub port: u16,
    /// The admin listener's port.
    pub admin: u16,
    child: Option<Child>,
}

impl Node {
    /// `http://127.0.0.1:PORT/api/`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/", self.port)
    }

    /// `http://127.0.0.1:ADMIN`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// Whether its `serve` runs (was started and not stopped or killed).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id of its `serve`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its `serve` log (standard output and error, appended over runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// The admin listener's bearer credential (created at first start).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/gateway-admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// A sandbox, a PostgreSQL schema and two replicas (`nodes[0]` is
/// "node-a", `nodes[1]` "node-b"). Dropping it stops the gateways
/// (SIGTERM) and drops the schema.
pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub sandbox: Sandbox,
    /// The test database's connection string.
    pub database_url: String,
    /// The ledger's schema (the cluster's state beside it).
    pub schema: String,
    pub nodes: Vec<Node>,
    /// The REDCap project.
    pub pid: u64,
    /// Every token the setup made (for leak scans).
    pub tokens: Vec<String>,
}

pub use test_database::url as database;

/// A client of the test database.
pub fn db_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

impl Cluster {
    /// The default cluster for test `test`, or `None` (with a notice) when
    /// no test database is configured. Neither gateway runs yet: see
    /// [`Cluster::start_all`].
    pub fn new(test: &str) -> Option<Cluster> {
        Cluster::with(test, ClusterOptions::default())
    }

    /// [`Cluster::new`] with `options`.
    pub fn with(test: &str, options: ClusterOptions) -> Option<Cluster> {
        let database_url = database(test)?;
        let tmp = tempfile::tempdir().unwrap();
        let threshold = options.page_hit_threshold;
        let mut sandbox = Sandbox::start_with(&tmp.path().join("sandbox"), |c| {
            c.page_hit_threshold = threshold;
            c.rate_limit_exempt = vec![std::net::IpAddr::from(TEST_SOURCE)];
        });
        sandbox.http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(TEST_SOURCE))
            .build()
            .unwrap();
        let metadata = json!([
            {"field_name": "record_id", "form_name": "enrolment", "field_type": "text", "field_label": "ID"},
            {"field_name": "age", "form_name": "enrolment", "field_type": "text", "field_label": "Age"}
        ]);
        let (owner, pid) = sandbox.project(Some(metadata));
        let token = sandbox.user(
            pid,
            json!({"username": USER, "expiration": "2099-12-31",
                "api_export": 1, "api_import": 1, "record_create": 1,
                "forms": {"enrolment": 1}, "forms_export": {"enrolment": 1}}),
        );

        let schema = format!(
            "cluster_{}_{}",
            std::process::id(),
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(24)
                .collect::<String>()
                .to_ascii_lowercase()
        );
        db_client(&database_url)
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .unwrap();

        let a = tmp.path().join("node-a");
        let b = tmp.path().join("node-b");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        init(&a, &format!("{}/api/", sandbox.base));
        let shared = a.join("data");
        // node-b's data directory, as `init` makes one (owner only).
        std::fs::create_dir(b.join("data")).unwrap();
        std::fs::set_permissions(
            b.join("data"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let template = std::fs::read_to_string(a.join("warden.toml")).unwrap();
        let mut nodes = Vec::new();
        for (name, dir) in [("node-a", a), ("node-b", b)] {
            let (port, admin) = (free_port(), free_port());
            let toml = replica_config(
                &template,
                &dir,
                &shared,
                &database_url,
                &schema,
                pid,
                port,
                admin,
                &options,
            );
            std::fs::write(dir.join("warden.toml"), toml).unwrap();
            nodes.push(Node {
                name,
                dir,
                port,
                admin,
                child: None,
            });
        }
        // The first write moves the file ledger `init` wrote into the
        // database.
        put_secrets(&nodes[0].dir, &[(SECRET, &token)]);
        for node in &nodes {
            let check = warden(&node.dir, &["config", "check"], None);
            assert!(check.status.success(), "{}: {}", node.name, text(&check));
        }
        Some(Cluster {
            tmp,
            sandbox,
            database_url,
            schema,
            nodes,
            pid,
            tokens: vec![owner, token],
        })
    }

    /// Starts every replica that is not running.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].running() {
                self.start(i);
            }
        }
    }

    /// Starts replica `i`'s `serve`; returns once its client port accepts
    /// connections.
    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("serve.log"))
            .unwrap();
        let child = StdCommand::cargo_bin("redcap-warden")
            .unwrap()
            .current_dir(&node.dir)
            .arg("serve")
            .env_remove("SUDO_USER")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            if let Some(status) = node.child.as_mut().unwrap().try_wait().unwrap() {
                node.child = None;
                panic!("{} exited at start ({status}): {}", node.name, node.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                node.name,
                node.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops replica `i` gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self, i: usize) {
        signal_and_wait(&mut self.nodes[i], "TERM");
    }

    /// Kills replica `i` with SIGKILL (no stop entry, nothing flushed)
    /// and waits for it.
    pub fn kill(&mut self, i: usize) {
        signal_and_wait(&mut self.nodes[i], "KILL");
    }

    /// Runs `redcap-warden` in replica `i`'s directory.
    pub fn warden(&self, i: usize, args: &[&str], stdin: Option<&str>) -> Output {
        warden(&self.nodes[i].dir, args, stdin)
    }

    /// Issues a client key to `client` (through replica `i`'s
    /// configuration, `keys issue --to-file`) and answers it.
    pub fn issue_key(&self, i: usize, client: &str) -> String {
        super::issue_key(&self.nodes[i].dir, client)
    }

    /// POSTs a REDCap API form to replica `i`: status and body (status 0
    /// and the error when the connection failed).
    pub fn post(&self, i: usize, form: &[(&str, &str)]) -> (u16, String) {
        let url = self.nodes[i].api_url();
        self.sandbox.rt.block_on(async {
            match reqwest::Client::new().post(&url).form(form).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        })
    }

    /// `content=version` with `key` through replica `i`.
    pub fn version(&self, i: usize, key: &str) -> (u16, String) {
        self.post(i, &[("token", key), ("content", "version")])
    }

    /// Imports record `id` with `key` through replica `i`.
    pub fn import(&self, i: usize, key: &str, id: &str) -> (u16, String) {
        let data = format!(r#"[{{"record_id":"{id}","age":"42"}}]"#);
        self.post(
            i,
            &[
                ("token", key),
                ("content", "record"),
                ("action", "import"),
                ("format", "json"),
                ("data", &data),
            ],
        )
    }

    /// Exports record `id` with `key` through replica `i`.
    pub fn export(&self, i: usize, key: &str, id: &str) -> (u16, String) {
        self.post(
            i,
            &[
                ("token", key),
                ("content", "record"),
                ("format", "json"),
                ("records[0]", id),
            ],
        )
    }

    /// Calls replica `i`'s admin listener with its credential: status and
    /// body as JSON (`Value::Null` if the body is not JSON).
    pub fn admin(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.nodes[i].admin_url());
        let token = self.nodes[i].admin_token();
        self.sandbox.rt.block_on(async {
            let mut req = reqwest::Client::new()
                .request(method, &url)
                .bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    /// Replica `i`'s `/health`.
    pub fn health(&self, i: usize) -> Value {
        self.admin(i, reqwest::Method::GET, "/health", None).1
    }

    /// `ledger verify` (through replica `i`'s configuration).
    pub fn verify(&self, i: usize) -> Output {
        self.warden(i, &["ledger", "verify"], None)
    }

    /// Asserts that `ledger verify` passes and that the entries' seqs are
    /// exactly 0..n with no gap and no duplicate; answers n.
    pub fn assert_verified_gap_free(&self) -> u64 {
        let verify = self.verify(0);
        assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
        let mut db = db_client(&self.database_url);
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*), COALESCE(min(seq), -1), COALESCE(max(seq), -1) FROM {}.entries",
                    self.schema
                ),
                &[],
            )
            .unwrap();
        let (count, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert!(count > 0, "the ledger is empty");
        assert_eq!(min, 0, "the first seq is not 0");
        assert_eq!(max + 1, count, "seqs 0..={max} have gaps ({count} rows)");
        count as u64
    }

    /// The ledger's entries as JSON, in seq order (read straight from the
    /// database).
    pub fn entries(&self) -> Vec<Value> {
        let mut db = db_client(&self.database_url);
        db.query(
            &format!("SELECT entry FROM {}.entries ORDER BY seq", self.schema),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(r.get::<_, &[u8]>(0)).unwrap())
        .collect()
    }

    /// The checkpoints' signers, in order (`signer` of each row).
    pub fn checkpoint_signers(&self) -> Vec<String> {
        let mut db = db_client(&self.database_url);
        db.query(
            &format!("SELECT signer FROM {}.checkpoints ORDER BY id", self.schema),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// The signer lease's holder now, if any row exists.
    pub fn lease_holder(&self) -> Option<String> {
        let mut db = db_client(&self.database_url);
        db.query_opt(
            &format!("SELECT holder FROM {}.signer_lease", self.schema),
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
    }

    /// The signed checkpoints in the order they were stored: `(size,
    /// signer)`.
    pub fn checkpoints(&self) -> Vec<(u64, String)> {
        let mut db = db_client(&self.database_url);
        db.query(
            &format!(
                "SELECT size, signer FROM {}.checkpoints ORDER BY id",
                self.schema
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
        .collect()
    }

    /// Which running replica a signer name (a lease holder, a checkpoint's
    /// signer: `HOST pid PID SUFFIX`) is, if any.
    pub fn node_of(&self, signer: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.pid()
                .is_some_and(|pid| signer.contains(&format!(" pid {pid} ")))
        })
    }

    /// Waits (up to `within`) until a running replica holds the signer
    /// lease; answers which.
    pub fn wait_for_lease_holder(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.lease_holder().and_then(|h| self.node_of(&h)) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no running replica took the signer lease (holder: {:?})",
                self.lease_holder()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `clients` clients per replica in `nodes`, each importing a
    /// record of its own and exporting it back (unless the import failed),
    /// in a loop, until [`Load::finish`].
    pub fn load(&self, nodes: &[usize], clients: usize, key: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut tasks = Vec::new();
        for &node in nodes {
            for c in 0..clients {
                let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
                let (url, key) = (self.nodes[node].api_url(), key.to_string());
                tasks.push(self.sandbox.rt.spawn(async move {
                    let http = reqwest::Client::new();
                    let mut i = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        let id = format!("n{node}-c{c}-{i}");
                        let data = format!(r#"[{{"record_id":"{id}","age":"{}"}}]"#, 20 + i % 60);
                        let forms: [Vec<(&str, &str)>; 2] = [
                            vec![
                                ("token", &key),
                                ("content", "record"),
                                ("action", "import"),
                                ("format", "json"),
                                ("data", &data),
                            ],
                            vec![
                                ("token", &key),
                                ("content", "record"),
                                ("format", "json"),
                                ("records[0]", &id),
                            ],
                        ];
                        for (n, form) in forms.iter().enumerate() {
                            // Status 0: no answer, or its body broke off.
                            let (status, body) = match http.post(&url).form(form).send().await {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    match r.text().await {
                                        Ok(body) => (status, body),
                                        Err(e) => {
                                            (0, format!("{status}, then the body broke off: {e}"))
                                        }
                                    }
                                }
                                Err(e) => (0, e.to_string()),
                            };
                            if status == 200 && (n == 0 || body.contains(&id)) {
                                tally.ok[node].fetch_add(1, Ordering::SeqCst);
                            } else {
                                tally.failed.lock().unwrap().push((node, status, body));
                                // An import that failed has nothing to
                                // export back.
                                break;
                            }
                        }
                    }
                }));
            }
        }
        Load { stop, tally, tasks }
    }

    /// IPs the sandbox has banned (its page-hit limiter).
    pub fn banned_ips(&self) -> Vec<String> {
        self.sandbox
            .admin_get("/sandbox/banned-ips")
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

/// What the clients of a [`Load`] saw.
#[derive(Default, Debug)]
pub struct Tally {
    /// Requests answered as expected, per replica.
    pub ok: [AtomicUsize; 2],
    /// The others: replica, status (0: no answer, or its body broke off),
    /// body.
    pub failed: Mutex<Vec<(usize, u16, String)>>,
}

impl Tally {
    /// Answered as expected, both replicas together.
    pub fn total_ok(&self) -> usize {
        self.ok.iter().map(|n| n.load(Ordering::SeqCst)).sum()
    }

    /// Answered as expected by replica `node`.
    pub fn ok_at(&self, node: usize) -> usize {
        self.ok[node].load(Ordering::SeqCst)
    }
}

/// Clients looping through the gateways ([`Cluster::load`]).
pub struct Load {
    stop: Arc<AtomicBool>,
    pub tally: Arc<Tally>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Waits (up to `within`) until `n` more requests were answered as
    /// expected than when called.
    pub fn wait_for(&self, n: usize, within: Duration) {
        let target = self.tally.total_ok() + n;
        let deadline = Instant::now() + within;
        while self.tally.total_ok() < target {
            assert!(
                Instant::now() < deadline,
                "the load stalled at {} answered (failures: {:?})",
                self.tally.total_ok(),
                self.tally.failed.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the clients (each finishes its current request) and answers
    /// what they saw.
    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            rt.block_on(t).unwrap();
        }
        self.tally
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if node.child.is_some() {
                signal_and_wait(node, "TERM");
            }
        }
        if let Ok(mut db) = postgres::Client::connect(&self.database_url, postgres::NoTls) {
            let _ = db.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

fn signal_and_wait(node: &mut Node, signal: &str) {
    let mut child = node
        .child
        .take()
        .unwrap_or_else(|| panic!("{} is not running", node.name));
    let _ = StdCommand::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// A replica's warden.toml: `init`'s file with the data directory its
/// own, the secrets store, key and status files shared by absolute path,
/// the PostgreSQL ledger, the gateway's ports, one study, account and
/// client.
#[allow(clippy::too_many_arguments)]
fn replica_config(
    template: &str,
    dir: &Path,
    shared: &Path,
    database_url: &str,
    schema: &str,
    pid: u64,
    port: u16,
    admin: u16,
    options: &ClusterOptions,
) -> String {
    let data = dir.join("data");
    let toml = template
        .replacen(
            "data_dir = \"data\"",
            &format!("data_dir = \"{}\"", data.display()),
            1,
        )
        .replacen(
            "[secrets.file]\n",
            &format!(
                "[secrets.file]\npath = \"{}\"\nidentity = \"{}\"\n",
                shared.join("secrets.age").display(),
                shared.join("identity.txt").display()
            ),
            1,
        )
        .replacen(
            "[ledger]\n",
            &format!(
                "[ledger]\nbackend = \"postgres\"\ndir = \"{}\"\n",
                shared.join("ledger").display()
            ),
            1,
        );
    assert!(toml.contains("backend = \"postgres\""), "{toml}");
    format!(
        r#"{toml}
[ledger.postgres]
url = "{database_url}"
schema = "{schema}"

[gateway]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
keys_file = "{keys}"
accounts_file = "{accounts}"
{gateway}

[[study]]
name = "heart"
project_id = {pid}

[[account]]
name = "{ACCOUNT}"
username = "{USER}"
secret = "{SECRET}"
study = "heart"

[[client]]
name = "{CLIENT}"
account = "{ACCOUNT}"
allow = ["record:export", "record:import", "version", "project"]
write_reason = "optional"
{extra}"#,
        keys = shared.join("client-keys.json").display(),
        accounts = shared.join("account-status.json").display(),
        gateway = options.gateway,
        extra = options.extra,
    )
}
