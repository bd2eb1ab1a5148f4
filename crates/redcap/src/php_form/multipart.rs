//! `multipart/form-data` bodies as PHP's RFC 1867 reader sees them.
//!
//! PHP does not parse multipart the way RFC 7578 describes it. It reads
//! through a 5,120-byte buffer, and what it sees depends on that buffer:
//!
//! - Outside part data it reads *lines* (ending at LF, one CR before it
//!   dropped, cut at the first NUL); a part starts only at a line that is
//!   exactly `--boundary`. Every other line — a preamble, text between
//!   parts, the closing `--boundary--`, anything after it — is skipped,
//!   and a later `--boundary` line starts a new part even after the close.
//!   A line longer than the buffer is returned in 5,120-byte pieces.
//! - Headers run to the first empty line. A line starting with whitespace,
//!   or without `:`, continues the previous header. Only the *first*
//!   `Content-Disposition` counts; in it `name=` and `filename=` (any
//!   case, the last of each wins) are read with PHP's own quoting: `"…"`
//!   or `'…'` with `\\` and `\"` escapes, or a bare word up to whitespace.
//! - A text part's value runs to the first `LF--boundary` in the stream,
//!   wherever it is (not only at a line start), minus one CR before it.
//! - A part with no `Content-Disposition` is skipped without reading its
//!   data, so its lines are searched for a boundary line instead; so are
//!   uploads PHP skips (bad brackets in the name, too many files — and,
//!   since PHP never resets that flag, every upload after a skipped one)
//!   and the rest of an upload it cancels for size. A part with neither `name` nor
//!   `filename` ends the whole body. A part with `filename` is an upload
//!   (`$_FILES`, under a normalised name: see
//!   [`normalize_multipart_name`]),
//!   even with an empty file name; a text part named `MAX_FILE_SIZE` (any
//!   case) limits the uploads after it.
//! - Text parts are registered like urlencoded fields; those past
//!   `max_input_vars` are ignored but PHP reads on;
//!   `max_multipart_body_parts` (by default `max_input_vars` +
//!   `max_file_uploads`) parts with a disposition end the body.
//!
//! [`Parser`] replays exactly that, fed in chunks of any size: it keeps a
//! window of at least the buffer's size (or the rest of the body), so each
//! step sees what PHP's buffer would hold. Uploads stream out as
//! [`Event::FileData`]; nothing but text values is kept.

use super::array::{PhpArray, Value};
use super::register::{is_space, normalize_multipart_name, register};
use super::{Field, Limits, Note, Parsed};

/// PHP's `FILLUNIT`: its buffer size, and the most one read returns plus one.
const BUFSIZE: usize = 5 * 1024;

/// The longest boundary the parser accepts: with a longer one PHP's buffer
/// grows past its 5 KiB (`FILLUNIT`) and its reads change shape (RFC 2046
/// allows 70).
pub const MAX_BOUNDARY: usize = BUFSIZE - 6;

/// What happens in a multipart body, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text part was registered: [`Parsed::fields`]`[index]`.
    Field(usize),
    /// An upload PHP accepts into `$_FILES` begins.
    FileStart {
        /// The part's name as PHP registers it (normalised).
        name: Vec<u8>,
        /// The client's file name (`full_path`; `name` is its basename).
        filename: Vec<u8>,
        /// The part's `Content-Type` up to any `;` (empty when absent).
        content_type: Vec<u8>,
    },
    /// The next bytes of the upload.
    FileData(Vec<u8>),
    /// The upload ended: PHP's `UPLOAD_ERR_*` code and its size.
    FileEnd {
        /// 0 when PHP kept the file; 1 too large for `upload_max_filesize`,
        /// 2 larger than the form's `MAX_FILE_SIZE`, 3 the body ended
        /// before the closing boundary, 4 no file name.
        error: i64,
        /// The bytes PHP kept (0 on error).
        size: i64,
    },
}

