//! Alerts beyond the ledger: a webhook and syslog (`[alerts]`).
//!
//! Every alert is first of all a ledger entry. The two places that append
//! entries — a command's [`crate::audit::AuditTrail`] over the ledger it
//! holds, and the gateway's ledger link (which also takes the entries
//! other commands hand it) — pass each entry they append through
//! [`alert_of`], and hand what it says is an alert to one [`Alerts`]: an
//! `alert` entry, a lapse (a `reauth` entry with action `lapse`), a
//! quarantine (an `admin` entry with action `quarantine`), a failed
//! rotation. What the ledger cannot take — it failed, and the gateway
//! refuses requests — is raised on [`Alerts`] directly, marked as not in
//! the ledger: the one alert that matters most must not depend on the
//! ledger.
//!
//! [`Alerts`] never holds up its caller. Alerts go into a bounded queue;
//! one thread of its own sends each to syslog at once and POSTs it to the
//! webhook with a timeout and retries (1, 2, 4 … s apart), so a slow or
//! dead receiver never delays a request. An alert the same as one sent in
//! the last minute (code and message) is not sent again. A short-lived
//! command waits for its alerts to go out when it closes its trail
//! ([`Alerts::flush`]). Every message passes the log redactor
//! ([`redcap::redact`]): a run of 32 or 64 hex characters never leaves
//! as it was.

mod syslog;
#[cfg(test)]
mod tests;
mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ledger::{EntryKind, ReauthAction};
use secrets::SecretStore;
use serde::Serialize;
use warden_config::{AlertsSection, LoadedConfig};
use zeroize::Zeroizing;

pub use warden_config::Severity;

/// How many alerts may wait to be sent; past that, new ones are dropped
/// (and said so on stderr) rather than held in memory without bound.
const QUEUE: usize = 1024;
/// How long an alert identical to one just sent is not sent again.
const REPEAT_AFTER: Duration = Duration::from_secs(60);
/// The longest a command waits at its end for its alerts to go out.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(15);

/// One alert, as sent to the webhook (JSON) and syslog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Always `redcap-warden`: the receiver's routing key.
    pub source: &'static str,
    /// The host that raised it.
    pub host: String,
    /// When it was raised (UTC).
    pub time: Timestamp,
    /// How serious it is.
    pub severity: Severity,
    /// A stable dotted code to filter on (the `alert` entry's code).
    pub code: String,
    /// What happened and what to do, for people (redacted).
    pub message: String,
    /// `recorded` when the ledger holds it, else `not recorded: <why>`.
    pub ledger: String,
}

/// What an appended entry says that must be raised: its code, severity
/// and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// The code.
    pub code: String,
    /// How serious it is.
    pub severity: Severity,
    /// For people.
    pub message: String,
}

impl Raised {
    /// An alert with `code`'s severity ([`severity_of`]).
    pub fn new(code: &str, message: impl Into<String>) -> Raised {
        Raised {
            code: code.to_string(),
            severity: severity_of(code),
            message: message.into(),
        }
    }
}

/// The alert an entry raises, if it raises one.
pub fn alert_of(kind: &EntryKind) -> Option<Raised> {
    match kind {
        EntryKind::Alert { code, message } => Some(Raised::new(code, message.clone())),
        EntryKind::Reauth {
            account,
            reason,
            action: Some(ReauthAction::Lapse),
            ..
        } => Some(Raised::new(
            LAPSED,
            format!(
                "service account `{account}` lapsed and is refused by the gateway and REDCap until it is re-authorised: {reason}"
            ),
        )),
        EntryKind::Admin {
            operator,
            action,
            target,
            reason,
        } if action == "quarantine" => Some(Raised::new(
            QUARANTINED,
            format!("{target} was quarantined by {operator}: {reason}"),
        )),
        EntryKind::Rotation {
            rotation_id,
            account,
            to,
            detail,
            ..
        } if to == "failed" => Some(Raised::new(
            ROTATION_FAILED,
            format!(
                "rotation {rotation_id} of account `{account}` failed: {detail}; see `redcap-warden rotate status`"
            ),
        )),
        _ => None,
    }
}

/// The code of a lapse's alert.
pub const LAPSED: &str = "reauth.lapsed";
/// The code of a quarantine's alert (the command's; the gateway's DAG
/// guard raises `dag_guard`).
pub const QUARANTINED: &str = "account.quarantined";
/// The code of a failed rotation's alert.
pub const ROTATION_FAILED: &str = "rotation.failed";
/// The code of an overdue rotation's alert (`serve`'s daily sweep).
pub const ROTATION_OVERDUE: &str = "rotation.overdue";
/// The code of the ledger failing under the gateway (fail closed).
pub const LEDGER_FAILED: &str = "ledger.failed";
/// The code of REDCap not answering the gateway.
pub const REDCAP_UNREACHABLE: &str = "redcap.unreachable";
/// The code of REDCap answering again.
pub const REDCAP_BACK: &str = "redcap.reachable";
/// The code of the secrets store not answering the gateway.
pub const STORE_UNREACHABLE: &str = "secrets.unreachable";
/// The code of the secrets store answering again.
pub const STORE_BACK: &str = "secrets.reachable";
/// The code of a host clock not synchronised (or not known to be).
pub const CLOCK_UNSYNCHRONISED: &str = "clock.unsynchronised";
/// The code of rights check's critical findings.
pub const RIGHTS_CRITICAL: &str = "rights.critical";

