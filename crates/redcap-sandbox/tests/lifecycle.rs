//! Token lifecycle, account controls, logging and persistence across restarts.

mod common;

use common::{GENERIC_403, Sandbox};
use reqwest::Method;
use serde_json::{Value, json};

fn log_rows(v: &Value) -> Vec<(String, String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["username"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
                r["details"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn regeneration_kills_the_old_token_at_once_and_is_logged() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    let old = sb
        .user_with_token(1, json!({"username": "svc", "api_export": 1}))
        .await;
    assert_eq!(sb.call(&old, "version", &[]).await.status, 200);
    let (s, v) = sb
        .admin(
            Method::POST,
            "/sandbox/projects/1/users/svc/token/regenerate",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let new = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["replaced"], old.as_str());
    assert_ne!(new, old);
    assert_eq!(new.len(), 32);
    assert!(
        new.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    );
    let dead = sb.call(&old, "version", &[]).await;
    dead.assert_error(403, GENERIC_403);
    // What a client makes of it.
    assert_eq!(
        redcap::classify(dead.status, &dead.body),
        Some(redcap::Refusal::InvalidToken)
    );
    assert_eq!(sb.call(&new, "version", &[]).await.status, 200);
    // REDCap's rows, with the full old token (§2.3).
    let log = sb.call(&admin, "log", &[("logtype", "user")]).await.json();
    let rows = log_rows(&log);
    assert!(
        rows.iter().any(|(u, a, d)| u == "site_admin"
            && a == "Manage/Design "
            && d.starts_with("Regenerate API token for user")
            && d.ends_with(&format!("Replaced token = {old}"))),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|(_, _, d)| d.starts_with("Create API token for user"))
    );
    // Deletion: the token is gone, the row carries it.
    let (s, v) = sb
        .admin(Method::DELETE, "/sandbox/projects/1/users/svc/token", None)
        .await;
    assert_eq!(s, 200, "{v}");
    sb.call(&new, "version", &[])
        .await
        .assert_error(403, GENERIC_403);
    let log = sb.call(&admin, "log", &[("logtype", "user")]).await.json();
    assert!(
        log_rows(&log)
            .iter()
            .any(|(_, _, d)| d.starts_with("Delete API token for user")
                && d.ends_with(&format!("Deleted token = {new}")))
    );
    // Creating twice is refused; a fresh one works.
    let (s, _) = sb
        .admin(Method::POST, "/sandbox/projects/1/users/svc/token", None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = sb
        .admin(Method::POST, "/sandbox/projects/1/users/svc/token", None)
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn admin_endpoints_need_the_secret() {
    let sb = Sandbox::start().await;
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/sandbox/projects", sb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(format!("{}/sandbox/projects", sb.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, v) = sb.admin(Method::GET, "/sandbox/projects", None).await;
    assert_eq!((s, v), (200, json!([])));
    let (s, v) = sb
        .admin(Method::POST, "/sandbox/projects/9/users/x/token", None)
        .await;
    assert_eq!(s, 404, "{v}");
}

#[tokio::test]
async fn suspension_expiry_and_admin_bypass() {
    let sb = Sandbox::start().await;
    sb.create_project().await;
    let (s, _) = sb
        .admin(
            Method::POST,
            "/sandbox/users",
            Some(json!({"username": "svc"})),
        )
        .await;
    assert_eq!(s, 200);
    let token = sb
        .user_with_token(1, json!({"username": "svc", "api_export": 1}))
        .await;
    // Suspended: generic 403, token kept.
    sb.admin(Method::POST, "/sandbox/users/svc/suspend", None)
        .await;
    sb.call(&token, "version", &[])
        .await
        .assert_error(403, GENERIC_403);
    sb.admin(Method::POST, "/sandbox/users/svc/unsuspend", None)
        .await;
    assert_eq!(sb.call(&token, "version", &[]).await.status, 200);
    // Expired project rights: 403 with the date.
    let (s, v) = sb
        .admin(
            Method::PUT,
            "/sandbox/projects/1/users/svc/expiration",
            Some(json!({"expiration": "2020-01-31"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    sb.call(&token, "version", &[])
        .await
        .assert_error(403, "You do not have API rights because your privileges have expired for this project as of 2020-01-31.");
    // Far-future expiry is fine.
    sb.admin(
        Method::PUT,
        "/sandbox/projects/1/users/svc/expiration",
        Some(json!({"expiration": "2999-01-01"})),
    )
    .await;
    assert_eq!(sb.call(&token, "version", &[]).await.status, 200);
    // Administrators ignore expiry.
    sb.admin(
        Method::PUT,
        "/sandbox/projects/1/users/svc/expiration",
        Some(json!({"expiration": "2020-01-31"})),
    )
    .await;
    sb.admin(
        Method::POST,
        "/sandbox/users",
        Some(json!({"username": "svc", "administrator": true})),
    )
    .await;
    assert_eq!(sb.call(&token, "version", &[]).await.status, 200);
    // Removing the user from the project kills the token.
    sb.admin(
        Method::POST,
        "/sandbox/users",
        Some(json!({"username": "svc"})),
    )
    .await;
    sb.admin(
        Method::PUT,
        "/sandbox/projects/1/users/svc/expiration",
        Some(json!({"expiration": null})),
    )
    .await;
    let admin_token = {
        let (_, v) = sb
            .admin(
                Method::GET,
                "/sandbox/projects/1/users/site_admin/token",
                None,
            )
            .await;
        v["token"].as_str().unwrap().to_owned()
    };
    let a = sb
        .call(
            &admin_token,
            "user",
            &[("action", "delete"), ("users[0]", "svc")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (200, "1"));
    sb.call(&token, "version", &[])
        .await
        .assert_error(403, GENERIC_403);
}

#[tokio::test]
async fn export_logging_rows_and_filters() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "age": "5"}]),
        &[],
    )
    .await;
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "age": "6"}]),
        &[],
    )
    .await;
    sb.call(&admin, "record", &[]).await;
    let all = sb.call(&admin, "log", &[]).await.json();
    let rows = all.as_array().unwrap();
    // Newest first; minute-precision timestamps; the log export is not in
    // its own answer.
    assert_eq!(rows[0]["action"], "Data export (API) ");
    assert_eq!(rows[0]["details"], "export_format: JSON, rawOrLabel: raw");
    for r in rows {
        let ts = r["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), 16, "{ts}");
        assert_eq!(&ts[10..11], " ");
        assert_eq!(
            r.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["timestamp", "username", "action", "details", "record"]
        );
    }
    assert!(rows.iter().any(|r| r["action"] == "Create record (API) 1"
        && r["record"] == "1"
        && r["details"].as_str().unwrap().contains("age = '5'")));
    assert!(
        rows.iter()
            .any(|r| r["action"] == "Update record (API) 1" && r["details"] == "age = '6'")
    );
    assert!(
        rows.iter()
            .any(|r| r["action"] == "Manage/Design " && r["details"] == "Create project (API)")
    );
    assert!(
        rows.iter()
            .any(|r| r["details"] == "Upload data dictionary (API)")
    );
    // The previous log export logged itself afterwards.
    let again = sb
        .call(&admin, "log", &[("logtype", "manage")])
        .await
        .json();
    assert_eq!(again[0]["details"], "Export Logging (API)");
    // Filters.
    let adds = sb
        .call(&admin, "log", &[("logtype", "record_add")])
        .await
        .json();
    assert_eq!(adds.as_array().unwrap().len(), 1);
    let by_record = sb
        .call(&admin, "log", &[("logtype", "record"), ("record", "1")])
        .await
        .json();
    assert_eq!(by_record.as_array().unwrap().len(), 2);
    let nobody = sb
        .call(&admin, "log", &[("user", "someone_else")])
        .await
        .json();
    assert_eq!(nobody, json!([]));
    let future = sb
        .call(&admin, "log", &[("beginTime", "2999-01-01 00:00")])
        .await
        .json();
    assert_eq!(future, json!([]));
    let past = sb
        .call(&admin, "log", &[("endTime", "2000-01-01 00:00")])
        .await
        .json();
    assert_eq!(past, json!([]));
    // Page views: one per request, including refused ones.
    let before = sb
        .call(&admin, "log", &[("logtype", "page_view")])
        .await
        .json()
        .as_array()
        .unwrap()
        .len();
    sb.call(&admin, "nonsense", &[]).await;
    let after = sb
        .call(&admin, "log", &[("logtype", "page_view")])
        .await
        .json();
    assert_eq!(after.as_array().unwrap().len(), before + 2);
    assert_eq!(after[0]["action"], "Page View");
    assert!(
        after[0]["details"]
            .as_str()
            .unwrap()
            .starts_with("Page accessed: http://127.0.0.1:")
    );
    // CSV header when empty.
    let a = sb
        .post(&[
            ("token", &admin),
            ("content", "log"),
            ("format", "csv"),
            ("user", "nobody"),
        ])
        .await;
    // The bare header, no line break (`API/log/export.php`).
    assert_eq!(a.body, "timestamp,username,action,details,record");
}

