//! What redcap-warden decides and records on top of the REDCap client
//! ([`redcap`], re-exported so callers reach the same client through this
//! crate), the secrets store and the ledger.
//!
//! Today:
//! - [`audit`]: the trail of the tool's own changes. Every change is a
//!   ledger entry, written through an [`audit::EntrySink`]: the ledger this
//!   process holds, or whatever the caller plugs in while another process
//!   (a running gateway) holds it. This crate knows no HTTP path.
//! - [`signing_key`]: the ledger's checkpoint signing key in the secrets
//!   store, its rotation, and the recovery of a rotation that stopped
//!   half-way.
//! - [`witness`]: the latest checkpoint, kept in the secrets store.
//! - [`accounts`]: service-account status that outlives a process
//!   (quarantines).
//! - [`clock`]: the time stamped on what is kept, injected.
//! - [`rights`]: rights profiles (deny by default, built-ins of
//!   redcap-api.md §11) and their comparison with live REDCap rights
//!   (`rights check`; plan / apply, always with the DAG, are to come).
//! - [`rotation`]: the token rotation state machine — journal, escrow,
//!   issuers, verification, cut-over and the proof that the old token is
//!   dead, resumable after a crash at any step.
//!
//! The rest of DESIGN's governance layer comes as sibling modules of
//! these, each recording its changes through [`audit::AuditTrail`] and
//! taking its time from a [`clock::Clock`]: `reauth` (re-authorisation of
//! API-only accounts) and `reconcile` (REDCap's Export Logging against the
//! ledger).

#![warn(missing_docs)]

pub mod accounts;
pub mod audit;
pub mod clock;
pub mod rights;
pub mod rotation;
pub mod signing_key;
pub mod witness;

pub use redcap;

/// The login of this process (its real user id in the password database),
/// for what this crate records on its own: a witness version, the recovery
/// of an interrupted key rotation.
pub(crate) fn os_login() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |u| u.name)
}
