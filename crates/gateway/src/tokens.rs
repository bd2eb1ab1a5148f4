//! The accounts' REDCap tokens, read from the secrets store and kept for a
//! bounded time. A token is never guessed: when the store cannot be read
//! and the cached copy is older than its lifetime, the request fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrets::{Label, Result, SecretName, SecretStore, SecretValue, Selector, VersionId};

/// A token and the store version it came from.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The token itself; it goes only into the forwarded body.
    pub value: SecretValue,
    /// The store version it is (a different one after a refresh means the
    /// token was rotated).
    pub version: VersionId,
    /// When this version was written to the store (its age is a metric).
    pub written_at: jiff::Timestamp,
}

/// The tokens last read per account secret, each used for
/// `[gateway] token_cache_seconds` before the store is asked again.
pub struct TokenCache {
    store: Arc<dyn SecretStore>,
    ttl: Duration,
    entries: Mutex<HashMap<SecretName, (CachedToken, Instant)>>,
}

impl TokenCache {
    /// An empty cache over `store`, keeping each token for `ttl`.
    pub fn new(store: Arc<dyn SecretStore>, ttl: Duration) -> TokenCache {
        TokenCache {
            store,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The current token, from the cache while it is younger than the TTL.
    pub async fn get(&self, name: &SecretName) -> Result<CachedToken> {
        Ok(self.get_noting(name).await?.0)
    }

    /// [`TokenCache::get`], and whether the store was read for it (so a
    /// caller can tell that the store answered, not only the cache).
    pub async fn get_noting(&self, name: &SecretName) -> Result<(CachedToken, bool)> {
        if let Some((t, at)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            && at.elapsed() < self.ttl
        {
            return Ok((t.clone(), false));
        }
        Ok((self.refresh(name).await?, true))
    }

    /// Reads the store's current token now (after REDCap refused the cached
    /// one, or on reload).
    pub async fn refresh(&self, name: &SecretName) -> Result<CachedToken> {
        let secret = self
            .store
            .get(name, &Selector::Label(Label::Current))
            .await?;
        let token = CachedToken {
            value: secret.value,
            version: secret.version,
            written_at: secret.meta.at,
        };
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), (token.clone(), Instant::now()));
        Ok(token)
    }

    /// When each cached token was written, by secret name.
    pub fn written_at(&self) -> Vec<(SecretName, jiff::Timestamp)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .map(|(n, (t, _))| (n.clone(), t.written_at))
            .collect()
    }

    /// Forgets every cached token (admin reload).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The secrets store the tokens come from.
    pub fn store(&self) -> &Arc<dyn SecretStore> {
        &self.store
    }
}
