//! The connections against small servers that count what they see.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// What a test server saw: connections accepted, requests read.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// How a test server answers each request on a connection.
#[derive(Clone, Copy)]
enum Answer {
    /// `ok`, and the connection stays open.
    KeepAlive,
    /// `ok`, then the connection is closed without a word (as a server
    /// does when its keep-alive time runs out).
    ThenClose,
    /// A head promising ten bytes, two of them, then nothing.
    Partial,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, answer: Answer, seen: &Seen) {
    let mut buf = Vec::new();
    loop {
        // One request: its head, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let reply: &[u8] = match answer {
            Answer::KeepAlive | Answer::ThenClose => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            }
            Answer::Partial => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok",
        };
        if s.write_all(reply).await.is_err() {
            return;
        }
        match answer {
            Answer::KeepAlive => {}
            Answer::ThenClose => return,
            Answer::Partial => {
                // Holds the connection open without finishing the body.
                let _ = s.read(&mut [0u8; 1]).await;
                return;
            }
        }
    }
}

/// A plain HTTP server on a free port.
async fn server(answer: Answer) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/redcap/api/", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            s.connections.fetch_add(1, Ordering::SeqCst);
            let s = Arc::clone(&s);
            tokio::spawn(async move { serve(conn, answer, &s).await });
        }
    });
    (url, seen)
}

async fn call(c: &Arc<Connections>) -> Result<String, String> {
    let (head, mut body) = c
        .post(
            crate::upstream::FORM_URLENCODED,
            15,
            OutBody::whole(Bytes::from_static(b"content=version")),
        )
        .await?;
    assert_eq!(head.status(), 200);
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        text.extend_from_slice(&chunk?);
    }
    Ok(String::from_utf8(text).unwrap())
}

#[tokio::test]
async fn an_answer_read_to_its_end_gives_its_connection_back() {
    let (url, seen) = server(Answer::KeepAlive).await;
    let c = Connections::new(&url).unwrap();
    for _ in 0..5 {
        assert_eq!(call(&c).await.unwrap(), "ok");
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 5);
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "five calls in a row must share one connection"
    );
}

#[tokio::test]
async fn a_connection_redcap_closed_is_replaced_and_no_request_is_sent_twice() {
    let (url, seen) = server(Answer::ThenClose).await;
    let c = Connections::new(&url).unwrap();
    for _ in 0..5 {
        assert_eq!(call(&c).await.unwrap(), "ok");
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        5,
        "each request exactly once"
    );
    assert_eq!(seen.connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_answer_dropped_half_read_closes_its_connection() {
    let (url, seen) = server(Answer::Partial).await;
    let c = Connections::new(&url).unwrap();
    for n in 1..=3 {
        let (head, mut body) = c
            .post(
                HeaderValue::from_static("text/plain"),
                1,
                OutBody::whole(Bytes::from_static(b"x")),
            )
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(body.next().await.unwrap().unwrap(), "ok");
        drop(body);
        assert_eq!(seen.connections.load(Ordering::SeqCst), n);
    }
    assert!(
        c.lock().is_empty(),
        "a half-read answer's connection is never idle"
    );
}

#[tokio::test]
async fn a_streamed_body_goes_out_whole() {
    let (url, seen) = server(Answer::KeepAlive).await;
    let c = Connections::new(&url).unwrap();
    let parts = futures_util::stream::iter(
        ["content=", "record&", "data=x"].map(|p| Ok(Bytes::from_static(p.as_bytes()))),
    );
    let (head, body) = c
        .post(
            HeaderValue::from_static("text/plain"),
            21,
            OutBody::Stream(Box::pin(parts)),
        )
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let got: Vec<Bytes> = body.map(Result::unwrap).collect().await;
    assert_eq!(got.concat(), b"ok");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Connections::new(&format!("http://127.0.0.1:{port}/api/")).unwrap();
    let e = call(&c).await.unwrap_err();
    assert!(e.starts_with("connecting: "), "{e}");
}

#[test]
fn urls_are_taken_apart_once_and_bad_ones_refused() {
    let c = Connections::new("http://[::1]:8080/redcap/api/?x=1").unwrap();
    assert_eq!(c.target.host, "::1");
    assert_eq!(c.target.port, 8080);
    assert_eq!(c.target.authority, "[::1]:8080");
    assert_eq!(c.target.path, "/redcap/api/?x=1");
    let c = Connections::new("https://redcap.example.org/api/").unwrap();
    assert_eq!((c.target.port, c.target.tls.is_some()), (443, true));
    for (url, why) in [
        ("ftp://redcap.example.org/api/", "https:// or http://"),
        ("redcap.example.org/api/", "https://host/redcap/api/"),
        (
            "https://user:pass@redcap.example.org/api/",
            "user name or password",
        ),
    ] {
        let e = Connections::new(url).err().unwrap();
        assert!(e.contains(why), "{url}: {e}");
    }
}

/// An HTTPS server whose certificate (for `localhost`) its own
/// authority signed; returns its URL and that certificate.
async fn tls_server() -> (String, rustls::pki_types::CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/api/",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        let seen = Arc::new(Seen::default());
        while let Ok((conn, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(conn).await {
                    serve(tls, Answer::KeepAlive, &seen).await;
                }
            });
        }
    });
    (url, der)
}

#[tokio::test]
async fn https_checks_redcaps_certificate() {
    let (url, root) = tls_server().await;
    let e = call(&Connections::new(&url).unwrap()).await.unwrap_err();
    assert!(e.starts_with("TLS: ") && e.contains("certificate"), "{e}");
    let trusting = Connections::trusting(&url, vec![root]).unwrap();
    assert_eq!(call(&trusting).await.unwrap(), "ok");
    assert_eq!(call(&trusting).await.unwrap(), "ok");
}
