//! Service-account status that outlives a process: quarantines, and
//! lapses (re-authorisation, `crate::reauth`).
//!
//! The gateway quarantines an account when it sees something that must not
//! happen — a site account's export arriving with a Data Access Group
//! column, meaning REDCap no longer restricts it to its site. A quarantined
//! account's calls are refused until an operator releases it with a
//! recorded reason (`redcap-warden accounts release`).
//!
//! A lapsed account (not re-approved in time, or idle) is refused the same
//! way until a signed approval restores it (`redcap-warden reauth`).
//!
//! A retired account (`redcap-warden accounts retire`: its token shown
//! dead in REDCap, its secret retired) is refused for good, unless it is
//! enrolled again (`redcap-warden accounts enroll`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{DocumentError, FileDocument, SharedDocument};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};

const FORMAT: &str = "redcap-warden/account-status/1";

/// An account the gateway refuses to forward for until an operator
/// releases it (`accounts release`): set by the DAG guard when REDCap showed
/// the account is not DAG-restricted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// When the quarantine began (UTC).
    pub since: Timestamp,
    /// Why, in words an operator can act on (shown by `accounts list`).
    pub reason: String,
    /// Who quarantined it (`gateway` for the DAG guard).
    pub by: String,
}

impl Quarantine {
    /// A quarantine starting `since`, `by` whom (`gateway` for the DAG
    /// guard), and why.
    pub fn new(since: Timestamp, reason: &str, by: &str) -> Quarantine {
        Quarantine {
            since,
            reason: reason.to_string(),
            by: by.to_string(),
        }
    }
}

/// Why the account status file could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Reading, writing, locking or replacing the file failed.
    #[error(
        "account status file {path}: {op} failed: {source}; fix: check the data directory's permissions and free space"
    )]
    Io {
        /// The status file.
        path: PathBuf,
        /// What was being done (`read`, `lock`, `replace`, …).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a status document this version can read.
    #[error("account status file {path} is damaged ({detail}); fix: restore it from backup")]
    Corrupt {
        /// The status file.
        path: PathBuf,
        /// What the parser found wrong.
        detail: String,
    },
    /// The status lives in PostgreSQL (`[ledger] backend = "postgres"`)
    /// and the database did not answer or refused; nothing was changed.
    #[error(
        "account status in {place}: could not {op}: {detail}; fix: check that PostgreSQL answers"
    )]
    Database {
        /// Where the status is.
        place: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The database's error.
        detail: String,
    },
    /// A release named an account that is not quarantined.
    #[error("account `{0}` is not quarantined")]
    NotQuarantined(String),
}

/// An account the gateway refuses because it lapsed (`reauth sweep`),
/// until a signed approval restores it (`reauth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lapse {
    /// When the lapse was recorded (UTC).
    pub since: Timestamp,
    /// Why, e.g. `not re-approved by its due date 2027-03-07`.
    pub reason: String,
    /// Who recorded it (the operator of the sweep).
    pub by: String,
}

/// Which member of a dual pair of accounts the gateway serves the pair's
/// clients with (`docs/rotation.md`, dual-account mode): switched by a
/// dual rotation, read by the gateway on every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    /// The `[[account]]` serving.
    pub account: String,
    /// Since when (UTC).
    pub since: Timestamp,
    /// Who switched it (the operator of the rotation).
    pub by: String,
    /// The rotation that switched it.
    pub rotation_id: String,
}

/// An account retired by `accounts retire`: its token was shown dead in
/// REDCap and its secret retired (kept in the store's history, no longer
/// served).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// When it was retired (UTC).
    pub since: Timestamp,
    /// Why (the operator's reason).
    pub reason: String,
    /// Who retired it (the OS login).
    pub by: String,
    /// The answer that showed its token dead.
    pub proof: String,
}

/// Everything the status file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Quarantined accounts by name.
    pub quarantined: BTreeMap<String, Quarantine>,
    /// Lapsed accounts by name.
    pub lapsed: BTreeMap<String, Lapse>,
    /// The active member of each dual pair that has switched at least
    /// once, by the pair's key (`warden_config::pair_key`); a pair not
    /// listed is served by the member whose name is its key.
    pub active: BTreeMap<String, Active>,
    /// Retired accounts by name.
    pub retired: BTreeMap<String, Retirement>,
}

