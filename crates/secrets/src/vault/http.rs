//! The HTTP side of the Vault backend: one client, authentication (token or
//! AppRole, re-logging in once when an AppRole token has expired), the
//! namespace header, and turning every failure into one line that names the
//! store and says what to do.
//!
//! Response bodies are held in zeroized buffers, because a KV read carries
//! the secret value. Request bodies and the HTTP stack's own buffers are not
//! under our control; they live only as long as the request.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::{Result, SecretValue, StoreError};

/// Where an authentication credential comes from. warden.toml names a file
/// or an environment variable; the credential itself is never in it.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// A file holding the credential (one line; surrounding white space is
    /// ignored). Refused when other users may read it.
    File(PathBuf),
    /// The name of an environment variable holding the credential.
    Env(String),
    /// The credential itself (for programs that obtained it elsewhere).
    Value(SecretValue),
}

impl CredentialSource {
    fn describe(&self, what: &str) -> String {
        match self {
            CredentialSource::File(p) => format!("the {what} file {}", p.display()),
            CredentialSource::Env(v) => format!("the {what} from environment variable {v}"),
            CredentialSource::Value(_) => format!("the {what} given by the caller"),
        }
    }

    /// Reads the credential; `what` names it in errors ("Vault token").
    pub fn read(&self, store: &str, what: &str) -> Result<SecretValue> {
        let err = |detail: String, fix: String| StoreError::Credential {
            store: store.to_string(),
            what: self.describe(what),
            detail,
            fix,
        };
        let value = match self {
            CredentialSource::Value(v) => v.expose().to_string(),
            CredentialSource::Env(name) => std::env::var(name).map_err(|_| {
                err(
                    "the variable is not set or not UTF-8".into(),
                    format!("export {name} before running, or name another variable or a file in [secrets.vault]"),
                )
            })?,
            CredentialSource::File(path) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(path).map_err(|e| {
                    err(e.to_string(), "check the path in [secrets.vault]".into())
                })?;
                if meta.permissions().mode() & 0o007 != 0 {
                    return Err(err(
                        "any user on this machine can read it".into(),
                        format!("chmod o-rwx {}", path.display()),
                    ));
                }
                std::fs::read_to_string(path).map_err(|e| {
                    err(e.to_string(), "check the file's permissions".into())
                })?
            }
        };
        let value = Zeroizing::new(value);
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(err("it is empty".into(), format!("put the {what} there")));
        }
        Ok(SecretValue::new(trimmed.to_string()))
    }
}

/// How the store logs in to the server.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A Vault/OpenBao token.
    Token(CredentialSource),
    /// AppRole: a role id and a secret id, exchanged for a token at the
    /// AppRole auth mount (usually `approle`).
    AppRole {
        /// The AppRole auth mount's path, e.g. `approle`.
        mount: String,
        /// Where to read the role id.
        role_id: CredentialSource,
        /// Where to read the secret id.
        secret_id: CredentialSource,
    },
}

/// An answer from the server: status and the body (zeroized on drop).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

impl Answer {
    pub fn json<'a, T: Deserialize<'a>>(&'a self, http: &Http, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| StoreError::Backend {
            store: http.store.clone(),
            detail: format!(
                "unexpected answer to {what} (HTTP {}): {}",
                self.status,
                crate::error::json_error_position(&e)
            ),
            fix: "check that [secrets.vault] address points at OpenBao or Vault and mount at a KV version 2 engine".into(),
        })
    }

    /// The server's `errors` list, joined; never the body itself.
    fn errors(&self) -> String {
        #[derive(Deserialize)]
        struct Errors {
            #[serde(default)]
            errors: Vec<String>,
        }
        let text = serde_json::from_slice::<Errors>(&self.body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        text
    }
}

pub(crate) struct Http {
    client: reqwest::Client,
    /// `https://host:8200/v1/`
    base: String,
    namespace: Option<String>,
    auth: VaultAuth,
    pub store: String,
    /// The token in use; `None` until the first AppRole login.
    token: Mutex<Option<SecretValue>>,
}

