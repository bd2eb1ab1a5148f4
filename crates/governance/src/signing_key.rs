//! The ledger's checkpoint signing key.
//!
//! It lives in the secrets store as [`SIGNING_KEY_SECRET`] (hex of the
//! Ed25519 seed), never beside the ledger; its verifier key is pinned in
//! `warden.toml`, and a key that does not match the pin is refused rather
//! than used.
//!
//! **Rotation** (`docs/ledger.md` §4.4, §9.6) moves the new key through the
//! store's staging labels, so that a process that dies at any step leaves
//! a state the next open can read:
//!
//! 1. the new key is stored as `pending` (the current key goes on
//!    signing) and a `secret` entry records it;
//! 2. the ledger's rotation entry, covered by a checkpoint of the old key,
//!    puts it in force (one transaction with PostgreSQL);
//! 3. `warden.toml` is made to pin its verifier key;
//! 4. it becomes `current` (the old key stays as `previous`).
//!
//! **Recovery.** [`load_signing_key`], which every writer calls before it
//! opens the ledger, first looks for a `pending` signing key. If the ledger
//! already holds the rotation entry to it (the process died after step 2,
//! or inside it), the rotation is *finished*: completed in the ledger if
//! its checkpoint is missing, pinned, made `current`. If the ledger never
//! heard of the key (the process died after step 1), the rotation is
//! *rolled back*: the `pending` label is removed and the old key signs on.
//! Either is a `secret` entry under the OS login of the process that did
//! it, naming who began the rotation and why. A key the ledger never
//! announced is therefore never pinned. The file ledger's lock keeps a
//! second process out while a rotation runs; with PostgreSQL, rotate only
//! while no other process writes (the rotation needs the signer lease
//! anyway).

use ed25519_dalek::SigningKey;
use ledger::{EntryKind, LedgerBackend, LedgerError, VerifierKey};
use secrets::{
    Label, Secret, SecretName, SecretStore, SecretValue, Selector, StoreError, VersionId,
    VersionMeta,
};
use std::sync::Arc;
use warden_config::{LedgerBackendKind, LoadedConfig};
use zeroize::Zeroizing;

use crate::audit::{AuditError, blocking, ledger_section, open_writer};
use crate::clock::Clock;

/// The store entry holding the checkpoint signing key (hex of the Ed25519
/// seed).
pub const SIGNING_KEY_SECRET: &str = "warden/ledger-signing-key";

/// A fresh signing key.
pub fn new_signing_key() -> SigningKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *seed).expect("the operating system's random source failed");
    SigningKey::from_bytes(&seed)
}

/// Stores the signing key as the current version of [`SIGNING_KEY_SECRET`]
/// (`init`); returns the version.
pub async fn save_signing_key(
    store: &dyn SecretStore,
    key: &SigningKey,
    meta: VersionMeta,
) -> Result<String, StoreError> {
    Ok(put(store, key, meta, Label::Current).await?.0)
}

async fn put(
    store: &dyn SecretStore,
    key: &SigningKey,
    meta: VersionMeta,
    label: Label,
) -> Result<VersionId, StoreError> {
    let value = SecretValue::new(Zeroizing::new(hex::encode(key.to_bytes())).to_string());
    store.put(&signing_key_name(), value, meta, label).await
}

fn signing_key_name() -> SecretName {
    SecretName::new(SIGNING_KEY_SECRET).expect("valid constant name")
}

/// One stored version of the signing key.
struct StoredKey {
    key: SigningKey,
    version: VersionId,
    meta: VersionMeta,
}

/// The seed's hex, decoded: the only place that reads it.
fn decode(secret: &Secret) -> Result<StoredKey, AuditError> {
    let bytes = Zeroizing::new(
        hex::decode(secret.value.expose()).map_err(|e| AuditError::BadKey(e.to_string()))?,
    );
    let seed: &[u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| AuditError::BadKey("not 32 bytes".into()))?;
    Ok(StoredKey {
        key: SigningKey::from_bytes(seed),
        version: secret.version.clone(),
        meta: secret.meta.clone(),
    })
}

