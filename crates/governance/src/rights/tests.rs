use serde_json::{Map, Value, json};

use super::*;

fn row(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn site_account() -> Governed {
    Governed {
        account: "heart-a".into(),
        username: "svc_a".into(),
        site: Some(("site-a".into(), 3)),
        profile: resolve("site-data-import", &[]).unwrap(),
    }
}

fn live(user: Value) -> LiveProject {
    LiveProject {
        users: vec![row(user)],
        roles: vec![],
        dags: vec![LiveDag {
            id: 3,
            unique_name: "site_a".into(),
        }],
    }
}

fn clean_user() -> Value {
    json!({"username": "svc_a", "expiration": "2027-06-30",
        "data_access_group": "site_a", "data_access_group_id": 3,
        "design": 0, "user_rights": 0, "api_export": 1, "api_import": 1,
        "record_create": 1, "mobile_app": 0,
        "forms": {"visit": 130, "consent": 129},
        "forms_export": {"visit": 3, "consent": 2}})
}

fn codes(f: &[Finding]) -> Vec<&str> {
    f.iter().map(|f| f.code).collect()
}

#[test]
fn a_user_within_the_profile_has_no_findings() {
    let f = check_account(&site_account(), &live(clean_user())).unwrap();
    assert_eq!(f, vec![]);
}

#[test]
fn both_form_encodings_compare_alike() {
    // Legacy 1 (view & edit) and 2 (read-only) are the bitmask 130 and 129.
    let mut legacy = clean_user();
    legacy["forms"] = json!({"visit": 1, "consent": 2});
    assert_eq!(
        check_account(&site_account(), &live(legacy)).unwrap(),
        vec![]
    );
    // CSV-cell form, bitmask 146: view & edit + delete exceeds view & edit.
    let mut delete = clean_user();
    delete["forms"] = json!("visit:146,consent:129");
    let f = check_account(&site_account(), &live(delete)).unwrap();
    assert_eq!(codes(&f), ["form-beyond-profile"]);
    assert_eq!(f[0].severity, Severity::Critical);
    // Legacy 3 (edit survey responses) exceeds view & edit.
    let mut responses = clean_user();
    responses["forms"] = json!({"visit": 3, "consent": 129});
    let f = check_account(&site_account(), &live(responses)).unwrap();
    assert_eq!(codes(&f), ["form-beyond-profile"]);
    assert!(
        f[0].detail.contains("view_edit_responses"),
        "{}",
        f[0].detail
    );
    // A read-only profile: legacy 1 on a form exceeds it, legacy 2 does not.
    let read = Governed {
        profile: resolve("site-data-read", &[]).unwrap(),
        ..site_account()
    };
    let mut u = clean_user();
    u["api_import"] = json!(0);
    u["record_create"] = json!(0);
    u["forms"] = json!({"visit": 1, "consent": 2});
    let f = check_account(&read, &live(u)).unwrap();
    assert_eq!(codes(&f), ["form-beyond-profile"]);
    assert!(f[0].detail.starts_with("forms visit = view_edit"));
}

#[test]
fn rights_beyond_the_profile_are_findings_with_their_severity() {
    let mut u = clean_user();
    u["design"] = json!(1);
    u["mobile_app"] = json!("1");
    u["logging"] = json!(1);
    u["forms_export"] = json!({"visit": 1, "consent": 2});
    let f = check_account(&site_account(), &live(u)).unwrap();
    let got: Vec<_> = f.iter().map(|f| (f.code, f.severity)).collect();
    assert_eq!(
        got,
        [
            ("right-beyond-profile", Severity::Critical),
            ("right-beyond-profile", Severity::Critical),
            ("right-beyond-profile", Severity::Warning),
            ("export-beyond-profile", Severity::Critical),
        ],
        "{f:#?}"
    );
    assert!(f[0].detail.starts_with("design = 1"));
    assert!(
        f.iter()
            .all(|f| !f.risk.is_empty() && !f.risk.contains('\n'))
    );
}

#[test]
fn user_rights_read_only_is_less_than_full() {
    let manager = Governed {
        account: "rm".into(),
        username: "svc_a".into(),
        site: None,
        profile: resolve("rights-manager", &[]).unwrap(),
    };
    let mut u = clean_user();
    u["user_rights"] = json!(2);
    u["api_import"] = json!(1);
    u["record_create"] = json!(0);
    u["forms"] = json!({});
    u["forms_export"] = json!({});
    assert_eq!(check_account(&manager, &live(u)).unwrap(), vec![]);
    let read_only = Governed {
        profile: Profile {
            grants: [("user_rights".to_string(), 2)].into(),
            ..manager.profile.clone()
        },
        ..manager
    };
    let mut u = clean_user();
    u["user_rights"] = json!(1);
    u["forms"] = json!({});
    u["forms_export"] = json!({});
    let f = rights_beyond(&read_only.profile, &row(u), None).unwrap();
    assert!(
        f.iter().any(|f| f.detail.starts_with("user_rights = 1")),
        "{f:?}"
    );
}

#[test]
fn dag_role_expiration_and_unknown_rights() {
    let mut u = clean_user();
    u["data_access_group"] = json!("");
    u["data_access_group_id"] = json!("");
    u["expiration"] = json!("");
    u["teleport"] = json!(1);
    let mut project = live(u);
    project.roles.push(("SVC_A".into(), "U-2119C4Y87T".into()));
    let f = check_account(&site_account(), &project).unwrap();
    assert_eq!(
        codes(&f),
        ["unknown-right", "in-role", "no-expiration", "no-dag"],
        "{f:#?}"
    );
    let mut u = clean_user();
    u["data_access_group"] = json!("site_b");
    u["data_access_group_id"] = json!(4);
    let f = check_account(&site_account(), &live(u)).unwrap();
    assert_eq!(codes(&f), ["wrong-dag"]);
    assert_eq!(f[0].severity, Severity::Critical);
    let f = check_account(&site_account(), &LiveProject::default()).unwrap();
    assert_eq!(codes(&f), ["not-in-project"]);
}

#[test]
fn ungoverned_api_and_rights_users_and_the_digest() {
    let mut project = live(clean_user());
    project
        .users
        .push(row(json!({"username": "someone", "api_export": "1"})));
    project
        .users
        .push(row(json!({"username": "web_only", "api_export": 0})));
    project.users.push(row(
        json!({"username": "coordinator", "api_modules": 1, "user_rights": 2, "data_access_groups": 1}),
    ));
    let f = ungoverned(&["svc_a"], &project);
    assert_eq!(
        codes(&f),
        [
            "ungoverned-api-access",
            "ungoverned-api-access",
            "ungoverned-rights-access"
        ]
    );
    assert_eq!(f[0].username, "someone");
    assert_eq!(
        f[1].detail,
        "api_modules with no [[account]] in warden.toml"
    );
    assert_eq!(
        f[2].detail,
        "user_rights, data_access_groups with no [[account]] in warden.toml"
    );
    assert_eq!(digest(&f).len(), 64);
    assert_ne!(digest(&f), digest(&[]));
}

#[test]
fn two_sites_with_one_token_or_one_user_are_found() {
    let key = secrets::FingerprintKey::generate(1);
    let one = key.fingerprint(&secrets::SecretValue::new(
        "0123456789ABCDEF0123456789ABCDEF".into(),
    ));
    let same = key.fingerprint(&secrets::SecretValue::new(
        "0123456789ABCDEF0123456789ABCDEF".into(),
    ));
    let other = key.fingerprint(&secrets::SecretValue::new(
        "FEDCBA9876543210FEDCBA9876543210".into(),
    ));
    let site = |account, site, fingerprint| SiteToken {
        account,
        username: "u",
        site,
        fingerprint,
    };
    let f = shared_tokens(&[
        site("a", "site-a", &one),
        site("c", "site-c", &other),
        site("b", "site-b", &same),
    ]);
    assert_eq!(codes(&f), ["shared-token"]);
    assert_eq!(f[0].account.as_deref(), Some("b"));
    assert!(f[0].detail.contains("`a` of site `site-a`"));
    assert!(f[0].detail.contains(&one.to_string()));
    let text = format!("{f:?}");
    assert!(!text.contains("0123456789ABCDEF"));
    assert_eq!(
        shared_tokens(&[site("a", "site-a", &one), site("c", "site-c", &other)]),
        vec![]
    );

    let b = Governed {
        account: "heart-b".into(),
        username: "SVC_A".into(),
        site: Some(("site-b".into(), 4)),
        ..site_account()
    };
    let f = shared_accounts(&[site_account(), b.clone()]);
    assert_eq!(codes(&f), ["shared-account"]);
    assert!(f[0].detail.contains("`heart-a` of site `site-a`"), "{f:?}");
    let same_site = Governed {
        site: Some(("site-a".into(), 3)),
        ..b
    };
    assert_eq!(shared_accounts(&[site_account(), same_site]), vec![]);
}

#[test]
fn a_renamed_dag_and_an_administrator() {
    let sites = [
        SiteBinding {
            name: "site-a".into(),
            dag_id: 3,
            dag_name: Some("site_a".into()),
        },
        SiteBinding {
            name: "site-z".into(),
            dag_id: 9,
            dag_name: Some("gone".into()),
        },
    ];
    let project = live(clean_user());
    assert_eq!(renamed_dags(&sites, &project), vec![]);
    let mut renamed = project.clone();
    renamed.dags[0].unique_name = "site_a_north".into();
    let f = renamed_dags(&sites, &renamed);
    assert_eq!(codes(&f), ["dag-renamed"]);
    assert_eq!(f[0].site.as_deref(), Some("site-a"));
    assert!(f[0].detail.contains("`site_a_north`, not `site_a`"));
    assert!(!f[0].fixed_by_apply());
    let a = administrator(&site_account(), "probe");
    assert_eq!(a.severity, Severity::Critical);
    assert!(!a.fixed_by_apply());
}

fn plan_of(user: Value, roles: Vec<(String, String)>) -> AccountPlan {
    let mut project = live(user);
    project.roles = roles;
    plan_account(
        &site_account(),
        &project,
        &["consent".into(), "visit".into(), "extra".into()],
        redcap::rights::FormRightsEncoding::Bitmask,
    )
    .unwrap()
}

#[test]
fn a_plan_lowers_to_the_profile_and_always_carries_the_dag() {
    // Within the profile: nothing to change.
    assert!(plan_of(clean_user(), vec![]).is_empty());
    let mut u = clean_user();
    u["design"] = json!(1);
    u["mobile_app"] = json!(1);
    u["api_import"] = json!(0); // below the profile: left as it is
    u["data_access_group"] = json!("");
    u["data_access_group_id"] = json!("");
    u["forms"] = json!({"visit": 154, "consent": 2});
    u["forms_export"] = json!({"visit": 1, "consent": 2});
    let p = plan_of(u, vec![("svc_a".into(), "U-2119C4Y87T".into())]);
    let shown: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        shown,
        [
            "role: U-2119C4Y87T -> (none)",
            "data_access_group: (none) -> site_a",
            "design: 1 -> 0",
            "mobile_app: 1 -> 0",
            "forms visit: view_edit_responses_delete -> view_edit",
            "forms_export visit: full_data_set -> remove_identifiers",
        ],
        "{p:#?}"
    );
    assert_eq!(p.role.as_deref(), Some("U-2119C4Y87T"));
    assert_eq!(p.row["data_access_group"], "site_a");
    assert_eq!(p.row["design"], 0);
    assert!(!p.row.contains_key("api_import"));
    // Complete maps, in the server's encoding.
    assert_eq!(
        p.row["forms"],
        json!({"consent": 129, "extra": 128, "visit": 130})
    );
    assert_eq!(
        p.row["forms_export"],
        json!({"consent": 2, "extra": 0, "visit": 3})
    );
    // An account already in its DAG keeps it in the row.
    let mut u = clean_user();
    u["design"] = json!(1);
    let p = plan_of(u, vec![]);
    assert_eq!(p.row["data_access_group"], "site_a");
    assert_eq!(p.changes.len(), 1);
    // A site whose DAG is gone cannot be planned for.
    let mut project = live(clean_user());
    project.dags.clear();
    assert_eq!(
        plan_account(
            &site_account(),
            &project,
            &[],
            redcap::rights::FormRightsEncoding::Legacy
        ),
        Err(PlanBlocked::SiteDagMissing {
            site: "site-a".into(),
            dag_id: 3
        })
    );
}

