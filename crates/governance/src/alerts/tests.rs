use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use ledger::{EntryKind, ReauthAction};
use warden_config::{AlertsSection, Severity, SyslogTarget};
use zeroize::Zeroizing;

use super::*;

/// One POST: its headers and JSON body.
type Posted = (Vec<(String, String)>, serde_json::Value);

/// A webhook receiver on a loopback port: answers each POST with the next
/// status of `statuses` (then 200), and hands over each request's headers
/// (lower-cased names) and JSON body.
fn receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Posted>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut length = 0;
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap();
                }
                headers.push((k, v));
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = statuses.next().unwrap_or(200);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tx.send((headers, serde_json::from_slice(&body).unwrap()));
        }
    });
    (url, rx)
}

fn section(webhook: Option<String>, syslog: Option<SyslogTarget>) -> AlertsSection {
    AlertsSection {
        webhook,
        syslog,
        webhook_retries: 2,
        webhook_timeout: Duration::from_secs(5),
        ..AlertsSection::default()
    }
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn an_alert_reaches_the_webhook_with_its_secret_header_and_syslog_over_udp() {
    let (url, posts) = receiver(vec![]);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    let target = SyslogTarget::Udp(udp.local_addr().unwrap().to_string());
    let alerts = Alerts::start(
        &section(Some(url), Some(target)),
        Some(Zeroizing::new("hook-secret-value".into())),
    );
    alerts.raise(
        Raised::new(
            "dag_guard",
            "account `heart-a` is not restricted to its DAG",
        ),
        None,
    );
    assert!(alerts.flush(WAIT));
    let (headers, body) = posts.recv_timeout(WAIT).unwrap();
    assert_eq!(body["source"], "redcap-warden");
    assert_eq!(body["code"], "dag_guard");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["ledger"], "recorded");
    assert!(body["message"].as_str().unwrap().contains("heart-a"));
    assert!(body["time"].as_str().unwrap().ends_with('Z'));
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-redcap-warden-secret" && v == "hook-secret-value"),
        "{headers:?}"
    );
    let mut buf = [0; 4096];
    let n = udp.recv(&mut buf).unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    // authpriv (10) * 8 + critical (2)
    assert!(line.starts_with("<82>1 "), "{line}");
    let fields: Vec<&str> = line.splitn(8, ' ').collect();
    assert_eq!(fields[3], "redcap-warden", "{line}");
    assert_eq!(fields[4], std::process::id().to_string());
    assert_eq!(fields[5], "dag_guard");
    assert_eq!(fields[6], "-");
    assert!(
        fields[7].starts_with("\u{feff}critical dag_guard: account `heart-a`"),
        "{line}"
    );
    assert!(fields[1].parse::<jiff::Timestamp>().is_ok(), "{line}");
}

#[test]
fn a_failing_webhook_is_tried_again_and_a_local_socket_gets_syslog() {
    let (url, posts) = receiver(vec![500, 503]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let alerts = Alerts::start(&section(Some(url), Some(SyslogTarget::Local(path))), None);
    alerts.raise(
        Raised::new(LEDGER_FAILED, "the ledger failed"),
        Some("disk full"),
    );
    assert!(alerts.flush(WAIT));
    let mut got = Vec::new();
    while let Ok((headers, body)) = posts.recv_timeout(Duration::from_millis(200)) {
        assert!(!headers.iter().any(|(k, _)| k == "x-redcap-warden-secret"));
        got.push(body);
    }
    assert_eq!(got.len(), 3, "two failures, then delivered: {got:?}");
    assert_eq!(got[2]["ledger"], "not recorded: disk full");
    let mut buf = [0; 4096];
    let n = sock.recv(&mut buf).unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        line.contains("ledger.failed: the ledger failed (ledger: not recorded: disk full)"),
        "{line}"
    );
}

#[test]
fn a_token_in_a_message_never_leaves_and_low_or_repeated_alerts_are_not_sent() {
    let canary = canary_like();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut s = section(
        None,
        Some(SyslogTarget::Udp(udp.local_addr().unwrap().to_string())),
    );
    s.min_severity = Severity::Warning;
    let alerts = Alerts::start(&s, None);
    alerts.raise(Raised::new(REDCAP_BACK, "REDCap answers again"), None);
    alerts.raise(
        Raised::new("token_refused", format!("REDCap refused {canary}")),
        Some(&format!("because {canary}")),
    );
    alerts.raise(
        Raised::new("token_refused", format!("REDCap refused {canary}")),
        None,
    );
    assert!(alerts.flush(WAIT));
    let mut buf = [0; 4096];
    let n = udp.recv(&mut buf).unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap().to_string();
    assert!(line.contains("token_refused"), "{line}");
    assert!(!line.contains(&canary), "{line}");
    assert!(line.contains("[token]"), "{line}");
    assert!(
        udp.recv(&mut buf).is_err(),
        "the info alert and the repeat are not sent"
    );
}

