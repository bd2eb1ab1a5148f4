//! Issuing a client key: the one way it is done, by `redcap-warden keys
//! issue` and by `POST /admin/keys/issue` alike.
//!
//! The key is generated, its hash written to the key file, and the key
//! itself delivered straight into a secrets store or a new 0600 file —
//! never to a terminal or an HTTP answer. If delivery fails the key is
//! revoked at once (a key nobody received must not work). Then the `key`
//! entry is recorded, naming who, why and where it went.

use std::future::Future;
use std::path::PathBuf;

use jiff::Timestamp;
use ledger::EntryKind;
use secrets::{Label, SecretName, SecretStore, SecretValue, VersionMeta};

use super::{KeyError, KeyFile, KeyPolicy, KeyRecord, write_new_key_file};

/// Where a newly issued key goes.
#[derive(Debug, Clone)]
pub enum KeyDestination {
    /// A new current version of this secret.
    Store(SecretName),
    /// A new file (mode 0600); an existing file is never overwritten.
    File(PathBuf),
}

/// What to issue, for whom, and on whose word.
pub struct KeyOrder<'a> {
    /// The `[[client]]` the key is for.
    pub client: &'a str,
    /// Where the key goes.
    pub destination: &'a KeyDestination,
    /// Who is recorded as issuing it.
    pub operator: &'a str,
    /// Why (recorded in the entry and the secret's version).
    pub reason: &'a str,
    /// Its lifetime, and the overlap left to the client's older keys.
    pub policy: KeyPolicy,
}

/// A key issued and delivered.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The new key's record (its id, expiry; never the key).
    pub record: KeyRecord,
    /// The client's older keys, shortened to the overlap window.
    pub shortened: Vec<KeyRecord>,
    /// Where the key went, in words (`secret `x` version 3`, a path).
    pub delivered_to: String,
}

/// Why a key was not issued, or issued without its entry.
#[derive(Debug, thiserror::Error)]
pub enum IssueError<E: std::fmt::Display> {
    /// The key file could not be changed: nothing was issued.
    #[error("{0}")]
    Keys(#[from] KeyError),
    /// Delivery failed: the key was revoked at once.
    #[error("delivering key {id} failed ({cause}); it was revoked at once")]
    NotDelivered {
        /// The key's id.
        id: String,
        /// Why delivery failed.
        cause: String,
    },
    /// Delivery failed and so did revoking the key.
    #[error(
        "delivering key {id} failed ({cause}), and revoking it failed too ({revoke}); fix: revoke it with `redcap-warden keys revoke {id}`"
    )]
    NotRevoked {
        /// The key's id.
        id: String,
        /// Why delivery failed.
        cause: String,
        /// Why revoking failed.
        revoke: KeyError,
    },
    /// The key was issued and delivered, but its `key` entry could not be
    /// recorded.
    #[error(
        "key {} was issued and delivered to {}, but its ledger entry could not be written: {error}",
        issued.record.id,
        issued.delivered_to
    )]
    Unrecorded {
        /// The key issued.
        issued: Box<IssuedKey>,
        /// The ledger's error.
        error: E,
    },
}

