//! Re-authorisation of service accounts (DESIGN step 4, #11 item 5).
//!
//! A named person re-approves each governed account every
//! `reauth_every_days` by signing, with their SSH key, a canonical
//! statement of the account, its study, the period and the rights it holds
//! ([`statement`]). `reauth` checks the signature and everything around it
//! ([`approve`]), sets REDCap's project expiration to the period's end
//! ([`expiration`], always with the DAG) and records a `reauth` entry
//! holding the signature. An account lapses when its period ends without
//! an approval, or when the ledger shows no forwarded request for
//! `lapse_after_inactive_days` ([`status`], from [`facts`] read in one
//! pass over the ledger); a sweep then sets its REDCap expiration to today
//! and marks it lapsed in the account status file, so both REDCap and the
//! gateway refuse it until an approval restores it.

pub mod approve;
pub mod expiration;
pub mod facts;
pub mod statement;
pub mod status;

pub use approve::{Presented, Refusal, STATEMENT_MAX_AGE_DAYS, Verified, principal_is, verify};
pub use expiration::{ExpirationError, set_expiration, user_row};
pub use facts::{AccountFacts, LedgerFacts};
pub use statement::{Period, Statement, StatementError, rights_digest};
pub use status::{AccountStatus, LapseCause, add_days, assess, day};
pub use warden_config::REAUTH_NAMESPACE;

#[cfg(test)]
mod tests;
