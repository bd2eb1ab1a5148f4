//! The cut-over holds every gateway honours: the document
//! `cutover-holds`, account -> when the hold started and when it runs out.
//!
//! The admin endpoint that starts a hold writes it here first (refused
//! while one is in force), then holds its own requests; every other
//! gateway's follower sees the row change and holds the account's
//! requests until the same instant. A release removes the row; each
//! gateway lets its waiting requests through and forgets its cached
//! tokens (the new one is in the store). A hold that runs out ends on each
//! gateway at the same instant, each writing the `alert` for the requests
//! it held.

use std::collections::BTreeMap;
use std::time::Duration;

use durable::{DocumentError, SharedDocument};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::document::PgDocument;

const FORMAT: &str = "redcap-warden/cutover-holds/1";

/// One hold as every gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedHold {
    /// When it started.
    pub since: Timestamp,
    /// When it runs out.
    pub until: Timestamp,
    /// Who started it.
    pub operator: String,
}

impl SharedHold {
    /// What is left of it at `now` (`None`: it ran out).
    pub(crate) fn left(&self, now: Timestamp) -> Option<Duration> {
        let left = Duration::try_from(self.until.duration_since(now)).ok()?;
        (!left.is_zero()).then_some(left)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Document {
    format: String,
    holds: BTreeMap<String, SharedHold>,
}

fn parse(bytes: Option<Vec<u8>>) -> BTreeMap<String, SharedHold> {
    bytes
        .and_then(|b| serde_json::from_slice::<Document>(&b).ok())
        .filter(|d| d.format == FORMAT)
        .map(|d| d.holds)
        .unwrap_or_default()
}

fn write(holds: BTreeMap<String, SharedHold>) -> Vec<u8> {
    serde_json::to_vec(&Document {
        format: FORMAT.into(),
        holds,
    })
    .expect("serialisable")
}

/// The `cutover-holds` document.
pub(crate) struct SharedHolds(pub(crate) PgDocument);

impl SharedHolds {
    /// Starts a hold on `account` until `now + limit`; `Ok(Err(since))`
    /// when one is in force already (its end is not moved).
    pub(crate) fn start(
        &self,
        account: &str,
        limit: Duration,
        operator: &str,
        now: Timestamp,
    ) -> Result<Result<SharedHold, Timestamp>, DocumentError> {
        let until = now
            .checked_add(jiff::SignedDuration::try_from(limit).unwrap_or_default())
            .unwrap_or(now);
        let mut out = None;
        self.0.update(&mut |bytes| {
            let mut holds = parse(bytes);
            if let Some(h) = holds.get(account)
                && h.left(now).is_some()
            {
                out = Some(Err(h.since));
                return None;
            }
            let hold = SharedHold {
                since: now,
                until,
                operator: operator.to_string(),
            };
            holds.insert(account.to_string(), hold.clone());
            out = Some(Ok(hold));
            Some(write(holds))
        })?;
        Ok(out.unwrap_or(Err(now)))
    }

    /// Ends the hold on `account`; `None` when there is none.
    pub(crate) fn release(&self, account: &str) -> Result<Option<SharedHold>, DocumentError> {
        let mut out = None;
        self.0.update(&mut |bytes| {
            let mut holds = parse(bytes);
            out = holds.remove(account);
            out.as_ref().map(|_| write(holds))
        })?;
        Ok(out)
    }

    /// The holds not yet run out at `now`.
    pub(crate) fn in_force(
        &self,
        now: Timestamp,
    ) -> Result<BTreeMap<String, SharedHold>, DocumentError> {
        let mut holds = parse(self.0.read()?);
        holds.retain(|_, h| h.left(now).is_some());
        Ok(holds)
    }

    /// Removes the holds that ran out by `now` (whichever gateway gets
    /// there first).
    pub(crate) fn forget_expired(&self, now: Timestamp) -> Result<(), DocumentError> {
        self.0.update(&mut |bytes| {
            let mut holds = parse(bytes);
            let before = holds.len();
            holds.retain(|_, h| h.left(now).is_some());
            (holds.len() != before).then(|| write(holds))
        })
    }
}
