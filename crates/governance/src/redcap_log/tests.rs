use jiff::tz::TimeZone;
use redcap::client::LogEntry;
use redcap::redact::Placeholder;
use secrets::FingerprintKey;

use super::*;

fn row(user: &str, action: &str, details: &str) -> LogEntry {
    LogEntry::new("2026-03-29 12:00", user, action, details, "", &Placeholder)
}

#[test]
fn the_fingerprint_mask_names_a_token_as_the_ledger_does() {
    let key = FingerprintKey::generate(1);
    let token = "0123456789ABCDEF0123456789ABCDEF";
    let row = LogEntry::new(
        "2026-03-29 12:00",
        "site_admin",
        "Manage/Design ",
        &format!("Regenerate API token for user (username = 'svc'); Replaced token = {token}"),
        "",
        &FingerprintMask(&key),
    );
    let fp = key.fingerprint_bytes(token.as_bytes());
    assert!(row.details().ends_with(&fp.0), "{}", row.details());
    assert!(!row.details().contains(token));
    assert!(!format!("{row:?}").contains(token));
}

#[test]
fn a_local_minute_has_one_utc_reading_or_two_at_a_change() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let one = utc_candidates("2026-07-01 12:00", &berlin).unwrap();
    assert_eq!(one, vec!["2026-07-01T10:00:00Z".parse().unwrap()]);
    // 2026-03-29 02:30 never happened in Berlin (clocks jumped 02:00 → 03:00).
    let gap = utc_candidates("2026-03-29 02:30", &berlin).unwrap();
    assert_eq!(
        gap,
        vec![
            "2026-03-29T00:30:00Z".parse().unwrap(),
            "2026-03-29T01:30:00Z".parse().unwrap()
        ]
    );
    // 2026-10-25 02:30 happened twice (clocks went back 03:00 → 02:00).
    let fold = utc_candidates("2026-10-25 02:30", &berlin).unwrap();
    assert_eq!(
        fold,
        vec![
            "2026-10-25T00:30:00Z".parse().unwrap(),
            "2026-10-25T01:30:00Z".parse().unwrap()
        ]
    );
    assert_eq!(
        local_minute("2026-10-25T01:30:59Z".parse().unwrap(), &berlin),
        "2026-10-25 02:30"
    );
    for bad in ["", "2026-13-01 00:00", "yesterday", "2026-01-01T00:00"] {
        assert!(utc_candidates(bad, &berlin).is_err(), "{bad}");
    }
}

#[test]
fn rows_are_sorted_by_how_redcap_was_used() {
    let api = "/redcap/api/";
    let pv = |page: &str| row("svc", "Page View", &format!("Page accessed: {page}"));
    assert_eq!(
        activity(&pv("https://redcap.example.org/redcap/api/"), api),
        Activity::ApiCall
    );
    assert_eq!(
        activity(&pv("https://redcap.example.org/redcap/api/index.php"), api),
        Activity::ApiCall
    );
    assert!(matches!(
        activity(
            &pv("https://redcap.example.org/redcap/redcap_v15.7.6/index.php?pid=3"),
            api
        ),
        Activity::UiPage { .. }
    ));
    assert_eq!(
        activity(&row("svc", "Manage/Design ", "Export users (API)"), api),
        Activity::ApiEvent
    );
    assert_eq!(
        activity(&row("svc", "Data export (API) ", "fields"), api),
        Activity::ApiEvent
    );
    assert_eq!(
        activity(
            &row("svc", "Manage/Design ", "Export users (API Playground)"),
            api
        ),
        Activity::Playground
    );
    assert_eq!(
        activity(&row("svc", "Update record 3", "age = '61'"), api),
        Activity::UiEvent
    );
    assert_eq!(api_path("https://redcap.example.org/redcap/api/"), api);
}

#[test]
fn token_events_name_whose_token_it_was() {
    let regen = row(
        "site_admin",
        "Manage/Design ",
        "Regenerate API token for user (username = 'svc_a'); Replaced token = [token]",
    );
    assert_eq!(
        token_event(&regen),
        Some(("svc_a".into(), TokenEvent::Regenerated))
    );
    let own = row(
        "svc_b",
        "Manage/Design ",
        "User delete own API token; Deleted token = [token]",
    );
    assert_eq!(
        token_event(&own),
        Some(("svc_b".into(), TokenEvent::Deleted))
    );
    let viewed = row(
        "site_admin",
        "Manage/Design ",
        "View API token of another user (username = 'svc_c')",
    );
    assert_eq!(
        token_event(&viewed),
        Some(("svc_c".into(), TokenEvent::Viewed))
    );
    let created = row(
        "site_admin",
        "Manage/Design ",
        "Create API token for user (username = 'svc_a')",
    );
    assert_eq!(token_event(&created), None);
}

#[test]
fn access_changes_are_told_from_exports() {
    assert_eq!(
        rights_change(&row("admin", "Add user svc", "user = 'svc'")),
        Some("rights")
    );
    assert_eq!(
        rights_change(&row("svc_rights", "Manage/Design ", "Import users (API)")),
        Some("rights")
    );
    assert_eq!(
        rights_change(&row(
            "admin",
            "Manage/Design ",
            "Rename data access group (group = 'A')"
        )),
        Some("dag")
    );
    assert_eq!(
        rights_change(&row("svc_rights", "Manage/Design ", "Export users (API)")),
        None
    );
    assert_eq!(
        rights_change(&row("svc", "Delete record (API) 3", "record_id = '3'")),
        None
    );
}
