//! Surveys: the admin endpoint that makes an instrument a survey and
//! records responses, `surveyLink`, `surveyQueueLink`, `surveyAccessCode`,
//! `surveyReturnCode`, `participantList` (answers, codes, errors in REDCap
//! 15.7.6's words and order, rights, logging, the public URL), surveys
//! from a REDCap XML file, and Export Records' `exportSurveyFields`
//! (columns and values, flat and EAV, JSON/CSV/XML).

mod common;

use common::{SUPER, Sandbox};
use redcap::ApiError as E;
use reqwest::Method;
use serde_json::{Value, json};

const HASH_CHARS: &str = "abcdefghijkmnopqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ23456789";
const CODE_CHARS: &str = "34789ACDEFHJKLMNPRTWXY";

/// A classic project with the standard dictionary and records 1 and 2.
async fn classic(sb: &Sandbox) -> String {
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "name": "Alice", "age": "30", "demographics_complete": "2"},
                {"record_id": "2", "name": "Bob", "symptoms___1": "1", "arm": "a"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    token
}

async fn enable(sb: &Sandbox, pid: u64, body: Value) -> Value {
    let (s, v) = sb
        .admin(
            Method::POST,
            &format!("/sandbox/projects/{pid}/surveys"),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn respond(sb: &Sandbox, pid: u64, form: &str, body: Value) {
    let (s, v) = sb
        .admin(
            Method::POST,
            &format!("/sandbox/projects/{pid}/surveys/{form}/responses"),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

fn hash_of<'a>(link: &'a str, prefix: &str) -> &'a str {
    assert!(
        link.starts_with(prefix),
        "{link} does not start with {prefix}"
    );
    &link[prefix.len()..]
}

#[tokio::test]
async fn survey_links_and_codes() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    let call = |extra: Vec<(&'static str, &'static str)>| {
        let token = token.clone();
        let sb = &sb;
        async move {
            let mut params: Vec<(&str, &str)> = vec![("token", &token)];
            params.extend(extra);
            sb.post(&params).await
        }
    };
    // Errors in REDCap's order: record, instrument, survey.
    let link = |extra: &[(&'static str, &'static str)]| {
        let mut v = vec![("content", "surveyLink"), ("returnFormat", "json")];
        v.extend_from_slice(extra);
        v
    };
    call(link(&[]))
        .await
        .assert_error(400, "The parameter 'record' is missing");
    call(link(&[("record", "9")]))
        .await
        .assert_error(400, "The record \"9\" does not exist");
    call(link(&[("record", "<b>")]))
        .await
        .assert_error(400, "The record \"&lt;b&gt;\" does not exist");
    call(link(&[("record", "1")]))
        .await
        .assert_error(400, "The parameter 'instrument' is missing");
    call(link(&[("record", "1"), ("instrument", "nope")]))
        .await
        .assert_error(400, "Invalid instrument");
    call(link(&[("record", "1"), ("instrument", "visit")]))
        .await
        .assert_error(
            400,
            "The instrument 'visit' has not been enabled as a survey",
        );
    // The return code's message quotes (and escapes) the name.
    call(vec![
        ("content", "surveyReturnCode"),
        ("returnFormat", "json"),
        ("record", "1"),
        ("instrument", "visit"),
    ])
    .await
    .assert_error(
        400,
        "The instrument \"visit\" has not been enabled as a survey",
    );
    // The error shapes follow returnFormat.
    let a = call(vec![("content", "surveyLink"), ("returnFormat", "csv")]).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (400, "ERROR: The parameter 'record' is missing")
    );

    // `visit` becomes a survey with "Save & Return Later" and the queue.
    let v = enable(
        &sb,
        1,
        json!({"form": "visit", "save_and_return": true, "queue": true}),
    )
    .await;
    assert_eq!(v[0]["form"], "visit");
    assert_eq!(v[0]["title"], "Visit");
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["surveys_enabled"], 1);

    let page = format!("{}/surveys/", sb.base);
    let a = call(link(&[("record", "1"), ("instrument", "visit")])).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/html; charset=UTF-8");
    let hash = hash_of(&a.body, &format!("{page}?s=")).to_owned();
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| HASH_CHARS.contains(c)), "{hash}");
    // The same link every time; another record has its own. Parameters
    // are trimmed by this method.
    let again = call(link(&[("record", " 1 "), ("instrument", "visit ")])).await;
    assert_eq!(again.body, a.body);
    let other = call(link(&[("record", "2"), ("instrument", "visit")])).await;
    assert_ne!(other.body, a.body);
    // A repeat_instance where nothing repeats is instance 1.
    let inst = call(link(&[
        ("record", "1"),
        ("instrument", "visit"),
        ("repeat_instance", "3"),
    ]))
    .await;
    assert_eq!(inst.body, a.body);

    let access = |record: &'static str| {
        vec![
            ("content", "surveyAccessCode"),
            ("returnFormat", "json"),
            ("record", record),
            ("instrument", "visit"),
        ]
    };
    let code = call(access("1")).await;
    assert_eq!(code.status, 200, "{}", code.body);
    assert_eq!(code.body.len(), 9);
    assert!(
        code.body.chars().all(|c| CODE_CHARS.contains(c)),
        "{}",
        code.body
    );
    assert_eq!(call(access("1")).await.body, code.body);
    assert_ne!(call(access("2")).await.body, code.body);

    let ret = |record: &'static str| {
        vec![
            ("content", "surveyReturnCode"),
            ("returnFormat", "json"),
            ("record", record),
            ("instrument", "visit"),
        ]
    };
    let rc = call(ret("1")).await;
    assert_eq!(rc.status, 200, "{}", rc.body);
    assert_eq!(rc.body.len(), 8);
    assert!(
        rc.body.chars().all(|c| CODE_CHARS.contains(c)),
        "{}",
        rc.body
    );
    assert_eq!(call(ret("1")).await.body, rc.body);

    let queue = |record: &'static str| {
        vec![
            ("content", "surveyQueueLink"),
            ("returnFormat", "json"),
            ("record", record),
        ]
    };
    let q = call(queue("1")).await;
    assert_eq!(q.status, 200, "{}", q.body);
    let qh = hash_of(&q.body, &format!("{page}?sq=")).to_owned();
    assert_eq!(qh.len(), 10);
    assert!(qh.chars().all(|c| HASH_CHARS.contains(c)), "{qh}");
    assert_eq!(call(queue("1")).await.body, q.body);
    call(queue("9"))
        .await
        .assert_error(400, "The record \"9\" does not exist");

    // `demographics`: a survey without Save & Return and out of the queue.
    enable(&sb, 1, json!({"form": "demographics"})).await;
    call(vec![
        ("content", "surveyReturnCode"),
        ("returnFormat", "json"),
        ("record", "1"),
        ("instrument", "demographics"),
    ])
    .await
    .assert_error(
        400,
        "The 'Save & Return Later' feature has not been enabled for this survey",
    );
    // No survey in the queue: the queue link is refused.
    enable(&sb, 1, json!({"form": "visit", "save_and_return": true})).await;
    call(queue("1")).await.assert_error(
        400,
        "The Survey Queue has not been enabled in this project. You will need to enable the Survey Queue before using this method.",
    );
    // A disabled survey is still a survey (REDCap checks only that it is one).
    let a = call(link(&[("record", "1"), ("instrument", "visit")])).await;
    assert_eq!(a.body, format!("{page}?s={hash}"));

    // Rights: Manage Survey Participants, after the entry gate.
    let rights = json!({"username": "nosurvey", "api_export": 1, "manage_survey_participants": 0,
        "forms": {"demographics": 1, "visit": 1}});
    let other = sb.user_with_token(1, rights).await;
    let mut params: Vec<(&str, &str)> = vec![("token", &other)];
    params.extend(link(&[("record", "9")]));
    sb.post(&params).await.assert_error(
        403,
        "The API request cannot complete because currently you do not have \"Manage Survey Participants\" privileges, which are required for this operation.",
    );
    let rights = json!({"username": "noexport", "api_export": 0, "manage_survey_participants": 1});
    let other = sb.user_with_token(1, rights).await;
    let mut params: Vec<(&str, &str)> = vec![("token", &other)];
    params.extend(link(&[("record", "1"), ("instrument", "visit")]));
    sb.post(&params)
        .await
        .assert_error(403, "You do not have API Export privileges");

    // Logged as Manage/Design rows with the record.
    let log = sb
        .call(&token, "log", &[("logtype", "manage")])
        .await
        .json();
    let rows = log.as_array().unwrap();
    for what in [
        "Download survey link (API)",
        "Download survey access code (API)",
        "Download survey return code (API)",
        "Download survey queue link (API)",
    ] {
        let row = rows
            .iter()
            .find(|r| r["details"] == what && r["record"] == "1")
            .unwrap_or_else(|| panic!("no {what} row: {log}"));
        assert_eq!(row["action"], "Manage/Design ");
    }

    // Links and codes survive a restart; deleting a record forgets them.
    let sb = sb.restart().await;
    let mut params: Vec<(&str, &str)> = vec![("token", &token)];
    params.extend(link(&[("record", "1"), ("instrument", "visit")]));
    assert_eq!(
        sb.post(&params).await.body,
        format!("{}/surveys/?s={hash}", sb.base)
    );
}

