//! `reconcile`: REDCap's Export Logging, read through each study's log
//! reader, paired with the ledger over a window (the logic is
//! `governance::reconcile`). Every row passes the redactor inside the
//! REDCap client before anything here sees it.

use std::io::Write;

use anyhow::{Context, bail};
use durable::OsFs;
use governance::reconcile::{
    self, Account, LedgerIndex, LogWindow, Report, Role, RotationJournal, Setup,
};
use governance::redcap::client::{Client, LogEntry};
use governance::redcap_log::{self, FingerprintMask};
use jiff::Timestamp;
use ledger::{Entry, EntryKind};
use secrets::{FingerprintKey, Label, SecretStore, Selector};
use serde_json::{Value, json};
use warden_config::{LoadedConfig, StudySection};

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::LedgerSource;
use crate::store::{load_config, open_store};

use super::rights::Paced;

/// A study with what reconciling it needs.
struct Planned<'a> {
    study: &'a StudySection,
    setup: Setup,
}

struct StudyResult {
    study: String,
    report: Report,
}

pub fn run(
    args: &Args,
    since: &str,
    until: Option<&str>,
    study: Option<&str>,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let since = parse_time(since).context("--since")?;
    let until = match until {
        Some(u) => parse_time(u).context("--until")?,
        None => Timestamp::now(),
    };
    if until <= since {
        bail!(
            "--until ({until}) is not after --since ({since}); give a window that ends after it starts"
        );
    }
    let studies = studies(&config, study)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let results = rt.block_on(async {
        let results = reconcile_window(&config, &*store, &studies, since, until, args.json).await?;
        record(
            &config,
            &*store,
            &results,
            since,
            until,
            &operator.to_string(),
            false,
        )
        .await?;
        anyhow::Ok(results)
    })?;
    print(args, since, until, &results);
    Ok(if results.iter().all(|r| r.report.findings.is_empty()) {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// Reconciles `studies` over `since`..`until`: REDCap's log through each
/// log reader, then one pass over the ledger's window.
async fn reconcile_window(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    studies: &[&StudySection],
    since: Timestamp,
    until: Timestamp,
    quiet: bool,
) -> anyhow::Result<Vec<StudyResult>> {
    let planned: Vec<Planned<'_>> = studies
        .iter()
        .map(|s| Planned {
            setup: setup(config, s, since, until),
            study: s,
        })
        .collect();
    let key = FingerprintKey::load(store)
        .await
        .context("reading the fingerprint key (REDCap's log rows name tokens by fingerprint)")?;
    let limiter = Paced::for_config(&config.config);
    let mut rows = Vec::new();
    for p in &planned {
        let window = LogWindow {
            from: since.checked_sub(p.setup.margin()).unwrap_or(since),
            to: until.checked_add(p.setup.margin()).unwrap_or(until),
        };
        rows.push(read_log(config, store, &limiter, p.study, window, &key, quiet).await?);
    }

    // One pass over the ledger's window feeds every study's index (on a
    // thread of its own: it reads files or a database synchronously).
    let indexes: Vec<LedgerIndex> = planned.iter().map(|p| LedgerIndex::new(&p.setup)).collect();
    let margin = planned
        .first()
        .map_or(jiff::SignedDuration::ZERO, |p| p.setup.margin());
    let from = since.checked_sub(margin).unwrap_or(since);
    let to = until.checked_add(margin).unwrap_or(until);
    let owned = config.clone();
    let indexes = tokio::task::spawn_blocking(move || {
        let mut indexes = indexes;
        read_ledger(&owned, from, &mut |e| {
            if e.ts > to {
                return false;
            }
            for index in &mut indexes {
                index.push(&e);
            }
            true
        })
        .map(|()| indexes)
    })
    .await
    .context("the ledger reader stopped")??;

    // A regeneration inside one of this installation's recorded rotations
    // is that rotation's step, not a finding.
    let journal = governance::rotation::Journal::on_os(config.data_dir().join("rotation"));
    let regenerations = journal.regenerations().with_context(|| {
        format!(
            "reading the rotation journals in {}",
            journal.dir().display()
        )
    })?;
    let explain = RotationJournal::new(regenerations, config.config.reconcile.tolerance);
    let mut results = Vec::new();
    for ((p, rows), mut index) in planned.iter().zip(&rows).zip(indexes) {
        let report = reconcile::reconcile(&p.setup, rows, &mut index, &explain)
            .with_context(|| format!("reading the log of study `{}`", p.study.name))?;
        results.push(StudyResult {
            study: p.study.name.clone(),
            report,
        });
    }
    Ok(results)
}

/// One `reconcile` entry per study; with `alert`, an `alert` entry too for
/// each study with findings (the scheduled run inside `serve`).
async fn record(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    results: &[StudyResult],
    since: Timestamp,
    until: Timestamp,
    operator: &str,
    alert: bool,
) -> anyhow::Result<()> {
    let trail = crate::store::open_trail(config, store).await?;
    for r in results {
        trail
            .record(EntryKind::Reconcile {
                window_start: since.to_string(),
                window_end: until.to_string(),
                findings: r.report.findings.len() as u64,
                summary: format!("{} (operator {operator})", r.report.summary(&r.study)),
            })
            .await?;
        if alert && !r.report.findings.is_empty() {
            trail
                .record(EntryKind::Alert {
                    code: ALERT_FINDINGS.into(),
                    message: format!(
                        "scheduled reconcile of study `{}` found {} discrepancy(ies) between REDCap's log and the ledger; see them with: redcap-warden reconcile --study {} --since {since} --until {until}",
                        r.study,
                        r.report.findings.len(),
                        r.study
                    ),
                })
                .await?;
        }
    }
    Ok(trail.close().await?)
}

/// The `alert` code of a scheduled run with findings.
pub const ALERT_FINDINGS: &str = "reconcile.findings";
/// The `alert` code of a scheduled run that could not be made.
pub const ALERT_FAILED: &str = "reconcile.failed";

/// Reconciles on a schedule inside `serve` (`[reconcile] every_minutes`):
/// each run covers the time since the previous one's end, up to a margin
/// before now (so a request and its REDCap rows are both in), records a
/// `reconcile` entry per study and an `alert` when it finds anything; a
/// run that fails records an `alert` and its window is tried again next
/// time. The first run resumes where the ledger's last `reconcile` entry
/// of each study ended ([`resume_point`]), so a restart leaves no span
/// unreconciled; without one it covers one interval before the start.
/// `None` when the schedule is off or no study has a log reader.
pub fn spawn_schedule(
    config: LoadedConfig,
    store: std::sync::Arc<dyn SecretStore>,
    operator: String,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = config.config.reconcile.every?;
    if !config.config.study.iter().any(|s| s.log_reader.is_some()) {
        return None;
    }
    let every_signed = jiff::SignedDuration::try_from(every).ok()?;
    Some(tokio::spawn(async move {
        let studies: Vec<&StudySection> = config
            .config
            .study
            .iter()
            .filter(|s| s.log_reader.is_some())
            .collect();
        let margin = jiff::SignedDuration::try_from(config.config.reconcile.tolerance)
            .unwrap_or(jiff::SignedDuration::ZERO)
            + jiff::SignedDuration::from_secs(60);
        let start = Timestamp::now();
        let fresh = start.checked_sub(every_signed + margin).unwrap_or(start);
        let names: Vec<String> = studies.iter().map(|s| s.name.clone()).collect();
        let reading = config.clone();
        let mut since = match tokio::task::spawn_blocking(move || resume_point(&reading, &names))
            .await
        {
            Ok(Ok(Some(last))) if last < fresh => {
                eprintln!(
                    "redcap-warden: scheduled reconcile resumes from {last}, where the ledger's last reconcile ended"
                );
                last
            }
            Ok(Ok(_)) => fresh,
            Ok(Err(e)) => {
                eprintln!(
                    "redcap-warden: the ledger's last reconcile could not be read ({e:#}); the schedule starts one interval back"
                );
                fresh
            }
            Err(_) => fresh,
        };
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            let until = Timestamp::now().checked_sub(margin).unwrap_or(since);
            if until <= since {
                continue;
            }
            let run = async {
                let results =
                    reconcile_window(&config, &*store, &studies, since, until, true).await?;
                record(&config, &*store, &results, since, until, &operator, true).await
            };
            match run.await {
                Ok(()) => since = until,
                Err(e) => {
                    eprintln!("redcap-warden: scheduled reconcile failed: {e:#}");
                    let failed = async {
                        let trail = crate::store::open_trail(&config, &*store).await?;
                        trail
                            .record(EntryKind::Alert {
                                code: ALERT_FAILED.into(),
                                message: format!(
                                    "scheduled reconcile of {since} to {until} failed and will be tried again: {e:#}"
                                ),
                            })
                            .await?;
                        anyhow::Ok(trail.close().await?)
                    };
                    if let Err(e) = failed.await {
                        eprintln!(
                            "redcap-warden: the reconcile alert could not be recorded: {e:#}"
                        );
                    }
                }
            }
        }
    }))
}

/// Where a scheduled series resumes: the earliest, over `studies`, of the
/// end of each one's last `reconcile` entry in the ledger (one pass);
/// `None` when none has been reconciled. A study never reconciled is
/// covered by the first run's start (one interval back) or earlier.
fn resume_point(config: &LoadedConfig, studies: &[String]) -> anyhow::Result<Option<Timestamp>> {
    let mut last: std::collections::HashMap<String, Timestamp> = std::collections::HashMap::new();
    crate::store::read_ledger_from(config, 0, &mut |e| {
        if let EntryKind::Reconcile {
            window_end,
            summary,
            ..
        } = &e.kind
            && let Some(study) = reconcile::study_of_summary(summary)
            && let Ok(end) = window_end.parse::<Timestamp>()
            && studies.iter().any(|s| s == study)
        {
            let at = last.entry(study.to_string()).or_insert(end);
            *at = (*at).max(end);
        }
    })?;
    Ok(last.into_values().min())
}

/// `--since` / `--until`: RFC 3339, or a UTC `YYYY-MM-DD[ HH:MM[:SS]]`.
pub(super) fn parse_time(raw: &str) -> anyhow::Result<Timestamp> {
    let s = raw.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let utc = jiff::tz::TimeZone::UTC;
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = jiff::civil::DateTime::strptime(format, s) {
            return Ok(utc.to_timestamp(dt)?);
        }
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Ok(utc.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))?);
    }
    bail!(
        "`{raw}` is not a time; write RFC 3339 (2026-12-01T08:00:00Z), or UTC as YYYY-MM-DD HH:MM or YYYY-MM-DD"
    )
}

