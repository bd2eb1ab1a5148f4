//! `[rotation]`: how a rotation obtains an account's new token (its
//! *issuer*), and the per-account rotation period
//! ([`crate::AccountSection::rotate_every_days`]).
//!
//! REDCap has no API to regenerate a token (redcap-api.md §2.1): a person
//! does it in the web UI (`manual`), the REDCap emulator's admin endpoint
//! does it for tests and demos (`sandbox`), or an institution's own program
//! does it (`command`). No credential is ever written here: the sandbox's
//! admin secret is read from a file named here.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::de::DeTable;

use crate::Problem;
use crate::schema::{str_at, strs_at, table_at};

/// Who obtains a new token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// A person regenerates it in REDCap's UI (by default the
    /// administrator's Control Center) and types or pipes it in.
    #[default]
    Manual,
    /// redcap-sandbox's admin endpoint regenerates it.
    Sandbox,
    /// An institution's program prints it on standard output.
    Command,
}

impl IssuerKind {
    /// The name as written in `warden.toml` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Manual => "manual",
            IssuerKind::Sandbox => "sandbox",
            IssuerKind::Command => "command",
        }
    }
}

/// `[rotation]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSection {
    /// The issuer `rotate start` and `rotate run` use unless `--issuer`
    /// names another; `manual` by default.
    #[serde(default)]
    pub issuer: IssuerKind,
    /// The base address of redcap-sandbox (its admin endpoints live under
    /// `/sandbox/`), e.g. `http://127.0.0.1:8480`.
    pub sandbox_url: Option<String>,
    /// A file (mode 0600) holding the sandbox's `--admin-secret`.
    pub sandbox_admin_secret_file: Option<PathBuf>,
    /// The `command` issuer's program and arguments; `{account}`,
    /// `{username}`, `{project_id}` and `{action}` (`create` at enrolment,
    /// else `regenerate`) are replaced. It prints the new token
    /// on standard output; its standard error is shown.
    #[serde(default)]
    pub command: Vec<String>,
    /// A program run after each switch (the SOP's "redeploy"); `{account}`,
    /// `{username}`, `{project_id}`, `{rotation_id}`, `{secret}` and
    /// `{fingerprint}` are replaced. It is never given a token.
    #[serde(default)]
    pub after_switch: Vec<String>,
    /// A URL POSTed a JSON note of each switch (rotation, account, project,
    /// secret, fingerprint — never a token).
    pub after_switch_webhook: Option<String>,
}

/// What a rotation period of an account defaults to.
pub const DEFAULT_ROTATE_EVERY_DAYS: u32 = 90;

pub(crate) fn default_rotate_every_days() -> u32 {
    DEFAULT_ROTATE_EVERY_DAYS
}

/// The issuer's settings must be there for the issuer named.
pub(crate) fn validate(doc: &DeTable<'_>, text: &str, problems: &mut Vec<Problem>) {
    let Some(rotation) = table_at(doc, "rotation") else {
        return;
    };
    let mut push = |span: Range<usize>, field: &str, message: String, fix: &str| {
        problems.push(Problem::at_offset(
            text,
            span.start,
            Some(format!("rotation.{field}")),
            message,
            fix.to_string(),
        ));
    };
    if let Some((url, span)) = str_at(rotation, "sandbox_url")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        push(
            span,
            "sandbox_url",
            format!("`{url}` is not an http:// or https:// address"),
            "write the sandbox's base address, e.g. sandbox_url = \"http://127.0.0.1:8480\"",
        );
    }
    if let Some((url, span)) = str_at(rotation, "after_switch_webhook")
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        push(
            span,
            "after_switch_webhook",
            format!("`{url}` is not an http:// or https:// address"),
            "write the address to POST to, e.g. after_switch_webhook = \"https://deploy.example.org/hooks/redcap-token\"",
        );
    }
    let Some((issuer, span)) = str_at(rotation, "issuer") else {
        return;
    };
    match issuer {
        "sandbox" => {
            for (key, fix) in [
                (
                    "sandbox_url",
                    "add sandbox_url = \"http://127.0.0.1:8480\" (the address redcap-sandbox listens on)",
                ),
                (
                    "sandbox_admin_secret_file",
                    "add sandbox_admin_secret_file = \"data/sandbox-admin-secret\", a 0600 file holding the sandbox's --admin-secret",
                ),
            ] {
                if rotation.get(key).is_none() {
                    push(
                        span.clone(),
                        "issuer",
                        format!("issuer = \"sandbox\" needs {key}"),
                        fix,
                    );
                }
            }
        }
        "command" => {
            let empty = strs_at(rotation, "command").is_none_or(|c| c.is_empty());
            if empty {
                push(
                    span,
                    "issuer",
                    "issuer = \"command\" needs command, the program that prints the new token"
                        .into(),
                    "add command = [\"/usr/local/bin/regenerate-token\", \"{username}\", \"{project_id}\"]",
                );
            }
        }
        _ => {}
    }
}