/// Why a multipart body cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// PHP finds no `boundary=` in the content type.
    #[error("the Content-Type has no boundary parameter")]
    MissingBoundary,
    /// `boundary="…` without its closing quote.
    #[error("the Content-Type's boundary has an opening quote and no closing one")]
    InvalidBoundary,
    /// Longer than [`MAX_BOUNDARY`].
    #[error("the multipart boundary is {0} bytes long; at most {MAX_BOUNDARY} are accepted")]
    BoundaryTooLong(usize),
}

/// The boundary PHP takes from a `multipart/form-data` content type: the
/// first `boundary` (case-sensitive, else in any case), then what follows
/// the next `=`, either `"quoted"` or up to `,` or `;` (spaces included).
pub fn boundary(content_type: &[u8]) -> Result<Vec<u8>, MultipartError> {
    let at = memchr::memmem::find(content_type, b"boundary")
        .or_else(|| memchr::memmem::find(&content_type.to_ascii_lowercase(), b"boundary"));
    let rest = at
        .and_then(|at| {
            memchr::memchr(b'=', &content_type[at..]).map(|eq| &content_type[at + eq + 1..])
        })
        .ok_or(MultipartError::MissingBoundary)?;
    let b = if let Some(quoted) = rest.strip_prefix(b"\"") {
        let end = memchr::memchr(b'"', quoted).ok_or(MultipartError::InvalidBoundary)?;
        &quoted[..end]
    } else {
        let end = rest
            .iter()
            .position(|&c| c == b',' || c == b';')
            .unwrap_or(rest.len());
        &rest[..end]
    };
    // A C string: PHP stops at a NUL.
    let b = &b[..memchr::memchr(0, b).unwrap_or(b.len())];
    if b.len() > MAX_BOUNDARY {
        return Err(MultipartError::BoundaryTooLong(b.len()));
    }
    Ok(b.to_vec())
}

/// A multipart body being read, PHP's way.
pub struct Parser {
    limits: Limits,
    /// `--boundary`: the line that starts a part.
    boundary_line: Vec<u8>,
    /// `\n--boundary`: what ends part data.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    finished: bool,
    state: State,
    out: Parsed,
    body_parts_left: i64,
    uploads_left: i64,
    anonymous: u32,
    max_file_size: i64,
    /// PHP never clears its `skip_upload`: once one upload is skipped,
    /// every later one is too.
    skip_uploads: bool,
    closed: bool,
}

enum State {
    /// Looking for a `--boundary` line.
    Seek,
    /// Reading a part's header lines.
    Headers(Headers),
    /// Reading a text part's value.
    Text { param: Vec<u8>, value: Vec<u8> },
    /// Reading an upload.
    File(Box<Upload>),
    /// PHP has stopped reading.
    Done,
}

#[derive(Default)]
struct Headers {
    list: Vec<(Vec<u8>, Vec<u8>)>,
    current: Option<(Vec<u8>, Vec<u8>)>,
}

struct Upload {
    param: Vec<u8>,
    filename: Vec<u8>,
    content_type: Vec<u8>,
    cancel: i64,
    end: bool,
    total: i64,
    first: bool,
}

impl Parser {
    /// A parser for a body with this boundary (see [`boundary`]).
    pub fn new(boundary: &[u8], limits: &Limits) -> Parser {
        let body_parts = limits
            .max_multipart_body_parts
            .unwrap_or(limits.max_input_vars as i64 + limits.max_file_uploads);
        Parser {
            limits: limits.clone(),
            boundary_line: [b"--", boundary].concat(),
            delimiter: [b"\n--", boundary].concat(),
            buf: Vec::new(),
            pos: 0,
            finished: false,
            state: State::Seek,
            out: Parsed::default(),
            body_parts_left: body_parts,
            uploads_left: limits.max_file_uploads,
            anonymous: 0,
            max_file_size: 0,
            skip_uploads: false,
            closed: false,
        }
    }

    /// The fields registered so far.
    pub fn fields(&self) -> &[Field] {
        &self.out.fields
    }

    /// `$_POST` so far.
    pub fn post(&self) -> &PhpArray {
        &self.out.post
    }