/// The studies to reconcile: the one named, or every study with a log
/// reader.
fn studies<'a>(
    config: &'a LoadedConfig,
    only: Option<&str>,
) -> anyhow::Result<Vec<&'a StudySection>> {
    let c = &config.config;
    if let Some(name) = only {
        let Some(s) = c.study.iter().find(|s| s.name == name) else {
            bail!("no [[study]] named `{name}` in {}", config.path.display());
        };
        if s.log_reader.is_none() {
            bail!("{}", no_reader(&s.name));
        }
        return Ok(vec![s]);
    }
    let with: Vec<&StudySection> = c.study.iter().filter(|s| s.log_reader.is_some()).collect();
    if with.is_empty() {
        bail!(
            "no [[study]] in {} has a log_reader, so REDCap's log cannot be read; {}",
            config.path.display(),
            reader_fix()
        );
    }
    Ok(with)
}

fn no_reader(study: &str) -> String {
    format!(
        "study `{study}` has no log_reader, so its REDCap log cannot be read; {}",
        reader_fix()
    )
}

fn reader_fix() -> &'static str {
    "add log_reader = \"ACCOUNT\" to the [[study]] and an [[account]] (without a site) for a REDCap user with API Export, Logging and an export right on one instrument (profile \"log-reader\"; docs/reconcile.md)"
}

