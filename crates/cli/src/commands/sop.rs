//! `sop`: the token-management SOP generated from `warden.toml`
//! (`governance::sop`, `docs/sop.md`). `--out DIR` writes it as Markdown
//! and as one self-contained HTML file; `--check FILE` compares the
//! procedure written in FILE with what today's configuration gives: exit 0
//! the same, 1 naming each section that differs with a short diff, 2 on
//! error. The SOP holds no secret: tokens appear nowhere in it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use governance::sop::{self, Difference, html, markdown};
use warden_config::LoadedConfig;

use crate::Outcome;
use crate::args::Args;
use crate::store::load_config;

/// `redcap-warden sop --out DIR | --check FILE`.
pub fn run(args: &Args, out: Option<&Path>, check: Option<&Path>) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    match (out, check) {
        (Some(dir), None) => write(&config, dir),
        (None, Some(file)) => check_file(&config, file),
        _ => bail!("give either --out DIR or --check FILE"),
    }
}

fn write(config: &LoadedConfig, dir: &Path) -> anyhow::Result<Outcome> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let doc = sop::build(config, env!("CARGO_PKG_VERSION"), &now.to_string())?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = file_stem(&doc.header.document_id);
    for (ext, text) in [("md", markdown::render(&doc)), ("html", html::render(&doc))] {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "{} version {} from {} (SHA-256 {}); have it approved, then name the approved copy in [sop] approved",
        doc.header.document_id,
        doc.header.version,
        config.path.display(),
        config.sha256
    );
    Ok(Outcome::Clean)
}

fn check_file(config: &LoadedConfig, file: &Path) -> anyhow::Result<Outcome> {
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "reading {} (give a file `redcap-warden sop --out` wrote)",
            file.display()
        )
    })?;
    let differences = sop::stale(config, &text, &file.display().to_string())?;
    if differences.is_empty() {
        println!(
            "{}: the procedure is what {} gives today",
            file.display(),
            config.path.display()
        );
        return Ok(Outcome::Clean);
    }
    println!("{}", report(file, config, &differences));
    Ok(Outcome::Findings)
}

/// What differs, for `sop --check` and the rotation's warning.
pub(super) fn report(file: &Path, config: &LoadedConfig, differences: &[Difference]) -> String {
    let mut out = format!(
        "{}: {} section(s) differ from what {} gives today (- the file, + today):",
        file.display(),
        differences.len(),
        config.path.display()
    );
    for d in differences {
        out.push_str(&format!("\n\n§ {}\n", d.section));
        for line in &d.diff {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out.push_str("\nfix: regenerate it with `redcap-warden sop --out DIR`, add a [[sop.revision]], and have it approved again");
    out
}

/// A document id as a file name: anything but letters, digits, `.`, `_`
/// and `-` becomes `_`.
fn file_stem(id: &str) -> String {
    let stem: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.trim_matches(['.', '_']).is_empty() {
        "sop".into()
    } else {
        stem
    }
}

/// Whether the approved SOP (`[sop] approved`) is stale: `None` when no
/// copy is named or it is current; otherwise the words for the rotation's
/// first ledger entry, after printing a warning with the differences. An
/// unreadable copy counts as stale (said so), never stops a rotation.
pub(super) fn stale_note(config: &LoadedConfig) -> Option<String> {
    let approved = config.config.sop.as_ref()?.approved.as_ref()?;
    let path: PathBuf = config.resolve(approved);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "warning: the approved SOP {} cannot be read ({e}); recording `sop: stale`",
                path.display()
            );
            return Some(format!(
                "sop: stale (approved copy {} unreadable)",
                approved.display()
            ));
        }
    };
    match sop::stale(config, &text, &path.display().to_string()) {
        Ok(d) if d.is_empty() => None,
        Ok(d) => {
            eprintln!(
                "warning: the approved SOP is stale\n{}",
                report(&path, config, &d)
            );
            let names: Vec<&str> = d.iter().map(|d| d.section.as_str()).collect();
            Some(format!(
                "sop: stale ({}: {})",
                approved.display(),
                names.join(", ")
            ))
        }
        Err(e) => {
            eprintln!("warning: {e}; recording `sop: stale`");
            Some(format!(
                "sop: stale ({} holds no procedure)",
                approved.display()
            ))
        }
    }
}
