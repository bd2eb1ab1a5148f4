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
pub(super) fn store_and_escrow(
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
    let opened = store_and_escrow(config, &journal)?;
    with_rotator_on(config, operator, account, opened, f)
}

/// [`with_rotator`] on a store and escrow the caller has opened already
/// (`accounts enroll` reads the store before the rotation: a
/// passphrase-protected file store is unlocked once, not once per use).
pub(super) fn with_rotator_on(
    config: &LoadedConfig,
    operator: &Operator,
    account: Option<&str>,
    (store, escrow): (Arc<dyn SecretStore>, Escrow),
    f: impl AsyncFnOnce(&Rotator<'_>) -> Result<Rotation, RotationError>,
) -> anyhow::Result<Rotation> {
    let journal = journal(config);
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
        let cutover = Local {
            gateway: match gateway::admin_client::AdminClient::from_config(config) {
                Ok(client) => Some(client),
                Err(e) => {
                    eprintln!("no gateway has run here ({e}): rotating without a cut-over hold");
                    None
                }
            },
            status: gateway::cluster::status_file(config)?,
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
            cutover: &cutover,
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
    let status = gateway::cluster::status_file(&config)?;
    // A dual pair is rotated as a pair: its standby first, whichever
    // member ACCOUNT names.
    let (rotated, dual) = match (acc.pair_key(), &acc.partner) {
        (Some(pair), Some(partner)) => {
            let active = status
                .status()
                .with_context(|| "reading which member of the dual pair is active")?
                .active_of(&pair);
            let find = |n: &str| c.account.iter().find(|a| a.name == n);
            let (Some(active), Some(standby)) = (
                find(&active),
                find(if active == acc.name {
                    partner
                } else {
                    &acc.name
                }),
            ) else {
                bail!(
                    "the account status file names `{active}` as the active member of pair `{pair}`, which is not an account of the pair in {}; correct [[account]] partner, or the file",
                    config.path.display()
                );
            };
            let dual = governance::rotation::DualPlan {
                pair: pair.clone(),
                account: active.name.clone(),
                username: active.username.clone(),
                secret: active.secret.clone(),
            };
            (standby, Some(dual))
        }
        _ => (acc, None),
    };
    let lock_name = dual.as_ref().map_or(account, |d| d.pair.as_str());
    let _lock = journal(&config).lock(lock_name)?;
    let others = c
        .account
        .iter()
        .filter(|a| {
            a.study == acc.study && a.name != acc.name && acc.partner.as_ref() != Some(&a.name)
        })
        .map(|a| (a.name.clone(), a.secret.clone()))
        .collect();
    let plan = Plan {
        account: rotated.name.clone(),
        username: rotated.username.clone(),
        secret: rotated.secret.clone(),
        project_id,
        issuer: kind.as_str().to_string(),
        reason,
        note: super::sop::stale_note(&config),
        others,
        dual,
    };
    let status = gateway::cluster::status_file(&config)?;
    let rotation = with_rotator(&config, &operator, Some(account), async |r| {
        if emergency {
            // Refuse the clients before anything else: the token may be in
            // the wrong hands, and so may the clients' keys.
            status
                .quarantine(
                    account,
                    &format!("emergency rotation: {}", plan.reason),
                    &operator.to_string(),
                )
                .map_err(|e| {
                    RotationError::Refused(format!(
                        "quarantining `{account}` for the emergency rotation: {e}; nothing was rotated"
                    ))
                })?;
            r.trail
                .record(ledger::EntryKind::Admin {
                    operator: operator.to_string(),
                    action: "quarantine".into(),
                    target: format!("account:{account}"),
                    reason: format!("emergency rotation: {}", plan.reason),
                })
                .await?;
            eprintln!(
                "account `{account}` is quarantined: the gateway refuses its clients from their next request"
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
    let lock_name = journal.load(id)?.lock_name().to_string();
    let _lock = journal.lock(&lock_name)?;
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
    // Planned, or a dual rotation whose second member is still to be
    // regenerated (a token already in escrow is never asked for again).
    let needs_issuer = rot.state == State::Planned
        || (rot.dual.is_some()
            && matches!(
                rot.state,
                State::Obtained | State::Verified | State::Stored | State::Switched
            ));
    let issuer = if needs_issuer {
        Some(issuer(&config, issuer_kind(issuer_arg, default))?)
    } else {
        None
    };
    let account = rot.account.clone();
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
    let lock_name = journal.load(id)?.lock_name().to_string();
    let _lock = journal.lock(&lock_name)?;
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
        if let Some(d) = &rot.dual {
            println!(
                "  dual pair `{}`: `{}` regenerated first, then active; `{}` regenerated second",
                d.pair, d.first.account, d.second.account
            );
            if d.second_leg {
                println!(
                    "  `{}`: old token {}, new token {} (version {})",
                    d.first.account,
                    d.first.old_fingerprint,
                    d.first.new_fingerprint.as_deref().unwrap_or("-"),
                    d.first.new_version.as_deref().unwrap_or("-")
                );
                if let Some(o) = &d.first.ownership {
                    println!("  `{}` ownership: {o}", d.first.account);
                }
            }
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

/// The accounts whose token is past its rotation period at `now`, as
/// `alert` entries (`rotation.overdue`): `serve`'s daily sweep records
/// them, so the webhook and syslog hear of each once a day until it is
/// rotated. An account whose secret cannot be read is an alert too.
pub async fn overdue_alerts(
    config: &LoadedConfig,
    store: &dyn secrets::SecretStore,
    now: jiff::Timestamp,
) -> Vec<ledger::EntryKind> {
    let mut alerts = Vec::new();
    for a in &config.config.account {
        // One account at a time: a secret that cannot be read is that
        // account's alert, not the end of the sweep.
        let message = match governance::rotation::inventory(
            std::slice::from_ref(a),
            store,
            &[],
            now,
        )
        .await
        {
            Ok(rows) => match rows.first() {
                Some(t) if t.overdue => format!(
                    "the token of account `{}` is overdue for rotation: set {}, due {} (every {} days); rotate it with: redcap-warden rotate run {} --reason \"scheduled rotation\"",
                    a.name,
                    t.token_set_at.map(|t| t.to_string()).unwrap_or_default(),
                    t.due.map(|t| t.to_string()).unwrap_or_default(),
                    a.rotate_every_days,
                    a.name
                ),
                _ => continue,
            },
            Err(e) => format!(
                "the rotation due date of account `{}` cannot be read from the secrets store: {e}",
                a.name
            ),
        };
        alerts.push(ledger::EntryKind::Alert {
            code: governance::alerts::ROTATION_OVERDUE.into(),
            message,
        });
    }
    alerts
}

/// `rotate status`: every account's token age and due date, open and last
/// rotations. Exit 1 when a token is overdue.
pub fn status(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rotations = journal(&config).all()?;
    let account_status = gateway::cluster::status_file(&config)?.status()?;
    let retired = &account_status.retired;
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
        .zip(&config.config.account)
        .map(|(t, a)| {
            let pair = a.pair_key().map(|k| {
                let active = account_status.active_of(&k);
                json!({"pair": k, "partner": a.partner, "active": active == a.name})
            });
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
                "mode": a.mode.as_str(),
                "dual": pair,
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

/// The gateway's hold as the running gateway gives it (when one has run
/// here), and a dual pair's active member in the account status file,
/// which the gateway reads on each request.
struct Local {
    gateway: Option<gateway::admin_client::AdminClient>,
    status: governance::accounts::AccountStatusFile,
}

#[async_trait::async_trait]
impl Cutover for Local {
    async fn hold(&self, account: &str, operator: &str, reason: &str) -> Result<String, String> {
        match &self.gateway {
            Some(g) => g.hold(account, operator, reason).await,
            None => NoGateway.hold(account, operator, reason).await,
        }
    }

    async fn release(&self, account: &str, operator: &str, reason: &str) -> Result<String, String> {
        match &self.gateway {
            Some(g) => g.release(account, operator, reason).await,
            None => NoGateway.release(account, operator, reason).await,
        }
    }

    async fn active(&self, pair: &str) -> Result<String, String> {
        self.status
            .status()
            .map(|s| s.active_of(pair))
            .map_err(|e| e.to_string())
    }

    async fn activate(
        &self,
        pair: &str,
        account: &str,
        operator: &str,
        rotation_id: &str,
        reason: &str,
    ) -> Result<String, String> {
        self.status
            .set_active(pair, account, operator, rotation_id)
            .map_err(|e| e.to_string())?;
        let told = match &self.gateway {
            Some(g) => g.announce_active(account, operator, reason).await?,
            None => {
                "no gateway has run here; one started later reads it from the account status file"
                    .into()
            }
        };
        Ok(format!(
            "`{account}` is the active member of pair `{pair}` in {}; {told}",
            self.status.path().display()
        ))
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
                    &t.role,
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrets::{FileStoreOptions, Label, SecretName, VersionMeta};

    #[tokio::test]
    async fn an_overdue_token_is_an_alert_and_a_fresh_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        secrets::file::write_identity_file(
            &dir.path().join("identity.txt"),
            &secrets::file::generate_identity(),
        )
        .unwrap();
        let store = FileStore::create(FileStoreOptions {
            path: dir.path().join("secrets.age"),
            identity: dir.path().join("identity.txt"),
            keep_versions: 3,
        })
        .unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(
            &path,
            r#"
[redcap]
url = "https://redcap.example.org/api/"
time_zone = "UTC"

[[study]]
name = "heart"

[[account]]
name = "heart-etl"
username = "svc_etl"
secret = "redcap/heart/etl"
study = "heart"
rotate_every_days = 30

[[account]]
name = "heart-never-stored"
username = "svc_other"
secret = "redcap/heart/other"
study = "heart"
"#,
        )
        .unwrap();
        let config = warden_config::load(&path).unwrap();
        let now = jiff::Timestamp::now();
        store
            .put(
                &SecretName::new("redcap/heart/etl").unwrap(),
                SecretValue::from("0123456789ABCDEF0123456789ABCDEF".to_string()),
                VersionMeta {
                    operator: "test".into(),
                    at: now,
                    reason: "t".into(),
                    fingerprint: None,
                    rotation_id: None,
                },
                Label::Current,
            )
            .await
            .unwrap();
        assert!(overdue_alerts(&config, &store, now).await.is_empty());
        let later = now + jiff::SignedDuration::from_hours(24 * 31);
        let alerts = overdue_alerts(&config, &store, later).await;
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let ledger::EntryKind::Alert { code, message } = &alerts[0] else {
            panic!("{alerts:?}");
        };
        assert_eq!(code, governance::alerts::ROTATION_OVERDUE);
        assert!(
            message.contains("`heart-etl`") && message.contains("every 30 days"),
            "{message}"
        );
        assert!(!message.contains("0123456789ABCDEF0123456789ABCDEF"));
    }
}
