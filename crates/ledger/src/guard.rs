//! What both writers (file and PostgreSQL) check on open before they sign
//! anything, and the entries they write about it: every witness must hold
//! a tree the ledger holds, the unsigned tail must not be older than a
//! writer leaves, and an operator's [`Adoption`] goes on where the open
//! would refuse, recorded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::append::Receipt;
use crate::checkpoint::{Checkpoint, VerifierKey};
use crate::entry::EntryKind;
use crate::error::{LedgerError, VerifyError};
use crate::files::{self, KeyWalk};
use crate::merkle::{self, Hash};
use crate::witness::{self, Publisher, Witness};

/// How long opening and closing wait for the witnesses to take the latest
/// checkpoint before going on without them.
pub(crate) const WITNESS_WAIT: Duration = Duration::from_secs(10);

/// An operator's decision to have the writer sign a ledger it would refuse
/// to sign: an unsigned tail older than a writer leaves, or a ledger that
/// no longer holds the tree a witness recorded (`ledger adopt-unsigned`).
/// The open records it as an `admin` entry with the operator, the reason
/// and what was adopted, then signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adoption {
    /// The OS login of the person adopting.
    pub operator: String,
    /// Why they accept the ledger as it is.
    pub reason: String,
}

/// The `code` of the `alert` entries recording that a witness could not be
/// read or written, or works again.
pub const WITNESS_FAILED: &str = "ledger.witness";

/// The `action` of the `admin` entry an [`Adoption`] records.
pub const ADOPT_ACTION: &str = "ledger.adopt-unsigned";

/// The `alert` entry recording that a witness failed (`error`) or works
/// again.
pub(crate) fn witness_alert(witness: &str, error: Option<&str>) -> EntryKind {
    EntryKind::Alert {
        code: WITNESS_FAILED.into(),
        message: match error {
            Some(e) => format!(
                "the latest checkpoint cannot be kept in {witness}: {e}; the writer retries with each checkpoint"
            ),
            None => format!("the latest checkpoint is kept in {witness} again"),
        },
    }
}

/// The `alert` entry for a witness an open could not read.
pub(crate) fn unread_alert(witness: &str, error: &str) -> EntryKind {
    witness_alert(witness, Some(&format!("{error} (not checked on open)")))
}

/// The `admin` entry recording what an [`Adoption`] adopted.
pub(crate) fn adoption_entry(adoption: &Adoption, what: &str) -> EntryKind {
    EntryKind::Admin {
        operator: adoption.operator.clone(),
        action: ADOPT_ACTION.into(),
        target: what.to_owned(),
        reason: adoption.reason.clone(),
    }
}

/// After an open: the witnesses catch up with the last checkpoint
/// (`latest`, unless the open signed a new one) and are waited for; the
/// alerts for those that failed are returned, for the ledger.
pub(crate) fn settle_witnesses(
    publisher: &Publisher,
    signed_now: bool,
    latest: Option<(u64, &str)>,
) -> Vec<EntryKind> {
    if !signed_now && let Some((size, note)) = latest {
        publisher.publish(size, note);
    }
    publisher
        .flush(WITNESS_WAIT)
        .into_iter()
        .map(|(witness, error)| witness_alert(&witness, Some(&error)))
        .collect()
}

/// What the opener asks of [`guard_open`]: the witnesses to check, the
/// longest unsigned tail to sign, and whether an [`Adoption`] goes on where
/// the checks fail.
#[derive(Clone, Copy)]
pub(crate) struct OpenRules<'a> {
    pub witnesses: &'a [Arc<dyn Witness>],
    pub max_unsigned_span: Duration,
    pub adopting: bool,
}

/// What an opening writer knows of the ledger, for [`guard_open`].
pub(crate) struct GuardInput<'a> {
    pub origin: &'a str,
    pub verifier: &'a VerifierKey,
    /// Size and root of each verified checkpoint.
    pub heads: &'a [(u64, Hash)],
    pub leaves: &'a [Hash],
    pub signed: u64,
    pub tail_span: Option<Duration>,
    pub rotation_pending: bool,
    pub notes_place: &'a str,
}

/// What [`guard_open`] let through.
pub(crate) struct Guarded {
    pub held: Vec<Option<(u64, String)>>,
    pub adopted: Option<String>,
    pub unread: Vec<(String, String)>,
}

