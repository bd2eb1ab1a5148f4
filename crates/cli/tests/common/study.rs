//! A study in redcap-sandbox governed by an installation: a site account
//! bound to its DAG, a rights manager and a log reader, their tokens in
//! the store, and a client `app` of the site account (reconcile, trace).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::sandbox::{SUPER, Sandbox};
use super::{add_config, free_port, init, issue_key, put_secrets, text, warden};

/// Waits for the start of the next minute and returns it (RFC 3339, UTC):
/// REDCap's log has minute precision, so the window starts after the
/// setup's own rows.
pub fn next_minute() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let next = (now.as_secs() / 60 + 1) * 60;
    std::thread::sleep(Duration::from_secs(next - now.as_secs()) + Duration::from_millis(200));
    jiff::Timestamp::from_second(next as i64)
        .unwrap()
        .to_string()
}

/// A study in the sandbox (site account, rights manager, log reader) and
/// an installation governing it, with `extra` appended to warden.toml.
pub struct Study {
    pub _tmp: tempfile::TempDir,
    pub dir: std::path::PathBuf,
    pub s: Sandbox,
    pub pid: u64,
    pub site: String,
    pub tokens: Vec<String>,
    pub key: String,
    pub port: u16,
}

pub fn study(extra: &str) -> Study {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    std::fs::create_dir(&dir).unwrap();
    let s = Sandbox::start(&tmp.path().join("sandbox"));
    let md = json!([
        {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "ID"},
        {"field_name": "age", "form_name": "demographics", "field_type": "text", "field_label": "Age"}
    ]);
    let (owner, pid) = s.project(Some(md));
    let (unique, dag_id) = s.dag(&owner, "Site A");
    s.api(&[
        ("token", &owner),
        ("content", "record"),
        ("format", "json"),
        (
            "data",
            &json!([{"record_id": "1", "age": "61", "redcap_data_access_group": unique}])
                .to_string(),
        ),
    ]);
    let site = s.user(
        pid,
        json!({"username": "svc_site_a", "expiration": "2099-12-31", "data_access_group": unique,
            "api_export": 1, "api_import": 1, "record_create": 1,
            "forms": {"demographics": 1}, "forms_export": {"demographics": 1}}),
    );
    let manager = s.user(
        pid,
        json!({"username": "svc_rights", "expiration": "2099-12-31",
            "api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1}),
    );
    let reader = s.user(
        pid,
        json!({"username": "svc_log", "expiration": "2099-12-31",
            "api_export": 1, "logging": 1, "forms_export": {"demographics": 2}}),
    );
    let tokens = vec![
        site.clone(),
        manager.clone(),
        reader.clone(),
        owner.clone(),
        SUPER.to_string(),
    ];

    init(&dir, &s.api_url);
    let (port, admin) = (free_port(), free_port());
    add_config(
        &dir,
        &format!(
            r#"
[gateway]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"

[[study]]
name = "heart"
project_id = {pid}
rights_manager = "heart-rights"
log_reader = "heart-log"

[[study.site]]
name = "site-a"
dag_id = {dag_id}

[[account]]
name = "heart-site-a"
username = "svc_site_a"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-import"

[[account]]
name = "heart-rights"
username = "svc_rights"
secret = "redcap/heart/rights"
study = "heart"
profile = "rights-manager"

[[account]]
name = "heart-log"
username = "svc_log"
secret = "redcap/heart/log"
study = "heart"
profile = "log-reader"

[[client]]
name = "app"
account = "heart-site-a"
allow = ["record:export", "metadata"]
{extra}"#
        ),
    );
    let check = warden(&dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    put_secrets(
        &dir,
        &[
            ("redcap/heart/site-a", site.as_str()),
            ("redcap/heart/rights", manager.as_str()),
            ("redcap/heart/log", reader.as_str()),
        ],
    );
    let key = issue_key(&dir, "app");
    Study {
        _tmp: tmp,
        dir,
        s,
        pid,
        site,
        tokens,
        key,
        port,
    }
}
