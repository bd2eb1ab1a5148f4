//! A site of a study on redcap-sandbox, for the rotation tests under load:
//! a project with a data dictionary, the DAG `Site A`, and the site's
//! service account — in single mode one REDCap user, in dual mode a pair
//! of users (`svc_site_a`, `svc_site_a_2`) in the same DAG with the same
//! rights — plus a log reader; an installation whose client `etl` names
//! `heart-site-a` (the pair's key in dual mode), the sandbox as rotation
//! issuer, and the gateway on free ports.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::sandbox::{ADMIN, Sandbox};
use super::{add_config, free_port, init, issue_key, put_secrets, text, warden};

/// The account clients name.
pub const ACCOUNT: &str = "heart-site-a";
/// The second member of the dual pair.
pub const PARTNER: &str = "heart-site-a-2";

/// A site ready to be served and rotated.
pub struct Site {
    pub tmp: tempfile::TempDir,
    pub sandbox: Sandbox,
    /// The installation (warden.toml, data/).
    pub dir: PathBuf,
    pub pid: u64,
    /// The gateway's client and admin ports.
    pub port: u16,
    pub admin: u16,
    /// Client `etl`'s key.
    pub key: String,
    /// Every REDCap user of the site's account(s).
    pub users: Vec<&'static str>,
    /// Every token the setup made (for the leak scan).
    pub tokens: Vec<String>,
}

/// Rights of a site account: export and import the site's records.
fn site_rights(user: &str, dag: &str) -> Value {
    json!({"username": user, "expiration": "2099-12-31", "data_access_group": dag,
        "api_export": 1, "api_import": 1, "record_create": 1,
        "forms": {"enrolment": 1}, "forms_export": {"enrolment": 1}})
}

impl Site {
    /// The site with one account (`dual` false) or a dual pair; `extra`
    /// is added to `warden.toml` (a `[rotation]` of the test's own, say;
    /// the sandbox issuer's otherwise).
    pub fn new(dual: bool, extra: Option<&str>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::start(&tmp.path().join("sandbox"));
        let metadata = json!([
            {"field_name": "record_id", "form_name": "enrolment", "field_type": "text", "field_label": "ID"},
            {"field_name": "age", "form_name": "enrolment", "field_type": "text", "field_label": "Age"}
        ]);
        let (owner, pid) = sandbox.project(Some(metadata));
        let (unique, dag_id) = sandbox.dag(&owner, "Site A");
        let users: Vec<&'static str> = if dual {
            vec!["svc_site_a", "svc_site_a_2"]
        } else {
            vec!["svc_site_a"]
        };
        let mut tokens = vec![owner.clone()];
        let mut secrets = Vec::new();
        for (user, secret) in users
            .iter()
            .zip(["redcap/heart/site-a", "redcap/heart/site-a-2"])
        {
            let t = sandbox.user(pid, site_rights(user, &unique));
            secrets.push((secret, t.clone()));
            tokens.push(t);
        }
        let log = sandbox.user(
            pid,
            json!({"username": "svc_log", "expiration": "2099-12-31", "api_export": 1, "logging": 1,
                "forms": {"enrolment": 0}, "forms_export": {"enrolment": 2}}),
        );
        tokens.push(log.clone());
        secrets.push(("redcap/heart/log", log));

        let dir = tmp.path().join("warden");
        std::fs::create_dir(&dir).unwrap();
        init(&dir, &format!("{}/api/", sandbox.base));
        let pairs: Vec<(&str, &str)> = secrets.iter().map(|(s, t)| (*s, t.as_str())).collect();
        put_secrets(&dir, &pairs);
        let secret_file = dir.join("sandbox-admin-secret");
        std::fs::write(&secret_file, format!("{ADMIN}\n")).unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (port, admin) = (free_port(), free_port());
        let mode = if dual {
            format!("mode = \"dual\"\npartner = \"{PARTNER}\"\n")
        } else {
            String::new()
        };
        let partner = if dual {
            format!(
                "\n[[account]]\nname = \"{PARTNER}\"\nusername = \"svc_site_a_2\"\nsecret = \"redcap/heart/site-a-2\"\nstudy = \"heart\"\nsite = \"site-a\"\nprofile = \"site-data-import\"\nmode = \"dual\"\npartner = \"{ACCOUNT}\"\n"
            )
        } else {
            String::new()
        };
        let rotation = extra.map_or_else(
            || {
                format!(
                    "\n[rotation]\nissuer = \"sandbox\"\nsandbox_url = \"{}\"\nsandbox_admin_secret_file = \"sandbox-admin-secret\"\n",
                    sandbox.base
                )
            },
            str::to_string,
        );
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
log_reader = "heart-log"

[[study.site]]
name = "site-a"
dag_id = {dag_id}

[[account]]
name = "heart-log"
username = "svc_log"
secret = "redcap/heart/log"
study = "heart"
profile = "log-reader"

[[account]]
name = "{ACCOUNT}"
username = "svc_site_a"
secret = "redcap/heart/site-a"
study = "heart"
site = "site-a"
profile = "site-data-import"
{mode}{partner}
[[client]]
name = "etl"
account = "{ACCOUNT}"
allow = ["record:export", "record:import", "version"]
write_reason = "optional"
{rotation}"#
            ),
        );
        let check = warden(&dir, &["config", "check"], None);
        assert!(check.status.success(), "{}", text(&check));
        let key = issue_key(&dir, "etl");
        Site {
            tmp,
            sandbox,
            dir,
            pid,
            port,
            admin,
            key,
            users,
            tokens,
        }
    }

    /// The token REDCap holds now for each of the site's users.
    pub fn live_tokens(&self) -> Vec<String> {
        self.users
            .iter()
            .map(|u| self.sandbox.token(self.pid, u))
            .collect()
    }

    /// Whether REDCap accepts `token`.
    pub fn works(&self, token: &str) -> bool {
        self.sandbox
            .call(&[("token", token), ("content", "version")])
            .0
            == 200
    }
}
