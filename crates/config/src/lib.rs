//! `warden.toml`, the one configuration file of redcap-warden.
//!
//! The file is parsed into a generic, spanned TOML document first. That is
//! walked against a description of every key and the kind of value it takes
//! (`schema`), and checked for what kinds alone cannot say (a REDCap URL
//! that ends in `/api/`, a time zone that exists, names that are unique and
//! references that resolve). Every problem found is reported, not only the
//! first, each a [`Problem`] with the line, column and full path of the field
//! (`study[1].site[0].dag_id`) plus a sentence saying how to fix it, because
//! the people editing this file run clinical-trial infrastructure and should
//! never have to guess what a parser meant. Only a file without problems is
//! deserialized (serde, `deny_unknown_fields` everywhere) into [`Config`],
//! whose fields are already what they mean — a [`::secrets::SecretName`], a
//! [`Method`], a [`SourceRange`], a [`jiff::tz::TimeZone`], a
//! [`::ledger::VerifierKey`], a [`std::time::Duration`] — so nothing is parsed
//! again, or trusted to have been checked, where it is used.
//!
//! No secret is ever part of this file: tokens live in the secrets store.
//! Each feature adds its own section here (see `docs/configuration.md`).

#![warn(missing_docs)]

mod alerts;
mod diff;
mod export;
mod gateway;
mod ledger;
mod paths;
mod problem;
mod profile;
mod reauth;
mod reconcile;
mod review;
mod rotation;
mod schema;
mod secrets;
mod sections;
mod sop;
mod units;

use std::path::{Path, PathBuf};

pub use alerts::{AlertsSection, DEFAULT_WEBHOOK_HEADER, Severity, SyslogTarget};
pub use diff::field_diff;
pub use export::*;
pub use gateway::*;
pub use ledger::*;
pub use paths::PathsSection;
pub use problem::{ConfigError, LoadError, Problem};
pub use profile::*;
pub use reauth::{APPROVER_KEY_TYPE, Approver, REAUTH_NAMESPACE};
pub use reconcile::ReconcileSection;
pub use review::{REVIEW_NAMESPACE, ReviewSection, Reviewer};
pub use rotation::*;
pub use secrets::*;
pub use sections::*;
pub use sop::*;

/// The whole of `warden.toml`, validated, every value in the type it
/// means: secret names, methods, source ranges, the time zone, the
/// verifier key and durations are parsed once, here, and every file of the
/// tool's own that the file leaves out is filled in from `[paths]
/// data_dir`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(from = "Document")]
pub struct Config {
    /// The REDCap server the tool governs.
    pub redcap: RedcapSection,
    /// Where the tool's own files live.
    pub paths: PathsSection,
    /// Where REDCap tokens and the tool's own keys are kept.
    pub secrets: SecretsSection,
    /// The audit ledger; `init` writes this section.
    pub ledger: Option<LedgerSection>,
    /// The gateway's listeners and limits.
    pub gateway: GatewaySection,
    /// REDCap projects, each with its sites.
    pub study: Vec<StudySection>,
    /// Rights profiles accounts are held to.
    pub profile: Vec<ProfileSection>,
    /// REDCap service accounts and the secrets holding their tokens.
    pub account: Vec<AccountSection>,
    /// Applications calling REDCap through the gateway.
    pub client: Vec<ClientSection>,
    /// How token rotations obtain new tokens.
    pub rotation: RotationSection,
    /// How REDCap's log is paired with the ledger.
    pub reconcile: ReconcileSection,
    /// The token-management SOP (`redcap-warden sop`).
    pub sop: Option<SopSection>,
    /// Who may sign audit-trail reviews (`redcap-warden review sign`).
    pub review: ReviewSection,
    /// Where alerts go besides the ledger (webhook, syslog).
    pub alerts: AlertsSection,
}

