//! Numbers of `warden.toml` that are spans of time (`*_seconds`,
//! `*_days`), raised into durations as they are read, so no consumer
//! multiplies seconds or days again. The walk (`schema`) has already
//! checked each number's range; these only change its unit.

use std::time::Duration;

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer};

/// A whole number of seconds.
pub(crate) fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// A whole number of days (of 24 hours: key lifetimes are not calendar
/// days).
pub(crate) fn days<'de, D: Deserializer<'de>>(d: D) -> Result<SignedDuration, D::Error> {
    u32::deserialize(d).map(from_days)
}

pub(crate) fn from_days(days: u32) -> SignedDuration {
    SignedDuration::from_hours(24 * i64::from(days))
}
