//! `rotate status|start|run|resume|abort`: token rotation
//! (`docs/rotation.md`; the state machine is `governance::rotation`).
//! This file wires it to the configuration, the store, the ledger, REDCap
//! and the running gateway, and owns the one issuer that needs the
//! terminal: `manual`.

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use anyhow::{Context, bail};
use governance::redcap::client::Client;
use governance::redcap_log::FingerprintMask;
use governance::rotation::escrow::ESCROW_IDENTITY;
use governance::rotation::{
    CommandHook, CommandIssuer, Cutover, Escrow, EscrowKey, Hook, IssueError, Issuer, Journal,
    LogCorrelation, NoGateway, NoLogReader, OwnershipCheck, Plan, RightsCheck, RightsVerdict,
    Rotation, RotationError, Rotator, SandboxIssuer, State, Target, WebhookHook,
};
use secrets::file::ExposeSecret;
use secrets::{FileStore, FingerprintKey, SecretStore, SecretValue};
use serde_json::{Value, json};
use warden_config::{IssuerKind, LoadedConfig, SecretsBackend};
use zeroize::Zeroizing;

use crate::Outcome;
use crate::args::{Args, IssuerArg};
use crate::operator::Operator;
use crate::store::{file_store_options, load_config, open_store, open_trail, unlock_identity};

/// Where the journals and escrows live: `<data_dir>/rotation/`.
pub(super) fn journal(config: &LoadedConfig) -> Journal {
    Journal::on_os(config.data_dir().join("rotation"))
}

/// The store, and who the escrow encrypts to: the file store's identity,
/// or for Vault and AWS the escrow's own identity beside the journals.
fn store_and_escrow(
    config: &LoadedConfig,
    journal: &Journal,
) -> anyhow::Result<(Arc<dyn SecretStore>, Escrow)> {
    if config.config.secrets.backend == SecretsBackend::File {
        let opts = file_store_options(config);
        let identity = unlock_identity(config)?;
        let store = FileStore::open_with_identity(opts.clone(), identity.clone())
            .with_context(|| format!("opening the secrets store {}", opts.path.display()))?;
        let key = EscrowKey::store_identity(identity, &opts.identity);
        Ok((Arc::new(store), Escrow::new(journal.clone(), key)))
    } else {
        let store = open_store(config)?;
        let key = EscrowKey::own_identity(&journal.dir().join(ESCROW_IDENTITY))?;
        Ok((store, Escrow::new(journal.clone(), key)))
    }
}

pub(super) fn issuer_kind(arg: Option<IssuerArg>, default: IssuerKind) -> IssuerKind {
    match arg {
        Some(IssuerArg::Manual) => IssuerKind::Manual,
        Some(IssuerArg::Sandbox) => IssuerKind::Sandbox,
        Some(IssuerArg::Command) => IssuerKind::Command,
        None => default,
    }
}

/// The issuer `kind`, from `[rotation]`.
pub(super) fn issuer(config: &LoadedConfig, kind: IssuerKind) -> anyhow::Result<Box<dyn Issuer>> {
    let r = &config.config.rotation;
    let file = config.path.display();
    Ok(match kind {
        IssuerKind::Manual => Box::new(Manual {
            redcap_url: config.config.redcap.url().to_string(),
        }),
        IssuerKind::Sandbox => Box::new(sandbox_issuer(config)?),
        IssuerKind::Command => {
            if r.command.is_empty() {
                bail!(
                    "the command issuer needs [rotation] command in {file}, e.g. command = [\"/usr/local/bin/regenerate-token\", \"{{username}}\", \"{{project_id}}\"]"
                );
            }
            Box::new(CommandIssuer::new(r.command.clone()))
        }
    })
}

/// The sandbox issuer of `[rotation]`.
pub(super) fn sandbox_issuer(config: &LoadedConfig) -> anyhow::Result<SandboxIssuer> {
    let r = &config.config.rotation;
    let file = config.path.display();
    let Some(url) = &r.sandbox_url else {
        bail!(
            "the sandbox issuer needs [rotation] sandbox_url in {file}, e.g. sandbox_url = \"http://127.0.0.1:8480\""
        );
    };
    let Some(secret_file) = &r.sandbox_admin_secret_file else {
        bail!(
            "the sandbox issuer needs [rotation] sandbox_admin_secret_file in {file}: a 0600 file holding the sandbox's --admin-secret"
        );
    };
    let path = config.resolve(secret_file);
    let secret = secrets::file::read_passphrase_file(&path).map_err(|e| {
        anyhow::anyhow!(
            "[rotation] sandbox_admin_secret_file {}: {e}",
            path.display()
        )
    })?;
    Ok(SandboxIssuer::new(
        url,
        Zeroizing::new(secret.expose_secret().to_string()),
    ))
}

