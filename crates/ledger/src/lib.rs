//! The ledger: redcap-warden's tamper-evident audit log.
pub mod checkpoint;
pub mod entry;
pub mod merkle;
