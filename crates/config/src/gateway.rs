//! The sections the gateway reads: `[gateway]` (listeners and limits),
//! `[[study]]` with its `[[study.site]]`s (each bound to a REDCap Data Access
//! Group by its numeric id — unique DAG names change when a DAG is renamed),
//! `[[account]]` (REDCap service accounts and the secret holding each
//! token) and `[[client]]` (the applications that call through the gateway,
//! and what each may do).

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::de::DeTable;

use ::secrets::SecretName;

use crate::Problem;
use crate::problem::line_column;
use crate::schema::{int_at, str_at, strs_at, table_at, tables_at};

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
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
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
    /// store is asked again (`token_cache_seconds`).
    #[serde(
        rename = "token_cache_seconds",
        default = "default_token_cache",
        deserialize_with = "crate::units::seconds"
    )]
    pub token_cache: Duration,
    /// Client keys (only their SHA-256) and their expiry and revocation;
    /// `<data_dir>/client-keys.json` unless set.
    #[serde(default)]
    pub keys_file: PathBuf,
    /// Accounts the gateway has quarantined, until an operator releases
    /// them; `<data_dir>/account-status.json` unless set.
    #[serde(default)]
    pub accounts_file: PathBuf,
    /// The admin listener's bearer credential (0600), created at first
    /// start; the CLI reads it to reach a running gateway.
    /// `<data_dir>/gateway-admin-token` unless set.
    #[serde(default)]
    pub admin_token_file: PathBuf,
    /// How long a newly issued client key is valid (`key_lifetime_days`).
    #[serde(
        rename = "key_lifetime_days",
        default = "default_key_lifetime",
        deserialize_with = "crate::units::days"
    )]
    pub key_lifetime: SignedDuration,
    /// When a client's key is re-issued, how long the old one keeps working
    /// (`key_overlap_days`).
    #[serde(
        rename = "key_overlap_days",
        default = "default_key_overlap",
        deserialize_with = "crate::units::days"
    )]
    pub key_overlap: SignedDuration,
    /// Calls per sliding 60 s window to REDCap (all of redcap-warden's
    /// calls together); REDCap permanently bans an IP past its own limit.
    #[serde(default = "default_outbound_per_minute")]
    pub outbound_per_minute: u32,
    /// The longest a single-account cut-over may hold an account's
    /// requests before they are refused and the hold ends
    /// (`cutover_hold_seconds`).
    #[serde(
        rename = "cutover_hold_seconds",
        default = "default_cutover_hold",
        deserialize_with = "crate::units::seconds"
    )]
    pub cutover_hold: Duration,
}

impl GatewaySection {
    /// Fills the files left out of `[gateway]` in from the data directory.
    pub(crate) fn derive_paths(&mut self, data_dir: &Path) {
        for (path, name) in [
            (&mut self.keys_file, "client-keys.json"),
            (&mut self.accounts_file, "account-status.json"),
            (&mut self.admin_token_file, "gateway-admin-token"),
        ] {
            crate::paths::derive(path, data_dir, name);
        }
    }
}

impl Default for GatewaySection {
    /// What an absent `[gateway]` means; the files are filled in from the
    /// data directory when the whole file is parsed.
    fn default() -> Self {
        GatewaySection {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            admin_listen: default_admin_listen(),
            max_input_vars: default_max_input_vars(),
            max_input_nesting_level: default_max_input_nesting_level(),
            max_body_bytes: default_max_body_bytes(),
            token_cache: default_token_cache(),
            keys_file: PathBuf::new(),
            accounts_file: PathBuf::new(),
            admin_token_file: PathBuf::new(),
            key_lifetime: default_key_lifetime(),
            key_overlap: default_key_overlap(),
            outbound_per_minute: default_outbound_per_minute(),
            cutover_hold: default_cutover_hold(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8470))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8471))
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
fn default_token_cache() -> Duration {
    Duration::from_secs(300)
}
fn default_key_lifetime() -> SignedDuration {
    crate::units::from_days(90)
}
fn default_key_overlap() -> SignedDuration {
    crate::units::from_days(7)
}
fn default_outbound_per_minute() -> u32 {
    300
}
fn default_cutover_hold() -> Duration {
    Duration::from_secs(120)
}

