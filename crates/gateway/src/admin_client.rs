//! The admin listener (`admin`) seen from another process.
//!
//! While a running gateway holds the ledger, a `redcap-warden` command
//! cannot open it; its entries go to the gateway instead
//! (`POST /admin/ledger/append`), which appends them to the same ledger and
//! signs them in its next checkpoint. [`AdminClient`] is that route as a
//! [`governance::audit::EntrySink`], so governance records through it
//! without knowing the path.

use std::path::PathBuf;

use governance::audit::{AuditError, EntrySink};
use ledger::EntryKind;
use warden_config::LoadedConfig;
use zeroize::Zeroizing;

/// The bearer credential in `[gateway] admin_token_file` cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the gateway's admin credential {} cannot be read ({source})", path.display())]
pub struct CredentialUnreadable {
    /// The credential file.
    pub path: PathBuf,
    /// Why it cannot be read.
    #[source]
    pub source: std::io::Error,
}

/// The running gateway's admin listener at `[gateway] admin_listen`,
/// reached with the credential in `[gateway] admin_token_file`.
pub struct AdminClient {
    listen: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// The gateway that `config` describes, with its credential read now.
    pub fn from_config(config: &LoadedConfig) -> Result<AdminClient, CredentialUnreadable> {
        let path = crate::paths::admin_token_file(config);
        let token = std::fs::read_to_string(&path)
            .map_err(|source| CredentialUnreadable { path, source })?;
        Ok(AdminClient {
            listen: config.config.gateway.admin_listen.to_string(),
            token: Zeroizing::new(token.trim().to_string()),
            http: reqwest::Client::new(),
        })
    }
}

#[async_trait::async_trait]
impl EntrySink for AdminClient {
    async fn append(&self, kind: EntryKind) -> Result<(), AuditError> {
        let url = format!("http://{}/admin/ledger/append", self.listen);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(self.token.as_str())
            .json(&kind)
            .send()
            .await
            .map_err(|e| {
                AuditError::Gateway(format!(
                    "the gateway holds the ledger but cannot be reached at {url}: {}",
                    e.without_url()
                ))
            })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            return Err(AuditError::Gateway(format!(
                "the gateway refused the ledger entry ({status}): {body}"
            )));
        }
        Ok(())
    }
}

/// The answer of a state-changing admin endpoint: its status and the
/// `error` text of a refusal.
struct Answer {
    status: reqwest::StatusCode,
    error: String,
}

impl AdminClient {
    /// `POST` `body` to `path` on the admin listener. `Err` when nothing
    /// answers there (no gateway running).
    async fn post(&self, path: &str, body: serde_json::Value) -> Result<Answer, String> {
        let url = format!("http://{}{path}", self.listen);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(self.token.as_str())
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("no gateway answers at {url} ({})", e.without_url()))?;
        let status = resp.status();
        let error = if status.is_success() {
            String::new()
        } else {
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            v["error"].as_str().unwrap_or_default().to_string()
        };
        Ok(Answer { status, error })
    }
}

/// What a rotation asks of the gateway: the cut-over hold. A gateway that
/// does not run is no error — there is nothing to hold — and the answer
/// says so.
#[async_trait::async_trait]
impl governance::rotation::Cutover for AdminClient {
    async fn hold(&self, account: &str, operator: &str, reason: &str) -> Result<String, String> {
        let a = match self
            .post(
                &format!("/admin/accounts/{account}/hold"),
                serde_json::json!({"operator": operator, "reason": reason}),
            )
            .await
        {
            Ok(a) => a,
            Err(none) => return Ok(format!("{none}: continuing without a cut-over hold")),
        };
        match a.status.as_u16() {
            200..=299 => Ok(format!(
                "the gateway holds the requests of `{account}` until the switch"
            )),
            409 => Ok(format!(
                "the gateway already holds the requests of `{account}`"
            )),
            // The account is not in the configuration the gateway runs.
            404 => Ok(format!(
                "the running gateway does not serve `{account}` ({}): no hold needed",
                a.error
            )),
            _ => Err(format!(
                "the gateway refused to hold `{account}` ({}): {}",
                a.status, a.error
            )),
        }
    }

    async fn release(&self, account: &str, operator: &str, reason: &str) -> Result<String, String> {
        let a = match self
            .post(
                &format!("/admin/accounts/{account}/release"),
                serde_json::json!({"operator": operator, "reason": reason}),
            )
            .await
        {
            Ok(a) => a,
            Err(none) => return Ok(format!("{none}: no gateway to release")),
        };
        match a.status.as_u16() {
            200..=299 => Ok(format!(
                "the gateway released `{account}`; it reads the new current token"
            )),
            // No hold in force (it ran out, or the gateway restarted): the
            // release still made it forget cached tokens.
            409 => Ok(format!(
                "the gateway had no hold on `{account}` (it ran out or the gateway restarted); its cached tokens are forgotten"
            )),
            404 => Ok(format!(
                "the running gateway does not serve `{account}`: nothing to release"
            )),
            _ => Err(format!(
                "the gateway refused to release `{account}` ({}): {}",
                a.status, a.error
            )),
        }
    }
}

impl AdminClient {
    /// Dual mode: tells the running gateway that `account` is now the
    /// active member of its pair (the account status file already says
    /// so); the gateway re-reads the file and confirms. A gateway that
    /// does not run is no error: it reads the file when it starts.
    pub async fn announce_active(
        &self,
        account: &str,
        operator: &str,
        reason: &str,
    ) -> Result<String, String> {
        let a = match self
            .post(
                &format!("/admin/accounts/{account}/activate"),
                serde_json::json!({"operator": operator, "reason": reason}),
            )
            .await
        {
            Ok(a) => a,
            Err(none) => {
                return Ok(format!(
                    "{none}: a gateway started later reads the active member from the account status file"
                ));
            }
        };
        match a.status.as_u16() {
            200..=299 => Ok(format!(
                "the gateway serves the pair's clients with `{account}` from their next request"
            )),
            404 => Ok(format!(
                "the running gateway does not serve `{account}` as a dual pair ({}): reload it to apply the configuration",
                a.error
            )),
            _ => Err(format!(
                "the gateway did not confirm the switch to `{account}` ({}): {}",
                a.status, a.error
            )),
        }
    }
}
