//! The Markdown rendering: the header as a table, then the procedure
//! between the [`BEGIN`] and [`END`] lines, one `## N. Title` per section.

use super::model::{Block, Document, Header, Section};
use super::{BEGIN, END};

/// The whole document.
pub fn render(doc: &Document) -> String {
    let mut out = header(&doc.header);
    out.push_str(&procedure(&doc.procedure));
    out
}

fn header(h: &Header) -> String {
    format!(
        "# {title}\n\n\
         | | |\n|---|---|\n\
         | Document id | {id} |\n\
         | Version | {version} |\n\
         | Generated | {generated} by redcap-warden {tool} |\n\
         | Configuration | `{path}`, SHA-256 `{sha}` |\n\n",
        title = h.title,
        id = cell(&h.document_id),
        version = cell(&h.version),
        generated = h.generated,
        tool = h.tool_version,
        path = h.config_path,
        sha = h.config_sha256,
    )
}

/// The procedure, markers included: what `sop --check` compares.
pub fn procedure(sections: &[Section]) -> String {
    let mut out = format!("{BEGIN}\n");
    for (n, s) in sections.iter().enumerate() {
        out.push_str(&format!("\n## {}. {}\n", n + 1, s.title));
        for b in &s.blocks {
            out.push('\n');
            block(&mut out, b);
        }
    }
    out.push_str(&format!("\n{END}\n"));
    out
}

fn block(out: &mut String, b: &Block) {
    match b {
        Block::Para(t) => out.push_str(&format!("{t}\n")),
        Block::Heading(t) => out.push_str(&format!("### {t}\n")),
        Block::Steps(items) => {
            for (i, t) in items.iter().enumerate() {
                out.push_str(&format!("{}. {t}\n", i + 1));
            }
        }
        Block::List(items) => {
            for t in items {
                out.push_str(&format!("- {t}\n"));
            }
        }
        Block::Table(head, rows) => {
            out.push_str(&row(head));
            out.push_str(&format!("|{}\n", "---|".repeat(head.len())));
            if rows.is_empty() {
                let mut empty = vec!["—".to_string(); head.len()];
                empty[0] = "(none)".into();
                out.push_str(&row(&empty));
            }
            for r in rows {
                out.push_str(&row(r));
            }
        }
    }
}

fn row(cells: &[String]) -> String {
    let cells: Vec<String> = cells
        .iter()
        .map(|c| if c.is_empty() { " ".into() } else { cell(c) })
        .collect();
    format!("| {} |\n", cells.join(" | "))
}

/// A table cell: a `|` would end it, a line break would end the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
