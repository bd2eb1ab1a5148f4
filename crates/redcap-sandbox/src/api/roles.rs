//! User roles and user-role assignments (§4.7).

use redcap::rights::ValueStyle;
use redcap::{ApiError, Rights, UserRightsLevel};
use serde_json::Map;

use super::users::{apply_rights, valid_username};
use super::{Ctx, text};
use crate::db::{LogKind, Member, Project, Role, random_below};
use crate::format::Reply;

/// `U-` + 3 digits (no zeros) + 7 characters of an unambiguous alphabet,
/// e.g. `U-2119C4Y87T` (§4.7).
pub(crate) fn new_unique_role_name(project: &Project) -> String {
    const ALPHABET: &[u8] = b"34789ACDEFHJKLMNPRTWXY";
    loop {
        let mut name = String::from("U-");
        for _ in 0..3 {
            name.push(char::from(b'1' + random_below(9) as u8));
        }
        for _ in 0..7 {
            name.push(char::from(
                ALPHABET[random_below(ALPHABET.len() as u32) as usize],
            ));
        }
        if !project.roles.iter().any(|r| r.unique_name == name) {
            return name;
        }
    }
}

/// Export User Roles: rights as **strings**, `forms` as integers (§10.14).
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights == UserRightsLevel::NoAccess {
        return Err(ApiError::UserRightsExportPrivilege);
    }
    let project = ctx.project();
    let forms = project.forms();
    let rows: Vec<_> = project
        .roles
        .iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert("unique_role_name".into(), r.unique_name.clone().into());
            m.insert("role_label".into(), r.label.clone().into());
            let mut rights = r.rights.clone();
            project.normalise_forms(&mut rights);
            rights.write_json(&mut m, ctx.config.version, ValueStyle::Strings, &forms);
            m
        })
        .collect();
    ctx.log_manage(LogKind::User, "Export user roles");
    Ok(ctx.rows_reply(
        &rows,
        &["unique_role_name", "role_label"],
        "userRoles",
        "item",
    ))
}

/// Import User Roles: blank `unique_role_name` creates, a known one edits
/// (only supplied attributes change). Full User Rights (400 `api_171`).
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights != UserRightsLevel::Full {
        return Err(ApiError::UserRoleImportPrivilege);
    }
    ctx.log_manage(LogKind::User, "Import user roles");
    let rows = ctx.take_rows();
    let mut project = ctx.project().clone();
    let unknown: Vec<String> = rows
        .iter()
        .map(|r| text(r.get("unique_role_name")).trim().to_owned())
        .filter(|n| !n.is_empty() && !project.roles.iter().any(|r| &r.unique_name == n))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::InvalidRoleNames { names: unknown });
    }
    let mut next_id = ctx.state.next_role_id.max(1);
    let mut labels = Vec::new();
    for row in &rows {
        let unique = text(row.get("unique_role_name")).trim().to_owned();
        let label = text(row.get("role_label")).trim().to_owned();
        if unique.is_empty() {
            if label.is_empty() {
                return Err(ApiError::RoleLabelBlank);
            }
            let mut rights = Rights::none(&project.forms());
            apply_rights(&project, ctx.config.version, &label, row, &mut rights)?;
            let name = new_unique_role_name(&project);
            project.roles.push(Role {
                id: next_id,
                unique_name: name,
                label: label.clone(),
                rights,
            });
            next_id += 1;
            labels.push(("Create user role", label));
        } else {
            let pos = project
                .roles
                .iter()
                .position(|r| r.unique_name == unique)
                .expect("checked above");
            let mut rights = project.roles[pos].rights.clone();
            apply_rights(&project, ctx.config.version, &unique, row, &mut rights)?;
            project.normalise_forms(&mut rights);
            let role = &mut project.roles[pos];
            role.rights = rights;
            if !label.is_empty() {
                role.label = label;
            }
            labels.push(("Edit user role", role.label.clone()));
        }
    }
    ctx.state.next_role_id = next_id;
    *ctx.project_mut() = project;
    for (what, label) in labels {
        ctx.log(LogKind::User, what, format!("role = '{label}'"), None, None);
    }
    Ok(ctx.count(rows.len()))
}

