//! `serve` as an operator runs it, with other commands used while it runs:
//! their ledger entries go through the running gateway, which holds the
//! ledger; `reload` applies a changed warden.toml.

use std::path::Path;
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;

fn warden(dir: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("redcap-warden")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = terminate(self.0.id());
        let _ = self.0.wait();
    }
}

fn terminate(pid: u32) -> std::io::Result<()> {
    StdCommand::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .map(|_| ())
}

#[test]
fn commands_record_through_a_running_gateway_and_reload_applies_changes() {
    let dir = tempfile::tempdir().unwrap();
    let out = warden(
        dir.path(),
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:9/api/",
            "--time-zone",
            "UTC",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (port, admin) = (free_port(), free_port());
    let cfg = dir.path().join("warden.toml");
    let mut toml = std::fs::read_to_string(&cfg).unwrap();
    toml.push_str(&format!(
        "\n[gateway]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\n[[study]]\nname = \"s\"\n\n[[account]]\nname = \"a\"\nusername = \"svc\"\nsecret = \"redcap/a\"\nstudy = \"s\"\n\n[[client]]\nname = \"app\"\naccount = \"a\"\nallow = [\"version\"]\n"
    ));
    std::fs::write(&cfg, &toml).unwrap();

    let child = StdCommand::cargo_bin("redcap-warden")
        .unwrap()
        .current_dir(dir.path())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serving = Serving(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The gateway holds the ledger; this change is recorded through it.
    let issue = warden(
        dir.path(),
        &[
            "keys",
            "issue",
            "app",
            "--to-file",
            "app.key",
            "--reason",
            "while serving",
        ],
    );
    assert!(issue.status.success(), "{}", text(&issue));

    std::fs::write(
        &cfg,
        toml.replace(
            "allow = [\"version\"]",
            "allow = [\"version\", \"project\"]",
        ),
    )
    .unwrap();
    let reload = warden(dir.path(), &["reload"]);
    assert!(reload.status.success(), "{}", text(&reload));
    assert!(
        text(&reload).contains("client[app].allow"),
        "{}",
        text(&reload)
    );

    drop(serving);
    let tail = String::from_utf8_lossy(&warden(dir.path(), &["ledger", "tail", "-n", "5"]).stdout)
        .to_string();
    assert!(tail.contains("while serving"), "{tail}");
    assert!(tail.contains("\"action\":\"reload\""), "{tail}");
    assert!(tail.contains("\"action\":\"stop\""), "{tail}");
    let verify = warden(dir.path(), &["ledger", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
