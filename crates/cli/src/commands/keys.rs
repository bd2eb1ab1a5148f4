//! `keys issue | list | revoke`: client keys for the gateway.

use std::path::Path;

use anyhow::bail;
use gateway::keys::{IssuedKey, KeyDestination, KeyFile, KeyOrder, KeyPolicy, issue_and_deliver};
use jiff::Timestamp;
use ledger::EntryKind;
use secrets::SecretName;
use serde_json::json;
use warden_config::LoadedConfig;

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// The client keys: the file, or with the PostgreSQL ledger the row every
/// gateway shares.
fn key_file(config: &LoadedConfig) -> anyhow::Result<KeyFile> {
    Ok(gateway::cluster::key_file(config)?)
}

/// Issues a key and delivers it straight to its destination. If delivery
/// fails the key is revoked at once: a key nobody received must not work.
pub fn issue(
    args: &Args,
    client: &str,
    to_store: Option<&str>,
    to_file: Option<&Path>,
    reason: &str,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    if !config.config.client.iter().any(|c| c.name == client) {
        let known: Vec<&str> = config
            .config
            .client
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        bail!(
            "no [[client]] named `{client}` in {}; known clients: {}",
            config.path.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    if let Some(c) = config.config.client.iter().find(|c| c.name == client) {
        let status = gateway::cluster::status_file(&config)?.status()?;
        if let Some(r) = status.retired.get(&c.account) {
            bail!(
                "client `{client}` uses account `{}`, which was retired on {} by {} ({}): the gateway would refuse every call; point the client at another account in {}, or enrol the account again (`redcap-warden accounts enroll {}`)",
                c.account,
                r.since,
                r.by,
                r.reason,
                config.path.display(),
                c.account
            );
        }
    }
    let secret_name = to_store
        .map(SecretName::new)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if let Some(path) = to_file
        && path.exists()
    {
        bail!(
            "{} already exists; keys are only written to new files",
            path.display()
        );
    }
    let destination = match (secret_name, to_file) {
        (Some(name), _) => KeyDestination::Store(name),
        (None, Some(path)) => KeyDestination::File(path.to_path_buf()),
        (None, None) => unreachable!("clap requires one destination"),
    };
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    let operator = operator.to_string();
    let order = KeyOrder {
        client,
        destination: &destination,
        operator: &operator,
        reason: &reason,
        policy: KeyPolicy::from_config(&config.config.gateway),
    };
    let issued = rt.block_on(async {
        let issued = issue_and_deliver(&key_file(&config)?, &*store, &order, |entry| {
            trail.record(entry)
        })
        .await?;
        trail.close().await?;
        anyhow::Ok(issued)
    })?;
    let IssuedKey {
        record,
        shortened,
        delivered_to: destination,
    } = issued;
    if args.json {
        println!(
            "{}",
            json!({"client": client, "id": record.id, "expires_at": record.expires_at, "delivered_to": destination,
                   "shortened": shortened.iter().map(|k| json!({"id": k.id, "expires_at": k.expires_at})).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "Issued key {} for client `{client}`, delivered to {destination}; expires {}.",
            record.id, record.expires_at
        );
        for k in shortened {
            println!(
                "Older key {} keeps working until {} (overlap window).",
                k.id, k.expires_at
            );
        }
    }
    Ok(Outcome::Clean)
}

/// Every key in the key file, with the last use a running gateway has not
/// written there yet (it writes once a minute). Must not be called from
/// inside a runtime: it runs its own to ask the gateway.
pub(super) fn with_last_use(
    config: &warden_config::LoadedConfig,
) -> anyhow::Result<Vec<gateway::keys::KeyRecord>> {
    let mut keys = key_file(config)?.list()?;
    for (id, used) in running_key_use(config) {
        if let Some(k) = keys.iter_mut().find(|k| k.id == id) {
            k.last_used = Some(k.last_used.map_or(used, |u| u.max(used)));
        }
    }
    Ok(keys)
}

pub fn list(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let keys = with_last_use(&config)?;
    let now = Timestamp::now();
    if args.json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| json!({"state": k.state(now), "key": k}))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(Outcome::Clean);
    }
    if keys.is_empty() {
        println!("No client keys have been issued.");
        return Ok(Outcome::Clean);
    }
    println!(
        "{:<20} {:<11} {:<8} {:<20} {:<20} {:<20} BY",
        "CLIENT", "ID", "STATE", "ISSUED (UTC)", "EXPIRES (UTC)", "LAST USED (UTC)"
    );
    for k in keys {
        let state = format!("{:?}", k.state(now)).to_lowercase();
        println!(
            "{:<20} {:<11} {:<8} {:<20} {:<20} {:<20} {}",
            k.client,
            k.id,
            state,
            super::short_time(&k.issued_at.to_string()),
            super::short_time(&k.expires_at.to_string()),
            k.last_used
                .map(|t| super::short_time(&t.to_string()))
                .unwrap_or_else(|| "never".into()),
            k.issued_by,
        );
    }
    Ok(Outcome::Clean)
}

/// Last use of each key as a running gateway knows it (`GET /admin/keys`);
/// nothing when no gateway answers.
fn running_key_use(config: &warden_config::LoadedConfig) -> Vec<(String, Timestamp)> {
    let gw = &config.config.gateway;
    let Ok(token) = std::fs::read_to_string(config.resolve(&gw.admin_token_file)) else {
        return Vec::new();
    };
    let url = format!("http://{}/admin/keys", gw.admin_listen);
    let Ok(rt) = super::runtime() else {
        return Vec::new();
    };
    let rows: Option<serde_json::Value> = rt.block_on(async {
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .ok()?
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .ok()?;
        resp.status().is_success().then_some(())?;
        resp.json().await.ok()
    });
    rows.and_then(|r| r.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|row| {
            let id = row["key"]["id"].as_str()?.to_string();
            let used = row["key"]["last_used"].as_str()?.parse().ok()?;
            Some((id, used))
        })
        .collect()
}

pub fn revoke(args: &Args, id: &str, reason: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    let record = key_file(&config)?.revoke(id, &reason, Timestamp::now())?;
    rt.block_on(async {
        trail
            .record(EntryKind::Key {
                operator: operator.to_string(),
                action: "revoke".into(),
                key_name: format!("client:{}/{}", record.client, record.id),
                verifier_key: None,
                reason: reason.clone(),
            })
            .await?;
        trail.close().await
    })?;
    println!("Revoked key {} of client `{}`.", record.id, record.client);
    Ok(Outcome::Clean)
}
