//! `reauth ACCOUNT | statement | sweep | status`: re-authorisation of
//! service accounts with SSH-signed approvals (the logic is
//! `governance::reauth`; docs/reauth.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use governance::clock::Clock;
use governance::reauth::{self, LapseCause, LedgerFacts, Presented, Statement};
use governance::redcap::client::{Client, Project};
use jiff::Timestamp;
use ledger::{Approval, EntryKind, ReauthAction};
use secrets::{Label, SecretStore, Selector};
use serde_json::json;
use warden_config::{AccountSection, LoadedConfig};

use super::rights::Paced;
use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// The account status: the file, or with the PostgreSQL ledger the row
/// every gateway shares.
fn status_file(config: &LoadedConfig) -> anyhow::Result<governance::accounts::AccountStatusFile> {
    Ok(gateway::cluster::status_file(config)?)
}

/// The `[[account]]` named `name`.
fn account<'c>(config: &'c LoadedConfig, name: &str) -> anyhow::Result<&'c AccountSection> {
    config
        .config
        .account
        .iter()
        .find(|a| a.name == name)
        .with_context(|| format!("no [[account]] named `{name}` in {}", config.path.display()))
}

/// The REDCap project of `account`'s study, reached with the study's
/// rights manager's token (from the store), paced by `limiter`.
async fn manager_project(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Paced,
    account: &AccountSection,
) -> anyhow::Result<Project<Paced>> {
    let c = &config.config;
    let study = c
        .study
        .iter()
        .find(|s| s.name == account.study)
        .context("the account's study is not a [[study]] (config check reports this)")?;
    let Some(manager) = &study.rights_manager else {
        bail!(
            "study `{}` has no rights_manager, so the expiration of `{}` cannot be read or set in REDCap; add rights_manager = \"ACCOUNT\" to the [[study]] (docs/configuration.md)",
            study.name,
            account.name
        );
    };
    let manager = c
        .account
        .iter()
        .find(|a| &a.name == manager)
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
    Ok(Client::new(c.redcap.url())?
        .with_limiter(limiter.clone())
        .project(token))
}

/// The digest of `account`'s live rights (and its role).
async fn live_digest(project: &Project<Paced>, account: &AccountSection) -> anyhow::Result<String> {
    let row = reauth::user_row(project, &account.username)
        .await?
        .with_context(|| {
            format!(
                "REDCap user `{}` (account `{}`) is not a user of the project",
                account.username, account.name
            )
        })?;
    let roles = project
        .export_user_role_assignments()
        .await
        .context("Export User-Role Assignments with the rights manager's token")?;
    let role = roles
        .iter()
        .find(|r| r.username.eq_ignore_ascii_case(&account.username))
        .map(|r| r.unique_role_name.as_str());
    reauth::rights_digest(&row, role)
        .with_context(|| format!("reading the rights of `{}`", account.username))
}

/// Everything the ledger says about re-authorisation: `facts` brought up
/// to date from the entry after the last it took in, in one pass (the file
/// ledger without its lock, as `ledger tail` does; PostgreSQL through a
/// reader).
fn read_facts(config: &LoadedConfig, mut facts: LedgerFacts) -> anyhow::Result<LedgerFacts> {
    let from = facts.next;
    crate::store::read_ledger_from(config, from, &mut |e| facts.observe(&e))?;
    Ok(facts)
}

/// [`read_facts`] off the async threads (the PostgreSQL reader blocks).
async fn facts(config: &LoadedConfig, facts: LedgerFacts) -> anyhow::Result<LedgerFacts> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || read_facts(&config, facts)).await?
}

