//! The cut-over hold: while a single-account rotation swaps an account's
//! token, that account's requests wait instead of failing.
//!
//! In single-account mode REDCap kills the old token the moment a person
//! regenerates it in the web UI, and the new one works only once it is in
//! the secrets store. The rotation (or an operator) starts a hold on the
//! account before regenerating and releases it once the new token is
//! `current`: requests arriving meanwhile wait, then go to REDCap with the
//! new token. A hold is bounded (`[gateway] cutover_hold_seconds`, default
//! 120): when it runs out, the requests waiting for it get a 503 in
//! REDCap's shape, the hold ends, an `alert` says how many requests waited
//! and how many were refused, and requests flow again (with whatever token
//! the store holds).
//!
//! Admin endpoints: `POST /admin/accounts/{account}/hold` and
//! `POST /admin/accounts/{account}/release`, each `{operator, reason}` and
//! each an `admin` entry ([`crate::admin`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use ledger::EntryKind;
use tokio::sync::watch;
use tokio::time::Instant;

/// The holds in force, by account name.
///
/// Lock story: one `Mutex` over the map, held only to look up or change
/// it (never across an await); written by the hold and release endpoints,
/// by each held request (its count) and by housekeeping (expiry); read by
/// every request ([`Holds::wait`]) and `/health`.
#[derive(Default)]
pub(crate) struct Holds {
    active: Mutex<HashMap<String, Hold>>,
}

struct Hold {
    since: Timestamp,
    deadline: Instant,
    limit: Duration,
    /// Set to `true` when the hold is released; waiters watch it.
    released: watch::Sender<bool>,
    held: u64,
    refused: u64,
}

/// Why a held request was not let through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HoldExpired {
    pub seconds: u64,
}

