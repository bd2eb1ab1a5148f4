//! The error catalogue of §1.6 (and the method-level refusals it points to
//! in §4–§6), each error the implemented methods can produce, checked by
//! status code and exact text in all three `returnFormat` shapes:
//!
//! | returnFormat | body |
//! |---|---|
//! | json | `{"error":"<message>"}`, `/` written as `\/` (PHP's json_encode) |
//! | csv  | `ERROR: <message>` |
//! | xml  | `<?xml version="1.0" encoding="UTF-8" ?><hash><error><message></error></hash>`, not escaped |
//!
//! The expected bodies are written out here, not produced by the sandbox's
//! own renderer. The 429 ban and the 501 for non-POST are plain text in every
//! format, and are checked as such.

mod common;

use common::{GENERIC_403, SUPER, Sandbox};
use redcap::ApiError as E;
use reqwest::Method;
use serde_json::{Value, json};

/// The body REDCap writes for `message` in `return_format`.
fn error_body(return_format: &str, message: &str) -> String {
    match return_format {
        "json" => {
            // json_encode: the message as a JSON string, `/` escaped.
            let quoted = serde_json::to_string(message).unwrap().replace('/', "\\/");
            format!("{{\"error\":{quoted}}}")
        }
        "csv" => format!("ERROR: {message}"),
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>{message}</error></hash>"
        ),
    }
}

