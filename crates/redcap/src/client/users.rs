//! Users, roles and user-role mapping (§4.1–4.7).

use serde::{Deserialize, Serialize};

use super::rows::{Row, decode_rows, text};
use super::{Error, Format, OutboundLimiter, Params, Project};
use crate::{Content, Rights, UserRights};

/// One user role (Export User Roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub unique_role_name: String,
    pub role_label: String,
    pub rights: Rights,
}

/// One row of the user-role mapping. An empty `unique_role_name` means "in
/// no role".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    #[serde(deserialize_with = "text")]
    pub username: String,
    #[serde(deserialize_with = "text")]
    pub unique_role_name: String,
}

fn rights_error(what: &'static str, e: crate::RightsError) -> Error {
    Error::Decode {
        what,
        detail: e.to_string(),
    }
}

impl<L: OutboundLimiter> Project<L> {
    /// Export Users, typed; both form-rights encodings are understood.
    pub async fn export_users(&self) -> Result<Vec<UserRights>, Error> {
        let rows: Vec<Row> = self
            .call_json("Export Users", Params::export(Content::User))
            .await?;
        rows.iter()
            .map(|r| UserRights::from_json(r).map_err(|e| rights_error("Export Users", e)))
            .collect()
    }

    /// Export Users in `format`: the body exactly as REDCap sent it.
    pub async fn export_users_raw(&self, format: Format) -> Result<String, Error> {
        Ok(self
            .call(Params::export(Content::User).format(format))
            .await?
            .body)
    }

    /// Export Users in `format`, decoded into rows.
    pub async fn export_users_in(&self, format: Format) -> Result<Vec<Row>, Error> {
        decode_rows(format, &self.export_users_raw(format).await?)
    }

    /// Import Users from rows. Only the supplied attributes change, **except
    /// `data_access_group`, which is always written**: leaving it out
    /// removes the user from their DAG (§4.6). Answers the number of users.
    pub async fn import_users(&self, rows: &[Row]) -> Result<usize, Error> {
        let data = serde_json::to_string(rows).map_err(Error::encode)?;
        self.import_users_raw(Format::Json, &data).await
    }

    /// Import Users from `data` already in `format`.
    pub async fn import_users_raw(&self, format: Format, data: &str) -> Result<usize, Error> {
        self.call_count(
            "Import Users",
            Params::write(Content::User)
                .format(format)
                .set("returnFormat", "json")
                .set("data", data),
        )
        .await
    }

    /// Delete Users; answers the number deleted.
    pub async fn delete_users<S: AsRef<str>>(&self, users: &[S]) -> Result<usize, Error> {
        self.call_count(
            "Delete Users",
            Params::write(Content::User)
                .set("action", "delete")
                .format(Format::Json)
                .list("users", users),
        )
        .await
    }

    /// Export User Roles, typed.
    pub async fn export_user_roles(&self) -> Result<Vec<Role>, Error> {
        let rows: Vec<Row> = self
            .call_json("Export User Roles", Params::export(Content::UserRole))
            .await?;
        rows.iter()
            .map(|r| {
                let get = |k: &str| {
                    r.get(k)
                        .and_then(crate::rights::wire_text)
                        .unwrap_or_default()
                };
                Ok(Role {
                    unique_role_name: get("unique_role_name"),
                    role_label: get("role_label"),
                    rights: Rights::from_json(r)
                        .map_err(|e| rights_error("Export User Roles", e))?,
                })
            })
            .collect()
    }

    /// Import User Roles (an empty `unique_role_name` creates a role);
    /// answers the number of roles.
    pub async fn import_user_roles(&self, rows: &[Row]) -> Result<usize, Error> {
        let data = serde_json::to_string(rows).map_err(Error::encode)?;
        self.call_count(
            "Import User Roles",
            Params::write(Content::UserRole)
                .format(Format::Json)
                .set("data", data),
        )
        .await
    }

    /// Delete User Roles by unique name.
    pub async fn delete_user_roles<S: AsRef<str>>(&self, roles: &[S]) -> Result<usize, Error> {
        self.call_count(
            "Delete User Roles",
            Params::write(Content::UserRole)
                .set("action", "delete")
                .format(Format::Json)
                .list("roles", roles),
        )
        .await
    }

    /// Export User-Role Assignments.
    pub async fn export_user_role_assignments(&self) -> Result<Vec<RoleAssignment>, Error> {
        self.call_json(
            "Export User-Role Assignments",
            Params::export(Content::UserRoleMapping),
        )
        .await
    }

    /// Import User-Role Assignments; answers the number of rows.
    pub async fn import_user_role_assignments(
        &self,
        rows: &[RoleAssignment],
    ) -> Result<usize, Error> {
        let data = serde_json::to_string(rows).map_err(Error::encode)?;
        self.call_count(
            "Import User-Role Assignments",
            Params::write(Content::UserRoleMapping)
                .format(Format::Json)
                .set("data", data),
        )
        .await
    }
}
