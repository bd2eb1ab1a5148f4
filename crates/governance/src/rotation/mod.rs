//! Token rotation: a resumable state machine around REDCap's manual
//! regenerate step (`docs/rotation.md`).
//!
//! REDCap has no API to regenerate a token (redcap-api.md §2.1); a person
//! does it in the web UI, and the old token dies at that instant, with no
//! overlap (§2.3). So what this module drives is everything *around* that
//! step, in this order, each state made durable in the rotation's journal
//! before the next external step and recorded as a `rotation` ledger
//! entry:
//!
//! ```text
//! planned ─► obtained ─► verified ─► stored ─► switched ─► old-revoked-verified ─► done
//!    │          │           │          │
//!    └──────────┴───────────┴──────────┴─► aborted        obtained ─► failed (verification)
//! ```
//!
//! - **planned**: the rotation exists (its journal), with the old token's
//!   fingerprint and store version; in single-account mode the gateway
//!   holds the account's requests from here ([`Cutover`]).
//! - **obtained**: an [`Issuer`] gave the new token and it is in the
//!   [`escrow`] — encrypted and synced before anything else happens.
//! - **verified**: the new token authenticates and belongs to the expected
//!   project, and the account's rights and DAG are within its profile
//!   ([`RightsCheck`]); ownership is proved by correlation with REDCap's
//!   log read through the study's log reader ([`ownership`]), or recorded
//!   *unproven* without one.
//! - **stored**: the store holds it as `pending`.
//! - **switched**: it is `current`; the escrow is removed, the gateway
//!   released (which makes it forget cached tokens) and the [`hooks`] run.
//! - **old-revoked-verified**: the old token got REDCap's invalid-token
//!   answer (403 "You do not have permissions to use the API"): the proof.
//! - **done**; or **failed** (the new token failed verification, or is
//!   another account's current token: the escrow is kept) or **aborted**.
//!
//! In dual-account mode ([`Dual`]) the same steps take the pair's
//! standby to `switched`, where the gateway starts serving the pair with
//! it ([`Cutover::activate`], no hold); then the member that was active is
//! regenerated too — `second-obtained`, `second-verified`,
//! `second-stored` (its `current`) — before both old tokens are proved
//! dead, and `done` needs ownership proved for both new tokens.
//!
//! [`status`] is `rotate status`'s inventory: each account's token age
//! against its period, due date, open and last rotation (the compliance
//! report and the dashboard show the same).
//!
//! [`status`] is `rotate status`'s inventory: each account's token age
//! against its period, due date, open and last rotation (the compliance
//! report and the dashboard show the same).
//!
//! The journal ([`journal`]) holds fingerprints, never values; the escrow
//! is the only place besides the store a new token is ever written. Both
//! go through [`durable::FileSystem`], so tests cut the power after every
//! write ([`durable::SimFs`]) and check that [`Rotator::drive`] (what
//! `rotate resume` runs) finishes with exactly one valid `current` token.

pub mod escrow;
pub mod hooks;
pub mod issuer;
pub mod journal;
mod machine;
pub mod ownership;
mod probe;
pub mod status;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use escrow::{Escrow, EscrowKey};
pub use hooks::{CommandHook, Hook, Switched, WebhookHook};
pub use issuer::{CommandIssuer, IssueError, Issuer, Role, SandboxIssuer, Target};
pub use issuer::{manual_create_steps, manual_retire_steps};
pub use journal::{AccountLock, Journal, Regeneration};
pub use machine::{Cutover, DualPlan, NoGateway, Plan, Rotator, Verification};
pub use ownership::{LogCalls, LogCorrelation, LoggedCall, NoLogReader, Ownership, OwnershipCheck};
pub use probe::{NoRightsCheck, RightsCheck, RightsVerdict, TokenAnswer, TokenCheck};
pub use status::{TokenStatus, inventory};

use crate::audit::AuditError;

