//! Ledger entries: one JSON object per line, in a fixed field order.
//!
//! The line (without its newline) is exactly the bytes hashed into the
//! Merkle tree, so its form is fixed: `seq`, `ts`, `kind`, then the kind's
//! fields in the order declared here, compact JSON as `serde_json` writes
//! it. Every field is always present (`null` when absent). A line that does
//! not re-serialise to the same bytes is rejected as non-canonical.
//!
//! No patient data: bodies appear only as HMACs computed by the caller
//! under the fingerprint key, with their sizes; records only by id.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::record_ids::{Delivery, RecordIds};

/// What a `reauth` entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReauthAction {
    /// A signed approval re-authorised the account until `until`.
    Approve,
    /// The account lapsed (no approval in time, or idle): REDCap's
    /// expiration was set to the day it lapsed and the gateway refuses it.
    Lapse,
}

/// A statement as signed — a re-approval (`reauth`) or an audit-trail
/// review (`review`): the statement, the SSH signature over it and the
/// signer's key, so it can be checked without this tool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The signer's principal (from `warden.toml`'s `approvers`, or
    /// `[review] reviewers`).
    pub signer: String,
    /// The signer's `allowed_signers` line, as configured.
    pub allowed_signer: String,
    /// The statement exactly as signed (the bytes of the file).
    pub statement: String,
    /// The armored SSH signature (`-----BEGIN SSH SIGNATURE-----`).
    pub signature: String,
}

/// Version of the line format, written in every segment header.
pub const FORMAT_VERSION: u32 = 1;

