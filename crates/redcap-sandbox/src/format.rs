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
            let mut w = php_csv_writer(b',').from_writer(Vec::new());
            let header: Vec<String> = match rows.first() {
                Some(r) => r.keys().cloned().collect(),
                None => empty_header.iter().map(|s| (*s).to_owned()).collect(),
            };
            // Writing into a Vec cannot fail.
            let _ = w.write_record(header.iter().map(|h| php_csv_bytes(h, b',')));
            for r in rows {
                let _ = w.write_record(header.iter().map(|h| {
                    php_csv_bytes(&r.get(h).map(cell).unwrap_or_default(), b',').into_owned()
                }));
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
    let mut rows = Vec::new();
    for_each_json_row(data, |row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

/// What the top level of a JSON `data` turned out to be.
enum JsonTop {
    /// An array or an object: its rows were handed over.
    Rows,
    /// A scalar: json_decode succeeds but gives no array.
    Scalar,
}

/// Hands each row of a JSON array (or the one row of an object) to `f`
/// as it is parsed: memory holds one row. Errors are [`decode_json`]'s; an
/// error of `f` ends the parse and is answered as it is.
pub fn for_each_json_row(
    data: &str,
    mut f: impl FnMut(Map<String, Value>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    use serde::Deserializer as _;
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_str(data);
    let top = de
        .deserialize_any(JsonRows {
            f: &mut f,
            stopped: &mut stopped,
        })
        .and_then(|top| de.end().map(|()| top));
    if let Some(e) = stopped {
        return Err(e);
    }
    match top {
        Ok(JsonTop::Rows) => Ok(()),
        // json_decode succeeded but gave no array: PHP reports "No error".
        Ok(JsonTop::Scalar) => Err(ApiError::BadJson {
            decoder: "No error".into(),
        }),
        Err(e) => Err(ApiError::BadJson {
            decoder: php_json_error(&e),
        }),
    }
}

/// Checks a JSON `data` as [`decode_json`] would, keeping nothing: the
/// same parser path (a value parsed as `Value` is, then dropped).
fn check_json(data: &str) -> Result<(), ApiError> {
    let parsed: Result<Discard, _> = serde_json::from_str(data);
    if let Err(e) = parsed {
        return Err(ApiError::BadJson {
            decoder: php_json_error(&e),
        });
    }
    match data
        .trim_start_matches([' ', '\n', '\t', '\r'])
        .as_bytes()
        .first()
    {
        Some(b'[' | b'{') => Ok(()),
        _ => Err(ApiError::BadJson {
            decoder: "No error".into(),
        }),
    }
}

/// The top-level visitor of [`for_each_json_row`].
struct JsonRows<'f, F> {
    f: &'f mut F,
    stopped: &'f mut Option<ApiError>,
}

impl<'de, F> serde::de::Visitor<'de> for JsonRows<'_, F>
where
    F: FnMut(Map<String, Value>) -> Result<(), ApiError>,
{
    type Value = JsonTop;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonTop, A::Error> {
        while let Some(item) = seq.next_element::<Value>()? {
            let row = match item {
                Value::Object(m) => m,
                // PHP would see a scalar row as an empty set of attributes.
                _ => Map::new(),
            };
            if let Err(e) = (self.f)(row) {
                *self.stopped = Some(e);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(JsonTop::Rows)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<JsonTop, A::Error> {
        use serde::Deserialize as _;
        let row = Map::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        if let Err(e) = (self.f)(row) {
            *self.stopped = Some(e);
            return Err(serde::de::Error::custom("stopped"));
        }
        Ok(JsonTop::Rows)
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonTop, E> {
        Ok(JsonTop::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<JsonTop, E> {
        Ok(JsonTop::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<JsonTop, E> {
        Ok(JsonTop::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<JsonTop, E> {
        Ok(JsonTop::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<JsonTop, E> {
        Ok(JsonTop::Scalar)
    }
    fn visit_unit<E>(self) -> Result<JsonTop, E> {
        Ok(JsonTop::Scalar)
    }
}

/// Any JSON value, parsed through the path `Value` takes, kept nowhere.
struct Discard;

impl<'de> serde::Deserialize<'de> for Discard {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Discard, D::Error> {
        d.deserialize_any(DiscardVisitor)
    }
}

struct DiscardVisitor;

impl<'de> serde::de::Visitor<'de> for DiscardVisitor {
    type Value = Discard;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Discard, E> {
        Ok(Discard)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Discard, E> {
        Ok(Discard)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Discard, E> {
        Ok(Discard)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Discard, E> {
        Ok(Discard)
    }
    fn visit_str<E>(self, _: &str) -> Result<Discard, E> {
        Ok(Discard)
    }
    fn visit_unit<E>(self) -> Result<Discard, E> {
        Ok(Discard)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Discard, A::Error> {
        while seq.next_element::<Discard>()?.is_some() {}
        Ok(Discard)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Discard, A::Error> {
        while map.next_entry::<Discard, Discard>()?.is_some() {}
        Ok(Discard)
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
    let mut rows = Vec::new();
    for_each_csv_row(data, |row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(rows)
}

/// Hands each CSV row to `f` as it is read (memory holds one row).
pub fn for_each_csv_row(
    data: &str,
    mut f: impl FnMut(Map<String, Value>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    csv_records(data, |headers, rec| {
        let mut m = Map::new();
        for (h, v) in headers.iter().zip(rec.iter()) {
            m.insert(h.clone(), Value::String(v.to_owned()));
        }
        f(m)
    })
}

/// The CSV reader of [`decode_csv`]: the trimmed header, then each record.
fn csv_records(
    data: &str,
    mut f: impl FnMut(&[String], &csv::StringRecord) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
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
    let mut rec = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => f(&headers, &rec)?,
            Ok(false) => return Ok(()),
            Err(e) => {
                return Err(ApiError::BadCsv {
                    details: e.to_string(),
                });
            }
        }
    }
}

/// Parses `data` in `format` into rows (XML: `<root><item><k>v</k>…`).
pub fn decode_rows(format: Format, data: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    match format {
        Format::Json => decode_json(data),
        Format::Csv => decode_csv(data),
        Format::Xml => crate::xml::decode_items(data),
    }
}

/// Hands each row of `data` to `f` as it is parsed, in order: what
/// [`decode_rows`] answers, one row at a time (memory holds one row).
/// Call [`check_rows`] first when the decoding errors must come before
/// anything `f` does.
pub fn for_each_row(
    format: Format,
    data: &str,
    f: impl FnMut(Map<String, Value>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    match format {
        Format::Json => for_each_json_row(data, f),
        Format::Csv => for_each_csv_row(data, f),
        Format::Xml => crate::xml::for_each_item(data, f),
    }
}

/// Answers the error [`decode_rows`] would give for `data`, keeping no
/// rows (REDCap decodes `data` before it looks at rights: §1.3 step 5).
pub fn check_rows(format: Format, data: &str) -> Result<(), ApiError> {
    match format {
        Format::Json => check_json(data),
        Format::Csv => csv_records(data, |_, _| Ok(())),
        Format::Xml => crate::xml::check(data),
    }
}

/// Writes exported rows one at a time in `format`, exactly as
/// [`render_rows`] writes them all at once (JSON as PHP's `json_encode`,
/// CSV with its header from the first row, XML items): memory holds one
/// row whatever the answer's size.
pub struct RowWriter<'w> {
    format: Format,
    out: Sink<'w>,
    empty_header: &'w [&'w str],
    item: &'w str,
    root: &'w str,
    rows: usize,
    buf: Vec<u8>,
    /// Each column's name as last written, and its encoding (`"name":` in
    /// JSON, `<name>` and `</name>` in XML): a row's keys are the previous
    /// row's nearly always, so they are encoded once.
    keys: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Columns whose whole-number values JSON writes as numbers
    /// (`redcap_repeat_instance`), not strings.
    numeric: &'static [&'static str],
    /// A CSV header other than the columns' names (`rawOrLabelHeaders`).
    csv_header: Option<Vec<String>>,
    /// The CSV delimiter (fields holding it are quoted).
    delimiter: u8,
    /// Export Logging's shapes (`API/log/export.php`): XML values in
    /// CDATA, CSV values sanitised as `arrayToCsv` does, an empty CSV the
    /// header without a line break.
    log_shapes: bool,
}

/// A CSV writer that writes each field as it is given: fields are quoted
/// beforehand by [`php_csv_field`], as PHP's `fputcsv` (which REDCap
/// writes every CSV answer with) quotes them.
fn php_csv_writer(delimiter: u8) -> csv::WriterBuilder {
    let mut b = csv::WriterBuilder::new();
    b.terminator(csv::Terminator::Any(b'\n'))
        .delimiter(delimiter)
        .quote_style(csv::QuoteStyle::Never);
    b
}

/// A CSV field as PHP's `fputcsv($fp, $line, $delimiter, '"', '')` writes
/// it: enclosed in `"` (inner `"` doubled) when it holds the delimiter,
/// `"`, a line break, a tab or a space — so `Event 1` is `"Event 1"` —,
/// else as it is.
pub fn php_csv_field(v: &str, delimiter: u8) -> Cow<'_, str> {
    if v.bytes()
        .any(|b| matches!(b, b'"' | b'\n' | b'\r' | b'\t' | b' ') || b == delimiter)
    {
        Cow::Owned(format!("\"{}\"", v.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(v)
    }
}

/// [`php_csv_field`] as the bytes a `csv::Writer` takes.
fn php_csv_bytes(v: &str, delimiter: u8) -> Cow<'_, [u8]> {
    match php_csv_field(v, delimiter) {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// Where a [`RowWriter`] writes: CSV through one `csv::Writer` for the
/// whole answer (its buffer and quoting rules), the others as they are.
enum Sink<'w> {
    Plain(&'w mut dyn std::io::Write),
    Csv(Box<csv::Writer<&'w mut dyn std::io::Write>>),
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
        let out = match format {
            Format::Json => {
                out.write_all(b"[")?;
                Sink::Plain(out)
            }
            Format::Xml => {
                write!(
                    out,
                    "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<{root}>\n"
                )?;
                Sink::Plain(out)
            }
            Format::Csv => Sink::Csv(Box::new(
                php_csv_writer(b',')
                    .buffer_capacity(64 * 1024)
                    .from_writer(out),
            )),
        };
        Ok(RowWriter {
            format,
            out,
            empty_header,
            item,
            root,
            rows: 0,
            buf: Vec::with_capacity(4096),
            keys: Vec::new(),
            numeric: &[],
            csv_header: None,
            delimiter: b',',
            log_shapes: false,
        })
    }

    /// CSV with this delimiter instead of `,` (before any row).
    pub fn delimiter(mut self, delimiter: u8) -> std::io::Result<RowWriter<'w>> {
        if let Sink::Csv(w) = self.out {
            let out = w.into_inner().map_err(|e| e.into_error())?;
            self.out = Sink::Csv(Box::new(
                php_csv_writer(delimiter)
                    .buffer_capacity(64 * 1024)
                    .from_writer(out),
            ));
            self.delimiter = delimiter;
        }
        Ok(self)
    }

    /// Writes Export Logging's shapes (see `log_shapes`).
    pub fn log_shapes(mut self) -> RowWriter<'w> {
        self.log_shapes = true;
        self
    }

    /// Writes this CSV header instead of the columns' names.
    pub fn csv_header(mut self, header: Vec<String>) -> RowWriter<'w> {
        self.csv_header = Some(header);
        self
    }

    /// Writes the whole-number values of these columns as JSON numbers.
    pub fn numeric(mut self, columns: &'static [&'static str]) -> RowWriter<'w> {
        self.numeric = columns;
        self
    }

    /// The encoding of column `i` named `k` (see `keys`).
    fn key(&mut self, i: usize, k: &str) -> usize {
        if self.keys.len() <= i {
            self.keys.resize_with(i + 1, Default::default);
        }
        let entry = &mut self.keys[i];
        if entry.0 != k || entry.1.is_empty() {
            entry.0.clear();
            entry.0.push_str(k);
            entry.1.clear();
            entry.2.clear();
            match self.format {
                Format::Json => {
                    php_json_str(&mut entry.1, k);
                    entry.1.push(b':');
                }
                _ => {
                    entry.1.extend_from_slice(format!("<{k}>").as_bytes());
                    entry.2.extend_from_slice(format!("</{k}>").as_bytes());
                }
            }
        }
        i
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
                    let key = self.key(i, k.as_ref());
                    self.buf.extend_from_slice(&self.keys[key].1);
                    let v = v.as_ref();
                    if !self.numeric.is_empty()
                        && !v.is_empty()
                        && v.bytes().all(|b| b.is_ascii_digit())
                        && self.numeric.contains(&k.as_ref())
                    {
                        self.buf.extend_from_slice(v.as_bytes());
                    } else {
                        php_json_str(&mut self.buf, v);
                    }
                }
                self.buf.push(b'}');
            }
            Format::Csv => {
                if let Sink::Csv(w) = &mut self.out {
                    let d = self.delimiter;
                    if self.rows == 0 {
                        match &self.csv_header {
                            Some(h) => w.write_record(h.iter().map(|k| php_csv_bytes(k, d)))?,
                            None => w.write_record(
                                cells.iter().map(|(k, _)| php_csv_bytes(k.as_ref(), d)),
                            )?,
                        }
                    }
                    if self.log_shapes {
                        // REDCap's arrayToCsv: a value starting with `=`,
                        // `-`, `+` or `@` gets a tab before it (against CSV
                        // injection).
                        w.write_record(cells.iter().map(|(_, v)| {
                            let v = v.as_ref();
                            if v.starts_with(['=', '-', '+', '@']) {
                                php_csv_bytes(&format!("\t{v}"), d).into_owned().into()
                            } else {
                                php_csv_bytes(v, d)
                            }
                        }))?;
                    } else {
                        w.write_record(cells.iter().map(|(_, v)| php_csv_bytes(v.as_ref(), d)))?;
                    }
                }
            }
            Format::Xml => {
                self.buf.extend_from_slice(b"<");
                self.buf.extend_from_slice(self.item.as_bytes());
                self.buf.extend_from_slice(b">");
                for (i, (k, v)) in cells.iter().enumerate() {
                    let key = self.key(i, k.as_ref());
                    self.buf.extend_from_slice(&self.keys[key].1);
                    let v = v.as_ref();
                    if self.log_shapes && !v.is_empty() {
                        // REDCap's Export Logging: the value as it is in
                        // CDATA (`]]>` split across two sections).
                        self.buf.extend_from_slice(b"<![CDATA[");
                        self.buf
                            .extend_from_slice(v.replace("]]>", "]]]]><![CDATA[>").as_bytes());
                        self.buf.extend_from_slice(b"]]>");
                    } else {
                        xml_escape_into(&mut self.buf, v);
                    }
                    self.buf.extend_from_slice(&self.keys[key].2);
                }
                self.buf.extend_from_slice(b"</");
                self.buf.extend_from_slice(self.item.as_bytes());
                self.buf.extend_from_slice(b">\n");
            }
        }
        self.rows += 1;
        match &mut self.out {
            Sink::Plain(out) => out.write_all(&self.buf),
            Sink::Csv(_) => Ok(()),
        }
    }

    /// Ends the answer.
    pub fn end(self) -> std::io::Result<()> {
        match self.out {
            Sink::Plain(out) if self.format == Format::Json => out.write_all(b"]"),
            Sink::Plain(out) => writeln!(out, "</{}>", self.root),
            Sink::Csv(mut w) => {
                if self.rows == 0 && self.log_shapes {
                    // Export Logging answers no row with its header
                    // alone, without a line break.
                    w.flush()?;
                    let out = w.into_inner().map_err(|e| e.into_error())?;
                    return out.write_all(self.empty_header.join(",").as_bytes());
                }
                if self.rows == 0 {
                    let d = self.delimiter;
                    match &self.csv_header {
                        Some(h) => w.write_record(h.iter().map(|k| php_csv_bytes(k, d)))?,
                        None => {
                            w.write_record(self.empty_header.iter().map(|k| php_csv_bytes(k, d)))?
                        }
                    }
                }
                w.flush()
            }
        }
    }
}

/// One JSON string as PHP's json_encode writes it here (see `php_json`:
/// serde_json's escapes, and `/` as `\/`), straight into `out`.
pub fn php_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'/' => b"\\/",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// [`xml_escape`], straight into `out`.
fn xml_escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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

    /// The streamed string encoder writes what php_json writes.
    #[test]
    fn php_json_str_matches_php_json() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀 a/b \\ \"");
        for s in [all.as_str(), "", "plain", "/", "\u{7f}\u{1f}"] {
            let mut out = Vec::new();
            php_json_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                php_json(&json!(s)),
                "{s:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn php_json_str_matches_php_json_on_any_string(s in ".*") {
            let mut out = Vec::new();
            php_json_str(&mut out, &s);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), php_json(&json!(s)));
        }
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
