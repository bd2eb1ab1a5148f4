//! What the CLI's tests share: running the binary, reading its output,
//! a setup with a study, and a `serve` process that is stopped on drop.

#![allow(dead_code)]

pub mod chromium;
pub mod cluster;
pub mod sandbox;
pub mod site;
pub mod study;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;

/// Runs `redcap-warden` in `dir`, with `stdin` if given, without SUDO_USER.
pub fn warden(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::cargo_bin("redcap-warden").unwrap();
    cmd.current_dir(dir).args(args).env_remove("SUDO_USER");
    if let Some(input) = stdin {
        cmd.write_stdin(input.to_string());
    }
    cmd.output().unwrap()
}

/// Standard output and error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `init` in `dir` against `redcap_url`.
pub fn init(dir: &Path, redcap_url: &str) {
    let out = warden(
        dir,
        &["init", "--redcap-url", redcap_url, "--time-zone", "UTC"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Appends TOML to `dir`'s warden.toml.
pub fn add_config(dir: &Path, toml: &str) {
    let path = dir.join("warden.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(toml);
    std::fs::write(path, text).unwrap();
}

/// A `[gateway]` on free loopback ports, one study, one account whose token
/// is the secret `redcap/a`, one client `app` allowed `allow`.
pub fn gateway_config(allow: &str) -> (String, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let toml = format!(
        "\n[gateway]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\n[[study]]\nname = \"s\"\n\n[[account]]\nname = \"a\"\nusername = \"svc\"\nsecret = \"redcap/a\"\nstudy = \"s\"\n\n[[client]]\nname = \"app\"\naccount = \"a\"\nallow = {allow}\nwrite_reason = \"optional\"\n"
    );
    (toml, port, admin)
}

/// `redcap-warden serve` in `dir`, ready once `port` accepts connections;
/// SIGTERM (a graceful stop) on drop.
pub struct Serving(pub Child);

impl Serving {
    pub fn start(dir: &Path, port: u16) -> Serving {
        let child = StdCommand::cargo_bin("redcap-warden")
            .unwrap()
            .current_dir(dir)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let serving = Serving(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the gateway did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        serving
    }

    /// As [`Serving::start`], with the clock of re-authorisation at `now`
    /// (`REDCAP_WARDEN_TEST_NOW`, honoured by test builds only).
    pub fn start_at(dir: &Path, port: u16, now: &str) -> Serving {
        let child = StdCommand::cargo_bin("redcap-warden")
            .unwrap()
            .current_dir(dir)
            .arg("serve")
            .env("REDCAP_WARDEN_TEST_NOW", now)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let serving = Serving(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the gateway did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        serving
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = StdCommand::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// A new installation in `dir` whose one client `app` (allowed `allow`)
/// calls the REDCap at `redcap_url` through account `a`, whose token is in
/// the store: returns the gateway's port and the client's key.
pub fn installation_with_client(dir: &Path, redcap_url: &str, allow: &str) -> (u16, String) {
    init(dir, redcap_url);
    let (extra, port, _) = gateway_config(allow);
    add_config(dir, &extra);
    let put = warden(
        dir,
        &["secrets", "put", "redcap/a", "--reason", "t"],
        Some("0123456789ABCDEF0123456789ABCDEF"),
    );
    assert!(put.status.success(), "{}", text(&put));
    let issue = warden(
        dir,
        &[
            "keys",
            "issue",
            "app",
            "--to-file",
            "app.key",
            "--reason",
            "t",
        ],
        None,
    );
    assert!(issue.status.success(), "{}", text(&issue));
    let key = std::fs::read_to_string(dir.join("app.key"))
        .unwrap()
        .trim()
        .to_string();
    (port, key)
}

/// A process's memory figure from /proc (`VmRSS:`, `VmHWM:`), in bytes.
pub fn vm(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// For stand-ins of REDCap: the body of the next HTTP request on a
/// connection (read by its `Content-Length`), or `None` when the
/// connection ends first. Blank lines between requests are skipped.
pub fn read_request(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if first && line.trim().is_empty() {
            continue;
        }
        first = false;
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// Issues a client key to `client` with `keys issue --to-file` and
/// answers it.
pub fn issue_key(dir: &Path, client: &str) -> String {
    let file = format!("{client}.key");
    let issue = warden(
        dir,
        &["keys", "issue", client, "--to-file", &file, "--reason", "t"],
        None,
    );
    assert!(issue.status.success(), "{}", text(&issue));
    std::fs::read_to_string(dir.join(&file))
        .unwrap()
        .trim()
        .to_string()
}

/// Stores each `(secret, token)` with `secrets put` (the token on stdin).
pub fn put_secrets(dir: &Path, secrets: &[(&str, &str)]) {
    for (name, token) in secrets {
        let put = warden(dir, &["secrets", "put", name, "--reason", "t"], Some(token));
        assert!(put.status.success(), "{}", text(&put));
    }
}

/// One POST a [`webhook_receiver`] took: its headers (names lower-cased)
/// and JSON body.
pub type Posted = (Vec<(String, String)>, serde_json::Value);

/// A webhook receiver on a loopback port (always 200): each POST comes
/// out of the channel.
pub fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<Posted>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let length = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((headers, serde_json::from_slice(&body).unwrap()));
        }
    });
    (url, rx)
}
