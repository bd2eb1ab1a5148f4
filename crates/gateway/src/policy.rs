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
    /// The `[[account]]`'s name in `warden.toml`; ledger entries, holds
    /// and quarantines name the account by it.
    pub name: String,
    /// The REDCap user the token belongs to.
    pub username: String,
    /// The secret holding the account's token; the gateway injects its
    /// `current` version.
    pub secret: SecretName,
    /// The `[[study]]` (REDCap project) the token opens.
    pub study: String,
    /// The study's site the account is bound to, if any: such an account
    /// must stay restricted to the site's DAG, and the DAG guard checks
    /// its exports.
    pub site: Option<String>,
    /// The site's DAG id, for site accounts.
    pub dag_id: Option<u64>,
    /// For an account of a dual pair (`mode = "dual"`): the pair's key.
    /// Its clients are served by whichever member of the pair is active
    /// (the account status file says which), and so are the partner's.
    pub pair: Option<String>,
}

/// An application and what it may call.
#[derive(Debug, Clone)]
pub struct Client {
    /// The `[[client]]`'s name; client keys are issued to it.
    pub name: String,
    /// The account whose token its calls are forwarded with.
    pub account: Account,
    /// The API methods (`content:action`) it may call; anything else is
    /// refused with a 403 and a `denied` entry.
    pub allow: HashSet<(Content, Action)>,
    /// Whether its imports and deletes must carry a reason
    /// (`X-Warden-Reason` or a `reason` field); without one they get a 400.
    pub write_reason: WriteReason,
    /// The address ranges it may call from; empty means any.
    pub sources: Vec<SourceRange>,
    /// `true` lets a client of a site account make the exports the DAG
    /// guard cannot check ([`unguarded_export`]): an accepted risk of a
    /// leak across sites, still recorded in the ledger.
    pub unchecked_exports: bool,
}

impl Client {
    /// Whether `content:action` is among the methods it may call.
    pub fn allows(&self, content: Content, action: Action) -> bool {
        self.allow.contains(&(content, action))
    }

    /// Whether a request from `ip` falls in its `sources`.
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

/// The policy in force: every client and account of the applied
/// `warden.toml`, by name. A reload replaces it whole.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Clients by name (a client key's `client`).
    pub clients: HashMap<String, Client>,
    /// Accounts by name.
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
                    pair: a.pair_key(),
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