/// A rotation's state (`docs/rotation.md` describes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Planned: nothing obtained yet.
    Planned,
    /// The new token exists and is in the escrow.
    Obtained,
    /// The new token passed verification.
    Verified,
    /// The store holds the new token as `pending`.
    Stored,
    /// The store holds the new token as `current` (dual mode: the gateway
    /// serves the pair with this member now).
    Switched,
    /// Dual mode: the previously active member's new token is in the
    /// escrow (REDCap has killed its old one).
    SecondObtained,
    /// Dual mode: it passed verification.
    SecondVerified,
    /// Dual mode: the store holds it as the now-standby member's
    /// `current`.
    SecondStored,
    /// The old token was shown to be dead.
    OldRevokedVerified,
    /// Finished.
    Done,
    /// The new token failed verification; the escrow is kept.
    Failed,
    /// Stopped by an operator.
    Aborted,
}

impl State {
    /// The name as the journal, the ledger and the CLI write it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Planned => "planned",
            State::Obtained => "obtained",
            State::Verified => "verified",
            State::Stored => "stored",
            State::Switched => "switched",
            State::SecondObtained => "second-obtained",
            State::SecondVerified => "second-verified",
            State::SecondStored => "second-stored",
            State::OldRevokedVerified => "old-revoked-verified",
            State::Done => "done",
            State::Failed => "failed",
            State::Aborted => "aborted",
        }
    }

    /// Whether the rotation still has work to do (not done, failed or
    /// aborted).
    pub fn is_open(self) -> bool {
        !matches!(self, State::Done | State::Failed | State::Aborted)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rotation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An account's token replaced (`rotate`).
    #[default]
    Rotation,
    /// An account's first token (`accounts enroll`): created rather than
    /// regenerated, no cut-over hold, and nothing old to prove dead unless
    /// the account had been retired.
    Enrol,
}

impl Kind {
    fn is_rotation(&self) -> bool {
        *self == Kind::Rotation
    }
}

/// One rotation as its journal keeps it: each journal line is the whole
/// record after a transition. Fingerprints only, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// `YYYYMMDDTHHMMSSZ-xxxxxx`: when it was planned, and random hex.
    pub id: String,
    /// A rotation, or an enrolment (absent in journals written before
    /// enrolments existed).
    #[serde(default, skip_serializing_if = "Kind::is_rotation")]
    pub kind: Kind,
    /// The `[[account]]` whose token is rotated.
    pub account: String,
    /// Its REDCap username.
    pub username: String,
    /// The secret holding its token.
    pub secret: String,
    /// The REDCap project the new token must belong to.
    pub project_id: u64,
    /// `single`: one account; the gateway holds its requests meanwhile.
    /// `dual`: a pair of accounts alternating ([`Rotation::dual`]).
    pub mode: String,
    /// The issuer named when the rotation was planned.
    pub issuer: String,
    /// Why the rotation was started.
    pub reason: String,
    /// Who started it.
    pub started_by: String,
    /// When it was planned.
    pub started: jiff::Timestamp,
    /// The state before the last transition (`none` for the first).
    pub from: String,
    /// The state now.
    pub state: State,
    /// When the state was entered.
    pub at: jiff::Timestamp,
    /// Who made the last transition.
    pub by: String,
    /// What the last transition did, for people.
    pub detail: String,
    /// The store version of the old token.
    pub old_version: String,
    /// The old token's fingerprint.
    pub old_fingerprint: String,
    /// The new token's fingerprint, once obtained.
    pub new_fingerprint: Option<String>,
    /// The store version of the new token, once stored.
    pub new_version: Option<String>,
    /// `proved` (REDCap's log shows verification's call under the
    /// account's username) or `unproven` (no log reader); `refuted` on a
    /// failed rotation whose token is another user's.
    pub ownership: Option<String>,
    /// The log row that proved it (redacted), or why it is unproven or
    /// refuted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership_evidence: Option<String>,
    /// The answer that showed the old token dead.
    pub proof: Option<String>,
    /// Whether the ledger holds the entry of the last transition.
    pub recorded: bool,
    /// The REDCap project's other accounts (`[[account]]` name, secret):
    /// a new token equal to one of their current tokens is the wrong
    /// account's and is refused. Absent in journals written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<(String, String)>,
    /// Dual-account mode: the pair. The fields above (`account` …
    /// `ownership`) describe the member being worked on: the standby
    /// first, then — once the gateway serves the standby — the member
    /// that was active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual: Option<Dual>,
}

