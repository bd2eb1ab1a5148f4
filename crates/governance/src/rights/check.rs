//! Live REDCap rights compared with each governed account's profile.
//! Every finding has a severity and one plain line saying what the risk is.

use redcap::rights::{ExportRight, FormRight, UserRights, wire_text};
use serde::Serialize;
use serde_json::{Map, Value};

use super::profile::Profile;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no data is exposed by it alone.
    Warning,
    /// More access than intended.
    High,
    /// Access that defeats the DAG boundary or lets the account change
    /// rights, the project, or records beyond recovery.
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// One thing wrong with an account's live rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// The `[[account]]`, or `None` for a REDCap user no account governs.
    pub account: Option<String>,
    /// The REDCap username (empty for a finding about a site).
    pub username: String,
    /// The `[[study.site]]` a finding about a site names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// A stable short code, e.g. `right-beyond-profile`.
    pub code: &'static str,
    /// What was found, e.g. `design = 1 (profile site-data-read grants 0)`.
    pub detail: String,
    /// The risk, in one plain line.
    pub risk: String,
}

/// A DAG as Export DAGs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDag {
    /// `data_access_group_id`: stable across renames.
    pub id: u64,
    /// The unique name, derived from the label (it changes on a rename).
    pub unique_name: String,
}

/// What the rights manager's token read from one project.
#[derive(Debug, Clone, Default)]
pub struct LiveProject {
    /// Export Users rows as sent (JSON objects), so rights this tool does
    /// not know are seen too.
    pub users: Vec<Map<String, Value>>,
    /// (username, unique role name) for users in a role.
    pub roles: Vec<(String, String)>,
    /// The project's DAGs (Export DAGs).
    pub dags: Vec<LiveDag>,
}

/// A governed account: who it is, its site's DAG, its profile.
#[derive(Debug, Clone)]
pub struct Governed {
    /// The `[[account]]` name.
    pub account: String,
    /// The REDCap username.
    pub username: String,
    /// (site name, dag_id) for a site account.
    pub site: Option<(String, u64)>,
    /// The profile its rights must stay within.
    pub profile: Profile,
}

/// Keys of an Export Users row that are not privileges.
pub(super) const IDENTITY: &[&str] = &[
    "username",
    "email",
    "firstname",
    "lastname",
    "expiration",
    "data_access_group",
    "data_access_group_id",
    "data_access_group_label",
    "forms",
    "forms_export",
];

/// The risk of holding `right` beyond a profile, and its severity.
fn right_risk(right: &str) -> (Severity, &'static str) {
    match right {
        "design" => (
            Severity::Critical,
            "can change the project's instruments and fields, and delete data with them",
        ),
        "user_rights" => (
            Severity::Critical,
            "can change users' rights, its own included, and so lift every other limit",
        ),
        "data_access_groups" => (
            Severity::Critical,
            "can create, rename and reassign Data Access Groups: the site boundary itself",
        ),
        "mobile_app" => (
            Severity::Critical,
            "with mobile_app=1 in a request REDCap grants it design, user rights, DAG and full export rights (§4.8)",
        ),
        "record_delete" => (
            Severity::Critical,
            "can delete records, and REDCap does not check the DAG on API deletes",
        ),
        "record_rename" => (
            Severity::Critical,
            "can rename records, and REDCap does not check the DAG on API renames",
        ),
        "file_repository" => (
            Severity::Critical,
            "can export any uploaded file of the project by its id through the File Repository, whatever its DAG (docs/sandbox.md, File Repository)",
        ),
        "api_import" => (
            Severity::High,
            "can write through the API, which the profile does not allow",
        ),
        "api_export" => (
            Severity::High,
            "can read through the API, which the profile does not allow",
        ),
        "api_modules" => (
            Severity::High,
            "can call External Module actions through the API, which no one reviewed",
        ),
        _ => (
            Severity::Warning,
            "holds a REDCap right the profile does not grant",
        ),
    }
}

/// Whether `live` exceeds `granted` for an attribute: `user_rights` 2
/// (read-only) is less than 1 (full); values without an order (Data
/// Resolution Workflow, Double Data Entry) must match or be 0.
pub(super) fn exceeds(right: &str, live: u8, granted: u8) -> bool {
    match right {
        "user_rights" => {
            let rank = |v: u8| match v {
                0 => 0,
                2 => 1,
                _ => 2,
            };
            rank(live) > rank(granted)
        }
        "data_quality_resolution" | "double_data" => live != 0 && live != granted,
        _ => live > granted,
    }
}

