//! The driver: one function per state, each ending in a durable journal
//! record and a ledger entry before the next external step.

use secrets::{
    FingerprintKey, Label, SecretName, SecretStore, SecretValue, Selector, StoreError, VersionId,
    VersionMeta,
};

use super::escrow::Escrow;
use super::hooks::{Hook, Switched};
use super::issuer::{Issuer, Target};
use super::journal::Journal;
use super::ownership::{LogCalls, Ownership, OwnershipCheck};
use super::probe::{RightsCheck, RightsVerdict, TokenAnswer, TokenCheck};
use super::{Kind, Rotation, RotationError, State};
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
        if let Some(open) = self.journal.open_for(&plan.account)? {
            return Err(RotationError::Open {
                account: plan.account,
                id: open.id,
                state: open.state,
            });
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
        let what = match kind {
            Kind::Rotation => "single-account mode",
            Kind::Enrol => "enrolment (the account's first token)",
        };
        let rotation = Rotation {
            id,
            kind,
            account: plan.account,
            username: plan.username,
            secret: plan.secret.to_string(),
            project_id,
            mode: "single".into(),
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
        };
        self.journal.create(&rotation)?;
        let mut rotation = rotation;
        self.record(&mut rotation).await?;
        Ok(rotation)
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
                State::Obtained => self.verify(&mut rot).await?,
                State::Verified => self.store_pending(&mut rot).await?,
                State::Stored => self.switch(&mut rot).await?,
                State::Switched => self.prove_old_dead(&mut rot).await?,
                State::OldRevokedVerified => {
                    self.transition(&mut rot, State::Done, "rotation complete".into())
                        .await?
                }
                State::Done | State::Failed | State::Aborted => return Ok(rot),
            }
        }
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
            State::Planned if !self.escrow.holds(&rot.id) => {
                let released = self.release(&rot).await?;
                self.transition(
                    &mut rot,
                    State::Aborted,
                    format!("aborted ({why}) before a new token was obtained: the old token is unchanged unless someone regenerated it in REDCap by hand; {released}"),
                )
                .await?;
            }
            State::Planned | State::Obtained | State::Verified | State::Stored => {
                let token = self.escrow.take(&rot.id)?;
                let fp = self.fingerprints.fingerprint(&token).to_string();
                rot.new_fingerprint = Some(fp.clone());
                let version = self.make_current(&rot, token, &fp).await?;
                rot.new_version = Some(version.0.clone());
                self.escrow.remove(&rot.id)?;
                let released = self.release(&rot).await?;
                self.transition(
                    &mut rot,
                    State::Aborted,
                    format!("aborted ({why}) after the new token was obtained: REDCap had already replaced the old token, so the escrowed token ({fp}) is now current (version {version}) without the remaining checks; {released}"),
                )
                .await?;
            }
            State::Switched | State::OldRevokedVerified => {
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

    fn target(rot: &Rotation) -> Target {
        Target {
            account: rot.account.clone(),
            username: rot.username.clone(),
            project_id: rot.project_id,
            first: rot.kind == Kind::Enrol,
        }
    }

    /// planned → obtained: the token from the issuer, escrowed at once (or
    /// recovered from an escrow written before the process stopped).
    async fn obtain(
        &self,
        rot: &mut Rotation,
        issuer: Option<&dyn Issuer>,
    ) -> Result<(), RotationError> {
        let (token, detail) = if self.escrow.holds(&rot.id) {
            (
                self.escrow.take(&rot.id)?,
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
            self.escrow.put(&rot.id, &token)?;
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
            self.escrow.remove(&rot.id)?;
            return Err(RotationError::Refused(format!(
                "the token given is the account's current token ({fp}): it was not regenerated; regenerate it in REDCap, then `redcap-warden rotate resume {}`",
                rot.id
            )));
        }
        rot.new_fingerprint = Some(fp);
        self.transition(rot, State::Obtained, detail).await
    }

    /// obtained → verified (or failed): [`Rotator::verification`] of the
    /// escrowed token; a token that is not the account's fails, and its
    /// escrow is kept.
    async fn verify(&self, rot: &mut Rotation) -> Result<(), RotationError> {
        let token = self.escrow.take(&rot.id)?;
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
                self.transition(rot, State::Verified, detail).await
            }
            Some(why) => {
                let released = self.release(rot).await.unwrap_or_else(|e| e.to_string());
                let detail = format!(
                    "verification failed: {why}; the token stays in the escrow {} and was not stored; {released}; start a new rotation to obtain the right token",
                    self.escrow.path(&rot.id).display()
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
        let version = match self.ours(rot, &name, Label::Pending, &fp).await? {
            Some(v) => v,
            None => {
                let token = self.escrow.take(&rot.id)?;
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
        self.transition(
            rot,
            State::Switched,
            if rot.old_version.is_empty() {
                format!("version {version} is current (the account's first token)")
            } else {
                format!(
                    "version {version} is current; the old version {} is previous",
                    rot.old_version
                )
            },
        )
        .await
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
                self.escrow.path(&rot.id).display()
            )));
        }
        self.escrow.remove(&rot.id)?;
        let released = self.release(rot).await?;
        (self.say)(&released);
        let mut released = released;
        for hook in self.hooks {
            let event = Switched {
                rotation_id: rot.id.clone(),
                account: rot.account.clone(),
                username: rot.username.clone(),
                project_id: rot.project_id,
                secret: rot.secret.clone(),
                fingerprint: fp.clone(),
            };
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
        let old = self
            .store
            .get(
                &name,
                &Selector::Version(VersionId(rot.old_version.clone())),
            )
            .await
            .map_err(|source| self.store_error(rot, source))?;
        match self.redcap.project_of(&old.value).await {
            Ok(TokenAnswer::Invalid) => {
                let proof = format!(
                    "{}: Export Project Info with the old token {} got REDCap's invalid-token answer (403 \"You do not have permissions to use the API\")",
                    self.clock.now(),
                    rot.old_fingerprint
                );
                rot.proof = Some(proof.clone());
                self.transition(
                    rot,
                    State::OldRevokedVerified,
                    format!("{released}; {proof}"),
                )
                .await
            }
            Ok(_) => Err(RotationError::OldTokenAlive {
                fingerprint: rot.old_fingerprint.clone(),
                username: rot.username.clone(),
                id: rot.id.clone(),
            }),
            Err(detail) => Err(RotationError::Redcap {
                what: "about the old token",
                detail,
                id: rot.id.clone(),
            }),
        }
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