#[tokio::test]
async fn links_use_the_public_url() {
    let sb =
        Sandbox::start_with(|c| c.public_url = Some("https://redcap.example.org/redcap".into()))
            .await;
    let token = classic(&sb).await;
    enable(&sb, 1, json!({"form": "visit", "queue": true})).await;
    let a = sb
        .call(
            &token,
            "surveyLink",
            &[("record", "1"), ("instrument", "visit")],
        )
        .await;
    assert!(
        a.body
            .starts_with("https://redcap.example.org/redcap/surveys/?s="),
        "{}",
        a.body
    );
    let q = sb.call(&token, "surveyQueueLink", &[("record", "1")]).await;
    assert!(
        q.body
            .starts_with("https://redcap.example.org/redcap/surveys/?sq="),
        "{}",
        q.body
    );
}

#[tokio::test]
async fn participant_lists() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    sb.call(&token, "participantList", &[])
        .await
        .assert_error(400, "The parameter 'instrument' is missing");
    sb.call(&token, "participantList", &[("instrument", "x")])
        .await
        .assert_error(400, "Invalid instrument");
    sb.call(&token, "participantList", &[("instrument", "visit")])
        .await
        .assert_error(
            400,
            "The instrument 'visit' has not been enabled as a survey",
        );
    enable(&sb, 1, json!({"form": "demographics", "queue": true})).await;
    let link1 = sb
        .call(
            &token,
            "surveyLink",
            &[("record", "1"), ("instrument", "demographics")],
        )
        .await
        .body;
    // Every record has a participant: no email, no identifier, so no
    // record shown; not sent, no response.
    let a = sb
        .call(&token, "participantList", &[("instrument", "demographics")])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let list = a.json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "email",
            "email_occurrence",
            "identifier",
            "record",
            "invitation_sent_status",
            "invitation_send_time",
            "response_status",
            "survey_access_code",
            "survey_link",
            "survey_queue_link"
        ]
    );
    assert!(
        rows.iter().any(|r| r["survey_link"] == link1.as_str()),
        "{list}"
    );
    for r in rows {
        assert_eq!(r["email"], "");
        assert_eq!(r["email_occurrence"], "1");
        assert_eq!(r["record"], "");
        assert_eq!(r["invitation_sent_status"], 0);
        assert_eq!(r["response_status"], 0);
        assert_eq!(r["survey_access_code"].as_str().unwrap().len(), 9);
        assert!(
            r["survey_queue_link"]
                .as_str()
                .unwrap()
                .contains("/surveys/?sq=")
        );
    }
    // The raw answer: statuses are numbers.
    assert!(a.body.starts_with("[{\"email\":\"\",\"email_occurrence\":\"1\",\"identifier\":\"\",\"record\":\"\",\"invitation_sent_status\":0,"), "{}", a.body);

    // Record 1 answers (completed), with an identifier: its row shows the
    // record and, since completed responses cannot be edited, no code or
    // link. Record 2 starts but does not finish.
    respond(
        &sb,
        1,
        "demographics",
        json!({"record": "1", "identifier": "P-1", "email": "alice@example.org", "time": "2026-01-02 03:04:05"}),
    )
    .await;
    respond(
        &sb,
        1,
        "demographics",
        json!({"record": "2", "completed": false}),
    )
    .await;
    let list = sb
        .call(&token, "participantList", &[("instrument", "demographics")])
        .await
        .json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    // Sorted by email: "" before "alice@…".
    assert_eq!(rows[0]["email"], "");
    assert_eq!(rows[0]["response_status"], 1);
    assert_eq!(rows[1]["email"], "alice@example.org");
    assert_eq!(rows[1]["identifier"], "P-1");
    assert_eq!(rows[1]["record"], "1");
    assert_eq!(rows[1]["response_status"], 2);
    assert_eq!(rows[1]["survey_access_code"], "");
    assert_eq!(rows[1]["survey_link"], "");

    // CSV (PHP's fputcsv) and XML (CDATA) shapes.
    let csv = sb
        .post(&[
            ("token", &token),
            ("content", "participantList"),
            ("format", "csv"),
            ("instrument", "demographics"),
        ])
        .await;
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    let mut lines = csv.body.lines();
    assert_eq!(
        lines.next(),
        Some(
            "email,email_occurrence,identifier,record,invitation_sent_status,invitation_send_time,response_status,survey_access_code,survey_link,survey_queue_link"
        )
    );
    let last = lines.last().unwrap_or_else(|| panic!("{}", csv.body));
    assert!(
        last.starts_with("alice@example.org,1,P-1,1,0,,2,,,http"),
        "{last}"
    );
    let xml = sb
        .post(&[
            ("token", &token),
            ("content", "participantList"),
            ("format", "xml"),
            ("instrument", "demographics"),
        ])
        .await;
    assert!(
        xml.body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<participants>\n<participant><email><![CDATA[]]></email><email_occurrence><![CDATA[1]]></email_occurrence>"),
        "{}",
        xml.body
    );
    assert!(
        xml.body
            .contains("<identifier><![CDATA[P-1]]></identifier><record><![CDATA[1]]></record>")
    );
    assert!(xml.body.ends_with("</participants>"));

    // A DAG member sees its DAG's records' participants.
    let a = sb
        .import(
            &token,
            "dag",
            json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "1", "redcap_data_access_group": "site_a"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let member = sb
        .user_with_token(
            1,
            json!({"username": "sitea", "api_export": 1, "manage_survey_participants": 1, "data_access_group": "site_a",
                   "forms": {"demographics": 1, "visit": 1}, "forms_export": {"demographics": 1, "visit": 1}}),
        )
        .await;
    let list = sb
        .call(
            &member,
            "participantList",
            &[("instrument", "demographics")],
        )
        .await
        .json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["record"], "1");

    // A deleted record leaves the list.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("action", "delete"),
            ("records[0]", "2"),
        ])
        .await;
    assert_eq!(a.body, "1");
    let list = sb
        .call(&token, "participantList", &[("instrument", "demographics")])
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    let log = sb
        .call(&token, "log", &[("logtype", "manage")])
        .await
        .json();
    let row = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["details"] == "Download survey participant list (API)")
        .expect("a participant list row");
    assert_eq!(row["record"], "demographics");
}