impl Http {
    pub fn new(
        address: &str,
        namespace: Option<String>,
        ca_file: Option<&std::path::Path>,
        auth: VaultAuth,
        timeout: Duration,
        store: String,
    ) -> Result<Http> {
        let invalid = |detail: String| StoreError::InvalidRequest {
            store: store.clone(),
            detail,
        };
        let url = reqwest::Url::parse(address).map_err(|e| {
            invalid(format!(
                "address `{address}` is not a URL ({e}); fix: write e.g. https://vault.example.org:8200"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "address `{address}` must start with https:// (or http:// on loopback)"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout);
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| StoreError::Io {
                store: store.clone(),
                op: format!("reading the CA file {}", ca.display()),
                fix: "check [secrets.vault] ca_file".into(),
                source: e,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                invalid(format!(
                    "CA file {} holds no usable PEM certificate ({e}); fix: point ca_file at the CA certificate in PEM form",
                    ca.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| invalid(format!("cannot set up the HTTP client: {}", root_cause(&e))))?;
        let token = match &auth {
            VaultAuth::Token(source) => Some(source.read(&store, "Vault token")?),
            VaultAuth::AppRole { .. } => None,
        };
        Ok(Http {
            client,
            base: format!("{}/v1/", address.trim_end_matches('/')),
            namespace,
            auth,
            store,
            token: Mutex::new(token),
        })
    }

    /// One authenticated request. `path` is relative to `/v1/`.
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        let token = self.token().await?;
        let answer = self
            .send(method.clone(), path, body.clone(), Some(&token))
            .await?;
        if answer.status == 403 && matches!(self.auth, VaultAuth::AppRole { .. }) {
            // The AppRole token may have expired: log in again, once.
            *self.token.lock().await = None;
            let token = self.token().await?;
            return self.send(method, path, body, Some(&token)).await;
        }
        Ok(answer)
    }

    /// A request without a token (health, login).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&SecretValue>,
    ) -> Result<Answer> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t.expose());
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status().as_u16();
        let body = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| self.transport_error(&e))?
                .to_vec(),
        );
        let answer = Answer { status, body };
        if status == 503 && answer.errors().contains("sealed") {
            return Err(StoreError::Unreachable {
                store: self.store.clone(),
                detail: "the server is sealed".into(),
                fix: "unseal it (`bao operator unseal` or `vault operator unseal`), then retry"
                    .into(),
            });
        }
        Ok(answer)
    }

    async fn token(&self) -> Result<SecretValue> {
        let mut slot = self.token.lock().await;
        if let Some(t) = &*slot {
            return Ok(t.clone());
        }
        let VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &self.auth
        else {
            unreachable!("a token-auth store reads its token when it is opened")
        };
        let role_id = role_id.read(&self.store, "AppRole role_id")?;
        let secret_id = secret_id.read(&self.store, "AppRole secret_id")?;
        let body = serde_json::to_vec(&serde_json::json!({
            "role_id": role_id.expose(),
            "secret_id": secret_id.expose(),
        }))
        .expect("serialisable");
        let path = format!("auth/{mount}/login");
        let answer = self.send(Method::POST, &path, Some(body), None).await?;
        if answer.status != 200 {
            return Err(match answer.status {
                400 | 403 => StoreError::Denied {
                    store: self.store.clone(),
                    detail: format!("AppRole login at auth/{mount} refused: {}", answer.errors()),
                    fix: "check the role_id and secret_id sources in [secrets.vault]; a secret_id expires or runs out of uses, so issue a new one".into(),
                },
                _ => self.status_error(&path, &answer),
            });
        }
        #[derive(Deserialize)]
        struct Login {
            auth: LoginAuth,
        }
        #[derive(Deserialize)]
        struct LoginAuth {
            client_token: String,
        }
        let login: Login = answer.json(self, "the AppRole login")?;
        let token = SecretValue::new(login.auth.client_token);
        *slot = Some(token.clone());
        Ok(token)
    }

    fn transport_error(&self, e: &reqwest::Error) -> StoreError {
        let cause = root_cause(e);
        let detail = if e.is_timeout() {
            "no answer in time".to_string()
        } else if e.is_connect() {
            format!("cannot connect: {cause}")
        } else {
            cause.clone()
        };
        let tls = cause.to_lowercase().contains("certificate");
        StoreError::Unreachable {
            store: self.store.clone(),
            detail,
            fix: if tls {
                "point [secrets.vault] ca_file at the CA certificate that signed the server's certificate".into()
            } else {
                "check that the server is running and that [secrets.vault] address is right".into()
            },
        }
    }

    /// Any answer the caller did not expect, as one line.
    pub fn status_error(&self, path: &str, answer: &Answer) -> StoreError {
        let errors = answer.errors();
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!(": {errors}")
        };
        match answer.status {
            403 => StoreError::Denied {
                store: self.store.clone(),
                detail: format!("permission denied on {path}{errors}"),
                fix: match &self.auth {
                    VaultAuth::Token(_) => "check that the token is valid and unexpired and that its policy grants this path (docs/secrets.md lists the policy)",
                    VaultAuth::AppRole { .. } => "check that the AppRole's policies grant this path (docs/secrets.md lists the policy)",
                }
                .into(),
            },
            status => StoreError::Backend {
                store: self.store.clone(),
                detail: format!("HTTP {status} on {path}{errors}"),
                fix: if status == 404 {
                    "check [secrets.vault] mount (a KV version 2 engine) and namespace".into()
                } else {
                    "see the server's log; retry when it is healthy".into()
                },
            },
        }
    }
}

/// The innermost cause of an error: reqwest's own message only says
/// "error sending request", the cause says why.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
