//! Secret names: what every backend can store as a key or path.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated secret name: 1–128 characters of lower-case letters, digits
/// and `-` `_` `.` `/`, starting with a letter or digit, with no empty,
/// `.` or `..` path segment. These are accepted unchanged as an age-file
/// key, a Vault KV path and an AWS secret name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

impl SecretName {
    /// Validates `name` against the rules above (and the reserved
    /// `.labels` suffix); the error says which rule it breaks.
    pub fn new(name: &str) -> Result<SecretName, String> {
        let problem = if name.is_empty() || name.len() > 128 {
            Some("must be 1 to 128 characters long")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./".contains(c))
        {
            Some("may contain only lower-case letters, digits and - _ . /")
        } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            Some("must start with a letter or digit")
        } else if name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            Some("must not have an empty, `.` or `..` path segment")
        } else if name.ends_with(".labels") {
            Some("must not end in `.labels` (reserved for the Vault backend's label entries)")
        } else {
            None
        };
        match problem {
            None => Ok(SecretName(name.to_string())),
            Some(p) => Err(format!("secret name `{}` {p}", name.escape_debug())),
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SecretName {
    type Error = String;
    fn try_from(s: String) -> Result<SecretName, String> {
        SecretName::new(&s)
    }
}

impl From<SecretName> for String {
    fn from(n: SecretName) -> String {
        n.0
    }
}

impl std::str::FromStr for SecretName {
    type Err = String;
    fn from_str(s: &str) -> Result<SecretName, String> {
        SecretName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_backend_accepts() {
        for ok in [
            "a",
            "redcap/site-01/etl",
            "warden/fingerprint-key",
            "x.y_z",
            "0",
        ] {
            SecretName::new(ok).unwrap();
        }
        for bad in [
            "",
            "A",
            "a b",
            "/a",
            "a//b",
            "a/../b",
            "a/./b",
            "a/",
            "-a",
            "é",
            "a.labels",
            &"a".repeat(129),
        ] {
            assert!(SecretName::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
