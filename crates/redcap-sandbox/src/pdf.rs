//! A small PDF writer: text-only A4 pages in the standard Type 1 fonts
//! Helvetica and Helvetica-Bold (no font files to embed), laid out line by
//! line with word wrapping, written as PDF 1.3 with a correct
//! cross-reference table.
//!
//! The file is laid out as FPDF — REDCap's PDF library — lays out its own:
//! `%PDF-1.3`, then each page and its content stream from object 3 on, the
//! page tree as object 1, the shared resources as object 2, then the fonts,
//! the document information and the catalog. So it begins
//! `%PDF-1.3\n3 0 obj\n`, as PyCap's doctest of `export_pdf` shows REDCap's
//! answer.
//!
//! Text is written in WinAnsiEncoding (Latin-1 for the accented letters);
//! a character outside it is written as `?`.

use std::fmt::Write as _;

/// Page size: A4 in points.
const PAGE_WIDTH: f64 = 595.28;
const PAGE_HEIGHT: f64 = 841.89;
const MARGIN: f64 = 42.52;
/// The lowest baseline of the body (the footer is below).
const BOTTOM: f64 = 60.0;

/// A font of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Font {
    Regular,
    Bold,
}

impl Font {
    fn resource(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }
}

/// One piece of text placed on a page.
#[derive(Debug, Clone)]
struct Text {
    x: f64,
    y: f64,
    font: Font,
    size: f64,
    text: String,
}

/// A document being laid out: a cursor that moves down the page and starts
/// a new one when the page is full.
pub struct Document {
    title: String,
    pages: Vec<Vec<Text>>,
    y: f64,
    /// A header line repeated at the top of every page.
    header: String,
}

/// Helvetica's advance widths (per 1000 units of the font size) for the
/// printable ASCII characters, from the standard font metrics (AFM) of
/// Helvetica; other characters count as an average letter.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// The width of `text` in points (bold counted about 5% wider).
fn width(text: &str, font: Font, size: f64) -> f64 {
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            32..=126 => u32::from(HELVETICA[(c as u32 - 32) as usize]),
            _ => 556,
        })
        .sum();
    let w = f64::from(units) * size / 1000.0;
    if font == Font::Bold { w * 1.05 } else { w }
}

/// Splits `text` into lines no wider than `max` points, at spaces (a word
/// longer than a line is cut).
fn wrap(text: &str, font: Font, size: f64, max: f64) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if width(&candidate, font, size) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // A word wider than the line: cut it.
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if width(&piece, font, size) > max && piece.chars().count() > 1 {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        lines.push(line);
    }
    lines
}

impl Document {
    /// An empty document; `header` is printed at the top of each page.
    pub fn new(title: &str, header: &str) -> Document {
        Document {
            title: title.to_owned(),
            pages: Vec::new(),
            y: 0.0,
            header: header.to_owned(),
        }
    }

    /// Starts a new page.
    pub fn page(&mut self) {
        let mut page = Vec::new();
        if !self.header.is_empty() {
            let w = width(&self.header, Font::Regular, 8.0);
            page.push(Text {
                x: PAGE_WIDTH - MARGIN - w,
                y: PAGE_HEIGHT - 28.0,
                font: Font::Regular,
                size: 8.0,
                text: self.header.clone(),
            });
        }
        self.pages.push(page);
        self.y = PAGE_HEIGHT - MARGIN - 12.0;
    }

    /// Writes `text` wrapped at `indent` points from the margin, starting
    /// a page when needed.
    pub fn text(&mut self, text: &str, font: Font, size: f64, indent: f64) {
        let lines = wrap(text, font, size, PAGE_WIDTH - 2.0 * MARGIN - indent);
        for line in lines {
            self.line(&line, font, size, indent);
        }
    }

