//! `rights check | plan | apply`: live REDCap rights of the governed
//! accounts compared with their profiles, and brought back within them
//! (the logic is `governance::rights`; this file reads REDCap, writes the
//! ledger and prints).
//!
//! Each study is read through its rights manager's token: Export Users,
//! the user-role assignments and the DAGs. A check adds the findings that
//! need more than that: the administrator probe (a site account's own
//! token), token fingerprints (the secrets store), sites sharing a user.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use governance::redcap::client::{Client, Format, OutboundLimiter, Project, RoleAssignment};
use governance::redcap::rights::FormRightsEncoding;
use governance::rights::{
    self, AccountPlan, Finding, Governed, LiveDag, LiveProject, PlanBlocked, SiteBinding,
};
use ledger::EntryKind;
use secrets::{FingerprintKey, Label, SecretStore, Selector};
use serde_json::{Map, Value, json};
use warden_config::{AccountSection, Config, LoadedConfig, StudySection};

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// The gateway's outbound window, in this process: the few calls of a
/// check stay under `[gateway] outbound_per_minute` (a running gateway
/// keeps its own window; REDCap counts both, so keep the setting well
/// under its threshold).
#[derive(Clone)]
pub(super) struct Paced(Arc<gateway::upstream::Limiter>);

impl OutboundLimiter for Paced {
    async fn acquire(&self) -> bool {
        self.0.acquire().await
    }
}

impl Paced {
    pub(super) fn for_config(c: &Config) -> Paced {
        Paced(Arc::new(gateway::upstream::Limiter::new(
            c.gateway.outbound_per_minute,
            Duration::from_secs(60),
        )))
    }
}

/// One study's result.
struct StudyResult {
    study: String,
    findings: Vec<Finding>,
    probes: Vec<String>,
}

/// A study's findings, and the calls made with governed accounts' own
/// tokens to find them (recorded in the ledger, so that reconciling
/// REDCap's log finds each of them there).
struct Checked {
    findings: Vec<Finding>,
    probes: Vec<String>,
}

/// The studies `--study` / `--account` select, checked against the file.
fn select<'c>(
    config: &'c LoadedConfig,
    study: Option<&str>,
    account: Option<&str>,
) -> anyhow::Result<Vec<&'c StudySection>> {
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
    Ok(studies)
}

/// `rights check`: findings, one `rights` ledger entry per study with
/// their digest; exit 0 clean, 1 findings.
pub fn check(args: &Args, study: Option<&str>, account: Option<&str>) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let results = check_and_record(&config, &*store, &operator, study, account)?;
    print_findings(args, &results);
    Ok(outcome(results.iter().all(|r| r.findings.is_empty())))
}

/// `rights check`'s findings per study, for the report: the same check,
/// recorded the same way.
pub(super) fn studies_checked(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    operator: &Operator,
) -> anyhow::Result<Vec<governance::report::StudyRights>> {
    Ok(check_and_record(config, store, operator, None, None)?
        .into_iter()
        .map(|r| governance::report::StudyRights {
            study: r.study,
            findings: r.findings,
        })
        .collect())
}

/// Checks the studies `study` / `account` select and records one `rights`
/// entry per study (the probes made with governed accounts' tokens
/// named in it).
fn check_and_record(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    operator: &Operator,
    study: Option<&str>,
    account: Option<&str>,
) -> anyhow::Result<Vec<StudyResult>> {
    let studies = select(config, study, account)?;
    let rt = super::runtime()?;
    let paced = Paced::for_config(&config.config);
    let mut results = Vec::new();
    for s in &studies {
        let checked = rt.block_on(async {
            let read = StudyRead::open(config, store, &paced, s).await?;
            read.findings(config, store, &paced, account).await
        })?;
        results.push(StudyResult {
            study: s.name.clone(),
            findings: checked.findings,
            probes: checked.probes,
        });
    }
    let trail = rt.block_on(crate::store::open_trail(config, store))?;
    rt.block_on(async {
        for r in &results {
            trail
                .record(EntryKind::Rights {
                    operator: operator.to_string(),
                    account: account.unwrap_or("*").to_string(),
                    project: r.study.clone(),
                    changes: std::iter::once(format!(
                        "check: {} finding(s), digest sha256:{}",
                        r.findings.len(),
                        rights::digest(&r.findings)
                    ))
                    .chain(r.probes.iter().cloned())
                    .collect(),
                    reason: "rights check (read only; nothing changed in REDCap)".into(),
                })
                .await?;
            // Critical findings are an alert too: to the webhook and
            // syslog as well as the ledger (docs/alerts.md).
            let critical: Vec<String> = r
                .findings
                .iter()
                .filter(|f| f.severity == rights::Severity::Critical)
                .map(|f| {
                    format!(
                        "{} {}: {}",
                        f.account.as_deref().unwrap_or(&f.username),
                        f.code,
                        f.detail
                    )
                })
                .collect();
            if !critical.is_empty() {
                trail
                    .record(EntryKind::Alert {
                        code: governance::alerts::RIGHTS_CRITICAL.into(),
                        message: format!(
                            "rights check of study `{}` found {} critical finding(s): {}; see them with: redcap-warden rights check --study {}",
                            r.study,
                            critical.len(),
                            critical.join("; "),
                            r.study
                        ),
                    })
                    .await?;
            }
        }
        trail.close().await
    })?;
    Ok(results)
}

