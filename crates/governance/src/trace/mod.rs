//! Tracing one record end to end (`trace RECORD`): the client that asked,
//! through each ledger entry naming the record — proved to be in the tree
//! the latest signed checkpoint commits to — to the rows REDCap's own log
//! holds for it.
//!
//! - [`Tracer`]: **one pass** over the ledger's lines, as stored. Every
//!   line is hashed into a [`ProofCollector`], which hands back the
//!   inclusion proofs of the chosen entries at the end (O(n + k log n),
//!   never a proof per entry over the whole log); only `request` and
//!   `response` lines of the study's accounts are parsed, and only those
//!   holding the record's id (as written, or its HMAC under the
//!   installation's key: the form identifying values take) are parsed
//!   whole. Requests wait in a map until their response, so memory holds
//!   the calls in flight and the record's own calls, not the ledger.
//! - [`Trace::attach_rows`]: REDCap's rows (redacted) paired with the calls
//!   by the rule [`reconcile`](crate::reconcile) uses — same user, time in
//!   the row's minute widened by the tolerance ([`row_spans`]) — and the
//!   rows naming the record that no call explains.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use ledger::merkle::{self, ProofCollector};
use ledger::{Checkpoint, Entry, EntryKind};
use redcap::client::LogEntry;
use serde::{Deserialize, Serialize};

use crate::reconcile::{in_spans, row_spans, shown};
use crate::redcap_log;

/// Why a trace could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The ledger's lines did not arrive one seq after another.
    #[error("the ledger's line {got} came where line {want} was expected; run `ledger verify`")]
    OutOfOrder {
        /// The seq expected.
        want: u64,
        /// The seq handed in.
        got: u64,
    },
    /// A request or response line that is not a valid entry.
    #[error("ledger entry {seq} is not a valid entry ({detail}); run `ledger verify`")]
    BadEntry {
        /// Its seq.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// The checkpoint signs more entries than the ledger holds.
    #[error(
        "the latest checkpoint signs {size} entries but the ledger holds {entries}: entries were removed; run `ledger verify`"
    )]
    Truncated {
        /// The checkpoint's size.
        size: u64,
        /// The entries read.
        entries: u64,
    },
    /// The entries do not give the checkpoint's root.
    #[error(
        "the ledger's first {size} entries do not have the root the latest checkpoint signs: an entry was changed; run `ledger verify`"
    )]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// A proof that does not verify (a bug, never expected).
    #[error("the inclusion proof of entry {seq} does not verify: {detail}")]
    BadProof {
        /// The entry.
        seq: u64,
        /// Why.
        detail: String,
    },
}

/// One ledger entry of a call, and its proof.
#[derive(Debug, Clone, Serialize)]
pub struct Leaf {
    /// The entry's seq (its leaf index).
    pub seq: u64,
    /// When it was committed.
    pub ts: Timestamp,
    /// Whether the entry names the record (its own `record_ids`).
    pub names_record: bool,
    /// The inclusion proof in the latest checkpoint's tree, verified;
    /// `None` for an entry that does not name the record, or that is past
    /// the checkpoint (not signed yet).
    pub proof: Option<Proof>,
}

/// A verified inclusion proof.
#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    /// The tree size (the checkpoint's).
    pub tree_size: u64,
    /// The entry's leaf hash (hex).
    pub leaf_hash: String,
    /// The audit path, from the leaf up (hex).
    pub path: Vec<String>,
}

/// A call through the gateway that named the record: its request and
/// response entries and the REDCap rows beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// The gateway's request id.
    pub request_id: String,
    /// The gateway client that sent it.
    pub client: String,
    /// The service account whose token was used.
    pub account: String,
    /// The site, if any.
    pub site: Option<String>,
    /// REDCap's `content`.
    pub content: Option<String>,
    /// REDCap's `action`.
    pub action: Option<String>,
    /// The client's reason, if it gave one.
    pub reason: Option<String>,
    /// The `request` entry.
    pub request: Leaf,
    /// The `response` entry, once written.
    pub response: Option<Leaf>,
    /// REDCap's status.
    pub status: Option<u16>,
    /// REDCap's rows of this call's account within the tolerance of the
    /// request (redacted; record rows show their record name only).
    pub redcap_rows: Vec<String>,
}

/// A REDCap row naming the record that no call through the gateway
/// explains.
#[derive(Debug, Clone, Serialize)]
pub struct Unexplained {
    /// The row, as shown (redacted).
    pub row: String,
    /// The row's REDCap user.
    pub username: String,
    /// The governed `[[account]]` the user is, if any: then the account's
    /// token was used outside the gateway.
    pub account: Option<String>,
}

