//! Every flag and command, defined once with its help text; completions are
//! generated from these same definitions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Governs REDCap API tokens for clinical research under GCP: least-privilege
/// rights, tokens kept in a secrets store, SOP-driven rotation, and a
/// tamper-evident ledger of every API call.
///
/// Exit codes: 0 all well, 1 findings, 2 error.
#[derive(Debug, Parser)]
#[command(name = "redcap-warden", version, about, long_about)]
pub struct Args {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        default_value = "warden.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,

    /// Print data as JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// A name to record beside your OS login for state-changing commands.
    /// It is added to the login, never substituted for it.
    #[arg(long, global = true, value_name = "NAME")]
    pub operator: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with warden.toml.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Print a shell completion script to standard output.
    Completions {
        /// The shell to write completions for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file: exit 0 if it is sound, 1 listing
    /// every problem with its line, field and fix, 2 if it cannot be read.
    Check,
}
