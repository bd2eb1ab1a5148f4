//! `ledger verify | public-key | tail | show | prove | checkpoint`, over
//! the configured backend: the file ledger or PostgreSQL.

use std::path::Path;

use anyhow::{Context, bail};
use durable::OsFs;
use governance::clock::SystemClock;
use governance::{audit, signing_key, witness};
use ledger::{
    Checkpoint, ConsistencyProof, Entry, InclusionProof, LedgerError, PgReader, VerifierKey,
    VerifyError, VerifyReport, WitnessNote,
};
use serde_json::json;
use warden_config::{LedgerBackendKind, LoadedConfig};

use crate::Outcome;
use crate::args::Args;
use crate::store::{load_config, open_store};

/// The ledger commands read the ledger as every other reader does.
use crate::store::LedgerSource as Store;

impl Store {
    /// Where the ledger is, for messages.
    fn place(&self) -> String {
        match self {
            Store::File(dir) => dir.display().to_string(),
            Store::Postgres(r) => r.place(),
        }
    }

    /// With a progress bar on large file ledgers unless `json`.
    fn verify(&mut self, key: &VerifierKey, json: bool) -> Result<VerifyReport, VerifyError> {
        match self {
            Store::File(dir) => super::ledger_export::verify_dir(dir, key, json),
            Store::Postgres(r) => r.verify(key),
        }
    }

    /// One read, from whichever backend this is.
    fn read<T>(
        &mut self,
        file: impl FnOnce(&Path) -> Result<T, LedgerError>,
        postgres: impl FnOnce(&mut PgReader) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        match self {
            Store::File(dir) => file(dir),
            Store::Postgres(r) => postgres(r),
        }
    }

    fn entries(&mut self) -> Result<Vec<Entry>, LedgerError> {
        self.read(|dir| ledger::read_entries(&OsFs, dir), |r| r.read_entries())
    }

    fn prove_consistency(&mut self, old: u64, new: u64) -> Result<ConsistencyProof, LedgerError> {
        self.read(
            |dir| ledger::prove_consistency(&OsFs, dir, old, new),
            |r| r.prove_consistency(old, new),
        )
    }
}

/// A witness's verdict, for the report.
struct WitnessSeen {
    witness: String,
    /// The size it signs, if it checks out.
    size: Option<u64>,
    /// What is wrong, if anything; `None` with no size: it holds nothing.
    problem: Option<String>,
}

/// Reads the witnesses kept for this ledger outside it: the one in the
/// secrets store and the witness file, if configured.
fn read_witnesses(config: &LoadedConfig) -> (Vec<WitnessNote>, Vec<WitnessSeen>) {
    let mut notes = Vec::new();
    let mut seen = Vec::new();
    match open_store(config) {
        Err(e) => seen.push(WitnessSeen {
            witness: format!("witness {} in the secrets store", witness::WITNESS_SECRET),
            size: None,
            problem: Some(format!("cannot be read: {e:#}")),
        }),
        Ok(store) => {
            let place = witness::store_witness_place(&*store);
            let read = super::runtime().map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(witness::read_store_witness(&*store))
                    .map_err(|e| e.to_string())
            });
            match read {
                Ok(Some(note)) => notes.push(WitnessNote {
                    source: place,
                    note,
                }),
                Ok(None) => seen.push(WitnessSeen {
                    witness: place,
                    size: None,
                    problem: None,
                }),
                Err(e) => seen.push(WitnessSeen {
                    witness: place,
                    size: None,
                    problem: Some(format!("cannot be read: {e}")),
                }),
            }
        }
    }
    if let Some(file) = audit::witness_file(config) {
        let witness = ledger::FileWitness::new(&file);
        let place = ledger::Witness::describe(&witness);
        match ledger::Witness::read(&witness) {
            Ok(Some(note)) => notes.push(WitnessNote {
                source: place,
                note,
            }),
            // Configured, so a writer has written it (on its first open):
            // gone is a finding.
            Ok(None) => seen.push(WitnessSeen {
                witness: place,
                size: None,
                problem: Some(
                    "is missing: deleted, or no writer has opened the ledger since witness_file was configured"
                        .into(),
                ),
            }),
            Err(e) => seen.push(WitnessSeen {
                witness: place,
                size: None,
                problem: Some(format!("cannot be read: {e}")),
            }),
        }
    }
    (notes, seen)
}