/// What a trace found.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The record traced.
    pub record: String,
    /// The checkpoint the proofs are against: (size, root hex); `None`
    /// when nothing was signed yet.
    pub checkpoint: Option<(u64, String)>,
    /// Entries read.
    pub entries: u64,
    /// The calls naming the record, in the order of their requests (time
    /// order).
    pub calls: Vec<Call>,
    /// REDCap rows naming the record with no call beside them.
    pub unexplained: Vec<Unexplained>,
}

impl Trace {
    /// Entries naming the record.
    pub fn named(&self) -> usize {
        self.calls
            .iter()
            .map(|c| {
                usize::from(c.request.names_record)
                    + usize::from(c.response.as_ref().is_some_and(|r| r.names_record))
            })
            .sum()
    }

    /// Unexplained rows by governed accounts: their tokens were used
    /// outside the gateway.
    pub fn findings(&self) -> usize {
        self.unexplained
            .iter()
            .filter(|u| u.account.is_some())
            .count()
    }

    /// The span of time the calls cover (first request, last entry).
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        let first = self.calls.first()?.request.ts;
        let last = self
            .calls
            .iter()
            .map(|c| c.response.as_ref().map_or(c.request.ts, |r| r.ts))
            .max()?;
        Some((first, last))
    }

    /// Pairs REDCap's `rows` (redacted; any order) with the calls, one to
    /// one, in time order: each row goes to the earliest call of its
    /// user (`usernames`: account name → REDCap username) whose request
    /// lies in the row's minute, read in `tz` and widened by `tolerance`
    /// (reconcile's rule), and that REDCap would log it for — a page view
    /// of the API endpoint (`api_path`) for every call, the method's event
    /// row (a record export's `Data export`, an import's record rows, …).
    /// A row naming the record that no call takes is [`Unexplained`].
    pub fn attach_rows(
        &mut self,
        rows: &[LogEntry],
        tz: &jiff::tz::TimeZone,
        tolerance: SignedDuration,
        usernames: &HashMap<String, String>,
        api_path: &str,
    ) -> Result<(), redcap_log::BadTimestamp> {
        let mut placed = Vec::with_capacity(rows.len());
        for row in rows {
            let candidates = redcap_log::utc_candidates(row.timestamp(), tz)?;
            placed.push((row, row_spans(&candidates, tolerance), candidates[0]));
        }
        placed.sort_by_key(|p| p.2);
        // Per call: whether its page view was taken, and the event rows'
        // texts it took (one row of each text: an import of two records
        // takes both record rows, two exports take one export row each).
        let mut viewed = vec![false; self.calls.len()];
        let mut taken: Vec<HashSet<String>> = vec![HashSet::new(); self.calls.len()];
        for (row, spans, _) in &placed {
            let user = row.username().to_lowercase();
            let page_view = redcap_log::activity(row, api_path) == redcap_log::Activity::ApiCall;
            let text = shown(row);
            // The calls are in time order: only those inside the row's
            // spans are looked at (never every call for every row).
            let call = spans
                .iter()
                .flat_map(|(from, to)| {
                    let start = self.calls.partition_point(|c| c.request.ts < *from);
                    let end = self.calls.partition_point(|c| c.request.ts <= *to);
                    start..end
                })
                .find(|&i| {
                    let c = &self.calls[i];
                    usernames
                        .get(&c.account)
                        .is_some_and(|u| u.eq_ignore_ascii_case(&user))
                        && in_spans(spans, c.request.ts)
                        && if page_view {
                            !viewed[i]
                        } else {
                            logged_for(c, row) && !taken[i].contains(&text)
                        }
                });
            match call {
                Some(i) => {
                    if page_view {
                        viewed[i] = true;
                    } else {
                        taken[i].insert(text.clone());
                    }
                    self.calls[i].redcap_rows.push(text);
                }
                None if row.record() == self.record => self.unexplained.push(Unexplained {
                    row: text,
                    account: usernames
                        .iter()
                        .find(|(_, u)| u.eq_ignore_ascii_case(&user))
                        .map(|(a, _)| a.clone()),
                    username: user,
                }),
                None => {}
            }
        }
        Ok(())
    }
}