/// The capabilities a data viewing right carries: view, edit, edit survey
/// responses, delete.
pub(super) fn capabilities(r: FormRight) -> [bool; 4] {
    use FormRight::*;
    [
        r != NoAccess,
        r.can_edit(),
        matches!(r, ViewEditResponses | ViewEditResponsesDelete),
        matches!(r, ViewEditDelete | ViewEditResponsesDelete),
    ]
}

fn form_exceeds(live: FormRight, granted: FormRight) -> bool {
    let (l, g) = (capabilities(live), capabilities(granted));
    l.iter().zip(g).any(|(l, g)| *l && !g)
}

pub(super) fn export_rank(r: ExportRight) -> u8 {
    match r {
        ExportRight::NoAccess => 0,
        ExportRight::DeIdentified => 1,
        ExportRight::RemoveIdentifiers => 2,
        ExportRight::FullDataSet => 3,
    }
}

pub(super) fn form_right_name(r: FormRight) -> &'static str {
    warden_config::FORM_RIGHT_NAMES
        .iter()
        .find(|(_, x)| *x == r)
        .map_or("?", |(n, _)| n)
}

pub(super) fn export_right_name(r: ExportRight) -> &'static str {
    warden_config::EXPORT_RIGHT_NAMES
        .iter()
        .find(|(_, x)| *x == r)
        .map_or("?", |(n, _)| n)
}

/// The rights of one Export Users row beyond `profile` (deny by default),
/// and the attributes this tool does not know.
pub fn rights_beyond(
    profile: &Profile,
    row: &Map<String, Value>,
    account: Option<&str>,
) -> Result<Vec<Finding>, redcap::rights::RightsError> {
    let user = UserRights::from_json(row)?;
    let mut out = Vec::new();
    let mut finding = |severity, code, detail: String, risk: &str| {
        out.push(Finding {
            severity,
            account: account.map(str::to_string),
            username: user.username.clone(),
            site: None,
            code,
            detail,
            risk: risk.to_string(),
        })
    };
    for (key, value) in row {
        if IDENTITY.contains(&key.as_str()) {
            continue;
        }
        let Some(live) = user.rights.attribute(key) else {
            if redcap::rights::Rights::is_attribute(key) {
                continue; // a conditional feature that is off
            }
            let shown = wire_text(value).unwrap_or_else(|| "?".into());
            if shown.trim().is_empty() || shown.trim() == "0" {
                continue;
            }
            finding(
                Severity::High,
                "unknown-right",
                format!("{key} = {shown}"),
                "REDCap reports a right this tool does not know (a newer REDCap?); no profile governs what it allows",
            );
            continue;
        };
        let granted = profile.grant(key);
        if exceeds(key, live, granted) {
            let (severity, risk) = right_risk(key);
            finding(
                severity,
                "right-beyond-profile",
                format!(
                    "{key} = {live} (profile `{}` grants {granted})",
                    profile.name
                ),
                risk,
            );
        }
    }
    for (form, live) in &user.rights.forms {
        let granted = profile.form(form);
        if form_exceeds(*live, granted) {
            let deletes = capabilities(*live)[3] && !capabilities(granted)[3];
            finding(
                if deletes {
                    Severity::Critical
                } else {
                    Severity::High
                },
                "form-beyond-profile",
                format!(
                    "forms {form} = {} (profile `{}` allows {})",
                    form_right_name(*live),
                    profile.name,
                    form_right_name(granted)
                ),
                if deletes {
                    "can delete the instrument's data"
                } else {
                    "can see or change an instrument's data beyond what the profile allows"
                },
            );
        }
    }
    for (form, live) in &user.rights.forms_export {
        let granted = profile.form_export(form);
        if export_rank(*live) > export_rank(granted) {
            let full = *live == ExportRight::FullDataSet;
            finding(
                if full {
                    Severity::Critical
                } else {
                    Severity::High
                },
                "export-beyond-profile",
                format!(
                    "forms_export {form} = {} (profile `{}` allows {})",
                    export_right_name(*live),
                    profile.name,
                    export_right_name(granted)
                ),
                if full {
                    "can export the instrument's identifiers (full data set)"
                } else {
                    "can export more of the instrument than the profile allows"
                },
            );
        }
    }
    Ok(out)
}

