//! `init`: a new installation in an empty directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use governance::audit::{self, AuditTrail};
use governance::signing_key;
use ledger::EntryKind;
use secrets::file::{SecretString, create_identity_file};
use secrets::{FINGERPRINT_KEY_SECRET, FileStore, FingerprintKey, VersionMeta};

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::file_store_options;

/// What `init` made.
pub struct Setup {
    pub store: PathBuf,
    pub identity: PathBuf,
    pub ledger: PathBuf,
    pub verifier: ledger::VerifierKey,
}

/// Where `init` starts the ledger.
pub enum LedgerChoice {
    /// The file ledger in the data directory (the default).
    File,
    /// PostgreSQL: the connection string's file (absolute) and the schema.
    Postgres {
        /// `[ledger.postgres] url_file`.
        url_file: PathBuf,
        /// `[ledger.postgres] schema`.
        schema: String,
    },
}

impl LedgerChoice {
    /// From `--postgres-url-file` and `--postgres-schema`: the file must
    /// exist (its mode and content are checked as `config check` does).
    pub fn from_flags(
        url_file: Option<&Path>,
        schema: Option<&str>,
    ) -> anyhow::Result<LedgerChoice> {
        let Some(file) = url_file else {
            return Ok(LedgerChoice::File);
        };
        let url_file = std::fs::canonicalize(file).with_context(|| {
            format!(
                "--postgres-url-file {}: no such file; fix: write the connection string to it (chmod 600) first",
                file.display()
            )
        })?;
        let schema = schema.unwrap_or(ledger::DEFAULT_SCHEMA).to_string();
        ledger::valid_schema(&schema)
            .map_err(|e| anyhow::anyhow!("--postgres-schema {schema}: {e}"))?;
        Ok(LedgerChoice::Postgres { url_file, schema })
    }
}

/// `init` as a command: creates the setup and says what to back up.
pub fn run(
    args: &Args,
    redcap_url: &str,
    time_zone: Option<&str>,
    passphrase: bool,
    ledger: LedgerChoice,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config_path = &args.config;
    if config_path.exists() {
        bail!(
            "{} already exists; init sets up a new installation and never overwrites one (use another directory or --config path)",
            config_path.display()
        );
    }
    let passphrase = if passphrase {
        Some(super::secrets::read_new_passphrase(
            "the new secrets-store identity",
        )?)
    } else {
        None
    };
    let Setup {
        store,
        identity,
        ledger: ledger_dir,
        verifier,
    } = create_with(
        config_path,
        redcap_url,
        time_zone,
        "",
        &operator,
        passphrase.as_ref(),
        &ledger,
    )?;
    let protected = passphrase.is_some();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "config": config_path, "store": store, "identity": identity, "ledger": ledger_dir,
                "verifier_key": verifier.to_string(), "identity_passphrase": protected,
                "operator": operator, "backup": [config_path, &store, &identity],
            })
        );
    } else {
        println!("Created {}", config_path.display());
        println!("Created {} (encrypted secrets store)", store.display());
        println!(
            "Created {} (its identity, mode 0600{})",
            identity.display(),
            if protected {
                ", protected by your passphrase"
            } else {
                ""
            }
        );
        println!(
            "Created {} (audit ledger; first entries record this setup)",
            ledger_dir.display()
        );
        println!(
            "Stored the token fingerprint key and the ledger signing key in the secrets store."
        );
        println!(
            "Ledger verifier key (pinned in {}): {verifier}",
            config_path.display()
        );
        println!();
        println!(
            "Back up {} and {} together, and keep the identity as safe as the tokens:",
            store.display(),
            identity.display()
        );
        println!(
            "without it the store cannot be decrypted and every REDCap token must be re-issued in REDCap's UI."
        );
        if protected {
            println!(
                "The identity is locked by the passphrase: every command that opens the store asks for it on a terminal, and `serve` reads it from [secrets.file] passphrase_file (a mode-0600 file) or the systemd credential `{}`.",
                secrets::file::PASSPHRASE_CREDENTIAL
            );
            println!(
                "Losing the passphrase is losing the identity: keep it where the identity's backup is not, and known to more than one person."
            );
        }
        println!("Next: `redcap-warden secrets put NAME --reason …` to store a token.");
    }
    Ok(Outcome::Clean)
}

/// Writes warden.toml (the commented template plus `extra` sections) and
/// the data directory: identity (0600), encrypted store, fingerprint key,
/// ledger signing key, and the ledger with entries recording the setup.
/// Nothing that exists is ever overwritten; if a step fails, what this run
/// created is removed again.
pub fn create(
    config_path: &Path,
    redcap_url: &str,
    time_zone: Option<&str>,
    extra: &str,
    operator: &Operator,
) -> anyhow::Result<Setup> {
    create_protected(config_path, redcap_url, time_zone, extra, operator, None)
}

