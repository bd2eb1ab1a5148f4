//! Reconciliation: REDCap's Export Logging paired with the ledger.
//!
//! The ledger proves what passed through the gateway; REDCap's log shows
//! what REDCap did. A governed account's token used anywhere else — a
//! leaked token is mostly used to read — shows up as REDCap activity with
//! no forwarded request beside it. [`reconcile`] compares the two over a
//! window and returns [`Finding`]s:
//!
//! - `unexplained-api-activity` (critical): per account and REDCap minute,
//!   API calls REDCap logged (page views of the API endpoint, one per call)
//!   that no forwarded `request` entry pairs with, one to one, within the
//!   tolerance; and API event rows (exports included) with no forwarded
//!   request of that account within the tolerance. The finding gives
//!   REDCap's count of API calls in that minute against the gateway's.
//! - `ui-activity`, `api-playground` (critical): a governed account is
//!   API-only; a page of the web UI, an event not marked as an API action,
//!   or the API Playground is a person using its login, or its token
//!   used by something other than the gateway.
//! - `token-event` (critical): a governed account's token regenerated,
//!   deleted or viewed, unless [`Explain::token_event`] explains it: a
//!   regeneration inside one of the account's recorded rotations
//!   ([`RotationJournal`]) is that rotation's step, and a deletion inside
//!   the account's recorded retirement is that retirement's.
//! - `access-change` (high): a change to users, roles, rights or DAGs, by
//!   anyone — except the study's rights manager's, when a `rights` ledger
//!   entry stands beside it (the tool's own change, recorded), and a user
//!   added, changed or removed within its own recorded enrolment or
//!   retirement (the spans [`LedgerIndex`] gathers from the ledger).
//! - `unlogged-write` (high): a write (import, delete, rename) the gateway
//!   forwarded and REDCap answered 200, with no API event of that account
//!   in REDCap's log within the tolerance.
//!
//! The study's own tool accounts — the rights manager and the log reader
//! — call REDCap directly, not through the gateway: their reads (Export
//! Users, roles, DAGs, Logging) are expected; anything else they do is a
//! finding like any governed account's. A call `rights check` made with a
//! governed account's own token is recorded in its `rights` entry
//! (`probe: … with the token of `ACCOUNT` …`) and counts as forwarded, as
//! does a rotation's own call (its `verified` entry: Export Project Info
//! with the new token; the probes its detail names are made with the dead
//! old token and leave no row).
//!
//! Scale: one pass over the ledger's entries, keeping only the window's
//! requests in a map by (username, minute); each REDCap row then looks at
//! the few minutes its tolerance spans. Never a scan per row.

mod pull;

use std::collections::HashMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use ledger::{Entry, EntryKind};
use redcap::client::LogEntry;
use serde::Serialize;

use crate::redcap_log::{self, Activity};
use crate::rights::Severity;

pub use pull::{LogWindow, pull_log};

/// What a governed account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An account whose calls go through the gateway.
    Service,
    /// The study's rights manager: reads users, roles and DAGs directly.
    RightsManager,
    /// The study's log reader: reads Export Logging directly.
    LogReader,
}

/// A governed account of the study.
#[derive(Debug, Clone)]
pub struct Account {
    /// The `[[account]]` name (what the ledger's `request` entries name).
    pub name: String,
    /// The REDCap username.
    pub username: String,
    /// What it is for.
    pub role: Role,
}

/// What a reconciliation compares.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The governed accounts of the study.
    pub accounts: Vec<Account>,
    /// REDCap's time zone (`[redcap] time_zone`).
    pub time_zone: TimeZone,
    /// `[reconcile] tolerance_seconds`.
    pub tolerance: Duration,
    /// The path of the API endpoint (`/api/`): page views of it are API
    /// calls.
    pub api_path: String,
    /// The window, UTC: REDCap rows of a minute that began in it (either
    /// reading at a daylight-saving change) and ledger writes in it are
    /// compared.
    pub since: Timestamp,
    /// End of the window (inclusive).
    pub until: Timestamp,
}

impl Setup {
    /// How far beyond the window ledger requests and REDCap rows are read
    /// so that pairs across its edges are found: the tolerance plus the
    /// minute REDCap's timestamps leave open.
    pub fn margin(&self) -> SignedDuration {
        SignedDuration::try_from(self.tolerance).unwrap_or(SignedDuration::MAX)
            + SignedDuration::from_secs(60)
    }

