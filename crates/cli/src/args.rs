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

    /// How `serve` writes its log lines to stderr: `text`, or `json` (one
    /// JSON object a line, for journald or a log shipper).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// A name to record beside your OS login for state-changing commands.
    /// It is added to the login, never substituted for it.
    #[arg(long, global = true, value_name = "NAME")]
    pub operator: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up a new installation in an empty directory: a commented
    /// warden.toml (at --config) and a data directory beside it holding the
    /// encrypted secrets store, its identity, and the fingerprint key.
    /// Refuses to touch an existing setup.
    Init {
        /// REDCap's API endpoint, ending in /api/.
        #[arg(long, value_name = "URL")]
        redcap_url: String,
        /// IANA name of the REDCap server's time zone [default: this machine's].
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
        /// Protect the store's identity with a passphrase: asked twice
        /// without echo on a terminal, otherwise read from the first line
        /// of standard input. Never on the command line.
        #[arg(long)]
        passphrase: bool,
        /// Start the ledger (and the state several gateways share) straight
        /// in PostgreSQL: a file, mode 0600, holding the connection string
        /// (`postgresql://warden:PASSWORD@db.example.org/warden`). Written
        /// to warden.toml as `[ledger.postgres] url_file`.
        #[arg(long, value_name = "FILE")]
        postgres_url_file: Option<PathBuf>,
        /// The PostgreSQL schema the ledger's tables go in (one ledger per
        /// schema) [default: redcap_warden].
        #[arg(long, value_name = "NAME", requires = "postgres_url_file")]
        postgres_schema: Option<String>,
    },

    /// Store, list and inspect secrets. No command ever prints a value.
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// Work with warden.toml.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Run the gateway: applications call it with REDCap's protocol and a
    /// client key; it enforces each client's policy, records every call in
    /// the ledger and forwards with the account's real token. Stops
    /// gracefully on Ctrl-C or SIGTERM.
    Serve,

    /// Tell the running gateway to re-read warden.toml, the client keys and
    /// account status, and to forget cached tokens. Prints what changed;
    /// the gateway records it in the ledger.
    Reload,

    /// Try everything on this machine with nothing installed: starts
    /// redcap-sandbox (a REDCap API emulator) and the gateway, seeds a
    /// three-site study with least-privilege site accounts, tokens in the
    /// encrypted store and client keys in 0600 files, prints a PyCap
    /// snippet, and serves until Ctrl-C. Run again in the same directory to
    /// resume. With --tour: a scripted run in a new directory that shows
    /// each part working and exits (0 when everything showed what it
    /// should).
    Quickstart {
        /// Where everything is kept [default: warden-quickstart, or
        /// warden-tour with --tour].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Address of redcap-sandbox [default: 127.0.0.1:8480; with
        /// --tour a free port].
        #[arg(long, value_name = "ADDR")]
        sandbox_listen: Option<std::net::SocketAddr>,
        /// Address of the gateway (first run only; later runs read
        /// warden.toml) [default: 127.0.0.1:8470; with --tour a free port].
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Address of the gateway's admin listener (first run only)
        /// [default: 127.0.0.1:8471; with --tour a free port].
        #[arg(long, value_name = "ADDR")]
        admin_listen: Option<std::net::SocketAddr>,
        /// Run the scripted tour: three sites, calls through the gateway, a
        /// denied call, a rotation, an export made straight against REDCap
        /// with a site's token (the bypass), `ledger verify`, `reconcile`
        /// (which finds the bypass and nothing else) and `trace`, printing
        /// what each showed; then stop. Needs a new directory.
        #[arg(long)]
        tour: bool,
    },

    /// The service accounts of warden.toml and their status; release an
    /// account the gateway quarantined; enrol an account (its profile, then
    /// its first token) or retire one (its keys, token and secret).
    #[command(subcommand)]
    Accounts(AccountsCommand),

    /// Issue, list and revoke the client keys applications use with the
    /// gateway in place of a REDCap token.
    #[command(subcommand)]
    Keys(KeysCommand),

    /// Verify, prove from and inspect the audit ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),

    /// Compare the REDCap rights of the governed accounts with their
    /// profiles, and bring them back within (plan, apply).
    #[command(subcommand)]
    Rights(RightsCommand),

    /// Show each site with its DAG (id, the name warden.toml confirms, the
    /// name REDCap gives it now), its accounts, their token fingerprints
    /// and status, and their gateway clients. Exit 1 when a site's DAG is
    /// gone or renamed or an account is not active.
    Sites {
        /// Only this study.
        #[arg(long, value_name = "STUDY")]
        study: Option<String>,
    },

    /// Rotate service-account tokens: a resumable procedure around REDCap's
    /// manual regenerate step (docs/rotation.md).
    #[command(subcommand)]
    Rotate(RotateCommand),
    /// Pair REDCap's own log (Export Logging, read through each study's
    /// log reader) with the ledger over a window: a governed account's
    /// REDCap activity with no forwarded request beside it (its token used
    /// outside the gateway), UI or API Playground use by API-only
    /// accounts, token regenerations, deletions and views, changes to
    /// users, roles or DAGs, and writes REDCap never logged. Exit 0 clean,
    /// 1 findings, 2 error; each study's run is a `reconcile` ledger entry.
    Reconcile {
        /// Start of the window, UTC: RFC 3339 (2026-12-01T08:00:00Z),
        /// `YYYY-MM-DD HH:MM` or `YYYY-MM-DD`.
        #[arg(long, value_name = "TIME")]
        since: String,
        /// End of the window, UTC, in the same forms [default: now].
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only this study.
        #[arg(long, value_name = "STUDY")]
        study: Option<String>,
    },

    /// Trace one record end to end: each call through the gateway that
    /// named it (the client, the account, what was asked, REDCap's answer),
    /// each ledger entry naming it with its inclusion proof against the
    /// latest signed checkpoint (verified), and the rows of REDCap's own
    /// log beside each call, read through the study's log reader
    /// (redacted). REDCap rows naming the record that no call explains are
    /// listed; exit 1 when a governed account's are among them (its token
    /// was used outside the gateway), 0 otherwise, 2 on error
    /// (docs/trace.md).
    Trace {
        /// The record's id (its name in REDCap).
        record: String,
        /// The study [default: the only one].
        #[arg(long, value_name = "STUDY")]
        study: Option<String>,
        /// Only calls from this time on, UTC: RFC 3339, `YYYY-MM-DD
        /// HH:MM` or `YYYY-MM-DD` [default: the whole ledger].
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },

    /// Signed reviews of the audit trail: print the statement of a
    /// period's review, record a review signed by a reviewer listed in
    /// `[review] reviewers`, or list the reviews recorded (docs/review.md).
    #[command(subcommand)]
    Review(ReviewCommand),

    /// Re-authorise a service account with an approver's SSH signature
    /// (`reauth ACCOUNT --reason R --signature FILE`), print the statement
    /// to sign, sweep lapsed accounts, or show each account's status.
    Reauth(ReauthArgs),

    /// Print a shell completion script to standard output.
    Completions {
        /// The shell to write completions for.
        shell: clap_complete::Shell,
    },

    /// Write the token-management SOP generated from warden.toml (`[sop]`):
    /// Markdown and a self-contained HTML file (--out DIR), or check a
    /// written copy (--check FILE): exit 0 when today's configuration gives
    /// the same procedure, 1 naming the sections that differ, 2 on error
    /// (docs/sop.md).
    #[command(group = clap::ArgGroup::new("sop_mode").required(true).args(["out", "check"]))]
    Sop {
        /// Write <document_id>.md and <document_id>.html into this
        /// directory (made if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Compare the procedure in this Markdown or HTML file (one `sop
        /// --out` wrote) with what today's configuration gives.
        #[arg(long, value_name = "FILE")]
        check: Option<PathBuf>,
    },

    /// Write the compliance report: one self-contained, offline HTML file
    /// (token inventory and ages, rotation timeline, rights drift — `rights
    /// check` runs now and is recorded —, re-authorisation, ledger
    /// verification and the latest signed checkpoint, reconciliation,
    /// client keys, activity, and each requirement of compliance.md with
    /// its evidence; docs/report.md). Exit 0, 1 when the report holds a
    /// critical finding, 2 on error.
    Report {
        /// The HTML file to write.
        #[arg(long, value_name = "FILE.html")]
        out: PathBuf,
        /// Also print it to PDF (FILE.pdf beside it) through headless
        /// Chromium (`chromium` on PATH, or $CHROMIUM).
        #[arg(long)]
        pdf: bool,
    },

    /// Write the validation pack a QA unit files: each requirement of
    /// compliance.md, the tests that cover it, this run's result of each
    /// (nextest's JUnit report), and this binary's version and SHA-256, as
    /// matrix.md and matrix.html. Exit 1 when a mapped test failed or did
    /// not run (docs/validation.md).
    ValidationPack {
        /// The directory to write into (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// nextest's JUnit report [default: target/nextest/default/junit.xml].
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Run the mapped tests first (scripts/test, or cargo nextest run),
        /// from the workspace.
        #[arg(long)]
        run: bool,
        /// Another mapping than the built-in docs/validation/requirements.toml.
        #[arg(long, value_name = "FILE")]
        requirements: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RightsCommand {
    /// Read each study's live user rights, roles, DAGs and expirations
    /// through its rights manager's token and compare them with every
    /// governed account's profile: exit 0 if all are within, 1 listing each
    /// finding with its severity and risk, 2 on error. Each run is a
    /// `rights` ledger entry with the findings' digest.
    Check {
        /// Only this study.
        #[arg(long, value_name = "STUDY")]
        study: Option<String>,
        /// Only this account.
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
    },
    /// Show, per account, the `name: live -> wanted` changes that bring
    /// REDCap within the profiles (lowering only), and the findings
    /// `apply` leaves for a person. Exit 0 if there is nothing to do, 1
    /// otherwise, 2 on error. Changes nothing.
    Plan {
        /// Only this study.
        #[arg(long, value_name = "STUDY")]
        study: Option<String>,
        /// Only this account.
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
    },
    /// Make the plan in REDCap through the rights manager: a role removed
    /// first, then complete forms maps and always the site's DAG; read
    /// back to confirm; one `rights` ledger entry per account with your
    /// login, the reason and every change. Never raises a right, never
    /// touches users no account governs. Exit 0 if the study is then
    /// clean, 1 if findings remain for a person, 2 on error.
    Apply {
        /// Why (recorded in the ledger with your login).
        #[arg(long)]
        reason: String,
        /// Only this study.
        #[arg(long, value_name = "STUDY")]
        study: Option<String>,
        /// Only this account.
        #[arg(long, value_name = "ACCOUNT")]
        account: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration file: exit 0 if it is sound, 1 listing
    /// every problem with its line, field and fix, 2 if it cannot be read.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store a new version of a secret. The value is read from a no-echo
    /// prompt on a terminal, or from standard input otherwise — never from
    /// the command line.
    Put {
        /// The secret's name, e.g. redcap/site-01/etl.
        name: String,
        /// Why the secret is being written (recorded with the version).
        #[arg(long)]
        reason: String,
        /// The label the new version gets: current (in use at once) or
        /// pending (to be verified, then promoted).
        #[arg(long, default_value = "current", value_parser = ["current", "pending"])]
        label: String,
    },
    /// List the secrets with their current version's fingerprint and age.
    List,
    /// Show every version of a secret: labels, who wrote it, when and why.
    History {
        /// The secret's name.
        name: String,
    },
    /// Check that the store is reachable, decrypts and is properly
    /// protected: exit 0 if so, 1 listing what is wrong.
    Check,
    /// Add, change or remove the passphrase protecting the file store's
    /// identity. The current passphrase comes from passphrase_file, the
    /// systemd credential or a prompt; the new one is asked twice without
    /// echo on a terminal, otherwise read from the first line of standard
    /// input. The key itself does not change, so the store is untouched.
    Passphrase {
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
        /// Remove the passphrase: the identity is stored plain again.
        #[arg(long)]
        remove: bool,
    },
    /// Copy every secret with its whole history (versions in order, their
    /// metadata, labels) from the configured backend into another one
    /// configured in its own [secrets.BACKEND] table, then read everything
    /// back and compare fingerprints. Never prints a value. Afterwards set
    /// `[secrets] backend` to the new backend.
    Migrate {
        /// The backend to copy into.
        #[arg(long, value_name = "BACKEND", value_parser = ["file", "vault", "aws"])]
        to: String,
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every leaf and root and check every checkpoint signature:
    /// exit 0 if the ledger is intact, 1 naming the first failure.
    Verify {
        /// Verify with this verifier key instead of the one pinned in
        /// warden.toml (`name+keyid+base64key`).
        #[arg(long, value_name = "VKEY")]
        key: Option<String>,
        /// A checkpoint kept elsewhere (signed note): prove the ledger
        /// still contains exactly the tree it signed.
        #[arg(long, value_name = "FILE")]
        trusted_checkpoint: Option<PathBuf>,
        /// Verify what `ledger export` shipped to S3 instead (every leaf,
        /// root and checkpoint), and compare it with the local ledger.
        #[arg(long, conflicts_with = "trusted_checkpoint")]
        from_export: bool,
        /// With --from-export: this bucket instead of [ledger.export] bucket.
        #[arg(long, requires = "from_export")]
        bucket: Option<String>,
        /// With --from-export: this key prefix instead of [ledger.export] prefix.
        #[arg(long, requires = "from_export")]
        prefix: Option<String>,
    },
    /// Ship sealed segments and the latest checkpoints to the S3 Object
    /// Lock bucket of [ledger.export] (COMPLIANCE mode); ships only what is
    /// not there yet, and records what it shipped in the ledger.
    Export {
        /// Why (recorded in the ledger), e.g. "nightly export".
        #[arg(long)]
        reason: String,
    },
    /// Print the checkpoint verifier key (last line), derived from the
    /// signing key in the secrets store.
    PublicKey,
    /// Print the last entries, one JSON line each.
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// Print one entry.
    Show {
        /// The entry's sequence number.
        seq: u64,
    },
    /// Print an inclusion or consistency proof as JSON.
    #[command(subcommand)]
    Prove(ProveCommand),
    /// Sign a checkpoint over every entry now.
    Checkpoint,
    /// Sign a ledger the writer refuses to sign — entries past the last
    /// checkpoint spanning more than a writer leaves unsigned, or a ledger
    /// that no longer holds the tree its witness recorded — after you
    /// have checked it: recorded as an `admin` entry with your login and
    /// reason, saying what was adopted. Stop the gateway first.
    AdoptUnsigned {
        /// Why the unsigned entries are genuine (recorded in the ledger).
        #[arg(long)]
        reason: String,
    },
    /// Replace the checkpoint signing key: the new key goes into the
    /// secrets store, a `key` entry naming it is signed by the old key, and
    /// warden.toml's pinned verifier key is updated. Stop the gateway first.
    RotateKey {
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProveCommand {
    /// Prove entry SEQ is in the tree of the first SIZE entries.
    Inclusion {
        seq: u64,
        /// Tree size [default: every entry].
        #[arg(long)]
        size: Option<u64>,
    },
    /// Prove the tree of NEW entries extends the tree of OLD entries.
    Consistency { old: u64, new: u64 },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a new key for a client and deliver it into the secrets store
    /// or a new 0600 file — never to the terminal. The client's older keys
    /// keep working through the overlap window ([gateway] key_overlap_days).
    #[command(group = clap::ArgGroup::new("destination").required(true).args(["to_store", "to_file"]))]
    Issue {
        /// The client, as named in a `[[client]]` section.
        client: String,
        /// Store the key as this secret.
        #[arg(long, value_name = "NAME")]
        to_store: Option<String>,
        /// Write the key to this new file (mode 0600).
        #[arg(long, value_name = "PATH")]
        to_file: Option<PathBuf>,
        /// Why the key is issued (recorded in the ledger).
        #[arg(long)]
        reason: String,
    },
    /// List every key with its state, expiry and last use.
    List,
    /// Revoke a key at once.
    Revoke {
        /// The key's id (`k-…`, from `keys list`).
        id: String,
        /// Why (recorded in the ledger).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Every configured account: its REDCap user, study, site and status.
    List,
    /// Lift a quarantine, once the cause is understood and fixed.
    Release {
        /// The account, as named in an `[[account]]` section.
        account: String,
        /// What was found and fixed (recorded in the ledger).
        #[arg(long)]
        reason: String,
    },
    /// Enrol ACCOUNT: apply its profile in REDCap (rights and DAG), prove
    /// it with `rights check`, then obtain its first token through the
    /// issuer — escrowed, verified (ownership included) and stored as
    /// `current`. Resumable: run it again, or `rotate resume ID`.
    Enroll {
        /// The `[[account]]` to enrol.
        account: String,
        /// Why (recorded with your login in every ledger entry).
        #[arg(long)]
        reason: String,
        /// The issuer [default: `[rotation] issuer`].
        #[arg(long, value_enum)]
        issuer: Option<IssuerArg>,
    },
    /// Retire ACCOUNT: revoke its clients' keys, delete its token and
    /// remove the user in REDCap (the steps are printed; the sandbox
    /// issuer does them), prove the token dead, and retire the secret
    /// (kept in the store's history, no longer served).
    Retire {
        /// The `[[account]]` to retire.
        account: String,
        /// Why (recorded with your login in every ledger entry).
        #[arg(long)]
        reason: String,
        /// Who does the REDCap steps [default: `[rotation] issuer`]:
        /// `sandbox` does them through the sandbox's admin endpoints;
        /// otherwise a person does them from the printed steps.
        #[arg(long, value_enum)]
        issuer: Option<IssuerArg>,
    },
}

/// Who obtains a new token (default: `[rotation] issuer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IssuerArg {
    /// A person regenerates it in REDCap's UI and types it (no echo) or
    /// pipes it on standard input.
    Manual,
    /// redcap-sandbox's admin endpoint.
    Sandbox,
    /// The program of `[rotation] command`.
    Command,
}

#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Every account: its token's age, due date (`rotate_every_days`),
    /// any open rotation and the last one with its proof. Exit 1 when a
    /// token is overdue or a rotation is open.
    Status,
    /// Start a rotation of ACCOUNT and drive it as far as it goes: the
    /// gateway holds the account's requests, the issuer obtains the new
    /// token (escrowed at once), it is verified, stored, made current, and
    /// the old token shown dead.
    Start {
        /// The `[[account]]` whose token to rotate.
        account: String,
        /// Why (recorded with your login in every ledger entry).
        #[arg(long)]
        reason: String,
        /// The issuer [default: `[rotation] issuer`].
        #[arg(long, value_enum)]
        issuer: Option<IssuerArg>,
        /// The token may have leaked: first quarantine the account, so the
        /// gateway refuses its clients at once; they stay refused after the
        /// rotation until `accounts release`.
        #[arg(long)]
        emergency: bool,
    },
    /// Like `start`, from start to done with a non-interactive issuer
    /// (sandbox or command); refuses `manual`.
    Run {
        /// The `[[account]]` whose token to rotate.
        account: String,
        /// Why (recorded with your login in every ledger entry).
        #[arg(long)]
        reason: String,
        /// The issuer [default: `[rotation] issuer`].
        #[arg(long, value_enum)]
        issuer: Option<IssuerArg>,
    },
    /// Continue rotation ID from its last durable state (after a crash, or
    /// once REDCap, the store, the gateway or the ledger is back).
    Resume {
        /// The rotation id (`rotate status` lists open ones).
        id: String,
        /// The issuer, if the rotation still needs its new token
        /// [default: the one it was started with].
        #[arg(long, value_enum)]
        issuer: Option<IssuerArg>,
    },
    /// Stop rotation ID. After the new token was obtained (REDCap has
    /// already killed the old one), the escrowed token is stored as
    /// `current`, and the command says so.
    Abort {
        /// The rotation id.
        id: String,
        /// Why (recorded with your login).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Print the statement a reviewer signs for PERIOD: the ledger's
    /// entries of the period under the latest signed checkpoint, the
    /// reconcile runs in them and the findings they recorded (which the
    /// review acknowledges), the reviewer (your OS login; --operator adds
    /// a typed name beside it), a note, the time — as canonical JSON.
    Statement {
        /// A UTC month (2026-11), day (2026-11-03), or FROM..UNTIL (days,
        /// UNTIL included, or RFC 3339 times).
        #[arg(long, value_name = "PERIOD")]
        period: String,
        /// The reviewer's remarks (part of what is signed).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Record a review: checks the SSH signature (`ssh-keygen -Y sign -n
    /// redcap-warden-review`) by a key in `[review] reviewers` that is your
    /// own, and every claim of the statement against the ledger; refuses an
    /// unsigned, wrongly signed, self-incoherent, expired or replayed one
    /// with its reason; records a `review` entry holding the signature.
    Sign {
        /// The period, as in the statement.
        #[arg(long, value_name = "PERIOD")]
        period: String,
        /// The signature file `ssh-keygen -Y sign` wrote.
        #[arg(long, value_name = "FILE")]
        signature: PathBuf,
        /// The statement signed [default: the signature's name without
        /// `.sig`].
        #[arg(long, value_name = "FILE")]
        statement: Option<PathBuf>,
    },
    /// List the reviews recorded in the ledger.
    List,
}

/// `reauth ACCOUNT --reason R --signature FILE [--statement FILE]`, or one
/// of its subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReauthArgs {
    #[command(subcommand)]
    pub command: Option<ReauthCommand>,
    /// The account to re-approve, as named in an `[[account]]` section:
    /// checks the approver's signature over the statement, sets the
    /// account's REDCap expiration to the statement's due date (keeping its
    /// DAG), records a `reauth` entry holding the signature, and lifts a
    /// lapse.
    #[arg(required = true, value_name = "ACCOUNT")]
    pub account: Option<String>,
    /// Why it is re-approved now (recorded in the ledger).
    #[arg(long, required = true)]
    pub reason: Option<String>,
    /// The approver's signature: the `.sig` file `ssh-keygen -Y sign -n
    /// redcap-warden-reauth` wrote.
    #[arg(long, required = true, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// The statement that was signed; by default the signature's name
    /// without `.sig`.
    #[arg(long, value_name = "FILE")]
    pub statement: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ReauthCommand {
    /// Print the statement an approver signs for ACCOUNT: account, study,
    /// period (today to the next due date), reason, the digest of its live
    /// REDCap rights, and the time, as canonical JSON.
    Statement {
        /// The account, as named in an `[[account]]` section.
        account: String,
        /// Why it should be re-approved (part of what is signed).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lapse every account whose approval period ended or that has been
    /// idle too long: its REDCap expiration is set to today (keeping its
    /// DAG), a `reauth` entry records it, and the gateway refuses it.
    /// `serve` runs this daily. Exit 1 if it lapsed any account.
    Sweep,
    /// Each re-authorised account's due date, lapse, last approval and last
    /// use (from the ledger). Exit 1 if any is lapsed.
    Status,
}
