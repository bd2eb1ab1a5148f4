//! The driver: one function per state, each ending in a durable journal
//! record and a ledger entry before the next external step.

use secrets::{
    FingerprintKey, Label, SecretName, SecretStore, SecretValue, Selector, StoreError, VersionId,
    VersionMeta,
};

use super::escrow::Escrow;
use super::hooks::{Hook, Switched};
use super::issuer::{Issuer, Role, Target};
use super::journal::Journal;
use super::ownership::{LogCalls, Ownership, OwnershipCheck};
use super::probe::{RightsCheck, RightsVerdict, TokenAnswer, TokenCheck};
use super::{Dual, Kind, Member, Rotation, RotationError, State, ownership_proved};
use crate::audit::AuditTrail;
use crate::clock::Clock;

/// The running gateway's cut-over hold (`docs/gateway.md`), as a rotation
/// sees it. Each method returns a sentence for the journal and ledger
/// ("the gateway holds …", "no gateway answers …; continuing without a
/// hold"), or `Err` with what the gateway refused.
#[async_trait::async_trait]
pub trait Cutover: Send + Sync {
    /// Holds the account's requests (single-account mode, before the token
    /// is regenerated). A hold already in force counts as held.
    async fn hold(&self, account: &str, operator: &str, reason: &str) -> Result<String, String>;
    /// Ends the hold; the gateway forgets cached tokens, so waiting
    /// requests read the new `current` token. No hold in force is fine.
    async fn release(&self, account: &str, operator: &str, reason: &str) -> Result<String, String>;

    /// Dual mode: the member of the pair `pair` the gateway serves with now
    /// (the account status file).
    async fn active(&self, pair: &str) -> Result<String, String> {
        Err(format!(
            "this installation cannot tell which member of the dual pair `{pair}` is active"
        ))
    }

    /// Dual mode: makes `account` the active member of `pair` — durably
    /// (the account status file), then tells the running gateway, which
    /// serves the pair's clients with it from their next request. Done
    /// again it changes nothing. A sentence for the journal and ledger.
    async fn activate(
        &self,
        pair: &str,
        account: &str,
        operator: &str,
        rotation_id: &str,
        reason: &str,
    ) -> Result<String, String> {
        let _ = (account, operator, rotation_id, reason);
        Err(format!(
            "this installation cannot switch the dual pair `{pair}`"
        ))
    }
}

/// No gateway to tell (tests, or an installation that runs none).
pub struct NoGateway;

#[async_trait::async_trait]
impl Cutover for NoGateway {
    async fn hold(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
        Ok("no gateway to hold requests".into())
    }
    async fn release(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
        Ok("no gateway to release".into())
    }
}

/// What a new rotation is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `[[account]]`.
    pub account: String,
    /// Its REDCap username.
    pub username: String,
    /// The secret holding its token.
    pub secret: SecretName,
    /// The study's `project_id`, when configured; otherwise it is read
    /// with the current token.
    pub project_id: Option<u64>,
    /// The issuer's name.
    pub issuer: String,
    /// Why.
    pub reason: String,
    /// Added to the `planned` entry's detail, e.g. `sop: stale (…)` when
    /// the approved SOP no longer matches the configuration.
    pub note: Option<String>,
    /// The study's other accounts (`[[account]]` name, secret): a new
    /// token equal to one of their current tokens is refused.
    pub others: Vec<(String, SecretName)>,
    /// Dual-account mode: `account` above is the pair's standby (rotated
    /// first, then made active); this is the active member.
    pub dual: Option<DualPlan>,
}

/// The active member of a dual pair, for [`Plan::dual`].
#[derive(Debug, Clone)]
pub struct DualPlan {
    /// The pair's key.
    pub pair: String,
    /// The active member's `[[account]]`.
    pub account: String,
    /// Its REDCap username.
    pub username: String,
    /// Its secret.
    pub secret: SecretName,
}

/// What verifying a new token found ([`Rotator::verification`]).
#[derive(Debug, Clone)]
pub struct Verification {
    /// Why the token is not the account's (another project, not
    /// accepted, refused, or its call logged under another username);
    /// `None` when it passed.
    pub failure: Option<String>,
    /// The rights and DAG against the profile, for people.
    pub rights: String,
    /// Ownership by log correlation: dual mode finishes only when it is
    /// [`Ownership::Proved`].
    pub ownership: Ownership,
}

/// Everything a rotation touches, borrowed for one command.
pub struct Rotator<'a> {
    /// The journals.
    pub journal: &'a Journal,
    /// The escrow beside them.
    pub escrow: &'a Escrow,
    /// The secrets store.
    pub store: &'a dyn SecretStore,
    /// Where each transition is recorded.
    pub trail: &'a AuditTrail,
    /// Fingerprints tokens for the journal and the ledger.
    pub fingerprints: &'a FingerprintKey,
    /// REDCap.
    pub redcap: &'a dyn TokenCheck,
    /// The account's rights and DAG against its profile.
    pub rights: &'a dyn RightsCheck,
    /// REDCap's log, read through the study's log reader, for the proof
    /// of ownership ([`super::ownership`]).
    pub ownership: &'a dyn OwnershipCheck,
    /// The gateway's cut-over hold.
    pub cutover: &'a dyn Cutover,
    /// Run after the switch, in order (the SOP's "redeploy").
    pub hooks: &'a [Box<dyn Hook>],
    /// The time stamped on records and versions.
    pub clock: &'a dyn Clock,
    /// Who is acting (the OS login, with a stated name beside it).
    pub operator: String,
    /// Progress for people (standard error); never given a value.
    pub say: &'a (dyn Fn(&str) + Sync),
}