/// The accounts of `study` and the window, as the reconciliation sees them.
pub(super) fn setup(
    config: &LoadedConfig,
    study: &StudySection,
    since: Timestamp,
    until: Timestamp,
) -> Setup {
    let c = &config.config;
    let accounts = c
        .account
        .iter()
        .filter(|a| a.study == study.name)
        .map(|a| Account {
            name: a.name.clone(),
            username: a.username.clone(),
            role: if study.log_reader.as_deref() == Some(&a.name) {
                Role::LogReader
            } else if study.rights_manager.as_deref() == Some(&a.name) {
                Role::RightsManager
            } else {
                Role::Service
            },
        })
        .collect();
    Setup {
        accounts,
        time_zone: c.redcap.time_zone().clone(),
        tolerance: c.reconcile.tolerance,
        api_path: redcap_log::api_path(c.redcap.url()),
        since,
        until,
    }
}

/// The token of `study`'s log reader, as a client of its project paced by
/// `limiter`.
pub(super) async fn log_reader_project(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Paced,
    study: &StudySection,
) -> anyhow::Result<(String, governance::redcap::client::Project<Paced>)> {
    let c = &config.config;
    let Some(name) = &study.log_reader else {
        bail!("{}", no_reader(&study.name));
    };
    let reader = c
        .account
        .iter()
        .find(|a| &a.name == name)
        .context("the log reader is not an [[account]] (config check reports this)")?;
    let secret = store
        .get(&reader.secret, &Selector::Label(Label::Current))
        .await
        .with_context(|| {
            format!(
                "reading the token of log reader `{}` (secret {})",
                reader.name, reader.secret
            )
        })?;
    let token = governance::redcap::Token::parse(secret.value.expose()).with_context(|| {
        format!(
            "the secret {} of log reader `{}` is not a REDCap token",
            reader.secret, reader.name
        )
    })?;
    let project = Client::new(c.redcap.url())?
        .with_limiter(limiter.clone())
        .project(token);
    Ok((reader.name.clone(), project))
}