    fn account_of_username(&self, username: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|a| a.username.eq_ignore_ascii_case(username))
    }
}

/// What may explain a finding the log alone cannot: the seam for the
/// rotation journal (a regeneration that is a step of a recorded
/// rotation is no finding).
pub trait Explain {
    /// Whether the regeneration, deletion or view of `username`'s token at
    /// about `at` is explained.
    fn token_event(&self, username: &str, event: redcap_log::TokenEvent, at: &[Timestamp]) -> bool;
}

/// Nothing is explained.
pub struct NoExplanations;

impl Explain for NoExplanations {
    fn token_event(&self, _: &str, _: redcap_log::TokenEvent, _: &[Timestamp]) -> bool {
        false
    }
}

/// The rotation journals' regenerations: a regeneration of a username's
/// token logged while one of its rotations was obtaining the new token
/// (from planning to escrow, widened by the tolerance on both sides and by
/// the minute REDCap's timestamp leaves open) is that rotation's step. A
/// deletion or a view is never explained by a rotation.
pub struct RotationJournal {
    regenerations: Vec<crate::rotation::Regeneration>,
    tolerance: SignedDuration,
}

impl RotationJournal {
    /// Explains by `regenerations` (`Journal::regenerations`) within
    /// `tolerance` (`[reconcile] tolerance_seconds`).
    pub fn new(
        regenerations: Vec<crate::rotation::Regeneration>,
        tolerance: std::time::Duration,
    ) -> RotationJournal {
        RotationJournal {
            regenerations,
            tolerance: SignedDuration::try_from(tolerance).unwrap_or(SignedDuration::MAX),
        }
    }
}

impl Explain for RotationJournal {
    fn token_event(&self, username: &str, event: redcap_log::TokenEvent, at: &[Timestamp]) -> bool {
        if event != redcap_log::TokenEvent::Regenerated {
            return false;
        }
        let minute = SignedDuration::from_secs(60);
        self.regenerations.iter().any(|r| {
            r.username.eq_ignore_ascii_case(username)
                && at.iter().any(|start| {
                    let end = start.saturating_add(minute).unwrap_or(*start);
                    end >= r.from.saturating_sub(self.tolerance).unwrap_or(r.from)
                        && *start <= r.until.saturating_add(self.tolerance).unwrap_or(r.until)
                })
        })
    }
}

/// One discrepancy between REDCap's log and the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// A stable short code, e.g. `unexplained-api-activity`.
    pub code: &'static str,
    /// The `[[account]]` concerned, if a governed one.
    pub account: Option<String>,
    /// The REDCap username concerned.
    pub username: String,
    /// When: REDCap's local minute (`YYYY-MM-DD HH:MM`, `[redcap]
    /// time_zone`), or the ledger's UTC time for a ledger write.
    pub at: String,
    /// What was found.
    pub detail: String,
    /// The REDCap rows behind it, redacted, without record values.
    pub rows: Vec<String>,
}

/// What a run compared, and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// REDCap rows in the window.
    pub redcap_rows: usize,
    /// Forwarded requests of the study's accounts in the window.
    pub forwarded: usize,
    /// The findings, in time order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// One line for the ledger's `reconcile` entry: counts per code and
    /// the findings' digest (no row text: the ledger holds no patient
    /// data).
    pub fn summary(&self, study: &str) -> String {
        let mut codes: Vec<(&str, usize)> = Vec::new();
        for f in &self.findings {
            match codes.iter_mut().find(|(c, _)| *c == f.code) {
                Some((_, n)) => *n += 1,
                None => codes.push((f.code, 1)),
            }
        }
        let codes = if codes.is_empty() {
            "none".to_string()
        } else {
            codes
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "study {study}: {} finding(s) ({codes}); {} REDCap row(s), {} forwarded request(s); digest sha256:{}",
            self.findings.len(),
            self.redcap_rows,
            self.forwarded,
            digest(&self.findings)
        )
    }
}

/// The study a `reconcile` entry's summary ([`Report::summary`]) names.
pub fn study_of_summary(summary: &str) -> Option<&str> {
    summary
        .strip_prefix("study ")?
        .split_once(": ")
        .map(|(s, _)| s)
}

