//! The X25519 identity the store is encrypted to: one file, mode 0600.
//!
//! Two forms, both readable by the `age`/`rage` command-line tools in an
//! emergency (`rage -d -i identity.txt secrets.age`):
//!
//! - **plain**: the format `rage-keygen` writes (comment lines, then the
//!   secret key);
//! - **passphrase-protected**: that same text encrypted to a passphrase
//!   (age's scrypt recipient, ASCII-armored), as `age -p -a` would write it.
//!
//! A protected identity is unlocked with a passphrase from one of the
//! [`PassphraseSource`]s, tried in order. Changing the passphrase rewrites
//! the file atomically ([`replace_identity_file`]); the key itself, and so
//! the store, stay the same.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::{CheckItem, StoreError};

/// The first line of an ASCII-armored age file.
const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The first line of a binary age file.
const BINARY_BEGIN: &str = "age-encryption.org/v1";

/// The systemd credential name read from `$CREDENTIALS_DIRECTORY`.
pub const PASSPHRASE_CREDENTIAL: &str = "redcap-warden-identity-passphrase";

/// The shortest passphrase `init --passphrase` and `secrets passphrase`
/// accept.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Where the passphrase of a protected identity may come from.
#[derive(Clone)]
pub enum PassphraseSource {
    /// `[secrets.file] passphrase_file`: a file (no group or other
    /// permissions) whose first line is the passphrase. Must exist.
    File(PathBuf),
    /// A systemd credential file (`$CREDENTIALS_DIRECTORY/<name>`); used
    /// when it exists, skipped when it does not.
    Credential(PathBuf),
    /// Already obtained (typed at a prompt); `from` says where, for errors.
    Given {
        /// The passphrase (zeroized on drop).
        passphrase: SecretString,
        /// Where it came from, e.g. `"typed at the terminal"`.
        from: String,
    },
}

impl PassphraseSource {
    fn describe(&self) -> String {
        match self {
            PassphraseSource::File(p) => format!("from passphrase_file {}", p.display()),
            PassphraseSource::Credential(p) => {
                format!("from the systemd credential {}", p.display())
            }
            PassphraseSource::Given { from, .. } => from.clone(),
        }
    }
}

/// An unlocked identity, and how it is protected on disk.
#[derive(Clone)]
pub struct StoreIdentity {
    pub(crate) key: age::x25519::Identity,
    /// `Some(where the passphrase came from)` for a protected identity.
    pub(crate) passphrase_from: Option<String>,
}

impl StoreIdentity {
    /// The public key (`age1…`), which is not secret.
    pub fn public_key(&self) -> String {
        self.key.to_public().to_string()
    }

    /// Whether the file on disk is passphrase-protected.
    pub fn is_protected(&self) -> bool {
        self.passphrase_from.is_some()
    }

    /// Decrypts what [`seal_to`] encrypted to this identity's public key
    /// (the rotation escrow). The error never holds the value.
    pub fn unseal(&self, sealed: &[u8]) -> Result<crate::SecretValue, String> {
        let plain = Zeroizing::new(age::decrypt(&self.key, sealed).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => "it is not encrypted to this identity".to_string(),
            other => format!("it does not decrypt ({other})"),
        })?);
        let text = std::str::from_utf8(&plain).map_err(|_| "it decrypts, but not to text")?;
        Ok(crate::SecretValue::new(text.to_string()))
    }
}

/// Encrypts `value` to the age X25519 recipient `public_key` (`age1…`),
/// ASCII-armored — readable by `rage -d -i IDENTITY` in an emergency. The
/// rotation escrow keeps a new token this way until the store holds it.
pub fn seal_to(public_key: &str, value: &crate::SecretValue) -> Result<Vec<u8>, String> {
    let recipient: age::x25519::Recipient = public_key
        .parse()
        .map_err(|e| format!("`{public_key}` is not an age X25519 public key: {e}"))?;
    age::encrypt_and_armor(&recipient, value.expose().as_bytes())
        .map(String::into_bytes)
        .map_err(|e| format!("age encryption failed: {e}"))
}

/// A new random X25519 age identity, for a new store; write it with
/// [`write_identity_file`] before creating the store.
pub fn generate_identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

/// The identity in `rage-keygen`'s format.
fn identity_text(identity: &age::x25519::Identity) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "# created: {}\n# public key: {}\n# redcap-warden secrets-store identity: back this file up; without it every token must be re-issued in REDCap\n{}\n",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        identity.to_public(),
        identity.to_string().expose_secret()
    ))
}

/// The scrypt cost (N = 2^18, 256 MiB, about half a second on a current
/// core) every passphrase protection is written with. age would otherwise
/// measure the machine at that moment, so a protection made while the host
/// was busy would be cheap to guess, and one made while it was idle could
/// be refused later when it is busy (age accepts at most 2^4 times what it
/// measures at reading).
const SCRYPT_WORK_FACTOR: u8 = 18;

