//! Export / Import / Delete File (`content=file`): bytes in and out,
//! headers, logging, rights, DAG scoping, every error by status and exact
//! text in the three `returnFormat` shapes, persistence across restarts,
//! and files leaving with their record.

mod common;

use common::Sandbox;
use redcap::ApiError as E;
use reqwest::Method;
use serde_json::{Value, json};

/// The body REDCap writes for `message` in `return_format` (§1.6).
fn error_body(return_format: &str, message: &str) -> String {
    match return_format {
        "json" => {
            let quoted = serde_json::to_string(message).unwrap().replace('/', "\\/");
            format!("{{\"error\":{quoted}}}")
        }
        "csv" => format!("ERROR: {message}"),
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>{message}</error></hash>"
        ),
    }
}

/// A file to upload: name, declared type, bytes.
type Upload<'a> = (&'a str, Option<&'a str>, Vec<u8>);

/// Sends the call once per returnFormat (multipart when `file` is given or
/// `multipart` is set) and checks status and exact body.
async fn check(
    sb: &Sandbox,
    label: &str,
    params: &[(&str, &str)],
    multipart: bool,
    file: Option<Upload<'_>>,
    expect: &E,
) {
    for rf in ["json", "csv", "xml"] {
        let mut p = params.to_vec();
        p.push(("returnFormat", rf));
        let a = if multipart || file.is_some() {
            sb.post_multipart(&p, file.clone()).await
        } else {
            sb.post(&p).await
        };
        assert_eq!(a.status, expect.status(), "{label} ({rf}): {}", a.body);
        assert_eq!(a.body, error_body(rf, &expect.message()), "{label} ({rf})");
    }
}

fn user(username: &str, extra: Value) -> Value {
    let mut row = json!({ "username": username });
    for (k, v) in extra.as_object().unwrap() {
        row[k] = v.clone();
    }
    row
}

