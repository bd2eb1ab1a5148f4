//! Whether REDCap and the secrets store answer the gateway. Each request
//! that finds one not answering is refused (503) and its `response` entry
//! says so; what an operator must hear is the *change*: an `alert` entry
//! (and so the webhook and syslog, [`governance::alerts`]) when a service
//! stops answering, and another when it answers again — not one per
//! request.
//!
//! Lock story: one `Mutex` per service over when it stopped answering and
//! why; taken by a request only when a call failed, or when the service
//! is marked down (the atomic says so without the lock).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use governance::alerts;
use jiff::Timestamp;
use ledger::EntryKind;

/// A service the gateway depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Redcap,
    Store,
}

#[derive(Default)]
struct Down {
    flag: AtomicBool,
    since: Mutex<Option<(Timestamp, String, u64)>>,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Reachability {
    redcap: Down,
    store: Down,
}

impl Reachability {
    fn of(&self, s: Service) -> &Down {
        match s {
            Service::Redcap => &self.redcap,
            Service::Store => &self.store,
        }
    }

    /// A call to `service` failed with `cause`: the alert to record when
    /// it answered until now.
    pub(crate) fn failed(&self, service: Service, cause: &str) -> Option<EntryKind> {
        let d = self.of(service);
        let mut since = d.since.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, failures)) = since.as_mut() {
            *failures += 1;
            return None;
        }
        *since = Some((Timestamp::now(), cause.to_string(), 1));
        d.flag.store(true, Ordering::Release);
        let (code, what) = match service {
            Service::Redcap => (
                alerts::REDCAP_UNREACHABLE,
                "REDCap does not answer the gateway",
            ),
            Service::Store => (
                alerts::STORE_UNREACHABLE,
                "the secrets store does not answer the gateway",
            ),
        };
        Some(EntryKind::Alert {
            code: code.into(),
            message: format!(
                "{what} ({cause}): client requests are refused with 503 until it does; an alert follows when it answers again"
            ),
        })
    }

    /// A call to `service` went through: the alert to record when it had
    /// stopped answering.
    pub(crate) fn answered(&self, service: Service) -> Option<EntryKind> {
        let d = self.of(service);
        if !d.flag.load(Ordering::Acquire) {
            return None;
        }
        let (since, cause, failures) = d.since.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        d.flag.store(false, Ordering::Release);
        let (code, what) = match service {
            Service::Redcap => (alerts::REDCAP_BACK, "REDCap answers the gateway again"),
            Service::Store => (
                alerts::STORE_BACK,
                "the secrets store answers the gateway again",
            ),
        };
        Some(EntryKind::Alert {
            code: code.into(),
            message: format!(
                "{what}: it did not from {since} to {} ({cause}); {failures} request(s) were refused meanwhile",
                Timestamp::now()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: Option<EntryKind>) -> Option<String> {
        match e? {
            EntryKind::Alert { code, .. } => Some(code),
            _ => None,
        }
    }

    #[test]
    fn one_alert_when_a_service_stops_answering_and_one_when_it_is_back() {
        let r = Reachability::default();
        assert_eq!(r.answered(Service::Redcap), None);
        assert_eq!(
            code_of(r.failed(Service::Redcap, "connection refused")).as_deref(),
            Some(alerts::REDCAP_UNREACHABLE)
        );
        assert_eq!(r.failed(Service::Redcap, "connection refused"), None);
        assert_eq!(r.answered(Service::Store), None, "the store never failed");
        let Some(EntryKind::Alert { code, message }) = r.answered(Service::Redcap) else {
            panic!("an alert when REDCap is back");
        };
        assert_eq!(code, alerts::REDCAP_BACK);
        assert!(message.contains("2 request(s)"), "{message}");
        assert_eq!(r.answered(Service::Redcap), None);
        assert_eq!(
            code_of(r.failed(Service::Store, "sealed")).as_deref(),
            Some(alerts::STORE_UNREACHABLE)
        );
    }
}
