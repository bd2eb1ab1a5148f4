//! Rights profiles: the REDCap rights an account may hold. Deny by
//! default: a right a profile does not grant must be 0 (no access).

use std::collections::BTreeMap;

use redcap::rights::{ExportRight, FormRight};
use warden_config::{BUILT_IN_PROFILES, ExportGrant, FormGrant, Grant, ProfileSection};

/// A profile with its `extends` chain applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (built-in or `[[profile]]`).
    pub name: String,
    /// The highest value of each granted attribute; absent means 0.
    pub grants: BTreeMap<String, u8>,
    /// Data viewing ceilings in order; a later entry for the same
    /// instrument (or `*`) wins.
    pub forms: Vec<(String, FormRight)>,
    /// Data export ceilings in order; a later entry wins.
    pub forms_export: Vec<(String, ExportRight)>,
}

/// A profile that cannot be built (config check reports these first; this
/// is the error when a caller skips it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No built-in or `[[profile]]` has this name.
    #[error("profile `{0}` is not defined (neither built in nor a [[profile]])")]
    Unknown(String),
    /// The `extends` chain comes back to this profile.
    #[error("profile `{0}` extends itself through its `extends` chain")]
    Loop(String),
}

fn grant(s: &str) -> Grant {
    Grant::parse(s).unwrap_or_else(|e| unreachable!("built-in grant {s}: {e}"))
}

/// The built-in profiles of §11's account types, by name.
pub fn built_in(name: &str) -> Option<ProfileSection> {
    let section =
        |extends: Option<&str>, grants: &[&str], forms: &[&str], export: &[&str]| ProfileSection {
            name: name.to_string(),
            extends: extends.map(str::to_string),
            grant: grants.iter().map(|g| grant(g)).collect(),
            forms: forms
                .iter()
                .map(|f| FormGrant::parse(f).unwrap_or_else(|e| unreachable!("{f}: {e}")))
                .collect(),
            forms_export: export
                .iter()
                .map(|f| ExportGrant::parse(f).unwrap_or_else(|e| unreachable!("{f}: {e}")))
                .collect(),
        };
    Some(match name {
        // A per-site account that reads its DAG's records: API export,
        // read-only forms, exports without identifiers.
        "site-data-read" => section(
            None,
            &["api_export"],
            &["*:read_only"],
            &["*:remove_identifiers"],
        ),
        // Adds API import, record creation and view & edit on every form.
        "site-data-import" => section(
            Some("site-data-read"),
            &["api_import", "record_create"],
            &["*:view_edit"],
            &[],
        ),
        // The tool's own account: reads and writes users, roles and DAG
        // mappings; sees no data.
        "rights-manager" => section(
            None,
            &[
                "api_export",
                "api_import",
                "user_rights=1",
                "data_access_groups",
            ],
            &[],
            &[],
        ),
        // Export Logging needs an export right on some instrument (§4.5).
        "log-reader" => section(None, &["api_export", "logging"], &[], &["*:de_identified"]),
        _ => return None,
    })
}

/// Builds `name` from the built-ins and the file's `[[profile]]`s.
pub fn resolve(name: &str, defined: &[ProfileSection]) -> Result<Profile, ProfileError> {
    let mut chain: Vec<ProfileSection> = Vec::new();
    let mut next = Some(name.to_string());
    while let Some(n) = next {
        if chain.iter().any(|p| p.name == n) {
            return Err(ProfileError::Loop(name.to_string()));
        }
        let section = defined
            .iter()
            .find(|p| p.name == n)
            .cloned()
            .or_else(|| built_in(&n))
            .ok_or_else(|| ProfileError::Unknown(n.clone()))?;
        next = section.extends.clone();
        chain.push(section);
    }
    let mut profile = Profile {
        name: name.to_string(),
        grants: BTreeMap::new(),
        forms: Vec::new(),
        forms_export: Vec::new(),
    };
    for section in chain.iter().rev() {
        for g in &section.grant {
            let v = profile.grants.entry(g.right.clone()).or_insert(0);
            *v = (*v).max(g.value);
        }
        profile
            .forms
            .extend(section.forms.iter().map(|f| (f.form.clone(), f.right)));
        profile.forms_export.extend(
            section
                .forms_export
                .iter()
                .map(|f| (f.form.clone(), f.right)),
        );
    }
    Ok(profile)
}

/// The ceiling for `form` in an ordered list: the last entry naming it,
/// else the last `*`, else `none`.
fn ceiling<R: Copy>(entries: &[(String, R)], form: &str, none: R) -> R {
    entries
        .iter()
        .rev()
        .find(|(f, _)| f == form)
        .or_else(|| entries.iter().rev().find(|(f, _)| f == "*"))
        .map_or(none, |(_, r)| *r)
}

impl Profile {
    /// The granted value of an attribute (0 when not granted).
    pub fn grant(&self, right: &str) -> u8 {
        self.grants.get(right).copied().unwrap_or(0)
    }

    /// The data viewing ceiling on `form`.
    pub fn form(&self, form: &str) -> FormRight {
        ceiling(&self.forms, form, FormRight::NoAccess)
    }

    /// The data export ceiling on `form`.
    pub fn form_export(&self, form: &str) -> ExportRight {
        ceiling(&self.forms_export, form, ExportRight::NoAccess)
    }
}

/// Every built-in name has a definition (config lists the names).
pub fn built_in_names() -> &'static [&'static str] {
    BUILT_IN_PROFILES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_name_is_defined_and_resolves() {
        for name in built_in_names() {
            let p = resolve(name, &[]).unwrap();
            assert_eq!(&p.name, name);
        }
        let import = resolve("site-data-import", &[]).unwrap();
        assert_eq!(import.grant("api_export"), 1);
        assert_eq!(import.grant("api_import"), 1);
        assert_eq!(import.grant("design"), 0);
        assert_eq!(import.form("any"), FormRight::ViewEdit);
        assert_eq!(import.form_export("any"), ExportRight::RemoveIdentifiers);
    }

    #[test]
    fn a_profile_extends_and_overrides_per_instrument() {
        let own = ProfileSection {
            name: "etl".into(),
            extends: Some("site-data-read".into()),
            grant: vec![Grant::parse("lock_records=2").unwrap()],
            forms: vec![FormGrant::parse("consent:no_access").unwrap()],
            forms_export: vec![ExportGrant::parse("visit:full_data_set").unwrap()],
        };
        let p = resolve("etl", std::slice::from_ref(&own)).unwrap();
        assert_eq!(p.grant("lock_records"), 2);
        assert_eq!(p.grant("api_export"), 1);
        assert_eq!(p.form("consent"), FormRight::NoAccess);
        assert_eq!(p.form("visit"), FormRight::ReadOnly);
        assert_eq!(p.form_export("visit"), ExportRight::FullDataSet);
        assert_eq!(p.form_export("consent"), ExportRight::RemoveIdentifiers);
        assert_eq!(
            resolve("nope", std::slice::from_ref(&own)),
            Err(ProfileError::Unknown("nope".into()))
        );
        let looped = ProfileSection {
            extends: Some("etl".into()),
            ..own
        };
        assert_eq!(
            resolve("etl", &[looped]),
            Err(ProfileError::Loop("etl".into()))
        );
    }
}
