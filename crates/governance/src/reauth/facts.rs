//! What the ledger says about re-authorisation, learned in one pass: per
//! account its last forwarded request, last approval, last lapse and who
//! last changed its rights, plus every statement and signature already
//! used. Memory grows with accounts and approvals, never with requests:
//! a ledger of millions of entries is read once, an entry at a time.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;
use ledger::{Entry, EntryKind, ReauthAction};

use super::statement::sha256_hex;

/// The last approval of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalFact {
    /// Its ledger entry.
    pub seq: u64,
    /// When it was recorded.
    pub ts: Timestamp,
    /// The day its period ends (REDCap's expiration).
    pub until: Option<Date>,
    /// The approver's principal (`None` for entries before signatures).
    pub signer: Option<String>,
}

/// The last lapse of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LapseFact {
    /// Its ledger entry.
    pub seq: u64,
    /// When it was recorded.
    pub ts: Timestamp,
    /// Why it lapsed.
    pub reason: String,
}

/// The last change of an account's rights (a `rights` entry that changed
/// something, not a `rights check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsChange {
    /// Its ledger entry.
    pub seq: u64,
    /// Who made it.
    pub operator: String,
}

/// One account's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFacts {
    /// The last `request` entry (a request forwarded to REDCap).
    pub last_request: Option<Timestamp>,
    /// The last approval.
    pub last_approval: Option<ApprovalFact>,
    /// The last lapse.
    pub last_lapse: Option<LapseFact>,
    /// The last change of its rights.
    pub rights_changed: Option<RightsChange>,
}

/// Everything re-authorisation needs from the ledger.
#[derive(Debug, Clone, Default)]
pub struct LedgerFacts {
    /// When the ledger began (its first entry).
    pub started: Option<Timestamp>,
    /// By `[[account]]` name.
    pub accounts: BTreeMap<String, AccountFacts>,
    /// SHA-256 of each statement and signature an approval used → the
    /// approval's seq.
    pub used: HashMap<String, u64>,
    /// The seq after the last entry taken in: where to go on reading, so a
    /// long-running process (the gateway's daily sweep) reads each entry
    /// once, not the whole ledger every day.
    pub next: u64,
}

/// `rights check` (and the check after `rights apply`) records its runs
/// as `rights` entries whose changes are `check: …` and `probe: …` lines,
/// or none: they changed nothing.
fn is_check(changes: &[String]) -> bool {
    changes
        .iter()
        .all(|c| c.starts_with("check:") || c.starts_with("probe:"))
}

impl LedgerFacts {
    /// Takes in the next entry (entries must come in ledger order).
    pub fn observe(&mut self, entry: &Entry) {
        if self.started.is_none() {
            self.started = Some(entry.ts);
        }
        self.next = entry.seq + 1;
        match &entry.kind {
            EntryKind::Request { account, .. } => {
                // The common case: no allocation once the account is known.
                match self.accounts.get_mut(account.as_str()) {
                    Some(f) => f.last_request = Some(entry.ts),
                    None => {
                        self.accounts.insert(
                            account.clone(),
                            AccountFacts {
                                last_request: Some(entry.ts),
                                ..AccountFacts::default()
                            },
                        );
                    }
                }
            }
            EntryKind::Rights {
                operator,
                account,
                changes,
                ..
            } if account != "*" && !is_check(changes) => {
                self.accounts
                    .entry(account.clone())
                    .or_default()
                    .rights_changed = Some(RightsChange {
                    seq: entry.seq,
                    operator: operator.clone(),
                });
            }
            EntryKind::Reauth {
                account,
                until,
                reason,
                action,
                approval,
                ..
            } => {
                let facts = self.accounts.entry(account.clone()).or_default();
                let lapse = matches!(action, Some(ReauthAction::Lapse))
                    || (action.is_none() && until.is_none());
                if lapse {
                    facts.last_lapse = Some(LapseFact {
                        seq: entry.seq,
                        ts: entry.ts,
                        reason: reason.clone(),
                    });
                } else {
                    facts.last_approval = Some(ApprovalFact {
                        seq: entry.seq,
                        ts: entry.ts,
                        until: until
                            .as_deref()
                            .and_then(|u| u.get(..10).and_then(|d| d.parse::<Date>().ok())),
                        signer: approval.as_ref().map(|a| a.signer.clone()),
                    });
                    if let Some(a) = approval {
                        self.used
                            .insert(sha256_hex(a.statement.as_bytes()), entry.seq);
                        self.used
                            .insert(sha256_hex(a.signature.trim().as_bytes()), entry.seq);
                    }
                }
            }
            _ => {}
        }
    }

    /// The facts of `account` (empty if the ledger never named it).
    pub fn of(&self, account: &str) -> AccountFacts {
        self.accounts.get(account).cloned().unwrap_or_default()
    }
}
