//! `[secrets]`: which secrets backend holds the tokens and the tool's keys.
//!
//! No credential is ever written here. The Vault sections name the *file*
//! or the *environment variable* that holds a token or AppRole secret id;
//! AWS credentials come from the default AWS chain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[secrets]`: where REDCap tokens and the tool's own keys are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawSecretsSection")]
pub struct SecretsSection {
    /// Which backend holds the secrets.
    pub backend: SecretsBackend,
    /// Settings of the embedded age-file backend.
    pub file: FileSecretsSection,
    /// `[secrets.vault]`, when present.
    pub vault: Option<VaultSecretsSection>,
    /// `[secrets.aws]`, when present.
    pub aws: Option<AwsSecretsSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretsSection {
    #[serde(default)]
    backend: SecretsBackend,
    #[serde(default)]
    file: FileSecretsSection,
    #[serde(default)]
    vault: Option<VaultSecretsSection>,
    #[serde(default)]
    aws: Option<AwsSecretsSection>,
}

impl TryFrom<RawSecretsSection> for SecretsSection {
    type Error = String;
    fn try_from(raw: RawSecretsSection) -> Result<Self, String> {
        let missing = match raw.backend {
            SecretsBackend::Vault if raw.vault.is_none() => Some("vault"),
            SecretsBackend::Aws if raw.aws.is_none() => Some("aws"),
            _ => None,
        };
        if let Some(b) = missing {
            return Err(format!(
                "invalid value: backend = \"{b}\" needs a [secrets.{b}] table (docs/secrets.md lists its keys)"
            ));
        }
        Ok(SecretsSection {
            backend: raw.backend,
            file: raw.file,
            vault: raw.vault,
            aws: raw.aws,
        })
    }
}

/// `[secrets] backend`: which store holds the REDCap tokens, the token
/// fingerprint key and the ledger's signing key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsBackend {
    /// One age-encrypted file beside the configuration (the default).
    #[default]
    File,
    /// OpenBao or HashiCorp Vault, KV version 2 (`[secrets.vault]`).
    Vault,
    /// AWS Secrets Manager (`[secrets.aws]`).
    Aws,
}

impl SecretsBackend {
    /// The value as written in `[secrets] backend`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretsBackend::File => "file",
            SecretsBackend::Vault => "vault",
            SecretsBackend::Aws => "aws",
        }
    }
}

impl std::str::FromStr for SecretsBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(SecretsBackend::File),
            "vault" => Ok(SecretsBackend::Vault),
            "aws" => Ok(SecretsBackend::Aws),
            other => Err(format!(
                "`{other}` is not a secrets backend; use file, vault or aws"
            )),
        }
    }
}

/// `[secrets.file]`: the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSecretsSection {
    /// The encrypted store; `<data_dir>/secrets.age` unless set.
    #[serde(default)]
    pub path: PathBuf,
    /// The X25519 identity the store is encrypted to (mode 0600). Back it
    /// up: without it every token must be re-issued in REDCap's UI.
    /// `<data_dir>/identity.txt` unless set.
    #[serde(default)]
    pub identity: PathBuf,
    /// How many old, unlabelled versions of each secret to keep.
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
    /// For a passphrase-protected identity: a file (no group or other
    /// permissions) whose first line is the passphrase, so `serve` can start
    /// unattended. Never the passphrase itself.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
}

impl Default for FileSecretsSection {
    /// What an absent `[secrets.file]` means; the files are filled in
    /// from the data directory when the whole file is parsed.
    fn default() -> Self {
        FileSecretsSection {
            path: PathBuf::new(),
            identity: PathBuf::new(),
            keep_versions: default_keep_versions(),
            passphrase_file: None,
        }
    }
}

impl FileSecretsSection {
    /// Fills the store and identity in from the data directory when they
    /// are left out.
    pub(crate) fn derive_paths(&mut self, data_dir: &Path) {
        crate::paths::derive(&mut self.path, data_dir, "secrets.age");
        crate::paths::derive(&mut self.identity, data_dir, "identity.txt");
    }
}

fn default_keep_versions() -> usize {
    20
}

/// Where a credential is read from: a file or an environment variable —
/// never the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialFrom {
    /// `<what>_file`: a file holding the credential.
    File(PathBuf),
    /// `<what>_env`: the name of the environment variable holding it (a
    /// name of letters, digits and `_`, never the credential itself).
    Env(String),
}

/// How redcap-warden logs in to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuthSection {
    /// `auth = "token"` (the default): a Vault token from `token_file` or
    /// `token_env`.
    Token(CredentialFrom),
    /// `auth = "approle"`: an AppRole login, which yields a token.
    AppRole {
        /// `approle_mount`: where the AppRole auth method is mounted
        /// (`approle` by default).
        mount: String,
        /// `role_id_file` or `role_id_env`.
        role_id: CredentialFrom,
        /// `secret_id_file` or `secret_id_env`.
        secret_id: CredentialFrom,
    },
}

