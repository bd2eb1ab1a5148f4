//! Calls to REDCap: its connections (`connections.rs`), behind the
//! outbound limiter.
//!
//! REDCap's only rate limit is per IP and *permanent*: past its threshold
//! (600 requests a minute by default) the IP is banned until an
//! administrator lifts the ban. Every call redcap-warden makes goes through
//! one sliding 60-second window that stays well under it, and a 429 from
//! REDCap stops all outbound calls until restart. With the PostgreSQL
//! ledger the window is one for every gateway replica, kept in the
//! database ([`crate::rate_window`]); with the file ledger it is this
//! process's.

mod connections;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use jiff::Timestamp;

use self::connections::Connections;
pub use self::connections::{AnswerBody, OutBody};
use crate::rate_window::{SharedWindow, WindowRefusal};

/// A sliding 60-second window of calls: this process's own, or the one
/// all replicas share in PostgreSQL.
pub struct Limiter {
    per_minute: usize,
    max_wait: Duration,
    /// The window when it is this process's (unused when `shared`).
    calls: Mutex<VecDeque<Instant>>,
    /// The replicas' common window (the PostgreSQL backend).
    shared: Option<SharedWindow>,
}

/// The `Content-Type` of a form sent to REDCap.
pub const FORM_URLENCODED: HeaderValue =
    HeaderValue::from_static("application/x-www-form-urlencoded");

/// The window's length.
pub const WINDOW: Duration = Duration::from_secs(60);

impl Limiter {
    /// A window admitting `per_minute` calls (at least one) in any 60
    /// seconds, where a call waits at most `max_wait` for a slot.
    pub fn new(per_minute: u32, max_wait: Duration) -> Limiter {
        Limiter {
            per_minute: per_minute.max(1) as usize,
            max_wait,
            calls: Mutex::new(VecDeque::new()),
            shared: None,
        }
    }

    /// As [`Limiter::new`], the calls counted in `window`, which every
    /// replica shares.
    pub fn shared(per_minute: u32, max_wait: Duration, window: SharedWindow) -> Limiter {
        Limiter {
            shared: Some(window),
            ..Limiter::new(per_minute, max_wait)
        }
    }

    /// The window the `[ledger]` of `config` calls for: the shared one in
    /// PostgreSQL with `backend = "postgres"`, this process's otherwise.
    pub fn for_config(
        config: &warden_config::LoadedConfig,
        max_wait: Duration,
    ) -> Result<Limiter, UpstreamError> {
        let per_minute = config.config.gateway.outbound_per_minute;
        match config.config.ledger.as_ref().map(|l| &l.store) {
            Some(warden_config::LedgerStore::Postgres(pg)) => {
                let url = zeroize::Zeroizing::new(
                    pg.connection_string(|p| config.resolve(p))
                        .map_err(UpstreamError::WindowUnavailable)?,
                );
                let window = SharedWindow::new(&url, &pg.schema)
                    .map_err(|e| UpstreamError::WindowUnavailable(e.to_string()))?;
                Ok(Limiter::shared(per_minute, max_wait, window))
            }
            _ => Ok(Limiter::new(per_minute, max_wait)),
        }
    }

    /// Whether the window is the one the replicas share.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Waits for a slot in the window; `false` if none frees up within the
    /// maximum wait, or the shared window cannot be reached.
    pub async fn acquire(&self) -> bool {
        self.admit().await.is_ok()
    }