/// `[[study]]`: one REDCap project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    /// `name`: unique, letters, digits, `-` and `_`; accounts name their
    /// study with it (`[[account]] study`).
    pub name: String,
    /// REDCap's project id, checked against the project info a token returns.
    pub project_id: Option<u64>,
    /// The account (of this study, without a site) whose token reads the
    /// project's user rights for `rights check`.
    pub rights_manager: Option<String>,
    /// Its `[[study.site]]` tables; none for a single-site study.
    #[serde(default)]
    pub site: Vec<SiteSection>,
    /// The account (of this study, without a site) whose token reads the
    /// project's Export Logging for `reconcile` and the API-only check of
    /// `rights check`.
    pub log_reader: Option<String>,
}

/// `[[study.site]]`: a site of a multi-site study, bound to one DAG.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// `name`: unique within the study; accounts bind to it with `site`.
    pub name: String,
    /// The DAG's numeric `data_access_group_id` (stable across renames).
    pub dag_id: u64,
    /// `dag_name`: the DAG's unique group name as last confirmed; a label
    /// `rights check` compares with REDCap's (a rename changes it), never
    /// what the site binds to.
    #[serde(default)]
    pub dag_name: Option<String>,
}

/// `[[account]]`: a REDCap service account and where its token is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// The name clients and the ledger use.
    pub name: String,
    /// The REDCap username.
    pub username: String,
    /// The secret (in the secrets store) that holds the account's token.
    pub secret: SecretName,
    /// The study (REDCap project) the token belongs to.
    pub study: String,
    /// The site, for a DAG-bound site account.
    pub site: Option<String>,
    /// The rights profile (`[[profile]]` or built-in) the account's REDCap
    /// rights must stay within; required for site accounts.
    pub profile: Option<String>,
    /// How many days a token may live before `rotate status` calls it
    /// overdue (90 by default).
    #[serde(default = "crate::rotation::default_rotate_every_days")]
    pub rotate_every_days: u32,
    /// Days an approval lasts: the account lapses when this many pass
    /// without a signed re-approval (`reauth`); `None`: never re-approved.
    pub reauth_every_days: Option<u32>,
    /// Days without a forwarded request after which the account lapses.
    pub lapse_after_inactive_days: Option<u32>,
    /// Who may re-approve the account: SSH public keys as lines of
    /// `allowed_signers` (docs/reauth.md).
    #[serde(default)]
    pub approvers: Vec<crate::Approver>,
    /// `single` (one token; a rotation holds the account's requests
    /// briefly) or `dual` (two REDCap users alternate, zero downtime:
    /// [`AccountSection::partner`] names the other).
    #[serde(default)]
    pub mode: AccountMode,
    /// For `mode = "dual"`: the other `[[account]]` of the pair — same
    /// study, site and profile, its own REDCap user and secret, and
    /// naming this one back. Clients may name either; the gateway serves
    /// them with whichever member is active.
    pub partner: Option<String>,
}

/// How an account's token is replaced (`docs/rotation.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountMode {
    /// One REDCap user, one token: the gateway holds the account's
    /// requests while it is regenerated.
    #[default]
    Single,
    /// Two REDCap users alternate: the standby's token is regenerated
    /// while the active one serves, then the gateway switches.
    Dual,
}

impl AccountMode {
    /// The name as written in `warden.toml` and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountMode::Single => "single",
            AccountMode::Dual => "dual",
        }
    }
}

impl AccountSection {
    /// The pair this account belongs to, named by the member whose name
    /// sorts first (the key of the active member in the account status
    /// file); `None` for a single-mode account.
    pub fn pair_key(&self) -> Option<String> {
        match (self.mode, &self.partner) {
            (AccountMode::Dual, Some(p)) => Some(pair_key(&self.name, p)),
            _ => None,
        }
    }
}

