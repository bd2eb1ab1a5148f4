//! `accounts list | release | enroll | retire`.
//!
//! An account's life (`docs/accounts.md`): `enroll` applies its profile
//! (rights and DAG) through the study's rights manager, proves it with
//! `rights check`, then obtains its first token through a rotation of
//! kind `enrol` — the same issuers, escrow, verification and journal as
//! `rotate`, so an interrupted enrolment is finished by running it again
//! or by `rotate resume ID`. `retire` revokes its clients' keys, has its
//! token deleted and its user removed in REDCap (printed steps, or the
//! sandbox's admin endpoints), proves the token dead, and retires the
//! secret: marked retired (the gateway refuses the account) and deleted
//! from the store, whose history keeps it.

use std::sync::Arc;

use anyhow::{Context, bail};
use governance::accounts::AccountStatusFile;
use governance::redcap::client::Client;
use governance::rotation::{Escrow, Kind, Plan, RotationError, Target, TokenAnswer, TokenCheck};
use ledger::EntryKind;
use secrets::{FingerprintKey, Label, SecretStore, Selector, StoreError};
use serde_json::json;
use warden_config::{AccountSection, IssuerKind, LoadedConfig, StudySection};

use crate::Outcome;
use crate::args::{Args, IssuerArg};
use crate::operator::Operator;
use crate::store::{load_config, open_store, open_trail};

/// The account status: the file, or with the PostgreSQL ledger the row
/// every gateway shares.
fn status_file(config: &LoadedConfig) -> anyhow::Result<AccountStatusFile> {
    Ok(gateway::cluster::status_file(config)?)
}

/// Lists the accounts; exit 1 when any (not retired) is quarantined or
/// lapsed.
pub fn list(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let status = status_file(&config)?.status()?;
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
    let was = status_file(&config)?.release(account)?;
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

/// The `[[account]]` named `account` and its `[[study]]`.
fn account_and_study<'c>(
    config: &'c LoadedConfig,
    account: &str,
) -> anyhow::Result<(&'c AccountSection, &'c StudySection)> {
    let c = &config.config;
    let Some(a) = c.account.iter().find(|a| a.name == account) else {
        bail!(
            "no [[account]] named `{account}` in {}; add it (name, username, secret, study, site, profile), run `redcap-warden config check`, then enrol it",
            config.path.display()
        );
    };
    let s = c
        .study
        .iter()
        .find(|s| s.name == a.study)
        .context("the account's study is not a [[study]] (config check reports this)")?;
    Ok((a, s))
}

