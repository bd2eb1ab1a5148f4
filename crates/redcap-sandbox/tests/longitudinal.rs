//! Longitudinal projects and repetition (§6.1–6.3, §6.6): arms, events and
//! instrument-event mappings (export, import with and without `override`,
//! renames, delete), the repeating setup, records with
//! `redcap_event_name`, `redcap_repeat_instrument` and
//! `redcap_repeat_instance` in flat and EAV rows of every format, the
//! `events` filter, deleting one event's, instrument's or instance's data,
//! and all of it surviving a restart.

mod common;

use common::{SUPER, Sandbox};
use redcap::ApiError as E;
use redcap::error::ValidationLine;
use serde_json::{Value, json};

/// Creates a longitudinal project with the standard metadata
/// (`demographics`, `visit`); answers its token.
async fn longitudinal_project(sb: &Sandbox) -> String {
    let a = sb
        .import(
            SUPER,
            "project",
            json!([{"project_title": "Cohort", "purpose": 2, "is_longitudinal": 1}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = a.body;
    sb.standard_metadata(&token).await;
    token
}

/// Arms 1 (Drug A) and 2 (Drug B); events Screening, Baseline and a long
/// name in arm 1, Baseline in arm 2; their instruments.
async fn structure(sb: &Sandbox, token: &str) {
    let a = sb
        .import(
            token,
            "arm",
            json!([{"arm_num": 1, "name": "Drug A"}, {"arm_num": "2", "name": "Drug B"}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"));
    let a = sb
        .import(
            token,
            "event",
            json!([
                {"event_name": "Screening", "arm_num": 1, "unique_event_name": "event_1_arm_1"},
                {"event_name": "Baseline", "arm_num": 1},
                {"event_name": "Follow-up visit number one", "arm_num": 1, "day_offset": 30},
                {"event_name": "Baseline", "arm_num": 2}
            ]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "4"), "{}", a.body);
    let a = sb
        .import(
            token,
            "formEventMapping",
            json!([
                {"arm_num": 1, "unique_event_name": "screening_arm_1", "form": "demographics"},
                {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "visit"},
                {"arm_num": 1, "unique_event_name": "followup_visit_num_arm_1", "form": "visit"},
                {"arm_num": 2, "unique_event_name": "baseline_arm_2", "form": "visit"},
                {"arm_num": 2, "unique_event_name": "baseline_arm_2", "form": "demographics"}
            ]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "5"), "{}", a.body);
}

/// A JSON cell as text: `redcap_repeat_instance` is a number when set.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        v => panic!("not a cell: {v}"),
    }
}

fn strip_ids(events: &Value) -> Vec<Value> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            assert!(e["event_id"].is_i64(), "{e}");
            e.as_object_mut().unwrap().remove("event_id");
            e
        })
        .collect()
}

#[tokio::test]
async fn arms_events_and_mappings() {
    let sb = Sandbox::start().await;
    let token = longitudinal_project(&sb).await;
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["is_longitudinal"], 1);
    assert_eq!(info["has_repeating_instruments_or_events"], 0);
    // A new longitudinal project: one arm, one event.
    assert_eq!(
        sb.call(&token, "arm", &[]).await.json(),
        json!([{"arm_num": 1, "name": "Arm 1"}])
    );
    assert_eq!(
        strip_ids(&sb.call(&token, "event", &[]).await.json()),
        [
            json!({"event_name": "Event 1", "arm_num": 1, "unique_event_name": "event_1_arm_1", "custom_event_label": ""})
        ]
    );

    structure(&sb, &token).await;
    assert_eq!(
        sb.call(&token, "arm", &[]).await.json(),
        json!([{"arm_num": 1, "name": "Drug A"}, {"arm_num": 2, "name": "Drug B"}])
    );
    assert_eq!(
        sb.call(&token, "arm", &[("arms[0]", "2")]).await.json(),
        json!([{"arm_num": 2, "name": "Drug B"}])
    );
    let events = sb.call(&token, "event", &[]).await.json();
    let names: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["unique_event_name"].as_str().unwrap())
        .collect();
    // The label in lower case, cut to 18 characters, then the arm.
    assert_eq!(
        names,
        [
            "screening_arm_1",
            "baseline_arm_1",
            "followup_visit_num_arm_1",
            "baseline_arm_2"
        ]
    );
    let arm2 = sb.call(&token, "event", &[("arms[0]", "2")]).await.json();
    assert_eq!(arm2.as_array().unwrap().len(), 1);
    assert_eq!(
        sb.call(&token, "formEventMapping", &[("arms[0]", "2")])
            .await
            .json(),
        json!([
            {"arm_num": 2, "unique_event_name": "baseline_arm_2", "form": "demographics"},
            {"arm_num": 2, "unique_event_name": "baseline_arm_2", "form": "visit"}
        ])
    );
    // CSV and XML shapes.
    let csv = sb
        .post(&[("token", &token), ("content", "arm"), ("format", "csv")])
        .await;
    assert_eq!(csv.body, "arm_num,name\n1,\"Drug A\"\n2,\"Drug B\"\n");
    let xml = sb
        .post(&[
            ("token", &token),
            ("content", "formEventMapping"),
            ("format", "xml"),
            ("arms[0]", "1"),
        ])
        .await;
    assert!(
        xml.body.contains(
            "<item><arm_num>1</arm_num><unique_event_name>screening_arm_1</unique_event_name><form>demographics</form></item>"
        ),
        "{}",
        xml.body
    );

    // Refusals: a bad arm of an event, an unknown event in a mapping,
    // unknown names to delete, classic projects.
    let a = sb
        .import(
            &token,
            "event",
            json!([{"event_name": "X", "arm_num": 9}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = sb
        .import(
            &token,
            "formEventMapping",
            json!([{"arm_num": 1, "unique_event_name": "nope_arm_1", "form": "visit"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    sb.call(
        &token,
        "event",
        &[("action", "delete"), ("events[0]", "nope_arm_1")],
    )
    .await
    .assert_error(
        400,
        &E::InvalidParameterValues {
            parameter: "events",
            values: vec!["nope_arm_1".into()],
        }
        .message(),
    );
    let classic = sb.create_project().await;
    for (content, what) in [
        ("arm", "arms"),
        ("event", "events"),
        ("formEventMapping", "form/event mappings"),
    ] {
        sb.call(&classic, content, &[]).await.assert_error(
            400,
            &format!("You cannot export {what} for classic projects"),
        );
    }

    // override=1: the events left out go.
    let a = sb
        .import(
            &token,
            "event",
            json!([
                {"event_name": "Screening", "arm_num": 1, "unique_event_name": "screening_arm_1"},
                {"event_name": "Baseline", "arm_num": 2, "unique_event_name": "baseline_arm_2"}
            ]),
            &[("action", "import"), ("override", "1")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"), "{}", a.body);
    let names: Vec<String> = sb
        .call(&token, "event", &[])
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["unique_event_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["screening_arm_1", "baseline_arm_2"]);
    // Deleting an arm takes its events.
    let a = sb
        .call(&token, "arm", &[("action", "delete"), ("arms[0]", "2")])
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    assert_eq!(
        sb.call(&token, "event", &[])
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Everything above survived in the database.
    let sb = sb.restart().await;
    assert_eq!(
        sb.call(&token, "arm", &[]).await.json(),
        json!([{"arm_num": 1, "name": "Drug A"}])
    );
    assert_eq!(
        sb.call(&token, "formEventMapping", &[]).await.json(),
        json!([{"arm_num": 1, "unique_event_name": "screening_arm_1", "form": "demographics"}])
    );
}

#[tokio::test]
async fn records_by_event() {
    let sb = Sandbox::start().await;
    let token = longitudinal_project(&sb).await;
    structure(&sb, &token).await;
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "2", "redcap_event_name": "baseline_arm_1", "arm": "b", "symptoms___2": "1"},
                {"record_id": "1", "redcap_event_name": "screening_arm_1", "name": "Ann", "age": "40"},
                {"record_id": "1", "redcap_event_name": "baseline_arm_1", "arm": "a"},
                {"record_id": "1", "redcap_event_name": "followup_visit_num_arm_1", "symptoms___1": "1"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 2}), "{}", a.body);
    // A row per record and event, in event order; each row shows the
    // record ID.
    let rows = sb.call(&token, "record", &[]).await;
    let rows = rows.json();
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "record_id",
            "redcap_event_name",
            "name",
            "age",
            "demographics_complete",
            "symptoms___1",
            "symptoms___2",
            "arm",
            "visit_complete"
        ]
    );
    let brief: Vec<(String, String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("record_id"), s("redcap_event_name"), s("name"), s("arm"))
        })
        .collect();
    let t = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        brief,
        [
            t("1", "screening_arm_1", "Ann", ""),
            t("1", "baseline_arm_1", "", "a"),
            t("1", "followup_visit_num_arm_1", "", ""),
            t("2", "baseline_arm_1", "", "b"),
        ]
    );
    assert_eq!(rows[2]["symptoms___1"], "1");
    assert_eq!(rows[2]["visit_complete"], "0");
    assert_eq!(rows[0]["demographics_complete"], "0");

    // The events filter, and a bad event name.
    let some = sb
        .call(&token, "record", &[("events", "baseline_arm_1")])
        .await
        .json();
    assert_eq!(some.as_array().unwrap().len(), 2);
    sb.call(&token, "record", &[("events[0]", "nope_arm_1")])
        .await
        .assert_error(
            400,
            &E::InvalidParameterValues {
                parameter: "events",
                values: vec!["nope_arm_1".into()],
            }
            .message(),
        );
    // Labels: the event's label with its arm.
    let labelled = sb
        .call(
            &token,
            "record",
            &[("rawOrLabel", "label"), ("records[0]", "2")],
        )
        .await
        .json();
    assert_eq!(labelled[0]["redcap_event_name"], "Baseline (Arm 1: Drug A)");

    // EAV rows carry the event; an EAV import lands in the event named.
    let eav = sb
        .call(&token, "record", &[("type", "eav"), ("records[0]", "2")])
        .await
        .json();
    assert!(
        eav.as_array()
            .unwrap()
            .contains(&json!({"record": "2", "redcap_event_name": "baseline_arm_1", "field_name": "arm", "value": "b"})),
        "{eav}"
    );
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record": "3", "redcap_event_name": "baseline_arm_2", "field_name": "name", "value": "Bo"},
                {"record": "3", "redcap_event_name": "baseline_arm_2", "field_name": "symptoms", "value": "2"},
                {"record": "3", "redcap_event_name": "screening_arm_1", "field_name": "age", "value": "7"}
            ]),
            &[("type", "eav")],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let three = sb
        .call(&token, "record", &[("records[0]", "3")])
        .await
        .json();
    assert_eq!(three[0]["redcap_event_name"], "screening_arm_1");
    assert_eq!(three[0]["age"], "7");
    assert_eq!(three[1]["redcap_event_name"], "baseline_arm_2");
    assert_eq!(three[1]["name"], "Bo");
    assert_eq!(three[1]["symptoms___2"], "1");

    // CSV and XML: the same columns.
    let csv = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "csv"),
            ("records[0]", "2"),
        ])
        .await;
    assert_eq!(
        csv.body,
        "record_id,redcap_event_name,name,age,demographics_complete,symptoms___1,symptoms___2,arm,visit_complete\n\
         2,baseline_arm_1,,,0,0,1,b,0\n"
    );
    let xml = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "xml"),
            ("records[0]", "2"),
            ("fields[0]", "arm"),
        ])
        .await;
    assert!(
        xml.body.contains(
            "<item><arm>b</arm><redcap_event_name>baseline_arm_1</redcap_event_name></item>"
        ),
        "{}",
        xml.body
    );

    // Refusals: an instrument the event does not hold, an unknown event.
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "redcap_event_name": "baseline_arm_1", "name": "X"},
                {"record_id": "1", "redcap_event_name": "nope_arm_1", "age": "1"}
            ]),
            &[],
        )
        .await;
    let not_designated = ValidationLine::NOT_DESIGNATED
        .replace("{field}", "name")
        .replace("{event}", "Baseline (Arm 1: Drug A)");
    a.assert_error(
        400,
        &format!(
            "\"1\",\"name\",\"X\",\"{not_designated}\"\n\"1\",\"redcap_event_name\",\"nope_arm_1\",\"{}\"",
            ValidationLine::BAD_EVENT
        ),
    );
    // A row without an event goes to the first.
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "4", "age": "9"}]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let four = sb
        .call(&token, "record", &[("records[0]", "4")])
        .await
        .json();
    assert_eq!(four[0]["redcap_event_name"], "screening_arm_1");
    // The log names the event.
    let log = sb
        .call(&token, "log", &[("logtype", "record")])
        .await
        .json();
    assert!(
        log.as_array().unwrap().iter().any(|r| r["action"]
            == "Update record (API) 1 (Follow-up visit number one (Arm 1: Drug A))"
            || r["action"] == "Create record (API) 1 (Screening (Arm 1: Drug A))"),
        "{log}"
    );

    // Deleting one event's data of a record; its other events stay.
    let a = sb
        .call(
            &token,
            "record",
            &[
                ("action", "delete"),
                ("records[0]", "1"),
                ("event", "baseline_arm_1"),
            ],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let one = sb
        .call(&token, "record", &[("records[0]", "1")])
        .await
        .json();
    let events: Vec<&str> = one
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["redcap_event_name"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["screening_arm_1", "followup_visit_num_arm_1"]);
    // Deleting an event takes its values; a record left with none is gone.
    let a = sb
        .call(
            &token,
            "event",
            &[("action", "delete"), ("events[0]", "baseline_arm_1")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let all = sb.call(&token, "record", &[]).await.json();
    let records: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(records, ["1", "1", "3", "3", "4"]);
}

#[tokio::test]
async fn repeating_instruments_and_events() {
    let sb = Sandbox::start().await;
    let token = longitudinal_project(&sb).await;
    structure(&sb, &token).await;
    assert_eq!(
        sb.call(&token, "repeatingFormsEvents", &[]).await.json(),
        json!([])
    );
    let a = sb
        .import(
            &token,
            "repeatingFormsEvents",
            json!([
                {"event_name": "baseline_arm_1", "form_name": "visit", "custom_form_label": "[arm]"},
                {"event_name": "followup_visit_num_arm_1", "form_name": "", "custom_form_label": ""}
            ]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "2"), "{}", a.body);
    assert_eq!(
        sb.call(&token, "repeatingFormsEvents", &[]).await.json(),
        json!([
            {"event_name": "baseline_arm_1", "form_name": "visit", "custom_form_label": "[arm]"},
            {"event_name": "followup_visit_num_arm_1", "form_name": "", "custom_form_label": ""}
        ])
    );
    let info = sb.call(&token, "project", &[]).await.json();
    assert_eq!(info["has_repeating_instruments_or_events"], 1);

    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "redcap_event_name": "screening_arm_1", "name": "Ann"},
                {"record_id": "1", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "1", "arm": "a"},
                {"record_id": "1", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "new", "arm": "b"},
                {"record_id": "1", "redcap_event_name": "followup_visit_num_arm_1", "redcap_repeat_instance": "2", "symptoms___1": "1"},
                {"record_id": "1", "redcap_event_name": "followup_visit_num_arm_1", "redcap_repeat_instance": "1", "symptoms___2": "1"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let rows = sb.call(&token, "record", &[]).await.json();
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        &keys[..4],
        [
            "record_id",
            "redcap_event_name",
            "redcap_repeat_instrument",
            "redcap_repeat_instance"
        ]
    );
    let brief: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}|{}|{}|{}",
                r["redcap_event_name"].as_str().unwrap(),
                r["redcap_repeat_instrument"].as_str().unwrap(),
                text(&r["redcap_repeat_instance"]),
                r["name"].as_str().unwrap(),
                r["arm"].as_str().unwrap(),
                r["symptoms___1"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            "screening_arm_1|||Ann||0",
            // The event's non-repeating row (empty here: its one
            // instrument repeats), then the instrument's instances.
            "baseline_arm_1|||||",
            "baseline_arm_1|visit|1||a|0",
            "baseline_arm_1|visit|2||b|0",
            // A repeating event: every instance a row, no instrument.
            "followup_visit_num_arm_1||1|||0",
            "followup_visit_num_arm_1||2|||1",
        ]
    );
    // EAV rows carry the instance.
    let eav = sb.call(&token, "record", &[("type", "eav")]).await.json();
    assert!(
        eav.as_array().unwrap().contains(&json!({
            "record": "1", "redcap_event_name": "baseline_arm_1",
            "redcap_repeat_instrument": "visit", "redcap_repeat_instance": 2,
            "field_name": "arm", "value": "b"
        })),
        "{eav}"
    );
    // A value of a repeating instrument needs its instance.
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "1", "redcap_event_name": "baseline_arm_1", "arm": "a"}]),
            &[],
        )
        .await;
    a.assert_error(
        400,
        &format!(
            "\"1\",\"arm\",\"a\",\"{}\"",
            ValidationLine::MISSING_REPEAT_INSTANCE
        ),
    );
    // Deleting one instance of an instrument.
    let a = sb
        .call(
            &token,
            "record",
            &[
                ("action", "delete"),
                ("records[0]", "1"),
                ("event", "baseline_arm_1"),
                ("instrument", "visit"),
                ("repeat_instance", "2"),
            ],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let rows = sb.call(&token, "record", &[]).await.json();
    let instances: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}",
                r["redcap_repeat_instrument"].as_str().unwrap(),
                text(&r["redcap_repeat_instance"])
            )
        })
        .collect();
    assert_eq!(instances, ["|", "|", "visit|1", "|1", "|2"]);
    // Survives a restart.
    let sb = sb.restart().await;
    assert_eq!(
        sb.call(&token, "repeatingFormsEvents", &[]).await.json()[0]["form_name"],
        "visit"
    );
    assert_eq!(sb.call(&token, "record", &[]).await.json(), rows);
}

