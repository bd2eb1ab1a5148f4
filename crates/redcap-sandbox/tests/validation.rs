//! Record import text validation: each validation type refuses what it
//! must (400, one line `"record","field","value","message"` per bad value)
//! and accepts what it must, with `data` in JSON, CSV and XML; `dateFormat`
//! conversion; min/max as the soft limits REDCap treats them as.

mod common;

use common::Sandbox;
use redcap::ApiError;
use redcap::error::ValidationLine;
use serde_json::{Value, json};

/// (validation type, values it refuses, values it accepts)
const RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "integer",
        &["1.5", "abc", "1e3", "12 "],
        &["0", "-12", "+7"],
    ),
    (
        "number",
        &["1.", "1,5", "x", "1.2.3"],
        &["1", "-1.25", ".5"],
    ),
    ("number_1dp", &["22", "22.00", "2.x"], &["22.0", "-0.5"]),
    ("number_2dp", &["1.5", "1.505"], &["1.50"]),
    ("number_2dp_comma_decimal", &["1.50", "1,5"], &["1,50"]),
    (
        "date_ymd",
        &["2023-02-29", "2024-1-05", "05/01/2024", "2024-13-01"],
        &["2024-02-29"],
    ),
    ("date_dmy", &["31-01-2024", "2024-04-31"], &["2024-01-31"]),
    ("date_mdy", &["01/31/2024"], &["2024-01-31"]),
    (
        "datetime_ymd",
        &["2024-01-05", "2024-01-05 24:00", "2024-01-05 10:00:00"],
        &["2024-01-05 23:59"],
    ),
    ("datetime_dmy", &["05-01-2024 10:00"], &["2024-01-05 10:00"]),
    (
        "datetime_seconds_ymd",
        &["2024-01-05 10:00", "2024-01-05 10:00:60"],
        &["2024-01-05 10:00:59"],
    ),
    (
        "time",
        &["7:30", "24:00", "12:60", "12:00:00"],
        &["00:00", "23:59"],
    ),
    ("time_mm_ss", &["60:00", "1:00"], &["59:59"]),
    (
        "email",
        &["joe", "joe@x", "jo e@x.com", "@x.com"],
        &["joe@user.com", "a.b+c@sub.example.org"],
    ),
    (
        "phone",
        &["115 555 1212", "415 555 121", "415-555-1212 x3", "phone"],
        &["(415) 555-1212", "415.555.1212", "4155551212"],
    ),
    (
        "zipcode",
        &["9404", "94043-12", "ABCDE"],
        &["94043", "94043-1234", "940431234"],
    ),
    ("alpha_only", &["abc1", "a b"], &["Abc"]),
];

fn field_name(vtype: &str) -> String {
    format!("v_{vtype}")
}

/// A project with one text field per validation type, plus a range field
/// and an unvalidated one.
async fn project(sb: &Sandbox) -> String {
    let admin = sb.create_project().await;
    let mut md = vec![
        json!({"field_name": "record_id", "form_name": "f", "field_type": "text", "field_label": "ID"}),
    ];
    for (vtype, _, _) in RULES {
        md.push(
            json!({"field_name": field_name(vtype), "form_name": "f", "field_type": "text",
                       "field_label": vtype, "text_validation_type_or_show_slider_number": vtype}),
        );
    }
    md.push(
        json!({"field_name": "age", "form_name": "f", "field_type": "text", "field_label": "Age",
                   "text_validation_type_or_show_slider_number": "integer",
                   "text_validation_min": "18", "text_validation_max": "65"}),
    );
    md.push(json!({"field_name": "free", "form_name": "f", "field_type": "text", "field_label": "Free"}));
    md.push(json!({"field_name": "custom", "form_name": "f", "field_type": "text", "field_label": "Custom",
                   "text_validation_type_or_show_slider_number": "signature"}));
    let n = md.len();
    let a = sb.import(&admin, "metadata", Value::Array(md), &[]).await;
    assert_eq!((a.status, a.body.clone()), (200, n.to_string()));
    admin
}

fn bad_format(record: &str, field: &str, value: &str) -> String {
    ApiError::RecordValidation {
        lines: vec![ValidationLine {
            record: record.into(),
            field: field.into(),
            value: value.into(),
            message: ValidationLine::BAD_FORMAT.into(),
        }],
    }
    .message()
}

#[tokio::test]
async fn each_validation_type_refuses_and_accepts_what_it_must() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    assert_eq!(
        ValidationLine::BAD_FORMAT,
        "The value you provided could not be validated because it does not follow the expected format. Please try again."
    );
    for (vtype, bad, good) in RULES {
        let field = field_name(vtype);
        for value in *bad {
            let a = sb
                .import(
                    &admin,
                    "record",
                    json!([{"record_id": "1", &field: value}]),
                    &[],
                )
                .await;
            a.assert_error(400, &bad_format("1", &field, value));
        }
        for value in *good {
            let a = sb
                .import(
                    &admin,
                    "record",
                    json!([{"record_id": "1", &field: value}]),
                    &[],
                )
                .await;
            assert_eq!(a.json(), json!({"count": 1}), "{vtype} {value:?}");
            let rows = sb
                .call(&admin, "record", &[("records", "1"), ("fields", &field)])
                .await
                .json();
            assert_eq!(rows, json!([{ &field: value }]));
        }
    }
    // Blank values are never validated; unvalidated and unknown types take anything.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "2", "v_integer": "", "free": "anything 1.5", "custom": "x y"}]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}));
}

