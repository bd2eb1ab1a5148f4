//! AWS Secrets Manager backend (cargo feature `aws`).
//!
//! Each secret is one Secrets Manager secret named `<prefix><name>`; each
//! version's `SecretString` is `{"value": …, "meta": {…}}`. Labels are the
//! native staging labels — `current` is `AWSCURRENT`, `pending`
//! `AWSPENDING`, `previous` `AWSPREVIOUS` — and AWS moves them: a new
//! `AWSCURRENT` makes the old one `AWSPREVIOUS`. Version ids are the
//! `ClientRequestToken`s this store generates: UUID-shaped, with the write
//! time in nanoseconds in front, so history can order versions written in
//! the same second.
//!
//! Reads by label always pass `VersionStage` explicitly (AWS does not need
//! it; moto answers wrongly without it). Soft delete is `DeleteSecret` with
//! a recovery window; restore is `RestoreSecret`. Credentials come from the
//! default AWS chain (environment, profile, SSO, container or instance
//! role); warden.toml never holds them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::labels::{check_new_version_label, check_removable};
use crate::{
    AwsStoreOptions, CheckItem, CheckReport, Label, Result, Secret, SecretName, SecretStore,
    SecretValue, Selector, StoreError, VersionId, VersionInfo, VersionMeta,
};

/// A [`SecretStore`] in AWS Secrets Manager (see the module docs for the
/// mapping). The SDK client is built on first use, so opening the store
/// never touches the network.
pub struct AwsStore {
    opts: AwsStoreOptions,
    sdk: OnceCell<Client>,
    /// Set when the caller supplied the SDK configuration (tests).
    given: Option<Arc<aws_config::SdkConfig>>,
}

/// How the store labels map to the native ones.
fn stage(label: Label) -> &'static str {
    match label {
        Label::Current => "AWSCURRENT",
        Label::Pending => "AWSPENDING",
        Label::Previous => "AWSPREVIOUS",
    }
}

fn labels(stages: &[String]) -> Vec<Label> {
    let mut out: Vec<Label> = Label::ALL
        .into_iter()
        .filter(|l| stages.iter().any(|s| s == stage(*l)))
        .collect();
    out.sort();
    out
}

#[derive(Serialize)]
struct PayloadOut<'a> {
    value: &'a str,
    meta: &'a VersionMeta,
}

#[derive(Deserialize)]
struct PayloadIn {
    value: String,
    meta: VersionMeta,
}

#[derive(Deserialize)]
struct MetaOnly {
    meta: VersionMeta,
}

/// What a failed call means, before the caller adds context.
enum Failure {
    /// `ResourceNotFoundException`.
    NotFound,
    /// `InvalidRequestException` (e.g. the secret is scheduled for deletion).
    InvalidRequest,
    /// `InvalidParameterException` (e.g. a label was moved meanwhile).
    InvalidParameter,
    /// `ResourceExistsException`.
    Exists,
    Other(StoreError),
}

/// A new version id: `ClientRequestToken` must be 32 to 64 characters. The
/// first 16 hex digits are the time in nanoseconds, so ids sort by write
/// time; the rest is random.
fn new_version_id() -> String {
    let nanos = jiff::Timestamp::now().as_nanosecond() as u64;
    let t = format!("{nanos:016x}");
    let r = durable::random_hex(8);
    format!(
        "{}-{}-{}-{}-{}",
        &t[..8],
        &t[8..12],
        &t[12..16],
        &r[..4],
        &r[4..]
    )
}

/// The nanosecond stamp of an id this store made, for ordering.
fn id_time(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').take(16).collect();
    u64::from_str_radix(&hex, 16).unwrap_or(0)
}

impl AwsStore {
    /// A store using the default AWS configuration chain (loaded on first
    /// use, inside the caller's runtime).
    pub fn new(opts: AwsStoreOptions) -> Result<AwsStore> {
        let store = AwsStore {
            opts,
            sdk: OnceCell::new(),
            given: None,
        };
        store.validate()?;
        Ok(store)
    }