/// SHA-256 (hex) of the findings as JSON.
pub fn digest(findings: &[Finding]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        serde_json::to_vec(findings).unwrap_or_default(),
    ))
}

/// A forwarded request of a governed account.
#[derive(Debug, Clone)]
struct Forwarded {
    at: Timestamp,
    /// Lower case.
    username: String,
    request_id: String,
    write: bool,
    /// REDCap's status, once its `response` entry is seen.
    status: Option<u16>,
    /// Paired with a REDCap API call (page view) already.
    paired: bool,
}

/// The ledger's side of the window, built in one pass ([`LedgerIndex::push`]
/// every entry, in order).
pub struct LedgerIndex {
    from: Timestamp,
    to: Timestamp,
    /// Lower-cased username by account name.
    usernames: HashMap<String, String>,
    requests: Vec<Forwarded>,
    /// (username, UTC minute number) → indexes into `requests`.
    by_minute: HashMap<(String, i64), Vec<usize>>,
    by_request_id: HashMap<String, usize>,
    /// When `rights` entries were written (the tool's own rights changes).
    rights_entries: Vec<Timestamp>,
    /// Lower-cased username → the spans of its enrolments and
    /// retirements, recorded as the tool's own steps ([`LedgerIndex::push`]).
    lifecycle: HashMap<String, Vec<(Timestamp, Timestamp)>>,
    /// Lower-cased username → when its retirement under way began (its
    /// first recorded step), until its `retire account` entry closes it.
    retiring: HashMap<String, Timestamp>,
}

