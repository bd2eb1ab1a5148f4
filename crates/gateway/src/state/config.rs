//! The configuration in force, and what the request path reads from it.

use std::sync::{Arc, RwLock};

use warden_config::LoadedConfig;

use crate::paths;
use crate::policy::Policy;

/// The configuration in force and the policy compiled from it; both are
/// replaced together by a reload.
pub(crate) struct Applied {
    pub config: LoadedConfig,
    pub policy: Policy,
}

impl Applied {
    pub(crate) fn new(config: LoadedConfig) -> Applied {
        Applied {
            policy: Policy::from_config(&config.config),
            config,
        }
    }
}

/// Lock story: one `RwLock` over an `Arc`; written by `/admin/reload`,
/// read (the `Arc` cloned, the lock released at once) by every request,
/// which then works on one configuration from start to end.
pub(crate) struct InForce(RwLock<Arc<Applied>>);

impl InForce {
    pub(crate) fn new(config: LoadedConfig) -> InForce {
        InForce(RwLock::new(Arc::new(Applied::new(config))))
    }

    pub(crate) fn get(&self) -> Arc<Applied> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn replace(&self, config: LoadedConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Applied::new(config));
    }
}

/// Keeps the configuration text just applied, to diff against at the next
/// start.
pub(crate) fn remember_applied(config: &LoadedConfig) -> std::io::Result<()> {
    durable::atomic_replace(
        &durable::OsFs,
        &paths::applied_copy(config),
        config.text.as_bytes(),
    )
}

/// The reason of the start entry: the file's hash and what changed since
/// the configuration the gateway last ran with.
pub(crate) fn config_change_reason(config: &LoadedConfig) -> String {
    let changes = match std::fs::read_to_string(paths::applied_copy(config)) {
        Ok(previous) => {
            let d = warden_config::field_diff(&previous, &config.text);
            if d.is_empty() {
                "no changes since the last start".to_string()
            } else {
                format!("changes since the last start: {}", d.join("; "))
            }
        }
        Err(_) => "first start with this data directory".to_string(),
    };
    let _ = remember_applied(config);
    format!("warden.toml sha256 {}; {changes}", config.sha256)
}
