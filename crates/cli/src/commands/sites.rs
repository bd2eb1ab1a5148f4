//! `sites`: each site of each study with its DAG (id, the name
//! `warden.toml` confirms, the name REDCap gives it now), its accounts,
//! their token fingerprints and status, and the gateway clients using them.
//! Reads REDCap's DAGs through the study's rights manager; never prints a
//! token, only its fingerprint under the installation's key.

use anyhow::{Context, bail};
use gateway::keys::KeyState;
use governance::accounts::{self, Lapse, Quarantine, Retirement};
use governance::redcap::client::{Client, Dag};
use secrets::{FingerprintKey, Label, SecretStore, Selector};
use serde_json::{Value, json};
use warden_config::{AccountSection, LoadedConfig, StudySection};

use super::rights::{Paced, account_token};
use crate::Outcome;
use crate::args::Args;
use crate::store::{load_config, open_store};

/// What the gateway does with an account's calls now.
enum Status {
    /// Forwarded.
    Active,
    /// Refused until an operator releases it (`accounts release`).
    Quarantined(Quarantine),
    /// Refused until a signed approval restores it (`reauth`).
    Lapsed(Lapse),
    /// Retired for good (`accounts retire`): not a finding.
    Retired(Retirement),
}

impl Status {
    fn json(&self) -> Value {
        match self {
            Status::Active => json!({"state": "active"}),
            Status::Quarantined(q) => json!({
                "state": "quarantined", "since": q.since.to_string(), "by": q.by, "reason": q.reason,
            }),
            Status::Lapsed(l) => json!({
                "state": "lapsed", "since": l.since.to_string(), "by": l.by, "reason": l.reason,
            }),
            Status::Retired(r) => json!({
                "state": "retired", "since": r.since.to_string(), "by": r.by, "reason": r.reason,
                "proof": r.proof,
            }),
        }
    }
}

/// The status file's word on `account`, as the gateway reads it (a
/// retirement first, then a quarantine: it is the one an operator must
/// lift by hand).
fn status(account: &str, file: &accounts::Status) -> Status {
    if let Some(r) = file.retired.get(account) {
        return Status::Retired(r.clone());
    }
    match (file.quarantined.get(account), file.lapsed.get(account)) {
        (Some(q), _) => Status::Quarantined(q.clone()),
        (None, Some(l)) => Status::Lapsed(l.clone()),
        (None, None) => Status::Active,
    }
}

