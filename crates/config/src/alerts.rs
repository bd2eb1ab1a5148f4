//! `[alerts]`: where alerts go besides the ledger — a webhook (a JSON
//! `POST`) and syslog (RFC 5424, on the local `/dev/log` or to a UDP
//! collector) — and the least severity sent there. The ledger takes every
//! alert whatever this says; without the section, the ledger is the only
//! place alerts go.
//!
//! No secret is in this file: a header the webhook's receiver checks is
//! read from the secrets store (`webhook_secret` names it).

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use ::secrets::SecretName;
use serde::Deserialize;
use toml::de::DeTable;

use crate::Problem;
use crate::schema::{str_at, table_at};

/// How serious an alert is: what `min_severity` compares, and syslog's
/// severity (critical 2, warning 4, info 6).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to do now (a service back after an outage).
    Info,
    /// Someone should look soon (an overdue rotation, a lapse).
    Warning,
    /// Someone should look now (a token used outside the gateway, a
    /// quarantine, the ledger failing).
    Critical,
}

impl Severity {
    /// The word in the file and in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A local datagram socket (`"local"` is `/dev/log`; a path names
    /// another).
    Local(PathBuf),
    /// A collector over UDP (`"udp://host:port"`).
    Udp(String),
}

impl SyslogTarget {
    /// `"local"`, an absolute socket path, or `"udp://host:port"`.
    pub fn parse(raw: &str) -> Result<SyslogTarget, String> {
        if raw == "local" {
            return Ok(SyslogTarget::Local(PathBuf::from("/dev/log")));
        }
        if raw.starts_with('/') {
            return Ok(SyslogTarget::Local(PathBuf::from(raw)));
        }
        if let Some(rest) = raw.strip_prefix("udp://") {
            let port_ok = rest
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if port_ok {
                return Ok(SyslogTarget::Udp(rest.to_string()));
            }
        }
        Err(format!(
            "`{raw}` is not a syslog target (\"local\", a socket path, or \"udp://host:port\")"
        ))
    }
}

impl<'de> Deserialize<'de> for SyslogTarget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SyslogTarget, D::Error> {
        SyslogTarget::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// The address each alert is POSTed to as JSON (http:// or https://).
    pub webhook: Option<String>,
    /// The secret (in the secrets store) whose value is sent in
    /// `webhook_header`, for the receiver to tell our alerts from others.
    pub webhook_secret: Option<SecretName>,
    /// The header carrying `webhook_secret`'s value.
    #[serde(default = "default_header")]
    pub webhook_header: String,
    /// How long one POST may take (`webhook_timeout_seconds`).
    #[serde(
        rename = "webhook_timeout_seconds",
        default = "default_timeout",
        deserialize_with = "crate::units::seconds"
    )]
    pub webhook_timeout: Duration,
    /// How many times a failed POST is tried again, waiting 1, 2, 4 … s.
    #[serde(default = "default_retries")]
    pub webhook_retries: u32,
    /// Where syslog messages go, if anywhere.
    pub syslog: Option<SyslogTarget>,
    /// Alerts below this severity go to the ledger only.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            webhook: None,
            webhook_secret: None,
            webhook_header: default_header(),
            webhook_timeout: default_timeout(),
            webhook_retries: default_retries(),
            syslog: None,
            min_severity: default_min_severity(),
        }
    }
}

/// The header `webhook_secret` is sent in unless `webhook_header` says.
pub const DEFAULT_WEBHOOK_HEADER: &str = "X-Redcap-Warden-Secret";

fn default_header() -> String {
    DEFAULT_WEBHOOK_HEADER.to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    3
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

/// What the kinds of values alone cannot say: the webhook is an http(s)
/// address, the secret a valid name, the header a header name, the syslog
/// target one of its forms, and a secret or header only with a webhook.
pub(crate) fn validate(doc: &DeTable<'_>, text: &str, problems: &mut Vec<Problem>) {
    let Some(alerts) = table_at(doc, "alerts") else {
        return;
    };
    let mut push = |span: Range<usize>, field: &str, message: String, fix: &str| {
        problems.push(Problem::at_offset(
            text,
            span.start,
            Some(format!("alerts.{field}")),
            message,
            fix.to_string(),
        ));
    };
    let webhook = str_at(alerts, "webhook");
    if let Some((url, span)) = webhook.clone()
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        push(
            span,
            "webhook",
            format!("`{url}` is not an http:// or https:// address"),
            "write the address to POST alerts to, e.g. webhook = \"https://alerts.example.org/hooks/redcap-warden\"",
        );
    }
    if let Some((name, span)) = str_at(alerts, "webhook_secret") {
        if let Err(e) = SecretName::new(name) {
            push(
                span.clone(),
                "webhook_secret",
                e,
                "use lower-case letters, digits and - _ . /, e.g. \"alerts/webhook\"",
            );
        }
        if webhook.is_none() {
            push(
                span,
                "webhook_secret",
                "webhook_secret is set but there is no webhook to send it to".into(),
                "add webhook = \"https://…\", or remove webhook_secret",
            );
        }
    }
    if let Some((header, span)) = str_at(alerts, "webhook_header")
        && (header.is_empty()
            || !header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        push(
            span,
            "webhook_header",
            format!("`{header}` is not an HTTP header name"),
            "use letters, digits and -, e.g. webhook_header = \"X-Redcap-Warden-Secret\"",
        );
    }
    if let Some((raw, span)) = str_at(alerts, "syslog")
        && let Err(e) = SyslogTarget::parse(raw)
    {
        push(
            span,
            "syslog",
            e,
            "write syslog = \"local\" (/dev/log), a socket path, or \"udp://syslog.example.org:514\"",
        );
    }
}