#[tokio::test]
async fn state_survives_a_restart() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    sb.import(
        &admin,
        "dag",
        json!([{"data_access_group_name": "Site A", "unique_group_name": ""}]),
        &[("action", "import")],
    )
    .await;
    sb.import(
        &admin,
        "record",
        json!([{"record_id": "1", "name": "Ann", "redcap_data_access_group": "site_a"}]),
        &[],
    )
    .await;
    let svc = sb
        .user_with_token(1, json!({"username": "svc", "api_export": 1, "data_access_group": "site_a", "forms_export": {"demographics": 1}}))
        .await;
    let (_, v) = sb
        .admin(
            Method::POST,
            "/sandbox/projects/1/users/svc/token/regenerate",
            None,
        )
        .await;
    let svc_new = v["token"].as_str().unwrap().to_owned();
    let users_before = sb.call(&admin, "user", &[]).await.json();
    let log_before = sb.call(&admin, "log", &[]).await.json();

    let sb = sb.restart().await;
    assert_eq!(sb.call(&admin, "user", &[]).await.json(), users_before);
    let records = sb
        .call(&svc_new, "record", &[("fields", "record_id,name")])
        .await
        .json();
    assert_eq!(records, json!([{"record_id": "1", "name": "Ann"}]));
    sb.call(&svc, "version", &[])
        .await
        .assert_error(403, GENERIC_403);
    let log_after = sb.call(&admin, "log", &[]).await.json();
    // Everything logged before is still there, below the rows written since
    // (Export Logging before the restart, Export Users and the svc export after).
    let after = log_after.as_array().unwrap();
    let before = log_before.as_array().unwrap();
    assert_eq!(after.len(), before.len() + 3);
    assert_eq!(&after[3..], before.as_slice());
    // The super token still works, and new projects get fresh ids.
    let token = sb.create_project().await;
    assert_eq!(
        sb.call(&token, "project", &[]).await.json()["project_id"],
        2
    );
}

