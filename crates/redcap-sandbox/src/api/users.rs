//! Users: Export / Import / Delete Users (§4.1–4.6).

use redcap::rights::{RightsError, form_pairs, wire_text};
use redcap::{ApiError, RedcapVersion, Rights, UserRights, UserRightsLevel};
use serde_json::{Map, Value};

use super::{Ctx, text};
use crate::db::{LogKind, Member, Project, State};
use crate::format::Reply;

/// The Export Users header when there are no users.
const EMPTY_HEADER: &[&str] = &[
    "username",
    "email",
    "firstname",
    "lastname",
    "expiration",
    "data_access_group",
    "data_access_group_id",
];

/// `rights_443`: 1–255 characters of letters, digits, `_ ' space . - @`.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_' .-@".contains(c))
}

/// Turns a rights error into REDCap's message for `user`.
pub fn rights_error(user: &str, e: RightsError) -> ApiError {
    match e {
        RightsError::InvalidValue {
            field,
            value,
            allowed,
        } => ApiError::InvalidRightsValue {
            field,
            user: user.to_owned(),
            value,
            allowed,
        },
        RightsError::InvalidFormValue { form, value } => ApiError::InvalidFormRight {
            form,
            user: user.to_owned(),
            value,
        },
        RightsError::Malformed { field, .. } => ApiError::InvalidRightsValue {
            field,
            user: user.to_owned(),
            value: String::new(),
            allowed: "0 or 1",
        },
    }
}

/// Applies the privilege attributes and `forms`/`forms_export` of an import
/// row to `rights` (only supplied attributes change, §4.6).
pub fn apply_rights(
    project: &Project,
    version: RedcapVersion,
    who: &str,
    row: &Map<String, Value>,
    rights: &mut Rights,
) -> Result<(), ApiError> {
    for (k, v) in row {
        if Rights::is_attribute(k) {
            let value = wire_text(v).unwrap_or_default();
            rights
                .set_attribute(k, &value)
                .map_err(|e| rights_error(who, e))?;
        }
    }
    let forms = project.forms();
    for key in ["forms", "forms_export"] {
        let Some(v) = row.get(key) else { continue };
        let pairs = form_pairs(key, v).map_err(|e| rights_error(who, e))?;
        for (form, value) in &pairs {
            if !forms.contains(form) {
                return Err(ApiError::UnknownForm {
                    form: form.clone(),
                    user: who.to_owned(),
                });
            }
            // Before 15.6 only the legacy codes exist.
            if key == "forms"
                && version < RedcapVersion::FORM_RIGHTS_BITMASK
                && value.trim().parse::<i64>().is_ok_and(|n| n > 3)
            {
                return Err(ApiError::InvalidFormRight {
                    form: form.clone(),
                    user: who.to_owned(),
                    value: value.clone(),
                });
            }
        }
        let result = if key == "forms" {
            rights.set_forms(&forms, &pairs)
        } else {
            rights.set_forms_export(&forms, &pairs)
        };
        result.map_err(|e| rights_error(who, e))?;
    }
    Ok(())
}

/// Normalises an `expiration` value to `YYYY-MM-DD` (REDCap accepts what
/// PHP's `strtotime` parses; we accept ISO dates and `MM/DD/YYYY`).
pub fn parse_expiration(user: &str, value: &str) -> Result<Option<String>, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    for format in ["%Y-%m-%d", "%m/%d/%Y"] {
        for candidate in [v, v.get(..10).unwrap_or(v)] {
            if let Ok(d) = jiff::civil::Date::strptime(format, candidate) {
                return Ok(Some(d.strftime("%Y-%m-%d").to_string()));
            }
        }
    }
    Err(ApiError::InvalidRightsValue {
        field: "expiration".into(),
        user: user.to_owned(),
        value: value.to_owned(),
        allowed: "a date (YYYY-MM-DD)",
    })
}
/// Adds or updates one user from an Import Users row; returns whether the
/// user is new. The DAG is always written: a row without
/// `data_access_group` unassigns the user (§4.6, §10.4).
pub fn import_user_row(
    project: &mut Project,
    version: RedcapVersion,
    row: &Map<String, Value>,
) -> Result<(String, bool), ApiError> {
    let username = text(row.get("username")).trim().to_lowercase();
    if username.is_empty() {
        return Err(ApiError::UsernameMissing);
    }
    if !valid_username(&username) {
        return Err(ApiError::InvalidUsername { user: username });
    }
    let group_id = match row.get("data_access_group").map(|v| text(Some(v))) {
        None => None,
        Some(name) if name.trim().is_empty() => None,
        Some(name) => Some(
            project
                .dag_id(name.trim())
                .ok_or(ApiError::InvalidUserDag { dag: name })?,
        ),
    };
    let existing = project.members.get(&username).cloned();
    let is_new = existing.is_none();
    let mut member = match existing {
        Some(m) => {
            if m.role_id.is_some() {
                return Err(ApiError::UserInRole { user: username });
            }
            m
        }
        None => Member {
            expiration: None,
            group_id: None,
            role_id: None,
            rights: Rights::none(&project.forms()),
            token: None,
        },
    };
    apply_rights(project, version, &username, row, &mut member.rights)?;
    if let Some(v) = row.get("expiration") {
        member.expiration = parse_expiration(&username, &text(Some(v)))?;
    }
    member.group_id = group_id;
    project.normalise_forms(&mut member.rights);
    project.members.insert(username.clone(), member);
    Ok((username, is_new))
}