#[test]
fn the_file_repository_right_is_critical_on_a_site_account() {
    // REDCap's File Repository export serves any file of the project by its
    // doc_id, whatever the caller's DAG: the right undoes the site boundary.
    let mut u = clean_user();
    u["file_repository"] = json!(1);
    let f = check_account(&site_account(), &live(u)).unwrap();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].code, f[0].severity),
        ("right-beyond-profile", Severity::Critical)
    );
    assert!(f[0].risk.contains("File Repository"), "{}", f[0].risk);
}

#[test]
fn an_enrolment_row_gives_exactly_the_profile_with_the_dag() {
    let instruments = ["consent".to_string(), "visit".to_string()];
    let enc = redcap::rights::FormRightsEncoding::for_version(redcap::RedcapVersion::SPEC);
    // Not in the project: every grant, every instrument, the site's DAG.
    let empty = LiveProject {
        users: vec![],
        ..live(clean_user())
    };
    let p = enrolment_row(&site_account(), &empty, &instruments, enc).unwrap();
    assert_eq!(p.row["username"], "svc_a");
    assert_eq!(p.row["data_access_group"], "site_a");
    assert_eq!(p.row["api_export"], 1);
    assert_eq!(p.row["api_import"], 1);
    assert_eq!(p.row["record_create"], 1);
    assert!(
        p.row.get("design").is_none(),
        "absent means 0 for a new user"
    );
    let changes: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert!(
        changes.contains(&"data_access_group: (none) -> site_a".to_string()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"api_export: 0 -> 1".to_string()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"forms visit: no_access -> view_edit".to_string()),
        "{changes:?}"
    );
    // Applied, it leaves nothing to change and no finding.
    let u = clean_user();
    let mut within = u.clone();
    within["forms"] = json!({"visit": 130, "consent": 130});
    within["forms_export"] = json!({"visit": 3, "consent": 3});
    let p = enrolment_row(&site_account(), &live(within.clone()), &instruments, enc).unwrap();
    assert!(p.is_empty(), "{:?}", p.changes);
    assert_eq!(
        check_account(&site_account(), &live(within)).unwrap(),
        vec![]
    );
    // A member below and above the profile, in another DAG: raised, lowered
    // and moved, the DAG always in the row.
    let mut off = u;
    off["api_import"] = json!(0);
    off["design"] = json!(1);
    off["data_access_group"] = json!("");
    off["data_access_group_id"] = json!(null);
    let p = enrolment_row(&site_account(), &live(off), &instruments, enc).unwrap();
    let changes: Vec<String> = p.changes.iter().map(|c| c.to_string()).collect();
    assert!(
        changes.contains(&"api_import: 0 -> 1".to_string()),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"design: 1 -> 0".to_string()),
        "{changes:?}"
    );
    assert_eq!(p.row["data_access_group"], "site_a");
    // A site whose DAG is gone cannot be enrolled.
    let gone = LiveProject {
        dags: vec![],
        ..live(clean_user())
    };
    assert!(matches!(
        enrolment_row(&site_account(), &gone, &instruments, enc),
        Err(PlanBlocked::SiteDagMissing { .. })
    ));
}