fn outcome(clean: bool) -> Outcome {
    if clean {
        Outcome::Clean
    } else {
        Outcome::Findings
    }
}

fn print_findings(args: &Args, results: &[StudyResult]) {
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
            println!("  {}", finding_line(f));
        }
    }
}

fn finding_line(f: &Finding) -> String {
    let who = match (&f.account, f.username.is_empty(), &f.site) {
        (Some(a), false, _) => format!("{a} ({})", f.username),
        (None, false, _) => format!("(no account) ({})", f.username),
        (_, true, Some(site)) => format!("site {site}"),
        _ => "(study)".into(),
    };
    format!(
        "{:<8} {who}: {}: {} — {}",
        f.severity.to_string().to_uppercase(),
        f.code,
        f.detail,
        f.risk
    )
}

/// A study read through its rights manager.
struct StudyRead<'c> {
    study: &'c StudySection,
    manager: &'c AccountSection,
    project: Project<Paced>,
    live: LiveProject,
    /// The study's accounts with a profile (the rights manager always has
    /// one), with what `governance::rights` needs of them.
    governed: Vec<(&'c AccountSection, Governed)>,
}

impl<'c> StudyRead<'c> {
    async fn open(
        config: &'c LoadedConfig,
        store: &dyn SecretStore,
        paced: &Paced,
        study: &'c StudySection,
    ) -> anyhow::Result<StudyRead<'c>> {
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
        let token = account_token(store, manager, "rights manager").await?;
        let project = Client::new(c.redcap.url())?
            .with_limiter(paced.clone())
            .project(token);
        let mut governed = Vec::new();
        for a in c.account.iter().filter(|a| a.study == study.name) {
            let profile_name = match (&a.profile, a.name == manager.name) {
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
            governed.push((
                a,
                Governed {
                    account: a.name.clone(),
                    username: a.username.clone(),
                    site,
                    profile,
                },
            ));
        }
        let mut read = StudyRead {
            study,
            manager,
            project,
            live: LiveProject::default(),
            governed,
        };
        read.live = read.read_live().await?;
        Ok(read)
    }

    /// A read the rights manager's token was refused: REDCap's message and
    /// what its REDCap user needs.
    fn read_refused(&self, method: &str, e: governance::redcap::client::Error) -> anyhow::Error {
        use governance::redcap::client::Error;
        let m = self.manager;
        let fix = match &e {
            Error::NoApiRight { .. } | Error::Privilege { .. } => format!(
                "; fix: give REDCap user `{}` API Export, User Rights (Full access to apply, Read-only to check) and the Data Access Groups right, and no DAG — the built-in profile rights-manager",
                m.username
            ),
            Error::Expired { .. } => format!(
                "; fix: extend the project expiration of REDCap user `{}`",
                m.username
            ),
            Error::InvalidToken => format!(
                "; fix: store the rights manager's current token under {} (`secrets put`)",
                m.secret
            ),
            _ => String::new(),
        };
        anyhow::anyhow!("{}: {e}{fix}", self.what(method))
    }

    fn what(&self, method: &str) -> String {
        format!(
            "{method} with the token of rights manager `{}`",
            self.manager.name
        )
    }