/// One Export Users row.
pub fn user_row(
    state: &State,
    project: &Project,
    version: RedcapVersion,
    name: &str,
) -> Map<String, Value> {
    let member = &project.members[name];
    let account = state.accounts.get(name);
    let u = UserRights {
        username: name.to_owned(),
        email: account.map(|a| a.email.clone()).unwrap_or_default(),
        firstname: account.map(|a| a.firstname.clone()).unwrap_or_default(),
        lastname: account.map(|a| a.lastname.clone()).unwrap_or_default(),
        expiration: member.expiration.clone(),
        data_access_group: member.group_id.and_then(|g| project.dag_name(g)),
        data_access_group_id: member.group_id.filter(|g| project.dag_name(*g).is_some()),
        data_access_group_label: member
            .group_id
            .and_then(|g| project.dags.iter().find(|d| d.id == g))
            .map(|d| d.name.clone()),
        rights: project.member_rights(member),
    };
    u.to_json(version, &project.forms())
}

/// Export Users: needs User Rights full or read-only (400 `api_229`); a
/// DAG-assigned caller sees only its DAG's users (§4.2).
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights == UserRightsLevel::NoAccess {
        return Err(ApiError::UserRightsExportPrivilege);
    }
    let project = ctx.project();
    let rows: Vec<_> = project
        .members
        .iter()
        .filter(|(_, m)| ctx.caller.group_id.is_none() || m.group_id == ctx.caller.group_id)
        .map(|(name, _)| user_row(ctx.state, project, ctx.config.version, name))
        .collect();
    ctx.log_manage(LogKind::User, "Export users");
    Ok(ctx.rows_reply(&rows, EMPTY_HEADER, "users", "item"))
}

/// Import Users: needs full User Rights (400 `api_103`). All rows or none.
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights != UserRightsLevel::Full {
        return Err(ApiError::UserRightsImportPrivilege);
    }
    // Logged before processing, so failed imports show too (§4.6).
    ctx.log_manage(LogKind::User, "Import users");
    let rows = ctx.take_rows();
    let mut project = ctx.project().clone();
    let mut done = Vec::new();
    for row in &rows {
        let before = project
            .members
            .get(&text(row.get("username")).trim().to_lowercase())
            .map(|m| m.group_id);
        let (name, is_new) = import_user_row(&mut project, ctx.config.version, row)?;
        done.push((name, is_new, before));
    }
    let count = done.len();
    *ctx.project_mut() = project;
    for (name, is_new, before) in done {
        let verb = if is_new { "Add user" } else { "Update user" };
        ctx.log(
            LogKind::User,
            format!("{verb} {name}"),
            format!("user = '{name}'"),
            None,
            None,
        );
        let after = ctx.project().members[&name].group_id;
        if before.flatten() != after {
            let details = match after.and_then(|g| ctx.project().dag_name(g)) {
                Some(dag) => {
                    format!("Assign user to data access group (user = '{name}', group = '{dag}')")
                }
                None => format!("Remove user from data access group (user = '{name}')"),
            };
            ctx.log(
                LogKind::User,
                format!("Update user {name}"),
                details,
                None,
                None,
            );
        }
    }
    Ok(ctx.count(count))
}

/// Delete Users (`users[]`): the entry gate already asked for API Import and
/// Delete Record (§10.2); here full User Rights (400 `api_103`).
pub fn delete(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights != UserRightsLevel::Full {
        return Err(ApiError::UserRightsImportPrivilege);
    }
    let users: Vec<String> = ctx
        .post
        .list("users", false)
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.trim().to_lowercase())
        .collect();
    if users.is_empty() {
        return Err(ApiError::ListParameterMissing { parameter: "users" });
    }
    let unknown: Vec<String> = users
        .iter()
        .filter(|u| !ctx.project().members.contains_key(*u))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::UnknownUsers { users: unknown });
    }
    ctx.log_manage(LogKind::User, "Delete users");
    let project = ctx.project_mut();
    for u in &users {
        // The token goes with the rights row (§2.4).
        project.members.remove(u);
    }
    for u in &users {
        ctx.log(
            LogKind::User,
            format!("Delete user {u}"),
            format!("user = '{u}'"),
            None,
            None,
        );
    }
    Ok(ctx.count(users.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "a.b-c_d@x.org", "o'neil", "two words"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", "semi;colon", "tab\t", &"x".repeat(256)] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[test]
    fn expirations() {
        assert_eq!(
            parse_expiration("u", "2030-01-02").unwrap().as_deref(),
            Some("2030-01-02")
        );
        assert_eq!(
            parse_expiration("u", "01/02/2030").unwrap().as_deref(),
            Some("2030-01-02")
        );
        assert_eq!(parse_expiration("u", "").unwrap(), None);
        assert!(parse_expiration("u", "tomorrow-ish").is_err());
    }
}
