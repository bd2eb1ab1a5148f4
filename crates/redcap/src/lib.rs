//! REDCap API wire types shared by `redcap-sandbox` and the async
//! [`client`] (feature `client`, on by default).
//!
//! Everything here follows `redcap-api.md` (the project's specification of
//! REDCap 15.7.6 behaviour):
//!
//! - [`Token`] / [`SuperToken`]: API tokens held in zeroizing secret types
//!   that never print their value.
//! - [`rights`]: the user-rights model of §4.3–4.5, with both encodings of the
//!   per-form viewing rights normalised into one [`FormRight`].
//! - [`ApiError`]: every error text the API answers with, in one place, with
//!   its HTTP status (§1.6, §4, §5, §6).
//! - [`Content`] / [`Action`]: the method whitelist of §1.5 and the action
//!   derivation of §1.4.
//! - [`response`]: finding the error in a body of any format and
//!   classifying a refusal (invalid token, missing API right, expiry,
//!   privilege, bad request, IP ban, server error).
//! - [`dag::unique_group_names`]: the unique DAG name derivation of §5.2.
//! - [`RedcapVersion`]: the version a server reports, which selects encodings.
//! - [`php_form`]: PHP's request-body parsing, modelled exactly — what
//!   REDCap will find in `$_POST` and `$_FILES`.
//! - [`redact`]: the one redactor every piece of REDCap log text passes
//!   (REDCap logs full token values on regeneration and deletion).

#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod dag;
pub mod error;
pub mod method;
pub mod php_form;
pub mod redact;
pub mod response;
pub mod rights;
pub mod token;
pub mod version;
pub mod wire;

pub use error::ApiError;
pub use method::{Action, Content};
pub use response::{Refusal, classify, error_message};
pub use rights::{
    ExportRight, FormRight, FormRightsEncoding, LockRecords, Rights, RightsError, UserRights,
    UserRightsLevel,
};
pub use token::{SuperToken, Token, TokenError};
pub use version::RedcapVersion;
pub use wire::Format;