/// The most work a passphrase-protected identity may ask for when read:
/// 2^22 (4 GiB, several seconds), whatever the machine's load. age's own
/// bound is 2^4 times what it measures at that moment, so a file written
/// while the host was idle (earlier releases let age choose the cost) was
/// refused when it was busy. The identity file is local; this bound only
/// stops a damaged or planted file from asking for hours of work.
const SCRYPT_MAX_ACCEPTED: u8 = 22;

/// The age identity that opens a passphrase-protected identity file.
fn passphrase_identity(passphrase: SecretString) -> age::scrypt::Identity {
    let mut identity = age::scrypt::Identity::new(passphrase);
    identity.set_max_work_factor(SCRYPT_MAX_ACCEPTED);
    identity
}

/// The bytes of an identity file: plain, or encrypted to `passphrase`.
fn identity_file_bytes(
    identity: &age::x25519::Identity,
    passphrase: Option<&SecretString>,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let text = identity_text(identity);
    match passphrase {
        None => Ok(Zeroizing::new(text.as_bytes().to_vec())),
        Some(p) => {
            let mut recipient = age::scrypt::Recipient::new(p.clone());
            recipient.set_work_factor(SCRYPT_WORK_FACTOR);
            age::encrypt_and_armor(&recipient, text.as_bytes())
                .map(|s| Zeroizing::new(s.into_bytes()))
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    }
}

/// Writes a new, plain identity file with mode 0600 and syncs it and its
/// directory. Refuses to replace an existing file.
pub fn write_identity_file(path: &Path, identity: &age::x25519::Identity) -> std::io::Result<()> {
    write_new_identity_file(path, identity, None)
}

/// Like [`write_identity_file`], with the identity encrypted to
/// `passphrase` (or plain when `None`).
pub fn write_new_identity_file(
    path: &Path,
    identity: &age::x25519::Identity,
    passphrase: Option<&SecretString>,
) -> std::io::Result<()> {
    let bytes = identity_file_bytes(identity, passphrase)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::File::open(durable::parent_dir(path))?.sync_all()
}

/// Generates a new identity and writes it to a new file at `path`,
/// encrypted to `passphrase` (plain when `None`); returns it unlocked.
pub fn create_identity_file(
    path: &Path,
    passphrase: Option<&SecretString>,
) -> std::io::Result<StoreIdentity> {
    let key = generate_identity();
    write_new_identity_file(path, &key, passphrase)?;
    Ok(StoreIdentity {
        key,
        passphrase_from: passphrase.map(|_| "given when it was created".to_string()),
    })
}

/// Replaces the identity file at `path` with `identity` encrypted to
/// `passphrase` (plain when `None`): a 0600 temporary file, synced, renamed
/// over the old one, directory synced ([`durable::atomic_replace`]). After
/// a power cut the file holds the old form or the new one.
pub fn replace_identity_file(
    fs: &dyn durable::FileSystem,
    path: &Path,
    identity: &StoreIdentity,
    passphrase: Option<&SecretString>,
) -> std::io::Result<()> {
    let bytes = identity_file_bytes(&identity.key, passphrase)?;
    durable::atomic_replace(fs, path, &bytes)
}

/// Whether the file at `path` is a passphrase-protected identity.
pub fn identity_is_protected(path: &Path) -> std::io::Result<bool> {
    let bytes = std::fs::read(path)?;
    Ok(looks_encrypted(&bytes))
}

fn looks_encrypted(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    rest.starts_with(ARMOR_BEGIN.as_bytes()) || rest.starts_with(BINARY_BEGIN.as_bytes())
}

/// Reads a passphrase file: it must not be readable by group or others, and
/// its first line (without the line break) is the passphrase.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "its mode is {mode:03o}, so other users may read it; run `chmod 600 {}`",
            path.display()
        ));
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?);
    let line = text.split('\n').next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err("its first line is empty".into());
    }
    Ok(SecretString::from(line.to_string()))
}

pub(crate) fn read_identity(path: &Path, store: &str) -> Result<StoreIdentity, StoreError> {
    load_identity(path, store, &[])
}

