//! `multipart/form-data` requests (file uploads): read as PHP reads them,
//! with bounded memory.
//!
//! The body streams through [`redcap::php_form::multipart::Parser`], the
//! same model of PHP's multipart reader the sandbox uses; its text parts
//! become the `$_POST` that [`crate::form::check`] judges, and the one file
//! part is copied, as it arrives, into a spool file (0600, in the data
//! directory, removed as soon as the request is done) while its SHA-256 is
//! computed, so the `request` entry can name the whole body before
//! anything is forwarded. Anything PHP would read in a surprising way (a
//! part it skips, text outside the parts, a second file, a file PHP would
//! reject) is refused. The outgoing body is canonical: the checked text
//! fields, then the file streamed from its spool; the gateway never holds
//! more than a chunk of the file in memory.

use std::path::Path;

use axum::body::Body;
use futures_util::StreamExt;
use redcap::php_form::{Limits, Value, canonical, multipart};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::connections::Incoming;
use crate::form::{self, Form, Refusal};
use crate::upstream::OutBody;

/// The file part of an upload, spooled.
pub struct Upload {
    /// The part's name (REDCap's file methods use `file`).
    pub field: String,
    /// The client's file name, as PHP read it.
    pub filename: Vec<u8>,
    /// The part's type as PHP reports it (empty when none was sent).
    pub content_type: Vec<u8>,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
    spool: tempfile::TempPath,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body breaks the gateway's reading rule.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// More than one file part.
    #[error("the upload has more than one file part; send one file per request")]
    SeveralFiles,
    /// A file part before the `token` part.
    #[error(
        "the file part comes before the token; send the token (and the other parameters) first, as PyCap, REDCapR and curl -F in order do"
    )]
    FileBeforeToken,
    /// No `token` part within the first [`PRE_AUTH_BYTES`].
    #[error(
        "the gateway reads the client key from the first 64 KiB of a request; send the token before the other parameters"
    )]
    TokenTooLate,
    /// A file part whose name is not a plain parameter name.
    #[error(
        "the file part's name \"{0}\" is not a plain parameter name; send the file as \"file\""
    )]
    FileName(String),
    /// Larger than `max_body_bytes`.
    #[error("the request body is larger than the gateway accepts ({0} bytes)")]
    TooLarge(u64),
    /// The client stopped sending, or sent something HTTP cannot carry.
    #[error("the request body could not be read: {0}")]
    Broken(String),
    /// The spool file could not be written.
    #[error("the gateway cannot spool the upload: {0}")]
    Spool(std::io::Error),
}

/// The file being spooled.
struct Spooling {
    field: String,
    filename: Vec<u8>,
    content_type: Vec<u8>,
    file: tokio::fs::File,
    path: tempfile::TempPath,
    hash: Sha256,
    size: u64,
    error: Option<i64>,
}

/// Reads a multipart body: text parts into a checked form, the file part
/// into a spool file under `spool_dir` (what [`MultipartReader`] does,
/// without stopping for the key).
pub async fn read(
    body: Body,
    content_type: &[u8],
    spool_dir: &Path,
    limits: &Limits,
    max_body_bytes: u64,
) -> Result<(Form, Option<Upload>), UploadError> {
    let mut reader = MultipartReader::new(body, content_type, limits, max_body_bytes)?;
    reader.token().await?;
    reader.finish(spool_dir).await
}

/// The most of a body the gateway reads before it knows the client's key
/// (for urlencoded bodies and for the text parts before a multipart
/// body's `token`): a client without a key costs at most this much.
pub const PRE_AUTH_BYTES: u64 = 64 * 1024;

/// A multipart body read in two steps: [`MultipartReader::token`] reads up
/// to the `token` part (at most [`PRE_AUTH_BYTES`], and no file part may
/// come first), so the key is checked before anything is spooled;
/// [`MultipartReader::finish`] reads the rest.
pub struct MultipartReader {
    parser: multipart::Parser,
    stream: Incoming,
    events: Vec<multipart::Event>,
    /// Events already looked at by [`MultipartReader::token`].
    seen: usize,
    limits: Limits,
    max_body_bytes: u64,
    read: u64,
    ended: bool,
}