/// Runs `f` with a rotator over everything `config` names: the ledger is
/// opened first (nothing happens that could not be recorded) and closed
/// after, whatever `f` returned.
/// `account`: the account whose new token may be verified (its study's
/// log reader proves ownership); `None` when nothing is verified (abort).
pub(super) fn with_rotator(
    config: &LoadedConfig,
    operator: &Operator,
    account: Option<&str>,
    f: impl AsyncFnOnce(&Rotator<'_>) -> Result<Rotation, RotationError>,
) -> anyhow::Result<Rotation> {
    let journal = journal(config);
    let (store, escrow) = store_and_escrow(config, &journal)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let fingerprints = FingerprintKey::load(&*store).await.with_context(
            || "reading the fingerprint key (was the store set up with `redcap-warden init`?)",
        )?;

        // The outbound window `rights check` keeps, in this process.
        let paced = super::rights::Paced::for_config(&config.config);
        let redcap = Client::new(config.config.redcap.url())
            .with_context(|| format!("the REDCap URL in {}", config.path.display()))?
            .with_limiter(paced.clone());
        let mask = FingerprintMask(&fingerprints);
        let now = jiff::Timestamp::now;
        let ownership = ownership_check(config, &*store, &paced, account, &mask, &now).await?;
        let rights = LiveRights {
            config,
            store: &*store,
        };
        let cutover: Box<dyn Cutover> =
            match gateway::admin_client::AdminClient::from_config(config) {
                Ok(client) => Box::new(client),
                Err(e) => {
                    eprintln!("no gateway has run here ({e}): rotating without a cut-over hold");
                    Box::new(NoGateway)
                }
            };
        let mut hooks: Vec<Box<dyn Hook>> = Vec::new();
        let r = &config.config.rotation;
        if !r.after_switch.is_empty() {
            hooks.push(Box::new(CommandHook::new(r.after_switch.clone())));
        }
        if let Some(url) = &r.after_switch_webhook {
            hooks.push(Box::new(WebhookHook::new(url)));
        }
        let trail = open_trail(config, &*store).await?;
        let clock = governance::clock::SystemClock;
        let say = |line: &str| eprintln!("{line}");
        let rotator = Rotator {
            journal: &journal,
            escrow: &escrow,
            store: &*store,
            trail: &trail,
            fingerprints: &fingerprints,
            redcap: &redcap,
            rights: &rights,
            ownership: &*ownership,
            cutover: &*cutover,
            hooks: &hooks,
            clock: &clock,
            operator: operator.to_string(),
            say: &say,
        };
        let result = f(&rotator).await;
        let closed = trail.close().await;
        let rotation = result?;
        closed?;
        anyhow::Ok(rotation)
    })
}

