//! One pass over the ledger for the report: the rotation timeline, the
//! latest `reconcile` and `rights check` run of each study, alerts,
//! reviews, and requests, denials and latency per minute — taken in an
//! entry at a time beside re-authorisation's [`LedgerFacts`], so a ledger
//! of millions of entries is read once and memory grows with the window
//! kept, not with the ledger.

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use ledger::{Entry, EntryKind};
use serde::Serialize;

use crate::reauth::LedgerFacts;

/// Rotation steps kept for the timeline (the newest).
const ROTATION_STEPS_KEPT: usize = 200;
/// Alerts kept (the newest).
const ALERTS_KEPT: usize = 50;
/// Reviews kept (the newest).
const REVIEWS_KEPT: usize = 50;
/// Minutes of activity kept: a week before the newest entry.
const ACTIVITY_MINUTES_KEPT: i64 = 7 * 24 * 60;

/// One `rotation` entry: a state change of a rotation.
#[derive(Debug, Clone, Serialize)]
pub struct RotationStep {
    /// Its ledger entry.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// The rotation.
    pub rotation_id: String,
    /// The account rotated.
    pub account: String,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// Who drove it.
    pub operator: String,
    /// What happened (fingerprints only).
    pub detail: String,
}

/// The latest `reconcile` entry of a study.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileRun {
    /// Its ledger entry.
    pub seq: u64,
    /// When it was recorded.
    pub ts: Timestamp,
    /// The window reconciled.
    pub window_start: String,
    /// Its end.
    pub window_end: String,
    /// Discrepancies found.
    pub findings: u64,
    /// Counts per finding code, REDCap rows and forwarded requests, and
    /// the findings' digest, as `reconcile` recorded them.
    pub summary: String,
}

/// The latest `rights check` of a study, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RightsRun {
    /// Its ledger entry.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// Who ran it.
    pub operator: String,
    /// Findings it reported.
    pub findings: u64,
    /// Its `check: …` line (count and digest).
    pub line: String,
}

/// An `alert` entry.
#[derive(Debug, Clone, Serialize)]
pub struct AlertSeen {
    /// Its ledger entry.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// Its code.
    pub code: String,
    /// Its message.
    pub message: String,
}

/// A `review` entry (a signed audit-trail review).
#[derive(Debug, Clone, Serialize)]
pub struct ReviewSeen {
    /// Its ledger entry.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// Who reviewed.
    pub reviewer: String,
    /// What was reviewed.
    pub scope: String,
    /// The outcome.
    pub outcome: String,
}

/// One minute of traffic as the ledger shows it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ActivityMinute {
    /// `request` entries (forwarded requests).
    pub requests: u64,
    /// Refused attempts (`denied` entries' counts).
    pub denied: u64,
    /// `response` entries.
    pub responses: u64,
    /// Their latencies, summed (milliseconds).
    pub latency_ms: u64,
}

/// What one pass over the ledger collects for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerScan {
    /// Re-authorisation's facts ([`crate::reauth::assess`] reads them).
    #[serde(skip)]
    pub facts: LedgerFacts,
    /// Entries read.
    pub entries: u64,
    /// The first entry's time.
    pub first: Option<Timestamp>,
    /// The last entry's time.
    pub last: Option<Timestamp>,
    /// `rotation` entries, oldest first (the newest
    /// 200).
    pub rotations: VecDeque<RotationStep>,
    /// The latest `reconcile` entry per study.
    pub reconciles: BTreeMap<String, ReconcileRun>,
    /// The latest `rights check` per study.
    pub rights_checks: BTreeMap<String, RightsRun>,
    /// `rights` entries that changed something (`rights apply`).
    pub rights_changes: u64,
    /// `secret`, `key` and `admin` entries: access granted, changed or
    /// revoked, by whom and why.
    pub access_changes: u64,
    /// `reauth` entries.
    pub reauth_entries: u64,
    /// Alerts, oldest first (the newest 50).
    pub alerts: VecDeque<AlertSeen>,
    /// Alerts in all.
    pub alerts_total: u64,
    /// Reviews, oldest first.
    pub reviews: VecDeque<ReviewSeen>,
    /// Requests, denials and latency per minute (Unix minute), for the
    /// week before the last entry.
    pub activity: BTreeMap<i64, ActivityMinute>,
    /// Forwarded requests in all.
    pub requests_total: u64,
    /// Refused attempts in all.
    pub denied_total: u64,
    /// Requests that carried a reason (writes where policy asks one).
    pub requests_with_reason: u64,
}