/// What [`Holds::release`] reports.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Released {
    pub held: u64,
    pub refused: u64,
}

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hold>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a hold on `account` for at most `limit`. Starting one that is
    /// already in force is refused (its deadline is not silently moved).
    pub(crate) fn start(&self, account: &str, limit: Duration) -> Result<(), Timestamp> {
        let mut active = self.lock();
        if let Some(h) = active.get(account)
            && h.deadline > Instant::now()
        {
            return Err(h.since);
        }
        let (released, _) = watch::channel(false);
        active.insert(
            account.to_string(),
            Hold {
                since: Timestamp::now(),
                deadline: Instant::now() + limit,
                limit,
                released,
                held: 0,
                refused: 0,
            },
        );
        Ok(())
    }

    /// Holds `account` as another gateway's hold says (the shared holds,
    /// `crate::cluster`): since `since`, for `left` more, `limit` in all.
    /// A hold in force with the same start is left as it is; one with
    /// another start is replaced.
    pub(crate) fn mirror(&self, account: &str, since: Timestamp, left: Duration, limit: Duration) {
        let mut active = self.lock();
        if active.get(account).is_some_and(|h| h.since == since) {
            return;
        }
        let (released, _) = watch::channel(false);
        if let Some(old) = active.insert(
            account.to_string(),
            Hold {
                since,
                deadline: Instant::now() + left,
                limit,
                released,
                held: 0,
                refused: 0,
            },
        ) {
            old.released.send_replace(true);
        }
    }

    /// When the hold on `account` in force here started.
    #[cfg(test)]
    fn since(&self, account: &str) -> Option<Timestamp> {
        self.lock().get(account).map(|h| h.since)
    }

    /// Ends the hold on `account`, letting its waiting requests through.
    pub(crate) fn release(&self, account: &str) -> Option<Released> {
        let hold = self.lock().remove(account)?;
        hold.released.send_replace(true);
        Some(Released {
            held: hold.held,
            refused: hold.refused,
        })
    }

    /// Waits while `account` is held: returns at once when it is not, when
    /// the hold is released, or with [`HoldExpired`] when it runs out.
    pub(crate) async fn wait(&self, account: &str) -> Result<(), HoldExpired> {
        let (mut released, deadline, limit) = {
            let mut active = self.lock();
            let Some(h) = active.get_mut(account) else {
                return Ok(());
            };
            if h.deadline <= Instant::now() {
                h.refused += 1;
                return Err(HoldExpired {
                    seconds: h.limit.as_secs(),
                });
            }
            h.held += 1;
            (h.released.subscribe(), h.deadline, h.limit)
        };
        let outcome = tokio::time::timeout_at(deadline, released.wait_for(|r| *r)).await;
        match outcome {
            Ok(Ok(_)) => Ok(()),
            // Timed out, or the hold was dropped without a release (it ran
            // out and housekeeping removed it first).
            Ok(Err(_)) | Err(_) => {
                if let Some(h) = self.lock().get_mut(account) {
                    h.refused += 1;
                }
                Err(HoldExpired {
                    seconds: limit.as_secs(),
                })
            }
        }
    }

    /// Removes holds past their deadline, with the `alert` each one owes.
    pub(crate) fn expire(&self) -> Vec<EntryKind> {
        let now = Instant::now();
        let mut active = self.lock();
        let expired: Vec<String> = active
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(a, _)| a.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|account| {
                let h = active.remove(&account)?;
                Some(EntryKind::Alert {
                    code: "cutover_hold_expired".into(),
                    message: format!(
                        "the cut-over hold on account `{account}` (since {}) ran out after {} s without being released: {} requests waited, {} were refused; requests flow again with the token the store holds",
                        h.since,
                        h.limit.as_secs(),
                        h.held,
                        h.refused
                    ),
                })
            })
            .collect()
    }

    /// Accounts held now, with when each hold started.
    pub(crate) fn list(&self) -> Vec<(String, Timestamp)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(a, h)| (a.clone(), h.since))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn an_unheld_account_passes_at_once() {
        let holds = Holds::default();
        assert_eq!(holds.wait("etl").await, Ok(()));
    }

    #[tokio::test]
    async fn a_released_hold_lets_its_waiters_through() {
        let holds = Arc::new(Holds::default());
        holds.start("etl", Duration::from_secs(3600)).unwrap();
        let waiter = {
            let holds = Arc::clone(&holds);
            tokio::spawn(async move { holds.wait("etl").await })
        };
        // The waiter is parked on the hold until it is released.
        while holds.lock()["etl"].held == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished());
        let released = holds.release("etl").unwrap();
        assert_eq!((released.held, released.refused), (1, 0));
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(holds.wait("etl").await, Ok(()), "no hold any more");
    }

    #[tokio::test]
    async fn a_mirrored_hold_is_kept_once_and_released_like_any() {
        let holds = Arc::new(Holds::default());
        let since = Timestamp::now();
        let hour = Duration::from_secs(3600);
        holds.mirror("etl", since, hour, hour);
        holds.mirror("etl", since, hour, hour);
        assert_eq!(holds.since("etl"), Some(since));
        let waiter = {
            let holds = Arc::clone(&holds);
            tokio::spawn(async move { holds.wait("etl").await })
        };
        while holds.lock()["etl"].held == 0 {
            tokio::task::yield_now().await;
        }
        holds.mirror("etl", since, hour, hour);
        assert!(!waiter.is_finished(), "the same hold is not restarted");
        assert_eq!(holds.release("etl").map(|r| r.held), Some(1));
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(holds.since("etl"), None);
    }

    #[test]
    fn a_hold_in_force_is_not_restarted() {
        let holds = Holds::default();
        holds.start("etl", Duration::from_secs(3600)).unwrap();
        let since = holds.list()[0].1;
        assert_eq!(holds.start("etl", Duration::from_secs(5)), Err(since));
        assert!(holds.expire().is_empty(), "not run out");
    }

    #[tokio::test]
    async fn a_hold_that_ran_out_refuses_and_owes_an_alert() {
        let holds = Holds::default();
        holds.start("etl", Duration::ZERO).unwrap();
        assert_eq!(holds.wait("etl").await, Err(HoldExpired { seconds: 0 }));
        let alerts = holds.expire();
        assert_eq!(alerts.len(), 1);
        let EntryKind::Alert { code, message } = &alerts[0] else {
            panic!("an alert")
        };
        assert_eq!(code, "cutover_hold_expired");
        assert!(
            message.contains("0 requests waited, 1 were refused"),
            "{message}"
        );
        assert!(holds.list().is_empty());
        assert_eq!(holds.wait("etl").await, Ok(()), "requests flow again");
    }
}