#[tokio::test]
async fn classic_repeating_instruments() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "repeatingFormsEvents",
            json!([{"form_name": "visit", "custom_form_label": ""}]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    assert_eq!(
        sb.call(&token, "repeatingFormsEvents", &[]).await.json(),
        json!([{"form_name": "visit", "custom_form_label": ""}])
    );
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "name": "Ann"},
                {"record_id": "1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": 1, "arm": "a"},
                {"record_id": "1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": 3, "arm": "b"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let csv = sb
        .post(&[("token", &token), ("content", "record"), ("format", "csv")])
        .await;
    assert_eq!(
        csv.body,
        "record_id,redcap_repeat_instrument,redcap_repeat_instance,name,age,demographics_complete,symptoms___1,symptoms___2,arm,visit_complete\n\
         1,,,Ann,,0,,,,\n\
         1,visit,1,,,,0,0,a,0\n\
         1,visit,3,,,,0,0,b,0\n"
    );
    // Deleting a repeating instrument's data: every instance.
    let a = sb
        .call(
            &token,
            "record",
            &[
                ("action", "delete"),
                ("records[0]", "1"),
                ("instrument", "visit"),
            ],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let rows = sb.call(&token, "record", &[]).await.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["name"], "Ann");
}

/// Files of File Upload fields by event and instance: `event` (blank: the
/// first event) and `repeat_instance` name the slot, as in REDCap.
#[tokio::test]
async fn files_by_event_and_instance() {
    let sb = Sandbox::start().await;
    let token = longitudinal_project(&sb).await;
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
        {"field_name": "scan", "form_name": "visit", "field_type": "file", "field_label": "Scan"}
    ]);
    assert_eq!(sb.import(&token, "metadata", md, &[]).await.status, 200);
    structure(&sb, &token).await;
    let a = sb
        .import(
            &token,
            "repeatingFormsEvents",
            json!([{"event_name": "baseline_arm_1", "form_name": "visit", "custom_form_label": ""}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "1", "redcap_event_name": "screening_arm_1"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    for (instance, bytes) in [("1", b"one".to_vec()), ("2", b"two".to_vec())] {
        let a = file_call(
            &sb,
            &token,
            "import",
            "baseline_arm_1",
            instance,
            Some(bytes),
        )
        .await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.bytes));
    }
    let export = |event, instance| file_call(&sb, &token, "export", event, instance, None);
    assert_eq!(export("baseline_arm_1", "2").await.bytes, b"two");
    assert_eq!(export("baseline_arm_1", "1").await.bytes, b"one");
    // No event: the first, where the record has no file.
    let none = export("", "").await;
    assert_eq!(none.status, 400);
    assert!(
        String::from_utf8_lossy(&none.bytes)
            .contains("There is no file to download for this record")
    );
    assert_eq!(export("nope_arm_1", "1").await.status, 400);
    // The rows show the file where it is.
    let rows = sb.call(&token, "record", &[]).await.json();
    let scans: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}",
                r["redcap_event_name"].as_str().unwrap(),
                text(&r["redcap_repeat_instance"]),
                r["scan"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        scans,
        [
            "screening_arm_1||",
            "baseline_arm_1||",
            "baseline_arm_1|1|scan.txt",
            "baseline_arm_1|2|scan.txt"
        ]
    );
    let a = file_call(&sb, &token, "delete", "baseline_arm_1", "2", None).await;
    assert_eq!(a.status, 200);
    assert_eq!(export("baseline_arm_1", "2").await.status, 400);
    assert_eq!(export("baseline_arm_1", "1").await.bytes, b"one");
}

