//! `config check`: is warden.toml sound?

use serde_json::json;

use warden_config::LoadError;

use crate::Outcome;
use crate::args::Args;

/// Validates the file and lists every problem with its place and its fix.
/// Problems in the file are findings (exit 1); a file that cannot be read at
/// all is an error (exit 2).
pub fn check(args: &Args) -> anyhow::Result<Outcome> {
    match warden_config::load(&args.config) {
        Ok(loaded) => {
            if args.json {
                println!(
                    "{}",
                    json!({"file": loaded.path, "ok": true, "sha256": loaded.sha256, "problems": []})
                );
            } else {
                println!("{}: ok (sha256 {})", loaded.path.display(), loaded.sha256);
            }
            Ok(Outcome::Clean)
        }
        Err(e @ LoadError::Unreadable { .. }) => Err(e.into()),
        Err(LoadError::Invalid(e)) => {
            if args.json {
                println!(
                    "{}",
                    json!({"file": e.path, "ok": false, "problems": e.problems})
                );
            } else {
                println!("{e}");
            }
            Ok(Outcome::Findings)
        }
    }
}
