//! Checkpoints as C2SP signed notes (<https://c2sp.org/signed-note>,
//! <https://c2sp.org/tlog-checkpoint>).
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <base64 root hash>\n
//! \n
//! — <key name> <base64(key id ‖ Ed25519 signature)>\n
//! ```
//!
//! The signature covers the note text: the three body lines with their
//! newlines. The key id is the first 4 bytes of SHA-256(key name ‖ 0x0A ‖
//! 0x01 ‖ public key); 0x01 is the Ed25519 signature type. The verifier key
//! is written `<name>+<hex key id>+<base64(0x01 ‖ public key)>`. Our
//! checkpoints carry no extension lines; a note with any is rejected.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

const ED25519_TYPE: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note or verifier key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is not a C2SP signed note of a checkpoint (origin, size,
    /// base64 root, blank line, signature lines); the text says which part.
    /// A hand-edited or truncated checkpoints file gives this.
    #[error("malformed checkpoint note: {0}")]
    Malformed(String),
    /// The verifier key text is not `name+hexkeyid+base64key` with an
    /// Ed25519 key, or its key id does not match; recopy it from
    /// `warden.toml` or the key's creation output.
    #[error("malformed verifier key (want name+hexkeyid+base64key): {0}")]
    BadVerifierKey(String),
    /// The checkpoint belongs to another ledger than the key.
    #[error("checkpoint origin is {got:?}, the verifier key names {want:?}")]
    WrongOrigin {
        /// The origin the checkpoint names.
        got: String,
        /// The origin the verifier key names.
        want: String,
    },
    /// The note carries no signature line by the key: it was signed by
    /// another key (check the key is the one in force) or stripped.
    #[error("no signature by key {name} (id {key_id}) on the checkpoint")]
    NoSignature {
        /// The key's name.
        name: String,
        /// The key's id, 8 hex digits.
        key_id: String,
    },
    /// The key's signature does not verify: the note was altered after
    /// signing, which is tampering.
    #[error("the signature by key {name} on the checkpoint is invalid")]
    BadSignature {
        /// The key's name.
        name: String,
    },
    /// A checkpoint is signed by a key that no covered rotation put in
    /// force at its size (docs/ledger.md §4.4).
    #[error("breaks the signing-key chain: {0}")]
    KeyChain(String),
}

/// A signed tree head: the tree of the first `size` entries has `root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The ledger's origin: the name that ties the checkpoint to its log.
    pub origin: String,
    /// How many entries the tree holds.
    pub size: u64,
    /// The RFC 6962 root of those entries.
    pub root: Hash,
}

/// A public key that verifies checkpoints: the C2SP verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key's name (the ledger's origin, for a ledger signing key).
    pub name: String,
    /// The C2SP key id: the first 4 bytes of SHA-256 over name, type and
    /// key, which signature lines start with.
    pub key_id: [u8; 4],
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

/// The C2SP key id of an Ed25519 key named `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

impl VerifierKey {
    /// The verifier key for `signing`, named `name` (the ledger's origin).
    pub fn from_signing_key(name: &str, signing: &SigningKey) -> VerifierKey {
        let key = signing.verifying_key();
        VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        }
    }

    /// Parses `name+hexkeyid+base64key`, checking the key id matches.
    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let bad = |why: &str| NoteError::BadVerifierKey(why.to_owned());
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected three parts separated by '+'"));
        };
        if !valid_key_name(name) {
            return Err(bad("empty name or name with space or '+'"));
        }
        let id: [u8; 4] = hex::decode(id_hex)
            .ok()
            .filter(|_| id_hex.len() == 8 && id_hex == id_hex.to_lowercase())
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("key id is not 8 lowercase hex digits"))?;
        let raw = STANDARD
            .decode(key_b64)
            .map_err(|_| bad("key is not base64"))?;
        let [ED25519_TYPE, rest @ ..] = raw.as_slice() else {
            return Err(bad("not an Ed25519 key (type byte is not 0x01)"));
        };
        let bytes: [u8; 32] = rest
            .try_into()
            .map_err(|_| bad("Ed25519 key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not a valid Ed25519 point"))?;
        if key_id(name, &key) != id {
            return Err(bad("key id does not match name and key"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: id,
            key,
        })
    }

    /// The hex key id.
    pub fn key_id_hex(&self) -> String {
        hex::encode(self.key_id)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ED25519_TYPE];
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            self.key_id_hex(),
            STANDARD.encode(raw)
        )
    }
}