async fn read(store: &dyn SecretStore, label: Label) -> Result<StoredKey, AuditError> {
    let secret = store
        .get(&signing_key_name(), &Selector::Label(label))
        .await
        .map_err(AuditError::Key)?;
    decode(&secret)
}

/// The version labelled `pending`, if any.
async fn read_pending(store: &dyn SecretStore) -> Result<Option<StoredKey>, AuditError> {
    match store
        .get(&signing_key_name(), &Selector::Label(Label::Pending))
        .await
    {
        Ok(secret) => Ok(Some(decode(&secret)?)),
        Err(StoreError::LabelNotSet { .. } | StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(AuditError::Key(e)),
    }
}

/// Reads the signing key and checks it against the pinned verifier key,
/// after finishing or rolling back a rotation that stopped half-way (see
/// the module documentation). Call it before opening a writer.
pub async fn load_signing_key(
    config: &LoadedConfig,
    store: &dyn SecretStore,
) -> Result<(SigningKey, VerifierKey), AuditError> {
    let pinned = match settle_interrupted_rotation(config, store).await? {
        Some(Settled::Finished {
            verifier,
            pinned: false,
        }) => {
            return Err(AuditError::NotPinned {
                config: config.path.clone(),
                verifier: verifier.to_string(),
            });
        }
        Some(Settled::Finished { verifier, .. }) => *verifier,
        Some(Settled::RolledBack) | None => ledger_section(config)?.verifier_key(),
    };
    let current = read(store, Label::Current).await?;
    check_pin(config, &current.key, &pinned)?;
    Ok((current.key, pinned))
}

/// [`load_signing_key`] without recovery, for commands that change nothing
/// (`ledger public-key`).
pub async fn pinned_signing_key(
    config: &LoadedConfig,
    store: &dyn SecretStore,
) -> Result<(SigningKey, VerifierKey), AuditError> {
    let pinned = ledger_section(config)?.verifier_key();
    let current = read(store, Label::Current).await?;
    check_pin(config, &current.key, &pinned)?;
    Ok((current.key, pinned))
}

fn check_pin(
    config: &LoadedConfig,
    key: &SigningKey,
    pinned: &VerifierKey,
) -> Result<(), AuditError> {
    if key.verifying_key() != pinned.key {
        return Err(AuditError::KeyMismatch {
            config: config.path.clone(),
        });
    }
    Ok(())
}

/// What the recovery of an interrupted rotation did.
enum Settled {
    /// The staged key is now in force, `current`, and (if `pinned`)
    /// pinned.
    Finished {
        verifier: Box<VerifierKey>,
        pinned: bool,
    },
    /// The staged key was dropped; the old key signs on.
    RolledBack,
}

async fn open(
    config: &LoadedConfig,
    key: SigningKey,
) -> Result<Arc<dyn LedgerBackend>, AuditError> {
    let config = config.clone();
    blocking(move || open_writer(&config, key, None)).await
}

/// Finishes or rolls back a rotation whose new key is still `pending`;
/// `None` when there is none, or when another process holds the ledger
/// (that process settled it when it opened, or the next open will).
async fn settle_interrupted_rotation(
    config: &LoadedConfig,
    store: &dyn SecretStore,
) -> Result<Option<Settled>, AuditError> {
    let Some(staged) = read_pending(store).await? else {
        return Ok(None);
    };
    let origin = ledger_section(config)?.verifier_key().name;
    let wanted = VerifierKey::from_signing_key(&origin, &staged.key);
    let operator = crate::os_login();
    let began = format!(
        "the signing-key rotation {} began at {} ({})",
        staged.meta.operator, staged.meta.at, staged.meta.reason
    );
    // Which of the two keys does the ledger take?
    let (ledger, finish) = match open(config, staged.key.clone()).await {
        // In force: the process died after the ledger's rotation.
        Ok(ledger) => (ledger, true),
        // Announced, not yet covered by the old key's checkpoint: the old
        // key opens it and rotating to the same key finishes it.
        Err(AuditError::Ledger(LedgerError::RotationPending { key, .. }))
            if key == wanted.to_string() =>
        {
            let current = read(store, Label::Current).await?;
            let ledger = open(config, current.key).await?;
            let (key, op, why) = (staged.key.clone(), operator.clone(), began.clone());
            let l = ledger.clone();
            match blocking(move || l.rotate_key(key, &op, &format!("finishing {why}"))).await {
                Ok(_) => {}
                // PostgreSQL: another process holds the signer lease.
                Err(AuditError::Ledger(LedgerError::NotSigner { .. })) => {
                    blocking(move || ledger.close()).await?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
            (ledger, true)
        }
        Err(AuditError::Ledger(LedgerError::Locked { .. })) => return Ok(None),
        // The ledger refuses the staged key (it signed none of the
        // checkpoints). If it takes the current one, it never heard of the
        // staged key: the process died before the ledger's rotation.
        Err(AuditError::Ledger(_)) => {
            let current = read(store, Label::Current).await?;
            match open(config, current.key).await {
                Ok(ledger) => (ledger, false),
                Err(AuditError::Ledger(LedgerError::Locked { .. })) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let entry = |action: &str, reason: String| EntryKind::Secret {
        operator: operator.clone(),
        name: SIGNING_KEY_SECRET.into(),
        version: staged.version.0.clone(),
        action: action.into(),
        fingerprint: None,
        reason,
    };
    let settled = if finish {
        let kind = entry(
            "rotate finished",
            format!("finishing {began}, which stopped after the ledger put the new key in force"),
        );
        let l = ledger.clone();
        blocking(move || l.append(kind)).await?;
        let pinned = pin(
            config,
            &ledger_section(config)?.verifier_key().to_string(),
            &wanted,
        );
        store
            .move_label(&signing_key_name(), Label::Current, &staged.version)
            .await
            .map_err(AuditError::Key)?;
        Settled::Finished {
            verifier: Box::new(wanted),
            pinned,
        }
    } else {
        let kind = entry(
            "rotate rolled back",
            format!(
                "rolling back {began}, which stopped before the ledger announced the new key; the previous key signs on"
            ),
        );
        let l = ledger.clone();
        blocking(move || l.append(kind)).await?;
        store
            .remove_label(&signing_key_name(), Label::Pending)
            .await
            .map_err(AuditError::Key)?;
        Settled::RolledBack
    };
    blocking(move || ledger.close()).await?;
    Ok(Some(settled))
}

/// Makes the configuration file pin `to` instead of `from`: the same file
/// with only the key's value replaced, written atomically. Returns whether
/// the file now pins `to` (`false` when `from` is not in it exactly once,
/// or the file cannot be written: the operator pins it by hand).
fn pin(config: &LoadedConfig, from: &str, to: &VerifierKey) -> bool {
    let to = to.to_string();
    let Ok(text) = std::fs::read_to_string(&config.path) else {
        return false;
    };
    if text.matches(from).count() == 1 {
        let text = text.replace(from, &to);
        durable::atomic_replace(&durable::OsFs, &config.path, text.as_bytes()).is_ok()
    } else {
        !text.contains(from) && text.matches(to.as_str()).count() == 1
    }
}

/// A finished rotation.
#[derive(Debug)]
pub struct Rotated {
    /// The new verifier key.
    pub verifier: VerifierKey,
    /// Whether the configuration file now pins it (if not, the operator
    /// sets `[ledger] verifier_key` to it).
    pub pinned: bool,
}

/// Rotates the checkpoint signing key through the steps of the module
/// documentation and pins the new verifier key in the configuration file.
/// Works for both backends; with PostgreSQL this process must be able to
/// take the signer lease (no running gateway holds it).
///
/// A rotation that stopped half-way is settled first (finished or rolled
/// back, as any writer's open does); a rotation entry that an earlier
/// version of this tool left uncovered, with the new key already
/// `current`, is finished with that key.
pub async fn rotate_signing_key(
    config: &LoadedConfig,
    store: &dyn SecretStore,
    operator: &str,
    reason: &str,
    clock: &dyn Clock,
) -> Result<Rotated, AuditError> {
    let section = ledger_section(config)?;
    let postgres = section.backend() == LedgerBackendKind::Postgres;
    let mut pinned = section.verifier_key().to_string();
    let held = |detail: String| {
        AuditError::Gateway(format!(
            "{detail}; stop every gateway that uses this ledger, rotate the key, then start them again (they load the new key from the secrets store)"
        ))
    };
    match settle_interrupted_rotation(config, store).await {
        Ok(Some(Settled::Finished { verifier, .. })) => pinned = verifier.to_string(),
        Ok(_) => {}
        Err(AuditError::Ledger(LedgerError::NotSigner { holder })) => {
            return Err(held(format!("{holder} holds the signer lease")));
        }
        Err(e) => return Err(e),
    }
    let current = read(store, Label::Current).await?;
    let ledger = match open(config, current.key.clone()).await {
        Err(AuditError::Ledger(LedgerError::RotationPending { .. })) => {
            let ledger = open(config, read(store, Label::Previous).await?.key).await?;
            let verifier = finish_in_ledger(ledger, current.key, operator, reason)
                .await
                .map_err(|e| not_signer(e, held))?;
            let pinned = pin(config, &pinned, &verifier);
            return Ok(Rotated { verifier, pinned });
        }
        Err(AuditError::Ledger(LedgerError::Locked { dir })) => {
            return Err(held(format!(
                "the ledger {} is held by a running gateway",
                dir.display()
            )));
        }
        other => other?,
    };
    if postgres {
        // Only the signer lease's holder rotates: take it (signing what is
        // new) before a new key is stored.
        let l = ledger.clone();
        match blocking(move || l.checkpoint()).await {
            Err(AuditError::Ledger(e @ LedgerError::NotSigner { .. })) => {
                let _ = blocking(move || ledger.close()).await;
                return Err(held(e.to_string()));
            }
            other => {
                other?;
            }
        }
    }
    // 1. Staged, and recorded.
    let new = new_signing_key();
    let meta = VersionMeta {
        operator: operator.to_string(),
        at: clock.now(),
        reason: reason.to_string(),
        fingerprint: None,
        rotation_id: None,
    };
    let version = put(store, &new, meta, Label::Pending)
        .await
        .map_err(AuditError::Key)?;
    let l = ledger.clone();
    let kind = EntryKind::Secret {
        operator: operator.to_string(),
        name: SIGNING_KEY_SECRET.into(),
        version: version.0.clone(),
        action: "rotate".into(),
        fingerprint: None,
        reason: reason.to_string(),
    };
    blocking(move || l.append(kind)).await?;
    crate::fault::point("signing-key-staged");
    // 2. In force in the ledger.
    let (op, why) = (operator.to_string(), reason.to_string());
    let l = ledger.clone();
    let verifier = blocking(move || {
        l.rotate_key(new, &op, &why)?;
        Ok(l.verifier_key())
    })
    .await
    .map_err(|e| not_signer(e, held))?;
    crate::fault::point("signing-key-rotated");
    // 3. Pinned; 4. current.
    let pinned = pin(config, &pinned, &verifier);
    store
        .move_label(&signing_key_name(), Label::Current, &version)
        .await
        .map_err(AuditError::Key)?;
    blocking(move || ledger.close()).await?;
    Ok(Rotated { verifier, pinned })
}

/// Finishes the ledger's pending rotation to `new` and closes it.
async fn finish_in_ledger(
    ledger: Arc<dyn LedgerBackend>,
    new: SigningKey,
    operator: &str,
    reason: &str,
) -> Result<VerifierKey, AuditError> {
    let (op, why) = (operator.to_string(), reason.to_string());
    blocking(move || {
        ledger.rotate_key(new, &op, &why)?;
        let verifier = ledger.verifier_key();
        ledger.close()?;
        Ok(verifier)
    })
    .await
}

/// PostgreSQL: a gateway took the signer lease meanwhile.
fn not_signer(e: AuditError, held: impl Fn(String) -> AuditError) -> AuditError {
    match e {
        AuditError::Ledger(e @ LedgerError::NotSigner { .. }) => held(e.to_string()),
        e => e,
    }
}