fn minute_number(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

impl LedgerIndex {
    /// An index for `setup`'s window and margin.
    pub fn new(setup: &Setup) -> LedgerIndex {
        let margin = setup.margin();
        LedgerIndex {
            from: setup.since.checked_sub(margin).unwrap_or(setup.since),
            to: setup.until.checked_add(margin).unwrap_or(setup.until),
            usernames: setup
                .accounts
                .iter()
                .map(|a| (a.name.clone(), a.username.to_lowercase()))
                .collect(),
            requests: Vec::new(),
            by_minute: HashMap::new(),
            by_request_id: HashMap::new(),
            rights_entries: Vec::new(),
            lifecycle: HashMap::new(),
            retiring: HashMap::new(),
        }
    }

    /// Whether an enrolment or a retirement of `username` (lower case),
    /// recorded in the ledger, spans part of one of `spans` ([`row_spans`]).
    fn lifecycle_of(&self, username: &str, spans: &[(Timestamp, Timestamp)]) -> bool {
        self.lifecycle.get(username).is_some_and(|own| {
            own.iter()
                .any(|(s, e)| spans.iter().any(|(from, to)| s <= to && e >= from))
        })
    }

    /// Whether any enrolment or retirement spans part of one of `spans`:
    /// the rights manager's imports and reads then are its steps.
    fn any_lifecycle(&self, spans: &[(Timestamp, Timestamp)]) -> bool {
        self.lifecycle
            .keys()
            .any(|username| self.lifecycle_of(username, spans))
    }

    /// A step of an enrolment or a retirement of `account`: a span of its
    /// own, or the start of a retirement (`opens`), or its end (`closes`,
    /// spanning back to the retirement's start).
    fn lifecycle_step(&mut self, account: &str, at: Timestamp, opens: bool, closes: bool) {
        let Some(username) = self.usernames.get(account).cloned() else {
            return;
        };
        if opens {
            let start = self.retiring.entry(username.clone()).or_insert(at);
            *start = (*start).min(at);
        }
        let from = if closes {
            self.retiring.remove(&username).unwrap_or(at)
        } else {
            at
        };
        self.lifecycle
            .entry(username)
            .or_default()
            .push((from.min(at), at));
    }

    /// Takes in one ledger entry; entries outside the window (and its
    /// margin) and of other studies' accounts are dropped at once.
    pub fn push(&mut self, entry: &Entry) {
        // An enrolment's and a retirement's own steps (`accounts enroll`,
        // `accounts retire`, docs/accounts.md): the REDCap rows they make
        // for their account are no findings. Read before the window's
        // bounds, so that a retirement begun before the window still spans
        // to its end; the rest is dropped with the window below.
        if entry.ts <= self.to {
            match &entry.kind {
                EntryKind::Admin { action, target, .. } => {
                    if let Some(account) = target.strip_prefix("account:") {
                        match action.as_str() {
                            "retire: REDCap steps given" => {
                                self.lifecycle_step(account, entry.ts, true, false)
                            }
                            "redcap: delete token, remove user" => {
                                self.lifecycle_step(account, entry.ts, true, false)
                            }
                            "retire account" => self.lifecycle_step(account, entry.ts, false, true),
                            _ => {}
                        }
                    }
                }
                EntryKind::Key { action, reason, .. } if action == "revoke" => {
                    if let Some(account) = reason
                        .strip_prefix("accounts retire `")
                        .and_then(|r| r.split('`').next())
                    {
                        self.lifecycle_step(account, entry.ts, true, false);
                    }
                }
                EntryKind::Rights {
                    account, changes, ..
                } if changes
                    .iter()
                    .any(|c| c.starts_with("user: added to the project")) =>
                {
                    self.lifecycle_step(account, entry.ts, false, false);
                }
                EntryKind::Rotation {
                    account, detail, ..
                } if detail.contains("first token of the account (enrolment)") => {
                    self.lifecycle_step(account, entry.ts, false, false);
                }
                _ => {}
            }
        }
        if entry.ts < self.from || entry.ts > self.to {
            return;
        }
        match &entry.kind {
            EntryKind::Request {
                request_id,
                account,
                action,
                params,
                ..
            } => {
                let Some(username) = self.usernames.get(account) else {
                    return;
                };
                // REDCap derives `import` from `data` without an action
                // (redcap-api.md §1.4).
                let write = match action.as_deref() {
                    Some(a) => matches!(a, "import" | "delete" | "rename" | "import_app"),
                    None => params.iter().any(|p| p == "data"),
                };
                let i = self.requests.len();
                self.requests.push(Forwarded {
                    at: entry.ts,
                    username: username.clone(),
                    request_id: request_id.clone(),
                    write,
                    status: None,
                    paired: false,
                });
                self.by_minute
                    .entry((username.clone(), minute_number(entry.ts)))
                    .or_default()
                    .push(i);
                self.by_request_id.insert(request_id.clone(), i);
            }
            EntryKind::Response {
                request_id, status, ..
            } => {
                if let Some(&i) = self.by_request_id.get(request_id) {
                    self.requests[i].status = Some(*status);
                }
            }
            EntryKind::Rights { changes, .. } => {
                self.rights_entries.push(entry.ts);
                // `rights check` calls REDCap with governed accounts' own
                // tokens (the administrator probe) and records each call
                // as `probe: <method> with the token of `<account>` …`:
                // such a call is a forwarded request of that account.
                for line in changes {
                    if let Some(account) = probed_account(line) {
                        self.direct_call(account, entry, "rights");
                    }
                }
            }
            // A rotation calls REDCap with the account's new token
            // itself: entering `verified`, Export Project Info. The
            // probes its rights check names in the detail are made with
            // the token the store still holds — the old one, already dead
            // (docs/rotation.md, known limits) — and are refused as
            // unknown tokens, which REDCap logs for no user (redcap-api.md
            // §7.2), as is the old token's proof call: counting them would
            // let as many calls made outside the gateway pass unseen
            // (found by quickstart --tour's bypass right after a rotation).
            EntryKind::Rotation { account, to, .. } if to == "verified" => {
                self.direct_call(account, entry, "rotation");
            }
            _ => {}
        }
    }

    /// A call the tool made to REDCap with `account`'s own token, recorded
    /// by `entry` (a `rights` or `rotation` entry): counted as a forwarded
    /// request of that account.
    fn direct_call(&mut self, account: &str, entry: &Entry, kind: &str) {
        let Some(username) = self.usernames.get(account) else {
            return;
        };
        let i = self.requests.len();
        self.requests.push(Forwarded {
            at: entry.ts,
            username: username.clone(),
            request_id: format!("{kind} entry {}", entry.seq),
            write: false,
            status: None,
            paired: false,
        });
        self.by_minute
            .entry((username.clone(), minute_number(entry.ts)))
            .or_default()
            .push(i);
    }

    /// Requests of `username` forwarded between `from` and `to`.
    fn around(&self, username: &str, from: Timestamp, to: Timestamp) -> Vec<usize> {
        let mut out = Vec::new();
        for m in minute_number(from)..=minute_number(to) {
            if let Some(list) = self.by_minute.get(&(username.to_string(), m)) {
                out.extend(
                    list.iter()
                        .copied()
                        .filter(|&i| self.requests[i].at >= from && self.requests[i].at <= to),
                );
            }
        }
        out
    }
}

/// The account a `probe: … with the token of `<account>` …` line of a
/// `rights` entry names.
fn probed_account(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("probe:")?;
    let i = rest.find("with the token of `")? + "with the token of `".len();
    let rest = &rest[i..];
    Some(&rest[..rest.find('`')?])
}

/// A REDCap row placed in time.
struct Placed<'a> {
    row: &'a LogEntry,
    candidates: Vec<Timestamp>,
    username: String,
}

