//! `report --out FILE.html [--pdf]`: the compliance report
//! (docs/report.md). The model, its findings and the HTML are
//! `governance::report`; this file gathers each view from where its own
//! command computes it — `rotate status`'s inventory, `rights check`
//! (run now and recorded, as the command records it), the ledger read once
//! for re-authorisation and the report's timelines, `ledger verify`, `keys
//! list` — and, with `--pdf`, prints the page through headless Chromium.
//! `serve` gathers the dashboard's evidence here too.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use governance::report::{ClientKeyView, Evidence, LedgerScan, RightsView, html};
use jiff::Timestamp;
use secrets::SecretStore;
use warden_config::LoadedConfig;

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// How rights drift is known.
pub(super) enum Rights<'a> {
    /// `rights check` now, against REDCap, recorded by this operator.
    CheckNow(&'a Operator),
    /// The latest checks recorded in the ledger (the dashboard: no REDCap
    /// call on every refresh).
    FromLedger,
}

/// `report`: gathers the evidence, writes the page (and the PDF); exit 1
/// when a finding is critical.
pub fn run(args: &Args, out: &Path, pdf: bool) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let now = Timestamp::now();
    let keys = super::keys::with_last_use(&config)?
        .iter()
        .map(|k| k.view(now))
        .collect();
    let evidence = gather(&config, &*store, Rights::CheckNow(&operator), keys)?;
    let page = html::render(
        &evidence,
        &html::Page {
            title: "redcap-warden compliance report".into(),
            refresh_seconds: None,
        },
    );
    write_file(out, page.as_bytes())?;
    let findings = evidence.findings();
    println!("wrote {} ({} finding(s))", out.display(), findings.len());
    for f in &findings {
        println!(
            "  {:<8} {}: {}",
            f.severity.to_string().to_uppercase(),
            f.section,
            f.text
        );
    }
    if pdf {
        let pdf_path = out.with_extension("pdf");
        print_pdf(out, &pdf_path)?;
        println!("wrote {}", pdf_path.display());
    }
    Ok(if evidence.has_critical() {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Every view of the report. Blocking: call it off any async runtime (it
/// runs its own for the store and REDCap).
pub(super) fn gather(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    rights: Rights<'_>,
    keys: Vec<ClientKeyView>,
) -> anyhow::Result<Evidence> {
    let c = &config.config;
    let rights = match rights {
        // REDCap unreachable, a refused token, nothing to check: the
        // report says so rather than failing.
        Rights::CheckNow(operator) => {
            match super::rights::studies_checked(config, store, operator) {
                Ok(studies) => RightsView::Checked { studies },
                Err(e) => RightsView::Unavailable {
                    reason: format!("{e:#}"),
                },
            }
        }
        Rights::FromLedger => RightsView::FromLedger,
    };
    let rotations = governance::rotation::Journal::on_os(config.data_dir().join("rotation"))
        .all()
        .context("reading the rotation journals")?;
    let now = Timestamp::now();
    let tokens = super::runtime()?
        .block_on(governance::rotation::inventory(
            &c.account, store, &rotations, now,
        ))
        .context("reading the token versions from the secrets store")?;
    // After the rights check, so its entries are in the scan.
    let mut scan = LedgerScan::default();
    crate::store::read_ledger_from(config, 0, &mut |e| scan.push(&e))?;
    let tz = c.redcap.time_zone();
    let reauth = super::reauth::governed(config)
        .map(|a| governance::reauth::assess(a, &scan.facts, now, tz))
        .collect();
    let ledger = super::ledger::verified_view(config)?;
    Ok(Evidence {
        generated_at: now,
        config_path: config.path.display().to_string(),
        redcap_time_zone: tz.iana_name().unwrap_or("UTC").to_string(),
        tokens,
        rights,
        reauth,
        ledger,
        scan,
        keys,
        live: None,
    })
}

/// The dashboard's evidence, gathered as the report's is (rights drift
/// from the ledger's latest checks: no REDCap call per page load), on a
/// thread of its own (the gathering blocks).
pub(super) struct DashboardEvidence {
    pub(super) config: LoadedConfig,
    pub(super) store: std::sync::Arc<dyn SecretStore>,
}

#[async_trait::async_trait]
impl gateway::EvidenceSource for DashboardEvidence {
    async fn gather(&self) -> Result<Evidence, String> {
        let (config, store) = (self.config.clone(), self.store.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut gathered = gather(&config, &*store, Rights::FromLedger, Vec::new());
            // The gateway appends while the ledger is read: a line being
            // written as verification reaches it fails it; a second look
            // tells that from damage.
            if let Ok(e) = &mut gathered
                && e.ledger.verified.is_err()
            {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if let Ok(again) = super::ledger::verified_view(&config) {
                    e.ledger = again;
                }
            }
            let _ = tx.send(gathered.map_err(|e| format!("{e:#}")));
        });
        rx.await
            .unwrap_or_else(|_| Err("the gathering thread stopped".into()))
    }
}

/// Writes `bytes` to `path` whole (a temporary file beside it, renamed).
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Headless Chromium: `$CHROMIUM`, else the first of the usual names on
/// PATH.
pub(crate) fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
    .find(|p| p.is_file())
}

/// Prints the HTML file `html` to `pdf` with headless Chromium (no network
/// is needed: the page holds everything).
fn print_pdf(html: &Path, pdf: &Path) -> anyhow::Result<()> {
    let Some(browser) = chromium() else {
        bail!(
            "--pdf needs headless Chromium and none was found (chromium, chromium-browser or google-chrome on PATH, or $CHROMIUM); install it — Debian/Ubuntu: `sudo apt-get install chromium`, Fedora: `sudo dnf install chromium`, macOS: `brew install --cask chromium` — or print {} from a browser; the HTML report was written",
            html.display()
        );
    };
    let html =
        std::fs::canonicalize(html).with_context(|| format!("finding {}", html.display()))?;
    let pdf_abs = std::env::current_dir()?.join(pdf);
    // A profile of its own, removed after: nothing of the user's browser
    // is read or changed.
    let profile = std::env::temp_dir().join(format!(
        "redcap-warden-chromium-{}-{}",
        std::process::id(),
        Timestamp::now().as_nanosecond()
    ));
    std::fs::create_dir_all(&profile)
        .with_context(|| format!("making {} for Chromium", profile.display()))?;
    let _ = std::fs::remove_file(&pdf_abs);
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", pdf_abs.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .with_context(|| format!("running {}", browser.display()));
    let _ = std::fs::remove_dir_all(&profile);
    let out = out?;
    let written = std::fs::read(&pdf_abs).unwrap_or_default();
    if !out.status.success() || !written.starts_with(b"%PDF") {
        bail!(
            "{} did not print {} to PDF ({}): {}",
            browser.display(),
            html.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no message")
        );
    }
    Ok(())
}
