//! Reading a record export as it streams past: which records left, and
//! whether the answer carries the Data Access Group column.
//!
//! A [`Scanner`] is fed REDCap's answer chunk by chunk, in any chunking,
//! and does constant work per byte: it never holds the answer, only the
//! record ids (compactly, [`ledger::RecordIds`]) and the field it is in.
//! It reads every shape REDCap produces for `content=record`:
//!
//! - **flat** json, csv (REDCap's quoting, any `csvDelimiter`, raw or
//!   label headers) and xml (CDATA, entities), longitudinal and repeating
//!   rows included: the id is the value of the project's record id field —
//!   known from the project's metadata, never from a row's first key, which
//!   for an export of some `fields` is another field's value (patient data
//!   in the ledger);
//! - **eav** json, csv and xml: the `record` of every row;
//! - **odm**: the `SubjectKey` of every `SubjectData`.
//!
//! Ids keep REDCap's order; repeats are dropped in O(1) per row because
//! REDCap sends all rows of a record together (by record, then arm, event
//! and instance: `redcap-api.md` §6.1) — an answer that ever interleaved
//! records would list a record once per run of its rows, never miss one.
//!
//! For the DAG guard the scanner also says when it has seen the answer's
//! *head* — the CSV header, the first JSON object, the first XML item —
//! and whether the head has a `redcap_data_access_group` column; the
//! gateway holds back only that much before it decides.

use ledger::RecordIds;

/// The column REDCap adds for `exportDataAccessGroups` when the caller is
/// not restricted to a DAG.
pub const DAG_COLUMN: &str = "redcap_data_access_group";

/// The project's record id field (its first field), as the metadata gives
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIdField {
    /// The variable name (`record_id`).
    pub name: String,
    /// Its label, which CSV label headers use instead.
    pub label: String,
}

/// What an export answer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `format=json`.
    Json,
    /// `format=csv` with this delimiter.
    Csv(u8),
    /// `format=xml`.
    Xml,
    /// `format=odm`.
    Odm,
}

/// What the head of the answer showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Not all of it has arrived yet.
    Pending,
    /// No DAG column (or no rows at all).
    Clean,
    /// The DAG column is there: the caller is not restricted to its DAG.
    DagColumn,
}

/// A record export being read.
pub struct Scanner {
    reader: Reader,
    ids: RecordIds,
    head: Head,
    /// Set when the answer does not parse as its format: from then on no
    /// more ids are read (and the guard, if still undecided, cannot pass).
    broken: bool,
}

enum Reader {
    Json(JsonReader),
    Csv(Box<CsvReader>),
    Xml(XmlReader),
}

/// Which column or key holds the id.
#[derive(Clone)]
enum IdColumn {
    /// EAV: `record`.
    Record,
    /// Flat: the record id field (by name, or by label in CSV label
    /// headers); `None` when the metadata is not known: no ids then.
    Field(Option<RecordIdField>),
}

impl IdColumn {
    fn is(&self, name: &[u8]) -> bool {
        match self {
            IdColumn::Record => name == b"record",
            IdColumn::Field(Some(f)) => name == f.name.as_bytes(),
            IdColumn::Field(None) => false,
        }
    }
}

impl Scanner {
    /// A scanner for an answer of this shape; `eav` for `type=eav`.
    pub fn new(shape: Shape, eav: bool, field: Option<RecordIdField>) -> Scanner {
        let column = if eav {
            IdColumn::Record
        } else {
            IdColumn::Field(field)
        };
        let reader = match shape {
            Shape::Json => Reader::Json(JsonReader::new(column, eav)),
            Shape::Csv(delimiter) => Reader::Csv(Box::new(CsvReader::new(column, eav, delimiter))),
            Shape::Xml => Reader::Xml(XmlReader::new(Some(column), eav)),
            Shape::Odm => Reader::Xml(XmlReader::new(None, eav)),
        };
        Scanner {
            reader,
            ids: RecordIds::new(),
            head: Head::Pending,
            broken: false,
        }
    }

