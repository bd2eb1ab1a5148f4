//! Wire formats: `format`/`returnFormat` normalisation (§1.2), error bodies
//! (§1.6), rendering of exported rows and parsing of imported `data`.

use std::borrow::Cow;

use redcap::ApiError;
use serde_json::{Map, Value};

pub use redcap::Format;

/// An HTTP answer of the API.
///
/// The body is bytes so that Export File can answer a stored file as it is;
/// text answers hand over their `String`'s buffer (no copy), and the HTTP
/// layer takes the `Vec` as it is (no copy either).
pub struct Reply {
    pub status: u16,
    pub content_type: Cow<'static, str>,
    pub body: Vec<u8>,
    /// Further response headers (Export File's `Content-Security-Policy`).
    pub headers: Vec<(&'static str, String)>,
    /// A body written from a database snapshot after the request's lock is
    /// released (large exports); `body` is then empty.
    pub stream: Option<Streamed>,
}

/// Writes a streamed body from the snapshot's connection.
pub type WriteBody =
    Box<dyn FnOnce(&rusqlite::Connection, &mut dyn std::io::Write) -> anyhow::Result<()> + Send>;

/// A streamed answer: how to write it, the snapshot it reads (taken when
/// the request commits), and the log rows to write once the snapshot is
/// taken (rows that must not appear in the answer itself).
pub struct Streamed {
    pub write: WriteBody,
    pub snapshot: Option<crate::db::Snapshot>,
    pub log_after: Vec<crate::db::LogRow>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &self.body_text())
            .field("streamed", &self.stream.is_some())
            .finish()
    }
}

impl Reply {
    /// 200 with a body in `format`.
    pub fn ok(format: Format, body: String) -> Reply {
        Reply::text(200, format.content_type(), body)
    }

    /// Any status with a text body.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type: Cow::Borrowed(content_type),
            body: body.into_bytes(),
            headers: Vec::new(),
            stream: None,
        }
    }

    /// 200 in `format`, the body written later from a snapshot.
    pub fn streamed(format: Format, write: WriteBody, log_after: Vec<crate::db::LogRow>) -> Reply {
        Reply {
            status: 200,
            content_type: Cow::Borrowed(format.content_type()),
            body: Vec::new(),
            headers: Vec::new(),
            stream: Some(Streamed {
                write,
                snapshot: None,
                log_after,
            }),
        }
    }

    /// Writes a streamed body into `body` (in-process callers, tests).
    pub fn into_complete(mut self) -> anyhow::Result<Reply> {
        if let Some(s) = self.stream.take() {
            let snapshot = s
                .snapshot
                .ok_or_else(|| anyhow::anyhow!("a streamed answer without its snapshot"))?;
            (s.write)(snapshot.conn(), &mut self.body)?;
        }
        Ok(self)
    }

    /// The body as text (for tests and logs; binary bodies come out lossy).
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// An error in the shape `returnFormat` asks for (§1.6). JSON escapes `/`
    /// as PHP's `json_encode` does; XML does not escape the message.
    pub fn error(err: &ApiError, return_format: Format) -> Reply {
        let body = redcap::wire::error_body(&err.message(), return_format);
        Reply::text(err.status(), return_format.content_type(), body)
    }
}

/// JSON as PHP's `json_encode` writes it: `/` escaped as `\/`.
pub fn php_json(value: &Value) -> String {
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace('/', "\\/")
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}:{}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_value(out: &mut String, key: &str, value: &Value) {
    match value {
        Value::Object(m) => {
            out.push_str(&format!("<{key}>"));
            for (k, v) in m {
                xml_value(out, k, v);
            }
            out.push_str(&format!("</{key}>"));
        }
        v => out.push_str(&format!("<{key}>{}</{key}>", xml_escape(&cell(v)))),
    }
}