/// `reauth statement ACCOUNT [--reason R]`: the statement to sign, on
/// standard output (nothing else there, so `> FILE` keeps it whole).
pub fn statement(args: &Args, name: &str, reason: Option<&str>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let account = account(&config, name)?;
    let Some(every) = account.reauth_every_days else {
        bail!(
            "account `{name}` has no reauth_every_days in {}, so it is not re-authorised; add reauth_every_days and approvers (docs/reauth.md)",
            config.path.display()
        );
    };
    let reason = reason.map(super::reason).transpose()?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let digest = rt.block_on(async {
        let project = manager_project(
            &config,
            &*store,
            &Paced::for_config(&config.config),
            account,
        )
        .await?;
        live_digest(&project, account).await
    })?;
    let now = governance::clock::configured().now();
    let ts = jiff::Timestamp::from_second(now.as_second()).expect("a whole second is in range");
    let from = reauth::day(ts, config.config.redcap.time_zone());
    let statement = Statement {
        account: account.name.clone(),
        study: account.study.clone(),
        period: reauth::Period {
            from,
            until: reauth::add_days(from, every),
        },
        reason,
        rights_digest: digest,
        ts,
    };
    print!("{}", statement.to_text());
    eprintln!(
        "Save this as a file, and have an approver of `{name}` sign it within {} days:\n  ssh-keygen -Y sign -n {} -f ~/.ssh/id_ed25519 FILE\nthen: redcap-warden reauth {name} --reason \"...\" --signature FILE.sig",
        reauth::STATEMENT_MAX_AGE_DAYS,
        reauth::REAUTH_NAMESPACE
    );
    Ok(Outcome::Clean)
}

/// Where the statement is: `--statement`, else the signature's path
/// without `.sig` (where `ssh-keygen -Y sign` put the signature).
pub(super) fn statement_path(
    signature: &Path,
    statement: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    if let Some(s) = statement {
        return Ok(s.to_path_buf());
    }
    match signature.to_str().and_then(|s| s.strip_suffix(".sig")) {
        Some(s) => Ok(PathBuf::from(s)),
        None => bail!(
            "the signature {} does not end in .sig, so the statement it signs cannot be found; give it with --statement FILE",
            signature.display()
        ),
    }
}

/// `reauth ACCOUNT --reason R --signature FILE [--statement FILE]`.
pub fn approve(
    args: &Args,
    name: &str,
    reason: &str,
    signature: &Path,
    statement: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let account = account(&config, name)?;
    let signature_bytes = std::fs::read(signature)
        .with_context(|| format!("reading the signature {}", signature.display()))?;
    let statement_file = statement_path(signature, statement)?;
    let statement_bytes = std::fs::read(&statement_file)
        .with_context(|| format!("reading the statement {}", statement_file.display()))?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let clock = governance::clock::configured();
    let tz = config.config.redcap.time_zone();
    rt.block_on(async {
        let project = manager_project(&config, &*store, &Paced::for_config(&config.config), account).await?;
        let live = live_digest(&project, account).await?;
        let facts = facts(&config, LedgerFacts::default()).await?;
        let verified = reauth::verify(
            account,
            &Presented {
                statement: &statement_bytes,
                signature: &signature_bytes,
            },
            &facts,
            &live,
            clock.now(),
            tz,
        )
        .map_err(|r| anyhow::anyhow!("approval of `{name}` refused: {r}"))?;
        let until = verified.statement.period.until;
        // The trail first: a change must not happen that cannot be recorded.
        let trail = crate::store::open_trail(&config, &*store).await?;
        reauth::set_expiration(&project, &account.username, Some(until))
            .await
            .with_context(|| {
                format!("setting the REDCap expiration of `{}` to {until}", account.username)
            })?;
        trail
            .record(EntryKind::Reauth {
                operator: operator.to_string(),
                account: account.name.clone(),
                until: Some(until.to_string()),
                reason: reason.clone(),
                action: Some(ReauthAction::Approve),
                approval: Some(Approval {
                    signer: verified.signer.clone(),
                    allowed_signer: verified.approver.line.clone(),
                    statement: verified.statement_text.clone(),
                    signature: verified.signature_text.clone(),
                }),
            })
            .await
            .context("REDCap's expiration was set, but the approval could not be recorded in the ledger; run the command again once the ledger is writable")?;
        trail.close().await?;
        let lifted = status_file(&config)?.restore(&account.name)?;
        println!(
            "Account `{name}` re-approved by {} (key {}) until {until}: its REDCap expiration is {until} (DAG kept){}.",
            verified.signer,
            verified.fingerprint,
            if lifted.is_some() {
                "; its lapse is lifted and the gateway accepts it again"
            } else {
                ""
            }
        );
        anyhow::Ok(())
    })?;
    Ok(Outcome::Clean)
}

/// The accounts under re-authorisation.
pub(crate) fn governed(config: &LoadedConfig) -> impl Iterator<Item = &AccountSection> {
    config
        .config
        .account
        .iter()
        .filter(|a| a.reauth_every_days.is_some() || a.lapse_after_inactive_days.is_some())
}