    /// A store using configuration the caller built (region, credentials).
    /// `opts.endpoint_url` and `opts.region`, when set, still apply.
    pub fn with_sdk_config(opts: AwsStoreOptions, sdk: aws_config::SdkConfig) -> Result<AwsStore> {
        let store = AwsStore {
            opts,
            sdk: OnceCell::new(),
            given: Some(Arc::new(sdk)),
        };
        store.validate()?;
        Ok(store)
    }

    fn validate(&self) -> Result<()> {
        if !(7..=30).contains(&self.opts.recovery_window_days) {
            return Err(StoreError::InvalidRequest {
                store: self.store(),
                detail: format!(
                    "recovery_window_days = {} is outside 7 to 30, which AWS accepts",
                    self.opts.recovery_window_days
                ),
            });
        }
        Ok(())
    }

    fn store(&self) -> String {
        let mut s = String::from("aws secrets manager store (");
        match &self.opts.region {
            Some(r) => s.push_str(&format!("region {r}")),
            None => s.push_str("region from the environment"),
        }
        if let Some(e) = &self.opts.endpoint_url {
            s.push_str(&format!(", endpoint {e}"));
        }
        s.push_str(&format!(", prefix `{}`)", self.opts.prefix));
        s
    }

    async fn client(&self) -> Result<&Client> {
        self.sdk
            .get_or_try_init(|| async {
                let sdk = match &self.given {
                    Some(sdk) => (**sdk).clone(),
                    None => {
                        aws_config::defaults(aws_config::BehaviorVersion::latest())
                            .load()
                            .await
                    }
                };
                let mut conf = aws_sdk_secretsmanager::config::Builder::from(&sdk).timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_timeout(Duration::from_secs(60))
                        .build(),
                );
                if let Some(r) = &self.opts.region {
                    conf = conf.region(aws_sdk_secretsmanager::config::Region::new(r.clone()));
                }
                if let Some(e) = &self.opts.endpoint_url {
                    conf = conf.endpoint_url(e);
                }
                let conf = conf.build();
                if conf.region().is_none() {
                    return Err(StoreError::InvalidRequest {
                        store: self.store(),
                        detail: "no AWS region is configured; fix: set region in [secrets.aws], or AWS_REGION".into(),
                    });
                }
                Ok(Client::from_conf(conf))
            })
            .await
    }

    fn id(&self, name: &SecretName) -> String {
        format!("{}{name}", self.opts.prefix)
    }

    fn fail<E>(
        &self,
        op: &str,
        e: SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
    ) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                let cause = root_cause(&e);
                let credentials = cause.to_lowercase().contains("credential");
                return Failure::Other(if credentials {
                    StoreError::Credential {
                        store: self.store(),
                        what: "AWS credentials".into(),
                        detail: cause,
                        fix: "provide credentials through the default AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO login, or an instance or container role)".into(),
                    }
                } else {
                    StoreError::Unreachable {
                        store: self.store(),
                        detail: format!("{op}: {cause}"),
                        fix: "check the network path to Secrets Manager (and [secrets.aws] endpoint_url and region)".into(),
                    }
                });
            }
            _ => {}
        }
        let code = e.code().unwrap_or_default().to_string();
        let message: String = e
            .message()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        match code.as_str() {
            "ResourceNotFoundException" => Failure::NotFound,
            "InvalidRequestException" => Failure::InvalidRequest,
            "InvalidParameterException" => Failure::InvalidParameter,
            "ResourceExistsException" => Failure::Exists,
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "AccessDenied" => Failure::Other(StoreError::Denied {
                store: self.store(),
                detail: format!("{op}: {code}: {message}"),
                fix: format!(
                    "check the AWS identity in use and that its IAM policy allows secretsmanager:{op} on secrets named `{}*` (docs/secrets.md)",
                    self.opts.prefix
                ),
            }),
            "" => Failure::Other(StoreError::Backend {
                store: self.store(),
                detail: format!("{op}: {}", root_cause(&e)),
                fix: "check [secrets.aws] endpoint_url and region".into(),
            }),
            _ => Failure::Other(StoreError::Backend {
                store: self.store(),
                detail: format!("{op}: {code}: {message}"),
                fix: "see the AWS documentation for this error; retry when it is resolved".into(),
            }),
        }
    }

    /// Why `name` cannot be used: missing, deleted, or (`Ok`) neither.
    async fn status(&self, name: &SecretName) -> Result<Status> {
        let client = self.client().await?;
        match client
            .describe_secret()
            .secret_id(self.id(name))
            .send()
            .await
        {
            Ok(d) => Ok(if d.deleted_date().is_some() {
                Status::Deleted
            } else {
                Status::Live(d.version_ids_to_stages().cloned().unwrap_or_default())
            }),
            Err(e) => match self.fail("DescribeSecret", e) {
                Failure::NotFound => Ok(Status::Missing),
                Failure::Other(e) => Err(e),
                _ => Err(self.unexpected("DescribeSecret")),
            },
        }
    }

    /// The stages of a live secret, or the error for a missing or deleted one.
    async fn live(&self, name: &SecretName) -> Result<HashMap<String, Vec<String>>> {
        match self.status(name).await? {
            Status::Missing => Err(StoreError::NotFound {
                store: self.store(),
                name: name.clone(),
            }),
            Status::Deleted => Err(StoreError::Deleted {
                store: self.store(),
                name: name.clone(),
            }),
            Status::Live(stages) => Ok(stages),
        }
    }

    /// The error for a failure that `status` explains (missing or deleted),
    /// or `otherwise` when the secret is live.
    async fn explain(&self, name: &SecretName, otherwise: StoreError) -> StoreError {
        match self.live(name).await {
            Ok(_) => otherwise,
            Err(e) => e,
        }
    }

    fn unexpected(&self, op: &str) -> StoreError {
        StoreError::Backend {
            store: self.store(),
            detail: format!("{op} failed unexpectedly"),
            fix: "retry; if it persists, check the secret in the AWS console".into(),
        }
    }

    /// Every version (labelled or not), newest first.
    async fn versions(&self, name: &SecretName) -> Result<Vec<(String, Vec<String>)>> {
        let client = self.client().await?;
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = client
                .list_secret_version_ids()
                .secret_id(self.id(name))
                .include_deprecated(true)
                .set_next_token(next.take())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    return Err(match self.fail("ListSecretVersionIds", e) {
                        Failure::Other(e) => e,
                        _ => {
                            self.explain(name, self.unexpected("ListSecretVersionIds"))
                                .await
                        }
                    });
                }
            };
            for v in page.versions() {
                let Some(id) = v.version_id() else { continue };
                let created = v.created_date().map_or(0, |d| d.secs());
                out.push((
                    created,
                    id_time(id),
                    id.to_string(),
                    v.version_stages().to_vec(),
                ));
            }
            // An empty token also ends the listing (moto sends one).
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| (b.0, b.1, &b.2).cmp(&(a.0, a.1, &a.2)));
        Ok(out
            .into_iter()
            .map(|(_, _, id, stages)| (id, stages))
            .collect())
    }

    async fn read(
        &self,
        name: &SecretName,
        which: &Selector,
    ) -> Result<(String, Vec<String>, String)> {
        let client = self.client().await?;
        let mut req = client.get_secret_value().secret_id(self.id(name));
        match which {
            Selector::Label(l) => req = req.version_stage(stage(*l)),
            Selector::Version(v) => {
                if !(32..=64).contains(&v.0.len()) {
                    return Err(self.explain(name, self.no_such_version(name, which)).await);
                }
                req = req.version_id(&v.0);
            }
        }
        match req.send().await {
            Ok(out) => Ok((
                out.version_id().unwrap_or_default().to_string(),
                out.version_stages().to_vec(),
                out.secret_string().unwrap_or_default().to_string(),
            )),
            Err(e) => Err(match self.fail("GetSecretValue", e) {
                Failure::NotFound | Failure::InvalidRequest | Failure::InvalidParameter => {
                    let missing = match which {
                        Selector::Label(l) => StoreError::LabelNotSet {
                            store: self.store(),
                            name: name.clone(),
                            label: *l,
                        },
                        Selector::Version(_) => self.no_such_version(name, which),
                    };
                    self.explain(name, missing).await
                }
                Failure::Other(e) => e,
                Failure::Exists => self.unexpected("GetSecretValue"),
            }),
        }
    }

    fn no_such_version(&self, name: &SecretName, which: &Selector) -> StoreError {
        StoreError::NoSuchVersion {
            store: self.store(),
            name: name.clone(),
            what: which.to_string(),
        }
    }

    fn corrupt(&self, name: &SecretName, e: serde_json::Error) -> StoreError {
        StoreError::Corrupt {
            store: self.store(),
            detail: format!(
                "secret `{name}` holds a version that is not a redcap-warden payload ({})",
                crate::error::json_error_position(&e)
            ),
        }
    }

    async fn create(&self, name: &SecretName) -> Result<()> {
        let client = self.client().await?;
        let res = client
            .create_secret()
            .name(self.id(name))
            .description("REDCap token governed by redcap-warden; versions hold {value, meta}")
            .set_kms_key_id(self.opts.kms_key_id.clone())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match self.fail("CreateSecret", e) {
                // Another writer created it first.
                Failure::Exists => Ok(()),
                Failure::Other(e) => Err(e),
                _ => Err(self.explain(name, self.unexpected("CreateSecret")).await),
            },
        }
    }

    /// One `UpdateSecretVersionStage`.
    async fn restage(
        &self,
        name: &SecretName,
        label: Label,
        to: Option<&str>,
        from: Option<&str>,
    ) -> std::result::Result<(), Failure> {
        let client = self.client().await.map_err(Failure::Other)?;
        client
            .update_secret_version_stage()
            .secret_id(self.id(name))
            .version_stage(stage(label))
            .set_move_to_version_id(to.map(str::to_string))
            .set_remove_from_version_id(from.map(str::to_string))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.fail("UpdateSecretVersionStage", e))
    }

    fn holder(stages: &HashMap<String, Vec<String>>, label: Label) -> Option<String> {
        stages
            .iter()
            .find(|(_, s)| s.iter().any(|s| s == stage(label)))
            .map(|(id, _)| id.clone())
    }
}