/// The file as written: [`Config`] before the files it leaves out are
/// derived from the data directory.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    redcap: RedcapSection,
    #[serde(default)]
    paths: PathsSection,
    #[serde(default)]
    secrets: SecretsSection,
    ledger: Option<LedgerSection>,
    #[serde(default)]
    gateway: GatewaySection,
    #[serde(default)]
    study: Vec<StudySection>,
    #[serde(default)]
    profile: Vec<ProfileSection>,
    #[serde(default)]
    account: Vec<AccountSection>,
    #[serde(default)]
    client: Vec<ClientSection>,
    #[serde(default)]
    rotation: RotationSection,
    #[serde(default)]
    reconcile: ReconcileSection,
    sop: Option<SopSection>,
    #[serde(default)]
    review: ReviewSection,
    #[serde(default)]
    alerts: AlertsSection,
}

impl From<Document> for Config {
    fn from(mut doc: Document) -> Config {
        let data_dir = &doc.paths.data_dir;
        doc.secrets.file.derive_paths(data_dir);
        if let Some(ledger) = &mut doc.ledger {
            ledger.derive_paths(data_dir);
        }
        doc.gateway.derive_paths(data_dir);
        Config {
            redcap: doc.redcap,
            paths: doc.paths,
            secrets: doc.secrets,
            ledger: doc.ledger,
            gateway: doc.gateway,
            study: doc.study,
            profile: doc.profile,
            account: doc.account,
            client: doc.client,
            rotation: doc.rotation,
            reconcile: doc.reconcile,
            sop: doc.sop,
            review: doc.review,
            alerts: doc.alerts,
        }
    }
}

/// A loaded configuration together with where it came from, so relative
/// paths inside it resolve against the file's directory, not the caller's.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file it was loaded from, as given (relative paths in it resolve
    /// against this file's directory).
    pub path: PathBuf,
    /// The checked configuration.
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

    /// The data directory (`[paths] data_dir`, resolved): where the
    /// gateway's run marker and upload spool live, and every file of the
    /// tool's own the configuration does not place elsewhere.
    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.config.paths.data_dir)
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
///
/// A TOML syntax error stops the parser and is reported alone. Otherwise
/// every problem is collected — unknown keys, wrong types, missing keys and
/// values out of range (`schema::walk`), semantic and cross-reference
/// checks (`validate`), the rules of the sections that check themselves
/// while deserializing (`section_rules`) — and all are returned together,
/// sorted by position. The typed [`Config`] is built only from a file with
/// none.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let doc = toml::de::DeTable::parse(text)
        .map_err(|e| ConfigError::new(path, vec![Problem::from_toml(text, &e)]))?;
    let mut problems = schema::walk(&doc, text);
    validate(doc.get_ref(), text, &mut problems);
    section_rules(text, &mut problems);
    if problems.is_empty() {
        // The walk above describes every key the typed sections accept, so
        // this should not fail; if the two ever disagree, the disagreement
        // is reported like any other problem rather than ignored.
        match toml::from_str::<Config>(text) {
            Ok(config) => return Ok(config),
            Err(e) => problems.push(Problem::from_toml(text, &e)),
        }
    }
    problems.sort_by_key(|p| (p.line, p.column));
    problems.dedup();
    Err(ConfigError::new(path, problems))
}

