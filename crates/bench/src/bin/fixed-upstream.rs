//! `fixed-upstream --listen ADDR [--body TEXT]`: a stand-in for REDCap that
//! answers every `POST /api/` with the same small body — by default what
//! REDCap answers to `content=version` — so a benchmark measures the proxy
//! in front of it, not REDCap.
//!
//! It reads (and discards) the request body, as a real server must before
//! answering on a kept-alive connection. Prints `listening on ADDR` once
//! bound (`--listen 127.0.0.1:0` picks a free port).

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::post;

const USAGE: &str = "usage: fixed-upstream --listen ADDR [--body TEXT]";

// One thread: the benchmark pins this process to a core, and a
// single-threaded runtime is the cheapest honest server for that core.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(listen) = warden_bench::flag(&args, "--listen") else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let listen: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fixed-upstream: --listen {listen}: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let body: &'static str = Box::leak(
        warden_bench::flag(&args, "--body")
            .unwrap_or_else(|| "15.5.0".into())
            .into_boxed_str(),
    );
    let answer = move |_request: Bytes| async move {
        ([(header::CONTENT_TYPE, "text/html; charset=UTF-8")], body)
    };
    let app = Router::new()
        .route("/api/", post(answer))
        .route("/api", post(answer));
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fixed-upstream: cannot listen on {listen}: {e}");
            std::process::exit(2);
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    println!("listening on {addr}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("fixed-upstream: {e}");
        std::process::exit(1);
    }
}