impl Checkpoint {
    /// The note text (the signed part), three lines.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The signed note, signed by `key` under the name `self.origin`.
    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.body(), &self.origin, key)
    }

    /// Parses a note and checks it carries a valid signature by `key`.
    /// Signatures by other keys are ignored, as C2SP requires.
    pub fn verify(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
        let (cp, sigs) = parse(note)?;
        if cp.origin != key.name {
            return Err(NoteError::WrongOrigin {
                got: cp.origin,
                want: key.name.clone(),
            });
        }
        let body = cp.body();
        let mut found = false;
        for (name, id, sig) in sigs {
            if name != key.name || id != key.key_id {
                continue;
            }
            found = true;
            if key.key.verify_strict(body.as_bytes(), &sig).is_ok() {
                return Ok(cp);
            }
        }
        if found {
            Err(NoteError::BadSignature {
                name: key.name.clone(),
            })
        } else {
            Err(NoteError::NoSignature {
                name: key.name.clone(),
                key_id: key.key_id_hex(),
            })
        }
    }
}

/// Parses a note without checking any signature; returns the checkpoint and
/// the key ids of its Ed25519 signature lines that carry its origin as key
/// name. For the part of a key chain older than the pinned key (see
/// `docs/ledger.md` §4.4), whose first key the log does not record.
pub(crate) fn parse_unverified(note: &str) -> Result<(Checkpoint, Vec<[u8; 4]>), NoteError> {
    let (cp, sigs) = parse(note)?;
    let ids = sigs
        .into_iter()
        .filter(|(name, _, _)| *name == cp.origin)
        .map(|(_, id, _)| id)
        .collect();
    Ok((cp, ids))
}

