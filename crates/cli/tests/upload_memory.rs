//! A 50 MB file upload through a running gateway (`redcap-warden serve`, a
//! separate process, so its memory can be read from /proc): the file
//! reaches the upstream whole, the request entry names it by size and
//! hash, and the gateway's peak memory grows by far less than the file.

mod common;

use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};

use common::*;

const FILE_BYTES: usize = 50 * 1024 * 1024;

/// A stand-in for REDCap that reads each request whole and remembers how
/// many body bytes it saw and whether a file part was there.
fn upstream(listener: std::net::TcpListener, seen: Arc<Mutex<Vec<(usize, bool)>>>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(body) = read_request(&mut reader) else {
                continue;
            };
            let has_file = body.windows(9).any(|w| w == b"filename=");
            seen.lock().unwrap().push((body.len(), has_file));
            let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]";
            let _ = stream.write_all(answer.as_bytes());
        }
    });
}

#[test]
fn a_50_mb_upload_streams_through_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    upstream(up, seen.clone());

    let (port, key) = installation_with_client(
        dir.path(),
        &format!("http://127.0.0.1:{up_port}/api/"),
        r#"["file:import"]"#,
    );

    let serving = Serving::start(dir.path(), port);
    let pid = serving.pid();
    let before = vm(pid, "VmRSS:");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = rt.block_on(async {
        let file: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
        let form = reqwest::multipart::Form::new()
            .text("token", key.clone())
            .text("content", "file")
            .text("action", "import")
            .text("record", "1")
            .text("field", "consent_pdf")
            .part(
                "file",
                reqwest::multipart::Part::bytes(file).file_name("scan.pdf"),
            );
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    let peak = vm(pid, "VmHWM:");
    drop(serving);

    assert_eq!(status, 200, "{body}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].0 > FILE_BYTES && seen[0].1,
        "the whole file reached the upstream: {seen:?}"
    );
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 16 * 1024 * 1024,
        "the gateway's peak memory grew by {growth} bytes for a {FILE_BYTES}-byte upload (limit 16 MiB)"
    );
    let spool = dir.path().join("data/spool");
    assert_eq!(
        std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0),
        0,
        "the spool file is removed"
    );
    let tail =
        String::from_utf8_lossy(&warden(dir.path(), &["ledger", "tail", "-n", "4"], None).stdout)
            .to_string();
    let request: serde_json::Value = tail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"] == "request")
        .expect("a request entry");
    assert_eq!(request["content"], "file");
    assert_eq!(
        request["params"],
        serde_json::json!(["content", "action", "record", "field", "file"])
    );
    assert!(
        request["body_bytes"].as_u64().unwrap() > FILE_BYTES as u64,
        "{request}"
    );
    eprintln!("gateway peak memory growth for a {FILE_BYTES}-byte upload: {growth} bytes");
}

/// Issue #19, item 2: clients without a key cost the gateway almost
/// nothing — eight parallel 50 MB bodies without a key (urlencoded and
/// multipart, the key last or missing) are refused after the first 64 KiB,
/// no spool file is created, and the gateway's memory barely moves.
#[test]
fn keyless_bodies_are_refused_before_they_cost_anything() {
    let dir = tempfile::tempdir().unwrap();
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    upstream(up, seen.clone());
    init(dir.path(), &format!("http://127.0.0.1:{up_port}/api/"));
    let (extra, port, _) = gateway_config(r#"["file:import", "record:import"]"#);
    add_config(dir.path(), &extra);
    let serving = Serving::start(dir.path(), port);
    let pid = serving.pid();
    let before = vm(pid, "VmRSS:");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<u16> = rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/api/");
        let mut calls = Vec::new();
        for i in 0..8 {
            let (http, url) = (http.clone(), url.clone());
            calls.push(tokio::spawn(async move {
                let big: Vec<u8> = vec![b'a'; FILE_BYTES];
                let r = if i % 2 == 0 {
                    let mut body = b"content=record&data=".to_vec();
                    body.extend_from_slice(&big);
                    body.extend_from_slice(b"&token=0123456789ABCDEF0123456789ABCDEF");
                    http.post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body)
                        .send()
                        .await
                } else {
                    let form = reqwest::multipart::Form::new()
                        .text("content", "file")
                        .part(
                            "file",
                            reqwest::multipart::Part::bytes(big).file_name("x.pdf"),
                        )
                        .text("token", "0123456789ABCDEF0123456789ABCDEF");
                    http.post(&url).multipart(form).send().await
                };
                // The gateway may close the connection before it has read
                // the whole body: that is a refusal too.
                r.map(|r| r.status().as_u16()).unwrap_or(0)
            }));
        }
        let mut out = Vec::new();
        for c in calls {
            out.push(c.await.unwrap());
        }
        out
    });
    let peak = vm(pid, "VmHWM:");
    drop(serving);
    assert!(
        statuses.iter().all(|&s| s == 400 || s == 403 || s == 0),
        "{statuses:?}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    let spool = dir.path().join("data/spool");
    assert_eq!(
        std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0),
        0,
        "no spool file for a client without a key"
    );
    let growth = peak.saturating_sub(before);
    eprintln!("gateway peak memory growth for 8 keyless 50 MB bodies: {growth} bytes");
    assert!(
        growth < 16 * 1024 * 1024,
        "the gateway's peak memory grew by {growth} bytes for keyless bodies (limit 16 MiB)"
    );
}
