//! One module per command; `run` dispatches.

mod accounts;
mod completions;
mod config;
mod init;
mod keys;
mod ledger;
mod ledger_export;
mod quickstart;
mod reauth;
mod reconcile;
mod report;
mod review;
mod rights;
mod rotate;
mod secrets;
mod serve;
mod sites;
mod sop;
mod tour;
mod trace;
mod validation_pack;

use crate::Outcome;
use crate::args::{
    AccountsCommand, Args, Command, ConfigCommand, KeysCommand, LedgerCommand, ProveCommand,
    RightsCommand, RotateCommand, SecretsCommand,
};
use crate::args::{ReauthArgs, ReauthCommand, ReviewCommand};

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    match &args.command {
        Command::Init {
            redcap_url,
            time_zone,
            passphrase,
            postgres_url_file,
            postgres_schema,
        } => init::run(
            args,
            redcap_url,
            time_zone.as_deref(),
            *passphrase,
            init::LedgerChoice::from_flags(
                postgres_url_file.as_deref(),
                postgres_schema.as_deref(),
            )?,
        ),
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
            SecretsCommand::Migrate { to, reason } => secrets::migrate(args, to, reason),
            SecretsCommand::Passphrase { reason, remove } => {
                secrets::passphrase(args, reason, *remove)
            }
        },
        Command::Serve => serve::run(args),
        Command::Reload => serve::reload(args),
        Command::Quickstart {
            dir,
            sandbox_listen,
            listen,
            admin_listen,
            tour,
        } => quickstart::run(
            args,
            dir.as_deref(),
            quickstart::Listen::chosen(*sandbox_listen, *listen, *admin_listen, *tour)?,
            *tour,
        ),
        Command::Accounts(AccountsCommand::List) => accounts::list(args),
        Command::Accounts(AccountsCommand::Release { account, reason }) => {
            accounts::release(args, account, reason)
        }
        Command::Accounts(AccountsCommand::Enroll {
            account,
            reason,
            issuer,
        }) => accounts::enroll(args, account, reason, *issuer),
        Command::Accounts(AccountsCommand::Retire {
            account,
            reason,
            issuer,
        }) => accounts::retire(args, account, reason, *issuer),
        Command::Keys(cmd) => match cmd {
            KeysCommand::Issue {
                client,
                to_store,
                to_file,
                reason,
            } => keys::issue(
                args,
                client,
                to_store.as_deref(),
                to_file.as_deref(),
                reason,
            ),
            KeysCommand::List => keys::list(args),
            KeysCommand::Revoke { id, reason } => keys::revoke(args, id, reason),
        },
        Command::Ledger(cmd) => match cmd {
            LedgerCommand::Verify {
                from_export: true,
                key,
                bucket,
                prefix,
                ..
            } => ledger_export::verify_from_export(
                args,
                key.as_deref(),
                bucket.as_deref(),
                prefix.as_deref(),
            ),
            LedgerCommand::Verify {
                key,
                trusted_checkpoint,
                ..
            } => ledger::verify(args, key.as_deref(), trusted_checkpoint.as_deref()),
            LedgerCommand::Export { reason } => ledger_export::export(args, reason),
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
            LedgerCommand::AdoptUnsigned { reason } => ledger::adopt_unsigned(args, reason),
            LedgerCommand::RotateKey { reason } => ledger::rotate_key(args, reason),
        },
        Command::Rights(RightsCommand::Check { study, account }) => {
            rights::check(args, study.as_deref(), account.as_deref())
        }
        Command::Rights(RightsCommand::Plan { study, account }) => {
            rights::plan(args, study.as_deref(), account.as_deref())
        }
        Command::Rights(RightsCommand::Apply {
            reason,
            study,
            account,
        }) => rights::apply(args, reason, study.as_deref(), account.as_deref()),
        Command::Sites { study } => sites::run(args, study.as_deref()),
        Command::Sop { out, check } => sop::run(args, out.as_deref(), check.as_deref()),
        Command::ValidationPack {
            out,
            junit,
            run,
            requirements,
        } => validation_pack::run(args, out, junit.as_deref(), *run, requirements.as_deref()),
        Command::Rotate(cmd) => match cmd {
            RotateCommand::Status => rotate::status(args),
            RotateCommand::Start {
                account,
                reason,
                issuer,
                emergency,
            } => rotate::start(args, account, reason, *issuer, false, *emergency),
            RotateCommand::Run {
                account,
                reason,
                issuer,
            } => rotate::start(args, account, reason, *issuer, true, false),
            RotateCommand::Resume { id, issuer } => rotate::resume(args, id, *issuer),
            RotateCommand::Abort { id, reason } => rotate::abort(args, id, reason),
        },
        Command::Reconcile {
            since,
            until,
            study,
        } => reconcile::run(args, since, until.as_deref(), study.as_deref()),
        Command::Trace {
            record,
            study,
            since,
        } => trace::run(args, record, study.as_deref(), since.as_deref()),
        Command::Review(cmd) => match cmd {
            ReviewCommand::Statement { period, note } => review::statement(args, period, note),
            ReviewCommand::Sign {
                period,
                signature,
                statement,
            } => review::sign(args, period, signature, statement.as_deref()),
            ReviewCommand::List => review::list(args),
        },
        Command::Reauth(ReauthArgs {
            command: Some(cmd), ..
        }) => match cmd {
            ReauthCommand::Statement { account, reason } => {
                reauth::statement(args, account, reason.as_deref())
            }
            ReauthCommand::Sweep => reauth::sweep(args),
            ReauthCommand::Status => reauth::status(args),
        },
        Command::Reauth(ReauthArgs {
            command: None,
            account: Some(account),
            reason: Some(reason),
            signature: Some(signature),
            statement,
        }) => reauth::approve(args, account, reason, signature, statement.as_deref()),
        Command::Reauth(_) => {
            anyhow::bail!("reauth needs ACCOUNT, --reason and --signature (see reauth --help)")
        }
        Command::Report { out, pdf } => report::run(args, out, *pdf),
        Command::Completions { shell } => completions::print(*shell),
    }
}

/// The runtime for commands that talk to stores and servers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A `--reason` as recorded: trimmed, and never empty.
fn reason(raw: &str) -> anyhow::Result<String> {
    let r = raw.trim();
    if r.is_empty() {
        anyhow::bail!("--reason is empty; say why (it is recorded in the ledger with your login)");
    }
    Ok(r.to_string())
}

/// `2026-11-28T10:00:00.123456789Z` → `2026-11-28 10:00:00`.
fn short_time(ts: &str) -> String {
    ts.get(..19)
        .map(|s| s.replace('T', " "))
        .unwrap_or_else(|| ts.to_string())
}