/// Project 1: `consent` (file, demographics), `photo` (file, identifier,
/// visit), `name` (text, identifier); records 1 (no DAG), 2 (site_a),
/// 3 (site_b).
async fn project(sb: &Sandbox) -> String {
    let admin = sb.create_project().await;
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "Record ID"},
        {"field_name": "name", "form_name": "demographics", "field_type": "text", "field_label": "Name", "identifier": "y"},
        {"field_name": "consent", "form_name": "demographics", "field_type": "file", "field_label": "Consent"},
        {"field_name": "photo", "form_name": "visit", "field_type": "file", "field_label": "Photo", "identifier": "y"},
        {"field_name": "note", "form_name": "visit", "field_type": "text", "field_label": "Note"}
    ]);
    let a = sb.import(&admin, "metadata", md, &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "5"));
    let a = sb
        .import(
            &admin,
            "dag",
            json!([{"data_access_group_name": "Site A", "unique_group_name": ""},
                   {"data_access_group_name": "Site B", "unique_group_name": ""}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!(a.body, "2");
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "name": "Ann"},
                   {"record_id": "2", "redcap_data_access_group": "site_a"},
                   {"record_id": "3", "redcap_data_access_group": "site_b"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    admin
}

async fn upload(
    sb: &Sandbox,
    token: &str,
    record: &str,
    field: &str,
    file: Upload<'_>,
) -> common::Answer {
    sb.post_multipart(
        &[
            ("token", token),
            ("content", "file"),
            ("action", "import"),
            ("record", record),
            ("field", field),
            ("returnFormat", "json"),
        ],
        Some(file),
    )
    .await
}

async fn download(sb: &Sandbox, token: &str, record: &str, field: &str) -> common::BytesAnswer {
    sb.post_bytes(&[
        ("token", token),
        ("content", "file"),
        ("action", "export"),
        ("record", record),
        ("field", field),
        ("returnFormat", "json"),
    ])
    .await
}

fn edocs(sb: &Sandbox) -> Vec<String> {
    match std::fs::read_dir(sb.dir.join("edocs")) {
        Ok(d) => {
            let mut v: Vec<String> = d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn files_go_in_and_come_out_byte_for_byte_and_are_logged() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    let binary: Vec<u8> = (0..=255u8).chain([0, 0xff, 0xfe]).collect();

    // Import: an empty 200 in the returnFormat's type.
    let a = upload(
        &sb,
        &admin,
        "1",
        "consent",
        ("scan.bin", Some("application/x-scan"), binary.clone()),
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (200, ""));
    assert_eq!(a.content_type, "application/json; charset=utf-8");

    // Export: the same bytes, the declared type with the name, REDCap's CSP.
    let d = download(&sb, &admin, "1", "consent").await;
    assert_eq!(d.status, 200);
    assert_eq!(d.bytes, binary);
    assert_eq!(
        d.header("content-type"),
        "application/x-scan; name=\"scan.bin\""
    );
    assert_eq!(d.header("content-security-policy"), "script-src 'none'");

    // Without a declared type, one from the extension; text/* gets PHP's charset.
    let a = upload(
        &sb,
        &admin,
        "1",
        "photo",
        ("it's.txt", None, b"hello\n".to_vec()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let d = download(&sb, &admin, "1", "photo").await;
    assert_eq!(d.bytes, b"hello\n");
    assert_eq!(
        d.header("content-type"),
        "text/plain; name=\"its.txt\";charset=UTF-8"
    );

    // Export Records shows the file's name (REDCap 15.7.6's getData swaps
    // `[document]` for it), EAV the stored doc id (its EAV path reads
    // redcap_data as it is); Import Records leaves file fields alone.
    let rows = sb
        .call(
            &admin,
            "record",
            &[("records", "1"), ("fields", "record_id,consent,photo")],
        )
        .await
        .json();
    assert_eq!(
        rows,
        json!([{"record_id": "1", "consent": "scan.bin", "photo": "its.txt"}])
    );
    let eav = sb
        .call(
            &admin,
            "record",
            &[("records", "1"), ("fields", "consent"), ("type", "eav")],
        )
        .await
        .json();
    assert_eq!(eav[0]["field_name"], "consent", "{eav}");
    assert!(
        eav[0]["value"]
            .as_str()
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "the doc id: {eav}"
    );
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "consent": "hacked", "photo": ""}]),
            &[("overwriteBehavior", "overwrite")],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}));
    assert_eq!(download(&sb, &admin, "1", "consent").await.bytes, binary);
    assert_eq!(download(&sb, &admin, "1", "photo").await.bytes, b"hello\n");

    // A new upload replaces the file; the old bytes leave the disk.
    assert_eq!(edocs(&sb).len(), 2);
    let a = upload(
        &sb,
        &admin,
        "1",
        "consent",
        ("v2.pdf", Some("application/pdf"), b"%PDF-2".to_vec()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(download(&sb, &admin, "1", "consent").await.bytes, b"%PDF-2");
    assert_eq!(edocs(&sb).len(), 2);

    // Delete: an empty 200; the field is empty again, the bytes are gone.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "file"),
            ("action", "delete"),
            ("record", "1"),
            ("field", "consent"),
            ("returnFormat", "csv"),
        ])
        .await;
    assert_eq!(
        (a.status, a.body.as_str(), a.content_type.as_str()),
        (200, "", "text/csv; charset=utf-8")
    );
    let rows = sb
        .call(&admin, "record", &[("records", "1"), ("fields", "consent")])
        .await
        .json();
    assert_eq!(rows, json!([{"consent": ""}]));
    assert_eq!(edocs(&sb).len(), 1);

    // The log (newest first): REDCap's descriptions, the record named.
    let log = sb
        .call(&admin, "log", &[("record", "1"), ("logtype", "record")])
        .await
        .json();
    let rows: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["details"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows[0],
        (
            "Delete uploaded document (API) 1".to_owned(),
            "consent".to_owned()
        )
    );
    assert_eq!(rows[1].0, "Upload document (API) 1");
    assert!(rows[1].1.starts_with("consent = '"), "{rows:?}");
    let manage = sb
        .call(&admin, "log", &[("logtype", "manage")])
        .await
        .json();
    let downloads = manage
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["details"] == "Download file (API)" && r["record"] == "1")
        .count();
    assert_eq!(downloads, 5);
}

