//! `kill -9` of the sandbox binary during a large import: after a restart
//! the import is there whole or not at all, and the log agrees with the
//! data (one "Create record" row per record, no more, no fewer).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Map, Value, json};

const SUPER: &str = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";
/// Records already in the project before the killed import.
const BEFORE: usize = 2_000;
/// Records of the killed import.
const BIG: usize = 20_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_redcap-sandbox"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .args(["--super-token", SUPER, "--timezone", "UTC"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the sandbox binary starts")
}

async fn wait_ready(client: &reqwest::Client, api: &str) {
    for _ in 0..600 {
        let answer = client
            .post(api)
            .form(&[("token", SUPER), ("content", "version")])
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the sandbox did not start on {api}");
}

async fn post(client: &reqwest::Client, api: &str, form: &[(&str, &str)]) -> String {
    let r = client.post(api).form(form).send().await.expect("an answer");
    let status = r.status();
    let body = r.text().await.expect("a body");
    assert!(status.is_success(), "{status}: {body}");
    body
}

fn rows(from: usize, n: usize) -> String {
    let rows: Vec<Value> = (from..from + n)
        .map(|i| {
            let mut m = Map::new();
            m.insert("record_id".into(), Value::String(i.to_string()));
            for f in 1..10 {
                m.insert(format!("f{f}"), Value::String(format!("value {f} of {i}")));
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(rows).to_string()
}

/// Records in the project, and "Create record" rows in its log.
async fn counts(client: &reqwest::Client, api: &str, token: &str) -> (usize, usize) {
    let records = post(
        client,
        api,
        &[
            ("token", token),
            ("content", "record"),
            ("format", "json"),
            ("fields", "record_id"),
        ],
    )
    .await;
    let records: Vec<Value> = serde_json::from_str(&records).expect("JSON records");
    let log = post(
        client,
        api,
        &[
            ("token", token),
            ("content", "log"),
            ("format", "json"),
            ("logtype", "record_add"),
        ],
    )
    .await;
    let log: Vec<Value> = serde_json::from_str(&log).expect("JSON log");
    (records.len(), log.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_large_import_leaves_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let client = reqwest::Client::new();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}/api/");
    let mut child = start(&dir, port);
    wait_ready(&client, &api).await;
    let token = post(
        &client,
        &api,
        &[
            ("token", SUPER),
            ("content", "project"),
            ("format", "json"),
            ("data", r#"[{"project_title":"Crash","purpose":0}]"#),
        ],
    )
    .await;
    let mut metadata = vec![
        json!({"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"}),
    ];
    for f in 1..10 {
        metadata.push(json!({"field_name": format!("f{f}"), "form_name": "f", "field_type": "text", "field_label": "F"}));
    }
    let metadata = Value::Array(metadata).to_string();
    post(
        &client,
        &api,
        &[
            ("token", &token),
            ("content", "metadata"),
            ("format", "json"),
            ("data", &metadata),
        ],
    )
    .await;
    let first = rows(1, BEFORE);
    post(
        &client,
        &api,
        &[
            ("token", &token),
            ("content", "record"),
            ("format", "json"),
            ("data", &first),
        ],
    )
    .await;

    // Kill during the big import at several points of its life (sent, part
    // way through, maybe committed); each time the answer is all or nothing.
    let mut expected = BEFORE;
    for (round, delay_ms) in [20u64, 150, 400, 900, 1800].into_iter().enumerate() {
        let big = rows(100_000 * (round + 1), BIG);
        let form = [
            ("token", token.clone()),
            ("content", "record".into()),
            ("format", "json".into()),
            ("data", big),
        ];
        let sender = client.clone();
        let url = api.clone();
        let import = tokio::spawn(async move { sender.post(&url).form(&form).send().await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("the killed sandbox is reaped");
        let answered = matches!(import.await, Ok(Ok(r)) if r.status().is_success());

        child = start(&dir, port);
        wait_ready(&client, &api).await;
        let (records, created) = counts(&client, &api, &token).await;
        assert!(
            records == expected || records == expected + BIG,
            "round {round}: {records} records, expected {expected} or {}",
            expected + BIG
        );
        if answered {
            assert_eq!(
                records,
                expected + BIG,
                "round {round}: an answered import was lost"
            );
        }
        expected = records;
        assert_eq!(
            created, records,
            "round {round}: the log disagrees with the data"
        );
    }
    child.kill().ok();
    child.wait().ok();
}