    /// Waits for a slot in the window: [`UpstreamError::Limited`] if none
    /// frees up within the maximum wait, [`UpstreamError::WindowUnavailable`]
    /// if the shared window cannot be reached (the call must not be made).
    pub async fn admit(&self) -> Result<(), UpstreamError> {
        if let Some(shared) = &self.shared {
            return shared
                .admit(self.per_minute, self.max_wait)
                .await
                .map_err(|e| match e {
                    WindowRefusal::Full => UpstreamError::Limited(self.per_minute),
                    WindowRefusal::Unavailable(why) => UpstreamError::WindowUnavailable(why),
                });
        }
        let deadline = Instant::now() + self.max_wait;
        loop {
            let wait = {
                let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while calls
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    calls.pop_front();
                }
                if calls.len() < self.per_minute {
                    calls.push_back(now);
                    return Ok(());
                }
                WINDOW - now.duration_since(*calls.front().expect("the window is full"))
            };
            if Instant::now() + wait > deadline {
                return Err(UpstreamError::Limited(self.per_minute));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Counts calls made before this limiter existed (by an earlier run of
    /// the gateway, read from the ledger) into the window. The shared
    /// window takes them only when it holds no call at all (then they were
    /// made before the replicas kept their calls there); answers how many
    /// were counted in.
    pub async fn seed(&self, made: &[Timestamp]) -> usize {
        if let Some(shared) = &self.shared {
            return match shared.seed(self.per_minute, made).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not seed the shared outbound window from the ledger");
                    0
                }
            };
        }
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let (now, wall) = (Instant::now(), Timestamp::now());
        let made: Vec<Instant> = made
            .iter()
            .filter_map(|ts| now.checked_sub(wall.duration_since(*ts).unsigned_abs()))
            .collect();
        let mut all: Vec<Instant> = made
            .iter()
            .copied()
            .filter(|t| now.duration_since(*t) < WINDOW)
            .chain(calls.iter().copied())
            .collect();
        let seeded = all.len() - calls.len();
        all.sort();
        *calls = all.into();
        seeded
    }

    /// Calls in the current window: this process's, or for the shared
    /// window all replicas' as last counted ([`Limiter::refresh`]).
    pub fn in_window(&self) -> usize {
        if let Some(shared) = &self.shared {
            return shared.last_count();
        }
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        calls
            .iter()
            .filter(|t| now.duration_since(**t) < WINDOW)
            .count()
    }

    /// Counts the shared window again (for `/health` and `/metrics`),
    /// waiting at most two seconds; nothing to do for a local window.
    pub async fn refresh(&self) {
        if let Some(shared) = &self.shared
            && let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), shared.count()).await
        {
            tracing::debug!(error = %e, "could not count the shared outbound window");
        }
    }
}

/// REDCap's answer, as received.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// The HTTP status.
    pub status: u16,
    /// REDCap's `Content-Type`, when it sent one.
    pub content_type: Option<String>,
    /// The whole body.
    pub body: Bytes,
}

/// Why a call to REDCap was not made or not answered. The client gets a
/// 503 saying so, and the request's `response` entry records the 503.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No slot in the outbound window freed up within the wait (30 s): the
    /// call was not made. The figure is `[gateway] outbound_per_minute`;
    /// if this happens in normal use, spread the clients' calls out rather
    /// than raising it toward REDCap's own limit.
    #[error("the outbound limit of {0} calls a minute to REDCap is reached")]
    Limited(usize),
    /// REDCap answered 429: it has banned this machine's IP, permanently.
    /// Every later call is refused without being sent (an `alert` entry
    /// says so, and `/ready` answers 503) until a REDCap administrator
    /// lifts the ban and the gateway is restarted.
    #[error(
        "REDCap answered 429: this machine's IP address is banned; outbound calls are stopped until an administrator lifts the ban and the gateway restarts"
    )]
    Banned,
    /// The HTTP exchange failed: connection refused, TLS, timeout (10 s to
    /// connect, 600 s for the whole call), the answer's body broke off, or
    /// a spooled upload could not be read back to send it. The text never
    /// holds the URL or the body. At start: the HTTP client itself could
    /// not be built.
    #[error("REDCap could not be reached: {0}")]
    Transport(String),
    /// REDCap answered with a redirect (3xx). Never followed: the token is
    /// in the body, and a 307 or 308 would carry it on to wherever the
    /// answer points. The text names where, without its query, and the fix.
    #[error("{0}")]
    Redirected(String),
    /// The outbound window the replicas share in PostgreSQL could not be
    /// asked (the text says why, never the connection string): the call
    /// was not made — a call outside the window could get the IP banned.
    #[error("{0}")]
    WindowUnavailable(String),
}

/// The longest a call waits for a slot in the window.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// The one way to REDCap: the `[redcap] url`'s connections, the
/// outbound [`Limiter`] every call goes through, and the ban flag a 429
/// sets.
pub struct Upstream {
    connections: Arc<Connections>,
    limiter: Limiter,
    banned: AtomicBool,
}

impl Upstream {
    /// A client for REDCap at `url` whose calls stay within `per_minute`
    /// in any 60 seconds, each waiting at most 30 s for a slot.
    pub fn new(url: &str, per_minute: u32) -> Result<Upstream, UpstreamError> {
        Upstream::with_limiter(url, Limiter::new(per_minute, MAX_WAIT))
    }

