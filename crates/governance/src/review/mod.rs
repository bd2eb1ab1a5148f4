//! Signed audit-trail reviews (`review statement`, `review sign`, `review
//! list`): a person listed in `[review] reviewers` attests, with their SSH
//! key (namespace `redcap-warden-review`), that they reviewed the ledger's
//! entries of a period — a range of entries under a signed checkpoint —
//! and acknowledged the reconciliation findings recorded in it.
//!
//! - [`Statement`]: what is signed, as canonical JSON: the ledger, the
//!   period, the range of entries (those of the period below the
//!   checkpoint's size, so it never changes once printed), the checkpoint
//!   (size and root), the `reconcile` runs and the findings they recorded,
//!   the reviewer (the OS login of whoever printed it, with a typed name
//!   beside it, never instead), a note, the time.
//! - [`ReviewFacts`]: the ledger's side, in one pass over its lines: the
//!   range, the findings, the tree's root at the checkpoint's size, and
//!   the digests of every statement and signature already used.
//! - [`verify`]: the signature ([`crate::sshsig`]), then everything the
//!   statement claims against the ledger, each refusal with its reason.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::Date;
use ledger::merkle::{self, TreeBuilder};
use ledger::{Entry, EntryKind};
use serde::{Deserialize, Serialize};
use warden_config::{Approver, REVIEW_NAMESPACE};

use crate::reauth::principal_is;
use crate::sshsig::{SignatureError, check};

/// How old a statement may be when it is signed in.
pub const STATEMENT_MAX_AGE_DAYS: i64 = 7;

/// How far ahead of this machine's clock a statement's time may be.
const CLOCK_SKEW_SECONDS: i64 = 300;

/// What a review covers: `[from, until)`, UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// As written (`2026-11`, `2026-11-03`, `2026-11-01..2026-11-15`).
    pub text: String,
    /// Start (inclusive).
    pub from: Timestamp,
    /// End (exclusive).
    pub until: Timestamp,
}

impl Period {
    /// Reads a period: a UTC month `YYYY-MM`, a UTC day `YYYY-MM-DD`, or
    /// `A..B` with A and B days (B included) or RFC 3339 times (B
    /// excluded).
    pub fn parse(text: &str) -> Result<Period, String> {
        let t = text.trim();
        let bad = || {
            format!(
                "`{text}` is not a period; write a month (2026-11), a day (2026-11-03), or FROM..UNTIL with days (2026-11-01..2026-11-15) or RFC 3339 times"
            )
        };
        let midnight = |d: Date| {
            jiff::tz::TimeZone::UTC
                .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                .map_err(|_| bad())
        };
        let next_day = |d: Date| d.tomorrow().map_err(|_| bad());
        let (from, until) = if let Some((a, b)) = t.split_once("..") {
            match (a.trim().parse::<Date>(), b.trim().parse::<Date>()) {
                (Ok(a), Ok(b)) => (midnight(a)?, midnight(next_day(b)?)?),
                _ => (
                    a.trim().parse::<Timestamp>().map_err(|_| bad())?,
                    b.trim().parse::<Timestamp>().map_err(|_| bad())?,
                ),
            }
        } else if let Ok(d) = t.parse::<Date>() {
            (midnight(d)?, midnight(next_day(d)?)?)
        } else {
            let d: Date = format!("{t}-01").parse().map_err(|_| bad())?;
            if t.len() != 7 {
                return Err(bad());
            }
            let next = d
                .checked_add(jiff::Span::new().months(1))
                .map_err(|_| bad())?;
            (midnight(d)?, midnight(next)?)
        };
        if until <= from {
            return Err(format!(
                "the period `{text}` ends before it starts; give FROM..UNTIL with UNTIL after FROM"
            ));
        }
        Ok(Period {
            text: t.to_string(),
            from,
            until,
        })
    }
}

/// The entries a review covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The first entry of the period.
    pub first_seq: u64,
    /// The last entry of the period below the checkpoint's size.
    pub last_seq: u64,
    /// How many entries of the period (they are consecutive).
    pub count: u64,
}