/// How serious an alert of `code` is. Codes not named are warnings.
pub fn severity_of(code: &str) -> Severity {
    match code {
        // A token may be in the wrong hands, or the audit trail is failing.
        "dag_guard"
        | "real_token_presented"
        | "reconcile.findings"
        | "token_refused"
        | "redcap_ip_banned"
        | "ledger_unavailable"
        | ledger::WITNESS_FAILED
        | QUARANTINED
        | RIGHTS_CRITICAL
        | LEDGER_FAILED
        | REDCAP_UNREACHABLE
        | STORE_UNREACHABLE => Severity::Critical,
        REDCAP_BACK | STORE_BACK => Severity::Info,
        _ => Severity::Warning,
    }
}

/// Where alerts go besides the ledger; cheap to clone (one queue and one
/// sending thread per process). [`Alerts::off`] sends nothing.
#[derive(Clone, Default)]
pub struct Alerts {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    min: Severity,
    host: String,
    queue: tokio::sync::mpsc::Sender<Alert>,
    /// Alerts queued or being sent: [`Alerts::flush`] waits for 0.
    /// Lock story: incremented by [`Alerts::raise`] (any thread),
    /// decremented by the sending thread when an alert is done.
    busy: Arc<(Mutex<usize>, Condvar)>,
    /// When each (code, message) was last queued, for [`REPEAT_AFTER`].
    /// Lock story: read and written by [`Alerts::raise`] only.
    recent: Mutex<HashMap<(String, String), Instant>>,
}

/// Where the sending thread sends.
struct Targets {
    webhook: Option<webhook::Webhook>,
    syslog: Option<syslog::Syslog>,
}

impl Alerts {
    /// Sends nothing anywhere (no `[alerts]` targets).
    pub fn off() -> Alerts {
        Alerts { inner: None }
    }

