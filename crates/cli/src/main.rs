//! `redcap-warden`: the command line. Thin by design: it parses arguments,
//! calls one function per command in `commands/`, and turns the outcome into
//! an exit code: 0 all well, 1 findings (the command ran and found problems),
//! 2 error (the command could not do its job).

mod args;
mod commands;
mod notify;
mod operator;
mod store;

use std::process::ExitCode;

use clap::Parser;

/// What a command concluded, as opposed to failing to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    Findings,
}

fn main() -> ExitCode {
    let args = args::Args::parse();
    match commands::run(&args) {
        Ok(Outcome::Clean) => ExitCode::from(0),
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("redcap-warden: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
