//! What can go wrong in a call, in the terms a caller acts on.

use crate::Refusal;

/// A failed call. No variant ever holds a token: the client scrubs the
/// token's value from every message it keeps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The token is unknown, malformed, suspended or removed (generic 403).
    /// A rotation may have happened: re-read the secret once.
    #[error("REDCap does not accept this token (unknown, suspended or removed)")]
    InvalidToken,
    /// The method needs a (valid) super token.
    #[error("this method needs a valid 64-character super token")]
    SuperTokenRequired,
    /// The token is valid but its user lacks API Export / API Import.
    #[error("the token has no API right for this action: {message}")]
    NoApiRight {
        /// REDCap's text, naming the missing right.
        message: String,
    },
    /// The user's project rights expired on `date` (`YYYY-MM-DD`).
    #[error("the user's project rights expired on {date}")]
    Expired {
        /// The expiry date as REDCap gives it, `YYYY-MM-DD`.
        date: String,
    },
    /// A privilege check refused the method.
    #[error("privilege refused: {message}")]
    Privilege {
        /// REDCap's text, naming the missing privilege.
        message: String,
    },
    /// REDCap refused the parameters or the data; `message` is REDCap's.
    #[error("bad request: {message}")]
    BadRequest {
        /// REDCap's text, saying what was wrong.
        message: String,
    },
    /// The caller's IP is banned (429, §9.1): never retried; an
    /// administrator must lift the ban.
    #[error("REDCap banned this IP (429): {message}")]
    RateLimited {
        /// REDCap's text.
        message: String,
    },
    /// A 5xx or an unexpected status.
    #[error("REDCap server error {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The error text found in the body, or the whole body trimmed.
        message: String,
    },
    /// No answer: connection, TLS, timeout or an unreadable body.
    #[error("transport error: {detail}")]
    Transport {
        /// reqwest's error and its causes, without the URL.
        detail: String,
    },
    /// The [`super::OutboundLimiter`] refused the call; nothing was sent.
    #[error("the outbound limiter refused the call; nothing was sent")]
    Throttled,
    /// A 200 answer that is not what the method returns.
    #[error("unexpected answer to {what}: {detail}")]
    Decode {
        /// The method called, e.g. `"Export DAGs"`.
        what: &'static str,
        /// What did not decode, and where.
        detail: String,
    },
    /// The request could not be built (bad URL, unencodable data).
    #[error("cannot build the request: {detail}")]
    Config {
        /// What could not be built.
        detail: String,
    },
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::InvalidToken => Error::InvalidToken,
            Refusal::SuperTokenRequired => Error::SuperTokenRequired,
            Refusal::NoApiRight { message } => Error::NoApiRight { message },
            Refusal::Expired { date } => Error::Expired { date },
            Refusal::Privilege { message } => Error::Privilege { message },
            Refusal::BadRequest { message } => Error::BadRequest { message },
            Refusal::RateLimited { message } => Error::RateLimited { message },
            Refusal::Server { status, message } => Error::Server { status, message },
        }
    }
}

impl Error {
    /// A transport error without the URL (the URL is not secret, but errors
    /// travel into logs: keep them short) and with its causes.
    pub(crate) fn transport(e: &reqwest::Error) -> Error {
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Error::Transport { detail }
    }

    pub(crate) fn encode(e: serde_json::Error) -> Error {
        Error::Config {
            detail: format!("cannot encode the data as JSON: {e}"),
        }
    }

    /// REDCap's own message, for the refusals that carry one.
    pub fn redcap_message(&self) -> Option<&str> {
        match self {
            Error::NoApiRight { message }
            | Error::Privilege { message }
            | Error::BadRequest { message }
            | Error::RateLimited { message }
            | Error::Server { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Replaces any occurrence of `secret` in the kept messages.
    pub(crate) fn scrubbed(self, secret: &str) -> Error {
        if secret.is_empty() {
            return self;
        }
        let scrub = |s: String| {
            if s.contains(secret) {
                s.replace(secret, "<redacted>")
            } else {
                s
            }
        };
        match self {
            Error::NoApiRight { message } => Error::NoApiRight {
                message: scrub(message),
            },
            Error::Privilege { message } => Error::Privilege {
                message: scrub(message),
            },
            Error::BadRequest { message } => Error::BadRequest {
                message: scrub(message),
            },
            Error::RateLimited { message } => Error::RateLimited {
                message: scrub(message),
            },
            Error::Server { status, message } => Error::Server {
                status,
                message: scrub(message),
            },
            Error::Transport { detail } => Error::Transport {
                detail: scrub(detail),
            },
            Error::Decode { what, detail } => Error::Decode {
                what,
                detail: scrub(detail),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_the_secret_from_messages() {
        let secret = "0123456789ABCDEF0123456789ABCDEF";
        let e = Error::BadRequest {
            message: format!("token {secret} is odd"),
        }
        .scrubbed(secret);
        assert_eq!(e.redcap_message(), Some("token <redacted> is odd"));
        assert!(!format!("{e} {e:?}").contains(secret));
    }
}