    /// Writes two columns: `left` (wrapped to the left part) and `right`
    /// (wrapped to the right part), side by side.
    pub fn columns(&mut self, left: &str, right: &str, size: f64) {
        let usable = PAGE_WIDTH - 2.0 * MARGIN;
        let left_w = usable * 0.55;
        let gap = 12.0;
        let l = wrap(left, Font::Regular, size, left_w);
        let r = wrap(right, Font::Regular, size, usable - left_w - gap);
        let n = l.len().max(r.len());
        for i in 0..n {
            self.room(size);
            let y = self.y;
            let page = self.pages.last_mut().expect("a page was started");
            if let Some(t) = l.get(i).filter(|t| !t.is_empty()) {
                page.push(Text {
                    x: MARGIN,
                    y,
                    font: Font::Regular,
                    size,
                    text: t.clone(),
                });
            }
            if let Some(t) = r.get(i).filter(|t| !t.is_empty()) {
                page.push(Text {
                    x: MARGIN + left_w + gap,
                    y,
                    font: Font::Regular,
                    size,
                    text: t.clone(),
                });
            }
            self.y -= size * 1.35;
        }
    }

    /// Moves down by `points`.
    pub fn space(&mut self, points: f64) {
        self.y -= points;
    }

    fn room(&mut self, size: f64) {
        if self.pages.is_empty() || self.y - size < BOTTOM {
            self.page();
        }
    }

    fn line(&mut self, line: &str, font: Font, size: f64, indent: f64) {
        self.room(size);
        let y = self.y;
        if !line.is_empty() {
            self.pages
                .last_mut()
                .expect("a page was started")
                .push(Text {
                    x: MARGIN + indent,
                    y,
                    font,
                    size,
                    text: line.to_owned(),
                });
        }
        self.y -= size * 1.35;
    }

    /// The PDF file: `created` is the creation time `YYYYMMDDHHMMSS`.
    pub fn finish(mut self, created: &str) -> Vec<u8> {
        if self.pages.is_empty() {
            self.page();
        }
        let count = self.pages.len();
        // Page numbers in the footer.
        for (i, page) in self.pages.iter_mut().enumerate() {
            let label = format!("Page {}", i + 1);
            let w = width(&label, Font::Regular, 8.0);
            page.push(Text {
                x: PAGE_WIDTH - MARGIN - w,
                y: 28.0,
                font: Font::Regular,
                size: 8.0,
                text: label,
            });
        }
        let mut out: Vec<u8> = Vec::new();
        // offsets[n] = where object n begins.
        let fonts = 3 + 2 * count;
        let info = fonts + 2;
        let catalog = info + 1;
        let mut offsets = vec![0usize; catalog + 1];
        out.extend_from_slice(b"%PDF-1.3\n");
        for (i, page) in self.pages.iter().enumerate() {
            let n = 3 + 2 * i;
            offsets[n] = out.len();
            let _ = write!(
                Out(&mut out),
                "{n} 0 obj\n<</Type /Page\n/Parent 1 0 R\n/Resources 2 0 R\n/MediaBox [0 0 {PAGE_WIDTH:.2} {PAGE_HEIGHT:.2}]\n/Contents {} 0 R>>\nendobj\n",
                n + 1
            );
            let stream = content(page);
            offsets[n + 1] = out.len();
            let _ = write!(
                Out(&mut out),
                "{} 0 obj\n<</Length {}>>\nstream\n",
                n + 1,
                stream.len()
            );
            out.extend_from_slice(&stream);
            out.extend_from_slice(b"\nendstream\nendobj\n");
        }
        offsets[1] = out.len();
        let kids: Vec<String> = (0..count).map(|i| format!("{} 0 R", 3 + 2 * i)).collect();
        let _ = write!(
            Out(&mut out),
            "1 0 obj\n<</Type /Pages\n/Kids [{}]\n/Count {count}\n>>\nendobj\n",
            kids.join(" ")
        );
        for (k, name) in ["Helvetica", "Helvetica-Bold"].iter().enumerate() {
            offsets[fonts + k] = out.len();
            let _ = write!(
                Out(&mut out),
                "{} 0 obj\n<</Type /Font\n/BaseFont /{name}\n/Subtype /Type1\n/Encoding /WinAnsiEncoding\n>>\nendobj\n",
                fonts + k
            );
        }
        offsets[2] = out.len();
        let _ = write!(
            Out(&mut out),
            "2 0 obj\n<<\n/ProcSet [/PDF /Text]\n/Font <<\n/F1 {fonts} 0 R\n/F2 {} 0 R\n>>\n>>\nendobj\n",
            fonts + 1
        );
        offsets[info] = out.len();
        let _ = write!(
            Out(&mut out),
            "{info} 0 obj\n<<\n/Producer (redcap-sandbox)\n/Title "
        );
        literal(&mut out, &self.title);
        let _ = write!(Out(&mut out), "\n/CreationDate (D:{created})\n>>\nendobj\n");
        offsets[catalog] = out.len();
        let _ = write!(
            Out(&mut out),
            "{catalog} 0 obj\n<<\n/Type /Catalog\n/Pages 1 0 R\n>>\nendobj\n"
        );
        let xref = out.len();
        let _ = write!(
            Out(&mut out),
            "xref\n0 {}\n0000000000 65535 f \n",
            catalog + 1
        );
        for offset in &offsets[1..] {
            let _ = writeln!(Out(&mut out), "{offset:010} 00000 n ");
        }
        let _ = write!(
            Out(&mut out),
            "trailer\n<<\n/Size {}\n/Root {catalog} 0 R\n/Info {info} 0 R\n>>\nstartxref\n{xref}\n%%EOF\n",
            catalog + 1
        );
        out
    }
}

