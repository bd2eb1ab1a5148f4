//! `[[profile]]`: a rights profile, the REDCap rights an account may hold
//! (deny by default: every right a profile does not grant must be 0).
//!
//! Entries are short strings so a profile reads like the rights page:
//! `grant = ["api_export", "user_rights=2"]`, `forms = ["*:read_only",
//! "consent:no_access"]`, `forms_export = ["*:de_identified"]`. Each is
//! parsed here, once, into the [`redcap::rights`] types; `*` stands for
//! every instrument of the project, a named instrument overrides it.

use redcap::rights::{ExportRight, FormRight, Rights};
use serde::Deserialize;

/// The profiles built into the tool (defined in `governance::rights`),
/// which a `[[profile]]` may extend and an account may name directly.
pub const BUILT_IN_PROFILES: &[&str] = &[
    "site-data-read",
    "site-data-import",
    "rights-manager",
    "log-reader",
];

/// `[[profile]]`: the rights an account may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSection {
    /// `name`: unique, letters, digits, `-` and `_`, not a built-in's name.
    pub name: String,
    /// A built-in or another `[[profile]]` whose grants this one adds to.
    pub extends: Option<String>,
    /// Privilege attributes granted: `name` (value 1) or `name=value`.
    #[serde(default)]
    pub grant: Vec<Grant>,
    /// Per-instrument data viewing rights: `instrument:right`.
    #[serde(default)]
    pub forms: Vec<FormGrant>,
    /// Per-instrument data export rights: `instrument:right`.
    #[serde(default)]
    pub forms_export: Vec<ExportGrant>,
}

/// One granted privilege attribute (§4.3), e.g. `user_rights=2`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Grant {
    /// The attribute's API name.
    pub right: String,
    /// The highest value it may have (1 for a plain name).
    pub value: u8,
}

impl Grant {
    /// Parses `name` or `name=value`.
    pub fn parse(s: &str) -> Result<Grant, String> {
        let (name, value) = match s.split_once('=') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => (s.trim(), "1"),
        };
        if matches!(name, "forms" | "forms_export") {
            return Err(format!(
                "`{name}` is not granted in `grant`: per-instrument rights have their own list, {name} = [\"*:...\"]"
            ));
        }
        if !Rights::is_attribute(name) {
            return Err(format!("`{name}` is not a REDCap user right"));
        }
        let mut probe = Rights::default();
        probe
            .set_attribute(name, value)
            .map_err(|e| format!("`{s}`: {e}"))?;
        let value = probe
            .attribute(name)
            .filter(|_| !value.is_empty())
            .ok_or_else(|| format!("`{s}`: `{value}` is not a value of {name}"))?;
        if value == 0 {
            return Err(format!(
                "`{s}` grants nothing: every right a profile does not grant must already be 0"
            ));
        }
        Ok(Grant {
            right: name.to_string(),
            value,
        })
    }
}

impl TryFrom<String> for Grant {
    type Error = String;
    fn try_from(s: String) -> Result<Grant, String> {
        Grant::parse(&s)
    }
}

/// The names a form right is written with in a profile.
pub const FORM_RIGHT_NAMES: &[(&str, FormRight)] = &[
    ("no_access", FormRight::NoAccess),
    ("read_only", FormRight::ReadOnly),
    ("view_edit", FormRight::ViewEdit),
    ("view_edit_responses", FormRight::ViewEditResponses),
    ("view_edit_delete", FormRight::ViewEditDelete),
    (
        "view_edit_responses_delete",
        FormRight::ViewEditResponsesDelete,
    ),
];

/// The names an export right is written with in a profile.
pub const EXPORT_RIGHT_NAMES: &[(&str, ExportRight)] = &[
    ("no_access", ExportRight::NoAccess),
    ("de_identified", ExportRight::DeIdentified),
    ("remove_identifiers", ExportRight::RemoveIdentifiers),
    ("full_data_set", ExportRight::FullDataSet),
];

/// `instrument:right` for data viewing; `*` is every instrument.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FormGrant {
    /// The instrument's name, or `*` for every instrument.
    pub form: String,
    /// The highest data viewing right it may have.
    pub right: FormRight,
}

/// `instrument:right` for data export; `*` is every instrument.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ExportGrant {
    /// The instrument's name, or `*` for every instrument.
    pub form: String,
    /// The highest data export right it may have.
    pub right: ExportRight,
}

