//! Client keys: what applications present instead of a REDCap token.
//!
//! A key looks like a REDCap project token — 32 upper-case hex characters,
//! 128 random bits — so PyCap, REDCapR and other clients that check token
//! shape accept it unchanged. The gateway keeps only each key's SHA-256;
//! the key itself exists once, when it is issued, and goes straight into a
//! secrets backend or a 0600 file, never to the terminal.
//!
//! Unlike REDCap's own tokens, keys expire (default 90 days) and rotate
//! with an overlap: issuing a new key for a client shortens the client's
//! older keys to the overlap window instead of killing them at once.
//!
//! Issuing one with its delivery and its ledger entry is
//! [`issue_and_deliver`].

mod issue;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{DocumentError, FileDocument, FileSystem, SharedDocument};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use issue::{IssueError, IssuedKey, KeyDestination, KeyOrder, issue_and_deliver};

const FORMAT: &str = "redcap-warden/client-keys/1";

/// A freshly issued key. Only [`ClientKey::expose`] reveals it.
pub struct ClientKey(Zeroizing<String>);

impl ClientKey {
    fn generate() -> ClientKey {
        let mut key = Zeroizing::new(durable::random_hex(16));
        key.make_ascii_uppercase();
        ClientKey(key)
    }

    /// The key, for its one delivery.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

/// SHA-256 of a presented key: how keys are stored and looked up.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// What the gateway knows about one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `k-` and the first 8 hex of the digest: names the key in lists,
    /// revocations and the ledger without revealing it.
    pub id: String,
    /// The `[[client]]` of `warden.toml` the key authenticates; its policy
    /// decides what the key may call.
    pub client: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// When the key was issued (UTC).
    pub issued_at: Timestamp,
    /// The operator who issued it: an OS login, or `admin-api (<name>)`.
    pub issued_by: String,
    /// From this instant on the key is refused. Issuing a newer key for
    /// the same client may bring it forward to the end of the overlap
    /// window; nothing moves it later.
    pub expires_at: Timestamp,
    /// When the key was revoked; a revoked key is refused from the next
    /// request on, whatever its expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// The reason the operator gave for revoking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_reason: Option<String>,
    /// The last request that presented the key, as of the gateway's last
    /// flush to the key file (about once a minute, so it can lag; a
    /// running gateway's `GET /admin/keys` includes what it has not yet
    /// written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Timestamp>,
}

/// The state of a key at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Neither revoked nor past its expiry: the gateway accepts it.
    Active,
    /// Past `expires_at`: refused; issue the client a new key.
    Expired,
    /// Revoked by an operator: refused, and stays refused.
    Revoked,
}

impl KeyRecord {
    /// The key's state at `now`; revocation wins over expiry.
    pub fn state(&self, now: Timestamp) -> KeyState {
        if self.revoked_at.is_some() {
            KeyState::Revoked
        } else if now >= self.expires_at {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// The key as the report and the dashboard show it: id, state, age
    /// and last use — never its hash.
    pub fn view(&self, now: Timestamp) -> governance::report::ClientKeyView {
        governance::report::ClientKeyView {
            client: self.client.clone(),
            id: self.id.clone(),
            state: format!("{:?}", self.state(now)).to_lowercase(),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            last_used: self.last_used,
            issued_by: self.issued_by.clone(),
        }
    }
}

/// Why the key file could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, locking or writing the key file failed at the OS level;
    /// nothing was changed.
    #[error(
        "client keys file {path}: {op} failed: {source}; fix: check the data directory's permissions and free space"
    )]
    Io {
        /// The key file.
        path: PathBuf,
        /// What was being done: `reading`, `locking` or `writing`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not a key file this version can read (bad JSON,
    /// another `format`, a digest that is not 32 bytes of hex). The
    /// gateway refuses to start rather than guess which keys are valid.
    #[error(
        "client keys file {path} is damaged ({detail}); fix: restore it from backup, or revoke-and-reissue every client key"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The keys live in PostgreSQL (`[ledger] backend = "postgres"`) and
    /// the database did not answer or refused; nothing was changed.
    #[error(
        "client keys in {place}: could not {op}: {detail}; fix: check that PostgreSQL answers (the gateway refuses client keys it cannot confirm)"
    )]
    Database {
        /// Where the keys are.
        place: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The database's error.
        detail: String,
    },
    /// A revocation named an id no key in the file has.
    #[error("no client key `{id}`; fix: see `redcap-warden keys list`")]
    NoSuchKey {
        /// The id asked for.
        id: String,
    },
    /// A revocation named a key that is revoked already; nothing changed.
    #[error("client key `{id}` is already revoked")]
    AlreadyRevoked {
        /// The key's id.
        id: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    keys: Vec<KeyRecord>,
}