/// `accounts enroll ACCOUNT --reason R`: the profile applied and proved,
/// then the first token. Exit 0 enrolled, 1 the profile is not proved
/// (findings listed, no token obtained) or the token failed verification,
/// 2 an error (run it again to continue).
pub fn enroll(
    args: &Args,
    account: &str,
    reason: &str,
    issuer_arg: Option<IssuerArg>,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let (acc, study) = account_and_study(&config, account)?;
    if study.rights_manager.as_deref() == Some(account) {
        bail!(
            "`{account}` is the rights manager of study `{}`, through which enrolment applies profiles, so it cannot enrol itself: a REDCap administrator gives its user the rights of profile rights-manager and creates its token; store that with `redcap-warden secrets put {} --reason R` (docs/accounts.md)",
            study.name,
            acc.secret
        );
    }
    let journal = super::rotate::journal(&config);
    let _lock = journal.lock(account)?;
    // Opened once for the whole enrolment: a passphrase-protected file
    // store asks for its passphrase once.
    let (store, escrow) = super::rotate::store_and_escrow(&config, &journal)?;
    // An enrolment under way (the process stopped): finish it.
    if let Some(open) = journal.open_for(account)? {
        if open.kind != Kind::Enrol {
            return Err(RotationError::Open {
                account: open.account,
                id: open.id,
                state: open.state,
            }
            .into());
        }
        eprintln!(
            "account `{account}`: continuing its enrolment {} from `{}`",
            open.id, open.state
        );
        return finish_enrolment(
            args,
            &config,
            &operator,
            account,
            open,
            issuer_arg,
            (store, escrow),
        );
    }
    let status = status_file(&config)?;
    let retired = status.status()?.retired.remove(account);
    let rt = super::runtime()?;
    rt.block_on(async {
        match store.get(&acc.secret, &Selector::Label(Label::Current)).await {
            Ok(_) if retired.is_none() => bail!(
                "account `{account}` is enrolled already: {} holds its current token; rotate it with `redcap-warden rotate start {account} --reason R`",
                acc.secret
            ),
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::LabelNotSet { .. }) => Ok(()),
            // Retired: the secret comes back with its history; its current
            // (dead) token is then replaced like a rotation's.
            Err(StoreError::Deleted { .. }) => {
                store.restore(&acc.secret).await.with_context(|| {
                    format!("restoring the retired secret {}", acc.secret)
                })?;
                let trail = open_trail(&config, &*store).await?;
                let recorded = trail
                    .record(EntryKind::Admin {
                        operator: operator.to_string(),
                        action: "restore secret".into(),
                        target: format!("secret:{}", acc.secret),
                        reason: format!(
                            "accounts enroll `{account}` again (retired; its history is kept): {reason}"
                        ),
                    })
                    .await;
                trail.close().await?;
                recorded?;
                eprintln!(
                    "the retired secret {} is restored with its history",
                    acc.secret
                );
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("reading the secret {} of `{account}`", acc.secret))),
        }
    })?;

    // 1. The profile, applied and proved.
    let (done, findings) = rt.block_on(async {
        let trail = open_trail(&config, &*store).await?;
        let result =
            super::rights::enrol(&config, &*store, &trail, study, acc, &operator, &reason).await;
        trail.close().await?;
        result
    })?;
    eprintln!("account `{account}`: its profile in REDCap:");
    for line in &done {
        eprintln!("  {line}");
    }
    let (findings, notes): (Vec<_>, Vec<_>) =
        findings.into_iter().partition(super::rights::holds_token);
    for f in &notes {
        eprintln!("  note: {}", super::rights::finding_text(f));
    }
    if !findings.is_empty() {
        println!(
            "account `{account}` is not enrolled: `rights check` still finds what the profile does not allow, so no token was obtained:"
        );
        for f in &findings {
            println!("  {}", super::rights::finding_text(f));
        }
        println!(
            "fix them in REDCap (User Rights), then run `redcap-warden accounts enroll {account} --reason R` again"
        );
        return Ok(Outcome::Findings);
    }
    eprintln!("account `{account}`: rights check --account {account}: within its profile");

    // 2. The first token: a rotation of kind `enrol`.
    let c = &config.config;
    let kind = super::rotate::issuer_kind(issuer_arg, c.rotation.issuer);
    let issuer = super::rotate::issuer(&config, kind)?;
    let plan = Plan {
        account: acc.name.clone(),
        username: acc.username.clone(),
        secret: acc.secret.clone(),
        project_id: study.project_id,
        issuer: kind.as_str().to_string(),
        reason: reason.clone(),
        note: super::sop::stale_note(&config),
        // A token of another account of the study is refused.
        others: c
            .account
            .iter()
            .filter(|a| a.study == acc.study && a.name != acc.name)
            .map(|a| (a.name.clone(), a.secret.clone()))
            .collect(),
        dual: None,
    };
    let rotation = super::rotate::with_rotator_on(
        &config,
        &operator,
        Some(account),
        (store.clone(), escrow),
        async |r| {
            let rot = r.plan_enrol(plan).await?;
            r.drive(rot, Some(&*issuer)).await
        },
    )?;
    enrolled(args, &config, &operator, &rotation, &store)
}

/// Drives an enrolment that was under way to its end.
fn finish_enrolment(
    args: &Args,
    config: &LoadedConfig,
    operator: &Operator,
    account: &str,
    open: governance::rotation::Rotation,
    issuer_arg: Option<IssuerArg>,
    (store, escrow): (Arc<dyn SecretStore>, Escrow),
) -> anyhow::Result<Outcome> {
    let default = match open.issuer.as_str() {
        "sandbox" => IssuerKind::Sandbox,
        "command" => IssuerKind::Command,
        _ => IssuerKind::Manual,
    };
    let issuer = if open.state == governance::rotation::State::Planned {
        Some(super::rotate::issuer(
            config,
            super::rotate::issuer_kind(issuer_arg, default),
        )?)
    } else {
        None
    };
    let rotation = super::rotate::with_rotator_on(
        config,
        operator,
        Some(account),
        (store.clone(), escrow),
        async |r| r.drive(open, issuer.as_deref()).await,
    )?;
    enrolled(args, config, operator, &rotation, &store)
}

