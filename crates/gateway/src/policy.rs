//! Who may do what: the clients, accounts and sites of `warden.toml`,
//! compiled into lookup tables the request path consults.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use redcap::{Action, Content};
use secrets::SecretName;
use warden_config::{Config, SourceRange, WriteReason};

/// A REDCap service account the gateway holds a token for.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub username: String,
    pub secret: SecretName,
    pub study: String,
    pub site: Option<String>,
    /// The site's DAG id, for site accounts.
    pub dag_id: Option<u64>,
}

/// An application and what it may call.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    /// The account whose token its calls use.
    pub account: Account,
    pub allow: HashSet<(Content, Action)>,
    pub write_reason: WriteReason,
    pub sources: Vec<SourceRange>,
    pub unchecked_exports: bool,
}

impl Client {
    pub fn allows(&self, content: Content, action: Action) -> bool {
        self.allow.contains(&(content, action))
    }

    pub fn source_allowed(&self, ip: IpAddr) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|r| r.contains(ip))
    }
}

/// Actions that change data in REDCap (and so need a reason when the
/// client's policy asks for one).
pub fn is_write(action: Action) -> bool {
    !matches!(action, Action::Export | Action::List)
}

/// Why the gateway cannot check a site account's export against the site's
/// Data Access Group, if it cannot — and then the answer must not reach a
/// site client unless its policy says `unchecked_exports`: the day the
/// account drifts out of its DAG, whatever the guard cannot read is a leak.
///
/// The guard reads one thing: the `redcap_data_access_group` column REDCap
/// adds to a *flat* record export in json, csv or xml when the caller is
/// not DAG-restricted (`redcap-api.md` §5.5, §6.1). Everything else is
/// refused: the methods below return record data or record-linked content
/// with no such column; an EAV answer is not known to carry the DAG, an ODM
/// answer carries it in a form not documented, and with label headers the
/// DAG column cannot be told from a field.
pub fn unguarded_export(content: Content, form: &crate::form::Form) -> Option<&'static str> {
    match content {
        Content::Record => {
            if form.get("type") == Some("eav") {
                Some(
                    "an EAV record export (export type=flat instead: the same data, and the guard can read it)",
                )
            } else if form.get("format") == Some("odm") {
                Some("an ODM record export (export json, csv or xml instead)")
            } else if form.get("rawOrLabelHeaders") == Some("label") {
                Some("a record export with label headers (export with rawOrLabelHeaders=raw)")
            } else {
                None
            }
        }
        Content::Report => Some("a report export"),
        Content::Pdf => Some("a PDF export"),
        Content::File | Content::FileInfo | Content::FileSize => {
            Some("a file attached to a record")
        }
        Content::FileRepository => Some("a file repository export"),
        Content::Log => Some("a log export"),
        Content::ProjectXml => Some("a project XML export"),
        Content::Tableau => Some("a Tableau export"),
        Content::ParticipantList => Some("a survey participant list"),
        Content::SurveyLink
        | Content::SurveyAccessCode
        | Content::SurveyQueueLink
        | Content::SurveyReturnCode => Some("a record's survey link or code"),
        Content::MyCap => Some("a MyCap export"),
        _ => None,
    }
}

#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub clients: HashMap<String, Client>,
    pub accounts: HashMap<String, Account>,
}

impl Policy {
    /// Builds the tables from a configuration `warden_config` has parsed
    /// (every value already in its type, every reference resolved). A
    /// client whose account is not among the accounts is left out, so it
    /// is refused like any client the file does not name.
    pub fn from_config(config: &Config) -> Policy {
        let mut accounts = HashMap::new();
        for a in &config.account {
            let dag_id = a.site.as_ref().and_then(|site| {
                config
                    .study
                    .iter()
                    .find(|s| s.name == a.study)
                    .and_then(|s| s.site.iter().find(|x| &x.name == site))
                    .map(|x| x.dag_id)
            });
            accounts.insert(
                a.name.clone(),
                Account {
                    name: a.name.clone(),
                    username: a.username.clone(),
                    secret: a.secret.clone(),
                    study: a.study.clone(),
                    site: a.site.clone(),
                    dag_id,
                },
            );
        }
        let mut clients = HashMap::new();
        for c in &config.client {
            let Some(account) = accounts.get(&c.account) else {
                continue;
            };
            clients.insert(
                c.name.clone(),
                Client {
                    name: c.name.clone(),
                    account: account.clone(),
                    allow: c.allow.iter().map(|m| (m.content, m.action)).collect(),
                    write_reason: c.write_reason,
                    sources: c.sources.clone(),
                    unchecked_exports: c.unchecked_exports,
                },
            );
        }
        Policy { clients, accounts }
    }
}
