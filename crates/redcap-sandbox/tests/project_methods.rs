//! The smaller methods of REDCap's list: Import Project Information
//! (`project_settings`), Randomize Record, Check App Rights
//! (`appRightsCheck`), Export Field Validations (`fieldValidation`) and
//! the Mobile App's file facts (`fileinfo`, `filesize`): answers, counts,
//! rights, errors in REDCap's words, log rows.

mod common;

use common::Sandbox;
use redcap::ApiError as E;
use serde_json::json;

/// Descriptions of the project's Manage/Design log rows, newest first,
/// without those of the log exports that read them.
async fn manage_log(sb: &Sandbox, token: &str) -> Vec<String> {
    sb.call(token, "log", &[("logtype", "manage")])
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["details"].as_str().unwrap().to_owned())
        .filter(|d| !d.starts_with("Export Logging"))
        .collect()
}

#[tokio::test]
async fn import_project_information() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    let data = json!({
        "project_title": "Renamed",
        "purpose": "4",
        "project_notes": "Some notes",
        "project_irb_number": "IRB-7",
        "project_pi_firstname": "Ada",
        "display_today_now_button": "0",
        "randomization_enabled": 1,
        "record_autonumbering_enabled": "0",
        // Not changeable: counted, ignored.
        "project_id": "999",
        "in_production": "1"
    });
    let a = sb.import(&token, "project_settings", data, &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "10"), "{}", a.body);
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["project_title"], "Renamed");
    assert_eq!(info["purpose"], 4);
    assert_eq!(info["project_notes"], "Some notes");
    assert_eq!(info["project_irb_number"], "IRB-7");
    assert_eq!(info["project_pi_firstname"], "Ada");
    assert_eq!(info["display_today_now_button"], 0);
    assert_eq!(info["randomization_enabled"], 1);
    assert_eq!(info["record_autonumbering_enabled"], 0);
    assert_ne!(info["project_id"], 999);
    assert_eq!(info["in_production"], 0);
    assert!(
        manage_log(&sb, &token)
            .await
            .contains(&"Import project information (API)".to_owned())
    );

    // CSV: the first row; XML: <items>.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "project_settings"),
            ("format", "csv"),
            (
                "data",
                "project_title,custom_record_label\nFrom CSV,[name]\n",
            ),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"), "{}", a.body);
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "project_settings"),
            ("format", "xml"),
            (
                "data",
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><items><project_grant_number>G-1</project_grant_number></items>",
            ),
        ])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["project_title"], "From CSV");
    assert_eq!(info["custom_record_label"], "[name]");
    assert_eq!(info["project_grant_number"], "G-1");
    assert_eq!(info["project_irb_number"], "IRB-7");

    // A JSON array is counted by its items and changes nothing.
    let a = sb
        .import(
            &token,
            "project_settings",
            json!([{"project_title": "Ignored"}]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["project_title"], "From CSV");

    // Errors: the Design right (api_228), no attributes, bad values.
    let info_pid = info["project_id"].as_u64().unwrap();
    let no_design = sb
        .user_with_token(
            info_pid,
            json!({"username": "builder", "api_import": 1, "design": 0}),
        )
        .await;
    sb.import(
        &no_design,
        "project_settings",
        json!({"project_title": "X"}),
        &[],
    )
    .await
    .assert_error(400, &E::ProjectSettingsPrivilege.message());
    let no_import = sb
        .user_with_token(
            info_pid,
            json!({"username": "designer", "api_import": 0, "design": 1}),
        )
        .await;
    sb.import(
        &no_import,
        "project_settings",
        json!({"project_title": "X"}),
        &[],
    )
    .await
    .assert_error(403, &E::NoApiImport.message());
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "project_settings"),
            ("format", "csv"),
            ("returnFormat", "json"),
            ("data", "project_title\n"),
        ])
        .await;
    a.assert_error(400, &E::DataNotInFormat.message());
    let a = sb
        .import(&token, "project_settings", json!({"purpose": "9"}), &[])
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("purpose"), "{}", a.body);
    let a = sb
        .import(
            &token,
            "project_settings",
            json!({"is_longitudinal": "0"}),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);

    // Turning the project longitudinal moves its values into Event 1 of
    // Arm 1, which holds every instrument; back again when it has one
    // event; refused with two.
    let a = sb
        .import(&token, "record", json!([{"record_id": "7"}]), &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let classic = sb.call(&token, "record", &[]).await.json();
    let a = sb
        .import(
            &token,
            "project_settings",
            json!({"is_longitudinal": 1}),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["is_longitudinal"], 1);
    assert_eq!(
        sb.call(&token, "arm", &[]).await.json(),
        json!([{"arm_num": 1, "name": "Arm 1"}])
    );
    let events = sb.call(&token, "event", &[]).await.json();
    assert_eq!(events[0]["unique_event_name"], "event_1_arm_1", "{events}");
    let records = sb.call(&token, "record", &[]).await.json();
    assert_eq!(records[0]["record_id"], "7", "{records}");
    assert_eq!(
        records[0]["redcap_event_name"], "event_1_arm_1",
        "{records}"
    );
    let a = sb
        .import(
            &token,
            "event",
            json!([{"event_name": "Follow up", "arm_num": 1}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let a = sb
        .import(
            &token,
            "project_settings",
            json!({"is_longitudinal": 0, "project_title": "Not applied"}),
            &[],
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("2 events"), "{}", a.body);
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "event"),
            ("action", "delete"),
            ("events[0]", "follow_up_arm_1"),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "project_settings",
            json!({"is_longitudinal": 0}),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let records = sb.call(&token, "record", &[]).await.json();
    assert_eq!(records, classic);
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["is_longitudinal"], 0);
    assert_eq!(info["project_title"], "From CSV");

    // Kept across a restart.
    let sb = sb.restart().await;
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["project_grant_number"], "G-1");
    assert_eq!(info["project_title"], "From CSV");
}