/// Signs note `text` (newline-terminated lines) with `key` under `name`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    let sig = key.sign(text.as_bytes());
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&sig.to_bytes());
    format!("{text}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

type SigLine = (String, [u8; 4], Signature);

/// Splits a note into its checkpoint and signature lines, checking syntax.
fn parse(note: &str) -> Result<(Checkpoint, Vec<SigLine>), NoteError> {
    let bad = |why: String| NoteError::Malformed(why);
    let Some((text, sig_block)) = note.split_once("\n\n") else {
        return Err(bad("no blank line between text and signatures".into()));
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let [origin, size, root] = lines.as_slice() else {
        return Err(bad(format!(
            "the text has {} lines; a checkpoint has exactly 3 (origin, size, root) and no extension lines",
            lines.len()
        )));
    };
    if origin.is_empty() || origin.chars().any(char::is_control) {
        return Err(bad("empty origin or control character in origin".into()));
    }
    let size_ok = !size.is_empty()
        && size.bytes().all(|b| b.is_ascii_digit())
        && (*size == "0" || !size.starts_with('0'));
    let size: u64 = size
        .parse()
        .ok()
        .filter(|_| size_ok)
        .ok_or_else(|| bad(format!("tree size {size:?} is not a decimal number")))?;
    let root: Hash = STANDARD
        .decode(root)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("root is not a base64 32-byte hash".into()))?;
    let Some(sig_block) = sig_block.strip_suffix('\n') else {
        return Err(bad("the note does not end with a newline".into()));
    };
    let mut sigs = Vec::new();
    for line in sig_block.split('\n') {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
            bad(format!(
                "signature line {line:?} does not start with \"— \""
            ))
        })?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("signature line lacks a key name".into()))?;
        if !valid_key_name(name) {
            return Err(bad(format!("bad key name {name:?} in a signature line")));
        }
        let blob = STANDARD
            .decode(b64)
            .map_err(|_| bad("signature is not base64".into()))?;
        if blob.len() < 5 {
            return Err(bad("signature shorter than a key id".into()));
        }
        let id: [u8; 4] = blob[..4].try_into().expect("4 bytes");
        // Signatures of other types or lengths are legal in a note; they
        // are simply not ours.
        if let Ok(sig) = <[u8; 64]>::try_from(&blob[4..]) {
            sigs.push((name.to_owned(), id, Signature::from_bytes(&sig)));
        }
    }
    if sigs.is_empty() {
        return Err(bad("no Ed25519 signature lines".into()));
    }
    Ok((
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        },
        sigs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "host.example/redcap-warden/0123abcd".into(),
            size: 42,
            root: [7; 32],
        }
    }

    #[test]
    fn sign_and_verify() {
        let k = key(1);
        let vk = VerifierKey::from_signing_key(&cp().origin, &k);
        let note = cp().sign(&k);
        assert!(note.starts_with("host.example/redcap-warden/0123abcd\n42\nBwcH"));
        assert!(note.contains("\n\n\u{2014} host.example/redcap-warden/0123abcd "));
        assert_eq!(Checkpoint::verify(&note, &vk).unwrap(), cp());
        // Through the verifier key string.
        let parsed = VerifierKey::parse(&vk.to_string()).unwrap();
        assert_eq!(parsed, vk);
        assert_eq!(Checkpoint::verify(&note, &parsed).unwrap(), cp());
    }

    #[test]
    fn key_id_follows_c2sp() {
        let k = key(2);
        let name = "example.com/log";
        let mut input = name.as_bytes().to_vec();
        input.push(b'\n');
        input.push(1);
        input.extend_from_slice(k.verifying_key().as_bytes());
        let digest = Sha256::digest(&input);
        assert_eq!(key_id(name, &k.verifying_key()), digest[..4]);
    }

    /// A known answer from the Go `golang.org/x/mod/sumdb/note` package
    /// documentation: its example verifier key.
    #[test]
    fn parses_go_note_example_verifier_key() {
        let vk = VerifierKey::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        assert_eq!(vk.name, "PeterNeumann");
        assert_eq!(vk.key_id_hex(), "c74f20a3");
    }

    /// Known answer from the same documentation: signing its example text
    /// with its example private key gives exactly its example note.
    #[test]
    fn signs_go_note_example_exactly() {
        let raw = STANDARD
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        let k = SigningKey::from_bytes(&raw[1..].try_into().unwrap());
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        assert_eq!(
            sign_note(text, "PeterNeumann", &k),
            format!(
                "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            )
        );
        let vk = VerifierKey::from_signing_key("PeterNeumann", &k);
        assert_eq!(
            vk.to_string(),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
    }

    #[test]
    fn wrong_key_and_tampering_are_rejected() {
        let k = key(1);
        let vk = VerifierKey::from_signing_key(&cp().origin, &k);
        let other = VerifierKey::from_signing_key(&cp().origin, &key(9));
        let note = cp().sign(&k);
        assert!(matches!(
            Checkpoint::verify(&note, &other),
            Err(NoteError::NoSignature { .. })
        ));
        let bumped = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            Checkpoint::verify(&bumped, &vk),
            Err(NoteError::BadSignature { .. })
        ));
        let renamed = VerifierKey::from_signing_key("other.example/log", &k);
        assert!(matches!(
            Checkpoint::verify(&note, &renamed),
            Err(NoteError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn extra_signatures_by_other_keys_are_ignored() {
        let k = key(1);
        let vk = VerifierKey::from_signing_key(&cp().origin, &k);
        let note = cp().sign(&k);
        let witness = format!("\u{2014} witness.example AAAAAAA{}\n", "B".repeat(85));
        let with_witness = format!("{note}{witness}");
        assert_eq!(Checkpoint::verify(&with_witness, &vk).unwrap(), cp());
    }

    #[test]
    fn malformed_notes_are_rejected() {
        let k = key(1);
        let vk = VerifierKey::from_signing_key(&cp().origin, &k);
        let note = cp().sign(&k);
        let cases = [
            note.replacen("\n\n", "\n", 1),                  // no blank line
            note.replacen("\n42\n", "\n42\nextension\n", 1), // extension line
            note.replacen("\n42\n", "\n042\n", 1),           // leading zero
            note.replacen("\n42\n", "\n-1\n", 1),            // not a number
            note.replacen("\n42\n", "\n 42\n", 1),           // space
            note.replacen("BwcH", "!!!!", 1),                // root not base64
            note.replacen("\u{2014} ", "- ", 1),             // ASCII dash
            note.trim_end_matches('\n').to_owned(),          // no final newline
            note.replacen(&cp().origin, "", 1),              // empty origin
            format!("{}\n\n", cp().body()),                  // no signatures
        ];
        for (i, c) in cases.iter().enumerate() {
            assert!(
                Checkpoint::verify(c, &vk).is_err(),
                "case {i} accepted: {c:?}"
            );
        }
    }

    #[test]
    fn malformed_verifier_keys_are_rejected() {
        let vk = VerifierKey::from_signing_key("log", &key(3)).to_string();
        let (name, rest) = vk.split_once('+').unwrap();
        let (id, b64) = rest.split_once('+').unwrap();
        let cases = [
            format!("{name}+{id}"),
            format!("{name}+00000000+{b64}"),
            format!("{name}+{}+{b64}", id.to_uppercase()),
            format!("other+{id}+{b64}"),
            format!("{name}+{id}+{}", STANDARD.encode([2u8; 33])),
            format!("{name}+{id}+{}", STANDARD.encode([1u8; 20])),
            format!("+{id}+{b64}"),
        ];
        for c in cases {
            assert!(VerifierKey::parse(&c).is_err(), "accepted {c}");
        }
    }
}
