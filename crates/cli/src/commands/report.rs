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
use governance::report::{ClientKeyView, Evidence, LedgerScan, LedgerView, RightsView, html};
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
    gather_with(config, store, rights, keys, &mut |config| {
        let mut scan = LedgerScan::default();
        crate::store::read_ledger_from(config, 0, &mut |e| scan.push(&e))?;
        Ok((scan, super::ledger::verified_view(config)?))
    })
}

/// The ledger's part of the evidence: its one-pass scan and its
/// verification.
type LedgerPart<'a> = dyn FnMut(&LoadedConfig) -> anyhow::Result<(LedgerScan, LedgerView)> + 'a;

/// [`gather`], the ledger read and verified by `ledger_part`.
fn gather_with(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    rights: Rights<'_>,
    keys: Vec<ClientKeyView>,
    ledger_part: &mut LedgerPart<'_>,
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
    let (scan, ledger) = ledger_part(config)?;
    let tz = c.redcap.time_zone();
    let reauth = super::reauth::governed(config)
        .map(|a| governance::reauth::assess(a, &scan.facts, now, tz))
        .collect();
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
/// thread of its own (the gathering blocks). A file ledger is followed:
/// verified in full at the first load and every [`FULL_EVERY`], and in
/// between only what was appended since the last load is read and
/// verified ([`ledger::Follower`]), the scan kept from load to load.
pub(super) struct DashboardEvidence {
    pub(super) config: LoadedConfig,
    pub(super) store: std::sync::Arc<dyn SecretStore>,
    pub(super) following: std::sync::Arc<std::sync::Mutex<Option<Following>>>,
}

impl DashboardEvidence {
    /// The source for `serve`, following nothing yet.
    pub(super) fn new(
        config: LoadedConfig,
        store: std::sync::Arc<dyn SecretStore>,
    ) -> DashboardEvidence {
        DashboardEvidence {
            config,
            store,
            following: Default::default(),
        }
    }
}

/// How often the dashboard verifies the whole ledger again, however
/// little was appended: the bound on how long an old entry changed in
/// place (its length, and the segment's last line, kept) goes unseen.
pub(super) const FULL_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// A followed file ledger: the verified prefix and the scan of it.
pub(super) struct Following {
    follower: ledger::Follower,
    scan: LedgerScan,
    full_at: Timestamp,
    full_instant: std::time::Instant,
    /// A change of the verified prefix once seen, kept on show.
    changed: Option<String>,
}

/// The ledger part of the dashboard's evidence: incremental while the
/// ledger is a file ledger that only grew and the last full verification
/// is younger than `full_every`; in full otherwise.
pub(super) fn followed_ledger(
    config: &LoadedConfig,
    following: &mut Option<Following>,
    full_every: std::time::Duration,
) -> anyhow::Result<(LedgerScan, LedgerView)> {
    let section = governance::audit::ledger_section(config)?;
    let warden_config::LedgerStore::File = section.store else {
        *following = None;
        let mut scan = LedgerScan::default();
        crate::store::read_ledger_from(config, 0, &mut |e| scan.push(&e))?;
        return Ok((scan, super::ledger::verified_view(config)?));
    };
    let dir = config.resolve(&section.dir);
    let key = section.verifier_key();
    let view = |f: &ledger::Followed, note: Option<&str>, how, changed| LedgerView {
        place: dir.display().to_string(),
        verifier_key: key.to_string(),
        verified: Ok(governance::report::VerifySummary {
            entries: f.entries,
            checkpoints: f.checkpoints,
            anchored: f.anchored,
            unanchored: f.entries - f.anchored,
            root: hex::encode(f.root),
        }),
        latest_checkpoint: note.map(str::to_owned),
        how,
        changed,
    };
    let mut changed = following.as_ref().and_then(|f| f.changed.clone());
    if let Some(f) = following
        .as_mut()
        .filter(|f| f.full_instant.elapsed() < full_every)
    {
        let before = f.follower.figures().entries;
        let scan = &mut f.scan;
        match f.follower.advance(&durable::OsFs, &mut |e| scan.push(e)) {
            Ok(figures) => {
                let how = governance::report::VerifiedHow::Incremental {
                    full_at: f.full_at,
                    new_entries: figures.entries - before,
                };
                let v = view(&figures, f.follower.latest_note(), how, changed);
                return Ok((f.scan.clone(), v));
            }
            Err(ledger::FollowError::Changed(why)) => {
                changed = Some(format!("seen {}: {why}", Timestamp::now()));
            }
            // The full verification below says what is wrong, as
            // `ledger verify` says it.
            Err(_) => {}
        }
    }
    *following = None;
    let mut scan = LedgerScan::default();
    let full_at = Timestamp::now();
    let full_instant = std::time::Instant::now();
    match ledger::Follower::start(&durable::OsFs, &dir, &key, &mut |e| scan.push(e)) {
        Ok((follower, figures)) => {
            let v = view(
                &figures,
                follower.as_ref().and_then(|f| f.latest_note()),
                governance::report::VerifiedHow::Full,
                changed.clone(),
            );
            let v = match (&follower, v.latest_checkpoint.is_some()) {
                // The chain cannot be followed from the pinned key: the
                // note as the file holds it.
                (None, _) | (_, false) => LedgerView {
                    latest_checkpoint: ledger::latest_note(&durable::OsFs, &dir)?,
                    ..v
                },
                _ => v,
            };
            if let Some(follower) = follower {
                *following = Some(Following {
                    follower,
                    scan: scan.clone(),
                    full_at,
                    full_instant,
                    changed,
                });
            }
            Ok((scan, v))
        }
        // The report's own gathering, which says why.
        Err(_) => {
            let mut scan = LedgerScan::default();
            crate::store::read_ledger_from(config, 0, &mut |e| scan.push(&e))?;
            let mut v = super::ledger::verified_view(config)?;
            v.changed = changed;
            Ok((scan, v))
        }
    }
}

#[async_trait::async_trait]
impl gateway::EvidenceSource for DashboardEvidence {
    async fn gather(&self) -> Result<Evidence, String> {
        let (config, store) = (self.config.clone(), self.store.clone());
        let following = self.following.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut following = following.lock().unwrap_or_else(|e| e.into_inner());
            let mut gathered = gather_with(
                &config,
                &*store,
                Rights::FromLedger,
                Vec::new(),
                &mut |config| followed_ledger(config, &mut following, FULL_EVERY),
            );
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ed25519_dalek::SigningKey;
    use ledger::{EntryKind, Ledger, LedgerOptions, VerifierKey};

    use super::*;

    const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42; 32])
    }

    /// A configuration naming a file ledger in `dir`/ledger.
    fn config(dir: &Path) -> LoadedConfig {
        let path = dir.join("warden.toml");
        std::fs::write(
            &path,
            format!(
                "[redcap]\nurl = \"https://redcap.example.org/api/\"\ntime_zone = \"UTC\"\n\n[ledger]\ndir = \"ledger\"\nverifier_key = \"{}\"\n",
                VerifierKey::from_signing_key(ORIGIN, &key())
            ),
        )
        .unwrap();
        warden_config::load(&path).unwrap()
    }

    fn options() -> LedgerOptions {
        LedgerOptions {
            segment_max_bytes: 8192,
            checkpoint_interval: None,
            lock: false,
            ..LedgerOptions::default()
        }
    }

    /// Appends requests, responses, a denial and an alert, signing a
    /// checkpoint every 7 entries and at the end.
    fn append(dir: &Path, from: u64, n: u64) {
        let fs: Arc<dyn durable::FileSystem> = Arc::new(durable::OsFs);
        let ledger_dir = dir.join("ledger");
        let ledger = if from == 0 {
            Ledger::create(fs, &ledger_dir, ORIGIN, key(), options()).unwrap()
        } else {
            Ledger::open(fs, &ledger_dir, key(), options()).unwrap()
        };
        for i in from..from + n {
            let kind = match i % 4 {
                0 => EntryKind::Alert {
                    code: "test".into(),
                    message: format!("alert {i}"),
                },
                _ => EntryKind::Admin {
                    operator: "ana".into(),
                    action: "apply".into(),
                    target: format!("account-{i}"),
                    reason: "ticket 7".into(),
                },
            };
            ledger.append(kind).unwrap();
            if i % 7 == 6 {
                ledger.checkpoint().unwrap();
            }
        }
        ledger.close().unwrap();
    }

    fn json<T: serde::Serialize>(t: &T) -> String {
        serde_json::to_string(t).unwrap()
    }

    fn full(config: &LoadedConfig) -> (LedgerScan, LedgerView) {
        let mut scan = LedgerScan::default();
        crate::store::read_ledger_from(config, 0, &mut |e| scan.push(&e)).unwrap();
        (scan, super::super::ledger::verified_view(config).unwrap())
    }

    #[test]
    fn the_followed_ledger_equals_a_full_gathering() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path());
        append(tmp.path(), 0, 50);
        let mut following = None;
        let hour = Duration::from_secs(3600);
        let (scan, view) = followed_ledger(&config, &mut following, hour).unwrap();
        assert!(following.is_some());
        assert!(matches!(view.how, governance::report::VerifiedHow::Full));
        let (fscan, fview) = full(&config);
        assert_eq!(json(&scan), json(&fscan));
        assert_eq!(json(&view.verified), json(&fview.verified));
        for n in [1, 30, 0, 100] {
            let before = scan_entries(&config);
            append(tmp.path(), before, n);
            let (scan, view) = followed_ledger(&config, &mut following, hour).unwrap();
            let added = scan_entries(&config) - before;
            assert!(added >= n);
            assert!(
                matches!(view.how, governance::report::VerifiedHow::Incremental { new_entries, .. } if new_entries == added),
                "{:?}",
                view.how
            );
            let (fscan, fview) = full(&config);
            assert_eq!(json(&scan), json(&fscan), "after {n} more");
            let facts = |s: &LedgerScan| {
                let used: std::collections::BTreeMap<_, _> = s.facts.used.iter().collect();
                format!(
                    "{:?} {:?} {:?} {used:?}",
                    s.facts.started, s.facts.accounts, s.facts.next
                )
            };
            assert_eq!(facts(&scan), facts(&fscan), "after {n} more");
            assert_eq!(json(&view.verified), json(&fview.verified));
            assert_eq!(view.latest_checkpoint, fview.latest_checkpoint);
            assert!(view.changed.is_none());
        }
    }

    fn scan_entries(config: &LoadedConfig) -> u64 {
        full(config).0.entries
    }

    #[test]
    fn a_tampered_old_entry_is_caught_by_the_periodic_full_verification() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path());
        append(tmp.path(), 0, 40);
        let mut following = None;
        followed_ledger(&config, &mut following, Duration::from_secs(3600)).unwrap();
        // An old entry changed in place, its length kept.
        let first = tmp
            .path()
            .join("ledger")
            .join(ledger_first_segment(tmp.path()));
        let text = std::fs::read_to_string(&first).unwrap();
        std::fs::write(&first, text.replacen("account-1\"", "account-9\"", 1)).unwrap();
        // A full verification is due (FULL_EVERY elapsed): it fails.
        let (_, view) = followed_ledger(&config, &mut following, Duration::ZERO).unwrap();
        let err = view.verified.unwrap_err();
        assert!(err.contains("was changed"), "{err}");
        assert!(following.is_none());
    }

    #[test]
    fn a_truncated_ledger_is_a_finding_and_verified_in_full() {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path());
        append(tmp.path(), 0, 40);
        let mut following = None;
        let hour = Duration::from_secs(3600);
        followed_ledger(&config, &mut following, hour).unwrap();
        // The newest segment replaced by another file with the same bytes.
        let seg = tmp
            .path()
            .join("ledger")
            .join(ledger_last_segment(tmp.path()));
        let other = seg.with_extension("new");
        std::fs::copy(&seg, &other).unwrap();
        std::fs::rename(&other, &seg).unwrap();
        let (_, view) = followed_ledger(&config, &mut following, hour).unwrap();
        assert!(matches!(view.how, governance::report::VerifiedHow::Full));
        assert!(view.verified.is_ok(), "{:?}", view.verified);
        let why = view.changed.clone().expect("the change is named");
        assert!(why.contains("replaced"), "{why}");
        // It stays on show.
        let (_, view) = followed_ledger(&config, &mut following, hour).unwrap();
        assert_eq!(view.changed.as_deref(), Some(why.as_str()));
        let e = Evidence {
            generated_at: Timestamp::now(),
            config_path: String::new(),
            redcap_time_zone: "UTC".into(),
            tokens: Vec::new(),
            rights: RightsView::FromLedger,
            reauth: Vec::new(),
            ledger: view,
            scan: LedgerScan::default(),
            keys: Vec::new(),
            live: None,
        };
        assert!(e.has_critical());
    }

    fn segments(root: &Path) -> Vec<String> {
        let mut s: Vec<String> = std::fs::read_dir(root.join("ledger"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".jsonl"))
            .collect();
        s.sort();
        s
    }

    fn ledger_first_segment(root: &Path) -> String {
        segments(root).remove(0)
    }

    fn ledger_last_segment(root: &Path) -> String {
        segments(root).pop().unwrap()
    }
}