    /// Feeds the next bytes of the body; what happened is pushed to
    /// `events`.
    pub fn feed(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
        self.run(events);
    }

    /// The body has ended: reads what is left (the events of the last
    /// parts come now).
    pub fn end(&mut self, events: &mut Vec<Event>) {
        if !self.finished {
            self.finished = true;
            self.run(events);
            if !self.closed {
                self.note(Note::Unterminated);
            }
        }
    }

    /// The body has ended: reads what is left, and gives the result.
    pub fn finish(mut self, events: &mut Vec<Event>) -> Parsed {
        self.end(events);
        self.out
    }

    fn note(&mut self, n: Note) {
        if !self.out.notes.contains(&n) {
            self.out.notes.push(n);
        }
    }

    /// Whether PHP's buffer would be full (or hold the rest of the body).
    fn ready(&self) -> bool {
        self.finished || self.buf.len() - self.pos >= BUFSIZE
    }

    fn window(&self) -> &[u8] {
        let avail = (self.buf.len() - self.pos).min(BUFSIZE);
        &self.buf[self.pos..self.pos + avail]
    }

    /// PHP's `get_line`: the next line (without LF and one CR), consumed.
    fn get_line(&mut self) -> Option<std::ops::Range<usize>> {
        let w = self.window();
        let start = self.pos;
        if let Some(i) = memchr::memchr(b'\n', w) {
            let end = if i > 0 && w[i - 1] == b'\r' { i - 1 } else { i };
            self.pos += i + 1;
            Some(start..start + end)
        } else if w.len() >= BUFSIZE {
            self.pos += BUFSIZE;
            self.note(Note::LongLine);
            Some(start..start + BUFSIZE)
        } else {
            None
        }
    }

    /// A line as the C string PHP works with (cut at NUL).
    fn line(&mut self, r: std::ops::Range<usize>) -> Vec<u8> {
        let raw = &self.buf[r];
        let cut = memchr::memchr(0, raw);
        let line = raw[..cut.unwrap_or(raw.len())].to_vec();
        if cut.is_some() {
            self.note(Note::NulInHeader);
        }
        line
    }

    /// PHP's `multipart_buffer_read`: the next piece of part data before
    /// the delimiter (at most 5,119 bytes), consumed; `end` is set once the
    /// whole delimiter is in view.
    fn read(&mut self, end: &mut bool) -> std::ops::Range<usize> {
        let w = self.window();
        let bound = memstr_partial(w, &self.delimiter);
        if bound.is_some() && memchr::memmem::find(w, &self.delimiter).is_some() {
            *end = true;
        }
        let max = bound.unwrap_or(w.len());
        let mut len = max.min(BUFSIZE - 1);
        if len > 0 && bound.is_some() && w[len - 1] == b'\r' {
            len -= 1;
        }
        let start = self.pos;
        self.pos += len;
        start..start + len
    }

