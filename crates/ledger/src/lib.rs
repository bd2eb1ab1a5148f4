//! The ledger: redcap-warden's tamper-evident audit log.
pub mod merkle;