    /// Export Users, the user-role assignments and the DAGs.
    async fn read_live(&self) -> anyhow::Result<LiveProject> {
        let users: Vec<Map<String, Value>> = serde_json::from_str(
            &self
                .project
                .export_users_raw(Format::Json)
                .await
                .map_err(|e| self.read_refused("Export Users", e))?,
        )
        .with_context(|| self.what("reading Export Users' JSON"))?;
        let roles = self
            .project
            .export_user_role_assignments()
            .await
            .map_err(|e| self.read_refused("Export User-Role Assignments", e))?;
        let dags = self
            .project
            .export_dags()
            .await
            .map_err(|e| self.read_refused("Export DAGs", e))?;
        Ok(LiveProject {
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
        })
    }

    /// Every finding of the study (`only`: one account's).
    async fn findings(
        &self,
        config: &LoadedConfig,
        store: &dyn SecretStore,
        paced: &Paced,
        only: Option<&str>,
    ) -> anyhow::Result<Checked> {
        let mut findings = Vec::new();
        let mut probes = Vec::new();
        for (a, g) in &self.governed {
            if only.is_some_and(|o| o != a.name) {
                continue;
            }
            findings.extend(
                rights::check_account(g, &self.live)
                    .with_context(|| format!("reading the rights of `{}`", a.username))?,
            );
            if let Some(answer) = self.administrator_probe(config, store, paced, a).await? {
                probes.push(format!(
                    "probe: Export DAGs with the token of `{}` (administrator test; {})",
                    a.name,
                    if answer.is_some() {
                        "answered"
                    } else {
                        "refused"
                    }
                ));
                if let Some(evidence) = answer {
                    findings.push(rights::administrator(g, &evidence));
                }
            }
        }
        // UI use by the API-only accounts, from REDCap's log (#11 item 6).
        findings.extend(
            super::reconcile::api_only_findings(config, store, paced, self.study, only).await?,
        );
        if only.is_some() {
            return Ok(Checked { findings, probes });
        }
        let usernames: Vec<&str> = config
            .config
            .account
            .iter()
            .filter(|a| a.study == self.study.name)
            .map(|a| a.username.as_str())
            .collect();
        findings.extend(rights::ungoverned(&usernames, &self.live));
        let sites: Vec<SiteBinding> = self
            .study
            .site
            .iter()
            .map(|s| SiteBinding {
                name: s.name.clone(),
                dag_id: s.dag_id,
                dag_name: s.dag_name.clone(),
            })
            .collect();
        findings.extend(rights::renamed_dags(&sites, &self.live));
        let governed: Vec<Governed> = self.governed.iter().map(|(_, g)| g.clone()).collect();
        findings.extend(rights::shared_accounts(&governed));
        findings.extend(self.shared_tokens(config, store).await?);
        Ok(Checked { findings, probes })
    }

