//! Re-authorisation of an account (`reauth_every_days`,
//! `lapse_after_inactive_days`, `approvers`): who may re-approve it, and
//! how often someone must.
//!
//! Approvers are SSH public keys written as lines of OpenSSH's
//! `allowed_signers` format (`ssh-keygen(1)`, ALLOWED SIGNERS), inline in
//! the account: `"ana@example.org ssh-ed25519 AAAAC3Nz… ana"`. Inline
//! rather than a separate file so the configuration's SHA-256 (recorded in
//! ledger entries) covers who could approve, `config check` sees every key,
//! and one review of `warden.toml` shows it all; the same lines written to
//! a file are an `allowed_signers` file `ssh-keygen -Y verify` accepts.

use serde::Deserialize;

/// The SSH signature namespace of approvals (`ssh-keygen -Y sign -n …`).
pub const REAUTH_NAMESPACE: &str = "redcap-warden-reauth";

/// The one key type whose signatures redcap-warden verifies.
pub const APPROVER_KEY_TYPE: &str = "ssh-ed25519";

/// One `approvers` entry: a line of the `allowed_signers` format with one
/// Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Approver {
    /// Who the key belongs to (the line's comma-separated principals,
    /// e.g. `ana@example.org`); matched against the ledger's operators.
    pub principals: Vec<String>,
    /// The public key in SSH wire format (`string "ssh-ed25519"`,
    /// `string key`), decoded from the line's base64.
    pub key: Vec<u8>,
    /// The line as written (trimmed): what an `allowed_signers` file for
    /// `ssh-keygen -Y verify` holds.
    pub line: String,
}

impl TryFrom<String> for Approver {
    type Error = String;
    fn try_from(s: String) -> Result<Approver, String> {
        Approver::parse(&s)
    }
}

/// Key types `ssh-keygen` makes or knows, so a line can tell a key type
/// from options.
fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

impl Approver {
    /// Parses one `allowed_signers` line: `principals [options] keytype
    /// base64 [comment]`. The only option accepted is `namespaces="…"`
    /// naming [`REAUTH_NAMESPACE`]; the only key type, `ssh-ed25519`.
    pub fn parse(line: &str) -> Result<Approver, String> {
        Approver::parse_for(line, REAUTH_NAMESPACE)
    }

    /// [`Approver::parse`] for signatures in `namespace` (a `namespaces`
    /// option must allow it): approvals ([`REAUTH_NAMESPACE`]) and reviews
    /// (`redcap-warden-review`) are signed the same way.
    pub fn parse_for(line: &str, namespace: &str) -> Result<Approver, String> {
        let ns_wanted = namespace;
        use base64::Engine;
        let line = line.trim();
        let mut words = line.split_whitespace();
        let principals = words
            .next()
            .ok_or("the approver line is empty")?
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>();
        if principals.iter().any(|p| p.is_empty() || p.contains('"')) {
            return Err(format!(
                "`{}` is not a list of principals (names separated by commas, no quotes)",
                principals.join(",")
            ));
        }
        let mut key_type = words.next().ok_or("the line has no public key")?;
        if !is_key_type(key_type) {
            let options = key_type;
            let namespaces = options
                .strip_prefix("namespaces=\"")
                .and_then(|o| o.strip_suffix('"'))
                .filter(|ns| !ns.contains('"'));
            match namespaces {
                None => {
                    return Err(format!(
                        "the option `{options}` is not supported here (only namespaces=\"{ns_wanted}\")"
                    ));
                }
                Some(ns) if !ns.split(',').any(|n| n == ns_wanted) => {
                    return Err(format!(
                        "the option `{options}` does not allow the namespace {ns_wanted}, so this key could never sign there"
                    ));
                }
                Some(_) => {}
            }
            key_type = words.next().ok_or("the line has no public key")?;
        }
        if key_type != APPROVER_KEY_TYPE {
            return Err(format!(
                "key type `{key_type}` cannot be verified by redcap-warden (it verifies {APPROVER_KEY_TYPE} signatures only)"
            ));
        }
        let b64 = words
            .next()
            .ok_or("the line has no base64 key after the key type")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the key is not valid base64 ({e})"))?;
        let mut expected = Vec::new();
        expected.extend_from_slice(&(APPROVER_KEY_TYPE.len() as u32).to_be_bytes());
        expected.extend_from_slice(APPROVER_KEY_TYPE.as_bytes());
        expected.extend_from_slice(&32u32.to_be_bytes());
        if key.len() != expected.len() + 32 || !key.starts_with(&expected) {
            return Err(
                "the base64 is not an ssh-ed25519 public key (cut or pasted from another key?)"
                    .into(),
            );
        }
        Ok(Approver {
            principals,
            key,
            line: line.to_string(),
        })
    }
}

