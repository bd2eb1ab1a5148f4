//! REDCap's `content` whitelist (§1.5), method by method, as the
//! compatibility table in `docs/sandbox.md` states it: every content the
//! sandbox does not implement answers as REDCap answers one it does not know
//! (400 `The value of the parameter "content" is not valid`), and every
//! content it implements answers something else. A row of the table that
//! changes must change here too.

mod common;

use common::Sandbox;
use redcap::ApiError as E;

/// Implemented, with a call that reaches the method.
const SUPPORTED: &[(&str, &[(&str, &str)])] = &[
    ("record", &[]),
    ("metadata", &[]),
    (
        "file",
        &[("action", "export"), ("record", "1"), ("field", "x")],
    ),
    ("fileRepository", &[("action", "list")]),
    ("instrument", &[]),
    ("user", &[]),
    ("version", &[]),
    ("exportFieldNames", &[]),
    ("project", &[]),
    ("generateNextRecordName", &[]),
    ("dag", &[]),
    ("userDagMapping", &[]),
    ("log", &[]),
    ("userRole", &[]),
    ("userRoleMapping", &[]),
    ("repeatingFormsEvents", &[]),
    ("event", &[]),
    ("arm", &[]),
    ("formEventMapping", &[]),
    ("project_xml", &[("returnMetadataOnly", "true")]),
    (
        "fileinfo",
        &[("action", "export"), ("record", "1"), ("field", "x")],
    ),
    (
        "filesize",
        &[("action", "export"), ("record", "1"), ("field", "x")],
    ),
    ("project_settings", &[("data", r#"{"project_notes":"n"}"#)]),
    ("report", &[("report_id", "1")]),
    ("appRightsCheck", &[]),
    ("fieldValidation", &[]),
    ("pdf", &[]),
    ("surveyLink", &[]),
    ("surveyAccessCode", &[]),
    ("surveyQueueLink", &[]),
    ("surveyReturnCode", &[]),
    ("participantList", &[]),
];

/// In REDCap 15.7.6's whitelist, not implemented by the sandbox.
const UNSUPPORTED: &[&str] = &[
    "authkey",
    "attachment",
    "tableau",
    "mycap",
    "externalModule",
];

#[tokio::test]
async fn the_whitelist_is_answered_as_the_compatibility_table_says() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    let invalid = E::InvalidContent.message();
    for (content, extra) in SUPPORTED {
        let a = sb.call(&admin, content, extra).await;
        assert!(
            !a.body.contains(&invalid),
            "{content} is in the table as supported but answers: {}",
            a.body
        );
    }
    for content in UNSUPPORTED {
        sb.call(&admin, content, &[])
            .await
            .assert_error(400, &invalid);
    }
    // Randomize answers as REDCap does without a randomization model.
    let a = sb
        .call(
            &admin,
            "record",
            &[("action", "randomize"), ("record", "1")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "Invalid data supplied"));
    // 36 contents in 15.7.6's whitelist, plus externalModule.
    assert_eq!(SUPPORTED.len() + UNSUPPORTED.len(), 37);
}