/// Everything wrong with one governed account in `live`.
pub fn check_account(
    governed: &Governed,
    live: &LiveProject,
) -> Result<Vec<Finding>, redcap::rights::RightsError> {
    let finding = |severity, code, detail: String, risk: &str| Finding {
        severity,
        account: Some(governed.account.clone()),
        username: governed.username.clone(),
        site: None,
        code,
        detail,
        risk: risk.to_string(),
    };
    let Some(row) = live.users.iter().find(|r| {
        r.get("username")
            .and_then(wire_text)
            .is_some_and(|u| u.eq_ignore_ascii_case(&governed.username))
    }) else {
        return Ok(vec![finding(
            Severity::Warning,
            "not-in-project",
            "the REDCap user is not a user of the project".into(),
            "its token cannot work; warden.toml and REDCap disagree about who uses this project",
        )]);
    };
    let mut out = rights_beyond(&governed.profile, row, Some(&governed.account))?;
    let user = UserRights::from_json(row)?;
    if let Some((_, role)) = live
        .roles
        .iter()
        .find(|(u, r)| u.eq_ignore_ascii_case(&governed.username) && !r.is_empty())
    {
        out.push(finding(
            Severity::High,
            "in-role",
            format!("the user is in role {role}"),
            "its rights are the role's: a change to the role changes them, and Import Users cannot correct them",
        ));
    }
    if user.expiration.is_none() {
        out.push(finding(
            Severity::Warning,
            "no-expiration",
            "no project expiration date".into(),
            "its access never ends unless someone remembers to remove it",
        ));
    }
    match (&governed.site, user.data_access_group_id) {
        (Some((site, dag)), None) => out.push(finding(
            Severity::Critical,
            "no-dag",
            format!("not in a Data Access Group (site `{site}` is DAG {dag})"),
            "sees and changes the records of every site",
        )),
        (Some((site, dag)), Some(live_dag)) if live_dag != *dag => out.push(finding(
            Severity::Critical,
            "wrong-dag",
            format!(
                "in DAG {live_dag} ({}), but site `{site}` is DAG {dag}",
                user.data_access_group.as_deref().unwrap_or("?")
            ),
            "sees and changes another site's records",
        )),
        (Some((site, dag)), Some(_)) if !live.dags.iter().any(|d| d.id == *dag) => {
            out.push(finding(
                Severity::Critical,
                "site-dag-missing",
                format!("site `{site}` is bound to DAG {dag}, which the project does not have"),
                "the site boundary the account relies on does not exist",
            ))
        }
        _ => {}
    }
    Ok(out)
}