    /// Reads the next bytes of the answer.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.broken {
            return;
        }
        let mut out = Out {
            ids: &mut self.ids,
            head: &mut self.head,
        };
        let ok = match &mut self.reader {
            Reader::Json(r) => r.feed(chunk, &mut out),
            Reader::Csv(r) => r.feed(chunk, &mut out),
            Reader::Xml(r) => r.feed(chunk, &mut out),
        };
        if !ok {
            self.broken = true;
        }
    }

    /// The answer has ended.
    pub fn finish(&mut self) {
        if self.broken {
            return;
        }
        let mut out = Out {
            ids: &mut self.ids,
            head: &mut self.head,
        };
        let ok = match &mut self.reader {
            Reader::Json(r) => r.finish(),
            Reader::Csv(r) => r.finish(&mut out),
            Reader::Xml(r) => r.finish(),
        };
        if !ok {
            self.broken = true;
        }
        if self.head == Head::Pending && !self.broken {
            // No rows at all: nothing to leak.
            self.head = Head::Clean;
        }
    }

    /// What the head showed so far.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Whether the answer stopped parsing as its format.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// The ids seen so far.
    pub fn ids(&self) -> &RecordIds {
        &self.ids
    }

    /// The ids, once the answer is read.
    pub fn into_ids(self) -> RecordIds {
        self.ids
    }
}

/// Where readers put what they find.
struct Out<'a> {
    ids: &'a mut RecordIds,
    head: &'a mut Head,
}

impl Out<'_> {
    /// A row's id (REDCap's record names are never empty: an empty cell
    /// is a blank line, not a record).
    fn id(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.ids.push_distinct(&String::from_utf8_lossy(bytes));
        }
    }

    /// The first row is complete.
    fn head_done(&mut self, dag: bool) {
        if *self.head == Head::Pending {
            *self.head = if dag { Head::DagColumn } else { Head::Clean };
        }
    }
}

// ---------------------------------------------------------------- JSON

/// A streaming reader of `[{"key": "value", …}, …]`.
struct JsonReader {
    column: IdColumn,
    eav: bool,
    state: JState,
    /// Nesting: 0 outside the array, 1 in it, 2 in a row, deeper in a
    /// value that is itself an array or object.
    depth: usize,
    /// In a row: a `:` came after the last key.
    after_colon: bool,
    /// What the string (or bare value) being read is.
    role: Role,
    /// The bytes of a key, or of a value being captured (decoded).
    buf: Vec<u8>,
    /// The key whose value comes next.
    key: KeyKind,
    /// The id of the row being read.
    row_id: Option<Vec<u8>>,
    row_dag: bool,
    /// `\uXXXX` being read: digits so far and value.
    hex: (u8, u32),
    /// A high surrogate waiting for its low half.
    surrogate: Option<u32>,
    /// The array has closed.
    done: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JState {
    /// Between tokens.
    Between,
    /// In a string.
    Str,
    /// After a backslash.
    Escape,
    /// In `\uXXXX`.
    Unicode,
    /// In a number, `true`, `false` or `null`.
    Bare,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A row's key.
    Key,
    /// A value we keep.
    Capture,
    /// Anything else.
    Skip,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Other,
    Id,
    /// EAV's `field_name`.
    FieldName,
}

/// What the JSON reader does after one byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Go on with the next byte.
    Next,
    /// Read the same byte again in the new state.
    Again,
    /// The answer is not JSON this reader follows: stop reading ids.
    Broken,
}

impl JsonReader {
    fn new(column: IdColumn, eav: bool) -> Self {
        JsonReader {
            column,
            eav,
            state: JState::Between,
            depth: 0,
            after_colon: false,
            role: Role::Skip,
            buf: Vec::new(),
            key: KeyKind::Other,
            row_id: None,
            row_dag: false,
            hex: (0, 0),
            surrogate: None,
            done: false,
        }
    }