/// The key of the dual pair of accounts `a` and `b`: the name that sorts
/// first. It does not change when the file is reordered.
pub fn pair_key(a: &str, b: &str) -> String {
    if a <= b { a } else { b }.to_string()
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
    /// `name`: unique; the name keys are issued to and the ledger records.
    pub name: String,
    /// The account whose token its calls use.
    pub account: String,
    /// What it may call: `content` or `content:action`, e.g.
    /// `"record:export"`, `"record:import"`, `"version"` (action export).
    pub allow: Vec<Method>,
    /// `write_reason`: whether its imports and deletes need a reason
    /// (`X-Warden-Reason` or a `reason` field); `"required"` by default.
    #[serde(default)]
    pub write_reason: WriteReason,
    /// Source addresses or CIDR ranges allowed to use its key; empty = any.
    #[serde(default)]
    pub sources: Vec<SourceRange>,
    /// For clients of site accounts: allow exports whose rows the gateway
    /// cannot check against the site's DAG (reports, PDFs, the file
    /// repository, logging). Off by default: such exports are refused.
    #[serde(default)]
    pub unchecked_exports: bool,
}

/// A `content[:action]` pair from an `allow` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Method {
    /// REDCap's `content` parameter.
    pub content: redcap::Content,
    /// REDCap's `action` parameter; `export` when the entry names none.
    pub action: redcap::Action,
}

impl Method {
    /// Parses `content` or `content:action`; the error names the unknown
    /// part and lists the known values.
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

impl TryFrom<String> for Method {
    type Error = String;
    fn try_from(s: String) -> Result<Method, String> {
        Method::parse(&s)
    }
}

/// A source address allow-list entry: an address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SourceRange {
    /// The address as written (host bits are not cleared).
    pub addr: std::net::IpAddr,
    /// The prefix length: at most 32 for IPv4, 128 for IPv6; a bare
    /// address has the full length.
    pub prefix: u8,
}

impl SourceRange {
    /// Parses an address or `address/prefix`; the error says which part is
    /// wrong.
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

    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) counts as its IPv4 address.
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

impl TryFrom<String> for SourceRange {
    type Error = String;
    fn try_from(s: String) -> Result<SourceRange, String> {
        SourceRange::parse(&s)
    }
}

