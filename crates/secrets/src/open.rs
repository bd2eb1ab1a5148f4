//! Opening a backend from options, for callers that choose the backend at
//! run time (the CLI). The AWS backend is behind the `aws` cargo feature;
//! its options exist in every build so a configuration naming it gets a
//! clear answer from a build without it.

use std::sync::Arc;

use crate::{Result, SecretStore};

/// Where the secrets are.
#[derive(Debug, Clone)]
pub struct AwsStoreOptions {
    /// AWS region; `None`: from the environment or profile.
    pub region: Option<String>,
    /// A different endpoint (a VPC endpoint, or moto in tests).
    pub endpoint_url: Option<String>,
    /// Prefix of every secret name, e.g. `redcap-warden/`.
    pub prefix: String,
    /// Days a deleted secret can be restored (7 to 30).
    pub recovery_window_days: i64,
    /// KMS key for new secrets; `None`: the account's default key.
    pub kms_key_id: Option<String>,
}

/// Opens the AWS Secrets Manager backend with the default AWS
/// configuration chain, or says that this build lacks it.
pub fn open_aws(opts: AwsStoreOptions) -> Result<Arc<dyn SecretStore>> {
    #[cfg(feature = "aws")]
    {
        Ok(Arc::new(crate::aws::AwsStore::new(opts)?))
    }
    #[cfg(not(feature = "aws"))]
    {
        Err(crate::StoreError::InvalidRequest {
            store: format!("aws secrets manager store (prefix `{}`)", opts.prefix),
            detail: "this build of redcap-warden has no AWS backend; fix: build it with `cargo build --features secrets/aws`".into(),
        })
    }
}
