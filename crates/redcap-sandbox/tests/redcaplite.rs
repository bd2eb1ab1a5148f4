//! Outside check: redcaplite's own integration suite, as its PyPI package
//! ships it (`tests/integration/` of the sdist), run unchanged against the
//! sandbox.
//!
//! The suite reads `REDCAP_API_URL` and `REDCAP_API_TOKEN` and assumes a
//! project already exists: longitudinal (it adds arm 3 and an event in it,
//! then deletes both), with a `record_id` text field, a DAG whose unique
//! name is `first_group`, a role labelled `read`, and a token whose user
//! may manage users, roles, DAGs and the design. [`build_project`] makes
//! that project through the sandbox's own API — Create Project with the
//! super token of a plain (non-administrator) account, Import DAGs,
//! Import User Roles — as one would on a real server.
//!
//! The suite compares Export Users rows before and after
//! `data_access_group_label` is blanked, a field REDCap adds from 16.0.0
//! (§4.9): the sandbox plays 16.0.8 here.
//!
//! `REDCAPLITE_PYTHON` names a Python with redcaplite and pytest installed
//! and `REDCAPLITE_SUITE` the unpacked sdist; `scripts/test` makes both
//! (cached) and exports them. Without them the test passes with a note
//! locally but **fails under CI** (`CI` set). pytest's JUnit report must
//! count every test of the suite as passed: a skipped, failed or errored
//! test fails this test.

mod common;

use std::path::PathBuf;

use common::Sandbox;
use reqwest::Method;
use serde_json::{Value, json};

/// The tests redcaplite 2.3.0 ships in `tests/integration/` (11 in
/// `test_integration.py`, 7 parameters of `test_import_users_variations`
/// and 2 more in `test_user_management.py`).
const SUITE_TESTS: usize = 21;

/// The Python and the unpacked sdist, or `None` when the run is to be
/// skipped (never under CI).
fn redcaplite() -> Option<(PathBuf, PathBuf)> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    match (var("REDCAPLITE_PYTHON"), var("REDCAPLITE_SUITE")) {
        (Some(python), Some(suite)) => Some((python.into(), suite.into())),
        _ if var("CI").is_some() => panic!(
            "CI is set but REDCAPLITE_PYTHON or REDCAPLITE_SUITE is not: scripts/test installs redcaplite into a venv, unpacks its sdist and exports both"
        ),
        _ => {
            eprintln!(
                "redcaplite_integration_suite: not run; set REDCAPLITE_PYTHON and REDCAPLITE_SUITE (scripts/test does)"
            );
            None
        }
    }
}

/// Builds, through the API, the project redcaplite's suite expects and
/// returns its token (owned by `rcl_tester`, a plain account).
async fn build_project(sb: &Sandbox) -> String {
    let (s, v) = sb
        .admin(
            Method::POST,
            "/sandbox/users",
            Some(json!({"username": "rcl_tester", "email": "rcl_tester@example.org"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = sb
        .admin(Method::POST, "/sandbox/users/rcl_tester/super-token", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let super_token = v["token"].as_str().unwrap().to_owned();

    let a = sb
        .import(
            &super_token,
            "project",
            json!([{"project_title": "redcaplite integration", "purpose": 0, "is_longitudinal": 1}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let token = a.body;
    assert_eq!(token.len(), 32);

    let a = sb
        .import(
            &token,
            "dag",
            json!([{"data_access_group_name": "First Group", "unique_group_name": ""}]),
            &[("action", "import")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    let a = sb
        .import(
            &token,
            "userRole",
            json!([{"unique_role_name": "", "role_label": "read", "api_export": 1}]),
            &[],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));

    // What the suite takes for granted, as the API shows it.
    let dags = sb.call(&token, "dag", &[]).await.json();
    assert_eq!(dags[0]["unique_group_name"], "first_group", "{dags}");
    let arms = sb.call(&token, "arm", &[]).await.json();
    assert_eq!(arms, json!([{"arm_num": 1, "name": "Arm 1"}]));
    let fields = sb.call(&token, "metadata", &[]).await.json();
    assert_eq!(fields[0]["field_name"], "record_id", "{fields}");
    let project = sb.call(&token, "project", &[]).await.json();
    assert_eq!(project["is_longitudinal"], json!(1), "{project}");
    token
}

/// Counts of one JUnit `<testsuite>`: tests, failures, errors, skipped.
fn junit_counts(xml: &str) -> [usize; 4] {
    let start = xml
        .find("<testsuite ")
        .unwrap_or_else(|| panic!("no <testsuite> in pytest's report:\n{xml}"));
    let tag = &xml[start..start + xml[start..].find('>').expect("a closed tag")];
    ["tests", "failures", "errors", "skipped"].map(|name| {
        let key = format!(" {name}=\"");
        let at = tag
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {tag}"))
            + key.len();
        let value = &tag[at..at + tag[at..].find('"').expect("a closed attribute")];
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} in {tag}"))
    })
}

#[tokio::test]
async fn redcaplite_integration_suite() {
    let Some((python, suite)) = redcaplite() else {
        return;
    };
    let sb = Sandbox::start_with(|c| c.version = "16.0.8".parse().unwrap()).await;
    let token = build_project(&sb).await;

    let report = tempfile::tempdir().unwrap();
    let junit = report.path().join("junit.xml");
    // The token goes in the environment, as the suite reads it, never in
    // the arguments.
    let out = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q"])
        .arg(format!("--junitxml={}", junit.display()))
        .arg("tests/integration")
        .current_dir(&suite)
        .env("REDCAP_API_URL", &sb.api)
        .env("REDCAP_API_TOKEN", &token)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run REDCAPLITE_PYTHON={python:?}: {e}"));
    // pytest's tracebacks show the request data, token included: the
    // failure messages below name it by its role only.
    let stdout = String::from_utf8_lossy(&out.stdout).replace(&token, "<project token>");
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&token, "<project token>");
    let xml = std::fs::read_to_string(&junit)
        .unwrap_or_else(|e| panic!("pytest wrote no JUnit report ({e}):\n{stdout}\n{stderr}"));
    let [tests, failures, errors, skipped] = junit_counts(&xml);
    assert!(
        out.status.success() && failures == 0 && errors == 0 && skipped == 0,
        "redcaplite's suite: {tests} tests, {failures} failed, {errors} errors, {skipped} skipped:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        tests, SUITE_TESTS,
        "redcaplite's suite ran {tests} tests, not the {SUITE_TESTS} it ships:\n{stdout}"
    );

    // The suite cleaned up after itself: what it added is gone, the
    // project it was given is still there.
    let arms: Value = sb.call(&token, "arm", &[]).await.json();
    assert_eq!(arms, json!([{"arm_num": 1, "name": "Arm 1"}]));
    let dags = sb.call(&token, "dag", &[]).await.json();
    assert_eq!(dags.as_array().map(Vec::len), Some(1), "{dags}");
    let users = sb.call(&token, "user", &[]).await.json();
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
}

#[test]
fn junit_counts_read_the_testsuite_tag() {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="0" failures="1" skipped="2" tests="21" time="0.7"><testcase/></testsuite></testsuites>"#;
    assert_eq!(junit_counts(xml), [21, 1, 0, 2]);
}