impl LedgerScan {
    /// Takes in the next entry (entries must come in ledger order).
    pub fn push(&mut self, entry: &Entry) {
        self.facts.observe(entry);
        self.entries += 1;
        self.first.get_or_insert(entry.ts);
        self.last = Some(entry.ts);
        let minute = entry.ts.as_second().div_euclid(60);
        match &entry.kind {
            EntryKind::Request { reason, .. } => {
                self.requests_total += 1;
                if reason.is_some() {
                    self.requests_with_reason += 1;
                }
                self.activity.entry(minute).or_default().requests += 1;
            }
            EntryKind::Response { latency_ms, .. } => {
                let m = self.activity.entry(minute).or_default();
                m.responses += 1;
                m.latency_ms += latency_ms;
            }
            EntryKind::Denied { count, .. } => {
                self.denied_total += count;
                self.activity.entry(minute).or_default().denied += count;
            }
            EntryKind::Alert { code, message } => {
                self.alerts_total += 1;
                push_bounded(
                    &mut self.alerts,
                    AlertSeen {
                        seq: entry.seq,
                        ts: entry.ts,
                        code: code.clone(),
                        message: message.clone(),
                    },
                    ALERTS_KEPT,
                );
            }
            EntryKind::Rotation {
                rotation_id,
                account,
                from,
                to,
                operator,
                detail,
            } => push_bounded(
                &mut self.rotations,
                RotationStep {
                    seq: entry.seq,
                    ts: entry.ts,
                    rotation_id: rotation_id.clone(),
                    account: account.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    operator: operator.clone(),
                    detail: detail.clone(),
                },
                ROTATION_STEPS_KEPT,
            ),
            EntryKind::Reconcile {
                window_start,
                window_end,
                findings,
                summary,
            } => {
                // `reconcile` writes "study NAME: …" (Report::summary).
                let study = summary
                    .strip_prefix("study ")
                    .and_then(|s| s.split_once(':'))
                    .map_or("(unnamed)", |(s, _)| s)
                    .to_string();
                self.reconciles.insert(
                    study,
                    ReconcileRun {
                        seq: entry.seq,
                        ts: entry.ts,
                        window_start: window_start.clone(),
                        window_end: window_end.clone(),
                        findings: *findings,
                        summary: summary.clone(),
                    },
                );
            }
            EntryKind::Rights {
                operator,
                project,
                changes,
                ..
            } => match changes.first().and_then(|c| c.strip_prefix("check: ")) {
                Some(line) => {
                    let findings = line
                        .split_once(' ')
                        .and_then(|(n, _)| n.parse().ok())
                        .unwrap_or(0);
                    self.rights_checks.insert(
                        project.clone(),
                        RightsRun {
                            seq: entry.seq,
                            ts: entry.ts,
                            operator: operator.clone(),
                            findings,
                            line: line.to_string(),
                        },
                    );
                }
                None if !changes.is_empty() => self.rights_changes += 1,
                None => {}
            },
            EntryKind::Secret { .. } | EntryKind::Key { .. } | EntryKind::Admin { .. } => {
                self.access_changes += 1;
            }
            EntryKind::Reauth { .. } => self.reauth_entries += 1,
            EntryKind::Review {
                reviewer,
                scope,
                outcome,
                ..
            } => push_bounded(
                &mut self.reviews,
                ReviewSeen {
                    seq: entry.seq,
                    ts: entry.ts,
                    reviewer: reviewer.clone(),
                    scope: scope.clone(),
                    outcome: outcome.clone(),
                },
                REVIEWS_KEPT,
            ),
            _ => {}
        }
        // Only the last week of minutes is kept.
        while let Some((&oldest, _)) = self.activity.first_key_value() {
            if minute - oldest <= ACTIVITY_MINUTES_KEPT {
                break;
            }
            self.activity.pop_first();
        }
    }
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, keep: usize) {
    if list.len() == keep {
        list.pop_front();
    }
    list.push_back(item);
}