/// After an enrolment's rotation: a retired account is active again; the
/// rotation's report.
fn enrolled(
    args: &Args,
    config: &LoadedConfig,
    operator: &Operator,
    rotation: &governance::rotation::Rotation,
    store: &Arc<dyn SecretStore>,
) -> anyhow::Result<Outcome> {
    use governance::rotation::State;
    if rotation.state == State::Done
        && let Some(was) = status_file(config)?.unretire(&rotation.account)?
    {
        let rt = super::runtime()?;
        rt.block_on(async {
            let trail = open_trail(config, &**store).await?;
            let recorded = trail
                .record(EntryKind::Admin {
                    operator: operator.to_string(),
                    action: "unretire".into(),
                    target: format!("account:{}", rotation.account),
                    reason: format!(
                        "enrolled again by rotation {} (retired since {} by {}: {})",
                        rotation.id, was.since, was.by, was.reason
                    ),
                })
                .await;
            trail.close().await?;
            recorded.map_err(anyhow::Error::from)
        })?;
    }
    if rotation.state == State::Done {
        eprintln!(
            "account `{}` is enrolled: its first token is current",
            rotation.account
        );
    }
    super::rotate::report(args, rotation)
}

/// `accounts retire ACCOUNT --reason R`. Exit 0 retired (or already), 2
/// when a step could not be taken — notably the token still answering
/// because the printed REDCap steps are not done yet: run it again then.
pub fn retire(
    args: &Args,
    account: &str,
    reason: &str,
    issuer_arg: Option<IssuerArg>,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let (acc, study) = account_and_study(&config, account)?;
    let c = &config.config;
    let journal = super::rotate::journal(&config);
    let _lock = journal.lock(account)?;
    if let Some(open) = journal.open_for(account)? {
        bail!(
            "account `{account}` has an open rotation {} ({}); finish it with `redcap-warden rotate resume {}` or stop it with `redcap-warden rotate abort {} --reason R`, then retire the account",
            open.id,
            open.state,
            open.id,
            open.id
        );
    }
    let status = status_file(&config)?;
    if let Some(r) = status.status()?.retired.get(account) {
        println!(
            "account `{account}` was retired on {} by {} ({}); nothing to do",
            r.since, r.by, r.reason
        );
        return Ok(Outcome::Clean);
    }
    let kind = super::rotate::issuer_kind(issuer_arg, c.rotation.issuer);
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let trail = rt.block_on(open_trail(&config, &*store))?;
    let result = rt.block_on(retire_steps(
        &config, &*store, &trail, acc, study, kind, &operator, &reason,
    ));
    let closed = rt.block_on(trail.close());
    let proof = result?;
    closed?;
    println!("account `{account}` ({}) is retired", acc.username);
    println!("  proof: {proof}");
    println!(
        "  secret {} retired: kept in the store's history, no longer served; the gateway refuses the account",
        acc.secret
    );
    Ok(Outcome::Clean)
}

