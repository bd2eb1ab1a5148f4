//! Where the gateway keeps its files. Every path the gateway derives
//! comes from here: one data directory ([`data_dir`]) for the upload
//! spool, the run marker and the copy of the applied configuration; the
//! key, account-status and admin-credential files from their own
//! `[gateway]` settings.

use std::path::PathBuf;

use warden_config::LoadedConfig;

/// The gateway's data directory: `[paths] data_dir`.
pub fn data_dir(config: &LoadedConfig) -> PathBuf {
    config.data_dir()
}

/// The upload spool: uploads wait here, after the key is accepted, until
/// they are forwarded.
pub fn spool_dir(config: &LoadedConfig) -> PathBuf {
    data_dir(config).join("spool")
}

/// The name of the marker a running gateway leaves in its data directory
/// (`crate::restart`).
pub const RUN_MARKER: &str = "gateway.running";

/// The marker a running gateway leaves.
pub fn run_marker(config: &LoadedConfig) -> PathBuf {
    data_dir(config).join(RUN_MARKER)
}

/// The copy of the configuration the gateway last ran with, to diff
/// against at the next start.
pub fn applied_copy(config: &LoadedConfig) -> PathBuf {
    data_dir(config).join("gateway-applied.toml")
}

/// The client keys file (`[gateway] keys_file`).
pub fn keys_file(config: &LoadedConfig) -> PathBuf {
    config.resolve(&config.config.gateway.keys_file)
}

/// The account status file (`[gateway] accounts_file`): quarantines.
pub fn status_file(config: &LoadedConfig) -> PathBuf {
    config.resolve(&config.config.gateway.accounts_file)
}

/// The admin listener's credential (`[gateway] admin_token_file`).
pub fn admin_token_file(config: &LoadedConfig) -> PathBuf {
    config.resolve(&config.config.gateway.admin_token_file)
}
