//! `review statement | sign | list`: signed audit-trail reviews (the
//! logic is `governance::review`). The ledger is read once per command,
//! as stored, without the writer's lock; the review is recorded through
//! the audit trail like every change (through a running gateway's admin
//! listener when one holds the ledger).

use std::path::Path;

use anyhow::{Context, bail};
use governance::review::{self, CheckpointRef, Period, ReviewFacts, Statement};
use jiff::Timestamp;
use ledger::{Approval, EntryKind};
use serde_json::json;
use warden_config::{Approver, LoadedConfig, REVIEW_NAMESPACE};

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// One pass over the ledger: the facts of `period` among the first `cap`
/// entries.
fn facts(config: &LoadedConfig, period: Option<Period>, cap: u64) -> anyhow::Result<ReviewFacts> {
    let mut facts = ReviewFacts::new(period, cap);
    super::trace::read_lines(config, &mut |seq, line| {
        facts.push(seq, line);
        true
    })?;
    Ok(facts)
}

/// `review statement --period P [--note N]`.
pub fn statement(args: &Args, period: &str, note: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let period = Period::parse(period).map_err(anyhow::Error::msg)?;
    let Some(checkpoint) = super::trace::latest_checkpoint(&config)? else {
        bail!(
            "the ledger has no signed checkpoint yet, so no range of it can be reviewed; a writer signs within a second of its first entries"
        );
    };
    let facts = facts(&config, Some(period.clone()), checkpoint.size)?;
    if facts.root != Some(checkpoint.root) {
        bail!(
            "the ledger's first {} entries do not have the root its latest checkpoint signs; run `ledger verify`",
            checkpoint.size
        );
    }
    let statement = review::statement(
        &facts,
        &period,
        &checkpoint.origin,
        CheckpointRef {
            size: checkpoint.size,
            root: hex::encode(checkpoint.root),
        },
        &operator.to_string(),
        note,
        Timestamp::now(),
    )
    .map_err(anyhow::Error::msg)?;
    print!("{}", statement.to_text());
    eprintln!(
        "Review entries {}..{} and the {} reconcile finding run(s) listed, save this as a file, sign it within {} days with a key listed in [review] reviewers:\n  ssh-keygen -Y sign -n {REVIEW_NAMESPACE} -f ~/.ssh/id_ed25519 FILE\nthen: redcap-warden review sign --period {} --signature FILE.sig",
        statement.entries.first_seq,
        statement.entries.last_seq,
        statement.findings.len(),
        review::STATEMENT_MAX_AGE_DAYS,
        period.text
    );
    Ok(Outcome::Clean)
}

/// `review sign --period P --signature FILE [--statement FILE]`.
pub fn sign(
    args: &Args,
    period: &str,
    signature: &Path,
    statement: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let period = Period::parse(period).map_err(anyhow::Error::msg)?;
    let signature_bytes = std::fs::read(signature)
        .with_context(|| format!("reading the signature {}", signature.display()))?;
    let statement_file = super::reauth::statement_path(signature, statement)?;
    let statement_bytes = std::fs::read(&statement_file)
        .with_context(|| format!("reading the statement {}", statement_file.display()))?;
    // The claims are read at the statement's checkpoint size; a statement
    // that does not parse is refused by the check below (after its
    // signature, so an unsigned file is reported as unsigned).
    let parsed = Statement::parse(&statement_bytes).ok();
    if let Some(s) = &parsed
        && s.period != period.text
    {
        bail!(
            "review refused: --period {} but the statement is for period {}; give the statement's period",
            period.text,
            s.period
        );
    }
    let cap = parsed.as_ref().map_or(0, |s| s.checkpoint.size);
    let facts = facts(&config, Some(period), cap)?;
    let origin = facts.origin.clone().unwrap_or_default();
    let reviewers: Vec<Approver> = config
        .config
        .review
        .reviewers
        .iter()
        .map(|r| r.0.clone())
        .collect();
    let verified = review::verify(
        &reviewers,
        &statement_bytes,
        &signature_bytes,
        &review::Ledger {
            origin: &origin,
            facts: &facts,
        },
        &operator.to_string(),
        Timestamp::now(),
    )
    .map_err(|e| anyhow::anyhow!("review refused: {e}"))?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let s = &verified.statement;
    rt.block_on(async {
        let trail = crate::store::open_trail(&config, &*store).await?;
        trail
            .record(EntryKind::Review {
                reviewer: operator.to_string(),
                scope: s.scope(),
                outcome: s.outcome(),
                note: s.note.clone(),
                signed: Some(Approval {
                    signer: verified.signer.principals[0].clone(),
                    allowed_signer: verified.signer.line.clone(),
                    statement: verified.statement_text.clone(),
                    signature: verified.signature_text.clone(),
                }),
            })
            .await
            .context("the review could not be recorded in the ledger; run the command again once the ledger is writable")?;
        anyhow::Ok(trail.close().await?)
    })?;
    println!(
        "Review of period {} recorded: entries {}..{} under checkpoint {}, {}; signed by {} (key {}).",
        s.period,
        s.entries.first_seq,
        s.entries.last_seq,
        s.checkpoint.size,
        s.outcome(),
        verified.signer.principals[0],
        verified.fingerprint
    );
    Ok(Outcome::Clean)
}

/// `review list [--json]`.
pub fn list(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let facts = facts(&config, None, 0)?;
    if args.json {
        println!("{}", json!(facts.reviews));
        return Ok(Outcome::Clean);
    }
    if facts.reviews.is_empty() {
        println!("no review recorded yet (review statement, then review sign; docs/review.md)");
    }
    for r in &facts.reviews {
        println!(
            "entry {} at {}: {} (signed by {}): {}",
            r.seq,
            super::short_time(&r.ts.to_string()),
            r.reviewer,
            r.signer.as_deref().unwrap_or("unsigned"),
            r.outcome
        );
        println!("    {}", r.scope);
        if !r.note.is_empty() {
            println!("    note: {}", r.note);
        }
    }
    Ok(Outcome::Clean)
}