#[tokio::test]
async fn validation_errors_in_every_data_format_and_nothing_is_written() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    // Two bad values in two records: two lines, in row order, nothing saved.
    let expected = format!(
        "{}\n{}",
        bad_format("1", "v_integer", "x"),
        bad_format("2", "v_email", "nope")
    );
    let csv = "record_id,v_integer,v_email\n1,x,a@b.org\n2,3,nope\n";
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><records>\
        <item><record_id>1</record_id><v_integer>x</v_integer><v_email>a@b.org</v_email></item>\
        <item><record_id>2</record_id><v_integer>3</v_integer><v_email>nope</v_email></item></records>";
    let json_data = json!([{"record_id": "1", "v_integer": "x", "v_email": "a@b.org"},
                           {"record_id": "2", "v_integer": "3", "v_email": "nope"}])
    .to_string();
    for (format, data) in [("json", json_data.as_str()), ("csv", csv), ("xml", xml)] {
        for rf in ["json", "csv", "xml"] {
            let a = sb
                .post(&[
                    ("token", &admin),
                    ("content", "record"),
                    ("format", format),
                    ("returnFormat", rf),
                    ("data", data),
                ])
                .await;
            assert_eq!(a.status, 400, "{format}/{rf}: {}", a.body);
            let body = redcap::wire::error_body(&expected, redcap::Format::from_param(rf));
            assert_eq!(a.body, body, "{format}/{rf}");
        }
    }
    let rows = sb.call(&admin, "record", &[]).await.json();
    assert_eq!(rows, json!([]));
}

#[tokio::test]
async fn date_format_converts_and_ranges_are_soft() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    // dateFormat=MDY / DMY: converted to YYYY-MM-DD before checking and storing.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "v_date_ymd": "1/31/2024", "v_datetime_dmy": "12/31/2024 08:15"}]),
            &[("dateFormat", "MDY")],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "2", "v_date_mdy": "31-01-2024"}]),
            &[("dateFormat", "DMY")],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let rows = sb
        .call(
            &admin,
            "record",
            &[("fields", "record_id,v_date_ymd,v_datetime_dmy,v_date_mdy")],
        )
        .await
        .json();
    assert_eq!(
        rows,
        json!([
            {"record_id": "1", "v_date_ymd": "2024-01-31", "v_datetime_dmy": "2024-12-31 08:15", "v_date_mdy": ""},
            {"record_id": "2", "v_date_ymd": "", "v_datetime_dmy": "", "v_date_mdy": "2024-01-31"}
        ])
    );
    // An impossible date in MDY is refused; the line shows it converted.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "3", "v_date_ymd": "2/30/2024"}]),
            &[("dateFormat", "MDY")],
        )
        .await;
    a.assert_error(400, &bad_format("3", "v_date_ymd", "2024-02-30"));
    // A value that is not in MDY shape is checked as sent: YYYY-MM-DD passes.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "3", "v_date_ymd": "2024-01-31"}]),
            &[("dateFormat", "MDY")],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}));
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "3", "v_date_ymd": "31.01.2024"}]),
            &[("dateFormat", "MDY")],
        )
        .await;
    a.assert_error(400, &bad_format("3", "v_date_ymd", "31.01.2024"));
    // Without dateFormat, an MDY value is not a date.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "3", "v_date_ymd": "1/31/2024"}]),
            &[],
        )
        .await;
    a.assert_error(400, &bad_format("3", "v_date_ymd", "1/31/2024"));

    // min/max are soft in REDCap: outside the range is admissible.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "4", "age": "99"}, {"record_id": "5", "age": "3"}]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 2}));
    // …but the type still applies.
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "6", "age": "forty"}]),
            &[],
        )
        .await;
    a.assert_error(400, &bad_format("6", "age", "forty"));
}

/// Imports are written row by row as they are read: a bad value after
/// good rows (here the last of 500) still leaves nothing — no record, no
/// record log row — in every data format, and existing records keep their
/// values.
#[tokio::test]
async fn a_bad_row_after_good_ones_leaves_nothing() {
    let sb = Sandbox::start().await;
    let admin = project(&sb).await;
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "1", "age": "7"}]),
            &[],
        )
        .await;
    assert_eq!(a.json(), json!({"count": 1}), "{}", a.body);
    let n = 500;
    let mut rows: Vec<Value> = (1..n)
        .map(|i| json!({"record_id": i.to_string(), "age": "8", "v_integer": i.to_string()}))
        .collect();
    rows.push(json!({"record_id": n.to_string(), "v_integer": "x"}));
    let mut csv = String::from("record_id,age,v_integer\n");
    let mut xml = String::from("<records>");
    for r in &rows {
        let (id, age, int) = (
            &r["record_id"],
            r["age"].as_str().unwrap_or(""),
            &r["v_integer"],
        );
        let (id, int) = (id.as_str().unwrap(), int.as_str().unwrap());
        csv.push_str(&format!("{id},{age},{int}\n"));
        xml.push_str(&format!(
            "<item><record_id>{id}</record_id><age>{age}</age><v_integer>{int}</v_integer></item>"
        ));
    }
    xml.push_str("</records>");
    let json_data = Value::Array(rows).to_string();
    let expected = bad_format(&n.to_string(), "v_integer", "x");
    for (format, data) in [("json", json_data.as_str()), ("csv", &csv), ("xml", &xml)] {
        let a = sb
            .post(&[
                ("token", &admin),
                ("content", "record"),
                ("format", format),
                ("returnFormat", "json"),
                ("data", data),
            ])
            .await;
        assert_eq!(a.status, 400, "{format}: {}", a.body);
        let body = redcap::wire::error_body(&expected, redcap::Format::Json);
        assert_eq!(a.body, body, "{format}");
    }
    let rows = sb.call(&admin, "record", &[]).await.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["age"], "7");
    // Only the first import's record row: the failed ones left none.
    let log = sb
        .call(&admin, "log", &[("logtype", "record")])
        .await
        .json();
    assert_eq!(log.as_array().map(Vec::len), Some(1), "{log}");
}