impl Placed<'_> {
    /// A finding about this one row (shown redacted, as every row is).
    fn finding(
        &self,
        severity: Severity,
        code: &'static str,
        account: Option<&Account>,
        detail: String,
    ) -> Finding {
        Finding {
            severity,
            code,
            account: account.map(|a| a.name.clone()),
            username: self.username.clone(),
            at: self.row.timestamp().to_string(),
            detail,
            rows: vec![shown(self.row)],
        }
    }
}

/// The spans of UTC time a REDCap row stands for, one per reading of its
/// local minute (`candidates`, [`redcap_log::utc_candidates`]): the minute
/// widened by the tolerance on both sides. A ledger entry whose time falls
/// in one of them may be the row's event — the pairing rule of
/// [`reconcile`] and of `trace`.
pub fn row_spans(
    candidates: &[Timestamp],
    tolerance: SignedDuration,
) -> Vec<(Timestamp, Timestamp)> {
    let minute = SignedDuration::from_secs(60);
    candidates
        .iter()
        .map(|c| {
            (
                c.checked_sub(tolerance).unwrap_or(*c),
                c.checked_add(minute + tolerance).unwrap_or(*c),
            )
        })
        .collect()
}

/// Whether `at` falls in one of `spans` ([`row_spans`]).
pub fn in_spans(spans: &[(Timestamp, Timestamp)], at: Timestamp) -> bool {
    spans.iter().any(|(from, to)| at >= *from && at <= *to)
}