/// Renders exported rows. `empty_header` is the CSV header REDCap writes when
/// there are no rows; `root`/`item` name the XML elements.
pub fn render_rows(
    format: Format,
    rows: &[Map<String, Value>],
    empty_header: &[&str],
    root: &str,
    item: &str,
) -> String {
    match format {
        Format::Json => php_json(&Value::Array(
            rows.iter().cloned().map(Value::Object).collect(),
        )),
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            let header: Vec<String> = match rows.first() {
                Some(r) => r.keys().cloned().collect(),
                None => empty_header.iter().map(|s| (*s).to_owned()).collect(),
            };
            // Writing into a Vec cannot fail.
            let _ = w.write_record(&header);
            for r in rows {
                let _ = w.write_record(
                    header
                        .iter()
                        .map(|h| r.get(h).map(cell).unwrap_or_default()),
                );
            }
            String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
        }
        Format::Xml => {
            let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<{root}>\n");
            for r in rows {
                out.push_str(&format!("<{item}>"));
                for (k, v) in r {
                    xml_value(&mut out, k, v);
                }
                out.push_str(&format!("</{item}>\n"));
            }
            out.push_str(&format!("</{root}>\n"));
            out
        }
    }
}

/// Decodes a JSON `data` parameter; REDCap needs it to decode to a PHP array
/// (a JSON array or object) (§1.6). An object counts as one row.
pub fn decode_json(data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let value: Value = serde_json::from_str(data).map_err(|e| ApiError::BadJson {
        decoder: php_json_error(&e),
    })?;
    match value {
        Value::Array(items) => Ok(items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => m,
                // PHP would see a scalar row as an empty set of attributes.
                _ => Map::new(),
            })
            .collect()),
        Value::Object(m) => Ok(vec![m]),
        // json_decode succeeded but gave no array: PHP reports "No error".
        _ => Err(ApiError::BadJson {
            decoder: "No error".into(),
        }),
    }
}

/// The message PHP's `json_last_error_msg()` gives for a decoding failure.
fn php_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.contains("control character") {
        "Control character error, possibly incorrectly encoded".into()
    } else if text.contains("recursion limit") {
        "Maximum stack depth exceeded".into()
    } else {
        "Syntax error".into()
    }
}

/// Parses CSV `data`: a header line, then one row per line.
pub fn decode_csv(data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(data.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ApiError::BadCsv {
            details: e.to_string(),
        })?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| ApiError::BadCsv {
            details: e.to_string(),
        })?;
        let mut m = Map::new();
        for (h, v) in headers.iter().zip(rec.iter()) {
            m.insert(h.clone(), Value::String(v.to_owned()));
        }
        rows.push(m);
    }
    Ok(rows)
}

/// Parses `data` in `format` into rows (XML: `<root><item><k>v</k>…`).
pub fn decode_rows(format: Format, data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    match format {
        Format::Json => decode_json(data),
        Format::Csv => decode_csv(data),
        Format::Xml => crate::xml::decode_items(data),
    }
}

/// Writes exported rows one at a time in `format`, exactly as
/// [`render_rows`] writes them all at once (JSON as PHP's `json_encode`,
/// CSV with its header from the first row, XML items): memory holds one
/// row whatever the answer's size.
pub struct RowWriter<'w> {
    format: Format,
    out: &'w mut dyn std::io::Write,
    empty_header: &'w [&'w str],
    item: &'w str,
    root: &'w str,
    rows: usize,
    buf: Vec<u8>,
}

impl<'w> RowWriter<'w> {
    /// Starts the answer.
    pub fn begin(
        format: Format,
        out: &'w mut dyn std::io::Write,
        empty_header: &'w [&'w str],
        root: &'w str,
        item: &'w str,
    ) -> std::io::Result<RowWriter<'w>> {
        match format {
            Format::Json => out.write_all(b"[")?,
            Format::Xml => write!(
                out,
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<{root}>\n"
            )?,
            Format::Csv => {}
        }
        Ok(RowWriter {
            format,
            out,
            empty_header,
            item,
            root,
            rows: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// One row: its (column, value) cells in order.
    pub fn row<K: AsRef<str>, V: AsRef<str>>(&mut self, cells: &[(K, V)]) -> std::io::Result<()> {
        self.buf.clear();
        match self.format {
            Format::Json => {
                if self.rows > 0 {
                    self.buf.push(b',');
                }
                self.buf.push(b'{');
                for (i, (k, v)) in cells.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    php_json_str(&mut self.buf, k.as_ref());
                    self.buf.push(b':');
                    php_json_str(&mut self.buf, v.as_ref());
                }
                self.buf.push(b'}');
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .buffer_capacity(1024)
                    .from_writer(&mut self.buf);
                // Writing into a Vec cannot fail.
                if self.rows == 0 {
                    let _ = w.write_record(cells.iter().map(|(k, _)| k.as_ref()));
                }
                let _ = w.write_record(cells.iter().map(|(_, v)| v.as_ref()));
                let _ = w.flush();
            }
            Format::Xml => {
                self.buf.extend_from_slice(b"<");
                self.buf.extend_from_slice(self.item.as_bytes());
                self.buf.extend_from_slice(b">");
                for (k, v) in cells {
                    let (k, v) = (k.as_ref(), v.as_ref());
                    self.buf.extend_from_slice(format!("<{k}>").as_bytes());
                    self.buf.extend_from_slice(xml_escape(v).as_bytes());
                    self.buf.extend_from_slice(format!("</{k}>").as_bytes());
                }
                self.buf
                    .extend_from_slice(format!("</{}>\n", self.item).as_bytes());
            }
        }
        self.rows += 1;
        self.out.write_all(&self.buf)
    }

    /// Ends the answer.
    pub fn end(self) -> std::io::Result<()> {
        match self.format {
            Format::Json => self.out.write_all(b"]"),
            Format::Xml => writeln!(self.out, "</{}>", self.root),
            Format::Csv if self.rows == 0 => {
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(Vec::new());
                let _ = w.write_record(self.empty_header);
                self.out.write_all(&w.into_inner().unwrap_or_default())
            }
            Format::Csv => Ok(()),
        }
    }
}