/// `[secrets.vault]`: OpenBao or HashiCorp Vault, KV version 2.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawVaultSection")]
pub struct VaultSecretsSection {
    /// `https://vault.example.org:8200`
    pub address: String,
    /// The KV version 2 mount.
    pub mount: String,
    /// Path under the mount for redcap-warden's secrets.
    pub prefix: String,
    /// Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
    /// PEM CA certificate(s) to trust for the server, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// How to log in (`auth` and its credential keys).
    pub auth: VaultAuthSection,
    /// KV versions kept per secret (KV's `max_versions`).
    pub max_versions: u32,
    /// How long one request may take (`timeout_seconds`).
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVaultSection {
    address: String,
    #[serde(default = "default_vault_mount")]
    mount: String,
    #[serde(default = "default_vault_prefix")]
    prefix: String,
    namespace: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    auth: VaultAuthMethod,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    #[serde(default = "default_approle_mount")]
    approle_mount: String,
    role_id_file: Option<PathBuf>,
    role_id_env: Option<String>,
    secret_id_file: Option<PathBuf>,
    secret_id_env: Option<String>,
    #[serde(default = "default_max_versions")]
    max_versions: u32,
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::units::seconds"
    )]
    timeout_seconds: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum VaultAuthMethod {
    #[default]
    Token,
    AppRole,
}

