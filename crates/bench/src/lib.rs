//! Helpers shared by the benchmark binaries: argument parsing small enough
//! not to need a parser crate, and percentiles over measured latencies.
//!
//! The binaries are driven by `bench/gateway.sh`; nothing here runs in the
//! test suite, and no test asserts a timing.

#![warn(missing_docs)]

use std::time::Duration;

/// The value after `--name` in `args`, if given.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The `p`-th percentile (0–100) of sorted samples, nearest-rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&s, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&s[..1], 50.0), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn flags_take_the_next_argument() {
        let a: Vec<String> = ["x", "--listen", "127.0.0.1:0", "--count"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag(&a, "--listen").as_deref(), Some("127.0.0.1:0"));
        assert_eq!(flag(&a, "--count"), None);
        assert_eq!(flag(&a, "--body"), None);
    }
}