/// A token-shaped value (32 upper-case hex) made at run time.
fn canary_like() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    hex::encode_upper(b)
}

#[test]
fn off_sends_nothing_and_flushes_at_once() {
    let alerts = Alerts::start(&AlertsSection::default(), None);
    assert!(!alerts.is_on());
    alerts.raise(Raised::new("dag_guard", "x"), None);
    assert!(alerts.flush(Duration::ZERO));
}

#[test]
fn which_entries_raise_alerts() {
    let alert = alert_of(&EntryKind::Alert {
        code: "reconcile.findings".into(),
        message: "m".into(),
    })
    .unwrap();
    assert_eq!(alert.severity, Severity::Critical);
    let lapse = alert_of(&EntryKind::Reauth {
        operator: "ana".into(),
        account: "heart-a".into(),
        until: None,
        reason: "idle 40 days".into(),
        action: Some(ReauthAction::Lapse),
        approval: None,
    })
    .unwrap();
    assert_eq!(lapse.code, LAPSED);
    assert!(lapse.message.contains("heart-a") && lapse.message.contains("idle 40 days"));
    let approval = EntryKind::Reauth {
        operator: "ana".into(),
        account: "heart-a".into(),
        until: Some("2027-01-01T00:00:00Z".into()),
        reason: "r".into(),
        action: Some(ReauthAction::Approve),
        approval: None,
    };
    assert_eq!(alert_of(&approval), None);
    let q = alert_of(&EntryKind::Admin {
        operator: "ana".into(),
        action: "quarantine".into(),
        target: "account:heart-a".into(),
        reason: "emergency rotation: leak".into(),
    })
    .unwrap();
    assert_eq!(
        (q.code.as_str(), q.severity),
        (QUARANTINED, Severity::Critical)
    );
    let start = EntryKind::Admin {
        operator: "ana".into(),
        action: "start".into(),
        target: "w".into(),
        reason: "r".into(),
    };
    assert_eq!(alert_of(&start), None);
    let failed = alert_of(&EntryKind::Rotation {
        rotation_id: "r1".into(),
        account: "heart-a".into(),
        from: "obtained".into(),
        to: "failed".into(),
        operator: "ana".into(),
        detail: "rights drift".into(),
    })
    .unwrap();
    assert_eq!(failed.code, ROTATION_FAILED);
    assert_eq!(severity_of("something.new"), Severity::Warning);
    assert_eq!(severity_of(REDCAP_BACK), Severity::Info);
}

#[test]
fn the_syslog_message_is_cut_on_a_character_boundary() {
    let alert = Alert {
        source: "redcap-warden",
        host: "h".into(),
        time: jiff::Timestamp::UNIX_EPOCH,
        severity: Severity::Info,
        code: "x".repeat(40),
        message: "é".repeat(3000),
        ledger: "recorded".into(),
    };
    let line = syslog::format_message(&alert, 7);
    assert!(line.len() <= 2048);
    assert!(
        line.starts_with("<86>1 1970-01-01T00:00:00.000000Z h redcap-warden 7 "),
        "{line}"
    );
    assert!(line.contains(&format!(" {} - ", "x".repeat(32))));
}

/// A witness that fails while `broken` is set.
struct Flaky {
    broken: std::sync::atomic::AtomicBool,
}

impl ledger::Witness for Flaky {
    fn describe(&self) -> String {
        "the test's witness".into()
    }
    fn read(&self) -> Result<Option<String>, String> {
        Ok(None)
    }
    fn write(&self, _note: &str) -> Result<(), String> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            Err("disk gone".into())
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_failing_witness_is_one_alert_and_its_return_another() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    let mut s = section(
        None,
        Some(SyslogTarget::Udp(udp.local_addr().unwrap().to_string())),
    );
    s.min_severity = Severity::Info;
    let alerts = Alerts::start(&s, None);
    let flaky = Arc::new(Flaky {
        broken: std::sync::atomic::AtomicBool::new(true),
    });
    let w = AlertingWitness::wrap(flaky.clone(), &alerts);
    assert!(w.write("n1").is_err());
    assert!(w.write("n2").is_err());
    flaky
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(w.write("n3").is_ok());
    assert!(w.write("n4").is_ok());
    assert!(alerts.flush(WAIT));
    let mut buf = [0; 4096];
    let n = udp.recv(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("<82>1 ") && first.contains("ledger.witness: the latest checkpoint cannot be kept in the test's witness: disk gone"), "{first}");
    let n = udp.recv(&mut buf).unwrap();
    let second = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        second.starts_with("<86>1 ") && second.contains("kept in the test's witness again"),
        "{second}"
    );
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(udp.recv(&mut buf).is_err(), "one alert each way");
    // Without targets the witness is passed through as it is.
    let plain: Arc<dyn ledger::Witness> = flaky.clone();
    let same = AlertingWitness::wrap(plain.clone(), &Alerts::off());
    assert!(Arc::ptr_eq(&plain, &same));
}