fn default_vault_mount() -> String {
    "secret".into()
}
fn default_vault_prefix() -> String {
    "redcap-warden".into()
}
fn default_approle_mount() -> String {
    "approle".into()
}
fn default_max_versions() -> u32 {
    20
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Exactly one of `<what>_file` and `<what>_env`.
fn one_source(
    what: &str,
    holds: &str,
    file: Option<PathBuf>,
    env: Option<String>,
) -> Result<CredentialFrom, String> {
    match (file, env) {
        (Some(f), None) => Ok(CredentialFrom::File(f)),
        (None, Some(e)) if is_env_name(&e) => Ok(CredentialFrom::Env(e)),
        (None, Some(_)) => Err(format!(
            "invalid value: {what}_env must be the *name* of an environment variable (letters, digits, _), not {holds} itself"
        )),
        (Some(_), Some(_)) => Err(format!(
            "invalid value: give {what}_file or {what}_env, not both"
        )),
        (None, None) => Err(format!(
            "invalid value: [secrets.vault] needs {what}_file (a file holding {holds}) or {what}_env (the name of the environment variable holding it); {holds} itself never goes in this file"
        )),
    }
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl TryFrom<RawVaultSection> for VaultSecretsSection {
    type Error = String;
    fn try_from(r: RawVaultSection) -> Result<Self, String> {
        let lower = r.address.to_ascii_lowercase();
        let loopback = ["http://127.", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| lower.starts_with(p));
        if !(lower.starts_with("https://") || loopback) {
            return Err(format!(
                "invalid value: address `{}` must start with https:// (plain http:// only to a loopback address)",
                r.address
            ));
        }
        for (key, v) in [("mount", &r.mount), ("approle_mount", &r.approle_mount)] {
            if v.trim_matches('/').is_empty() || v.contains(char::is_whitespace) {
                return Err(format!(
                    "invalid value: {key} `{v}` must be a non-empty mount path"
                ));
            }
        }
        if r.timeout_seconds.is_zero() {
            return Err("invalid value: timeout_seconds must be at least 1".into());
        }
        let auth = match r.auth {
            VaultAuthMethod::Token => {
                if r.role_id_file.is_some()
                    || r.role_id_env.is_some()
                    || r.secret_id_file.is_some()
                    || r.secret_id_env.is_some()
                {
                    return Err("invalid value: role_id_*/secret_id_* are for auth = \"approle\"; remove them or set auth = \"approle\"".into());
                }
                VaultAuthSection::Token(one_source(
                    "token",
                    "the Vault token",
                    r.token_file,
                    r.token_env,
                )?)
            }
            VaultAuthMethod::AppRole => {
                if r.token_file.is_some() || r.token_env.is_some() {
                    return Err("invalid value: token_file/token_env are for auth = \"token\"; remove them or set auth = \"token\"".into());
                }
                VaultAuthSection::AppRole {
                    mount: r.approle_mount,
                    role_id: one_source(
                        "role_id",
                        "the AppRole role id",
                        r.role_id_file,
                        r.role_id_env,
                    )?,
                    secret_id: one_source(
                        "secret_id",
                        "the AppRole secret id",
                        r.secret_id_file,
                        r.secret_id_env,
                    )?,
                }
            }
        };
        Ok(VaultSecretsSection {
            address: r.address,
            mount: r.mount,
            prefix: r.prefix,
            namespace: r.namespace,
            ca_file: r.ca_file,
            auth,
            max_versions: r.max_versions,
            timeout: r.timeout_seconds,
        })
    }
}

/// `[secrets.aws]`: AWS Secrets Manager. Credentials come from the default
/// AWS chain (environment, profile, SSO, instance or container role).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSecretsSection {
    /// e.g. `eu-central-1`; default: from the environment or profile.
    pub region: Option<String>,
    /// A different endpoint, e.g. a VPC endpoint.
    pub endpoint_url: Option<String>,
    /// Prefix of every secret name.
    #[serde(default = "default_aws_prefix")]
    pub prefix: String,
    /// Days a deleted secret stays restorable (7 to 30).
    #[serde(default = "default_recovery_window")]
    pub recovery_window_days: i64,
    /// KMS key for new secrets (id, ARN or alias); default: the account's
    /// `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
}

fn default_aws_prefix() -> String {
    "redcap-warden/".into()
}
fn default_recovery_window() -> i64 {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SecretsSection, String> {
        #[derive(Deserialize)]
        struct Top {
            secrets: SecretsSection,
        }
        toml::from_str::<Top>(text)
            .map(|t| t.secrets)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn a_vault_section_with_token_from_an_env_var() {
        let s = parse(
            "[secrets]\nbackend = \"vault\"\n[secrets.vault]\naddress = \"https://vault.example.org:8200\"\ntoken_env = \"VAULT_TOKEN\"\nnamespace = \"trials\"\n",
        )
        .unwrap();
        assert_eq!(s.backend, SecretsBackend::Vault);
        let v = s.vault.unwrap();
        assert_eq!(v.mount, "secret");
        assert_eq!(v.prefix, "redcap-warden");
        assert_eq!(v.namespace.as_deref(), Some("trials"));
        assert_eq!(
            v.auth,
            VaultAuthSection::Token(CredentialFrom::Env("VAULT_TOKEN".into()))
        );
    }

    #[test]
    fn approle_reads_both_ids_from_named_sources() {
        let s = parse(
            "[secrets.vault]\naddress = \"https://v:8200\"\nauth = \"approle\"\nrole_id_file = \"/etc/warden/role-id\"\nsecret_id_env = \"WARDEN_SECRET_ID\"\n",
        )
        .unwrap();
        assert_eq!(
            s.vault.unwrap().auth,
            VaultAuthSection::AppRole {
                mount: "approle".into(),
                role_id: CredentialFrom::File("/etc/warden/role-id".into()),
                secret_id: CredentialFrom::Env("WARDEN_SECRET_ID".into()),
            }
        );
    }

    #[test]
    fn credentials_themselves_are_refused_with_a_reason() {
        for (text, needle) in [
            ("token = \"hvs.abc\"\n", "unknown field `token`"),
            (
                "token_env = \"hvs.abc-def\"\n",
                "not the Vault token itself",
            ),
            ("", "needs token_file"),
            ("token_env = \"A\"\ntoken_file = \"f\"\n", "not both"),
            (
                "auth = \"approle\"\nrole_id_env = \"R\"\n",
                "needs secret_id_file",
            ),
            (
                "token_env = \"A\"\nsecret_id_env = \"S\"\n",
                "set auth = \"approle\"",
            ),
        ] {
            let e = parse(&format!(
                "[secrets.vault]\naddress = \"https://v:8200\"\n{text}"
            ))
            .unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains("hvs.abc"), "a credential was echoed: {e}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(
            parse("[secrets.vault]\naddress = \"http://vault.example.org\"\ntoken_env = \"T\"\n")
                .unwrap_err()
                .contains("https://")
        );
        parse("[secrets.vault]\naddress = \"http://127.0.0.1:8200\"\ntoken_env = \"T\"\n").unwrap();
    }

    #[test]
    fn the_passphrase_is_named_by_file_never_given() {
        let s = parse("[secrets.file]\npassphrase_file = \"/etc/warden/passphrase\"\n").unwrap();
        assert_eq!(
            s.file.passphrase_file.as_deref(),
            Some(std::path::Path::new("/etc/warden/passphrase"))
        );
        assert_eq!(parse("[secrets]\n").unwrap().file.passphrase_file, None);
        let e = parse("[secrets.file]\npassphrase = \"hunter2hunter2\"\n").unwrap_err();
        assert!(e.contains("unknown field `passphrase`"), "{e}");
        assert!(!e.contains("hunter2"), "the passphrase was echoed: {e}");
    }

    #[test]
    fn a_backend_needs_its_table() {
        let e = parse("[secrets]\nbackend = \"aws\"\n").unwrap_err();
        assert!(e.contains("needs a [secrets.aws] table"), "{e}");
        let s = parse("[secrets]\nbackend = \"aws\"\n[secrets.aws]\nregion = \"eu-central-1\"\n")
            .unwrap();
        let a = s.aws.unwrap();
        assert_eq!(
            (a.prefix.as_str(), a.recovery_window_days),
            ("redcap-warden/", 30)
        );
        assert!(
            parse("[secrets.aws]\nsecret_access_key = \"x\"\n")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
