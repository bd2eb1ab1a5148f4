//! The escrow: where a new token waits, encrypted, until the store holds
//! it as `current`.
//!
//! REDCap kills the old token the instant the new one is made, and the new
//! one is shown to a person or handed to a program once. If the process
//! died holding it only in memory, the account would have no working
//! token and no record of the new one. So the moment an issuer gives a
//! token it is encrypted with age to an X25519 recipient and written to
//! `<dir>/<id>.escrow.age` (a 0600 temporary file, synced, renamed,
//! directory synced: [`durable::atomic_replace`]) before anything else
//! happens; it is removed only once the store holds the token as `current`.
//!
//! The recipient is the store's own identity for the `file` backend (so the
//! escrow opens with what opens the store). Vault and AWS have no age
//! identity of ours, so there the escrow has its own: an age identity file
//! created on first use beside the journals (mode 0600,
//! `escrow-identity.txt`), which must be backed up with the data directory.
//! Either way `rage -d -i IDENTITY FILE` opens an escrow in an emergency.

use std::path::{Path, PathBuf};

use secrets::SecretValue;
use secrets::file::StoreIdentity;

use super::RotationError;
use super::journal::Journal;

/// The file name of the escrow's own identity (non-file backends).
pub const ESCROW_IDENTITY: &str = "escrow-identity.txt";

/// Who escrowed tokens are encrypted to, and the identity that opens them.
#[derive(Clone)]
pub struct EscrowKey {
    identity: StoreIdentity,
    /// For messages: which identity this is.
    describe: String,
}

impl EscrowKey {
    /// The file store's identity (already unlocked).
    pub fn store_identity(identity: StoreIdentity, path: &Path) -> EscrowKey {
        EscrowKey {
            identity,
            describe: format!("the secrets store's identity {}", path.display()),
        }
    }

    /// The escrow's own identity at `path` (for stores without an age
    /// identity), created (mode 0600, synced) if it does not exist.
    pub fn own_identity(path: &Path) -> Result<EscrowKey, RotationError> {
        let what = format!("the rotation escrow identity {}", path.display());
        let fail = |detail: String| RotationError::Escrow {
            path: path.to_path_buf(),
            detail,
            fix: format!(
                "restore {} from backup, or if no rotation is open, move it aside so a new one is made",
                path.display()
            ),
        };
        let identity = if path.exists() {
            secrets::file::load_identity(path, &what, &[]).map_err(|e| fail(e.to_string()))?
        } else {
            if let Some(dir) = path.parent() {
                durable::create_dir_all_durable(&durable::PrivateOsFs, dir).map_err(|source| {
                    RotationError::Io {
                        op: "creating the rotation directory",
                        path: dir.to_path_buf(),
                        source,
                        fix: "check that the data directory is writable".into(),
                    }
                })?;
            }
            secrets::file::create_identity_file(path, None).map_err(|source| RotationError::Io {
                op: "creating the rotation escrow identity",
                path: path.to_path_buf(),
                source,
                fix: "check that the data directory is writable".into(),
            })?
        };
        Ok(EscrowKey {
            identity,
            describe: what,
        })
    }

    /// Which identity this is, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

/// The escrow files of one installation, beside the journals.
#[derive(Clone)]
pub struct Escrow {
    journal: Journal,
    key: EscrowKey,
}

impl Escrow {
    /// Escrow files in the journal's directory, through its file system.
    pub fn new(journal: Journal, key: EscrowKey) -> Escrow {
        Escrow { journal, key }
    }

    /// The escrow file of rotation `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.journal.dir().join(format!("{id}.escrow.age"))
    }

    /// Whether rotation `id` has a token in escrow.
    pub fn holds(&self, id: &str) -> bool {
        self.journal.fs().exists(&self.path(id))
    }

    /// Encrypts `token` and makes it durable; returns once it is.
    pub fn put(&self, id: &str, token: &SecretValue) -> Result<(), RotationError> {
        let path = self.path(id);
        let sealed =
            secrets::file::seal_to(&self.key.identity.public_key(), token).map_err(|detail| {
                RotationError::Escrow {
                    path: path.clone(),
                    detail,
                    fix: format!("check {}", self.key.describe),
                }
            })?;
        durable::atomic_replace(&**self.journal.fs(), &path, &sealed).map_err(|source| {
            RotationError::Io {
                op: "writing the rotation escrow",
                path,
                source,
                fix: format!(
                    "check that {} is writable and has space; the new token was not kept, so run `redcap-warden rotate resume {id}` to obtain it again",
                    self.journal.dir().display()
                ),
            }
        })
    }

    /// The escrowed token of rotation `id`.
    pub fn take(&self, id: &str) -> Result<SecretValue, RotationError> {
        let path = self.path(id);
        let sealed = self
            .journal
            .fs()
            .read(&path)
            .map_err(|source| RotationError::Io {
                op: "reading the rotation escrow",
                path: path.clone(),
                source,
                fix: "restore the data directory from backup".into(),
            })?;
        self.key
            .identity
            .unseal(&sealed)
            .map_err(|detail| RotationError::Escrow {
                path,
                detail,
                fix: format!(
                    "open it with {}; if that identity changed, restore the one it was written with",
                    self.key.describe
                ),
            })
    }

    /// Removes the escrow of rotation `id` durably (nothing to do if it is
    /// gone already).
    pub fn remove(&self, id: &str) -> Result<(), RotationError> {
        let path = self.path(id);
        let fs = self.journal.fs();
        let removed = match fs.remove_file(&path) {
            Ok(()) => fs.sync_dir(self.journal.dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed.map_err(|source| RotationError::Io {
            op: "removing the rotation escrow",
            path,
            source,
            fix: "the store already holds the token as current; remove the file by hand".into(),
        })
    }
}