/// The checkpoint a review is made under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// Its tree size.
    pub size: u64,
    /// Its root (hex).
    pub root: String,
}

/// A `reconcile` entry with findings, acknowledged by the review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acknowledged {
    /// The `reconcile` entry.
    pub seq: u64,
    /// The window it compared.
    pub window_start: String,
    /// The window's end.
    pub window_end: String,
    /// How many findings it recorded.
    pub findings: u64,
    /// Its summary (counts per code and the findings' digest).
    pub summary: String,
}

/// What a reviewer signs, as `review statement` prints it: one line of
/// canonical JSON (compact, fields in this order, one newline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always `audit-trail`.
    pub review: String,
    /// The ledger's origin.
    pub ledger: String,
    /// The period as written.
    pub period: String,
    /// Its start, UTC (RFC 3339).
    pub from: String,
    /// Its end (excluded), UTC.
    pub until: String,
    /// The entries reviewed.
    pub entries: Range,
    /// The checkpoint they are under.
    pub checkpoint: CheckpointRef,
    /// `reconcile` runs recorded in the range.
    pub reconcile_runs: u64,
    /// The runs with findings: acknowledged.
    pub findings: Vec<Acknowledged>,
    /// Who reviews: the OS login that printed the statement (and a typed
    /// name beside it).
    pub reviewer: String,
    /// The reviewer's remarks.
    pub note: String,
    /// When it was printed (UTC).
    pub ts: Timestamp,
}

impl Statement {
    /// The bytes to sign.
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string(self).expect("statements serialise");
        s.push('\n');
        s
    }

    /// Reads a statement from the bytes that were signed, which must be
    /// exactly what [`Statement::to_text`] gives.
    pub fn parse(bytes: &[u8]) -> Result<Statement, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
        let json = text
            .strip_suffix('\n')
            .ok_or("it does not end in a newline")?;
        let s: Statement =
            serde_json::from_str(json).map_err(|e| format!("not review statement JSON: {e}"))?;
        if s.to_text().as_bytes() != bytes {
            return Err("it is not in canonical form (it was edited after printing)".into());
        }
        if s.review != "audit-trail" {
            return Err(format!("it is a `{}` review, not `audit-trail`", s.review));
        }
        Ok(s)
    }

    /// One line for the `review` entry's `scope`.
    pub fn scope(&self) -> String {
        format!(
            "ledger {} entries {}..{} ({} entries) of period {} ({} to {}), under checkpoint {} root {}",
            self.ledger,
            self.entries.first_seq,
            self.entries.last_seq,
            self.entries.count,
            self.period,
            self.from,
            self.until,
            self.checkpoint.size,
            self.checkpoint.root
        )
    }

    /// One line for the `review` entry's `outcome`.
    pub fn outcome(&self) -> String {
        let total: u64 = self.findings.iter().map(|f| f.findings).sum();
        let seqs: Vec<String> = self.findings.iter().map(|f| f.seq.to_string()).collect();
        format!(
            "reviewed; {total} finding(s) of {} reconcile run(s) with findings acknowledged{} ({} reconcile run(s) in the range)",
            self.findings.len(),
            if seqs.is_empty() {
                String::new()
            } else {
                format!(" (entries {})", seqs.join(", "))
            },
            self.reconcile_runs
        )
    }
}

/// A review recorded in the ledger (for `review list` and replays).
#[derive(Debug, Clone, Serialize)]
pub struct PastReview {
    /// Its entry.
    pub seq: u64,
    /// When it was recorded.
    pub ts: Timestamp,
    /// Who reviewed.
    pub reviewer: String,
    /// What was reviewed.
    pub scope: String,
    /// The conclusion.
    pub outcome: String,
    /// Remarks.
    pub note: String,
    /// The principal whose key signed it, if signed.
    pub signer: Option<String>,
}

