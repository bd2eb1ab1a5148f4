//! The HTML rendering: one self-contained file — inline style, no script,
//! no image, no link to anything outside it (addresses appear as text), so
//! it opens and prints the same on an offline machine and can be filed as
//! it is. The procedure sits between the [`BEGIN`] and [`END`] comments.

use super::model::{Block, Document, Header, Section};
use super::{BEGIN, END};

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45;color:#111}\
table{border-collapse:collapse;margin:.6em 0;width:100%}\
th,td{border:1px solid #999;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#eee}code{font-family:monospace;background:#f3f3f3;padding:0 .2em}\
td.sign{height:3em;min-width:10em}\
@media print{body{margin:0;max-width:none}h2{page-break-after:avoid}}";

/// The whole document.
pub fn render(doc: &Document) -> String {
    let h = &doc.header;
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title} ({id} v{version})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        title = esc(&h.title),
        id = esc(&h.document_id),
        version = esc(&h.version),
    );
    out.push_str(&header(h));
    out.push_str(&procedure(&doc.procedure));
    out.push_str("</body>\n</html>\n");
    out
}

fn header(h: &Header) -> String {
    format!(
        "<h1>{}</h1>\n<table>\n<tr><th>Document id</th><td>{}</td></tr>\n<tr><th>Version</th><td>{}</td></tr>\n<tr><th>Generated</th><td>{} by redcap-warden {}</td></tr>\n<tr><th>Configuration</th><td><code>{}</code>, SHA-256 <code>{}</code></td></tr>\n</table>\n",
        esc(&h.title),
        esc(&h.document_id),
        esc(&h.version),
        esc(&h.generated),
        esc(&h.tool_version),
        esc(&h.config_path),
        esc(&h.config_sha256),
    )
}

/// The procedure, markers included: what `sop --check` compares. One
/// element per line, so a difference shows as the lines that changed.
pub fn procedure(sections: &[Section]) -> String {
    let mut out = format!("{BEGIN}\n");
    for (n, s) in sections.iter().enumerate() {
        out.push_str(&format!(
            "<h2 id=\"{}\">{}. {}</h2>\n",
            s.id,
            n + 1,
            esc(s.title)
        ));
        for b in &s.blocks {
            block(&mut out, b, s.id == "signatures");
        }
    }
    out.push_str(&format!("{END}\n"));
    out
}

fn block(out: &mut String, b: &Block, signatures: bool) {
    match b {
        Block::Para(t) => out.push_str(&format!("<p>{}</p>\n", inline(t))),
        Block::Heading(t) => out.push_str(&format!("<h3>{}</h3>\n", inline(t))),
        Block::Steps(items) | Block::List(items) => {
            let tag = if matches!(b, Block::Steps(_)) {
                "ol"
            } else {
                "ul"
            };
            out.push_str(&format!("<{tag}>\n"));
            for t in items {
                out.push_str(&format!("<li>{}</li>\n", inline(t)));
            }
            out.push_str(&format!("</{tag}>\n"));
        }
        Block::Table(head, rows) => {
            out.push_str("<table>\n<tr>");
            for h in head {
                out.push_str(&format!("<th>{}</th>", inline(h)));
            }
            out.push_str("</tr>\n");
            if rows.is_empty() {
                out.push_str(&format!(
                    "<tr><td colspan=\"{}\">(none)</td></tr>\n",
                    head.len()
                ));
            }
            for r in rows {
                out.push_str("<tr>");
                for c in r {
                    if signatures && c.is_empty() {
                        out.push_str("<td class=\"sign\"></td>");
                    } else {
                        out.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
        }
    }
}

/// Escapes `text` and turns its `code` spans and **bold** spans into
/// elements; nothing else in the model is markup.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{}</code>", esc(part)));
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str(&format!("<strong>{}</strong>", esc(piece)));
                } else {
                    out.push_str(&esc(piece));
                }
            }
        }
    }
    out
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