/// The client keys: hashes, expiry, revocation. A file on one machine, a
/// row of PostgreSQL shared by every gateway (`crate::cluster`). Every
/// change is a read-modify-write under an exclusive lock.
pub struct KeyFile {
    doc: Arc<dyn SharedDocument>,
}

/// Lifetimes for [`KeyFile::issue`].
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// How long a new key works (`[gateway] key_lifetime_days`, 90 days
    /// by default).
    pub lifetime: SignedDuration,
    /// How long the client's older keys keep working after a new one is
    /// issued (`[gateway] key_overlap_days`): the time a deployment has to
    /// switch to the new key.
    pub overlap: SignedDuration,
}

impl KeyPolicy {
    /// The lifetimes `[gateway]` sets (`key_lifetime_days`,
    /// `key_overlap_days`).
    pub fn from_config(gateway: &warden_config::GatewaySection) -> KeyPolicy {
        KeyPolicy {
            lifetime: gateway.key_lifetime,
            overlap: gateway.key_overlap,
        }
    }
}

/// Delivers a key into a new file only its owner can read (mode 0600),
/// synced; refuses to overwrite an existing file.
pub fn write_new_key_file(path: &Path, key: &ClientKey) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut line = Zeroizing::new(key.expose().to_string());
    line.push('\n');
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

impl KeyFile {
    /// The keys file on the real file system, locked through `<file>.lock`.
    pub fn new(path: &Path) -> KeyFile {
        KeyFile::shared(Arc::new(FileDocument::new(path)))
    }

    /// Through any file system (tests), without an inter-process lock.
    pub fn with_fs(path: &Path, fs: Arc<dyn FileSystem>) -> KeyFile {
        KeyFile::shared(Arc::new(FileDocument::with_fs(path, fs)))
    }

    /// The keys in any shared document (PostgreSQL: `crate::cluster`).
    pub fn shared(doc: Arc<dyn SharedDocument>) -> KeyFile {
        KeyFile { doc }
    }

    /// Where the keys are: the file, or the PostgreSQL row.
    pub fn path(&self) -> &Path {
        self.doc.place()
    }

    /// The document the keys are in.
    pub(crate) fn document(&self) -> &dyn SharedDocument {
        &*self.doc
    }

    fn failed(&self, e: DocumentError) -> KeyError {
        match e {
            DocumentError::Io { op, source } => KeyError::Io {
                path: self.path().to_path_buf(),
                op,
                source,
            },
            DocumentError::Database { op, detail } => KeyError::Database {
                place: self.path().to_path_buf(),
                op,
                detail,
            },
        }
    }

    fn parse(&self, bytes: Option<Vec<u8>>) -> Result<Vec<KeyRecord>, KeyError> {
        let Some(bytes) = bytes else {
            return Ok(Vec::new());
        };
        let doc: Document = serde_json::from_slice(&bytes).map_err(|e| KeyError::Corrupt {
            path: self.path().to_path_buf(),
            detail: e.to_string(),
        })?;
        if doc.format != FORMAT {
            return Err(KeyError::Corrupt {
                path: self.path().to_path_buf(),
                detail: format!("unknown format `{}`", doc.format),
            });
        }
        Ok(doc.keys)
    }

