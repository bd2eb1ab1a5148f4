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
