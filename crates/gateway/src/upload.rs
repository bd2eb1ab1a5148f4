//! `multipart/form-data` requests (file uploads), with bounded memory.
//!
//! The text parts are read into a [`Form`] under the same strict rules as a
//! urlencoded body. The one file part is copied in fixed-size chunks into a
//! spool file (0600, in the data directory, removed as soon as the request
//! is done) while its SHA-256 is computed, so the `request` entry can name
//! the whole body before anything is forwarded — whatever the order of the
//! parts. The outgoing body is then streamed from the spool file; the
//! gateway never holds more than a chunk of the file in memory.

use std::path::Path;

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::php::{self, Form, Refusal};

/// The file part of an upload, spooled.
pub struct Upload {
    /// The part's name (REDCap's file methods use `file`).
    pub field: String,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: [u8; 32],
    spool: tempfile::TempPath,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the upload has more than one file part; send one file per request")]
    SeveralFiles,
    #[error("the multipart body is malformed: {0}")]
    Malformed(String),
    #[error("the gateway cannot spool the upload: {0}")]
    Spool(std::io::Error),
}

/// Reads a multipart body: text parts into a form, the file part into a
/// spool file under `spool_dir`.
pub async fn read(
    body: Body,
    content_type: &str,
    spool_dir: &Path,
    max_input_vars: usize,
) -> Result<(Form, Option<Upload>), UploadError> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| UploadError::Malformed(e.to_string()))?;
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut pairs = Vec::new();
    let mut upload: Option<Upload> = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| UploadError::Malformed(e.to_string()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            None => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| UploadError::Malformed(e.to_string()))?;
                pairs.push((name, text));
            }
            Some(filename) => {
                if upload.is_some() {
                    return Err(UploadError::SeveralFiles);
                }
                std::fs::create_dir_all(spool_dir).map_err(UploadError::Spool)?;
                let spool = tempfile::Builder::new()
                    .prefix("upload-")
                    .tempfile_in(spool_dir)
                    .map_err(UploadError::Spool)?;
                let (file, path) = spool.into_parts();
                let mut file = tokio::fs::File::from_std(file);
                let mut hash = Sha256::new();
                let mut size = 0u64;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| UploadError::Malformed(e.to_string()))?
                {
                    hash.update(&chunk);
                    size += chunk.len() as u64;
                    file.write_all(&chunk).await.map_err(UploadError::Spool)?;
                }
                file.flush().await.map_err(UploadError::Spool)?;
                let content_type = field
                    .content_type()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "application/octet-stream".into());
                upload = Some(Upload {
                    field: name,
                    filename,
                    content_type,
                    size,
                    sha256: hash.finalize().into(),
                    spool: path,
                });
            }
        }
    }
    let form = php::check_fields(
        pairs,
        max_input_vars.saturating_sub(usize::from(upload.is_some())),
    )?;
    Ok((form, upload))
}

/// The outgoing multipart body: the canonical text fields, then the file
/// streamed from its spool. Returns the content type, the exact length and
/// the body.
pub async fn outgoing(
    form: &Form,
    upload: &Upload,
) -> std::io::Result<(String, u64, reqwest::Body)> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    let boundary = format!("warden{}", hex::encode(b));
    let mut head = String::new();
    for f in &form.fields {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n",
            quote(&f.name()),
            f.value
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
        quote(&upload.field),
        quote(&upload.filename),
        upload.content_type.replace(['\r', '\n'], "")
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + upload.size + tail.len() as u64;
    let file = tokio::fs::File::open(&upload.spool).await?;
    let stream =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(bytes::Bytes::from(head)) },
        )
        .chain(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024))
        .chain(futures_util::stream::once(async move {
            Ok(bytes::Bytes::from(tail))
        }));
    Ok((
        format!("multipart/form-data; boundary={boundary}"),
        length,
        reqwest::Body::wrap_stream(stream),
    ))
}

/// A header parameter value: quotes and line breaks cannot break out.
fn quote(s: &str) -> String {
    s.replace('"', "%22").replace(['\r', '\n'], " ")
}
