//! `ledger verify | public-key | tail | show | prove | checkpoint`.

use std::path::Path;

use anyhow::{Context, bail};
use durable::OsFs;
use governance::audit::{self, AuditTrail};
use ledger::{Checkpoint, VerifierKey};
use serde_json::json;

use crate::Outcome;
use crate::args::Args;
use crate::store::{load_config, open_store};

/// Checks the whole ledger against the pinned verifier key (or `--key`),
/// never against a key found beside the ledger.
pub fn verify(args: &Args, key: Option<&str>, trusted: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let dir = audit::ledger_dir(&config)?;
    let (key, key_source) = match key {
        Some(k) => (
            VerifierKey::parse(k).context("--key is not a verifier key")?,
            "--key".to_string(),
        ),
        None => {
            let section = config
                .config
                .ledger
                .as_ref()
                .expect("ledger_dir checked the section");
            (
                section.verifier_key(),
                format!("pinned in {}", config.path.display()),
            )
        }
    };
    let report = match ledger::verify_dir(&OsFs, &dir, &key) {
        Ok(r) => r,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    json!({"ok": false, "ledger": dir, "key": key.to_string(), "failure": e.to_string()})
                );
            } else {
                println!("ledger {}: FAILED: {e}", dir.display());
                println!("verified with key {key} ({key_source})");
            }
            return Ok(Outcome::Findings);
        }
    };
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
            ledger::prove_consistency(&OsFs, &dir, cp.size, report.entries)?.old_root == cp.root
        };
        trusted_ok = Some((cp.size, matches));
    }
    let ok = trusted_ok.is_none_or(|(_, m)| m);
    if args.json {
        println!(
            "{}",
            json!({
                "ok": ok, "ledger": dir, "key": key.to_string(), "origin": report.origin,
                "entries": report.entries, "segments": report.segments, "checkpoints": report.checkpoints,
                "anchored": report.anchored, "unanchored": report.unanchored, "root": hex::encode(report.root),
                "trusted_checkpoint": trusted_ok.map(|(size, m)| json!({"size": size, "consistent": m})),
            })
        );
    } else {
        println!(
            "ledger {}: {} entries in {} segment(s), root {}",
            dir.display(),
            report.entries,
            report.segments,
            hex::encode(report.root)
        );
        println!(
            "{} checkpoint(s) verified with key {key} ({key_source})",
            report.checkpoints
        );
        if report.unanchored > 0 {
            println!(
                "{} entries after the last checkpoint are not yet signed",
                report.unanchored
            );
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
    let (_, pinned) = super::runtime()?.block_on(audit::load_signing_key(&config, &*store))?;
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

fn entries(args: &Args) -> anyhow::Result<Vec<ledger::Entry>> {
    let config = load_config(&args.config)?;
    let dir = audit::ledger_dir(&config)?;
    Ok(ledger::read_entries(&OsFs, &dir)?)
}

pub fn tail(args: &Args, count: usize) -> anyhow::Result<Outcome> {
    let all = entries(args)?;
    for e in &all[all.len().saturating_sub(count)..] {
        println!("{}", String::from_utf8_lossy(&e.to_line()));
    }
    Ok(Outcome::Clean)
}

pub fn show(args: &Args, seq: u64) -> anyhow::Result<Outcome> {
    let all = entries(args)?;
    let Some(e) = all.get(seq as usize) else {
        bail!(
            "there is no entry {seq}; the ledger has {} entries (0 to {})",
            all.len(),
            all.len().saturating_sub(1)
        );
    };
    println!("{}", String::from_utf8_lossy(&e.to_line()));
    Ok(Outcome::Clean)
}

pub fn prove_inclusion(args: &Args, seq: u64, size: Option<u64>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let p = ledger::prove_inclusion(&OsFs, &audit::ledger_dir(&config)?, seq, size)?;
    println!(
        "{}",
        json!({
            "seq": p.seq, "tree_size": p.size, "leaf_hash": hex::encode(p.leaf_hash),
            "root": hex::encode(p.root), "proof": p.proof.iter().map(hex::encode).collect::<Vec<_>>(),
        })
    );
    Ok(Outcome::Clean)
}

pub fn prove_consistency(args: &Args, old: u64, new: u64) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let p = ledger::prove_consistency(&OsFs, &audit::ledger_dir(&config)?, old, new)?;
    println!(
        "{}",
        json!({
            "old_size": p.old, "new_size": p.new, "old_root": hex::encode(p.old_root),
            "new_root": hex::encode(p.new_root), "proof": p.proof.iter().map(hex::encode).collect::<Vec<_>>(),
        })
    );
    Ok(Outcome::Clean)
}

pub fn checkpoint(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let trail = AuditTrail::open(&config, &*store).await?;
        trail.close().await
    })?;
    println!("signed a checkpoint over every entry");
    Ok(Outcome::Clean)
}

/// `ledger rotate-key`: a new signing key, announced in the ledger under
/// the old one, then pinned in warden.toml.
pub fn rotate_key(args: &Args, reason: &str) -> anyhow::Result<Outcome> {
    let operator = crate::operator::Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let old = config
        .config
        .ledger
        .as_ref()
        .map(|l| l.verifier_key.get_ref().clone())
        .unwrap_or_default();
    let store = open_store(&config)?;
    let new = super::runtime()?.block_on(audit::rotate_signing_key(
        &config,
        &*store,
        &operator.to_string(),
        &reason,
    ))?;
    let new = new.to_string();
    // Pin the new key: the same file with only the key's value replaced.
    let pinned = if !old.is_empty() && config.text.matches(old.as_str()).count() == 1 {
        let text = config.text.replace(old.as_str(), &new);
        durable::atomic_replace(&OsFs, &config.path, text.as_bytes()).is_ok()
    } else {
        false
    };
    if pinned {
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
