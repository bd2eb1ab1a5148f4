//! Site accounts through the gateway: the DAG guard, quarantine, exports
//! the gateway cannot check, and record ids learned from imports.

mod common;

use common::*;
use durable::OsFs;
use governance::accounts::AccountStatusFile;
use ledger::EntryKind;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restricted_site_account_exports_only_its_site_and_no_dag_column() {
    let w = World::new().await;
    let (gw, _) = w.start_on_disk().await;
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &w.keys["site-app"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let rows: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "only site A's record: {b}"
    );
    assert_eq!(rows[0]["record_id"], "3");
    assert!(!b.contains("redcap_data_access_group"));
    gw.shutdown().await.unwrap();
}

/// Someone updates the site account's rights without `data_access_group`:
/// REDCap silently removes it from its DAG.
async fn drop_from_dag(w: &World) {
    let rights = json!([{"username": "svc_site", "api_export": 1}]).to_string();
    let r = w
        .http
        .post(format!("{}/api/", w.sandbox_base))
        .form(&[
            ("token", w.owner.as_str()),
            ("content", "user"),
            ("format", "json"),
            ("data", &rights),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn assert_withheld_and_quarantined(
    w: &World,
    gw: &gateway::RunningGateway,
    ledger_dir: &std::path::Path,
) {
    let (s, b) = w
        .call(
            gw,
            &[
                ("token", &w.keys["site-app"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(b.contains("withheld this export"), "{b}");
    assert!(
        !b.contains("\"record_id\""),
        "no data may reach the client: {b}"
    );
    let (s, b) = w
        .call(
            gw,
            &[
                ("token", &w.keys["site-app"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 403, "{b}");
    assert!(b.contains("quarantined account"), "{b}");
    let status = AccountStatusFile::new(&w.dir.join("data/account-status.json"));
    assert!(
        status.quarantined().unwrap().contains_key("heart-site-a"),
        "the quarantine outlives the process"
    );
    let alert = entries(&OsFs, ledger_dir)
        .into_iter()
        .find_map(|k| match k {
            EntryKind::Alert { code, message } if code == "dag_guard" => Some(message),
            _ => None,
        });
    assert!(alert.expect("a dag_guard alert").contains("heart-site-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_account_dropped_from_its_dag_is_withheld_and_quarantined() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    drop_from_dag(&w).await;
    assert_withheld_and_quarantined(&w, &gw, &ledger_dir).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_account_made_administrator_is_withheld_and_quarantined() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let r = w
        .http
        .post(format!("{}/sandbox/users", w.sandbox_base))
        .bearer_auth(ADMIN)
        .json(&json!({"username": "svc_site", "administrator": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_withheld_and_quarantined(&w, &gw, &ledger_dir).await;
    // Releasing the account lets calls through again (the guard still
    // watches every export).
    AccountStatusFile::new(&w.dir.join("data/account-status.json"))
        .release("heart-site-a")
        .unwrap();
    let r = w
        .http
        .post(format!("{}/sandbox/users", w.sandbox_base))
        .bearer_auth(ADMIN)
        .json(&json!({"username": "svc_site", "administrator": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, b) = w
        .call(
            &gw,
            &[
                ("token", &w.keys["site-app"]),
                ("content", "record"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{b}");
    gw.shutdown().await.unwrap();
}

/// Issue #19, item 0: with the site account dropped from its DAG, no method
/// that returns record data or record-linked content leaks another site's
/// records — each is refused before anything is forwarded, or (flat
/// exports, which the guard reads) withheld.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drifted_site_account_leaks_nothing_through_any_method() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    drop_from_dag(&w).await;
    let forwarded = || {
        entries(&OsFs, &ledger_dir)
            .iter()
            .filter(|k| matches!(k, EntryKind::Request { .. }))
            .count()
    };
    let before = forwarded();
    let key = w.keys["site-app"].clone();
    let cases: &[&[(&str, &str)]] = &[
        &[("content", "record"), ("type", "eav"), ("format", "json")],
        &[("content", "record"), ("type", "eav"), ("format", "csv")],
        &[("content", "record"), ("type", "eav"), ("format", "xml")],
        &[("content", "record"), ("format", "odm")],
        &[
            ("content", "record"),
            ("format", "csv"),
            ("rawOrLabelHeaders", "label"),
        ],
        &[
            ("content", "report"),
            ("report_id", "1"),
            ("format", "json"),
        ],
        &[("content", "pdf"), ("record", "1")],
        &[
            ("content", "file"),
            ("action", "export"),
            ("record", "1"),
            ("field", "consent"),
        ],
        &[
            ("content", "fileinfo"),
            ("record", "1"),
            ("field", "consent"),
        ],
        &[
            ("content", "filesize"),
            ("record", "1"),
            ("field", "consent"),
        ],
        &[
            ("content", "fileRepository"),
            ("action", "export"),
            ("doc_id", "1"),
        ],
        &[("content", "log"), ("format", "json")],
        &[
            ("content", "participantList"),
            ("instrument", "baseline"),
            ("format", "json"),
        ],
        &[
            ("content", "surveyLink"),
            ("record", "1"),
            ("instrument", "baseline"),
        ],
        &[
            ("content", "surveyAccessCode"),
            ("record", "1"),
            ("instrument", "baseline"),
        ],
        &[("content", "surveyQueueLink"), ("record", "1")],
        &[
            ("content", "surveyReturnCode"),
            ("record", "1"),
            ("instrument", "baseline"),
        ],
        &[("content", "project_xml"), ("returnRecords", "true")],
        &[("content", "tableau")],
        &[("content", "mycap")],
    ];
    for params in cases {
        let mut form: Vec<(&str, &str)> = vec![("token", key.as_str())];
        form.extend_from_slice(params);
        let (s, b) = w.call(&gw, &form).await;
        assert_eq!(s, 403, "{params:?}: {b}");
        assert!(b.contains("cannot check"), "{params:?}: {b}");
        assert!(!b.contains("record_id"), "{params:?}: {b}");
    }
    assert_eq!(forwarded(), before, "none of them reached REDCap");
    // Flat exports are read: withheld, and the account quarantined.
    assert_withheld_and_quarantined(&w, &gw, &ledger_dir).await;
    gw.shutdown().await.unwrap();
}

/// Extra parameters, the record imported, the expected status and body.
type ImportCase = (
    &'static [(&'static str, &'static str)],
    &'static str,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imports_report_record_ids_to_the_ledger_in_the_shape_the_client_asked() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let key = w.keys["site-app"].as_str();
    let cases: [ImportCase; 6] = [
        (&[], "8", 200, "{\"count\": 1}"),
        (
            &[("returnFormat", "xml")],
            "9",
            200,
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><count>1</count>",
        ),
        (&[("returnContent", "nothing")], "10", 200, ""),
        (&[("returnContent", "ids")], "11", 200, "[\"11\"]"),
        (&[("backgroundProcess", "0")], "12", 200, "{\"count\": 1}"),
        (&[("backgroundProcess", "TRUE")], "13", 400, ""),
    ];
    for (extra, id, status, body) in cases {
        let data = format!(r#"[{{"record_id":"{id}","age":"1"}}]"#);
        let mut params = vec![
            ("token", key),
            ("content", "record"),
            ("format", "json"),
            ("data", data.as_str()),
        ];
        params.extend_from_slice(extra);
        let (s, b) = w.call(&gw, &params).await;
        assert_eq!(s, status, "{extra:?}: {b}");
        if status == 200 {
            assert_eq!(b, body, "{extra:?}");
        }
    }
    gw.shutdown().await.unwrap();
    let ids: Vec<Vec<String>> = entries(&OsFs, &ledger_dir)
        .into_iter()
        .filter_map(|k| match k {
            EntryKind::Response {
                status: 200,
                record_ids,
                ..
            } => Some(record_ids.to_vec()),
            _ => None,
        })
        .collect();
    for id in ["8", "9", "10", "11", "12"] {
        assert!(
            ids.iter().any(|r| r == &[id.to_string()]),
            "record {id} missing from the ledger: {ids:?}"
        );
    }
}

/// A lapsed account (`reauth sweep` marks it in the status file while the
/// gateway runs) is refused with REDCap's 403 shape and a message naming
/// the lapse, counted as a `denied` entry whose reason names it; an
/// approval clearing the lapse lets calls through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_account_is_refused_until_restored() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let status = AccountStatusFile::new(&w.dir.join("data/account-status.json"));
    status
        .lapse(
            "heart-site-a",
            "not re-approved by its due date 2026-12-01",
            "ana",
        )
        .unwrap();
    let export = [
        ("token", w.keys["site-app"].as_str()),
        ("content", "record"),
        ("format", "json"),
    ];
    let (s, b) = w.call(&gw, &export).await;
    assert_eq!(s, 403, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("re-authorisation lapsed"),
        "{b}"
    );
    assert!(
        b.contains("not re-approved by its due date 2026-12-01"),
        "{b}"
    );
    assert!(status.restore("heart-site-a").unwrap().is_some());
    let (s, b) = w.call(&gw, &export).await;
    assert_eq!(s, 200, "{b}");
    gw.shutdown().await.unwrap();
    let denied = entries(&OsFs, &ledger_dir).into_iter().any(|k| {
        matches!(k, EntryKind::Denied { reason, .. }
            if reason == "account lapsed: not re-approved by its due date 2026-12-01")
    });
    assert!(denied, "a denied entry names the lapse");
}

/// A retired account (`accounts retire` marks it in the status file) is
/// refused with REDCap's 403 shape and a message saying it was retired,
/// by whom and why, counted as a `denied` entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retired_account_is_refused_with_a_clear_message() {
    let w = World::new().await;
    let (gw, ledger_dir) = w.start_on_disk().await;
    let status = AccountStatusFile::new(&w.dir.join("data/account-status.json"));
    status
        .retire(
            "heart-site-a",
            "site closed",
            "ana",
            "Export Project Info got REDCap's invalid-token answer",
        )
        .unwrap();
    let export = [
        ("token", w.keys["site-app"].as_str()),
        ("content", "record"),
        ("format", "json"),
    ];
    let (s, b) = w.call(&gw, &export).await;
    assert_eq!(s, 403, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("no longer serves account \"heart-site-a\"")
            && msg.contains("retired on")
            && msg.contains("by ana (site closed)"),
        "{b}"
    );
    gw.shutdown().await.unwrap();
    let denied = entries(&OsFs, &ledger_dir)
        .into_iter()
        .any(|k| matches!(k, EntryKind::Denied { reason, .. } if reason == "account retired"));
    assert!(denied, "a denied entry names the retirement");
}
