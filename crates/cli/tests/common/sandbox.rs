//! redcap-sandbox in this process, for the end-to-end tests that need a
//! REDCap: the API and the admin endpoints (what REDCap only does in its
//! UI: users, tokens), and a project with a data dictionary and DAGs.

use std::path::Path;

use redcap_sandbox::{Config as SandboxConfig, Server};
use serde_json::{Value, json};

/// The sandbox's super token (each test has a sandbox of its own).
pub const SUPER: &str = "CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12CD34";
/// The credential of the sandbox's admin endpoints.
pub const ADMIN: &str = "cli-tests-sandbox-admin-secret";

/// A running sandbox and a runtime to call it from synchronous tests.
pub struct Sandbox {
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `{base}/api/`.
    pub api_url: String,
    _server: Server,
}

impl Sandbox {
    /// A sandbox keeping its data under `dir`.
    pub fn start(dir: &Path) -> Sandbox {
        Sandbox::start_with(dir, |_| {})
    }

    /// A sandbox under `dir`, its configuration changed by `configure`
    /// first (a clock offset, say).
    pub fn start_with(dir: &Path, configure: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(async {
            let mut sc = SandboxConfig::for_tests(dir.to_path_buf());
            sc.super_token = Some(SUPER.into());
            sc.admin_secret = Some(ADMIN.into());
            configure(&mut sc);
            Server::start(sc).await.unwrap()
        });
        Sandbox {
            base: format!("http://{}", server.addr),
            api_url: server.api_url.clone(),
            http: reqwest::Client::new(),
            rt,
            _server: server,
        }
    }

    /// POSTs a form to `url`: status and body.
    pub fn post(&self, url: &str, params: &[(&str, &str)]) -> (u16, String) {
        self.rt.block_on(async {
            let r = self.http.post(url).form(params).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    /// Calls the API: status and body, whatever the status.
    pub fn call(&self, params: &[(&str, &str)]) -> (u16, String) {
        self.post(&format!("{}/api/", self.base), params)
    }

    /// Calls the API, which must answer 200: the body.
    pub fn api(&self, params: &[(&str, &str)]) -> String {
        let (status, body) = self.call(params);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Calls the API, which must answer 200 with JSON.
    pub fn json(&self, params: &[(&str, &str)]) -> Value {
        serde_json::from_str(&self.api(params)).unwrap()
    }

    /// POSTs to an admin endpoint, which must answer 200 with JSON.
    pub fn admin(&self, path: &str, body: Option<Value>) -> Value {
        self.admin_call(reqwest::Method::POST, path, body)
    }

    /// GETs an admin endpoint, which must answer 200 with JSON.
    pub fn admin_get(&self, path: &str) -> Value {
        self.admin_call(reqwest::Method::GET, path, None)
    }

    fn admin_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.rt.block_on(async {
            let mut req = self
                .http
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(ADMIN);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{path}: {v}");
            v
        })
    }

    /// Adds a user with `rights` (which name its `username`) to project
    /// `pid` and answers its new token.
    pub fn user(&self, pid: u64, rights: Value) -> String {
        let username = rights["username"].as_str().unwrap().to_string();
        self.admin(&format!("/sandbox/projects/{pid}/users"), Some(rights));
        let t = self.admin(
            &format!("/sandbox/projects/{pid}/users/{username}/token"),
            None,
        );
        t["token"].as_str().unwrap().to_string()
    }

    /// The user's token as REDCap holds it now.
    pub fn token(&self, pid: u64, user: &str) -> String {
        self.admin_get(&format!("/sandbox/projects/{pid}/users/{user}/token"))["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A project "Heart" created with the super token, with `metadata` as
    /// its data dictionary when given: its creator's token and its id.
    pub fn project(&self, metadata: Option<Value>) -> (String, u64) {
        let owner = self.api(&[
            ("token", SUPER),
            ("content", "project"),
            ("format", "json"),
            ("data", r#"[{"project_title":"Heart","purpose":2}]"#),
        ]);
        let pid = self.json(&[
            ("token", &owner),
            ("content", "project"),
            ("format", "json"),
        ])["project_id"]
            .as_u64()
            .unwrap();
        if let Some(md) = metadata {
            self.api(&[
                ("token", &owner),
                ("content", "metadata"),
                ("format", "json"),
                ("data", &md.to_string()),
            ]);
        }
        (owner, pid)
    }

    /// Creates the DAG `label` with `owner`'s token: its unique name and id.
    pub fn dag(&self, owner: &str, label: &str) -> (String, u64) {
        let data = json!([{"data_access_group_name": label, "unique_group_name": ""}]).to_string();
        self.api(&[
            ("token", owner),
            ("content", "dag"),
            ("action", "import"),
            ("format", "json"),
            ("data", &data),
        ]);
        let dags = self.json(&[("token", owner), ("content", "dag"), ("format", "json")]);
        let dag = dags
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["data_access_group_name"] == label)
            .expect("the DAG just made");
        (
            dag["unique_group_name"].as_str().unwrap().to_string(),
            dag["data_access_group_id"].as_u64().unwrap(),
        )
    }
}
