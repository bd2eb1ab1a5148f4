//! The leak canary suite: a REDCap token (issued by redcap-sandbox, so
//! requests through the gateway really use it) is written through every
//! command on every secrets backend — the age file, the age file with a
//! passphrase-protected identity, OpenBao and AWS Secrets Manager (moto) —
//! and then looked for, under every encoding the `canary` crate knows, in:
//!
//! - the standard output and error of every command, and every answer the
//!   gateway gave;
//! - every file of the installation except the encrypted store (warden.toml,
//!   the data directory, the ledger, key files, spool files), and every file
//!   written under the temporary directory while the suite ran;
//! - the command line and environment of every process the suite started
//!   and of all their descendants, read from /proc again and again while
//!   each runs (`serve` and `quickstart` for their whole life).
//!
//! On the first installation, on every backend, the token is also rotated
//! (`rotate run` with the sandbox issuer while the gateway serves): the
//! canary is then the old token, and each new token REDCap made becomes a
//! canary too, looked for in every output and file afterwards (only the
//! store and the sandbox may hold it) — among them `report` and the
//! gateway's dashboard, run after the rotation, and again on the
//! quickstart after its token event and `reconcile`.
//!
//! A backend whose server variable (from scripts/test) is missing is skipped
//! with a message; under CI that is a failure. A self-check plants the canary
//! in each kind of place scanned and requires the scanner to find it, so the
//! suite can fail.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use canary::{Canaries, Canary, Leak};
use common::{add_config, free_port, gateway_config};
use redcap_sandbox::{Config as SandboxConfig, Server};
use serde_json::{Value, json};

const SUPER: &str = "5A5A5A5A0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF5A5A5A5A";
const ADMIN: &str = "canary-suite-sandbox-admin";
const PASSPHRASE: &str = "canary suite identity passphrase";

fn backend_server(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run the tests through scripts/test, which starts {what}")
        }
        _ => {
            eprintln!(
                "canary suite: SKIPPED the {what} backend: {var} is not set; run through scripts/test to start {what}"
            );
            None
        }
    }
}

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos:x}", std::process::id())
}

/// A child process whose output is collected by threads and whose process
/// tree is scanned whenever [`Watched::scan`] is called.
struct Watched {
    label: String,
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    scans: usize,
}

impl Watched {
    fn spawn(label: String, mut cmd: Command, stdin: Option<String>) -> Watched {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{label}: {e}"));
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let mut readers = Vec::new();
        for (pipe, sink) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                Arc::clone(&stdout),
            ),
            (Box::new(child.stderr.take().unwrap()), Arc::clone(&stderr)),
        ] {
            let sink: Arc<Mutex<Vec<u8>>> = sink;
            let mut pipe = pipe;
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }));
        }
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            readers.push(std::thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            }));
        }
        Watched {
            label,
            child,
            stdout,
            stderr,
            readers,
            scans: 0,
        }
    }

    fn scan(&mut self, canaries: &[&Canary], leaks: &mut Vec<Leak>) {
        self.scans += 1;
        for c in canaries {
            for mut l in c.scan_process_tree(self.child.id()) {
                l.place = format!("{}: {}", self.label, l.place);
                leaks.push(l);
            }
        }
    }

    /// Scans until the process exits; returns its status and output.
    fn finish(self, canaries: &[&Canary], leaks: &mut Vec<Leak>) -> Ran {
        self.finish_within(
            Duration::from_secs(120),
            Duration::from_millis(3),
            canaries,
            leaks,
        )
    }

    /// [`Watched::finish`] for a long run: scans every `every`, fails
    /// after `limit`.
    fn finish_within(
        mut self,
        limit: Duration,
        every: Duration,
        canaries: &[&Canary],
        leaks: &mut Vec<Leak>,
    ) -> Ran {
        let deadline = Instant::now() + limit;
        let status = loop {
            self.scan(canaries, leaks);
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{} did not finish", self.label);
            std::thread::sleep(every);
        };
        self.collect(status)
    }

    /// SIGTERM (a graceful stop), then wait.
    fn stop(mut self, canaries: &[&Canary], leaks: &mut Vec<Leak>) -> Ran {
        self.scan(canaries, leaks);
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        self.collect(status)
    }

    fn collect(mut self, status: ExitStatus) -> Ran {
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        Ran {
            label: self.label.clone(),
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
            scans: self.scans,
        }
    }
}

struct Ran {
    label: String,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    scans: usize,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    fn ok(&self) -> &Ran {
        assert!(self.status.success(), "{}: {}", self.label, self.text());
        self
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", self.label, self.text()))
    }
}