/// The ledger's side of a review, read in one pass over its lines
/// ([`ReviewFacts::push`] each, in order).
#[derive(Debug)]
pub struct ReviewFacts {
    period: Option<Period>,
    /// Entries below this size count (the checkpoint's).
    cap: u64,
    tree: TreeBuilder,
    /// The root of the tree of `cap` entries, once read.
    pub root: Option<merkle::Hash>,
    /// The period's entries below `cap`.
    pub range: Option<Range>,
    /// `reconcile` entries in the range.
    pub reconcile_runs: u64,
    /// Those with findings.
    pub findings: Vec<Acknowledged>,
    /// Digests of used statements and signatures → their review entry.
    pub used: HashMap<String, u64>,
    /// Every review recorded.
    pub reviews: Vec<PastReview>,
    /// The ledger's origin (from its first header).
    pub origin: Option<String>,
    /// Entries read.
    pub entries: u64,
}

impl ReviewFacts {
    /// Facts about `period` among the first `cap` entries.
    pub fn new(period: Option<Period>, cap: u64) -> ReviewFacts {
        ReviewFacts {
            period,
            cap,
            tree: TreeBuilder::new(),
            root: (cap == 0).then(merkle::empty_root),
            range: None,
            reconcile_runs: 0,
            findings: Vec::new(),
            used: HashMap::new(),
            reviews: Vec::new(),
            origin: None,
            entries: 0,
        }
    }

    /// Takes in line `seq` as stored. Lines that are not entries are
    /// left to `ledger verify`.
    pub fn push(&mut self, seq: u64, line: &[u8]) {
        self.entries = seq + 1;
        if seq < self.cap {
            self.tree.push(merkle::leaf_hash(line));
            if seq + 1 == self.cap {
                self.root = Some(self.tree.root());
            }
        }
        let Ok(entry) = Entry::from_line(line) else {
            return;
        };
        self.take(&entry);
    }

    fn take(&mut self, e: &Entry) {
        match &e.kind {
            EntryKind::Header { origin, .. } if self.origin.is_none() => {
                self.origin = Some(origin.clone());
            }
            EntryKind::Review {
                reviewer,
                scope,
                outcome,
                note,
                signed,
            } => {
                if let Some(s) = signed {
                    for text in [s.statement.as_bytes(), s.signature.trim().as_bytes()] {
                        self.used
                            .insert(crate::reauth::statement::sha256_hex(text), e.seq);
                    }
                }
                self.reviews.push(PastReview {
                    seq: e.seq,
                    ts: e.ts,
                    reviewer: reviewer.clone(),
                    scope: scope.clone(),
                    outcome: outcome.clone(),
                    note: note.clone(),
                    signer: signed.as_ref().map(|s| s.signer.clone()),
                });
            }
            _ => {}
        }
        let Some(p) = &self.period else { return };
        if e.seq >= self.cap || e.ts < p.from || e.ts >= p.until {
            return;
        }
        match &mut self.range {
            Some(r) => {
                r.last_seq = e.seq;
                r.count += 1;
            }
            None => {
                self.range = Some(Range {
                    first_seq: e.seq,
                    last_seq: e.seq,
                    count: 1,
                })
            }
        }
        if let EntryKind::Reconcile {
            window_start,
            window_end,
            findings,
            summary,
        } = &e.kind
        {
            self.reconcile_runs += 1;
            if *findings > 0 {
                self.findings.push(Acknowledged {
                    seq: e.seq,
                    window_start: window_start.clone(),
                    window_end: window_end.clone(),
                    findings: *findings,
                    summary: summary.clone(),
                });
            }
        }
    }
}

