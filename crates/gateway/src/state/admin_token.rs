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
