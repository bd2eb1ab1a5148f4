//! What redcap-warden decides and records on top of the REDCap client, the
//! secrets store and the ledger. Today: the audit trail of the tool's own
//! changes ([`audit`]).

pub mod accounts;
pub mod audit;
