//! `trace RECORD` end to end against redcap-sandbox: a record imported and
//! exported through the gateway is traced from the client to each ledger
//! entry naming it — whose inclusion proof is the one `ledger prove
//! inclusion` gives against the latest checkpoint — to REDCap's rows
//! beside each call; a record written straight to the sandbox with the
//! site account's token is REDCap rows no call explains (exit 1); an
//! unknown record or study is a clear error. No token value appears in
//! anything printed.

mod common;

use std::time::Duration;

use common::study::{Study, study};
use common::{Serving, issue_key, text, warden};
use serde_json::{Value, json};

fn trace(dir: &std::path::Path, args: &[&str], tokens: &[String]) -> (i32, Value, String) {
    let mut all_args = vec!["trace"];
    all_args.extend_from_slice(args);
    let out = warden(dir, &all_args, None);
    let all = text(&out);
    for t in tokens {
        assert!(
            !all.contains(t.as_str()),
            "a token value was printed:\n{all}"
        );
        assert!(
            !all.contains(&t.to_lowercase()),
            "a token value was printed:\n{all}"
        );
    }
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, all)
}

#[test]
fn a_record_is_traced_from_the_client_through_proved_entries_to_redcaps_rows() {
    let Study {
        _tmp,
        dir,
        s,
        site,
        tokens,
        key,
        port,
        ..
    } = study(
        "\n[[client]]\nname = \"writer\"\naccount = \"heart-site-a\"\nallow = [\"record:import\"]\nwrite_reason = \"optional\"\n",
    );
    let writer = issue_key(&dir, "writer");
    let serving = Serving::start(&dir, port);
    let gateway = format!("http://127.0.0.1:{port}/api/");
    let (status, body) = s.post(
        &gateway,
        &[
            ("token", writer.as_str()),
            ("content", "record"),
            ("format", "json"),
            (
                "data",
                &json!([{"record_id": "1", "age": "62"}]).to_string(),
            ),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.post(
        &gateway,
        &[
            ("token", key.as_str()),
            ("content", "record"),
            ("format", "json"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    // The bypass: record 2 written straight to REDCap with the site token.
    let (status, body) = s.call(&[
        ("token", site.as_str()),
        ("content", "record"),
        ("format", "json"),
        (
            "data",
            &json!([{"record_id": "2", "age": "40"}]).to_string(),
        ),
    ]);
    assert_eq!(status, 200, "{body}");
    // The gateway signs a checkpoint within a second of its entries.
    std::thread::sleep(Duration::from_millis(2500));

    let (code, t, all) = trace(&dir, &["1", "--json"], &tokens);
    assert_eq!(code, 0, "{all}");
    assert_eq!(t["study"], "heart", "{all}");
    let calls = t["calls"].as_array().unwrap();
    let clients: Vec<&str> = calls
        .iter()
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    // The gateway's own metadata read (client `gateway`) names no record.
    assert_eq!(clients, ["writer", "app"], "{all}");
    assert_eq!(calls[0]["action"], "import");
    assert_eq!(calls[0]["status"], 200);
    assert_eq!(t["entries_naming_record"], 3, "{all}");
    let size = t["checkpoint"][0].as_u64().unwrap();
    let root = t["checkpoint"][1].as_str().unwrap();
    // Each proof is the one `ledger prove inclusion` gives.
    for call in calls {
        // The export's request names no record; its answer does.
        for leaf in [&call["request"], &call["response"]] {
            if leaf["names_record"] == false {
                assert!(leaf["proof"].is_null());
                continue;
            }
            let seq = leaf["seq"].as_u64().unwrap();
            let proof = &leaf["proof"];
            assert!(proof.is_object(), "entry {seq} unproved: {all}");
            let out = warden(
                &dir,
                &[
                    "ledger",
                    "prove",
                    "inclusion",
                    &seq.to_string(),
                    "--size",
                    &size.to_string(),
                ],
                None,
            );
            assert!(out.status.success(), "{}", text(&out));
            let p: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(p["root"], root);
            assert_eq!(p["proof"], proof["path"], "entry {seq}");
            assert_eq!(p["leaf_hash"], proof["leaf_hash"]);
        }
        // REDCap's rows beside each call: the import's record row, the
        // export's row.
        assert!(!call["redcap_rows"].as_array().unwrap().is_empty(), "{all}");
    }
    let rows = calls[0]["redcap_rows"].to_string();
    assert!(rows.contains("Update record (API) 1"), "{all}");
    assert!(
        calls[1]["redcap_rows"]
            .to_string()
            .contains("Data export (API)"),
        "{all}"
    );
    // The project owner created record 1 before the study was governed:
    // shown, not a finding.
    assert_eq!(t["findings"], 0, "{all}");

    // The human form says the same.
    let (code, _, all) = trace(&dir, &["1"], &tokens);
    assert_eq!(code, 0, "{all}");
    assert!(
        all.contains("client `writer` -> account `heart-site-a`"),
        "{all}"
    );
    assert!(all.contains("inclusion proof verified"), "{all}");

    // Record 2 never passed the gateway: REDCap's row by the site account
    // is unexplained, the token was used outside the gateway.
    let (code, t, all) = trace(&dir, &["2", "--json"], &tokens);
    assert_eq!(code, 1, "{all}");
    assert_eq!(t["calls"], json!([]), "{all}");
    assert_eq!(t["findings"], 1, "{all}");
    assert_eq!(t["unexplained"][0]["account"], "heart-site-a", "{all}");
    let (code, _, all) = trace(&dir, &["2"], &tokens);
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("its token was used outside the gateway"),
        "{all}"
    );

    // Clear errors.
    let (code, _, all) = trace(&dir, &["999"], &tokens);
    assert_eq!(code, 2, "{all}");
    assert!(
        all.contains("record `999` of study `heart` is named by no call"),
        "{all}"
    );
    let (code, _, all) = trace(&dir, &["1", "--study", "nope"], &tokens);
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("no [[study]] named `nope`"), "{all}");
    // --since after every call: nothing is left to show.
    let (code, _, all) = trace(&dir, &["1", "--since", "2099-01-01"], &tokens);
    assert_eq!(code, 2, "{all}");
    assert!(all.contains("since 2099-01-01T00:00:00Z"), "{all}");
    drop(serving);
}