    /// The role of a value starting now.
    fn value_role(&self) -> Role {
        if self.depth == 2 && self.after_colon && self.key != KeyKind::Other {
            Role::Capture
        } else {
            Role::Skip
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Out<'_>) -> bool {
        let mut i = 0;
        while i < chunk.len() {
            let c = chunk[i];
            let step = match self.state {
                JState::Str => {
                    i += self.string_run(&chunk[i..]);
                    continue;
                }
                JState::Escape => self.escape(c),
                JState::Unicode => self.unicode_digit(c),
                JState::Bare => self.bare(c),
                JState::Between => self.between(c, out),
            };
            match step {
                Step::Next => i += 1,
                Step::Again => {}
                Step::Broken => return false,
            }
        }
        true
    }

    /// Inside a string: takes its bytes up to the next quote or backslash
    /// (a run found with memchr) and that byte; returns how many it took.
    #[inline]
    fn string_run(&mut self, rest: &[u8]) -> usize {
        let n = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
        if self.role != Role::Skip {
            self.buf.extend_from_slice(&rest[..n]);
        }
        match rest.get(n) {
            None => n,
            Some(b'\\') => {
                self.state = JState::Escape;
                n + 1
            }
            Some(_) => {
                self.state = JState::Between;
                self.string_done();
                n + 1
            }
        }
    }

    /// The byte after a backslash.
    #[inline]
    fn escape(&mut self, c: u8) -> Step {
        let decoded = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.state = JState::Unicode;
                self.hex = (0, 0);
                return Step::Next;
            }
            _ => return Step::Broken,
        };
        if self.role != Role::Skip {
            self.buf.push(decoded);
        }
        self.state = JState::Str;
        Step::Next
    }

    /// One of the four hex digits of a `\u` escape.
    #[inline]
    fn unicode_digit(&mut self, c: u8) -> Step {
        let Some(d) = (c as char).to_digit(16) else {
            return Step::Broken;
        };
        self.hex = (self.hex.0 + 1, self.hex.1 * 16 + d);
        if self.hex.0 == 4 {
            self.unicode(self.hex.1);
            self.state = JState::Str;
        }
        Step::Next
    }

    /// Inside a bare value (number, `true`, `false`, `null`); the byte that
    /// ends it is read again as what follows the value.
    #[inline]
    fn bare(&mut self, c: u8) -> Step {
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+') {
            if self.role == Role::Capture {
                self.buf.push(c);
            }
            return Step::Next;
        }
        self.state = JState::Between;
        if self.role == Role::Capture {
            self.value_done();
        }
        self.role = Role::Skip;
        Step::Again
    }

    /// Between tokens: structure (`[`, `{`, `]`, `}`, `:`, `,`) and the
    /// start of a string or bare value.
    #[inline]
    fn between(&mut self, c: u8, out: &mut Out<'_>) -> Step {
        if c.is_ascii_whitespace() {
            return Step::Next;
        }
        if self.done || (self.depth == 0 && c != b'[') {
            return Step::Broken;
        }
        match c {
            b'[' | b'{' => {
                if self.depth == 1 {
                    if c != b'{' {
                        return Step::Broken;
                    }
                    self.row_id = None;
                    self.row_dag = false;
                    self.key = KeyKind::Other;
                    self.after_colon = false;
                }
                self.depth += 1;
            }
            b']' | b'}' => {
                self.depth -= 1;
                if self.depth == 1 {
                    self.row_done(out);
                } else if self.depth == 0 {
                    self.done = true;
                }
            }
            b':' if self.depth == 2 => self.after_colon = true,
            b',' if self.depth == 2 => {
                self.after_colon = false;
                self.key = KeyKind::Other;
            }
            b':' | b',' => {}
            b'"' => {
                self.buf.clear();
                self.state = JState::Str;
                self.role = if self.depth == 2 && !self.after_colon {
                    Role::Key
                } else {
                    self.value_role()
                };
            }
            _ if c.is_ascii_alphanumeric() || c == b'-' => {
                self.buf.clear();
                self.role = self.value_role();
                if self.role == Role::Capture {
                    self.buf.push(c);
                }
                self.state = JState::Bare;
            }
            _ => return Step::Broken,
        }
        Step::Next
    }

    fn unicode(&mut self, v: u32) {
        let ch = match (self.surrogate.take(), v) {
            (None, 0xD800..=0xDBFF) => {
                self.surrogate = Some(v);
                return;
            }
            (Some(hi), 0xDC00..=0xDFFF) => {
                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (v - 0xDC00))
            }
            (_, v) => char::from_u32(v),
        }
        .unwrap_or('\u{FFFD}');
        if self.role != Role::Skip {
            let mut b = [0u8; 4];
            self.buf
                .extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
        }
    }

    fn string_done(&mut self) {
        match self.role {
            Role::Key => {
                self.key = if self.column.is(&self.buf) {
                    KeyKind::Id
                } else if self.eav && self.buf == b"field_name" {
                    KeyKind::FieldName
                } else {
                    if !self.eav && self.buf == DAG_COLUMN.as_bytes() {
                        self.row_dag = true;
                    }
                    KeyKind::Other
                };
            }
            Role::Capture => self.value_done(),
            Role::Skip => {}
        }
        self.role = Role::Skip;
    }

    fn value_done(&mut self) {
        match self.key {
            KeyKind::Id => self.row_id = Some(std::mem::take(&mut self.buf)),
            KeyKind::FieldName if self.buf == DAG_COLUMN.as_bytes() => self.row_dag = true,
            _ => {}
        }
    }

    fn row_done(&mut self, out: &mut Out<'_>) {
        if let Some(id) = self.row_id.take() {
            out.id(&id);
        }
        // In EAV a row is one field: the DAG, if sent, is a row of its own
        // anywhere in the record, so the head is the first row only in
        // flat answers (site clients may not make EAV exports).
        out.head_done(self.row_dag);
    }

    fn finish(&mut self) -> bool {
        self.done && self.state == JState::Between
    }
}

