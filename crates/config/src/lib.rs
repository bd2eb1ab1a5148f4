//! `warden.toml`, the one configuration file of redcap-warden.
//!
//! The file is parsed in two passes. Serde (with `deny_unknown_fields`
//! everywhere) turns the text into typed sections; then [`validate`] checks
//! what types alone cannot say (a REDCap URL that ends in `/api/`, a time zone
//! that exists). Both passes report [`Problem`]s that carry the line, column
//! and dotted field name, plus a sentence saying how to fix it, because the
//! people editing this file run clinical-trial infrastructure and should never
//! have to guess what a parser meant.
//!
//! No secret is ever part of this file: tokens live in the secrets store.
//! Each feature adds its own section here (see `docs/configuration.md`).

mod diff;
mod export;
mod gateway;
mod ledger;
mod problem;
mod secrets;
mod sections;

use std::path::{Path, PathBuf};

pub use diff::field_diff;
pub use export::*;
pub use gateway::*;
pub use ledger::*;
pub use problem::{ConfigError, LoadError, Problem};
pub use secrets::*;
pub use sections::*;
use toml::Spanned;

/// The whole of `warden.toml`, validated.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The REDCap server the tool governs.
    pub redcap: RedcapSection,
    /// Where REDCap tokens and the tool's own keys are kept.
    #[serde(default)]
    pub secrets: SecretsSection,
    /// The audit ledger; `init` writes this section.
    pub ledger: Option<LedgerSection>,
    /// The gateway's listeners and limits.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// REDCap projects, each with its sites.
    #[serde(default)]
    pub study: Vec<StudySection>,
    /// REDCap service accounts and the secrets holding their tokens.
    #[serde(default)]
    pub account: Vec<AccountSection>,
    /// Applications calling REDCap through the gateway.
    #[serde(default)]
    pub client: Vec<ClientSection>,
}

/// A loaded configuration together with where it came from, so relative
/// paths inside it resolve against the file's directory, not the caller's.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
    /// The file's text as loaded (it holds no secrets), for diffs.
    pub text: String,
    /// SHA-256 of the file's bytes, hex; recorded in ledger entries so an
    /// inspector can tell which configuration was in force.
    pub sha256: String,
}

impl LoadedConfig {
    /// Resolves a path written in the file relative to the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let text = String::from_utf8_lossy(&bytes);
        ConfigError::new(
            path,
            vec![Problem::at_offset(
                &text,
                offset,
                None,
                "the file is not valid UTF-8".into(),
                "save the file as UTF-8 text".into(),
            )],
        )
    })?;
    let config = parse(&text, path)?;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        config,
        text: text.clone(),
        sha256: sha256_hex(text.as_bytes()),
    })
}

/// Parses and validates configuration text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text)
        .map_err(|e| ConfigError::new(path, vec![Problem::from_toml(text, &e)]))?;
    let problems = validate(&config, text);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(path, problems))
    }
}

/// Checks what serde cannot: every rule here names the field and the fix.
fn validate(config: &Config, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut check =
        |field: &str, value: &Spanned<String>, rule: fn(&str) -> Result<(), String>, fix: &str| {
            if let Err(message) = rule(value.get_ref()) {
                problems.push(Problem::at_offset(
                    text,
                    value.span().start,
                    Some(field.to_string()),
                    message,
                    fix.to_string(),
                ));
            }
        };
    check(
        "redcap.url",
        &config.redcap.url,
        sections::check_redcap_url,
        "write the API address of your REDCap server, e.g. url = \"https://redcap.example.org/api/\"",
    );
    check(
        "redcap.time_zone",
        &config.redcap.time_zone,
        sections::check_time_zone,
        "write the IANA name of the REDCap server's time zone, e.g. time_zone = \"Europe/Berlin\"",
    );
    if let Some(l) = &config.ledger {
        check(
            "ledger.verifier_key",
            &l.verifier_key,
            ledger::check_verifier_key,
            "restore the value `redcap-warden init` wrote, or print it with `redcap-warden ledger public-key` on the machine that holds the signing key",
        );
    }
    gateway::validate(config, text, &mut problems);
    problems
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
