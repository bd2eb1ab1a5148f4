//! Benchmark (not a test): the sandbox exporting 100,000 records × 10 fields
//! as flat JSON and importing 10,000, next to the time serde_json needs to
//! serialise the same rows, measured in the same run.
//!
//! ```sh
//! cargo bench -p redcap-sandbox --bench records
//! ```
//!
//! The floor is `serde_json::to_string` of exactly the rows the export
//! answered with (parsed back from its body), so the ratio says how much the
//! sandbox adds on top of producing the JSON at all: state lookup, rights,
//! logging, HTTP. Target: export within 3× of the floor. Results go into
//! `docs/benchmarks.md` with the machine and its load.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use redcap::client::{
    Client, Field, Format, ImportOptions, ImportResult, NewProject, RecordQuery, RecordType,
    RetryPolicy, Row,
};
use redcap::{SuperToken, Token};
use redcap_sandbox::{Config, Server};
use serde_json::{Map, Value};

const SUPER: &str = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";
const RECORDS: usize = 100_000;
/// Fields per record, the record ID field included.
const FIELDS: usize = 10;
const IMPORT: usize = 10_000;
const RUNS: usize = 5;

fn rows(ids: std::ops::Range<usize>) -> Vec<Row> {
    ids.map(|i| {
        let mut m = Map::new();
        m.insert("record_id".into(), Value::String(i.to_string()));
        for f in 1..FIELDS {
            m.insert(
                format!("field_{f}"),
                Value::String(format!("value {i}.{f}")),
            );
        }
        m
    })
    .collect()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Times `f` RUNS times after one warm-up; answers (median, min).
async fn time<F, Fut, T>(mut f: F) -> anyhow::Result<(Duration, Duration, T)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut last = f(0).await?;
    let mut times = Vec::new();
    for run in 1..=RUNS {
        let start = Instant::now();
        last = f(run).await?;
        times.push(start.elapsed());
    }
    let min = *times.iter().min().unwrap_or(&Duration::ZERO);
    Ok((median(times), min, last))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` (and
    // nextest, which lists with `--list`) run bench targets too: answer them
    // with nothing so a benchmark never runs as part of the tests.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "records: a benchmark; run it with `cargo bench -p redcap-sandbox --bench records`"
        );
        return Ok(());
    }
    // `--floor FILE`: the serde_json floor of an export saved by
    // bench/sandbox.sh (the same rows, serialised by serde_json::to_string).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor") {
        let file = args.get(i + 1).context("--floor FILE")?;
        return floor(file);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Prints the median seconds (of 3) serde_json needs to serialise the rows
/// of a saved JSON export.
fn floor(file: &str) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    let rows: Vec<Row> = serde_json::from_slice(&bytes)?;
    drop(bytes);
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let body = serde_json::to_string(&rows)?;
        times.push(start.elapsed());
        std::hint::black_box(body);
    }
    println!("{:.3}", median(times).as_secs_f64());
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::for_tests(dir.path().to_owned());
    config.super_token = Some(SUPER.into());
    let server = Server::start(config.clone()).await?;
    let client = Client::new(&server.api_url)?.with_retry(RetryPolicy::NEVER);
    let token: Token = client
        .create_project(
            &SuperToken::parse(SUPER)?,
            &NewProject {
                project_title: "Benchmark".into(),
                purpose: 0,
                ..NewProject::default()
            },
        )
        .await?;
    let secret = token.expose().to_owned();
    let p = client.project(token);
    let metadata: Vec<Field> = (0..FIELDS)
        .map(|f| match f {
            0 => Field::new("record_id", "data", "text", "Record ID"),
            f => Field::new(&format!("field_{f}"), "data", "text", &format!("Field {f}")),
        })
        .collect();
    p.import_metadata(&metadata).await?;

    // Load 100,000 records in batches of 10,000.
    let start = Instant::now();
    for batch in 0..RECORDS / IMPORT {
        let n = p
            .import_records(
                &rows(batch * IMPORT + 1..(batch + 1) * IMPORT + 1),
                &ImportOptions::default(),
            )
            .await?;
        assert_eq!(n, ImportResult::Count(IMPORT));
    }
    let load = start.elapsed();

    // Export: the whole project as flat JSON.
    let query = RecordQuery::default();
    let (export_median, export_min, body) = time(|_| async {
        Ok(p.export_records_raw(Format::Json, RecordType::Flat, &query)
            .await?)
    })
    .await?;
    let exported: Vec<Row> = serde_json::from_str(&body)?;
    assert_eq!(exported.len(), RECORDS);
    let columns = exported[0].len();

    // The floor: serde_json serialising the same rows.
    let (floor_median, floor_min, floor_len) =
        time(|_| async { Ok(serde_json::to_string(&exported)?.len()) }).await?;

    // Import: 10,000 new records per run, each run into fresh ids.
    let mut next = RECORDS + 1;
    let batches: Vec<Vec<Row>> = (0..=RUNS)
        .map(|_| {
            let b = rows(next..next + IMPORT);
            next += IMPORT;
            b
        })
        .collect();
    let (import_median, import_min, _) = time(|run| {
        let batch = &batches[run];
        let p = &p;
        async move {
            let n = p.import_records(batch, &ImportOptions::default()).await?;
            anyhow::ensure!(n == ImportResult::Count(IMPORT), "import answered {n:?}");
            Ok(())
        }
    })
    .await?;
    let import_rows: Vec<Row> = batches[0].clone();
    let (import_floor_median, _, _) =
        time(|_| async { Ok(serde_json::to_string(&import_rows)?.len()) }).await?;

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("redcap-sandbox records benchmark ({RUNS} runs after a warm-up; median / min)");
    println!(
        "load: {RECORDS} records in batches of {IMPORT}: {}",
        ms(load)
    );
    println!(
        "export {RECORDS} records x {columns} columns, flat JSON, {:.1} MB: {} / {}",
        body.len() as f64 / 1e6,
        ms(export_median),
        ms(export_min)
    );
    println!(
        "floor: serde_json::to_string of the same rows ({:.1} MB): {} / {}",
        floor_len as f64 / 1e6,
        ms(floor_median),
        ms(floor_min)
    );
    println!(
        "export / floor: {:.2}x (median), {:.2}x (min); target <= 3x",
        ratio(export_median, floor_median),
        ratio(export_min, floor_min)
    );
    println!(
        "import {IMPORT} records (flat JSON, into a project of {RECORDS}+): {} / {}",
        ms(import_median),
        ms(import_min)
    );
    println!(
        "import / serde_json::to_string of those {IMPORT} rows ({}): {:.1}x",
        ms(import_floor_median),
        ratio(import_median, import_floor_median)
    );
    server.stop().await?;

    // The same export through the request handler alone (state reopened
    // from disk, no HTTP, no client): what the sandbox itself costs.
    let db = redcap_sandbox::open_state(&config)?;
    let post = redcap_sandbox::post::Post::from_urlencoded(
        format!("token={secret}&content=record&format=json&type=flat").as_bytes(),
    );
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let (handler_median, handler_min, len) = time(|_| async {
        let reply = redcap_sandbox::api::handle(&db, &config, &post, ip).into_complete()?;
        anyhow::ensure!(reply.status == 200, "handler answered {}", reply.status);
        Ok(reply.body.len())
    })
    .await?;
    println!(
        "export in the handler only ({:.1} MB, {} records): {} / {}; handler / floor: {:.2}x",
        len as f64 / 1e6,
        RECORDS + (RUNS + 1) * IMPORT,
        ms(handler_median),
        ms(handler_min),
        ratio(handler_median, floor_median) * (RECORDS as f64)
            / ((RECORDS + (RUNS + 1) * IMPORT) as f64)
    );
    Ok(())
}
