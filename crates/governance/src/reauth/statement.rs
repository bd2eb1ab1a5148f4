//! The statement an approver signs: `{account, study, period, reason,
//! rights_digest, ts}` as canonical JSON (compact, fields in this order,
//! one trailing newline), so the bytes signed are the bytes `reauth
//! statement` printed and any change to them is seen.

use jiff::Timestamp;
use jiff::civil::Date;
use redcap::RedcapVersion;
use redcap::rights::{RightsError, UserRights, ValueStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Digest;

/// The days of an approval: from the day the statement was printed to
/// the day the account's REDCap access ends (its next due date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// The first day (the statement's day, in REDCap's time zone).
    pub from: Date,
    /// The due date: REDCap's `expiration` is set to it, so access ends
    /// at its start unless the account is approved again.
    pub until: Date,
}

/// What an approver signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The `[[account]]` approved.
    pub account: String,
    /// Its study.
    pub study: String,
    /// The period approved.
    pub period: Period,
    /// Why, as asked for (`reauth statement --reason`), if given.
    pub reason: Option<String>,
    /// `sha256:` and the hex SHA-256 of the account's live rights
    /// ([`rights_digest`]): the rights the approver approves.
    pub rights_digest: String,
    /// When it was printed (UTC, whole seconds).
    pub ts: Timestamp,
}

/// Why a signed file is not a statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// Not UTF-8, not JSON, or a field missing or unknown.
    #[error("{0}")]
    Unreadable(String),
    /// JSON, but not byte for byte what `reauth statement` prints.
    #[error("it is not in the form `reauth statement` prints (re-formatted or edited)")]
    NotCanonical,
}

impl Statement {
    /// The statement's text: compact JSON and one newline, the bytes to
    /// sign.
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string(self).expect("statements serialise");
        s.push('\n');
        s
    }

    /// Reads a statement from the bytes that were signed, which must be
    /// exactly what [`Statement::to_text`] gives.
    pub fn parse(bytes: &[u8]) -> Result<Statement, StatementError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| StatementError::Unreadable("it is not UTF-8 text".into()))?;
        let json = text
            .strip_suffix('\n')
            .ok_or_else(|| StatementError::Unreadable("it does not end in a newline".into()))?;
        let s: Statement = serde_json::from_str(json)
            .map_err(|e| StatementError::Unreadable(format!("not statement JSON: {e}")))?;
        if s.to_text().as_bytes() != bytes {
            return Err(StatementError::NotCanonical);
        }
        Ok(s)
    }
}

/// `sha256:` and the hex SHA-256 of an account's live rights, normalised:
/// the compact JSON `{"data_access_group_id", "role", "rights"}` where
/// `rights` is every privilege REDCap reported, then `forms` (in REDCap
/// 15.6's bitmask encoding, whichever encoding REDCap sent) and
/// `forms_export`, instruments in name order. The expiration, names and
/// e-mail are left out: an approval changes the expiration.
pub fn rights_digest(row: &Map<String, Value>, role: Option<&str>) -> Result<String, RightsError> {
    let user = UserRights::from_json(row)?;
    let mut forms: Vec<String> = user.rights.forms.keys().cloned().collect();
    forms.extend(user.rights.forms_export.keys().cloned());
    forms.sort();
    forms.dedup();
    let mut rights = Map::new();
    user.rights.write_json(
        &mut rights,
        RedcapVersion::new(16, 0, 0),
        ValueStyle::Integers,
        &forms,
    );
    let doc = serde_json::json!({
        "data_access_group_id": user.data_access_group_id,
        "role": role.filter(|r| !r.is_empty()),
        "rights": rights,
    });
    let bytes = serde_json::to_vec(&doc).expect("JSON serialises");
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    ))
}

/// SHA-256 (hex) of some bytes: how the ledger's approvals are matched
/// against a statement or signature presented again.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}
