//! How fast the gateway reads a streamed record export, against what the
//! answer must pass through anyway (HMAC-SHA256 of every byte, and a plain
//! memory copy), in one run. `cargo bench -p gateway --bench export_scan`;
//! never part of scripts/test. Figures in docs/benchmarks.md.

use std::time::Instant;

use gateway::export::{RecordIdField, Scanner, Shape};

const RECORDS: usize = 100_000;

fn rows() -> impl Iterator<Item = (String, Vec<(String, String)>)> {
    (1..=RECORDS).map(|i| {
        let fields = (1..20)
            .map(|k| (format!("f{k:02}"), format!("value {k} of record {i}")))
            .collect();
        (i.to_string(), fields)
    })
}

fn json() -> Vec<u8> {
    let mut out = String::from("[");
    for (n, (id, fields)) in rows().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"record_id\":\"{id}\""));
        for (k, v) in fields {
            out.push_str(&format!(",\"{k}\":\"{v}\""));
        }
        out.push('}');
    }
    out.push(']');
    out.into_bytes()
}

fn csv() -> Vec<u8> {
    let mut out = String::from("record_id");
    for k in 1..20 {
        out.push_str(&format!(",f{k:02}"));
    }
    out.push('\n');
    for (id, fields) in rows() {
        out.push_str(&id);
        for (_, v) in fields {
            out.push_str(&format!(",\"{v}\""));
        }
        out.push('\n');
    }
    out.into_bytes()
}

fn xml() -> Vec<u8> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<records>\n");
    for (id, fields) in rows() {
        out.push_str(&format!("<item><record_id><![CDATA[{id}]]></record_id>"));
        for (k, v) in fields {
            out.push_str(&format!("<{k}><![CDATA[{v}]]></{k}>"));
        }
        out.push_str("</item>\n");
    }
    out.push_str("</records>");
    out.into_bytes()
}

/// Best of five runs, in MB/s.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e6
}

fn main() {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` (and
    // nextest, which lists with `--list`) run bench targets too: answer them
    // with an empty list instead of running the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!(
            "export_scan: a benchmark; run it with `cargo bench -p gateway --bench export_scan`"
        );
        return;
    }
    let field = RecordIdField {
        name: "record_id".into(),
        label: "Record ID".into(),
    };
    let key = secrets::FingerprintKey::generate(1);
    for (name, shape, body) in [
        ("json", Shape::Json, json()),
        ("csv", Shape::Csv(b','), csv()),
        ("xml", Shape::Xml, xml()),
    ] {
        let chunks: Vec<&[u8]> = body.chunks(64 * 1024).collect();
        let scan = rate(body.len(), || {
            let mut s = Scanner::new(shape, false, Some(field.clone()));
            for c in &chunks {
                s.feed(c);
            }
            s.finish();
            assert_eq!(s.ids().len(), RECORDS);
        });
        let mac = rate(body.len(), || {
            let mut m = key.hmac_stream();
            for c in &chunks {
                m.update(c);
            }
            std::hint::black_box(m.finish_hex());
        });
        let copy = rate(body.len(), || {
            let mut out = Vec::with_capacity(body.len());
            for c in &chunks {
                out.extend_from_slice(c);
            }
            std::hint::black_box(out);
        });
        println!(
            "{name}: {:.1} MB, scan {scan:.0} MB/s, HMAC-SHA256 {mac:.0} MB/s, copy {copy:.0} MB/s (scan / HMAC {:.2})",
            body.len() as f64 / 1e6,
            scan / mac
        );
    }
}
