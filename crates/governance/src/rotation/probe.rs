//! Asking REDCap about a token: which project it opens, or REDCap's
//! invalid-token answer.

use redcap::Token;
use redcap::client::{Client, Error, OutboundLimiter};
use secrets::SecretValue;

/// What REDCap said to Export Project Info with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    /// The token authenticates and opens this project.
    Project(u64),
    /// REDCap's invalid-token answer: HTTP 403 "You do not have
    /// permissions to use the API" (unknown, regenerated, deleted,
    /// suspended or removed; redcap-api.md §1.8, §2.4).
    Invalid,
    /// The token authenticates, but REDCap refused the call (no API
    /// export right, expired rights…): REDCap's words.
    Refused(String),
}

/// Asks REDCap about tokens. `Err` means REDCap could not be asked
/// (unreachable, 5xx, banned): nothing is known.
#[async_trait::async_trait]
pub trait TokenCheck: Send + Sync {
    /// Export Project Info with `token`.
    async fn project_of(&self, token: &SecretValue) -> Result<TokenAnswer, String>;
}

#[async_trait::async_trait]
impl<L: OutboundLimiter + Clone + 'static> TokenCheck for Client<L> {
    async fn project_of(&self, token: &SecretValue) -> Result<TokenAnswer, String> {
        // A value REDCap would refuse as malformed gets the same answer
        // from REDCap as an unknown one (§1.8); say so without asking.
        let Ok(token) = Token::parse(token.expose()) else {
            return Ok(TokenAnswer::Invalid);
        };
        match self.project(token).project_info().await {
            Ok(info) => Ok(TokenAnswer::Project(info.project_id)),
            Err(Error::InvalidToken) => Ok(TokenAnswer::Invalid),
            Err(
                e @ (Error::NoApiRight { .. }
                | Error::Expired { .. }
                | Error::Privilege { .. }
                | Error::BadRequest { .. }),
            ) => Ok(TokenAnswer::Refused(e.to_string())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What re-reading the account's rights and DAG against its profile found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RightsVerdict {
    /// Not checked, and why (no profile, no rights manager, the account is
    /// the rights manager itself).
    NotChecked(String),
    /// Within the profile, DAG included; the calls made with the
    /// account's own token to find out (for the ledger entry), if any.
    Clean(Vec<String>),
    /// Each finding, for people (severity, code, what), then the calls
    /// made with the account's own token, if any.
    Drift(Vec<String>),
}

/// Re-reads an account's live rights and DAG (through its study's rights
/// manager) and compares them with its profile — what `rights check
/// --account` does. `Err` means REDCap could not be asked.
#[async_trait::async_trait]
pub trait RightsCheck: Send + Sync {
    /// The verdict for `account`.
    async fn verdict(&self, account: &str) -> Result<RightsVerdict, String>;
}

/// No rights check (tests, and installations without profiles).
pub struct NoRightsCheck;

#[async_trait::async_trait]
impl RightsCheck for NoRightsCheck {
    async fn verdict(&self, _: &str) -> Result<RightsVerdict, String> {
        Ok(RightsVerdict::NotChecked(
            "no rights check configured".into(),
        ))
    }
}
