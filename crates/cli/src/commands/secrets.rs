//! `secrets put | list | history | check`. No command prints a value.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use secrets::{
    FINGERPRINT_KEY_SECRET, Fingerprint, FingerprintKey, Label, SecretName, SecretStore,
    SecretValue, VersionId, VersionMeta,
};
use serde_json::json;
use zeroize::Zeroizing;

use governance::audit::AuditTrail;
use ledger::EntryKind;

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// Names under `warden/` hold the tool's own keys and are written only by
/// the tool.
const RESERVED_PREFIX: &str = "warden/";

pub fn put(args: &Args, name: &str, reason: &str, label: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let name = SecretName::new(name).map_err(anyhow::Error::msg)?;
    if name.as_str().starts_with(RESERVED_PREFIX) {
        bail!(
            "`{name}` is reserved for redcap-warden's own keys (names under `{RESERVED_PREFIX}`); choose another name"
        );
    }
    let reason = super::reason(reason)?;
    let label: Label = label.parse().map_err(anyhow::Error::msg)?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    // Open the ledger before changing anything: a change that cannot be
    // recorded is not made.
    let trail = rt.block_on(AuditTrail::open(&config, &*store))?;
    let value = read_value(&name)?;
    let (version, fingerprint) = rt.block_on(store_version(
        &*store, &trail, &name, value, label, &reason, &operator,
    ))?;
    rt.block_on(trail.close())?;
    if args.json {
        println!(
            "{}",
            json!({"name": name, "version": version, "label": label, "fingerprint": fingerprint, "operator": operator})
        );
    } else {
        println!("Stored `{name}` version {version} as {label} ({fingerprint}) by {operator}.");
    }
    Ok(Outcome::Clean)
}

/// Writes a version (with its fingerprint and the operator's reason) and
/// its ledger entry. The caller opened `trail` before reading the value, so
/// nothing is stored that could not be recorded.
pub async fn store_version(
    store: &dyn SecretStore,
    trail: &AuditTrail,
    name: &SecretName,
    value: SecretValue,
    label: Label,
    reason: &str,
    operator: &Operator,
) -> anyhow::Result<(VersionId, Fingerprint)> {
    let key = FingerprintKey::load(store).await.with_context(|| {
        format!("reading the fingerprint key `{FINGERPRINT_KEY_SECRET}` (was the store set up with `redcap-warden init`?)")
    })?;
    let fingerprint = key.fingerprint(&value);
    let meta = VersionMeta {
        operator: operator.to_string(),
        at: jiff::Timestamp::now(),
        reason: reason.to_string(),
        fingerprint: Some(fingerprint.to_string()),
        rotation_id: None,
    };
    let version = store.put(name, value, meta, label).await?;
    trail
        .record(EntryKind::Secret {
            operator: operator.to_string(),
            name: name.to_string(),
            version: version.0.clone(),
            action: format!("put ({label})"),
            fingerprint: Some(fingerprint.to_string()),
            reason: reason.to_string(),
        })
        .await
        .with_context(|| {
            format!("`{name}` version {version} was stored but its ledger entry could not be written; record it by hand and check the ledger")
        })?;
    Ok((version, fingerprint))
}

/// The value from a no-echo prompt on a terminal, otherwise all of standard
/// input with one trailing line break removed (REDCap refuses a token with a
/// trailing newline, and `echo … |` adds one).
fn read_value(name: &SecretName) -> anyhow::Result<SecretValue> {
    let mut raw = Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        *raw = rpassword::prompt_password(format!("Value for `{name}` (not echoed): "))
            .context("reading the value from the terminal")?;
    } else {
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("reading the value from standard input")?;
        if raw.ends_with('\n') {
            raw.pop();
            if raw.ends_with('\r') {
                raw.pop();
            }
        }
    }
    if raw.is_empty() {
        bail!("the value is empty; type it at the prompt or pipe it on standard input");
    }
    if raw.chars().any(|c| c.is_control()) {
        bail!(
            "the value contains control characters (a line break inside it?); give the value on one line"
        );
    }
    Ok(SecretValue::new(raw.to_string()))
}

