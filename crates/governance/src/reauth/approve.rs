//! Checking a signed approval: the SSH signature (SSHSIG, namespace
//! `redcap-warden-reauth`) by one of the account's approvers over a
//! statement `reauth statement` printed, recent, never used before, not by
//! the person who last changed the account's rights, over the rights the
//! account holds now. Each refusal says why.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use warden_config::{AccountSection, Approver, REAUTH_NAMESPACE};

use super::facts::LedgerFacts;
use super::statement::{Statement, sha256_hex};
use super::status::{add_days, day};

/// How old a statement may be when its approval is presented.
pub const STATEMENT_MAX_AGE_DAYS: i64 = 7;

/// How far ahead of this machine's clock a statement's time may be (the
/// clocks of the machines printing and checking it differ a little).
const CLOCK_SKEW_SECONDS: i64 = 300;

/// Why an approval is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The account has no `reauth_every_days`.
    #[error(
        "account `{0}` is not under re-authorisation (no reauth_every_days in warden.toml), so there is nothing to approve"
    )]
    NotGoverned(String),
    /// The signature file is not an SSH signature.
    #[error(
        "the signature file is not an SSH signature ({0}), so the statement is unsigned; the approver signs it with: ssh-keygen -Y sign -n redcap-warden-reauth -f ~/.ssh/id_ed25519 STATEMENT"
    )]
    Unsigned(String),
    /// Signed for another purpose.
    #[error(
        "the signature is for namespace `{0}`, not `redcap-warden-reauth` (a signature made for something else); sign with -n redcap-warden-reauth"
    )]
    WrongNamespace(String),
    /// Made with a key type this tool cannot verify.
    #[error(
        "the signature was made with a `{0}` key, which redcap-warden cannot verify (it verifies ssh-ed25519 signatures only); sign with an Ed25519 key listed in the account's approvers"
    )]
    UnsupportedKey(String),
    /// The key is nobody's listed for the account.
    #[error(
        "the signature was made with key {fingerprint}, which is not among the approvers of account `{account}` in warden.toml (wrong signer)"
    )]
    NotAnApprover {
        /// The account.
        account: String,
        /// The signing key's SHA-256 fingerprint.
        fingerprint: String,
    },
    /// The signature does not verify over the statement.
    #[error(
        "the signature does not match the statement: the statement was changed after it was signed, or another file was signed"
    )]
    BadSignature,
    /// The signed bytes are not a statement.
    #[error("the signed file is not a statement `reauth statement` printed: {0}")]
    NotAStatement(String),
    /// A statement for another account or study.
    #[error("the statement is for {what} `{found}`, not `{expected}`")]
    OtherAccount {
        /// `account` or `study`.
        what: &'static str,
        /// What the statement names.
        found: String,
        /// What it should name.
        expected: String,
    },
    /// Printed too long ago.
    #[error(
        "the statement was printed at {0}, more than {max} days ago (expired); print a new one with `redcap-warden reauth statement` and have it signed",
        max = STATEMENT_MAX_AGE_DAYS
    )]
    Expired(Timestamp),
    /// Printed in the future.
    #[error("the statement's time {0} is in the future; check this machine's clock")]
    FromTheFuture(Timestamp),
    /// Its period is not what the configuration allows.
    #[error(
        "the statement's period {from} to {until} is not from its own day to at most reauth_every_days = {days} days later; print a new statement"
    )]
    BadPeriod {
        /// The period's first day.
        from: jiff::civil::Date,
        /// The period's end.
        until: jiff::civil::Date,
        /// `reauth_every_days`.
        days: u32,
    },
    /// Already used.
    #[error(
        "this statement or signature was already used by the approval in ledger entry {0} (replayed); each approval needs a new statement"
    )]
    Replayed(u64),
    /// The approver last changed the account's rights.
    #[error(
        "approver `{signer}` is `{operator}`, who last changed the rights of account `{account}` (ledger entry {seq}); someone else must approve (self-approval)"
    )]
    SelfApproval {
        /// The approver's principal.
        signer: String,
        /// The operator of the rights change.
        operator: String,
        /// The account.
        account: String,
        /// The rights change's ledger entry.
        seq: u64,
    },
    /// The live rights are not those approved.
    #[error(
        "the rights of account `{account}` in REDCap changed since the statement was printed (statement {signed}, now {live}); print a new statement, review it and sign that"
    )]
    RightsChanged {
        /// The account.
        account: String,
        /// The digest signed.
        signed: String,
        /// The digest now.
        live: String,
    },
}

/// An approval that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The statement signed.
    pub statement: Statement,
    /// Its bytes as signed.
    pub statement_text: String,
    /// The armored signature.
    pub signature_text: String,
    /// The approver whose key signed.
    pub approver: Approver,
    /// The approver's first principal.
    pub signer: String,
    /// The signing key's SHA-256 fingerprint.
    pub fingerprint: String,
}

