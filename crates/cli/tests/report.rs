//! `report` and the dashboard end to end, on the quickstart's seeded study
//! (three sites' accounts, two clients): calls through the gateway, a
//! refused call, the site A token regenerated straight in the sandbox
//! behind the gateway's back, `reconcile`; then `report --out` must name
//! the seeded accounts and the reconciliation's findings, exit 1 for
//! them, hold no token value, and load in headless Chromium without a
//! console message (screenshots in target/chromium-artifacts/); `--pdf`
//! prints it, and says how to install Chromium when there is none. The
//! dashboard on the admin listener asks a browser for the admin credential,
//! and with it shows the same, findings first, then the live charts. With
//! REDCap gone the report is still written, saying rights were not checked.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use canary::Canary;
use common::chromium::{Chromium, outside_references};
use common::{free_port, text, warden};
use serde_json::Value;

/// The quickstart, stopped (SIGTERM) on drop.
struct Quickstart {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
    admin: u16,
    sandbox: u16,
}

impl Quickstart {
    fn start(root: &Path) -> Quickstart {
        let (sandbox, port, admin) = (free_port(), free_port(), free_port());
        let child = Command::new(assert_cmd::cargo::cargo_bin("redcap-warden"))
            .current_dir(root)
            .args([
                "quickstart",
                "--dir",
                "q",
                "--sandbox-listen",
                &format!("127.0.0.1:{sandbox}"),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .env_remove("SUDO_USER")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let q = Quickstart {
            child,
            dir: root.join("q"),
            port,
            admin,
            sandbox,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
            assert!(Instant::now() < deadline, "the quickstart did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        q
    }

    fn warden(&self, args: &[&str]) -> std::process::Output {
        warden(&self.dir, args, None)
    }

    /// The tokens the quickstart stored: canaries.
    fn canaries(&self) -> Vec<Canary> {
        let store = secrets::FileStore::open(secrets::FileStoreOptions {
            path: self.dir.join("data/secrets.age"),
            identity: self.dir.join("data/identity.txt"),
            keep_versions: 20,
        })
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use secrets::SecretStore;
            let mut out = Vec::new();
            for name in store.list().await.unwrap() {
                if name.as_str().starts_with("redcap/") {
                    for v in store.history(&name).await.unwrap() {
                        let s = store
                            .get(&name, &secrets::Selector::Version(v.version.clone()))
                            .await
                            .unwrap();
                        out.push(Canary::new(s.value.expose()));
                    }
                }
            }
            out
        })
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn post(url: &str, form: &[(&str, &str)], bearer: Option<&str>) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().post(url).form(form);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn no_leak(what: &str, text: &str, canaries: &[Canary]) {
    for c in canaries {
        let leaks = c.find(what, text.as_bytes());
        assert!(leaks.is_empty(), "a token value is in {what}: {leaks:?}");
    }
}

#[test]
fn the_report_and_the_dashboard_show_the_seeded_accounts_and_findings_in_chromium() {
    let root = tempfile::tempdir().unwrap();
    let q = Quickstart::start(root.path());
    let key = std::fs::read_to_string(q.dir.join("keys/site-a-app.key"))
        .unwrap()
        .trim()
        .to_string();
    let api = format!("http://127.0.0.1:{}/api/", q.port);
    let (status, body) = post(
        &api,
        &[("token", &key), ("content", "record"), ("format", "json")],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(
        &api,
        &[
            ("token", "0123456789ABCDEF0123456789ABCDEF"),
            ("content", "record"),
        ],
        None,
    );
    assert_eq!(status, 403);

    // The bypass: site A's token regenerated straight in the sandbox.
    let creds: Value = serde_json::from_str(
        &std::fs::read_to_string(q.dir.join("sandbox-credentials.json")).unwrap(),
    )
    .unwrap();
    let admin_secret = creds["admin_secret"].as_str().unwrap().to_string();
    let base = format!("http://127.0.0.1:{}", q.sandbox);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let new_token = rt.block_on(async {
        let http = reqwest::Client::new();
        let projects: Value = http
            .get(format!("{base}/sandbox/projects"))
            .bearer_auth(&admin_secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let pid = projects[0]["project_id"].as_u64().unwrap();
        let regen: Value = http
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
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let reconciled = q.warden(&["reconcile", "--since", &today]);
    assert_eq!(reconciled.status.code(), Some(1), "{}", text(&reconciled));

    let mut canaries = q.canaries();
    canaries.push(Canary::new(&new_token));
    assert!(canaries.len() >= 3);

    // The report: exit 1 for the reconciliation's findings.
    let report = q.warden(&["report", "--out", "out/report.html"]);
    let said = text(&report);
    assert_eq!(report.status.code(), Some(1), "{said}");
    assert!(
        said.contains("CRITICAL") && said.contains("reconcile"),
        "{said}"
    );
    no_leak("report's output", &said, &canaries);
    let html = std::fs::read_to_string(q.dir.join("out/report.html")).unwrap();
    no_leak("the report", &html, &canaries);
    for account in ["heart2-site-a", "heart2-site-b", "heart2-rights"] {
        assert!(html.contains(account), "{account} is in the report");
    }
    assert!(html.contains("fp1:"), "tokens are named by fingerprint");
    assert!(
        html.contains("id=\"ledger-verified\""),
        "the ledger verifies"
    );
    assert!(html.contains("id=\"checkpoint\""), "the latest checkpoint");
    assert!(
        html.contains("found") && html.contains("discrepancy"),
        "the reconciliation's findings"
    );
    assert!(html.contains("site-a-app"), "the client keys");
    assert!(
        !html.contains("<script") && !html.contains("<link") && !html.contains("src="),
        "self-contained"
    );

    // PDF: no Chromium gives a clear error (exit 2), with one a PDF.
    let missing = Command::new(assert_cmd::cargo::cargo_bin("redcap-warden"))
        .current_dir(&q.dir)
        .args(["report", "--out", "out/nochrome.html", "--pdf"])
        .env("CHROMIUM", "/nonexistent/chromium")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        text(&missing).contains("apt-get install chromium"),
        "{}",
        text(&missing)
    );

    let Some(chromium) = Chromium::find("report") else {
        return;
    };
    let pdf = q.warden(&["report", "--out", "out/printed.html", "--pdf"]);
    assert_eq!(pdf.status.code(), Some(1), "{}", text(&pdf));
    let printed = std::fs::read(q.dir.join("out/printed.pdf")).unwrap();
    assert!(printed.starts_with(b"%PDF"));
    std::fs::copy(
        q.dir.join("out/printed.pdf"),
        common::chromium::artifacts().join("report.pdf"),
    )
    .ok();

    let url = format!("file://{}", q.dir.join("out/report.html").display());
    let page = chromium.load(&url, "report");
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    assert_eq!(outside_references(&page.dom), Vec::<String>::new());
    for want in [
        "heart2-site-a",
        "heart2-site-b",
        "sev-critical",
        "Compliance map",
    ] {
        assert!(page.dom.contains(want), "{want} in the rendered report");
    }
    assert!(page.dom.contains("<svg"), "the charts render");

    // The dashboard: behind the admin credential, the same views, live.
    let dashboard = format!("http://127.0.0.1:{}/dashboard", q.admin);
    let credential = std::fs::read_to_string(q.dir.join("data/gateway-admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (refused, answered) = rt.block_on(async {
        let http = reqwest::Client::new();
        let refused = http.get(&dashboard).send().await.unwrap();
        let answered = http
            .get(&dashboard)
            .bearer_auth(&credential)
            .send()
            .await
            .unwrap();
        (
            (
                refused.status().as_u16(),
                refused.headers().get("www-authenticate").is_some(),
            ),
            (answered.status().as_u16(), answered.text().await.unwrap()),
        )
    });
    assert_eq!(
        refused,
        (401, true),
        "a browser is asked for the credential"
    );
    assert_eq!(answered.0, 200, "{}", answered.1);
    no_leak("the dashboard", &answered.1, &canaries);
    let page = chromium.load(
        &format!("http://admin:{credential}@127.0.0.1:{}/dashboard", q.admin),
        "dashboard",
    );
    assert!(page.console.is_empty(), "console: {:?}", page.console);
    assert_eq!(outside_references(&page.dom), Vec::<String>::new());
    no_leak("the dashboard in Chromium", &page.dom, &canaries);
    for want in [
        "heart2-site-a",
        "heart2-site-b",
        "site-a-app",
        "sev-critical",
        "Gateway, live",
        "Request rate (per minute)",
        "id=\"ledger-verified\"",
    ] {
        assert!(page.dom.contains(want), "{want} in the dashboard");
    }
    let findings = page.dom.find("id=\"findings\"").unwrap();
    let live = page.dom.find("id=\"live\"").unwrap();
    let tokens = page.dom.find("id=\"tokens\"").unwrap();
    assert!(
        findings < live && live < tokens,
        "findings first, then the live charts"
    );

    // REDCap gone (the quickstart stopped): the report is still written,
    // saying rights could not be checked.
    let dir = q.dir.clone();
    drop(q);
    let offline = warden(&dir, &["report", "--out", "out/offline.html"], None);
    assert_eq!(offline.status.code(), Some(1), "{}", text(&offline));
    let html = std::fs::read_to_string(dir.join("out/offline.html")).unwrap();
    assert!(
        html.contains("Rights could not be checked"),
        "{}",
        text(&offline)
    );
    assert!(html.contains("id=\"ledger-verified\""));
    no_leak("the offline report", &html, &canaries);
}

/// The browser checks can fail: a page that writes to the console, or
/// that would fetch from outside, is caught.
#[test]
fn the_browser_check_catches_console_errors_and_outside_fetches() {
    let Some(chromium) = Chromium::find("browser self-check") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("console", "<script>console.error('boom')</script>"),
        ("fetch", "<img src=\"https://example.org/x.png\">"),
    ] {
        let file = dir.path().join(format!("{name}.html"));
        std::fs::write(
            &file,
            format!("<!DOCTYPE html><html><body>{body}</body></html>"),
        )
        .unwrap();
        let page = chromium.load(
            &format!("file://{}", file.display()),
            &format!("self-check-{name}"),
        );
        assert!(
            !page.console.is_empty() || !outside_references(&page.dom).is_empty(),
            "{name}: not caught"
        );
    }
}