#[tokio::test]
async fn longitudinal_and_repeating_surveys() {
    let sb = Sandbox::start().await;
    let a = sb
        .import(
            SUPER,
            "project",
            json!([{"project_title": "Cohort", "purpose": 2, "is_longitudinal": 1}]),
            &[],
        )
        .await;
    let token = a.body;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "event",
            json!([{"event_name": "Follow up", "arm_num": 1}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let a = sb
        .import(
            &token,
            "formEventMapping",
            json!([
                {"arm_num": "1", "unique_event_name": "event_1_arm_1", "form": "demographics"},
                {"arm_num": "1", "unique_event_name": "event_1_arm_1", "form": "visit"},
                {"arm_num": "1", "unique_event_name": "follow_up_arm_1", "form": "visit"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "repeatingFormsEvents",
            json!([{"event_name": "follow_up_arm_1", "form_name": "visit", "custom_form_label": ""}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "redcap_event_name": "event_1_arm_1", "name": "Alice"},
                {"record_id": "1", "redcap_event_name": "follow_up_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "1", "arm": "a", "visit_complete": "2"},
                {"record_id": "1", "redcap_event_name": "follow_up_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "2", "arm": "b", "visit_complete": "1"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    enable(&sb, 1, json!({"form": "demographics"})).await;
    enable(
        &sb,
        1,
        json!({"form": "visit", "save_and_return": true, "queue": true}),
    )
    .await;

    let link = |extra: Vec<(&'static str, &'static str)>| {
        let mut v = vec![("record", "1"), ("instrument", "visit")];
        v.extend(extra);
        v
    };
    sb.call(&token, "surveyLink", &link(vec![]))
        .await
        .assert_error(400, "The parameter 'event' is missing");
    sb.call(&token, "surveyLink", &link(vec![("event", "nope")]))
        .await
        .assert_error(400, "Invalid event");
    sb.call(
        &token,
        "surveyAccessCode",
        &[
            ("record", "1"),
            ("instrument", "demographics"),
            ("event", "follow_up_arm_1"),
        ],
    )
    .await
    .assert_error(
        400,
        "The instrument \"demographics\" has not been designated for the event \"follow_up_arm_1\"",
    );
    // The return code does not check the designation.
    let rc = sb
        .call(
            &token,
            "surveyReturnCode",
            &[
                ("record", "1"),
                ("instrument", "visit"),
                ("event", "event_1_arm_1"),
            ],
        )
        .await;
    assert_eq!(rc.status, 200, "{}", rc.body);
    // Instances of a repeating instrument have their own links.
    let one = sb
        .call(
            &token,
            "surveyLink",
            &link(vec![("event", "follow_up_arm_1")]),
        )
        .await;
    let two = sb
        .call(
            &token,
            "surveyLink",
            &link(vec![("event", "follow_up_arm_1"), ("repeat_instance", "2")]),
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_ne!(one.body, two.body);
    let base = sb
        .call(
            &token,
            "surveyLink",
            &link(vec![("event", "event_1_arm_1"), ("repeat_instance", "2")]),
        )
        .await;
    assert_ne!(base.body, one.body);
    // The repeating survey's list has repeat_instance, one row per instance.
    sb.call(&token, "participantList", &[("instrument", "visit")])
        .await
        .assert_error(400, "The parameter 'event' is missing");
    let list = sb
        .call(
            &token,
            "participantList",
            &[("instrument", "visit"), ("event", "follow_up_arm_1")],
        )
        .await
        .json();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0]["repeat_instance"], "1");
    assert_eq!(rows[1]["repeat_instance"], "2");
    assert!(rows.iter().any(|r| r["survey_link"] == two.body.as_str()));

    // Timestamps in the rows of their instance.
    respond(&sb, 1, "visit", json!({"record": "1", "event": "follow_up_arm_1", "instance": 2, "time": "2026-02-03 10:00:00"})).await;
    respond(
        &sb,
        1,
        "demographics",
        json!({"record": "1", "time": "2026-02-01 09:00:00", "identifier": "P-1"}),
    )
    .await;
    let rows = sb
        .call(&token, "record", &[("exportSurveyFields", "true")])
        .await
        .json();
    let rows = rows.as_array().unwrap();
    // The first event's row, the follow-up's base row, then its instances.
    assert_eq!(rows.len(), 4, "{rows:?}");
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys[..7],
        [
            "record_id",
            "redcap_event_name",
            "redcap_repeat_instrument",
            "redcap_repeat_instance",
            "redcap_survey_identifier",
            "demographics_timestamp",
            "name"
        ]
    );
    assert_eq!(rows[0]["redcap_event_name"], "event_1_arm_1");
    assert_eq!(rows[0]["demographics_timestamp"], "2026-02-01 09:00:00");
    assert_eq!(rows[0]["visit_timestamp"], "");
    assert_eq!(rows[2]["redcap_repeat_instance"], 1);
    assert_eq!(rows[2]["visit_timestamp"], "");
    assert_eq!(rows[2]["demographics_timestamp"], "");
    assert_eq!(rows[3]["redcap_repeat_instance"], 2);
    assert_eq!(rows[3]["visit_timestamp"], "2026-02-03 10:00:00");
    // EAV: the timestamp row after the event's first value row.
    let eav = sb
        .call(
            &token,
            "record",
            &[("exportSurveyFields", "true"), ("type", "eav")],
        )
        .await
        .json();
    let follow: Vec<&Value> = eav
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["redcap_event_name"] == "follow_up_arm_1")
        .collect();
    assert_eq!(follow[0]["field_name"], "record_id");
    assert_eq!(follow[1]["field_name"], "redcap_survey_identifier");
    assert_eq!(follow[2]["field_name"], "visit_timestamp");
    assert_eq!(follow[2]["value"], "2026-02-03 10:00:00");
    assert_eq!(follow[2]["redcap_repeat_instance"], "");
    for r in rows {
        assert_eq!(r["redcap_survey_identifier"], "P-1");
    }
}

#[tokio::test]
async fn survey_fields_in_record_exports() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    // Without surveys the flag adds nothing.
    let plain = sb.call(&token, "record", &[]).await.body;
    let flagged = sb
        .call(&token, "record", &[("exportSurveyFields", "true")])
        .await
        .body;
    assert_eq!(plain, flagged);

    enable(&sb, 1, json!({"form": "demographics"})).await;
    enable(&sb, 1, json!({"form": "visit"})).await;
    respond(
        &sb,
        1,
        "demographics",
        json!({"record": "1", "time": "2026-01-02 03:04:05", "identifier": "P-1"}),
    )
    .await;
    respond(&sb, 1, "visit", json!({"record": "1", "completed": false})).await;

    let a = sb
        .call(&token, "record", &[("exportSurveyFields", "true")])
        .await;
    assert!(
        a.body.starts_with("[{\"record_id\":\"1\",\"redcap_survey_identifier\":\"P-1\",\"demographics_timestamp\":\"2026-01-02 03:04:05\",\"name\":\"Alice\",\"age\":\"30\",\"demographics_complete\":\"2\",\"visit_timestamp\":\"[not completed]\",\"symptoms___1\":\"0\""),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("{\"record_id\":\"2\",\"redcap_survey_identifier\":\"\",\"demographics_timestamp\":\"\",\"name\":\"Bob\""),
        "{}",
        a.body
    );
    // The DAG column comes before the identifier.
    let a = sb
        .call(
            &token,
            "record",
            &[
                ("exportSurveyFields", "1"),
                ("exportDataAccessGroups", "true"),
            ],
        )
        .await;
    assert!(
        a.body.starts_with("[{\"record_id\":\"1\",\"redcap_data_access_group\":\"\",\"redcap_survey_identifier\":\"P-1\",\"demographics_timestamp\""),
        "{}",
        a.body
    );
    // Without the record ID field: timestamp, field, then the identifier.
    let a = sb
        .call(
            &token,
            "record",
            &[("exportSurveyFields", "true"), ("fields", "name,arm")],
        )
        .await;
    assert_eq!(
        a.json()[0],
        json!({"demographics_timestamp": "2026-01-02 03:04:05", "name": "Alice",
               "redcap_survey_identifier": "P-1", "visit_timestamp": "[not completed]", "arm": ""})
    );
    assert!(a.body.starts_with("[{\"demographics_timestamp\":\"2026-01-02 03:04:05\",\"name\":\"Alice\",\"redcap_survey_identifier\""), "{}", a.body);
    // CSV header and XML.
    let csv = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "csv"),
            ("exportSurveyFields", "true"),
        ])
        .await;
    assert_eq!(
        csv.body.lines().next(),
        Some(
            "record_id,redcap_survey_identifier,demographics_timestamp,name,age,demographics_complete,visit_timestamp,symptoms___1,symptoms___2,arm,visit_complete"
        )
    );
    assert_eq!(
        csv.body.lines().nth(1),
        // PHP's fputcsv quotes cells with a space; a form without a
        // status is 0 where its instrument shows (REDCap's getData).
        Some("1,P-1,\"2026-01-02 03:04:05\",Alice,30,2,\"[not completed]\",0,0,,0")
    );
    let labels = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "csv"),
            ("exportSurveyFields", "true"),
            ("rawOrLabelHeaders", "label"),
        ])
        .await;
    assert!(
        labels
            .body
            .starts_with("\"Record ID\",\"Survey Identifier\",\"Survey Timestamp\",Name,"),
        "{}",
        labels.body
    );
    let xml = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "xml"),
            ("exportSurveyFields", "true"),
        ])
        .await;
    assert!(
        xml.body.contains("<record_id>1</record_id><redcap_survey_identifier>P-1</redcap_survey_identifier><demographics_timestamp>2026-01-02 03:04:05</demographics_timestamp><name>Alice</name>"),
        "{}",
        xml.body
    );
    // EAV: after the record's first value row, the identifier row and the
    // timestamps (unfinished first, as MySQL sorts a NULL completion).
    let eav = sb
        .call(
            &token,
            "record",
            &[
                ("exportSurveyFields", "true"),
                ("type", "eav"),
                ("records", "1"),
            ],
        )
        .await
        .json();
    let fields: Vec<(&str, &str)> = eav
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["field_name"].as_str().unwrap(),
                r["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        &fields[..4],
        [
            ("record_id", "1"),
            ("redcap_survey_identifier", "P-1"),
            ("visit_timestamp", "[not completed]"),
            ("demographics_timestamp", "2026-01-02 03:04:05"),
        ]
    );
    // Only the exported instruments' timestamps.
    let eav = sb
        .call(
            &token,
            "record",
            &[
                ("exportSurveyFields", "true"),
                ("type", "eav"),
                ("records", "1"),
                ("forms", "demographics"),
            ],
        )
        .await
        .json();
    assert!(!eav.to_string().contains("visit_timestamp"), "{eav}");
    // Logged.
    let log = sb
        .call(&token, "log", &[("logtype", "export")])
        .await
        .json();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["details"]
                == "export_format: JSON, rawOrLabel: raw, export_survey_fields: Yes"),
        "{log}"
    );
}

