//! The async REDCap API client (feature `client`, on by default).
//!
//! [`Client`] knows the API URL, the HTTP connection pool, the retry policy
//! and the [`OutboundLimiter`] every call passes through. It runs the two
//! super-token methods itself ([`Client::version_with_super_token`],
//! [`Client::create_project`]); everything else goes through a
//! [`Project`], which pairs the client with one project [`Token`]:
//!
//! ```no_run
//! # async fn demo(token: redcap::Token) -> Result<(), redcap::client::Error> {
//! use redcap::client::{Client, RecordQuery};
//! let client = Client::new("https://redcap.example.org/api/")?;
//! let project = client.project(token);
//! let rows = project.export_records(&RecordQuery::default()).await?;
//! # Ok(()) }
//! ```
//!
//! The token travels only in the POST body. It is never part of a URL, an
//! error or a log line; an answer that happens to echo it is scrubbed before
//! it becomes an [`Error`]. Refusals are sorted by [`crate::classify`] into
//! the [`Error`] variants a caller acts on.
//!
//! Retries: only idempotent calls (exports), only on 408/500/502/503/504 and
//! transport errors, with exponential backoff ([`RetryPolicy`]). A 429 is an
//! IP ban (§9.1) and is never retried; imports and deletes are never
//! retried because a lost answer does not mean a lost write.

mod dags;
mod error;
mod file_repository;
mod files;
mod logging;
mod project;
mod records;
mod rows;
mod users;

use std::sync::Arc;
use std::time::Duration;

pub use dags::{Dag, DagAssignment, NewDag};
pub use error::Error;
pub use file_repository::{NewFolder, RepositoryEntry};
pub use files::{FileDownload, FileField, FileUpload};
pub use logging::{LogEntry, LogQuery, LogType};
pub use project::{ExportFieldName, Field, Instrument, NewProject, ProjectInfo};
pub use records::{
    EavRow, ImportOptions, ImportResult, OverwriteBehavior, RawOrLabel, RecordQuery, RecordType,
    ReturnContent,
};
pub use rows::{Row, decode_rows};
pub use users::{Role, RoleAssignment};

use crate::{Content, SuperToken, Token};

/// A `format` / `returnFormat` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `json`, the default: what the typed methods decode.
    #[default]
    Json,
    /// `csv`: comma-separated, a header row first.
    Csv,
    /// `xml`.
    Xml,
}

impl Format {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Xml => "xml",
        }
    }
}

/// Asked before every outbound request (each retry included). Share one
/// limiter between clients to keep all traffic from one IP under REDCap's
/// page-hit threshold (§9.1). Answering `false` refuses the call: the client
/// returns [`Error::Throttled`] without sending anything.
pub trait OutboundLimiter: Send + Sync {
    /// Waits for a slot; `false` means "do not send".
    fn acquire(&self) -> impl Future<Output = bool> + Send;
}

/// The limiter that never waits and never refuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLimiter;

impl OutboundLimiter for NoLimiter {
    async fn acquire(&self) -> bool {
        true
    }
}

impl<L: OutboundLimiter> OutboundLimiter for Arc<L> {
    fn acquire(&self) -> impl Future<Output = bool> + Send {
        L::acquire(self)
    }
}

/// How idempotent calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// One attempt only.
    pub const NEVER: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
    };

    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Statuses worth another attempt for an idempotent call (redcapAPI's list;
/// §9.1: never 429).
fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 500 | 502 | 503 | 504)
}

/// A successful answer (status 200, not an error body).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The `Content-Type` header, if any.
    pub content_type: String,
    /// The body as text.
    pub body: String,
}

/// The parameters of one API call, without the token.
///
/// Lists use PHP's array syntax (`records[0]=…`), as PyCap sends them.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    idempotent: bool,
}

impl Params {
    /// An export-shaped call of `content` (idempotent, may be retried).
    pub fn export(content: Content) -> Params {
        Params {
            pairs: vec![("content".into(), content.as_str().into())],
            idempotent: true,
        }
    }

    /// A call that changes state (never retried).
    pub fn write(content: Content) -> Params {
        Params {
            pairs: vec![("content".into(), content.as_str().into())],
            idempotent: false,
        }
    }

    /// Sets one parameter (appends; PHP keeps the last duplicate).
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Params {
        self.pairs.push((name.to_owned(), value.into()));
        self
    }

    /// Sets `name` when `value` is `Some`.
    pub fn set_opt(self, name: &str, value: Option<impl Into<String>>) -> Params {
        match value {
            Some(v) => self.set(name, v),
            None => self,
        }
    }

