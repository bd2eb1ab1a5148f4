//! PHP's request-body parsing, modelled exactly: what REDCap will find in
//! `$_POST` and `$_FILES`.
//!
//! REDCap is PHP, and it acts on what PHP builds from the body — not on
//! the bytes a proxy read. Anything that decides for REDCap (the gateway's
//! policy and ledger, the sandbox playing REDCap) must therefore read the
//! body the way PHP does, quirks included: a name cut at a NUL byte, `.`
//! and space turned into `_`, brackets that build arrays, the last
//! duplicate winning, fields past `max_input_vars` vanishing, and a
//! multipart reader with rules of its own. This module is that model, in
//! three layers:
//!
//! - [`mod@register`]: where one `name = value` lands (PHP's
//!   `php_register_variable_ex`), on [`PhpArray`]s;
//! - [`urlencoded`] and [`multipart`]: how PHP splits each body format
//!   into names and values (the multipart parser streams, in chunks of any
//!   size, so uploads never need to be held whole);
//! - [`canonical`]: the body that PHP reads back into exactly a given
//!   `$_POST` — what the gateway forwards, so REDCap acts on what the
//!   gateway decided on.
//!
//! It was written from PHP's documented and observed behaviour (and facts
//! read in PHP's source, not its code) and is held to PHP 8.2 by a
//! differential test over generated hostile bodies
//! (`crates/gateway/tests/php_differential.rs`).

pub mod array;
pub mod canonical;
pub mod multipart;
pub mod register;
pub mod urlencoded;

pub use array::{Key, KeyRef, PhpArray, Value};
pub use register::{Effect, Registration, register};

/// The `php.ini` limits that change what PHP reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `max_input_vars` (PHP's default 1000).
    pub max_input_vars: usize,
    /// `max_input_nesting_level` (default 64).
    pub max_input_nesting_level: usize,
    /// `max_file_uploads` (default 20).
    pub max_file_uploads: i64,
    /// `max_multipart_body_parts`; `None` is PHP's default of
    /// `max_input_vars + max_file_uploads`.
    pub max_multipart_body_parts: Option<i64>,
    /// `upload_max_filesize` in bytes; 0 for no limit.
    pub upload_max_filesize: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_input_vars: 1000,
            max_input_nesting_level: 64,
            max_file_uploads: 20,
            max_multipart_body_parts: None,
            upload_max_filesize: 0,
        }
    }
}

/// One field of the body and what registering it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name exactly as the client spelled it, decoded (urlencoded:
    /// after `+` and `%XX`; multipart: after PHP's unquoting), before any
    /// of PHP's rewriting. Compare it with what PHP registered to see a
    /// name that lands somewhere else than it says.
    pub raw_name: Vec<u8>,
    /// Where PHP put it.
    pub registration: Registration,
}

/// Things PHP does with a multipart body that a careful reader would not
/// expect; the gateway refuses a body with any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A non-empty line outside any part that PHP skipped (a preamble,
    /// text between parts, a delimiter followed by other characters).
    JunkLine,
    /// A line longer than PHP's 5,120-byte buffer, which PHP splits.
    LongLine,
    /// A NUL byte in a line PHP reads as a C string.
    NulInHeader,
    /// A part without `Content-Disposition`: PHP skipped it.
    NoDisposition,
    /// An upload PHP skipped (brackets in its name, too many files).
    SkippedUpload,
    /// An upload PHP cancelled (too large, or cut short).
    FailedUpload,
    /// A part with neither `name` nor `filename`: PHP stopped reading.
    Garbled,
    /// More parts than `max_multipart_body_parts`: PHP stopped reading.
    PartsLimit,
    /// Text parts past `max_input_vars`, which PHP ignored.
    TooManyVars,
    /// A part after the closing `--boundary--`, which PHP still read.
    PartAfterClose,
    /// The body ended before the closing `--boundary--`.
    Unterminated,
}

impl Note {
    /// What PHP does, in words for a refusal.
    pub fn describe(self) -> &'static str {
        match self {
            Note::JunkLine => {
                "text outside the parts, or a boundary followed by other characters, which PHP skips"
            }
            Note::LongLine => "a line longer than PHP's 5,120-byte buffer, which PHP splits in two",
            Note::NulInHeader => "a NUL byte in a part's headers, where PHP stops reading the line",
            Note::NoDisposition => "a part without Content-Disposition, which PHP skips",
            Note::SkippedUpload => {
                "a file part PHP skips (brackets in its name, or too many files)"
            }
            Note::FailedUpload => {
                "a file part PHP rejects (larger than its upload limit, or cut short)"
            }
            Note::Garbled => {
                "a part with neither name nor filename, where PHP stops reading the body"
            }
            Note::PartsLimit => {
                "more parts than PHP's max_multipart_body_parts, where PHP stops reading"
            }
            Note::TooManyVars => {
                "more text parts than PHP's max_input_vars, past which PHP ignores them"
            }
            Note::PartAfterClose => "a part after the closing boundary, which PHP still reads",
            Note::Unterminated => "no closing boundary",
        }
    }
}

