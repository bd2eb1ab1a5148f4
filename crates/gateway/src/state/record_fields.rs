//! Each account's project's record id field, as last read from REDCap's
//! metadata ([`crate::record_field`] reads it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::export::RecordIdField;

/// How long a record id field read from the metadata is trusted.
pub const TTL: Duration = Duration::from_secs(600);

/// How long a failed read is not retried.
const RETRY: Duration = Duration::from_secs(60);

/// The record id fields read, by account name, with when (`None`: the
/// read failed).
///
/// Lock story: one `Mutex`, held only to look up or insert; written by
/// the request that reads the metadata, read by every record import and
/// export.
#[derive(Default)]
pub(crate) struct RecordFields {
    read: Mutex<HashMap<String, (Option<RecordIdField>, Instant)>>,
}

impl RecordFields {
    /// The field read for `account`, while it is trusted: `Some(None)` is
    /// a failed read not to be retried yet; `None`, nothing to trust.
    pub(crate) fn trusted(&self, account: &str) -> Option<Option<RecordIdField>> {
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let (field, at) = read.get(account)?;
        let ttl = if field.is_some() { TTL } else { RETRY };
        (at.elapsed() < ttl).then(|| field.clone())
    }

    /// Remembers what was read for `account` now.
    pub(crate) fn remember(&self, account: &str, field: Option<RecordIdField>) {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account.to_string(), (field, Instant::now()));
    }
}