    /// Sends a list as `name[0]=…&name[1]=…`; nothing when empty.
    pub fn list<S: AsRef<str>>(mut self, name: &str, values: &[S]) -> Params {
        for (i, v) in values.iter().enumerate() {
            self.pairs
                .push((format!("{name}[{i}]"), v.as_ref().to_owned()));
        }
        self
    }

    /// A delete of the `content` items named in the list parameter `list`
    /// (`dags[]`, `users[]`, `roles[]`, `records[]`), answered as JSON.
    pub(crate) fn delete<S: AsRef<str>>(content: Content, list: &str, names: &[S]) -> Params {
        Params::write(content)
            .set("action", "delete")
            .format(Format::Json)
            .list(list, names)
    }

    /// `format` and, for error bodies, `returnFormat`.
    pub fn format(self, format: Format) -> Params {
        self.set("format", format.as_str())
    }

    /// Whether the call may be retried.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

/// The REDCap API client: URL, connection pool, retry policy, limiter.
pub struct Client<L = NoLimiter> {
    http: reqwest::Client,
    url: Arc<str>,
    limiter: L,
    retry: RetryPolicy,
}

impl<L: Clone> Clone for Client<L> {
    fn clone(&self) -> Self {
        Client {
            http: self.http.clone(),
            url: self.url.clone(),
            limiter: self.limiter.clone(),
            retry: self.retry,
        }
    }
}

impl<L> std::fmt::Debug for Client<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client<NoLimiter> {
    /// A client for the API at `api_url` (`https://host/redcap/api/`), with
    /// rustls, the default retry policy and no limiter.
    pub fn new(api_url: &str) -> Result<Client<NoLimiter>, Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // The token is in the body: a 307/308 would send it on to
            // wherever the answer points. A redirect is an error instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::transport(&e))?;
        Client::with_http(http, api_url)
    }

    /// A client over a caller-built `reqwest::Client` (custom CA, proxy,
    /// timeouts). Build it with `.redirect(reqwest::redirect::Policy::none())`
    /// as [`Client::new`] does: a client that follows a 307 or 308 sends
    /// the token on to wherever the answer points.
    pub fn with_http(http: reqwest::Client, api_url: &str) -> Result<Client<NoLimiter>, Error> {
        let url = reqwest::Url::parse(api_url).map_err(|e| Error::Config {
            detail: format!("API URL {api_url:?}: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config {
                detail: format!("API URL {api_url:?}: the scheme must be http or https"),
            });
        }
        Ok(Client {
            http,
            url: Arc::from(api_url),
            limiter: NoLimiter,
            retry: RetryPolicy::default(),
        })
    }
}

