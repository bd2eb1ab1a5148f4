//! `ledger export` (to S3 Object Lock), `ledger verify --from-export`, and
//! the progress bar of `ledger verify` on large file ledgers.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use durable::{FileSystem, OsFs};
use governance::audit;
use ledger::export::{ExportError, ExportTarget, S3Export};
use ledger::{EntryKind, VerifierKey, VerifyError, VerifyReport};
use serde_json::json;
use warden_config::{ExportSection, LedgerBackendKind, LoadedConfig};

use crate::Outcome;
use crate::args::Args;
use crate::store::{load_config, open_store};

/// Logs smaller than this verify too quickly for a progress bar.
const PROGRESS_FROM_BYTES: u64 = 32 << 20;

/// A one-line progress bar on stderr: bytes done of the total and MB/s,
/// redrawn at most ten times a second.
struct ProgressBar {
    total: u64,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl ProgressBar {
    fn draw(&self, done: u64) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now - t < Duration::from_millis(100)) && done < self.total {
            return;
        }
        *last = Some(now);
        let secs = (now - self.start).as_secs_f64().max(1e-3);
        let width = 30;
        let filled = ((done as f64 / self.total.max(1) as f64) * width as f64) as usize;
        let filled = filled.min(width);
        let _ = write!(
            std::io::stderr(),
            "\r[{}{}] {:.1} / {:.1} MB  {:.0} MB/s ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            done as f64 / 1e6,
            self.total as f64 / 1e6,
            done as f64 / 1e6 / secs
        );
    }

    fn clear(&self) {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// `verify_dir`, with a progress bar on stderr when stderr is a terminal,
/// `--json` is not given and the log is large.
pub fn verify_dir(dir: &Path, key: &VerifierKey, json: bool) -> Result<VerifyReport, VerifyError> {
    let total: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("seg-") && name.ends_with(".jsonl")
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    if json || !std::io::stderr().is_terminal() || total < PROGRESS_FROM_BYTES {
        return ledger::verify_dir(&OsFs, dir, key);
    }
    let bar = ProgressBar {
        total,
        start: Instant::now(),
        last: Mutex::new(None),
    };
    let result = ledger::verify_dir_with_progress(&OsFs, dir, key, &|done| bar.draw(done));
    bar.clear();
    result
}

/// The export target: `[ledger.export]`, with `--bucket`/`--prefix` over it.
fn target(
    config: &LoadedConfig,
    bucket: Option<&str>,
    prefix: Option<&str>,
) -> anyhow::Result<ExportTarget> {
    let section: Option<&ExportSection> = config
        .config
        .ledger
        .as_ref()
        .and_then(|l| l.export.as_ref());
    let Some(bucket) = bucket.or(section.map(|s| s.bucket.as_str())) else {
        bail!(
            "no export is configured: add a [ledger.export] section to {} (bucket, retention_days; see docs/ledger.md §10) or pass --bucket",
            config.path.display()
        );
    };
    Ok(ExportTarget {
        bucket: bucket.to_owned(),
        prefix: prefix
            .map(str::to_owned)
            .or(section.map(|s| s.prefix.clone()))
            .unwrap_or_default(),
        region: section.and_then(|s| s.region.clone()),
        endpoint_url: section.and_then(|s| s.endpoint_url.clone()),
        retention_days: section.map_or(1, |s| s.retention_days),
        interval_minutes: section.map_or(60, |s| s.interval_minutes),
    })
}

/// The file ledger's directory; the export ships file segments only.
fn file_ledger(config: &LoadedConfig) -> anyhow::Result<std::path::PathBuf> {
    let section = audit::ledger_section(config)?;
    let dir = config.resolve(&section.dir);
    if section.backend() != LedgerBackendKind::File {
        bail!(
            "`ledger export` ships the segments of a file ledger; this installation keeps its ledger in {} (back that database up with its own write-once tooling)",
            section.backend().as_str()
        );
    }
    Ok(dir)
}

/// `ledger export --reason R`: ships what the bucket does not hold yet and
/// records what it shipped as a ledger entry.
pub fn export(args: &Args, reason: &str) -> anyhow::Result<Outcome> {
    let operator = crate::operator::Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let dir = file_ledger(&config)?;
    let section = audit::ledger_section(&config)?;
    if section.export.is_none() {
        bail!(
            "no export is configured: add a [ledger.export] section to {} with bucket and retention_days (docs/ledger.md §10)",
            config.path.display()
        );
    }
    let target = target(&config, None, None)?;
    let key = section.verifier_key();
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let report = rt.block_on(async {
        // The ledger is opened first: if the export cannot be recorded,
        // nothing is shipped.
        let trail = crate::store::open_trail(&config, &*store).await?;
        let exporter = S3Export::connect(target.clone()).await?;
        let report = exporter.export(&OsFs, &dir, &key).await?;
        if report.shipped_anything() {
            trail
                .record(EntryKind::Admin {
                    operator: operator.to_string(),
                    action: "ledger.export".into(),
                    target: report.summary(&target),
                    reason: reason.clone(),
                })
                .await?;
        }
        trail.close().await?;
        anyhow::Ok(report)
    })?;
    if args.json {
        println!(
            "{}",
            json!({
                "target": target.url(),
                "segments": report.segments.iter().map(|s| json!({"key": s.key, "bytes": s.bytes, "sha256": s.sha256, "retain_until": s.retain_until})).collect::<Vec<_>>(),
                "checkpoints": report.checkpoints.as_ref().map(|s| json!({"key": s.key, "bytes": s.bytes, "sha256": s.sha256, "retain_until": s.retain_until})),
                "already_exported_segments": report.already,
                "exported_entries": report.exported_entries,
                "checkpoint_size": report.checkpoint_size,
                "local_only_entries": report.local_only,
                "held_back_checkpoints": report.held_back,
            })
        );
        return Ok(Outcome::Clean);
    }
    if !report.shipped_anything() {
        println!(
            "nothing new to export to {}: {} sealed segment(s) already there; the latest checkpoint ships again after {} minute(s) or with the next sealed segment",
            target.url(),
            report.already,
            target.interval_minutes
        );
    } else {
        if let Some(r) = &report.entries {
            println!(
                "exported {} segment(s), entries {}-{}, to {} (COMPLIANCE lock until {})",
                report.segments.len(),
                r.start,
                r.end.saturating_sub(1),
                target.url(),
                report.segments[0].retain_until
            );
        }
        if let Some(cp) = &report.checkpoints {
            println!(
                "exported the checkpoints up to tree size {} as {}",
                report.checkpoint_size.unwrap_or(0),
                cp.key
            );
        }
        println!("recorded in the ledger as an admin entry (ledger.export) by {operator}");
    }
    println!(
        "{} entries exported in all; {} in the active segment stay local until it is sealed",
        report.exported_entries, report.local_only
    );
    if report.held_back > 0 {
        println!(
            "{} checkpoint(s) after a signing-key rotation in the active segment are held back until it is sealed",
            report.held_back
        );
    }
    Ok(Outcome::Clean)
}

/// `ledger verify --from-export`: downloads what was exported and checks
/// it with the pinned key (or `--key`), then against the local ledger.
pub fn verify_from_export(
    args: &Args,
    key: Option<&str>,
    bucket: Option<&str>,
    prefix: Option<&str>,
) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let (key, key_source) = match key {
        Some(k) => (
            VerifierKey::parse(k).context("--key is not a verifier key")?,
            "--key".to_string(),
        ),
        None => (
            config
                .config
                .ledger
                .as_ref()
                .context(
                    "warden.toml has no [ledger] section with a pinned verifier key; pass --key",
                )?
                .verifier_key(),
            format!("pinned in {}", config.path.display()),
        ),
    };
    let target = target(&config, bucket, prefix)?;
    let local_dir = file_ledger(&config).ok().filter(|d| d.exists());
    let local = local_dir.as_deref().map(|d| (&OsFs as &dyn FileSystem, d));
    let answer = super::runtime()?.block_on(async {
        let exporter = S3Export::connect(target.clone()).await?;
        exporter.verify(&key, local).await
    });
    let report = match answer {
        Ok(report) => report,
        Err(e @ (ExportError::Verify(_) | ExportError::Layout { .. })) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": false, "export": target.url(), "key": key.to_string(), "failure": e.to_string()})
                );
            } else {
                println!("export {}: FAILED: {e}", target.url());
                println!("verified with key {key} ({key_source})");
            }
            return Ok(Outcome::Findings);
        }
        Err(e) => return Err(e.into()),
    };
    let ok = report.clean();
    if args.json {
        println!(
            "{}",
            json!({
                "ok": ok, "export": target.url(), "key": key.to_string(),
                "segments": report.segments, "entries": report.entries, "root": hex::encode(report.root),
                "checkpoints": report.checkpoints, "checkpoints_beyond_export": report.beyond,
                "anchored": report.anchored,
                "unlocked": report.unlocked.iter().map(|(k, why)| json!({"key": k, "found": why})).collect::<Vec<_>>(),
                "local": report.local.as_ref().map(|l| json!({"entries": l.entries, "not_exported": l.not_exported, "mismatch": l.mismatch})),
            })
        );
    } else {
        println!(
            "export {}: {} entries in {} segment(s), root {}",
            target.url(),
            report.entries,
            report.segments,
            hex::encode(report.root)
        );
        println!(
            "{} checkpoint(s) verified with key {key} ({key_source}); {} sign(s) more entries than were exported",
            report.checkpoints, report.beyond
        );
        for (k, why) in &report.unlocked {
            println!("FAILED: {k} is not locked in COMPLIANCE mode ({why})");
        }
        match &report.local {
            Some(l) => {
                if let Some(m) = &l.mismatch {
                    println!("FAILED: the local ledger does not match the export: {m}");
                }
                println!(
                    "local ledger {}: {} entries, {} not yet exported",
                    local_dir.as_deref().unwrap_or(Path::new("?")).display(),
                    l.entries,
                    l.not_exported
                );
            }
            None => println!("no local file ledger to compare with"),
        }
    }
    Ok(if ok {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