    /// Two sites holding one token, by fingerprint under the
    /// installation's key: values are never compared outside the store's
    /// keyed hash, nor shown.
    async fn shared_tokens(
        &self,
        config: &LoadedConfig,
        store: &dyn SecretStore,
    ) -> anyhow::Result<Vec<Finding>> {
        let site_accounts: Vec<&AccountSection> = config
            .config
            .account
            .iter()
            .filter(|a| a.study == self.study.name && a.site.is_some())
            .collect();
        if site_accounts.len() < 2 {
            return Ok(Vec::new());
        }
        let key = FingerprintKey::load(store).await.with_context(|| {
            format!("reading the fingerprint key `{}` (was the store set up with `redcap-warden init`?)", secrets::FINGERPRINT_KEY_SECRET)
        })?;
        let mut held = Vec::new();
        for a in site_accounts {
            match store.get(&a.secret, &Selector::Label(Label::Current)).await {
                Ok(secret) => held.push((a, key.fingerprint(&secret.value))),
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
            .map(|(a, fingerprint)| rights::SiteToken {
                account: &a.name,
                username: &a.username,
                site: a.site.as_deref().unwrap_or_default(),
                fingerprint,
            })
            .collect();
        Ok(rights::shared_tokens(&sites))
    }

    /// Whether REDCap treats `account` as an administrator. Administrators
    /// are not visible through the API (§8.2), but they bypass rights and
    /// DAGs (§1.7) — the same bypass the gateway's DAG guard sees when a
    /// DAG-bound account gets the DAG column back. The probe asks for the
    /// project's DAGs with the account's own token, when Export Users says
    /// REDCap must refuse that (the user is in a DAG, or lacks the DAG
    /// right): an answer instead of a refusal is the bypass. No record is
    /// read. An account whose rights allow Export DAGs (the rights
    /// manager) cannot be told apart this way and is not probed.
    /// `None`: no call made; `Some(None)`: refused; `Some(Some(why))`:
    /// answered, an administrator.
    async fn administrator_probe(
        &self,
        config: &LoadedConfig,
        store: &dyn SecretStore,
        paced: &Paced,
        account: &AccountSection,
    ) -> anyhow::Result<Option<Option<String>>> {
        let Some(row) = self.live.users.iter().find(|r| {
            r.get("username")
                .and_then(governance::redcap::rights::wire_text)
                .is_some_and(|u| u.eq_ignore_ascii_case(&account.username))
        }) else {
            return Ok(None);
        };
        let user = governance::redcap::UserRights::from_json(row)
            .with_context(|| format!("reading the rights of `{}`", account.username))?;
        let in_dag = user.data_access_group_id.is_some();
        if !in_dag && user.rights.data_access_groups {
            return Ok(None);
        }
        let token = match store
            .get(&account.secret, &Selector::Label(Label::Current))
            .await
        {
            Ok(_) => account_token(store, account, "account").await?,
            Err(secrets::StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "reading the token of `{}` (secret {})",
                    account.name, account.secret
                )));
            }
        };
        let probe = Client::new(config.config.redcap.url())?
            .with_limiter(paced.clone())
            .project(token);
        use governance::redcap::client::Error;
        match probe.export_dags().await {
            Ok(_) => Ok(Some(Some(format!(
                "REDCap answered Export DAGs to its token although Export Users shows it {}",
                if in_dag {
                    "in a Data Access Group"
                } else {
                    "without the DAG right"
                }
            )))),
            // Any refusal shows REDCap applies its rights: administrators
            // are never refused.
            Err(
                Error::InvalidToken
                | Error::NoApiRight { .. }
                | Error::Expired { .. }
                | Error::Privilege { .. }
                | Error::BadRequest { .. },
            ) => Ok(Some(None)),
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "probing whether `{}` is a REDCap administrator (Export DAGs with its own token)",
                account.name
            ))),
        }
    }

    /// The instruments and the form-rights encoding of the project's
    /// REDCap version (for complete `forms` maps in its own numbers).
    async fn instruments(&self) -> anyhow::Result<(Vec<String>, FormRightsEncoding)> {
        let instruments = self
            .project
            .export_instruments()
            .await
            .map_err(|e| self.read_refused("Export Instruments", e))?
            .into_iter()
            .map(|i| i.instrument_name)
            .collect();
        let version = self
            .project
            .version()
            .await
            .map_err(|e| self.read_refused("Export REDCap Version", e))?;
        Ok((instruments, FormRightsEncoding::for_version(version)))
    }

    /// The plan for each governed account (`only`: one), the rights
    /// manager last (lowering its own rights first would stop the rest).
    fn plans(
        &self,
        instruments: &[String],
        encoding: FormRightsEncoding,
        only: Option<&str>,
    ) -> Vec<(&'c AccountSection, Result<AccountPlan, PlanBlocked>)> {
        let mut out: Vec<_> = self
            .governed
            .iter()
            .filter(|(a, _)| only.is_none_or(|o| o == a.name))
            .map(|(a, g)| {
                let shared = self.governed.iter().find(|(b, h)| {
                    b.name != a.name
                        && h.site.is_some()
                        && g.site.is_some()
                        && h.site != g.site
                        && h.username.eq_ignore_ascii_case(&g.username)
                });
                let plan = match shared {
                    Some((b, _)) => Err(PlanBlocked::SharedUser(b.name.clone())),
                    None => rights::plan_account(g, &self.live, instruments, encoding),
                };
                (*a, plan)
            })
            .collect();
        out.sort_by_key(|(a, _)| a.name == self.manager.name);
        out
    }
}

/// An account's current token, parsed (never shown).
pub(super) async fn account_token(
    store: &dyn SecretStore,
    account: &AccountSection,
    role: &str,
) -> anyhow::Result<governance::redcap::Token> {
    let secret = store
        .get(&account.secret, &Selector::Label(Label::Current))
        .await
        .with_context(|| {
            format!(
                "reading the token of {role} `{}` (secret {})",
                account.name, account.secret
            )
        })?;
    governance::redcap::Token::parse(secret.value.expose()).with_context(|| {
        format!(
            "the secret {} of {role} `{}` is not a REDCap token",
            account.secret, account.name
        )
    })
}

