//! The report's and the dashboard's ledger work at scale (bench/report.sh;
//! docs/benchmarks.md). Prints figures; asserts nothing about time.
//!
//! ```text
//! ledger-scale synth --dir D --entries N   a signed file ledger of N entries
//! ledger-scale report --dir D              what `report` does with the ledger: one
//!                                          scan pass, `ledger verify`, the HTML
//! ledger-scale dashboard --dir D --append M
//!                                          the dashboard: first load (full), then M
//!                                          entries appended and a refresh
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use governance::report::{
    Evidence, LedgerScan, LedgerView, RightsView, VerifiedHow, VerifySummary, html,
};
use ledger::{Checkpoint, Entry, EntryKind, Ledger, LedgerOptions, VerifierKey, merkle};
use warden_bench::flag;

const ORIGIN: &str = "bench.example/redcap-warden/00112233aabbccdd";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(flag(&args, "--dir").expect("--dir DIR"));
    match args.first().map(String::as_str) {
        Some("synth") => synth(
            &dir,
            flag(&args, "--entries").map_or(1_000_000, |n| n.parse().unwrap()),
        ),
        Some("report") => report(&dir),
        Some("dashboard") => dashboard(
            &dir,
            flag(&args, "--append").map_or(1000, |n| n.parse().unwrap()),
        ),
        _ => eprintln!(
            "usage: ledger-scale synth|report|dashboard --dir DIR [--entries N] [--append M]"
        ),
    }
}

fn entry(seq: u64, ts: jiff::Timestamp) -> EntryKind {
    let id = format!("req-{}", seq / 2);
    match seq % 2 {
        _ if seq % 1000 == 3 => EntryKind::Denied {
            source: "127.0.0.1".into(),
            client: None,
            reason: "bad client key".into(),
            count: 1,
        },
        _ if seq % 10_000 == 5 => EntryKind::Alert {
            code: "rate".into(),
            message: format!("alert at {ts}"),
        },
        0 => EntryKind::Request {
            request_id: id,
            client: "etl-app".into(),
            account: "heart-etl".into(),
            site: Some("site-a".into()),
            content: Some("record".into()),
            action: Some("export".into()),
            format: Some("json".into()),
            params: vec!["content".into(), "format".into(), "records".into()],
            record_ids: [format!("{}", seq % 5000)].iter().collect(),
            filter_hmac: None,
            body_hmac: "ab".repeat(32),
            body_bytes: 120,
            reason: None,
        },
        _ => EntryKind::Response {
            request_id: id,
            status: 200,
            record_ids: [format!("{}", seq % 5000)].iter().collect(),
            body_hmac: "cd".repeat(32),
            body_bytes: 4000,
            latency_ms: 12,
            delivery: None,
        },
    }
}

/// Writes the files directly (the writer's format): segments of 64 MiB,
/// a checkpoint every 1,000 entries and at the end, entries spread over
/// the 30 days before now.
fn synth(dir: &Path, n: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let key = key();
    let vk = VerifierKey::from_signing_key(ORIGIN, &key);
    let now = jiff::Timestamp::now();
    let start = now - jiff::SignedDuration::from_hours(24 * 30);
    let step = 30 * 24 * 3600 * 1_000_000_000i128 / i128::from(n.max(1));
    let mut tree = merkle::TreeBuilder::new();
    let mut notes =
        std::io::BufWriter::new(std::fs::File::create(dir.join("checkpoints.notes")).unwrap());
    let mut seg: Option<(std::io::BufWriter<std::fs::File>, u64)> = None;
    let mut seq = 0u64;
    let mut data = 0u64;
    while seq < n {
        let ts = start + jiff::SignedDuration::from_nanos((step * i128::from(seq)) as i64);
        let kind = match &seg {
            Some((_, len)) if *len < 64 << 20 => entry(seq, ts),
            _ => {
                let name = format!("seg-{seq:020}.jsonl");
                seg = Some((
                    std::io::BufWriter::new(std::fs::File::create(dir.join(name)).unwrap()),
                    0,
                ));
                EntryKind::Header {
                    version: ledger::FORMAT_VERSION,
                    origin: ORIGIN.into(),
                    key_id: vk.key_id_hex(),
                }
            }
        };
        let line = Entry { seq, ts, kind }.to_line();
        tree.push(merkle::leaf_hash(&line));
        let (w, len) = seg.as_mut().unwrap();
        w.write_all(&line).unwrap();
        w.write_all(b"\n").unwrap();
        *len += line.len() as u64 + 1;
        data += line.len() as u64 + 1;
        seq += 1;
        if seq.is_multiple_of(1000) || seq == n {
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size: seq,
                root: tree.root(),
            };
            notes.write_all(cp.sign(&key).as_bytes()).unwrap();
        }
    }
    seg.unwrap().0.flush().unwrap();
    notes.flush().unwrap();
    println!("synth: {n} entries, {data} bytes, verifier key {vk}");
}