/// Cross-references between sections: every name well-formed and unique
/// (studies, accounts, clients, the sites of a study), no two sites of a
/// study on one DAG, no two studies on one REDCap project, no two accounts
/// with one token, every reference resolvable, every allow entry and source
/// parseable, TLS where the client listener is reachable from the network.
/// Runs on the generic document, so it reports alongside the problems of
/// the walk; a value of the wrong kind is skipped here (the walk reports
/// it), and a reference is checked only when every entry it could name has
/// a name.
pub(crate) fn validate(doc: &DeTable<'_>, text: &str, problems: &mut Vec<Problem>) {
    let mut push = |span: Range<usize>, field: String, message: String, fix: String| {
        problems.push(Problem::at_offset(
            text,
            span.start,
            Some(field),
            message,
            fix,
        ));
    };
    let line_of = |span: &Range<usize>| line_column(text, span.start).0;

    if let Some(gw) = table_at(doc, "gateway") {
        if let Some((listen, span)) = str_at(gw, "listen")
            && let Ok(addr) = listen.parse::<SocketAddr>()
            && !addr.ip().is_loopback()
            && gw.get("tls_cert").is_none()
        {
            push(
                span,
                "gateway.listen".into(),
                format!(
                    "the client listener {addr} is not on loopback but has no TLS: client keys would cross the network in clear"
                ),
                "set tls_cert and tls_key, or listen on 127.0.0.1 behind a TLS-terminating proxy"
                    .into(),
            );
        }
        match (gw.get("tls_cert"), gw.get("tls_key")) {
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
    }

    let studies = tables_at(doc, "study");
    let accounts = tables_at(doc, "account");
    let clients = tables_at(doc, "client");
    let study_names = names(&studies, "study", "study", &mut push, &line_of);
    let account_names = names(&accounts, "account", "account", &mut push, &line_of);
    names(&clients, "client", "client", &mut push, &line_of);

    let mut projects: Vec<(i64, String, Range<usize>)> = Vec::new();
    for (i, study, _) in &studies {
        let study_name = str_at(study, "name").map_or("?", |(n, _)| n);
        if let Some((id, span)) = int_at(study, "project_id") {
            if let Some((_, other, first)) = projects.iter().find(|(p, _, _)| *p == id) {
                push(
                    span.clone(),
                    format!("study[{i}].project_id"),
                    format!(
                        "studies `{other}` and `{study_name}` are both REDCap project {id} (first at line {})",
                        line_of(first)
                    ),
                    "each [[study]] is one REDCap project: correct the project_id, or merge the two studies".into(),
                );
            }
            projects.push((id, study_name.to_string(), span));
        }
        let sites = tables_at(study, "site");
        names(
            &sites,
            &format!("study[{i}].site"),
            "site",
            &mut push,
            &line_of,
        );
        let mut dags: Vec<(i64, &str, Range<usize>)> = Vec::new();
        for (j, site, _) in &sites {
            let site_name = str_at(site, "name").map_or("?", |(n, _)| n);
            if let Some((dag, span)) = int_at(site, "dag_id") {
                if let Some((_, other, first)) = dags.iter().find(|(d, _, _)| *d == dag) {
                    push(
                        span.clone(),
                        format!("study[{i}].site[{j}].dag_id"),
                        format!(
                            "sites `{other}` and `{site_name}` of study `{study_name}` are both bound to DAG {dag} (first at line {})",
                            line_of(first)
                        ),
                        "each site is one Data Access Group: write this site's own data_access_group_id (REDCap's API lists them with content=dag)".into(),
                    );
                }
                dags.push((dag, site_name, span));
            }
        }
    }

    let mut secrets: Vec<(&str, &str, Range<usize>)> = Vec::new();
    let mut users: Vec<(&str, &str, &str, Range<usize>)> = Vec::new();
    for (i, account, _) in &accounts {
        let account_name = str_at(account, "name").map_or("?", |(n, _)| n);
        if let Some((study_ref, span)) = str_at(account, "study")
            && let Some(study_names) = &study_names
        {
            match studies
                .iter()
                .find(|(_, s, _)| str_at(s, "name").is_some_and(|(n, _)| n == study_ref))
            {
                None if !study_names.contains(&study_ref) => push(
                    span.clone(),
                    format!("account[{i}].study"),
                    format!(
                        "account `{account_name}` names study `{study_ref}`, which is not defined"
                    ),
                    "add a [[study]] with that name or correct the name".into(),
                ),
                None => {}
                Some((_, study, _)) => {
                    let sites = tables_at(study, "site");
                    let sites_named = sites.iter().all(|(_, s, _)| str_at(s, "name").is_some());
                    if let Some((site_ref, site_span)) = str_at(account, "site")
                        && sites_named
                        && !sites
                            .iter()
                            .any(|(_, s, _)| str_at(s, "name").is_some_and(|(n, _)| n == site_ref))
                    {
                        push(
                            site_span,
                            format!("account[{i}].site"),
                            format!("study `{study_ref}` has no site `{site_ref}`"),
                            "add a [[study.site]] with that name under the study, or correct the name"
                                .into(),
                        );
                    }
                }
            }
            if let Some((username, user_span)) = str_at(account, "username") {
                if let Some((other, _, _, first)) = users
                    .iter()
                    .find(|(_, u, s, _)| *u == username && *s == study_ref)
                {
                    push(
                        user_span.clone(),
                        format!("account[{i}].username"),
                        format!(
                            "accounts `{other}` and `{account_name}` are both REDCap user `{username}` in study `{study_ref}` (first at line {}); REDCap gives a user one token per project",
                            line_of(first)
                        ),
                        "keep one [[account]] per REDCap user and study, and point the clients at it".into(),
                    );
                }
                users.push((account_name, username, study_ref, user_span));
            }
        }
        if let Some((secret, span)) = str_at(account, "secret") {
            match SecretName::new(secret) {
                Err(e) => push(
                    span,
                    format!("account[{i}].secret"),
                    e,
                    "use lower-case letters, digits and - _ . /, e.g. \"redcap/heart/site-a/etl\""
                        .into(),
                ),
                Ok(_) => {
                    if let Some((other, _, first)) = secrets.iter().find(|(_, s, _)| *s == secret) {
                        push(
                            span.clone(),
                            format!("account[{i}].secret"),
                            format!(
                                "accounts `{other}` and `{account_name}` both use secret `{secret}` (first at line {}): one token under two names, so quarantine and the ledger could not tell them apart",
                                line_of(first)
                            ),
                            "give each account the secret holding its own token".into(),
                        );
                    }
                    secrets.push((account_name, secret, span));
                }
            }
        }
    }

    dual_pairs(&accounts, &mut push);

    for (i, client, _) in &clients {
        let client_name = str_at(client, "name");
        let shown = client_name.as_ref().map_or("?", |(n, _)| *n);
        if let Some((account_ref, span)) = str_at(client, "account")
            && account_names
                .as_ref()
                .is_some_and(|names| !names.contains(&account_ref))
        {
            push(
                span,
                format!("client[{i}].account"),
                format!("client `{shown}` names account `{account_ref}`, which is not defined"),
                "add an [[account]] with that name or correct the name".into(),
            );
        }
        if let Some(allow) = strs_at(client, "allow") {
            if let Some(list) = client.get("allow")
                && list.get_ref().as_array().is_some_and(|a| a.is_empty())
            {
                let span = client_name
                    .as_ref()
                    .map_or_else(|| list.span(), |(_, s)| s.clone());
                push(
                    span,
                    format!("client[{i}].allow"),
                    format!("client `{shown}` is allowed nothing"),
                    "list what it may call, e.g. allow = [\"record:export\"]".into(),
                );
            }
            for (j, entry, span) in allow {
                if let Err(e) = Method::parse(entry) {
                    push(
                        span,
                        format!("client[{i}].allow[{j}]"),
                        e,
                        "write `content` or `content:action`, e.g. \"record:import\"".into(),
                    );
                }
            }
        }
        for (j, source, span) in strs_at(client, "sources").unwrap_or_default() {
            if let Err(e) = SourceRange::parse(source) {
                push(
                    span,
                    format!("client[{i}].sources[{j}]"),
                    e,
                    "write an address or CIDR range, e.g. \"10.1.2.0/24\"".into(),
                );
            }
        }
    }
}

/// Dual-mode accounts come in pairs: each names the other as `partner`,
/// and both serve the same study, site and profile (clients may name
/// either, so the two must be interchangeable to REDCap's rights).
fn dual_pairs(
    accounts: &[(usize, &DeTable<'_>, Range<usize>)],
    push: &mut impl FnMut(Range<usize>, String, String, String),
) {
    let find = |name: &str| {
        accounts
            .iter()
            .find(|(_, a, _)| str_at(a, "name").is_some_and(|(n, _)| n == name))
    };
    for (i, account, span) in accounts {
        let name = str_at(account, "name").map_or("?", |(n, _)| n);
        let dual = str_at(account, "mode").is_some_and(|(m, _)| m == "dual");
        let partner = str_at(account, "partner");
        let (partner, partner_span) = match (dual, partner) {
            (false, None) => continue,
            (false, Some((p, pspan))) => {
                push(
                    pspan,
                    format!("account[{i}].partner"),
                    format!("account `{name}` names partner `{p}` but is not mode = \"dual\""),
                    "add mode = \"dual\" to both accounts of the pair, or remove partner".into(),
                );
                continue;
            }
            (true, None) => {
                let at = str_at(account, "mode").map_or(span.clone(), |(_, s)| s);
                push(
                    at,
                    format!("account[{i}].mode"),
                    format!("account `{name}` is mode = \"dual\" without a partner"),
                    "add partner = \"NAME\", the other [[account]] of the pair (its own REDCap user in the same study, site and profile), or use mode = \"single\"".into(),
                );
                continue;
            }
            (true, Some(p)) => p,
        };
        if partner == name {
            push(
                partner_span,
                format!("account[{i}].partner"),
                format!("account `{name}` names itself as its partner"),
                "name the other [[account]] of the pair".into(),
            );
            continue;
        }
        let Some((_, other, _)) = find(partner) else {
            push(
                partner_span,
                format!("account[{i}].partner"),
                format!("account `{name}` names partner `{partner}`, which is not defined"),
                "add the pair's other [[account]] (mode = \"dual\", partner naming this one) or correct the name".into(),
            );
            continue;
        };
        let back = str_at(other, "partner").map(|(p, _)| p);
        let other_dual = str_at(other, "mode").is_some_and(|(m, _)| m == "dual");
        if !other_dual || back != Some(name) {
            push(
                partner_span.clone(),
                format!("account[{i}].partner"),
                format!(
                    "account `{name}` names partner `{partner}`, but `{partner}` {}",
                    match (other_dual, back) {
                        (false, _) => "is not mode = \"dual\"".to_string(),
                        (true, None) => "names no partner".to_string(),
                        (true, Some(b)) => format!("names `{b}` as its partner"),
                    }
                ),
                format!(
                    "give `{partner}` mode = \"dual\" and partner = \"{name}\": a pair names each other"
                ),
            );
            continue;
        }
        // Each difference is reported once, on the member that sorts first.
        if name > partner {
            continue;
        }
        for key in ["study", "site", "profile"] {
            let mine = str_at(account, key).map(|(v, _)| v);
            let theirs = str_at(other, key).map(|(v, _)| v);
            if mine != theirs {
                let shown = |v: Option<&str>| v.map_or("none".to_string(), |v| format!("`{v}`"));
                push(
                    partner_span.clone(),
                    format!("account[{i}].{key}"),
                    format!(
                        "the dual pair `{name}` and `{partner}` differ in {key} ({} and {}): clients of either are served by whichever is active, so both must be the same {key}",
                        shown(mine),
                        shown(theirs)
                    ),
                    format!("give both accounts the same {key}"),
                );
            }
        }
    }
}

/// Checks the `name` of each table of an array (`what` names them in
/// messages): well-formed and not defined twice. Returns every name when
/// each table has one, so references to them can be checked; `None` when
/// some table's name is missing or not a string (the walk reports that,
/// and a reference to it would be a false alarm).
pub(crate) fn names<'a>(
    tables: &[(usize, &'a DeTable<'_>, Range<usize>)],
    path: &str,
    what: &str,
    push: &mut impl FnMut(Range<usize>, String, String, String),
    line_of: &impl Fn(&Range<usize>) -> usize,
) -> Option<Vec<&'a str>> {
    let mut seen: Vec<(&str, Range<usize>)> = Vec::new();
    let mut complete = true;
    for (i, table, _) in tables {
        let Some((name, span)) = str_at(table, "name") else {
            complete = false;
            continue;
        };
        let field = format!("{path}[{i}].name");
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            push(
                span.clone(),
                field.clone(),
                format!(
                    "{what} `{name}` is defined twice (first at line {})",
                    line_of(first)
                ),
                "give each one a distinct name".into(),
            );
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            push(
                span.clone(),
                field,
                format!("{what} name `{name}` must be letters, digits, - and _"),
                "rename it, e.g. \"site-a\"".into(),
            );
        }
        seen.push((name, span));
    }
    complete.then(|| seen.into_iter().map(|(n, _)| n).collect())
}
