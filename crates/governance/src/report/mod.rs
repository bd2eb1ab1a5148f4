//! The evidence an inspector reads: one model behind `report --out
//! FILE.html` and the gateway's dashboard (docs/report.md).
//!
//! Nothing here is computed a second time. Each view is what its own
//! command computes: the token inventory is [`crate::rotation::inventory`]
//! (`rotate status`), rights drift is `rights check`'s findings,
//! re-authorisation is [`crate::reauth::assess`] over the ledger's
//! [`crate::reauth::LedgerFacts`], ledger verification is the ledger
//! crate's verifier; the rotation timeline, the latest `reconcile` and
//! `rights` runs, alerts, reviews and the request rate are read from the
//! ledger in the same single pass ([`LedgerScan`]) that feeds
//! re-authorisation. The caller (the CLI, or `serve` for the dashboard)
//! does the reading and hands the results in; this module decides what is
//! a finding ([`Evidence::findings`]), maps each requirement of
//! compliance.md to its evidence ([`compliance`]), and renders HTML with
//! inline SVG charts ([`html`]).
//!
//! No token value ever reaches the model: tokens are named by their
//! fingerprint, REDCap's log rows only appear as the `reconcile` entries'
//! summaries (redacted before they were written).

pub mod compliance;
pub mod html;
mod scan;
mod svg;

#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde::Serialize;

pub use scan::{
    ActivityMinute, AlertSeen, LedgerScan, ReconcileRun, ReviewSeen, RightsRun, RotationStep,
};

use crate::reauth::AccountStatus;
use crate::rights::Severity;
use crate::rotation::TokenStatus;

/// Everything the report and the dashboard show.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// When the evidence was gathered.
    pub generated_at: Timestamp,
    /// The configuration file it was gathered for.
    pub config_path: String,
    /// `[redcap] time_zone`.
    pub redcap_time_zone: String,
    /// The token inventory (`rotate status`).
    pub tokens: Vec<TokenStatus>,
    /// Rights drift (`rights check`).
    pub rights: RightsView,
    /// Re-authorisation status of the accounts that have one (`reauth
    /// status`).
    pub reauth: Vec<AccountStatus>,
    /// Ledger verification and the latest signed checkpoint.
    pub ledger: LedgerView,
    /// What the ledger holds beyond that, read in one pass.
    pub scan: LedgerScan,
    /// The gateway's client keys (`keys list`).
    pub keys: Vec<ClientKeyView>,
    /// The running gateway's own counters (the dashboard only).
    pub live: Option<LiveMetrics>,
}

/// Rights drift as this run could know it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum RightsView {
    /// `rights check` ran now, against REDCap.
    Checked {
        /// One result per study checked.
        studies: Vec<StudyRights>,
    },
    /// REDCap could not be read (unreachable, a refused token…): why.
    Unavailable {
        /// What went wrong, as `rights check` says it.
        reason: String,
    },
    /// Not checked live here (the dashboard does not call REDCap on every
    /// refresh): the latest `rights check` runs recorded in the ledger
    /// ([`LedgerScan::rights_checks`]) stand for it.
    FromLedger,
}

/// One study's `rights check` findings.
#[derive(Debug, Clone, Serialize)]
pub struct StudyRights {
    /// The `[[study]]`.
    pub study: String,
    /// Its findings (empty: every governed account is within its profile).
    pub findings: Vec<crate::rights::Finding>,
}

/// The ledger's verification and its latest signed checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerView {
    /// Where the ledger is (a directory, or a PostgreSQL schema).
    pub place: String,
    /// The verifier key checkpoints were checked with.
    pub verifier_key: String,
    /// What verification found, or why it failed.
    pub verified: Result<VerifySummary, String>,
    /// The text of the latest signed note (C2SP), if there is one.
    pub latest_checkpoint: Option<String>,
    /// How it was verified: in full, or (the dashboard) the entries and
    /// checkpoints appended since the last verification, and when it was
    /// last verified in full.
    pub how: VerifiedHow,
    /// The dashboard: the verified ledger changed under it (a segment
    /// truncated, replaced or rewritten; the checkpoints rewritten) — when
    /// it was seen and what. It was then verified in full again.
    pub changed: Option<String>,
}