/// Why a review is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `[review] reviewers`.
    #[error(
        "warden.toml lists no reviewers, so no review can be signed; add [review] reviewers = [\"qa@example.org ssh-ed25519 AAAA… qa\"] (docs/review.md)"
    )]
    NoReviewers,
    /// The signature file is not an SSH signature.
    #[error(
        "the signature file is not an SSH signature ({0}), so the review is unsigned; sign the statement with: ssh-keygen -Y sign -n redcap-warden-review -f ~/.ssh/id_ed25519 STATEMENT"
    )]
    Unsigned(String),
    /// Signed for another purpose.
    #[error(
        "the signature is for namespace `{0}`, not `redcap-warden-review` (a signature made for something else); sign with -n redcap-warden-review"
    )]
    WrongNamespace(String),
    /// Made with a key type this tool cannot verify.
    #[error(
        "the signature was made with a `{0}` key, which redcap-warden cannot verify (it verifies ssh-ed25519 signatures only)"
    )]
    UnsupportedKey(String),
    /// The key is not a reviewer's.
    #[error(
        "the signature was made with key {0}, which is not among [review] reviewers in warden.toml (wrong signer)"
    )]
    NotAReviewer(String),
    /// The signature does not verify over the statement.
    #[error(
        "the signature does not match the statement: the statement was changed after it was signed, or another file was signed"
    )]
    BadSignature,
    /// The signed bytes are not a statement.
    #[error("the signed file is not a statement `review statement` printed: {0}")]
    NotAStatement(String),
    /// Printed too long ago.
    #[error(
        "the statement was printed at {0}, more than {max} days ago (expired); print a new one with `redcap-warden review statement` and sign that",
        max = STATEMENT_MAX_AGE_DAYS
    )]
    Expired(Timestamp),
    /// Printed in the future.
    #[error("the statement's time {0} is in the future; check this machine's clock")]
    FromTheFuture(Timestamp),
    /// The reviewer is not who records it, or the key is not theirs.
    #[error("{0}")]
    NotTheReviewer(String),
    /// What the statement claims is not what the ledger holds.
    #[error(
        "the statement does not match the ledger (self-incoherent): {0}; print a new statement"
    )]
    Incoherent(String),
    /// Already used.
    #[error(
        "this statement or signature was already used by the review in ledger entry {0} (replayed); each review needs a new statement"
    )]
    Replayed(u64),
}

/// A review that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The statement.
    pub statement: Statement,
    /// Its bytes as signed.
    pub statement_text: String,
    /// The armored signature.
    pub signature_text: String,
    /// The reviewer whose key signed.
    pub signer: Approver,
    /// The signing key's fingerprint.
    pub fingerprint: String,
}

/// What the ledger says about a statement's claims, for [`verify`].
pub struct Ledger<'a> {
    /// Its origin.
    pub origin: &'a str,
    /// Facts read with the statement's period and checkpoint size.
    pub facts: &'a ReviewFacts,
}

/// Checks a signed review: the signature by one of `reviewers` over the
/// statement, the statement's age, that `operator` (the OS login signing
/// it in) printed it and owns the key, that its period, range,
/// checkpoint and findings are the ledger's, and that it was never used.
pub fn verify(
    reviewers: &[Approver],
    statement: &[u8],
    signature: &[u8],
    ledger: &Ledger<'_>,
    operator: &str,
    now: Timestamp,
) -> Result<Verified, Refusal> {
    if reviewers.is_empty() {
        return Err(Refusal::NoReviewers);
    }
    let signed = check(reviewers, REVIEW_NAMESPACE, statement, signature).map_err(|e| match e {
        SignatureError::Unsigned(w) => Refusal::Unsigned(w),
        SignatureError::WrongNamespace(n) => Refusal::WrongNamespace(n),
        SignatureError::UnsupportedKey(k) => Refusal::UnsupportedKey(k),
        SignatureError::NotListed(f) => Refusal::NotAReviewer(f),
        SignatureError::BadSignature => Refusal::BadSignature,
    })?;
    let s = Statement::parse(statement).map_err(Refusal::NotAStatement)?;
    let age = now.as_second() - s.ts.as_second();
    if age > STATEMENT_MAX_AGE_DAYS * 86_400 {
        return Err(Refusal::Expired(s.ts));
    }
    if age < -CLOCK_SKEW_SECONDS {
        return Err(Refusal::FromTheFuture(s.ts));
    }
    if s.reviewer != operator {
        return Err(Refusal::NotTheReviewer(format!(
            "the statement names reviewer `{}`, but `{operator}` is signing it in: the reviewer prints, signs and records their own review",
            s.reviewer
        )));
    }
    if !signed
        .signer
        .principals
        .iter()
        .any(|p| principal_is(p, operator))
    {
        return Err(Refusal::NotTheReviewer(format!(
            "the review was signed with the key of `{}`, but `{operator}` is recording it: each reviewer signs with their own key",
            signed.signer.principals.join(",")
        )));
    }
    check_claims(&s, ledger).map_err(Refusal::Incoherent)?;
    let signature_text = String::from_utf8_lossy(signature).to_string();
    for used in [
        crate::reauth::statement::sha256_hex(statement),
        crate::reauth::statement::sha256_hex(signature_text.trim().as_bytes()),
    ] {
        if let Some(seq) = ledger.facts.used.get(&used) {
            return Err(Refusal::Replayed(*seq));
        }
    }
    Ok(Verified {
        statement_text: String::from_utf8_lossy(statement).to_string(),
        signature_text,
        signer: signed.signer,
        fingerprint: signed.fingerprint,
        statement: s,
    })
}

