//! `serve` under a service manager: readiness and reload through
//! `$NOTIFY_SOCKET` (sd_notify), SIGHUP reloading as `reload` does, JSON
//! logs that never hold a token, and the shipped systemd unit passing
//! `systemd-analyze verify`.

mod common;

use std::io::{BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::*;

/// The next datagram on `socket`; a generous deadline so a hung gateway
/// fails the test instead of hanging it (not a timing assertion).
fn next_state(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("no sd_notify datagram from serve within 60 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A REDCap stand-in that refuses every token as REDCap does (403 with
/// REDCap's message), so the gateway has something to log about a token.
fn refusing_redcap() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                while read_request(&mut reader).is_some() {
                    let body = r#"{"error":"You do not have permissions to use the API"}"#;
                    let _ = write!(
                        conn,
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    port
}

#[test]
fn serve_notifies_readiness_reloads_on_sighup_and_logs_json_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let redcap = refusing_redcap();
    init(dir.path(), &format!("http://127.0.0.1:{redcap}/api/"));
    let (extra, port, _) = gateway_config(r#"["version"]"#);
    add_config(dir.path(), &extra);
    let token = canary::Canary::redcap_token();
    put_secrets(dir.path(), &[("redcap/a", token.value())]);
    let key = issue_key(dir.path(), "app");

    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let log_path = dir.path().join("serve.log");
    let child = StdCommand::cargo_bin("redcap-warden")
        .unwrap()
        .current_dir(dir.path())
        .args(["serve", "--log-format", "json"])
        .env("NOTIFY_SOCKET", &notify_path)
        // Everything down to debug, dependencies included: more lines to
        // hold to the format, more places a token could slip into.
        .env("RUST_LOG", "debug")
        .env_remove("SUDO_USER")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let serving = Serving(child);

    // READY=1 once the listeners answer.
    let ready = next_state(&notify);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    // A call whose token REDCap refuses: the gateway logs about it.
    let body = format!("token={key}&content=version&format=json");
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "POST /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");

    // SIGHUP after a change: RELOADING=1, then READY=1, and the change applied.
    let cfg = dir.path().join("warden.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        toml.replace(
            r#"allow = ["version"]"#,
            r#"allow = ["version", "project"]"#,
        ),
    )
    .unwrap();
    let hup = StdCommand::new("kill")
        .args(["-HUP", &serving.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloading = next_state(&notify);
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    let ready_again = next_state(&notify);
    assert!(ready_again.lines().any(|l| l == "READY=1"), "{ready_again}");

    drop(serving); // SIGTERM: a graceful stop
    let stopping = next_state(&notify);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");

    let tail = warden(dir.path(), &["ledger", "tail", "-n", "8"], None);
    let tail = String::from_utf8_lossy(&tail.stdout).to_string();
    let reload = tail
        .lines()
        .find(|l| l.contains("\"action\":\"reload\""))
        .unwrap_or_else(|| panic!("no reload entry: {tail}"));
    assert!(reload.contains("reload (SIGHUP)"), "{reload}");
    assert!(reload.contains("client[app].allow"), "{reload}");
    let verify = warden(dir.path(), &["ledger", "verify"], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // stderr: one JSON object a line, the gateway's lines among them, and
    // no token in any encoding.
    let log = std::fs::read(&log_path).unwrap();
    let log_text = String::from_utf8_lossy(&log);
    let mut messages = Vec::new();
    for line in log_text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or_default().to_string());
    }
    assert!(
        messages.iter().any(|m| m.contains("REDCap API at")),
        "{log_text}"
    );
    assert!(
        messages.iter().any(|m| m.contains("reloaded on SIGHUP")),
        "{log_text}"
    );
    token.assert_clean(&token.find("serve --log-format json stderr", &log));
}

/// `deploy/redcap-warden.service`, and the files it names beside it.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let analyze = std::env::var_os("SYSTEMD_ANALYZE")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        });
    let Some(analyze) = analyze else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing and CI is set; install Debian's systemd (scripts/test does)"
        );
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian: apt-get install systemd)");
        return;
    };
    // verify wants the ExecStart binary to exist: point a copy of the unit
    // at the built binary, everything else unchanged.
    let unit = std::fs::read_to_string(deploy().join("redcap-warden.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/redcap-warden "),
        "the unit starts /usr/bin/redcap-warden"
    );
    let bin = assert_cmd::cargo::cargo_bin("redcap-warden");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("redcap-warden.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/redcap-warden ", &format!("{} ", bin.display())),
    )
    .unwrap();
    let out = StdCommand::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    // verify exits 0 on some warnings: any line about the unit is a finding.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("redcap-warden.service"))
        .collect();
    assert!(about_unit.is_empty(), "{said}");
    // What the unit must hold (issue #15): readiness, confinement, secrets
    // as credentials only.
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=redcap-warden",
        "ProtectSystem=strict",
        "StateDirectory=redcap-warden",
        "ReadWritePaths=/var/lib/redcap-warden",
        "NoNewPrivileges=yes",
        "LoadCredential=redcap-warden-identity-passphrase:",
        "LoadCredential=redcap-warden-ledger-db-url:",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "missing {line}");
    }
    assert!(
        !unit.lines().any(|l| l.starts_with("Environment")),
        "no environment: secrets never travel in it"
    );
}
