//! Export Records' `filterLogic` (§6.1): rows kept only where REDCap's logic
//! is true — classic, longitudinal (`[event][field]`, per record-event
//! rows), repeating instances, smart variables, every data shape — and bad
//! logic refused with 400.

mod common;

use common::{SUPER, Sandbox};
use redcap::ApiError as E;
use serde_json::{Value, json};

/// The `record_id`s of a JSON export, in order.
fn ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not rows: {rows}"))
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn classic(sb: &Sandbox) -> String {
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "name": "Ann", "age": "40", "symptoms___1": "1", "arm": "a"},
                {"record_id": "2", "name": "Bob", "age": "9", "symptoms___2": "1", "arm": "b"},
                {"record_id": "3", "name": "", "age": "", "arm": "b", "visit_complete": "2"},
                {"record_id": "10", "name": "Cy", "age": "31", "symptoms___1": "1", "symptoms___2": "1"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 4}), "{}", a.body);
    token
}

async fn filtered(sb: &Sandbox, token: &str, logic: &str) -> Vec<String> {
    let a = sb.call(token, "record", &[("filterLogic", logic)]).await;
    assert_eq!(a.status, 200, "{logic}: {}", a.body);
    ids(&a.json())
}

#[tokio::test]
async fn classic_filters() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    let cases: &[(&str, &[&str])] = &[
        // Numbers compare as numbers ("9" < "31"), in REDCap's record order.
        ("[age] > 30", &["1", "10"]),
        ("[age] < 30", &["2"]),
        ("[age] = ''", &["3"]),
        ("[age] <> \"\"", &["1", "2", "10"]),
        ("[name] = 'Bob' OR [age] >= 40", &["1", "2"]),
        ("[symptoms(1)] = '1' and not [symptoms(2)] = 1", &["1"]),
        ("[symptoms(2)] = '0'", &["1", "3"]),
        (
            "([arm] = 'b' || [arm] = 'a') && [visit_complete] = 2",
            &["3"],
        ),
        ("[record-name] = '10'", &["10"]),
        ("[record_id] > 2", &["3", "10"]),
        ("sum([age], 1) > 32", &["1"]),
        ("[user-name] = 'site_admin'", &["1", "2", "3", "10"]),
        ("[user-name] = 'alice'", &[]),
        ("[current-instance] = 1", &["1", "2", "3", "10"]),
    ];
    for (logic, want) in cases {
        assert_eq!(filtered(&sb, &token, logic).await, *want, "{logic}");
    }
    // The logic may read fields that are not exported; they stay out.
    let rows = sb
        .call(
            &token,
            "record",
            &[("fields", "record_id,arm"), ("filterLogic", "[age] > 30")],
        )
        .await
        .json();
    assert_eq!(
        rows,
        json!([{"record_id": "1", "arm": "a"}, {"record_id": "10", "arm": ""}])
    );
    // With `records`, EAV, CSV and XML.
    let rows = sb
        .call(
            &token,
            "record",
            &[
                ("records[0]", "1"),
                ("records[1]", "2"),
                ("filterLogic", "[age] < 30"),
            ],
        )
        .await
        .json();
    assert_eq!(ids(&rows), ["2"]);
    let eav = sb
        .call(
            &token,
            "record",
            &[
                ("type", "eav"),
                ("fields[0]", "age"),
                ("filterLogic", "[name] = 'Cy'"),
            ],
        )
        .await
        .json();
    assert_eq!(
        eav,
        json!([{"record": "10", "field_name": "age", "value": "31"}])
    );
    let csv = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "csv"),
            ("fields", "record_id,age"),
            ("filterLogic", "[arm] = 'b'"),
        ])
        .await;
    assert_eq!(csv.body, "record_id,age\n2,9\n3,\n");
}

#[tokio::test]
async fn bad_logic_is_refused() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
    let cases = [
        ("[age] >", "the logic ends too early"),
        ("[nope] = 1", "'nope' is not a field of the project"),
        ("[age] = 'x", "a quoted text is never closed"),
        ("([age] = 1", "expected ')' at the end"),
        (
            "[symptoms] = 1",
            "the checkbox field 'symptoms' needs a choice, as in [symptoms(1)]",
        ),
        (
            "[symptoms(7)] = 1",
            "'7' is not a choice of the checkbox field 'symptoms'",
        ),
        // Classic projects have no events to name.
        (
            "[baseline_arm_1][age] = 1",
            "'baseline_arm_1' is not a field of the project",
        ),
    ];
    for (logic, reason) in cases {
        sb.call(&token, "record", &[("filterLogic", logic)])
            .await
            .assert_error(
                400,
                &E::InvalidFilterLogic {
                    reason: reason.into(),
                }
                .message(),
            );
    }
    // Blank logic filters nothing.
    assert_eq!(filtered(&sb, &token, "  ").await.len(), 4);
}