/// The statement's claims against the ledger's facts (read with its
/// period and its checkpoint's size).
fn check_claims(s: &Statement, ledger: &Ledger<'_>) -> Result<(), String> {
    let f = ledger.facts;
    if s.ledger != ledger.origin {
        return Err(format!(
            "it is about ledger `{}`, this is `{}`",
            s.ledger, ledger.origin
        ));
    }
    let period = Period::parse(&s.period)?;
    if period.from.to_string() != s.from || period.until.to_string() != s.until {
        return Err(format!(
            "period `{}` is {} to {}, not {} to {}",
            s.period, period.from, period.until, s.from, s.until
        ));
    }
    if f.entries < s.checkpoint.size {
        return Err(format!(
            "checkpoint size {} is beyond the ledger's {} entries",
            s.checkpoint.size, f.entries
        ));
    }
    if f.root.map(hex::encode).as_deref() != Some(s.checkpoint.root.as_str()) {
        return Err(format!(
            "the ledger's first {} entries do not have root {}",
            s.checkpoint.size, s.checkpoint.root
        ));
    }
    if f.range.as_ref() != Some(&s.entries) {
        return Err(format!(
            "the period's entries under the checkpoint are {}, not {}..{} ({})",
            f.range.as_ref().map_or("none".to_string(), |r| format!(
                "{}..{} ({})",
                r.first_seq, r.last_seq, r.count
            )),
            s.entries.first_seq,
            s.entries.last_seq,
            s.entries.count
        ));
    }
    if f.reconcile_runs != s.reconcile_runs || f.findings != s.findings {
        return Err(format!(
            "the range holds {} reconcile run(s), {} with findings (entries {:?}); the statement acknowledges {} of {} (entries {:?})",
            f.reconcile_runs,
            f.findings.len(),
            f.findings.iter().map(|a| a.seq).collect::<Vec<_>>(),
            s.findings.len(),
            s.reconcile_runs,
            s.findings.iter().map(|a| a.seq).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// The statement for `period` from `facts` (read with the latest
/// checkpoint's size as cap) under checkpoint (`size`, `root`).
pub fn statement(
    facts: &ReviewFacts,
    period: &Period,
    origin: &str,
    checkpoint: CheckpointRef,
    reviewer: &str,
    note: &str,
    now: Timestamp,
) -> Result<Statement, String> {
    let Some(range) = facts.range.clone() else {
        return Err(format!(
            "the ledger has no entry of period `{}` ({} to {}) under its latest checkpoint (size {}); nothing to review",
            period.text, period.from, period.until, checkpoint.size
        ));
    };
    Ok(Statement {
        review: "audit-trail".into(),
        ledger: origin.to_string(),
        period: period.text.clone(),
        from: period.from.to_string(),
        until: period.until.to_string(),
        entries: range,
        checkpoint,
        reconcile_runs: facts.reconcile_runs,
        findings: facts.findings.clone(),
        reviewer: reviewer.to_string(),
        note: note.to_string(),
        ts: now.round(jiff::Unit::Second).unwrap_or(now),
    })
}

#[cfg(test)]
mod tests;