/// Compares REDCap's `rows` (event and page-view rows, redacted, any
/// order) with the ledger `index` over `setup`'s window.
pub fn reconcile(
    setup: &Setup,
    rows: &[LogEntry],
    index: &mut LedgerIndex,
    explain: &dyn Explain,
) -> Result<Report, redcap_log::BadTimestamp> {
    let tolerance = SignedDuration::try_from(setup.tolerance).unwrap_or(SignedDuration::MAX);
    let minute = SignedDuration::from_secs(60);
    let tz = &setup.time_zone;
    let mut placed = Vec::with_capacity(rows.len());
    for row in rows {
        let candidates = redcap_log::utc_candidates(row.timestamp(), tz)?;
        placed.push(Placed {
            row,
            candidates,
            username: row.username().to_lowercase(),
        });
    }
    placed.sort_by_key(|p| p.candidates[0]);
    // A row belongs to the window when its minute began in it.
    let in_window = |p: &Placed<'_>| {
        p.candidates
            .iter()
            .any(|c| *c >= setup.since && *c <= setup.until)
    };
    let spans = |p: &Placed<'_>| row_spans(&p.candidates, tolerance);

    let mut report = Report {
        redcap_rows: placed.iter().filter(|p| in_window(p)).count(),
        forwarded: index
            .requests
            .iter()
            .filter(|r| r.at >= setup.since && r.at <= setup.until)
            .count(),
        findings: Vec::new(),
    };
    // (username, local minute) → (unpaired API calls, unexplained events' rows).
    let mut unexplained: HashMap<(String, String), (usize, Vec<String>)> = HashMap::new();
    // Which API event rows were seen per username (for unlogged writes).
    let mut api_events: HashMap<String, Vec<Timestamp>> = HashMap::new();
    // REDCap's API calls per (username, local minute).
    let mut calls_per_minute: HashMap<(String, String), usize> = HashMap::new();
    // API event rows per (username, local minute), as shown: the context
    // of a minute with calls no request pairs with.
    let mut events_per_minute: HashMap<(String, String), Vec<String>> = HashMap::new();

    for p in &placed {
        let account = setup.account_of_username(&p.username);
        let activity = redcap_log::activity(p.row, &setup.api_path);
        if activity == Activity::ApiEvent && in_window(p) {
            events_per_minute
                .entry((p.username.clone(), p.row.timestamp().to_string()))
                .or_default()
                .push(shown(p.row));
        }
        if matches!(activity, Activity::ApiEvent | Activity::Playground) {
            api_events
                .entry(p.username.clone())
                .or_default()
                .extend(p.candidates.iter().copied());
        }
        // Page views of the API are paired one to one, in time order, with
        // forwarded requests, so that pairs near the window's edge use the
        // requests beside them.
        if activity == Activity::ApiCall {
            *calls_per_minute
                .entry((p.username.clone(), p.row.timestamp().to_string()))
                .or_default() += 1;
        }
        if activity == Activity::ApiCall
            && let Some(a) = account
            && a.role == Role::Service
        {
            let mut best: Option<usize> = None;
            for (from, to) in spans(p) {
                for i in index.around(&p.username, from, to) {
                    if !index.requests[i].paired
                        && best.is_none_or(|b| index.requests[i].at < index.requests[b].at)
                    {
                        best = Some(i);
                    }
                }
            }
            match best {
                Some(i) => index.requests[i].paired = true,
                None if in_window(p) => {
                    unexplained
                        .entry((p.username.clone(), p.row.timestamp().to_string()))
                        .or_default()
                        .0 += 1;
                }
                None => {}
            }
            continue;
        }
        if !in_window(p) {
            continue;
        }
        if let Some(finding) = access_change(setup, index, p, &spans(p)) {
            report.findings.push(finding);
        }
        if let Some((subject, event)) = redcap_log::token_event(p.row)
            && let Some(a) = setup.account_of_username(&subject)
            && !explain.token_event(&subject, event, &p.candidates)
            && !index.lifecycle_of(&subject, &spans(p))
        {
            report.findings.push(Finding {
                username: subject.clone(),
                ..p.finding(
                    Severity::Critical,
                    "token-event",
                    Some(a),
                    format!(
                        "the token of governed account `{}` was {event} in REDCap by {}, and no rotation, enrolment or retirement explains it",
                        a.name,
                        p.row.username()
                    ),
                )
            });
        }
        let Some(a) = account else { continue };
        match activity {
            Activity::ApiCall => {} // a tool account's own calls
            Activity::UiPage { page } => report.findings.push(p.finding(
                Severity::Critical,
                "ui-activity",
                Some(a),
                format!(
                    "API-only account `{}` viewed a page of REDCap's web UI: {page}",
                    a.name
                ),
            )),
            Activity::UiEvent => {
                // A token row about this account written by REDCap on its
                // behalf is reported as a token event above; the rights
                // manager's rows adding, changing or removing a user
                // within that user's enrolment or retirement are its steps.
                let lifecycle_step = a.role == Role::RightsManager
                    && named_user(p.row).is_some_and(|u| index.lifecycle_of(&u, &spans(p)));
                if redcap_log::token_event(p.row).is_none() && !lifecycle_step {
                    report.findings.push(p.finding(
                        Severity::Critical,
                        "ui-activity",
                        Some(a),
                        format!(
                            "API-only account `{}` did something REDCap does not mark as an API action",
                            a.name
                        ),
                    ));
                }
            }
            Activity::Playground => report.findings.push(p.finding(
                Severity::Critical,
                "api-playground",
                Some(a),
                format!(
                    "API-only account `{}` appears in the API Playground (a person using its login, or a client the gateway did not forward)",
                    a.name
                ),
            )),
            Activity::ApiEvent => {
                let explained = match a.role {
                    Role::Service => spans(p)
                        .into_iter()
                        .any(|(from, to)| !index.around(&p.username, from, to).is_empty()),
                    // Its imports and reads within an enrolment or a
                    // retirement are that step's (the profile applied).
                    Role::RightsManager => {
                        expected_read(p.row, RIGHTS_MANAGER_READS)
                            || index.any_lifecycle(&spans(p))
                    }
                    Role::LogReader => expected_read(p.row, LOG_READER_READS),
                };
                if !explained {
                    unexplained
                        .entry((p.username.clone(), p.row.timestamp().to_string()))
                        .or_default()
                        .1
                        .push(shown(p.row));
                }
            }
        }
    }

    let mut grouped: Vec<_> = unexplained.into_iter().collect();
    grouped.sort_by(|a, b| (&a.0.1, &a.0.0).cmp(&(&b.0.1, &b.0.0)));
    for ((username, at), (calls, mut events)) in grouped {
        let Some(a) = setup.account_of_username(&username) else {
            continue;
        };
        let forwarded = forwarded_in_minute(index, &username, &at, tz);
        let redcap_calls = calls_per_minute
            .get(&(username.clone(), at.clone()))
            .copied()
            .unwrap_or_default();
        let mut detail = format!(
            "REDCap logged {redcap_calls} API call(s) by `{username}` in {at}, the gateway forwarded {forwarded} for `{}`",
            a.name
        );
        if calls > 0 {
            detail.push_str(&format!(
                "; {calls} call(s) have no forwarded request within the tolerance"
            ));
        }
        if !events.is_empty() {
            detail.push_str(&format!(
                "; {} REDCap event(s) with no forwarded request within the tolerance",
                events.len()
            ));
        }
        detail.push_str(" — the token was used outside the gateway");
        if events.is_empty() {
            // The calls' own rows were paired loosely with the forwarded
            // requests of the minute: show them all, one of them is not
            // the gateway's.
            events = events_per_minute
                .remove(&(username.clone(), at.clone()))
                .unwrap_or_default();
        }
        report.findings.push(Finding {
            severity: Severity::Critical,
            code: "unexplained-api-activity",
            account: Some(a.name.clone()),
            username,
            at,
            detail,
            rows: events,
        });
    }

    // Writes the gateway forwarded (and REDCap accepted) that REDCap never
    // logged: each looks up its account's API events, sorted, by binary
    // search.
    for times in api_events.values_mut() {
        times.sort();
    }
    let mut writes: Vec<&Forwarded> = index
        .requests
        .iter()
        .filter(|r| r.write && r.status == Some(200))
        .filter(|r| r.at >= setup.since && r.at <= setup.until)
        .collect();
    writes.sort_by_key(|r| r.at);
    for r in writes {
        let Some(a) = setup.account_of_username(&r.username) else {
            continue;
        };
        // An event at `t` covers [t - tolerance, t + minute + tolerance].
        let earliest = r.at.checked_sub(minute + tolerance).unwrap_or(r.at);
        let latest = r.at.checked_add(tolerance).unwrap_or(r.at);
        let logged = api_events.get(&r.username).is_some_and(|times| {
            let i = times.partition_point(|t| *t < earliest);
            times.get(i).is_some_and(|t| *t <= latest)
        });
        if !logged {
            report.findings.push(Finding {
                severity: Severity::High,
                code: "unlogged-write",
                account: Some(a.name.clone()),
                username: r.username.clone(),
                at: r.at.to_string(),
                detail: format!(
                    "the gateway forwarded write {} for `{}` and REDCap answered 200, but REDCap's log has no API event of `{}` within the tolerance",
                    r.request_id, a.name, r.username
                ),
                rows: Vec::new(),
            });
        }
    }
    report.findings.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(report)
}