impl<L: OutboundLimiter> Client<L> {
    /// The same client, asking `limiter` before every request.
    pub fn with_limiter<M: OutboundLimiter>(self, limiter: M) -> Client<M> {
        Client {
            http: self.http,
            url: self.url,
            limiter,
            retry: self.retry,
        }
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client<L> {
        self.retry = retry;
        self
    }

    /// The API URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A handle on the project of `token`.
    pub fn project(&self, token: Token) -> Project<L>
    where
        L: Clone,
    {
        Project {
            client: self.clone(),
            token,
        }
    }

    /// Export REDCap Version with a super token (§2.5).
    pub async fn version_with_super_token(
        &self,
        token: &SuperToken,
    ) -> Result<crate::RedcapVersion, Error> {
        let answer = self
            .send(
                token.expose(),
                Params::export(Content::Version).format(Format::Json),
            )
            .await?;
        project::parse_version(&answer.body)
    }

    /// Create Project with a super token (§2.5): answers the creator's
    /// project token, which has every right, API rights included.
    pub async fn create_project(
        &self,
        token: &SuperToken,
        project: &NewProject,
    ) -> Result<Token, Error> {
        let data = serde_json::to_string(&[project]).map_err(Error::encode)?;
        let answer = self
            .send(
                token.expose(),
                Params::write(Content::Project)
                    .format(Format::Json)
                    .set("returnFormat", "json")
                    .set("data", data),
            )
            .await?;
        Token::from_string(answer.body.trim().to_owned()).map_err(|e| Error::Decode {
            what: "Create Project",
            detail: format!("the answer is not a project token: {e}"),
        })
    }

    /// Sends one call with `secret` as its token; retries idempotent calls
    /// by the policy. A 200 with an `ERROR:` body is a refusal too.
    pub(crate) async fn send(&self, secret: &str, params: Params) -> Result<Answer, Error> {
        self.send_with(secret, &params, None, text_answer).await
    }

    /// Like [`Client::send`], with an optional file part (multipart body;
    /// never retried: an upload is a write) and a reader that turns the
    /// status, `Content-Type` and body bytes into the answer.
    pub(crate) async fn send_with<T>(
        &self,
        secret: &str,
        params: &Params,
        upload: Option<FileUpload>,
        read: Reader<T>,
    ) -> Result<T, Error> {
        let attempts = if params.idempotent && upload.is_none() {
            self.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut upload = upload;
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(params.pairs.len() + 1);
        form.push(("token", secret));
        form.extend(params.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut attempt = 0;
        loop {
            attempt += 1;
            if !self.limiter.acquire().await {
                return Err(Error::Throttled);
            }
            let result = self.attempt(&form, upload.take(), read).await;
            let retry = attempt < attempts
                && match &result {
                    Ok(_) => false,
                    Err(Error::Transport { .. }) => true,
                    Err(Error::Server { status, .. }) => retryable_status(*status),
                    Err(_) => false,
                };
            if !retry {
                return result.map_err(|e| e.scrubbed(secret));
            }
            tokio::time::sleep(self.retry.backoff(attempt - 1)).await;
        }
    }

    async fn attempt<T>(
        &self,
        form: &[(&str, &str)],
        upload: Option<FileUpload>,
        read: Reader<T>,
    ) -> Result<T, Error> {
        let request = self.http.post(&*self.url);
        let request = match upload {
            None => request.form(form),
            Some(file) => request.multipart(files::multipart(form, file)?),
        };
        let response = request.send().await.map_err(|e| Error::transport(&e))?;
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            return Err(redirected(status, response.headers()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // The body's buffer is handed on as it is (no copy).
        let bytes = response.bytes().await.map_err(|e| Error::transport(&e))?;
        read(status, content_type, Vec::from(bytes))
    }
}

/// A 3xx answer: never followed (the token is in the body, and a 307 or
/// 308 would carry it to wherever REDCap points). The error names where,
/// without the query, and the fix.
fn redirected(status: u16, headers: &reqwest::header::HeaderMap) -> Error {
    let location = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    Error::Server {
        status,
        message: redirect_message(location),
    }
}

/// What a caller is told about a redirect to `location` (its query and
/// fragment are left out: they are the server's, and may carry anything).
pub fn redirect_message(location: Option<&str>) -> String {
    match location.map(|l| l.split(['?', '#']).next().unwrap_or_default()) {
        Some(to) => format!(
            "REDCap answered with a redirect to {to}, which is not followed (the token travels in the body): set [redcap] url to the address REDCap's API answers at, e.g. https:// instead of http://"
        ),
        None => "REDCap answered with a redirect, which is not followed (the token travels in the body): check [redcap] url".to_owned(),
    }
}

/// Turns an HTTP answer (status, `Content-Type`, body) into a call's result.
pub(crate) type Reader<T> = fn(u16, String, Vec<u8>) -> Result<T, Error>;

/// The reader of text answers: the body as a `String` (without reqwest's
/// lossy decoding pass: exports run to tens of megabytes, and REDCap
/// answers UTF-8), then REDCap's refusals sorted out.
fn text_answer(status: u16, content_type: String, bytes: Vec<u8>) -> Result<Answer, Error> {
    let body = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    match crate::classify(status, &body) {
        None => Ok(Answer { content_type, body }),
        Some(refusal) => Err(Error::from(refusal)),
    }
}

/// A project seen through one token. `Debug` never shows the token.
pub struct Project<L = NoLimiter> {
    client: Client<L>,
    token: Token,
}

impl<L> std::fmt::Debug for Project<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("url", &self.client.url)
            .field("token", &self.token)
            .finish()
    }
}

impl<L: OutboundLimiter> Project<L> {
    /// The client this handle uses.
    pub fn client(&self) -> &Client<L> {
        &self.client
    }

    /// Sends any call with this project's token and answers the raw body:
    /// the escape hatch for parameters the typed methods do not cover.
    pub async fn call(&self, params: Params) -> Result<Answer, Error> {
        self.client.send(self.token.expose(), params).await
    }

    /// Sends a call whose answer is a bare count (most imports/deletes).
    async fn call_count(&self, what: &'static str, params: Params) -> Result<usize, Error> {
        let answer = self.call(params).await?;
        rows::parse_count(what, &answer.body)
    }

    /// Sends `rows` as the JSON `data` of the import `params`; answers
    /// REDCap's count.
    async fn import_json<T: serde::Serialize + ?Sized>(
        &self,
        what: &'static str,
        params: Params,
        rows: &T,
    ) -> Result<usize, Error> {
        let data = serde_json::to_string(rows).map_err(Error::encode)?;
        self.call_count(what, params.format(Format::Json).set("data", data))
            .await
    }

    /// Sends an export and decodes its JSON array.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        params: Params,
    ) -> Result<T, Error> {
        let answer = self.call(params.format(Format::Json)).await?;
        serde_json::from_str(&answer.body).map_err(|e| Error::Decode {
            what,
            detail: e.to_string(),
        })
    }
}
