//! One module per command; `run` dispatches.

mod completions;
mod config;
mod init;
mod ledger;
mod secrets;

use crate::Outcome;
use crate::args::{Args, Command, ConfigCommand, LedgerCommand, ProveCommand, SecretsCommand};

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        Command::Init {
            redcap_url,
            time_zone,
        } => init::run(args, redcap_url, time_zone.as_deref()),
        Command::Config(ConfigCommand::Check) => config::check(args),
        Command::Secrets(cmd) => match cmd {
            SecretsCommand::Put {
                name,
                reason,
                label,
            } => secrets::put(args, name, reason, label),
            SecretsCommand::List => secrets::list(args),
            SecretsCommand::History { name } => secrets::history(args, name),
            SecretsCommand::Check => secrets::check(args),
        },
        Command::Ledger(cmd) => match cmd {
            LedgerCommand::Verify {
                key,
                trusted_checkpoint,
            } => ledger::verify(args, key.as_deref(), trusted_checkpoint.as_deref()),
            LedgerCommand::PublicKey => ledger::public_key(args),
            LedgerCommand::Tail { count } => ledger::tail(args, *count),
            LedgerCommand::Show { seq } => ledger::show(args, *seq),
            LedgerCommand::Prove(ProveCommand::Inclusion { seq, size }) => {
                ledger::prove_inclusion(args, *seq, *size)
            }
            LedgerCommand::Prove(ProveCommand::Consistency { old, new }) => {
                ledger::prove_consistency(args, *old, *new)
            }
            LedgerCommand::Checkpoint => ledger::checkpoint(args),
        },
        Command::Completions { shell } => completions::print(*shell),
    }
}

/// The runtime for commands that talk to stores and servers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