#[tokio::test]
async fn every_file_error_by_status_and_text() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    let full_forms = json!({"demographics": 1, "visit": 1});
    let no_export = sb
        .user_with_token(
            1,
            user(
                "no_export",
                json!({"api_import": 1, "record_delete": 1, "forms": full_forms}),
            ),
        )
        .await;
    let no_import = sb
        .user_with_token(1, user("no_import", json!({"api_export": 1, "record_delete": 1, "forms": full_forms, "forms_export": full_forms})))
        .await;
    let no_delete = sb
        .user_with_token(1, user("no_delete", json!({"api_export": 1, "api_import": 1, "forms": full_forms, "forms_export": full_forms})))
        .await;
    let no_export_forms = sb
        .user_with_token(1, user("no_export_forms", json!({"api_export": 1, "forms": full_forms, "forms_export": {"demographics": 0, "visit": 0}})))
        .await;
    let visit_only = sb
        .user_with_token(
            1,
            user(
                "visit_only",
                json!({"api_export": 1, "forms_export": {"demographics": 0, "visit": 1}}),
            ),
        )
        .await;
    let deid = sb
        .user_with_token(
            1,
            user(
                "deid",
                json!({"api_export": 1, "forms_export": {"demographics": 2, "visit": 2}}),
            ),
        )
        .await;
    let read_only = sb
        .user_with_token(1, user("read_only", json!({"api_export": 1, "api_import": 1, "record_delete": 1, "forms": {"demographics": 2, "visit": 2}})))
        .await;
    let dag_a = sb
        .user_with_token(1, user("dag_a", json!({"api_export": 1, "api_import": 1, "record_delete": 1, "data_access_group": "site_a", "forms": full_forms, "forms_export": full_forms})))
        .await;
    let txt = || Some(("a.txt", Some("text/plain"), b"x".to_vec()));
    let call = |token: &'static str,
                action: &'static str,
                record: &'static str,
                field: &'static str|
     -> Vec<(&'static str, &'static str)> {
        vec![
            ("token", token),
            ("content", "file"),
            ("action", action),
            ("record", record),
            ("field", field),
        ]
    };
    let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
    let (admin, no_export, no_import, no_delete) = (
        leak(&admin),
        leak(&no_export),
        leak(&no_import),
        leak(&no_delete),
    );
    let (no_export_forms, visit_only, deid, read_only, dag_a) = (
        leak(&no_export_forms),
        leak(&visit_only),
        leak(&deid),
        leak(&read_only),
        leak(&dag_a),
    );

    // A file on record 1 (consent, photo) and on record 2 (site_a) and 3 (site_b).
    for (r, f) in [
        ("1", "consent"),
        ("1", "photo"),
        ("2", "consent"),
        ("3", "consent"),
    ] {
        assert_eq!(
            upload(&sb, admin, r, f, ("f.txt", None, b"f".to_vec()))
                .await
                .status,
            200
        );
    }

    // Missing record (REDCap escapes the name on export only).
    check(
        &sb,
        "export, no record",
        &call(admin, "export", "<9>", "consent"),
        false,
        None,
        &E::FileRecordMissing {
            record: "<9>".into(),
        },
    )
    .await;
    assert_eq!(
        E::FileRecordMissing {
            record: "<9>".into()
        }
        .message(),
        "The record \"&lt;9&gt;\" does not exist"
    );
    check(
        &sb,
        "import, no record",
        &call(admin, "import", "9", "consent"),
        false,
        txt(),
        &E::FileUploadRecordMissing { record: "9".into() },
    )
    .await;
    assert_eq!(
        E::FileUploadRecordMissing { record: "9".into() }.message(),
        "The record '9' does not exist. It must exist to upload a file"
    );
    check(
        &sb,
        "delete, no record",
        &call(admin, "delete", "9", "consent"),
        false,
        None,
        &E::FileDeleteRecordMissing { record: "9".into() },
    )
    .await;
    assert_eq!(
        E::FileDeleteRecordMissing { record: "9".into() }.message(),
        "The record '9' does not exist"
    );

    // Not a file field: a text field, and no field at all.
    for (action, field) in [
        ("export", "name"),
        ("import", "note"),
        ("delete", "nope"),
        ("export", ""),
    ] {
        let file = (action == "import").then(|| ("a.txt", None, b"x".to_vec()));
        check(
            &sb,
            &format!("{action} {field:?}"),
            &call(admin, action, "1", leak(field)),
            false,
            file,
            &E::NotAFileField {
                field: field.into(),
            },
        )
        .await;
    }
    assert_eq!(
        E::NotAFileField {
            field: "note".into()
        }
        .message(),
        "The field 'note' does not exist or is not a 'file' field"
    );

    // No file there.
    let a = sb
        .post(&[
            ("token", admin),
            ("content", "file"),
            ("action", "delete"),
            ("record", "1"),
            ("field", "photo"),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    check(
        &sb,
        "export, no file",
        &call(admin, "export", "1", "photo"),
        false,
        None,
        &E::NoFileToDownload,
    )
    .await;
    check(
        &sb,
        "delete, no file",
        &call(admin, "delete", "1", "photo"),
        false,
        None,
        &E::NoFileToDelete,
    )
    .await;
    assert_eq!(
        E::NoFileToDownload.message(),
        "There is no file to download for this record"
    );
    assert_eq!(
        E::NoFileToDelete.message(),
        "There is no file to delete for this record"
    );

    // Import without a `file` part: multipart without one, a form body, a
    // part under another name; a part without a file name.
    check(
        &sb,
        "no file part",
        &call(admin, "import", "1", "consent"),
        true,
        None,
        &E::NoFileUploaded,
    )
    .await;
    check(
        &sb,
        "form body",
        &call(admin, "import", "1", "consent"),
        false,
        None,
        &E::NoFileUploaded,
    )
    .await;
    assert_eq!(E::NoFileUploaded.message(), "No valid file was uploaded");
    check(
        &sb,
        "empty file name",
        &call(admin, "import", "1", "consent"),
        false,
        Some(("", None, b"x".to_vec())),
        &E::FileUploadProblem,
    )
    .await;

    // Entry gates (§1.6): export, import, and delete's Delete Record right.
    check(
        &sb,
        "export without API Export",
        &call(no_export, "export", "1", "consent"),
        false,
        None,
        &E::NoApiExport,
    )
    .await;
    check(
        &sb,
        "import without API Import",
        &call(no_import, "import", "1", "consent"),
        false,
        txt(),
        &E::NoApiImport,
    )
    .await;
    check(
        &sb,
        "delete without Delete Record",
        &call(no_delete, "delete", "1", "consent"),
        false,
        None,
        &E::NoDeleteRecord,
    )
    .await;
    check(
        &sb,
        "delete without API Import",
        &call(no_import, "delete", "1", "consent"),
        false,
        None,
        &E::NoApiImport,
    )
    .await;

    // Export rights: none at all, none on the field's form, de-identified on an identifier.
    check(
        &sb,
        "no export rights",
        &call(no_export_forms, "export", "1", "consent"),
        false,
        None,
        &E::NoExportAccess,
    )
    .await;
    check(
        &sb,
        "no export right on the form",
        &call(visit_only, "export", "1", "consent"),
        false,
        None,
        &E::NoExportAccess,
    )
    .await;
    check(
        &sb,
        "de-identified, identifier field",
        &call(deid, "export", "2", "photo"),
        false,
        None,
        &E::FileIdentifierExport,
    )
    .await;
    assert_eq!(
        download(&sb, deid, "1", "consent").await.status,
        200,
        "not an identifier"
    );

    // Form rights for writes.
    check(
        &sb,
        "import, read-only form",
        &call(read_only, "import", "1", "consent"),
        false,
        txt(),
        &E::FileFormNotEditable {
            field: "consent".into(),
        },
    )
    .await;
    check(
        &sb,
        "delete, read-only form",
        &call(read_only, "delete", "1", "consent"),
        false,
        None,
        &E::FileFormNotEditable {
            field: "consent".into(),
        },
    )
    .await;

    // Bad action.
    check(
        &sb,
        "bad action",
        &call(admin, "switch", "1", "consent"),
        false,
        None,
        &E::InvalidAction,
    )
    .await;
    check(
        &sb,
        "bogus action",
        &call(admin, "bogus", "1", "consent"),
        false,
        None,
        &E::InvalidAction,
    )
    .await;

    // DAG: a site_a user sees record 2 only; 1 (no DAG) and 3 (site_b) are missing.
    assert_eq!(download(&sb, dag_a, "2", "consent").await.bytes, b"f");
    for r in ["1", "3"] {
        let rec = leak(r);
        check(
            &sb,
            "DAG export",
            &call(dag_a, "export", rec, "consent"),
            false,
            None,
            &E::FileRecordMissing { record: r.into() },
        )
        .await;
        check(
            &sb,
            "DAG import",
            &call(dag_a, "import", rec, "consent"),
            false,
            txt(),
            &E::FileUploadRecordMissing { record: r.into() },
        )
        .await;
        check(
            &sb,
            "DAG delete",
            &call(dag_a, "delete", rec, "consent"),
            false,
            None,
            &E::FileDeleteRecordMissing { record: r.into() },
        )
        .await;
    }
    assert_eq!(
        download(&sb, admin, "3", "consent").await.bytes,
        b"f",
        "untouched"
    );
    assert_eq!(
        upload(&sb, dag_a, "2", "consent", ("g.txt", None, b"g".to_vec()))
            .await
            .status,
        200
    );

    // Analysis/Cleanup: writes refused (403), downloads still work.
    let (s, v) = sb
        .admin(
            Method::POST,
            "/sandbox/projects/1/status",
            Some(json!({"status": 2})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    check(
        &sb,
        "import in analysis",
        &call(admin, "import", "1", "consent"),
        false,
        txt(),
        &E::FileUploadAnalysisCleanup,
    )
    .await;
    check(
        &sb,
        "delete in analysis",
        &call(admin, "delete", "1", "consent"),
        false,
        None,
        &E::FileDeleteAnalysisCleanup,
    )
    .await;
    assert_eq!(E::FileUploadAnalysisCleanup.status(), 403);
    assert_eq!(
        E::FileDeleteAnalysisCleanup.message(),
        "The file cannot be deleted because the project is in Analysis/Cleanup status."
    );
    assert_eq!(download(&sb, admin, "1", "consent").await.status, 200);
}

#[tokio::test]
async fn files_survive_a_restart_and_leave_with_their_record() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(
        upload(&sb, &admin, "1", "consent", ("big.dat", None, big.clone()))
            .await
            .status,
        200
    );
    assert_eq!(
        upload(&sb, &admin, "1", "photo", ("p.png", None, b"png".to_vec()))
            .await
            .status,
        200
    );
    assert_eq!(
        upload(
            &sb,
            &admin,
            "2",
            "consent",
            ("c.txt", None, b"two".to_vec())
        )
        .await
        .status,
        200
    );
    assert_eq!(
        upload(
            &sb,
            &admin,
            "2",
            "photo",
            ("d.txt", None, b"photo2".to_vec())
        )
        .await
        .status,
        200
    );

    let sb = sb.restart().await;
    let d = download(&sb, &admin, "1", "consent").await;
    assert_eq!(d.bytes, big);
    assert_eq!(
        d.header("content-type"),
        "application/octet-stream; name=\"big.dat\""
    );
    assert_eq!(
        download(&sb, &admin, "1", "photo")
            .await
            .header("content-type"),
        "image/png; name=\"p.png\""
    );
    assert_eq!(edocs(&sb).len(), 4);

    // Deleting record 1 removes both its files, on disk too.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "record"),
            ("action", "delete"),
            ("records[0]", "1"),
        ])
        .await;
    assert_eq!(a.body, "1");
    assert_eq!(edocs(&sb).len(), 2);
    // Deleting one instrument's data removes only that instrument's file.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "record"),
            ("action", "delete"),
            ("records[0]", "2"),
            ("instrument", "visit"),
        ])
        .await;
    assert_eq!(a.body, "1");
    assert_eq!(edocs(&sb).len(), 1);
    assert_eq!(download(&sb, &admin, "2", "consent").await.bytes, b"two");
    let a = download(&sb, &admin, "2", "photo").await;
    assert_eq!(
        (a.status, a.text()),
        (400, error_body("json", &E::NoFileToDownload.message()))
    );

    // And the state agrees after another restart.
    let sb = sb.restart().await;
    assert_eq!(download(&sb, &admin, "2", "consent").await.bytes, b"two");
    let a = upload(&sb, &admin, "1", "consent", ("x.txt", None, b"x".to_vec())).await;
    assert_eq!(a.status, 400, "record 1 is gone: {}", a.body);
    assert_eq!(edocs(&sb).len(), 1);

    // Bytes lost from the disk behind the sandbox's back: REDCap's answer.
    let id = edocs(&sb).pop().unwrap();
    let path = sb.dir.join("edocs").join(&id);
    std::fs::remove_file(&path).unwrap();
    let a = download(&sb, &admin, "2", "consent").await;
    let expected = E::StoredFileMissing {
        path: path.display().to_string(),
        name: "c.txt".into(),
    };
    assert_eq!(a.status, 400);
    assert_eq!(a.text(), error_body("json", &expected.message()));
}
