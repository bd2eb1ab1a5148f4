//! The client keys in force: the key file as last read, and when each key
//! was last used.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::watched::{Source, Watched};
use crate::keys::{KeyError, KeyFile, KeyRecord, KeyRing, Presented};

impl Source for KeyFile {
    type Value = KeyRing;
    type Error = KeyError;
    fn path(&self) -> &Path {
        KeyFile::path(self)
    }
    fn load(&self) -> Result<KeyRing, KeyError> {
        self.ring()
    }
    fn stamp(&self) -> Option<super::watched::FileStamp> {
        self.document().stamp()
    }
}

/// The least time between two re-reads an unknown key causes.
const RECHECK: Duration = Duration::from_millis(50);

/// How often key use goes to the key file (not on every request).
const USE_FLUSH: Duration = Duration::from_secs(60);

/// Lock stories:
/// - `ring` ([`Watched`]): the key file's keys, re-read by the first
///   request that sees the file change (`keys issue`/`keys revoke`, the
///   admin endpoints); read by every request.
/// - `used` (`Mutex`): key id -> last use not yet in the file; written by
///   every accepted request, taken by housekeeping once a minute, read by
///   `GET /admin/keys`.
/// - `flushed` (`Mutex`): when `used` was last written; housekeeping only.
pub(crate) struct ClientKeys {
    ring: Watched<KeyFile>,
    /// When an unknown key last made the keys be re-read (shared keys
    /// only; [`ClientKeys::may_recheck`]).
    rechecked: Mutex<Option<Instant>>,
    used: Mutex<HashMap<String, Timestamp>>,
    flushed: Mutex<Instant>,
}

impl ClientKeys {
    pub(crate) fn new(file: KeyFile) -> Result<ClientKeys, KeyError> {
        Ok(ClientKeys {
            ring: Watched::new(file)?,
            rechecked: Mutex::new(None),
            used: Mutex::new(HashMap::new()),
            flushed: Mutex::new(Instant::now()),
        })
    }

    /// The key file, to change it.
    pub(crate) fn file(&self) -> &KeyFile {
        self.ring.source()
    }

    /// Checks a presented key against the key file as it is now: a key
    /// issued or revoked a moment ago counts from the next request.
    pub(crate) fn check(
        &self,
        presented: &str,
        now: Timestamp,
    ) -> Result<Arc<KeyRecord>, &'static str> {
        self.ring.read(|ring| match ring.check(presented, now) {
            Presented::Valid(r) => Ok(Arc::clone(r)),
            Presented::Expired(_) => Err("expired key"),
            Presented::Revoked(_) => Err("revoked key"),
            Presented::Unknown => Err("unknown key"),
        })
    }

    /// Re-reads the key file now (after a change this process made, or a
    /// reload).
    pub(crate) fn reload(&self) {
        if let Err(e) = self.try_reload() {
            tracing::warn!(error = %e, "could not reload client keys");
        }
    }

    /// Re-reads the keys now, saying why not.
    pub(crate) fn try_reload(&self) -> Result<(), KeyError> {
        self.ring.reload()
    }

    /// Whether an unknown key may have the keys re-read now: a key issued
    /// on another host a moment ago works from its first request, before
    /// the notification arrives; at most one re-read per [`RECHECK`], so
    /// unknown keys cannot make the gateway hammer the database.
    pub(crate) fn may_recheck(&self) -> bool {
        let mut last = self.rechecked.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < RECHECK) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Notes that key `id` was used at `now`.
    pub(crate) fn note_use(&self, id: &str, now: Timestamp) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        match used.get_mut(id) {
            Some(last) => *last = now,
            None => {
                used.insert(id.to_string(), now);
            }
        }
    }

    /// Use noted but not yet written to the key file.
    pub(crate) fn unflushed_use(&self) -> HashMap<String, Timestamp> {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes the use noted to the key file once a minute (every time
    /// when `everything`, at shutdown).
    pub(crate) fn flush_use(&self, everything: bool) {
        let used = {
            let mut last = self.flushed.lock().unwrap_or_else(|e| e.into_inner());
            if !everything && last.elapsed() < USE_FLUSH {
                return;
            }
            *last = Instant::now();
            std::mem::take(&mut *self.used.lock().unwrap_or_else(|e| e.into_inner()))
        };
        if let Err(e) = self.file().record_use(&used) {
            tracing::warn!(error = %e, "could not record client key use");
        }
    }
}
