//! The client listener over TLS, from certificate files.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_reach_the_gateway_over_tls_and_plain_http_is_refused() {
    let w = World::new().await;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(w.dir.join("gateway-cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(
        w.dir.join("gateway-key.pem"),
        cert.signing_key.serialize_pem(),
    )
    .unwrap();
    *w.gateway_extra.lock().unwrap() =
        "tls_cert = \"gateway-cert.pem\"\ntls_key = \"gateway-key.pem\"\n".into();
    let (gw, _) = w.start_on_disk().await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/api/", gw.addr.port());
    let r = client
        .post(&url)
        .form(&[("token", w.keys["etl"].as_str()), ("content", "version")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.text().await.unwrap().is_empty());

    let plain = w
        .http
        .post(format!("http://{}/api/", gw.addr))
        .form(&[("content", "version")])
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be served on a TLS listener"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_certificate_is_a_clear_start_error() {
    let w = World::new().await;
    *w.gateway_extra.lock().unwrap() =
        "tls_cert = \"nope.pem\"\ntls_key = \"nope-key.pem\"\n".into();
    let dir = w.dir.join("data/ledger");
    w.create_ledger(std::sync::Arc::new(durable::OsFs), &dir);
    let e = w
        .try_start_gateway(std::sync::Arc::new(durable::OsFs), dir)
        .await
        .err()
        .expect("must not start");
    let msg = e.to_string();
    assert!(msg.contains("nope.pem") && msg.contains("fix:"), "{msg}");
}