    /// Every key record. A missing file is an empty list.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        let bytes = self.doc.read().map_err(|e| self.failed(e))?;
        self.parse(bytes)
    }

    fn update<T: Send>(
        &self,
        f: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T, KeyError> + Send,
    ) -> Result<T, KeyError> {
        let mut f = Some(f);
        let mut out = None;
        self.doc
            .update(&mut |bytes| {
                let f = f.take()?;
                let changed = self.parse(bytes).and_then(|mut keys| {
                    let t = f(&mut keys)?;
                    Ok((t, keys))
                });
                match changed {
                    Ok((t, keys)) => {
                        out = Some(Ok(t));
                        let doc = Document {
                            format: FORMAT.into(),
                            keys,
                        };
                        Some(serde_json::to_vec_pretty(&doc).expect("serialisable"))
                    }
                    Err(e) => {
                        out = Some(Err(e));
                        None
                    }
                }
            })
            .map_err(|e| self.failed(e))?;
        out.unwrap_or_else(|| {
            Err(KeyError::Database {
                place: self.path().to_path_buf(),
                op: "change the keys",
                detail: "the change was not applied".into(),
            })
        })
    }

    /// Issues a new key for `client`. The client's other active keys are
    /// shortened to expire within the overlap window, so a deployment has
    /// that long to switch. Returns the key and its record, and the records
    /// that were shortened.
    pub fn issue(
        &self,
        client: &str,
        operator: &str,
        policy: KeyPolicy,
        now: Timestamp,
    ) -> Result<(ClientKey, KeyRecord, Vec<KeyRecord>), KeyError> {
        let key = ClientKey::generate();
        let sha = hex::encode(digest(key.expose()));
        let record = KeyRecord {
            id: format!("k-{}", &sha[..8]),
            client: client.to_string(),
            sha256: sha,
            issued_at: now,
            issued_by: operator.to_string(),
            expires_at: now + policy.lifetime,
            revoked_at: None,
            revoked_reason: None,
            last_used: None,
        };
        let overlap_end = now + policy.overlap;
        let shortened = self.update(|keys| {
            let mut shortened = Vec::new();
            for k in keys.iter_mut() {
                if k.client == client
                    && k.state(now) == KeyState::Active
                    && k.expires_at > overlap_end
                {
                    k.expires_at = overlap_end;
                    shortened.push(k.clone());
                }
            }
            keys.push(record.clone());
            Ok(shortened)
        })?;
        Ok((key, record, shortened))
    }

    /// Revokes the key with id `id` at once.
    pub fn revoke(&self, id: &str, reason: &str, now: Timestamp) -> Result<KeyRecord, KeyError> {
        self.update(|keys| {
            let k = keys
                .iter_mut()
                .find(|k| k.id == id)
                .ok_or_else(|| KeyError::NoSuchKey { id: id.into() })?;
            if k.revoked_at.is_some() {
                return Err(KeyError::AlreadyRevoked { id: id.into() });
            }
            k.revoked_at = Some(now);
            k.revoked_reason = Some(reason.to_string());
            Ok(k.clone())
        })
    }

    /// Records when keys were last used (the gateway flushes this now and
    /// then, not on every request).
    pub fn record_use(&self, last_used: &HashMap<String, Timestamp>) -> Result<(), KeyError> {
        if last_used.is_empty() {
            return Ok(());
        }
        self.update(|keys| {
            for k in keys.iter_mut() {
                if let Some(t) = last_used.get(&k.id) {
                    k.last_used = Some(k.last_used.map_or(*t, |old| old.max(*t)));
                }
            }
            Ok(())
        })
    }

    /// The keys as the gateway looks them up.
    pub fn ring(&self) -> Result<KeyRing, KeyError> {
        let mut by_digest = HashMap::new();
        for k in self.list()? {
            let Ok(bytes) = hex::decode(&k.sha256) else {
                return Err(KeyError::Corrupt {
                    path: self.path().to_path_buf(),
                    detail: format!("key `{}` has a bad digest", k.id),
                });
            };
            let Ok(d) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                return Err(KeyError::Corrupt {
                    path: self.path().to_path_buf(),
                    detail: format!("key `{}` has a bad digest", k.id),
                });
            };
            by_digest.insert(d, std::sync::Arc::new(k));
        }
        Ok(KeyRing { by_digest })
    }
}

/// Presented key → record, for the gateway.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    /// Shared, so a request takes its key's record without copying it.
    by_digest: HashMap<[u8; 32], std::sync::Arc<KeyRecord>>,
}

