//! Quarantined and lapsed accounts: the account status file as last read,
//! and the quarantines the DAG guard has just decided.

use std::path::Path;

use governance::accounts::{AccountStatusFile, Lapse, Quarantine, Status, StatusError};

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

    /// The account's quarantine, as the status file says now (an operator
    /// may have released it).
    pub(crate) fn of(&self, account: &str) -> Option<Quarantine> {
        self.0.read(|s| s.quarantined.get(account).cloned())
    }

    /// The account's lapse, as the status file says now (`reauth sweep`
    /// marks it, an approval clears it).
    pub(crate) fn lapse_of(&self, account: &str) -> Option<Lapse> {
        self.0.read(|s| s.lapsed.get(account).cloned())
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
