//! Shell completions, generated from the same definitions as `--help`.

use clap::CommandFactory;

use crate::Outcome;
use crate::args::Args;

pub fn print(shell: clap_complete::Shell) -> anyhow::Result<Outcome> {
    clap_complete::generate(
        shell,
        &mut Args::command(),
        "redcap-warden",
        &mut std::io::stdout(),
    );
    Ok(Outcome::Clean)
}
