//! Reading REDCap's answers: finding the error message in a body of any
//! `returnFormat` (§1.6) and classifying a refusal the way a client (or the
//! gateway) must act on it.

use crate::ApiError;

/// The error message of an error body, as clients detect it (§1.6): JSON
/// `{"error": …}`, CSV `ERROR: …`, XML `<error>…</error>`. `None` if the body
/// is not an error.
pub fn error_message(body: &str) -> Option<String> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        return v.get("error").and_then(|e| e.as_str()).map(str::to_owned);
    }
    if trimmed.len() >= 6 && trimmed[..6].eq_ignore_ascii_case("error:") {
        return Some(trimmed[6..].trim().to_owned());
    }
    let start = trimmed.find("<error>")? + "<error>".len();
    let end = trimmed[start..].find("</error>")? + start;
    Some(trimmed[start..end].to_owned())
}

/// Why REDCap refused a request, in the terms a caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token is unknown, malformed, suspended or removed (generic 403).
    /// A rotation may have happened: re-read the secret once.
    InvalidToken,
    /// A super token was needed or is invalid (`api_120`).
    SuperTokenRequired,
    /// The token is valid but lacks API Export / API Import.
    NoApiRight {
        /// REDCap's text, naming the missing right.
        message: String,
    },
    /// The user's project rights expired on `date` (`YYYY-MM-DD`).
    Expired {
        /// The expiry date as REDCap gives it, `YYYY-MM-DD`.
        date: String,
    },
    /// A privilege check refused the method (403 gates other than the above,
    /// and the 400 method-level privilege texts).
    Privilege {
        /// REDCap's text, naming the missing privilege.
        message: String,
    },
    /// Anything else REDCap answered with 400: bad parameters or data.
    BadRequest {
        /// REDCap's text, saying what was wrong.
        message: String,
    },
    /// The caller's IP is banned (429): do not retry.
    RateLimited {
        /// REDCap's text.
        message: String,
    },
    /// 5xx or an unexpected status.
    Server {
        /// The HTTP status.
        status: u16,
        /// The error text found in the body, or the whole body trimmed.
        message: String,
    },
}

fn privilege_texts() -> Vec<String> {
    use ApiError::*;
    [
        NoDeleteRecord,
        NoRenameRecord,
        NoRandomize,
        DagMemberForbidden,
        NoExportAccess,
        NoLoggingRight,
        AnalysisCleanup,
        UserRightsExportPrivilege,
        UserRightsImportPrivilege,
        UserRoleImportPrivilege,
        DagExportPrivilege,
        DagImportPrivilege,
        DagMappingByDagMember,
        DesignPrivilege,
        RecordDeleteNeedsImport,
    ]
    .iter()
    .map(ApiError::message)
    .collect()
}

/// Classifies an answer; `None` when it is a success.
///
/// A 200 whose body is an `ERROR: …` text (Switch DAG, §10.3) is a
/// [`Refusal::BadRequest`]; other 200 bodies are successes.
pub fn classify(status: u16, body: &str) -> Option<Refusal> {
    let message = error_message(body);
    match status {
        200 => {
            let trimmed = body.trim_start();
            (trimmed.len() >= 6 && trimmed[..6].eq_ignore_ascii_case("error:")).then(|| {
                Refusal::BadRequest {
                    message: message.unwrap_or_default(),
                }
            })
        }
        429 => Some(Refusal::RateLimited {
            message: body.trim().to_owned(),
        }),
        403 => {
            let message = message.unwrap_or_else(|| body.trim().to_owned());
            Some(if message == ApiError::NoApiPermission.message() {
                Refusal::InvalidToken
            } else if message == ApiError::SuperTokenRequired.message()
                || message.starts_with(
                    "You do not have permissions to use the API 'Create Project' method",
                )
            {
                Refusal::SuperTokenRequired
            } else if let Some(rest) = message.strip_prefix(crate::error::RIGHTS_EXPIRED_PREFIX) {
                Refusal::Expired {
                    date: rest.trim_end_matches('.').to_owned(),
                }
            } else if message == ApiError::NoApiExport.message()
                || message == ApiError::NoApiImport.message()
            {
                Refusal::NoApiRight { message }
            } else {
                Refusal::Privilege { message }
            })
        }
        400 => {
            let message = message.unwrap_or_else(|| body.trim().to_owned());
            Some(if privilege_texts().contains(&message) {
                Refusal::Privilege { message }
            } else {
                Refusal::BadRequest { message }
            })
        }
        _ => Some(Refusal::Server {
            status,
            message: message.unwrap_or_else(|| body.trim().to_owned()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_messages_in_every_format() {
        assert_eq!(error_message(r#"{"error":"a\/b"}"#).as_deref(), Some("a/b"));
        assert_eq!(error_message("ERROR: nope").as_deref(), Some("nope"));
        assert_eq!(
            error_message(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>x \"y\"</error></hash>"
            )
            .as_deref(),
            Some("x \"y\"")
        );
        assert_eq!(error_message("[{\"record_id\":\"1\"}]"), None);
        assert_eq!(error_message("15.7.6"), None);
        assert_eq!(error_message("{\"count\": 2}"), None);
    }

    #[test]
    fn classifies_refusals() {
        let body = |e: ApiError| format!("{{\"error\":\"{}\"}}", e.message().replace('"', "\\\""));
        assert_eq!(classify(200, "[]"), None);
        assert_eq!(
            classify(403, &body(ApiError::NoApiPermission)),
            Some(Refusal::InvalidToken)
        );
        assert_eq!(
            classify(
                403,
                "ERROR: You do not have API rights because your privileges have expired for this project as of 2026-01-31."
            ),
            Some(Refusal::Expired {
                date: "2026-01-31".into()
            })
        );
        assert!(matches!(
            classify(403, &body(ApiError::NoApiExport)),
            Some(Refusal::NoApiRight { .. })
        ));
        assert!(matches!(
            classify(403, &body(ApiError::DagMemberForbidden)),
            Some(Refusal::Privilege { .. })
        ));
        assert!(matches!(
            classify(400, &body(ApiError::UserRightsExportPrivilege)),
            Some(Refusal::Privilege { .. })
        ));
        assert!(matches!(
            classify(400, &body(ApiError::InvalidContent)),
            Some(Refusal::BadRequest { .. })
        ));
        assert!(matches!(
            classify(403, &body(ApiError::SuperTokenRequired)),
            Some(Refusal::SuperTokenRequired)
        ));
        assert!(matches!(
            classify(
                429,
                "Your IP address (1.2.3.4) has been banned due to suspected abuse."
            ),
            Some(Refusal::RateLimited { .. })
        ));
        assert!(matches!(
            classify(500, "boom"),
            Some(Refusal::Server { status: 500, .. })
        ));
        assert!(matches!(
            classify(200, "ERROR: Invalid DAG"),
            Some(Refusal::BadRequest { .. })
        ));
    }
}
