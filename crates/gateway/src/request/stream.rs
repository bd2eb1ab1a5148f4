//! Step 9, for a record export: the answer streams to the client. Record
//! ids, the body's size and HMAC are read as the bytes pass (after what
//! the DAG guard, [`super::guard`], held back), and the `response` entry
//! is written when the stream ends — saying whether the client received
//! all of it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::Stream;
use ledger::{Delivery, EntryKind};
use tokio_util::sync::PollSender;

use super::authorise::Call;
use super::prepare::Plan;
use crate::export::{Scanner, Shape};
use crate::record_field::record_id_field;
use crate::reply::with_content_type;
use crate::state::{Gateway, LedgerLink, Owed};
use crate::upstream::{AnswerBody, OpenAnswer};

/// A record export's answer as it starts: REDCap's status and headers,
/// its body still to come, what the guard held back of it, and the tally
/// of what passed.
pub(super) struct Streaming {
    status: u16,
    content_type: Option<String>,
    content_length: Option<u64>,
    pub upstream: AnswerBody,
    /// Chunks read (by the guard) and not yet passed on.
    pub held: Vec<bytes::Bytes>,
    /// REDCap's answer ended while the guard read it.
    pub ended: bool,
    pub tally: Tally,
}

impl Streaming {
    /// Opens the tally of an answer: its `response` entry is owed from now.
    pub(super) async fn open(
        gw: &Gateway,
        call: &Call<'_>,
        plan: &Plan,
        request_id: String,
        started: Instant,
        open: OpenAnswer,
    ) -> Streaming {
        let field = record_id_field(gw, call.account).await;
        let OpenAnswer {
            status,
            content_type,
            content_length,
            body,
        } = open;
        Streaming {
            status,
            content_type,
            content_length,
            upstream: body,
            held: Vec::new(),
            ended: false,
            tally: Tally {
                ledger: Arc::clone(gw.ledger()),
                request_id,
                status,
                started,
                scanner: Scanner::new(plan.shape, plan.eav, field),
                mac: Some(gw.fingerprint().hmac_stream()),
                bytes: 0,
                written: false,
                _owed: gw.ledger().owe(),
            },
        }
    }
}

/// Step 9, for a record export: the answer as it streams to the client;
/// its `response` entry is written when the stream ends.
pub(super) fn stream_response(answer: Streaming) -> Response {
    let Streaming {
        status,
        content_type,
        content_length,
        upstream,
        held,
        ended,
        tally,
    } = answer;
    let body = ExportBody {
        held: held.into(),
        upstream: (!ended).then_some(upstream),
        length: content_length,
        sent: 0,
        next: None,
        done: false,
        tally: tally.spawn(),
    };
    let mut response = Response::new(axum::body::Body::from_stream(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Some(len) = content_length.map(HeaderValue::from) {
        response.headers_mut().insert(header::CONTENT_LENGTH, len);
    }
    with_content_type(response, content_type.as_deref())
}

/// What the gateway learns from an answer as it passes, and the `response`
/// entry it owes: written exactly once, when the stream ends, breaks, or
/// the client goes away.
pub(super) struct Tally {
    ledger: Arc<LedgerLink>,
    request_id: String,
    status: u16,
    started: Instant,
    pub scanner: Scanner,
    mac: Option<secrets::HmacStream>,
    bytes: u64,
    written: bool,
    /// Held until the entry is queued: a shutdown waits for it.
    _owed: Owed,
}

impl Tally {
    pub(super) fn pass(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk);
        if let Some(m) = self.mac.as_mut() {
            m.update(chunk);
        }
        self.bytes += chunk.len() as u64;
    }

    pub(super) fn write(&mut self, delivery: Delivery) {
        let hmac = self.mac.take().map(|m| m.finish_hex()).unwrap_or_default();
        self.write_with(delivery, hmac);
    }

    fn write_with(&mut self, delivery: Delivery, body_hmac: String) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        if delivery == Delivery::Complete {
            self.scanner.finish();
        }
        let scanner = std::mem::replace(&mut self.scanner, Scanner::new(Shape::Json, false, None));
        self.ledger.append_soon(EntryKind::Response {
            request_id: std::mem::take(&mut self.request_id),
            status: self.status,
            record_ids: scanner.into_ids(),
            body_hmac,
            body_bytes: self.bytes,
            latency_ms: self.started.elapsed().as_millis() as u64,
            delivery: Some(delivery),
        });
    }

    /// Moves the reading of the rest of the answer to threads of its own,
    /// so it runs beside the forwarding instead of adding to it: one reads
    /// the record ids, one computes the HMAC (each about a gigabyte a
    /// second, together the pace of the forwarding). Chunks reach them
    /// through short queues (bounded memory: the forwarding waits for
    /// them), and the `response` entry is written when they are told how
    /// the stream ended — or, if the body is dropped first, as
    /// `client_disconnected`.
    fn spawn(mut self) -> PollSender<Passed> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Passed>(8);
        let (to_mac, chunks) = std::sync::mpsc::sync_channel::<bytes::Bytes>(8);
        let mac = self.mac.take().map(|mut mac| {
            std::thread::spawn(move || {
                for chunk in chunks {
                    mac.update(&chunk);
                }
                mac.finish_hex()
            })
        });
        tokio::task::spawn_blocking(move || {
            let mut delivery = Delivery::ClientDisconnected;
            while let Some(passed) = rx.blocking_recv() {
                let (chunk, end) = match passed {
                    Passed::Chunk(chunk) => (chunk, None),
                    Passed::Last(chunk) => (chunk, Some(Delivery::Complete)),
                    Passed::End(d) => (bytes::Bytes::new(), Some(d)),
                };
                self.scanner.feed(&chunk);
                self.bytes += chunk.len() as u64;
                let _ = to_mac.send(chunk);
                if let Some(d) = end {
                    delivery = d;
                    break;
                }
            }
            // The HMAC thread ends with its queue.
            drop(to_mac);
            let hmac = mac.and_then(|m| m.join().ok()).unwrap_or_default();
            self.write_with(delivery, hmac);
        });
        PollSender::new(tx)
    }
}