impl Status {
    /// The member of the dual pair `pair_key` serving now.
    pub fn active_of(&self, pair_key: &str) -> String {
        self.active
            .get(pair_key)
            .map_or_else(|| pair_key.to_string(), |a| a.account.clone())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    quarantined: BTreeMap<String, Quarantine>,
    /// Absent in files written before lapses existed (and when none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    lapsed: BTreeMap<String, Lapse>,
    /// Absent in files written before dual pairs existed (and when none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    active: BTreeMap<String, Active>,
    /// Absent in files written before retirements existed (and when none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    retired: BTreeMap<String, Retirement>,
}

/// The account status: read-modify-write under an exclusive lock. A file
/// replaced atomically on one machine; a row of PostgreSQL every gateway
/// shares with `[ledger] backend = "postgres"` (the gateway's `cluster`
/// module builds that document).
pub struct AccountStatusFile {
    doc: Arc<dyn SharedDocument>,
    clock: Arc<dyn Clock>,
}

impl AccountStatusFile {
    /// The status file at `path` (it need not exist yet: no file means no
    /// quarantines), on the real file system and clock.
    pub fn new(path: &Path) -> AccountStatusFile {
        AccountStatusFile::shared(Arc::new(FileDocument::new(path)))
    }

    /// The status in any shared document, on the real clock.
    pub fn shared(doc: Arc<dyn SharedDocument>) -> AccountStatusFile {
        AccountStatusFile {
            doc,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same file, stamping quarantines with `clock`'s time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> AccountStatusFile {
        self.clock = clock;
        self
    }

    /// Where the status is: the file, or the PostgreSQL row.
    pub fn path(&self) -> &Path {
        self.doc.place()
    }

    /// The document the status is in.
    pub fn document(&self) -> &dyn SharedDocument {
        &*self.doc
    }

    fn failed(&self, e: DocumentError) -> StatusError {
        match e {
            DocumentError::Io { op, source } => StatusError::Io {
                path: self.path().to_path_buf(),
                op,
                source,
            },
            DocumentError::Database { op, detail } => StatusError::Database {
                place: self.path().to_path_buf(),
                op,
                detail,
            },
        }
    }

    /// Quarantined accounts by name. A missing file means none.
    pub fn quarantined(&self) -> Result<BTreeMap<String, Quarantine>, StatusError> {
        Ok(self.status()?.quarantined)
    }

    /// Quarantined, lapsed and retired accounts. A missing file means none.
    pub fn status(&self) -> Result<Status, StatusError> {
        let bytes = self.doc.read().map_err(|e| self.failed(e))?;
        self.parse(bytes)
    }

    fn parse(&self, bytes: Option<Vec<u8>>) -> Result<Status, StatusError> {
        let Some(bytes) = bytes else {
            return Ok(Status::default());
        };
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| StatusError::Corrupt {
            path: self.path().to_path_buf(),
            detail: e.to_string(),
        })?;
        if doc.format != FORMAT {
            return Err(StatusError::Corrupt {
                path: self.path().to_path_buf(),
                detail: format!("unknown format `{}`", doc.format),
            });
        }
        Ok(Status {
            quarantined: doc.quarantined,
            lapsed: doc.lapsed,
            active: doc.active,
            retired: doc.retired,
        })
    }

