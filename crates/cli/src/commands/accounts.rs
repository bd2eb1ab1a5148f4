//! `accounts list | release`.

use anyhow::bail;
use governance::accounts::AccountStatusFile;
use ledger::EntryKind;
use serde_json::json;
use warden_config::LoadedConfig;

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

fn status_file(config: &LoadedConfig) -> AccountStatusFile {
    AccountStatusFile::new(&gateway::paths::status_file(config))
}

/// Lists the accounts; exit 1 when any (not retired) is quarantined or
/// lapsed.
pub fn list(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let status = status_file(&config).status()?;
    let (quarantined, lapsed, retired) = (&status.quarantined, &status.lapsed, &status.retired);
    let rows: Vec<_> = config
        .config
        .account
        .iter()
        .map(|a| {
            json!({
                "name": a.name, "username": a.username, "study": a.study,
                "site": a.site, "secret": a.secret,
                "quarantine": quarantined.get(&a.name),
                "lapse": lapsed.get(&a.name),
                "retired": retired.get(&a.name),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
    } else if rows.is_empty() {
        println!("No [[account]] sections in {}.", config.path.display());
    } else {
        println!(
            "{:<24} {:<24} {:<12} {:<10} STATUS",
            "ACCOUNT", "REDCAP USER", "STUDY", "SITE"
        );
        for r in &rows {
            let status = match (r["quarantine"].as_object(), r["lapse"].as_object()) {
                _ if r["retired"].is_object() => format!(
                    "RETIRED since {} by {}: {}",
                    super::short_time(r["retired"]["since"].as_str().unwrap_or_default()),
                    r["retired"]["by"].as_str().unwrap_or_default(),
                    r["retired"]["reason"].as_str().unwrap_or_default()
                ),
                (Some(q), _) => format!(
                    "QUARANTINED since {} by {}: {}",
                    super::short_time(q["since"].as_str().unwrap_or_default()),
                    q["by"].as_str().unwrap_or_default(),
                    q["reason"].as_str().unwrap_or_default()
                ),
                (None, Some(l)) => format!(
                    "LAPSED since {}: {} (re-approve with redcap-warden reauth)",
                    super::short_time(l["since"].as_str().unwrap_or_default()),
                    l["reason"].as_str().unwrap_or_default()
                ),
                (None, None) => "active".into(),
            };
            println!(
                "{:<24} {:<24} {:<12} {:<10} {status}",
                r["name"].as_str().unwrap_or_default(),
                r["username"].as_str().unwrap_or_default(),
                r["study"].as_str().unwrap_or_default(),
                r["site"].as_str().unwrap_or("-"),
            );
        }
    }
    // A retired account is refused for good: no longer a finding.
    let refused = quarantined
        .keys()
        .chain(lapsed.keys())
        .any(|a| !retired.contains_key(a));
    Ok(if !refused {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

pub fn release(args: &Args, account: &str, reason: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    if !config.config.account.iter().any(|a| a.name == account) {
        bail!(
            "no [[account]] named `{account}` in {}",
            config.path.display()
        );
    }
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    let was = status_file(&config).release(account)?;
    rt.block_on(async {
        trail
            .record(EntryKind::Admin {
                operator: operator.to_string(),
                action: "release quarantine".into(),
                target: format!("account:{account}"),
                reason: format!(
                    "{reason} (quarantined since {} by {}: {})",
                    was.since, was.by, was.reason
                ),
            })
            .await?;
        trail.close().await
    })?;
    println!("Released account `{account}`; the gateway accepts its calls again.");
    Ok(Outcome::Clean)
}