/// REDCap's log of `study` over `window`, redacted with fingerprints;
/// progress on stderr when it takes more than one day's request.
async fn read_log(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Paced,
    study: &StudySection,
    window: LogWindow,
    key: &FingerprintKey,
    quiet: bool,
) -> anyhow::Result<Vec<LogEntry>> {
    let (reader, project) = log_reader_project(config, store, limiter, study).await?;
    let tz = config.config.redcap.time_zone();
    let name = study.name.clone();
    let mut progress = |done: usize, total: usize| {
        if total > 1 && !quiet {
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\rreconcile: study `{name}`: REDCap's log, day {done} of {total}"
            );
            if done == total {
                let _ = writeln!(err);
            }
        }
    };
    reconcile::pull_log(&project, window, tz, &FingerprintMask(key), &mut progress)
        .await
        .with_context(|| {
            format!(
                "Export Logging of study `{}` with the token of log reader `{reader}`",
                study.name
            )
        })
}

/// Hands `visit` the ledger's entries from `from` on, in order, until it
/// answers `false`, from the configured backend: only the segments (or
/// rows) of the window are read, and the writer's lock is not taken (a
/// running gateway may hold it).
fn read_ledger(
    config: &LoadedConfig,
    from: Timestamp,
    visit: &mut dyn FnMut(Entry) -> bool,
) -> anyhow::Result<()> {
    match LedgerSource::open(config)? {
        LedgerSource::File(dir) => ledger::read_since(&OsFs, &dir, from, visit)
            .with_context(|| format!("reading the ledger in {}", dir.display())),
        LedgerSource::Postgres(mut r) => r
            .read_since(from, visit)
            .context("reading the PostgreSQL ledger"),
    }
}