/// `rotate start` and `rotate run` (`run` refuses the manual issuer).
/// With `emergency`, the account is quarantined first (the gateway refuses
/// its clients from their next request) and stays so.
pub fn start(
    args: &Args,
    account: &str,
    reason: &str,
    issuer_arg: Option<IssuerArg>,
    unattended: bool,
    emergency: bool,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let c = &config.config;
    let Some(acc) = c.account.iter().find(|a| a.name == account) else {
        bail!(
            "no [[account]] named `{account}` in {}; `redcap-warden accounts list` shows them",
            config.path.display()
        );
    };
    let project_id = c
        .study
        .iter()
        .find(|s| s.name == acc.study)
        .and_then(|s| s.project_id);
    let kind = issuer_kind(issuer_arg, c.rotation.issuer);
    if unattended && kind == IssuerKind::Manual {
        bail!(
            "`rotate run` needs an issuer that works without a person (sandbox or command), and the issuer is manual; use `rotate start` (it asks for the token), or give --issuer sandbox|command with its [rotation] settings"
        );
    }
    let issuer = issuer(&config, kind)?;
    let _lock = journal(&config).lock(account)?;
    let plan = Plan {
        account: acc.name.clone(),
        username: acc.username.clone(),
        secret: acc.secret.clone(),
        project_id,
        issuer: kind.as_str().to_string(),
        reason,
        note: super::sop::stale_note(&config),
    };
    let status =
        governance::accounts::AccountStatusFile::new(&gateway::paths::status_file(&config));
    let rotation = with_rotator(&config, &operator, Some(account), async |r| {
        if emergency {
            // Refuse the clients before anything else: the token may be in
            // the wrong hands, and so may the clients' keys.
            status
                .quarantine(
                    &plan.account,
                    &format!("emergency rotation: {}", plan.reason),
                    &operator.to_string(),
                )
                .map_err(|e| {
                    RotationError::Refused(format!(
                        "quarantining `{}` for the emergency rotation: {e}; nothing was rotated",
                        plan.account
                    ))
                })?;
            r.trail
                .record(ledger::EntryKind::Admin {
                    operator: operator.to_string(),
                    action: "quarantine".into(),
                    target: format!("account:{}", plan.account),
                    reason: format!("emergency rotation: {}", plan.reason),
                })
                .await?;
            eprintln!(
                "account `{}` is quarantined: the gateway refuses its clients from their next request",
                plan.account
            );
        }
        let rot = r.plan(plan).await?;
        r.drive(rot, Some(&*issuer)).await
    })?;
    let outcome = report(args, &rotation)?;
    if emergency {
        eprintln!(
            "account `{account}` stays quarantined: check its clients (revoke and reissue their keys with `redcap-warden keys` if they may be compromised), then `redcap-warden accounts release {account} --reason R`"
        );
    }
    Ok(outcome)
}

/// `rotate resume ID`.
pub fn resume(args: &Args, id: &str, issuer_arg: Option<IssuerArg>) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let journal = journal(&config);
    let account = journal.load(id)?.account;
    let _lock = journal.lock(&account)?;
    // Read again under the lock: another process may have moved it on.
    let rot = journal.load(id)?;
    if !rot.state.is_open() {
        eprintln!("rotation {id} has already ended ({})", rot.state);
        return report(args, &rot);
    }
    let default = match rot.issuer.as_str() {
        "sandbox" => IssuerKind::Sandbox,
        "command" => IssuerKind::Command,
        _ => IssuerKind::Manual,
    };
    let issuer = if rot.state == State::Planned {
        Some(issuer(&config, issuer_kind(issuer_arg, default))?)
    } else {
        None
    };
    let rotation = with_rotator(&config, &operator, Some(&account), async |r| {
        r.drive(rot, issuer.as_deref()).await
    })?;
    report(args, &rotation)
}

/// `rotate abort ID --reason R`.
pub fn abort(args: &Args, id: &str, reason: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let journal = journal(&config);
    let account = journal.load(id)?.account;
    let _lock = journal.lock(&account)?;
    let rot = journal.load(id)?;
    let rotation = with_rotator(&config, &operator, None, async |r| {
        r.abort(rot, &reason).await
    })?;
    report(args, &rotation)
}