/// A body as PHP reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `$_POST`.
    pub post: PhpArray,
    /// `$_FILES` (`tmp_name` is always empty in the model).
    pub files: PhpArray,
    /// The fields PHP registered into `$_POST`, in order.
    pub fields: Vec<Field>,
    /// What PHP counted against `max_input_vars`.
    pub vars: usize,
    /// PHP stopped (urlencoded) or ignored the rest (multipart) at
    /// `max_input_vars`.
    pub stopped_early: bool,
    /// Surprises in a multipart body.
    pub notes: Vec<Note>,
}

/// How PHP reads a body, by its `Content-Type` (PHP's SAPI: the type is
/// what comes before the first `;`, `,` or space, in any case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    Urlencoded,
    /// `multipart/form-data` (the boundary comes from
    /// [`multipart::boundary`]).
    Multipart,
    /// Anything else: PHP leaves `$_POST` empty.
    Other,
}

impl BodyKind {
    /// The kind PHP chooses for this `Content-Type` header value.
    pub fn of(content_type: &[u8]) -> BodyKind {
        let end = content_type
            .iter()
            .position(|&c| matches!(c, b';' | b',' | b' '))
            .unwrap_or(content_type.len());
        let t = content_type[..end].to_ascii_lowercase();
        match &t[..] {
            b"application/x-www-form-urlencoded" => BodyKind::Urlencoded,
            b"multipart/form-data" => BodyKind::Multipart,
            _ => BodyKind::Other,
        }
    }
}

/// An upload read whole (see [`parse_buffered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The part's name as PHP registers it.
    pub name: Vec<u8>,
    /// The client's file name.
    pub filename: Vec<u8>,
    /// The part's type, up to any `;`.
    pub content_type: Vec<u8>,
    /// PHP's `UPLOAD_ERR_*` (0: kept).
    pub error: i64,
    /// The bytes (empty on error).
    pub bytes: Vec<u8>,
}

/// Reads a whole body held in memory: `$_POST`, `$_FILES` and the uploads'
/// bytes. A multipart body without a usable boundary is an error (PHP
/// warns and reads nothing).
pub fn parse_buffered(
    content_type: &[u8],
    body: &[u8],
    limits: &Limits,
) -> Result<(Parsed, Vec<Upload>), multipart::MultipartError> {
    match BodyKind::of(content_type) {
        BodyKind::Urlencoded => Ok((urlencoded::parse(body, limits), Vec::new())),
        BodyKind::Other => Ok((Parsed::default(), Vec::new())),
        BodyKind::Multipart => {
            let boundary = multipart::boundary(content_type)?;
            let mut parser = multipart::Parser::new(&boundary, limits);
            let mut events = Vec::new();
            parser.feed(body, &mut events);
            let parsed = parser.finish(&mut events);
            let mut uploads: Vec<Upload> = Vec::new();
            for e in events {
                match e {
                    multipart::Event::FileStart {
                        name,
                        filename,
                        content_type,
                    } => uploads.push(Upload {
                        name,
                        filename,
                        content_type,
                        error: 0,
                        bytes: Vec::new(),
                    }),
                    multipart::Event::FileData(d) => {
                        if let Some(u) = uploads.last_mut() {
                            u.bytes.extend_from_slice(&d);
                        }
                    }
                    multipart::Event::FileEnd { error, .. } => {
                        if let Some(u) = uploads.last_mut() {
                            u.error = error;
                            if error != 0 {
                                u.bytes.clear();
                            }
                        }
                    }
                    multipart::Event::Field(_) => {}
                }
            }
            Ok((parsed, uploads))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_kind_is_the_type_before_any_parameter() {
        for (ct, kind) in [
            ("application/x-www-form-urlencoded", BodyKind::Urlencoded),
            (
                "Application/X-WWW-Form-Urlencoded;charset=utf-8",
                BodyKind::Urlencoded,
            ),
            (
                "application/x-www-form-urlencoded,foo",
                BodyKind::Urlencoded,
            ),
            ("multipart/form-data; boundary=x", BodyKind::Multipart),
            ("application/x-www-form-urlencodedx", BodyKind::Other),
            ("text/plain", BodyKind::Other),
            ("", BodyKind::Other),
        ] {
            assert_eq!(BodyKind::of(ct.as_bytes()), kind, "{ct}");
        }
    }
}
