//! The File Repository (`content=fileRepository`): Create Folder, List,
//! Export, Import and Delete.
//!
//! Every action needs the user's File Repository right. Folders may be
//! restricted to a DAG and/or a role; users in some DAG (or role) reach only
//! folders unrestricted or restricted to theirs. Files are addressed by
//! their `doc_id`. Export answers the bytes as `content=file` does (the
//! name in the `Content-Type`); Import and Delete answer an empty 200.
//! Listings and exports are retried like other exports; the rest never is.

use serde_json::Value;

use super::files::{download, empty};
use super::{Error, FileDownload, FileUpload, Format, OutboundLimiter, Params, Project};
use crate::Content;

/// A folder to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewFolder {
    /// The folder's name (REDCap keeps 150 characters, without the
    /// characters it refuses in file names); must be new in its directory.
    pub name: String,
    /// The parent folder; `None` for the top level.
    pub parent: Option<u64>,
    /// Restrict the folder to this DAG (`data_access_group_id`); an id the
    /// project does not have is ignored by REDCap.
    pub dag_id: Option<u64>,
    /// Restrict the folder to this role (REDCap's role id); an unknown id
    /// is ignored.
    pub role_id: Option<u64>,
}

impl NewFolder {
    /// An unrestricted folder at the top level.
    pub fn new(name: impl Into<String>) -> NewFolder {
        NewFolder {
            name: name.into(),
            ..NewFolder::default()
        }
    }
}

/// One entry of a File Repository listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryEntry {
    /// A sub-folder.
    Folder {
        /// Its id, for [`Project::list_repository`] and uploads.
        folder_id: u64,
        /// Its name.
        name: String,
    },
    /// A file.
    File {
        /// Its id, for export and delete.
        doc_id: u64,
        /// Its name.
        name: String,
    },
}

impl RepositoryEntry {
    /// The entry's name.
    pub fn name(&self) -> &str {
        match self {
            RepositoryEntry::Folder { name, .. } | RepositoryEntry::File { name, .. } => name,
        }
    }
}

/// An id REDCap may write as `7` or `"7"`; empty is absent.
fn id(value: Option<&Value>) -> Result<Option<u64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("not an id: {n}")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("not an id: {s:?}")),
        Some(other) => Err(format!("not an id: {other}")),
    }
}

/// Reads a JSON listing: each entry has a `folder_id` or a `doc_id`, and a
/// `name`.
fn entries(body: &str) -> Result<Vec<RepositoryEntry>, Error> {
    let bad = |detail: String| Error::Decode {
        what: "Export a List of Files/Folders from the File Repository",
        detail,
    };
    let rows = super::decode_rows(Format::Json, body)?;
    rows.iter()
        .map(|row| {
            let name = match row.get("name") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => return Err(bad("an entry without a name".into())),
            };
            match (
                id(row.get("folder_id")).map_err(bad)?,
                id(row.get("doc_id")).map_err(bad)?,
            ) {
                (Some(folder_id), None) => Ok(RepositoryEntry::Folder { folder_id, name }),
                (None, Some(doc_id)) => Ok(RepositoryEntry::File { doc_id, name }),
                _ => Err(bad(format!(
                    "an entry needs exactly one of folder_id and doc_id: {}",
                    serde_json::Value::Object(row.clone())
                ))),
            }
        })
        .collect()
}

impl<L: OutboundLimiter> Project<L> {
    /// Create a New Folder in the File Repository; answers its `folder_id`.
    pub async fn create_repository_folder(&self, folder: &NewFolder) -> Result<u64, Error> {
        let params = Params::write(Content::FileRepository)
            .set("action", "createFolder")
            .set("name", folder.name.as_str())
            .set_opt("folder_id", folder.parent.map(|f| f.to_string()))
            .set_opt("dag_id", folder.dag_id.map(|d| d.to_string()))
            .set_opt("role_id", folder.role_id.map(|r| r.to_string()))
            .format(Format::Json);
        let answer = self.call(params).await?;
        let bad = |detail: String| Error::Decode {
            what: "Create a New Folder in the File Repository",
            detail,
        };
        let rows = super::decode_rows(Format::Json, &answer.body)?;
        match rows.as_slice() {
            [row] => id(row.get("folder_id"))
                .map_err(bad)?
                .ok_or_else(|| bad(format!("no folder_id in {}", answer.body))),
            _ => Err(bad(format!("not one row: {}", answer.body))),
        }
    }

    /// Export a List of Files/Folders from the File Repository: one
    /// directory (`None`: the top level), folders first, then files.
    pub async fn list_repository(
        &self,
        folder: Option<u64>,
    ) -> Result<Vec<RepositoryEntry>, Error> {
        let params = Params::export(Content::FileRepository)
            .set("action", "list")
            .set_opt("folder_id", folder.map(|f| f.to_string()))
            .format(Format::Json);
        let answer = self.call(params).await?;
        entries(&answer.body)
    }

    /// Export a File from the File Repository.
    pub async fn export_repository_file(&self, doc_id: u64) -> Result<FileDownload, Error> {
        let params = Params::export(Content::FileRepository)
            .set("action", "export")
            .set("doc_id", doc_id.to_string())
            .set("returnFormat", "json");
        self.send_file(params, None, download).await
    }

    /// Import a File into the File Repository, into `folder` (`None`: the
    /// top level). REDCap renames it `name (1).ext`… when the directory
    /// already has the name; list the directory to learn its `doc_id`.
    pub async fn import_repository_file(
        &self,
        folder: Option<u64>,
        file: FileUpload,
    ) -> Result<(), Error> {
        let params = Params::write(Content::FileRepository)
            .set("action", "import")
            .set_opt("folder_id", folder.map(|f| f.to_string()))
            .set("returnFormat", "json");
        self.send_file(params, Some(file), empty).await
    }

    /// Delete a File from the File Repository (REDCap keeps it 30 days in
    /// its Recycle Bin).
    pub async fn delete_repository_file(&self, doc_id: u64) -> Result<(), Error> {
        let params = Params::write(Content::FileRepository)
            .set("action", "delete")
            .set("doc_id", doc_id.to_string())
            .set("returnFormat", "json");
        self.send_file(params, None, empty).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_read_integer_or_text_ids() {
        let e = entries(r#"[{"folder_id":3,"name":"F"},{"doc_id":"12","name":"a.txt"}]"#).unwrap();
        assert_eq!(
            e,
            [
                RepositoryEntry::Folder {
                    folder_id: 3,
                    name: "F".into()
                },
                RepositoryEntry::File {
                    doc_id: 12,
                    name: "a.txt".into()
                }
            ]
        );
        assert_eq!(e[1].name(), "a.txt");
        assert!(entries("[]").unwrap().is_empty());
        assert!(matches!(
            entries(r#"[{"name":"neither"}]"#),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            entries(r#"[{"folder_id":"x","name":"bad"}]"#),
            Err(Error::Decode { .. })
        ));
    }
}