/// The verdict on a presented key.
///
/// Every verdict but `Valid` gets the client REDCap's own answer to a bad
/// token (403, [`NO_API_PERMISSION`](crate::reply::NO_API_PERMISSION)),
/// so a client cannot tell an expired key from an unknown one; the
/// ledger's `denied` entries (counted per source and minute) record
/// which it was.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// An active key: the request goes on to the client's policy.
    Valid(&'a std::sync::Arc<KeyRecord>),
    /// A key past its expiry.
    Expired(&'a std::sync::Arc<KeyRecord>),
    /// A revoked key.
    Revoked(&'a std::sync::Arc<KeyRecord>),
    /// No key with this digest: a typo, a key from another installation,
    /// or a real REDCap token (which the gateway alerts on).
    Unknown,
}

impl KeyRing {
    /// Looks a presented key up by its digest and confirms the match in
    /// constant time. Keys carry 128 random bits, so the map lookup's
    /// timing reveals nothing usable about any key.
    pub fn check(&self, presented: &str, now: Timestamp) -> Presented<'_> {
        let d = digest(presented);
        match self.by_digest.get_key_value(&d) {
            Some((stored, record)) if bool::from(stored.ct_eq(&d)) => match record.state(now) {
                KeyState::Active => Presented::Valid(record),
                KeyState::Expired => Presented::Expired(record),
                KeyState::Revoked => Presented::Revoked(record),
            },
            _ => Presented::Unknown,
        }
    }

    /// How many keys the ring holds, in any state.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether the ring holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            lifetime: SignedDuration::from_hours(24 * 90),
            overlap: SignedDuration::from_hours(24 * 7),
        }
    }

    fn file() -> (tempfile::TempDir, KeyFile) {
        let dir = tempfile::tempdir().unwrap();
        let f = KeyFile::new(&dir.path().join("client-keys.json"));
        (dir, f)
    }

    #[test]
    fn keys_look_like_redcap_tokens_and_only_their_hash_is_kept() {
        let (dir, f) = file();
        let now = Timestamp::now();
        let (key, record, _) = f.issue("etl", "alice", policy(), now).unwrap();
        let k = key.expose();
        assert_eq!(k.len(), 32);
        assert!(
            k.chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        );
        assert_eq!(format!("{key:?}"), "ClientKey(<redacted>)");
        let stored = std::fs::read_to_string(dir.path().join("client-keys.json")).unwrap();
        assert!(!stored.contains(k) && !stored.contains(&k.to_lowercase()));
        assert!(stored.contains(&record.sha256));
        assert_eq!(record.expires_at, now + policy().lifetime);
    }

    #[test]
    fn the_ring_accepts_valid_keys_and_names_why_others_fail() {
        let (_dir, f) = file();
        let now = Timestamp::now();
        let (a, ra, _) = f.issue("etl", "alice", policy(), now).unwrap();
        let (b, rb, _) = f.issue("ui", "alice", policy(), now).unwrap();
        f.revoke(&rb.id, "leaked", now).unwrap();
        let ring = f.ring().unwrap();
        assert_eq!(
            ring.check(a.expose(), now),
            Presented::Valid(&std::sync::Arc::new(ra.clone()))
        );
        assert!(matches!(ring.check(b.expose(), now), Presented::Revoked(_)));
        assert!(matches!(
            ring.check(a.expose(), ra.expires_at),
            Presented::Expired(_)
        ));
        assert_eq!(
            ring.check("0123456789ABCDEF0123456789ABCDEF", now),
            Presented::Unknown
        );
        assert_eq!(
            ring.check(&a.expose().to_lowercase(), now),
            Presented::Unknown,
            "keys are exact"
        );
        assert!(matches!(
            f.revoke(&rb.id, "again", now),
            Err(KeyError::AlreadyRevoked { .. })
        ));
        assert!(matches!(
            f.revoke("k-nope", "x", now),
            Err(KeyError::NoSuchKey { .. })
        ));
    }

    #[test]
    fn reissuing_keeps_the_old_key_working_only_through_the_overlap() {
        let (_dir, f) = file();
        let t0 = Timestamp::now();
        let (old, _, _) = f.issue("etl", "alice", policy(), t0).unwrap();
        let t1 = t0 + SignedDuration::from_hours(24 * 30);
        let (new, _, shortened) = f.issue("etl", "alice", policy(), t1).unwrap();
        assert_eq!(shortened.len(), 1);
        let ring = f.ring().unwrap();
        assert!(
            matches!(ring.check(old.expose(), t1), Presented::Valid(_)),
            "both work during the overlap"
        );
        assert!(matches!(ring.check(new.expose(), t1), Presented::Valid(_)));
        let after = t1 + policy().overlap;
        assert!(matches!(
            ring.check(old.expose(), after),
            Presented::Expired(_)
        ));
        assert!(matches!(
            ring.check(new.expose(), after),
            Presented::Valid(_)
        ));
    }

    #[test]
    fn last_use_is_recorded_and_a_damaged_file_is_reported() {
        let (dir, f) = file();
        let now = Timestamp::now();
        let (_, r, _) = f.issue("etl", "alice", policy(), now).unwrap();
        f.record_use(&HashMap::from([(r.id.clone(), now)])).unwrap();
        assert_eq!(f.list().unwrap()[0].last_used, Some(now));
        std::fs::write(dir.path().join("client-keys.json"), "{").unwrap();
        let e = f.list().unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("fix:"), "{e}");
    }
}