enum Status {
    Missing,
    Deleted,
    Live(HashMap<String, Vec<String>>),
}

/// How often a label move is retried after another writer moved the label
/// between our read and our write.
const RESTAGE_ATTEMPTS: usize = 50;

#[async_trait::async_trait]
impl SecretStore for AwsStore {
    fn describe(&self) -> String {
        self.store()
    }

    async fn put(
        &self,
        name: &SecretName,
        value: SecretValue,
        meta: VersionMeta,
        label: Label,
    ) -> Result<VersionId> {
        check_new_version_label(self, label)?;
        // AWS refuses a new version of a secret scheduled for deletion, but
        // moto accepts it; asking first keeps both honest.
        match self.status(name).await? {
            Status::Deleted => {
                return Err(StoreError::Deleted {
                    store: self.store(),
                    name: name.clone(),
                });
            }
            Status::Missing => self.create(name).await?,
            Status::Live(_) => {}
        }
        let client = self.client().await?;
        let payload = zeroize::Zeroizing::new(
            serde_json::to_string(&PayloadOut {
                value: value.expose(),
                meta: &meta,
            })
            .expect("serialisable"),
        );
        let token = new_version_id();
        for attempt in 0..2 {
            let res = client
                .put_secret_value()
                .secret_id(self.id(name))
                .client_request_token(&token)
                .secret_string(payload.as_str())
                .version_stages(stage(label))
                .send()
                .await;
            match res {
                Ok(out) => {
                    return Ok(VersionId(
                        out.version_id().unwrap_or(token.as_str()).to_string(),
                    ));
                }
                Err(e) => match self.fail("PutSecretValue", e) {
                    Failure::NotFound if attempt == 0 => self.create(name).await?,
                    Failure::Other(e) => return Err(e),
                    _ => {
                        return Err(self.explain(name, self.unexpected("PutSecretValue")).await);
                    }
                },
            }
        }
        Err(self.explain(name, self.unexpected("PutSecretValue")).await)
    }

