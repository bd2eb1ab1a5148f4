//! Checking an SSH signature (SSHSIG, `ssh-keygen -Y sign`) over a
//! statement: made in the expected namespace, by one of the listed keys
//! (`allowed_signers` lines, Ed25519 only), over exactly these bytes.
//! Re-authorisation approvals ([`crate::reauth`]) and audit-trail reviews
//! ([`crate::review`]) are both checked here, each in its own namespace.

use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};
use warden_config::{APPROVER_KEY_TYPE, Approver};

/// Why a signature is refused (the caller words it for its purpose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// Not an SSH signature: what the file is instead.
    Unsigned(String),
    /// Made in another namespace (named).
    WrongNamespace(String),
    /// Made with a key type that is not verified (named).
    UnsupportedKey(String),
    /// Made with a key that is not listed (its SHA-256 fingerprint).
    NotListed(String),
    /// Does not verify over the statement.
    BadSignature,
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The listed key that made it.
    pub signer: Approver,
    /// The key's SHA-256 fingerprint (`SHA256:…`).
    pub fingerprint: String,
}

/// The key type named inside an armored SSH signature, read without
/// understanding the key (so a type the library was built without can be
/// named): `"SSHSIG"`, a version, then the public key, which starts with
/// its type as an SSH string.
fn signature_key_type(pem: &[u8]) -> Option<String> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN SSH SIGNATURE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let rest = blob.strip_prefix(b"SSHSIG")?.get(4 + 4..)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let kind = rest.get(4..4 + len)?;
    String::from_utf8(kind.to_vec()).ok()
}

/// Checks that `signature` (an armored SSHSIG) was made in `namespace`
/// by one of `keys` over `message`.
pub fn check(
    keys: &[Approver],
    namespace: &str,
    message: &[u8],
    signature: &[u8],
) -> Result<Signed, SignatureError> {
    let sig = SshSig::from_pem(signature).map_err(|e| {
        if let Some(kind) = signature_key_type(signature)
            && kind != APPROVER_KEY_TYPE
        {
            return SignatureError::UnsupportedKey(kind);
        }
        let text = String::from_utf8_lossy(signature);
        SignatureError::Unsigned(if text.trim().is_empty() {
            "the file is empty".into()
        } else if !text.contains("-----BEGIN SSH SIGNATURE-----") {
            "no -----BEGIN SSH SIGNATURE----- block".into()
        } else {
            format!("unreadable: {e}")
        })
    })?;
    if sig.namespace() != namespace {
        return Err(SignatureError::WrongNamespace(sig.namespace().to_string()));
    }
    if sig.algorithm() != Algorithm::Ed25519 {
        return Err(SignatureError::UnsupportedKey(
            sig.algorithm().as_str().to_string(),
        ));
    }
    let key = PublicKey::from(sig.public_key().clone());
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let signer = keys
        .iter()
        .find(|a| PublicKey::from_bytes(&a.key).is_ok_and(|k| k.key_data() == sig.public_key()))
        .ok_or_else(|| SignatureError::NotListed(fingerprint.clone()))?;
    key.verify(namespace, message, &sig)
        .map_err(|_| SignatureError::BadSignature)?;
    Ok(Signed {
        signer: signer.clone(),
        fingerprint,
    })
}