/// The steps of `retire`, each recorded; returns the proof.
#[allow(clippy::too_many_arguments)]
async fn retire_steps(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    trail: &governance::audit::AuditTrail,
    acc: &AccountSection,
    study: &StudySection,
    issuer: IssuerKind,
    operator: &Operator,
    reason: &str,
) -> anyhow::Result<String> {
    let c = &config.config;
    let account = acc.name.as_str();
    // 1. Its clients' keys.
    let keys = gateway::cluster::key_file(config)?;
    let clients: Vec<&str> = c
        .client
        .iter()
        .filter(|k| k.account == account)
        .map(|k| k.name.as_str())
        .collect();
    let now = jiff::Timestamp::now();
    for key in keys.list()? {
        if !clients.contains(&key.client.as_str())
            || key.state(now) != gateway::keys::KeyState::Active
        {
            continue;
        }
        let why = format!("accounts retire `{account}`: {reason}");
        let record = keys.revoke(&key.id, &why, now)?;
        trail
            .record(EntryKind::Key {
                operator: operator.to_string(),
                action: "revoke".into(),
                key_name: format!("client:{}/{}", record.client, record.id),
                verifier_key: None,
                reason: why,
            })
            .await?;
        eprintln!("revoked key {} of client `{}`", record.id, record.client);
    }
    // 2. REDCap: delete the token, remove the user.
    let project = study
        .project_id
        .map_or(format!("of study `{}`", study.name), |p| p.to_string());
    match (issuer, study.project_id) {
        (IssuerKind::Sandbox, Some(project_id)) => {
            let target = Target {
                account: account.to_string(),
                username: acc.username.clone(),
                project_id,
                first: false,
                role: governance::rotation::issuer::Role::Single,
            };
            let sandbox = super::rotate::sandbox_issuer(config)?;
            let did = sandbox
                .retire(&target)
                .await
                .map_err(|e| anyhow::anyhow!("the sandbox issuer: {e}"))?;
            trail
                .record(EntryKind::Admin {
                    operator: operator.to_string(),
                    action: "redcap: delete token, remove user".into(),
                    target: format!("account:{account}"),
                    reason: format!("accounts retire: {did}; {reason}"),
                })
                .await?;
            eprintln!("{did}");
        }
        _ => {
            let steps =
                governance::rotation::manual_retire_steps(c.redcap.url(), &acc.username, &project);
            let mut text = format!(
                "\nIn REDCap, delete the API token of user `{}` and remove the user from project {project} (account `{account}`):\n",
                acc.username
            );
            for (n, step) in steps.iter().enumerate() {
                text.push_str(&format!("  {}. {step}\n", n + 1));
            }
            eprintln!("{text}");
            // Where the retirement began: REDCap's rows deleting the token
            // and removing the user from here to the `retire account`
            // entry are its steps (`reconcile`, docs/reconcile.md).
            trail
                .record(EntryKind::Admin {
                    operator: operator.to_string(),
                    action: "retire: REDCap steps given".into(),
                    target: format!("account:{account}"),
                    reason: format!(
                        "accounts retire: delete the token of `{}` and remove the user from project {project} in REDCap; {reason}",
                        acc.username
                    ),
                })
                .await?;
        }
    }
    // 3. The token, shown dead.
    let fingerprints = FingerprintKey::load(store)
        .await
        .context("reading the fingerprint key (was the store set up with `redcap-warden init`?)")?;
    let redcap = Client::new(c.redcap.url())?.with_limiter(super::rights::Paced::for_config(c));
    let proof = match store
        .get(&acc.secret, &Selector::Label(Label::Current))
        .await
    {
        Ok(token) => {
            let fp = fingerprints.fingerprint(&token.value).to_string();
            match redcap.project_of(&token.value).await {
                Ok(TokenAnswer::Invalid) => format!(
                    "{}: Export Project Info with the token {fp} (version {}) got REDCap's invalid-token answer (403 \"You do not have permissions to use the API\")",
                    jiff::Timestamp::now(),
                    token.version
                ),
                Ok(_) => bail!(
                    "the token {fp} of `{account}` still authenticates at REDCap, so it is not yet shown dead; do the REDCap steps above, then run `redcap-warden accounts retire {account} --reason R` again (the keys revoked so far stay revoked)"
                ),
                Err(e) => bail!(
                    "REDCap could not be asked about the token of `{account}`: {e}; once it answers, run `redcap-warden accounts retire {account} --reason R` again"
                ),
            }
        }
        Err(StoreError::NotFound { .. } | StoreError::LabelNotSet { .. }) => format!(
            "{}: no token of `{account}` was ever stored in {}: none to prove dead",
            jiff::Timestamp::now(),
            acc.secret
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("reading the token of `{account}` ({})", acc.secret)));
        }
    };
    // 4. The secret retired: refused by the gateway, then not served.
    status_file(config)?.retire(account, reason, &operator.to_string(), &proof)?;
    match store.delete(&acc.secret).await {
        Ok(()) | Err(StoreError::NotFound { .. } | StoreError::Deleted { .. }) => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "retiring the secret {} (the account is marked retired: the gateway refuses it); run `accounts retire` again once the store answers",
                acc.secret
            )));
        }
    }
    trail
        .record(EntryKind::Admin {
            operator: operator.to_string(),
            action: "retire account".into(),
            target: format!("account:{account}"),
            reason: format!(
                "{reason}; proof: {proof}; secret {} retired (kept in the store's history, no longer served)",
                acc.secret
            ),
        })
        .await?;
    Ok(proof)
}