impl MultipartReader {
    /// A reader for a body of this `Content-Type`.
    pub fn new(
        body: Body,
        content_type: &[u8],
        limits: &Limits,
        max_body_bytes: u64,
    ) -> Result<MultipartReader, UploadError> {
        let boundary =
            multipart::boundary(content_type).map_err(|e| Refusal::Unreadable(e.to_string()))?;
        Ok(MultipartReader {
            parser: multipart::Parser::new(&boundary, limits),
            stream: Incoming::new(body),
            events: Vec::new(),
            seen: 0,
            limits: limits.clone(),
            max_body_bytes,
            read: 0,
            ended: false,
        })
    }

    async fn next(&mut self) -> Result<Option<bytes::Bytes>, UploadError> {
        let max = self.max_body_bytes;
        self.stream
            .next()
            .await
            .map_err(|(e, source)| match source {
                Some(source) if is_too_large(&source) => UploadError::TooLarge(max),
                _ => UploadError::Broken(e.to_string()),
            })
    }

    /// Reads until the `token` part is in: its value, or `None` if the
    /// body ended without one.
    pub async fn token(&mut self) -> Result<Option<String>, UploadError> {
        loop {
            while self.seen < self.events.len() {
                match &self.events[self.seen] {
                    multipart::Event::Field(i) if self.parser.fields()[*i].raw_name == b"token" => {
                        let value = self
                            .parser
                            .post()
                            .get_name("token")
                            .and_then(|v| v.as_bytes())
                            .map(|b| String::from_utf8_lossy(b).into_owned());
                        return Ok(value);
                    }
                    multipart::Event::FileStart { .. } => return Err(UploadError::FileBeforeToken),
                    _ => self.seen += 1,
                }
            }
            if self.read > PRE_AUTH_BYTES {
                return Err(UploadError::TokenTooLate);
            }
            if self.ended {
                return Ok(None);
            }
            match self.next().await? {
                None => {
                    // The last parts are read only now.
                    self.ended = true;
                    self.parser.end(&mut self.events);
                }
                Some(chunk) => {
                    self.read += chunk.len() as u64;
                    self.parser.feed(&chunk, &mut self.events);
                }
            }
        }
    }

    /// Reads the rest of the body, spooling the file part.
    pub async fn finish(mut self, spool_dir: &Path) -> Result<(Form, Option<Upload>), UploadError> {
        let mut file: Option<Spooling> = None;
        on_events(&mut self.events, &mut file, spool_dir).await?;
        while !self.ended {
            let Some(chunk) = self.next().await? else {
                break;
            };
            self.parser.feed(&chunk, &mut self.events);
            on_events(&mut self.events, &mut file, spool_dir).await?;
        }
        let parsed = self.parser.finish(&mut self.events);
        on_events(&mut self.events, &mut file, spool_dir).await?;
        let form = form::check(parsed, &self.limits)?;
        let Some(mut f) = file else {
            return Ok((form, None));
        };
        if f.error.is_some_and(|e| e != 0) {
            return Err(Refusal::Multipart(
                "a file part PHP would not accept (an empty file name, or a file cut short)",
            )
            .into());
        }
        check_representable(&form)?;
        f.file.flush().await.map_err(UploadError::Spool)?;
        Ok((
            form,
            Some(Upload {
                field: f.field,
                filename: f.filename,
                content_type: f.content_type,
                size: f.size,
                sha256: f.hash.finalize().into(),
                spool: f.path,
            }),
        ))
    }
}