/// The ledger checked against the pinned verifier key, and the text of
/// its latest signed checkpoint, for the report and the dashboard: what
/// `ledger verify` checks of the log itself (its witnesses are
/// `ledger verify`'s own).
pub(super) fn verified_view(
    config: &LoadedConfig,
) -> anyhow::Result<governance::report::LedgerView> {
    let mut store = Store::open(config)?;
    let key = audit::ledger_section(config)?.verifier_key();
    let verified = match store.verify(&key, true) {
        Ok(r) => Ok(governance::report::VerifySummary {
            entries: r.entries,
            checkpoints: r.checkpoints,
            anchored: r.anchored,
            unanchored: r.unanchored,
            root: hex::encode(r.root),
        }),
        Err(e) => Err(e.to_string()),
    };
    let latest_checkpoint = match &mut store {
        Store::File(dir) => ledger::latest_note(&OsFs, dir)?,
        Store::Postgres(r) => r.latest_note()?,
    };
    Ok(governance::report::LedgerView {
        place: store.place(),
        verifier_key: key.to_string(),
        verified,
        latest_checkpoint,
        how: governance::report::VerifiedHow::Full,
        changed: None,
    })
}

/// Checks the whole ledger against the pinned verifier key (or `--key`),
/// never against a key found beside the ledger, and against the
/// witnesses kept outside it.
pub fn verify(args: &Args, key: Option<&str>, trusted: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let mut store = Store::open(&config)?;
    let place = store.place();
    let (key, key_source) = match key {
        Some(k) => (
            VerifierKey::parse(k).context("--key is not a verifier key")?,
            "--key".to_string(),
        ),
        None => {
            let section = audit::ledger_section(&config)?;
            (
                section.verifier_key(),
                format!("pinned in {}", config.path.display()),
            )
        }
    };
    // The witnesses before the ledger: a running writer updates them only
    // after the checkpoint they take is beside the ledger, so what is read
    // next holds it.
    let (notes, mut witnesses) = read_witnesses(&config);
    // An unsigned tail older than a writer leaves fails verification, but
    // the witnesses are still checked: they say more precisely what
    // happened.
    let (report, tail_failure) = match store
        .verify(&key, args.json)
        .map_err(|e| e.into_unsigned_tail())
    {
        Ok(r) => (r, None),
        Err(Ok((report, failure))) => (report, Some(failure)),
        Err(Err(e)) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": false, "ledger": place, "key": key.to_string(), "failure": e.to_string()})
                );
            } else {
                println!("ledger {place}: FAILED: {e}");
                println!("verified with key {key} ({key_source})");
            }
            return Ok(Outcome::Findings);
        }
    };
    for w in &notes {
        let mut root_at = |n: u64| {
            store
                .prove_consistency(n, report.entries)
                .map(|p| p.old_root)
                .map_err(|e| e.to_string())
        };
        witnesses.push(
            match ledger::check_witness(&report, &key, w, &mut root_at) {
                Ok(size) => WitnessSeen {
                    witness: w.source.clone(),
                    size: Some(size),
                    problem: None,
                },
                Err(VerifyError::Witness { problem, .. }) => WitnessSeen {
                    witness: w.source.clone(),
                    size: None,
                    problem: Some(problem),
                },
                Err(e) => WitnessSeen {
                    witness: w.source.clone(),
                    size: None,
                    problem: Some(format!("cannot be checked: {e}")),
                },
            },
        );
    }
    let mut trusted_ok = None;
    if let Some(path) = trusted {
        let note =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cp = Checkpoint::verify(&note, &key)
            .with_context(|| format!("{} is not a checkpoint signed by {key}", path.display()))?;
        let matches = if cp.size > report.entries {
            false
        } else if cp.size == 0 {
            true
        } else {
            store.prove_consistency(cp.size, report.entries)?.old_root == cp.root
        };
        trusted_ok = Some((cp.size, matches));
    }
    let witnesses_ok = witnesses.iter().all(|w| w.problem.is_none());
    let ok = trusted_ok.is_none_or(|(_, m)| m) && witnesses_ok && tail_failure.is_none();
    if args.json {
        println!(
            "{}",
            json!({
                "ok": ok, "ledger": place, "key": key.to_string(), "origin": report.origin,
                "entries": report.entries, "segments": report.segments, "checkpoints": report.checkpoints,
                "anchored": report.anchored, "unanchored": report.unanchored, "root": hex::encode(report.root),
                "unsigned_span_seconds": report.unsigned_span.map(|d| d.as_secs_f64()),
                "max_unsigned_span_seconds": report.max_unsigned_span.as_secs_f64(),
                "unsigned_tail_failure": tail_failure,
                "witnesses": witnesses.iter().map(|w| json!({
                    "witness": w.witness, "size": w.size,
                    "ok": w.problem.is_none(), "problem": w.problem,
                })).collect::<Vec<_>>(),
                "trusted_checkpoint": trusted_ok.map(|(size, m)| json!({"size": size, "consistent": m})),
            })
        );
    } else {
        println!(
            "ledger {place}: {} entries in {} segment(s), root {}",
            report.entries,
            report.segments,
            hex::encode(report.root)
        );
        println!(
            "{} checkpoint(s) verified with key {key} ({key_source})",
            report.checkpoints
        );
        for w in &witnesses {
            match (&w.problem, w.size) {
                (Some(problem), _) => println!("FAILED: {} {problem}", w.witness),
                (None, Some(size)) => println!(
                    "{}: holds a checkpoint of {size} entries, which this ledger holds unchanged",
                    w.witness
                ),
                (None, None) => println!(
                    "{}: none yet (the next writer open keeps the latest checkpoint there)",
                    w.witness
                ),
            }
        }
        if report.unanchored > 0 {
            let span = report
                .unsigned_span
                .map(|d| format!(", spanning {}", ledger::span_text(d)))
                .unwrap_or_default();
            println!(
                "{} entries after the last checkpoint are not yet signed{span} (a writer leaves at most {} unsigned)",
                report.unanchored,
                ledger::span_text(report.max_unsigned_span)
            );
        }
        if let Some(failure) = &tail_failure {
            println!("FAILED: {failure}");
        }
        match trusted_ok {
            Some((size, true)) => {
                println!("the trusted checkpoint (size {size}) is consistent with the ledger")
            }
            Some((size, false)) => println!(
                "FAILED: the ledger does not contain the tree the trusted checkpoint (size {size}) signed"
            ),
            None => {}
        }
    }
    Ok(if ok {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

pub fn public_key(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let (_, pinned) =
        super::runtime()?.block_on(signing_key::pinned_signing_key(&config, &*store))?;
    if args.json {
        println!("{}", json!({"verifier_key": pinned.to_string()}));
    } else {
        println!(
            "# the signing key in the secrets store matches the key pinned in {}",
            config.path.display()
        );
        println!("{pinned}");
    }
    Ok(Outcome::Clean)
}

fn store(args: &Args) -> anyhow::Result<Store> {
    Store::open(&load_config(&args.config)?)
}

pub fn tail(args: &Args, count: usize) -> anyhow::Result<Outcome> {
    let last = match store(args)? {
        // The database reads only the rows asked for.
        Store::Postgres(mut r) => r.tail(count)?,
        mut s => {
            let mut all = s.entries()?;
            all.split_off(all.len().saturating_sub(count))
        }
    };
    for e in &last {
        println!("{}", String::from_utf8_lossy(&e.to_line()));
    }
    Ok(Outcome::Clean)
}

pub fn show(args: &Args, seq: u64) -> anyhow::Result<Outcome> {
    let (found, count) = match store(args)? {
        Store::Postgres(mut r) => (r.entry(seq)?, r.count()?),
        mut s => {
            let mut all = s.entries()?;
            let count = all.len() as u64;
            ((seq < count).then(|| all.swap_remove(seq as usize)), count)
        }
    };
    let Some(e) = found else {
        bail!(
            "there is no entry {seq}; the ledger has {count} entries (0 to {})",
            count.saturating_sub(1)
        );
    };
    println!("{}", String::from_utf8_lossy(&e.to_line()));
    Ok(Outcome::Clean)
}

pub fn prove_inclusion(args: &Args, seq: u64, size: Option<u64>) -> anyhow::Result<Outcome> {
    let p: InclusionProof = store(args)?.read(
        |dir| ledger::prove_inclusion(&OsFs, dir, seq, size),
        |r| r.prove_inclusion(seq, size),
    )?;
    print_proof(
        json!({
            "seq": p.seq, "tree_size": p.size, "leaf_hash": hex::encode(p.leaf_hash),
            "root": hex::encode(p.root),
        }),
        &p.proof,
    )
}

pub fn prove_consistency(args: &Args, old: u64, new: u64) -> anyhow::Result<Outcome> {
    let p = store(args)?.prove_consistency(old, new)?;
    print_proof(
        json!({
            "old_size": p.old, "new_size": p.new, "old_root": hex::encode(p.old_root),
            "new_root": hex::encode(p.new_root),
        }),
        &p.proof,
    )
}

/// Prints a proof as one JSON object: `fields`, and `proof`, its hashes in
/// hex.
fn print_proof(
    mut fields: serde_json::Value,
    proof: &[impl AsRef<[u8]>],
) -> anyhow::Result<Outcome> {
    fields["proof"] = json!(proof.iter().map(hex::encode).collect::<Vec<_>>());
    println!("{fields}");
    Ok(Outcome::Clean)
}

pub fn checkpoint(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let postgres = config
        .config
        .ledger
        .as_ref()
        .is_some_and(|l| l.backend() == LedgerBackendKind::Postgres);
    if postgres {
        // Several processes share a PostgreSQL ledger; one of them, the
        // holder of the signer lease, signs its checkpoints.
        let (key, _) = rt.block_on(signing_key::load_signing_key(&config, &*store))?;
        let signed = rt.block_on(async {
            let cfg = config.clone();
            tokio::task::spawn_blocking(move || {
                let ledger = audit::open_writer(&cfg, key, None)?;
                let signed = ledger.checkpoint();
                ledger.close()?;
                signed
            })
            .await
        })?;
        match signed {
            Ok(Some(cp)) => println!("signed a checkpoint of {} entries", cp.size),
            Ok(None) => println!("the last checkpoint already covers every entry"),
            Err(LedgerError::NotSigner { holder }) => println!(
                "not signed here: {holder} holds the signer lease and signs the checkpoints"
            ),
            Err(e) => return Err(e.into()),
        }
        return Ok(Outcome::Clean);
    }
    // The file ledger: opening it checks it against its witnesses and
    // signs what is unsigned; closing keeps the checkpoint in them.
    let (key, _) = rt.block_on(signing_key::load_signing_key(&config, &*store))?;
    let opened = rt.block_on(async {
        let cfg = config.clone();
        tokio::task::spawn_blocking(move || {
            let ledger = audit::open_writer_with(
                &cfg,
                key,
                None,
                audit::WriterOptions {
                    store: Some(store),
                    ..audit::WriterOptions::default()
                },
            )?;
            let signed = ledger.checkpoint();
            ledger.close()?;
            signed
        })
        .await
    })?;
    match opened {
        Ok(_) => println!("signed a checkpoint over every entry"),
        Err(LedgerError::Locked { .. }) => println!(
            "the running gateway holds the ledger; it signs a checkpoint over every entry each second"
        ),
        Err(e) => return Err(e.into()),
    }
    Ok(Outcome::Clean)
}

/// What a command that changes the ledger starts from.
struct Change {
    /// The OS login (see [`crate::operator`]).
    operator: String,
    reason: String,
    config: LoadedConfig,
    store: std::sync::Arc<dyn secrets::SecretStore>,
}

impl Change {
    fn new(args: &Args, reason: &str) -> anyhow::Result<Change> {
        let operator = crate::operator::Operator::current(args.operator.as_deref())?.to_string();
        let reason = super::reason(reason)?;
        let config = load_config(&args.config)?;
        let store = open_store(&config)?;
        Ok(Change {
            operator,
            reason,
            config,
            store,
        })
    }
}

/// `ledger adopt-unsigned`: sign, recorded, what a writer refuses to sign.
pub fn adopt_unsigned(args: &Args, reason: &str) -> anyhow::Result<Outcome> {
    let change = Change::new(args, reason)?;
    let adopted = super::runtime()?.block_on(audit::adopt_unsigned(
        &change.config,
        change.store,
        &change.operator,
        &change.reason,
        std::sync::Arc::new(SystemClock),
    ))?;
    match adopted {
        Some(what) => {
            println!(
                "Adopted, recorded in the ledger with your login and reason, and signed: {what}"
            );
            println!("Check it with `redcap-warden ledger verify`.");
        }
        None => println!(
            "Nothing to adopt: the ledger holds what its witnesses recorded, and its unsigned entries are no older than a writer leaves. Nothing was recorded."
        ),
    }
    Ok(Outcome::Clean)
}

/// `ledger rotate-key`: a new signing key, announced in the ledger under
/// the old one, then pinned in warden.toml.
pub fn rotate_key(args: &Args, reason: &str) -> anyhow::Result<Outcome> {
    let Change {
        operator,
        reason,
        config,
        store,
    } = Change::new(args, reason)?;
    let rotated = super::runtime()?.block_on(signing_key::rotate_signing_key(
        &config,
        &*store,
        &operator,
        &reason,
        &SystemClock,
    ))?;
    let new = rotated.verifier.to_string();
    if rotated.pinned {
        println!(
            "Rotated the ledger signing key; {} now pins:",
            config.path.display()
        );
    } else {
        println!(
            "Rotated the ledger signing key. Set [ledger] verifier_key in {} to:",
            config.path.display()
        );
    }
    println!("{new}");
    Ok(Outcome::Clean)
}
