//! Export Records' options (§6.1): `csvDelimiter`, `decimalCharacter`,
//! `dateRangeBegin`/`dateRangeEnd`.

mod common;

use common::Sandbox;
use redcap::ApiError as E;
use serde_json::json;

/// A project with a number field and a plain text one, and two records.
async fn project(sb: &Sandbox) -> String {
    let token = sb.create_project().await;
    let md = json!([
        {"field_name": "record_id", "form_name": "form_1", "field_type": "text", "field_label": "ID"},
        {"field_name": "weight", "form_name": "form_1", "field_type": "text", "field_label": "Weight", "text_validation_type_or_show_slider_number": "number"},
        {"field_name": "note", "form_name": "form_1", "field_type": "text", "field_label": "Note"}
    ]);
    let a = sb.import(&token, "metadata", md, &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "3"));
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "weight": "70.5", "note": "a;b|c^d\te,f.g"},
                {"record_id": "2", "weight": "80", "note": ""}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 2}), "{}", a.body);
    token
}

async fn csv(sb: &Sandbox, token: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("token", token),
        ("content", "record"),
        ("format", "csv"),
        ("fields", "record_id,weight,note"),
    ];
    params.extend_from_slice(extra);
    let a = sb.post(&params).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

#[tokio::test]
async fn csv_delimiters() {
    let sb = Sandbox::start().await;
    let token = project(&sb).await;
    assert_eq!(
        csv(&sb, &token, &[]).await,
        "record_id,weight,note\n1,70.5,\"a;b|c^d\te,f.g\"\n2,80,\n"
    );
    for (param, d) in [
        ("tab", '\t'),
        (";", ';'),
        ("|", '|'),
        ("^", '^'),
        (",", ','),
    ] {
        let body = csv(&sb, &token, &[("csvDelimiter", param)]).await;
        let mut lines = body.lines();
        assert_eq!(
            lines.next().unwrap(),
            format!("record_id{d}weight{d}note"),
            "{param}"
        );
        // The note holds every delimiter: it is quoted whatever the choice.
        assert_eq!(
            lines.next().unwrap(),
            format!("1{d}70.5{d}\"a;b|c^d\te,f.g\""),
            "{param}"
        );
    }
    // EAV too.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "record"),
            ("format", "csv"),
            ("type", "eav"),
            ("fields", "weight"),
            ("csvDelimiter", ";"),
        ])
        .await;
    assert_eq!(
        a.body,
        "record;field_name;value\n1;weight;70.5\n2;weight;80\n"
    );
}

#[tokio::test]
async fn decimal_character() {
    let sb = Sandbox::start().await;
    let token = project(&sb).await;
    let rows = sb
        .call(&token, "record", &[("decimalCharacter", ",")])
        .await
        .json();
    // Only number fields change; text keeps its dots.
    assert_eq!(rows[0]["weight"], "70,5");
    assert_eq!(rows[0]["note"], "a;b|c^d\te,f.g");
    assert_eq!(rows[1]["weight"], "80");
    let rows = sb
        .call(&token, "record", &[("decimalCharacter", ".")])
        .await
        .json();
    assert_eq!(rows[0]["weight"], "70.5");
    let eav = sb
        .call(
            &token,
            "record",
            &[
                ("type", "eav"),
                ("fields", "weight"),
                ("decimalCharacter", ","),
            ],
        )
        .await
        .json();
    assert_eq!(eav[0]["value"], "70,5");
    // With a `;` delimiter the comma needs no quoting.
    assert_eq!(
        csv(
            &sb,
            &token,
            &[
                ("decimalCharacter", ","),
                ("csvDelimiter", ";"),
                ("fields", "record_id,weight")
            ]
        )
        .await,
        "record_id;weight\n1;70,5\n2;80\n"
    );
}

#[tokio::test]
async fn date_range() {
    let sb = Sandbox::start().await;
    let token = project(&sb).await;
    let ids = |rows: serde_json::Value| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["record_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let export = |extra: Vec<(&'static str, &'static str)>| {
        let sb = &sb;
        let token = token.clone();
        async move {
            let mut params = vec![("fields", "record_id")];
            params.extend(extra);
            sb.call(&token, "record", &params).await
        }
    };
    // The records were created now: a range from the past holds them…
    assert_eq!(
        ids(export(vec![("dateRangeBegin", "2000-01-01 00:00:00")])
            .await
            .json()),
        ["1", "2"]
    );
    // …one that ends before, or begins after, does not.
    assert!(ids(export(vec![("dateRangeEnd", "2000-01-01")]).await.json()).is_empty());
    assert!(
        ids(export(vec![("dateRangeBegin", "9000-01-01 00:00:00")])
            .await
            .json())
        .is_empty()
    );
    // A bare end date holds its whole day; with `records`, both apply.
    assert_eq!(
        ids(export(vec![
            ("dateRangeBegin", "2000-01-01"),
            ("dateRangeEnd", "9000-12-31"),
            ("records", "2,3")
        ])
        .await
        .json()),
        ["2"]
    );
    // An update is a change too (its log row is in the range).
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "2", "note": "x"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        ids(export(vec![("dateRangeBegin", "2000-01-01 00:00")])
            .await
            .json()),
        ["1", "2"]
    );
    export(vec![("dateRangeBegin", "yesterday")])
        .await
        .assert_error(
            400,
            &E::InvalidParameterValues {
                parameter: "dateRangeBegin",
                values: vec!["yesterday".into()],
            }
            .message(),
        );
}

