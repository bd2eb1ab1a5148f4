//! `quickstart --tour`: a scripted run over a fresh quickstart (three
//! sites in redcap-sandbox, the gateway in this process) that shows each
//! part of the procedure working and says what each step showed. The
//! commands run as separate processes of this same binary, exactly as a
//! person would type them (printed before their output); the calls are
//! what a client application sends. It ends with exit 0 only when every
//! step showed what it should — above all, when `reconcile` finds the
//! export made straight against REDCap and nothing else.
//!
//! Token values never reach the output: the bypass reads site A's token
//! from the store to send it, and prints only REDCap's answer.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use anyhow::{Context, bail};
use secrets::{Label, SecretName, Selector};
use serde_json::Value;

use super::quickstart::SITES;
use crate::Outcome;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// What the tour runs against: the quickstart just seeded.
pub struct Installation<'a> {
    pub dir: &'a Path,
    pub config_path: &'a Path,
    /// redcap-sandbox's API URL (REDCap, for the bypass).
    pub sandbox_url: &'a str,
    /// The gateway's listener.
    pub gateway: SocketAddr,
    pub operator: &'a Operator,
}

struct Tour<'a> {
    at: &'a Installation<'a>,
    http: reqwest::Client,
    step: usize,
}

/// The steps, for the header of each.
const STEPS: usize = 9;

impl Tour<'_> {
    fn step(&mut self, title: &str) {
        self.step += 1;
        println!();
        println!("[{}/{STEPS}] {title}", self.step);
    }

    /// Runs `redcap-warden --config C ARGS…` (printed first) and shows its
    /// output, indented.
    async fn warden(&self, args: &[&str]) -> anyhow::Result<Output> {
        let exe = std::env::current_exe().context("finding this program to run its commands")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--config").arg(self.at.config_path);
        if let Some(name) = &self.at.operator.stated_name {
            cmd.arg("--operator").arg(name);
        }
        cmd.args(args);
        println!(
            "  $ redcap-warden --config {} {}",
            self.at.config_path.display(),
            args.join(" ")
        );
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .context("running a command of the tour")?
            .context("running a command of the tour")?;
        Ok(out)
    }

    fn show(out: &Output) {
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("    | {line}");
        }
    }

    /// A command that must succeed (exit 0), shown.
    async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = self.warden(args).await?;
        Tour::show(&out);
        if !out.status.success() {
            bail!(
                "the tour stopped: `redcap-warden {}` exited with {} (its output is above)",
                args.join(" "),
                out.status
            );
        }
        Ok(out)
    }

    /// A client application's call through the gateway with its key.
    async fn call(&self, site: &str, params: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
        let key_file = self.at.dir.join("keys").join(format!("{site}-app.key"));
        let key = std::fs::read_to_string(&key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        let mut form = vec![("token", key.trim())];
        form.extend_from_slice(params);
        let r = self
            .http
            .post(format!("http://{}/api/", self.at.gateway))
            .form(&form)
            .send()
            .await
            .context("calling the gateway")?;
        Ok((r.status().as_u16(), r.text().await.unwrap_or_default()))
    }
}

/// The record ids of a JSON export.
fn record_ids(body: &str) -> String {
    let rows: Vec<Value> = serde_json::from_str(body).unwrap_or_default();
    let ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["record_id"].as_str())
        .collect();
    if ids.is_empty() {
        "none".into()
    } else {
        ids.join(", ")
    }
}

/// Waits for the next minute to begin and returns it: REDCap's log has
/// minute precision, so the window `reconcile` reads starts after the
/// seeding's own rows (users added, DAGs made — access changes in any
/// other minute).
async fn next_minute() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    let next = jiff::Timestamp::from_second((now.as_second() / 60 + 1) * 60).unwrap_or(now);
    let wait = next.duration_since(now).unsigned_abs() + std::time::Duration::from_millis(200);
    println!(
        "  (waiting {} s for the next minute: REDCap's log is minute-precise, and the seeding's own rows must stay outside the window reconcile reads)",
        wait.as_secs()
    );
    tokio::time::sleep(wait).await;
    next
}