/// How a [`LedgerView`] was verified.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum VerifiedHow {
    /// Every entry and checkpoint, now.
    Full,
    /// What was appended since the last look, onto a prefix verified in
    /// full at `full_at` (docs/report.md).
    Incremental {
        /// The last full verification.
        full_at: Timestamp,
        /// Entries verified in this look.
        new_entries: u64,
    },
}

/// A successful verification's figures.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    /// Entries in the log.
    pub entries: u64,
    /// Checkpoints, every signature valid.
    pub checkpoints: usize,
    /// The size the last checkpoint signs.
    pub anchored: u64,
    /// Entries after it, not yet signed.
    pub unanchored: u64,
    /// The root of the whole log (hex).
    pub root: String,
}

/// A client key as `keys list` shows it: never the key, only its id.
#[derive(Debug, Clone, Serialize)]
pub struct ClientKeyView {
    /// The `[[gateway.client]]`.
    pub client: String,
    /// The key's id.
    pub id: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// Its last use through the gateway.
    pub last_used: Option<Timestamp>,
    /// Who issued it.
    pub issued_by: String,
}

/// The running gateway's counters, per minute (the dashboard).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveMetrics {
    /// Oldest first; minutes with nothing are present with zeros.
    pub minutes: Vec<LiveMinute>,
    /// Requests answered since the gateway started.
    pub requests_total: u64,
    /// Requests refused before forwarding since it started.
    pub denied_total: u64,
    /// Whether the ledger is degraded (the gateway refuses requests).
    pub ledger_degraded: bool,
    /// Accounts held for a cut-over now.
    pub held_accounts: Vec<String>,
}

/// One minute of the gateway's traffic.
#[derive(Debug, Clone, Serialize)]
pub struct LiveMinute {
    /// The minute's start.
    pub at: Timestamp,
    /// Requests answered.
    pub requests: u64,
    /// Requests refused (authentication or policy).
    pub denied: u64,
    /// Mean latency of the answered requests, milliseconds.
    pub mean_latency_ms: f64,
}

/// Something the report asks a person to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters; `critical` makes `report` exit 1.
    pub severity: Severity,
    /// The report section holding its evidence (an HTML anchor).
    pub section: &'static str,
    /// What was found, in one line.
    pub text: String,
}

/// Section anchors, shared by the findings, the HTML and the compliance
/// map.
pub mod sections {
    /// The findings list.
    pub const FINDINGS: &str = "findings";
    /// Token inventory and ages.
    pub const TOKENS: &str = "tokens";
    /// The rotation timeline.
    pub const ROTATIONS: &str = "rotations";
    /// Rights drift.
    pub const RIGHTS: &str = "rights";
    /// Re-authorisation.
    pub const REAUTH: &str = "reauth";
    /// Ledger verification and checkpoint.
    pub const LEDGER: &str = "ledger";
    /// Reconciliation with REDCap's log.
    pub const RECONCILE: &str = "reconcile";
    /// Client keys.
    pub const KEYS: &str = "keys";
    /// Request rate, denials, alerts.
    pub const ACTIVITY: &str = "activity";
    /// Audit-trail reviews.
    pub const REVIEWS: &str = "reviews";
    /// The compliance map.
    pub const COMPLIANCE: &str = "compliance";
}

