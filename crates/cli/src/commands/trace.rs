//! `trace RECORD`: the chain client → ledger entries naming the record
//! (each proved against the latest signed checkpoint) → REDCap's log rows
//! (the logic is `governance::trace`). The ledger is read once, as stored,
//! without the writer's lock; REDCap's log through the study's log
//! reader, every row through the redactor.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, bail};
use durable::OsFs;
use governance::reconcile::{self, LogWindow};
use governance::redcap::client::{LogEntry, LogQuery};
use governance::redcap_log::{FingerprintMask, local_minute};
use governance::trace::{Trace, Tracer};
use jiff::{SignedDuration, Timestamp};
use ledger::Checkpoint;
use secrets::FingerprintKey;
use serde_json::json;
use warden_config::{LoadedConfig, StudySection};

use crate::Outcome;
use crate::args::Args;
use crate::store::{LedgerSource, load_config, open_store};

use super::rights::Paced;

pub fn run(
    args: &Args,
    record: &str,
    study: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    if record.trim().is_empty() {
        bail!("the record id is empty; give the record's name as REDCap shows it");
    }
    let since = since
        .map(|s| super::reconcile::parse_time(s).context("--since"))
        .transpose()?;
    let study = study_of(&config, study)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let key = rt
        .block_on(FingerprintKey::load(&*store))
        .context("reading the fingerprint key (identifying record ids are kept as its HMACs)")?;
    let hmac = key.hmac_hex(record.as_bytes());
    let c = &config.config;
    let accounts: HashSet<String> = c
        .account
        .iter()
        .filter(|a| a.study == study.name)
        .map(|a| a.name.clone())
        .collect();
    let usernames: HashMap<String, String> = c
        .account
        .iter()
        .filter(|a| a.study == study.name)
        .map(|a| (a.name.clone(), a.username.to_lowercase()))
        .collect();

    let checkpoint = latest_checkpoint(&config)?;
    let mut tracer = Tracer::new(record, &hmac, accounts, since, checkpoint);
    let mut failed = None;
    read_lines(&config, &mut |seq, line| match tracer.push(seq, line) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let mut trace = tracer.finish()?;

    let log_read = study.log_reader.is_some();
    if log_read {
        let rows = rt.block_on(redcap_rows(
            &config, &*store, study, record, since, &trace, &key,
        ))?;
        let tolerance =
            SignedDuration::try_from(c.reconcile.tolerance).unwrap_or(SignedDuration::ZERO);
        trace
            .attach_rows(
                &rows,
                c.redcap.time_zone(),
                tolerance,
                &usernames,
                &governance::redcap_log::api_path(c.redcap.url()),
            )
            .with_context(|| format!("reading the REDCap log of study `{}`", study.name))?;
    }
    if trace.calls.is_empty() && trace.unexplained.is_empty() {
        let since = since.map_or(String::new(), |s| format!(" since {s}"));
        let log = if log_read {
            " and REDCap's log has no row naming it"
        } else {
            ""
        };
        bail!(
            "record `{record}` of study `{}` is named by no call through the gateway in the ledger ({} entries read{since}){log}; check the record's name (as REDCap shows it) and --study",
            study.name,
            trace.entries
        );
    }
    print(args, &study.name, log_read, &trace);
    Ok(if trace.findings() > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// The study named, or the only one.
fn study_of<'a>(config: &'a LoadedConfig, name: Option<&str>) -> anyhow::Result<&'a StudySection> {
    let studies = &config.config.study;
    match name {
        Some(n) => studies.iter().find(|s| s.name == n).with_context(|| {
            format!(
                "no [[study]] named `{n}` in {} (studies: {})",
                config.path.display(),
                names(studies)
            )
        }),
        None => match studies.as_slice() {
            [only] => Ok(only),
            [] => bail!(
                "{} has no [[study]], so there is no record to trace",
                config.path.display()
            ),
            _ => bail!(
                "{} has several studies ({}); say which with --study (record ids are per project)",
                config.path.display(),
                names(studies)
            ),
        },
    }
}

fn names(studies: &[StudySection]) -> String {
    studies
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The newest checkpoint, verified with the key pinned in warden.toml
/// (never one found beside the ledger); `None` when nothing is signed yet.
pub(super) fn latest_checkpoint(config: &LoadedConfig) -> anyhow::Result<Option<Checkpoint>> {
    let section = governance::audit::ledger_section(config)?;
    let note = match LedgerSource::open(config)? {
        LedgerSource::File(dir) => ledger::latest_note(&OsFs, &dir)
            .with_context(|| format!("reading the checkpoints of {}", dir.display()))?,
        LedgerSource::Postgres(mut r) => r
            .latest_note()
            .context("reading the PostgreSQL ledger's checkpoints")?,
    };
    note.map(|n| {
        Checkpoint::verify(&n, &section.verifier_key()).context(
            "the latest checkpoint does not verify with the verifier key pinned in warden.toml; run `ledger verify`",
        )
    })
    .transpose()
}

/// Hands `visit` every line of the configured ledger, as stored.
pub(super) fn read_lines(
    config: &LoadedConfig,
    visit: &mut dyn FnMut(u64, &[u8]) -> bool,
) -> anyhow::Result<()> {
    match LedgerSource::open(config)? {
        LedgerSource::File(dir) => ledger::read_lines(&OsFs, &dir, visit)
            .with_context(|| format!("reading the ledger in {}", dir.display())),
        LedgerSource::Postgres(mut r) => {
            r.read_lines(visit).context("reading the PostgreSQL ledger")
        }
    }
}

/// REDCap's rows for the trace, read through the study's log reader and
/// redacted: every row naming the record (by anyone: a write that did not
/// come through the gateway is among them), and every row around the
/// calls — a stretch of the log per group of calls, each call widened by
/// the tolerance and REDCap's open minute, so a record named by calls
/// spread over a year costs a request per stretch, not per day.
async fn redcap_rows(
    config: &LoadedConfig,
    store: &dyn secrets::SecretStore,
    study: &StudySection,
    record: &str,
    since: Option<Timestamp>,
    trace: &Trace,
    key: &FingerprintKey,
) -> anyhow::Result<Vec<LogEntry>> {
    let limiter = Paced::for_config(&config.config);
    let (reader, project) =
        super::reconcile::log_reader_project(config, store, &limiter, study).await?;
    let c = &config.config;
    let tz = c.redcap.time_zone();
    let mask = FingerprintMask(key);
    let context = || {
        format!(
            "Export Logging of study `{}` with the token of log reader `{reader}`",
            study.name
        )
    };
    let mut rows = project
        .export_logging(
            &LogQuery {
                record: Some(record.to_string()),
                begin_time: since.map(|s| local_minute(s, tz)),
                ..LogQuery::default()
            },
            &mask,
        )
        .await
        .with_context(context)?;
    let margin = SignedDuration::try_from(c.reconcile.tolerance).unwrap_or(SignedDuration::ZERO)
        + SignedDuration::from_secs(60);
    // pull_log widens each stretch by an hour on each side: stretches
    // closer than that are read as one, so no row is read twice.
    let gap = SignedDuration::from_hours(2) + margin * 2;
    let mut stretches: Vec<LogWindow> = Vec::new();
    for call in &trace.calls {
        let at = call.request.ts;
        let from = at.checked_sub(margin).unwrap_or(at);
        let to = at.checked_add(margin).unwrap_or(at);
        match stretches.last_mut() {
            Some(last) if from <= last.to.checked_add(gap).unwrap_or(last.to) => {
                last.to = last.to.max(to)
            }
            _ => stretches.push(LogWindow { from, to }),
        }
    }
    for window in stretches {
        let got = reconcile::pull_log(&project, window, tz, &mask, &mut |_, _| {})
            .await
            .with_context(context)?;
        // The record's own rows came with the first request (identical rows
        // — page views of one minute — are distinct events, so rows are
        // never merged by their text).
        rows.extend(got.into_iter().filter(|r| r.record() != record));
    }
    Ok(rows)
}

fn print(args: &Args, study: &str, log_read: bool, trace: &Trace) {
    if args.json {
        let mut v = serde_json::to_value(trace).unwrap_or_default();
        v["study"] = json!(study);
        v["redcap_log_read"] = json!(log_read);
        v["entries_naming_record"] = json!(trace.named());
        v["findings"] = json!(trace.findings());
        println!("{v}");
        return;
    }
    println!(
        "record `{}` of study `{study}`: {} call(s) through the gateway, {} ledger entr(ies) naming it ({} entries read)",
        trace.record,
        trace.calls.len(),
        trace.named(),
        trace.entries
    );
    match &trace.checkpoint {
        Some((size, root)) => println!(
            "latest signed checkpoint: tree of {size} entries, root {root}; each proof below was verified against it"
        ),
        None => println!(
            "no signed checkpoint yet: nothing can be proved (a writer signs within a second; run trace again)"
        ),
    }
    let size = trace.checkpoint.as_ref().map_or(0, |c| c.0);
    for call in &trace.calls {
        let what = match (&call.content, &call.action) {
            (Some(c), Some(a)) => format!("{c} {a}"),
            (Some(c), None) => c.clone(),
            _ => "(no content)".into(),
        };
        let site = call
            .site
            .as_ref()
            .map_or(String::new(), |s| format!(", site {s}"));
        let answer = call.status.map_or("no answer recorded".to_string(), |s| {
            format!("REDCap answered {s}")
        });
        let reason = call
            .reason
            .as_ref()
            .map_or(String::new(), |r| format!(", reason {r:?}"));
        println!();
        println!(
            "{}  client `{}` -> account `{}`{site}: {what}{reason}; {answer} (request {})",
            call.request.ts, call.client, call.account, call.request_id
        );
        for (label, leaf) in std::iter::once(("request ", &call.request))
            .chain(call.response.iter().map(|r| ("response", r)))
        {
            let proof = match (&leaf.proof, leaf.names_record) {
                (Some(p), _) => format!(
                    "names the record; inclusion proof verified ({} hash(es), leaf {})",
                    p.path.len(),
                    &p.leaf_hash[..16]
                ),
                (None, true) if leaf.seq >= size => format!(
                    "names the record; after the latest checkpoint (size {size}), not signed yet — run trace again"
                ),
                (None, true) => "names the record".to_string(),
                (None, false) => "does not name the record".to_string(),
            };
            println!("    ledger {label} entry {:>7}: {proof}", leaf.seq);
        }
        if !log_read {
            continue;
        }
        if call.redcap_rows.is_empty() {
            println!("    REDCap's log: no row of the account for this call within the tolerance");
        }
        for row in &call.redcap_rows {
            println!("    REDCap's log: {row}");
        }
    }
    if !log_read {
        println!();
        println!(
            "REDCap's log was not read: study `{study}` has no log_reader (docs/reconcile.md)"
        );
        return;
    }
    if !trace.unexplained.is_empty() {
        println!();
        println!(
            "REDCap rows naming record `{}` that no call through the gateway explains:",
            trace.record
        );
        for u in &trace.unexplained {
            let who = match &u.account {
                Some(a) => {
                    format!("governed account `{a}`: its token was used outside the gateway")
                }
                None => format!(
                    "`{}` is not a governed account (a person, or REDCap itself)",
                    u.username
                ),
            };
            println!("    {}  <- {who}", u.row);
        }
    }
}
