//! Outside check: drive the sandbox with PyCap (the Python REDCap client).
//!
//! Needs a Python with `pycap` and `requests` installed; point
//! `PYCAP_PYTHON` at it and run `cargo test -p redcap-sandbox --test pycap
//! -- --ignored`. Ignored by default because the interpreter is not part of
//! the Rust toolchain.

mod common;

use common::{SUPER, Sandbox};

#[tokio::test]
#[ignore = "needs PyCap: set PYCAP_PYTHON to a python with pycap installed and pass --ignored"]
async fn pycap_session() {
    let python = std::env::var("PYCAP_PYTHON").expect("PYCAP_PYTHON names a python with pycap");
    let sb = Sandbox::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pycap_session.py");
    let api = sb.api.clone();
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(&api)
        .arg(SUPER)
        .output()
        .await
        .expect("cannot run PYCAP_PYTHON");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "PyCap session failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("PyCap session OK"), "{stdout}");
}