/// A `content=file` call on record 1's `scan` in one event and instance
/// (an upload when `bytes` is given).
async fn file_call(
    sb: &Sandbox,
    token: &str,
    action: &str,
    event: &str,
    instance: &str,
    bytes: Option<Vec<u8>>,
) -> common::BytesAnswer {
    let p = [
        ("token", token),
        ("content", "file"),
        ("action", action),
        ("record", "1"),
        ("field", "scan"),
        ("event", event),
        ("repeat_instance", instance),
        ("returnFormat", "json"),
    ];
    match bytes {
        Some(b) => {
            let a = sb
                .post_multipart(&p, Some(("scan.txt", Some("text/plain"), b)))
                .await;
            common::BytesAnswer {
                status: a.status,
                headers: Default::default(),
                bytes: a.body.into_bytes(),
            }
        }
        None => sb.post_bytes(&p).await,
    }
}

/// Import Events with a `unique_event_name` the project does not know adds
/// a new event (REDCap's `Event::addEvents` updates only a name it finds),
/// and unique names are derived as REDCap derives them: the label's
/// letters, digits, `_` and spaces, cut to 18, without `_` at either end,
/// the MD5 prefix when nothing is left (redcaplite's integration suite
/// relies on `integration_event_<timestamp>` becoming
/// `integration_event_arm_3`).
#[tokio::test]
async fn event_import_adds_an_event_for_an_unknown_unique_name() {
    let sb = Sandbox::start().await;
    let token = longitudinal_project(&sb).await;
    let a = sb
        .import(
            &token,
            "arm",
            json!([{"arm_num": 3, "name": "Third"}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let a = sb
        .import(
            &token,
            "event",
            json!([
                {"event_name": "integration_event_202612071427", "arm_num": "3", "unique_event_name": "integration_event_arm_3"},
                {"event_name": " _Visit (2)_ ", "arm_num": 3, "unique_event_name": "nowhere_arm_9"},
                {"event_name": "Émission", "arm_num": 3},
                {"event_name": "ÉÉ", "arm_num": 3}
            ]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "4"), "{}", a.body);
    let events = sb.call(&token, "event", &[("arms[0]", "3")]).await.json();
    let names: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["unique_event_name"].as_str().unwrap())
        .collect();
    // md5("ÉÉ") = b66c374cb7… (printf 'ÉÉ' | md5sum)
    assert_eq!(
        names,
        [
            "integration_event_arm_3",
            "visit_2_arm_3",
            "mission_arm_3",
            "b66c374cb7_arm_3"
        ]
    );
    // A known name still updates that event.
    let a = sb
        .import(
            &token,
            "event",
            json!([{"event_name": "Renamed", "arm_num": 3, "unique_event_name": "visit_2_arm_3"}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"), "{}", a.body);
    let events = sb.call(&token, "event", &[("arms[0]", "3")]).await.json();
    assert_eq!(events.as_array().unwrap().len(), 4, "{events}");
    assert_eq!(events[1]["unique_event_name"], "renamed_arm_3", "{events}");
}
