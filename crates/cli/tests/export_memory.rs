//! A whole-project export of 1,000,000 records through a running gateway
//! (`redcap-warden serve`, a separate process, so its memory can be read
//! from /proc): the answer streams to the client byte for byte, the
//! `response` entry names every record, and the gateway's peak memory grows
//! by far less than the answer — whatever its size.

mod common;

use std::io::{BufReader, Write};

use common::*;

const RECORDS: usize = 1_000_000;

/// One JSON row of the synthetic project: the record id first, then two
/// fields of data.
fn row(i: usize) -> String {
    format!(
        r#"{{"record_id":"{i}","age":"{}","notes":"visit note {i:0>24}"}}"#,
        i % 90
    )
}

/// A stand-in for REDCap: metadata answers name the record id field;
/// record exports stream a million rows, generated as they are sent, with
/// their exact Content-Length.
fn upstream(listener: std::net::TcpListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let Some(body) = read_request(&mut reader) else {
                    return;
                };
                let body = String::from_utf8_lossy(&body);
                if body.contains("content=metadata") {
                    let md = r#"[{"field_name":"record_id","form_name":"f","field_type":"text","field_label":"Record ID"}]"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{md}",
                        md.len()
                    );
                    return;
                }
                let total: usize =
                    2 + (0..RECORDS).map(|i| row(i).len()).sum::<usize>() + RECORDS - 1;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n["
                );
                let mut chunk = String::with_capacity(1 << 16);
                for i in 0..RECORDS {
                    if i > 0 {
                        chunk.push(',');
                    }
                    chunk.push_str(&row(i));
                    if chunk.len() >= 1 << 16 {
                        if stream.write_all(chunk.as_bytes()).is_err() {
                            return;
                        }
                        chunk.clear();
                    }
                }
                chunk.push(']');
                let _ = stream.write_all(chunk.as_bytes());
            });
        }
    });
}

#[test]
fn a_million_record_export_streams_through_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    upstream(up);

    let (port, key) = installation_with_client(
        dir.path(),
        &format!("http://127.0.0.1:{up_port}/api/"),
        r#"["record:export"]"#,
    );

    let serving = Serving::start(dir.path(), port);
    let pid = serving.pid();
    let before = vm(pid, "VmRSS:");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, received, last) = rt.block_on(async {
        let mut r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/"))
            .form(&[
                ("token", key.as_str()),
                ("content", "record"),
                ("format", "json"),
            ])
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let mut received = 0usize;
        let mut last = Vec::new();
        while let Some(chunk) = r.chunk().await.unwrap() {
            received += chunk.len();
            last = chunk.to_vec();
        }
        (status, received, last)
    });
    // The entry is written as the stream ends; give the committer a moment.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let peak = vm(pid, "VmHWM:");
    drop(serving);

    assert_eq!(status, 200);
    assert!(last.ends_with(b"}]"), "the whole answer arrived");
    let tail = warden(dir.path(), &["ledger", "tail", "-n", "4"], None);
    let tail = String::from_utf8_lossy(&tail.stdout).to_string();
    let response: serde_json::Value = tail
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "response" && e["delivery"].is_string())
        .expect("the export's response entry");
    assert_eq!(response["delivery"], "complete");
    assert_eq!(response["body_bytes"], received);
    let ids = response["record_ids"].as_array().unwrap();
    assert_eq!(ids.len(), RECORDS);
    assert_eq!(ids[RECORDS - 1], (RECORDS - 1).to_string());
    let growth = peak.saturating_sub(before);
    eprintln!(
        "gateway peak memory growth for a {RECORDS}-record, {received}-byte export: {growth} bytes"
    );
    assert!(
        growth < 32 * 1024 * 1024,
        "the gateway's peak memory grew by {growth} bytes for a {received}-byte export (limit 32 MiB)"
    );
}