    async fn get(&self, name: &SecretName, which: &Selector) -> Result<Secret> {
        let (id, stages, payload) = self.read(name, which).await?;
        let payload = zeroize::Zeroizing::new(payload);
        let p: PayloadIn = serde_json::from_str(&payload).map_err(|e| self.corrupt(name, e))?;
        Ok(Secret {
            name: name.clone(),
            version: VersionId(id),
            value: SecretValue::new(p.value),
            meta: p.meta,
            labels: labels(&stages),
        })
    }

    async fn move_label(&self, name: &SecretName, label: Label, to: &VersionId) -> Result<()> {
        self.live(name).await?;
        if !self.versions(name).await?.iter().any(|(id, _)| id == &to.0) {
            return Err(self.no_such_version(name, &Selector::Version(to.clone())));
        }
        for _ in 0..RESTAGE_ATTEMPTS {
            let stages = self.live(name).await?;
            let holder = Self::holder(&stages, label);
            let mut lost_race = false;
            if holder.as_deref() != Some(to.0.as_str()) {
                match self
                    .restage(name, label, Some(&to.0), holder.as_deref())
                    .await
                {
                    Ok(()) => {}
                    Err(Failure::Other(e)) => return Err(e),
                    Err(_) => lost_race = true,
                }
            }
            if !lost_race && label == Label::Current {
                // A version in use is no longer pending.
                let stages = self.live(name).await?;
                if Self::holder(&stages, Label::Pending).as_deref() == Some(to.0.as_str()) {
                    match self.restage(name, Label::Pending, None, Some(&to.0)).await {
                        Ok(()) => {}
                        Err(Failure::Other(e)) => return Err(e),
                        Err(_) => lost_race = true,
                    }
                }
            }
            if !lost_race {
                return Ok(());
            }
        }
        Err(StoreError::Conflict {
            store: self.store(),
            name: name.clone(),
        })
    }