/// Whether REDCap logs event `row` for a call of this method: the
/// descriptions of redcap-api.md §7.2 for the methods a trace meets
/// (anything else: any API event of the account).
fn logged_for(call: &Call, row: &LogEntry) -> bool {
    let text = format!("{} {}", row.action(), row.details()).to_lowercase();
    if !text.contains("(api") {
        return false;
    }
    let want: &[&str] = match (call.content.as_deref(), call.action.as_deref()) {
        (Some("record"), Some("export")) => &["data export"],
        (Some("record"), Some("import")) => &["create record", "update record"],
        (Some("record"), Some("delete")) => &["delete record"],
        (Some("record"), Some("rename")) => &["rename record"],
        (Some("metadata"), _) => &["data dictionary"],
        (Some("project"), Some("export")) => &["export project information"],
        (Some("log"), _) => &["export logging"],
        (Some("file"), Some("export")) => &["download file"],
        (Some("file"), Some("import")) => &["upload document"],
        (Some("file"), Some("delete")) => &["delete uploaded document"],
        _ => return true,
    };
    want.iter().any(|w| text.contains(w))
}

/// The head of a request or response line: what a trace needs of every
/// one (record ids are skipped unparsed).
#[derive(Deserialize)]
struct Head {
    kind: String,
    ts: String,
    request_id: Option<String>,
    client: Option<String>,
    account: Option<String>,
    site: Option<String>,
    content: Option<String>,
    action: Option<String>,
    reason: Option<String>,
    status: Option<u16>,
}

/// A request not yet answered.
struct Open {
    seq: u64,
    ts: Timestamp,
    head: Head,
}

/// The one pass of `trace` over the ledger's lines.
pub struct Tracer {
    record: String,
    hmac: String,
    needles: [Vec<u8>; 2],
    accounts: HashSet<String>,
    since: Option<Timestamp>,
    checkpoint: Option<Checkpoint>,
    collector: ProofCollector,
    open: HashMap<String, Open>,
    /// Calls naming the record whose response is still to come.
    waiting: HashMap<String, usize>,
    calls: Vec<Call>,
    entries: u64,
}

impl Tracer {
    /// A trace of `record` (or its HMAC `hmac`, hex) among the calls of
    /// `accounts` committed at or after `since`, proved against
    /// `checkpoint` (verified by the caller).
    pub fn new(
        record: &str,
        hmac: &str,
        accounts: HashSet<String>,
        since: Option<Timestamp>,
        checkpoint: Option<Checkpoint>,
    ) -> Tracer {
        let quoted = |s: &str| serde_json::to_vec(s).expect("a string serialises");
        Tracer {
            record: record.to_string(),
            hmac: hmac.to_string(),
            needles: [quoted(record), quoted(hmac)],
            accounts,
            since,
            collector: ProofCollector::new(checkpoint.as_ref().map_or(0, |c| c.size)),
            checkpoint,
            open: HashMap::new(),
            waiting: HashMap::new(),
            calls: Vec::new(),
            entries: 0,
        }
    }

    /// Takes in line `seq` (the entry's bytes as stored, without the
    /// newline), in order from 0.
    pub fn push(&mut self, seq: u64, line: &[u8]) -> Result<(), TraceError> {
        if seq != self.entries {
            return Err(TraceError::OutOfOrder {
                want: self.entries,
                got: seq,
            });
        }
        self.entries += 1;
        let want = match kind_of(line) {
            Some(b"request" | b"response") => self.call_line(seq, line)?,
            _ => false,
        };
        self.collector.push(merkle::leaf_hash(line), want);
        Ok(())
    }

