//! Export Reports (`content=report`): reports defined through the admin
//! endpoint, exported with their fields and filter logic in JSON, CSV and
//! XML, with the caller's output options, DAG and export rights; unknown
//! report ids and other projects' reports refused as REDCap refuses them;
//! the log row; definitions refused when wrong; reports surviving a
//! restart.

mod common;

use common::Sandbox;
use redcap::ApiError as E;
use reqwest::Method;
use serde_json::{Value, json};

/// A project with the standard metadata and three records, one of them
/// in DAG `site_a`; answers its token and project id.
async fn project(sb: &Sandbox) -> (String, u64) {
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "dag",
            json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "name": "Ann", "age": "30", "symptoms___1": "1", "arm": "a", "redcap_data_access_group": "site_a"},
                {"record_id": "2", "name": "Bob", "age": "45", "symptoms___2": "1", "arm": "b"},
                {"record_id": "3", "name": "Cy", "age": "70", "arm": "a"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let info = sb.call(&token, "project", &[]).await.json();
    (token, info["project_id"].as_u64().unwrap())
}

async fn define(sb: &Sandbox, pid: u64, report: Value) -> (u16, Value) {
    sb.admin(
        Method::POST,
        &format!("/sandbox/projects/{pid}/reports"),
        Some(report),
    )
    .await
}

async fn report_id(sb: &Sandbox, pid: u64, report: Value) -> String {
    let (s, v) = define(sb, pid, report).await;
    assert_eq!(s, 200, "{v}");
    v["report_id"].as_u64().unwrap().to_string()
}