/// One JSON string as PHP's json_encode writes it here (see `php_json`).
pub fn php_json_str(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
    if s.contains('/') {
        let escaped = String::from_utf8_lossy(&out[start..]).replace('/', "\\/");
        out.truncate(start);
        out.extend_from_slice(escaped.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_shapes() {
        let e = ApiError::NoApiExport;
        assert_eq!(
            Reply::error(&e, Format::Json).body_text(),
            r#"{"error":"You do not have API Export privileges"}"#
        );
        assert_eq!(
            Reply::error(&e, Format::Csv).body_text(),
            "ERROR: You do not have API Export privileges"
        );
        assert_eq!(
            Reply::error(&e, Format::Xml).body_text(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><hash><error>You do not have API Export privileges</error></hash>"
        );
        assert_eq!(Reply::error(&e, Format::Xml).status, 403);
        // PHP's json_encode escapes '/'.
        let slash = ApiError::DagMemberForbidden;
        assert!(
            Reply::error(&slash, Format::Json)
                .body_text()
                .contains("export\\/import\\/delete")
        );
    }

    #[test]
    fn format_normalisation() {
        assert_eq!(Format::from_param("json"), Format::Json);
        assert_eq!(Format::from_param("JSON"), Format::Xml);
        assert_eq!(Format::from_param(""), Format::Xml);
        assert_eq!(Format::return_format("", Format::Csv), Format::Csv);
        assert_eq!(Format::return_format("yaml", Format::Json), Format::Xml);
    }

    #[test]
    fn renders_rows() {
        let rows = vec![
            json!({"a": "1", "forms": {"f": 130, "g": 128}})
                .as_object()
                .unwrap()
                .clone(),
        ];
        assert_eq!(
            render_rows(Format::Csv, &rows, &[], "r", "i"),
            "a,forms\n1,\"f:130,g:128\"\n"
        );
        assert_eq!(
            render_rows(Format::Csv, &[], &["x", "y"], "r", "i"),
            "x,y\n"
        );
        assert!(
            render_rows(Format::Xml, &rows, &[], "users", "item")
                .contains("<item><a>1</a><forms><f>130</f><g>128</g></forms></item>")
        );
        assert_eq!(render_rows(Format::Json, &[], &[], "r", "i"), "[]");
    }

    #[test]
    fn decodes_data() {
        assert_eq!(decode_json(r#"[{"a":1}]"#).unwrap()[0]["a"], json!(1));
        assert_eq!(decode_json(r#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(
            decode_json("[{").unwrap_err(),
            ApiError::BadJson {
                decoder: "Syntax error".into()
            }
        );
        assert_eq!(
            decode_json("5").unwrap_err(),
            ApiError::BadJson {
                decoder: "No error".into()
            }
        );
        let rows = decode_csv("a,b\n1,\"x,y\"\n").unwrap();
        assert_eq!(rows[0]["b"], json!("x,y"));
        assert!(decode_csv("a,b\n1,2,3\n").is_err());
    }
}