fn split_form(s: &str) -> Result<(&str, &str), String> {
    let (form, right) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `instrument:right`"))?;
    let form = form.trim();
    if form.is_empty()
        || !(form == "*"
            || form
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(format!(
            "`{form}` is not an instrument name (lower-case letters, digits and _) or *"
        ));
    }
    Ok((form, right.trim()))
}

fn names_of<T>(names: &[(&str, T)]) -> String {
    names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

impl FormGrant {
    /// Parses `instrument:right`, the right a name or either numeric
    /// encoding (legacy 0–3 or the bitmask 128–154).
    pub fn parse(s: &str) -> Result<FormGrant, String> {
        let (form, right) = split_form(s)?;
        let right = FORM_RIGHT_NAMES
            .iter()
            .find(|(n, _)| *n == right)
            .map(|(_, r)| *r)
            .or_else(|| FormRight::from_wire(right))
            .ok_or_else(|| {
                format!(
                    "`{right}` is not a data viewing right (one of {})",
                    names_of(FORM_RIGHT_NAMES)
                )
            })?;
        Ok(FormGrant {
            form: form.to_string(),
            right,
        })
    }
}

impl TryFrom<String> for FormGrant {
    type Error = String;
    fn try_from(s: String) -> Result<FormGrant, String> {
        FormGrant::parse(&s)
    }
}

impl ExportGrant {
    /// Parses `instrument:right`, the right a name or its code 0–3.
    pub fn parse(s: &str) -> Result<ExportGrant, String> {
        let (form, right) = split_form(s)?;
        let right = EXPORT_RIGHT_NAMES
            .iter()
            .find(|(n, _)| *n == right)
            .map(|(_, r)| *r)
            .or_else(|| ExportRight::from_wire(right))
            .ok_or_else(|| {
                format!(
                    "`{right}` is not a data export right (one of {})",
                    names_of(EXPORT_RIGHT_NAMES)
                )
            })?;
        Ok(ExportGrant {
            form: form.to_string(),
            right,
        })
    }
}

impl TryFrom<String> for ExportGrant {
    type Error = String;
    fn try_from(s: String) -> Result<ExportGrant, String> {
        ExportGrant::parse(&s)
    }
}

/// The checks of profiles and of the references to them: entries that
/// parse, `extends` and account `profile` that resolve (without a loop), a
/// profile on every site account, and a study's `rights_manager` that is an
/// account of that study without a site.
pub(crate) fn validate(
    doc: &toml::de::DeTable<'_>,
    text: &str,
    problems: &mut Vec<crate::Problem>,
) {
    use crate::schema::{str_at, strs_at, tables_at};
    let mut push = |span: std::ops::Range<usize>, field: String, message: String, fix: String| {
        problems.push(crate::Problem::at_offset(
            text,
            span.start,
            Some(field),
            message,
            fix,
        ));
    };
    let line_of = |span: &std::ops::Range<usize>| crate::problem::line_column(text, span.start).0;
    let profiles = tables_at(doc, "profile");
    let accounts = tables_at(doc, "account");
    let names = crate::gateway::names(&profiles, "profile", "profile", &mut push, &line_of);
    let known = |name: &str| {
        BUILT_IN_PROFILES.contains(&name)
            || profiles
                .iter()
                .any(|(_, p, _)| str_at(p, "name").is_some_and(|(n, _)| n == name))
    };
    let known_list = || {
        let mut all: Vec<String> = BUILT_IN_PROFILES.iter().map(|s| s.to_string()).collect();
        all.extend(names.iter().flatten().map(|s| s.to_string()));
        all.join(", ")
    };
    for (i, profile, _) in &profiles {
        let name = str_at(profile, "name");
        if let Some((n, span)) = &name
            && BUILT_IN_PROFILES.contains(n)
        {
            push(
                span.clone(),
                format!("profile[{i}].name"),
                format!("profile `{n}` has the name of a built-in profile"),
                format!(
                    "give it another name and write extends = \"{n}\" to build on the built-in one"
                ),
            );
        }
        for (j, entry, span) in strs_at(profile, "grant").unwrap_or_default() {
            if let Err(e) = Grant::parse(entry) {
                push(
                    span,
                    format!("profile[{i}].grant[{j}]"),
                    e,
                    "write a right of REDCap's Export Users, alone for 1 or as name=value, e.g. \"api_export\" or \"user_rights=2\" (docs/configuration.md lists them)".into(),
                );
            }
        }
        for (j, entry, span) in strs_at(profile, "forms").unwrap_or_default() {
            if let Err(e) = FormGrant::parse(entry) {
                push(
                    span,
                    format!("profile[{i}].forms[{j}]"),
                    e,
                    format!(
                        "write instrument:right (or *:right for every instrument), the right one of {}",
                        names_of(FORM_RIGHT_NAMES)
                    ),
                );
            }
        }
        for (j, entry, span) in strs_at(profile, "forms_export").unwrap_or_default() {
            if let Err(e) = ExportGrant::parse(entry) {
                push(
                    span,
                    format!("profile[{i}].forms_export[{j}]"),
                    e,
                    format!(
                        "write instrument:right (or *:right for every instrument), the right one of {}",
                        names_of(EXPORT_RIGHT_NAMES)
                    ),
                );
            }
        }
        if let Some((parent, span)) = str_at(profile, "extends") {
            if !known(parent) {
                push(
                    span,
                    format!("profile[{i}].extends"),
                    format!("profile `{parent}` is not defined"),
                    format!(
                        "extend one of {}, or add a [[profile]] with that name",
                        known_list()
                    ),
                );
            } else {
                // Follow the chain; a profile met twice is a loop.
                let mut seen = vec![name.as_ref().map_or("?", |(n, _)| *n)];
                let mut next = Some(parent);
                while let Some(p) = next {
                    if seen.contains(&p) {
                        push(
                            span.clone(),
                            format!("profile[{i}].extends"),
                            format!(
                                "profiles extend each other in a loop: {} → {p}",
                                seen.join(" → ")
                            ),
                            "let one of them extend a built-in profile, or nothing".into(),
                        );
                        break;
                    }
                    seen.push(p);
                    next = profiles
                        .iter()
                        .find(|(_, t, _)| str_at(t, "name").is_some_and(|(n, _)| n == p))
                        .and_then(|(_, t, _)| str_at(t, "extends").map(|(e, _)| e));
                }
            }
        }
    }
    for (i, account, _) in &accounts {
        let account_name = str_at(account, "name").map_or("?", |(n, _)| n);
        match (str_at(account, "profile"), str_at(account, "site")) {
            (Some((profile, span)), _) if !known(profile) => push(
                span,
                format!("account[{i}].profile"),
                format!("account `{account_name}` names profile `{profile}`, which is not defined"),
                format!("name one of {}, or add a [[profile]] with that name", known_list()),
            ),
            (None, Some((_, span))) => push(
                span,
                format!("account[{i}].site"),
                format!(
                    "site account `{account_name}` has no profile, so nothing says which REDCap rights it may hold"
                ),
                "add profile = \"site-data-read\" (or \"site-data-import\", or a [[profile]] of your own) to the account".into(),
            ),
            _ => {}
        }
    }
    for (i, study, _) in tables_at(doc, "study") {
        let study_name = str_at(study, "name").map_or("?", |(n, _)| n);
        let Some((manager, span)) = str_at(study, "rights_manager") else {
            continue;
        };
        let field = format!("study[{i}].rights_manager");
        let Some((_, account, _)) = accounts
            .iter()
            .find(|(_, a, _)| str_at(a, "name").is_some_and(|(n, _)| n == manager))
        else {
            push(
                span,
                field,
                format!("study `{study_name}` names rights manager `{manager}`, which is not an [[account]]"),
                "add an [[account]] for the REDCap user whose token reads this project's rights (User Rights and API Export), or correct the name".into(),
            );
            continue;
        };
        if str_at(account, "study").is_some_and(|(s, _)| s != study_name) {
            push(
                span.clone(),
                field.clone(),
                format!("rights manager `{manager}` is an account of another study"),
                "name an account of this study: a token reads the rights of its own project only"
                    .into(),
            );
        }
        if str_at(account, "site").is_some() {
            push(
                span,
                field,
                format!("rights manager `{manager}` is a site account"),
                "use an account without a site: REDCap lets a DAG member see only its own DAG's users".into(),
            );
        }
    }
}