/// The API-only check of `rights check` (#11): every row of REDCap's log
/// by a governed account that is not an API call — a page of the web UI,
/// an event REDCap does not mark as an API action (its own token
/// regenerated from the UI included), the API Playground — as a critical
/// rights finding.
pub fn api_only(
    rows: &[LogEntry],
    accounts: &[Account],
    api_path: &str,
) -> Vec<crate::rights::Finding> {
    let mut out = Vec::new();
    for row in rows {
        let Some(a) = accounts
            .iter()
            .find(|a| a.username.eq_ignore_ascii_case(row.username()))
        else {
            continue;
        };
        let (code, detail, risk) = match redcap_log::activity(row, api_path) {
            Activity::ApiCall | Activity::ApiEvent => continue,
            Activity::UiPage { page } => (
                "ui-page-view",
                format!("viewed {page} at {} (REDCap time)", row.timestamp()),
                "someone signs in to REDCap's web UI with a service account: its use is no longer attributable to one integration",
            ),
            Activity::UiEvent => (
                "ui-activity",
                format!("{} at {} (REDCap time)", shown(row), row.timestamp()),
                "an API-only account acted outside the API: a person is using its login",
            ),
            Activity::Playground => (
                "api-playground",
                format!("{} at {} (REDCap time)", shown(row), row.timestamp()),
                "the API Playground runs with the account's own token in a browser session, outside the gateway and its ledger",
            ),
        };
        out.push(crate::rights::Finding {
            severity: Severity::Critical,
            account: Some(a.name.clone()),
            username: row.username().to_lowercase(),
            site: None,
            code,
            detail,
            risk: risk.to_string(),
        });
    }
    out
}