/// Why an open refuses to sign.
pub(crate) enum Refusal {
    Tail {
        from_seq: u64,
        entries: u64,
        span: Duration,
        limit: Duration,
    },
    Witness {
        witness: String,
        problem: String,
    },
}

impl Refusal {
    pub(crate) fn into_error(self, place: &Path) -> LedgerError {
        match self {
            Refusal::Tail {
                from_seq,
                entries,
                span,
                limit,
            } => LedgerError::UnsignedTail {
                dir: place.to_path_buf(),
                from_seq,
                entries,
                span,
                limit,
            },
            Refusal::Witness { witness, problem } => LedgerError::Witness {
                dir: place.to_path_buf(),
                witness,
                problem,
            },
        }
    }
}

/// The checks an opening writer makes before it signs anything (both
/// backends): every witness must hold a tree the ledger holds, and the
/// unsigned tail must not span more than `max_span`. With `adopting`,
/// what fails is described (for the adoption's entry) instead of refused.
///
/// `reads` are the witnesses' notes, read **before** the ledger was: a
/// writer elsewhere (another PostgreSQL process) may sign and update a
/// witness meanwhile, and a witness read after the ledger could then hold
/// a checkpoint of entries the ledger as read does not (yet) have.
pub(crate) fn guard_open(
    input: &GuardInput<'_>,
    rules: &OpenRules<'_>,
    reads: Vec<Result<Option<String>, String>>,
) -> Result<Guarded, Refusal> {
    let OpenRules {
        witnesses,
        max_unsigned_span: max_span,
        adopting,
    } = *rules;
    let entries = input.leaves.len() as u64;
    let mut adopted = Vec::new();
    let mut held = Vec::with_capacity(witnesses.len());
    let mut unread = Vec::new();
    for (w, read) in witnesses.iter().zip(reads) {
        let note = match read {
            Ok(Some(note)) => note,
            Ok(None) => {
                held.push(None);
                continue;
            }
            Err(e) => {
                unread.push((w.describe(), e));
                held.push(None);
                continue;
            }
        };
        let mut root_at = |n: u64| Ok(merkle::root(&input.leaves[..n as usize]));
        match witness::check_note(
            &note,
            input.origin,
            &[input.verifier],
            input.heads,
            entries,
            input.notes_place,
            &mut root_at,
        ) {
            Ok(seen) => held.push(Some((seen.size, note))),
            Err(problem) if adopting => {
                adopted.push(format!("{} {problem}", w.describe()));
                held.push(None);
            }
            Err(problem) => {
                return Err(Refusal::Witness {
                    witness: w.describe(),
                    problem,
                });
            }
        }
    }
    if let Some(span) = input.tail_span
        && span > max_span
        && !input.rotation_pending
    {
        if adopting {
            adopted.push(format!(
                "the {} entries from seq {} on were signed by no checkpoint and span {}",
                entries - input.signed,
                input.signed,
                crate::error::span_text(span)
            ));
        } else {
            return Err(Refusal::Tail {
                from_seq: input.signed,
                entries: entries - input.signed,
                span,
                limit: max_span,
            });
        }
    }
    Ok(Guarded {
        held,
        adopted: (!adopted.is_empty()).then(|| adopted.join("; ")),
        unread,
    })
}

/// What an opening writer's checks of its ledger found: whose ledger, the
/// key in force, the checkpoints (signatures and roots checked), the size
/// the last one signs, and a rotation left pending.
pub(crate) struct Checked {
    pub origin: String,
    pub verifier: VerifierKey,
    pub checkpoints: Vec<Checkpoint>,
    pub signed: u64,
    pub pending: Option<(Receipt, VerifierKey)>,
}

impl Checked {
    /// [`guard_open`] for this ledger: `leaves` are its entries' hashes,
    /// `tail_span` what its unsigned entries span, `place` its name in
    /// messages.
    pub(crate) fn guard(
        &self,
        leaves: &[Hash],
        tail_span: Option<Duration>,
        notes_place: &str,
        rules: &OpenRules<'_>,
        reads: Vec<Result<Option<String>, String>>,
        place: &Path,
    ) -> Result<Guarded, LedgerError> {
        let heads: Vec<(u64, Hash)> = self.checkpoints.iter().map(|c| (c.size, c.root)).collect();
        let input = GuardInput {
            origin: &self.origin,
            verifier: &self.verifier,
            heads: &heads,
            leaves,
            signed: self.signed,
            tail_span,
            // A rotation left pending signs nothing until it is finished,
            // and finishing it signs the tail: it is not refused here.
            rotation_pending: self.pending.is_some(),
            notes_place,
        };
        guard_open(&input, rules, reads).map_err(|refusal| refusal.into_error(place))
    }
}

