//! Token fingerprints: how every place that must name a token names it.
//!
//! `fp<key id>:<first 16 hex of HMAC-SHA256(key, token)>`. A keyed hash, so
//! nobody holding the ledger can test guesses of a token offline; a key id,
//! so the key can be rotated and old fingerprints stay interpretable.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{
    Label, Result, SecretName, SecretStore, SecretValue, Selector, StoreError, VersionId,
    VersionMeta,
};

/// The store entry holding the fingerprint key.
pub const FINGERPRINT_KEY_SECRET: &str = "warden/fingerprint-key";

/// A token's fingerprint, e.g. `fp1:3f2a9c0b7d1e4f56`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The HMAC key and its id.
pub struct FingerprintKey {
    id: u32,
    key: Zeroizing<Vec<u8>>,
    /// The HMAC keyed once: cloned for each use, which skips hashing the
    /// padded key twice per HMAC (the gateway makes two to three per
    /// request).
    keyed: Hmac<Sha256>,
}

/// How the key is stored: JSON inside the secret value.
#[derive(Serialize, Deserialize)]
struct Stored {
    id: u32,
    key: String,
}

impl FingerprintKey {
    /// A fresh random 256-bit key with the given id.
    pub fn generate(id: u32) -> FingerprintKey {
        let mut key = Zeroizing::new(vec![0u8; 32]);
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        FingerprintKey::new(id, key)
    }

    fn new(id: u32, key: Zeroizing<Vec<u8>>) -> FingerprintKey {
        let keyed =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes any key length");
        FingerprintKey { id, key, keyed }
    }

    /// The key id: the `<n>` of the `fp<n>:` prefix of every fingerprint
    /// made with this key.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The fingerprint of a token (`fp<id>:<16 hex>`), what the ledger and
    /// every message name it by.
    pub fn fingerprint(&self, value: &SecretValue) -> Fingerprint {
        self.fingerprint_bytes(value.expose().as_bytes())
    }

    /// [`FingerprintKey::fingerprint`] of raw bytes (a token as it arrived
    /// in a request body); the same token gives the same fingerprint
    /// either way.
    pub fn fingerprint_bytes(&self, bytes: &[u8]) -> Fingerprint {
        let mut mac = self.keyed.clone();
        mac.update(bytes);
        let digest = mac.finalize().into_bytes();
        Fingerprint(format!("fp{}:{}", self.id, hex::encode(&digest[..8])))
    }

    /// `hm<key id>:<64 hex>`: the full HMAC, for what the ledger records
    /// instead of a body or a filter (no patient data in the ledger).
    pub fn hmac_hex(&self, bytes: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(bytes);
        hmac_text(self.id, &mac.finalize().into_bytes())
    }

    /// [`FingerprintKey::hmac_hex`] of data that arrives in pieces (an
    /// answer streamed through the gateway).
    pub fn hmac_stream(&self) -> HmacStream {
        HmacStream {
            id: self.id,
            mac: self.keyed.clone(),
        }
    }

    /// Reads the current key from the store.
    pub async fn load(store: &dyn SecretStore) -> Result<FingerprintKey> {
        let name = key_name();
        let secret = store.get(&name, &Selector::Label(Label::Current)).await?;
        let corrupt = |detail: String| StoreError::Corrupt {
            store: store.describe(),
            detail,
        };
        let stored: Stored = serde_json::from_str(secret.value.expose()).map_err(|e| {
            corrupt(format!(
                "`{name}` is not a fingerprint key: {}",
                crate::error::json_error_position(&e)
            ))
        })?;
        let key = Zeroizing::new(
            hex::decode(&stored.key).map_err(|_| corrupt(format!("`{name}` key is not hex")))?,
        );
        if key.len() < 32 {
            return Err(corrupt(format!("`{name}` key is shorter than 256 bits")));
        }
        Ok(FingerprintKey::new(stored.id, key))
    }

    /// Writes this key as the store's current fingerprint key; returns the
    /// new version's id.
    pub async fn save(&self, store: &dyn SecretStore, meta: VersionMeta) -> Result<VersionId> {
        let stored = Zeroizing::new(
            serde_json::to_string(&Stored {
                id: self.id,
                key: hex::encode(&*self.key),
            })
            .expect("serialisable"),
        );
        store
            .put(
                &key_name(),
                SecretValue::new(stored.to_string()),
                meta,
                Label::Current,
            )
            .await
    }
}