    async fn remove_label(&self, name: &SecretName, label: Label) -> Result<()> {
        check_removable(self, label)?;
        for _ in 0..RESTAGE_ATTEMPTS {
            let stages = self.live(name).await?;
            let Some(holder) = Self::holder(&stages, label) else {
                return Ok(());
            };
            match self.restage(name, label, None, Some(&holder)).await {
                Ok(()) => return Ok(()),
                Err(Failure::Other(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Err(StoreError::Conflict {
            store: self.store(),
            name: name.clone(),
        })
    }

    async fn list(&self) -> Result<Vec<SecretName>> {
        let client = self.client().await?;
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = client.list_secrets().set_next_token(next.take());
            if !self.opts.prefix.is_empty() {
                req = req.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .values(&self.opts.prefix)
                        .build(),
                );
            }
            let page = req
                .send()
                .await
                .map_err(|e| match self.fail("ListSecrets", e) {
                    Failure::Other(e) => e,
                    _ => self.unexpected("ListSecrets"),
                })?;
            for s in page.secret_list() {
                if s.deleted_date().is_some() {
                    continue;
                }
                let Some(rest) = s.name().and_then(|n| n.strip_prefix(&self.opts.prefix)) else {
                    continue;
                };
                if let Ok(name) = SecretName::new(rest) {
                    names.push(name);
                }
            }
            // An empty token also ends the listing (moto sends one).
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn history(&self, name: &SecretName) -> Result<Vec<VersionInfo>> {
        self.live(name).await?;
        let mut out = Vec::new();
        for (id, stages) in self.versions(name).await? {
            let which = Selector::Version(VersionId(id.clone()));
            let (_, _, payload) = self.read(name, &which).await?;
            let payload = zeroize::Zeroizing::new(payload);
            let m: MetaOnly = serde_json::from_str(&payload).map_err(|e| self.corrupt(name, e))?;
            out.push(VersionInfo {
                version: VersionId(id),
                labels: labels(&stages),
                meta: m.meta,
            });
        }
        Ok(out)
    }

    async fn delete(&self, name: &SecretName) -> Result<()> {
        match self.status(name).await? {
            Status::Missing => Err(StoreError::NotFound {
                store: self.store(),
                name: name.clone(),
            }),
            Status::Deleted => Ok(()),
            Status::Live(_) => {
                let client = self.client().await?;
                client
                    .delete_secret()
                    .secret_id(self.id(name))
                    .recovery_window_in_days(self.opts.recovery_window_days)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| match self.fail("DeleteSecret", e) {
                        Failure::Other(e) => e,
                        _ => self.unexpected("DeleteSecret"),
                    })
            }
        }
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        match self.status(name).await? {
            Status::Missing => Err(StoreError::NotFound {
                store: self.store(),
                name: name.clone(),
            }),
            Status::Live(_) => Ok(()),
            Status::Deleted => {
                let client = self.client().await?;
                client
                    .restore_secret()
                    .secret_id(self.id(name))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| match self.fail("RestoreSecret", e) {
                        Failure::Other(e) => e,
                        _ => self.unexpected("RestoreSecret"),
                    })
            }
        }
    }

    async fn check(&self) -> Result<CheckReport> {
        let mut items = Vec::new();
        let report = |items| CheckReport {
            store: self.store(),
            items,
        };
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                items.push(CheckItem {
                    ok: false,
                    what: e.to_string(),
                    fix: None,
                });
                return Ok(report(items));
            }
        };
        let listed = client
            .list_secrets()
            .max_results(1)
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(&self.opts.prefix)
                    .build(),
            )
            .send()
            .await;
        match listed {
            Ok(_) => items.push(CheckItem {
                ok: true,
                what: format!("reachable; may list secrets named `{}*`", self.opts.prefix),
                fix: None,
            }),
            Err(e) => {
                let e = match self.fail("ListSecrets", e) {
                    Failure::Other(e) => e,
                    _ => self.unexpected("ListSecrets"),
                };
                items.push(CheckItem {
                    ok: false,
                    what: e.to_string(),
                    fix: None,
                });
                return Ok(report(items));
            }
        }
        // Describing a secret that does not exist tells whether the policy
        // reaches this prefix, without changing anything.
        let probe = format!("{}warden-check-probe", self.opts.prefix);
        match client.describe_secret().secret_id(&probe).send().await {
            Ok(_) => items.push(CheckItem {
                ok: true,
                what: format!("may describe secrets named `{}*`", self.opts.prefix),
                fix: None,
            }),
            Err(e) => match self.fail("DescribeSecret", e) {
                Failure::NotFound => items.push(CheckItem {
                    ok: true,
                    what: format!("may describe secrets named `{}*`", self.opts.prefix),
                    fix: None,
                }),
                Failure::Other(e) => items.push(CheckItem {
                    ok: false,
                    what: e.to_string(),
                    fix: None,
                }),
                _ => items.push(CheckItem {
                    ok: false,
                    what: self.unexpected("DescribeSecret").to_string(),
                    fix: None,
                }),
            },
        }
        Ok(report(items))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut text = e.to_string();
    while let Some(next) = cur.source() {
        cur = next;
        text = cur.to_string();
    }
    text
}