#[tokio::test]
async fn randomize_without_a_randomization_model() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    let pid = sb.call(&token, "project", &[]).await.json()["project_id"]
        .as_u64()
        .unwrap();
    // Without the Randomize right the entry gate refuses.
    let plain = sb
        .user_with_token(pid, json!({"username": "plain", "api_export": 1}))
        .await;
    sb.call(
        &plain,
        "record",
        &[
            ("action", "randomize"),
            ("record", "1"),
            ("randomization_id", "1"),
        ],
    )
    .await
    .assert_error(403, &E::NoRandomize.message());
    // With the right, REDCap cannot find the randomization: 200 and its
    // plain text, in the format's content type.
    let randomizer = sb
        .user_with_token(
            pid,
            json!({"username": "randomizer", "api_export": 1, "random_perform": 1}),
        )
        .await;
    // (The creator here is an administrator: it has every right.)
    for (who, format) in [(&randomizer, "json"), (&randomizer, "csv"), (&token, "xml")] {
        let a = sb
            .post(&[
                ("token", who),
                ("content", "record"),
                ("action", "randomize"),
                ("format", format),
                ("record", "1"),
                ("randomization_id", "1"),
            ])
            .await;
        assert_eq!((a.status, a.body.as_str()), (200, "Invalid data supplied"));
    }
}