/// A plan's output for one study.
struct PlanResult {
    study: String,
    plans: Vec<AccountPlan>,
    blocked: Vec<(String, String)>,
    /// Findings `apply` does not fix (they need a person).
    unfixed: Vec<Finding>,
    /// The administrator probe's calls (see [`Checked`]).
    probes: Vec<String>,
}

/// `rights plan`: the per-field changes `apply` would make, and the
/// findings it would leave; exit 0 when there is nothing to do.
pub fn plan(args: &Args, study: Option<&str>, account: Option<&str>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let studies = select(&config, study, account)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let paced = Paced::for_config(&config.config);
    let mut results = Vec::new();
    for s in &studies {
        results.push(rt.block_on(async {
            let read = StudyRead::open(&config, &*store, &paced, s).await?;
            let checked = read.findings(&config, &*store, &paced, account).await?;
            let (instruments, encoding) = read.instruments().await?;
            let mut result = PlanResult {
                study: s.name.clone(),
                plans: Vec::new(),
                blocked: Vec::new(),
                unfixed: checked
                    .findings
                    .into_iter()
                    .filter(|f| !f.fixed_by_apply())
                    .collect(),
                probes: checked.probes,
            };
            for (a, p) in read.plans(&instruments, encoding, account) {
                match p {
                    Ok(p) if p.is_empty() => {}
                    Ok(p) => result.plans.push(p),
                    Err(e) => result.blocked.push((a.name.clone(), e.to_string())),
                }
            }
            anyhow::Ok(result)
        })?);
    }
    record_probes(args, &config, &*store, &rt, &results, "rights plan")?;
    let clean = results
        .iter()
        .all(|r| r.plans.is_empty() && r.blocked.is_empty() && r.unfixed.is_empty());
    if args.json {
        let out: Vec<Value> = results.iter().map(plan_json).collect();
        println!("{}", Value::Array(out));
    } else {
        for r in &results {
            print_plan(r, "to change");
        }
    }
    Ok(outcome(clean))
}

fn plan_json(r: &PlanResult) -> Value {
    json!({
        "study": r.study,
        "plans": r.plans,
        "blocked": r.blocked.iter().map(|(a, why)| json!({"account": a, "why": why})).collect::<Vec<_>>(),
        "unfixed": r.unfixed,
    })
}

fn print_plan(r: &PlanResult, verb: &str) {
    if r.plans.is_empty() && r.blocked.is_empty() && r.unfixed.is_empty() {
        println!(
            "study `{}`: nothing to change; every governed account is within its profile",
            r.study
        );
        return;
    }
    println!("study `{}`: {} account(s) {verb}", r.study, r.plans.len());
    for p in &r.plans {
        println!("  {} ({}):", p.account, p.username);
        for c in &p.changes {
            println!("    {c}");
        }
    }
    for (a, why) in &r.blocked {
        println!("  {a}: cannot be planned for: {why}");
    }
    if !r.unfixed.is_empty() {
        println!("  left for a person (apply does not change these):");
        for f in &r.unfixed {
            println!("    {}", finding_line(f));
        }
    }
}