    /// The client `config` calls for: its `[redcap] url`, and the window
    /// of [`Limiter::for_config`].
    pub fn for_config(config: &warden_config::LoadedConfig) -> Result<Upstream, UpstreamError> {
        Upstream::with_limiter(
            config.config.redcap.url(),
            Limiter::for_config(config, MAX_WAIT)?,
        )
    }

    /// A client for REDCap at `url` whose calls go through `limiter`.
    pub fn with_limiter(url: &str, limiter: Limiter) -> Result<Upstream, UpstreamError> {
        Ok(Upstream {
            connections: Connections::new(url).map_err(UpstreamError::Transport)?,
            limiter,
            banned: AtomicBool::new(false),
        })
    }

    /// Whether REDCap has answered 429 since this gateway started: then no
    /// call is made until restart.
    pub fn is_banned(&self) -> bool {
        self.banned.load(Ordering::SeqCst)
    }

    /// The outbound window, for `/health`, `/metrics` and seeding at
    /// start.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// POSTs a urlencoded form body and reads the whole answer.
    pub async fn post(&self, body: String) -> Result<UpstreamReply, UpstreamError> {
        self.open_form(body).await?.read().await
    }

    /// POSTs a urlencoded form body; the answer's body is still to come.
    pub async fn open_form(&self, body: String) -> Result<OpenAnswer, UpstreamError> {
        let len = body.len() as u64;
        self.open(FORM_URLENCODED, len, OutBody::whole(Bytes::from(body)))
            .await
    }

    /// POSTs a body of `length` bytes and returns as soon as REDCap's
    /// status and headers are in: the body can then be streamed (a record
    /// export).
    pub async fn open(
        &self,
        content_type: HeaderValue,
        length: u64,
        body: OutBody,
    ) -> Result<OpenAnswer, UpstreamError> {
        if self.is_banned() {
            return Err(UpstreamError::Banned);
        }
        self.limiter.admit().await?;
        let (head, body) = self
            .connections
            .post(content_type, length, body)
            .await
            .map_err(UpstreamError::Transport)?;
        let status = head.status();
        let text = |name| {
            head.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        if status.is_redirection() {
            return Err(UpstreamError::Redirected(redcap::client::redirect_message(
                text(header::LOCATION),
            )));
        }
        if status.as_u16() == 429 {
            self.banned.store(true, Ordering::SeqCst);
            return Err(UpstreamError::Banned);
        }
        Ok(OpenAnswer {
            status: status.as_u16(),
            content_type: text(header::CONTENT_TYPE).map(str::to_string),
            content_length: text(header::CONTENT_LENGTH).and_then(|l| l.parse().ok()),
            body,
        })
    }
}

/// REDCap's answer with its body still to come.
pub struct OpenAnswer {
    /// The HTTP status.
    pub status: u16,
    /// REDCap's `Content-Type`.
    pub content_type: Option<String>,
    /// REDCap's `Content-Length`, when it sent one.
    pub content_length: Option<u64>,
    /// The body, to be read (to its end, or its connection is closed).
    pub body: AnswerBody,
}

impl OpenAnswer {
    /// Reads the whole body.
    pub async fn read(self) -> Result<UpstreamReply, UpstreamError> {
        use futures_util::StreamExt;
        let broke = |e| UpstreamError::Transport(format!("REDCap's answer broke off: {e}"));
        let mut chunks = self.body;
        let reply = |body| UpstreamReply {
            status: self.status,
            content_type: self.content_type,
            body,
        };
        // One chunk (most answers) is kept as it came, without a copy.
        let first = match chunks.next().await {
            None => return Ok(reply(Bytes::new())),
            Some(c) => c.map_err(broke)?,
        };
        let Some(second) = chunks.next().await else {
            return Ok(reply(first));
        };
        let announced = self.content_length.and_then(|l| usize::try_from(l).ok());
        let mut whole = bytes::BytesMut::with_capacity(announced.unwrap_or(0).min(64 << 20));
        whole.extend_from_slice(&first);
        whole.extend_from_slice(&second.map_err(broke)?);
        while let Some(chunk) = chunks.next().await {
            whole.extend_from_slice(&chunk.map_err(broke)?);
        }
        Ok(reply(whole.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_window_admits_its_limit_then_refuses_within_the_wait() {
        let l = Limiter::new(3, Duration::from_millis(10));
        for _ in 0..3 {
            assert!(l.acquire().await);
        }
        assert_eq!(l.in_window(), 3);
        assert!(
            !l.acquire().await,
            "a fourth call in the same minute must wait past the deadline"
        );
    }
}
