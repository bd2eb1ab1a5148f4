//! The outbound window shared by every gateway replica, in PostgreSQL.
//!
//! REDCap bans an IP address for good once it passes its per-minute
//! threshold, and replicas behind one NAT or on one host count as one
//! address. So with the PostgreSQL backend the sliding 60-second window of
//! [`crate::upstream::Limiter`] is one window for all replicas, kept in
//! the ledger's database with the database's own row locks — never the
//! budget divided between replicas, never a protocol of our own.
//!
//! # The table
//!
//! `<schema>.outbound_slots (slot, last_at, replica)` holds at most one
//! row per call the budget allows in a minute (`[gateway]
//! outbound_per_minute`; slots `0..budget`, made as they are first
//! needed, so a huge budget costs only the rows it uses). A call is
//! admitted by taking a slot whose last use is at least 60 s old and
//! stamping it with the database's clock, in one statement:
//!
//! ```sql
//! UPDATE outbound_slots SET last_at = clock_timestamp(), replica = $me
//!  WHERE slot = (SELECT slot FROM outbound_slots
//!                 WHERE slot < $budget AND last_at <= clock_timestamp() - 60 s
//!                 ORDER BY last_at LIMIT 1 FOR UPDATE SKIP LOCKED)
//! ```
//!
//! (or, when no slot is free and fewer than `budget` exist, by making the
//! next one, stamped the same way).
//!
//! A slot is used at most once in any 60 s, so at most `budget` calls are
//! admitted in any 60 s, whichever replicas make them; and while fewer
//! than `budget` calls were made in the last 60 s some slot is free, so
//! this is exactly the sliding window of the single-process limiter.
//! `FOR UPDATE SKIP LOCKED` lets concurrent admissions take different
//! slots at once (their commits share the server's WAL flushes) instead of
//! queueing on one lock. The times are the database server's, so the
//! replicas' clocks do not matter. An admission is committed
//! (`synchronous_commit = on`, which the ledger already requires) before
//! the call is sent: a PostgreSQL crash cannot forget a call that went out.
//!
//! # Failing closed
//!
//! If the database cannot be reached, a call is refused — never sent
//! outside the window: the client gets a 503 saying the shared window is
//! unavailable (the ledger, in the same database, refuses the request
//! first in most such outages). After a failed connection the next
//! second's calls are refused at once rather than each waiting for a
//! connection timeout.
//!
//! # Threads
//!
//! The `postgres` client is synchronous: a few threads of this module's
//! own each hold a connection and take jobs from a queue; the async side
//! waits on a oneshot reply, so no tokio worker ever blocks on the
//! database. A thread takes every admission queued when it is free and
//! takes their slots in one transaction — one commit, one WAL flush, for
//! all of them (the window's own group commit); a transaction that only
//! takes unlocked rows never waits on another replica's, so batches cannot
//! deadlock. Making a new slot is left to single statements.

mod pg;

use std::time::{Duration, Instant};

use jiff::Timestamp;

pub use pg::WINDOW_TABLE;

/// Why the shared window refused a call: nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowRefusal {
    /// Every slot was used in the last 60 s and none frees up within the
    /// wait.
    #[error("the shared outbound window is full")]
    Full,
    /// The database could not be asked (the text says why; it never holds
    /// the connection string).
    #[error("{0}")]
    Unavailable(String),
}

/// The window all replicas share (see the module documentation). Cheap to
/// make: nothing connects until the first call.
pub struct SharedWindow {
    pool: pg::Pool,
    /// Calls in the window when last counted, and when.
    counted: std::sync::Mutex<(usize, Option<Instant>)>,
}

/// How many connections (and threads) one gateway keeps for the window.
const CONNECTIONS: usize = 4;

/// The shortest wait before asking again when the window is full (other
/// replicas may hold the slots that are about to free up).
const MIN_RETRY: Duration = Duration::from_millis(20);

impl SharedWindow {
    /// The window in `schema` of the database at `url` (the ledger's):
    /// 60 seconds long.
    pub fn new(url: &str, schema: &str) -> Result<SharedWindow, WindowRefusal> {
        SharedWindow::with_length(url, schema, crate::upstream::WINDOW)
    }

    /// A window of `length` rather than 60 s (tests only: the gateway's is
    /// always 60 s).
    pub fn with_length(
        url: &str,
        schema: &str,
        length: Duration,
    ) -> Result<SharedWindow, WindowRefusal> {
        Ok(SharedWindow {
            pool: pg::Pool::new(url, schema, length, CONNECTIONS)?,
            counted: std::sync::Mutex::new((0, None)),
        })
    }

    /// Where the window lives, for messages (`postgres schema S, table
    /// outbound_slots`).
    pub fn place(&self) -> String {
        self.pool.place()
    }

    /// Takes a slot for one call within `budget` calls in any window,
    /// waiting at most `max_wait` for one to free up.
    pub async fn admit(&self, budget: usize, max_wait: Duration) -> Result<(), WindowRefusal> {
        self.admit_at(budget, max_wait).await.map(|_| ())
    }

    /// [`SharedWindow::admit`], answering the slot taken and the
    /// database's time of the admission (microseconds since the epoch).
    pub async fn admit_at(
        &self,
        budget: usize,
        max_wait: Duration,
    ) -> Result<(u32, i64), WindowRefusal> {
        let deadline = Instant::now() + max_wait;
        loop {
            match self.pool.admit(budget).await? {
                pg::Admission::Admitted { slot, at_micros } => return Ok((slot, at_micros)),
                pg::Admission::Full { retry_in } => {
                    let wait = retry_in.max(MIN_RETRY);
                    if Instant::now() + wait > deadline {
                        return Err(WindowRefusal::Full);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Counts the calls of the last window in the database (all
    /// replicas'), and keeps the figure for [`SharedWindow::last_count`].
    pub async fn count(&self) -> Result<usize, WindowRefusal> {
        let n = self.pool.count().await?;
        *self.counted.lock().unwrap_or_else(|e| e.into_inner()) = (n, Some(Instant::now()));
        Ok(n)
    }

    /// The figure of the last [`SharedWindow::count`] (0 before any).
    pub fn last_count(&self) -> usize {
        self.counted.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// At start: counts `made` (calls read from the ledger's last minute)
    /// into the window, but only when the window holds no call at all —
    /// otherwise the replicas have been recording their calls here and the
    /// ledger's are already in it. Answers how many were counted in.
    pub async fn seed(&self, budget: usize, made: &[Timestamp]) -> Result<usize, WindowRefusal> {
        let micros = made
            .iter()
            .map(|t| t.as_microsecond())
            .collect::<Vec<i64>>();
        self.pool.seed(budget, micros).await
    }
}

#[cfg(test)]
mod tests;
