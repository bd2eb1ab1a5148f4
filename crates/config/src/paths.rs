//! `[paths]`: the data directory every file of redcap-warden's own lives
//! in unless the configuration names another place for it — the secrets
//! store and its identity, the ledger, the client keys, the account
//! status, the gateway's admin credential, run marker and upload spool.
//!
//! Before there was a `[paths]` table, each of those files had a default
//! under `data/` beside `warden.toml`; that is the default of `data_dir`,
//! so a file written before keeps meaning what it meant.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[paths]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    /// The data directory, relative to `warden.toml`'s directory or
    /// absolute; `data` by default.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

impl Default for PathsSection {
    fn default() -> Self {
        PathsSection {
            data_dir: default_data_dir(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    "data".into()
}

/// A file left out of the configuration (still empty: the walk refuses an
/// empty path, so empty can only mean "not given") becomes `name` in the
/// data directory.
pub(crate) fn derive(path: &mut PathBuf, data_dir: &Path, name: &str) {
    if path.as_os_str().is_empty() {
        *path = data_dir.join(name);
    }
}