    fn run(&mut self, events: &mut Vec<Event>) {
        while self.ready() {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return,
                State::Seek => self.seek(),
                State::Headers(h) => self.headers(h, events),
                State::Text { param, mut value } => {
                    let r = self.read(&mut false);
                    if r.is_empty() {
                        self.text_part(param, value, events);
                        self.state = State::Seek;
                    } else {
                        value.extend_from_slice(&self.buf[r]);
                        self.state = State::Text { param, value };
                    }
                }
                State::File(up) => self.file_data(up, events),
            }
        }
    }

    fn seek(&mut self) {
        let Some(r) = self.get_line() else {
            return; // no further boundary: PHP is done (state stays Done)
        };
        let line = self.line(r);
        if line == self.boundary_line {
            if self.closed {
                self.note(Note::PartAfterClose);
            }
            self.state = State::Headers(Headers::default());
            return;
        }
        if line.len() == self.boundary_line.len() + 2
            && line.starts_with(&self.boundary_line)
            && line.ends_with(b"--")
            && !self.closed
        {
            self.closed = true;
        } else if !line.is_empty() {
            self.note(Note::JunkLine);
        }
        self.state = State::Seek;
    }

    fn headers(&mut self, mut h: Headers, events: &mut Vec<Event>) {
        let line = match self.get_line() {
            Some(r) => self.line(r),
            None => Vec::new(), // the body ended inside the headers
        };
        if !line.is_empty() {
            let colon = if is_space(line[0]) {
                None
            } else {
                memchr::memchr(b':', &line)
            };
            match (colon, &mut h.current) {
                (Some(c), _) => {
                    if let Some(done) = h.current.take() {
                        h.list.push(done);
                    }
                    let mut v = c + 1;
                    while v < line.len() && is_space(line[v]) {
                        v += 1;
                    }
                    h.current = Some((line[..c].to_vec(), line[v..].to_vec()));
                }
                (None, Some((_, value))) => value.extend_from_slice(&line),
                (None, None) => {}
            }
            self.state = State::Headers(h);
            return;
        }
        if let Some(done) = h.current.take() {
            h.list.push(done);
        }
        self.part(h.list, events);
    }

    /// A part's headers are read: PHP decides what the part is.
    fn part(&mut self, headers: Vec<(Vec<u8>, Vec<u8>)>, events: &mut Vec<Event>) {
        self.state = State::Seek;
        let header = |name: &[u8]| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let Some(cd) = header(b"Content-Disposition") else {
            self.note(Note::NoDisposition);
            return;
        };
        self.body_parts_left -= 1;
        if self.body_parts_left < 0 {
            self.note(Note::PartsLimit);
            self.state = State::Done;
            return;
        }
        let (param, filename) = disposition(&cd);
        match (param, filename) {
            (Some(param), None) => {
                self.state = State::Text {
                    param,
                    value: Vec::new(),
                }
            }
            (_, None) => {
                self.note(Note::Garbled);
                self.state = State::Done;
            }
            (param, Some(filename)) => {
                if self.uploads_left <= 0 {
                    self.skip_uploads = true;
                    if self.uploads_left == 0 {
                        self.uploads_left -= 1;
                    }
                }
                let param = param.unwrap_or_else(|| {
                    self.anonymous += 1;
                    (self.anonymous - 1).to_string().into_bytes()
                });
                if !self.skip_uploads && !upload_brackets_ok(&param) {
                    self.skip_uploads = true;
                }
                if self.skip_uploads {
                    self.note(Note::SkippedUpload);
                    return;
                }
                let content_type = header(b"Content-Type")
                    .map(|ct| ct[..memchr::memchr(b';', &ct).unwrap_or(ct.len())].to_vec())
                    .unwrap_or_default();
                events.push(Event::FileStart {
                    name: normalize_multipart_name(&param),
                    filename: filename.clone(),
                    content_type: content_type.clone(),
                });
                let up = Box::new(Upload {
                    cancel: if filename.is_empty() { 4 } else { 0 },
                    param,
                    filename,
                    content_type,
                    end: false,
                    total: 0,
                    first: true,
                });
                if up.cancel != 0 {
                    self.upload_done(*up, events);
                } else {
                    self.state = State::File(up);
                }
            }
        }
    }

    fn text_part(&mut self, param: Vec<u8>, value: Vec<u8>, events: &mut Vec<Event>) {
        self.out.vars += 1;
        if param.eq_ignore_ascii_case(b"MAX_FILE_SIZE") {
            self.max_file_size = strtoll(&value);
        }
        if self.out.vars > self.limits.max_input_vars {
            self.out.stopped_early = true;
            self.note(Note::TooManyVars);
            return;
        }
        let registration = register(
            &mut self.out.post,
            &param,
            Value::Str(value),
            self.limits.max_input_nesting_level,
        );
        self.out.fields.push(Field {
            raw_name: param,
            registration,
        });
        events.push(Event::Field(self.out.fields.len() - 1));
    }

    fn file_data(&mut self, mut up: Box<Upload>, events: &mut Vec<Event>) {
        let r = self.read(&mut up.end);
        if up.first {
            up.first = false;
            self.uploads_left -= 1;
        }
        if up.cancel != 0 || r.is_empty() {
            return self.upload_done(*up, events);
        }
        let total = up.total + r.len() as i64;
        if self.limits.upload_max_filesize > 0 && total > self.limits.upload_max_filesize {
            up.cancel = 1;
        } else if self.max_file_size != 0 && total > self.max_file_size {
            up.cancel = 2;
        } else {
            events.push(Event::FileData(self.buf[r].to_vec()));
            up.total = total;
        }
        self.state = State::File(up);
    }

    fn upload_done(&mut self, mut up: Upload, events: &mut Vec<Event>) {
        if up.cancel == 0 && !up.end {
            up.cancel = 3;
        }
        if up.cancel != 0 && up.cancel != 4 {
            self.note(Note::FailedUpload);
        }
        let size = if up.cancel == 0 { up.total } else { 0 };
        events.push(Event::FileEnd {
            error: up.cancel,
            size,
        });
        let param = &up.param;
        let open = param.iter().position(|&c| c == b'[');
        let name_for = |field: &[u8]| -> Vec<u8> {
            match open {
                Some(o) if param.last() == Some(&b']') => [
                    &param[..o],
                    b"[",
                    field,
                    b"][",
                    &param[o + 1..param.len() - 1],
                    b"]",
                ]
                .concat(),
                _ => [&param[..], b"[", field, b"]"].concat(),
            }
        };
        let content_type = if up.cancel != 0 {
            Vec::new()
        } else {
            up.content_type.clone()
        };
        let entries = [
            (
                name_for(b"name"),
                Value::Str(basename(&up.filename).to_vec()),
            ),
            (name_for(b"full_path"), Value::Str(up.filename.clone())),
            (name_for(b"type"), Value::Str(content_type)),
            // PHP's temporary file name: the same for every run of the model.
            (name_for(b"tmp_name"), Value::Str(Vec::new())),
            (name_for(b"error"), Value::Int(up.cancel)),
            (name_for(b"size"), Value::Int(size)),
        ];
        for (name, value) in entries {
            register(
                &mut self.out.files,
                &normalize_multipart_name(&name),
                value,
                self.limits.max_input_nesting_level,
            );
        }
        self.state = State::Seek;
    }
}