/// `redcap-warden sites [--study S]`: exit 0, or 1 when a site's DAG is
/// gone or renamed or an account is not active.
pub fn run(args: &Args, study: Option<&str>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let c = &config.config;
    if let Some(s) = study
        && !c.study.iter().any(|x| x.name == s)
    {
        bail!("no [[study]] named `{s}` in {}", config.path.display());
    }
    let studies: Vec<&StudySection> = c
        .study
        .iter()
        .filter(|s| study.is_none_or(|n| n == s.name))
        .filter(|s| study.is_some() || !s.site.is_empty())
        .collect();
    if studies.is_empty() {
        bail!(
            "no [[study]] in {} has a [[study.site]]; sites bind a study's accounts to Data Access Groups (docs/configuration.md)",
            config.path.display()
        );
    }
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let paced = Paced::for_config(c);
    let status_file = gateway::cluster::status_file(&config)?;
    let statuses = status_file.status().with_context(|| {
        format!(
            "reading the gateway's account status {}",
            status_file.path().display()
        )
    })?;
    let key_file = gateway::cluster::key_file(&config)?;
    let keys = key_file
        .list()
        .with_context(|| format!("reading the client keys {}", key_file.path().display()))?;
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    let mut clean = true;
    for s in studies {
        let dags = rt.block_on(live_dags(&config, &*store, &paced, s))?;
        let mut sites = Vec::new();
        for site in &s.site {
            let live = dags
                .as_ref()
                .map(|d| d.iter().find(|d| d.data_access_group_id == site.dag_id));
            let (live_name, live_label) = match live {
                Some(Some(d)) => (json!(d.unique_group_name), json!(d.data_access_group_name)),
                _ => (Value::Null, Value::Null),
            };
            let dag_state = match (live, &site.dag_name) {
                (None, _) => "not read (the study has no rights_manager)",
                (Some(None), _) => "missing: the project has no DAG with this id",
                (Some(Some(d)), Some(n)) if d.unique_group_name != *n => {
                    "renamed: confirm, then update dag_name"
                }
                (Some(Some(_)), _) => "ok",
            };
            if !matches!(
                dag_state,
                "ok" | "not read (the study has no rights_manager)"
            ) {
                clean = false;
            }
            let mut accounts = Vec::new();
            for a in c
                .account
                .iter()
                .filter(|a| a.study == s.name && a.site.as_deref() == Some(site.name.as_str()))
            {
                let st = status(&a.name, &statuses);
                if !matches!(st, Status::Active | Status::Retired(_)) {
                    clean = false;
                }
                let fingerprint = rt.block_on(fingerprint(&*store, a))?;
                let clients: Vec<Value> = c
                    .client
                    .iter()
                    .filter(|k| k.account == a.name)
                    .map(|k| {
                        let live: Vec<_> = keys
                            .iter()
                            .filter(|r| r.client == k.name && r.state(now) == KeyState::Active)
                            .collect();
                        let expires = live.iter().map(|r| r.expires_at).max();
                        json!({
                            "name": k.name,
                            "allow": k.allow.iter().map(|m| format!("{}:{}", m.content.as_str(), m.action.as_str())).collect::<Vec<_>>(),
                            "active_keys": live.len(),
                            "last_key_expires": expires.map(|t| t.to_string()),
                        })
                    })
                    .collect();
                accounts.push(json!({
                    "name": a.name, "username": a.username, "secret": a.secret.to_string(),
                    "fingerprint": fingerprint, "status": st.json(), "clients": clients,
                }));
            }
            sites.push(json!({
                "name": site.name, "dag_id": site.dag_id, "dag_name": site.dag_name,
                "live_name": live_name, "live_label": live_label, "dag": dag_state,
                "accounts": accounts,
            }));
        }
        out.push(json!({"study": s.name, "sites": sites}));
    }
    if args.json {
        println!("{}", Value::Array(out));
    } else {
        print(&out);
    }
    Ok(if clean {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// The project's DAGs through the rights manager; `None` without one.
async fn live_dags(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    paced: &Paced,
    study: &StudySection,
) -> anyhow::Result<Option<Vec<Dag>>> {
    let Some(manager) = study
        .rights_manager
        .as_ref()
        .and_then(|m| config.config.account.iter().find(|a| &a.name == m))
    else {
        return Ok(None);
    };
    let token = account_token(store, manager, "rights manager").await?;
    let dags = Client::new(config.config.redcap.url())?
        .with_limiter(paced.clone())
        .project(token)
        .export_dags()
        .await
        .with_context(|| {
            format!(
                "Export DAGs with the token of rights manager `{}` (it needs API Export and the DAG right)",
                manager.name
            )
        })?;
    Ok(Some(dags))
}

/// The fingerprint of the account's current token, or `None` when its
/// secret holds none yet.
async fn fingerprint(
    store: &dyn SecretStore,
    account: &AccountSection,
) -> anyhow::Result<Option<String>> {
    match store
        .get(&account.secret, &Selector::Label(Label::Current))
        .await
    {
        Ok(secret) => {
            let key = FingerprintKey::load(store).await.with_context(|| {
                format!(
                    "reading the fingerprint key `{}` (was the store set up with `redcap-warden init`?)",
                    secrets::FINGERPRINT_KEY_SECRET
                )
            })?;
            Ok(Some(key.fingerprint(&secret.value).to_string()))
        }
        // A retired account's secret is deleted (its history kept).
        Err(secrets::StoreError::NotFound { .. } | secrets::StoreError::Deleted { .. }) => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "reading the token of `{}` (secret {})",
            account.name, account.secret
        ))),
    }
}

fn print(out: &[Value]) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    for study in out {
        println!("study `{}`", s(&study["study"]));
        for site in study["sites"].as_array().into_iter().flatten() {
            println!(
                "  site `{}`: DAG {} — REDCap calls it {} (label {}), warden.toml {}: {}",
                s(&site["name"]),
                site["dag_id"],
                s(&site["live_name"]),
                s(&site["live_label"]),
                s(&site["dag_name"]),
                s(&site["dag"]),
            );
            let accounts = site["accounts"].as_array().cloned().unwrap_or_default();
            if accounts.is_empty() {
                println!("    no account");
            }
            for a in &accounts {
                let status = match a["status"]["state"].as_str() {
                    Some("quarantined") => format!(
                        "QUARANTINED since {} by {}: {}",
                        super::short_time(a["status"]["since"].as_str().unwrap_or_default()),
                        s(&a["status"]["by"]),
                        s(&a["status"]["reason"])
                    ),
                    Some("lapsed") => format!(
                        "LAPSED since {}: {} (a signed approval restores it: redcap-warden reauth)",
                        super::short_time(a["status"]["since"].as_str().unwrap_or_default()),
                        s(&a["status"]["reason"])
                    ),
                    Some("retired") => format!(
                        "RETIRED since {} by {}: {}",
                        super::short_time(a["status"]["since"].as_str().unwrap_or_default()),
                        s(&a["status"]["by"]),
                        s(&a["status"]["reason"])
                    ),
                    other => other.unwrap_or("-").to_string(),
                };
                println!(
                    "    account `{}` (REDCap user {}): token {}; {status}",
                    s(&a["name"]),
                    s(&a["username"]),
                    a["fingerprint"]
                        .as_str()
                        .unwrap_or(if a["status"]["state"] == "retired" {
                            "retired"
                        } else {
                            "not stored"
                        },),
                );
                for k in a["clients"].as_array().into_iter().flatten() {
                    println!(
                        "      client `{}`: {} active key(s){}; allow {}",
                        s(&k["name"]),
                        k["active_keys"],
                        k["last_key_expires"]
                            .as_str()
                            .map(|t| format!(", last expires {}", super::short_time(t)))
                            .unwrap_or_default(),
                        k["allow"]
                            .as_array()
                            .map(|v| v.iter().map(s).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default(),
                    );
                }
            }
        }
    }
}