pub fn list(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let mut rows = Vec::new();
    for name in rt.block_on(store.list())? {
        let history = rt.block_on(store.history(&name))?;
        let current = history.iter().find(|v| v.labels.contains(&Label::Current));
        let pending = history.iter().find(|v| v.labels.contains(&Label::Pending));
        rows.push(json!({
            "name": name,
            "versions": history.len(),
            "current": current.map(|v| json!({
                "version": v.version, "fingerprint": v.meta.fingerprint, "at": v.meta.at, "operator": v.meta.operator,
            })),
            "pending": pending.map(|v| &v.version),
        }));
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(Outcome::Clean);
    }
    if rows.is_empty() {
        println!("No secrets in {}.", store.describe());
        return Ok(Outcome::Clean);
    }
    println!(
        "{:<36} {:>7} {:<21} {:<20} {:<8} BY",
        "NAME", "CURRENT", "FINGERPRINT", "WRITTEN (UTC)", "PENDING"
    );
    for r in &rows {
        let c = &r["current"];
        println!(
            "{:<36} {:>7} {:<21} {:<20} {:<8} {}",
            r["name"].as_str().unwrap_or_default(),
            c["version"].as_str().unwrap_or("-"),
            c["fingerprint"].as_str().unwrap_or("-"),
            c["at"]
                .as_str()
                .map(super::short_time)
                .unwrap_or_else(|| "-".into()),
            r["pending"].as_str().unwrap_or("-"),
            c["operator"].as_str().unwrap_or("-"),
        );
    }
    Ok(Outcome::Clean)
}

pub fn history(args: &Args, name: &str) -> anyhow::Result<Outcome> {
    let name = SecretName::new(name).map_err(anyhow::Error::msg)?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let history = super::runtime()?.block_on(store.history(&name))?;
    if args.json {
        println!("{}", serde_json::to_string(&history)?);
        return Ok(Outcome::Clean);
    }
    println!(
        "{:>7} {:<17} {:<20} {:<21} {:<24} REASON",
        "VERSION", "LABELS", "WRITTEN (UTC)", "FINGERPRINT", "BY"
    );
    for v in history {
        let labels: Vec<&str> = v.labels.iter().map(|l| l.as_str()).collect();
        println!(
            "{:>7} {:<17} {:<20} {:<21} {:<24} {}{}",
            v.version.0,
            if labels.is_empty() {
                "-".to_string()
            } else {
                labels.join(",")
            },
            super::short_time(&v.meta.at.to_string()),
            v.meta.fingerprint.as_deref().unwrap_or("-"),
            v.meta.operator,
            v.meta.reason,
            v.meta
                .rotation_id
                .map(|r| format!(" (rotation {r})"))
                .unwrap_or_default(),
        );
    }
    Ok(Outcome::Clean)
}

pub fn check(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = match open_store(&config) {
        Ok(store) => store,
        // A store that cannot even be opened is the check's finding.
        Err(e) => {
            if args.json {
                println!("{}", json!({"ok": false, "error": format!("{e:#}")}));
            } else {
                println!("FAIL {e:#}");
            }
            return Ok(Outcome::Findings);
        }
    };
    let report = super::runtime()?.block_on(store.check())?;
    if args.json {
        println!("{}", json!({"ok": report.ok(), "report": report}));
    } else {
        println!("{}", report.store);
        for item in &report.items {
            let fix = item
                .fix
                .as_deref()
                .map(|f| format!("; fix: {f}"))
                .unwrap_or_default();
            println!(
                "  {} {}{fix}",
                if item.ok { "ok  " } else { "FAIL" },
                item.what
            );
        }
    }
    Ok(if report.ok() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
