//! Counters for the admin listener's `/metrics` (Prometheus text format),
//! and the last hour of them per minute for the dashboard's charts.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Minutes kept for the dashboard.
const MINUTES_KEPT: usize = 60;

/// One minute's counts: requests answered, refused, and their latency.
#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    /// Unix minute.
    at: i64,
    requests: u64,
    denied: u64,
    latency_micros: u64,
}

#[derive(Default)]
pub struct Metrics {
    by_status: Mutex<BTreeMap<u16, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    denied: AtomicU64,
    /// The last [`MINUTES_KEPT`] minutes with traffic, oldest first.
    /// Lock story: written by every answer and refusal (a push or an
    /// add), read by the dashboard; held for no more than that.
    minutes: Mutex<VecDeque<Minute>>,
}

/// The current Unix minute.
fn this_minute() -> i64 {
    jiff::Timestamp::now().as_second().div_euclid(60)
}

impl Metrics {
    /// Adds to the current minute's counts.
    fn in_minute(&self, f: impl FnOnce(&mut Minute)) {
        let now = this_minute();
        let mut minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        if minutes.back().is_none_or(|m| m.at != now) {
            if minutes.len() == MINUTES_KEPT {
                minutes.pop_front();
            }
            minutes.push_back(Minute {
                at: now,
                ..Minute::default()
            });
        }
        if let Some(m) = minutes.back_mut() {
            f(m);
        }
    }

    /// The last hour per minute, oldest first, minutes without traffic
    /// as zeros (from the first minute with traffic).
    pub fn per_minute(&self) -> Vec<governance::report::LiveMinute> {
        let now = this_minute();
        let minutes = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let from = (now - MINUTES_KEPT as i64 + 1).max(minutes.front().map_or(now, |m| m.at));
        (from..=now)
            .map(|at| {
                let m = minutes
                    .iter()
                    .find(|m| m.at == at)
                    .copied()
                    .unwrap_or_default();
                governance::report::LiveMinute {
                    at: jiff::Timestamp::from_second(at * 60)
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    requests: m.requests,
                    denied: m.denied,
                    mean_latency_ms: if m.requests == 0 {
                        0.0
                    } else {
                        m.latency_micros as f64 / m.requests as f64 / 1000.0
                    },
                }
            })
            .collect()
    }

    /// Requests answered since start.
    pub fn answered(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Requests refused by the gateway's own checks since start.
    pub fn denied_total(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    pub fn observe(&self, status: u16, latency: Duration) {
        self.in_minute(|m| {
            m.requests += 1;
            m.latency_micros += latency.as_micros() as u64;
        });
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        let secs = latency.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn denied(&self) {
        self.in_minute(|m| m.denied += 1);
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the gauges the caller measures now.
    pub fn render(&self, gauges: &[(&str, &str, f64)], token_ages: &[(String, f64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP warden_requests_total Requests answered, by HTTP status."
        );
        let _ = writeln!(out, "# TYPE warden_requests_total counter");
        for (status, n) in self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "warden_requests_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP warden_request_duration_seconds Time from request to answer."
        );
        let _ = writeln!(out, "# TYPE warden_request_duration_seconds histogram");
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "warden_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "warden_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "warden_request_duration_seconds_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "warden_request_duration_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP warden_denied_total Requests refused by the gateway's own checks."
        );
        let _ = writeln!(out, "# TYPE warden_denied_total counter");
        let _ = writeln!(
            out,
            "warden_denied_total {}",
            self.denied.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP warden_token_age_seconds Age of each account's current REDCap token."
        );
        let _ = writeln!(out, "# TYPE warden_token_age_seconds gauge");
        for (account, age) in token_ages {
            let _ = writeln!(
                out,
                "warden_token_age_seconds{{account=\"{account}\"}} {age}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.observe(200, Duration::from_millis(3));
        m.observe(200, Duration::from_millis(30));
        m.observe(403, Duration::from_micros(500));
        m.denied();
        let text = m.render(
            &[("warden_ledger_entries", "Entries.", 7.0)],
            &[("site-a".into(), 86400.0)],
        );
        assert!(text.contains("warden_requests_total{status=\"200\"} 2"));
        assert!(text.contains("warden_requests_total{status=\"403\"} 1"));
        assert!(text.contains("warden_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("warden_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("warden_denied_total 1"));
        assert!(text.contains("warden_ledger_entries 7"));
        assert!(text.contains("warden_token_age_seconds{account=\"site-a\"} 86400"));
        let minutes = m.per_minute();
        let total: u64 = minutes.iter().map(|m| m.requests).sum();
        let denied: u64 = minutes.iter().map(|m| m.denied).sum();
        assert_eq!((total, denied), (3, 1), "the minutes hold what was counted");
    }
}
