//! The client against the sandbox started in this process, plus a scripted
//! HTTP server for the retry and limiter rules.

#[path = "../../redcap-sandbox/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{SUPER, Sandbox};
use redcap::client::{
    Client, DagAssignment, Error, Field, FileField, FileUpload, Format, ImportOptions,
    ImportResult, LogQuery, LogType, NewDag, NewProject, OutboundLimiter, OverwriteBehavior,
    Params, RawOrLabel, RecordQuery, RecordType, RetryPolicy, ReturnContent, RoleAssignment, Row,
};
use redcap::redact::Placeholder;
use redcap::{Content, FormRight, RedcapVersion, SuperToken, Token};
use serde_json::{Value, json};

fn row(v: Value) -> Row {
    v.as_object().unwrap().clone()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

fn metadata() -> Vec<Field> {
    let mut name = Field::new("name", "demographics", "text", "Name");
    name.identifier = "y".into();
    let mut symptoms = Field::new("symptoms", "visit", "checkbox", "Symptoms");
    symptoms.select_choices_or_calculations = "1, Fever | 2, Cough".into();
    let mut arm = Field::new("arm", "visit", "radio", "Arm");
    arm.select_choices_or_calculations = "a, A | b, B".into();
    vec![
        Field::new("record_id", "demographics", "text", "Record ID"),
        name,
        symptoms,
        arm,
    ]
}

/// Creates a project through the client; answers (client, creator token).
async fn project(sb: &Sandbox) -> (Client, Token) {
    let client = Client::new(&sb.api).unwrap().with_retry(fast_retry());
    let sup = SuperToken::parse(SUPER).unwrap();
    let token = client
        .create_project(
            &sup,
            &NewProject {
                project_title: "Client trial".into(),
                purpose: 2,
                ..NewProject::default()
            },
        )
        .await
        .unwrap();
    (client, token)
}

#[tokio::test]
async fn project_metadata_and_records_round_trip() {
    let sb = Sandbox::start().await;
    let (client, token) = project(&sb).await;
    let sup = SuperToken::parse(SUPER).unwrap();
    assert_eq!(
        client.version_with_super_token(&sup).await.unwrap(),
        RedcapVersion::SPEC
    );
    let p = client.project(token.clone());
    assert_eq!(p.version().await.unwrap(), RedcapVersion::SPEC);
    let info = p.project_info().await.unwrap();
    assert_eq!(info.project_title, "Client trial");
    assert_eq!((info.purpose, info.in_production), (2, 0));
    assert!(info.other.contains_key("project_language"));

    assert_eq!(p.import_metadata(&metadata()).await.unwrap(), 4);
    let md = p.export_metadata::<&str>(&[], &[]).await.unwrap();
    assert_eq!(md.len(), 4);
    assert_eq!(md[1].identifier, "y");
    assert_eq!(p.export_metadata(&[], &["visit"]).await.unwrap().len(), 2);
    let names = p.export_field_names(Some("symptoms")).await.unwrap();
    assert_eq!(
        names
            .iter()
            .map(|n| n.export_field_name.as_str())
            .collect::<Vec<_>>(),
        ["symptoms___1", "symptoms___2"]
    );
    let instruments = p.export_instruments().await.unwrap();
    assert_eq!(instruments[1].instrument_name, "visit");

    // Import: count, then ids; overwrite erases with blanks.
    let rows = vec![
        row(json!({"record_id": "1", "name": "Ann", "symptoms___1": "1", "arm": "a"})),
        row(json!({"record_id": "2", "name": "Bob, \"B\"", "arm": "b"})),
    ];
    assert_eq!(
        p.import_records(&rows, &ImportOptions::default())
            .await
            .unwrap(),
        ImportResult::Count(2)
    );
    let ids = ImportOptions {
        return_content: ReturnContent::Ids,
        ..ImportOptions::default()
    };
    assert_eq!(
        p.import_records(&[row(json!({"record_id": "3", "name": "Cy"}))], &ids)
            .await
            .unwrap(),
        ImportResult::Ids(vec!["3".into()])
    );
    let blank = row(json!({"record_id": "3", "name": ""}));
    p.import_records(std::slice::from_ref(&blank), &ImportOptions::default())
        .await
        .unwrap();
    let q3 = RecordQuery {
        records: vec!["3".into()],
        ..RecordQuery::default()
    };
    assert_eq!(p.export_records(&q3).await.unwrap()[0]["name"], "Cy");
    let overwrite = ImportOptions {
        overwrite: OverwriteBehavior::Overwrite,
        return_content: ReturnContent::Nothing,
        ..ImportOptions::default()
    };
    assert_eq!(
        p.import_records(&[blank], &overwrite).await.unwrap(),
        ImportResult::Nothing
    );
    assert_eq!(p.export_records(&q3).await.unwrap()[0]["name"], "");
    let auto = ImportOptions {
        force_auto_number: true,
        return_content: ReturnContent::AutoIds,
        ..ImportOptions::default()
    };
    assert_eq!(
        p.import_records(&[row(json!({"record_id": "x", "name": "Auto"}))], &auto)
            .await
            .unwrap(),
        ImportResult::AutoIds(vec![("4".into(), "x".into())])
    );

    // The same flat export in all three formats decodes to the same rows.
    let all = RecordQuery::default();
    let json_rows = p.export_records(&all).await.unwrap();
    assert_eq!(json_rows.len(), 4);
    assert_eq!(json_rows[1]["name"], "Bob, \"B\"");
    for format in [Format::Csv, Format::Xml] {
        assert_eq!(
            p.export_records_in(format, &all).await.unwrap(),
            json_rows,
            "{format:?}"
        );
    }
    let csv = p
        .export_records_raw(Format::Csv, RecordType::Flat, &all)
        .await
        .unwrap();
    assert!(
        csv.starts_with(
            "record_id,name,demographics_complete,symptoms___1,symptoms___2,arm,visit_complete\n"
        ),
        "{csv}"
    );

    // Filters, labels, EAV.
    let some = RecordQuery {
        records: vec!["1".into()],
        fields: vec!["record_id".into(), "arm".into()],
        raw_or_label: RawOrLabel::Label,
        ..RecordQuery::default()
    };
    let r = p.export_records(&some).await.unwrap();
    assert_eq!(r, vec![row(json!({"record_id": "1", "arm": "A"}))]);
    let visit = RecordQuery {
        forms: vec!["visit".into()],
        records: vec!["1".into()],
        ..RecordQuery::default()
    };
    let r = p.export_records(&visit).await.unwrap();
    assert!(r[0].contains_key("symptoms___1") && !r[0].contains_key("name"));
    let eav = p.export_records_eav(&RecordQuery::default()).await.unwrap();
    assert!(
        eav.iter()
            .any(|e| e.record == "1" && e.field_name == "symptoms" && e.value == "1")
    );
    let eav_xml = p
        .export_records_raw(Format::Xml, RecordType::Eav, &RecordQuery::default())
        .await
        .unwrap();
    assert!(eav_xml.contains("<records>"), "{eav_xml}");

    // CSV and XML imports.
    let csv_data = "record_id,name\n5,Eve\n6,Fay\n";
    assert_eq!(
        p.import_records_raw(Format::Csv, csv_data, &ImportOptions::default())
            .await
            .unwrap(),
        ImportResult::Count(2)
    );
    let xml_data =
        "<records><item><record_id>7</record_id><name>Gil &amp; Co</name></item></records>";
    assert_eq!(
        p.import_records_raw(Format::Xml, xml_data, &ImportOptions::default())
            .await
            .unwrap(),
        ImportResult::Count(1)
    );
    let q7 = RecordQuery {
        records: vec!["7".into()],
        ..RecordQuery::default()
    };
    assert_eq!(p.export_records(&q7).await.unwrap()[0]["name"], "Gil & Co");

    // Rename and delete.
    p.rename_record("7", "70").await.unwrap();
    assert_eq!(
        p.rename_record("nope", "71").await.unwrap_err(),
        Error::BadRequest {
            message: "Current Record does not exists.".into()
        }
    );
    assert_eq!(p.delete_records(&["70", "6"], None).await.unwrap(), 2);
    let err = p.delete_records(&["1", "404"], None).await.unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest { message } if message.ends_with("do not exist: 404")),
        "{err:?}"
    );
    assert_eq!(p.generate_next_record_name().await.unwrap(), "6");
}

