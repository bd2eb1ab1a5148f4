//! Whether an account is due, lapsed, or fine: its configuration, its
//! ledger facts and today's date (in REDCap's time zone, as REDCap's
//! expiration dates are).

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use warden_config::AccountSection;

use super::facts::{AccountFacts, LedgerFacts};

/// Why an account lapsed (or must lapse now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum LapseCause {
    /// Its approval period ended on `due` without a new approval.
    Unapproved {
        /// The due date that passed.
        due: Date,
    },
    /// No forwarded request since `since` (for `days` days or more).
    Inactive {
        /// The last use (request, approval, or the ledger's start).
        since: Timestamp,
        /// `lapse_after_inactive_days`.
        days: u32,
    },
    /// A lapse is recorded (ledger entry `seq`) and no approval came after.
    Recorded {
        /// The lapse's ledger entry.
        seq: u64,
        /// Its reason.
        reason: String,
    },
}

impl std::fmt::Display for LapseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LapseCause::Unapproved { due } => {
                write!(f, "not re-approved by its due date {due}")
            }
            LapseCause::Inactive { since, days } => write!(
                f,
                "no request forwarded for {days} days or more (last use {})",
                since.strftime("%Y-%m-%d %H:%M UTC")
            ),
            LapseCause::Recorded { seq, reason } => {
                write!(f, "lapsed (ledger entry {seq}): {reason}")
            }
        }
    }
}

/// One account's re-authorisation status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountStatus {
    /// The `[[account]]`.
    pub account: String,
    /// The day its access ends unless re-approved (`None`: not governed).
    pub due: Option<Date>,
    /// Why it is lapsed, if it is (or must lapse now).
    pub lapsed: Option<LapseCause>,
    /// Whether a lapse is already recorded (else a sweep records it).
    pub lapse_recorded: bool,
    /// The last approval: when, by whom, until.
    pub last_approval: Option<(Timestamp, Option<String>, Option<Date>)>,
    /// The last forwarded request.
    pub last_use: Option<Timestamp>,
}

/// The date of `ts` in `tz`.
pub fn day(ts: Timestamp, tz: &TimeZone) -> Date {
    ts.to_zoned_datetime(tz.clone()).date()
}

/// Adds `days` to a date, saturating at the calendar's end.
pub fn add_days(d: Date, days: u32) -> Date {
    d.checked_add(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(Date::MAX)
}

/// The status of `account` at `now`. An account without
/// `reauth_every_days` is never due; one never approved is due
/// `reauth_every_days` after the ledger began.
pub fn assess(
    account: &AccountSection,
    facts: &LedgerFacts,
    now: Timestamp,
    tz: &TimeZone,
) -> AccountStatus {
    let f: AccountFacts = facts.of(&account.name);
    let today = day(now, tz);
    let approved = f.last_approval.as_ref();
    let due = account.reauth_every_days.map(|every| {
        approved
            .and_then(|a| a.until)
            .unwrap_or_else(|| add_days(day(facts.started.unwrap_or(now), tz), every))
    });
    let recorded = f
        .last_lapse
        .as_ref()
        .filter(|l| approved.is_none_or(|a| a.seq < l.seq));
    let last_activity = [f.last_request, approved.map(|a| a.ts), facts.started]
        .into_iter()
        .flatten()
        .max();
    let lapsed = if let Some(l) = recorded {
        Some(LapseCause::Recorded {
            seq: l.seq,
            reason: l.reason.clone(),
        })
    } else if let Some(d) = due.filter(|d| *d <= today) {
        Some(LapseCause::Unapproved { due: d })
    } else {
        match (account.lapse_after_inactive_days, last_activity) {
            (Some(days), Some(since)) if add_days(day(since, tz), days) <= today => {
                Some(LapseCause::Inactive { since, days })
            }
            _ => None,
        }
    };
    AccountStatus {
        account: account.name.clone(),
        due,
        lapsed,
        lapse_recorded: recorded.is_some(),
        last_approval: approved.map(|a| (a.ts, a.signer.clone(), a.until)),
        last_use: f.last_request,
    }
}