impl Evidence {
    /// Every finding, most severe first.
    pub fn findings(&self) -> Vec<Finding> {
        use sections as s;
        let mut out = Vec::new();
        let mut add = |severity, section, text: String| {
            out.push(Finding {
                severity,
                section,
                text,
            })
        };
        match &self.ledger.verified {
            Err(e) => add(
                Severity::Critical,
                s::LEDGER,
                format!("the ledger does not verify: {e}"),
            ),
            Ok(v) if v.checkpoints == 0 && v.entries > 0 => add(
                Severity::High,
                s::LEDGER,
                format!(
                    "no signed checkpoint covers the ledger's {} entries",
                    v.entries
                ),
            ),
            Ok(_) => {}
        }
        if let Some(why) = &self.ledger.changed {
            add(
                Severity::Critical,
                s::LEDGER,
                format!(
                    "the verified ledger changed under the dashboard ({why}); it was verified in full again"
                ),
            );
        }
        for t in &self.tokens {
            if t.overdue {
                add(
                    Severity::High,
                    s::TOKENS,
                    format!(
                        "the token of `{}` is {} days old, past its rotation period of {} days",
                        t.account,
                        t.age_days.unwrap_or_default(),
                        t.rotate_every_days
                    ),
                );
            }
            if t.token_version.is_none() {
                add(
                    Severity::Warning,
                    s::TOKENS,
                    format!("no token is stored for `{}` ({})", t.account, t.secret),
                );
            }
            if let Some(r) = &t.open_rotation {
                add(
                    Severity::Warning,
                    s::ROTATIONS,
                    format!(
                        "rotation {} of `{}` is open ({}); finish it with `rotate resume {}`",
                        r.id, t.account, r.state, r.id
                    ),
                );
            }
            if let Some(r) = &t.last_rotation
                && r.state == crate::rotation::State::Failed
            {
                add(
                    Severity::High,
                    s::ROTATIONS,
                    format!(
                        "the last rotation of `{}` ({}) failed: {}",
                        t.account, r.id, r.detail
                    ),
                );
            }
        }
        match &self.rights {
            RightsView::Checked { studies } => {
                for st in studies {
                    for f in &st.findings {
                        add(
                            f.severity,
                            s::RIGHTS,
                            format!(
                                "study `{}`: {} {}: {}",
                                st.study,
                                f.account.as_deref().unwrap_or(&f.username),
                                f.code,
                                f.detail
                            ),
                        );
                    }
                }
            }
            RightsView::Unavailable { reason } => add(
                Severity::Warning,
                s::RIGHTS,
                format!("rights drift could not be checked: {reason}"),
            ),
            RightsView::FromLedger => {
                for (study, run) in &self.scan.rights_checks {
                    if run.findings > 0 {
                        add(
                            Severity::High,
                            s::RIGHTS,
                            format!(
                                "the last `rights check` of study `{study}` ({}) found {} finding(s)",
                                minute(run.ts),
                                run.findings
                            ),
                        );
                    }
                }
            }
        }
        for r in &self.reauth {
            if let Some(cause) = &r.lapsed {
                add(
                    Severity::Warning,
                    s::REAUTH,
                    format!("account `{}` is lapsed: {cause}", r.account),
                );
            }
        }
        for (study, run) in &self.scan.reconciles {
            if run.findings > 0 {
                add(
                    Severity::Critical,
                    s::RECONCILE,
                    format!(
                        "the last reconciliation of study `{study}` ({} to {}) found {} discrepancy(ies) between REDCap's log and the ledger",
                        run.window_start, run.window_end, run.findings
                    ),
                );
            }
        }
        if let Some(live) = &self.live
            && live.ledger_degraded
        {
            add(
                Severity::Critical,
                s::ACTIVITY,
                "the gateway's ledger is degraded: requests are refused (fail closed)".into(),
            );
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.severity));
        out
    }

    /// Whether any finding is critical (`report` exits 1).
    pub fn has_critical(&self) -> bool {
        self.findings()
            .iter()
            .any(|f| f.severity == Severity::Critical)
    }
}

/// `2026-11-28 10:00 UTC`.
pub(crate) fn minute(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}