/// One ledger entry: its position, its time, and what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 0, without gaps; equal to the leaf index.
    pub seq: u64,
    /// When the writer committed it (UTC, nanoseconds).
    #[serde(with = "ts_nanos")]
    pub ts: Timestamp,
    /// What happened: the kind and its fields.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What an entry records. The JSON `kind` field names the variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    /// First entry of every segment file.
    Header {
        /// [`FORMAT_VERSION`].
        version: u32,
        /// The ledger's origin, as in its checkpoints.
        origin: String,
        /// Hex key id (4 bytes) of the key signing checkpoints when the
        /// segment was opened.
        key_id: String,
    },
    /// A client request the gateway is about to forward.
    Request {
        /// The gateway's id for the request; its `response` (or
        /// `interrupted`) entry names the same id.
        request_id: String,
        /// The gateway client that sent it.
        client: String,
        /// The service account whose REDCap token the request is sent with.
        account: String,
        /// The study site (DAG) the account is bound to, if any.
        site: Option<String>,
        /// REDCap's `content` parameter, if sent.
        content: Option<String>,
        /// REDCap's `action` parameter, if sent.
        action: Option<String>,
        /// REDCap's `format` parameter, if sent.
        format: Option<String>,
        /// Names of every parameter sent (never their values).
        params: Vec<String>,
        /// Record ids the request names (HMACs for identifier fields).
        record_ids: RecordIds,
        /// HMAC of `filterLogic` under the fingerprint key, if present.
        filter_hmac: Option<String>,
        /// HMAC of the canonical request body under the fingerprint key.
        body_hmac: String,
        /// Size of the request body in bytes (the body itself is never
        /// stored).
        body_bytes: u64,
        /// Why the client says it makes the request, if it gave a reason.
        reason: Option<String>,
    },
    /// REDCap's answer to a request.
    Response {
        /// The id of the `request` entry this answers.
        request_id: String,
        /// REDCap's HTTP status.
        status: u16,
        /// The records the answer named: for a record export every record
        /// that left, for an import every record changed.
        record_ids: RecordIds,
        /// HMAC of the answer's body under the fingerprint key (the body
        /// itself is never stored).
        body_hmac: String,
        /// Size of the answer's body in bytes.
        body_bytes: u64,
        /// Milliseconds from forwarding the request to the end of the
        /// answer.
        latency_ms: u64,
        /// Only for answers streamed to the client (record exports): whether
        /// the client received it whole. Absent otherwise — and in every
        /// line written before the field existed, which stay canonical.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivery: Option<Delivery>,
    },
    /// Refused attempts, aggregated per source and minute.
    Denied {
        /// The client's network address.
        source: String,
        /// The client name it presented, if any.
        client: Option<String>,
        /// Why the attempts were refused.
        reason: String,
        /// How many attempts from `source` were refused in the minute.
        count: u64,
    },
    /// Something an operator must look at (including recovery reports).
    Alert {
        /// A stable dotted code to filter on, e.g. `ledger.recovered`.
        code: String,
        /// What happened and what to do, for people.
        message: String,
    },
    /// An administrative action not covered by a more specific kind.
    Admin {
        /// The OS login of the person who made the change.
        operator: String,
        /// What was done (a short verb phrase, e.g. `ledger.adopt`).
        action: String,
        /// What it was done to.
        target: String,
        /// The reason the operator gave.
        reason: String,
    },
    /// A secrets-store change (never the value).
    Secret {
        /// The OS login of the person who made the change.
        operator: String,
        /// The secret's name in the store.
        name: String,
        /// The store's version of the secret after the change.
        version: String,
        /// What was done to the secret (e.g. `put`, `create`).
        action: String,
        /// Token fingerprint (`fp1:…`), when the secret is a token.
        fingerprint: Option<String>,
        /// The reason the operator gave.
        reason: String,
    },
    /// A signing-key or client-key change; `verifier_key` is public.
    Key {
        /// The OS login of the person who made the change.
        operator: String,
        /// What was done to the key (e.g. `issue`, `revoke`, `rotate`).
        action: String,
        /// Which key: the ledger signing key or a client's key, by name.
        key_name: String,
        /// The new public verifier key, when the change made one.
        verifier_key: Option<String>,
        /// The reason the operator gave.
        reason: String,
    },
    /// REDCap user rights applied to a service account.
    Rights {
        /// The OS login of the person who applied them.
        operator: String,
        /// The service account whose rights changed.
        account: String,
        /// The REDCap project they apply in.
        project: String,
        /// One line per right changed: `name: old -> new`.
        changes: Vec<String>,
        /// The reason the operator gave.
        reason: String,
    },
    /// A service account re-authorised (or lapsed).
    Reauth {
        /// The OS login of the person who re-authorised it.
        operator: String,
        /// The service account.
        account: String,
        /// RFC 3339 end of the new authorisation, if granted.
        until: Option<String>,
        /// The reason the operator gave.
        reason: String,
        /// What happened: an approval or a lapse. Absent in every line
        /// written before the field existed, which stay canonical.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<ReauthAction>,
        /// The signed approval, for [`ReauthAction::Approve`]: enough for
        /// anyone to check it again with `ssh-keygen -Y verify`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<Approval>,
    },
    /// A rotation state transition.
    Rotation {
        /// The id shared by every transition of one token rotation.
        rotation_id: String,
        /// The service account whose token is rotated.
        account: String,
        /// The rotation state left.
        from: String,
        /// The rotation state entered.
        to: String,
        /// The OS login of the person driving the rotation.
        operator: String,
        /// What happened in the transition, for people (never a token).
        detail: String,
    },
    /// A reconciliation run against REDCap's logging.
    Reconcile {
        /// Start of the span of REDCap's log compared (RFC 3339).
        window_start: String,
        /// End of the span of REDCap's log compared (RFC 3339).
        window_end: String,
        /// How many discrepancies the run found.
        findings: u64,
        /// What was found, for people.
        summary: String,
    },
    /// A periodic review signed off by a person.
    Review {
        /// The OS login of the person who signed the review off.
        reviewer: String,
        /// What was reviewed.
        scope: String,
        /// The reviewer's conclusion.
        outcome: String,
        /// The reviewer's remarks.
        note: String,
        /// The signed review statement (`review sign`): enough for anyone
        /// to check it again with `ssh-keygen -Y verify -n
        /// redcap-warden-review`. Absent in every line written before the
        /// field existed, which stay canonical.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<Approval>,
    },
    /// A request the gateway forwarded (its `request` entry is durable)
    /// whose answer it never recorded: the gateway stopped uncleanly in
    /// between. REDCap may or may not have acted; reconciling with REDCap's
    /// log settles it.
    Interrupted {
        /// The id of the `request` entry that got no `response`.
        request_id: String,
        /// What is known: when the gateway started again and what it found.
        detail: String,
    },
}

