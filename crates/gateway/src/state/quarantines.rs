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
    fn stamp(&self) -> Option<super::watched::FileStamp> {
        self.document().stamp()
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

    /// Which account serves a client of `named` now — the active member of
    /// its dual pair, or `named` itself — and why the gateway refuses, if
    /// it does: a retirement (for good), a quarantine (an operator may
    /// release it) or a lapse (an approval clears it) of either (one read
    /// per request).
    pub(crate) fn standing(
        &self,
        named: &str,
        pair: Option<&str>,
    ) -> (String, Option<(String, Refusal)>) {
        self.0.read(|s| {
            let serving = pair.map_or_else(|| named.to_string(), |p| s.active_of(p));
            let refusal = [named, serving.as_str()].into_iter().find_map(|a| {
                let why = if let Some(r) = s.retired.get(a) {
                    Some(Refusal::Retired(r.clone()))
                } else {
                    match s.quarantined.get(a) {
                        Some(q) => Some(Refusal::Quarantined(q.clone())),
                        None => s.lapsed.get(a).cloned().map(Refusal::Lapsed),
                    }
                };
                why.map(|w| (a.to_string(), w))
            });
            (serving, refusal)
        })
    }

    /// The active member of the dual pair `pair`, as the status file says
    /// now.
    pub(crate) fn active_of(&self, pair: &str) -> String {
        self.0.read(|s| s.active_of(pair))
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
        if let Err(e) = self.try_reload() {
            tracing::warn!(error = %e, "could not re-read account status");
        }
    }

    /// Re-reads the status now, saying why not.
    pub(crate) fn try_reload(&self) -> Result<(), StatusError> {
        self.0.reload()
    }
}