fn key_name() -> SecretName {
    SecretName::new(FINGERPRINT_KEY_SECRET).expect("valid constant name")
}

/// An HMAC being computed over pieces; [`HmacStream::finish_hex`] gives
/// the same `hm<id>:<hex>` as [`FingerprintKey::hmac_hex`] of all of them.
pub struct HmacStream {
    id: u32,
    mac: Hmac<Sha256>,
}

impl HmacStream {
    /// Adds the next piece.
    pub fn update(&mut self, bytes: &[u8]) {
        self.mac.update(bytes);
    }

    /// The HMAC of everything added.
    pub fn finish_hex(self) -> String {
        hmac_text(self.id, &self.mac.finalize().into_bytes())
    }
}

/// `hm<id>:<64 hex>`, written straight into one string: the gateway makes
/// two or three per request, and `format!` with `hex::encode`'s
/// character iterator cost more than the HMAC of a small body.
fn hmac_text(id: u32, digest: &[u8]) -> String {
    let mut id_digits = [0u8; 10];
    let mut start = id_digits.len();
    let mut n = id;
    loop {
        start -= 1;
        id_digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut hex = [0u8; 64];
    let hex = &mut hex[..digest.len() * 2];
    hex::encode_to_slice(digest, hex).expect("the buffer holds two digits per byte");
    let mut text = String::with_capacity(3 + (id_digits.len() - start) + hex.len());
    text.push_str("hm");
    text.push_str(std::str::from_utf8(&id_digits[start..]).expect("ASCII digits"));
    text.push(':');
    text.push_str(std::str::from_utf8(hex).expect("ASCII hex digits"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_text_is_the_key_id_and_the_digest_in_lower_case_hex() {
        assert_eq!(hmac_text(0, &[0x00, 0xab]), "hm0:00ab");
        assert_eq!(
            hmac_text(4_294_967_295, &[0xff; 32]),
            format!("hm4294967295:{}", "ff".repeat(32))
        );
        let k = FingerprintKey::new(12, Zeroizing::new(vec![7; 32]));
        let mut mac = k.keyed.clone();
        mac.update(b"body");
        let want = format!("hm12:{}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(k.hmac_hex(b"body"), want);
        let mut stream = k.hmac_stream();
        stream.update(b"bo");
        stream.update(b"dy");
        assert_eq!(stream.finish_hex(), want);
    }

    #[test]
    fn fingerprints_are_keyed_prefixed_and_short() {
        let k1 = FingerprintKey::new(1, Zeroizing::new(vec![7; 32]));
        let k2 = FingerprintKey::new(2, Zeroizing::new(vec![8; 32]));
        let token = SecretValue::new("0123456789ABCDEF0123456789ABCDEF".into());
        let f1 = k1.fingerprint(&token);
        assert!(f1.0.starts_with("fp1:") && f1.0.len() == 4 + 16, "{f1}");
        assert_eq!(f1, k1.fingerprint(&token), "deterministic");
        assert_ne!(
            f1.0[4..],
            k2.fingerprint(&token).0[4..],
            "depends on the key"
        );
        assert!(k2.fingerprint(&token).0.starts_with("fp2:"));
        // HMAC-SHA256(key=0x07*32, "abc"), first 8 bytes, computed independently.
        assert_eq!(
            k1.fingerprint_bytes(b"abc").0,
            format!("fp1:{}", reference_hmac(&[7; 32], b"abc"))
        );
    }

    #[test]
    fn a_streamed_hmac_equals_the_whole_one() {
        let k = FingerprintKey::new(3, Zeroizing::new(vec![9; 32]));
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = k.hmac_stream();
        for piece in data.chunks(977) {
            s.update(piece);
        }
        assert_eq!(s.finish_hex(), k.hmac_hex(&data));
    }

    /// HMAC from its definition over plain SHA-256, to check the crate use.
    fn reference_hmac(key: &[u8; 32], msg: &[u8]) -> String {
        use sha2::Digest;
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for (i, k) in key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let inner = Sha256::new()
            .chain_update(ipad)
            .chain_update(msg)
            .finalize();
        let outer = Sha256::new()
            .chain_update(opad)
            .chain_update(inner)
            .finalize();
        hex::encode(&outer[..8])
    }
}
