//! Ledger entries: one JSON object per line, in a fixed field order.
//!
//! The line (without its newline) is exactly the bytes hashed into the
//! Merkle tree, so its form is fixed: `seq`, `ts`, `kind`, then the kind's
//! fields in the order declared here, compact JSON as `serde_json` writes
//! it. Every field is always present (`null` when absent). A line that does
//! not re-serialise to the same bytes is rejected as non-canonical.
//!
//! No patient data: bodies appear only as HMACs computed by the caller
//! under the fingerprint key, with their sizes; records only by id.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Version of the line format, written in every segment header.
pub const FORMAT_VERSION: u32 = 1;

/// One ledger entry: its position, its time, and what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0, without gaps; equal to the leaf index.
    pub seq: u64,
    /// When the writer committed it (UTC, nanoseconds).
    #[serde(with = "ts_nanos")]
    pub ts: Timestamp,
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What an entry records. The JSON `kind` field names the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    /// First entry of every segment file.
    Header {
        /// [`FORMAT_VERSION`].
        version: u32,
        /// The ledger's origin, as in its checkpoints.
        origin: String,
        /// Hex key id (4 bytes) of the key signing checkpoints when the
        /// segment was opened.
        key_id: String,
    },
    /// A client request the gateway is about to forward.
    Request {
        request_id: String,
        client: String,
        account: String,
        site: Option<String>,
        content: Option<String>,
        action: Option<String>,
        format: Option<String>,
        /// Names of every parameter sent (never their values).
        params: Vec<String>,
        /// Record ids the request names (HMACs for identifier fields).
        record_ids: Vec<String>,
        /// HMAC of `filterLogic` under the fingerprint key, if present.
        filter_hmac: Option<String>,
        /// HMAC of the canonical request body under the fingerprint key.
        body_hmac: String,
        body_bytes: u64,
        reason: Option<String>,
    },
    /// REDCap's answer to a request.
    Response {
        request_id: String,
        status: u16,
        record_ids: Vec<String>,
        body_hmac: String,
        body_bytes: u64,
        latency_ms: u64,
    },
    /// Refused attempts, aggregated per source and minute.
    Denied {
        source: String,
        client: Option<String>,
        reason: String,
        count: u64,
    },
    /// Something an operator must look at (including recovery reports).
    Alert { code: String, message: String },
    /// An administrative action not covered by a more specific kind.
    Admin {
        operator: String,
        action: String,
        target: String,
        reason: String,
    },
    /// A secrets-store change (never the value).
    Secret {
        operator: String,
        name: String,
        version: String,
        action: String,
        /// Token fingerprint (`fp1:…`), when the secret is a token.
        fingerprint: Option<String>,
        reason: String,
    },
    /// A signing-key or client-key change; `verifier_key` is public.
    Key {
        operator: String,
        action: String,
        key_name: String,
        verifier_key: Option<String>,
        reason: String,
    },
    /// REDCap user rights applied to a service account.
    Rights {
        operator: String,
        account: String,
        project: String,
        changes: Vec<String>,
        reason: String,
    },
    /// A service account re-authorised (or lapsed).
    Reauth {
        operator: String,
        account: String,
        /// RFC 3339 end of the new authorisation, if granted.
        until: Option<String>,
        reason: String,
    },
    /// A rotation state transition.
    Rotation {
        rotation_id: String,
        account: String,
        from: String,
        to: String,
        operator: String,
        detail: String,
    },
    /// A reconciliation run against REDCap's logging.
    Reconcile {
        window_start: String,
        window_end: String,
        findings: u64,
        summary: String,
    },
    /// A periodic review signed off by a person.
    Review {
        reviewer: String,
        scope: String,
        outcome: String,
        note: String,
    },
}

impl EntryKind {
    /// The JSON `kind` value.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Header { .. } => "header",
            EntryKind::Request { .. } => "request",
            EntryKind::Response { .. } => "response",
            EntryKind::Denied { .. } => "denied",
            EntryKind::Alert { .. } => "alert",
            EntryKind::Admin { .. } => "admin",
            EntryKind::Secret { .. } => "secret",
            EntryKind::Key { .. } => "key",
            EntryKind::Rights { .. } => "rights",
            EntryKind::Reauth { .. } => "reauth",
            EntryKind::Rotation { .. } => "rotation",
            EntryKind::Reconcile { .. } => "reconcile",
            EntryKind::Review { .. } => "review",
        }
    }
}

/// Why a line is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a JSON entry: {0}")]
    Json(String),
    #[error("not in canonical form (field order, whitespace or escaping differs)")]
    NotCanonical,
}

impl Entry {
    /// The line bytes (no newline): what is hashed and stored.
    pub fn to_line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entries always serialise")
    }

    /// Parses a line (without newline) and checks it is canonical.
    pub fn from_line(line: &[u8]) -> Result<Entry, LineError> {
        let entry: Entry =
            serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
        if entry.to_line() != line {
            return Err(LineError::NotCanonical);
        }
        Ok(entry)
    }

    /// The Merkle leaf hash of this entry.
    pub fn leaf_hash(&self) -> crate::merkle::Hash {
        crate::merkle::leaf_hash(&self.to_line())
    }
}