/// What a rotation came to: JSON (the journal's record: fingerprints
/// only), or a few lines.
pub(super) fn report(args: &Args, rot: &Rotation) -> anyhow::Result<Outcome> {
    if args.json {
        println!("{}", serde_json::to_string(rot)?);
    } else {
        println!(
            "rotation {} of `{}` ({}): {}",
            rot.id, rot.account, rot.username, rot.state
        );
        println!("  {}", rot.detail);
        println!(
            "  old token {} (version {})",
            rot.old_fingerprint, rot.old_version
        );
        if let Some(fp) = &rot.new_fingerprint {
            println!(
                "  new token {fp} (version {})",
                rot.new_version.as_deref().unwrap_or("not stored")
            );
        }
        if let Some(o) = &rot.ownership {
            println!("  ownership: {o}");
        }
        if let Some(p) = &rot.proof {
            println!("  proof: {p}");
        }
    }
    Ok(if rot.state == State::Failed {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `rotate status`: every account's token age and due date, open and last
/// rotations. Exit 1 when a token is overdue.
pub fn status(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rotations = journal(&config).all()?;
    let retired =
        governance::accounts::AccountStatusFile::new(&gateway::paths::status_file(&config))
            .status()?
            .retired;
    let rt = super::runtime()?;
    let now = jiff::Timestamp::now();
    let inventory = rt.block_on(governance::rotation::inventory(
        &config.config.account,
        &*store,
        &rotations,
        now,
    ))?;
    // A retired account is due for nothing.
    let overdue =
        |t: &governance::rotation::TokenStatus| t.overdue && !retired.contains_key(&t.account);
    let overdue_any = inventory.iter().any(overdue);
    let rows: Vec<Value> = inventory
        .iter()
        .map(|t| {
            json!({
                "account": t.account,
                "secret": t.secret,
                "token_version": t.token_version,
                "token_set_at": t.token_set_at.map(|t| t.to_string()),
                "age_days": t.age_days,
                "rotate_every_days": t.rotate_every_days,
                "due": t.due.map(|t| t.to_string()),
                "overdue": overdue(t),
                "open_rotation": t.open_rotation.as_ref().map(|r| json!({"id": r.id, "state": r.state, "since": r.at.to_string(), "detail": r.detail})),
                "last_rotation": t.last_rotation.as_ref().map(|r| json!({"id": r.id, "kind": r.kind, "state": r.state, "at": r.at.to_string(), "proof": r.proof, "ownership": r.ownership})),
                "retired": retired.get(&t.account).map(|r| json!({"since": r.since.to_string(), "by": r.by, "reason": r.reason, "proof": r.proof})),
            })
        })
        .collect();
    if args.json {
        println!("{}", Value::Array(rows));
    } else if rows.is_empty() {
        println!("No [[account]] sections in {}.", config.path.display());
    } else {
        println!(
            "{:<24} {:>4} {:<12} {:<8} {:<36} LAST",
            "ACCOUNT", "AGE", "DUE", "", "OPEN ROTATION"
        );
        for r in &rows {
            let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
            let open = match r["open_rotation"].as_object() {
                Some(o) => format!("{} ({})", s(&o["id"]), s(&o["state"])),
                None => "-".into(),
            };
            let last = match r["last_rotation"].as_object() {
                Some(o) => format!(
                    "{} {} {}",
                    s(&o["id"]),
                    s(&o["state"]),
                    super::short_time(&s(&o["at"]))
                ),
                None => "-".into(),
            };
            let age = r["age_days"]
                .as_i64()
                .map_or("-".to_string(), |d| format!("{d}d"));
            let due = s(&r["due"]);
            println!(
                "{:<24} {:>4} {:<12} {:<8} {:<36} {last}",
                s(&r["account"]),
                age,
                due.get(..10).unwrap_or(&due),
                if r["retired"].is_object() {
                    "RETIRED"
                } else if r["overdue"] == true {
                    "OVERDUE"
                } else {
                    ""
                },
                open,
            );
        }
    }
    Ok(if overdue_any {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// The proof of ownership for `account`'s new token: REDCap's log read
/// through its study's log reader, or unproven (and why) without one.
async fn ownership_check<'a>(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    paced: &super::rights::Paced,
    account: Option<&str>,
    mask: &'a FingerprintMask<'a>,
    now: &'a (dyn Fn() -> jiff::Timestamp + Sync),
) -> anyhow::Result<Box<dyn OwnershipCheck + 'a>> {
    let c = &config.config;
    let unproven = |why: &str| -> anyhow::Result<Box<dyn OwnershipCheck + 'a>> {
        Ok(Box::new(NoLogReader(why.to_string())))
    };
    let Some(account) = account else {
        return unproven("nothing is verified");
    };
    let Some(study) = c
        .account
        .iter()
        .find(|a| a.name == account)
        .and_then(|a| c.study.iter().find(|s| s.name == a.study))
    else {
        return unproven("the account or its study is no longer in warden.toml");
    };
    match &study.log_reader {
        None => {
            unproven("its study has no log_reader to read REDCap's log with (docs/reconcile.md)")
        }
        // Its old token is dead once regenerated, its new one not stored.
        Some(r) if r == account => unproven("it is its study's log reader"),
        Some(_) => {
            let (reader, project) =
                super::reconcile::log_reader_project(config, store, paced, study).await?;
            let username = c
                .account
                .iter()
                .find(|a| a.name == reader)
                .map_or(reader.clone(), |a| a.username.clone());
            Ok(Box::new(LogCorrelation {
                project,
                reader: username,
                time_zone: c.redcap.time_zone().clone(),
                tolerance: jiff::SignedDuration::try_from(c.reconcile.tolerance)
                    .unwrap_or(jiff::SignedDuration::from_secs(60)),
                mask,
                now,
            }))
        }
    }
}

/// The account's live rights and DAG against its profile, read through its
/// study's rights manager — `rights check --account` for one account.
struct LiveRights<'a> {
    config: &'a LoadedConfig,
    store: &'a dyn SecretStore,
}

#[async_trait::async_trait]
impl RightsCheck for LiveRights<'_> {
    async fn verdict(&self, account: &str) -> Result<RightsVerdict, String> {
        let c = &self.config.config;
        let not = |why: &str| Ok(RightsVerdict::NotChecked(why.to_string()));
        let Some(a) = c.account.iter().find(|a| a.name == account) else {
            return not("the account is no longer in warden.toml");
        };
        let Some(study) = c.study.iter().find(|s| s.name == a.study) else {
            return not("its study is no longer in warden.toml");
        };
        match &study.rights_manager {
            None => return not("its study has no rights_manager"),
            // The manager's token is the one being replaced: the old one is
            // dead, the new one not yet stored.
            Some(m) if m == account => {
                return not(
                    "it is its study's rights manager; run `rights check` after the rotation",
                );
            }
            Some(_) => {}
        }
        if a.profile.is_none() {
            return not("it has no profile");
        }
        let (findings, probes) =
            super::rights::account_findings(self.config, self.store, study, account)
                .await
                .map_err(|e| format!("{e:#}"))?;
        // A missing expiration is shown, not held against the token.
        let (findings, notes): (Vec<_>, Vec<_>) =
            findings.into_iter().partition(super::rights::holds_token);
        let probes: Vec<String> = notes
            .iter()
            .map(|f| format!("note: {} {}", f.code, f.detail))
            .chain(probes)
            .collect();
        Ok(if findings.is_empty() {
            RightsVerdict::Clean(probes)
        } else {
            RightsVerdict::Drift(
                findings
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {}: {}",
                            f.severity.to_string().to_uppercase(),
                            f.code,
                            f.detail
                        )
                    })
                    .chain(probes)
                    .collect(),
            )
        })
    }
}