fn print(args: &Args, since: Timestamp, until: Timestamp, results: &[StudyResult]) {
    if args.json {
        let studies: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({
                    "study": r.study,
                    "redcap_rows": r.report.redcap_rows,
                    "forwarded": r.report.forwarded,
                    "digest": reconcile::digest(&r.report.findings),
                    "findings": r.report.findings,
                })
            })
            .collect();
        println!(
            "{}",
            json!({"window_start": since.to_string(), "window_end": until.to_string(), "studies": studies})
        );
        return;
    }
    for r in results {
        let head = format!(
            "study `{}`, {since} to {until}: {} REDCap row(s), {} forwarded request(s)",
            r.study, r.report.redcap_rows, r.report.forwarded
        );
        if r.report.findings.is_empty() {
            println!("{head}: REDCap's log and the ledger agree");
            continue;
        }
        println!("{head}: {} finding(s)", r.report.findings.len());
        for f in &r.report.findings {
            println!(
                "  {:<8} {} {} ({}): {}: {}",
                f.severity.to_string().to_uppercase(),
                f.at,
                f.account.as_deref().unwrap_or("(no account)"),
                f.username,
                f.code,
                f.detail
            );
            for row in &f.rows {
                println!("           {row}");
            }
        }
    }
}

/// The API-only check of `rights check` (#11 item 6): the last
/// `[reconcile] api_only_lookback_days` of `study`'s REDCap log, read
/// through its log reader, searched for rows of the governed accounts that
/// are not API calls. Nothing when the study has no log reader.
pub(super) async fn api_only_findings(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Paced,
    study: &StudySection,
    only: Option<&str>,
) -> anyhow::Result<Vec<governance::rights::Finding>> {
    if study.log_reader.is_none() {
        return Ok(Vec::new());
    }
    let c = &config.config;
    let key = FingerprintKey::load(store)
        .await
        .context("reading the fingerprint key (REDCap's log rows name tokens by fingerprint)")?;
    let now = Timestamp::now();
    let window = LogWindow {
        from: now
            .checked_sub(c.reconcile.api_only_lookback)
            .unwrap_or(now),
        to: now,
    };
    let rows = read_log(config, store, limiter, study, window, &key, true).await?;
    let mut s = setup(config, study, window.from, window.to);
    s.accounts.retain(|a| only.is_none_or(|o| o == a.name));
    Ok(reconcile::api_only(&rows, &s.accounts, &s.api_path))
}

/// When each REDCap user (lower case) last appears in `study`'s REDCap log
/// from `from` until now — any row: an API call, a page view, an event —
/// read through the study's log reader (the later UTC reading of an
/// ambiguous local minute). `None` when the study has no log reader.
pub(super) async fn last_seen_in_log(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Paced,
    study: &StudySection,
    from: Timestamp,
) -> anyhow::Result<Option<std::collections::HashMap<String, Timestamp>>> {
    if study.log_reader.is_none() {
        return Ok(None);
    }
    let key = FingerprintKey::load(store)
        .await
        .context("reading the fingerprint key (REDCap's log rows name tokens by fingerprint)")?;
    let window = LogWindow {
        from,
        to: Timestamp::now(),
    };
    let rows = read_log(config, store, limiter, study, window, &key, true).await?;
    let tz = config.config.redcap.time_zone();
    let mut last = std::collections::HashMap::new();
    for row in &rows {
        let Some(at) = redcap_log::utc_candidates(row.timestamp(), tz)
            .ok()
            .and_then(|c| c.into_iter().max())
        else {
            continue;
        };
        last.entry(row.username().to_lowercase())
            .and_modify(|t: &mut Timestamp| *t = (*t).max(at))
            .or_insert(at);
    }
    Ok(Some(last))
}
