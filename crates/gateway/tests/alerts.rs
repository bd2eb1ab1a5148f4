//! Alerts leave the gateway for a webhook and syslog as well as the
//! ledger (`[alerts]`, docs/alerts.md): a local HTTP receiver and a UDP
//! socket in the test stand in for the alerting system and the syslog
//! collector.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::*;
use durable::SimFs;
use governance::clock_sync::{ClockSync, FixedProbe};
use ledger::EntryKind;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A webhook receiver on a loopback port (always 200); each POST's JSON
/// body comes out of the channel.
fn receiver() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap());
        }
    });
    (url, rx)
}

/// The webhook and a UDP syslog collector, written into `w`'s warden.toml.
fn listen(w: &World) -> (mpsc::Receiver<Value>, UdpSocket) {
    let (url, posts) = receiver();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    *w.extra_sections.lock().unwrap() = format!(
        "[alerts]\nwebhook = \"{url}\"\nwebhook_retries = 0\nsyslog = \"udp://{}\"\n",
        udp.local_addr().unwrap()
    );
    (posts, udp)
}

/// The first POST whose code is `code` (others are skipped).
fn posted(posts: &mpsc::Receiver<Value>, code: &str) -> Value {
    loop {
        let v = posts
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no `{code}` alert reached the webhook"));
        if v["code"] == code {
            return v;
        }
    }
}

/// The first syslog datagram naming `code`.
fn logged(udp: &UdpSocket, code: &str) -> String {
    let mut buf = [0; 4096];
    loop {
        let n = udp
            .recv(&mut buf)
            .unwrap_or_else(|_| panic!("no `{code}` alert reached syslog"));
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        if line.contains(&format!(" {code} - ")) {
            return line;
        }
    }
}

/// The ledger fails under the gateway: it cannot take the alert, yet the
/// webhook and syslog hear at once that requests are being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poisoned_ledger_still_reaches_the_webhook_and_syslog() {
    let w = World::new().await;
    let (posts, udp) = listen(&w);
    let sim = SimFs::new();
    let dir = PathBuf::from("/ledger");
    w.create_ledger(Arc::new(sim.clone()), &dir);
    let gw = w.start_gateway(Arc::new(sim.clone()), dir.clone()).await;
    sim.fail(durable::Fault::WriteEio);
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &w.keys["etl"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 503, "{b}");
    let alert = posted(&posts, "ledger.failed");
    assert_eq!(alert["severity"], "critical");
    assert!(
        alert["ledger"]
            .as_str()
            .unwrap()
            .starts_with("not recorded: "),
        "{alert}"
    );
    assert!(
        alert["message"].as_str().unwrap().contains("refused (503)"),
        "{alert}"
    );
    let line = logged(&udp, "ledger.failed");
    assert!(line.starts_with("<82>1 "), "{line}");
    // No token went out with it.
    let text = format!("{alert}{line}");
    assert!(!text.contains(&w.token) && !text.contains(&w.site_token));
    sim.clear_faults();
    for _ in 0..100 {
        if !gw.degraded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!gw.degraded());
    // Recorded when the ledger is back, and sent again with that said.
    let back = posted(&posts, "ledger_unavailable");
    assert_eq!(back["ledger"], "recorded");
    gw.shutdown().await.unwrap();
}

