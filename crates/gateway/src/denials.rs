//! Refused attempts, counted per source, client and reason within each
//! minute, so a flood of bad keys becomes a handful of `denied` entries
//! instead of a flood of ledger writes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ledger::EntryKind;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    minute: i64,
    source: String,
    client: Option<String>,
    reason: String,
}

#[derive(Default)]
pub struct Denials {
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl Denials {
    pub fn count(&self, now: jiff::Timestamp, source: &str, client: Option<&str>, reason: &str) {
        let key = Key {
            minute: now.as_second().div_euclid(60),
            source: source.to_string(),
            client: client.map(str::to_string),
            reason: reason.to_string(),
        };
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    /// The entries for every minute before `now`'s (all of them when
    /// `everything`, at shutdown), removed from the counter.
    pub fn drain(&self, now: jiff::Timestamp, everything: bool) -> Vec<EntryKind> {
        let current = now.as_second().div_euclid(60);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let keys: Vec<Key> = counts
            .keys()
            .filter(|k| everything || k.minute < current)
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let count = counts.remove(&k).unwrap_or_default();
                EntryKind::Denied {
                    source: k.source,
                    client: k.client,
                    reason: k.reason,
                    count,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_aggregated_per_minute() {
        let d = Denials::default();
        let t: jiff::Timestamp = "2026-11-28T10:00:05Z".parse().unwrap();
        for _ in 0..50 {
            d.count(t, "10.0.0.9", None, "unknown key");
        }
        d.count(t, "10.0.0.9", Some("etl"), "not allowed: record:import");
        assert!(
            d.drain(t, false).is_empty(),
            "the current minute is still open"
        );
        let later: jiff::Timestamp = "2026-11-28T10:01:00Z".parse().unwrap();
        let entries = d.drain(later, false);
        assert_eq!(entries.len(), 2);
        assert!(entries.contains(&EntryKind::Denied {
            source: "10.0.0.9".into(),
            client: None,
            reason: "unknown key".into(),
            count: 50
        }));
        assert!(d.drain(later, true).is_empty());
    }
}
