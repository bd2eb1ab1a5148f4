//! Data Access Groups and user-DAG mapping (§5.1–5.4).

use serde::{Deserialize, Serialize};

use super::rows::{number, text};
use super::{Error, OutboundLimiter, Params, Project};
use crate::Content;

/// One DAG (Export DAGs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dag {
    /// The label users see (at most 100 characters).
    #[serde(deserialize_with = "text")]
    pub data_access_group_name: String,
    /// The name the API uses, derived from the label (§5.2): it changes
    /// when the DAG is renamed, so key stable mappings on the id.
    #[serde(deserialize_with = "text")]
    pub unique_group_name: String,
    /// REDCap's `group_id`: stable across renames.
    #[serde(deserialize_with = "number")]
    pub data_access_group_id: u64,
}

/// One row of Import DAGs: an empty `unique_group_name` creates a DAG,
/// an existing one renames it (§5.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDag {
    /// The label to create or rename to (required, at most 100 characters).
    pub data_access_group_name: String,
    /// Empty to create a DAG; an existing unique name to rename that DAG.
    pub unique_group_name: String,
}

/// One row of the user-DAG mapping; an empty DAG means "no DAG".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagAssignment {
    /// A user already in the project.
    #[serde(deserialize_with = "text")]
    pub username: String,
    /// The DAG's unique name, or empty for no DAG (sees all records).
    #[serde(deserialize_with = "text")]
    pub redcap_data_access_group: String,
}

impl<L: OutboundLimiter> Project<L> {
    /// Export DAGs.
    pub async fn export_dags(&self) -> Result<Vec<Dag>, Error> {
        self.call_json("Export DAGs", Params::export(Content::Dag))
            .await
    }

    /// Import DAGs (always with `action=import`: without it REDCap treats
    /// the call as an export, §10.9); answers the number of rows.
    pub async fn import_dags(&self, dags: &[NewDag]) -> Result<usize, Error> {
        self.import_json(
            "Import DAGs",
            Params::write(Content::Dag).set("action", "import"),
            dags,
        )
        .await
    }

    /// Delete DAGs by unique name.
    pub async fn delete_dags<S: AsRef<str>>(&self, dags: &[S]) -> Result<usize, Error> {
        self.call_count("Delete DAGs", Params::delete(Content::Dag, "dags", dags))
            .await
    }

    /// Export User-DAG Assignments.
    pub async fn export_user_dag_assignments(&self) -> Result<Vec<DagAssignment>, Error> {
        self.call_json(
            "Export User-DAG Assignments",
            Params::export(Content::UserDagMapping),
        )
        .await
    }

    /// Import User-DAG Assignments; answers the number of rows.
    pub async fn import_user_dag_assignments(
        &self,
        rows: &[DagAssignment],
    ) -> Result<usize, Error> {
        self.import_json(
            "Import User-DAG Assignments",
            Params::write(Content::UserDagMapping),
            rows,
        )
        .await
    }
}