fn evidence(scan: LedgerScan, ledger: LedgerView) -> Evidence {
    Evidence {
        generated_at: jiff::Timestamp::now(),
        config_path: "warden.toml".into(),
        redcap_time_zone: "UTC".into(),
        tokens: Vec::new(),
        rights: RightsView::FromLedger,
        reauth: Vec::new(),
        ledger,
        scan,
        keys: Vec::new(),
        live: None,
    }
}

fn view(dir: &Path, f: &ledger::Followed, note: Option<String>, how: VerifiedHow) -> LedgerView {
    LedgerView {
        place: dir.display().to_string(),
        verifier_key: VerifierKey::from_signing_key(ORIGIN, &key()).to_string(),
        verified: Ok(VerifySummary {
            entries: f.entries,
            checkpoints: f.checkpoints,
            anchored: f.anchored,
            unanchored: f.entries - f.anchored,
            root: hex::encode(f.root),
        }),
        latest_checkpoint: note,
        how,
        changed: None,
    }
}

fn page() -> html::Page {
    html::Page {
        title: "bench".into(),
        refresh_seconds: None,
    }
}

/// `report`'s ledger work: the scan pass, then `ledger verify`.
fn report(dir: &Path) {
    let t = Instant::now();
    let mut scan = LedgerScan::default();
    ledger::read_from(&durable::OsFs, dir, 0, &mut |e| scan.push(&e)).unwrap();
    let scanned = t.elapsed();
    let r = ledger::verify_dir(
        &durable::OsFs,
        dir,
        &VerifierKey::from_signing_key(ORIGIN, &key()),
    )
    .unwrap();
    let verified = t.elapsed();
    let f = ledger::Followed {
        entries: r.entries,
        checkpoints: r.checkpoints,
        anchored: r.anchored,
        root: r.root,
    };
    let note = ledger::latest_note(&durable::OsFs, dir).unwrap();
    let page = html::render(
        &evidence(scan, view(dir, &f, note, VerifiedHow::Full)),
        &page(),
    );
    println!(
        "report: {} entries; scan {:.2} s, + verify {:.2} s, + HTML {:.2} s = {:.2} s; HTML {} bytes",
        r.entries,
        scanned.as_secs_f64(),
        (verified - scanned).as_secs_f64(),
        (t.elapsed() - verified).as_secs_f64(),
        t.elapsed().as_secs_f64(),
        page.len()
    );
}

/// The dashboard: the first load (full verification and scan), then
/// `append` entries through the writer and a refresh.
fn dashboard(dir: &Path, append: u64) {
    let vk = VerifierKey::from_signing_key(ORIGIN, &key());
    let t = Instant::now();
    let mut scan = LedgerScan::default();
    let (follower, f) =
        ledger::Follower::start(&durable::OsFs, dir, &vk, &mut |e| scan.push(e)).unwrap();
    let mut follower = follower.expect("followable");
    let page1 = html::render(
        &evidence(
            scan.clone(),
            view(
                dir,
                &f,
                follower.latest_note().map(str::to_owned),
                VerifiedHow::Full,
            ),
        ),
        &page(),
    );
    println!(
        "dashboard first load: {} entries in {:.2} s; HTML {} bytes",
        f.entries,
        t.elapsed().as_secs_f64(),
        page1.len()
    );
    let fs: Arc<dyn durable::FileSystem> = Arc::new(durable::OsFs);
    let options = LedgerOptions {
        lock: false,
        ..LedgerOptions::default()
    };
    let w = Instant::now();
    let writer = Ledger::open(fs, dir, key(), options).unwrap();
    for seq in 0..append {
        writer.append(entry(seq, jiff::Timestamp::now())).unwrap();
    }
    writer.close().unwrap();
    println!(
        "(appending {append} entries through the writer: {:.2} s, not counted)",
        w.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let before = f.entries;
    let f = follower
        .advance(&durable::OsFs, &mut |e| scan.push(e))
        .unwrap();
    let how = VerifiedHow::Incremental {
        full_at: jiff::Timestamp::now(),
        new_entries: f.entries - before,
    };
    let page2 = html::render(
        &evidence(
            scan.clone(),
            view(dir, &f, follower.latest_note().map(str::to_owned), how),
        ),
        &page(),
    );
    println!(
        "dashboard refresh: {} new entries verified in {:.3} s (now {} entries, {} checkpoints); HTML {} bytes",
        f.entries - before,
        t.elapsed().as_secs_f64(),
        f.entries,
        f.checkpoints,
        page2.len()
    );
}