impl EntryKind {
    /// About how long the entry's line is.
    pub fn size_hint(&self) -> usize {
        256 + match self {
            EntryKind::Request {
                record_ids, params, ..
            } => record_ids.json_len_hint() + params.iter().map(|p| p.len() + 3).sum::<usize>(),
            EntryKind::Response { record_ids, .. } => record_ids.json_len_hint(),
            _ => 0,
        }
    }

    /// The JSON `kind` value.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Header { .. } => "header",
            EntryKind::Request { .. } => "request",
            EntryKind::Response { .. } => "response",
            EntryKind::Denied { .. } => "denied",
            EntryKind::Alert { .. } => "alert",
            EntryKind::Admin { .. } => "admin",
            EntryKind::Secret { .. } => "secret",
            EntryKind::Key { .. } => "key",
            EntryKind::Rights { .. } => "rights",
            EntryKind::Reauth { .. } => "reauth",
            EntryKind::Rotation { .. } => "rotation",
            EntryKind::Reconcile { .. } => "reconcile",
            EntryKind::Review { .. } => "review",
            EntryKind::Interrupted { .. } => "interrupted",
        }
    }
}

/// Why a line is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not JSON, or not an entry of a known kind with every
    /// field of its kind; the text is serde_json's message.
    #[error("not a JSON entry: {0}")]
    Json(String),
    /// The line parses but does not re-serialise to the same bytes, so
    /// its leaf hash would not be reproducible: it was edited or written
    /// by something other than the ledger.
    #[error("not in canonical form (field order, whitespace or escaping differs)")]
    NotCanonical,
}

impl Entry {
    /// A new ledger's first entry: the header, seq 0, stamped now, naming
    /// `origin` and the key id of its first signing key.
    pub(crate) fn first_header(origin: &str, key_id: String) -> Entry {
        Entry {
            seq: 0,
            ts: Timestamp::now(),
            kind: EntryKind::Header {
                version: FORMAT_VERSION,
                origin: origin.to_owned(),
                key_id,
            },
        }
    }

    /// The line bytes (no newline): what is hashed and stored.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = Vec::new();
        self.write_line(&mut line);
        line
    }

    /// Appends the line (no newline) to `out`, which is first grown to
    /// hold it: a response naming a million records is one multi-megabyte
    /// line, written once, with no copy and no doubling on the way.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.reserve(self.kind.size_hint());
        serde_json::to_writer(&mut *out, self).expect("entries always serialise");
    }

    /// Parses a line (without newline) and checks it is canonical.
    pub fn from_line(line: &[u8]) -> Result<Entry, LineError> {
        let entry: Entry =
            serde_json::from_slice(line).map_err(|e| LineError::Json(e.to_string()))?;
        if entry.to_line() != line {
            return Err(LineError::NotCanonical);
        }
        Ok(entry)
    }

    /// The Merkle leaf hash of this entry.
    pub fn leaf_hash(&self) -> crate::merkle::Hash {
        crate::merkle::leaf_hash(&self.to_line())
    }
}

/// What [`check_line_fast`] learned from a line it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FastLine<'a> {
    pub seq: u64,
    /// The `ts` text: fixed width, so text order is time order.
    pub ts: &'a str,
}

#[derive(Clone, Copy)]
enum Field {
    Str,
    OptStr,
    StrList,
    Int(u64),
}

