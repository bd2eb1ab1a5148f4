//! What every backend's append shares: the [`Receipt`] it returns and the
//! entries it refuses ([`check_appendable`]).

use crate::entry::EntryKind;
use crate::error::LedgerError;
use crate::merkle::Hash;

/// Proof that an entry is durable: its seq and leaf hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's position in the log (its leaf index).
    pub seq: u64,
    /// The entry's Merkle leaf hash, which inclusion proofs start from.
    pub leaf_hash: Hash,
}

/// Refuses, for every backend, the entries only the ledger itself writes:
/// segment headers, and the rotation of its own signing key (written by
/// `rotate_key`, which also signs the checkpoints around it).
pub(crate) fn check_appendable(kind: &EntryKind, origin: &str) -> Result<(), LedgerError> {
    if matches!(kind, EntryKind::Header { .. }) {
        return Err(LedgerError::HeaderEntry);
    }
    if let EntryKind::Key {
        action, key_name, ..
    } = kind
        && action == crate::files::ROTATE_ACTION
        && key_name == origin
    {
        return Err(LedgerError::RotationEntry);
    }
    Ok(())
}
