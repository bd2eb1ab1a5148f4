//! The admin listener's bearer credential: a random value in a 0600 file
//! beside the data (`[gateway] admin_token_file`), created at first
//! start. Whoever can read the data directory can administer the
//! gateway, and nobody else.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The admin bearer credential (read once at start; never changes).
pub struct AdminToken(Zeroizing<String>);

impl AdminToken {
    /// Whether the request carries the credential (compared in constant
    /// time).
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }

    /// [`AdminToken::matches`], or HTTP Basic with the credential as the
    /// password (any user name): what a browser sends for the dashboard
    /// after asking for it. Only the dashboard accepts Basic.
    pub(crate) fn matches_browser(&self, headers: &HeaderMap) -> bool {
        use base64::Engine;
        if self.matches(headers) {
            return true;
        }
        let Some(encoded) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let decoded = Zeroizing::new(decoded);
        let password = match decoded.iter().position(|&b| b == b':') {
            Some(i) => &decoded[i + 1..],
            None => return false,
        };
        bool::from(password.ct_eq(self.0.as_bytes()))
    }
}

/// Reads the credential, creating the 0600 file with a random value if it
/// does not exist yet.
pub fn load_or_create_token(path: &Path) -> Result<AdminToken, std::io::Error> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => {
            return Ok(AdminToken(Zeroizing::new(t.trim().to_string())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = Zeroizing::new(durable::random_hex(32));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(AdminToken(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user_pass: &str) -> HeaderMap {
        with(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        ))
    }

    #[test]
    fn the_dashboard_takes_the_credential_as_bearer_or_basic_password_only() {
        let t = AdminToken(Zeroizing::new("s3cret".into()));
        assert!(t.matches_browser(&with("Bearer s3cret")));
        assert!(t.matches_browser(&basic("admin:s3cret")));
        assert!(t.matches_browser(&basic(":s3cret")));
        assert!(!t.matches_browser(&basic("s3cret:wrong")));
        assert!(!t.matches_browser(&basic("s3cret")));
        assert!(!t.matches_browser(&with("Basic not-base64!")));
        assert!(!t.matches_browser(&HeaderMap::new()));
        // Everything else on the admin listener stays bearer-only.
        assert!(!t.matches(&basic("admin:s3cret")));
    }
}