#[tokio::test]
async fn app_rights_check_and_field_validations() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    let before = manage_log(&sb, &token).await.len();
    for (format, ctype) in [("json", "application/json"), ("csv", "text/csv")] {
        let a = sb
            .post(&[
                ("token", &token),
                ("content", "appRightsCheck"),
                ("format", format),
                ("uuid", "device-1"),
            ])
            .await;
        assert_eq!((a.status, a.body.as_str()), (200, ""));
        assert!(a.content_type.starts_with(ctype), "{a:?}");
    }
    assert_eq!(manage_log(&sb, &token).await.len(), before);
    let pid = sb.call(&token, "project", &[]).await.json()["project_id"]
        .as_u64()
        .unwrap();
    let no_api = sb
        .user_with_token(pid, json!({"username": "noapi", "api_export": 0}))
        .await;
    sb.call(&no_api, "appRightsCheck", &[])
        .await
        .assert_error(403, &E::NoApiExport.message());

    // Field validations: JSON, CSV, XML.
    let rows = sb.call(&token, "fieldValidation", &[]).await.json();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() > 20);
    for r in rows {
        assert_eq!(r.as_object().unwrap().len(), 2, "{r}");
        assert!(r["regex"].as_str().unwrap().starts_with('/'), "{r}");
    }
    assert!(rows.iter().any(|r| r["validation_type"] == "date_ymd"));
    let integer = rows
        .iter()
        .find(|r| r["validation_type"] == "integer")
        .unwrap();
    assert_eq!(integer["regex"], r"/^[-+]?\d+$/");
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "fieldValidation"),
            ("format", "csv"),
        ])
        .await;
    assert!(a.body.starts_with("validation_type,regex\n"), "{}", a.body);
    assert!(
        a.body.contains("\ninteger,\"/^[-+]?\\d+$/\"\n"),
        "{}",
        a.body
    );
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "fieldValidation"),
            ("format", "xml"),
        ])
        .await;
    assert!(
        a.body.contains(
            "<field_validation><validation_type>integer</validation_type><regex><![CDATA[/^[-+]?\\d+$/]]></regex></field_validation>"
        ),
        "{}",
        a.body
    );
    assert!(
        manage_log(&sb, &token)
            .await
            .contains(&"Export field validations (API)".to_owned())
    );
    sb.call(&no_api, "fieldValidation", &[])
        .await
        .assert_error(403, &E::NoApiExport.message());
}

#[tokio::test]
async fn file_info_and_size() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    let md = json!([
        {"field_name": "record_id", "form_name": "consent", "field_type": "text", "field_label": "ID"},
        {"field_name": "scan", "form_name": "consent", "field_type": "file", "field_label": "Scan"}
    ]);
    let a = sb.import(&token, "metadata", md, &[]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(&token, "record", json!([{"record_id": "1"}]), &[])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .post_multipart(
            &[
                ("token", &token),
                ("content", "file"),
                ("action", "import"),
                ("record", "1"),
                ("field", "scan"),
            ],
            Some(("scan.pdf", Some("application/pdf"), vec![7u8; 1234])),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let before = manage_log(&sb, &token).await.len();
    for content in ["fileinfo", "filesize"] {
        for format in ["json", "xml"] {
            let a = sb
                .post(&[
                    ("token", &token),
                    ("content", content),
                    ("action", "export"),
                    ("format", format),
                    ("record", "1"),
                    ("field", "scan"),
                ])
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            assert!(a.content_type.starts_with("application/json"), "{a:?}");
            assert_eq!(a.json(), json!({"size": 1234, "name": "scan.pdf"}));
        }
    }
    assert_eq!(manage_log(&sb, &token).await.len(), before);
    // Export File's errors, and `action` checked as for `file`.
    sb.call(
        &token,
        "fileinfo",
        &[("action", "export"), ("record", "9"), ("field", "scan")],
    )
    .await
    .assert_error(400, &E::FileRecordMissing { record: "9".into() }.message());
    sb.call(
        &token,
        "fileinfo",
        &[
            ("action", "export"),
            ("record", "1"),
            ("field", "record_id"),
        ],
    )
    .await
    .assert_error(
        400,
        &E::NotAFileField {
            field: "record_id".into(),
        }
        .message(),
    );
    sb.call(&token, "fileinfo", &[("record", "1"), ("field", "scan")])
        .await
        .assert_error(400, &E::InvalidAction.message());
    let a = sb
        .import(&token, "record", json!([{"record_id": "2"}]), &[])
        .await;
    assert_eq!(a.status, 200);
    sb.call(
        &token,
        "fileinfo",
        &[("action", "export"), ("record", "2"), ("field", "scan")],
    )
    .await
    .assert_error(400, &E::NoFileToDownload.message());
}