/// Surveys and the survey queue come from a REDCap XML file, as PyCap's
/// fixtures carry them.
#[tokio::test]
async fn surveys_from_a_redcap_xml_file() {
    let sb = Sandbox::start().await;
    let odm = r#"<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:redcap="https://projectredcap.org" ODMVersion="1.3.1">
<Study OID="Project.S">
<GlobalVariables>
	<StudyName>S</StudyName>
	<redcap:SurveysEnabled>1</redcap:SurveysEnabled>
	<redcap:SurveysGroup>
		<redcap:Surveys form_name="form_1" title="Form 1" survey_enabled="1" save_and_return="1" edit_completed_response="0"/>
	</redcap:SurveysGroup>
	<redcap:SurveysQueueGroup>
		<redcap:SurveysQueue active="1" auto_start="0" condition_andor="AND" condition_logic="" event_id="event_1_arm_1" survey_id="form_1"/>
	</redcap:SurveysQueueGroup>
</GlobalVariables>
<MetaDataVersion OID="Metadata.S" Name="S" redcap:RecordIdField="record_id">
	<FormDef OID="Form.form_1" Name="Form 1" Repeating="No" redcap:FormName="form_1">
		<ItemGroupRef ItemGroupOID="form_1.record_id" Mandatory="No"/>
	</FormDef>
	<ItemGroupDef OID="form_1.record_id" Name="Form 1" Repeating="No">
		<ItemRef ItemOID="record_id" Mandatory="No" redcap:Variable="record_id"/>
		<ItemRef ItemOID="field_1" Mandatory="No" redcap:Variable="field_1"/>
		<ItemRef ItemOID="form_1_complete" Mandatory="No" redcap:Variable="form_1_complete"/>
	</ItemGroupDef>
	<ItemDef OID="record_id" Name="record_id" DataType="text" Length="999" redcap:Variable="record_id" redcap:FieldType="text">
		<Question><TranslatedText>Record ID</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="field_1" Name="field_1" DataType="text" Length="999" redcap:Variable="field_1" redcap:FieldType="text">
		<Question><TranslatedText>Field 1</TranslatedText></Question>
	</ItemDef>
	<ItemDef OID="form_1_complete" Name="form_1_complete" DataType="text" Length="1" redcap:Variable="form_1_complete" redcap:FieldType="select" redcap:SectionHeader="Form Status">
		<Question><TranslatedText>Complete?</TranslatedText></Question>
	</ItemDef>
</MetaDataVersion>
</Study>
<ClinicalData StudyOID="Project.S" MetaDataVersionOID="Metadata.S">
	<SubjectData SubjectKey="1" redcap:RecordIdField="record_id">
		<StudyEventData StudyEventOID="Event.event_1_arm_1" StudyEventRepeatKey="1" redcap:UniqueEventName="event_1_arm_1">
			<FormData FormOID="Form.form_1" FormRepeatKey="1">
				<ItemGroupData ItemGroupOID="form_1.record_id" ItemGroupRepeatKey="1">
					<ItemData ItemOID="record_id" Value="1"/>
					<ItemData ItemOID="field_1" Value="x"/>
				</ItemGroupData>
			</FormData>
		</StudyEventData>
	</SubjectData>
</ClinicalData>
</ODM>"#;
    let a = sb
        .post(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "json"),
            ("data", r#"[{"project_title": "S", "purpose": 0}]"#),
            ("odm", odm),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = a.body;
    let (_, surveys) = sb
        .admin(Method::GET, "/sandbox/projects/1/surveys", None)
        .await;
    assert_eq!(surveys[0]["form"], "form_1");
    assert_eq!(surveys[0]["save_and_return"], true);
    let link = sb
        .call(
            &token,
            "surveyLink",
            &[("record", "1"), ("instrument", "form_1")],
        )
        .await;
    assert_eq!(link.status, 200, "{}", link.body);
    let q = sb.call(&token, "surveyQueueLink", &[("record", "1")]).await;
    assert_eq!(q.status, 200, "{}", q.body);
    let rc = sb
        .call(
            &token,
            "surveyReturnCode",
            &[("record", "1"), ("instrument", "form_1")],
        )
        .await;
    assert_eq!(rc.body.len(), 8, "{}", rc.body);
    // Exported back (REDCap's order: DAGs, surveys, the queue, roles), and
    // a project made from that file has the same surveys.
    let xml = sb
        .post(&[
            ("token", &token),
            ("content", "project_xml"),
            ("returnMetadataOnly", "true"),
        ])
        .await
        .body;
    let groups = "\t<redcap:SurveysGroup>\n\t\t<redcap:Surveys form_name=\"form_1\" title=\"Form 1\" survey_enabled=\"1\" save_and_return=\"1\" edit_completed_response=\"0\"/>\n\t</redcap:SurveysGroup>\n\t<redcap:SurveysQueueGroup>\n\t\t<redcap:SurveysQueue active=\"1\" auto_start=\"0\" condition_andor=\"AND\" condition_logic=\"\" event_id=\"event_1_arm_1\" survey_id=\"form_1\"/>\n\t</redcap:SurveysQueueGroup>\n";
    assert!(xml.contains(groups), "{xml}");
    let a = sb
        .post(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "json"),
            ("data", r#"[{"project_title": "S2", "purpose": 0}]"#),
            ("odm", &xml),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let again = sb
        .post(&[
            ("token", &a.body),
            ("content", "project_xml"),
            ("returnMetadataOnly", "true"),
        ])
        .await
        .body;
    assert!(again.contains(groups), "{again}");
    // Admin refusals.
    let (s, v) = sb
        .admin(
            Method::POST,
            "/sandbox/projects/1/surveys/form_1/responses",
            Some(json!({"record": "9"})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = sb
        .admin(
            Method::POST,
            "/sandbox/projects/1/surveys",
            Some(json!({"form": "nope"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let _ = E::InvalidEvent;
}

/// The admin CLI's survey commands call the same endpoints.
#[tokio::test]
async fn admin_cli_survey_commands() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    let url = format!("{}/", sb.base);
    let cli = |args: Vec<&'static str>| {
        let url = url.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_redcap-sandbox"))
                .arg("admin")
                .args(args)
                .env("REDCAP_SANDBOX_URL", url)
                .env("REDCAP_SANDBOX_ADMIN_SECRET", common::SECRET)
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let (code, out, err) = cli(vec![
        "enable-survey",
        "1",
        "visit",
        "--save-and-return",
        "--queue",
        "--title",
        "Visit survey",
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["title"], "Visit survey");
    assert_eq!(v[0]["save_and_return"], true);
    let (code, out, err) = cli(vec![
        "survey-response",
        "1",
        "visit",
        "2",
        "--partial",
        "--identifier",
        "P-2",
    ])
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    let rows = sb
        .call(
            &token,
            "record",
            &[("exportSurveyFields", "true"), ("records", "2")],
        )
        .await
        .json();
    assert_eq!(rows[0]["visit_timestamp"], "[not completed]");
    assert_eq!(rows[0]["redcap_survey_identifier"], "P-2");
    // A record that does not exist: status 2 and the endpoint's message.
    let (code, _, err) = cli(vec!["survey-response", "1", "visit", "9"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("no record"), "{err}");
    let (code, out, _) = cli(vec!["surveys", "1"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("\"save_and_return\":true"), "{out}");
}

/// A classic project made longitudinal (Import Project Information) keeps
/// its survey links and queue: they move to `event_1_arm_1` with the data.
#[tokio::test]
async fn surveys_follow_a_project_made_longitudinal() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    enable(&sb, 1, json!({"form": "visit", "queue": true})).await;
    let link = sb
        .call(
            &token,
            "surveyLink",
            &[("record", "1"), ("instrument", "visit")],
        )
        .await
        .body;
    let a = sb
        .call(
            &token,
            "project_settings",
            &[("data", r#"{"is_longitudinal": "1"}"#)],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let again = sb
        .call(
            &token,
            "surveyLink",
            &[
                ("record", "1"),
                ("instrument", "visit"),
                ("event", "event_1_arm_1"),
            ],
        )
        .await;
    assert_eq!(again.body, link);
    let q = sb.call(&token, "surveyQueueLink", &[("record", "1")]).await;
    assert_eq!(q.status, 200, "{}", q.body);
}
