//! `[ledger.export]`: where `ledger export` ships sealed segments and
//! checkpoints — an S3 bucket with Object Lock, written in COMPLIANCE mode.
//!
//! No credential is ever written here: they come from the standard AWS
//! chain (environment, shared config and credentials files, SSO, the
//! instance or container role).

use serde::Deserialize;

/// `[ledger.export]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawExportSection")]
pub struct ExportSection {
    /// The bucket; it must have been created with Object Lock enabled.
    pub bucket: String,
    /// Prepended to every object key, e.g. `"site-1/ledger/"` (may be empty).
    pub prefix: String,
    /// The bucket's region; `None`: from the AWS environment.
    pub region: Option<String>,
    /// Another S3 endpoint (an S3-compatible store, or moto in tests).
    pub endpoint_url: Option<String>,
    /// How long each object is locked in COMPLIANCE mode, in days.
    pub retention_days: u32,
    /// How often the latest checkpoint is shipped when no segment was
    /// sealed meanwhile, in minutes.
    pub interval_minutes: u32,
}

/// The longest retention accepted (S3 allows 100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExportSection {
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    endpoint_url: Option<String>,
    retention_days: Option<i64>,
    #[serde(default = "default_interval")]
    interval_minutes: i64,
}

fn default_interval() -> i64 {
    60
}

impl TryFrom<RawExportSection> for ExportSection {
    type Error = String;

    fn try_from(raw: RawExportSection) -> Result<Self, String> {
        check_bucket(&raw.bucket)?;
        if raw.prefix.starts_with('/') || raw.prefix.contains("//") {
            return Err(format!(
                "invalid value: prefix {:?} starts with / or holds //, which S3 keeps as empty path parts; write it like \"site-1/ledger/\"",
                raw.prefix
            ));
        }
        if raw.prefix.chars().any(char::is_control) {
            return Err("invalid value: prefix holds a control character".into());
        }
        let Some(days) = raw.retention_days else {
            return Err(
                "missing field `retention_days`: how many days each exported object stays locked (COMPLIANCE mode cannot be shortened, so choose it from your retention policy, e.g. 3650)"
                    .into(),
            );
        };
        let retention_days = u32::try_from(days)
            .ok()
            .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
            .ok_or_else(|| {
                format!("invalid value: retention_days = {days}; write a number of days from 1 to {MAX_RETENTION_DAYS}")
            })?;
        let interval_minutes = u32::try_from(raw.interval_minutes)
            .ok()
            .filter(|m| (1..=10_080).contains(m))
            .ok_or_else(|| {
                format!(
                    "invalid value: interval_minutes = {}; write a number of minutes from 1 to 10080 (a week)",
                    raw.interval_minutes
                )
            })?;
        if let Some(region) = &raw.region
            && (region.is_empty()
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(format!(
                "invalid value: region {region:?} is not an AWS region name; write e.g. \"eu-central-1\", or leave it out to take it from the AWS environment"
            ));
        }
        if let Some(endpoint) = &raw.endpoint_url {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(format!(
                    "invalid value: endpoint_url {endpoint:?} is not an http(s) URL; write e.g. \"https://s3.eu-central-1.amazonaws.com\", or leave it out for AWS"
                ));
            }
        }
        Ok(ExportSection {
            bucket: raw.bucket,
            prefix: raw.prefix,
            region: raw.region,
            endpoint_url: raw.endpoint_url,
            retention_days,
            interval_minutes,
        })
    }
}

/// S3's bucket naming rules (general purpose buckets).
fn check_bucket(name: &str) -> Result<(), String> {
    let fix = "write the name of an existing S3 bucket created with Object Lock enabled (3-63 characters: lowercase letters, digits, '.', '-')";
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid value: bucket {name:?} is not a valid S3 bucket name; {fix}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExportSection, String> {
        toml::from_str::<ExportSection>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_section_parses() {
        let s = parse(
            "bucket = \"warden-audit\"\nprefix = \"site-1/ledger/\"\nregion = \"eu-central-1\"\nendpoint_url = \"http://127.0.0.1:45123\"\nretention_days = 3650\ninterval_minutes = 15\n",
        )
        .unwrap();
        assert_eq!(s.bucket, "warden-audit");
        assert_eq!(s.prefix, "site-1/ledger/");
        assert_eq!(s.region.as_deref(), Some("eu-central-1"));
        assert_eq!(s.retention_days, 3650);
        assert_eq!(s.interval_minutes, 15);
    }

    #[test]
    fn defaults_and_required_fields() {
        let s = parse("bucket = \"warden-audit\"\nretention_days = 7\n").unwrap();
        assert_eq!((s.prefix.as_str(), s.interval_minutes), ("", 60));
        assert!(s.region.is_none() && s.endpoint_url.is_none());
        let e = parse("bucket = \"warden-audit\"\n").unwrap_err();
        assert!(e.contains("retention_days"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        for (text, want) in [
            ("bucket = \"Warden_Audit\"\nretention_days = 7\n", "bucket"),
            ("bucket = \"ab\"\nretention_days = 7\n", "bucket"),
            (
                "bucket = \"warden-audit\"\nretention_days = 0\n",
                "retention_days",
            ),
            (
                "bucket = \"warden-audit\"\nretention_days = 99999\n",
                "retention_days",
            ),
            (
                "bucket = \"warden-audit\"\nretention_days = 7\ninterval_minutes = 0\n",
                "interval_minutes",
            ),
            (
                "bucket = \"warden-audit\"\nretention_days = 7\nprefix = \"/x\"\n",
                "prefix",
            ),
            (
                "bucket = \"warden-audit\"\nretention_days = 7\nregion = \"EU\"\n",
                "region",
            ),
            (
                "bucket = \"warden-audit\"\nretention_days = 7\nendpoint_url = \"ftp://x\"\n",
                "endpoint_url",
            ),
            (
                "bucket = \"warden-audit\"\nretention_days = 7\naccess_key = \"AKIA\"\n",
                "access_key",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
