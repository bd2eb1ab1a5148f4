//! The sections the gateway reads: `[gateway]` (listeners and limits),
//! `[[study]]` with its `[[study.site]]`s (each bound to a REDCap Data Access
//! Group by its numeric id — unique DAG names change when a DAG is renamed),
//! `[[account]]` (REDCap service accounts and the secret holding each
//! token) and `[[client]]` (the applications that call through the gateway,
//! and what each may do).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::Problem;

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Where clients connect (REDCap's protocol: POST /api/).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve clients over TLS with this certificate chain (PEM); needs
    /// `tls_key`. Without both, the client listener speaks plain HTTP —
    /// acceptable only on loopback or behind a TLS-terminating proxy.
    #[serde(default)]
    pub tls_cert: Option<Spanned<PathBuf>>,
    /// The certificate's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<Spanned<PathBuf>>,
    /// The admin listener (health, metrics, reload); keep it off networks
    /// clients can reach.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// PHP's `max_input_vars`: REDCap silently drops fields past it, so the
    /// gateway refuses such requests instead.
    #[serde(default = "default_max_input_vars")]
    pub max_input_vars: usize,
    /// PHP's `max_input_nesting_level`: a name with more `[…]` groups
    /// deletes its whole variable in REDCap; the gateway models that.
    #[serde(default = "default_max_input_nesting_level")]
    pub max_input_nesting_level: usize,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// How long a token read from the secrets store is used before the
    /// store is asked again.
    #[serde(default = "default_token_cache_seconds")]
    pub token_cache_seconds: u64,
    /// Client keys (only their SHA-256) and their expiry and revocation.
    #[serde(default = "default_keys_file")]
    pub keys_file: PathBuf,
    /// Accounts the gateway has quarantined, until an operator releases them.
    #[serde(default = "default_accounts_file")]
    pub accounts_file: PathBuf,
    /// The admin listener's bearer credential (0600), created at first
    /// start; the CLI reads it to reach a running gateway.
    #[serde(default = "default_admin_token_file")]
    pub admin_token_file: PathBuf,
    /// How long a newly issued client key is valid.
    #[serde(default = "default_key_lifetime_days")]
    pub key_lifetime_days: u32,
    /// When a client's key is re-issued, how long the old one keeps working.
    #[serde(default = "default_key_overlap_days")]
    pub key_overlap_days: u32,
    /// Calls per sliding 60 s window to REDCap (all of redcap-warden's
    /// calls together); REDCap permanently bans an IP past its own limit.
    #[serde(default = "default_outbound_per_minute")]
    pub outbound_per_minute: u32,
    /// The longest a single-account cut-over may hold an account's
    /// requests before they are refused and the hold ends.
    #[serde(default = "default_cutover_hold_seconds")]
    pub cutover_hold_seconds: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            admin_listen: default_admin_listen(),
            max_input_vars: default_max_input_vars(),
            max_input_nesting_level: default_max_input_nesting_level(),
            max_body_bytes: default_max_body_bytes(),
            token_cache_seconds: default_token_cache_seconds(),
            keys_file: default_keys_file(),
            accounts_file: default_accounts_file(),
            admin_token_file: default_admin_token_file(),
            key_lifetime_days: default_key_lifetime_days(),
            key_overlap_days: default_key_overlap_days(),
            outbound_per_minute: default_outbound_per_minute(),
            cutover_hold_seconds: default_cutover_hold_seconds(),
        }
    }
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8470".parse().expect("valid")
}
fn default_admin_listen() -> SocketAddr {
    "127.0.0.1:8471".parse().expect("valid")
}
fn default_max_input_vars() -> usize {
    1000
}
fn default_max_input_nesting_level() -> usize {
    64
}
fn default_max_body_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_token_cache_seconds() -> u64 {
    300
}
fn default_keys_file() -> PathBuf {
    "data/client-keys.json".into()
}
fn default_accounts_file() -> PathBuf {
    "data/account-status.json".into()
}
fn default_admin_token_file() -> PathBuf {
    "data/gateway-admin-token".into()
}
fn default_key_lifetime_days() -> u32 {
    90
}
fn default_key_overlap_days() -> u32 {
    7
}
fn default_outbound_per_minute() -> u32 {
    300
}
fn default_cutover_hold_seconds() -> u64 {
    120
}