/// The checks of the re-authorisation fields of each `[[account]]`: every
/// approver line parses, and the fields come together — a period needs
/// someone to approve, approvers and an inactivity limit need a period
/// (an approval sets the account's REDCap expiration to the end of it),
/// and a study's rights manager has none of them (its token sets the
/// expirations, so it must not expire itself).
pub(crate) fn validate(
    doc: &toml::de::DeTable<'_>,
    text: &str,
    problems: &mut Vec<crate::Problem>,
) {
    use crate::schema::{int_at, str_at, strs_at, tables_at};
    let mut push = |span: std::ops::Range<usize>, field: String, message: String, fix: String| {
        problems.push(crate::Problem::at_offset(
            text,
            span.start,
            Some(field),
            message,
            fix,
        ));
    };
    for (i, account, span) in tables_at(doc, "account") {
        let name = str_at(account, "name").map_or("?", |(n, _)| n);
        let approvers = strs_at(account, "approvers").unwrap_or_default();
        for (j, line, span) in &approvers {
            if let Err(e) = Approver::parse(line) {
                push(
                    span.clone(),
                    format!("account[{i}].approvers[{j}]"),
                    format!("approver {j} of account `{name}`: {e}"),
                    "write the approver's Ed25519 public key as a line of ssh-keygen's allowed_signers format: \"ana@example.org ssh-ed25519 AAAA… ana\" (the principal, then the contents of their id_ed25519.pub; make one with ssh-keygen -t ed25519)".into(),
                );
            }
        }
        let every = int_at(account, "reauth_every_days");
        let inactive = int_at(account, "lapse_after_inactive_days");
        match (&every, approvers.is_empty()) {
            (Some((_, at)), true) => push(
                at.clone(),
                format!("account[{i}].reauth_every_days"),
                format!("account `{name}` must be re-approved every so many days, but has no approvers"),
                "add approvers = [\"ana@example.org ssh-ed25519 AAAA…\"], the SSH keys of the people who may re-approve it (docs/reauth.md)".into(),
            ),
            (None, false) => push(
                approvers[0].2.clone(),
                format!("account[{i}].approvers"),
                format!("account `{name}` has approvers but no reauth_every_days, so an approval would have no period"),
                "add reauth_every_days = 90 (or the period your SOP sets)".into(),
            ),
            _ => {}
        }
        let manages = tables_at(doc, "study")
            .into_iter()
            .any(|(_, study, _)| str_at(study, "rights_manager").is_some_and(|(m, _)| m == name));
        if manages && let Some((_, at)) = every.as_ref().or(inactive.as_ref()) {
            push(
                at.clone(),
                format!("account[{i}].{}", if every.is_some() { "reauth_every_days" } else { "lapse_after_inactive_days" }),
                format!("account `{name}` is a study's rights manager, which cannot lapse: a lapse would expire the very token that sets and lifts expirations"),
                "remove reauth_every_days, lapse_after_inactive_days and approvers from the rights manager; review it with rights check instead".into(),
            );
        }
        if let (Some((_, at)), None) = (&inactive, &every) {
            push(
                at.clone(),
                format!("account[{i}].lapse_after_inactive_days"),
                format!(
                    "account `{name}` can lapse for inactivity, but has no reauth_every_days, so no approval could restore it"
                ),
                "add reauth_every_days and approvers to the account (docs/reauth.md)".into(),
            );
        }
        let _ = span;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPL/2wWg/wiUYsiZA+ZAxr2xEVNNLfq+zXqLBJa7egEp";

    #[test]
    fn allowed_signers_lines_parse() {
        let a = Approver::parse(&format!("  ana@example.org,ana ssh-ed25519 {KEY} ana  ")).unwrap();
        assert_eq!(a.principals, ["ana@example.org", "ana"]);
        assert_eq!(a.key.len(), 51);
        assert_eq!(a.line, format!("ana@example.org,ana ssh-ed25519 {KEY} ana"));
        let ns = format!("ana namespaces=\"git,{REAUTH_NAMESPACE}\" ssh-ed25519 {KEY}");
        assert!(Approver::parse(&ns).is_ok());
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (line, says) in [
            ("", "empty"),
            ("ana", "no public key"),
            (
                &format!("ana ssh-rsa {KEY}") as &str,
                "key type `ssh-rsa` cannot be verified",
            ),
            ("ana ecdsa-sha2-nistp256 AAAA", "ecdsa-sha2-nistp256"),
            ("ana ssh-ed25519 !!!", "not valid base64"),
            (
                "ana ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
                "not an ssh-ed25519 public key",
            ),
            (
                &format!("ana cert-authority ssh-ed25519 {KEY}"),
                "`cert-authority` is not supported",
            ),
            (
                &format!("ana namespaces=\"git\" ssh-ed25519 {KEY}"),
                "could never sign there",
            ),
            (
                &format!("ana valid-after=\"20260101\" ssh-ed25519 {KEY}"),
                "not supported",
            ),
        ] {
            let e = Approver::parse(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
    }
}