/// What is presented for an approval.
pub struct Presented<'a> {
    /// The statement file's bytes.
    pub statement: &'a [u8],
    /// The signature file's bytes.
    pub signature: &'a [u8],
}

/// Whether an approver's principal names `operator` (an OS login as the
/// ledger records it, e.g. `ana` or `ana (via sudo by bob)`): the same
/// name, or the part before `@` of an e-mail-like principal, matches the
/// login or the sudo user, ignoring case.
pub fn principal_is(principal: &str, operator: &str) -> bool {
    let login = operator.split_whitespace().next().unwrap_or_default();
    let sudo = operator
        .split_once("(via sudo by ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(who, _)| who);
    let local = principal.split('@').next().unwrap_or(principal);
    [Some(login), sudo]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .any(|n| n.eq_ignore_ascii_case(principal) || n.eq_ignore_ascii_case(local))
}

/// Checks the signature alone: an SSHSIG in our namespace, by an approver
/// of `account`, over `statement` (the check reviews share,
/// [`crate::sshsig`]).
fn check_signature(
    account: &AccountSection,
    presented: &Presented<'_>,
) -> Result<(Approver, String), Refusal> {
    use crate::sshsig::{SignatureError, check};
    check(
        &account.approvers,
        REAUTH_NAMESPACE,
        presented.statement,
        presented.signature,
    )
    .map(|s| (s.signer, s.fingerprint))
    .map_err(|e| match e {
        SignatureError::Unsigned(what) => Refusal::Unsigned(what),
        SignatureError::WrongNamespace(ns) => Refusal::WrongNamespace(ns),
        SignatureError::UnsupportedKey(kind) => Refusal::UnsupportedKey(kind),
        SignatureError::NotListed(fingerprint) => Refusal::NotAnApprover {
            account: account.name.clone(),
            fingerprint,
        },
        SignatureError::BadSignature => Refusal::BadSignature,
    })
}

/// Checks an approval of `account` (of study `account.study`) at `now`
/// against the ledger's `facts` and the account's rights in REDCap now
/// (`live_digest`, see [`super::rights_digest`]).
pub fn verify(
    account: &AccountSection,
    presented: &Presented<'_>,
    facts: &LedgerFacts,
    live_digest: &str,
    now: Timestamp,
    tz: &TimeZone,
) -> Result<Verified, Refusal> {
    let Some(every) = account.reauth_every_days else {
        return Err(Refusal::NotGoverned(account.name.clone()));
    };
    let (approver, fingerprint) = check_signature(account, presented)?;
    let statement =
        Statement::parse(presented.statement).map_err(|e| Refusal::NotAStatement(e.to_string()))?;
    for (what, found, expected) in [
        ("account", &statement.account, &account.name),
        ("study", &statement.study, &account.study),
    ] {
        if found != expected {
            return Err(Refusal::OtherAccount {
                what,
                found: found.clone(),
                expected: expected.clone(),
            });
        }
    }
    let age = now.as_second() - statement.ts.as_second();
    if age > STATEMENT_MAX_AGE_DAYS * 86_400 {
        return Err(Refusal::Expired(statement.ts));
    }
    if age < -CLOCK_SKEW_SECONDS {
        return Err(Refusal::FromTheFuture(statement.ts));
    }
    let period = &statement.period;
    if period.from != day(statement.ts, tz)
        || period.until <= period.from
        || period.until > add_days(period.from, every)
    {
        return Err(Refusal::BadPeriod {
            from: period.from,
            until: period.until,
            days: every,
        });
    }
    let signature_text = String::from_utf8_lossy(presented.signature).to_string();
    for used in [
        sha256_hex(presented.statement),
        sha256_hex(signature_text.trim().as_bytes()),
    ] {
        if let Some(seq) = facts.used.get(&used) {
            return Err(Refusal::Replayed(*seq));
        }
    }
    if let Some(change) = facts.of(&account.name).rights_changed
        && let Some(p) = approver
            .principals
            .iter()
            .find(|p| principal_is(p, &change.operator))
    {
        return Err(Refusal::SelfApproval {
            signer: p.clone(),
            operator: change.operator,
            account: account.name.clone(),
            seq: change.seq,
        });
    }
    if statement.rights_digest != live_digest {
        return Err(Refusal::RightsChanged {
            account: account.name.clone(),
            signed: statement.rights_digest.clone(),
            live: live_digest.to_string(),
        });
    }
    Ok(Verified {
        statement_text: String::from_utf8_lossy(presented.statement).to_string(),
        signature_text,
        signer: approver.principals[0].clone(),
        approver,
        statement,
        fingerprint,
    })
}