#[tokio::test]
async fn a_report_exports_its_fields_and_filter_in_every_format() {
    let sb = Sandbox::start().await;
    let (token, pid) = project(&sb).await;
    let id = report_id(
        &sb,
        pid,
        json!({"title": "Arm A", "fields": ["record_id", "age", "arm"], "filter_logic": "[arm] = 'a'"}),
    )
    .await;

    let a = sb.call(&token, "report", &[("report_id", &id)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"), "{a:?}");
    assert_eq!(
        a.json(),
        json!([
            {"record_id": "1", "age": "30", "arm": "a"},
            {"record_id": "3", "age": "70", "arm": "a"}
        ])
    );

    // Labels, label headers, a delimiter, in CSV.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "report"),
            ("format", "csv"),
            ("report_id", &id),
            ("rawOrLabel", "label"),
            ("rawOrLabelHeaders", "label"),
            ("csvDelimiter", ";"),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("text/csv"), "{a:?}");
    // PHP's fputcsv quotes a cell holding a space.
    assert_eq!(a.body, "\"Record ID\";Age;Arm\n1;30;A\n3;70;A\n");

    // XML.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "report"),
            ("format", "xml"),
            ("report_id", &id),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("<records>"), "{}", a.body);
    assert!(
        a.body.contains("<record_id><![CDATA[3]]></record_id>")
            || a.body.contains("<record_id>3</record_id>"),
        "{}",
        a.body
    );
    assert!(
        !a.body.contains("Bob") && !a.body.contains(">2<"),
        "{}",
        a.body
    );

    // Checkbox labels and the decimal character, with no filter.
    let id = report_id(
        &sb,
        pid,
        json!({"title": "Everyone", "fields": ["record_id", "symptoms", "age"]}),
    )
    .await;
    let a = sb
        .call(
            &token,
            "report",
            &[
                ("report_id", &id),
                ("exportCheckboxLabel", "true"),
                ("rawOrLabel", "label"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rows = a.json();
    assert_eq!(rows[0]["symptoms___1"], "Fever", "{rows}");
    assert_eq!(rows[0]["symptoms___2"], "", "{rows}");
    assert_eq!(rows[1]["symptoms___2"], "Cough", "{rows}");
    assert_eq!(rows.as_array().unwrap().len(), 3);

    // A report with no fields shows the record ID field alone.
    let id = report_id(&sb, pid, json!({"title": "Bare"})).await;
    let a = sb.call(&token, "report", &[("report_id", &id)]).await;
    assert_eq!(
        a.json(),
        json!([{"record_id": "1"}, {"record_id": "2"}, {"record_id": "3"}])
    );
}

#[tokio::test]
async fn report_rights_dags_errors_and_logging() {
    let sb = Sandbox::start().await;
    let (token, pid) = project(&sb).await;
    let id = report_id(
        &sb,
        pid,
        json!({"title": "Names", "fields": ["record_id", "name"]}),
    )
    .await;

    // Unknown, foreign and malformed ids: 403, the id escaped.
    for bad in ["999", "abc", "", "<b>"] {
        let a = sb.call(&token, "report", &[("report_id", bad)]).await;
        a.assert_error(
            403,
            &E::ReportNotInProject {
                report_id: bad.into(),
            }
            .message(),
        );
    }
    let a = sb.call(&token, "report", &[("report_id", "<b>")]).await;
    assert!(
        a.body.contains("report_id=&lt;b&gt; does not"),
        "{}",
        a.body
    );
    let other = sb.create_project().await;
    sb.call(&other, "report", &[("report_id", &id)])
        .await
        .assert_error(
            403,
            &E::ReportNotInProject {
                report_id: id.clone(),
            }
            .message(),
        );
    // CSV error shape.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "report"),
            ("format", "csv"),
            ("returnFormat", "csv"),
            ("report_id", "999"),
        ])
        .await;
    assert_eq!(a.status, 403);
    assert!(
        a.body
            .starts_with("ERROR: The API request cannot complete because report_id=999")
    );

    // A DAG user sees its DAG's records; de-identified rights drop the
    // identifier; no export right at all is refused first.
    let dag_user = sb
        .user_with_token(
            pid,
            json!({"username": "site_a_reader", "api_export": 1, "data_access_group": "site_a",
                   "forms": {"demographics": 1, "visit": 1}, "forms_export": {"demographics": 1, "visit": 1}}),
        )
        .await;
    let a = sb.call(&dag_user, "report", &[("report_id", &id)]).await;
    assert_eq!(a.json(), json!([{"record_id": "1", "name": "Ann"}]));
    let deid = sb
        .user_with_token(
            pid,
            json!({"username": "deid", "api_export": 1,
                   "forms": {"demographics": 1, "visit": 1}, "forms_export": {"demographics": 2, "visit": 2}}),
        )
        .await;
    let a = sb.call(&deid, "report", &[("report_id", &id)]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.contains("Ann"), "{}", a.body);
    let none = sb
        .user_with_token(
            pid,
            json!({"username": "noexport", "api_export": 1, "forms": {"demographics": 1}, "forms_export": {"demographics": 0, "visit": 0}}),
        )
        .await;
    sb.call(&none, "report", &[("report_id", "999")])
        .await
        .assert_error(403, &E::NoExportAccess.message());
    let no_api = sb
        .user_with_token(pid, json!({"username": "noapi", "api_export": 0}))
        .await;
    sb.call(&no_api, "report", &[("report_id", &id)])
        .await
        .assert_error(403, &E::NoApiExport.message());

    // Logged as a data export naming the report.
    let log = sb
        .call(&token, "log", &[("logtype", "export")])
        .await
        .json();
    let details: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["details"].as_str().unwrap())
        .collect();
    assert!(
        details
            .contains(&format!("report_id: {id}, export_format: JSON, rawOrLabel: raw").as_str()),
        "{details:?}"
    );
}

