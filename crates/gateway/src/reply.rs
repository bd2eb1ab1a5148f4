//! Answers in REDCap's own shape, so a client's REDCap library reports a
//! gateway refusal exactly as it would report REDCap's: `{"error": …}` for
//! JSON, `ERROR: …` for CSV, `<hash><error>…</error></hash>` for XML,
//! chosen by `returnFormat` (or `format` when it is empty), as REDCap does.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::php::Form;

/// The format REDCap would answer an error in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    Json,
    Csv,
    Xml,
}

impl ErrorFormat {
    /// `returnFormat`, or `format` when it is empty; anything else is XML.
    pub fn of(form: &Form) -> ErrorFormat {
        let pick = |v: &str| match v {
            "json" => ErrorFormat::Json,
            "csv" => ErrorFormat::Csv,
            _ => ErrorFormat::Xml,
        };
        match form.get("returnFormat").filter(|v| !v.is_empty()) {
            Some(rf) => pick(rf),
            None => pick(form.get("format").unwrap_or("")),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            ErrorFormat::Json => "application/json; charset=utf-8",
            ErrorFormat::Csv => "text/csv; charset=utf-8",
            ErrorFormat::Xml => "text/xml; charset=utf-8",
        }
    }
}

/// REDCap's answer to an invalid, unknown or suspended token.
pub const NO_API_PERMISSION: &str = "You do not have permissions to use the API";

/// An error answer: status, message, format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiReply {
    pub status: StatusCode,
    pub message: String,
    pub format: ErrorFormat,
}

impl ApiReply {
    pub fn new(status: StatusCode, message: impl Into<String>, format: ErrorFormat) -> ApiReply {
        ApiReply {
            status,
            message: message.into(),
            format,
        }
    }

    pub fn body(&self) -> String {
        match self.format {
            // PHP's json_encode escapes `/`.
            ErrorFormat::Json => serde_json::json!({ "error": self.message })
                .to_string()
                .replace('/', "\\/"),
            ErrorFormat::Csv => format!("ERROR: {}", self.message),
            ErrorFormat::Xml => {
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>{}</error></hash>",
                    self.message
                )
            }
        }
    }
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
    use crate::php::parse_form;

    fn fmt(body: &str) -> ErrorFormat {
        ErrorFormat::of(&parse_form(body.as_bytes(), 100).unwrap())
    }

    #[test]
    fn the_error_format_follows_return_format_then_format() {
        assert_eq!(fmt("format=json"), ErrorFormat::Json);
        assert_eq!(fmt("format=json&returnFormat=csv"), ErrorFormat::Csv);
        assert_eq!(fmt("format=csv&returnFormat="), ErrorFormat::Csv);
        assert_eq!(fmt("format=odm"), ErrorFormat::Xml);
        assert_eq!(fmt(""), ErrorFormat::Xml);
    }

    #[test]
    fn bodies_match_redcaps_shapes() {
        let r = |f| ApiReply::new(StatusCode::FORBIDDEN, NO_API_PERMISSION, f).body();
        assert_eq!(
            r(ErrorFormat::Json),
            r#"{"error":"You do not have permissions to use the API"}"#
        );
        assert_eq!(
            r(ErrorFormat::Csv),
            "ERROR: You do not have permissions to use the API"
        );
        assert_eq!(
            r(ErrorFormat::Xml),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>You do not have permissions to use the API</error></hash>"
        );
        let slash = ApiReply::new(StatusCode::BAD_REQUEST, "a/b", ErrorFormat::Json).body();
        assert_eq!(slash, r#"{"error":"a\/b"}"#);
    }
}
