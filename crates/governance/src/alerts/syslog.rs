//! Syslog, RFC 5424: one datagram per alert, to the local `/dev/log` (or
//! another socket path) or a UDP collector.
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG`: facility
//! authpriv (10, security messages), severity 2 (critical), 4 (warning)
//! or 6 (info); MSGID is the alert's code; no structured data; the message
//! says the severity, the code, the text, and whether the ledger holds it.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;

use warden_config::{Severity, SyslogTarget};

use super::Alert;

/// authpriv: "security/authorization messages" (RFC 5424 §6.2.1).
const FACILITY: u8 = 10;
/// A datagram a collector takes without fragmenting (RFC 5426 asks
/// receivers for at least 480, recommends 2048).
const MAX_BYTES: usize = 2048;

pub(super) struct Syslog {
    target: SyslogTarget,
}

impl Syslog {
    pub(super) fn new(target: SyslogTarget) -> Syslog {
        Syslog { target }
    }

    pub(super) fn describe(&self) -> String {
        match &self.target {
            SyslogTarget::Local(p) => p.display().to_string(),
            SyslogTarget::Udp(a) => format!("udp://{a}"),
        }
    }

    /// Sends one datagram (never waits for an answer: syslog has none).
    pub(super) fn send(&self, alert: &Alert) -> std::io::Result<()> {
        let line = format_message(alert, std::process::id());
        match &self.target {
            SyslogTarget::Local(path) => {
                UnixDatagram::unbound()?.send_to(line.as_bytes(), path)?;
            }
            SyslogTarget::Udp(addr) => {
                let any = if addr.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                UdpSocket::bind(any)?.send_to(line.as_bytes(), addr.as_str())?;
            }
        }
        Ok(())
    }
}

/// The RFC 5424 message of `alert`, cut to [`MAX_BYTES`] on a character
/// boundary.
pub(super) fn format_message(alert: &Alert, pid: u32) -> String {
    let severity = match alert.severity {
        Severity::Critical => 2,
        Severity::Warning => 4,
        Severity::Info => 6,
    };
    let pri = u16::from(FACILITY) * 8 + severity;
    let time = alert.time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let msgid: String = alert
        .code
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let msgid = if msgid.is_empty() { "-".into() } else { msgid };
    let mut line = format!(
        "<{pri}>1 {time} {host} redcap-warden {pid} {msgid} - \u{feff}{sev} {code}: {message} (ledger: {ledger})",
        host = alert.host,
        sev = alert.severity,
        code = alert.code,
        message = alert.message,
        ledger = alert.ledger,
    );
    if line.len() > MAX_BYTES {
        let mut cut = MAX_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}
