//! Quarantined, lapsed and retired accounts: the account status file as last read,
//! and the quarantines the DAG guard has just decided.

use std::path::Path;

use governance::accounts::{AccountStatusFile, Lapse, Quarantine, Retirement, Status, StatusError};

use super::watched::{Source, Watched};

impl Source for AccountStatusFile {
    type Value = Status;
    type Error = StatusError;
    fn path(&self) -> &Path {
        AccountStatusFile::path(self)
    }
    fn load(&self) -> Result<Self::Value, StatusError> {
        self.status()
    }
}

/// Why the gateway refuses an account's calls.
pub(crate) enum Refusal {
    /// Quarantined (the DAG guard, or an operator).
    Quarantined(Quarantine),
    /// Its re-authorisation lapsed.
    Lapsed(Lapse),
    /// Retired (`accounts retire`): its token is dead, its secret retired.
    Retired(Retirement),
}

/// Who the gateway's own quarantines are by.
const BY: &str = "gateway";

/// Lock story: one [`Watched`] over the status file; re-read by the first
/// request that sees it change (`accounts release`), changed in memory by
/// the DAG guard, read by every request's authorisation.
pub(crate) struct Quarantines(Watched<AccountStatusFile>);

impl Quarantines {
    pub(crate) fn new(file: AccountStatusFile) -> Result<Quarantines, StatusError> {
        Ok(Quarantines(Watched::new(file)?))
    }

    /// Why the account is refused, as the status file says now (one read
    /// per request): a retirement (for good), else a quarantine (an
    /// operator may have released it), else a lapse (`reauth sweep` marks
    /// it, an approval clears it).
    pub(crate) fn refusal_of(&self, account: &str) -> Option<Refusal> {
        self.0.read(|s| {
            if let Some(r) = s.retired.get(account) {
                return Some(Refusal::Retired(r.clone()));
            }
            match s.quarantined.get(account) {
                Some(q) => Some(Refusal::Quarantined(q.clone())),
                None => s.lapsed.get(account).cloned().map(Refusal::Lapsed),
            }
        })
    }

    /// Quarantines `account`: in the status file, and in memory at once
    /// whether or not the file could be written.
    pub(crate) fn quarantine(&self, account: &str, reason: &str) {
        if let Err(e) = self.0.source().quarantine(account, reason, BY) {
            tracing::error!(error = %e, account = %account, "could not persist the quarantine");
        }
        self.0.modify(|s| {
            s.quarantined
                .entry(account.to_string())
                .or_insert_with(|| Quarantine::new(jiff::Timestamp::now(), reason, BY));
        });
    }

    /// Re-reads the status file now (a reload).
    pub(crate) fn reload(&self) {
        if let Err(e) = self.0.reload() {
            tracing::warn!(error = %e, "could not re-read account status");
        }
    }
}