/// Checks what the kinds of values alone cannot say: every rule here names
/// the field and the fix. Works on the generic document, so it runs even
/// when other parts of the file are broken; a value of the wrong kind is
/// skipped here (the walk reports it).
fn validate(doc: &toml::de::DeTable<'_>, text: &str, problems: &mut Vec<Problem>) {
    let mut check = |field: &str,
                     table: Option<&toml::de::DeTable<'_>>,
                     key: &str,
                     rule: fn(&str) -> Result<(), String>,
                     fix: &str| {
        if let Some((value, span)) = table.and_then(|t| schema::str_at(t, key))
            && let Err(message) = rule(value)
        {
            problems.push(Problem::at_offset(
                text,
                span.start,
                Some(field.to_string()),
                message,
                fix.to_string(),
            ));
        }
    };
    let redcap = schema::table_at(doc, "redcap");
    check(
        "redcap.url",
        redcap,
        "url",
        sections::check_redcap_url,
        "write the API address of your REDCap server, e.g. url = \"https://redcap.example.org/api/\"",
    );
    check(
        "redcap.time_zone",
        redcap,
        "time_zone",
        |name| sections::parse_time_zone(name).map(drop),
        "write the IANA name of the REDCap server's time zone, e.g. time_zone = \"Europe/Berlin\"",
    );
    check(
        "ledger.verifier_key",
        schema::table_at(doc, "ledger"),
        "verifier_key",
        |key| ledger::parse_verifier_key(key).map(drop),
        "restore the value `redcap-warden init` wrote, or print it with `redcap-warden ledger public-key` on the machine that holds the signing key",
    );
    for (section, backend, needs) in [
        (
            "secrets",
            "vault",
            "a [secrets.vault] table (docs/secrets.md lists its keys)",
        ),
        (
            "secrets",
            "aws",
            "a [secrets.aws] table (docs/secrets.md lists its keys)",
        ),
        ("ledger", "postgres", ledger::POSTGRES_NEEDS),
    ] {
        if let Some(table) = schema::table_at(doc, section)
            && let Some((value, span)) = schema::str_at(table, "backend")
            && value == backend
            && table.get(backend).is_none()
        {
            problems.push(Problem::at_offset(
                text,
                span.start,
                Some(format!("{section}.backend")),
                format!("backend = \"{backend}\" needs {needs}"),
                format!("add [{section}.{backend}], or remove the backend line to use the default"),
            ));
        }
    }
    ledger::validate_witness(doc, text, problems);
    gateway::validate(doc, text, problems);
    profile::validate(doc, text, problems);
    rotation::validate(doc, text, problems);
    reconcile::validate(doc, text, problems);
    reauth::validate(doc, text, problems);
    sop::validate(doc, text, problems);
    review::validate(doc, text, problems);
    alerts::validate(doc, text, problems);
}

/// The sections whose own rules run while they are deserialized (which
/// credential source a Vault login uses, a PostgreSQL URL without a
/// password, the export bucket's name…): each is deserialized on its own,
/// so that a broken one does not hide the others. A section with a problem already found inside it is
/// skipped: its deserialization would only repeat that problem.
fn section_rules(text: &str, problems: &mut Vec<Problem>) {
    use serde::Deserialize;

    // Fields are read only by deserializing them (their rules run then).
    #[derive(Deserialize)]
    struct Secrets {
        #[serde(rename = "secrets")]
        _secrets: Option<SecretsPart>,
    }
    #[derive(Deserialize)]
    struct SecretsPart {
        #[serde(rename = "vault")]
        _vault: Option<VaultSecretsSection>,
    }
    #[derive(Deserialize)]
    struct LedgerPostgres {
        #[serde(rename = "ledger")]
        _ledger: Option<LedgerPostgresPart>,
    }
    #[derive(Deserialize)]
    struct LedgerPostgresPart {
        #[serde(rename = "postgres")]
        _postgres: Option<PostgresLedgerSection>,
    }
    #[derive(Deserialize)]
    struct LedgerExport {
        #[serde(rename = "ledger")]
        _ledger: Option<LedgerExportPart>,
    }
    #[derive(Deserialize)]
    struct LedgerExportPart {
        #[serde(rename = "export")]
        _export: Option<ExportSection>,
    }
    fn unit<T: serde::de::DeserializeOwned>(text: &str, field: &str, problems: &mut Vec<Problem>) {
        let inside = |p: &Problem| {
            p.field.as_deref().is_some_and(|f| {
                f == field
                    || f.strip_prefix(field)
                        .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
        };
        if problems.iter().any(inside) {
            return;
        }
        if let Err(e) = toml::from_str::<T>(text) {
            let mut p = Problem::from_toml(text, &e);
            if !p.field.as_deref().is_some_and(|f| f.starts_with(field)) {
                p.field = Some(field.to_string());
            }
            problems.push(p);
        }
    }
    unit::<Secrets>(text, "secrets.vault", problems);
    unit::<LedgerPostgres>(text, "ledger.postgres", problems);
    unit::<LedgerExport>(text, "ledger.export", problems);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