/// [`create`], with the identity encrypted to `passphrase` when given.
pub fn create_protected(
    config_path: &Path,
    redcap_url: &str,
    time_zone: Option<&str>,
    extra: &str,
    operator: &Operator,
    passphrase: Option<&SecretString>,
) -> anyhow::Result<Setup> {
    create_with(
        config_path,
        redcap_url,
        time_zone,
        extra,
        operator,
        passphrase,
        &LedgerChoice::File,
    )
}

/// [`create_protected`], with the ledger where `ledger` says: with
/// PostgreSQL the first entries go straight into the database (no file
/// ledger, no import at the first open).
pub fn create_with(
    config_path: &Path,
    redcap_url: &str,
    time_zone: Option<&str>,
    extra: &str,
    operator: &Operator,
    passphrase: Option<&SecretString>,
    ledger_choice: &LedgerChoice,
) -> anyhow::Result<Setup> {
    let config_path = &config_path.to_path_buf();
    if config_path.exists() {
        bail!(
            "{} already exists; init sets up a new installation and never overwrites one (use another directory or --config path)",
            config_path.display()
        );
    }
    let time_zone = match time_zone {
        Some(z) => z.to_string(),
        None => jiff::tz::TimeZone::system()
            .iana_name()
            .map(str::to_string)
            .context("this machine's time zone has no IANA name; pass --time-zone, e.g. --time-zone Europe/Berlin")?,
    };
    let signing_key = signing_key::new_signing_key();
    let origin = ledger::new_origin(&durable::host_name())?;
    let verifier = ledger::VerifierKey::from_signing_key(&origin, &signing_key);
    let text = template(redcap_url, &time_zone, &verifier.to_string(), ledger_choice) + extra;
    // The same checks `config check` makes, before anything is created.
    let config = warden_config::parse(&text, config_path).map_err(|e| {
        anyhow::anyhow!("{e}").context(
            "the values given to init do not make a valid configuration (fix the flag named)",
        )
    })?;
    let loaded = warden_config::LoadedConfig {
        path: config_path.clone(),
        config,
        text: text.clone(),
        sha256: String::new(),
    };
    let opts = file_store_options(&loaded);
    let data_dir = loaded.data_dir();
    let ledger_dir = audit::ledger_dir(&loaded)?;
    // With PostgreSQL: the connection string, read and checked now (mode
    // 0600, a valid string), before anything is created.
    let postgres = match &loaded.config.ledger.as_ref().map(|l| &l.store) {
        Some(warden_config::LedgerStore::Postgres(pg)) => Some((
            zeroize::Zeroizing::new(
                pg.connection_string(|p| loaded.resolve(p))
                    .map_err(anyhow::Error::msg)?,
            ),
            pg.schema.clone(),
        )),
        _ => None,
    };
    if data_dir.exists() {
        bail!(
            "{} already exists; init never reuses an existing data directory (move it away or use another directory)",
            data_dir.display()
        );
    }

    let created = Created {
        dir: data_dir.clone(),
        config: config_path.clone(),
    };
    let result = (|| -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let identity = create_identity_file(&opts.identity, passphrase)
            .with_context(|| format!("writing the identity {}", opts.identity.display()))?;
        let public_key = identity.public_key();
        let store = FileStore::create_with_identity(opts.clone(), identity)?;
        let reason = "initial setup (redcap-warden init)";
        let meta = VersionMeta {
            operator: operator.to_string(),
            at: jiff::Timestamp::now(),
            reason: reason.into(),
            fingerprint: None,
            rotation_id: None,
        };
        super::runtime()?.block_on(async {
            let fp_version = FingerprintKey::generate(1)
                .save(&store, meta.clone())
                .await?;
            let sk_version = signing_key::save_signing_key(&store, &signing_key, meta).await?;
            let trail = match &postgres {
                None => AuditTrail::create(ledger_dir.clone(), origin.clone(), signing_key).await?,
                Some((url, schema)) => {
                    let (url, schema, origin) = (url.clone(), schema.clone(), origin.clone());
                    let ledger = tokio::task::spawn_blocking(move || {
                        ledger::PgLedger::create(
                            &url,
                            &origin,
                            signing_key,
                            ledger::PgOptions {
                                schema,
                                checkpoint_interval: None,
                                ..ledger::PgOptions::default()
                            },
                        )
                    })
                    .await
                    .context("the PostgreSQL ledger's creation panicked")?
                    .context("creating the ledger in PostgreSQL")?;
                    AuditTrail::writing_to(std::sync::Arc::new(ledger))
                }
            };
            let op = operator.to_string();
            trail
                .record(EntryKind::Admin {
                    operator: op.clone(),
                    action: "init".into(),
                    target: config_path.display().to_string(),
                    reason: reason.into(),
                })
                .await?;
            trail
                .record(EntryKind::Key {
                    operator: op.clone(),
                    action: "create".into(),
                    key_name: origin.clone(),
                    verifier_key: Some(verifier.to_string()),
                    reason: "ledger checkpoint signing key".into(),
                })
                .await?;
            if passphrase.is_some() {
                trail
                    .record(EntryKind::Key {
                        operator: op.clone(),
                        action: "identity passphrase set".into(),
                        key_name: identity_key_name(&opts.identity, &public_key),
                        verifier_key: None,
                        reason: reason.into(),
                    })
                    .await?;
            }
            for (name, version) in [
                (FINGERPRINT_KEY_SECRET, fp_version.0),
                (signing_key::SIGNING_KEY_SECRET, sk_version),
            ] {
                trail
                    .record(EntryKind::Secret {
                        operator: op.clone(),
                        name: name.into(),
                        version,
                        action: "create".into(),
                        fingerprint: None,
                        reason: reason.into(),
                    })
                    .await?;
            }
            trail.close().await?;
            anyhow::Ok(())
        })?;
        write_new_file(config_path, text.as_bytes())
            .with_context(|| format!("writing {}", config_path.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        created.undo();
        return Err(e.context("init failed; nothing was left behind"));
    }

    Ok(Setup {
        store: opts.path,
        identity: opts.identity,
        ledger: match &postgres {
            None => ledger_dir,
            Some((_, schema)) => format!("PostgreSQL schema {schema}").into(),
        },
        verifier,
    })
}

/// How ledger entries name the store's identity: its path and its public
/// key (which is not secret).
pub fn identity_key_name(path: &Path, public_key: &str) -> String {
    format!("secrets-store identity {} ({public_key})", path.display())
}

/// What a failed init removes again: only what it created itself.
struct Created {
    dir: PathBuf,
    config: PathBuf,
}

impl Created {
    fn undo(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.config);
    }
}

fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::File::open(durable::parent_dir(path))?.sync_all()
}