/// Delete User Roles (`roles[]`): the entry gate asked for Delete Record
/// only (§10.2); here full User Rights. Members are left without a role.
pub fn delete(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights != UserRightsLevel::Full {
        return Err(ApiError::UserRoleImportPrivilege);
    }
    let names = ctx.post.list("roles", false).unwrap_or_default();
    if names.is_empty() {
        return Err(ApiError::ListParameterMissing { parameter: "roles" });
    }
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !ctx.project().roles.iter().any(|r| &r.unique_name == *n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::UnknownRolesToDelete { names: unknown });
    }
    ctx.log_manage(LogKind::User, "Delete user roles");
    let project = ctx.project_mut();
    let ids: Vec<u64> = project
        .roles
        .iter()
        .filter(|r| names.contains(&r.unique_name))
        .map(|r| r.id)
        .collect();
    project.roles.retain(|r| !ids.contains(&r.id));
    for m in project.members.values_mut() {
        if m.role_id.is_some_and(|id| ids.contains(&id)) {
            m.role_id = None;
        }
    }
    super::file_repository::drop_restricted_folders(
        ctx,
        super::file_repository::Restriction::Role,
        &ids,
    )?;
    Ok(ctx.count(ids.len()))
}

/// Export User-Role Assignments: `username`, `unique_role_name`, and
/// `data_access_group` when the project has DAGs.
pub fn export_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights == UserRightsLevel::NoAccess {
        return Err(ApiError::UserRightsExportPrivilege);
    }
    let project = ctx.project();
    let with_dags = !project.dags.is_empty();
    let rows: Vec<_> = project
        .members
        .iter()
        .filter(|(_, m)| ctx.caller.group_id.is_none() || m.group_id == ctx.caller.group_id)
        .map(|(name, m)| {
            let mut row = Map::new();
            row.insert("username".into(), name.clone().into());
            let role = m
                .role_id
                .and_then(|id| project.roles.iter().find(|r| r.id == id))
                .map(|r| r.unique_name.clone())
                .unwrap_or_default();
            row.insert("unique_role_name".into(), role.into());
            if with_dags {
                let dag = m
                    .group_id
                    .and_then(|g| project.dag_name(g))
                    .unwrap_or_default();
                row.insert("data_access_group".into(), dag.into());
            }
            row
        })
        .collect();
    ctx.log_manage(LogKind::User, "Export user role assignments");
    Ok(ctx.rows_reply(&rows, &["username", "unique_role_name"], "items", "item"))
}

/// Import User-Role Assignments. Unknown users are added with minimum
/// rights; blank role removes the user from their role (§4.7).
pub fn import_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if ctx.caller.rights.user_rights != UserRightsLevel::Full {
        return Err(ApiError::UserRoleImportPrivilege);
    }
    ctx.log_manage(LogKind::User, "Import user role assignments");
    let rows = ctx.take_rows();
    if let Some(first) = rows.first()
        && !(first.contains_key("username") && first.contains_key("unique_role_name"))
    {
        return Err(ApiError::RoleMappingKeysMissing);
    }
    let mut project = ctx.project().clone();
    let mut seen: Vec<String> = Vec::new();
    let mut logs = Vec::new();
    for row in &rows {
        let user = text(row.get("username")).trim().to_lowercase();
        if !valid_username(&user) {
            return Err(ApiError::InvalidUsername { user });
        }
        if seen.contains(&user) {
            return Err(ApiError::DuplicateUsername { user });
        }
        seen.push(user.clone());
        let role_name = text(row.get("unique_role_name")).trim().to_owned();
        let role_id = if role_name.is_empty() {
            None
        } else {
            Some(
                project
                    .roles
                    .iter()
                    .find(|r| r.unique_name == role_name)
                    .map(|r| r.id)
                    .ok_or_else(|| ApiError::InvalidRoleNames {
                        names: vec![role_name.clone()],
                    })?,
            )
        };
        let dag = match row.get("data_access_group").map(|v| text(Some(v))) {
            Some(d) if !d.trim().is_empty() => Some(Some(
                project
                    .dag_id(d.trim())
                    .ok_or(ApiError::InvalidUserDag { dag: d })?,
            )),
            Some(_) => Some(None),
            None => None,
        };
        let forms = project.forms();
        let member = project
            .members
            .entry(user.clone())
            .or_insert_with(|| Member {
                expiration: None,
                group_id: None,
                role_id: None,
                rights: Rights::none(&forms),
                token: None,
            });
        member.role_id = role_id;
        if let Some(g) = dag {
            member.group_id = g;
        }
        logs.push((user, role_name));
    }
    *ctx.project_mut() = project;
    for (user, role) in logs {
        let action = if role.is_empty() {
            format!("User removed from role {user}")
        } else {
            format!("User assigned to role {user}")
        };
        ctx.log(
            LogKind::User,
            action,
            format!("user = '{user}', role = '{role}'"),
            None,
            None,
        );
    }
    Ok(ctx.count(rows.len()))
}