/// PHP's `php_ap_memstr` with partial matches: the first position where
/// the needle starts, or where the haystack ends in a prefix of it.
fn memstr_partial(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(needle[0], &hay[from..]) {
        let p = from + i;
        let rest = &hay[p..];
        let n = rest.len().min(needle.len());
        if rest[..n] == needle[..n] {
            return Some(p);
        }
        from = p + 1;
    }
    None
}

/// `name` and `filename` from a `Content-Disposition` value (the last of
/// each wins), read with PHP's `php_ap_getword` / `php_ap_getword_conf`.
fn disposition(cd: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut rest = skip_space(cd);
    let (mut name, mut filename) = (None, None);
    while !rest.is_empty() {
        let pair = getword(&mut rest, b';');
        rest = skip_space(rest);
        if memchr::memchr(b'=', &pair).is_some() {
            let mut value = &pair[..];
            let key = getword(&mut value, b'=');
            if key.eq_ignore_ascii_case(b"name") {
                name = Some(getword_conf(value));
            } else if key.eq_ignore_ascii_case(b"filename") {
                filename = Some(getword_conf(value));
            }
        }
    }
    (name, filename)
}

fn skip_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| is_space(c)).count();
    &s[n..]
}

/// Up to the first `stop` outside quotes; the input moves past it (and
/// past any `stop`s right after it).
fn getword(line: &mut &[u8], stop: u8) -> Vec<u8> {
    let s = *line;
    let mut pos = 0;
    while pos < s.len() && s[pos] != stop {
        let q = s[pos];
        if q == b'"' || q == b'\'' {
            pos += 1;
            while pos < s.len() && s[pos] != q {
                if s[pos] == b'\\' && pos + 1 < s.len() && s[pos + 1] == q {
                    pos += 2;
                } else {
                    pos += 1;
                }
            }
            if pos < s.len() {
                pos += 1;
            }
        } else {
            pos += 1;
        }
    }
    if pos >= s.len() {
        *line = &s[s.len()..];
        return s.to_vec();
    }
    let word = s[..pos].to_vec();
    while pos < s.len() && s[pos] == stop {
        pos += 1;
    }
    *line = &s[pos..];
    word
}

