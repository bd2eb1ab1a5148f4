//! Files in File Upload fields: Export / Import / Delete File
//! (`content=file`).
//!
//! Export answers the file's bytes as they are, with the uploader's file
//! name in the `Content-Type` header (`<type>; name="<file>"`); a refusal
//! comes with a non-200 status and REDCap's error body. Import sends a
//! multipart body whose file part is named `file`; Import and Delete answer
//! an empty 200. Exports are retried like other exports; uploads and
//! deletes never are.

use super::{Client, Error, OutboundLimiter, Params, Project};
use crate::Content;

/// Where a file is: a record's File Upload field, plus the event
/// (longitudinal projects) and repeat instance (repeating instruments or
/// events) when the project has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileField {
    /// The record id.
    pub record: String,
    /// The File Upload field's variable name.
    pub field: String,
    /// Unique event name; longitudinal projects only.
    pub event: Option<String>,
    /// Repeat instance (1 when not given); repeating projects only.
    pub repeat_instance: Option<u32>,
}

impl FileField {
    /// The field of a record in a classic, non-repeating project.
    pub fn new(record: impl Into<String>, field: impl Into<String>) -> FileField {
        FileField {
            record: record.into(),
            field: field.into(),
            ..FileField::default()
        }
    }

    fn params(&self, action: &str, idempotent: bool) -> Params {
        let p = if idempotent {
            Params::export(Content::File)
        } else {
            Params::write(Content::File)
        };
        p.set("action", action)
            .set("record", self.record.as_str())
            .set("field", self.field.as_str())
            .set_opt("event", self.event.as_deref())
            .set_opt(
                "repeat_instance",
                self.repeat_instance.map(|i| i.to_string()),
            )
            // Errors as JSON, which `classify` reads best.
            .set("returnFormat", "json")
    }
}

/// A file to upload.
#[derive(Clone, PartialEq, Eq)]
pub struct FileUpload {
    /// The name REDCap stores and shows (it drops apostrophes).
    pub file_name: String,
    /// The declared type (`text/plain`, `application/pdf`…); REDCap answers
    /// it back on export. `None` sends the part without a type.
    pub content_type: Option<String>,
    /// The content (possibly participant data: `Debug` shows only its
    /// length).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for FileUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File contents can be participant data: never in debug output.
        f.debug_struct("FileUpload")
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A downloaded file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileDownload {
    /// The stored file name (`name="…"` of the `Content-Type`), if given.
    pub name: Option<String>,
    /// The stored type, without the `name` and `charset` parameters.
    pub mime_type: String,
    /// The whole `Content-Type` header as REDCap sent it.
    pub content_type: String,
    /// The content (possibly participant data: `Debug` shows only its
    /// length).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for FileDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDownload")
            .field("name", &self.name)
            .field("mime_type", &self.mime_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Reads the `name` parameter of a download's `Content-Type`
/// (`text/plain; name="a.txt";charset=UTF-8`).
fn name_parameter(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let value = p.trim().strip_prefix("name=")?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some(value.to_owned())
    })
}

/// The reader of Export File: a 200 is the file whatever its bytes (a file
/// may well start with `ERROR:`); anything else is REDCap's refusal.
pub(super) fn download(
    status: u16,
    content_type: String,
    bytes: Vec<u8>,
) -> Result<FileDownload, Error> {
    if status != 200 {
        let body = String::from_utf8_lossy(&bytes);
        return Err(match crate::classify(status, &body) {
            Some(refusal) => Error::from(refusal),
            None => Error::Server {
                status,
                message: body.into_owned(),
            },
        });
    }
    Ok(FileDownload {
        name: name_parameter(&content_type),
        mime_type: content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        content_type,
        bytes,
    })
}

/// The reader of Import/Delete File: an empty 200.
pub(super) fn empty(status: u16, content_type: String, bytes: Vec<u8>) -> Result<(), Error> {
    super::text_answer(status, content_type, bytes).map(|_| ())
}

/// The multipart body of an upload: the parameters as text parts, then the
/// file as the part named `file`.
pub(super) fn multipart(
    form: &[(&str, &str)],
    file: FileUpload,
) -> Result<reqwest::multipart::Form, Error> {
    let mut body = reqwest::multipart::Form::new();
    for (k, v) in form {
        body = body.text((*k).to_owned(), (*v).to_owned());
    }
    let mut part = reqwest::multipart::Part::bytes(file.bytes).file_name(file.file_name);
    if let Some(ct) = &file.content_type {
        part = part.mime_str(ct).map_err(|e| Error::Config {
            detail: format!("file content type {ct:?}: {e}"),
        })?;
    }
    Ok(body.part("file", part))
}

impl<L: OutboundLimiter> Project<L> {
    /// Export File: the bytes stored in a File Upload field.
    pub async fn export_file(&self, at: &FileField) -> Result<FileDownload, Error> {
        self.send_file(at.params("export", true), None, download)
            .await
    }

    /// Import File: stores `file` in the field, replacing any earlier one.
    /// The record must exist.
    pub async fn import_file(&self, at: &FileField, file: FileUpload) -> Result<(), Error> {
        self.send_file(at.params("import", false), Some(file), empty)
            .await
    }

    /// Delete File: removes the field's file.
    pub async fn delete_file(&self, at: &FileField) -> Result<(), Error> {
        self.send_file(at.params("delete", false), None, empty)
            .await
    }

    pub(super) async fn send_file<T>(
        &self,
        params: Params,
        upload: Option<FileUpload>,
        read: super::Reader<T>,
    ) -> Result<T, Error> {
        // `send_with` scrubs the token from any error it keeps.
        let client: &Client<L> = &self.client;
        client
            .send_with(self.token.expose(), &params, upload, read)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_name_comes_from_the_content_type() {
        assert_eq!(
            name_parameter("text/plain; name=\"a b.txt\";charset=UTF-8").as_deref(),
            Some("a b.txt")
        );
        assert_eq!(
            name_parameter("application/pdf; name=x.pdf").as_deref(),
            Some("x.pdf")
        );
        assert_eq!(name_parameter("application/pdf; filename=\"x\""), None);
        assert_eq!(name_parameter("application/pdf"), None);
        let d = download(
            200,
            "text/plain; name=\"a\";charset=UTF-8".into(),
            b"ERROR: x".to_vec(),
        )
        .unwrap();
        assert_eq!(d.mime_type, "text/plain");
        assert_eq!(d.bytes, b"ERROR: x", "a 200 is the file, whatever it says");
        assert!(matches!(
            download(400, "application/json".into(), br#"{"error":"There is no file to download for this record"}"#.to_vec()),
            Err(Error::BadRequest { message }) if message == "There is no file to download for this record"
        ));
    }
}
