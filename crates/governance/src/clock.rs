//! The time governance stamps on what it keeps (a secret version's `at`,
//! a quarantine's `since`). It is handed in rather than read where it is
//! used, as the gateway's key file takes `now`, so a test can fix it.
//! The ledger stamps its own entries.

use jiff::Timestamp;

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    /// The current time (UTC).
    fn now(&self) -> Timestamp;
}

/// The system clock, for everything but tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Any `Fn() -> Timestamp` is a clock (a test's fixed time).
impl<F: Fn() -> Timestamp + Send + Sync> Clock for F {
    fn now(&self) -> Timestamp {
        self()
    }
}

/// The clock commands and the gateway take their dates from: the system's.
/// Builds with the test-only `test-clock` feature (the CLI's tests) read a
/// fixed time from `REDCAP_WARDEN_TEST_NOW` (RFC 3339) when it is set, so a
/// test can let months pass without waiting; release builds never do.
pub fn configured() -> std::sync::Arc<dyn Clock> {
    #[cfg(feature = "test-clock")]
    if let Some(at) = std::env::var("REDCAP_WARDEN_TEST_NOW")
        .ok()
        .and_then(|s| s.parse::<Timestamp>().ok())
    {
        return std::sync::Arc::new(move || at);
    }
    std::sync::Arc::new(SystemClock)
}