    /// What `[alerts]` asks for, with the webhook's secret read from
    /// `store`. A secret that cannot be read does not stop anything: the
    /// alerts go without it (the receiver may refuse them), and stderr and
    /// the alerts themselves say why.
    pub async fn from_config(config: &LoadedConfig, store: &dyn SecretStore) -> Alerts {
        let section = &config.config.alerts;
        let mut unreadable = None;
        let secret = match &section.webhook_secret {
            Some(name) if section.webhook.is_some() => {
                match store
                    .get(name, &secrets::Selector::Label(secrets::Label::Current))
                    .await
                {
                    Ok(s) => Some(Zeroizing::new(s.value.expose().to_string())),
                    Err(e) => {
                        unreadable = Some(format!(
                            "the alert webhook's secret `{name}` cannot be read from the secrets store ({e}); alerts are POSTed without it"
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        let alerts = Alerts::start(section, secret);
        if let Some(why) = unreadable {
            eprintln!("redcap-warden: {why}");
            alerts.raise(
                Raised::new("alerts.webhook_secret", why),
                Some("raised while opening the ledger"),
            );
        }
        alerts
    }

    /// Starts the sending thread for `section`'s targets (none: off).
    pub fn start(section: &AlertsSection, webhook_secret: Option<Zeroizing<String>>) -> Alerts {
        let webhook = section.webhook.as_ref().map(|url| {
            webhook::Webhook::new(
                url,
                webhook_secret.map(|v| (section.webhook_header.clone(), v)),
                section.webhook_timeout,
                section.webhook_retries,
            )
        });
        let syslog = section.syslog.clone().map(syslog::Syslog::new);
        if webhook.is_none() && syslog.is_none() {
            return Alerts::off();
        }
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        let busy = Arc::new((Mutex::new(0usize), Condvar::new()));
        let targets = Targets { webhook, syslog };
        let done = busy.clone();
        let spawned = std::thread::Builder::new()
            .name("redcap-warden-alerts".into())
            .spawn(move || send_all(rx, targets, done));
        if let Err(e) = spawned {
            eprintln!("redcap-warden: alerts go to the ledger only: no thread to send them ({e})");
            return Alerts::off();
        }
        Alerts {
            inner: Some(Arc::new(Inner {
                min: section.min_severity,
                host: host_name(),
                queue,
                busy,
                recent: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// Whether anything is sent anywhere.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `raised` for the webhook and syslog, unless it is below
    /// `min_severity` or the same alert went out in the last minute.
    /// `not_recorded` says why the ledger does not hold it (`None`: it
    /// does). Never blocks.
    pub fn raise(&self, raised: Raised, not_recorded: Option<&str>) {
        let Some(inner) = &self.inner else {
            return;
        };
        if raised.severity < inner.min {
            return;
        }
        let message =
            redcap::redact::redact(&raised.message, &redcap::redact::Placeholder).into_owned();
        {
            let mut recent = inner.recent.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            recent.retain(|_, at| now.duration_since(*at) < REPEAT_AFTER);
            let key = (raised.code.clone(), message.clone());
            if recent.contains_key(&key) {
                return;
            }
            recent.insert(key, now);
        }
        let alert = Alert {
            source: "redcap-warden",
            host: inner.host.clone(),
            time: Timestamp::now(),
            severity: raised.severity,
            code: raised.code,
            message,
            ledger: match not_recorded {
                None => "recorded".into(),
                Some(why) => format!(
                    "not recorded: {}",
                    redcap::redact::redact(why, &redcap::redact::Placeholder)
                ),
            },
        };
        *inner.busy.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if let Err(e) = inner.queue.try_send(alert) {
            finished(&inner.busy);
            let dropped = match e {
                tokio::sync::mpsc::error::TrySendError::Full(a)
                | tokio::sync::mpsc::error::TrySendError::Closed(a) => a,
            };
            eprintln!(
                "redcap-warden: alert {} not sent to the webhook or syslog (its queue is full or closed): {}",
                dropped.code, dropped.message
            );
        }
    }

    /// Waits until every alert raised so far was sent (or given up on),
    /// at most `limit`. Returns whether all went.
    pub fn flush(&self, limit: Duration) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let deadline = Instant::now() + limit;
        let (lock, cv) = &*inner.busy;
        let mut busy = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = cv
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

fn finished(busy: &(Mutex<usize>, Condvar)) {
    let mut n = busy.0.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(1);
    busy.1.notify_all();
}

/// The sending thread: syslog at once, the webhook in a task per alert
/// (so one slow POST does not hold up the next alert).
fn send_all(
    mut rx: tokio::sync::mpsc::Receiver<Alert>,
    targets: Targets,
    busy: Arc<(Mutex<usize>, Condvar)>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redcap-warden: alerts go to the ledger only: {e}");
            return;
        }
    };
    let targets = Arc::new(targets);
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(alert) = rx.recv().await {
            if let Some(s) = &targets.syslog
                && let Err(e) = s.send(&alert)
            {
                eprintln!(
                    "redcap-warden: alert {} not sent to syslog ({}): {e}",
                    alert.code,
                    s.describe()
                );
            }
            let targets = targets.clone();
            let busy = busy.clone();
            tasks.spawn(async move {
                if let Some(w) = &targets.webhook
                    && let Err(e) = w.post(&alert).await
                {
                    eprintln!(
                        "redcap-warden: alert {} not delivered to the webhook: {e}",
                        alert.code
                    );
                }
                finished(&busy);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// This host's name, as syslog wants it (printable ASCII, no spaces).
fn host_name() -> String {
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// A witness whose failures (and recovery) are also sent as alerts: the
/// ledger writer records a failing witness itself (`ledger.witness`), out
/// of the two places alerts are otherwise raised, so the witnesses it is
/// given are wrapped in this ([`crate::audit::open_writer_with`]).
pub(crate) struct AlertingWitness {
    inner: Arc<dyn ledger::Witness>,
    alerts: Alerts,
    failing: std::sync::atomic::AtomicBool,
}

impl AlertingWitness {
    pub(crate) fn wrap(
        inner: Arc<dyn ledger::Witness>,
        alerts: &Alerts,
    ) -> Arc<dyn ledger::Witness> {
        if !alerts.is_on() {
            return inner;
        }
        Arc::new(AlertingWitness {
            inner,
            alerts: alerts.clone(),
            failing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn noted(&self, outcome: Result<(), &str>, doing: &str) {
        use std::sync::atomic::Ordering;
        match outcome {
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    self.alerts.raise(
                        Raised::new(
                            ledger::WITNESS_FAILED,
                            format!(
                                "the latest checkpoint cannot be {doing} {}: {e}; the writer retries with each checkpoint",
                                self.inner.describe()
                            ),
                        ),
                        None,
                    );
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    self.alerts.raise(
                        Raised {
                            code: ledger::WITNESS_FAILED.into(),
                            severity: Severity::Info,
                            message: format!(
                                "the latest checkpoint is kept in {} again",
                                self.inner.describe()
                            ),
                        },
                        None,
                    );
                }
            }
        }
    }
}

impl ledger::Witness for AlertingWitness {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn read(&self) -> Result<Option<String>, String> {
        let r = self.inner.read();
        if let Err(e) = &r {
            self.noted(Err(e), "read from");
        }
        r
    }

    fn write(&self, note: &str) -> Result<(), String> {
        let r = self.inner.write(note);
        self.noted(r.as_ref().map(|_| ()).map_err(String::as_str), "kept in");
        r
    }

    fn min_interval(&self) -> Duration {
        self.inner.min_interval()
    }
}

/// The alert of a file ledger that recovered from a torn write on open
/// (the writer records `ledger.recovered` itself).
pub(crate) fn recovered(r: &ledger::Recovery) -> Raised {
    Raised::new(
        "ledger.recovered",
        format!(
            "the ledger recovered from an incomplete write at its end (a crash or power cut) when it was opened: {} byte(s) from seq {} set aside ({}); no acknowledged entry is lost; see the `ledger.recovered` entry",
            r.moved_bytes, r.from_seq, r.reason
        ),
    )
}