/// `rights apply`: makes each plan in REDCap — a role removed first
/// through `userRoleMapping`, then one Import Users row with complete
/// `forms` / `forms_export` maps and always `data_access_group` — reads
/// back to confirm, and records one `rights` entry per account (operator,
/// reason, every `name: before -> after`). Ungoverned users are reported,
/// never touched. Exit 0 when the study is then clean, 1 when findings
/// remain (those that need a person), 2 on error.
pub fn apply(
    args: &Args,
    reason: &str,
    study: Option<&str>,
    account: Option<&str>,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let studies = select(&config, study, account)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let paced = Paced::for_config(&config.config);
    // The ledger is opened before REDCap is touched: a change that could
    // not be recorded is not made.
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    let mut results = Vec::new();
    let mut failure = None;
    for s in &studies {
        let done = rt.block_on(apply_study(
            &config, &*store, &paced, &trail, s, account, &operator, &reason,
        ));
        match done {
            Ok(r) => results.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    rt.block_on(trail.close())?;
    if let Some(e) = failure {
        return Err(e);
    }
    let clean = results
        .iter()
        .all(|r| r.blocked.is_empty() && r.unfixed.is_empty());
    if args.json {
        let out: Vec<Value> = results.iter().map(plan_json).collect();
        println!("{}", Value::Array(out));
    } else {
        for r in &results {
            print_plan(r, "changed");
        }
    }
    Ok(outcome(clean))
}

#[allow(clippy::too_many_arguments)]
async fn apply_study(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    paced: &Paced,
    trail: &governance::audit::AuditTrail,
    study: &StudySection,
    only: Option<&str>,
    operator: &Operator,
    reason: &str,
) -> anyhow::Result<PlanResult> {
    let read = StudyRead::open(config, store, paced, study).await?;
    let (instruments, encoding) = read.instruments().await?;
    let mut applier = Applier {
        read,
        trail,
        operator,
        reason,
        instruments,
        encoding,
    };
    let mut result = PlanResult {
        study: study.name.clone(),
        plans: Vec::new(),
        blocked: Vec::new(),
        unfixed: Vec::new(),
        probes: Vec::new(),
    };
    let accounts: Vec<&AccountSection> = applier
        .read
        .plans(&applier.instruments, encoding, only)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for a in accounts {
        match applier.account(a).await? {
            Applied::Nothing => {}
            Applied::Blocked(why) => result.blocked.push((a.name.clone(), why)),
            Applied::Done(plan) => result.plans.push(plan),
        }
    }
    // What is left needs a person: findings apply does not fix.
    let checked = applier.read.findings(config, store, paced, only).await?;
    result.unfixed = checked.findings;
    if !checked.probes.is_empty() {
        trail
            .record(EntryKind::Rights {
                operator: operator.to_string(),
                account: only.unwrap_or("*").to_string(),
                project: study.name.clone(),
                changes: checked.probes,
                reason: "rights apply: the check after it (read only)".into(),
            })
            .await?;
    }
    Ok(result)
}

/// What `apply` did to one account.
enum Applied {
    /// It was within its profile.
    Nothing,
    /// It could not be planned for (the reason).
    Blocked(String),
    /// Its changes were made, confirmed and recorded.
    Done(AccountPlan),
}

/// `apply` in one study: what every account's change needs.
struct Applier<'c, 't> {
    read: StudyRead<'c>,
    trail: &'t governance::audit::AuditTrail,
    operator: &'t Operator,
    reason: &'t str,
    instruments: Vec<String>,
    encoding: FormRightsEncoding,
}

impl Applier<'_, '_> {
    /// The plan for `account` on what REDCap reports now (an earlier
    /// account's import, or a role removal, may have changed it).
    fn plan(&self, account: &AccountSection) -> Option<Result<AccountPlan, PlanBlocked>> {
        self.read
            .plans(&self.instruments, self.encoding, Some(&account.name))
            .pop()
            .map(|(_, p)| p)
    }

    /// Plans, changes, reads back and records one account. Whatever was
    /// changed in REDCap is recorded even when a later step fails.
    async fn account(&mut self, a: &AccountSection) -> anyhow::Result<Applied> {
        let plan = match self.plan(a) {
            None => return Ok(Applied::Nothing),
            Some(Ok(p)) if p.is_empty() => return Ok(Applied::Nothing),
            Some(Ok(p)) => p,
            Some(Err(e)) => return Ok(Applied::Blocked(e.to_string())),
        };
        let mut made = Vec::new();
        match self.change(a, plan, &mut made).await {
            Ok(plan) => {
                let lines = made.iter().map(|c| c.to_string()).collect();
                record(
                    self.trail,
                    self.read.study,
                    a,
                    self.operator,
                    self.reason,
                    lines,
                )
                .await?;
                Ok(Applied::Done(plan))
            }
            Err(e) if made.is_empty() => Err(e),
            Err(e) => {
                let mut lines: Vec<String> = made.iter().map(|c| c.to_string()).collect();
                lines.push(format!("stopped, not confirmed: {e:#}"));
                record(
                    self.trail,
                    self.read.study,
                    a,
                    self.operator,
                    self.reason,
                    lines,
                )
                .await?;
                Err(e.context("the changes made before this are recorded in the ledger"))
            }
        }
    }

    /// The REDCap side of [`Applier::account`]: `made` collects each
    /// change once REDCap has taken it.
    async fn change(
        &mut self,
        a: &AccountSection,
        mut plan: AccountPlan,
        made: &mut Vec<rights::Change>,
    ) -> anyhow::Result<AccountPlan> {
        let manager = self.read.manager;
        let refused =
            |method: &str, e: governance::redcap::client::Error| refusal(manager, a, method, e);
        if let Some(role) = plan.role.clone() {
            // A role member's rights are the role's and Import Users
            // refuses them (§4.7): leave the role first, then plan again
            // on the user's own rights.
            self.read
                .project
                .import_user_role_assignments(&[RoleAssignment {
                    username: a.username.clone(),
                    unique_role_name: String::new(),
                }])
                .await
                .map_err(|e| refused("Import User-Role Assignments", e))?;
            made.extend(plan.changes.iter().filter(|c| c.field == "role").cloned());
            self.read.live = self.read.read_live().await?;
            plan = match self.plan(a) {
                Some(Ok(p)) => p,
                Some(Err(e)) => bail!("`{}` left role {role}, but then: {e}", a.name),
                None => bail!("`{}` left role {role} and is no longer governed", a.name),
            };
        }
        if !plan.is_empty() {
            self.read
                .project
                .import_users(std::slice::from_ref(&plan.row))
                .await
                .map_err(|e| refused("Import Users", e))?;
            made.extend(plan.changes.iter().cloned());
            self.read.live = self.read.read_live().await?;
        }
        // Read back: the account must now need nothing more.
        match self.plan(a) {
            Some(Ok(p)) if p.is_empty() => {}
            Some(Ok(p)) => bail!(
                "REDCap took the import for `{}` but reading it back still shows: {}; run `rights check` and look at the user in REDCap",
                a.name,
                p.changes
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Some(Err(e)) => bail!("reading `{}` back: {e}", a.name),
            None => bail!("reading `{}` back: it is no longer governed", a.name),
        }
        plan.changes = made.clone();
        Ok(plan)
    }
}

/// One `rights` entry per study naming the administrator probe's calls
/// of a read-only command (`plan`).
fn record_probes(
    args: &Args,
    config: &LoadedConfig,
    store: &dyn SecretStore,
    rt: &tokio::runtime::Runtime,
    results: &[PlanResult],
    command: &str,
) -> anyhow::Result<()> {
    if results.iter().all(|r| r.probes.is_empty()) {
        return Ok(());
    }
    let operator = Operator::current(args.operator.as_deref())?;
    let trail = rt.block_on(crate::store::open_trail(config, store))?;
    rt.block_on(async {
        for r in results.iter().filter(|r| !r.probes.is_empty()) {
            trail
                .record(EntryKind::Rights {
                    operator: operator.to_string(),
                    account: "*".into(),
                    project: r.study.clone(),
                    changes: r.probes.clone(),
                    reason: format!("{command} (read only; nothing changed in REDCap)"),
                })
                .await?;
        }
        trail.close().await?;
        anyhow::Ok(())
    })
}

async fn record(
    trail: &governance::audit::AuditTrail,
    study: &StudySection,
    account: &AccountSection,
    operator: &Operator,
    reason: &str,
    changes: Vec<String>,
) -> anyhow::Result<()> {
    trail
        .record(EntryKind::Rights {
            operator: operator.to_string(),
            account: account.name.clone(),
            project: study.name.clone(),
            changes,
            reason: reason.to_string(),
        })
        .await
        .with_context(|| {
            format!(
                "the rights of `{}` were changed in REDCap but the ledger entry could not be written; record it by hand and check the ledger",
                account.name
            )
        })
}

/// REDCap refused a write: its own message, and what to change.
fn refusal(
    manager: &AccountSection,
    account: &AccountSection,
    method: &str,
    e: governance::redcap::client::Error,
) -> anyhow::Error {
    use governance::redcap::client::Error;
    let fix = match &e {
        Error::NoApiRight { .. } | Error::Privilege { .. } => format!(
            "fix: give REDCap user `{}` (rights manager `{}`) API Import and User Rights = Full access (1) in the project's User Rights page — the built-in profile rights-manager",
            manager.username, manager.name
        ),
        Error::Expired { .. } => format!(
            "fix: extend the project expiration of REDCap user `{}` (rights manager `{}`)",
            manager.username, manager.name
        ),
        Error::InvalidToken => format!(
            "fix: store the rights manager's current token under {} (`secrets put`)",
            manager.secret
        ),
        _ => "fix: see REDCap's message; nothing else was changed for this account".into(),
    };
    let said = e
        .redcap_message()
        .map(|m| format!("REDCap said: {m}"))
        .unwrap_or_else(|| e.to_string());
    anyhow::anyhow!(
        "{method} for `{}` with the token of rights manager `{}` failed. {said}; {fix}",
        account.name,
        manager.name
    )
}

/// One account's findings as `rights check --account` finds them, and the
/// administrator probe's calls made to find them (for the caller's ledger
/// entry): `rotate` verifies a new token's account with it.
pub(super) async fn account_findings(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    study: &StudySection,
    account: &str,
) -> anyhow::Result<(Vec<Finding>, Vec<String>)> {
    let paced = Paced::for_config(&config.config);
    let read = StudyRead::open(config, store, &paced, study).await?;
    let checked = read.findings(config, store, &paced, Some(account)).await?;
    Ok((checked.findings, checked.probes))
}

/// `accounts enroll`'s first step for `account`: add its REDCap user to
/// the project if it is not in it (one Import Users row with no rights and
/// the site's DAG — `data_access_group` always given), bring its rights
/// within its profile as `rights apply --account` does, and prove it as
/// `rights check --account` does. Every change is a `rights` entry
/// (operator, reason). Returns what was done and the findings left (none:
/// the profile is proved).
pub(super) async fn enrol(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    trail: &governance::audit::AuditTrail,
    study: &StudySection,
    account: &AccountSection,
    operator: &Operator,
    reason: &str,
) -> anyhow::Result<(Vec<String>, Vec<Finding>)> {
    if account.profile.is_none() {
        bail!(
            "`accounts enroll` applies the account's profile, and `{}` has none; add profile = \"NAME\" to its [[account]] (docs/rights.md)",
            account.name
        );
    }
    let paced = Paced::for_config(&config.config);
    let read = StudyRead::open(config, store, &paced, study).await?;
    let manager = read.manager;
    let (instruments, encoding) = read.instruments().await?;
    let mut applier = Applier {
        read,
        trail,
        operator,
        reason,
        instruments,
        encoding,
    };
    let mut done = Vec::new();
    let member = applier.read.live.users.iter().any(|r| {
        r.get("username")
            .and_then(governance::redcap::rights::wire_text)
            .is_some_and(|u| u.eq_ignore_ascii_case(&account.username))
    });
    // A member in a role leaves it first, and rights beyond the profile
    // come down — what `rights apply` does.
    if member {
        match applier.account(account).await? {
            Applied::Nothing => {}
            Applied::Blocked(why) => {
                bail!("the profile of `{}` cannot be applied: {why}", account.name)
            }
            Applied::Done(plan) => done.extend(plan.changes.iter().map(|c| c.to_string())),
        }
    }
    // Then exactly the profile (the user added to the project if it is
    // not in it), DAG included.
    let governed = applier
        .read
        .governed
        .iter()
        .find(|(a, _)| a.name == account.name)
        .map(|(_, g)| g.clone())
        .context("the account is governed (it has a profile)")?;
    let plan = rights::enrolment_row(
        &governed,
        &applier.read.live,
        &applier.instruments,
        applier.encoding,
    )?;
    if !plan.is_empty() {
        applier
            .read
            .project
            .import_users(std::slice::from_ref(&plan.row))
            .await
            .map_err(|e| refusal(manager, account, "Import Users (the profile)", e))?;
        let mut lines: Vec<String> = Vec::new();
        if !member {
            lines.push("user: added to the project".into());
        }
        lines.extend(plan.changes.iter().map(|c| c.to_string()));
        record(trail, study, account, operator, reason, lines.clone()).await?;
        done.extend(lines);
        applier.read.live = applier.read.read_live().await?;
    }
    if done.is_empty() {
        done.push("rights and DAG already exactly its profile".into());
    }
    let checked = applier
        .read
        .findings(config, store, &paced, Some(&account.name))
        .await?;
    let mut changes = checked.probes;
    changes.push(format!(
        "rights check --account {}: {} finding(s)",
        account.name,
        checked.findings.len()
    ));
    trail
        .record(EntryKind::Rights {
            operator: operator.to_string(),
            account: account.name.clone(),
            project: study.name.clone(),
            changes,
            reason: format!(
                "accounts enroll: the check after applying the profile (read only); {reason}"
            ),
        })
        .await?;
    Ok((done, checked.findings))
}

/// A finding as `rights check` prints it.
pub(super) fn finding_text(f: &Finding) -> String {
    finding_line(f)
}

/// Whether `f` keeps a token from being obtained or stored for its
/// account (enrolment, rotation): every finding does but a missing
/// project expiration — not a right beyond the profile, and one that
/// re-authorisation sets (`reauth`); it is shown, not held against the
/// token.
pub(super) fn holds_token(f: &Finding) -> bool {
    f.code != "no-expiration"
}