/// A dual rotation's pair (`docs/rotation.md`, dual-account mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dual {
    /// The pair's key (the member name that sorts first).
    pub pair: String,
    /// The standby when the rotation was planned: regenerated first, then
    /// made active. Its results are filled in when the second leg begins.
    pub first: Member,
    /// The member active when the rotation was planned: regenerated once
    /// the gateway serves the first, so a leaked value of its old token
    /// dies too.
    pub second: Member,
    /// Whether the fields of [`Rotation`] describe the second member.
    pub second_leg: bool,
}

/// One member of a dual pair within a rotation. Fingerprints only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The `[[account]]`.
    pub account: String,
    /// Its REDCap username.
    pub username: String,
    /// The secret holding its token.
    pub secret: String,
    /// The store version of its old token.
    pub old_version: String,
    /// Its old token's fingerprint.
    pub old_fingerprint: String,
    /// Its new token's fingerprint, once obtained.
    pub new_fingerprint: Option<String>,
    /// The store version of its new token, once stored.
    pub new_version: Option<String>,
    /// What verification said of the new token's ownership.
    pub ownership: Option<String>,
}

/// Whether an `ownership` value says the new token was proved to be the
/// expected account's (by correlation with REDCap's log): it begins with
/// `proved`. Dual mode does not finish without it.
pub fn ownership_proved(ownership: Option<&str>) -> bool {
    ownership.is_some_and(|o| o.starts_with("proved"))
}

impl Rotation {
    /// Whether this rotation concerns `account`: its account, or either
    /// member of its dual pair.
    pub fn concerns(&self, account: &str) -> bool {
        self.account == account
            || self
                .dual
                .as_ref()
                .is_some_and(|d| d.first.account == account || d.second.account == account)
    }

    /// What the per-account lock is named: the account, or the pair's key.
    pub fn lock_name(&self) -> &str {
        self.dual.as_ref().map_or(&self.account, |d| &d.pair)
    }

    /// Where the token being worked on is escrowed: `<id>`, or in a dual
    /// rotation's second leg `<id>-second`.
    pub fn escrow_id(&self) -> String {
        match &self.dual {
            Some(d) if d.second_leg => format!("{}-second", self.id),
            _ => self.id.clone(),
        }
    }

    /// Whether this is a dual rotation in its second leg.
    pub fn second_leg(&self) -> bool {
        self.dual.as_ref().is_some_and(|d| d.second_leg)
    }
}

impl Rotation {
    /// The `rotation` ledger entry of the last transition: operator,
    /// reason, account and fingerprints, never a value.
    pub fn entry(&self) -> ledger::EntryKind {
        let mut detail = format!("{}; reason: {}", self.detail, self.reason);
        if self.old_version.is_empty() {
            detail.push_str("; first token of the account (enrolment): no old token");
        } else {
            detail.push_str(&format!("; old token {}", self.old_fingerprint));
        }
        if let Some(fp) = &self.new_fingerprint {
            detail.push_str(&format!("; new token {fp}"));
        }
        ledger::EntryKind::Rotation {
            rotation_id: self.id.clone(),
            account: self.account.clone(),
            from: self.from.clone(),
            to: self.state.as_str().to_string(),
            operator: self.by.clone(),
            detail,
        }
    }
}

