//! Issue #19, item 3, end to end: `redcap-warden serve` is killed with
//! SIGKILL again and again while imports go through it, at random points
//! of the request path, and restarted each time. Afterwards every import a
//! client saw succeed is named by some ledger entry, every forwarded
//! request without a response is marked `interrupted`, each unclean stop
//! has its alert, and the ledger verifies.

mod common;

use std::collections::HashSet;
use std::io::{BufReader, Write};
use std::time::Duration;

use common::*;

/// A stand-in for REDCap: answers metadata with the record id field, and
/// an import with the ids of its payload (as `returnContent=ids` does).
fn upstream(listener: std::net::TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve_connection(stream));
        }
    });
}

fn serve_connection(mut stream: std::net::TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while let Some(body) = read_request(&mut reader) {
        let body = String::from_utf8_lossy(&body).to_string();
        let answer = if body.contains("content=metadata") {
            r#"[{"field_name":"record_id","form_name":"f","field_type":"text","field_label":"ID"}]"#
                .to_string()
        } else {
            // The payload's ids: `"record_id":"N"`, percent-encoded.
            let ids: Vec<String> = body
                .split("%22record_id%22%3A%22")
                .skip(1)
                .map(|rest| rest.split("%22").next().unwrap_or_default().to_string())
                .collect();
            serde_json::to_string(&ids).unwrap()
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn after_any_crash_the_ledger_names_every_change_and_marks_the_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    upstream(up);
    let (port, key) = installation_with_client(
        dir.path(),
        &format!("http://127.0.0.1:{up_port}/api/"),
        r#"["record:import"]"#,
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/");
    let mut confirmed: Vec<String> = Vec::new();
    let mut next = 1u64;
    const CRASHES: u64 = 6;
    for cycle in 0..=CRASHES {
        let serving = Serving::start(dir.path(), port);
        // Imports from four clients at once, for a while; then SIGKILL at a
        // point that moves through the request path from cycle to cycle.
        let kill_after = Duration::from_millis(40 + 37 * cycle);
        let done = rt.block_on(async {
            let started = std::time::Instant::now();
            let mut ok = Vec::new();
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let first = next;
                next += 1000;
                let (http, url, key) = (http.clone(), url.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let mut ok = Vec::new();
                    for id in first..first + 1000 {
                        if started.elapsed() > kill_after + Duration::from_millis(300) {
                            break;
                        }
                        let data = format!(r#"[{{"record_id":"{id}","age":"1"}}]"#);
                        let r = http
                            .post(&url)
                            .form(&[
                                ("token", key.as_str()),
                                ("content", "record"),
                                ("format", "json"),
                                ("data", data.as_str()),
                            ])
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status() == 200 => {
                                if r.text().await.is_ok() {
                                    ok.push(id.to_string());
                                }
                            }
                            _ => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    ok
                }));
            }
            if cycle < CRASHES {
                tokio::time::sleep(kill_after).await;
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &serving.pid().to_string()])
                    .status();
            }
            for t in tasks {
                ok.extend(t.await.unwrap());
            }
            ok
        });
        confirmed.extend(done);
        if cycle < CRASHES {
            // Already dead: dropping sends SIGTERM to nothing.
            std::mem::forget(serving);
            std::thread::sleep(Duration::from_millis(100));
        } else {
            drop(serving);
        }
    }
    assert!(
        confirmed.len() > 50,
        "too few imports went through: {}",
        confirmed.len()
    );

    let tail = warden(dir.path(), &["ledger", "tail", "-n", "1000000"], None);
    assert!(tail.status.success(), "{}", text(&tail));
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut named: HashSet<String> = HashSet::new();
    let mut requests: Vec<String> = Vec::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut unclean = 0;
    for e in &entries {
        match e["kind"].as_str().unwrap() {
            "request" if e["client"] == "app" => {
                requests.push(e["request_id"].as_str().unwrap().to_string());
                for id in e["record_ids"].as_array().unwrap() {
                    named.insert(id.as_str().unwrap().to_string());
                }
            }
            "response" | "interrupted" => {
                closed.insert(e["request_id"].as_str().unwrap().to_string());
                for id in e["record_ids"].as_array().into_iter().flatten() {
                    named.insert(id.as_str().unwrap().to_string());
                }
            }
            "alert" if e["code"] == "unclean_stop" => unclean += 1,
            _ => {}
        }
    }
    let unnamed: Vec<&String> = confirmed.iter().filter(|id| !named.contains(*id)).collect();
    assert!(
        unnamed.is_empty(),
        "imports a client saw succeed that no entry names: {unnamed:?}"
    );
    let open: Vec<&String> = requests.iter().filter(|r| !closed.contains(*r)).collect();
    assert!(
        open.is_empty(),
        "forwarded requests neither answered nor marked interrupted: {open:?}"
    );
    assert_eq!(unclean, CRASHES, "one unclean_stop alert per SIGKILL");
    let verify = warden(dir.path(), &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    eprintln!(
        "{CRASHES} SIGKILLs, {} imports confirmed to clients, {} requests in the ledger, all named and closed",
        confirmed.len(),
        requests.len()
    );
}
