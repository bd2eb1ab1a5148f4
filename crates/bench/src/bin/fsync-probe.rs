//! `fsync-probe --dir DIR [--count N] [--bytes B]`: the disk's price of one
//! durable append, the floor under the gateway's per-request ledger cost.
//!
//! Appends `N` records of `B` bytes (default 5000 × 300, about the size of
//! a ledger `request` entry) to a new file in `DIR`, calling `fdatasync`
//! (`File::sync_data`) after each, and prints the latency percentiles of
//! write+sync. The file is removed afterwards. Run it on the filesystem the
//! ledger lives on.

use std::io::Write;
use std::time::{Duration, Instant};

use warden_bench::{flag, percentile};

const USAGE: &str = "usage: fsync-probe --dir DIR [--count N] [--bytes B]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = flag(&args, "--dir") else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let number = |name: &str, default: usize| match flag(&args, name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|e| {
            eprintln!("fsync-probe: {name} {v}: {e}\n{USAGE}");
            std::process::exit(2);
        }),
    };
    let count = number("--count", 5000).max(1);
    let bytes = number("--bytes", 300).max(1);

    let path = std::path::Path::new(&dir).join(format!("fsync-probe-{}.log", std::process::id()));
    let mut file = match std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fsync-probe: cannot create {}: {e}", path.display());
            std::process::exit(2);
        }
    };
    let mut record = vec![b'x'; bytes];
    record[bytes - 1] = b'\n';
    let mut samples = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        let done = file.write_all(&record).and_then(|()| file.sync_data());
        if let Err(e) = done {
            eprintln!("fsync-probe: appending to {}: {e}", path.display());
            let _ = std::fs::remove_file(&path);
            std::process::exit(1);
        }
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    let _ = std::fs::remove_file(&path);
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    // One line, `key=value`, for the benchmark script to read.
    println!(
        "appends={count} bytes={bytes} p50_us={:.0} p90_us={:.0} p99_us={:.0} max_us={:.0} per_s={:.0}",
        us(percentile(&samples, 50.0)),
        us(percentile(&samples, 90.0)),
        us(percentile(&samples, 99.0)),
        us(percentile(&samples, 100.0)),
        count as f64 / total.as_secs_f64()
    );
}