fn template(
    redcap_url: &str,
    time_zone: &str,
    verifier_key: &str,
    ledger_choice: &LedgerChoice,
) -> String {
    let quote = |s: &str| toml_string(s);
    let postgres = match ledger_choice {
        LedgerChoice::File => String::new(),
        LedgerChoice::Postgres { url_file, schema } => format!(
            r#"
[ledger.postgres]
# The ledger, and what several gateways share (client keys, account status,
# cut-over holds, reloads, the outbound window), in this PostgreSQL database.
# The connection string is in this file, mode 0600 (it may hold a password).
url_file = {file}
schema = {schema}
"#,
            file = quote(&url_file.display().to_string()),
            schema = quote(schema),
        ),
    };
    let backend = match ledger_choice {
        LedgerChoice::File => "",
        LedgerChoice::Postgres { .. } => "backend = \"postgres\"\n",
    };
    format!(
        r#"# redcap-warden configuration. No secret ever goes in this file:
# tokens and keys live in the secrets store below.
# Check it with `redcap-warden config check`; docs/configuration.md explains every key.

[redcap]
# REDCap's API endpoint, ending in /api/ (https, except on loopback).
url = {url}
# The REDCap server's time zone: its log timestamps are server-local.
time_zone = {tz}

[paths]
# The data directory (relative to this file, or absolute): the secrets store
# and its identity, the ledger, the client keys, the account status and the
# gateway's own files live here unless a key below names another place.
data_dir = "data"

[secrets]
# file: one age-encrypted file (the embedded default).
backend = "file"

[secrets.file]
# The encrypted store, secrets.age in the data directory unless set here:
# path = "/srv/warden/secrets.age"
# Its identity, identity.txt in the data directory unless set here. Back it
# up with the store: without it every token must be re-issued.
# identity = "/srv/warden/identity.txt"
# For a passphrase-protected identity (init --passphrase, secrets passphrase):
# a file, mode 0600, whose first line is the passphrase, so `serve` starts
# unattended. Without it the passphrase is asked for on a terminal, or read
# from the systemd credential redcap-warden-identity-passphrase.
# passphrase_file = "/etc/redcap-warden/identity-passphrase"
# Old versions kept per secret (labelled versions are always kept).
keep_versions = 20

[ledger]
{backend}# The audit ledger: every API call and every change this tool makes, in
# ledger/ in the data directory unless set here:
# dir = "/srv/warden/ledger"
# Checkpoints are signed with a key kept in the secrets store; this pinned
# key verifies them. `redcap-warden ledger verify` uses it.
verifier_key = {vk}
{postgres}"#,
        vk = quote(verifier_key),
        url = quote(redcap_url),
        tz = quote(time_zone),
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
