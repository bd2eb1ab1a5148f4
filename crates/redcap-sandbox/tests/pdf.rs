//! `content=pdf`: real PDF documents (a structure check of every answer —
//! header, objects, cross-reference offsets, trailer — and the text they
//! show, read from their content streams and, where Poppler's `pdftotext`
//! is installed, by it: `scripts/test` installs it, and under CI a missing
//! one fails), blank instruments, one record, all records, compact display,
//! `instrument`, `event`, `repeat_instance`, the file name, errors in
//! REDCap 15.7.6's words and order, rights, DAGs and logging.

mod common;

use common::{SUPER, Sandbox};
use serde_json::json;

/// Checks the file's structure; answers the text its pages show, in order.
fn check_pdf(pdf: &[u8]) -> Vec<String> {
    assert!(
        pdf.starts_with(b"%PDF-1.3\n3 0 obj\n"),
        "{:?}",
        &pdf[..20.min(pdf.len())]
    );
    assert!(pdf.ends_with(b"%%EOF\n"));
    let text = String::from_utf8_lossy(pdf).into_owned();
    let start: usize = text
        .rsplit("startxref\n")
        .next()
        .and_then(|t| t.lines().next())
        .and_then(|l| l.parse().ok())
        .expect("startxref");
    assert!(text[start..].starts_with("xref\n0 "), "xref at {start}");
    let size: usize = text[start + 7..]
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("xref size");
    let entries: Vec<&str> = text[start..].lines().skip(2).take(size).collect();
    assert_eq!(entries[0], "0000000000 65535 f ");
    for (i, e) in entries.iter().enumerate().skip(1) {
        let offset: usize = e[..10].parse().unwrap();
        assert!(
            text[offset..].starts_with(&format!("{i} 0 obj\n")),
            "object {i} is not at {offset}"
        );
    }
    assert!(text.contains(&format!("/Size {size}")));
    // Each content stream's length is right.
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<</Length ") {
        rest = &rest[i + 10..];
        let len: usize = rest[..rest.find('>').unwrap()].parse().unwrap();
        let body = &rest[rest.find("stream\n").unwrap() + 7..];
        assert!(
            body[len..].starts_with("\nendstream"),
            "stream length {len}"
        );
    }
    // The shown strings.
    let mut shown = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find(" Td (") {
        rest = &rest[i + 5..];
        let mut s = String::new();
        let mut chars = rest.char_indices();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, n) = chars.next().unwrap();
                    if n.is_ascii_digit() {
                        let d: String = [n, chars.next().unwrap().1, chars.next().unwrap().1]
                            .iter()
                            .collect();
                        s.push(char::from(u8::from_str_radix(&d, 8).unwrap()));
                    } else {
                        s.push(n);
                    }
                }
                ')' => break,
                c => s.push(c),
            }
        }
        shown.push(s);
    }
    shown
}