#[tokio::test]
async fn longitudinal_and_repeating_filters() {
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
            json!([{"event_name": "Baseline", "arm_num": 1}, {"event_name": "Week 1", "arm_num": 1}]),
            &[("action", "import"), ("override", "1")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "formEventMapping",
            json!([
                {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "demographics"},
                {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "visit"},
                {"arm_num": 1, "unique_event_name": "week_1_arm_1", "form": "visit"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "repeatingFormsEvents",
            json!([{"event_name": "week_1_arm_1", "form_name": "visit", "custom_form_label": ""}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "redcap_event_name": "baseline_arm_1", "age": "40", "arm": "a"},
                {"record_id": "1", "redcap_event_name": "week_1_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "1", "arm": "a"},
                {"record_id": "1", "redcap_event_name": "week_1_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "2", "arm": "b"},
                {"record_id": "2", "redcap_event_name": "baseline_arm_1", "age": "20", "arm": "b"},
                {"record_id": "2", "redcap_event_name": "week_1_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "1", "arm": "b"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rows = |logic: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let sb = &sb;
        let token = token.clone();
        async move {
            let mut params = vec![("filterLogic", logic)];
            params.extend(extra);
            let a = sb.call(&token, "record", &params).await;
            assert_eq!(a.status, 200, "{logic}: {}", a.body);
            a.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let i = match &r["redcap_repeat_instance"] {
                        Value::Number(n) => n.to_string(),
                        v => v.as_str().unwrap().to_owned(),
                    };
                    format!(
                        "{}/{}/{}",
                        r["record_id"].as_str().unwrap(),
                        r["redcap_event_name"].as_str().unwrap(),
                        i
                    )
                })
                .collect::<Vec<String>>()
        }
    };
    // Rows are record-events (and instances): each is kept on its own.
    assert_eq!(
        rows("[arm] = 'b'", vec![]).await,
        ["1/week_1_arm_1/2", "2/baseline_arm_1/", "2/week_1_arm_1/1"]
    );
    // `[event][field]` reads another event of the same record.
    assert_eq!(
        rows(
            "[baseline_arm_1][age] > 30 and [event-name] = 'week_1_arm_1'",
            vec![]
        )
        .await,
        ["1/week_1_arm_1/", "1/week_1_arm_1/1", "1/week_1_arm_1/2"]
    );
    // A field of a non-repeating instrument is read from its event's
    // first instance; `[current-instance]` is the row's.
    assert_eq!(
        rows("[current-instance] = 2", vec![]).await,
        ["1/week_1_arm_1/2"]
    );
    // `[event][field][n]` reads instance n of that event (record 1 has a
    // second visit there, record 2 not); `[field:value]` is `[field]`.
    assert_eq!(
        rows(
            "[week_1_arm_1][arm][2] = 'b' and [event-name] = 'baseline_arm_1'",
            vec![]
        )
        .await,
        ["1/baseline_arm_1/"]
    );
    assert_eq!(
        rows("[arm:value] = 'b' and [age:value] = 20", vec![]).await,
        ["2/baseline_arm_1/"]
    );
    // The `events` filter limits the rows, not what the logic may read.
    assert_eq!(
        rows(
            "[baseline_arm_1][age] < 30",
            vec![("events", "week_1_arm_1")]
        )
        .await,
        ["2/week_1_arm_1/", "2/week_1_arm_1/1"]
    );
    // An unknown event is not a field either.
    sb.call(
        &token,
        "record",
        &[("filterLogic", "[nope_arm_1][age] = 1")],
    )
    .await
    .assert_error(
        400,
        &E::InvalidFilterLogic {
            reason: "'nope_arm_1' is not a field of the project".into(),
        }
        .message(),
    );
}

#[tokio::test]
async fn dag_name_in_logic() {
    let sb = Sandbox::start().await;
    let token = classic(&sb).await;
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
            json!([{"record_id": "2", "redcap_data_access_group": "site_a"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        filtered(&sb, &token, "[record-dag-name] = 'site_a'").await,
        ["2"]
    );
    assert_eq!(
        filtered(&sb, &token, "[record-dag-name] = ''").await,
        ["1", "3", "10"]
    );
}
