//! Today's procedure against a written copy: `sop --check FILE`, and the
//! rotation's warning that the approved SOP is stale.
//!
//! Only the procedure is compared — the lines from [`BEGIN`] to [`END`] —
//! so a copy generated at another time, by another build, or from a
//! configuration that differs only in comments or in what the procedure
//! does not mention, is the same procedure. The copy is compared in its
//! own format (Markdown, or HTML when it starts with a doctype), section
//! by section; each section that differs comes with a short unified diff.

use warden_config::LoadedConfig;

use super::model::{Section, build};
use super::{BEGIN, END, SopError, html, markdown};

/// Lines of diff shown per section at most.
const MAX_LINES: usize = 40;

/// One section that differs between the copy and today's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The section's heading as today's configuration renders it (or as
    /// the copy has it, for a section that is gone).
    pub section: String,
    /// `-` lines of the copy, `+` lines of today, ` ` context, `@@`
    /// between hunks.
    pub diff: Vec<String>,
}

/// Compares the procedure written in `copy` (the file's text; `what`
/// names it in errors) with `today`'s; empty when they are the same.
pub fn compare(copy: &str, today: &[Section], what: &str) -> Result<Vec<Difference>, SopError> {
    let copy = copy.replace("\r\n", "\n");
    let written = extract(&copy).ok_or_else(|| SopError::NoProcedure { what: what.into() })?;
    let is_html = copy
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("<!doctype html");
    let fresh = if is_html {
        html::procedure(today)
    } else {
        markdown::procedure(today)
    };
    let old = sections(&written);
    let new = sections(&lines(&fresh));
    let mut out = Vec::new();
    for (heading, new_lines) in &new {
        match old.iter().find(|(h, _)| h == heading) {
            Some((_, old_lines)) if old_lines == new_lines => {}
            Some((_, old_lines)) => out.push(Difference {
                section: title(heading),
                diff: unified(old_lines, new_lines),
            }),
            None => out.push(Difference {
                section: title(heading),
                diff: unified(&[], new_lines),
            }),
        }
    }
    for (heading, old_lines) in &old {
        if !new.iter().any(|(h, _)| h == heading) {
            out.push(Difference {
                section: format!("{} (no longer generated)", title(heading)),
                diff: unified(old_lines, &[]),
            });
        }
    }
    Ok(out)
}

/// Whether `approved` (the text of the approved copy) is stale against
/// the configuration `loaded`: the sections that differ, empty if none.
pub fn stale(
    loaded: &LoadedConfig,
    approved: &str,
    what: &str,
) -> Result<Vec<Difference>, SopError> {
    let today = build(loaded, "", "")?;
    compare(approved, &today.procedure, what)
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_string()).collect()
}

/// The lines from the BEGIN marker to the END marker, both included.
fn extract(text: &str) -> Option<Vec<String>> {
    let all = lines(text);
    let begin = all.iter().position(|l| l.trim() == BEGIN)?;
    let end = begin + all[begin..].iter().position(|l| l.trim() == END)?;
    Some(all[begin..=end].to_vec())
}

/// The procedure cut at its section headings (`## …` or `<h2 …`); the
/// lines before the first heading are a section of their own.
fn sections(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = vec![("(start)".into(), Vec::new())];
    for l in lines {
        if l.starts_with("## ") || l.starts_with("<h2") {
            out.push((heading_key(l), vec![l.clone()]));
        } else if let Some(last) = out.last_mut() {
            last.1.push(l.clone());
        }
    }
    out
}

/// A heading without its markup: `## 4. Schedule` and
/// `<h2 id="schedule">4. Schedule</h2>` are both `4. Schedule`.
fn heading_key(line: &str) -> String {
    if let Some(rest) = line.strip_prefix("## ") {
        return rest.trim().to_string();
    }
    let inner = line.split_once('>').map_or(line, |(_, r)| r);
    inner.trim_end_matches("</h2>").trim().to_string()
}

fn title(heading: &str) -> String {
    heading.replace("&amp;", "&")
}

/// A unified diff of two short line lists (longest common subsequence),
/// one line of context around each change, at most [`MAX_LINES`] lines.
fn unified(old: &[String], new: &[String]) -> Vec<String> {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (' ' | '-' | '+', line).
    let mut script = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            script.push((' ', &old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            script.push(('-', &old[i]));
            i += 1;
        } else {
            script.push(('+', &new[j]));
            j += 1;
        }
    }
    let changed: Vec<bool> = script.iter().map(|(k, _)| *k != ' ').collect();
    let near = |k: usize| {
        changed[k] || (k > 0 && changed[k - 1]) || changed.get(k + 1).copied().unwrap_or(false)
    };
    let mut out = Vec::new();
    let mut last_shown: Option<usize> = None;
    for (k, (kind, line)) in script.iter().enumerate() {
        if !near(k) {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != k) {
            out.push("@@".to_string());
        }
        out.push(format!("{kind}{line}"));
        last_shown = Some(k);
    }
    if out.len() > MAX_LINES {
        let more = out.len() - MAX_LINES;
        out.truncate(MAX_LINES);
        out.push(format!("… {more} more lines"));
    }
    out
}
