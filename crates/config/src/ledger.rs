//! `[ledger]`: where the audit ledger lives and the key that verifies it.

use serde::Deserialize;
use toml::Spanned;

/// `[ledger]`. `init` writes it; the verifier key is pinned here so that
/// `ledger verify` never trusts a key found beside the ledger itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// The directory of segment files and checkpoints.
    #[serde(default = "default_dir")]
    pub dir: std::path::PathBuf,
    /// The checkpoint verifier key, `<origin>+<key id>+<base64 key>`.
    pub verifier_key: Spanned<String>,
}

impl LedgerSection {
    /// The pinned key, already validated.
    pub fn verifier_key(&self) -> ledger::VerifierKey {
        ledger::VerifierKey::parse(self.verifier_key.get_ref())
            .expect("validated when the file was loaded")
    }
}

fn default_dir() -> std::path::PathBuf {
    "data/ledger".into()
}

pub(crate) fn check_verifier_key(key: &str) -> Result<(), String> {
    ledger::VerifierKey::parse(key)
        .map(|_| ())
        .map_err(|e| format!("not a verifier key ({e})"))
}