/// Why a rotation step did not happen. Each message says what to do; a
/// rotation that stopped on one keeps its state, and `rotate resume ID`
/// continues from it.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The journal or escrow directory could not be written or read.
    #[error("{op} {}: {source}; fix: {fix}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
        /// What to do.
        fix: String,
    },
    /// A journal that does not read back.
    #[error("the rotation journal {} is damaged ({detail}); fix: restore it from backup, or move it aside and check the account's token with `secrets history`", path.display())]
    Damaged {
        /// The journal file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The escrow holds something that does not decrypt.
    #[error("the escrow {} cannot be read: {detail}; fix: {fix}", path.display())]
    Escrow {
        /// The escrow file.
        path: std::path::PathBuf,
        /// What is wrong.
        detail: String,
        /// What to do.
        fix: String,
    },
    /// No rotation has this id.
    #[error("no rotation `{id}` in {}; `redcap-warden rotate status` lists the open ones", dir.display())]
    NotFound {
        /// The id asked for.
        id: String,
        /// Where the journals are.
        dir: std::path::PathBuf,
    },
    /// The account already has an open rotation.
    #[error(
        "account `{account}` already has an open rotation `{id}` ({state}); finish it with `redcap-warden rotate resume {id}` or stop it with `redcap-warden rotate abort {id}`"
    )]
    Open {
        /// The account.
        account: String,
        /// The open rotation.
        id: String,
        /// Its state.
        state: State,
    },
    /// Another process is working on a rotation of this account.
    #[error("another redcap-warden process is rotating account `{account}` (it holds {}); wait for it to finish, then run `redcap-warden rotate status`", lock.display())]
    Busy {
        /// The account.
        account: String,
        /// The lock file.
        lock: std::path::PathBuf,
    },
    /// A step that cannot be taken in this state.
    #[error("{0}")]
    Refused(String),
    /// The issuer did not give a token; nothing changed.
    #[error("the {issuer} issuer did not give a token: {source}; fix: {fix}")]
    Issuer {
        /// Which issuer.
        issuer: &'static str,
        /// Why.
        #[source]
        source: IssueError,
        /// What to do.
        fix: String,
    },
    /// REDCap could not be asked (unreachable, 5xx): nothing was decided.
    #[error(
        "REDCap could not be asked {what}: {detail}; fix: check that REDCap answers at the configured URL, then `redcap-warden rotate resume {id}`"
    )]
    Redcap {
        /// What was being asked.
        what: &'static str,
        /// The transport or server error.
        detail: String,
        /// The rotation to resume.
        id: String,
    },
    /// The account's rights or DAG differ from its profile: the new token
    /// stays in escrow, not stored, until they are fixed.
    #[error("the rights of account `{account}` differ from its profile, so the new token is not stored: {}; fix: correct them in REDCap (User Rights), then `redcap-warden rotate resume {id}` — the new token waits in the escrow; or `redcap-warden rotate abort {id} --reason R` to store it as it is", findings.join("; "))]
    RightsDrift {
        /// The account.
        account: String,
        /// What differs.
        findings: Vec<String>,
        /// The rotation to resume.
        id: String,
    },
    /// The old token still authenticates after the switch.
    #[error(
        "the old token ({fingerprint}) still authenticates at REDCap, so it is not yet shown to be dead; fix: regenerate or delete it in REDCap (Control Center → API Tokens, user {username}), then `redcap-warden rotate resume {id}`"
    )]
    OldTokenAlive {
        /// The old token's fingerprint.
        fingerprint: String,
        /// The REDCap username.
        username: String,
        /// The rotation to resume.
        id: String,
    },
    /// The secrets store failed.
    #[error(
        "the secrets store: {source}; fix: once the store answers, `redcap-warden rotate resume {id}`"
    )]
    Store {
        /// The store's error.
        #[source]
        source: Box<secrets::StoreError>,
        /// The rotation to resume.
        id: String,
    },
    /// A hook after the switch failed; the new token is current.
    #[error(
        "{hook} failed: {detail}; the new token is already current. fix: make the hook succeed (it must be safe to run again), then `redcap-warden rotate resume {id}`"
    )]
    Hook {
        /// Which hook.
        hook: String,
        /// Why.
        detail: String,
        /// The rotation to resume.
        id: String,
    },
    /// The gateway refused the hold or the release.
    #[error("the gateway: {detail}; fix: {fix}")]
    Gateway {
        /// What the gateway said.
        detail: String,
        /// What to do.
        fix: String,
    },
    /// The ledger could not record the transition (fail closed: the next
    /// step is not taken).
    #[error(
        "recording the rotation in the ledger: {0}; the rotation stopped before its next step — `redcap-warden rotate resume` continues it once the ledger can record"
    )]
    Audit(#[from] AuditError),
}