    /// A request or response line: returns whether its proof is wanted.
    fn call_line(&mut self, seq: u64, line: &[u8]) -> Result<bool, TraceError> {
        let bad = |detail: String| TraceError::BadEntry { seq, detail };
        let head: Head = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let ts: Timestamp = head
            .ts
            .parse()
            .map_err(|e: jiff::Error| bad(e.to_string()))?;
        let request_id = head.request_id.clone().unwrap_or_default();
        let ours = if head.kind == "request" {
            head.account
                .as_ref()
                .is_some_and(|a| self.accounts.contains(a))
        } else {
            self.waiting.contains_key(&request_id) || self.open.contains_key(&request_id)
        };
        if !ours {
            return Ok(false);
        }
        let names = self
            .needles
            .iter()
            .any(|n| memchr::memmem::find(line, n).is_some())
            && self.names(line, seq)?;
        let recent = self.since.is_none_or(|s| ts >= s);
        let signed = self.checkpoint.as_ref().is_some_and(|c| seq < c.size);
        let leaf = |names: bool| Leaf {
            seq,
            ts,
            names_record: names,
            proof: None,
        };
        if head.kind == "request" {
            if names && recent {
                self.waiting.insert(request_id.clone(), self.calls.len());
                self.calls.push(call(request_id, head, leaf(true)));
                return Ok(signed);
            }
            self.open.insert(request_id, Open { seq, ts, head });
            return Ok(false);
        }
        let status = head.status;
        if let Some(i) = self.waiting.remove(&request_id) {
            self.calls[i].response = Some(leaf(names));
            self.calls[i].status = status;
            return Ok(names && signed);
        }
        let Some(open) = self.open.remove(&request_id) else {
            return Ok(false);
        };
        if !(names && recent) {
            return Ok(false);
        }
        let request = Leaf {
            seq: open.seq,
            ts: open.ts,
            names_record: false,
            proof: None,
        };
        let mut c = call(request_id, open.head, request);
        c.response = Some(leaf(true));
        c.status = status;
        self.calls.push(c);
        Ok(signed)
    }

    /// Whether the entry's own `record_ids` hold the record (the needle
    /// may be in another field).
    fn names(&self, line: &[u8], seq: u64) -> Result<bool, TraceError> {
        let entry = Entry::from_line(line).map_err(|e| TraceError::BadEntry {
            seq,
            detail: e.to_string(),
        })?;
        let ids = match &entry.kind {
            EntryKind::Request { record_ids, .. } | EntryKind::Response { record_ids, .. } => {
                record_ids
            }
            _ => return Ok(false),
        };
        Ok(ids.iter().any(|id| id == self.record || id == self.hmac))
    }

    /// The trace: every wanted proof checked against the checkpoint.
    pub fn finish(mut self) -> Result<Trace, TraceError> {
        let checkpoint = self.checkpoint.take();
        if let Some(cp) = &checkpoint {
            if self.entries < cp.size {
                return Err(TraceError::Truncated {
                    size: cp.size,
                    entries: self.entries,
                });
            }
            let (proofs, root) = self.collector.finish().ok_or(TraceError::Truncated {
                size: cp.size,
                entries: self.entries,
            })?;
            if root != cp.root {
                return Err(TraceError::RootMismatch { size: cp.size });
            }
            let by_seq: HashMap<u64, merkle::CollectedProof> =
                proofs.into_iter().map(|p| (p.index, p)).collect();
            for c in &mut self.calls {
                for leaf in std::iter::once(&mut c.request).chain(c.response.as_mut()) {
                    let Some(p) = by_seq.get(&leaf.seq).filter(|_| leaf.names_record) else {
                        continue;
                    };
                    merkle::verify_inclusion(p.index, cp.size, &p.leaf_hash, &p.proof, &cp.root)
                        .map_err(|e| TraceError::BadProof {
                            seq: p.index,
                            detail: e.to_string(),
                        })?;
                    leaf.proof = Some(Proof {
                        tree_size: cp.size,
                        leaf_hash: hex::encode(p.leaf_hash),
                        path: p.proof.iter().map(hex::encode).collect(),
                    });
                }
            }
        }
        // Calls named by their response were opened after later requests:
        // in request order, they are in time order (the pairing searches).
        self.calls.sort_by_key(|c| c.request.seq);
        Ok(Trace {
            record: self.record,
            checkpoint: checkpoint.map(|c| (c.size, hex::encode(c.root))),
            entries: self.entries,
            calls: self.calls,
            unexplained: Vec::new(),
        })
    }
}

fn call(request_id: String, head: Head, request: Leaf) -> Call {
    Call {
        request_id,
        client: head.client.unwrap_or_default(),
        account: head.account.unwrap_or_default(),
        site: head.site,
        content: head.content,
        action: head.action,
        reason: head.reason,
        request,
        response: None,
        status: None,
        redcap_rows: Vec::new(),
    }
}

/// The `kind` of a canonical line (`{"seq":…,"ts":"…","kind":"…"`),
/// read without parsing it.
fn kind_of(line: &[u8]) -> Option<&[u8]> {
    const KIND: &[u8] = b",\"kind\":\"";
    let head = &line[..line.len().min(96)];
    let at = head.windows(KIND.len()).position(|w| w == KIND)? + KIND.len();
    let rest = &line[at..];
    Some(&rest[..rest.iter().position(|&b| b == b'"')?])
}

#[cfg(test)]
mod tests;