/// Poppler's reading of the file, when `pdftotext` is there (required
/// under CI).
fn pdftotext(pdf: &[u8]) -> Option<String> {
    let found = std::process::Command::new("pdftotext")
        .arg("-v")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v.is_empty()),
            "CI is set but pdftotext is missing: scripts/test installs poppler-utils"
        );
        eprintln!("pdftotext not installed: Poppler's check skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pdftotext refused the file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "pdftotext complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn project(sb: &Sandbox) -> String {
    let token = sb.create_project().await;
    sb.standard_metadata(&token).await;
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "name": "Alice (é)", "age": "30", "symptoms___2": "1", "arm": "b", "demographics_complete": "2"},
                {"record_id": "2", "name": "Bob"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    token
}

#[tokio::test]
async fn pdfs_blank_and_with_data() {
    let sb = Sandbox::start().await;
    let token = project(&sb).await;
    let pdf = |extra: &[(&'static str, &'static str)]| {
        let mut params = vec![("token", token.as_str()), ("content", "pdf")];
        params.extend_from_slice(extra);
        let sb = &sb;
        async move { sb.post_bytes(&params).await }
    };

    // Every instrument, blank.
    let a = pdf(&[]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("content-type"), "application/pdf");
    assert_eq!(
        a.header("content-disposition"),
        "attachment; filename=\"Trial.pdf\""
    );
    let shown = check_pdf(&a.bytes);
    for label in [
        "Demographics",
        "Record ID",
        "Name",
        "Age",
        "Visit",
        "Symptoms",
        "[ ] Fever",
        "[ ] Cough",
        "( ) A",
        "Form Status",
    ] {
        assert!(shown.iter().any(|s| s == label), "{label} not in {shown:?}");
    }
    assert!(!shown.iter().any(|s| s.contains("Alice")));
    if let Some(text) = pdftotext(&a.bytes) {
        for label in ["Demographics", "Name", "Symptoms", "Fever", "Page 2"] {
            assert!(text.contains(label), "{label} not in {text}");
        }
    }

    // One instrument, blank: its label leads the file name.
    let a = pdf(&[("instrument", "visit")]).await;
    assert_eq!(
        a.header("content-disposition"),
        "attachment; filename=\"Visit_Trial.pdf\""
    );
    let shown = check_pdf(&a.bytes);
    assert!(shown.iter().any(|s| s == "Visit"));
    assert!(!shown.iter().any(|s| s == "Demographics"), "{shown:?}");

    // One record, every instrument: its values; the name has the time.
    let a = pdf(&[("record", "1")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let cd = a.header("content-disposition").to_owned();
    assert!(cd.starts_with("attachment; filename=\"Trial_20"), "{cd}");
    assert_eq!(
        cd.len(),
        "attachment; filename=\"Trial_2026-01-01_1200.pdf\"".len(),
        "{cd}"
    );
    let shown = check_pdf(&a.bytes);
    for value in [
        "Record ID 1",
        "Alice (é)",
        "30",
        "[X] Cough",
        "[ ] Fever",
        "(X) B",
        "( ) A",
        "Complete",
    ] {
        assert!(shown.iter().any(|s| s == value), "{value} not in {shown:?}");
    }
    assert!(!shown.iter().any(|s| s.contains("Bob")));
    if let Some(text) = pdftotext(&a.bytes) {
        assert!(text.contains("Alice (é)"), "{text}");
        assert!(text.contains("Cough"), "{text}");
    }

    // One record, one instrument, compact: no empty fields, no unselected
    // choices.
    let a = pdf(&[
        ("record", "1"),
        ("instrument", "visit"),
        ("compactDisplay", "true"),
    ])
    .await;
    assert!(
        a.header("content-disposition")
            .starts_with("attachment; filename=\"Visit_Trial_20")
    );
    let shown = check_pdf(&a.bytes);
    assert!(shown.iter().any(|s| s == "[X] Cough"), "{shown:?}");
    assert!(!shown.iter().any(|s| s.contains("Fever")), "{shown:?}");
    assert!(!shown.iter().any(|s| s == "Demographics"));
    let full = check_pdf(
        &pdf(&[("record", "2"), ("instrument", "demographics")])
            .await
            .bytes,
    );
    assert!(full.iter().any(|s| s == "Age"), "{full:?}");
    let compact = check_pdf(
        &pdf(&[
            ("record", "2"),
            ("instrument", "demographics"),
            ("compactDisplay", "1"),
        ])
        .await
        .bytes,
    );
    assert!(!compact.iter().any(|s| s == "Age"), "{compact:?}");
    assert!(compact.iter().any(|s| s == "Bob"), "{compact:?}");

    // All records (any value of allRecords; record and instrument ignored).
    let a = pdf(&[("allRecords", ""), ("instrument", "visit"), ("record", "1")]).await;
    assert!(
        a.header("content-disposition")
            .starts_with("attachment; filename=\"Trial_20")
    );
    let shown = check_pdf(&a.bytes);
    assert!(shown.iter().any(|s| s == "Alice (é)"));
    assert!(shown.iter().any(|s| s == "Bob"));
    assert!(shown.iter().any(|s| s == "Record ID 2"));

    // Errors, in REDCap's order and words; their shape follows returnFormat.
    let err = |extra: &[(&'static str, &'static str)]| {
        let mut params = vec![
            ("token", token.as_str()),
            ("content", "pdf"),
            ("returnFormat", "json"),
        ];
        params.extend_from_slice(extra);
        let sb = &sb;
        async move { sb.post(&params).await }
    };
    err(&[("instrument", "nope"), ("record", "9")])
        .await
        .assert_error(400, "Invalid instrument");
    err(&[("record", "9")])
        .await
        .assert_error(400, "The record '9' does not exist");
    let rights = json!({"username": "noexport", "api_export": 1,
        "forms_export": {"demographics": 0, "visit": 0}, "forms": {"demographics": 1, "visit": 1}});
    let other = sb.user_with_token(1, rights).await;
    sb.post(&[("token", &other), ("content", "pdf"), ("returnFormat", "json")])
        .await
        .assert_error(
            403,
            "The API request cannot complete because currently you have \"No Access\" data export rights. Higher level data export rights are required for this operation.",
        );

    // A DAG member: another DAG's record is missing; all records are its DAG's.
    sb.import(
        &token,
        "dag",
        json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
        &[("action", "import")],
    )
    .await;
    sb.import(
        &token,
        "record",
        json!([{"record_id": "2", "redcap_data_access_group": "site_a"}]),
        &[],
    )
    .await;
    let member = sb
        .user_with_token(
            1,
            json!({"username": "sitea", "api_export": 1, "data_access_group": "site_a",
                   "forms": {"demographics": 1, "visit": 1}, "forms_export": {"demographics": 1, "visit": 1}}),
        )
        .await;
    sb.post(&[
        ("token", &member),
        ("content", "pdf"),
        ("record", "1"),
        ("returnFormat", "json"),
    ])
    .await
    .assert_error(400, "The record '1' does not exist");
    let a = sb
        .post_bytes(&[("token", &member), ("content", "pdf"), ("allRecords", "1")])
        .await;
    let shown = check_pdf(&a.bytes);
    assert!(shown.iter().any(|s| s == "Bob"));
    assert!(!shown.iter().any(|s| s.contains("Alice")));

    // Logged as Manage/Design rows; Export Logging's `export` type shows
    // those "(with data)", `manage` the others (REDCap's filter).
    for (logtype, what, record) in [
        ("manage", "Download all data entry forms as PDF (API)", ""),
        ("manage", "Download data entry form as PDF (API)", ""),
        (
            "export",
            "Download all data entry forms as PDF (with data) (API)",
            "1",
        ),
        (
            "export",
            "Download data entry form as PDF (with data) (API)",
            "1",
        ),
        (
            "manage",
            "Download all data entry forms as PDF (all records) (API)",
            "",
        ),
    ] {
        let log = sb.call(&token, "log", &[("logtype", logtype)]).await.json();
        let rows = log.as_array().unwrap();
        assert!(
            rows.iter().any(|r| r["details"] == what
                && r["record"] == record
                && r["action"] == "Manage/Design "),
            "no {what} row in {logtype}: {log}"
        );
    }
    let manage = sb.call(&token, "log", &[("logtype", "manage")]).await.body;
    assert!(!manage.contains("(with data)"), "{manage}");
}

#[tokio::test]
async fn pdfs_of_longitudinal_and_repeating_projects() {
    let sb = Sandbox::start().await;
    let a = sb
        .import(
            SUPER,
            "project",
            json!([{"project_title": "Cohort study: phase #2", "purpose": 2, "is_longitudinal": 1}]),
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
    assert_eq!(a.body, "1");
    sb.import(
        &token,
        "formEventMapping",
        json!([
            {"arm_num": 1, "unique_event_name": "event_1_arm_1", "form": "demographics"},
            {"arm_num": 1, "unique_event_name": "follow_up_arm_1", "form": "visit"}
        ]),
        &[],
    )
    .await;
    sb.import(
        &token,
        "repeatingFormsEvents",
        json!([{"event_name": "follow_up_arm_1", "form_name": "visit", "custom_form_label": ""}]),
        &[],
    )
    .await;
    let a = sb
        .import(
            &token,
            "record",
            json!([
                {"record_id": "1", "redcap_event_name": "event_1_arm_1", "name": "Alice"},
                {"record_id": "1", "redcap_event_name": "follow_up_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "1", "arm": "a"},
                {"record_id": "1", "redcap_event_name": "follow_up_arm_1", "redcap_repeat_instrument": "visit", "redcap_repeat_instance": "2", "arm": "b"}
            ]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let post = |extra: &[(&'static str, &'static str)]| {
        let mut params = vec![("token", token.as_str()), ("content", "pdf")];
        params.extend_from_slice(extra);
        let sb = &sb;
        async move { sb.post_bytes(&params).await }
    };
    // No event: every event of the record, each instance on its page.
    let a = post(&[("record", "1")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let cd = a.header("content-disposition").to_owned();
    // Title words capitalised, punctuation gone, cut to 30 characters.
    assert!(
        cd.starts_with("attachment; filename=\"CohortStudyPhase2_20"),
        "{cd}"
    );
    let shown = check_pdf(&a.bytes);
    assert!(
        shown.iter().any(|s| s == "Record ID 1 (Event 1)"),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|s| s == "Record ID 1 (Follow up) (#1)"),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|s| s == "Record ID 1 (Follow up) (#2)"),
        "{shown:?}"
    );
    // One event, one instrument, one instance.
    let a = post(&[
        ("record", "1"),
        ("event", "follow_up_arm_1"),
        ("instrument", "visit"),
        ("repeat_instance", "2"),
    ])
    .await;
    let shown = check_pdf(&a.bytes);
    assert!(shown.iter().any(|s| s == "(X) B"), "{shown:?}");
    assert!(!shown.iter().any(|s| s == "(X) A"), "{shown:?}");
    assert!(!shown.iter().any(|s| s.contains("Event 1")), "{shown:?}");
    // An unknown event, with a record.
    let a = sb
        .post(&[
            ("token", &token),
            ("content", "pdf"),
            ("record", "1"),
            ("event", "nope"),
            ("returnFormat", "json"),
        ])
        .await;
    a.assert_error(400, "Invalid event");
    // Without a record the event is not read.
    assert_eq!(post(&[("event", "nope")]).await.status, 200);
}
