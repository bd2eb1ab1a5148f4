//! REDCap version numbers (`15.7.6`), which select wire encodings.

use std::fmt;
use std::str::FromStr;

/// A REDCap version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RedcapVersion {
    /// The first number (15 in `15.7.6`).
    pub major: u16,
    /// The second number (7 in `15.7.6`).
    pub minor: u16,
    /// The third number (6 in `15.7.6`).
    pub patch: u16,
}

impl RedcapVersion {
    /// The version whose source the specification was read from.
    pub const SPEC: RedcapVersion = RedcapVersion::new(15, 7, 6);
    /// From this version on, form viewing rights use the bitmask encoding (§4.4).
    pub const FORM_RIGHTS_BITMASK: RedcapVersion = RedcapVersion::new(15, 6, 0);

    /// The version `major.minor.patch`.
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for RedcapVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A version string that is not `major.minor.patch`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a REDCap version (expected major.minor.patch, e.g. 15.7.6)")]
pub struct VersionError(pub String);

impl FromStr for RedcapVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        let bad = || VersionError(s.to_owned());
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| p.parse::<u16>().map_err(|_| bad());
        Ok(Self::new(n(parts[0])?, n(parts[1])?, n(parts[2])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        let v: RedcapVersion = "15.7.6".parse().unwrap();
        assert_eq!(v, RedcapVersion::SPEC);
        assert_eq!(v.to_string(), "15.7.6");
        assert!(v >= RedcapVersion::FORM_RIGHTS_BITMASK);
        assert!("15.5.30".parse::<RedcapVersion>().unwrap() < RedcapVersion::FORM_RIGHTS_BITMASK);
        for bad in ["15.7", "x.y.z", "15.7.6.1", ""] {
            assert!(bad.parse::<RedcapVersion>().is_err(), "{bad}");
        }
    }
}