impl Rotator<'_> {
    /// Creates the rotation (journal, then its `planned` ledger entry).
    /// Refused while the account has an open rotation. Hold the account's
    /// [`Journal::lock`] around this and [`Rotator::drive`].
    pub async fn plan(&self, plan: Plan) -> Result<Rotation, RotationError> {
        self.plan_kind(plan, Kind::Rotation).await
    }

    /// Creates the enrolment of an account (`accounts enroll`): a
    /// rotation of kind [`Kind::Enrol`] that obtains the account's first
    /// token — or, for a retired account enrolled again, replaces its dead
    /// one. Needs the study's `project_id`.
    pub async fn plan_enrol(&self, plan: Plan) -> Result<Rotation, RotationError> {
        self.plan_kind(plan, Kind::Enrol).await
    }

    async fn plan_kind(&self, plan: Plan, kind: Kind) -> Result<Rotation, RotationError> {
        let members = std::iter::once(&plan.account).chain(plan.dual.iter().map(|d| &d.account));
        for account in members {
            if let Some(open) = self.journal.open_for(account)? {
                return Err(RotationError::Open {
                    account: account.clone(),
                    id: open.id,
                    state: open.state,
                });
            }
        }
        let current = match self
            .store
            .get(&plan.secret, &Selector::Label(Label::Current))
            .await
        {
            Ok(current) => Some(current),
            Err(StoreError::NotFound { .. } | StoreError::LabelNotSet { .. })
                if kind == Kind::Enrol =>
            {
                None
            }
            Err(StoreError::NotFound { .. } | StoreError::LabelNotSet { .. }) => {
                return Err(RotationError::Refused(format!(
                    "`{}` (account `{}`) has no current token to rotate; obtain its first one with `redcap-warden accounts enroll {}`",
                    plan.secret, plan.account, plan.account
                )));
            }
            Err(source) => {
                return Err(RotationError::Store {
                    source: Box::new(source),
                    id: "(not started)".into(),
                });
            }
        };
        let now = self.clock.now();
        let id = format!(
            "{}-{}",
            now.strftime("%Y%m%dT%H%M%SZ"),
            durable::random_hex(3)
        );
        let project_id = match (plan.project_id, &current) {
            (Some(p), _) => p,
            (None, None) => {
                return Err(RotationError::Refused(format!(
                    "the study of account `{}` has no project_id, so its first token cannot be obtained or checked; add project_id = N to its [[study]]",
                    plan.account
                )));
            }
            (None, Some(current)) => match self.redcap.project_of(&current.value).await {
                Ok(TokenAnswer::Project(p)) => p,
                Ok(_) => {
                    return Err(RotationError::Refused(format!(
                        "the study of account `{}` has no project_id, and its current token cannot tell it; add project_id = N to its [[study]] so the new token can be checked",
                        plan.account
                    )));
                }
                Err(detail) => {
                    return Err(RotationError::Redcap {
                        what: "which project the current token opens",
                        detail,
                        id: "(not started; run `rotate start` again)".into(),
                    });
                }
            },
        };
        let dual = match (&plan.dual, &current) {
            (Some(d), Some(standby)) if kind == Kind::Rotation => {
                let active = self.current_of(&d.secret, &d.account).await?;
                let member = |account: &str,
                              username: &str,
                              secret: &SecretName,
                              v: &secrets::Secret| Member {
                    account: account.to_string(),
                    username: username.to_string(),
                    secret: secret.to_string(),
                    old_version: v.version.0.clone(),
                    old_fingerprint: self.fingerprints.fingerprint(&v.value).to_string(),
                    new_fingerprint: None,
                    new_version: None,
                    ownership: None,
                };
                Some(Dual {
                    pair: d.pair.clone(),
                    first: member(&plan.account, &plan.username, &plan.secret, standby),
                    second: member(&d.account, &d.username, &d.secret, &active),
                    second_leg: false,
                })
            }
            _ => None,
        };
        let what = match (kind, &dual) {
            (Kind::Rotation, None) => "single-account mode".to_string(),
            (Kind::Rotation, Some(d)) => format!(
                "dual-account mode: `{}` (standby) is regenerated first, then serves; then `{}` (active now) is regenerated",
                d.first.account, d.second.account
            ),
            (Kind::Enrol, _) => "enrolment (the account's first token)".to_string(),
        };
        let rotation = Rotation {
            id,
            kind,
            account: plan.account,
            username: plan.username,
            secret: plan.secret.to_string(),
            project_id,
            mode: if dual.is_some() { "dual" } else { "single" }.into(),
            issuer: plan.issuer.clone(),
            reason: plan.reason,
            started_by: self.operator.clone(),
            started: now,
            from: "none".into(),
            state: State::Planned,
            at: now,
            by: self.operator.clone(),
            detail: format!(
                "planned: {what}, {} issuer, project {project_id}{}",
                plan.issuer,
                plan.note
                    .as_ref()
                    .map_or(String::new(), |n| format!("; {n}"))
            ),
            old_version: current
                .as_ref()
                .map_or(String::new(), |c| c.version.0.clone()),
            old_fingerprint: current.as_ref().map_or("none".to_string(), |c| {
                self.fingerprints.fingerprint(&c.value).to_string()
            }),
            new_fingerprint: None,
            new_version: None,
            ownership: None,
            ownership_evidence: None,
            proof: None,
            recorded: false,
            others: plan
                .others
                .iter()
                .map(|(a, sec)| (a.clone(), sec.to_string()))
                .collect(),
            dual,
        };
        self.journal.create(&rotation)?;
        let mut rotation = rotation;
        self.record(&mut rotation).await?;
        Ok(rotation)
    }

    /// The current token of `secret` (account `account`), to be rotated.
    async fn current_of(
        &self,
        secret: &SecretName,
        account: &str,
    ) -> Result<secrets::Secret, RotationError> {
        self.store
            .get(secret, &Selector::Label(Label::Current))
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } | StoreError::LabelNotSet { .. } => {
                    RotationError::Refused(format!(
                        "`{secret}` (account `{account}`) has no current token to rotate; obtain its first one with `redcap-warden accounts enroll {account}`"
                    ))
                }
                source => RotationError::Store {
                    source: Box::new(source),
                    id: "(not started)".into(),
                },
            })
    }

    /// Runs the rotation from its state to `done` (or `failed`): what
    /// `rotate start`, `run` and `resume` do. `issuer` is needed only in
    /// `planned` without an escrowed token. Stops with an error — the state
    /// kept, so resuming continues — when REDCap, the store, the gateway or
    /// the ledger cannot do their part.
    pub async fn drive(
        &self,
        mut rot: Rotation,
        issuer: Option<&dyn Issuer>,
    ) -> Result<Rotation, RotationError> {
        if !rot.recorded {
            // The process stopped between the journal record and its
            // ledger entry: record it now (it may then appear twice).
            rot.detail.push_str(
                " (recorded on resume: the process had stopped before the entry was acknowledged)",
            );
            self.record(&mut rot).await?;
        }
        loop {
            match rot.state {
                State::Planned => self.obtain(&mut rot, issuer).await?,
                State::Obtained | State::SecondObtained => self.verify(&mut rot).await?,
                State::Verified | State::SecondVerified => self.store_pending(&mut rot).await?,
                State::Stored => self.switch(&mut rot).await?,
                State::Switched if rot.dual.is_some() => {
                    self.begin_second_leg(&mut rot).await?;
                    self.obtain(&mut rot, issuer).await?
                }
                State::Switched | State::SecondStored => self.prove_old_dead(&mut rot).await?,
                State::OldRevokedVerified => self.finish(&mut rot).await?,
                State::Done | State::Failed | State::Aborted => return Ok(rot),
            }
        }
    }

    /// old-revoked-verified → done. A dual rotation finishes only when
    /// verification proved both new tokens to be their accounts' (REDCap's
    /// log shows each one's call as the expected user).
    async fn finish(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        if let Some(d) = &rot.dual {
            let unproven: Vec<String> = [
                (&d.first.account, d.first.ownership.as_deref()),
                (&d.second.account, rot.ownership.as_deref()),
            ]
            .into_iter()
            .filter(|(_, o)| !ownership_proved(*o))
            .map(|(a, o)| format!("`{a}`: {}", o.unwrap_or("not verified")))
            .collect();
            if !unproven.is_empty() {
                return Err(RotationError::Refused(format!(
                    "dual-account rotation {} does not finish without proof that each new token is its account's, and ownership is unproven for {}; both new tokens are current and both old ones shown dead, so the pair is served — give the study a log_reader (docs/reconcile.md) for the next rotation, check REDCap's log for the minutes of the `verified` and `second-verified` entries (`redcap-warden reconcile`), then end this one with `redcap-warden rotate abort {} --reason R`",
                    rot.id,
                    unproven.join("; "),
                    rot.id
                )));
            }
        }
        self.transition(rot, State::Done, "rotation complete".into())
            .await
    }

    /// Dual mode, switched: the gateway serves the first member with its
    /// new token, so the second (the member that was active) is
    /// regenerated next. The first's escrow is removed (the store holds
    /// its token as current) and the record's fields move to the second
    /// member; the next transition makes that durable.
    async fn begin_second_leg(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        if rot.second_leg() {
            return Ok(());
        }
        let name = self.secret_name(rot)?;
        let fp = rot.new_fingerprint.clone().unwrap_or_default();
        if self.ours(rot, &name, Label::Current, &fp).await?.is_none() {
            return Err(RotationError::Refused(format!(
                "the store's current version of `{name}` is not the new token ({fp}) although rotation {} switched to it; someone changed the secret meanwhile: check `redcap-warden secrets history {name}`; the escrow {} is kept",
                rot.id,
                self.escrow.path(&rot.escrow_id()).display()
            )));
        }
        self.escrow.remove(&rot.escrow_id())?;
        let Some(d) = rot.dual.as_mut() else {
            return Ok(());
        };
        d.first.new_fingerprint = rot.new_fingerprint.take();
        d.first.new_version = rot.new_version.take();
        d.first.ownership = rot.ownership.take();
        d.second_leg = true;
        rot.account = d.second.account.clone();
        rot.username = d.second.username.clone();
        rot.secret = d.second.secret.clone();
        rot.old_version = d.second.old_version.clone();
        rot.old_fingerprint = d.second.old_fingerprint.clone();
        Ok(())
    }

    /// `rotate abort`: before a token is obtained, ends the rotation and
    /// releases the hold. After (REDCap has killed the old token), stores
    /// the escrowed token as `current` — unverified — and says so. Past
    /// the switch, refused: resume finishes it.
    pub async fn abort(&self, mut rot: Rotation, why: &str) -> Result<Rotation, RotationError> {
        if !rot.recorded {
            self.record(&mut rot).await?;
        }
        match rot.state {
            State::Planned if !self.escrow.holds(&rot.escrow_id()) => {
                let released = self.release(&rot).await?;
                self.transition(
                    &mut rot,
                    State::Aborted,
                    format!("aborted ({why}) before a new token was obtained: the old token is unchanged unless someone regenerated it in REDCap by hand; {released}"),
                )
                .await?;
            }
            State::Switched if rot.dual.is_some() && !self.second_escrowed(&rot) => {
                self.begin_second_leg(&mut rot).await?;
                let serving = rot
                    .dual
                    .as_ref()
                    .map_or("", |d| d.first.account.as_str())
                    .to_string();
                let detail = format!(
                    "aborted ({why}) after the switch: the gateway serves the pair with `{serving}` and its new token; the token of `{}` was not regenerated and stays current",
                    rot.account
                );
                self.transition(&mut rot, State::Aborted, detail).await?;
            }
            State::OldRevokedVerified if rot.dual.is_some() => {
                let detail = format!(
                    "ended ({why}) without proof of ownership: both new tokens are current and both old ones were shown dead ({})",
                    rot.proof.clone().unwrap_or_default()
                );
                self.transition(&mut rot, State::Aborted, detail).await?;
            }
            State::Switched | State::SecondObtained | State::SecondVerified
                if rot.dual.is_some() =>
            {
                self.begin_second_leg(&mut rot).await?;
                self.abort_with_escrowed(&mut rot, why).await?;
            }
            State::Planned | State::Obtained | State::Verified | State::Stored => {
                self.abort_with_escrowed(&mut rot, why).await?;
            }
            State::Switched
            | State::SecondObtained
            | State::SecondVerified
            | State::SecondStored
            | State::OldRevokedVerified => {
                return Err(RotationError::Refused(format!(
                    "rotation {} is past the switch: the new token is already current; finish it with `redcap-warden rotate resume {}`",
                    rot.id, rot.id
                )));
            }
            State::Done | State::Failed | State::Aborted => {
                return Err(RotationError::Refused(format!(
                    "rotation {} has already ended ({}); nothing to abort",
                    rot.id, rot.state
                )));
            }
        }
        Ok(rot)
    }

    /// Whether a dual rotation's second token is in escrow.
    fn second_escrowed(&self, rot: &Rotation) -> bool {
        self.escrow.holds(&format!("{}-second", rot.id))
    }

    /// Abort after a token was obtained: REDCap has already killed the
    /// old one, so the escrowed token becomes `current`, unverified.
    async fn abort_with_escrowed(
        &self,
        rot: &mut Rotation,
        why: &str,
    ) -> Result<(), RotationError> {
        let token = self.escrow.take(&rot.escrow_id())?;
        let fp = self.fingerprints.fingerprint(&token).to_string();
        rot.new_fingerprint = Some(fp.clone());
        let version = self.make_current(rot, token, &fp).await?;
        rot.new_version = Some(version.0.clone());
        self.escrow.remove(&rot.escrow_id())?;
        let released = self.release(rot).await?;
        self.transition(
            rot,
            State::Aborted,
            format!("aborted ({why}) after the new token of `{}` was obtained: REDCap had already replaced its old token, so the escrowed token ({fp}) is now current (version {version}) without the remaining checks; {released}", rot.account),
        )
        .await
    }

    fn target(rot: &Rotation) -> Target {
        Target {
            account: rot.account.clone(),
            username: rot.username.clone(),
            project_id: rot.project_id,
            first: rot.kind == Kind::Enrol,
            role: match &rot.dual {
                None => Role::Single,
                Some(d) if d.second_leg => Role::PreviousActive {
                    serving: d.first.account.clone(),
                },
                Some(d) => Role::Standby {
                    active: d.second.account.clone(),
                },
            },
        }
    }

    /// planned → obtained: the token from the issuer, escrowed at once (or
    /// recovered from an escrow written before the process stopped).
    async fn obtain(
        &self,
        rot: &mut Rotation,
        issuer: Option<&dyn Issuer>,
    ) -> Result<(), RotationError> {
        let (token, detail) = if self.escrow.holds(&rot.escrow_id()) {
            (
                self.escrow.take(&rot.escrow_id())?,
                "recovered from the escrow (the process had stopped after escrowing it)"
                    .to_string(),
            )
        } else {
            let Some(issuer) = issuer else {
                return Err(RotationError::Refused(format!(
                    "rotation {} needs its new token from an issuer; resume it with one (`--issuer`)",
                    rot.id
                )));
            };
            let held = if rot.kind == Kind::Enrol {
                // Nothing is served with the account's token yet.
                "no cut-over hold: an enrolment replaces no token in use".to_string()
            } else if rot.dual.is_some() {
                "dual-account mode: the other member serves meanwhile, no hold".to_string()
            } else {
                self.cutover
                    .hold(&rot.account, &self.operator, &self.why(rot))
                    .await
                    .map_err(|detail| RotationError::Gateway {
                        detail,
                        fix: format!(
                            "check the gateway and its ledger, then `redcap-warden rotate resume {}` (nothing was regenerated)",
                            rot.id
                        ),
                    })?
            };
            (self.say)(&held);
            (self.say)(&format!(
                "obtaining a new token for `{}` ({}) from the {} issuer",
                rot.account,
                rot.username,
                issuer.name()
            ));
            let token = issuer.obtain(&Self::target(rot)).await.map_err(|source| {
                RotationError::Issuer {
                    issuer: issuer.name(),
                    source,
                    fix: format!("{}: `redcap-warden rotate resume {}`", issuer.fix(), rot.id),
                }
            })?;
            // Nothing else happens before the token is durable in escrow.
            self.escrow.put(&rot.escrow_id(), &token)?;
            crate::fault::point("rotation:escrowed");
            (
                token,
                format!(
                    "obtained from the {} issuer and escrowed; {held}",
                    issuer.name()
                ),
            )
        };
        let fp = self.fingerprints.fingerprint(&token).to_string();
        if fp == rot.old_fingerprint {
            // The store still has this value: nothing is lost by dropping it.
            self.escrow.remove(&rot.escrow_id())?;
            return Err(RotationError::Refused(format!(
                "the token given is the account's current token ({fp}): it was not regenerated; regenerate it in REDCap, then `redcap-warden rotate resume {}`",
                rot.id
            )));
        }
        rot.new_fingerprint = Some(fp.clone());
        if let Some(owner) = self.holder_of(rot, &fp).await? {
            let detail = format!(
                "{detail}; refused: the token given is the current token of account `{owner}`, not a new token of `{}` ({}); it stays in the escrow {} and was not stored; {}; start a new rotation and give the token REDCap shows for user {} after regenerating it",
                rot.account,
                rot.username,
                self.escrow.path(&rot.escrow_id()).display(),
                self.release(rot).await.unwrap_or_else(|e| e.to_string()),
                rot.username,
            );
            return self.transition(rot, State::Failed, detail).await;
        }
        let to = if rot.second_leg() {
            State::SecondObtained
        } else {
            State::Obtained
        };
        self.transition(rot, to, detail).await
    }

    /// The account whose current token has fingerprint `fp`, among the
    /// study's other accounts and the other member of a dual pair.
    async fn holder_of(&self, rot: &Rotation, fp: &str) -> Result<Option<String>, RotationError> {
        let mut candidates: Vec<(String, String)> = rot.others.clone();
        if let Some(d) = &rot.dual {
            let partner = if d.second_leg { &d.first } else { &d.second };
            candidates.push((partner.account.clone(), partner.secret.clone()));
        }
        for (account, secret) in candidates {
            let Ok(name) = SecretName::new(&secret) else {
                continue;
            };
            match self
                .store
                .get(&name, &Selector::Label(Label::Current))
                .await
            {
                Ok(s) if self.fingerprints.fingerprint(&s.value).to_string() == fp => {
                    return Ok(Some(account));
                }
                Ok(_) | Err(StoreError::NotFound { .. } | StoreError::LabelNotSet { .. }) => {}
                Err(source) => return Err(self.store_error(rot, source)),
            }
        }
        Ok(None)
    }

    /// obtained → verified (or failed): [`Rotator::verification`] of the
    /// escrowed token; a token that is not the account's fails, and its
    /// escrow is kept.
    async fn verify(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        let token = self.escrow.take(&rot.escrow_id())?;
        let v = self.verification(rot, &token).await?;
        rot.ownership = Some(v.ownership.word().to_string());
        rot.ownership_evidence = Some(v.ownership.detail().to_string());
        match v.failure {
            None => {
                let detail = format!(
                    "the new token authenticates and opens project {}; {}; ownership: {} ({})",
                    rot.project_id,
                    v.rights,
                    v.ownership.word(),
                    v.ownership.detail()
                );
                let to = if rot.second_leg() {
                    State::SecondVerified
                } else {
                    State::Verified
                };
                self.transition(rot, to, detail).await
            }
            Some(why) => {
                let released = self.release(rot).await.unwrap_or_else(|e| e.to_string());
                let detail = format!(
                    "verification failed: {why}; the token stays in the escrow {} and was not stored; {released}; start a new rotation to obtain the right token",
                    self.escrow.path(&rot.escrow_id()).display()
                );
                self.transition(rot, State::Failed, detail).await
            }
        }
    }

    /// What verifying `token` as the new token of `rot` finds: it
    /// authenticates and opens the expected project (Export Project Info);
    /// REDCap's log shows that call under the account's username
    /// (read before and after it through the study's log reader,
    /// [`super::ownership`]); the account's rights and DAG are within its
    /// profile. Stops with an error (nothing decided) when REDCap cannot
    /// be asked, and with [`RotationError::RightsDrift`] on drift.
    pub async fn verification(
        &self,
        rot: &Rotation,
        token: &SecretValue,
    ) -> Result<Verification, RotationError> {
        let log_error = |detail: String| RotationError::Redcap {
            what: "for its log (ownership)",
            detail,
            id: rot.id.clone(),
        };
        // The time just before the call, and the log's rows of the call
        // from then on (anyone's) as they stand before it.
        let asked = self.clock.now();
        let before = self.ownership.calls(None, asked).await.map_err(log_error)?;
        let failure = match self.redcap.project_of(token).await {
            Err(detail) => {
                return Err(RotationError::Redcap {
                    what: "about the new token",
                    detail,
                    id: rot.id.clone(),
                });
            }
            Ok(TokenAnswer::Project(p)) if p == rot.project_id => None,
            Ok(TokenAnswer::Project(p)) => Some(format!(
                "the new token opens project {p}, not {}: it is not this account's token",
                rot.project_id
            )),
            Ok(TokenAnswer::Invalid) => Some(
                "REDCap does not accept the new token (403 \"You do not have permissions to use the API\")".into(),
            ),
            Ok(TokenAnswer::Refused(why)) => Some(format!("REDCap refused the new token: {why}")),
        };
        if let Some(why) = failure {
            return Ok(Verification {
                failure: Some(why),
                rights: "rights not checked".into(),
                ownership: Ownership::Unproven("the token did not open the project".into()),
            });
        }
        let ownership = match before {
            LogCalls::NoReader(why) => Ownership::Unproven(why),
            LogCalls::Rows(before) => {
                let rows = |calls| match calls {
                    LogCalls::Rows(rows) => rows,
                    LogCalls::NoReader(_) => Vec::new(),
                };
                // The call, under the expected username: a row that was
                // not there before.
                let mine = rows(
                    self.ownership
                        .calls(Some(&rot.username), asked)
                        .await
                        .map_err(log_error)?,
                );
                let theirs: Vec<_> = before
                    .iter()
                    .filter(|c| c.username.eq_ignore_ascii_case(&rot.username))
                    .cloned()
                    .collect();
                match super::ownership::new_rows(&theirs, &mine).pop() {
                    Some(call) => Ownership::Proved(format!("REDCap's log: {}", call.row)),
                    None => {
                        // Whose call it was: the new rows of anyone.
                        let after =
                            rows(self.ownership.calls(None, asked).await.map_err(log_error)?);
                        let new = super::ownership::new_rows(&before, &after);
                        Ownership::Refuted(refutation(rot, asked, &new))
                    }
                }
            }
        };
        if let Ownership::Refuted(why) = &ownership {
            return Ok(Verification {
                failure: Some(why.clone()),
                rights: "rights not checked".into(),
                ownership,
            });
        }
        let rights = match self.rights.verdict(&rot.account).await {
            Err(detail) => {
                return Err(RotationError::Redcap {
                    what: "for the account's rights",
                    detail,
                    id: rot.id.clone(),
                });
            }
            Ok(RightsVerdict::Drift(findings)) => {
                return Err(RotationError::RightsDrift {
                    account: rot.account.clone(),
                    findings,
                    id: rot.id.clone(),
                });
            }
            Ok(RightsVerdict::Clean(probes)) if probes.is_empty() => {
                "rights and DAG within its profile".to_string()
            }
            Ok(RightsVerdict::Clean(probes)) => {
                format!("rights and DAG within its profile ({})", probes.join("; "))
            }
            Ok(RightsVerdict::NotChecked(why)) => format!("rights not checked ({why})"),
        };
        Ok(Verification {
            failure: None,
            rights,
            ownership,
        })
    }

    /// verified → stored: the token as the store's `pending` version (one
    /// already stored by this rotation is reused).
    async fn store_pending(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        let name = self.secret_name(rot)?;
        let fp = rot.new_fingerprint.clone().unwrap_or_default();
        if rot.second_leg() {
            // Nobody is served with this member now: its new token goes
            // straight to `current` (a version this rotation stored is
            // reused).
            let version = match self.ours(rot, &name, Label::Current, &fp).await? {
                Some(v) => v,
                None => {
                    let token = self.escrow.take(&rot.escrow_id())?;
                    self.make_current(rot, token, &fp).await?
                }
            };
            rot.new_version = Some(version.0.clone());
            return self
                .transition(
                    rot,
                    State::SecondStored,
                    format!(
                        "stored as current version {version} of `{name}`: `{}` is the standby now, with a new token",
                        rot.account
                    ),
                )
                .await;
        }
        let version = match self.ours(rot, &name, Label::Pending, &fp).await? {
            Some(v) => v,
            None => {
                let token = self.escrow.take(&rot.escrow_id())?;
                self.store
                    .put(&name, token, self.meta(rot, &fp), Label::Pending)
                    .await
                    .map_err(|source| self.store_error(rot, source))?
            }
        };
        rot.new_version = Some(version.0.clone());
        self.transition(
            rot,
            State::Stored,
            format!("stored as pending version {version}"),
        )
        .await
    }

    /// stored → switched: the pending version becomes `current`.
    async fn switch(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        let name = self.secret_name(rot)?;
        let fp = rot.new_fingerprint.clone().unwrap_or_default();
        let version = VersionId(rot.new_version.clone().unwrap_or_default());
        if self.ours(rot, &name, Label::Current, &fp).await?.is_none() {
            self.store
                .move_label(&name, Label::Current, &version)
                .await
                .map_err(|source| self.store_error(rot, source))?;
        }
        let mut detail = if rot.old_version.is_empty() {
            format!("version {version} is current (the account's first token)")
        } else {
            format!(
                "version {version} is current; the old version {} is previous",
                rot.old_version
            )
        };
        if let Some(d) = &rot.dual {
            let told = self
                .cutover
                .activate(&d.pair, &rot.account, &self.operator, &rot.id, &self.why(rot))
                .await
                .map_err(|detail| RotationError::Gateway {
                    detail,
                    fix: format!(
                        "check the account status file and the gateway, then `redcap-warden rotate resume {}` (the new token is stored; the pair is still served by `{}`)",
                        rot.id, d.second.account
                    ),
                })?;
            (self.say)(&told);
            detail.push_str(&format!("; {told}"));
        }
        self.transition(rot, State::Switched, detail).await
    }

    /// switched → old-revoked-verified: the escrow is removed (the store
    /// holds the token as current), the gateway released, and the old
    /// token shown to be dead.
    async fn prove_old_dead(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        let name = self.secret_name(rot)?;
        let fp = rot.new_fingerprint.clone().unwrap_or_default();
        if self.ours(rot, &name, Label::Current, &fp).await?.is_none() {
            return Err(RotationError::Refused(format!(
                "the store's current version of `{name}` is not the new token ({fp}) although rotation {} switched to it; someone changed the secret meanwhile: check `redcap-warden secrets history {name}`; the escrow {} is kept",
                rot.id,
                self.escrow.path(&rot.escrow_id()).display()
            )));
        }
        self.escrow.remove(&rot.escrow_id())?;
        let released = self.release(rot).await?;
        (self.say)(&released);
        let mut released = released;
        // The hooks hear of the account that serves now: in dual mode the
        // first member, switched to.
        let event = match &rot.dual {
            None => Switched {
                rotation_id: rot.id.clone(),
                account: rot.account.clone(),
                username: rot.username.clone(),
                project_id: rot.project_id,
                secret: rot.secret.clone(),
                fingerprint: fp.clone(),
            },
            Some(d) => Switched {
                rotation_id: rot.id.clone(),
                account: d.first.account.clone(),
                username: d.first.username.clone(),
                project_id: rot.project_id,
                secret: d.first.secret.clone(),
                fingerprint: d.first.new_fingerprint.clone().unwrap_or_default(),
            },
        };
        for hook in self.hooks {
            let event = event.clone();

            hook.run(&event)
                .await
                .map_err(|detail| RotationError::Hook {
                    hook: hook.describe(),
                    detail,
                    id: rot.id.clone(),
                })?;
            (self.say)(&format!("{} ran", hook.describe()));
            released.push_str(&format!("; {} ran", hook.describe()));
        }
        if rot.old_version.is_empty() {
            // An enrolment: the account had no token before this one.
            return self
                .transition(
                    rot,
                    State::Done,
                    format!("{released}; the account's first token is current: enrolment complete"),
                )
                .await;
        }
        let mut olds = vec![(
            name.clone(),
            rot.old_version.clone(),
            rot.old_fingerprint.clone(),
            rot.username.clone(),
        )];
        if let Some(d) = &rot.dual {
            olds.insert(
                0,
                (
                    SecretName::new(&d.first.secret).map_err(|e| RotationError::Damaged {
                        path: self.journal.path(&rot.id),
                        detail: format!("its first member's secret name is invalid: {e}"),
                    })?,
                    d.first.old_version.clone(),
                    d.first.old_fingerprint.clone(),
                    d.first.username.clone(),
                ),
            );
        }
        let mut proofs = Vec::new();
        for (secret, version, fingerprint, username) in olds {
            let old = self
                .store
                .get(&secret, &Selector::Version(VersionId(version)))
                .await
                .map_err(|source| self.store_error(rot, source))?;
            match self.redcap.project_of(&old.value).await {
                Ok(TokenAnswer::Invalid) => proofs.push(format!(
                    "{}: Export Project Info with the old token {fingerprint} got REDCap's invalid-token answer (403 \"You do not have permissions to use the API\")",
                    self.clock.now(),
                )),
                Ok(_) => {
                    return Err(RotationError::OldTokenAlive {
                        fingerprint,
                        username,
                        id: rot.id.clone(),
                    });
                }
                Err(detail) => {
                    return Err(RotationError::Redcap {
                        what: "about the old token",
                        detail,
                        id: rot.id.clone(),
                    });
                }
            }
        }
        let proof = proofs.join("; ");
        rot.proof = Some(proof.clone());
        self.transition(
            rot,
            State::OldRevokedVerified,
            format!("{released}; {proof}"),
        )
        .await
    }

    /// Makes `token` current (abort): reuses a version this rotation
    /// already stored.
    async fn make_current(
        &self,
        rot: &Rotation,
        token: SecretValue,
        fp: &str,
    ) -> Result<VersionId, RotationError> {
        let name = self.secret_name(rot)?;
        if let Some(v) = self.ours(rot, &name, Label::Current, fp).await? {
            return Ok(v);
        }
        if let Some(v) = self.ours(rot, &name, Label::Pending, fp).await? {
            self.store
                .move_label(&name, Label::Current, &v)
                .await
                .map_err(|source| self.store_error(rot, source))?;
            return Ok(v);
        }
        self.store
            .put(&name, token, self.meta(rot, fp), Label::Current)
            .await
            .map_err(|source| self.store_error(rot, source))
    }

    /// The version carrying `label`, if it is this rotation's new token.
    async fn ours(
        &self,
        rot: &Rotation,
        name: &SecretName,
        label: Label,
        fp: &str,
    ) -> Result<Option<VersionId>, RotationError> {
        match self.store.get(name, &Selector::Label(label)).await {
            Ok(s) => {
                let mine = s.meta.rotation_id.as_deref() == Some(rot.id.as_str())
                    && self.fingerprints.fingerprint(&s.value).to_string() == fp;
                Ok(mine.then_some(s.version))
            }
            // An enrolment's secret does not exist before its first put.
            Err(StoreError::LabelNotSet { .. } | StoreError::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.store_error(rot, source)),
        }
    }

    fn meta(&self, rot: &Rotation, fp: &str) -> VersionMeta {
        VersionMeta {
            operator: self.operator.clone(),
            at: self.clock.now(),
            reason: format!("rotation {}: {}", rot.id, rot.reason),
            fingerprint: Some(fp.to_string()),
            rotation_id: Some(rot.id.clone()),
        }
    }

    fn secret_name(&self, rot: &Rotation) -> Result<SecretName, RotationError> {
        SecretName::new(&rot.secret).map_err(|e| RotationError::Damaged {
            path: self.journal.path(&rot.id),
            detail: format!("its secret name is invalid: {e}"),
        })
    }

    fn store_error(&self, rot: &Rotation, source: StoreError) -> RotationError {
        RotationError::Store {
            source: Box::new(source),
            id: rot.id.clone(),
        }
    }

    fn why(&self, rot: &Rotation) -> String {
        format!("token rotation {}: {}", rot.id, rot.reason)
    }

    async fn release(&self, rot: &Rotation) -> Result<String, RotationError> {
        if rot.dual.is_some() {
            return Ok("dual-account mode: no hold to release".into());
        }
        self.cutover
            .release(&rot.account, &self.operator, &self.why(rot))
            .await
            .map_err(|detail| RotationError::Gateway {
                detail,
                fix: format!(
                    "release the hold yourself (`POST /admin/accounts/{}/release`, or it ends by itself after cutover_hold_seconds), then `redcap-warden rotate resume {}`",
                    rot.account, rot.id
                ),
            })
    }

    /// Enters `to`: the journal record made durable, then the ledger
    /// entry, then the journal notes the entry was made.
    async fn transition(
        &self,
        rot: &mut Rotation,
        to: State,
        detail: String,
    ) -> Result<(), RotationError> {
        rot.from = rot.state.as_str().to_string();
        rot.state = to;
        rot.at = self.clock.now();
        rot.by = self.operator.clone();
        rot.detail = detail;
        rot.recorded = false;
        self.journal.append(rot)?;
        crate::fault::point(&format!("rotation:{to}:unrecorded"));
        self.record(rot).await
    }

    async fn record(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        self.trail.record(rot.entry()).await?;
        rot.recorded = true;
        self.journal.append(rot)?;
        (self.say)(&format!(
            "rotation {}: {} → {}: {}",
            rot.id, rot.from, rot.state, rot.detail
        ));
        crate::fault::point(&format!("rotation:{}", rot.state));
        Ok(())
    }
}

/// Why ownership was refuted: no new call of Export Project Info under
/// the account's username since `asked`, and whose new calls there were.
fn refutation(
    rot: &Rotation,
    asked: jiff::Timestamp,
    others: &[super::ownership::LoggedCall],
) -> String {
    let mut users: Vec<&str> = others
        .iter()
        .map(|c| c.username.as_str())
        .filter(|u| !u.eq_ignore_ascii_case(&rot.username))
        .collect();
    users.sort_unstable();
    users.dedup();
    let shown = if users.is_empty() {
        "no new call of it by anyone else either".to_string()
    } else {
        format!(
            "the call appears under {} instead: the token is that user's",
            users
                .iter()
                .map(|u| format!("`{u}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "REDCap's log shows no Export Project Info by `{}` since {asked} (less the tolerance) although the new token just made that call; {shown}",
        rot.username
    )
}