#[tokio::test]
async fn rate_limiter_bans_an_ip_for_good() {
    let sb = Sandbox::start_with(|c| c.page_hit_threshold = Some(3)).await;
    for _ in 0..3 {
        assert_eq!(sb.call(common::SUPER, "version", &[]).await.status, 200);
    }
    // The request that crosses the threshold still completes…
    assert_eq!(sb.call(common::SUPER, "version", &[]).await.status, 200);
    // …then the IP is banned, whatever the request.
    let a = sb.call("anything", "version", &[]).await;
    assert_eq!(a.status, 429);
    assert_eq!(
        a.body,
        "Your IP address (127.0.0.1) has been banned due to suspected abuse."
    );
    let (s, v) = sb.admin(Method::GET, "/sandbox/banned-ips", None).await;
    assert_eq!((s, v), (200, json!(["127.0.0.1"])));
    // The ban survives a restart; an admin lifts it.
    let sb = sb.restart().await;
    assert_eq!(sb.call(common::SUPER, "version", &[]).await.status, 429);
    let (s, _) = sb
        .admin(Method::DELETE, "/sandbox/banned-ips/127.0.0.1", None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(sb.call(common::SUPER, "version", &[]).await.status, 200);
}

#[tokio::test]
async fn rate_limiter_is_off_by_default() {
    let sb = Sandbox::start().await;
    for _ in 0..30 {
        assert_eq!(sb.call(common::SUPER, "version", &[]).await.status, 200);
    }
}

#[tokio::test]
async fn project_status_gates_design_and_imports() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    let (s, _) = sb
        .admin(
            Method::POST,
            "/sandbox/projects/1/status",
            Some(json!({"status": 1})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        sb.call(&admin, "project", &[]).await.json()["in_production"],
        1
    );
    sb.import(
        &admin,
        "metadata",
        json!([{"field_name": "record_id", "form_name": "f", "field_type": "text"}]),
        &[],
    )
    .await
    .assert_error(400, &redcap::ApiError::ProductionDesign.message());
    sb.admin(
        Method::POST,
        "/sandbox/projects/1/status",
        Some(json!({"status": 2})),
    )
    .await;
    sb.import(&admin, "record", json!([{"record_id": "1"}]), &[])
        .await
        .assert_error(
            403,
            "Data may not be imported because the project is in Analysis/Cleanup status.",
        );
}

#[tokio::test]
async fn api_switched_off_system_wide() {
    let sb = Sandbox::start().await;
    let token = sb.create_project().await;
    let (s, _) = sb
        .admin(
            Method::POST,
            "/sandbox/system",
            Some(json!({"api_enabled": false})),
        )
        .await;
    assert_eq!(s, 200);
    // Before the token is even looked at (§1.3 step 3).
    sb.call("bad", "version", &[])
        .await
        .assert_error(400, "The REDCap API is not enabled.");
    sb.call(&token, "version", &[])
        .await
        .assert_error(400, "The REDCap API is not enabled.");
    sb.admin(
        Method::POST,
        "/sandbox/system",
        Some(json!({"api_enabled": true})),
    )
    .await;
    assert_eq!(sb.call(&token, "version", &[]).await.status, 200);
}

/// Export Logging's CSV and XML as REDCap 15.7.6's `API/log/export.php`
/// writes them: XML values in CDATA (empty ones as `<x></x>`), CSV through
/// `arrayToCsv` (fputcsv quoting; a value starting with `=`, `-`, `+` or
/// `@` gets a tab before it), and no row as the bare header, no line break.
#[tokio::test]
async fn export_logging_shapes() {
    let sb = Sandbox::start().await;
    let admin = sb.create_project().await;
    sb.standard_metadata(&admin).await;
    let a = sb
        .import(
            &admin,
            "record",
            json!([{"record_id": "-7", "age": "5"}]),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let log = |params: Vec<(&'static str, &'static str)>| {
        let sb = &sb;
        let admin = admin.clone();
        async move {
            let mut p = vec![("token", admin.as_str()), ("content", "log")];
            p.extend(params);
            let a = sb.post(&p).await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        }
    };
    let xml = log(vec![("format", "xml"), ("logtype", "record")]).await;
    assert!(
        xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<logs>\n<log><timestamp><![CDATA["
        ),
        "{xml}"
    );
    assert!(
        xml.contains("<action><![CDATA[Create record (API) -7]]></action>"),
        "{xml}"
    );
    assert!(xml.ends_with("</log>\n</logs>\n"), "{xml}");
    let manage = log(vec![("format", "xml"), ("logtype", "manage")]).await;
    assert!(manage.contains("<record></record>"), "{manage}");
    let csv = log(vec![("format", "csv"), ("logtype", "record")]).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,username,action,details,record")
    );
    let row = lines.next().unwrap();
    assert!(row.ends_with(",\"\t-7\""), "{csv}");
    assert!(row.contains(",\"Create record (API) -7\","), "{csv}");
    assert_eq!(
        log(vec![("format", "csv"), ("user", "nobody")]).await,
        "timestamp,username,action,details,record"
    );
}