/// The fields, in order, of the kinds the fast path handles (every kind
/// but `header` and `key`, which are rare and carry what a scan needs).
fn fast_schema(kind: &[u8]) -> Option<&'static [(&'static str, Field)]> {
    use Field::{Int, OptStr, Str, StrList};
    const U64: Field = Int(u64::MAX);
    Some(match kind {
        b"request" => &[
            ("request_id", Str),
            ("client", Str),
            ("account", Str),
            ("site", OptStr),
            ("content", OptStr),
            ("action", OptStr),
            ("format", OptStr),
            ("params", StrList),
            ("record_ids", StrList),
            ("filter_hmac", OptStr),
            ("body_hmac", Str),
            ("body_bytes", U64),
            ("reason", OptStr),
        ],
        b"response" => &[
            ("request_id", Str),
            ("status", Int(u16::MAX as u64)),
            ("record_ids", StrList),
            ("body_hmac", Str),
            ("body_bytes", U64),
            ("latency_ms", U64),
        ],
        b"denied" => &[
            ("source", Str),
            ("client", OptStr),
            ("reason", Str),
            ("count", U64),
        ],
        b"alert" => &[("code", Str), ("message", Str)],
        b"admin" => &[
            ("operator", Str),
            ("action", Str),
            ("target", Str),
            ("reason", Str),
        ],
        b"secret" => &[
            ("operator", Str),
            ("name", Str),
            ("version", Str),
            ("action", Str),
            ("fingerprint", OptStr),
            ("reason", Str),
        ],
        b"rights" => &[
            ("operator", Str),
            ("account", Str),
            ("project", Str),
            ("changes", StrList),
            ("reason", Str),
        ],
        b"reauth" => &[
            ("operator", Str),
            ("account", Str),
            ("until", OptStr),
            ("reason", Str),
        ],
        b"rotation" => &[
            ("rotation_id", Str),
            ("account", Str),
            ("from", Str),
            ("to", Str),
            ("operator", Str),
            ("detail", Str),
        ],
        b"reconcile" => &[
            ("window_start", Str),
            ("window_end", Str),
            ("findings", U64),
            ("summary", Str),
        ],
        b"review" => &[
            ("reviewer", Str),
            ("scope", Str),
            ("outcome", Str),
            ("note", Str),
        ],
        b"interrupted" => &[("request_id", Str), ("detail", Str)],
        _ => return None,
    })
}

