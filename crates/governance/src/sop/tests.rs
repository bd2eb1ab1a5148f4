//! The SOP from a sample configuration: every required section, the same
//! procedure for the same configuration, a changed rotation period caught
//! and named, and HTML that reaches for nothing outside itself.

use std::path::Path;

use warden_config::LoadedConfig;

use super::{SopError, build, compare, html, markdown, stale};

const CONFIG: &str = r#"
[redcap]
url = "https://redcap.example.org/api/"
time_zone = "Europe/Berlin"

[[study]]
name = "heart2"
project_id = 14
rights_manager = "heart2-rights"
[[study.site]]
name = "site-a"
dag_id = 3

[[account]]
name = "heart2-rights"
username = "svc_heart_rights"
secret = "redcap/heart2/rights"
study = "heart2"

[[account]]
name = "heart2-site-a"
username = "svc_heart_site_a"
secret = "redcap/heart2/site-a"
study = "heart2"
site = "site-a"
profile = "site-data-read"
rotate_every_days = 60

[rotation]
after_switch = ["/usr/local/bin/redeploy", "{account}"]

[sop]
document_id = "SOP-IT-017"
version = "1.1"
owner = { name = "Research IT", deputy = "A. Smith" }
approver = { name = "Head of Data Management", deputy = "B. Jones" }
operator = { name = "J. Doe", deputy = "C. Brown" }
redcap_admin = { name = "REDCap team", deputy = "D. Green", contact = "redcap-admin@example.org" }
[[sop.revision]]
version = "1.0"
date = "2026-11-01"
author = "J. Doe"
change = "first issue"
[[sop.revision]]
version = "1.1"
date = "2026-12-01"
author = "J. Doe"
change = "site A every 60 days"
"#;

fn loaded(text: &str) -> LoadedConfig {
    use sha2::Digest;
    let config = warden_config::parse(text, Path::new("warden.toml")).expect("the sample parses");
    LoadedConfig {
        path: "warden.toml".into(),
        config,
        text: text.into(),
        sha256: hex::encode(sha2::Sha256::digest(text.as_bytes())),
    }
}