/// A person regenerates the token in REDCap's UI; the token comes from a
/// no-echo prompt on a terminal, otherwise from standard input — never
/// from the command line.
struct Manual {
    redcap_url: String,
}

#[async_trait::async_trait]
impl Issuer for Manual {
    fn name(&self) -> &'static str {
        "manual"
    }

    fn fix(&self) -> String {
        "paste the token REDCap shows after regenerating it".into()
    }

    async fn obtain(&self, t: &Target) -> Result<SecretValue, IssueError> {
        let (steps, verb) = if t.first {
            (
                governance::rotation::manual_create_steps(
                    &self.redcap_url,
                    &t.username,
                    &t.project_id.to_string(),
                ),
                "Create the first",
            )
        } else {
            (
                governance::rotation::issuer::manual_steps(
                    &self.redcap_url,
                    &t.username,
                    &t.project_id.to_string(),
                ),
                "Regenerate the",
            )
        };
        let mut text = format!(
            "\n{verb} API token of REDCap user `{user}` in project {pid} (account `{acc}`):\n",
            user = t.username,
            pid = t.project_id,
            acc = t.account,
        );
        for (n, step) in steps.iter().enumerate() {
            text.push_str(&format!("  {}. {step}\n", n + 1));
        }
        eprintln!("{text}");
        let mut raw = Zeroizing::new(String::new());
        if std::io::stdin().is_terminal() {
            *raw = rpassword::prompt_password(format!(
                "New token for `{}` (not echoed): ",
                t.username
            ))
            .map_err(|e| IssueError(format!("reading the token from the terminal: {e}")))?;
        } else {
            std::io::stdin()
                .read_to_string(&mut raw)
                .map_err(|e| IssueError(format!("reading the token from standard input: {e}")))?;
        }
        let token = raw.trim();
        if token.is_empty() {
            return Err(IssueError("no token was given".into()));
        }
        if token.chars().any(char::is_control) {
            return Err(IssueError(
                "the token contains control characters (a line break inside it?); give it on one line".into(),
            ));
        }
        Ok(SecretValue::new(token.to_string()))
    }
}
