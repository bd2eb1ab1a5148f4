//! Data Access Groups and user-DAG assignments (§5).

use redcap::ApiError;
use serde_json::Map;

use super::{Ctx, text};
use crate::db::{Dag, LogKind};
use crate::format::Reply;

/// DAG methods refuse DAG-assigned callers (403 `api_183`) and need the DAG
/// right (400, `export` chooses the text).
fn dag_gate(ctx: &Ctx, export: bool) -> Result<(), ApiError> {
    if ctx.caller.group_id.is_some() {
        return Err(ApiError::DagMemberForbidden);
    }
    if !ctx.caller.rights.data_access_groups {
        return Err(if export {
            ApiError::DagExportPrivilege
        } else {
            ApiError::DagImportPrivilege
        });
    }
    Ok(())
}

/// Export DAGs, ordered by name.
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    dag_gate(ctx, true)?;
    let project = ctx.project();
    let names = project.dag_unique_names();
    let mut dags: Vec<(&Dag, &String)> = project.dags.iter().zip(&names).collect();
    dags.sort_by_key(|(d, _)| (d.name.trim().to_lowercase(), d.id));
    let rows: Vec<_> = dags
        .into_iter()
        .map(|(d, unique)| {
            let mut m = Map::new();
            m.insert("data_access_group_name".into(), d.name.clone().into());
            m.insert("unique_group_name".into(), unique.clone().into());
            m.insert("data_access_group_id".into(), d.id.into());
            m
        })
        .collect();
    ctx.log_manage(LogKind::Manage, "Export DAGs");
    Ok(ctx.rows_reply(
        &rows,
        &[
            "data_access_group_name",
            "unique_group_name",
            "data_access_group_id",
        ],
        "dags",
        "item",
    ))
}

/// Import DAGs (`action=import`): blank unique name creates, a known one
/// renames (which can change unique names, §10.15).
pub fn import(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    dag_gate(ctx, false)?;
    let rows = ctx.take_rows();
    let mut project = ctx.project().clone();
    let names = project.dag_unique_names();
    let mut next = ctx.state.next_group_id.max(1);
    for row in &rows {
        if !row.contains_key("data_access_group_name") || !row.contains_key("unique_group_name") {
            return Err(ApiError::DagAttributesMissing);
        }
        let label = text(row.get("data_access_group_name")).trim().to_owned();
        if label.is_empty() {
            return Err(ApiError::DagAttributesMissing);
        }
        if label.chars().count() > 100 {
            return Err(ApiError::DagLabelTooLong { label });
        }
        let unique = text(row.get("unique_group_name")).trim().to_owned();
        if unique.is_empty() {
            project.dags.push(Dag {
                id: next,
                name: label,
            });
            next += 1;
        } else {
            // Names are looked up as they were before this import.
            let pos = names
                .iter()
                .position(|n| *n == unique)
                .ok_or(ApiError::UnknownDagToRename { name: unique })?;
            project.dags[pos].name = label;
        }
    }
    ctx.state.next_group_id = next;
    *ctx.project_mut() = project;
    ctx.log_manage(LogKind::Manage, "Import DAGs");
    Ok(ctx.count(rows.len()))
}

/// Delete DAGs (`dags[]`). No API Import check (§5.1); members become
/// unassigned, records keep their (now dangling) DAG (§10.6).
pub fn delete(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    dag_gate(ctx, false)?;
    let wanted = ctx.post.list("dags", false).unwrap_or_default();
    if wanted.is_empty() {
        return Err(ApiError::ListParameterMissing { parameter: "dags" });
    }
    let project = ctx.project();
    let unknown: Vec<String> = wanted
        .iter()
        .filter(|n| project.dag_id(n).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::UnknownDagsToDelete { names: unknown });
    }
    let ids: Vec<u64> = wanted.iter().filter_map(|n| project.dag_id(n)).collect();
    super::file_repository::drop_restricted_folders(
        ctx,
        super::file_repository::Restriction::Dag,
        &ids,
    )?;
    let project = ctx.project_mut();
    project.dags.retain(|d| !ids.contains(&d.id));
    for m in project.members.values_mut() {
        if m.group_id.is_some_and(|g| ids.contains(&g)) {
            m.group_id = None;
        }
    }
    ctx.log_manage(LogKind::Manage, "Delete DAGs");
    Ok(ctx.count(ids.len()))
}

/// Switch DAG: the sandbox has no DAG Switcher configuration, so every
/// switch is "not permitted" — answered, like REDCap, with HTTP 200 (§10.3).
pub fn switch(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    let dag = ctx.post.str("dag").trim().to_owned();
    let known = dag.is_empty() || dag == "0" || ctx.project().dag_id(&dag).is_some();
    let body = if known {
        "ERROR: User/DAG assignment not permitted"
    } else {
        "ERROR: Invalid DAG"
    };
    Ok(Reply::ok(ctx.format, body.into()))
}

/// Export User-DAG Assignments (DAG right, 400 `api_221`); a DAG-assigned
/// caller sees only its own DAG's users (§5.4).
pub fn export_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.data_access_groups {
        return Err(ApiError::DagExportPrivilege);
    }
    let project = ctx.project();
    let rows: Vec<_> = project
        .members
        .iter()
        .filter(|(_, m)| ctx.caller.group_id.is_none() || m.group_id == ctx.caller.group_id)
        .map(|(name, m)| {
            let mut row = Map::new();
            row.insert("username".into(), name.clone().into());
            let dag = m
                .group_id
                .and_then(|g| project.dag_name(g))
                .unwrap_or_default();
            row.insert("redcap_data_access_group".into(), dag.into());
            row
        })
        .collect();
    ctx.log_manage(LogKind::Manage, "Export User-DAG assignments");
    Ok(ctx.rows_reply(
        &rows,
        &["username", "redcap_data_access_group"],
        "items",
        "item",
    ))
}

/// Import User-DAG Assignments (DAG right, 400 `api_222`; DAG-assigned
/// callers refused with 400 `api_184`). Users must already be in the project.
pub fn import_mapping(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    if !ctx.caller.rights.data_access_groups {
        return Err(ApiError::DagImportPrivilege);
    }
    if ctx.caller.group_id.is_some() {
        return Err(ApiError::DagMappingByDagMember);
    }
    let rows = ctx.take_rows();
    let mut project = ctx.project().clone();
    let mut logs = Vec::new();
    for row in &rows {
        if !row.contains_key("username") || !row.contains_key("redcap_data_access_group") {
            return Err(ApiError::DagMappingKeysMissing);
        }
        let user = text(row.get("username")).trim().to_lowercase();
        let dag = text(row.get("redcap_data_access_group")).trim().to_owned();
        let group = if dag.is_empty() {
            None
        } else {
            Some(
                project
                    .dag_id(&dag)
                    .ok_or_else(|| ApiError::InvalidMappingDag {
                        user: user.clone(),
                        dag: dag.clone(),
                    })?,
            )
        };
        let member = project
            .members
            .get_mut(&user)
            .ok_or_else(|| ApiError::MappingUserNotInProject { user: user.clone() })?;
        member.group_id = group;
        logs.push((user, dag));
    }
    *ctx.project_mut() = project;
    ctx.log_manage(LogKind::Manage, "Import User-DAG assignments");
    for (user, dag) in logs {
        let details = if dag.is_empty() {
            format!("Remove user from data access group (user = '{user}')")
        } else {
            format!("Assign user to data access group (user = '{user}', group = '{dag}')")
        };
        ctx.log(
            LogKind::User,
            format!("Update user {user}"),
            details,
            None,
            None,
        );
    }
    Ok(ctx.count(rows.len()))
}
