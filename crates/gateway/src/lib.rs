//! The gateway: a REDCap-protocol reverse proxy that holds the tokens.
//!
//! Applications keep their REDCap client (PyCap, REDCapR, curl) and point it
//! at the gateway with a gateway-issued client key in place of a token. Per
//! request the gateway authenticates the key, checks the client's policy,
//! makes a `request` entry durable in the ledger, injects the account's real
//! token, forwards a canonical body to REDCap, and records the `response`.
//! If the ledger cannot make the entry durable, nothing is forwarded.
//!
//! The modules, from the top: the handlers — [`server`] (lifecycle and
//! listeners), `request` (the client listener's request path, one named
//! step per function) and `admin` (the admin listener); the steps they
//! call; the state every request shares (`state`, one lock story per
//! part); and the leaf types it owns ([`keys`], `tokens`, [`upstream`],
//! …). Imports go downward only.

#![warn(missing_docs)]

mod admin;
pub mod admin_client;
mod answer;
pub mod cluster;
pub mod connections;
mod denials;
pub mod export;
pub mod form;
pub mod keys;
mod metrics;
pub mod paths;
pub mod policy;
pub mod rate_window;
mod record_field;
pub mod reply;
mod request;
pub mod restart;
pub mod server;
mod state;
mod tokens;
pub mod upload;
pub mod upstream;

pub use admin::Reloaded;
pub use server::{LedgerOpener, RunningGateway, Services, StartError, start};
pub use state::{EvidenceSource, StateError};
