//! Counters for the admin listener's `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    by_status: Mutex<BTreeMap<u16, u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    denied: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, status: u16, latency: Duration) {
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
    }
}