/// `[[study]]`: one REDCap project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    pub name: Spanned<String>,
    /// REDCap's project id, checked against the project info a token returns.
    pub project_id: Option<u64>,
    #[serde(default)]
    pub site: Vec<SiteSection>,
}

/// `[[study.site]]`: a site of a multi-site study, bound to one DAG.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    pub name: Spanned<String>,
    /// The DAG's numeric `data_access_group_id` (stable across renames).
    pub dag_id: u64,
}

/// `[[account]]`: a REDCap service account and where its token is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// The name clients and the ledger use.
    pub name: Spanned<String>,
    /// The REDCap username.
    pub username: String,
    /// The secret (in the secrets store) that holds the account's token.
    pub secret: Spanned<String>,
    /// The study (REDCap project) the token belongs to.
    pub study: Spanned<String>,
    /// The site, for a DAG-bound site account.
    pub site: Option<Spanned<String>>,
}

/// Whether a client must give a reason for writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteReason {
    /// Imports and deletes without a reason are refused.
    #[default]
    Required,
    /// A reason is recorded when given.
    Optional,
}

/// `[[client]]`: an application that calls REDCap through the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    pub name: Spanned<String>,
    /// The account whose token its calls use.
    pub account: Spanned<String>,
    /// What it may call: `content` or `content:action`, e.g.
    /// `"record:export"`, `"record:import"`, `"version"` (action export).
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub write_reason: WriteReason,
    /// Source addresses or CIDR ranges allowed to use its key; empty = any.
    #[serde(default)]
    pub sources: Vec<Spanned<String>>,
    /// For clients of site accounts: allow exports whose rows the gateway
    /// cannot check against the site's DAG (reports, PDFs, the file
    /// repository, logging). Off by default: such exports are refused.
    #[serde(default)]
    pub unchecked_exports: bool,
}

/// A `content[:action]` pair from an `allow` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method {
    pub content: redcap::Content,
    pub action: redcap::Action,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method, String> {
        let (content, action) = s.split_once(':').unwrap_or((s, "export"));
        let content = redcap::Content::parse(content).ok_or_else(|| {
            let known: Vec<&str> = redcap::Content::ALL.iter().map(|c| c.as_str()).collect();
            format!(
                "`{content}` is not a REDCap API content; known: {}",
                known.join(", ")
            )
        })?;
        let action = redcap::Action::parse(action).ok_or_else(|| {
            format!("`{action}` is not a REDCap API action (export, import, delete, switch, rename, randomize, list, createFolder, import_app)")
        })?;
        Ok(Method { content, action })
    }
}