/// What the rights manager reads (redcap-api.md §4, §5): expected.
const RIGHTS_MANAGER_READS: &[&str] = &[
    "Export users",
    "Export user roles",
    "Export user role assignments",
    "Export DAGs",
    "Export User-DAG assignments",
    "Export project information",
    "Export REDCap version",
];

/// What the log reader reads: expected.
const LOG_READER_READS: &[&str] = &[
    "Export Logging",
    "Export project information",
    "Export REDCap version",
];

fn expected_read(row: &LogEntry, reads: &[&str]) -> bool {
    let details = row.details().trim();
    reads.iter().any(|r| {
        details
            .strip_prefix(r)
            .is_some_and(|rest| rest.trim() == "(API)")
    })
}

/// A change to users, roles or DAGs, unless the rights manager made it
/// beside a `rights` ledger entry.
fn access_change(
    setup: &Setup,
    index: &LedgerIndex,
    p: &Placed<'_>,
    spans: &[(Timestamp, Timestamp)],
) -> Option<Finding> {
    let what = redcap_log::rights_change(p.row)?;
    // A user added, changed or removed within its own enrolment or
    // retirement, as the tool recorded it.
    if named_user(p.row).is_some_and(|u| index.lifecycle_of(&u, spans)) {
        return None;
    }
    let account = setup.account_of_username(&p.username);
    let recorded = account.is_some_and(|a| a.role == Role::RightsManager)
        && spans
            .iter()
            .any(|(from, to)| index.rights_entries.iter().any(|t| t >= from && t <= to));
    if recorded {
        return None;
    }
    let thing = match what {
        "dag" => "Data Access Groups",
        _ => "users, roles or rights",
    };
    Some(p.finding(
        Severity::High,
        "access-change",
        account,
        format!(
            "`{}` changed {thing} in REDCap, with no rights change of this tool's recorded beside it",
            p.row.username()
        ),
    ))
}

/// The user a users-and-rights row is about (lower case): `user = 'x'` in
/// its details, or its action `Add user x`, `Update user x`, `Delete user
/// x`.
fn named_user(row: &LogEntry) -> Option<String> {
    let details = row.details().to_lowercase();
    if let Some(i) = details.find("user = '") {
        let rest = &details[i + "user = '".len()..];
        if let Some(end) = rest.find('\'') {
            return Some(rest[..end].to_string());
        }
    }
    let action = row.action().trim().to_lowercase();
    ["add user ", "update user ", "edit user ", "delete user "]
        .iter()
        .find_map(|verb| action.strip_prefix(verb))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && !u.contains(' '))
}

/// Forwarded requests of `username` whose time falls in REDCap's local
/// minute `at`.
fn forwarded_in_minute(index: &LedgerIndex, username: &str, at: &str, tz: &TimeZone) -> usize {
    let Ok(candidates) = redcap_log::utc_candidates(at, tz) else {
        return 0;
    };
    candidates
        .iter()
        .map(|c| {
            index
                .by_minute
                .get(&(username.to_string(), minute_number(*c)))
                .map_or(0, Vec::len)
        })
        .sum()
}

/// A row as a finding shows it: time, user, action and — for rows that
/// are not about a record — the (redacted) details. A record row's
/// details hold field values, patient data: only its record name is shown.
pub fn shown(row: &LogEntry) -> String {
    let action = row.action().trim();
    if row.record().is_empty() {
        format!(
            "{} {} | {action} | {}",
            row.timestamp(),
            row.username(),
            row.details().trim()
        )
    } else {
        format!(
            "{} {} | {action} | record {}",
            row.timestamp(),
            row.username(),
            row.record()
        )
    }
}

#[cfg(test)]
mod tests;