/// Project users no account governs that hold an API right
/// (`api_export`, `api_import`, `api_modules`, `mobile_app`) or a right
/// over rights (`user_rights`, `data_access_groups`): REDCap lets them do
/// what no profile, gateway or ledger covers.
pub fn ungoverned(governed_usernames: &[&str], live: &LiveProject) -> Vec<Finding> {
    let mut out = Vec::new();
    for row in &live.users {
        let Some(username) = row.get("username").and_then(wire_text) else {
            continue;
        };
        if governed_usernames
            .iter()
            .any(|g| g.eq_ignore_ascii_case(&username))
        {
            continue;
        }
        let held = |keys: &[&'static str]| -> Vec<&'static str> {
            keys.iter()
                .copied()
                .filter(|k| {
                    row.get(*k)
                        .and_then(wire_text)
                        .is_some_and(|v| !matches!(v.trim(), "" | "0"))
                })
                .collect()
        };
        let api = held(&["api_export", "api_import", "api_modules", "mobile_app"]);
        if !api.is_empty() {
            out.push(Finding {
                severity: Severity::Warning,
                account: None,
                username: username.clone(),
                site: None,
                code: "ungoverned-api-access",
                detail: format!("{} with no [[account]] in warden.toml", api.join(", ")),
                risk: "a token may exist for this user that no gateway, profile or ledger covers"
                    .into(),
            });
        }
        let over_rights = held(&["user_rights", "data_access_groups"]);
        if !over_rights.is_empty() {
            out.push(Finding {
                severity: Severity::Warning,
                account: None,
                username,
                site: None,
                code: "ungoverned-rights-access",
                detail: format!(
                    "{} with no [[account]] in warden.toml",
                    over_rights.join(", ")
                ),
                risk: "can change users' rights or the Data Access Groups, so every site boundary depends on this person"
                    .into(),
            });
        }
    }
    out
}

/// A `[[study.site]]` as `rights check` sees it.
#[derive(Debug, Clone)]
pub struct SiteBinding {
    /// The site's name.
    pub name: String,
    /// The DAG it is bound to (`data_access_group_id`).
    pub dag_id: u64,
    /// The DAG's unique name as last confirmed (`dag_name`), if given.
    pub dag_name: Option<String>,
}

/// Sites whose DAG's unique name is no longer the one `warden.toml`
/// records: the DAG was renamed (REDCap recomputes unique names, §5.2).
/// The site stays bound to its `dag_id`; the name is only a label to check.
pub fn renamed_dags(sites: &[SiteBinding], live: &LiveProject) -> Vec<Finding> {
    let mut out = Vec::new();
    for site in sites {
        let (Some(expected), Some(dag)) = (
            &site.dag_name,
            live.dags.iter().find(|d| d.id == site.dag_id),
        ) else {
            continue;
        };
        if dag.unique_name != *expected {
            out.push(Finding {
                severity: Severity::High,
                account: None,
                username: String::new(),
                site: Some(site.name.clone()),
                code: "dag-renamed",
                detail: format!(
                    "DAG {} is now `{}`, not `{expected}` (dag_name in warden.toml)",
                    site.dag_id, dag.unique_name
                ),
                risk: "someone with the DAG right changed the site boundary; anything keyed on the old name now misses it (check REDCap's log, then confirm the new dag_name)"
                    .into(),
            });
        }
    }
    out
}

/// A governed account REDCap does not restrict although its rights say it
/// should: an administrator, who bypasses rights, DAGs and expiration
/// (§1.7). Found as the gateway's DAG guard finds it: an export asked for
/// with `exportDataAccessGroups=true` came back with the DAG column while
/// Export Users shows the account in its DAG.
pub fn administrator(governed: &Governed, evidence: &str) -> Finding {
    Finding {
        severity: Severity::Critical,
        account: Some(governed.account.clone()),
        username: governed.username.clone(),
        site: None,
        code: "administrator",
        detail: format!("the user is a REDCap administrator ({evidence})"),
        risk: "its token ignores rights, the DAG and the expiration date: it reads and changes every site's records"
            .into(),
    }
}

/// Site accounts of different sites that are the same REDCap user: one
/// user has one DAG, so at least one site's calls run in another's DAG.
pub fn shared_accounts(governed: &[Governed]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, a) in governed.iter().enumerate() {
        let Some((site_a, _)) = &a.site else { continue };
        for b in &governed[..i] {
            let Some((site_b, _)) = &b.site else { continue };
            if site_a != site_b && a.username.eq_ignore_ascii_case(&b.username) {
                out.push(Finding {
                    severity: Severity::Critical,
                    account: Some(a.account.clone()),
                    username: a.username.clone(),
                    site: Some(site_a.clone()),
                    code: "shared-account",
                    detail: format!(
                        "site `{site_a}` uses the REDCap user `{}` that `{}` of site `{site_b}` uses",
                        a.username, b.account
                    ),
                    risk: "a REDCap user is in one DAG, so one of the two sites works in the other's DAG"
                        .into(),
                });
            }
        }
    }
    out
}

/// SHA-256 (hex) of the findings as canonical JSON: the ledger records it,
/// so a later run can show whether anything changed.
pub fn digest(findings: &[Finding]) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(findings).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(json))
}

/// A site account and the fingerprint of the token its secret holds
/// (under the installation's fingerprint key; never the value).
pub struct SiteToken<'a> {
    /// The `[[account]]` name.
    pub account: &'a str,
    /// The REDCap username.
    pub username: &'a str,
    /// The account's site.
    pub site: &'a str,
    /// The fingerprint of the token its secret holds now.
    pub fingerprint: &'a secrets::Fingerprint,
}

/// Site accounts of different sites holding the same token (one secret
/// pasted under two names): each site's calls could be made as the other.
pub fn shared_tokens(sites: &[SiteToken<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, a) in sites.iter().enumerate() {
        for b in &sites[..i] {
            if a.site != b.site && a.fingerprint == b.fingerprint {
                out.push(Finding {
                    severity: Severity::Critical,
                    account: Some(a.account.to_string()),
                    username: a.username.to_string(),
                    site: Some(a.site.to_string()),
                    code: "shared-token",
                    detail: format!(
                        "holds the same token (same fingerprint, {}) as `{}` of site `{}`",
                        a.fingerprint, b.account, b.site
                    ),
                    risk: "one token serves two sites, so the DAG boundary between them is gone"
                        .into(),
                });
            }
        }
    }
    out
}

impl Finding {
    /// Whether `rights apply` corrects what this finding reports: rights,
    /// instrument rights, DAG and role of a governed account. The rest
    /// (an administrator, a renamed DAG, shared accounts or tokens,
    /// ungoverned users, unknown rights, expiration) need a person.
    pub fn fixed_by_apply(&self) -> bool {
        self.account.is_some()
            && matches!(
                self.code,
                "right-beyond-profile"
                    | "form-beyond-profile"
                    | "export-beyond-profile"
                    | "in-role"
                    | "no-dag"
                    | "wrong-dag"
            )
    }
}