pub async fn run(at: &Installation<'_>) -> anyhow::Result<Outcome> {
    let mut t = Tour {
        at,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        step: 0,
    };
    println!();
    println!(
        "redcap-warden tour in {}: redcap-sandbox plays REDCap at {}; the gateway listens on http://{}/api/",
        at.dir.display(),
        at.sandbox_url,
        at.gateway
    );

    t.step("Three sites: one service account per site, each bound to its own Data Access Group");
    t.run(&["sites"]).await?;
    let since = next_minute().await;

    t.step(
        "Calls through the gateway: each site's application uses its own client key (never a REDCap token) and sees only its own site's records",
    );
    for (site, _, _) in SITES {
        let (status, body) = t
            .call(site, &[("content", "record"), ("format", "json")])
            .await?;
        if status != 200 {
            bail!("the tour stopped: {site}-app's export answered {status}: {body}");
        }
        println!(
            "  {site}-app exports records: 200, records {}",
            record_ids(&body)
        );
    }
    let data = r#"[{"record_id":"1","age":"62"}]"#;
    let (status, body) = t
        .call(
            "site-a",
            &[("content", "record"), ("format", "json"), ("data", data)],
        )
        .await?;
    if status != 200 {
        bail!("the tour stopped: site-a-app's import answered {status}: {body}");
    }
    println!("  site-a-app updates record 1: {status} {}", body.trim());

    t.step("A denied call: site B's application asks for the project's users, which its client is not allowed");
    let (status, body) = t
        .call("site-b", &[("content", "user"), ("format", "json")])
        .await?;
    if status != 403 {
        bail!("the tour stopped: the gateway answered {status} to a call it must refuse: {body}");
    }
    println!(
        "  the gateway answered {status} (REDCap's own shape): {}",
        body.trim()
    );
    println!("  REDCap never saw it; the refusal is a `denied` entry in the ledger");

    t.step("A rotation of site A's REDCap token while the gateway serves (the sandbox plays the person who regenerates it)");
    t.run(&[
        "rotate",
        "run",
        "heart2-site-a",
        "--reason",
        "quickstart tour",
    ])
    .await?;
    let (status, body) = t
        .call("site-a", &[("content", "record"), ("format", "json")])
        .await?;
    if status != 200 {
        bail!("the tour stopped: site-a-app's export after the rotation answered {status}: {body}");
    }
    println!(
        "  site-a-app exports again with the same client key: {status}, records {} (the gateway injects the new token)",
        record_ids(&body)
    );

    t.step("The bypass: an export made straight against REDCap with site A's new token, as a leaked token would be used");
    let config = load_config(at.config_path)?;
    let store = open_store(&config)?;
    let name = SecretName::new("redcap/heart2/site-a").map_err(anyhow::Error::msg)?;
    let secret = store
        .get(&name, &Selector::Label(Label::Current))
        .await
        .context("reading site A's token from the store")?;
    let r = t
        .http
        .post(at.sandbox_url)
        .form(&[
            ("token", secret.value.expose()),
            ("content", "record"),
            ("format", "json"),
        ])
        .send()
        .await
        .context("calling redcap-sandbox directly")?;
    drop(secret);
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    if status != 200 {
        bail!("the tour stopped: the direct export answered {status}");
    }
    println!(
        "  REDCap answered {status} with records {}: the gateway never saw this call, so the ledger has no entry for it",
        record_ids(&body)
    );

    t.step("ledger verify: every entry, every checkpoint's signature, and the witnesses kept outside the ledger");
    t.run(&["ledger", "verify"]).await?;

    let since_text = since.to_string();
    t.step("reconcile: REDCap's own log, read through the study's log reader, paired with the ledger since the tour's first call");
    let out = t
        .warden(&["--json", "reconcile", "--since", &since_text])
        .await?;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let study = &report["studies"][0];
    let findings = study["findings"].as_array().cloned().unwrap_or_default();
    println!(
        "    | study `{}`: {} REDCap row(s), {} forwarded request(s), {} finding(s) (exit {})",
        study["study"].as_str().unwrap_or("?"),
        study["redcap_rows"],
        study["forwarded"],
        findings.len(),
        out.status.code().unwrap_or(-1)
    );
    for f in &findings {
        println!(
            "    | {} {} {}: {}: {}",
            f["severity"].as_str().unwrap_or("?").to_uppercase(),
            f["at"].as_str().unwrap_or("?"),
            f["account"].as_str().unwrap_or("(no account)"),
            f["code"].as_str().unwrap_or("?"),
            f["detail"].as_str().unwrap_or("?")
        );
        for row in f["rows"].as_array().into_iter().flatten() {
            println!("    |          {}", row.as_str().unwrap_or("?"));
        }
    }
    let only_the_bypass = findings.len() == 1
        && findings[0]["code"] == "unexplained-api-activity"
        && findings[0]["account"] == "heart2-site-a";
    if !only_the_bypass || out.status.code() != Some(1) {
        Tour::show(&out);
        bail!(
            "the tour stopped: reconcile should find the direct export (one unexplained-api-activity of heart2-site-a) and nothing else"
        );
    }
    println!(
        "  reconcile found the direct export and nothing else: REDCap logged one more API call by site A's account than the gateway forwarded"
    );

    t.step("trace 1: record 1 from each client through each ledger entry naming it (proved against the latest signed checkpoint) to REDCap's rows");
    // The gateway signs a checkpoint within a second of its last entries
    // (reconcile's own, just now): then every entry has its proof.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    t.run(&["trace", "1"]).await?;
    println!(
        "  (REDCap's log does not say which records an export sent, so the direct export is reconcile's finding, not trace's)"
    );

    t.step("report: the compliance report, one self-contained HTML file — tokens, rotations, rights, re-authorisation, the ledger and its latest checkpoint, reconciliation findings, reviews, each requirement with its evidence");
    let report = at.dir.join("report.html");
    let report_arg = report.display().to_string();
    let out = t.warden(&["report", "--out", &report_arg]).await?;
    Tour::show(&out);
    // Exit 1: the report holds a critical finding — the bypass.
    if out.status.code() != Some(1) || !report.exists() {
        bail!(
            "the tour stopped: report should write {} and exit 1 for the direct export reconcile found (exit {})",
            report.display(),
            out.status
        );
    }
    println!(
        "  the report is {} (open it in a browser; it needs no network): it leads with the direct export",
        report.display()
    );

    println!();
    println!(
        "Tour complete: every step showed what it should. The installation stays in {}: `redcap-warden quickstart --dir {}` serves it again; `redcap-warden --config {} ledger tail` shows the entries.",
        at.dir.display(),
        at.dir.display(),
        at.config_path.display()
    );
    Ok(Outcome::Clean)
}
