//! API tokens.
//!
//! A project token is 32 uppercase hexadecimal characters, one per user ×
//! project; a super token is 64 (§1.7). Both are credentials: the value lives
//! in a [`SecretString`] (wiped on drop), `Debug` prints `Token(<redacted>)`,
//! there is no `Display`, and reading the value needs the explicit
//! [`Token::expose`] call.

use secrecy::{ExposeSecret, SecretString};

/// Why a string is not a token. The message never contains the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Wrong number of characters (a trailing newline counts, §10.11).
    #[error("a REDCap {kind} token has {expected} characters, this one has {actual}")]
    Length {
        /// `"project"` or `"super"`.
        kind: &'static str,
        /// 32 for a project token, 64 for a super token.
        expected: usize,
        /// How many bytes the input has.
        actual: usize,
    },
    /// A character that is not 0-9 or A-F.
    #[error("a REDCap {kind} token has only the characters 0-9 and A-F (uppercase hex)")]
    Characters {
        /// `"project"` or `"super"`.
        kind: &'static str,
    },
}

fn check(value: &str, kind: &'static str, expected: usize) -> Result<(), TokenError> {
    // Count bytes: a multibyte character is wrong anyway and `len()` does not
    // depend on the content in a way worth hiding.
    if value.len() != expected {
        return Err(TokenError::Length {
            kind,
            expected,
            actual: value.chars().count(),
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return Err(TokenError::Characters { kind });
    }
    Ok(())
}

/// A 32-character project API token.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// The number of characters in a project token.
    pub const LEN: usize = 32;

    /// Validates and wraps a token. Nothing is trimmed: REDCap does not trim
    /// either, so a trailing newline would fail there too (§10.11).
    pub fn parse(value: &str) -> Result<Self, TokenError> {
        check(value, "project", Self::LEN)?;
        Ok(Self(SecretString::from(value)))
    }

    /// Like [`Token::parse`], but takes ownership so no unwiped copy is left.
    pub fn from_string(value: String) -> Result<Self, TokenError> {
        check(&value, "project", Self::LEN)?;
        Ok(Self(SecretString::from(value)))
    }

    /// The token's value; every call site is a place the secret leaves.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Constant-time equality, so comparing tokens leaks no prefix length.
impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.expose().as_bytes(), other.expose().as_bytes())
    }
}
impl Eq for Token {}

/// A 64-character super API token (works only for Create Project and
/// `version`, §2.5).
#[derive(Clone)]
pub struct SuperToken(SecretString);

impl SuperToken {
    /// The number of characters in a super token.
    pub const LEN: usize = 64;

    /// Validates and wraps a super token (no trimming).
    pub fn parse(value: &str) -> Result<Self, TokenError> {
        check(value, "super", Self::LEN)?;
        Ok(Self(SecretString::from(value)))
    }

    /// Like [`SuperToken::parse`], taking ownership.
    pub fn from_string(value: String) -> Result<Self, TokenError> {
        check(&value, "super", Self::LEN)?;
        Ok(Self(SecretString::from(value)))
    }

    /// The token's value.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for SuperToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SuperToken(<redacted>)")
    }
}

impl PartialEq for SuperToken {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(self.expose().as_bytes(), other.expose().as_bytes())
    }
}
impl Eq for SuperToken {}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789ABCDEF0123456789ABCDEF";

    #[test]
    fn parses_uppercase_hex_of_the_right_length() {
        assert_eq!(Token::parse(GOOD).unwrap().expose(), GOOD);
        let sup = "A".repeat(64);
        assert_eq!(SuperToken::parse(&sup).unwrap().expose(), sup);
    }

    #[test]
    fn refuses_bad_tokens_without_echoing_them() {
        for bad in [
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEG",
            "0123456789ABCDEF0123456789ABCDEF\n",
            "",
            "0123456789ABCDEF",
        ] {
            let err = Token::parse(bad).unwrap_err();
            let msg = err.to_string();
            assert!(bad.is_empty() || !msg.contains(bad.trim()), "{msg}");
        }
        assert!(SuperToken::parse(GOOD).is_err());
        assert!(Token::parse(&"A".repeat(64)).is_err());
    }

    #[test]
    fn debug_never_prints_the_value() {
        let t = Token::parse(GOOD).unwrap();
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert_eq!(format!("{:?}", Some(&t)), "Some(Token(<redacted>))");
        let s = SuperToken::parse(&"B".repeat(64)).unwrap();
        assert_eq!(format!("{s:?}"), "SuperToken(<redacted>)");
    }

    #[test]
    fn equality_compares_values() {
        let a = Token::parse(GOOD).unwrap();
        let b = Token::parse(GOOD).unwrap();
        let c = Token::parse(&"F".repeat(32)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