/// `ts` as RFC 3339 UTC with exactly nine fractional digits.
mod ts_nanos {
    use jiff::Timestamp;
    use jiff::fmt::temporal::DateTimePrinter;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(ts: &Timestamp) -> String {
        DateTimePrinter::new()
            .precision(Some(9))
            .timestamp_to_string(ts)
    }

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub use ts_nanos::format as format_ts;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            ts: Timestamp::new(1_700_000_000, 5).unwrap(),
            kind: EntryKind::Alert {
                code: "x".into(),
                message: "y".into(),
            },
        }
    }

    #[test]
    fn field_order_and_timestamp_are_fixed() {
        let line = String::from_utf8(sample().to_line()).unwrap();
        assert_eq!(
            line,
            r#"{"seq":7,"ts":"2023-11-14T22:13:20.000000005Z","kind":"alert","code":"x","message":"y"}"#
        );
        assert_eq!(Entry::from_line(line.as_bytes()).unwrap(), sample());
    }

    /// The escaping rules docs/ledger.md §2.1 states.
    #[test]
    fn strings_are_escaped_as_documented() {
        let e = Entry {
            seq: 1,
            ts: Timestamp::UNIX_EPOCH,
            kind: EntryKind::Alert {
                code: "a/b \u{e9}\u{2014}".into(),
                message: "q\"b\\n\nr\rt\tb\u{8}f\u{c}c\u{1}d\u{1f}\u{7f}".into(),
            },
        };
        let line = String::from_utf8(e.to_line()).unwrap();
        assert!(
            line.ends_with(concat!(
                "\"code\":\"a/b \u{e9}\u{2014}\",",
                r#""message":"q\"b\\n\nr\rt\tb\bf\fc\u0001d\u001f"#,
                "\u{7f}\"}"
            )),
            "{line}"
        );
        assert_eq!(Entry::from_line(line.as_bytes()).unwrap(), e);
    }

    #[test]
    fn optional_fields_are_written_as_null() {
        let e = Entry {
            seq: 0,
            ts: Timestamp::UNIX_EPOCH,
            kind: EntryKind::Reauth {
                operator: "ana".into(),
                account: "svc".into(),
                until: None,
                reason: "lapsed".into(),
            },
        };
        let line = String::from_utf8(e.to_line()).unwrap();
        assert_eq!(
            line,
            r#"{"seq":0,"ts":"1970-01-01T00:00:00.000000000Z","kind":"reauth","operator":"ana","account":"svc","until":null,"reason":"lapsed"}"#
        );
    }

    #[test]
    fn non_canonical_lines_are_rejected() {
        let good = String::from_utf8(sample().to_line()).unwrap();
        let variants = [
            good.replace(",\"kind\"", ", \"kind\""),
            good.replace(
                r#""seq":7,"ts":"2023-11-14T22:13:20.000000005Z""#,
                r#""ts":"2023-11-14T22:13:20.000000005Z","seq":7"#,
            ),
            good.replace(".000000005Z", ".000000005+00:00"),
            good.replace("}", ",\"extra\":1}"),
            good.replace("\"y\"", "\"\\u0079\""),
        ];
        for v in variants {
            assert_ne!(v, good);
            assert!(Entry::from_line(v.as_bytes()).is_err(), "accepted {v}");
        }
        assert!(matches!(
            Entry::from_line(b"{\"seq\":1"),
            Err(LineError::Json(_))
        ));
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = vec![
            EntryKind::Header {
                version: 1,
                origin: "o".into(),
                key_id: "01020304".into(),
            },
            EntryKind::Request {
                request_id: "r1".into(),
                client: "c".into(),
                account: "a".into(),
                site: Some("s".into()),
                content: Some("record".into()),
                action: Some("export".into()),
                format: Some("json".into()),
                params: vec!["content".into(), "records".into()],
                record_ids: vec!["101".into()],
                filter_hmac: None,
                body_hmac: "ab".into(),
                body_bytes: 10,
                reason: None,
            },
            EntryKind::Response {
                request_id: "r1".into(),
                status: 200,
                record_ids: vec![],
                body_hmac: "cd".into(),
                body_bytes: 3,
                latency_ms: 12,
            },
            EntryKind::Denied {
                source: "10.0.0.1".into(),
                client: None,
                reason: "unknown key".into(),
                count: 3,
            },
            EntryKind::Alert {
                code: "c".into(),
                message: "m".into(),
            },
            EntryKind::Admin {
                operator: "o".into(),
                action: "reload".into(),
                target: "gw".into(),
                reason: "r".into(),
            },
            EntryKind::Secret {
                operator: "o".into(),
                name: "n".into(),
                version: "3".into(),
                action: "put".into(),
                fingerprint: Some("fp1:0011".into()),
                reason: "r".into(),
            },
            EntryKind::Key {
                operator: "o".into(),
                action: "rotate".into(),
                key_name: "k".into(),
                verifier_key: Some("k+01020304+AQ==".into()),
                reason: "r".into(),
            },
            EntryKind::Rights {
                operator: "o".into(),
                account: "a".into(),
                project: "12".into(),
                changes: vec!["export: 1 -> 0".into()],
                reason: "r".into(),
            },
            EntryKind::Reauth {
                operator: "o".into(),
                account: "a".into(),
                until: Some("2027-01-01T00:00:00Z".into()),
                reason: "r".into(),
            },
            EntryKind::Rotation {
                rotation_id: "x".into(),
                account: "a".into(),
                from: "planned".into(),
                to: "obtained".into(),
                operator: "o".into(),
                detail: "d".into(),
            },
            EntryKind::Reconcile {
                window_start: "s".into(),
                window_end: "e".into(),
                findings: 0,
                summary: "ok".into(),
            },
            EntryKind::Review {
                reviewer: "r".into(),
                scope: "s".into(),
                outcome: "ok".into(),
                note: "n".into(),
            },
        ];
        let mut names = std::collections::BTreeSet::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            names.insert(kind.name());
            let e = Entry {
                seq: i as u64,
                ts: Timestamp::now(),
                kind,
            };
            let line = e.to_line();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(keys[..3], ["seq", "ts", "kind"]);
            assert_eq!(v["kind"], e.kind.name());
            assert_eq!(Entry::from_line(&line).unwrap(), e);
        }
        assert_eq!(names.len(), 13);
    }
}