/// What the client's body hands to the tally's thread.
enum Passed {
    /// A chunk on its way to the client.
    Chunk(bytes::Bytes),
    /// The last chunk (REDCap's `Content-Length` reached): the answer is
    /// complete once it is passed on.
    Last(bytes::Bytes),
    /// The stream ended this way.
    End(Delivery),
}

/// The client's body of a streamed export: first what the guard held back,
/// then REDCap's answer as it comes. Each chunk is handed to the tally's
/// thread before it goes to the client.
struct ExportBody {
    held: std::collections::VecDeque<bytes::Bytes>,
    upstream: Option<AnswerBody>,
    /// REDCap's `Content-Length`: hyper stops asking for more once it has
    /// that many bytes, so the answer is complete then, not at the end of
    /// the stream.
    length: Option<u64>,
    /// Bytes passed to the client so far.
    sent: u64,
    /// A chunk (or the end) waiting for room in the tally's queue.
    next: Option<Passed>,
    /// The end was handed over.
    done: bool,
    tally: PollSender<Passed>,
}

impl Stream for ExportBody {
    type Item = Result<bytes::Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.next.is_none() {
                this.next = Some(match this.held.pop_front() {
                    Some(chunk) => this.passed(chunk),
                    None => match this.upstream.as_mut() {
                        None => Passed::End(Delivery::Complete),
                        Some(upstream) => match Pin::new(upstream).poll_next(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Some(Ok(chunk))) => this.passed(chunk),
                            Poll::Ready(Some(Err(e))) => {
                                this.upstream = None;
                                this.done = true;
                                let _ = this.tally.send_item(Passed::End(Delivery::UpstreamFailed));
                                return Poll::Ready(Some(Err(std::io::Error::other(format!(
                                    "REDCap's answer broke off: {e}"
                                )))));
                            }
                            Poll::Ready(None) => {
                                this.upstream = None;
                                Passed::End(Delivery::Complete)
                            }
                        },
                    },
                });
            }
            match this.tally.poll_reserve(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => {} // the tally's thread is gone: pass on anyway
                Poll::Ready(Ok(())) => {}
            }
            let next = this.next.take().expect("set above");
            let chunk = match &next {
                Passed::Chunk(c) | Passed::Last(c) => Some(c.clone()),
                Passed::End(_) => None,
            };
            if matches!(next, Passed::Last(_) | Passed::End(_)) {
                this.done = true;
            }
            let _ = this.tally.send_item(next);
            if let Some(chunk) = chunk {
                return Poll::Ready(Some(Ok(chunk)));
            }
        }
    }
}

impl ExportBody {
    fn passed(&mut self, chunk: bytes::Bytes) -> Passed {
        self.sent += chunk.len() as u64;
        if self.length == Some(self.sent) && self.held.is_empty() {
            Passed::Last(chunk)
        } else {
            Passed::Chunk(chunk)
        }
    }
}
