//! `serve` as an operator runs it, with other commands used while it runs:
//! their ledger entries go through the running gateway, which holds the
//! ledger; `reload` applies a changed warden.toml.

mod common;

use common::*;

#[test]
fn commands_record_through_a_running_gateway_and_reload_applies_changes() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "http://127.0.0.1:9/api/");
    let (extra, port, _) = gateway_config(r#"["version"]"#);
    add_config(dir.path(), &extra);
    let serving = Serving::start(dir.path(), port);

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
        None,
    );
    assert!(issue.status.success(), "{}", text(&issue));

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
    let reload = warden(dir.path(), &["reload"], None);
    assert!(reload.status.success(), "{}", text(&reload));
    assert!(
        text(&reload).contains("client[app].allow"),
        "{}",
        text(&reload)
    );

    drop(serving);
    let tail =
        String::from_utf8_lossy(&warden(dir.path(), &["ledger", "tail", "-n", "5"], None).stdout)
            .to_string();
    assert!(tail.contains("while serving"), "{tail}");
    assert!(tail.contains("\"action\":\"reload\""), "{tail}");
    assert!(tail.contains("\"action\":\"stop\""), "{tail}");
    let verify = warden(dir.path(), &["ledger", "verify"], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