/// What a case must answer.
enum Expect {
    /// Exactly this error.
    Error(E),
    /// This status and a message starting with this text (for texts that
    /// carry a parser's details).
    Prefix(u16, &'static str),
    /// This status and this message (texts not in `ApiError`).
    Text(u16, &'static str),
}

/// Sends `params` once per returnFormat and checks status and body.
async fn check(sb: &Sandbox, label: &str, params: &[(&str, &str)], expect: Expect) {
    for rf in ["json", "csv", "xml"] {
        let mut p = params.to_vec();
        p.push(("returnFormat", rf));
        let a = sb.post(&p).await;
        let (status, message) = match &expect {
            Expect::Error(e) => (e.status(), e.message()),
            Expect::Prefix(s, m) | Expect::Text(s, m) => (*s, (*m).to_owned()),
        };
        assert_eq!(a.status, status, "{label} ({rf}): {}", a.body);
        match expect {
            Expect::Prefix(..) => {
                let whole = redcap::error_message(&a.body)
                    .unwrap_or_else(|| panic!("{label} ({rf}): not an error body: {}", a.body));
                assert!(
                    whole.starts_with(&message),
                    "{label} ({rf}): {whole:?} does not start with {message:?}"
                );
                let shaped = error_body(rf, &whole);
                assert_eq!(a.body, shaped, "{label} ({rf})");
            }
            _ => assert_eq!(a.body, error_body(rf, &message), "{label} ({rf})"),
        }
    }
}

fn user(username: &str, extra: Value) -> Value {
    let mut row = json!({ "username": username });
    for (k, v) in extra.as_object().unwrap() {
        row[k] = v.clone();
    }
    row
}

/// Project 1 with metadata, two records, a DAG, and users holding exactly
/// the rights each case needs.
struct World {
    sb: Sandbox,
    admin: String,
    no_api: String,
    exporter: String,
    no_export: String,
    deleter: String,
    dag_member: String,
}

async fn world() -> World {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "name": "Ann"}, {"record_id": "2", "name": "Bob"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
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
            json!([{"record_id": "3", "redcap_data_access_group": "site_b"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let no_api = sb.user_with_token(1, user("no_api", json!({}))).await;
    let exporter = sb
        .user_with_token(
            1,
            user(
                "exporter",
                json!({"api_export": 1, "api_import": 1,
                       "forms": {"demographics": 1, "visit": 1},
                       "forms_export": {"demographics": 1, "visit": 1}}),
            ),
        )
        .await;
    let no_export = sb
        .user_with_token(
            1,
            user(
                "no_export",
                json!({"api_export": 1, "logging": 1,
                       "forms_export": {"demographics": 0, "visit": 0}}),
            ),
        )
        .await;
    let deleter = sb
        .user_with_token(
            1,
            user(
                "deleter",
                json!({"api_export": 1, "record_delete": 1, "user_rights": 1}),
            ),
        )
        .await;
    let dag_member = sb
        .user_with_token(
            1,
            user(
                "dag_member",
                json!({"api_export": 1, "api_import": 1, "data_access_groups": 1,
                       "user_rights": 1, "data_access_group": "site_a",
                       "forms": {"demographics": 1, "visit": 1},
                       "forms_export": {"demographics": 1, "visit": 1}}),
            ),
        )
        .await;
    World {
        sb,
        admin,
        no_api,
        exporter,
        no_export,
        deleter,
        dag_member,
    }
}

#[tokio::test]
async fn token_and_request_shape_errors() {
    let w = world().await;
    let sb = &w.sb;
    let generic = || Expect::Text(403, GENERIC_403);
    check(sb, "missing token", &[("content", "version")], generic()).await;
    let unknown = "0123456789ABCDEF0123456789ABCDEF";
    check(
        sb,
        "unknown token",
        &[("token", unknown), ("content", "version")],
        generic(),
    )
    .await;
    let newline = format!("{}\n", w.exporter);
    check(
        sb,
        "token with a trailing newline",
        &[("token", &newline), ("content", "version")],
        generic(),
    )
    .await;
    check(
        sb,
        "super token for a project method",
        &[("token", SUPER), ("content", "record")],
        generic(),
    )
    .await;
    let bad_super = "F".repeat(64);
    check(
        sb,
        "invalid super token for version",
        &[("token", &bad_super), ("content", "version")],
        Expect::Error(E::SuperTokenRequired),
    )
    .await;
    check(
        sb,
        "project token for Create Project",
        &[
            ("token", &w.admin),
            ("content", "project"),
            ("format", "json"),
            ("data", r#"[{"project_title":"x","purpose":0}]"#),
        ],
        Expect::Error(E::SuperTokenRequired),
    )
    .await;
    check(
        sb,
        "bad content",
        &[("token", &w.admin), ("content", "externalThing")],
        Expect::Error(E::InvalidContent),
    )
    .await;
    check(
        sb,
        "bad action",
        &[("token", &w.admin), ("content", "dag"), ("action", "bogus")],
        Expect::Error(E::InvalidAction),
    )
    .await;
    check(
        sb,
        "bad JSON data",
        &[
            ("token", &w.admin),
            ("content", "record"),
            ("format", "json"),
            ("data", "[{\"record_id\":"),
        ],
        Expect::Error(E::BadJson {
            decoder: "Syntax error".into(),
        }),
    )
    .await;
    check(
        sb,
        "bad XML data",
        &[
            ("token", &w.admin),
            ("content", "record"),
            ("format", "xml"),
            ("data", "<records><item><record_id>1</item></records>"),
        ],
        Expect::Prefix(
            400,
            "The data being imported is not formatted correctly. Error: ",
        ),
    )
    .await;

    // Create Project's own texts (§2.5).
    let create = |data: &'static str| {
        [
            ("token", SUPER),
            ("content", "project"),
            ("format", "json"),
            ("data", data),
        ]
    };
    check(
        sb,
        "two projects",
        &create(r#"[{"project_title":"a","purpose":0},{"project_title":"b","purpose":0}]"#),
        Expect::Error(E::OneProjectOnly),
    )
    .await;
    check(
        sb,
        "project without a purpose",
        &create(r#"[{"project_title":"a"}]"#),
        Expect::Error(E::ProjectAttributesMissing),
    )
    .await;
    check(
        sb,
        "purpose other without text",
        &create(r#"[{"project_title":"a","purpose":1}]"#),
        Expect::Error(E::PurposeOtherMissing),
    )
    .await;

    // 501 for anything but POST: plain text whatever returnFormat says.
    for rf in ["json", "csv", "xml"] {
        let r = reqwest::Client::new()
            .get(format!("{}?returnFormat={rf}", sb.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 501);
        assert_eq!(
            r.text().await.unwrap(),
            "The requested method is not implemented."
        );
    }
}

#[tokio::test]
async fn entry_gates_and_method_privileges() {
    let w = world().await;
    let sb = &w.sb;
    let t = |token: &str, content: &'static str| -> Vec<(String, String)> {
        vec![
            ("token".into(), token.to_owned()),
            ("content".into(), content.into()),
            ("format".into(), "json".into()),
        ]
    };
    // Converts owned pairs for `check`.
    async fn run(
        sb: &Sandbox,
        label: &str,
        p: Vec<(String, String)>,
        extra: &[(&str, &str)],
        e: Expect,
    ) {
        let mut v: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        v.extend_from_slice(extra);
        check(sb, label, &v, e).await;
    }
    let user_row = r#"[{"username":"someone"}]"#;
    let role_row = r#"[{"role_label":"R"}]"#;
    let dag_row = r#"[{"data_access_group_name":"B","unique_group_name":""}]"#;
    let field_row =
        r#"[{"field_name":"record_id","form_name":"f","field_type":"text","field_label":"x"}]"#;

    // 403 gates by action (§1.6).
    run(
        sb,
        "export without API Export",
        t(&w.no_api, "record"),
        &[],
        Expect::Error(E::NoApiExport),
    )
    .await;
    run(
        sb,
        "import without API Import",
        t(&w.no_api, "user"),
        &[("data", user_row)],
        Expect::Error(E::NoApiImport),
    )
    .await;
    run(
        sb,
        "user delete without API Import",
        t(&w.no_api, "user"),
        &[("action", "delete"), ("users[0]", "exporter")],
        Expect::Error(E::NoApiImport),
    )
    .await;
    run(
        sb,
        "record delete without Delete Record",
        t(&w.exporter, "record"),
        &[("action", "delete"), ("records[0]", "1")],
        Expect::Error(E::NoDeleteRecord),
    )
    .await;
    run(
        sb,
        "user delete without Delete Record",
        t(&w.exporter, "user"),
        &[("action", "delete"), ("users[0]", "no_api")],
        Expect::Error(E::NoDeleteRecord),
    )
    .await;
    run(
        sb,
        "role delete without Delete Record",
        t(&w.exporter, "userRole"),
        &[("action", "delete"), ("roles[0]", "U-X")],
        Expect::Error(E::NoDeleteRecord),
    )
    .await;
    run(
        sb,
        "rename without Rename Record",
        t(&w.exporter, "record"),
        &[
            ("action", "rename"),
            ("record", "1"),
            ("new_record_name", "9"),
        ],
        Expect::Error(E::NoRenameRecord),
    )
    .await;
    run(
        sb,
        "randomize without Randomize",
        t(&w.exporter, "record"),
        &[("action", "randomize"), ("record", "1")],
        Expect::Error(E::NoRandomize),
    )
    .await;
    run(
        sb,
        "DAG export by a DAG member",
        t(&w.dag_member, "dag"),
        &[],
        Expect::Error(E::DagMemberForbidden),
    )
    .await;
    run(
        sb,
        "DAG import by a DAG member",
        t(&w.dag_member, "dag"),
        &[("action", "import"), ("data", dag_row)],
        Expect::Error(E::DagMemberForbidden),
    )
    .await;
    run(
        sb,
        "DAG delete by a DAG member",
        t(&w.dag_member, "dag"),
        &[("action", "delete"), ("dags[0]", "site_a")],
        Expect::Error(E::DagMemberForbidden),
    )
    .await;
    run(
        sb,
        "record export with No Access export rights",
        t(&w.no_export, "record"),
        &[],
        Expect::Error(E::NoExportAccess),
    )
    .await;
    run(
        sb,
        "log export with No Access export rights",
        t(&w.no_export, "log"),
        &[],
        Expect::Error(E::NoExportAccess),
    )
    .await;
    run(
        sb,
        "log export without Logging",
        t(&w.exporter, "log"),
        &[],
        Expect::Error(E::NoLoggingRight),
    )
    .await;

    // 400 method-level privileges (§4.1, §5.1, §6).
    run(
        sb,
        "export users without User Rights",
        t(&w.exporter, "user"),
        &[],
        Expect::Error(E::UserRightsExportPrivilege),
    )
    .await;
    run(
        sb,
        "export roles without User Rights",
        t(&w.exporter, "userRole"),
        &[],
        Expect::Error(E::UserRightsExportPrivilege),
    )
    .await;
    run(
        sb,
        "export role mapping without User Rights",
        t(&w.exporter, "userRoleMapping"),
        &[],
        Expect::Error(E::UserRightsExportPrivilege),
    )
    .await;
    run(
        sb,
        "import users without User Rights",
        t(&w.exporter, "user"),
        &[("data", user_row)],
        Expect::Error(E::UserRightsImportPrivilege),
    )
    .await;
    run(
        sb,
        "import roles without User Rights",
        t(&w.exporter, "userRole"),
        &[("data", role_row)],
        Expect::Error(E::UserRoleImportPrivilege),
    )
    .await;
    run(
        sb,
        "import role mapping without User Rights",
        t(&w.exporter, "userRoleMapping"),
        &[("data", r#"[{"username":"no_api","unique_role_name":""}]"#)],
        Expect::Error(E::UserRoleImportPrivilege),
    )
    .await;
    run(
        sb,
        "export DAGs without the DAG right",
        t(&w.exporter, "dag"),
        &[],
        Expect::Error(E::DagExportPrivilege),
    )
    .await;
    run(
        sb,
        "export user-DAG mapping without the DAG right",
        t(&w.exporter, "userDagMapping"),
        &[],
        Expect::Error(E::DagExportPrivilege),
    )
    .await;
    run(
        sb,
        "import DAGs without the DAG right",
        t(&w.exporter, "dag"),
        &[("action", "import"), ("data", dag_row)],
        Expect::Error(E::DagImportPrivilege),
    )
    .await;
    run(
        sb,
        "import user-DAG mapping without the DAG right",
        t(&w.exporter, "userDagMapping"),
        &[(
            "data",
            r#"[{"username":"no_api","redcap_data_access_group":""}]"#,
        )],
        Expect::Error(E::DagImportPrivilege),
    )
    .await;
    run(
        sb,
        "user-DAG mapping import by a DAG member",
        t(&w.dag_member, "userDagMapping"),
        &[(
            "data",
            r#"[{"username":"no_api","redcap_data_access_group":""}]"#,
        )],
        Expect::Error(E::DagMappingByDagMember),
    )
    .await;
    run(
        sb,
        "metadata import without Design",
        t(&w.exporter, "metadata"),
        &[("data", field_row)],
        Expect::Error(E::DesignPrivilege),
    )
    .await;
    run(
        sb,
        "record delete without API Import",
        t(&w.deleter, "record"),
        &[("action", "delete"), ("records[0]", "1")],
        Expect::Error(E::RecordDeleteNeedsImport),
    )
    .await;

    // Method data errors (§4–§6).
    let a = &w.admin;
    run(
        sb,
        "unknown field",
        t(a, "record"),
        &[("fields[0]", "nope")],
        Expect::Error(E::InvalidParameterValues {
            parameter: "fields",
            values: vec!["nope".into()],
        }),
    )
    .await;
    run(
        sb,
        "unknown form",
        t(a, "record"),
        &[("forms[0]", "nope")],
        Expect::Error(E::InvalidParameterValues {
            parameter: "forms",
            values: vec!["nope".into()],
        }),
    )
    .await;
    run(
        sb,
        "records to delete not an array",
        t(a, "record"),
        &[("action", "delete"), ("records", "1")],
        Expect::Error(E::RecordsNotArray),
    )
    .await;
    run(
        sb,
        "records to delete that do not exist",
        t(a, "record"),
        &[
            ("action", "delete"),
            ("records[0]", "1"),
            ("records[1]", "404"),
        ],
        Expect::Error(E::RecordsDoNotExist {
            records: vec!["404".into()],
        }),
    )
    .await;
    run(
        sb,
        "unknown DAG for a record",
        t(a, "record"),
        &[(
            "data",
            r#"[{"record_id":"1","redcap_data_access_group":"nowhere"}]"#,
        )],
        Expect::Error(E::InvalidRecordDags {
            names: vec!["nowhere".into()],
        }),
    )
    .await;
    run(
        sb,
        "DAG member assigns a DAG",
        t(&w.dag_member, "record"),
        &[(
            "data",
            r#"[{"record_id":"5","redcap_data_access_group":"site_a"}]"#,
        )],
        Expect::Error(E::IllegalDagField),
    )
    .await;
    run(
        sb,
        "DAG member edits a record outside the DAG",
        t(&w.dag_member, "record"),
        &[("data", r#"[{"record_id":"3","name":"x"}]"#)],
        Expect::Error(E::RecordsInOtherDag {
            records: vec!["3".into()],
        }),
    )
    .await;
    run(
        sb,
        "user row without username",
        t(a, "user"),
        &[("data", r#"[{"api_export":1}]"#)],
        Expect::Error(E::UsernameMissing),
    )
    .await;
    run(
        sb,
        "unknown user DAG",
        t(a, "user"),
        &[(
            "data",
            r#"[{"username":"no_api","data_access_group":"nowhere"}]"#,
        )],
        Expect::Error(E::InvalidUserDag {
            dag: "nowhere".into(),
        }),
    )
    .await;
    run(
        sb,
        "bad rights value",
        t(a, "user"),
        &[("data", r#"[{"username":"no_api","design":7}]"#)],
        Expect::Error(E::InvalidRightsValue {
            field: "design".into(),
            user: "no_api".into(),
            value: "7".into(),
            allowed: "0 or 1",
        }),
    )
    .await;
    run(
        sb,
        "unknown users to delete",
        t(a, "user"),
        &[("action", "delete"), ("users[0]", "ghost")],
        Expect::Error(E::UnknownUsers {
            users: vec!["ghost".into()],
        }),
    )
    .await;
    run(
        sb,
        "role without label",
        t(a, "userRole"),
        &[("data", r#"[{"role_label":""}]"#)],
        Expect::Error(E::RoleLabelBlank),
    )
    .await;
    run(
        sb,
        "unknown unique role names",
        t(a, "userRole"),
        &[(
            "data",
            r#"[{"unique_role_name":"U-NOPE","role_label":"x"}]"#,
        )],
        Expect::Error(E::InvalidRoleNames {
            names: vec!["U-NOPE".into()],
        }),
    )
    .await;
    run(
        sb,
        "DAG row without its keys",
        t(a, "dag"),
        &[("action", "import"), ("data", r#"[{"x":"y"}]"#)],
        Expect::Error(E::DagAttributesMissing),
    )
    .await;
    run(
        sb,
        "unknown DAGs to delete",
        t(a, "dag"),
        &[("action", "delete"), ("dags[0]", "nowhere")],
        Expect::Error(E::UnknownDagsToDelete {
            names: vec!["nowhere".into()],
        }),
    )
    .await;
}

#[tokio::test]
async fn account_and_project_state_errors() {
    let w = world().await;
    let sb = &w.sb;
    // Suspended user: the generic 403.
    let (s, v) = sb
        .admin(
            Method::POST,
            "/sandbox/users",
            Some(json!({"username": "exporter"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sb
        .admin(Method::POST, "/sandbox/users/exporter/suspend", None)
        .await;
    assert_eq!(s, 200, "{v}");
    check(
        sb,
        "suspended user",
        &[("token", &w.exporter), ("content", "version")],
        Expect::Text(403, GENERIC_403),
    )
    .await;
    // Expired project rights.
    let (s, v) = sb
        .admin(
            Method::PUT,
            "/sandbox/projects/1/users/no_export/expiration",
            Some(json!({"expiration": "2020-01-31"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    check(
        sb,
        "expired rights",
        &[("token", &w.no_export), ("content", "version")],
        Expect::Error(E::RightsExpired {
            date: "2020-01-31".into(),
        }),
    )
    .await;
    // Production: no design changes.
    sb.admin(
        Method::POST,
        "/sandbox/projects/1/status",
        Some(json!({"status": 1})),
    )
    .await;
    check(
        sb,
        "metadata import in production",
        &[
            ("token", &w.admin),
            ("content", "metadata"),
            ("format", "json"),
            ("data", r#"[{"field_name":"record_id","form_name":"f","field_type":"text","field_label":"x"}]"#),
        ],
        Expect::Error(E::ProductionDesign),
    )
    .await;
    // Analysis/Cleanup: no record imports.
    sb.admin(
        Method::POST,
        "/sandbox/projects/1/status",
        Some(json!({"status": 2})),
    )
    .await;
    check(
        sb,
        "record import in Analysis/Cleanup",
        &[
            ("token", &w.admin),
            ("content", "record"),
            ("format", "json"),
            ("data", r#"[{"record_id":"1"}]"#),
        ],
        Expect::Error(E::AnalysisCleanup),
    )
    .await;
    // The API switched off system-wide: before the token is read.
    sb.admin(
        Method::POST,
        "/sandbox/system",
        Some(json!({"api_enabled": false})),
    )
    .await;
    check(
        sb,
        "API disabled",
        &[("token", "nonsense"), ("content", "version")],
        Expect::Error(E::ApiDisabled),
    )
    .await;
}

#[tokio::test]
async fn the_ip_ban_is_plain_text_in_every_format() {
    let sb = Sandbox::start_with(|c| c.page_hit_threshold = Some(1)).await;
    for _ in 0..2 {
        assert_eq!(sb.call(SUPER, "version", &[]).await.status, 200);
    }
    for rf in ["json", "csv", "xml"] {
        let a = sb
            .post(&[
                ("token", SUPER),
                ("content", "version"),
                ("returnFormat", rf),
            ])
            .await;
        assert_eq!(a.status, 429, "{rf}");
        assert_eq!(
            a.body, "Your IP address (127.0.0.1) has been banned due to suspected abuse.",
            "{rf}"
        );
    }
}

/// The longitudinal structure's refusals (§6.6) in the three shapes:
/// classic projects, the Design right, development status, unknown names.
#[tokio::test]
async fn longitudinal_structure_errors() {
    let sb = Sandbox::start().await;
    let classic = sb.create_project().await;
    for (content, what) in [
        ("arm", "arms"),
        ("event", "events"),
        ("formEventMapping", "form/event mappings"),
    ] {
        check(
            &sb,
            &format!("{content} of a classic project"),
            &[("token", &classic), ("content", content)],
            Expect::Error(E::ClassicProject {
                verb: "export",
                what,
            }),
        )
        .await;
    }
    check(
        &sb,
        "arm import into a classic project",
        &[
            ("token", &classic),
            ("content", "arm"),
            ("action", "import"),
            ("format", "json"),
            ("data", r#"[{"arm_num": 2, "name": "B"}]"#),
        ],
        Expect::Error(E::ClassicProject {
            verb: "import",
            what: "arms",
        }),
    )
    .await;
    let a = sb
        .import(
            SUPER,
            "project",
            json!([{"project_title": "L", "purpose": 0, "is_longitudinal": 1}]),
            &[],
        )
        .await;
    let token = a.body;
    let pid = sb.call(&token, "project", &[]).await.json()["project_id"]
        .as_u64()
        .unwrap();
    check(
        &sb,
        "unknown events in a record export",
        &[
            ("token", &token),
            ("content", "record"),
            ("events", "nope_arm_1,event_1_arm_1"),
        ],
        Expect::Error(E::InvalidParameterValues {
            parameter: "events",
            values: vec!["nope_arm_1".into()],
        }),
    )
    .await;
    check(
        &sb,
        "unknown events to delete",
        &[
            ("token", &token),
            ("content", "event"),
            ("action", "delete"),
            ("events[0]", "nope_arm_1"),
        ],
        Expect::Error(E::InvalidParameterValues {
            parameter: "events",
            values: vec!["nope_arm_1".into()],
        }),
    )
    .await;
    check(
        &sb,
        "an event in an unknown arm",
        &[
            ("token", &token),
            ("content", "event"),
            ("action", "import"),
            ("format", "json"),
            ("data", r#"[{"event_name": "X", "arm_num": 7}]"#),
        ],
        Expect::Error(E::BadStructure {
            details: "The arm number 7 of the event \"X\" does not exist in the project.".into(),
        }),
    )
    .await;
    // Without Design: 400 api_124; in production: 400 api_102.
    let designer_less = sb
        .user_with_token(
            pid,
            json!({"username": "nodesign", "design": 0, "api_export": 1, "api_import": 1,
                   "record_delete": 1, "forms": {"my_first_instrument": 1}}),
        )
        .await;
    for (label, params) in [
        (
            "arm import without Design",
            vec![
                ("content", "arm"),
                ("action", "import"),
                ("format", "json"),
                ("data", r#"[{"arm_num": 2, "name": "B"}]"#),
            ],
        ),
        (
            "repeating setup export without Design",
            vec![("content", "repeatingFormsEvents")],
        ),
    ] {
        let mut p = vec![("token", designer_less.as_str())];
        p.extend(params);
        check(&sb, label, &p, Expect::Error(E::DesignPrivilege)).await;
    }
    sb.admin(
        Method::POST,
        &format!("/sandbox/projects/{pid}/status"),
        Some(json!({"status": 1})),
    )
    .await;
    check(
        &sb,
        "event delete in production",
        &[
            ("token", &token),
            ("content", "event"),
            ("action", "delete"),
            ("events[0]", "event_1_arm_1"),
        ],
        Expect::Error(E::ProductionDesign),
    )
    .await;
}