/// A source address allow-list entry: an address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl SourceRange {
    pub fn parse(s: &str) -> Result<SourceRange, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length outside 0..={max}"))?,
        };
        Ok(SourceRange { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// Cross-references between sections: every name unique, every reference
/// resolvable, every allow entry and source parseable.
pub(crate) fn validate(config: &crate::Config, text: &str, problems: &mut Vec<Problem>) {
    if config.gateway.tls_cert.is_none() && !config.gateway.listen.ip().is_loopback() {
        problems.push(Problem {
            line: 0,
            column: 0,
            field: Some("gateway.listen".into()),
            message: format!(
                "the client listener {} is not on loopback but has no TLS: client keys would cross the network in clear",
                config.gateway.listen
            ),
            fix: "set tls_cert and tls_key, or listen on 127.0.0.1 behind a TLS-terminating proxy".into(),
        });
    }
    let mut push = |span: std::ops::Range<usize>, field: String, message: String, fix: String| {
        problems.push(Problem::at_offset(
            text,
            span.start,
            Some(field),
            message,
            fix,
        ));
    };
    let gw = &config.gateway;
    match (&gw.tls_cert, &gw.tls_key) {
        (Some(c), None) => push(
            c.span(),
            "gateway.tls_cert".into(),
            "tls_cert is set without tls_key".into(),
            "set tls_key to the certificate's private key file, or remove tls_cert".into(),
        ),
        (None, Some(k)) => push(
            k.span(),
            "gateway.tls_key".into(),
            "tls_key is set without tls_cert".into(),
            "set tls_cert to the certificate chain file, or remove tls_key".into(),
        ),
        _ => {}
    }
    unique(config.study.iter().map(|s| &s.name), "study", &mut push);
    unique(config.account.iter().map(|a| &a.name), "account", &mut push);
    unique(config.client.iter().map(|c| &c.name), "client", &mut push);
    for study in &config.study {
        unique(study.site.iter().map(|s| &s.name), "study.site", &mut push);
    }
    for account in &config.account {
        let study = config
            .study
            .iter()
            .find(|s| s.name.get_ref() == account.study.get_ref());
        match study {
            None => push(
                account.study.span(),
                "account.study".into(),
                format!(
                    "account `{}` names study `{}`, which is not defined",
                    account.name.get_ref(),
                    account.study.get_ref()
                ),
                "add a [[study]] with that name or correct the name".into(),
            ),
            Some(study) => {
                if let Some(site) = &account.site
                    && !study
                        .site
                        .iter()
                        .any(|s| s.name.get_ref() == site.get_ref())
                {
                    push(
                        site.span(),
                        "account.site".into(),
                        format!(
                            "study `{}` has no site `{}`",
                            study.name.get_ref(),
                            site.get_ref()
                        ),
                        "add a [[study.site]] with that name under the study, or correct the name"
                            .into(),
                    );
                }
            }
        }
        if let Err(e) = ::secrets::SecretName::new(account.secret.get_ref()) {
            push(
                account.secret.span(),
                "account.secret".into(),
                e,
                "use lower-case letters, digits and - _ . /, e.g. \"redcap/heart/site-a/etl\""
                    .into(),
            );
        }
    }
    for client in &config.client {
        if !config
            .account
            .iter()
            .any(|a| a.name.get_ref() == client.account.get_ref())
        {
            push(
                client.account.span(),
                "client.account".into(),
                format!(
                    "client `{}` names account `{}`, which is not defined",
                    client.name.get_ref(),
                    client.account.get_ref()
                ),
                "add an [[account]] with that name or correct the name".into(),
            );
        }
        if client.allow.is_empty() {
            push(
                client.name.span(),
                "client.allow".into(),
                format!("client `{}` is allowed nothing", client.name.get_ref()),
                "list what it may call, e.g. allow = [\"record:export\"]".into(),
            );
        }
        for entry in &client.allow {
            if let Err(e) = Method::parse(entry.get_ref()) {
                push(
                    entry.span(),
                    "client.allow".into(),
                    e,
                    "write `content` or `content:action`, e.g. \"record:import\"".into(),
                );
            }
        }
        for source in &client.sources {
            if let Err(e) = SourceRange::parse(source.get_ref()) {
                push(
                    source.span(),
                    "client.sources".into(),
                    e,
                    "write an address or CIDR range, e.g. \"10.1.2.0/24\"".into(),
                );
            }
        }
    }
}

fn unique<'a>(
    names: impl Iterator<Item = &'a Spanned<String>>,
    what: &str,
    push: &mut impl FnMut(std::ops::Range<usize>, String, String, String),
) {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if seen.contains(&name.get_ref().as_str()) {
            push(
                name.span(),
                format!("{what}.name"),
                format!("{what} `{}` is defined twice", name.get_ref()),
                "give each one a distinct name".into(),
            );
        }
        seen.push(name.get_ref());
        if name.get_ref().is_empty()
            || !name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            push(
                name.span(),
                format!("{what}.name"),
                format!(
                    "{what} name `{}` must be letters, digits, - and _",
                    name.get_ref()
                ),
                "rename it, e.g. \"site-a\"".into(),
            );
        }
    }
}