/// Issues a key, delivers it, and records its `key` entry through
/// `record` (the caller's way into the ledger).
pub async fn issue_and_deliver<E, F, Fut>(
    keys: &KeyFile,
    store: &dyn SecretStore,
    order: &KeyOrder<'_>,
    record: F,
) -> Result<IssuedKey, IssueError<E>>
where
    E: std::fmt::Display,
    F: FnOnce(EntryKind) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let now = Timestamp::now();
    let (key, issued, shortened) = keys.issue(order.client, order.operator, order.policy, now)?;
    let delivered = match order.destination {
        KeyDestination::Store(name) => {
            let meta = VersionMeta {
                operator: order.operator.to_string(),
                at: now,
                reason: format!(
                    "client key {} for `{}`: {}",
                    issued.id, order.client, order.reason
                ),
                fingerprint: None,
                rotation_id: None,
            };
            let value = SecretValue::new(key.expose().to_string());
            store
                .put(name, value, meta, Label::Current)
                .await
                .map(|v| format!("secret `{name}` version {v}"))
                .map_err(|e| e.to_string())
        }
        KeyDestination::File(path) => write_new_key_file(path, &key)
            .map(|()| format!("{} (mode 0600)", path.display()))
            .map_err(|e| format!("creating {}: {e}", path.display())),
    };
    drop(key);
    let delivered_to = match delivered {
        Ok(d) => d,
        Err(cause) => {
            // A key nobody received must not work.
            let id = issued.id.clone();
            return Err(match keys.revoke(&id, "not delivered", Timestamp::now()) {
                Ok(_) => IssueError::NotDelivered { id, cause },
                Err(revoke) => IssueError::NotRevoked { id, cause, revoke },
            });
        }
    };
    let entry = EntryKind::Key {
        operator: order.operator.to_string(),
        action: "issue".into(),
        key_name: format!("client:{}/{}", order.client, issued.id),
        verifier_key: None,
        reason: format!(
            "{} (delivered to {delivered_to}; expires {})",
            order.reason, issued.expires_at
        ),
    };
    let issued = IssuedKey {
        record: issued,
        shortened,
        delivered_to,
    };
    match record(entry).await {
        Ok(()) => Ok(issued),
        Err(error) => Err(IssueError::Unrecorded {
            issued: Box::new(issued),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            lifetime: jiff::SignedDuration::from_hours(24),
            overlap: jiff::SignedDuration::from_hours(1),
        }
    }

    fn store(dir: &std::path::Path) -> secrets::FileStore {
        let opts = secrets::FileStoreOptions {
            path: dir.join("secrets.age"),
            identity: dir.join("identity.txt"),
            keep_versions: 10,
        };
        secrets::file::write_identity_file(&opts.identity, &secrets::file::generate_identity())
            .unwrap();
        secrets::FileStore::create(opts).unwrap()
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_delivered_is_revoked_and_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyFile::new(&dir.path().join("keys.json"));
        let taken = dir.path().join("taken");
        std::fs::write(&taken, "someone else's").unwrap();
        let destination = KeyDestination::File(taken);
        let order = KeyOrder {
            client: "etl",
            destination: &destination,
            operator: "alice",
            reason: "new deployment",
            policy: policy(),
        };
        let recorded = Mutex::new(Vec::new());
        let e = issue_and_deliver(&keys, &store(dir.path()), &order, |entry| {
            recorded.lock().unwrap().push(entry);
            std::future::ready(Ok::<(), String>(()))
        })
        .await
        .unwrap_err();
        assert!(matches!(e, IssueError::NotDelivered { .. }), "{e}");
        assert!(e.to_string().contains("revoked at once"), "{e}");
        assert!(recorded.lock().unwrap().is_empty());
        let listed = keys.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].revoked_at.is_some(), "a key nobody received");
    }

    #[tokio::test]
    async fn a_delivered_key_is_recorded_with_where_it_went() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyFile::new(&dir.path().join("keys.json"));
        let path = dir.path().join("etl.key");
        let destination = KeyDestination::File(path.clone());
        let order = KeyOrder {
            client: "etl",
            destination: &destination,
            operator: "alice",
            reason: "new deployment",
            policy: policy(),
        };
        let recorded = Mutex::new(Vec::new());
        let issued = issue_and_deliver(&keys, &store(dir.path()), &order, |entry| {
            recorded.lock().unwrap().push(entry);
            std::future::ready(Ok::<(), String>(()))
        })
        .await
        .unwrap();
        let key = std::fs::read_to_string(&path).unwrap();
        assert_eq!(key.trim().len(), 32);
        let recorded = recorded.into_inner().unwrap();
        let [
            EntryKind::Key {
                operator,
                action,
                key_name,
                reason,
                ..
            },
        ] = recorded.as_slice()
        else {
            panic!("one key entry: {recorded:?}")
        };
        assert_eq!((operator.as_str(), action.as_str()), ("alice", "issue"));
        assert_eq!(key_name, &format!("client:etl/{}", issued.record.id));
        assert!(
            reason.starts_with("new deployment (delivered to "),
            "{reason}"
        );
        assert!(!reason.contains(key.trim()), "the key is never recorded");
    }
}
