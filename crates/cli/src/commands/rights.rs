//! `rights check`: live REDCap rights of the governed accounts compared
//! with their profiles (the logic is `governance::rights`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use governance::redcap::client::{Client, Format, OutboundLimiter};
use governance::rights::{self, Finding, Governed, LiveDag, LiveProject};
use ledger::EntryKind;
use secrets::{Label, SecretStore, Selector};
use serde_json::{Map, Value, json};
use warden_config::{LoadedConfig, StudySection};

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// The gateway's outbound window, in this process: the few calls of a
/// check stay under `[gateway] outbound_per_minute` (a running gateway
/// keeps its own window; REDCap counts both, so keep the setting well
/// under its threshold).
#[derive(Clone)]
struct Paced(Arc<gateway::upstream::Limiter>);

impl OutboundLimiter for Paced {
    async fn acquire(&self) -> bool {
        self.0.acquire().await
    }
}

/// One study's result.
struct StudyResult {
    study: String,
    findings: Vec<Finding>,
}

pub fn check(args: &Args, study: Option<&str>, account: Option<&str>) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let c = &config.config;
    if let Some(s) = study
        && !c.study.iter().any(|x| x.name == s)
    {
        bail!("no [[study]] named `{s}` in {}", config.path.display());
    }
    if let Some(a) = account {
        match c.account.iter().find(|x| x.name == a) {
            None => bail!("no [[account]] named `{a}` in {}", config.path.display()),
            Some(x) if study.is_some_and(|s| s != x.study) => bail!(
                "account `{a}` belongs to study `{}`, not `{}`",
                x.study,
                study.unwrap_or_default()
            ),
            Some(_) => {}
        }
    }
    let studies: Vec<&StudySection> = c
        .study
        .iter()
        .filter(|s| study.is_none_or(|n| n == s.name))
        .filter(|s| {
            account.is_none_or(|a| c.account.iter().any(|x| x.name == a && x.study == s.name))
        })
        .filter(|s| {
            // Studies with nothing to check are skipped unless named.
            study.is_some()
                || c.account
                    .iter()
                    .any(|a| a.study == s.name && a.profile.is_some())
        })
        .collect();
    if studies.is_empty() {
        bail!(
            "no account in {} has a profile, so there is nothing to check; give the accounts profile = \"...\" (docs/configuration.md)",
            config.path.display()
        );
    }
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let limiter = Arc::new(gateway::upstream::Limiter::new(
        c.gateway.outbound_per_minute,
        Duration::from_secs(60),
    ));
    let mut results = Vec::new();
    for s in &studies {
        let findings = rt.block_on(check_study(&config, &*store, &limiter, s, account))?;
        results.push(StudyResult {
            study: s.name.clone(),
            findings,
        });
    }
    let all: Vec<&Finding> = results.iter().flat_map(|r| &r.findings).collect();
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    rt.block_on(async {
        for r in &results {
            trail
                .record(EntryKind::Rights {
                    operator: operator.to_string(),
                    account: account.unwrap_or("*").to_string(),
                    project: r.study.clone(),
                    changes: vec![format!(
                        "check: {} finding(s), digest sha256:{}",
                        r.findings.len(),
                        rights::digest(&r.findings)
                    )],
                    reason: "rights check (read only; nothing changed in REDCap)".into(),
                })
                .await?;
        }
        trail.close().await
    })?;
    print(args, &results);
    Ok(if all.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn print(args: &Args, results: &[StudyResult]) {
    if args.json {
        let out: Vec<Value> = results
            .iter()
            .map(|r| {
                json!({"study": r.study, "digest": rights::digest(&r.findings), "findings": r.findings})
            })
            .collect();
        println!("{}", Value::Array(out));
        return;
    }
    for r in results {
        if r.findings.is_empty() {
            println!(
                "study `{}`: every governed account is within its profile",
                r.study
            );
            continue;
        }
        println!("study `{}`: {} finding(s)", r.study, r.findings.len());
        for f in &r.findings {
            println!(
                "  {:<8} {} ({}): {}: {} — {}",
                f.severity.to_string().to_uppercase(),
                f.account.as_deref().unwrap_or("(no account)"),
                f.username,
                f.code,
                f.detail,
                f.risk
            );
        }
    }
}

async fn check_study(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Arc<gateway::upstream::Limiter>,
    study: &StudySection,
    only: Option<&str>,
) -> anyhow::Result<Vec<Finding>> {
    let c = &config.config;
    let Some(manager_name) = &study.rights_manager else {
        bail!(
            "study `{}` has no rights_manager, so its rights cannot be read; add rights_manager = \"ACCOUNT\" to the [[study]] and an [[account]] for a REDCap user with API Export and User Rights (profile \"rights-manager\")",
            study.name
        );
    };
    let manager = c
        .account
        .iter()
        .find(|a| &a.name == manager_name)
        .context("the rights manager is not an [[account]] (config check reports this)")?;
    let secret = store
        .get(&manager.secret, &Selector::Label(Label::Current))
        .await
        .with_context(|| {
            format!(
                "reading the token of rights manager `{}` (secret {})",
                manager.name, manager.secret
            )
        })?;
    let token = governance::redcap::Token::parse(secret.value.expose()).with_context(|| {
        format!(
            "the secret {} of rights manager `{}` is not a REDCap token",
            manager.secret, manager.name
        )
    })?;
    let project = Client::new(c.redcap.url())?
        .with_limiter(Paced(limiter.clone()))
        .project(token);
    let what = |m: &str| format!("{m} with the token of rights manager `{}`", manager.name);
    let users: Vec<Map<String, Value>> = serde_json::from_str(
        &project
            .export_users_raw(Format::Json)
            .await
            .with_context(|| what("Export Users"))?,
    )
    .with_context(|| what("reading Export Users' JSON"))?;
    let roles = project
        .export_user_role_assignments()
        .await
        .with_context(|| what("Export User-Role Assignments"))?;
    let dags = project
        .export_dags()
        .await
        .with_context(|| what("Export DAGs"))?;
    let live = LiveProject {
        users,
        roles: roles
            .into_iter()
            .map(|r| (r.username, r.unique_role_name))
            .collect(),
        dags: dags
            .into_iter()
            .map(|d| LiveDag {
                id: d.data_access_group_id,
                unique_name: d.unique_group_name,
            })
            .collect(),
    };
    let accounts: Vec<_> = c.account.iter().filter(|a| a.study == study.name).collect();
    let mut findings = Vec::new();
    for a in &accounts {
        if only.is_some_and(|o| o != a.name) {
            continue;
        }
        let profile_name = match (&a.profile, a.name == *manager_name) {
            (Some(p), _) => p.as_str(),
            (None, true) => "rights-manager",
            (None, false) => continue,
        };
        let profile = rights::resolve(profile_name, &c.profile)?;
        let site = a.site.as_ref().and_then(|s| {
            study
                .site
                .iter()
                .find(|x| &x.name == s)
                .map(|x| (x.name.clone(), x.dag_id))
        });
        let governed = Governed {
            account: a.name.clone(),
            username: a.username.clone(),
            site,
            profile,
        };
        findings.extend(
            rights::check_account(&governed, &live)
                .with_context(|| format!("reading the rights of `{}`", a.username))?,
        );
    }
    if only.is_none() {
        let names: Vec<&str> = accounts.iter().map(|a| a.username.as_str()).collect();
        findings.extend(rights::ungoverned(&names, &live));
        // Two sites holding one token: compared in memory, never shown.
        let mut held = Vec::new();
        for a in accounts.iter().filter(|a| a.site.is_some()) {
            match store.get(&a.secret, &Selector::Label(Label::Current)).await {
                Ok(secret) => held.push((a, secret.value)),
                Err(secrets::StoreError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "reading the token of site account `{}` (secret {})",
                        a.name, a.secret
                    )));
                }
            }
        }
        let sites: Vec<rights::SiteToken<'_>> = held
            .iter()
            .map(|(a, token)| rights::SiteToken {
                account: &a.name,
                username: &a.username,
                site: a.site.as_deref().unwrap_or_default(),
                token,
            })
            .collect();
        findings.extend(rights::shared_tokens(&sites));
    }
    Ok(findings)
}