/// At start the gateway records whether the host clock is synchronised;
/// when it is not, an alert goes out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsynchronised_clock_is_recorded_and_alerted_at_start() {
    let w = World::new().await;
    let (posts, udp) = listen(&w);
    *w.clock.lock().unwrap() = Arc::new(FixedProbe(ClockSync::Unsynchronised {
        source: "chronyc -n tracking".into(),
    }));
    let (gw, dir) = w.start_on_disk().await;
    let alert = posted(&posts, "clock.unsynchronised");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("NOT synchronised (chronyc -n tracking)"),
        "{alert}"
    );
    assert!(logged(&udp, "clock.unsynchronised").contains("fix: enable NTP"));
    gw.shutdown().await.unwrap();
    let kinds = entries(&durable::OsFs, &dir);
    assert!(kinds.iter().any(|k| matches!(k,
        EntryKind::Admin { action, reason, .. } if action == "clock.check" && reason.contains("NOT synchronised"))));
    assert!(kinds.iter().any(|k| matches!(k,
        EntryKind::Alert { code, .. } if code == "clock.unsynchronised")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_synchronised_clock_is_recorded_without_an_alert() {
    let w = World::new().await;
    let (gw, dir) = w.start_on_disk().await;
    gw.shutdown().await.unwrap();
    let kinds = entries(&durable::OsFs, &dir);
    assert!(kinds.iter().any(|k| matches!(k,
        EntryKind::Admin { action, reason, .. } if action == "clock.check" && reason.starts_with("the host clock is synchronised"))));
    assert!(!kinds.iter().any(|k| matches!(k,
        EntryKind::Alert { code, .. } if code == "clock.unsynchronised")));
}

/// REDCap stops answering: one alert when it stops (not one per request).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redcap_unreachable_is_one_alert_however_many_requests_fail() {
    let mut w = World::new().await;
    let (posts, _udp) = listen(&w);
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    w.sandbox_base = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (gw, dir) = w.start_on_disk().await;
    for _ in 0..3 {
        let (s, b) = w
            .call(
                &gw,
                &[
                    ("token", &w.keys["etl"]),
                    ("content", "record"),
                    ("format", "json"),
                ],
            )
            .await;
        assert_eq!(s, 503, "{b}");
    }
    let alert = posted(&posts, "redcap.unreachable");
    assert_eq!(alert["severity"], "critical");
    gw.shutdown().await.unwrap();
    let n = entries(&durable::OsFs, &dir)
        .iter()
        .filter(|k| matches!(k, EntryKind::Alert { code, .. } if code == "redcap.unreachable"))
        .count();
    assert_eq!(n, 1);
}

/// The secrets store stops answering (its file is gone): one alert, and
/// one when it answers again — with `min_severity = "info"`, both reach
/// the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_secrets_store_unreachable_and_back_are_one_alert_each() {
    let w = World::new().await;
    let (posts, _udp) = listen(&w);
    w.extra_sections
        .lock()
        .unwrap()
        .push_str("min_severity = \"info\"\n");
    *w.gateway_extra.lock().unwrap() = "token_cache_seconds = 1\n".into();
    let (gw, dir) = w.start_on_disk().await;
    let store = w.dir.join("data/secrets.age");
    let away = w.dir.join("data/secrets.age.away");
    std::fs::rename(&store, &away).unwrap();
    // Past the cached token's lifetime, the store must be read.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let export = [
        ("token", w.keys["etl"].as_str()),
        ("content", "record"),
        ("format", "json"),
    ];
    for _ in 0..2 {
        let (s, b) = w.call(&gw, &export).await;
        assert_eq!(s, 503, "{b}");
        assert!(b.contains("secrets store"), "{b}");
    }
    let down = posted(&posts, "secrets.unreachable");
    assert_eq!(down["severity"], "critical");
    std::fs::rename(&away, &store).unwrap();
    let (s, b) = w.call(&gw, &export).await;
    assert_eq!(s, 200, "{b}");
    let back = posted(&posts, "secrets.reachable");
    assert_eq!(back["severity"], "info");
    assert!(
        back["message"].as_str().unwrap().contains("2 request(s)"),
        "{back}"
    );
    gw.shutdown().await.unwrap();
    let codes: Vec<String> = entries(&durable::OsFs, &dir)
        .into_iter()
        .filter_map(|k| match k {
            EntryKind::Alert { code, .. } if code.starts_with("secrets.") => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, ["secrets.unreachable", "secrets.reachable"]);
}