// ----------------------------------------------------------------- CSV

/// A streaming CSV reader for REDCap's quoting (RFC 4180: a field in
/// double quotes may hold the delimiter, line breaks and `""` for a
/// quote): the header row finds the id column, every later row gives an
/// id. Fields it does not need are skipped with `memchr`, a run at a time.
struct CsvReader {
    column: IdColumn,
    eav: bool,
    delimiter: u8,
    /// Record number (0 is the header).
    record: u64,
    /// Field number within the record.
    field: usize,
    /// Inside a quoted field.
    quoted: bool,
    /// A quote inside a quoted field, not yet known to be `""` or the end.
    quote_pending: bool,
    /// The id column, once the header is read.
    id_at: Option<usize>,
    /// The header cell or id being read.
    buf: Vec<u8>,
    header_dag: bool,
    /// Anything read in the current record (a last line without a line
    /// break still counts).
    started: bool,
}

impl CsvReader {
    fn new(column: IdColumn, eav: bool, delimiter: u8) -> Self {
        CsvReader {
            column,
            eav,
            delimiter,
            record: 0,
            field: 0,
            quoted: false,
            quote_pending: false,
            id_at: None,
            buf: Vec::new(),
            header_dag: false,
            started: false,
        }
    }

    fn capturing(&self) -> bool {
        self.record == 0 || Some(self.field) == self.id_at
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Out<'_>) -> bool {
        let mut i = 0;
        while i < chunk.len() {
            self.started = true;
            let keep = self.capturing();
            if self.quote_pending {
                self.quote_pending = false;
                if chunk[i] == b'"' {
                    if keep {
                        self.buf.push(b'"');
                    }
                    i += 1;
                    continue;
                }
                self.quoted = false;
            }
            if self.quoted {
                let rest = &chunk[i..];
                let n = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                if keep {
                    self.buf.extend_from_slice(&rest[..n]);
                }
                i += n;
                if i < chunk.len() {
                    self.quote_pending = true;
                    i += 1;
                }
                continue;
            }
            let rest = &chunk[i..];
            let n = memchr::memchr3(self.delimiter, b'\n', b'"', rest).unwrap_or(rest.len());
            if keep {
                self.buf.extend(rest[..n].iter().filter(|&&c| c != b'\r'));
            }
            i += n;
            let Some(&c) = chunk.get(i) else { break };
            i += 1;
            match c {
                b'"' => self.quoted = true,
                b'\n' => {
                    self.field_done(out);
                    self.record_done(out);
                }
                _ => self.field_done(out),
            }
        }
        true
    }

    fn field_done(&mut self, out: &mut Out<'_>) {
        if self.record == 0 {
            let cell = trim(&self.buf);
            let by_label = matches!(&self.column, IdColumn::Field(Some(f)) if self.field == 0 && cell == f.label.as_bytes());
            if self.id_at.is_none() && (self.column.is(cell) || by_label) {
                self.id_at = Some(self.field);
            }
            if !self.eav && cell == DAG_COLUMN.as_bytes() {
                self.header_dag = true;
            }
        } else if Some(self.field) == self.id_at {
            out.id(&self.buf);
        }
        self.buf.clear();
        self.field += 1;
    }

    fn record_done(&mut self, out: &mut Out<'_>) {
        if self.record == 0 {
            out.head_done(self.header_dag);
        }
        self.record += 1;
        self.field = 0;
        self.started = false;
    }