/// A parameter value: `"quoted"` / `'quoted'` (up to the closing quote,
/// `\\` and `\<quote>` unescaped) or a bare word up to whitespace (`\\`
/// unescaped).
fn getword_conf(s: &[u8]) -> Vec<u8> {
    let s = skip_space(s);
    let (body, quote) = match s.first() {
        None => return Vec::new(),
        Some(&q) if q == b'"' || q == b'\'' => (&s[1..], Some(q)),
        Some(_) => (
            &s[..s.iter().position(|&c| is_space(c)).unwrap_or(s.len())],
            None,
        ),
    };
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() && Some(body[i]) != quote {
        if body[i] == b'\\'
            && i + 1 < body.len()
            && (body[i + 1] == b'\\' || Some(body[i + 1]) == quote)
        {
            out.push(body[i + 1]);
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

/// PHP's "never repair potential malicious user input": an upload whose
/// name has unbalanced brackets, or anything but `[` after a `]`, is
/// skipped.
fn upload_brackets_ok(name: &[u8]) -> bool {
    let mut depth: i64 = 0;
    for (i, &c) in name.iter().enumerate() {
        if c == b'[' {
            depth += 1;
        } else if c == b']' {
            depth -= 1;
            if i + 1 < name.len() && name[i + 1] != b'[' {
                return false;
            }
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// After the last `/` or `\`.
fn basename(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&c| c == b'/' || c == b'\\') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// C's `strtoll(s, NULL, 10)`, saturating.
fn strtoll(s: &[u8]) -> i64 {
    let s = &s[..memchr::memchr(0, s).unwrap_or(s.len())];
    let s = skip_space(s);
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        let d = i64::from(c - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::php_form::array::Key;

    fn parse_all(body: &[u8], chunk: usize) -> (Parsed, Vec<Event>) {
        let mut p = Parser::new(b"B", &Limits::default());
        let mut events = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            p.feed(c, &mut events);
        }
        let parsed = p.finish(&mut events);
        (parsed, events)
    }

    fn post_text(p: &Parsed) -> Vec<(String, String)> {
        p.post
            .iter()
            .map(|(k, v)| {
                (
                    k.to_text(),
                    String::from_utf8_lossy(v.as_bytes().unwrap_or(b"<array>")).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_boundary_is_read_as_php_reads_it() {
        assert_eq!(
            boundary(b"multipart/form-data; boundary=abc").unwrap(),
            b"abc"
        );
        assert_eq!(
            boundary(b"multipart/form-data; BOUNDARY=\"a;b\"").unwrap(),
            b"a;b"
        );
        assert_eq!(
            boundary(b"multipart/form-data; boundary=a b; x=y").unwrap(),
            b"a b"
        );
        // The first "boundary" wins, even inside another parameter's name.
        assert_eq!(
            boundary(b"multipart/form-data; xboundary=one; boundary=two").unwrap(),
            b"one"
        );
        assert_eq!(
            boundary(b"multipart/form-data"),
            Err(MultipartError::MissingBoundary)
        );
        assert_eq!(
            boundary(b"multipart/form-data; boundary=\"open"),
            Err(MultipartError::InvalidBoundary)
        );
    }

    #[test]
    fn an_ordinary_body_in_chunks_of_any_size() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nK\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dir/a.txt\"\r\nContent-Type: text/plain; charset=x\r\n\r\nhello\r\nworld\r\n--B--\r\n";
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let (p, events) = parse_all(body, chunk);
            assert_eq!(
                post_text(&p),
                [("token".into(), "K".into())],
                "chunk {chunk}"
            );
            assert!(p.notes.is_empty(), "{:?}", p.notes);
            let data: Vec<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Event::FileData(d) => Some(d.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            assert_eq!(data, b"hello\r\nworld");
            assert!(events.contains(&Event::FileEnd { error: 0, size: 12 }));
            let file = p
                .files
                .get(&Key::Str(b"file".to_vec()))
                .unwrap()
                .as_array()
                .unwrap();
            assert_eq!(
                file.get_name("name").unwrap().as_bytes(),
                Some(&b"a.txt"[..])
            );
            assert_eq!(
                file.get_name("full_path").unwrap().as_bytes(),
                Some(&b"dir/a.txt"[..])
            );
            assert_eq!(
                file.get_name("type").unwrap().as_bytes(),
                Some(&b"text/plain"[..])
            );
        }
    }

    #[test]
    fn part_data_ends_at_the_delimiter_wherever_it_is() {
        // An empty value written without its CRLF swallows the next part,
        // and a delimiter followed by junk ends data but starts no part.
        let body = b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\n--B\r\nContent-Disposition: form-data; name=b\r\n\r\nx\r\n--Bjunk\r\nContent-Disposition: form-data; name=c\r\n\r\ny\r\n--B--";
        let (p, _) = parse_all(body, 5);
        assert_eq!(
            post_text(&p),
            [(
                "a".into(),
                "--B\r\nContent-Disposition: form-data; name=b\r\n\r\nx".into()
            )]
        );
        assert!(p.notes.contains(&Note::JunkLine));
    }

    #[test]
    fn quoting_and_escapes_in_names() {
        for (cd, name) in [
            (&b"form-data; name=\"a\\\"b\""[..], &b"a\"b"[..]),
            (b"form-data; name='x;y'", b"x;y"),
            (b"form-data; name=plain word", b"plain"),
            (b"form-data; name=\"a\\\\\"", b"a\\"),
            (b"form-data; NAME=\"up\"; name=last", b"last"),
            (b"form-data; name==two", b"two"),
        ] {
            assert_eq!(
                disposition(cd).0.as_deref(),
                Some(name),
                "{:?}",
                String::from_utf8_lossy(cd)
            );
        }
        assert_eq!(
            disposition(b"form-data; name=\"f\"; filename=\"\"")
                .1
                .as_deref(),
            Some(&b""[..])
        );
        assert_eq!(strtoll(b"  -12x"), -12);
        assert_eq!(strtoll(b"99999999999999999999"), i64::MAX);
    }

    #[test]
    fn a_part_after_the_close_is_still_read() {
        let body = b"--B\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--B--\r\n--B\r\nContent-Disposition: form-data; name=content\r\n\r\nuser\r\n--B--\r\n";
        let (p, _) = parse_all(body, 4096);
        assert_eq!(
            post_text(&p),
            [("a".into(), "1".into()), ("content".into(), "user".into())]
        );
        assert!(p.notes.contains(&Note::PartAfterClose));
    }

    #[test]
    fn uploads_with_bad_names_are_skipped_and_so_is_every_later_one() {
        let body = b"--B\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\nX\r\n--B\r\nContent-Disposition: form-data; name=f\r\n\r\ntext\r\n--B\r\nContent-Disposition: form-data; name=\"g]x\"; filename=y\r\n\r\n--B\r\nContent-Disposition: form-data; name=h; filename=z\r\n\r\nXY\r\n--B--\r\n";
        let (p, _) = parse_all(body, 9);
        assert_eq!(post_text(&p), [("f".into(), "text".into())]);
        assert!(p.notes.contains(&Note::SkippedUpload));
        let files: Vec<String> = p.files.iter().map(|(k, _)| k.to_text()).collect();
        assert_eq!(files, ["f"], "h comes after a skipped upload");
    }

    #[test]
    fn max_file_size_in_any_case_cancels_later_uploads() {
        let body = b"--B\r\nContent-Disposition: form-data; name=max_file_size\r\n\r\n1\r\n--B\r\nContent-Disposition: form-data; name=h; filename=z\r\n\r\nXY\r\n--B--\r\n";
        let (_, events) = parse_all(body, 9);
        assert!(events.contains(&Event::FileEnd { error: 2, size: 0 }));
    }
}
