//! The X25519 identity the store is encrypted to: one file, mode 0600, in
//! the format `rage-keygen` writes (comment lines, then the secret key), so
//! the store can be opened with the `age`/`rage` command-line tools in an
//! emergency: `rage -d -i identity.txt secrets.age`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::{CheckItem, StoreError};

pub fn generate_identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

/// Writes a new identity file with mode 0600 and syncs it and its directory.
/// Refuses to replace an existing file.
pub fn write_identity_file(path: &Path, identity: &age::x25519::Identity) -> std::io::Result<()> {
    let text = Zeroizing::new(format!(
        "# created: {}\n# public key: {}\n# redcap-warden secrets-store identity: back this file up; without it every token must be re-issued in REDCap\n{}\n",
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        identity.to_public(),
        identity.to_string().expose_secret()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::File::open(durable::parent_dir(path))?.sync_all()
}

pub(crate) fn read_identity(path: &Path, store: &str) -> Result<age::x25519::Identity, StoreError> {
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
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| bad(e.to_string(), "check the file's permissions"))?,
    );
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
    key.parse::<age::x25519::Identity>().map_err(|_| {
        bad(
            "its key line is not an age X25519 secret key".into(),
            "restore the identity file from backup",
        )
    })
}

pub(crate) fn check_identity_file(path: &Path) -> Vec<CheckItem> {
    match std::fs::metadata(path) {
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
    }
}