#[tokio::test]
async fn label_headers() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let export = |extra: Vec<(&'static str, &'static str)>| {
        let sb = &sb;
        let token = token.clone();
        async move {
            let mut params = vec![
                ("token", token.as_str()),
                ("content", "record"),
                ("format", "csv"),
                ("rawOrLabelHeaders", "label"),
            ];
            params.extend(extra);
            let a = sb.post(&params).await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        }
    };
    // PHP's fputcsv quotes every cell holding a space.
    let header = "\"Record ID\",Name,Age,Complete?,\"Symptoms (choice=Fever)\",\"Symptoms (choice=Cough)\",Arm,Complete?\n";
    // No records: the header alone.
    assert_eq!(export(vec![]).await, header);
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "1", "symptoms___2": "1", "arm": "b"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(export(vec![]).await, format!("{header}1,,,0,0,1,b,0\n"));
    // Values stay raw unless rawOrLabel says otherwise; both together.
    assert_eq!(
        export(vec![("rawOrLabel", "label"), ("fields", "record_id,arm")]).await,
        "\"Record ID\",Arm\n1,B\n"
    );
    // JSON keys are never labels.
    let rows = sb
        .call(
            &token,
            "record",
            &[("rawOrLabelHeaders", "label"), ("fields", "arm")],
        )
        .await
        .json();
    assert_eq!(rows, json!([{"arm": "b"}]));
}

/// `combineCheckboxOptions` (flat only, REDCap 15.7.6's `getData`): a
/// checkbox is one column named after the field, holding its checked
/// codes joined by commas (labels with `rawOrLabel=label`, the field's label
/// as its labelled header); EAV rows are unchanged. `rawOrLabel` other than
/// `raw`/`label` (PyCap offers `both`) is `raw` (`API/index.php`).
#[tokio::test]
async fn combine_checkbox_options_and_raw_or_label_both() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "symptoms___1": "1", "symptoms___2": "1", "arm": "b"},
                {"record_id": "2", "arm": "a"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let export = |extra: Vec<(&'static str, &'static str)>| {
        let sb = &sb;
        let token = token.clone();
        async move {
            let mut params = vec![
                ("token", token.as_str()),
                ("content", "record"),
                ("format", "json"),
                ("fields", "record_id,symptoms,arm"),
            ];
            params.extend(extra);
            let a = sb.post(&params).await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        }
    };
    let json_of = |s: String| -> serde_json::Value { serde_json::from_str(&s).unwrap() };
    assert_eq!(
        json_of(export(vec![("combineCheckboxOptions", "true")]).await),
        json!([
            {"record_id": "1", "symptoms": "1,2", "arm": "b"},
            {"record_id": "2", "symptoms": "", "arm": "a"}
        ])
    );
    assert_eq!(
        json_of(
            export(vec![
                ("combineCheckboxOptions", "1"),
                ("rawOrLabel", "label")
            ])
            .await
        ),
        json!([
            {"record_id": "1", "symptoms": "Fever,Cough", "arm": "B"},
            {"record_id": "2", "symptoms": "", "arm": "A"}
        ])
    );
    assert_eq!(
        export(vec![
            ("combineCheckboxOptions", "TRUE"),
            ("format", "csv"),
            ("rawOrLabelHeaders", "label")
        ])
        .await,
        "\"Record ID\",Symptoms,Arm\n1,\"1,2\",b\n2,,a\n"
    );
    // Anything but 1/true leaves the columns split.
    assert_eq!(
        json_of(export(vec![("combineCheckboxOptions", "yes")]).await)[0]["symptoms___2"],
        "1"
    );
    // EAV: one row per checked code, as without it.
    let eav = json_of(
        export(vec![
            ("combineCheckboxOptions", "true"),
            ("type", "eav"),
            ("records", "1"),
        ])
        .await,
    );
    assert_eq!(
        eav,
        json!([
            {"record": "1", "field_name": "record_id", "value": "1"},
            {"record": "1", "field_name": "symptoms", "value": "1"},
            {"record": "1", "field_name": "symptoms", "value": "2"},
            {"record": "1", "field_name": "arm", "value": "b"}
        ])
    );
    // rawOrLabel=both is raw.
    assert_eq!(
        export(vec![("rawOrLabel", "both")]).await,
        export(vec![("rawOrLabel", "raw")]).await
    );
}

/// A form without a status (gray) exports as `0` (Incomplete) in a flat
/// row that shows it, blank with `exportBlankForGrayFormStatus`; EAV has
/// no row for it (REDCap 15.7.6's getData defaults, its EAV path).
#[tokio::test]
async fn gray_form_status() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "record",
            json!([{"record_id": "1", "age": "5"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let fields = ("fields", "record_id,demographics_complete,visit_complete");
    let rows = sb.call(&token, "record", &[fields]).await.json();
    assert_eq!(
        rows,
        json!([{"record_id": "1", "demographics_complete": "0", "visit_complete": "0"}])
    );
    let labels = sb
        .call(&token, "record", &[fields, ("rawOrLabel", "label")])
        .await
        .json();
    assert_eq!(labels[0]["visit_complete"], "Incomplete");
    for flag in ["1", "true", "TRUE"] {
        let rows = sb
            .call(
                &token,
                "record",
                &[fields, ("exportBlankForGrayFormStatus", flag)],
            )
            .await
            .json();
        assert_eq!(
            rows,
            json!([{"record_id": "1", "demographics_complete": "0", "visit_complete": ""}]),
            "{flag}"
        );
    }
    let eav = sb
        .call(&token, "record", &[fields, ("type", "eav")])
        .await
        .json();
    assert!(
        !eav.as_array()
            .unwrap()
            .iter()
            .any(|r| r["field_name"] == "visit_complete"),
        "{eav}"
    );
}