/// Whether a body error is `max_body_bytes` being exceeded.
pub(crate) fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn on_events(
    events: &mut Vec<multipart::Event>,
    file: &mut Option<Spooling>,
    spool_dir: &Path,
) -> Result<(), UploadError> {
    for event in events.drain(..) {
        match event {
            multipart::Event::Field(_) => {}
            multipart::Event::FileStart {
                name,
                filename,
                content_type,
            } => {
                if file.is_some() {
                    return Err(UploadError::SeveralFiles);
                }
                // A part without a name gets a number from PHP: not a file
                // REDCap would find.
                let plain = name
                    .first()
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                    && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_');
                if !plain {
                    return Err(UploadError::FileName(
                        String::from_utf8_lossy(&name).into_owned(),
                    ));
                }
                let field = String::from_utf8(name).expect("checked: ASCII");
                std::fs::create_dir_all(spool_dir).map_err(UploadError::Spool)?;
                let spool = tempfile::Builder::new()
                    .prefix("upload-")
                    .tempfile_in(spool_dir)
                    .map_err(UploadError::Spool)?;
                let (f, path) = spool.into_parts();
                *file = Some(Spooling {
                    field,
                    filename,
                    content_type,
                    file: tokio::fs::File::from_std(f),
                    path,
                    hash: Sha256::new(),
                    size: 0,
                    error: None,
                });
            }
            multipart::Event::FileData(data) => {
                if let Some(f) = file.as_mut() {
                    f.hash.update(&data);
                    f.size += data.len() as u64;
                    f.file.write_all(&data).await.map_err(UploadError::Spool)?;
                }
            }
            multipart::Event::FileEnd { error, .. } => {
                if let Some(f) = file.as_mut() {
                    f.error = Some(error);
                }
            }
        }
    }
    Ok(())
}

/// The longest part name the canonical body writes: its header line must
/// stay well inside PHP's 5,120-byte line buffer.
const MAX_PART_NAME: usize = 4000;

/// Whether the canonical multipart body can carry this form: every name
/// must fit on a header line, and none may change how PHP reads the file
/// (`MAX_FILE_SIZE`, which the canonical body would put before it).
fn check_representable(form: &Form) -> Result<(), Refusal> {
    for (name, _) in canonical::leaves(form.post()) {
        if name.eq_ignore_ascii_case(b"MAX_FILE_SIZE") {
            return Err(Refusal::Multipart(
                "a MAX_FILE_SIZE field, which changes how PHP reads the file",
            ));
        }
        if name.len() > MAX_PART_NAME || !canonical::multipart_name_ok(&name) {
            return Err(Refusal::Multipart(
                "a field name that cannot be forwarded as a part name (too long, or a line feed or NUL in it)",
            ));
        }
    }
    Ok(())
}

/// The outgoing multipart body: the canonical text fields, then the file
/// streamed from its spool. Returns the content type, the exact length and
/// the body.
pub async fn outgoing(form: &Form, upload: &Upload) -> std::io::Result<(String, u64, OutBody)> {
    let leaves = canonical::leaves(form.post());
    let boundary = loop {
        let b = format!("warden{}", durable::random_hex(16));
        let clash = leaves.iter().any(|(_, v)| {
            v.as_bytes()
                .is_some_and(|v| memchr::memmem::find(v, b.as_bytes()).is_some())
        });
        if !clash {
            break b;
        }
    };
    let mut head: Vec<u8> = Vec::new();
    for (name, value) in &leaves {
        head.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=").as_bytes(),
        );
        head.extend_from_slice(&canonical::quote_multipart(name));
        head.extend_from_slice(b"\r\n\r\n");
        match value {
            Value::Str(s) => head.extend_from_slice(s),
            Value::Int(i) => head.extend_from_slice(i.to_string().as_bytes()),
            Value::Array(_) => {}
        }
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=").as_bytes(),
    );
    head.extend_from_slice(&canonical::quote_multipart(upload.field.as_bytes()));
    head.extend_from_slice(b"; filename=");
    head.extend_from_slice(&canonical::quote_multipart(&upload.filename));
    if !upload.content_type.is_empty() {
        head.extend_from_slice(b"\r\nContent-Type: ");
        head.extend_from_slice(&upload.content_type);
    }
    head.extend_from_slice(b"\r\n\r\n");
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
        OutBody::Stream(Box::pin(stream)),
    ))
}