/// Where an opening writer found damage, and the size the last
/// checkpoint signs: the parts of [`LedgerError::Tampered`] every check
/// shares.
pub(crate) struct Damage<'a> {
    pub place: &'a Path,
    pub signed: u64,
}

impl Damage<'_> {
    /// The ledger is damaged at `seq`.
    pub(crate) fn at(&self, seq: u64, detail: String) -> LedgerError {
        LedgerError::Tampered {
            dir: self.place.to_path_buf(),
            signed: self.signed,
            seq,
            detail,
        }
    }
}

/// Whose ledger this is: the origin the first checkpoint signs, or, with
/// no checkpoint, the one the header names (if the header is damaged, the
/// checkpoints still say, and the damage is reported as tampering).
pub(crate) fn ledger_origin(first_note: Option<&str>, header: Option<&str>) -> Option<String> {
    first_note
        .and_then(|n| n.split('\n').next())
        .or(header)
        .map(str::to_owned)
}

/// Refuses to open with a key that is not the one in force after the
/// checkpoints: a key some rotation introduces that no checkpoint of the
/// old key covers yet is a rotation still pending
/// ([`LedgerError::RotationPending`]), any other the wrong key.
pub(crate) fn check_key_in_force(
    walk: &KeyWalk,
    rotations: &[(u64, Option<String>)],
    verifier: &VerifierKey,
    place: &Path,
) -> Result<(), LedgerError> {
    if walk.current.as_ref() == Some(verifier) {
        return Ok(());
    }
    let uncovered = rotations[walk.applied..]
        .iter()
        .find(|(_, k)| k.as_deref() == Some(verifier.to_string().as_str()));
    Err(match uncovered {
        Some((seq, _)) => LedgerError::RotationPending {
            seq: *seq,
            key: verifier.to_string(),
        },
        None => LedgerError::WrongKey {
            dir: place.to_path_buf(),
            given: verifier.key_id_hex(),
            current: walk
                .current
                .as_ref()
                .map_or("the ledger's first key".into(), |k| {
                    format!("key id {}", k.key_id_hex())
                }),
        },
    })
}

/// The rotation entry no checkpoint covers yet (the writer stopped between
/// writing it and signing the old key's checkpoint), with the key it
/// introduces: nothing is signed until `rotate_key` finishes it. A key
/// that does not parse, or that `fits` refuses, is damage (`detail`).
pub(crate) fn pending_rotation(
    walk: &KeyWalk,
    rotations: &[(u64, Option<String>)],
    leaves: &[Hash],
    fits: impl Fn(&VerifierKey) -> bool,
    damage: &Damage<'_>,
    detail: &str,
) -> Result<Option<(Receipt, VerifierKey)>, LedgerError> {
    let Some((seq, key)) = rotations.get(walk.applied) else {
        return Ok(None);
    };
    let key = key
        .as_deref()
        .and_then(|k| VerifierKey::parse(k).ok())
        .filter(fits)
        .ok_or_else(|| damage.at(*seq, detail.into()))?;
    let receipt = Receipt {
        seq: *seq,
        leaf_hash: leaves[*seq as usize],
    };
    Ok(Some((receipt, key)))
}

/// Checks every checkpoint's root against the leaves; a mismatch or a
/// checkpoint past the log is damage.
pub(crate) fn check_signed_roots(
    leaves: &[Hash],
    checkpoints: &[Checkpoint],
    damage: &Damage<'_>,
) -> Result<(), LedgerError> {
    match files::check_roots(leaves, checkpoints) {
        Ok(_) => Ok(()),
        Err(VerifyError::CheckpointBeyondLog { entries, .. }) => Err(damage.at(
            entries,
            format!("entries from seq {entries} on are missing"),
        )),
        Err(VerifyError::RootMismatch {
            first_seq, size, ..
        }) => Err(damage.at(
            first_seq,
            format!("an entry with seq in {first_seq}..{size} differs from what was signed"),
        )),
        Err(other) => Err(damage.at(0, other.to_string())),
    }
}
