//! One module per command; `run` dispatches.

mod completions;
mod config;

use crate::Outcome;
use crate::args::{Args, Command, ConfigCommand};

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        Command::Config(ConfigCommand::Check) => config::check(args),
        Command::Completions { shell } => completions::print(*shell),
    }
}