    fn update<T: Send>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Quarantine>) -> Result<T, StatusError> + Send,
    ) -> Result<T, StatusError> {
        self.update_all(|s| f(&mut s.quarantined))
    }

    fn update_all<T: Send>(
        &self,
        f: impl FnOnce(&mut Status) -> Result<T, StatusError> + Send,
    ) -> Result<T, StatusError> {
        let mut f = Some(f);
        let mut out = None;
        self.doc
            .update(&mut |bytes| {
                let f = f.take()?;
                let changed = self.parse(bytes).and_then(|mut status| {
                    let t = f(&mut status)?;
                    Ok((t, status))
                });
                match changed {
                    Ok((t, status)) => {
                        out = Some(Ok(t));
                        Some(
                            serde_json::to_vec_pretty(&Document {
                                format: FORMAT.into(),
                                quarantined: status.quarantined,
                                lapsed: status.lapsed,
                                active: status.active,
                                retired: status.retired,
                            })
                            .expect("serialisable"),
                        )
                    }
                    Err(e) => {
                        out = Some(Err(e));
                        None
                    }
                }
            })
            .map_err(|e| self.failed(e))?;
        out.unwrap_or_else(|| {
            Err(StatusError::Database {
                place: self.path().to_path_buf(),
                op: "change the account status",
                detail: "the change was not applied".into(),
            })
        })
    }

    /// Quarantines `account` (keeping the first quarantine if it already is).
    pub fn quarantine(&self, account: &str, reason: &str, by: &str) -> Result<(), StatusError> {
        let since = self.clock.now();
        self.update(|q| {
            q.entry(account.to_string())
                .or_insert_with(|| Quarantine::new(since, reason, by));
            Ok(())
        })
    }

    /// Marks `account` lapsed (keeping the first lapse if it already is).
    pub fn lapse(&self, account: &str, reason: &str, by: &str) -> Result<(), StatusError> {
        let since = self.clock.now();
        self.update_all(|s| {
            s.lapsed
                .entry(account.to_string())
                .or_insert_with(|| Lapse {
                    since,
                    reason: reason.to_string(),
                    by: by.to_string(),
                });
            Ok(())
        })
    }

    /// Clears `account`'s lapse (an approval); returns it, if it was lapsed.
    pub fn restore(&self, account: &str) -> Result<Option<Lapse>, StatusError> {
        self.update_all(|s| Ok(s.lapsed.remove(account)))
    }

    /// Makes `account` the active member of the dual pair `pair_key`
    /// (durable when this returns: the file is replaced and synced).
    pub fn set_active(
        &self,
        pair_key: &str,
        account: &str,
        by: &str,
        rotation_id: &str,
    ) -> Result<(), StatusError> {
        let since = self.clock.now();
        self.update_all(|s| {
            s.active.insert(
                pair_key.to_string(),
                Active {
                    account: account.to_string(),
                    since,
                    by: by.to_string(),
                    rotation_id: rotation_id.to_string(),
                },
            );
            Ok(())
        })
    }

    /// Marks `account` retired (keeping the first retirement if it
    /// already is).
    pub fn retire(
        &self,
        account: &str,
        reason: &str,
        by: &str,
        proof: &str,
    ) -> Result<(), StatusError> {
        let since = self.clock.now();
        self.update_all(|s| {
            s.retired
                .entry(account.to_string())
                .or_insert_with(|| Retirement {
                    since,
                    reason: reason.to_string(),
                    by: by.to_string(),
                    proof: proof.to_string(),
                });
            Ok(())
        })
    }

    /// Clears `account`'s retirement (enrolled again); returns it, if it
    /// was retired.
    pub fn unretire(&self, account: &str) -> Result<Option<Retirement>, StatusError> {
        self.update_all(|s| Ok(s.retired.remove(account)))
    }

    /// Releases `account`; returns the quarantine it was under.
    pub fn release(&self, account: &str) -> Result<Quarantine, StatusError> {
        self.update(|q| {
            q.remove(account)
                .ok_or_else(|| StatusError::NotQuarantined(account.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_persists_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let at: Timestamp = "2026-03-04T05:06:07Z".parse().unwrap();
        let f = AccountStatusFile::new(&dir.path().join("status.json"))
            .with_clock(Arc::new(move || at));
        assert!(f.quarantined().unwrap().is_empty());
        f.quarantine("site-a", "DAG column in an export", "gateway")
            .unwrap();
        f.quarantine("site-a", "again", "gateway").unwrap();
        let again = AccountStatusFile::new(&dir.path().join("status.json"));
        let q = again.quarantined().unwrap();
        assert_eq!(
            q["site-a"].reason, "DAG column in an export",
            "the first cause is kept"
        );
        assert_eq!(q["site-a"].since, at, "stamped with the injected clock");
        assert_eq!(again.release("site-a").unwrap().by, "gateway");
        assert!(matches!(
            again.release("site-a"),
            Err(StatusError::NotQuarantined(_))
        ));
        let before = std::fs::read(dir.path().join("status.json")).unwrap();
        again.lapse("site-b", "idle", "ana").unwrap();
        assert_eq!(again.status().unwrap().lapsed["site-b"].by, "ana");
        assert_eq!(again.restore("site-b").unwrap().unwrap().reason, "idle");
        assert_eq!(again.restore("site-b").unwrap(), None);
        again.retire("site-c", "site closed", "ana", "403").unwrap();
        again.retire("site-c", "again", "bob", "403").unwrap();
        assert_eq!(again.status().unwrap().retired["site-c"].by, "ana");
        assert_eq!(
            again.unretire("site-c").unwrap().unwrap().reason,
            "site closed"
        );
        assert_eq!(again.unretire("site-c").unwrap(), None);
        assert_eq!(
            std::fs::read(dir.path().join("status.json")).unwrap(),
            before,
            "without lapses and retirements the file is as before they existed"
        );
        std::fs::write(dir.path().join("status.json"), "[").unwrap();
        assert!(matches!(
            again.quarantined(),
            Err(StatusError::Corrupt { .. })
        ));
    }
}