#[tokio::test]
async fn report_definitions_are_checked_and_kept() {
    let sb = Sandbox::start().await;
    let (token, pid) = project(&sb).await;
    let (s, v) = define(&sb, pid, json!({"title": "X", "fields": ["nope"]})).await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    let (s, v) = define(&sb, pid, json!({"title": " ", "fields": ["age"]})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = define(&sb, 999, json!({"title": "X"})).await;
    assert_eq!(s, 404, "{v}");
    // Bad filter logic is REDCap's 400 when the report is exported.
    let id = report_id(
        &sb,
        pid,
        json!({"title": "Broken", "fields": ["age"], "filter_logic": "[age] >"}),
    )
    .await;
    let a = sb.call(&token, "report", &[("report_id", &id)]).await;
    assert_eq!(a.status, 400, "{}", a.body);

    let id = report_id(
        &sb,
        pid,
        json!({"title": "Old", "fields": ["record_id", "age"], "filter_logic": "[age] > 40"}),
    )
    .await;
    let sb = sb.restart().await;
    let a = sb.call(&token, "report", &[("report_id", &id)]).await;
    assert_eq!(
        a.json(),
        json!([{"record_id": "2", "age": "45"}, {"record_id": "3", "age": "70"}])
    );
}

/// Reports travel in REDCap XML as REDCap writes them
/// (`redcap:ReportsGroup`/`redcap:Reports` with `redcap_reports_fields`
/// and the logic in `advanced_logic`): Export Entire Project shows them,
/// a project created from that file has them (new `report_id`s, given in
/// order across the server) and exports the same file again; a report
/// naming a field the file does not define is refused.
#[tokio::test]
async fn reports_travel_in_redcap_xml() {
    let sb = Sandbox::start().await;
    let (token, pid) = project(&sb).await;
    let id = report_id(
        &sb,
        pid,
        json!({"title": "Older & \"wiser\"", "fields": ["record_id", "age"], "filter_logic": "[age] > 40"}),
    )
    .await;
    let xml = |token: String| {
        let sb = &sb;
        async move {
            let a = sb
                .post(&[
                    ("token", &token),
                    ("content", "project_xml"),
                    ("returnMetadataOnly", "true"),
                ])
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        }
    };
    let first = xml(token.clone()).await;
    assert!(
        first.contains(
            "<redcap:ReportsGroup>\n\t\t<redcap:Reports title=\"Older &amp; &quot;wiser&quot;\" user_access=\"ALL\" user_edit_access=\"ALL\" advanced_logic=\"[age] &gt; 40\" redcap_reports_fields=\"record_id,age\" redcap_reports_filter_dags=\"\" redcap_reports_filter_events=\"\"/>\n\t</redcap:ReportsGroup>"
        ),
        "{first}"
    );
    let create = |odm: String| {
        let sb = &sb;
        async move {
            sb.post(&[
                ("token", common::SUPER),
                ("content", "project"),
                ("format", "json"),
                ("data", r#"[{"project_title": "Copy", "purpose": 0}]"#),
                ("odm", &odm),
            ])
            .await
        }
    };
    let a = create(first.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let copy = a.body;
    let second = xml(copy.clone()).await;
    let group = |s: &str| {
        let start = s.find("<redcap:ReportsGroup>").expect("a ReportsGroup");
        let end = s.find("</redcap:ReportsGroup>").expect("its end");
        s[start..end].to_owned()
    };
    assert_eq!(group(&first), group(&second));
    // The copy's report is the next id; it filters the copy's (empty)
    // records; the original still answers.
    let next = (id.parse::<u64>().unwrap() + 1).to_string();
    let a = sb.call(&copy, "report", &[("report_id", &next)]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "[]"));
    sb.call(&token, "report", &[("report_id", &next)])
        .await
        .assert_error(
            403,
            &E::ReportNotInProject {
                report_id: next.clone(),
            }
            .message(),
        );
    // A report of unknown fields: the file is refused, nothing made.
    let bad = first.replace(
        "redcap_reports_fields=\"record_id,age\"",
        "redcap_reports_fields=\"record_id,weight\"",
    );
    let a = create(bad).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("weight"), "{}", a.body);
}

/// `redcap-sandbox admin define-report` calls the endpoint and prints its
/// answer.
#[tokio::test]
async fn the_admin_cli_defines_a_report() {
    let sb = Sandbox::start().await;
    let (token, pid) = project(&sb).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_redcap-sandbox"))
        .args(["admin", "define-report", &pid.to_string(), "Older"])
        .args(["--fields", "record_id,age", "--filter-logic", "[age] > 40"])
        .env("REDCAP_SANDBOX_URL", format!("{}/", sb.base))
        .env("REDCAP_SANDBOX_ADMIN_SECRET", common::SECRET)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    let id = v["report_id"].as_u64().unwrap().to_string();
    let a = sb.call(&token, "report", &[("report_id", &id)]).await;
    assert_eq!(
        a.json(),
        json!([{"record_id": "2", "age": "45"}, {"record_id": "3", "age": "70"}])
    );
    // A field the project lacks: exit status 2 and the endpoint's message.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_redcap-sandbox"))
        .args([
            "admin",
            "define-report",
            &pid.to_string(),
            "Bad",
            "--fields",
            "weight",
        ])
        .env("REDCAP_SANDBOX_URL", format!("{}/", sb.base))
        .env("REDCAP_SANDBOX_ADMIN_SECRET", common::SECRET)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weight"));
}
