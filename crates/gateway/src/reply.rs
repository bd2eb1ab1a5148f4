//! Answers in REDCap's own shape, so a client's REDCap library reports a
//! gateway refusal exactly as it would report REDCap's: `{"error": …}` for
//! JSON, `ERROR: …` for CSV, `<hash><error>…</error></hash>` for XML,
//! chosen by `returnFormat` (or `format` when it is empty), as REDCap does.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::form::Form;
use redcap::php_form::PhpArray;

pub use redcap::Format;

/// The format of errors and import answers: `returnFormat`, or `format`
/// when it is empty.
pub fn error_format(form: &Form) -> Format {
    error_format_of(form.post())
}

/// [`error_format`] read straight from a `$_POST` the gateway refused.
pub fn error_format_of(post: &PhpArray) -> Format {
    let text = |name: &str| {
        post.get_name(name)
            .and_then(|v| v.as_bytes())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    };
    Format::return_format(text("returnFormat"), Format::from_param(text("format")))
}

/// The format of exported data: `format`.
pub fn data_format(form: &Form) -> Format {
    Format::from_param(form.get("format").unwrap_or(""))
}

/// REDCap's answer to an invalid, unknown or suspended token.
pub const NO_API_PERMISSION: &str = "You do not have permissions to use the API";

/// An error answer: status, message, format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiReply {
    /// The HTTP status: REDCap's own for what REDCap would refuse (403 for
    /// a bad token), 400 for a malformed request, 403 for a policy
    /// refusal, 503 when the gateway cannot forward (ledger, limiter,
    /// hold).
    pub status: StatusCode,
    /// The sentence the client sees: what is wrong and how to fix it.
    /// Never holds a token or a client key.
    pub message: String,
    /// The shape the message is written in ([`error_format`]).
    pub format: Format,
}

impl ApiReply {
    /// An answer with this status, message and format.
    pub fn new(status: StatusCode, message: impl Into<String>, format: Format) -> ApiReply {
        ApiReply {
            status,
            message: message.into(),
            format,
        }
    }

    /// The body REDCap would send for this error in [`Self::format`].
    pub fn body(&self) -> String {
        redcap::wire::error_body(&self.message, self.format)
    }
}

impl ApiReply {
    /// A 400 saying what is wrong with the request.
    pub(crate) fn bad_request(message: impl Into<String>, format: Format) -> ApiReply {
        ApiReply::new(StatusCode::BAD_REQUEST, message, format)
    }

    /// The 503 of a request the ledger could not record: nothing was
    /// forwarded.
    pub(crate) fn ledger_unavailable(format: Format) -> ApiReply {
        ApiReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway cannot record this request in its audit ledger, so it was not sent to REDCap; try again later",
            format,
        )
    }
}

/// `s` with its first letter upper-case (an error message made a sentence).
pub(crate) fn upperfirst(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Sets REDCap's `Content-Type` on an answer passed on.
pub(crate) fn with_content_type(mut response: Response, content_type: Option<&str>) -> Response {
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

impl IntoResponse for ApiReply {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.format.content_type()),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn fmt(body: &str) -> Format {
        let limits = redcap::php_form::Limits::default();
        error_format_of(&redcap::php_form::urlencoded::parse(body.as_bytes(), &limits).post)
    }

    #[test]
    fn the_error_format_follows_return_format_then_format() {
        assert_eq!(fmt("format=json"), Format::Json);
        assert_eq!(fmt("format=json&returnFormat=csv"), Format::Csv);
        assert_eq!(fmt("format=csv&returnFormat="), Format::Csv);
        assert_eq!(fmt("format=odm"), Format::Xml);
        assert_eq!(fmt(""), Format::Xml);
    }

    #[test]
    fn bodies_match_redcaps_shapes() {
        let r = |f| ApiReply::new(StatusCode::FORBIDDEN, NO_API_PERMISSION, f).body();
        assert_eq!(
            r(Format::Json),
            r#"{"error":"You do not have permissions to use the API"}"#
        );
        assert_eq!(
            r(Format::Csv),
            "ERROR: You do not have permissions to use the API"
        );
        assert_eq!(
            r(Format::Xml),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>You do not have permissions to use the API</error></hash>"
        );
        let slash = ApiReply::new(StatusCode::BAD_REQUEST, "a/b", Format::Json).body();
        assert_eq!(slash, r#"{"error":"a\/b"}"#);
    }
}
