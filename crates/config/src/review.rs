//! `[review]`: who may sign an audit-trail review (`review sign`).
//!
//! Reviewers are SSH public keys written as `allowed_signers` lines, as
//! an account's `approvers` are ([`crate::Approver`]): a review is signed
//! with `ssh-keygen -Y sign -n redcap-warden-review`.

use serde::Deserialize;

use crate::Approver;

/// The SSH signature namespace of reviews (`ssh-keygen -Y sign -n …`).
pub const REVIEW_NAMESPACE: &str = "redcap-warden-review";

/// `[review]`: the people who may sign a review of the audit trail.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSection {
    /// `reviewers`: `allowed_signers` lines, one Ed25519 key each.
    #[serde(default)]
    pub reviewers: Vec<Reviewer>,
}

/// One `reviewers` line: an [`Approver`] whose signatures are in
/// [`REVIEW_NAMESPACE`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Reviewer(pub Approver);

impl TryFrom<String> for Reviewer {
    type Error = String;
    fn try_from(s: String) -> Result<Reviewer, String> {
        Approver::parse_for(&s, REVIEW_NAMESPACE).map(Reviewer)
    }
}

/// Every `reviewers` line parses.
pub(crate) fn validate(
    doc: &toml::de::DeTable<'_>,
    text: &str,
    problems: &mut Vec<crate::Problem>,
) {
    use crate::schema::strs_at;
    let Some(review) = doc.get("review").and_then(|r| r.get_ref().as_table()) else {
        return;
    };
    for (j, line, span) in strs_at(review, "reviewers").unwrap_or_default() {
        if let Err(e) = Approver::parse_for(line, REVIEW_NAMESPACE) {
            problems.push(crate::Problem::at_offset(
                text,
                span.start,
                Some(format!("review.reviewers[{j}]")),
                format!("reviewer {j}: {e}"),
                "write the reviewer's Ed25519 public key as a line of ssh-keygen's allowed_signers format: \"qa@example.org ssh-ed25519 AAAA… qa\" (the principal — their login, or login@domain — then the contents of their id_ed25519.pub)".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIPL/2wWg/wiUYsiZA+ZAxr2xEVNNLfq+zXqLBJa7egEp";

    #[test]
    fn reviewers_are_allowed_signers_lines_for_the_review_namespace() {
        let r: Reviewer = format!("qa@example.org ssh-ed25519 {KEY} qa")
            .try_into()
            .unwrap();
        assert_eq!(r.0.principals, ["qa@example.org"]);
        let ns = format!("qa namespaces=\"{REVIEW_NAMESPACE}\" ssh-ed25519 {KEY}");
        assert!(Reviewer::try_from(ns).is_ok());
        // A key limited to approvals cannot sign a review.
        let other = format!("qa namespaces=\"redcap-warden-reauth\" ssh-ed25519 {KEY}");
        let e = Reviewer::try_from(other).unwrap_err();
        assert!(e.contains(REVIEW_NAMESPACE), "{e}");
    }
}
