//! What redcap-warden decides and records on top of the REDCap client
//! ([`redcap`], re-exported so callers reach the same client through this
//! crate), the secrets store and the ledger.
//!
//! Today:
//! - [`alerts`]: alerts beyond the ledger — a webhook and syslog — from
//!   the entries the trail and the gateway append, and from what the
//!   ledger cannot take.
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
//! - [`clock_sync`]: whether the host clock is synchronised (asked at the
//!   gateway's start).
//! - [`redcap_log`]: REDCap's own log, redacted (token values become
//!   fingerprints), placed in UTC, and sorted by what each row shows.
//! - [`reconcile`]: REDCap's Export Logging paired with the ledger
//!   (`reconcile`): the token used outside the gateway, UI use by API-only
//!   accounts, token and access changes, writes REDCap never logged.
//! - [`rights`]: rights profiles (deny by default, built-ins of
//!   redcap-api.md §11) and their comparison with live REDCap rights
//!   (`rights check`; plan / apply, always with the DAG, are to come).
//! - [`rotation`]: the token rotation state machine — journal, escrow,
//!   issuers, verification, cut-over and the proof that the old token is
//!   dead, resumable after a crash at any step.
//! - [`report`]: the evidence model behind `report --out FILE.html` and
//!   the gateway's dashboard, its findings, the compliance map, and its
//!   rendering as one self-contained HTML page with inline SVG charts.
//! - [`sop`]: the token-management SOP generated from the configuration
//!   (Markdown and HTML), and the check of a written copy against it.
//! - [`review`]: signed audit-trail reviews (`review statement`, `review
//!   sign`, `review list`); [`sshsig`]: the SSH signature check they share
//!   with re-authorisation.
//! - [`trace`]: one record end to end — the calls naming it, each ledger
//!   entry proved against the latest checkpoint, REDCap's rows beside
//!   them (`trace RECORD`).
//!
//! The rest of DESIGN's governance layer comes as sibling modules of
//! these, each recording its changes through [`audit::AuditTrail`] and
//! taking its time from a [`clock::Clock`]: `reauth` (re-authorisation of
//! API-only accounts).

#![warn(missing_docs)]

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod clock;
pub mod clock_sync;
pub mod reauth;
pub mod reconcile;
pub mod redcap_log;
pub mod report;
pub mod review;
pub mod rights;
pub mod rotation;
pub mod signing_key;
pub mod sop;
pub mod sshsig;
pub mod trace;
pub mod witness;

pub use redcap;

/// Points where a test kills the process, to prove that the next open
/// recovers (a signing-key rotation, a token rotation). Compiled in only with the `fault-injection` feature (the CLI
/// turns it on for its own tests, never in a release build); even then
/// nothing happens unless `REDCAP_WARDEN_FAULT` names the point.
pub(crate) mod fault {
    #[cfg(feature = "fault-injection")]
    pub(crate) fn point(name: &str) {
        if std::env::var("REDCAP_WARDEN_FAULT").is_ok_and(|v| v == name) {
            // SIGKILL: nothing is flushed, closed or unlocked but by the
            // kernel, as when the machine's operator kills the process.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    pub(crate) fn point(_: &str) {}
}

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