/// `fmt::Write` into bytes.
struct Out<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A page's content stream.
fn content(page: &[Text]) -> Vec<u8> {
    let mut s = Vec::new();
    for t in page {
        let _ = write!(
            Out(&mut s),
            "BT /{} {:.2} Tf {:.2} {:.2} Td ",
            t.font.resource(),
            t.size,
            t.x,
            t.y
        );
        literal(&mut s, &t.text);
        s.extend_from_slice(b" Tj ET\n");
    }
    if s.last() == Some(&b'\n') {
        s.pop();
    }
    s
}

/// A PDF literal string in WinAnsiEncoding: `(`, `)` and `\` escaped,
/// Latin-1 letters as octal escapes, anything else `?`.
fn literal(out: &mut Vec<u8>, text: &str) {
    out.push(b'(');
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            ' '..='~' => out.push(c as u8),
            '\t' => out.push(b' '),
            '\u{a0}'..='\u{ff}' => {
                let _ = write!(Out(out), "\\{:03o}", c as u32);
            }
            _ => out.push(b'?'),
        }
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cross-reference table points at each object's `N 0 obj`.
    #[test]
    fn xref_offsets_point_at_their_objects() {
        let mut d = Document::new("Title (x)", "Project");
        for i in 0..120 {
            d.text(
                &format!("Line {i} with some words (and brackets) é"),
                Font::Regular,
                10.0,
                0.0,
            );
        }
        let pdf = d.finish("20260101000000");
        assert!(pdf.starts_with(b"%PDF-1.3\n3 0 obj\n"));
        let text = String::from_utf8_lossy(&pdf).into_owned();
        let start: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|l| l.parse().ok())
            .expect("startxref");
        assert!(text[start..].starts_with("xref\n0 "));
        let entries: Vec<&str> = text[start..]
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .collect();
        assert!(entries.len() > 6);
        for (i, e) in entries.iter().enumerate() {
            let offset: usize = e[..10].parse().unwrap();
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj\n", i + 1)),
                "object {} at {offset}",
                i + 1
            );
        }
        assert!(text.contains("(Line 119 with some words \\(and brackets\\) \\351) Tj"));
        assert!(text.contains("(Page 3) Tj"));
    }

    #[test]
    fn long_words_and_lines_wrap() {
        let lines = wrap(&"word ".repeat(60), Font::Regular, 10.0, 200.0);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| width(l, Font::Regular, 10.0) <= 200.0));
        let cut = wrap(&"x".repeat(300), Font::Bold, 10.0, 100.0);
        assert!(cut.len() > 3);
    }
}
