//! What a client connection may hold of the gateway before it has proved
//! anything: the client listener takes at most [`PER_SOURCE`] connections
//! from one address at once, a connection must send its first request's
//! headers within [`FIRST_REQUEST`] (and later ones within
//! [`HEADER_READ`]), and a body must keep arriving ([`BODY_IDLE`],
//! [`MIN_BODY_RATE`]). Together with the key being read from the first
//! 64 KiB of a body ([`crate::upload::PRE_AUTH_BYTES`]), this bounds what a
//! client without a key can make the gateway hold — memory, spool files,
//! connections — whatever it sends.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Connections at once from one source address.
pub const PER_SOURCE: usize = 64;

/// A new connection's first request headers must arrive within this.
pub const FIRST_REQUEST: Duration = Duration::from_secs(10);

/// Each later request's headers must arrive within this.
pub const HEADER_READ: Duration = Duration::from_secs(10);

/// The longest a request body may pause.
pub const BODY_IDLE: Duration = Duration::from_secs(30);

/// After [`BODY_IDLE`], a body must have arrived at least this fast
/// (bytes a second, on average).
pub const MIN_BODY_RATE: u64 = 1024;

/// Counts connections per source address and refuses those over
/// [`PER_SOURCE`].
#[derive(Clone, Default)]
pub struct ConnectionLimit {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnectionLimit {
    /// Connections open now from this address.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for ConnectionLimit {
    type Stream = Counted<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let ip = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(e) => return std::future::ready(Err(e)),
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= PER_SOURCE {
            return std::future::ready(Err(io::Error::other(format!(
                "{ip} already has {PER_SOURCE} connections open"
            ))));
        }
        *n += 1;
        drop(open);
        std::future::ready(Ok((
            Counted {
                inner: stream,
                _slot: Slot {
                    open: Arc::clone(&self.open),
                    ip,
                },
            },
            service,
        )))
    }
}

/// A connection's place in the count, given back when it closes.
struct Slot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A counted connection.
pub struct Counted<T> {
    inner: T,
    _slot: Slot,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Why a body stopped being read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than `max_body_bytes`, or the connection broke.
    #[error("the request body could not be read: {0}")]
    Broken(String),
    /// A pause longer than [`BODY_IDLE`].
    #[error("the request body stopped arriving for {} s", BODY_IDLE.as_secs())]
    Idle,
    /// Slower than [`MIN_BODY_RATE`].
    #[error("the request body arrives more slowly than {MIN_BODY_RATE} bytes a second")]
    TooSlow,
}

/// A request body read chunk by chunk within the bounds above.
pub struct Incoming {
    stream: axum::body::BodyDataStream,
    started: Instant,
    read: u64,
}

impl Incoming {
    /// Starts reading `body`.
    pub fn new(body: axum::body::Body) -> Incoming {
        Incoming {
            stream: body.into_data_stream(),
            started: Instant::now(),
            read: 0,
        }
    }

    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, (BodyError, Option<axum::Error>)> {
        use futures_util::StreamExt;
        match tokio::time::timeout(BODY_IDLE, self.stream.next()).await {
            Err(_) => Err((BodyError::Idle, None)),
            Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err((BodyError::Broken(e.to_string()), Some(e))),
            Ok(Some(Ok(chunk))) => {
                self.read += chunk.len() as u64;
                let elapsed = self.started.elapsed();
                if elapsed > BODY_IDLE && self.read < MIN_BODY_RATE * elapsed.as_secs() {
                    return Err((BodyError::TooSlow, None));
                }
                Ok(Some(chunk))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_past_the_limit_are_refused_and_slots_come_back() {
        let limit = ConnectionLimit::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut kept = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..PER_SOURCE + 1 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (s, _) = listener.accept().await.unwrap();
            kept.push(limit.accept(s, ()).await);
        }
        let refused = kept.iter().filter(|r| r.is_err()).count();
        assert_eq!(refused, 1);
        let ip = addr.ip();
        assert_eq!(limit.open_from(ip), PER_SOURCE);
        kept.truncate(10);
        assert_eq!(limit.open_from(ip), 10);
        drop(kept);
        assert_eq!(limit.open_from(ip), 0);
    }
}
