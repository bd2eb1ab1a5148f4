//! The one type that holds a secret's bytes.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret value (a REDCap token, a key). Wiped from memory on drop;
/// `Debug` prints `SecretValue(<redacted>)`; there is no `Display`. Reading
/// it is the explicit act of calling [`SecretValue::expose`].
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    /// Takes ownership of `value`; from here it is wiped on drop.
    pub fn new(value: String) -> SecretValue {
        SecretValue(SecretString::from(value))
    }

    /// The value itself. Call only where it must leave the process's memory
    /// for its one legitimate destination (REDCap, or the store).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the value is the empty string (checked without exposing it
    /// to the caller).
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> SecretValue {
        SecretValue::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let v = SecretValue::new("0123456789ABCDEF0123456789ABCDEF".into());
        assert_eq!(format!("{v:?}"), "SecretValue(<redacted>)");
        assert_eq!(
            format!("{:?}", Some(v.clone())),
            "Some(SecretValue(<redacted>))"
        );
        assert_eq!(v.expose(), "0123456789ABCDEF0123456789ABCDEF");
    }
}