#[test]
fn the_sample_renders_every_required_section() {
    let l = loaded(CONFIG);
    let doc = build(&l, "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let md = markdown::render(&doc);
    for want in [
        // header and document control
        "SOP-IT-017",
        "| Version | 1.1 |",
        &l.sha256,
        "redcap-warden 9.9.9",
        "| 1.0 | 2026-11-01 | J. Doe | first issue |",
        "| 1.1 | 2026-12-01 | J. Doe | site A every 60 days |",
        // roles with deputies, the REDCap administrator included
        "| REDCap administrator | REDCap team | D. Green | redcap-admin@example.org |",
        "| SOP owner | Research IT | A. Smith |",
        "| Rotation operator | J. Doe | C. Brown |",
        // schedule
        "| `heart2-site-a` | `svc_heart_site_a` | `heart2` (project 14) | site-a | 60 days |",
        "| `heart2-rights` | `svc_heart_rights` | `heart2` (project 14) | — (study-wide) | 90 days |",
        // routine and emergency rotation
        "## 5. Routine rotation",
        "redcap-warden rotate start ACCOUNT --reason \"scheduled (SOP-IT-017 §5)\"",
        "rotate resume ID",
        "rotate abort ID --reason R",
        "/usr/local/bin/redeploy {account}",
        "## 6. Emergency rotation",
        "--emergency",
        "accounts release ACCOUNT",
        // enrolment, retirement, re-authorisation
        "### Enrolment of a service account",
        "### Retirement of a service account",
        "## 8. Re-authorisation",
        // the REDCap UI steps the manual issuer prints
        "## 9. REDCap UI steps",
        "Control Center → API Tokens (https://redcap.example.org/ControlCenter/user_api_tokens.php); find user `svc_heart_site_a`, project 14.",
        // evidence
        "a `rotation` ledger entry",
        "`data/rotation/ID.journal`",
        "`redcap-warden secrets history SECRET`",
        "docs/ledger.md §2.3",
        // signatures
        "## 11. Signatures",
        "| Approved by | Head of Data Management |   |   |",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    let html = html::render(&doc);
    for want in [
        "<h2 id=\"signatures\">11. Signatures</h2>",
        "<code>svc_heart_site_a</code>",
        "D. Green",
    ] {
        assert!(html.contains(want), "missing {want:?} in\n{html}");
    }
}

#[test]
fn the_same_configuration_gives_the_same_procedure() {
    let l = loaded(CONFIG);
    let a = build(&l, "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    // Another time, another build, a comment added: the same procedure.
    let l2 = loaded(&format!("# reviewed 2026-12-08\n{CONFIG}"));
    let b = build(&l2, "9.9.10", "2027-01-01T00:00:00Z").unwrap();
    assert_eq!(a.procedure, b.procedure);
    assert_ne!(markdown::render(&a), markdown::render(&b));
    assert_eq!(
        compare(&markdown::render(&a), &b.procedure, "a.md").unwrap(),
        vec![]
    );
    assert_eq!(
        compare(&html::render(&a), &b.procedure, "a.html").unwrap(),
        vec![]
    );
    // Line endings and trailing blanks an editor may change do not count.
    let crlf = markdown::render(&a).replace('\n', " \r\n");
    assert_eq!(compare(&crlf, &b.procedure, "a.md").unwrap(), vec![]);
    assert!(
        stale(&l2, &markdown::render(&a), "approved.md")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_changed_rotation_period_is_caught_and_named() {
    let approved = build(&loaded(CONFIG), "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let changed = loaded(&CONFIG.replace("rotate_every_days = 60", "rotate_every_days = 30"));
    for written in [markdown::render(&approved), html::render(&approved)] {
        let d = stale(&changed, &written, "approved").unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].section, "4. Schedule");
        assert!(
            d[0].diff
                .iter()
                .any(|l| l.starts_with('-') && l.contains("60 days")),
            "{:?}",
            d[0].diff
        );
        assert!(
            d[0].diff
                .iter()
                .any(|l| l.starts_with('+') && l.contains("30 days")),
            "{:?}",
            d[0].diff
        );
        assert!(d[0].diff.len() < 12, "a short diff: {:?}", d[0].diff);
    }
    // A new deputy changes the roles and the signatures' table does not
    // name deputies: one section.
    let deputy = loaded(&CONFIG.replace("deputy = \"D. Green\"", "deputy = \"E. White\""));
    let d = stale(&deputy, &markdown::render(&approved), "approved.md").unwrap();
    let names: Vec<_> = d.iter().map(|d| d.section.as_str()).collect();
    assert!(names.contains(&"3. Roles and deputies"), "{names:?}");
}

#[test]
fn the_html_reaches_for_nothing_outside_itself() {
    let doc = build(&loaded(CONFIG), "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let html = html::render(&doc);
    // Every tag, attributes included: no address, no script, no import.
    let mut rest = html.as_str();
    let mut tags = 0;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("tags close") + start;
        let tag = rest[start..=end].to_ascii_lowercase();
        for bad in [
            "src=", "href=", "http:", "https:", "<script", "<link", "<img", "<iframe", "url(",
        ] {
            assert!(!tag.contains(bad), "{tag}");
        }
        tags += 1;
        rest = &rest[end + 1..];
    }
    assert!(tags > 50);
    let style = &html[html.find("<style>").unwrap()..html.find("</style>").unwrap()];
    assert!(
        !style.contains("@import") && !style.contains("url("),
        "{style}"
    );
    // The REDCap address is there, as text.
    assert!(
        html.contains("<code>https://redcap.example.org</code>"),
        "{html}"
    );
}

#[test]
fn a_file_without_a_procedure_and_a_config_without_sop_are_errors() {
    let doc = build(&loaded(CONFIG), "9.9.9", "t").unwrap();
    let e = compare("# notes\n", &doc.procedure, "notes.md").unwrap_err();
    assert!(matches!(e, SopError::NoProcedure { .. }), "{e}");
    assert!(e.to_string().contains("notes.md"));
    let no_sop = &CONFIG[..CONFIG.find("[sop]").unwrap()];
    let e = build(&loaded(no_sop), "9.9.9", "t").unwrap_err();
    assert!(e.to_string().contains("has no [sop] section"), "{e}");
}

#[test]
fn re_authorisation_is_described_from_the_accounts_and_a_change_is_caught() {
    let approved = build(&loaded(CONFIG), "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let text = markdown::render(&approved);
    assert!(text.contains("No account of this installation has re-authorisation configured"));
    let with = CONFIG.replace(
        "rotate_every_days = 60\n",
        "rotate_every_days = 60\nreauth_every_days = 90\nlapse_after_inactive_days = 30\napprovers = [\"ana@example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPL/2wWg/wiUYsiZA+ZAxr2xEVNNLfq+zXqLBJa7egEp ana\"]\n",
    );
    let now = build(&loaded(&with), "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let md = markdown::render(&now);
    for expected in [
        "every 90 days; lapses after 30 idle days",
        "ana@example.org",
        "ssh-keygen -Y sign -n redcap-warden-reauth",
        "redcap-warden reauth sweep",
    ] {
        assert!(md.contains(expected), "{expected}");
    }
    let d = stale(&loaded(&with), &text, "approved.md").unwrap();
    let names: Vec<_> = d.iter().map(|d| d.section.as_str()).collect();
    assert_eq!(names, ["4. Schedule", "8. Re-authorisation"], "{d:?}");
}

/// With a dual pair the SOP describes the dual procedure from the
/// configuration — the pair, the standby regenerated first while the active
/// member serves, the switch, the member that was active regenerated next,
/// both old tokens proved dead, ownership proof required (and a pair without
/// a log reader said to stop before done) — and the §9 steps say nothing is
/// held; a single-mode SOP says none of it, and `sop --check` of the
/// single-mode copy against the dual configuration names the sections.
#[test]
fn dual_mode_is_described_from_the_pairs_and_a_change_of_mode_is_caught() {
    let single = build(&loaded(CONFIG), "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let single_md = markdown::render(&single);
    assert!(!single_md.contains("Dual-account mode"), "{single_md}");
    assert!(!single_md.contains("standby"), "{single_md}");
    let dual_config = CONFIG.replace(
        "rotate_every_days = 60\n",
        "rotate_every_days = 60\nmode = \"dual\"\npartner = \"heart2-site-a2\"\n\n[[account]]\nname = \"heart2-site-a2\"\nusername = \"svc_heart_site_a2\"\nsecret = \"redcap/heart2/site-a2\"\nstudy = \"heart2\"\nsite = \"site-a\"\nprofile = \"site-data-read\"\nrotate_every_days = 60\nmode = \"dual\"\npartner = \"heart2-site-a\"\n",
    );
    let dual = loaded(&dual_config);
    let doc = build(&dual, "9.9.9", "2026-12-07T10:00:00Z").unwrap();
    let md = markdown::render(&doc);
    for expected in [
        "Dual-account mode",
        "`heart2-site-a` (REDCap user `svc_heart_site_a`)",
        "`heart2-site-a2` (REDCap user `svc_heart_site_a2`)",
        "**The standby first**",
        "while the active member keeps serving",
        "**The switch** (`switched`)",
        "**Then the member that was active**",
        "**both** old tokens get REDCap's invalid-token answer",
        "ownership of **both** new tokens was proved",
        "**none**: ownership cannot be proved",
        "nothing is held, the gateway keeps serving with the active member `heart2-site-a2`",
        "nothing is held, the gateway already serves with `heart2-site-a`",
    ] {
        assert!(md.contains(expected), "{expected}\n{md}");
    }
    // The same procedure for the same configuration.
    assert_eq!(doc.procedure, build(&dual, "1.0.0", "t").unwrap().procedure);
    // A log reader in the study: the pair's ownership can be proved.
    let with_reader = dual_config.replace(
        "rights_manager = \"heart2-rights\"\n",
        "rights_manager = \"heart2-rights\"\nlog_reader = \"heart2-rights\"\n",
    );
    let md = markdown::render(&build(&loaded(&with_reader), "9.9.9", "t").unwrap());
    assert!(
        md.contains("`heart2-rights`: ownership can be proved"),
        "{md}"
    );
    assert!(!md.contains("**none**: ownership cannot be proved"), "{md}");
    // The approved single-mode copy is stale against the dual configuration
    // (and the other way round), the sections named.
    let d = stale(&dual, &single_md, "approved.md").unwrap();
    let names: Vec<_> = d.iter().map(|d| d.section.as_str()).collect();
    assert!(names.contains(&"5. Routine rotation"), "{names:?}");
    assert!(names.contains(&"9. REDCap UI steps"), "{names:?}");
    let d = stale(&loaded(CONFIG), &markdown::render(&doc), "approved.md").unwrap();
    let names: Vec<_> = d.iter().map(|d| d.section.as_str()).collect();
    assert!(names.contains(&"5. Routine rotation"), "{names:?}");
}