/// Everything the suite saw, to be scanned at the end.
struct Suite {
    canary: Canary,
    /// (place, bytes): command output, gateway answers.
    seen: Vec<(String, Vec<u8>)>,
    leaks: Vec<Leak>,
    /// The tokens rotations made (known only once made: scanned in every
    /// output and file afterwards).
    rotated: Vec<Canary>,
    commands: usize,
    process_scans: usize,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Suite {
    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("redcap-warden"));
        cmd.current_dir(dir)
            .args(args)
            .env_remove("SUDO_USER")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE");
        cmd
    }

    /// Runs a command to its end, watching its process tree.
    fn run(&mut self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Ran {
        let label = format!("`redcap-warden {}`", args.join(" "));
        let cmd = self.command(dir, args);
        let w = Watched::spawn(label, cmd, stdin.map(str::to_string));
        let ran = w.finish(&[&self.canary], &mut self.leaks);
        self.record(&ran);
        ran
    }

    fn record(&mut self, ran: &Ran) {
        self.commands += 1;
        self.process_scans += ran.scans;
        self.seen
            .push((format!("{}: stdout", ran.label), ran.stdout.clone()));
        self.seen
            .push((format!("{}: stderr", ran.label), ran.stderr.clone()));
    }

    /// A POST to the gateway's REDCap endpoint; the answer is kept for
    /// scanning.
    fn call(&mut self, port: u16, params: &[(&str, &str)]) -> (u16, String) {
        let (status, body) = self.rt.block_on(async {
            let r = self
                .http
                .post(format!("http://127.0.0.1:{port}/api/"))
                .form(params)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        self.seen.push((
            format!(
                "gateway answer to {:?}",
                params.iter().map(|p| p.0).collect::<Vec<_>>()
            ),
            body.clone().into_bytes(),
        ));
        (status, body)
    }

    /// The running gateway's dashboard (`GET /dashboard` on the
    /// `admin_listen` of `dir`'s warden.toml, with the credential from
    /// its data directory); the page is kept for scanning.
    fn dashboard(&mut self, dir: &Path) -> (u16, String) {
        let toml = std::fs::read_to_string(dir.join("warden.toml")).unwrap();
        let admin = toml
            .lines()
            .find_map(|l| l.trim().strip_prefix("admin_listen = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("admin_listen in warden.toml")
            .to_string();
        let credential = std::fs::read_to_string(dir.join("data/gateway-admin-token"))
            .unwrap()
            .trim()
            .to_string();
        let (status, body) = self.rt.block_on(async {
            let r = self
                .http
                .get(format!("http://{admin}/dashboard"))
                .bearer_auth(&credential)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        self.seen
            .push(("the dashboard".into(), body.clone().into_bytes()));
        (status, body)
    }
}

fn wait_for_port(port: u16, w: &mut Watched, suite: &mut Suite) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        w.scan(&[&suite.canary], &mut suite.leaks);
        if let Some(status) = w.child.try_wait().unwrap() {
            panic!("{} exited early ({status})", w.label);
        }
        assert!(Instant::now() < deadline, "{} did not start", w.label);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_backend(dir: &Path, from: &str, to: &str) {
    let path = dir.join("warden.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = format!("backend = \"{from}\"");
    assert!(text.contains(&old), "{text}");
    std::fs::write(&path, text.replace(&old, &format!("backend = \"{to}\""))).unwrap();
}

/// A sandbox project with one user `svc` allowed to export; its API token
/// is the canary. Also returns the project's id.
fn sandbox(suite: &Suite, data: PathBuf) -> (Server, String, u64) {
    suite.rt.block_on(async {
        let mut sc = SandboxConfig::for_tests(data);
        sc.super_token = Some(SUPER.into());
        sc.admin_secret = Some(ADMIN.into());
        let server = Server::start(sc).await.unwrap();
        let base = format!("http://{}", server.addr);
        let http = &suite.http;
        let project = http
            .post(format!("{base}/api/"))
            .form(&[
                ("token", SUPER),
                ("content", "project"),
                ("format", "json"),
                ("data", r#"[{"project_title":"Canary","purpose":2}]"#),
            ])
            .send()
            .await
            .unwrap();
        let owner = project.text().await.unwrap();
        assert_eq!(owner.len(), 32, "{owner}");
        let info: Value = http
            .post(format!("{base}/api/"))
            .form(&[("token", owner.as_str()), ("content", "project"), ("format", "json")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pid = info["project_id"].as_u64().unwrap();
        let md = json!([{"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"}]);
        let r = http
            .post(format!("{base}/api/"))
            .form(&[
                ("token", owner.as_str()),
                ("content", "metadata"),
                ("format", "json"),
                ("data", &md.to_string()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rights = json!({"username": "svc", "api_export": 1, "forms": {"f": 1}, "forms_export": {"f": 1}});
        let r = http
            .post(format!("{base}/sandbox/projects/{pid}/users"))
            .bearer_auth(ADMIN)
            .json(&rights)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let t: Value = http
            .post(format!("{base}/sandbox/projects/{pid}/users/svc/token"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (server, t["token"].as_str().unwrap().to_string(), pid)
    })
}

/// Every command against the backend warden.toml names now: the canary is
/// stored as `secret`, read by the gateway for real requests, and every
/// inspecting command runs.
fn every_command(suite: &mut Suite, dir: &Path, backend: &str, secret: &str, port: u16) {
    let token = suite.canary.value().to_string();
    suite
        .run(
            dir,
            &[
                "secrets",
                "put",
                secret,
                "--reason",
                &format!("canary on {backend}"),
            ],
            Some(&format!("{token}\n")),
        )
        .ok();
    suite.run(dir, &["secrets", "list"], None).ok();
    suite.run(dir, &["secrets", "list", "--json"], None).ok();
    suite.run(dir, &["secrets", "history", secret], None).ok();
    suite
        .run(dir, &["secrets", "history", "redcap/a", "--json"], None)
        .ok();
    suite.run(dir, &["secrets", "check"], None).ok();
    suite.run(dir, &["secrets", "check", "--json"], None).ok();
    suite.run(dir, &["config", "check"], None).ok();
    suite.run(dir, &["accounts", "list"], None).ok();
    let key_file = format!("app-{backend}.key");
    let issued = suite.run(
        dir,
        &[
            "keys",
            "issue",
            "app",
            "--to-file",
            &key_file,
            "--reason",
            "canary",
            "--json",
        ],
        None,
    );
    let issued_id = issued.ok().json()["id"].as_str().unwrap().to_string();
    suite
        .run(
            dir,
            &[
                "keys",
                "issue",
                "app",
                "--to-store",
                &format!("clients/app-{backend}"),
                "--reason",
                "canary",
            ],
            None,
        )
        .ok();
    suite.run(dir, &["keys", "list"], None).ok();
    let key = std::fs::read_to_string(dir.join(&key_file))
        .unwrap()
        .trim()
        .to_string();

    // Alerts go to a webhook and syslog too: what they receive is scanned.
    let (posts, syslog) = alert_sinks(dir);

    // The gateway, watched for its whole life.
    let cmd = suite.command(dir, &["serve"]);
    let mut serving = Watched::spawn(format!("`redcap-warden serve` ({backend})"), cmd, None);
    wait_for_port(port, &mut serving, suite);
    for params in [
        vec![("token", key.as_str()), ("content", "version")],
        vec![
            ("token", key.as_str()),
            ("content", "project"),
            ("format", "json"),
        ],
        vec![
            ("token", key.as_str()),
            ("content", "record"),
            ("action", "export"),
            ("format", "json"),
            ("type", "flat"),
        ],
    ] {
        let (status, body) = suite.call(port, &params);
        assert_eq!(status, 200, "{params:?}: {body}");
        serving.scan(&[&suite.canary], &mut suite.leaks);
    }
    // The real token presented as a client key: refused, and an alert.
    let (status, body) = suite.call(port, &[("token", &token), ("content", "version")]);
    assert_eq!(status, 403, "{body}");
    // Commands while the gateway runs record through it.
    suite.run(dir, &["keys", "list", "--json"], None).ok();
    suite.run(dir, &["reload"], None).ok();
    serving.scan(&[&suite.canary], &mut suite.leaks);
    let ran = serving.stop(&[&suite.canary], &mut suite.leaks);
    assert!(ran.status.success(), "{}", ran.text());
    suite.record(&ran);
    // The canary is the account's token only where it was put under the
    // account's own secret: there, presenting it must have raised an alert.
    collect_alerts(suite, backend, &posts, &syslog, secret == "redcap/a");

    suite
        .run(
            dir,
            &["keys", "revoke", &issued_id, "--reason", "canary"],
            None,
        )
        .ok();
    suite.run(dir, &["ledger", "verify"], None).ok();
    let tail = suite.run(dir, &["ledger", "tail", "-n", "1000"], None);
    let last = tail
        .ok()
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert!(last > 5, "{}", tail.text());
    for seq in [0, last / 2, last - 1] {
        suite
            .run(dir, &["ledger", "show", &seq.to_string()], None)
            .ok();
    }
    let alert = String::from_utf8_lossy(&tail.stdout).to_string();
    assert!(
        alert.contains("\"kind\":\"alert\"") || alert.contains("\"kind\":\"denied\""),
        "presenting the token as a key leaves a trace: {alert}"
    );
}

/// Where the sandbox's admin endpoint regenerates account `a`'s token.
struct Rotating {
    base: String,
    pid: u64,
}

/// `[alerts]` in `dir`'s warden.toml (replacing an earlier one): a webhook
/// receiver and a UDP syslog socket on loopback.
fn alert_sinks(
    dir: &Path,
) -> (
    std::sync::mpsc::Receiver<common::Posted>,
    std::net::UdpSocket,
) {
    const MARK: &str = "# canary suite: alerts";
    let (hook, posts) = common::webhook_receiver();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let path = dir.join("warden.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    if let Some(i) = lines.iter().position(|l| *l == MARK) {
        lines.drain(i..i + 4);
    }
    let mut text = lines.join("\n");
    text += &format!(
        "\n{MARK}\n[alerts]\nwebhook = \"{hook}\"\nsyslog = \"udp://{}\"\n",
        syslog.local_addr().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    (posts, syslog)
}

/// What the webhook and syslog received while the gateway ran, kept for
/// the scan; with `expect_real_token`, the real token presented as a key
/// must have raised its alert there (so the scan looked at something).
fn collect_alerts(
    suite: &mut Suite,
    backend: &str,
    posts: &std::sync::mpsc::Receiver<common::Posted>,
    syslog: &std::net::UdpSocket,
    expect_real_token: bool,
) {
    let mut codes: Vec<String> = Vec::new();
    let waiting = |codes: &[String]| {
        let done = !expect_real_token || codes.iter().any(|c| c == "real_token_presented");
        std::time::Duration::from_secs(if done { 1 } else { 30 })
    };
    while let Ok((headers, body)) = posts.recv_timeout(waiting(&codes)) {
        codes.push(body["code"].as_str().unwrap_or_default().to_string());
        suite.seen.push((
            format!("an alert POSTed to the webhook ({backend})"),
            format!("{headers:?}{body}").into_bytes(),
        ));
    }
    if expect_real_token {
        assert!(
            codes.iter().any(|c| c == "real_token_presented"),
            "{backend}: the webhook got {codes:?}"
        );
    }
    syslog
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0; 4096];
    let mut lines = 0;
    while let Ok(n) = syslog.recv(&mut buf) {
        lines += 1;
        suite.seen.push((
            format!("an alert sent to syslog ({backend})"),
            buf[..n].to_vec(),
        ));
    }
    if expect_real_token {
        assert!(lines > 0, "{backend}: syslog got nothing");
    }
}

/// `rotate run` with the sandbox issuer while the gateway serves (the
/// hold, the release, the proof), `rotate status`, and a request through
/// the gateway. The new token becomes a canary too. On `file` the account
/// rotated is `a`, whose token is the canary; on the other backends it is
/// an account of its own (a new sandbox user, its first token a canary
/// too), so that `a`'s token — one per REDCap user — keeps working there
/// and the copies `secrets migrate` compares stay equal.
fn rotate_through_gateway(suite: &mut Suite, dir: &Path, backend: &str, port: u16, at: &Rotating) {
    let cfg = dir.join("warden.toml");
    if !std::fs::read_to_string(&cfg)
        .unwrap()
        .contains("[rotation]")
    {
        let file = dir.join("sandbox-admin-secret");
        std::fs::write(&file, format!("{ADMIN}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        add_config(
            dir,
            &format!(
                "\n[rotation]\nissuer = \"sandbox\"\nsandbox_url = \"{}\"\nsandbox_admin_secret_file = \"sandbox-admin-secret\"\n",
                at.base
            ),
        );
    }
    let (account, user) = if backend == "file" {
        ("a".to_string(), "svc".to_string())
    } else {
        let (account, user) = (format!("rot-{backend}"), format!("svc_rot_{backend}"));
        let first: Value = suite.rt.block_on(async {
            let r = suite
                .http
                .post(format!("{}/sandbox/projects/{}/users", at.base, at.pid))
                .bearer_auth(ADMIN)
                .json(&json!({"username": user, "api_export": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            suite
                .http
                .post(format!(
                    "{}/sandbox/projects/{}/users/{user}/token",
                    at.base, at.pid
                ))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        let first = first["token"].as_str().unwrap().to_string();
        let secret = format!("redcap/rot-{backend}");
        suite
            .run(
                dir,
                &["secrets", "put", &secret, "--reason", "canary"],
                Some(&first),
            )
            .ok();
        suite.rotated.push(Canary::new(&first));
        add_config(
            dir,
            &format!(
                "\n[[account]]\nname = \"{account}\"\nusername = \"{user}\"\nsecret = \"{secret}\"\nstudy = \"s\"\n"
            ),
        );
        (account, user)
    };
    let key_file = format!("app-rotation-{backend}.key");
    suite
        .run(
            dir,
            &[
                "keys",
                "issue",
                "app",
                "--to-file",
                &key_file,
                "--reason",
                "canary",
            ],
            None,
        )
        .ok();
    let key = std::fs::read_to_string(dir.join(&key_file))
        .unwrap()
        .trim()
        .to_string();
    let cmd = suite.command(dir, &["serve"]);
    let mut serving = Watched::spawn(
        format!("`redcap-warden serve` (rotation, {backend})"),
        cmd,
        None,
    );
    wait_for_port(port, &mut serving, suite);
    let ran = suite.run(
        dir,
        &[
            "rotate",
            "run",
            &account,
            "--reason",
            &format!("canary on {backend}"),
        ],
        None,
    );
    assert!(ran.ok().text().contains(": done"), "{}", ran.text());
    serving.scan(&[&suite.canary], &mut suite.leaks);
    let (status, body) = suite.call(port, &[("token", &key), ("content", "version")]);
    assert_eq!(status, 200, "the gateway serves with the new token: {body}");
    suite.run(dir, &["rotate", "status"], None).ok();
    let st = suite.run(dir, &["rotate", "status", "--json"], None);
    let rows = st.ok().json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == account.as_str())
        .unwrap_or_else(|| panic!("{}", st.text()));
    assert_eq!(row["last_rotation"]["state"], "done", "{}", st.text());
    // The report and the dashboard after the rotation: the old token (the
    // canary) and the new one appear in neither.
    let report = format!("report-{backend}.html");
    let ran = suite.run(dir, &["report", "--out", &report], None);
    assert!(ran.status.code().is_some_and(|c| c < 2), "{}", ran.text());
    let page = std::fs::read(dir.join(&report)).unwrap();
    suite.seen.push((format!("the report ({backend})"), page));
    let (status, body) = suite.dashboard(dir);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&account), "the dashboard names `{account}`");
    let ran = serving.stop(&[&suite.canary], &mut suite.leaks);
    assert!(ran.status.success(), "{}", ran.text());
    suite.record(&ran);
    let new: Value = suite.rt.block_on(async {
        suite
            .http
            .get(format!(
                "{}/sandbox/projects/{}/users/{user}/token",
                at.base, at.pid
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    suite
        .rotated
        .push(Canary::new(new["token"].as_str().unwrap()));
}

/// A sandbox user of the project with a first token (a canary too).
fn pair_user(suite: &mut Suite, at: &Rotating, user: &str) -> String {
    let first: Value = suite.rt.block_on(async {
        let r = suite
            .http
            .post(format!("{}/sandbox/projects/{}/users", at.base, at.pid))
            .bearer_auth(ADMIN)
            .json(&json!({"username": user, "api_export": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        suite
            .http
            .post(format!(
                "{}/sandbox/projects/{}/users/{user}/token",
                at.base, at.pid
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let token = first["token"].as_str().unwrap().to_string();
    suite.rotated.push(Canary::new(&token));
    token
}

/// A dual pair (`pair-1`, `pair-2`: two sandbox users, their first tokens
/// canaries) rotated with `rotate run` while the gateway serves the
/// pair's client: both tokens are regenerated (the new ones become
/// canaries), the gateway switches, and serves the client afterwards.
fn rotate_dual_pair(suite: &mut Suite, dir: &Path, port: u16, at: &Rotating) {
    let mut accounts = String::new();
    for (n, user) in [(1, "svc_pair_1"), (2, "svc_pair_2")] {
        let token = pair_user(suite, at, user);
        let secret = format!("redcap/pair-{n}");
        suite
            .run(
                dir,
                &["secrets", "put", &secret, "--reason", "canary"],
                Some(&token),
            )
            .ok();
        let partner = 3 - n;
        accounts.push_str(&format!(
            "\n[[account]]\nname = \"pair-{n}\"\nusername = \"{user}\"\nsecret = \"{secret}\"\nstudy = \"s\"\nmode = \"dual\"\npartner = \"pair-{partner}\"\n"
        ));
    }
    add_config(dir, &accounts);
    add_config(
        dir,
        "\n[[client]]\nname = \"pair-app\"\naccount = \"pair-1\"\nallow = [\"version\"]\nwrite_reason = \"optional\"\n",
    );
    suite
        .run(
            dir,
            &[
                "keys",
                "issue",
                "pair-app",
                "--to-file",
                "pair-app.key",
                "--reason",
                "canary",
            ],
            None,
        )
        .ok();
    let key = std::fs::read_to_string(dir.join("pair-app.key"))
        .unwrap()
        .trim()
        .to_string();
    let cmd = suite.command(dir, &["serve"]);
    let mut serving = Watched::spawn("`redcap-warden serve` (dual rotation)".into(), cmd, None);
    wait_for_port(port, &mut serving, suite);
    let (status, body) = suite.call(port, &[("token", &key), ("content", "version")]);
    assert_eq!(status, 200, "{body}");
    let ran = suite.run(
        dir,
        &["rotate", "run", "pair-1", "--reason", "canary dual"],
        None,
    );
    // Done once ownership is proved by REDCap's log; until then the
    // rotation stops before `done`, saying why, and abort ends it.
    if !ran.status.success() {
        assert!(
            ran.text().contains("does not finish without proof"),
            "{}",
            ran.text()
        );
        let st = suite.run(dir, &["rotate", "status", "--json"], None);
        let rows = st.json();
        let open = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["account"] == "pair-1")
            .unwrap()["open_rotation"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        suite
            .run(
                dir,
                &["rotate", "abort", &open, "--reason", "canary dual"],
                None,
            )
            .ok();
    }
    let (status, body) = suite.call(port, &[("token", &key), ("content", "version")]);
    assert_eq!(
        status, 200,
        "the gateway serves the pair after the switch: {body}"
    );
    serving.scan(&[&suite.canary], &mut suite.leaks);
    let ran = serving.stop(&[&suite.canary], &mut suite.leaks);
    assert!(ran.status.success(), "{}", ran.text());
    suite.record(&ran);
    for user in ["svc_pair_1", "svc_pair_2"] {
        let new: Value = suite.rt.block_on(async {
            suite
                .http
                .get(format!(
                    "{}/sandbox/projects/{}/users/{user}/token",
                    at.base, at.pid
                ))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        suite
            .rotated
            .push(Canary::new(new["token"].as_str().unwrap()));
    }
}

/// `init` (plain, or with a passphrase and a passphrase file) plus the
/// gateway's configuration.
fn install(suite: &mut Suite, dir: &Path, redcap_url: &str, passphrase: bool) -> u16 {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = vec!["init", "--redcap-url", redcap_url, "--time-zone", "UTC"];
    if passphrase {
        args.push("--passphrase");
        suite.run(dir, &args, Some(&format!("{PASSPHRASE}\n"))).ok();
        let file = dir.join("passphrase");
        std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = dir.join("warden.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let line = "\n# passphrase_file = \"/etc/redcap-warden/identity-passphrase\"";
        assert!(text.contains(line), "{text}");
        std::fs::write(
            &cfg,
            text.replace(line, "\npassphrase_file = \"passphrase\""),
        )
        .unwrap();
    } else {
        suite.run(dir, &args, None).ok();
    }
    let (toml, port, _) = gateway_config(r#"["version", "project", "record:export"]"#);
    add_config(dir, &toml);
    port
}

fn scan_installation(suite: &Suite, dir: &Path) -> Vec<Leak> {
    suite.canary.scan_dir(dir, &[dir.join("data/secrets.age")])
}

/// Files under the temporary directory written since `since` by this
/// user, except the allowed ones (the sandbox's own data: it plays REDCap).
fn scan_temp(canary: &Canaries, since: SystemTime, allowed: &[PathBuf]) -> Vec<Leak> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let recent = |m: &std::fs::Metadata| m.modified().map(|t| t >= since).unwrap_or(true);
    let mut leaks = Vec::new();
    for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.uid() != me || allowed.iter().any(|a| p.starts_with(a)) {
            continue;
        }
        if meta.is_dir() {
            leaks.extend(canary.scan_dir_where(&p, allowed, recent));
        } else if meta.is_file()
            && recent(&meta)
            && let Ok(bytes) = std::fs::read(&p)
        {
            leaks.extend(canary.find(&p.display().to_string(), &bytes));
        }
    }
    leaks
}

#[test]
fn a_canary_token_leaks_nowhere_through_any_command_or_backend() {
    let started = SystemTime::now() - Duration::from_secs(1);
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let mut suite = Suite {
        canary: Canary::new("placeholder-until-the-sandbox-issues-one"),
        seen: Vec::new(),
        leaks: Vec::new(),
        rotated: Vec::new(),
        commands: 0,
        process_scans: 0,
        rt,
        http,
    };
    let sandbox_dir = root.path().join("sandbox");
    let (server, token, pid) = sandbox(&suite, sandbox_dir.clone());
    let sandbox_at = Rotating {
        base: format!("http://{}", server.addr),
        pid,
    };
    suite.canary = Canary::new(&token);
    let redcap_url = server.api_url.clone();
    let mut stores = vec![];
    let mut covered = vec![];

    // 1. The age file store.
    let file_dir = root.path().join("file");
    let port = install(&mut suite, &file_dir, &redcap_url, false);
    every_command(&mut suite, &file_dir, "file", "redcap/a", port);
    stores.push(file_dir.join("data/secrets.age"));
    covered.push("file");

    // 2. The age file store with a passphrase-protected identity, whose
    //    passphrase is then changed.
    let pp_dir = root.path().join("file-passphrase");
    let pp_port = install(&mut suite, &pp_dir, &redcap_url, true);
    every_command(&mut suite, &pp_dir, "file-passphrase", "redcap/a", pp_port);
    suite
        .run(
            &pp_dir,
            &["secrets", "passphrase", "--reason", "canary"],
            Some("a second canary suite passphrase\n"),
        )
        .ok();
    std::fs::write(
        pp_dir.join("passphrase"),
        "a second canary suite passphrase\n",
    )
    .unwrap();
    suite.run(&pp_dir, &["secrets", "check"], None).ok();
    stores.push(pp_dir.join("data/secrets.age"));
    covered.push("file+passphrase");

    // The canary is account `a`'s token in both installations: rotating it
    // (in the first) kills it, so this comes after both have used it.
    rotate_through_gateway(&mut suite, &file_dir, "file", port, &sandbox_at);
    rotate_dual_pair(&mut suite, &file_dir, port, &sandbox_at);

    // 3. file → vault → aws → file, every command on each.
    let vault = backend_server("WARDEN_TEST_VAULT_ADDR", "OpenBao");
    let aws = backend_server("WARDEN_TEST_AWS_ENDPOINT", "moto");
    let mut backend = "file";
    if let Some(addr) = &vault {
        add_config(
            &file_dir,
            &format!(
                "\n[secrets.vault]\naddress = \"{addr}\"\nprefix = \"{}\"\ntoken_env = \"WARDEN_TEST_VAULT_TOKEN\"\n",
                unique("canary")
            ),
        );
        suite
            .run(
                &file_dir,
                &["secrets", "migrate", "--to", "vault", "--reason", "canary"],
                None,
            )
            .ok();
        set_backend(&file_dir, backend, "vault");
        backend = "vault";
        every_command(&mut suite, &file_dir, "vault", "redcap/on-vault", port);
        rotate_through_gateway(&mut suite, &file_dir, "vault", port, &sandbox_at);
        covered.push("vault");
    }
    if let Some(endpoint) = &aws {
        add_config(
            &file_dir,
            &format!(
                "\n[secrets.aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nprefix = \"{}/\"\n",
                unique("canary")
            ),
        );
        suite
            .run(
                &file_dir,
                &["secrets", "migrate", "--to", "aws", "--reason", "canary"],
                None,
            )
            .ok();
        set_backend(&file_dir, backend, "aws");
        backend = "aws";
        every_command(&mut suite, &file_dir, "aws", "redcap/on-aws", port);
        rotate_through_gateway(&mut suite, &file_dir, "aws", port, &sandbox_at);
        covered.push("aws");
    }
    if backend != "file" {
        let back = suite.run(
            &file_dir,
            &[
                "secrets", "migrate", "--to", "file", "--reason", "canary", "--json",
            ],
            None,
        );
        let copied = back.ok().json()["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "copied")
            .count();
        assert!(copied > 0, "{}", back.text());
        set_backend(&file_dir, backend, "file");
        suite.run(&file_dir, &["secrets", "list"], None).ok();
        suite.run(&file_dir, &["secrets", "history", "redcap/on-vault"], None);
        suite.run(&file_dir, &["ledger", "verify"], None).ok();
    }

    // 4. quickstart: its tokens are the sandbox's, read back from its store.
    let quick = quickstart(&mut suite, root.path());
    // 5. quickstart --tour: the same, scripted, with a rotation and the bypass.
    let toured = tour(&mut suite, root.path());

    suite.rt.block_on(server.stop()).unwrap();

    // Scan everything: the outputs and the temporary directory once for
    // every token at a time (one pass each, whatever the number of tokens).
    let every = Canaries::new(
        std::iter::once(("the canary".to_string(), &suite.canary))
            .chain(
                suite
                    .rotated
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("rotated token {i}"), c)),
            )
            .chain(
                quick
                    .canaries
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("quickstart token {i}"), c)),
            )
            .chain(
                toured
                    .canaries
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("tour token {i}"), c)),
            ),
    );
    let mut leaks = std::mem::take(&mut suite.leaks);
    for (place, bytes) in &suite.seen {
        leaks.extend(every.find(place, bytes));
    }
    leaks.extend(scan_installation(&suite, &file_dir));
    leaks.extend(scan_installation(&suite, &pp_dir));
    // Every token a rotation made: nowhere but the stores (and the
    // sandbox, which plays REDCap).
    let rotated = Canaries::new(
        suite
            .rotated
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("rotated token {i}"), c)),
    );
    leaks.extend(rotated.scan_dir(&file_dir, &[file_dir.join("data/secrets.age")]));
    let mut allowed = stores.clone();
    allowed.push(sandbox_dir.clone());
    allowed.extend(quick.allowed.iter().cloned());
    allowed.extend(toured.allowed.iter().cloned());
    leaks.extend(scan_temp(&every, started, &allowed));
    for q in [&quick, &toured] {
        let tokens = Canaries::new(
            q.canaries
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("token {i}"), c)),
        );
        leaks.extend(tokens.scan_dir(&q.dir, &q.allowed));
    }
    leaks.extend(quick.leaks);
    leaks.extend(toured.leaks);
    eprintln!(
        "canary suite: backends {covered:?}; {} commands; {} process-tree scans; quickstart {} token(s); tour {} token(s); {} outputs scanned",
        suite.commands,
        suite.process_scans,
        quick.canaries.len(),
        toured.canaries.len(),
        suite.seen.len()
    );
    suite.canary.assert_clean(&leaks);

    self_check(&mut suite, &file_dir, started, &allowed);
}

struct Quick {
    dir: PathBuf,
    canaries: Vec<Canary>,
    allowed: Vec<PathBuf>,
    leaks: Vec<Leak>,
}

/// `quickstart` in its own directory: wait for the gateway, read the site
/// tokens it stored (they are the canaries), scan its process tree, send a
/// request through it, stop it.
fn quickstart(suite: &mut Suite, root: &Path) -> Quick {
    let dir = root.join("quickstart");
    let (sandbox_port, port, admin) = (free_port(), free_port(), free_port());
    let cmd = suite.command(
        root,
        &[
            "quickstart",
            "--dir",
            "quickstart",
            "--sandbox-listen",
            &format!("127.0.0.1:{sandbox_port}"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    let mut w = Watched::spawn("`redcap-warden quickstart`".into(), cmd, None);
    wait_for_port(port, &mut w, suite);
    let store = secrets::FileStore::open(secrets::FileStoreOptions {
        path: dir.join("data/secrets.age"),
        identity: dir.join("data/identity.txt"),
        keep_versions: 20,
    })
    .unwrap();
    let canaries: Vec<Canary> = suite.rt.block_on(async {
        use secrets::SecretStore;
        let mut out = Vec::new();
        for name in store.list().await.unwrap() {
            if name.as_str().starts_with("redcap/") {
                let s = store
                    .get(&name, &secrets::Selector::Label(secrets::Label::Current))
                    .await
                    .unwrap();
                out.push(Canary::new(s.value.expose()));
            }
        }
        out
    });
    assert!(!canaries.is_empty(), "quickstart stored no tokens");
    let mut leaks = Vec::new();
    let refs: Vec<&Canary> = canaries.iter().collect();
    w.scan(&refs, &mut leaks);
    let key_file = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    let (status, body) = suite.call(port, &[("token", &key), ("content", "version")]);
    assert_eq!(status, 200, "{body}");
    // The study it seeds is clean under `rights check`, read through the
    // rights manager's token (a canary too) while the gateway holds the
    // ledger; its output is scanned with the rest.
    let rights = suite.run(&dir, &["rights", "check", "--json"], None);
    rights.ok();
    let report = rights.json();
    assert_eq!(report[0]["study"], "heart2", "{}", rights.text());
    assert_eq!(
        report[0]["findings"],
        serde_json::json!([]),
        "{}",
        rights.text()
    );
    // plan, apply and sites read the same tokens (and sites every site
    // account's, for its fingerprint); nothing to change, nothing printed.
    let plan = suite.run(&dir, &["rights", "plan", "--json"], None);
    plan.ok();
    assert_eq!(
        plan.json()[0]["plans"],
        serde_json::json!([]),
        "{}",
        plan.text()
    );
    let apply = suite.run(&dir, &["rights", "apply", "--reason", "canary suite"], None);
    apply.ok();
    let sites = suite.run(&dir, &["sites", "--json"], None);
    sites.ok();
    assert!(
        sites.json()[0]["sites"][0]["accounts"][0]["fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("fp")),
        "{}",
        sites.text()
    );
    let sites = suite.run(&dir, &["sites"], None);
    sites.ok();
    reauth(suite, root, &dir);
    // trace: site A's application exports its records through the
    // gateway; record 1 is then traced from the client through its proved
    // ledger entries to REDCap's rows (read through the log reader's
    // token, a canary), before site A's token is regenerated below.
    let site_a = std::fs::read_to_string(dir.join("keys/site-a-app.key"))
        .unwrap()
        .trim()
        .to_string();
    let (status, body) = suite.call(
        port,
        &[
            ("token", &site_a),
            ("content", "record"),
            ("format", "json"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    let traced = suite.run(&dir, &["trace", "1", "--json"], None);
    traced.ok();
    let t = traced.json();
    assert_eq!(t["calls"][0]["client"], "site-a-app", "{}", traced.text());
    assert!(
        t["calls"][0]["response"]["proof"].is_object(),
        "{}",
        traced.text()
    );
    suite.run(&dir, &["trace", "1"], None).ok();
    // REDCap's log carries token values on regeneration: regenerate site
    // A's token in the sandbox (its old value, a canary, is now in REDCap's
    // log), then reconcile — which reads that log through the log reader —
    // must repeat neither the old value nor the new one.
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sandbox-credentials.json")).unwrap(),
    )
    .unwrap();
    let admin_secret = creds["admin_secret"].as_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{sandbox_port}");
    let new_token = suite.rt.block_on(async {
        let projects: Value = suite
            .http
            .get(format!("{base}/sandbox/projects"))
            .bearer_auth(&admin_secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pid = projects[0]["project_id"].as_u64().unwrap();
        let regen: Value = suite
            .http
            .post(format!(
                "{base}/sandbox/projects/{pid}/users/svc_heart_site_a/token/regenerate"
            ))
            .bearer_auth(&admin_secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        regen["token"].as_str().unwrap().to_string()
    });
    let mut canaries = canaries;
    canaries.push(Canary::new(&new_token));
    let refs: Vec<&Canary> = canaries.iter().collect();
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let reconciled = suite.run(&dir, &["reconcile", "--since", &today, "--json"], None);
    assert_eq!(reconciled.status.code(), Some(1), "{}", reconciled.text());
    let report = reconciled.json();
    assert!(
        report["studies"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "token-event" && f["account"] == "heart2-site-a"),
        "{}",
        reconciled.text()
    );
    review(suite, root, &dir);
    // The report and the dashboard on the quickstart, after the token
    // event and reconcile: both name it, and neither repeats a token.
    let report = suite.run(&dir, &["report", "--out", "report/report.html"], None);
    assert_eq!(report.status.code(), Some(1), "{}", report.text());
    let page = std::fs::read_to_string(dir.join("report/report.html")).unwrap();
    let (status, dashboard) = suite.dashboard(&dir);
    assert_eq!(status, 200, "{dashboard}");
    for (what, text) in [("the report", &page), ("the dashboard", &dashboard)] {
        assert!(text.contains("heart2-site-a"), "{what} names the accounts");
        for c in &refs {
            leaks.extend(c.find(what, text.as_bytes()));
        }
    }
    // An account's life on the quickstart: site B retired (its clients'
    // keys revoked, its token deleted and its user removed through the
    // sandbox, the token proved dead, its secret retired), then enrolled
    // again (its profile applied in REDCap, DAG included, a first token
    // created, escrowed, verified — ownership through the log reader — and
    // stored). Its new token is a canary too.
    let retired = suite.run(
        &dir,
        &[
            "accounts",
            "retire",
            "heart2-site-b",
            "--reason",
            "canary suite",
        ],
        None,
    );
    assert!(
        retired.ok().text().contains("is retired"),
        "{}",
        retired.text()
    );
    suite.run(&dir, &["accounts", "list"], None);
    suite.run(&dir, &["rotate", "status"], None);
    let enrolled = suite.run(
        &dir,
        &[
            "accounts",
            "enroll",
            "heart2-site-b",
            "--reason",
            "canary suite",
        ],
        None,
    );
    assert!(
        enrolled.ok().text().contains("ownership: proved"),
        "{}",
        enrolled.text()
    );
    let enrolled_token = suite.rt.block_on(async {
        use secrets::SecretStore;
        store
            .get(
                &secrets::SecretName::new("redcap/heart2/site-b").unwrap(),
                &secrets::Selector::Label(secrets::Label::Current),
            )
            .await
            .unwrap()
            .value
            .expose()
            .to_string()
    });
    canaries.push(Canary::new(&enrolled_token));
    let refs: Vec<&Canary> = canaries.iter().collect();
    // The SOP of the quickstart's configuration, written and checked: its
    // files are scanned with the installation, its output with the rest.
    suite.run(&dir, &["sop", "--out", "sop"], None).ok();
    suite
        .run(&dir, &["sop", "--check", "sop/SOP-QUICKSTART.md"], None)
        .ok();
    let html = std::fs::read_to_string(dir.join("sop/SOP-QUICKSTART.html")).unwrap();
    assert!(
        html.contains("heart2-"),
        "the SOP names the quickstart's accounts"
    );
    w.scan(&refs, &mut leaks);
    let ran = w.stop(&refs, &mut leaks);
    suite.record(&ran);
    Quick {
        allowed: vec![
            dir.join("data/secrets.age"),
            // redcap-sandbox plays REDCap: its data holds the tokens.
            dir.join("sandbox"),
            dir.join("sandbox-credentials.json"),
        ],
        dir,
        canaries,
        leaks,
    }
}

/// A signed review of today's audit trail on the quickstart, while its
/// gateway holds the ledger: the reviewer (a key `ssh-keygen` makes here,
/// listed for this login) prints the statement — which acknowledges the
/// reconcile run with findings just made — signs it, records it, lists it.
fn review(suite: &mut Suite, root: &Path, dir: &Path) {
    let key = root.join("reviewer_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", "canary", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(made.status.success(), "{made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let login = Command::new("id").arg("-un").output().unwrap();
    let login = String::from_utf8(login.stdout).unwrap().trim().to_string();
    add_config(
        dir,
        &format!("\n[review]\nreviewers = [\"{login} {}\"]\n", public.trim()),
    );
    // The reconcile entry is signed within a second: then it is in range.
    std::thread::sleep(Duration::from_millis(1500));
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let statement = suite.run(dir, &["review", "statement", "--period", &today], None);
    statement.ok();
    let s = statement.json();
    assert!(
        !s["findings"].as_array().unwrap().is_empty(),
        "the review acknowledges reconcile's findings: {}",
        statement.text()
    );
    let file = root.join("review-statement.json");
    std::fs::write(&file, &statement.stdout).unwrap();
    let signed = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "redcap-warden-review", "-f"])
        .arg(&key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{signed:?}");
    let sig = format!("{}.sig", file.display());
    let recorded = suite.run(
        dir,
        &["review", "sign", "--period", &today, "--signature", &sig],
        None,
    );
    recorded.ok();
    let list = suite.run(dir, &["review", "list", "--json"], None);
    list.ok();
    assert_eq!(list.json().as_array().unwrap().len(), 1, "{}", list.text());
    suite.run(dir, &["review", "list"], None).ok();
}

/// `quickstart --tour` in its own directory, its process tree scanned
/// while it runs: it exits 0; its tokens (read back from its store,
/// site A's rotated one included) appear in none of its output or files.
fn tour(suite: &mut Suite, root: &Path) -> Quick {
    let dir = root.join("tour");
    let cmd = suite.command(root, &["quickstart", "--tour", "--dir", "tour"]);
    let w = Watched::spawn("`redcap-warden quickstart --tour`".into(), cmd, None);
    let mut leaks = Vec::new();
    let ran = w.finish_within(
        Duration::from_secs(300),
        Duration::from_millis(200),
        &[&suite.canary],
        &mut leaks,
    );
    suite.record(&ran);
    ran.ok();
    let text = ran.text();
    for step in [
        "[1/9] Three sites",
        "site-c-app exports records: 200",
        "the gateway answered 403",
        "rotation complete",
        "reconcile found the direct export and nothing else",
        "inclusion proof verified",
        "it leads with the direct export",
        "Tour complete",
    ] {
        assert!(text.contains(step), "the tour showed no {step:?}:\n{text}");
    }
    let store = secrets::FileStore::open(secrets::FileStoreOptions {
        path: dir.join("data/secrets.age"),
        identity: dir.join("data/identity.txt"),
        keep_versions: 20,
    })
    .unwrap();
    let canaries: Vec<Canary> = suite.rt.block_on(async {
        use secrets::SecretStore;
        let mut out = Vec::new();
        for name in store.list().await.unwrap() {
            if !name.as_str().starts_with("redcap/") {
                continue;
            }
            for label in [secrets::Label::Current, secrets::Label::Previous] {
                if let Ok(s) = store.get(&name, &secrets::Selector::Label(label)).await {
                    out.push(Canary::new(s.value.expose()));
                }
            }
        }
        out
    });
    assert!(
        canaries.len() > 5,
        "the tour stored its tokens and rotated one"
    );
    Quick {
        allowed: vec![
            dir.join("data/secrets.age"),
            dir.join("sandbox"),
            dir.join("sandbox-credentials.json"),
        ],
        dir,
        canaries,
        leaks,
    }
}

/// The re-authorisation commands on the quickstart's study, while its
/// gateway holds the ledger: site A gets a period and an approver (a key
/// `ssh-keygen` makes here), then `reauth status`, `reauth statement`, an
/// approval signed with `ssh-keygen -Y sign`, and `reauth sweep`, each
/// scanned with the rest (the statement and the approval read rights
/// through the rights manager's token, a canary).
fn reauth(suite: &mut Suite, root: &Path, dir: &Path) {
    let key = root.join("approver_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", "canary", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(made.status.success(), "{made:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let config = dir.join("warden.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let site_a = "site = \"site-a\"\nprofile = \"heart2-site\"\n";
    assert!(text.contains(site_a), "the quickstart's site A account");
    std::fs::write(
        &config,
        text.replace(
            site_a,
            &format!(
                "{site_a}reauth_every_days = 90\nlapse_after_inactive_days = 30\napprovers = [\"approver@example.org {}\"]\n",
                public.trim()
            ),
        ),
    )
    .unwrap();
    let status = suite.run(dir, &["reauth", "status", "--json"], None);
    status.ok();
    assert_eq!(status.json()[0]["lapsed"], false, "{}", status.text());
    // The quickstart's study has a log reader: last use in REDCap's log is
    // read (a time, or "never"), never null.
    assert!(
        status.json()[0]["last_seen_in_redcap_log"].is_string(),
        "{}",
        status.text()
    );
    suite.run(dir, &["reauth", "status"], None).ok();
    let statement = suite.run(
        dir,
        &["reauth", "statement", "heart2-site-a", "--reason", "canary"],
        None,
    );
    statement.ok();
    let file = root.join("reauth-statement.json");
    std::fs::write(&file, &statement.stdout).unwrap();
    let signed = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "redcap-warden-reauth", "-f"])
        .arg(&key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(signed.status.success(), "{signed:?}");
    let sig = format!("{}.sig", file.display());
    let approved = suite.run(
        dir,
        &[
            "reauth",
            "heart2-site-a",
            "--reason",
            "canary",
            "--signature",
            &sig,
        ],
        None,
    );
    approved.ok();
    assert!(
        approved.text().contains("re-approved"),
        "{}",
        approved.text()
    );
    suite.run(dir, &["reauth", "sweep"], None).ok();
}

/// The scanner finds the canary when it is there: in a file of the
/// installation (base64url, mid-blob), in a temporary file (percent-
/// encoded), in a command's output (a 16-character slice), and in the
/// environment of a grandchild of a watched process (lower case).
fn self_check(suite: &mut Suite, dir: &Path, started: SystemTime, allowed: &[PathBuf]) {
    let token = suite.canary.value().to_string();
    let planted = dir.join("data/planted.json");
    let blob = suite
        .canary
        .in_base64_blob("{\"x\":1,\"token\":\"", "\"}", true);
    std::fs::write(&planted, format!("{{\"blob\":\"{blob}\"}}")).unwrap();
    let found = scan_installation(suite, dir);
    std::fs::remove_file(&planted).unwrap();
    assert!(
        found.iter().any(|l| l.place.ends_with("planted.json")),
        "the installation scan missed a planted canary: {found:?}"
    );

    let tmp = tempfile::NamedTempFile::new().unwrap();
    let percent: String = token.bytes().map(|b| format!("%{b:02x}")).collect();
    std::fs::write(tmp.path(), format!("q=a&t={percent}")).unwrap();
    let found = scan_temp(
        &Canaries::new([("the canary".to_string(), &suite.canary)]),
        started,
        allowed,
    );
    assert!(
        found.iter().any(|l| Path::new(&l.place) == tmp.path()),
        "the temporary-directory scan missed a planted canary: {found:?}"
    );

    // sh forks sleep (the commands after it keep sh from exec'ing it),
    // which inherits the planted environment.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("sleep 2; echo \"...${SLICE}...\"")
        .env("PLANTED", token.to_lowercase())
        .env("SLICE", &token[3..19]);
    let w = Watched::spawn("planted".into(), cmd, None);
    let mut leaks = Vec::new();
    let ran = w.finish(&[&suite.canary], &mut leaks);
    assert!(
        leaks
            .iter()
            .any(|l| l.place.contains("environ") && l.place.contains("sleep")),
        "the process scan missed a canary in a grandchild's environment: {leaks:?}"
    );
    let found = suite.canary.find("planted output", &ran.stdout);
    assert!(
        found.iter().any(|l| l.encoding.contains("16-character")),
        "the output scan missed a 16-character slice: {found:?} in {}",
        ran.text()
    );
}