    fn finish(&mut self, out: &mut Out<'_>) -> bool {
        if self.quote_pending {
            self.quote_pending = false;
            self.quoted = false;
        }
        if self.started {
            self.field_done(out);
            self.record_done(out);
        }
        !self.quoted
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

// ----------------------------------------------------------------- XML

/// A streaming reader of REDCap's record XML (`<records><item><field>…`)
/// and of ODM (`<SubjectData SubjectKey="…">`).
struct XmlReader {
    /// `None`: ODM.
    column: Option<IdColumn>,
    eav: bool,
    state: XState,
    /// The markup or text being read.
    buf: Vec<u8>,
    /// Open elements: their names end to end, and each one's length.
    names: Vec<u8>,
    stack: Vec<usize>,
    /// Text of the element at depth 3 (a field of an item), if captured.
    text: Vec<u8>,
    capture: bool,
    row_id: Option<Vec<u8>>,
    row_dag: bool,
    /// Bytes of `]]>` or `-->` matched at the end of the last chunk.
    matched: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum XState {
    Text,
    /// After `<`, up to `>` (a tag, `<?…?>`, `<!…>`).
    Markup,
    /// In `<![CDATA[`, up to `]]>`.
    Cdata,
    /// In `<!--`, up to `-->`.
    Comment,
}

impl XmlReader {
    fn new(column: Option<IdColumn>, eav: bool) -> Self {
        XmlReader {
            column,
            eav,
            state: XState::Text,
            buf: Vec::new(),
            names: Vec::new(),
            stack: Vec::new(),
            text: Vec::new(),
            capture: false,
            row_id: None,
            row_dag: false,
            matched: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Out<'_>) -> bool {
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                XState::Text => {
                    let rest = &chunk[i..];
                    let n = memchr::memchr(b'<', rest).unwrap_or(rest.len());
                    if self.capture {
                        self.buf.extend_from_slice(&rest[..n]);
                    }
                    i += n;
                    if i < chunk.len() {
                        if self.capture {
                            let t = std::mem::take(&mut self.buf);
                            self.text.extend(unescape(&t));
                        }
                        self.buf.clear();
                        self.state = XState::Markup;
                        i += 1;
                    }
                }
                XState::Markup => {
                    let rest = &chunk[i..];
                    let n = memchr::memchr(b'>', rest).unwrap_or(rest.len());
                    self.buf.extend_from_slice(&rest[..n]);
                    i += n;
                    // A CDATA section or comment may hold `>`: what was read
                    // of it so far is given back, and it is read to its end.
                    let section = if self.buf.starts_with(b"![CDATA[") {
                        Some((XState::Cdata, 8))
                    } else if self.buf.starts_with(b"!--") {
                        Some((XState::Comment, 3))
                    } else {
                        None
                    };
                    if let Some((state, prefix)) = section {
                        let mut read = std::mem::take(&mut self.buf);
                        self.state = state;
                        self.matched = 0;
                        let (_, found) = self.section(&read[prefix..], 0);
                        read.clear();
                        self.buf = read;
                        if found {
                            // `]]>` inside what was read as markup: only
                            // possible if `>` closed it, so this cannot be.
                            self.state = XState::Text;
                        }
                        continue;
                    }
                    if i < chunk.len() {
                        i += 1; // the `>`
                        let tag = std::mem::take(&mut self.buf);
                        let ok = self.tag(&tag, out);
                        self.buf = tag;
                        self.buf.clear();
                        if !ok {
                            return false;
                        }
                        self.state = XState::Text;
                    }
                }
                XState::Cdata | XState::Comment => {
                    let (next, found) = self.section(chunk, i);
                    i = next;
                    if found {
                        self.state = XState::Text;
                    }
                }
            }
        }
        true
    }

    /// Reads a CDATA section or a comment up to its `]]>` or `-->` (which
    /// may straddle chunks); CDATA text is kept when the field is wanted.
    /// Returns where reading stopped and whether the section ended.
    fn section(&mut self, chunk: &[u8], mut j: usize) -> (usize, bool) {
        let (x, y) = if self.state == XState::Cdata {
            (b']', b'>')
        } else {
            (b'-', b'>')
        };
        let keep = self.state == XState::Cdata && self.capture;
        while j < chunk.len() {
            match self.matched {
                0 => match memchr::memchr(x, &chunk[j..]) {
                    None => {
                        if keep {
                            self.text.extend_from_slice(&chunk[j..]);
                        }
                        return (chunk.len(), false);
                    }
                    Some(k) => {
                        if keep {
                            self.text.extend_from_slice(&chunk[j..j + k]);
                        }
                        j += k + 1;
                        self.matched = 1;
                    }
                },
                1 => {
                    if chunk[j] == x {
                        self.matched = 2;
                        j += 1;
                    } else {
                        if keep {
                            self.text.push(x);
                        }
                        self.matched = 0;
                    }
                }
                _ => {
                    if chunk[j] == y {
                        self.matched = 0;
                        return (j + 1, true);
                    } else if chunk[j] == x {
                        if keep {
                            self.text.push(x);
                        }
                        j += 1;
                    } else {
                        if keep {
                            self.text.extend_from_slice(&[x, x]);
                        }
                        self.matched = 0;
                    }
                }
            }
        }
        (j, false)
    }

    /// One tag's inside (between `<` and `>`).
    fn tag(&mut self, tag: &[u8], out: &mut Out<'_>) -> bool {
        if tag.starts_with(b"?") || tag.starts_with(b"!") {
            return true; // declaration, doctype
        }
        if let Some(name) = tag.strip_prefix(b"/") {
            let name = trim(name);
            let Some(&len) = self.stack.last() else {
                return false;
            };
            if &self.names[self.names.len() - len..] != name {
                return false;
            }
            self.stack.pop();
            self.names.truncate(self.names.len() - len);
            self.close(name, out);
            return true;
        }
        let self_closing = tag.ends_with(b"/");
        let body = if self_closing {
            &tag[..tag.len() - 1]
        } else {
            tag
        };
        let name_end = body
            .iter()
            .position(|c| c.is_ascii_whitespace())
            .unwrap_or(body.len());
        let name = &body[..name_end];
        if name.is_empty() {
            return false;
        }
        if self.column.is_none() {
            if name == b"SubjectData"
                && let Some(key) = attribute(&body[name_end..], b"SubjectKey")
            {
                out.id(&key);
            }
        } else if self.stack.len() == 2 {
            // A field of an item.
            self.capture = self.wanted(name);
            self.text.clear();
            if !self.eav && name == DAG_COLUMN.as_bytes() {
                self.row_dag = true;
            }
        } else if self.stack.len() == 1 {
            self.row_id = None;
            self.row_dag = false;
        }
        if self_closing {
            self.capture = false;
            self.close(name, out);
        } else {
            self.names.extend_from_slice(name);
            self.stack.push(name.len());
        }
        true
    }

    fn wanted(&self, name: &[u8]) -> bool {
        self.column.as_ref().is_some_and(|c| c.is(name)) || (self.eav && name == b"field_name")
    }

    fn close(&mut self, name: &[u8], out: &mut Out<'_>) {
        if self.column.is_none() {
            return;
        }
        match self.stack.len() {
            2 if self.capture => {
                if self.eav && name == b"field_name" {
                    if self.text == DAG_COLUMN.as_bytes() {
                        self.row_dag = true;
                    }
                } else {
                    self.row_id = Some(std::mem::take(&mut self.text));
                }
                self.capture = false;
            }
            1 => {
                if let Some(id) = self.row_id.take() {
                    out.id(&id);
                }
                out.head_done(self.row_dag);
            }
            _ => {}
        }
    }

    fn finish(&mut self) -> bool {
        self.stack.is_empty() && self.state == XState::Text
    }
}

/// An attribute's value in a start tag (`name="value"` or `'value'`).
fn attribute(attrs: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let mut rest = attrs;
    loop {
        let start = rest.iter().position(|c| !c.is_ascii_whitespace())?;
        rest = &rest[start..];
        let eq = memchr::memchr(b'=', rest)?;
        let key = trim(&rest[..eq]);
        let after = trim_start(&rest[eq + 1..]);
        let quote = *after.first()?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let end = memchr::memchr(quote, &after[1..])?;
        if key == name {
            return Some(unescape(&after[1..1 + end]));
        }
        rest = &after[end + 2..];
    }
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// XML's five entities and character references.
fn unescape(b: &[u8]) -> Vec<u8> {
    if memchr::memchr(b'&', b).is_none() {
        return b.to_vec();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'&'
            && let Some(semi) = memchr::memchr(b';', &b[i..b.len().min(i + 13)])
        {
            let name = &b[i + 1..i + semi];
            let ch = match name {
                b"amp" => Some('&'),
                b"lt" => Some('<'),
                b"gt" => Some('>'),
                b"quot" => Some('"'),
                b"apos" => Some('\''),
                _ => name.strip_prefix(b"#").and_then(|n| {
                    let n = std::str::from_utf8(n).ok()?;
                    let v = match n.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(v)
                }),
            };
            if let Some(ch) = ch {
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += semi + 1;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid() -> Option<RecordIdField> {
        Some(RecordIdField {
            name: "record_id".into(),
            label: "Record ID".into(),
        })
    }

    /// Feeds `body` in chunks of `n` bytes; returns ids, head and whether
    /// it broke.
    fn scan(shape: Shape, eav: bool, body: &[u8], n: usize) -> (Vec<String>, Head, bool) {
        let mut s = Scanner::new(shape, eav, rid());
        for c in body.chunks(n.max(1)) {
            s.feed(c);
        }
        s.finish();
        let (head, broken) = (s.head(), s.broken());
        (s.into_ids().to_vec(), head, broken)
    }

    /// Every shape REDCap answers a record export in, each read in chunks
    /// of every size from 1 byte up.
    #[test]
    fn ids_are_read_from_every_shape_in_any_chunking() {
        let cases: &[(Shape, bool, &str, &[&str], Head)] = &[
            (
                Shape::Json,
                false,
                r#"[{"record_id":"1","age":"30"},{"record_id":"1","redcap_event_name":"v2"},{"record_id":"2","age":"4\"1"}]"#,
                &["1", "2"],
                Head::Clean,
            ),
            // The record id field need not come first, and a fields export
            // without it names no records (never another field's value).
            (
                Shape::Json,
                false,
                r#"[{"age":"30","record_id":"7"}]"#,
                &["7"],
                Head::Clean,
            ),
            (
                Shape::Json,
                false,
                r#"[{"dob":"1970-01-01"},{"dob":"1980-02-02"}]"#,
                &[],
                Head::Clean,
            ),
            (Shape::Json, false, "[]", &[], Head::Clean),
            (
                Shape::Json,
                false,
                r#" [ {"record_id" : "\u00e9\ud83d\ude00", "redcap_data_access_group" : "site_a"} ] "#,
                &["é😀"],
                Head::DagColumn,
            ),
            (
                Shape::Json,
                false,
                r#"[{"record_id":12,"n":null,"t":true,"x":[1,{"record_id":"no"}]}]"#,
                &["12"],
                Head::Clean,
            ),
            (
                Shape::Json,
                true,
                r#"[{"record":"1","field_name":"age","value":"3"},{"record":"1","field_name":"dob","value":"x"},{"record":"10","field_name":"age","value":"1"}]"#,
                &["1", "10"],
                Head::Clean,
            ),
            (
                Shape::Csv(b','),
                false,
                "record_id,notes,redcap_repeat_instrument,redcap_repeat_instance\n1,\"line one\nline \"\"two\"\", a\",visit,1\n1,,visit,2\n\"3,4\",x,,\n",
                &["1", "3,4"],
                Head::Clean,
            ),
            (
                Shape::Csv(b'\t'),
                false,
                "age\trecord_id\tredcap_data_access_group\r\n30\t5\tsite_a\r\n",
                &["5"],
                Head::DagColumn,
            ),
            // Label headers: the record id column by its label, first.
            (
                Shape::Csv(b','),
                false,
                "Record ID,Age\n8,40\n9,41",
                &["8", "9"],
                Head::Clean,
            ),
            (
                Shape::Csv(b','),
                false,
                "dob\n1970-01-01\n",
                &[],
                Head::Clean,
            ),
            (
                Shape::Csv(b';'),
                true,
                "record;field_name;value\n2;age;3\n2;dob;x\n4;age;5\n",
                &["2", "4"],
                Head::Clean,
            ),
            (Shape::Csv(b','), false, "", &[], Head::Clean),
            (
                Shape::Xml,
                false,
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<records>\n<item><record_id><![CDATA[1]]></record_id><notes><![CDATA[a ]] > <b> ]]></notes></item>\n<item><record_id>2 &amp; 3</record_id><age/></item><!-- x > y --><item><record_id><![CDATA[2 & 3]]></record_id></item></records>",
                &["1", "2 & 3"],
                Head::Clean,
            ),
            (
                Shape::Xml,
                false,
                "<records><item><record_id>1</record_id><redcap_data_access_group>site_a</redcap_data_access_group></item></records>",
                &["1"],
                Head::DagColumn,
            ),
            (
                Shape::Xml,
                true,
                "<records><item><record>6</record><field_name>age</field_name><value>3</value></item><item><record>6</record><field_name>x</field_name><value>y</value></item></records>",
                &["6"],
                Head::Clean,
            ),
            (
                Shape::Xml,
                false,
                "<?xml version=\"1.0\" ?><records></records>",
                &[],
                Head::Clean,
            ),
            (
                Shape::Odm,
                false,
                "<?xml version=\"1.0\"?><ODM><ClinicalData><SubjectData SubjectKey=\"1\" redcap:RecordIdField=\"record_id\"><FormData/></SubjectData><SubjectData SubjectKey='a&amp;b'></SubjectData></ClinicalData></ODM>",
                &["1", "a&b"],
                Head::Clean,
            ),
        ];
        for (shape, eav, body, ids, head) in cases {
            for n in [1, 2, 3, 5, 7, 64, 100_000] {
                let (got, got_head, broken) = scan(*shape, *eav, body.as_bytes(), n);
                assert!(!broken, "{body} broke at chunk {n}");
                assert_eq!(&got, ids, "{body} in chunks of {n}");
                assert_eq!(got_head, *head, "{body} in chunks of {n}");
            }
        }
    }

    #[test]
    fn the_head_is_decided_after_the_first_row_not_the_whole_answer() {
        let mut s = Scanner::new(Shape::Json, false, rid());
        s.feed(br#"[{"record_id":"1","redcap_data_access_group":"a"},{"record_id":"#);
        assert_eq!(s.head(), Head::DagColumn);
        let mut s = Scanner::new(Shape::Csv(b','), false, rid());
        s.feed(b"record_id,age\n1,");
        assert_eq!(s.head(), Head::Clean);
        let mut s = Scanner::new(Shape::Xml, false, rid());
        s.feed(b"<records><item><record_id>1</record_id>");
        assert_eq!(s.head(), Head::Pending);
        s.feed(b"</item><item>");
        assert_eq!(s.head(), Head::Clean);
    }

    #[test]
    fn answers_that_are_not_their_format_break_the_scan() {
        for (shape, body) in [
            (Shape::Json, "{\"error\":\"x\"}"),
            (Shape::Json, "[{\"record_id\":\"1\"}"),
            (Shape::Json, "[{\"record_id\":\"1\"}] x"),
            (Shape::Xml, "<records><item></records>"),
        ] {
            let (_, head, broken) = scan(shape, false, body.as_bytes(), 3);
            assert!(broken, "{body}");
            assert_ne!(head, Head::DagColumn);
        }
    }

    /// Generated flat exports, rows grouped by record as REDCap sends
    /// them: the ids read equal the ids written, in order, in json, csv and
    /// xml, whatever the chunking.
    #[test]
    fn generated_exports_yield_exactly_their_ids() {
        use proptest::prelude::*;
        let id = "[a-z0-9 ,\"<>&é-]{1,8}";
        let value = "[a-z0-9 ,\"\n\r<>&\\\\\\]]{0,12}";
        let rows = proptest::collection::vec((id, 1usize..3, value), 0..20);
        proptest!(|(rows in rows, chunk in 1usize..40)| {
            let mut want: Vec<String> = Vec::new();
            let mut json = String::from("[");
            let mut csv = String::from("record_id,notes\r\n");
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<records>\n");
            for (id, repeats, value) in &rows {
                if want.last() != Some(id) {
                    want.push(id.clone());
                }
                for _ in 0..*repeats {
                    if json.len() > 1 {
                        json.push(',');
                    }
                    json.push_str(&serde_json::json!({"record_id": id, "notes": value}).to_string());
                    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
                    csv.push_str(&format!("{},{}\r\n", q(id), q(value)));
                    let cdata = |s: &str| format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"));
                    xml.push_str(&format!("<item><record_id>{}</record_id><notes>{}</notes></item>\n", cdata(id), cdata(value)));
                }
            }
            json.push(']');
            xml.push_str("</records>");
            for (shape, body) in [(Shape::Json, &json), (Shape::Csv(b','), &csv), (Shape::Xml, &xml)] {
                let (got, _, broken) = scan(shape, false, body.as_bytes(), chunk);
                prop_assert!(!broken, "{body}");
                prop_assert_eq!(&got, &want, "{}", body);
            }
        });
    }
}
