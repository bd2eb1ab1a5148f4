//! Test harness: a sandbox on 127.0.0.1:0 in this process, with helpers for
//! API and admin calls.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use redcap_sandbox::{Config, Server};
use serde_json::{Value, json};

pub const SUPER: &str = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";
pub const SECRET: &str = "test-admin-secret";
pub const GENERIC_403: &str = "You do not have permissions to use the API";

pub struct Sandbox {
    pub server: Option<Server>,
    pub api: String,
    pub base: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    client: reqwest::Client,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// Asserts a JSON error answer.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.json(),
            json!({ "error": message }),
            "body: {}",
            self.body
        );
    }
}

impl Sandbox {
    pub async fn start() -> Sandbox {
        Sandbox::start_with(|_| {}).await
    }

    /// Starts with a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut sb = Sandbox::start_configured(&dir, tweak).await;
        sb._tmp = Some(tmp);
        sb
    }

    pub async fn start_in(dir: &Path) -> Sandbox {
        Sandbox::start_configured(dir, |_| {}).await
    }

    async fn start_configured(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Sandbox {
        let mut config = Config::for_tests(dir.to_owned());
        config.super_token = Some(SUPER.into());
        config.admin_secret = Some(SECRET.into());
        tweak(&mut config);
        let server = Server::start(config).await.unwrap();
        Sandbox {
            api: server.api_url.clone(),
            base: format!("http://{}", server.addr),
            server: Some(server),
            dir: dir.to_owned(),
            _tmp: None,
            client: reqwest::Client::new(),
        }
    }

    /// Stops the server and starts a new one on the same directory.
    pub async fn restart(mut self) -> Sandbox {
        let tmp = self._tmp.take();
        self.server.take().unwrap().stop().await.unwrap();
        let mut sb = Sandbox::start_in(&self.dir).await;
        sb._tmp = tmp;
        sb
    }

    /// POSTs a form body.
    pub async fn post(&self, params: &[(&str, &str)]) -> Answer {
        let resp = self
            .client
            .post(&self.api)
            .form(params)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// POSTs a form body and keeps the answer as bytes, with its headers.
    pub async fn post_bytes(&self, params: &[(&str, &str)]) -> BytesAnswer {
        let resp = self
            .client
            .post(&self.api)
            .form(params)
            .send()
            .await
            .unwrap();
        bytes_answer(resp).await
    }

    /// POSTs a multipart body: `params` as text parts, plus a file part
    /// named `file` (file name, declared type, bytes) when given.
    pub async fn post_multipart(
        &self,
        params: &[(&str, &str)],
        file: Option<(&str, Option<&str>, Vec<u8>)>,
    ) -> Answer {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in params {
            form = form.text(k.to_string(), v.to_string());
        }
        if let Some((name, mime, bytes)) = file {
            let mut part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
            if let Some(m) = mime {
                part = part.mime_str(m).unwrap();
            }
            form = form.part("file", part);
        }
        let resp = self
            .client
            .post(&self.api)
            .multipart(form)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// POSTs a JSON-format call with `token` and `content` plus extras.
    pub async fn call(&self, token: &str, content: &str, extra: &[(&str, &str)]) -> Answer {
        let mut params = vec![("token", token), ("content", content), ("format", "json")];
        params.extend_from_slice(extra);
        self.post(&params).await
    }

    /// Imports JSON `data`.
    pub async fn import(
        &self,
        token: &str,
        content: &str,
        data: Value,
        extra: &[(&str, &str)],
    ) -> Answer {
        let data = data.to_string();
        let mut params = vec![("data", data.as_str())];
        params.extend_from_slice(extra);
        self.call(token, content, &params).await
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(SECRET);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a project with the super token; returns the creator's token.
    pub async fn create_project(&self) -> String {
        let a = self
            .import(
                SUPER,
                "project",
                json!([{"project_title": "Trial", "purpose": 2}]),
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body.len(), 32, "{}", a.body);
        a.body
    }

    /// Adds a user through the admin endpoint and gives them a token.
    pub async fn user_with_token(&self, pid: u64, row: Value) -> String {
        let username = row["username"].as_str().unwrap().to_owned();
        let (s, v) = self
            .admin(
                reqwest::Method::POST,
                &format!("/sandbox/projects/{pid}/users"),
                Some(row),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = self
            .admin(
                reqwest::Method::POST,
                &format!("/sandbox/projects/{pid}/users/{username}/token"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_owned()
    }

    /// Imports a small data dictionary: record_id + name (identifier) on
    /// `demographics`, a checkbox on `visit`.
    pub async fn standard_metadata(&self, token: &str) {
        let md = json!([
            {"field_name": "record_id", "form_name": "demographics", "field_type": "text", "field_label": "Record ID"},
            {"field_name": "name", "form_name": "demographics", "field_type": "text", "field_label": "Name", "identifier": "y"},
            {"field_name": "age", "form_name": "demographics", "field_type": "text", "field_label": "Age", "text_validation_type_or_show_slider_number": "integer"},
            {"field_name": "symptoms", "form_name": "visit", "field_type": "checkbox", "field_label": "Symptoms", "select_choices_or_calculations": "1, Fever | 2, Cough"},
            {"field_name": "arm", "form_name": "visit", "field_type": "radio", "field_label": "Arm", "select_choices_or_calculations": "a, A | b, B"}
        ]);
        let a = self.import(token, "metadata", md, &[]).await;
        assert_eq!((a.status, a.body.as_str()), (200, "5"));
    }
}

/// An HTTP answer kept as bytes.
#[derive(Debug)]
pub struct BytesAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl BytesAnswer {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

async fn bytes_answer(resp: reqwest::Response) -> BytesAnswer {
    BytesAnswer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        bytes: resp.bytes().await.unwrap().to_vec(),
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    Answer {
        status,
        content_type,
        body: resp.text().await.unwrap(),
    }
}