/// Lapses every account that must lapse now: REDCap expiration today (the
/// DAG kept), a `reauth` entry, the status file. Returns the accounts
/// lapsed and why. `serve` calls this daily, keeping `known` (the ledger's
/// facts so far) between runs so each reads only the entries since.
pub async fn sweep_once(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    operator: &str,
    clock: &dyn Clock,
    known: &mut LedgerFacts,
) -> anyhow::Result<Vec<(String, LapseCause)>> {
    *known = facts(config, std::mem::take(known)).await?;
    let facts = &*known;
    let now = clock.now();
    let tz = config.config.redcap.time_zone();
    let today = reauth::day(now, tz);
    let file = status_file(config)?;
    let marked = file.status()?.lapsed;
    let limiter = Paced::for_config(&config.config);
    let mut lapsed = Vec::new();
    let mut failed = Vec::new();
    for account in governed(config) {
        let status = reauth::assess(account, facts, now, tz);
        let Some(cause) = status.lapsed else {
            continue;
        };
        let why = cause.to_string();
        if status.lapse_recorded {
            // Recorded earlier; the status file must still say so.
            if !marked.contains_key(&account.name) {
                file.lapse(&account.name, &why, operator)?;
            }
            continue;
        }
        // One account's failure (its study's REDCap unreachable) does not
        // keep the others from lapsing.
        match lapse(config, store, &limiter, account, today, &why, operator).await {
            Ok(()) => lapsed.push((account.name.clone(), cause)),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} lapsed; could not lapse: {}",
            if lapsed.is_empty() {
                "no account".to_string()
            } else {
                lapsed
                    .iter()
                    .map(|(a, _)| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            failed.join("; ")
        );
    }
    Ok(lapsed)
}

/// Lapses one account: REDCap expiration `today` (DAG kept), the `reauth`
/// entry, the status file.
async fn lapse(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    limiter: &Paced,
    account: &AccountSection,
    today: jiff::civil::Date,
    why: &str,
    operator: &str,
) -> anyhow::Result<()> {
    let project = manager_project(config, store, limiter, account).await?;
    let trail = crate::store::open_trail(config, store).await?;
    reauth::set_expiration(&project, &account.username, Some(today))
        .await
        .with_context(|| {
            format!(
                "setting the REDCap expiration of lapsed account `{}` to {today}",
                account.name
            )
        })?;
    trail
        .record(EntryKind::Reauth {
            operator: operator.to_string(),
            account: account.name.clone(),
            until: None,
            reason: why.to_string(),
            action: Some(ReauthAction::Lapse),
            approval: None,
        })
        .await
        .with_context(|| format!("REDCap's expiration of `{}` was set to {today}, but the lapse could not be recorded in the ledger; run the sweep again once the ledger is writable", account.name))?;
    trail.close().await?;
    status_file(config)?.lapse(&account.name, why, operator)?;
    Ok(())
}

/// `reauth sweep`.
pub fn sweep(args: &Args) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    if governed(&config).next().is_none() {
        println!(
            "No account in {} has reauth_every_days or lapse_after_inactive_days; nothing to sweep.",
            config.path.display()
        );
        return Ok(Outcome::Clean);
    }
    let store = open_store(&config)?;
    let clock = governance::clock::configured();
    let lapsed = super::runtime()?.block_on(sweep_once(
        &config,
        &*store,
        &operator.to_string(),
        &*clock,
        &mut LedgerFacts::default(),
    ))?;
    if args.json {
        let rows: Vec<_> = lapsed
            .iter()
            .map(|(a, c)| json!({"account": a, "lapse": c, "why": c.to_string()}))
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else if lapsed.is_empty() {
        println!("No account lapsed.");
    } else {
        for (a, c) in &lapsed {
            println!(
                "Account `{a}` lapsed ({c}): REDCap access expired today and the gateway refuses it until it is re-approved."
            );
        }
    }
    Ok(if lapsed.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// `reauth status`.
/// Per study (by name), when each user last appears in REDCap's log over
/// the longest `lapse_after_inactive_days` of its governed accounts (else
/// `[reconcile] api_only_lookback_days`); `None` for a study without a log
/// reader.
fn last_use_in_redcap_log(
    config: &LoadedConfig,
    now: Timestamp,
) -> anyhow::Result<
    std::collections::HashMap<String, Option<std::collections::HashMap<String, Timestamp>>>,
> {
    let c = &config.config;
    let studies: Vec<_> = c
        .study
        .iter()
        .filter(|s| governed(config).any(|a| a.study == s.name))
        .collect();
    if studies.iter().all(|s| s.log_reader.is_none()) {
        return Ok(studies.iter().map(|s| (s.name.clone(), None)).collect());
    }
    let store = open_store(config)?;
    let limiter = Paced::for_config(c);
    super::runtime()?.block_on(async {
        let mut out = std::collections::HashMap::new();
        for study in studies {
            let days = governed(config)
                .filter(|a| a.study == study.name)
                .filter_map(|a| a.lapse_after_inactive_days)
                .max();
            let lookback = days.map_or(c.reconcile.api_only_lookback, |d| {
                jiff::SignedDuration::from_hours(i64::from(d) * 24)
            });
            let from = now.checked_sub(lookback).unwrap_or(now);
            let seen =
                super::reconcile::last_seen_in_log(config, &*store, &limiter, study, from).await?;
            out.insert(study.name.clone(), seen);
        }
        Ok(out)
    })
}

pub fn status(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let clock = governance::clock::configured();
    let facts = read_facts(&config, LedgerFacts::default())?;
    let now = clock.now();
    let tz = config.config.redcap.time_zone();
    let rows: Vec<reauth::AccountStatus> = governed(&config)
        .map(|a| reauth::assess(a, &facts, now, tz))
        .collect();
    let in_log = last_use_in_redcap_log(&config, now)?;
    let seen = |account: &str| -> Option<Option<Timestamp>> {
        let a = config.config.account.iter().find(|a| a.name == account)?;
        let study = in_log.get(&a.study)?.as_ref()?;
        Some(study.get(&a.username.to_lowercase()).copied())
    };
    let any_lapsed = rows.iter().any(|r| r.lapsed.is_some());
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "account": r.account,
                    "due": r.due,
                    "lapsed": r.lapsed.is_some(),
                    "lapse": r.lapsed,
                    "why": r.lapsed.as_ref().map(|c| c.to_string()),
                    "lapse_recorded": r.lapse_recorded,
                    "last_approval": r.last_approval.as_ref().map(|(ts, by, until)| json!({"at": ts, "by": by, "until": until})),
                    "last_use": r.last_use,
                    // null: the study has no log reader; "never": not in
                    // the log's window.
                    "last_seen_in_redcap_log": match seen(&r.account) {
                        None => serde_json::Value::Null,
                        Some(None) => json!("never"),
                        Some(Some(t)) => json!(t),
                    },
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else if rows.is_empty() {
        println!(
            "No account in {} has reauth_every_days or lapse_after_inactive_days.",
            config.path.display()
        );
    } else {
        println!(
            "{:<24} {:<11} {:<34} {:<17} {:<17} STATUS",
            "ACCOUNT", "DUE", "LAST APPROVAL", "LAST USE", "IN REDCAP'S LOG"
        );
        for r in &rows {
            let approval = r
                .last_approval
                .as_ref()
                .map_or("never".to_string(), |(ts, by, _)| {
                    format!(
                        "{} by {}",
                        ts.strftime("%Y-%m-%d"),
                        by.as_deref().unwrap_or("?")
                    )
                });
            let state = match (&r.lapsed, r.lapse_recorded) {
                (None, _) => "active".to_string(),
                (Some(c), true) => format!("LAPSED: {c}"),
                (Some(c), false) => {
                    format!("LAPSES at the next sweep: {c}")
                }
            };
            let minute = |t: Timestamp| t.strftime("%Y-%m-%d %H:%M").to_string();
            println!(
                "{:<24} {:<11} {:<34} {:<17} {:<17} {state}",
                r.account,
                r.due.map_or("-".to_string(), |d| d.to_string()),
                approval,
                r.last_use.map_or("never".to_string(), minute),
                match seen(&r.account) {
                    None => "no log reader".to_string(),
                    Some(None) => "never".to_string(),
                    Some(Some(t)) => minute(t),
                },
            );
        }
    }
    Ok(if any_lapsed {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}
