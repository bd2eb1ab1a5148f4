//! `pg-append --url URL [--secs S] [--writers 1,8,64] [--handles H]`: the
//! PostgreSQL ledger's durable append rate against PostgreSQL's own commit
//! rate, measured in the same run (`bench/pg.sh`; issue #15 item 4).
//!
//! For each number of writers N:
//!
//! - **baseline**: N threads, each with its own connection, each inserting
//!   one ~300-byte `bytea` row and committing, in a loop: what the server
//!   can commit with `synchronous_commit = on` at that concurrency (its own
//!   group commit included);
//! - **ledger**: N threads appending ~300-byte `request` entries to a new
//!   ledger in a fresh schema, closed loop (one append in flight each),
//!   spread over H `PgLedger` handles (H processes' writers: 1 = one
//!   gateway, 2 = two replicas), checkpoints every second as in service.
//!
//! Prints one line per measurement and a ratio. The connection string is
//! never printed. Schemas `bench_append_*` are dropped afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use ledger::{EntryKind, PgLedger, PgOptions};
use postgres::{Client, NoTls};
use warden_bench::flag;

const USAGE: &str = "usage: pg-append --url URL [--secs S] [--writers 1,8,64] [--handles H] [--only baseline|ledger]";
const ORIGIN: &str = "bench.example/redcap-warden/0123456789abcdef";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(url) = flag(&args, "--url") else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let secs: f64 = flag(&args, "--secs").map_or(5.0, |s| {
        s.parse()
            .unwrap_or_else(|e| fail(&format!("--secs {s}: {e}")))
    });
    let handles: usize = flag(&args, "--handles").map_or(1, |s| {
        s.parse()
            .unwrap_or_else(|e| fail(&format!("--handles {s}: {e}")))
    });
    let writers: Vec<usize> = flag(&args, "--writers")
        .unwrap_or_else(|| "1,8,64".into())
        .split(',')
        .map(|w| {
            w.trim()
                .parse()
                .unwrap_or_else(|e| fail(&format!("--writers {w}: {e}")))
        })
        .collect();
    let only = flag(&args, "--only");
    let run = Duration::from_secs_f64(secs);
    let mut admin =
        Client::connect(&url, NoTls).unwrap_or_else(|e| fail(&format!("could not connect: {e}")));
    for setting in ["synchronous_commit", "fsync"] {
        let v: String = admin
            .query_one("SELECT current_setting($1)", &[&setting])
            .unwrap()
            .get(0);
        println!("{setting} = {v}");
        if v == "off" {
            fail(&format!(
                "{setting} is off: the figures would prove nothing"
            ));
        }
    }
    for n in writers {
        if only.as_deref() != Some("ledger") {
            let rate = baseline(&url, &mut admin, n, run);
            println!("baseline  writers={n} commits_per_s={rate:.0}");
        }
        if only.as_deref() != Some("baseline") {
            let (rate, checkpoints) = ledger_appends(&url, &mut admin, n, handles.max(1), run);
            println!(
                "ledger    writers={n} handles={handles} appends_per_s={rate:.0} checkpoints={checkpoints}"
            );
        }
    }
}

fn fail(why: &str) -> ! {
    eprintln!("pg-append: {why}\n{USAGE}");
    std::process::exit(2)
}

/// `n` connections inserting and committing one ~300-byte row each, in a
/// loop, for `run`: commits per second.
fn baseline(url: &str, admin: &mut Client, n: usize, run: Duration) -> f64 {
    let schema = format!("bench_append_base_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TABLE {schema}.rows (seq bigserial PRIMARY KEY, entry bytea NOT NULL)"
        ))
        .unwrap();
    let row = vec![b'x'; 300];
    let rate = closed_loop(n, run, |_| {
        let mut c = Client::connect(url, NoTls).unwrap();
        let insert = c
            .prepare(&format!("INSERT INTO {schema}.rows (entry) VALUES ($1)"))
            .unwrap();
        let row = row.clone();
        Box::new(move || {
            c.execute(&insert, &[&row]).unwrap();
        })
    });
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    rate
}

/// `n` threads appending to a new ledger through `handles` PgLedgers, for
/// `run`: appends per second, and the checkpoints signed meanwhile.
fn ledger_appends(
    url: &str,
    admin: &mut Client,
    n: usize,
    handles: usize,
    run: Duration,
) -> (f64, i64) {
    let schema = format!("bench_append_ledger_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let options = PgOptions {
        schema: schema.clone(),
        ..PgOptions::default()
    };
    let first = PgLedger::create(url, ORIGIN, key.clone(), options.clone())
        .unwrap_or_else(|e| fail(&format!("create the ledger: {e}")));
    let mut ledgers = vec![Arc::new(first)];
    for _ in 1..handles {
        ledgers.push(Arc::new(
            PgLedger::open(url, key.clone(), options.clone())
                .unwrap_or_else(|e| fail(&format!("open the ledger: {e}"))),
        ));
    }
    let rate = closed_loop(n, run, |w| {
        let ledger = Arc::clone(&ledgers[w % ledgers.len()]);
        let mut i = w as u64;
        Box::new(move || {
            ledger.append(request(i)).expect("append");
            i += n as u64;
        })
    });
    for l in &ledgers {
        l.close().expect("close");
    }
    let checkpoints: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {schema}.checkpoints"), &[])
        .unwrap()
        .get(0);
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    (rate, checkpoints)
}

type Step = Box<dyn FnMut() + Send>;

/// `n` threads, each repeating the step `make(thread)` gives it, for
/// `run` after all are ready: completed steps per second.
fn closed_loop(n: usize, run: Duration, make: impl Fn(usize) -> Step) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(std::sync::Barrier::new(n + 1));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..n)
        .map(|w| {
            let mut step = make(w);
            let (stop, go, count) = (stop.clone(), go.clone(), count.clone());
            std::thread::spawn(move || {
                go.wait();
                while !stop.load(Ordering::Relaxed) {
                    step();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    std::thread::sleep(run);
    let done = count.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done as f64 / elapsed
}

/// A ~300-byte `request` entry, as the file ledger's benchmark appends.
fn request(i: u64) -> EntryKind {
    EntryKind::Request {
        request_id: format!("r-{i:012}"),
        client: "etl-nightly".into(),
        account: "svc_etl_site1".into(),
        site: Some("site1".into()),
        content: Some("record".into()),
        action: Some("export".into()),
        format: Some("json".into()),
        params: vec!["content".into(), "format".into(), "records".into()],
        record_ids: vec![format!("{}", 1000 + i % 9000)].into(),
        filter_hmac: None,
        body_hmac: "5d41402abc4b2a76b9719d911017c592aa0c3b1e04a8b2c6b7e1f0d3c2a19e88".into(),
        body_bytes: 58,
        reason: None,
    }
}
