//! `sop` end to end: `--out` writes the Markdown and the self-contained
//! HTML; `--check` exits 0 on a copy of today's procedure, 1 naming the
//! section a changed rotation period touches (with the lines), 2 on a
//! missing file, a file that holds no procedure, or a configuration
//! without `[sop]`.

mod common;

use common::{text, warden};

const CONFIG: &str = r#"
[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlin"

[[study]]
name = "heart2"
project_id = 14

[[account]]
name = "heart2-export"
username = "svc_heart_export"
secret = "redcap/heart2/export"
study = "heart2"
rotate_every_days = 60

[sop]
document_id = "SOP-IT-017"
version = "1.0"
owner = { name = "Research IT", deputy = "A. Smith" }
approver = { name = "Head of Data Management", deputy = "B. Jones" }
operator = { name = "J. Doe", deputy = "C. Brown" }
redcap_admin = { name = "REDCap team", deputy = "D. Green", contact = "redcap-admin@example.org" }
[[sop.revision]]
version = "1.0"
date = "2026-12-01"
author = "J. Doe"
change = "first issue"
"#;

#[test]
fn sop_writes_both_files_and_check_catches_a_changed_period() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("warden.toml"), CONFIG).unwrap();

    let out = warden(dir, &["sop", "--out", "sop"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = std::fs::read_to_string(dir.join("sop/SOP-IT-017.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("sop/SOP-IT-017.html")).unwrap();
    for section in [
        "Document control",
        "Roles and deputies",
        "Schedule",
        "Routine rotation",
        "Emergency rotation",
        "Enrolment and retirement",
        "Re-authorisation",
        "REDCap UI steps",
        "Evidence",
        "Signatures",
    ] {
        assert!(md.contains(&format!(". {section}\n")), "{section}: {md}");
        assert!(
            html.contains(&format!(". {section}</h2>")),
            "{section}: {html}"
        );
    }
    assert!(html.starts_with("<!DOCTYPE html>"));

    // The same configuration, later: the same procedure (exit 0).
    for file in ["sop/SOP-IT-017.md", "sop/SOP-IT-017.html"] {
        let check = warden(dir, &["sop", "--check", file], None);
        assert_eq!(check.status.code(), Some(0), "{}", text(&check));
        assert!(
            text(&check).contains("the procedure is what"),
            "{}",
            text(&check)
        );
    }

    // A comment changes the file's hash, not the procedure.
    std::fs::write(dir.join("warden.toml"), format!("# reviewed\n{CONFIG}")).unwrap();
    let check = warden(dir, &["sop", "--check", "sop/SOP-IT-017.md"], None);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));

    // A changed rotation period: exit 1, the section and the lines named.
    std::fs::write(
        dir.join("warden.toml"),
        CONFIG.replace("rotate_every_days = 60", "rotate_every_days = 30"),
    )
    .unwrap();
    for file in ["sop/SOP-IT-017.md", "sop/SOP-IT-017.html"] {
        let check = warden(dir, &["sop", "--check", file], None);
        let said = text(&check);
        assert_eq!(check.status.code(), Some(1), "{said}");
        assert!(said.contains("1 section(s) differ"), "{said}");
        assert!(said.contains("§ 4. Schedule"), "{said}");
        assert!(
            said.lines()
                .any(|l| l.trim_start().starts_with('-') && l.contains("60 days")),
            "{said}"
        );
        assert!(
            said.lines()
                .any(|l| l.trim_start().starts_with('+') && l.contains("30 days")),
            "{said}"
        );
        assert!(said.contains("fix: regenerate it"), "{said}");
    }

    // Errors: exit 2, saying what is wrong.
    let missing = warden(dir, &["sop", "--check", "nothere.md"], None);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("nothere.md"), "{}", text(&missing));
    std::fs::write(dir.join("notes.md"), "# notes\n").unwrap();
    let notes = warden(dir, &["sop", "--check", "notes.md"], None);
    assert_eq!(notes.status.code(), Some(2), "{}", text(&notes));
    assert!(
        text(&notes).contains("holds no procedure"),
        "{}",
        text(&notes)
    );
    std::fs::write(
        dir.join("warden.toml"),
        &CONFIG[..CONFIG.find("[sop]").unwrap()],
    )
    .unwrap();
    let none = warden(dir, &["sop", "--out", "sop2"], None);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    assert!(
        text(&none).contains("has no [sop] section"),
        "{}",
        text(&none)
    );
    assert!(!dir.join("sop2").exists());
}