#[tokio::test]
async fn users_roles_dags_and_logging() {
    let sb = Sandbox::start().await;
    let (client, token) = project(&sb).await;
    let p = client.project(token);
    p.import_metadata(&metadata()).await.unwrap();

    // Users: typed export, CSV/XML exports with the same users.
    assert_eq!(
        p.import_users(&[
            row(json!({"username": "alice", "api_export": 1, "forms": {"demographics": 2}})),
            row(json!({"username": "bob"})),
        ])
        .await
        .unwrap(),
        2
    );
    let users = p.export_users().await.unwrap();
    let alice = users.iter().find(|u| u.username == "alice").unwrap();
    assert!(alice.rights.api_export && !alice.rights.api_import);
    assert_eq!(alice.rights.forms["demographics"], FormRight::ReadOnly);
    for format in [Format::Csv, Format::Xml] {
        let rows = p.export_users_in(format).await.unwrap();
        let names: Vec<_> = rows.iter().map(|r| r["username"].clone()).collect();
        assert_eq!(
            names,
            json!(["alice", "bob", "site_admin"])
                .as_array()
                .unwrap()
                .clone()
        );
    }
    let csv = p.export_users_raw(Format::Csv).await.unwrap();
    assert!(csv.starts_with("username,email,"), "{csv}");
    assert_eq!(
        p.import_users_raw(Format::Csv, "username,api_import\nbob,1\n")
            .await
            .unwrap(),
        1
    );
    let bob = p
        .export_users()
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.username == "bob")
        .unwrap();
    assert!(bob.rights.api_import);

    // Roles and assignments.
    assert_eq!(
        p.import_user_roles(&[row(json!({"role_label": "Monitor", "api_export": 1}))])
            .await
            .unwrap(),
        1
    );
    let roles = p.export_user_roles().await.unwrap();
    assert_eq!(roles[0].role_label, "Monitor");
    assert!(roles[0].rights.api_export);
    let role = roles[0].unique_role_name.clone();
    assert_eq!(
        p.import_user_role_assignments(&[RoleAssignment {
            username: "bob".into(),
            unique_role_name: role.clone(),
        }])
        .await
        .unwrap(),
        1
    );
    let map = p.export_user_role_assignments().await.unwrap();
    assert!(map.contains(&RoleAssignment {
        username: "bob".into(),
        unique_role_name: role.clone()
    }));

    // DAGs and the user-DAG mapping.
    assert_eq!(
        p.import_dags(&[NewDag {
            data_access_group_name: "Site A".into(),
            unique_group_name: String::new(),
        }])
        .await
        .unwrap(),
        1
    );
    let dags = p.export_dags().await.unwrap();
    assert_eq!(dags[0].unique_group_name, "site_a");
    assert_eq!(
        p.import_user_dag_assignments(&[DagAssignment {
            username: "alice".into(),
            redcap_data_access_group: "site_a".into(),
        }])
        .await
        .unwrap(),
        1
    );
    assert!(
        p.export_user_dag_assignments()
            .await
            .unwrap()
            .contains(&DagAssignment {
                username: "alice".into(),
                redcap_data_access_group: "site_a".into()
            })
    );
    p.import_records(
        &[row(
            json!({"record_id": "1", "name": "Ann", "redcap_data_access_group": "site_a"}),
        )],
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let with_dag = p
        .export_records(&RecordQuery {
            export_data_access_groups: true,
            ..RecordQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(with_dag[0]["redcap_data_access_group"], "site_a");

    // Logging with filters.
    let log = p
        .export_logging(&LogQuery::default(), &Placeholder)
        .await
        .unwrap();
    assert!(
        log.iter().any(|e| e.action() == "Create record (API) 1"),
        "{log:?}"
    );
    let rec = p
        .export_logging(
            &LogQuery {
                logtype: Some(LogType::Record),
                record: Some("1".into()),
                ..LogQuery::default()
            },
            &Placeholder,
        )
        .await
        .unwrap();
    assert!(
        !rec.is_empty() && rec.iter().all(|e| e.record() == "1"),
        "{rec:?}"
    );
    let nobody = p
        .export_logging(
            &LogQuery {
                user: Some("nobody".into()),
                ..LogQuery::default()
            },
            &Placeholder,
        )
        .await
        .unwrap();
    assert!(nobody.is_empty());
    let dag_rows = p
        .export_logging(
            &LogQuery {
                dag: Some(dags[0].data_access_group_id),
                logtype: Some(LogType::Record),
                ..LogQuery::default()
            },
            &Placeholder,
        )
        .await
        .unwrap();
    assert!(dag_rows.iter().all(|e| e.record() == "1"), "{dag_rows:?}");
    let future = p
        .export_logging(
            &LogQuery {
                begin_time: Some("2999-01-01 00:00".into()),
                ..LogQuery::default()
            },
            &Placeholder,
        )
        .await
        .unwrap();
    assert!(future.is_empty());
    let csv = p
        .export_logging_raw(Format::Csv, &LogQuery::default(), &Placeholder)
        .await
        .unwrap();
    assert!(
        csv.starts_with("timestamp,username,action,details,record"),
        "{csv}"
    );

    // Deletes.
    assert_eq!(p.delete_user_roles(&[role.as_str()]).await.unwrap(), 1);
    assert_eq!(p.delete_dags(&["site_a"]).await.unwrap(), 1);
    assert_eq!(p.delete_users(&["bob"]).await.unwrap(), 1);
    assert_eq!(p.export_users().await.unwrap().len(), 2);
}

#[tokio::test]
async fn refusals_become_distinct_errors() {
    let sb = Sandbox::start().await;
    let (client, token) = project(&sb).await;
    let admin = client.project(token.clone());
    admin.import_metadata(&metadata()).await.unwrap();

    // Unknown token.
    let unknown = Token::parse("0123456789ABCDEF0123456789ABCDEF").unwrap();
    let e = client.project(unknown).version().await.unwrap_err();
    assert_eq!(e, Error::InvalidToken);

    // A project token cannot create projects.
    let as_super = SuperToken::parse(&format!("{}{}", token.expose(), token.expose())).unwrap();
    let e = client
        .create_project(
            &as_super,
            &NewProject {
                project_title: "x".into(),
                ..NewProject::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e, Error::SuperTokenRequired);

    // No API rights; no User Rights privilege; bad request.
    let none = Token::parse(&sb.user_with_token(1, json!({"username": "nobody"})).await).unwrap();
    let e = client.project(none).export_users().await.unwrap_err();
    assert_eq!(
        e,
        Error::NoApiRight {
            message: "You do not have API Export privileges".into()
        }
    );
    let exporter = Token::parse(
        &sb.user_with_token(
            1,
            json!({"username": "exporter", "api_export": 1, "forms_export": {"demographics": 1}}),
        )
        .await,
    )
    .unwrap();
    let exporter = client.project(exporter);
    let e = exporter.export_users().await.unwrap_err();
    assert!(matches!(e, Error::Privilege { .. }), "{e:?}");
    let e = exporter
        .export_records(&RecordQuery {
            fields: vec!["nope".into()],
            ..RecordQuery::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::BadRequest {
            message: "The following values in the parameter \"fields\" are not valid: 'nope'"
                .into()
        }
    );

    // Expired rights.
    let (s, _) = sb
        .admin(
            reqwest::Method::POST,
            "/sandbox/projects/1/users/exporter/expiration",
            Some(json!({"expiration": "2020-01-31"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        exporter.version().await.unwrap_err(),
        Error::Expired {
            date: "2020-01-31".into()
        }
    );

    // Errors and Debug output never carry the token.
    let shown = format!("{e} {e:?} {exporter:?} {client:?}");
    assert!(!shown.contains(token.expose()), "{shown}");
    assert!(format!("{admin:?}").contains("Token(<redacted>)"));
}

#[tokio::test]
async fn a_ban_is_rate_limited_and_never_retried() {
    let sb = Sandbox::start_with(|c| c.page_hit_threshold = Some(2)).await;
    let limiter = Arc::new(Counting::allowing(usize::MAX));
    let client = Client::new(&sb.api)
        .unwrap()
        .with_retry(fast_retry())
        .with_limiter(limiter.clone());
    let sup = SuperToken::parse(SUPER).unwrap();
    for _ in 0..3 {
        client.version_with_super_token(&sup).await.unwrap();
    }
    let e = client.version_with_super_token(&sup).await.unwrap_err();
    assert_eq!(
        e,
        Error::RateLimited {
            message: "Your IP address (127.0.0.1) has been banned due to suspected abuse.".into()
        }
    );
    // Four calls, four requests: the 429 was not retried.
    assert_eq!(limiter.asked.load(Ordering::SeqCst), 4);
}

/// A limiter that counts requests and allows the first `allow`.
struct Counting {
    asked: AtomicUsize,
    allow: usize,
}

impl Counting {
    fn allowing(allow: usize) -> Counting {
        Counting {
            asked: AtomicUsize::new(0),
            allow,
        }
    }
}

impl OutboundLimiter for Counting {
    async fn acquire(&self) -> bool {
        self.asked.fetch_add(1, Ordering::SeqCst) < self.allow
    }
}

/// A server that answers the scripted statuses in turn (then 200 `15.7.6`)
/// and counts requests.
struct Scripted {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn scripted(statuses: Vec<u16>) -> Scripted {
    use axum::http::StatusCode;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let statuses = Arc::new(statuses);
    let app = axum::Router::new().route(
        "/api/",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let statuses = statuses.clone();
            async move {
                match statuses.get(n) {
                    Some(&s) => (StatusCode::from_u16(s).unwrap(), "overloaded".to_owned()),
                    None => (StatusCode::OK, "15.7.6".to_owned()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Scripted {
        url: format!("http://{addr}/api/"),
        hits,
    }
}

fn some_token() -> Token {
    Token::parse("0123456789ABCDEF0123456789ABCDEF").unwrap()
}

#[tokio::test]
async fn exports_are_retried_on_transient_statuses_only() {
    for status in [408, 500, 502, 503, 504] {
        let server = scripted(vec![status, status]).await;
        let p = Client::new(&server.url)
            .unwrap()
            .with_retry(fast_retry())
            .project(some_token());
        assert_eq!(p.version().await.unwrap(), RedcapVersion::SPEC, "{status}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 3, "{status}");
    }
    // Out of attempts: the last answer is the error.
    let server = scripted(vec![503, 503, 503]).await;
    let p = Client::new(&server.url)
        .unwrap()
        .with_retry(fast_retry())
        .project(some_token());
    assert_eq!(
        p.version().await.unwrap_err(),
        Error::Server {
            status: 503,
            message: "overloaded".into()
        }
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    // Not retried: 429, 400, 403, 501.
    for status in [429, 400, 403, 501] {
        let server = scripted(vec![status]).await;
        let p = Client::new(&server.url)
            .unwrap()
            .with_retry(fast_retry())
            .project(some_token());
        assert!(p.version().await.is_err(), "{status}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "{status}");
    }
}

#[tokio::test]
async fn writes_are_never_retried() {
    let server = scripted(vec![503, 503]).await;
    let p = Client::new(&server.url)
        .unwrap()
        .with_retry(fast_retry())
        .project(some_token());
    let e = p
        .import_records(&[row(json!({"record_id": "1"}))], &ImportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server { status: 503, .. }), "{e:?}");
    let e = p.delete_records(&["1"], None).await.unwrap_err();
    assert!(matches!(e, Error::Server { status: 503, .. }), "{e:?}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn transport_errors_are_retried_and_reported() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let limiter = Arc::new(Counting::allowing(usize::MAX));
    let p = Client::new(&format!("http://{addr}/api/"))
        .unwrap()
        .with_retry(fast_retry())
        .with_limiter(limiter.clone())
        .project(some_token());
    let e = p.version().await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(!e.to_string().contains(some_token().expose()));
    assert_eq!(limiter.asked.load(Ordering::SeqCst), 3);
    let limiter = Arc::new(Counting::allowing(usize::MAX));
    let p = Client::new(&format!("http://{addr}/api/"))
        .unwrap()
        .with_retry(fast_retry())
        .with_limiter(limiter.clone())
        .project(some_token());
    assert!(matches!(
        p.import_users(&[row(json!({"username": "a"}))]).await,
        Err(Error::Transport { .. })
    ));
    assert_eq!(limiter.asked.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_limiter_sees_every_request_and_can_refuse() {
    let server = scripted(vec![503]).await;
    let limiter = Arc::new(Counting::allowing(1));
    let p = Client::new(&server.url)
        .unwrap()
        .with_retry(fast_retry())
        .with_limiter(limiter.clone())
        .project(some_token());
    // The first attempt is allowed (503), the retry is refused.
    assert_eq!(p.version().await.unwrap_err(), Error::Throttled);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    assert_eq!(limiter.asked.load(Ordering::SeqCst), 2);
    // A raw call through the escape hatch passes the limiter too.
    assert_eq!(
        p.call(Params::export(Content::Version)).await.unwrap_err(),
        Error::Throttled
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn files_export_import_and_delete() {
    let sb = Sandbox::start().await;
    let (client, token) = project(&sb).await;
    let p = client.project(token);
    let mut fields = metadata();
    fields.push(Field::new("consent", "demographics", "file", "Consent"));
    p.import_metadata(&fields).await.unwrap();
    p.import_records(&[row(json!({"record_id": "1"}))], &ImportOptions::default())
        .await
        .unwrap();
    let at = FileField::new("1", "consent");

    // Nothing there yet: REDCap's message as a bad request.
    assert_eq!(
        p.export_file(&at).await.unwrap_err(),
        Error::BadRequest {
            message: "There is no file to download for this record".into()
        }
    );
    // Bytes that look like an error body still come back as the file.
    let bytes = b"ERROR: not an error\n\x00\xff".to_vec();
    p.import_file(
        &at,
        FileUpload {
            file_name: "consent.txt".into(),
            content_type: Some("text/plain".into()),
            bytes: bytes.clone(),
        },
    )
    .await
    .unwrap();
    let d = p.export_file(&at).await.unwrap();
    assert_eq!(d.bytes, bytes);
    assert_eq!(d.name.as_deref(), Some("consent.txt"));
    assert_eq!(d.mime_type, "text/plain");
    assert!(
        !format!("{d:?}").contains("not an error"),
        "no contents in Debug"
    );

    // Errors keep REDCap's texts.
    assert_eq!(
        p.import_file(
            &FileField::new("9", "consent"),
            FileUpload {
                file_name: "x.pdf".into(),
                content_type: None,
                bytes: vec![1],
            },
        )
        .await
        .unwrap_err(),
        Error::BadRequest {
            message: "The record '9' does not exist. It must exist to upload a file".into()
        }
    );
    assert_eq!(
        p.export_file(&FileField::new("1", "name"))
            .await
            .unwrap_err(),
        Error::BadRequest {
            message: "The field 'name' does not exist or is not a 'file' field".into()
        }
    );

    p.delete_file(&at).await.unwrap();
    assert_eq!(
        p.delete_file(&at).await.unwrap_err(),
        Error::BadRequest {
            message: "There is no file to delete for this record".into()
        }
    );

    // A token without API Export is refused as such.
    let reader = sb
        .user_with_token(1, json!({"username": "importer", "api_import": 1}))
        .await;
    let q = client.project(Token::parse(&reader).unwrap());
    assert!(matches!(
        q.export_file(&at).await.unwrap_err(),
        Error::NoApiRight { .. }
    ));
}

#[tokio::test]
async fn file_exports_are_retried_and_uploads_are_not() {
    let server = scripted(vec![503]).await;
    let p = Client::new(&server.url)
        .unwrap()
        .with_retry(fast_retry())
        .project(some_token());
    let d = p.export_file(&FileField::new("1", "f")).await.unwrap();
    assert_eq!(d.bytes, b"15.7.6");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);

    let server = scripted(vec![503, 503]).await;
    let p = Client::new(&server.url)
        .unwrap()
        .with_retry(fast_retry())
        .project(some_token());
    let upload = FileUpload {
        file_name: "a.txt".into(),
        content_type: None,
        bytes: b"a".to_vec(),
    };
    let e = p
        .import_file(&FileField::new("1", "f"), upload)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Server { status: 503, .. }), "{e:?}");
    let e = p.delete_file(&FileField::new("1", "f")).await.unwrap_err();
    assert!(matches!(e, Error::Server { status: 503, .. }), "{e:?}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

/// A server whose `/api/` answers `status` with `Location: {target}`, and a
/// second one (the redirect's target) that counts what reaches it and
/// whether the token came along.
#[tokio::test]
async fn redirects_are_never_followed_and_the_token_stays_home() {
    let elsewhere = scripted(vec![]).await;
    for status in [301u16, 302, 303, 307, 308] {
        let target = elsewhere.url.clone();
        let app = axum::Router::new().route(
            "/api/",
            axum::routing::post(move || {
                let target = target.clone();
                async move {
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(
                            axum::http::header::LOCATION,
                            format!("{target}?from=redirect"),
                        )],
                        "moved",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let p = Client::new(&format!("http://{addr}/api/"))
            .unwrap()
            .with_retry(fast_retry())
            .project(some_token());
        let e = p.version().await.unwrap_err();
        let Error::Server { status: s, message } = &e else {
            panic!("{status}: {e:?}");
        };
        assert_eq!(*s, status);
        assert!(
            message.contains(&elsewhere.url) && message.contains("[redcap] url"),
            "{status}: the error names where REDCap points and the fix: {message}"
        );
        assert!(
            !message.contains("from=redirect"),
            "{message}: the query is left out"
        );
        assert!(!e.to_string().contains(some_token().expose()), "{e}");
    }
    assert_eq!(
        elsewhere.hits.load(Ordering::SeqCst),
        0,
        "nothing (and no token) reached the redirect's target"
    );
}

#[tokio::test]
async fn file_repository_folders_files_and_restrictions() {
    use redcap::client::{NewFolder, RepositoryEntry};
    let sb = Sandbox::start().await;
    let (client, token) = project(&sb).await;
    let p = client.project(token);
    p.import_metadata(&metadata()).await.unwrap();
    p.import_dags(&[NewDag {
        data_access_group_name: "Site A".into(),
        unique_group_name: String::new(),
    }])
    .await
    .unwrap();
    let site_a = p.export_dags().await.unwrap()[0].data_access_group_id;

    let docs = p
        .create_repository_folder(&NewFolder::new("Docs"))
        .await
        .unwrap();
    let inner = p
        .create_repository_folder(&NewFolder {
            parent: Some(docs),
            ..NewFolder::new("Inner")
        })
        .await
        .unwrap();
    let restricted = p
        .create_repository_folder(&NewFolder {
            dag_id: Some(site_a),
            ..NewFolder::new("Site A only")
        })
        .await
        .unwrap();
    assert_ne!(docs, inner);
    let upload = |name: &str, bytes: &[u8]| FileUpload {
        file_name: name.into(),
        content_type: None,
        bytes: bytes.to_vec(),
    };
    let bytes = b"ERROR: not an error\n\x00\xff".to_vec();
    p.import_repository_file(Some(docs), upload("notes.txt", &bytes))
        .await
        .unwrap();
    p.import_repository_file(Some(docs), upload("notes.txt", b"again"))
        .await
        .unwrap();

    let top = p.list_repository(None).await.unwrap();
    assert_eq!(
        top,
        [
            RepositoryEntry::Folder {
                folder_id: docs,
                name: "Docs".into()
            },
            RepositoryEntry::Folder {
                folder_id: restricted,
                name: "Site A only".into()
            }
        ]
    );
    let listing = p.list_repository(Some(docs)).await.unwrap();
    let names: Vec<&str> = listing.iter().map(RepositoryEntry::name).collect();
    assert_eq!(names, ["Inner", "notes (1).txt", "notes.txt"]);
    let RepositoryEntry::File { doc_id, .. } = listing[2].clone() else {
        panic!("not a file: {:?}", listing[2]);
    };
    let d = p.export_repository_file(doc_id).await.unwrap();
    assert_eq!(d.bytes, bytes);
    assert_eq!(d.name.as_deref(), Some("notes.txt"));
    assert_eq!(d.mime_type, "text/plain");

    p.delete_repository_file(doc_id).await.unwrap();
    let names: Vec<String> = p
        .list_repository(Some(docs))
        .await
        .unwrap()
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    assert_eq!(names, ["Inner", "notes (1).txt"]);

    // REDCap's texts as errors: a taken name, an unknown doc.
    assert_eq!(
        p.create_repository_folder(&NewFolder::new("Docs"))
            .await
            .unwrap_err(),
        Error::BadRequest {
            message: redcap::ApiError::RepositoryFolderExists {
                name: "Docs".into()
            }
            .message()
        }
    );
    assert_eq!(
        p.export_repository_file(999_999).await.unwrap_err(),
        Error::BadRequest {
            message: "Invalid doc_id or missing doc_id".into()
        }
    );

    // A user of another DAG does not see, nor reach, Site A's folder.
    p.import_dags(&[NewDag {
        data_access_group_name: "Site B".into(),
        unique_group_name: String::new(),
    }])
    .await
    .unwrap();
    let other = sb
        .user_with_token(
            1,
            json!({"username": "bea", "file_repository": 1, "api_export": 1,
                   "api_import": 1, "data_access_group": "site_b"}),
        )
        .await;
    let q = client.project(Token::parse(&other).unwrap());
    let names: Vec<String> = q
        .list_repository(None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.name().to_owned())
        .collect();
    assert_eq!(names, ["Docs"]);
    assert!(matches!(
        q.list_repository(Some(restricted)).await.unwrap_err(),
        Error::BadRequest { message } if message.contains("DAG-restricted")
    ));

    // Without the File Repository right: a privilege refusal.
    let none = sb
        .user_with_token(1, json!({"username": "nofr", "api_export": 1}))
        .await;
    let r = client.project(Token::parse(&none).unwrap());
    assert!(matches!(
        r.list_repository(None).await.unwrap_err(),
        Error::Privilege { message } if message.contains("\"File Repository\" rights")
    ));
}