/// Reads the identity at `path`, unlocking it with the first available
/// passphrase source if it is protected. `store` names the store in errors.
pub fn load_identity(
    path: &Path,
    store: &str,
    sources: &[PassphraseSource],
) -> Result<StoreIdentity, StoreError> {
    let bad = |detail: String, fix: &str| StoreError::BadIdentity {
        store: store.to_string(),
        identity: path.display().to_string(),
        detail,
        fix: fix.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        bad(e.to_string(), "point [secrets.file] identity at the identity file (restore it from backup if it is lost)")
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(bad(
            format!("its mode is {mode:03o}, so other users may read it"),
            &format!(
                "run `chmod 600 {}` and consider whether the key has leaked",
                path.display()
            ),
        ));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| bad(e.to_string(), "check the file's permissions"))?,
    );
    let (text, passphrase_from) = if looks_encrypted(&bytes) {
        let (passphrase, from) = find_passphrase(path, store, sources)?;
        let plain = age::decrypt(&passphrase_identity(passphrase), &bytes).map_err(|e| match e {
            age::DecryptError::DecryptionFailed => StoreError::WrongPassphrase {
                store: store.to_string(),
                identity: path.display().to_string(),
                from: from.clone(),
            },
            age::DecryptError::NoMatchingKeys => bad(
                "it is encrypted, but not to a passphrase".into(),
                "restore the identity file from backup",
            ),
            age::DecryptError::ExcessiveWork { required, .. } => bad(
                format!("its passphrase protection needs scrypt work 2^{required}, more than the 2^{SCRYPT_MAX_ACCEPTED} redcap-warden accepts"),
                "decrypt it with `age -d` into a plain identity file (mode 0600), then protect it again with `redcap-warden secrets passphrase`, which writes 2^18",
            ),
            other => bad(
                format!("it is damaged ({other})"),
                "restore the identity file from backup",
            ),
        })?;
        let text = Zeroizing::new(String::from_utf8(plain).map_err(|_| {
            bad(
                "it decrypts, but not to text".into(),
                "restore the identity file from backup",
            )
        })?);
        (text, Some(from))
    } else {
        let text = Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
            bad(
                "it is neither an age identity nor a passphrase-protected one".into(),
                "restore the identity file from backup",
            )
        })?);
        (text, None)
    };
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| {
            bad(
                "it holds no key".into(),
                "restore the identity file from backup",
            )
        })?;
    let key = key.parse::<age::x25519::Identity>().map_err(|_| {
        bad(
            "its key line is not an age X25519 secret key".into(),
            "restore the identity file from backup",
        )
    })?;
    Ok(StoreIdentity {
        key,
        passphrase_from,
    })
}

/// The first passphrase source that gives one, with where it came from.
fn find_passphrase(
    path: &Path,
    store: &str,
    sources: &[PassphraseSource],
) -> Result<(SecretString, String), StoreError> {
    let bad = |detail: String, fix: String| StoreError::BadIdentity {
        store: store.to_string(),
        identity: path.display().to_string(),
        detail,
        fix,
    };
    for source in sources {
        match source {
            PassphraseSource::Given { passphrase, from } => {
                return Ok((passphrase.clone(), from.clone()));
            }
            PassphraseSource::File(p) => {
                return read_passphrase_file(p)
                    .map(|s| (s, source.describe()))
                    .map_err(|e| {
                        bad(
                            format!("its passphrase_file {} is unusable: {e}", p.display()),
                            "fix the passphrase file named in [secrets.file] passphrase_file"
                                .into(),
                        )
                    });
            }
            PassphraseSource::Credential(p) => {
                if !p.exists() {
                    continue;
                }
                return read_passphrase_file(p)
                    .map(|s| (s, source.describe()))
                    .map_err(|e| {
                        bad(
                            format!("the systemd credential {} is unusable: {e}", p.display()),
                            "check the unit's LoadCredential=/LoadCredentialEncrypted= line".into(),
                        )
                    });
            }
        }
    }
    Err(bad(
        "it is passphrase-protected and no passphrase was given".into(),
        format!(
            "set [secrets.file] passphrase_file to a mode-0600 file holding the passphrase, pass it as the systemd credential `{PASSPHRASE_CREDENTIAL}`, or run the command on a terminal to be asked for it"
        ),
    ))
}

pub(crate) fn check_identity_file(path: &Path, identity: Option<&StoreIdentity>) -> Vec<CheckItem> {
    let mut items = match std::fs::metadata(path) {
        Err(e) => vec![CheckItem {
            ok: false,
            what: format!("identity {}: {e}", path.display()),
            fix: Some("restore the identity file from backup".into()),
        }],
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            vec![CheckItem {
                ok: mode & 0o077 == 0,
                what: format!("identity {} has mode {mode:03o}", path.display()),
                fix: (mode & 0o077 != 0).then(|| format!("chmod 600 {}", path.display())),
            }]
        }
    };
    if let Some(identity) = identity {
        items.push(CheckItem {
            ok: true,
            what: match &identity.passphrase_from {
                Some(from) => format!(
                    "identity {} is passphrase-protected (unlocked with the passphrase {from})",
                    path.display()
                ),
                None => format!(
                    "identity {} is not passphrase-protected (add a passphrase with `redcap-warden secrets passphrase`)",
                    path.display()
                ),
            },
            fix: None,
        });
    }
    items
}