/// The index of the first `"`, `\\` or control character (< 0x20) in `b`,
/// tested eight bytes at a time: in each word, a byte is flagged when it
/// is zero after XOR with `"` or `\\`, or below 0x20 (the usual
/// borrow-based tests; a borrow can only flag bytes above a true match,
/// so the lowest flag is the first match).
fn find_special(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut i = 0;
    while let Some(word) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let m = below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// A byte cursor for the fast path.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        // A byte loop: these literals are short, and a call to memcmp for
        // each of a line's dozen field names costs more than the compare.
        let got = self.b.get(self.i..self.i + s.len())?;
        if got.iter().zip(s).all(|(a, b)| a == b) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// A canonical non-negative integer no larger than `max`.
    fn int(&mut self, max: u64) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i)
            && c.is_ascii_digit()
        {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 || (n > 1 && self.b[start] == b'0') || v > max {
            return None;
        }
        Some(v)
    }

    /// A string in serde_json's minimal escaping; returns its raw bytes
    /// (between the quotes).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.lit(b"\"")?;
        let start = self.i;
        loop {
            // Skip plain bytes in one tight loop.
            let plain = find_special(&self.b[self.i..])?;
            self.i += plain;
            let c = self.b[self.i];
            match c {
                b'"' => {
                    let raw = &self.b[start..self.i];
                    self.i += 1;
                    return Some(raw);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    match e {
                        b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => self.i += 2,
                        b'u' => {
                            // Only \u00XX, lowercase, for a control character
                            // without a short escape.
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            let v = match hex {
                                [b'0', b'0', h, l] => {
                                    let d = |x: u8| match x {
                                        b'0'..=b'9' => Some(x - b'0'),
                                        b'a'..=b'f' => Some(x - b'a' + 10),
                                        _ => None,
                                    };
                                    d(*h)? * 16 + d(*l)?
                                }
                                _ => return None,
                            };
                            if v >= 0x20 || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    fn value(&mut self, field: Field) -> Option<()> {
        match field {
            Field::Str => self.string().map(drop),
            Field::OptStr => {
                if self.lit(b"null").is_some() {
                    Some(())
                } else {
                    self.string().map(drop)
                }
            }
            Field::Int(max) => self.int(max).map(drop),
            Field::StrList => {
                self.lit(b"[")?;
                if self.lit(b"]").is_some() {
                    return Some(());
                }
                loop {
                    self.string()?;
                    if self.lit(b"]").is_some() {
                        return Some(());
                    }
                    self.lit(b",")?;
                }
            }
        }
    }
}

/// Whether `ts` is a timestamp exactly as the writer prints it, in a range
/// where parsing and printing round-trip (years 0001–9998, no leap second).
fn canonical_ts(ts: &[u8]) -> bool {
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        n0,
        n1,
        b':',
        s0,
        s1,
        b'.',
        frac @ ..,
    ] = ts
    else {
        return false;
    };
    let [f @ .., b'Z'] = frac else {
        return false;
    };
    let digits = [y0, y1, y2, y3, m0, m1, d0, d1, h0, h1, n0, n1, s0, s1];
    if f.len() != 9 || !f.iter().chain(digits).all(u8::is_ascii_digit) {
        return false;
    }
    let n = |a: &u8, b: &u8| u32::from(a - b'0') * 10 + u32::from(b - b'0');
    let year = n(y0, y1) * 100 + n(y2, y3);
    let (month, day) = (n(m0, m1), n(d0, d1));
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=9998).contains(&year)
        && (1..=days).contains(&day)
        && n(h0, h1) <= 23
        && n(n0, n1) <= 59
        && n(s0, s1) <= 59
}

/// The fast path of [`Entry::from_line`] for verification: accepts a line
/// only if it is certainly valid UTF-8, canonical JSON of a known kind
/// other than `header` and `key`, with a valid `ts`; `None` means "ask the
/// full parser" (which rejects or accepts it), never "invalid". It must
/// never accept a line the full parser rejects (tested against it).
#[cfg(test)]
pub(crate) fn check_line_fast(line: &[u8]) -> Option<FastLine<'_>> {
    let mut with_nl = line.to_vec();
    with_nl.push(b'\n');
    let (fast, len) = check_next_line_fast(&with_nl)?;
    (len == line.len()).then_some(())?;
    // Re-borrow the ts from `line` (same offsets).
    let start = fast.ts.as_ptr() as usize - with_nl.as_ptr() as usize;
    let ts = std::str::from_utf8(&line[start..start + fast.ts.len()]).ok()?;
    Some(FastLine { seq: fast.seq, ts })
}

/// [`check_line_fast`] on the line at the start of `rest`, which needs no
/// separate search for its newline: a canonical entry holds no raw
/// newline, so the line ends right after its closing brace. Returns the
/// line's length (without the newline).
pub(crate) fn check_next_line_fast(rest: &[u8]) -> Option<(FastLine<'_>, usize)> {
    let mut c = Cursor { b: rest, i: 0 };
    c.lit(b"{\"seq\":")?;
    let seq = c.int(u64::MAX)?;
    c.lit(b",\"ts\":")?;
    let ts_start = c.i + 1;
    let ts = c.string()?;
    if !canonical_ts(ts) {
        return None;
    }
    c.lit(b",\"kind\":")?;
    let kind = c.string()?;
    let schema = fast_schema(kind)?;
    for (name, field) in schema {
        c.lit(b",\"")?;
        c.lit(name.as_bytes())?;
        c.lit(b"\":")?;
        c.value(*field)?;
    }
    // A streamed answer's response ends with its delivery.
    if c.lit(b"}").is_none() {
        c.lit(b",\"delivery\":")?;
        let d = c.string()?;
        if kind != b"response"
            || !matches!(
                d,
                b"complete" | b"client_disconnected" | b"upstream_failed" | b"withheld"
            )
        {
            return None;
        }
        c.lit(b"}")?;
    }
    let len = c.i;
    if rest.get(len) != Some(&b'\n') {
        return None;
    }
    let text = std::str::from_utf8(&rest[..len]).ok()?;
    Some((
        FastLine {
            seq,
            ts: &text[ts_start..ts_start + ts.len()],
        },
        len,
    ))
}

/// `ts` as RFC 3339 UTC with exactly nine fractional digits.
mod ts_nanos {
    use jiff::Timestamp;
    use jiff::fmt::temporal::DateTimePrinter;
    use serde::{Deserialize, Deserializer, Serializer};

    /// `ts` as the ledger writes it, e.g. `2026-11-28T11:20:21.408570602Z`.
    pub fn format(ts: &Timestamp) -> String {
        DateTimePrinter::new()
            .precision(Some(9))
            .timestamp_to_string(ts)
    }

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        // Printed on the stack: every entry has one, and the committer
        // writes two per gateway request.
        let mut text = Stack::default();
        let printed = DateTimePrinter::new()
            .precision(Some(9))
            .print_timestamp(ts, jiff::fmt::StdFmtWrite(&mut text));
        match (printed, std::str::from_utf8(&text.bytes[..text.len])) {
            (Ok(()), Ok(t)) => s.serialize_str(t),
            _ => s.serialize_str(&format(ts)),
        }
    }

    /// Room for any timestamp jiff prints (30 bytes in the ledger's
    /// years).
    struct Stack {
        bytes: [u8; 48],
        len: usize,
    }

    impl Default for Stack {
        fn default() -> Self {
            Stack {
                bytes: [0; 48],
                len: 0,
            }
        }
    }

    impl std::fmt::Write for Stack {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            let end = self.len + piece.len();
            let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
            room.copy_from_slice(piece.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub use ts_nanos::format as format_ts;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            ts: Timestamp::new(1_700_000_000, 5).unwrap(),
            kind: EntryKind::Alert {
                code: "x".into(),
                message: "y".into(),
            },
        }
    }

    #[test]
    fn timestamps_printed_on_the_stack_are_jiffs_text() {
        #[derive(serde::Serialize)]
        struct Ts(#[serde(with = "ts_nanos")] Timestamp);
        for ts in [
            Timestamp::MIN,
            Timestamp::MAX,
            Timestamp::UNIX_EPOCH,
            Timestamp::now(),
            "2026-11-28T11:20:21.408570602Z".parse().unwrap(),
        ] {
            let json = serde_json::to_string(&Ts(ts)).unwrap();
            assert_eq!(json, format!("\"{}\"", ts_nanos::format(&ts)));
        }
    }

    #[test]
    fn field_order_and_timestamp_are_fixed() {
        let line = String::from_utf8(sample().to_line()).unwrap();
        assert_eq!(
            line,
            r#"{"seq":7,"ts":"2023-11-14T22:13:20.000000005Z","kind":"alert","code":"x","message":"y"}"#
        );
        assert_eq!(Entry::from_line(line.as_bytes()).unwrap(), sample());
    }

    /// The escaping rules docs/ledger.md §2.1 states.
    #[test]
    fn strings_are_escaped_as_documented() {
        let e = Entry {
            seq: 1,
            ts: Timestamp::UNIX_EPOCH,
            kind: EntryKind::Alert {
                code: "a/b \u{e9}\u{2014}".into(),
                message: "q\"b\\n\nr\rt\tb\u{8}f\u{c}c\u{1}d\u{1f}\u{7f}".into(),
            },
        };
        let line = String::from_utf8(e.to_line()).unwrap();
        assert!(
            line.ends_with(concat!(
                "\"code\":\"a/b \u{e9}\u{2014}\",",
                r#""message":"q\"b\\n\nr\rt\tb\bf\fc\u0001d\u001f"#,
                "\u{7f}\"}"
            )),
            "{line}"
        );
        assert_eq!(Entry::from_line(line.as_bytes()).unwrap(), e);
    }

    #[test]
    fn optional_fields_are_written_as_null() {
        let e = Entry {
            seq: 0,
            ts: Timestamp::UNIX_EPOCH,
            kind: EntryKind::Reauth {
                operator: "ana".into(),
                account: "svc".into(),
                until: None,
                reason: "lapsed".into(),
                action: None,
                approval: None,
            },
        };
        let line = String::from_utf8(e.to_line()).unwrap();
        assert_eq!(
            line,
            r#"{"seq":0,"ts":"1970-01-01T00:00:00.000000000Z","kind":"reauth","operator":"ana","account":"svc","until":null,"reason":"lapsed"}"#
        );
    }

    #[test]
    fn non_canonical_lines_are_rejected() {
        let good = String::from_utf8(sample().to_line()).unwrap();
        let variants = [
            good.replace(",\"kind\"", ", \"kind\""),
            good.replace(
                r#""seq":7,"ts":"2023-11-14T22:13:20.000000005Z""#,
                r#""ts":"2023-11-14T22:13:20.000000005Z","seq":7"#,
            ),
            good.replace(".000000005Z", ".000000005+00:00"),
            good.replace("}", ",\"extra\":1}"),
            good.replace("\"y\"", "\"\\u0079\""),
        ];
        for v in variants {
            assert_ne!(v, good);
            assert!(Entry::from_line(v.as_bytes()).is_err(), "accepted {v}");
        }
        assert!(matches!(
            Entry::from_line(b"{\"seq\":1"),
            Err(LineError::Json(_))
        ));
    }

    fn all_kinds() -> Vec<EntryKind> {
        vec![
            EntryKind::Header {
                version: 1,
                origin: "o".into(),
                key_id: "01020304".into(),
            },
            EntryKind::Request {
                request_id: "r1".into(),
                client: "c".into(),
                account: "a".into(),
                site: Some("s".into()),
                content: Some("record".into()),
                action: Some("export".into()),
                format: Some("json".into()),
                params: vec!["content".into(), "records".into()],
                record_ids: ["101"].into_iter().collect(),
                filter_hmac: None,
                body_hmac: "ab".into(),
                body_bytes: 10,
                reason: None,
            },
            EntryKind::Response {
                request_id: "r1".into(),
                status: 200,
                record_ids: RecordIds::new(),
                body_hmac: "cd".into(),
                body_bytes: 3,
                latency_ms: 12,
                delivery: None,
            },
            EntryKind::Response {
                request_id: "r2".into(),
                status: 200,
                record_ids: ["1", "2"].into_iter().collect(),
                body_hmac: "ef".into(),
                body_bytes: 1 << 20,
                latency_ms: 40,
                delivery: Some(Delivery::ClientDisconnected),
            },
            EntryKind::Denied {
                source: "10.0.0.1".into(),
                client: None,
                reason: "unknown key".into(),
                count: 3,
            },
            EntryKind::Alert {
                code: "c".into(),
                message: "m".into(),
            },
            EntryKind::Admin {
                operator: "o".into(),
                action: "reload".into(),
                target: "gw".into(),
                reason: "r".into(),
            },
            EntryKind::Secret {
                operator: "o".into(),
                name: "n".into(),
                version: "3".into(),
                action: "put".into(),
                fingerprint: Some("fp1:0011".into()),
                reason: "r".into(),
            },
            EntryKind::Key {
                operator: "o".into(),
                action: "rotate".into(),
                key_name: "k".into(),
                verifier_key: Some("k+01020304+AQ==".into()),
                reason: "r".into(),
            },
            EntryKind::Rights {
                operator: "o".into(),
                account: "a".into(),
                project: "12".into(),
                changes: vec!["export: 1 -> 0".into()],
                reason: "r".into(),
            },
            EntryKind::Reauth {
                operator: "o".into(),
                account: "a".into(),
                until: Some("2027-01-01T00:00:00Z".into()),
                reason: "r".into(),
                action: None,
                approval: None,
            },
            EntryKind::Reauth {
                operator: "o".into(),
                account: "a".into(),
                until: None,
                reason: "idle".into(),
                action: Some(ReauthAction::Lapse),
                approval: None,
            },
            EntryKind::Reauth {
                operator: "o".into(),
                account: "a".into(),
                until: Some("2027-01-01".into()),
                reason: "r".into(),
                action: Some(ReauthAction::Approve),
                approval: Some(Approval {
                    signer: "ana@example.org".into(),
                    allowed_signer: "ana@example.org ssh-ed25519 AAAA".into(),
                    statement: "{\"account\":\"a\"}\n".into(),
                    signature: "-----BEGIN SSH SIGNATURE-----\nU1NI\n-----END SSH SIGNATURE-----\n"
                        .into(),
                }),
            },
            EntryKind::Rotation {
                rotation_id: "x".into(),
                account: "a".into(),
                from: "planned".into(),
                to: "obtained".into(),
                operator: "o".into(),
                detail: "d".into(),
            },
            EntryKind::Reconcile {
                window_start: "s".into(),
                window_end: "e".into(),
                findings: 0,
                summary: "ok".into(),
            },
            EntryKind::Review {
                reviewer: "r".into(),
                scope: "s".into(),
                outcome: "ok".into(),
                note: "n".into(),
                signed: None,
            },
            EntryKind::Review {
                reviewer: "r".into(),
                scope: "s".into(),
                outcome: "ok".into(),
                note: "n".into(),
                signed: Some(Approval {
                    signer: "qa@example.org".into(),
                    allowed_signer: "qa@example.org ssh-ed25519 AAAA".into(),
                    statement: "{\"review\":\"audit-trail\"}\n".into(),
                    signature: "-----BEGIN SSH SIGNATURE-----\nU1NI\n-----END SSH SIGNATURE-----\n"
                        .into(),
                }),
            },
            EntryKind::Interrupted {
                request_id: "r3".into(),
                detail: "d".into(),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = all_kinds();
        let mut names = std::collections::BTreeSet::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            names.insert(kind.name());
            let e = Entry {
                seq: i as u64,
                ts: Timestamp::now(),
                kind,
            };
            let line = e.to_line();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
            assert_eq!(keys[..3], ["seq", "ts", "kind"]);
            assert_eq!(v["kind"], e.kind.name());
            assert_eq!(Entry::from_line(&line).unwrap(), e);
        }
        assert_eq!(names.len(), 14);
    }

    /// The fast path accepts every canonical ordinary entry, and never a
    /// line the full parser rejects: checked on every kind with awkward
    /// strings, and on every single-byte change and deletion of them.
    #[test]
    fn find_special_agrees_with_a_byte_loop() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        // Every byte value at every position of buffers of 0-19 bytes,
        // over backgrounds of plain ASCII, bytes just above 0x20 and 0x80+.
        for background in [b'a', b' ', b'!', 0x80, 0xa0, 0xff, b'#', b']'] {
            for len in 0..20 {
                for at in 0..len {
                    for v in 0..=255u8 {
                        let mut b = vec![background; len];
                        b[at] = v;
                        assert_eq!(find_special(&b), naive(&b), "{b:?}");
                        if at + 1 < len {
                            b[at + 1] = b'"';
                            assert_eq!(find_special(&b), naive(&b), "{b:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fast_path_never_accepts_what_the_parser_rejects() {
        let mut lines = Vec::new();
        for (i, kind) in all_kinds().into_iter().enumerate() {
            // Rare kinds, and reauth and review lines with their optional
            // last fields, are left to the full parser.
            let fast = !matches!(
                kind,
                EntryKind::Header { .. }
                    | EntryKind::Key { .. }
                    | EntryKind::Reauth {
                        action: Some(_),
                        ..
                    }
                    | EntryKind::Review {
                        signed: Some(_),
                        ..
                    }
            );
            let line = Entry {
                seq: i as u64 * 1000 + 7,
                ts: "2024-02-29T23:59:59.000000001Z".parse().unwrap(),
                kind,
            }
            .to_line();
            assert_eq!(
                check_line_fast(&line).is_some(),
                fast,
                "{}",
                String::from_utf8_lossy(&line)
            );
            lines.push(line);
        }
        let awkward = Entry {
            seq: u64::MAX,
            ts: "0001-01-01T00:00:00.000000000Z".parse().unwrap(),
            kind: EntryKind::Alert {
                code: "q\"\\/\u{1}\u{1f}\n\r\t\u{8}\u{c}\u{7f}".into(),
                message: "é ✓ \u{2028} 😀".into(),
            },
        }
        .to_line();
        assert!(check_line_fast(&awkward).is_some());
        lines.push(awkward);
        let replacements = [
            b'0', b'1', b'9', b'a', b'f', b'A', b'u', b'n', b'"', b'\\', b',', b':', b'[', b']',
            b'{', b'}', b' ', b'-', b'T', b'Z', 0x00, 0x1f, 0x7f, 0x80, 0xc3, 0xff,
        ];
        let check = |m: &[u8]| {
            if let Some(fast) = check_line_fast(m) {
                let full = Entry::from_line(m).unwrap_or_else(|e| {
                    panic!("fast path accepted {:?}: {e}", String::from_utf8_lossy(m))
                });
                assert_eq!(full.seq, fast.seq);
                assert_eq!(format_ts(&full.ts), fast.ts);
            }
        };
        for line in &lines {
            for i in 0..line.len() {
                for r in replacements {
                    let mut m = line.clone();
                    m[i] = r;
                    check(&m);
                }
                let mut m = line.clone();
                m.remove(i);
                check(&m);
                let mut m = line.clone();
                m.insert(i, b'0');
                check(&m);
            }
        }
        for ts in [
            "2023-02-29T00:00:00.000000000Z",
            "2026-13-01T00:00:00.000000000Z",
            "2026-04-31T00:00:00.000000000Z",
            "2026-01-01T24:00:00.000000000Z",
            "2026-01-01T00:00:60.000000000Z",
            "0000-01-01T00:00:00.000000000Z",
            "9999-12-31T00:00:00.000000000Z",
        ] {
            let line =
                format!(r#"{{"seq":1,"ts":"{ts}","kind":"alert","code":"c","message":"m"}}"#);
            assert!(check_line_fast(line.as_bytes()).is_none(), "{ts}");
        }
    }
}
