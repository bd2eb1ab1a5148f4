//! A passphrase-protected identity as an operator meets it: `init
//! --passphrase`, the passphrase file `serve` and every other command read,
//! a wrong or missing passphrase, `secrets passphrase` adding, changing and
//! removing it, each recorded in the ledger.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const FIRST: &str = "first identity passphrase";
const SECOND: &str = "second identity passphrase";

fn set_passphrase_file(dir: &Path, passphrase: &str) {
    let file = dir.join("passphrase");
    std::fs::write(&file, format!("{passphrase}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn use_passphrase_file(dir: &Path) {
    let cfg = dir.join("warden.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let line = "# passphrase_file = \"/etc/redcap-warden/identity-passphrase\"";
    assert!(text.contains(line), "init documents the key: {text}");
    std::fs::write(&cfg, text.replace(line, "passphrase_file = \"passphrase\"")).unwrap();
}

#[test]
fn a_protected_identity_from_init_to_removal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let short = warden(
        d,
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:9/api/",
            "--time-zone",
            "UTC",
            "--passphrase",
        ],
        Some("too short\n"),
    );
    assert_eq!(short.status.code(), Some(2), "{}", text(&short));
    assert!(text(&short).contains("at least 12"), "{}", text(&short));
    assert!(!d.join("warden.toml").exists() && !d.join("data").exists());

    let init = warden(
        d,
        &[
            "init",
            "--redcap-url",
            "http://127.0.0.1:9/api/",
            "--time-zone",
            "UTC",
            "--passphrase",
        ],
        Some(&format!("{FIRST}\n")),
    );
    assert!(init.status.success(), "{}", text(&init));
    assert!(
        text(&init).contains("protected by your passphrase"),
        "{}",
        text(&init)
    );
    let identity = std::fs::read_to_string(d.join("data/identity.txt")).unwrap();
    assert!(identity.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));

    // No passphrase source and no terminal: one line naming the store and
    // every way to give it.
    let none = warden(d, &["secrets", "list"], None);
    assert_eq!(none.status.code(), Some(2));
    let err = String::from_utf8_lossy(&none.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("data/secrets.age")
            && err.contains("passphrase_file")
            && err.contains("redcap-warden-identity-passphrase"),
        "{err}"
    );

    use_passphrase_file(d);
    set_passphrase_file(d, "not the right passphrase");
    let wrong = warden(d, &["secrets", "list"], None);
    assert_eq!(wrong.status.code(), Some(2));
    let err = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("does not unlock identity") && err.contains("fix:"),
        "{err}"
    );
    assert!(!err.contains("not the right"), "{err}");

    set_passphrase_file(d, FIRST);
    let check = warden(d, &["secrets", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("is passphrase-protected"),
        "{}",
        text(&check)
    );

    let change = warden(
        d,
        &["secrets", "passphrase", "--reason", "staff change"],
        Some(&format!("{SECOND}\n")),
    );
    assert!(change.status.success(), "{}", text(&change));
    assert!(
        text(&change).contains("passphrase changed"),
        "{}",
        text(&change)
    );
    // The passphrase file still holds the old one.
    assert_eq!(warden(d, &["secrets", "list"], None).status.code(), Some(2));
    set_passphrase_file(d, SECOND);
    assert!(warden(d, &["secrets", "list"], None).status.success());

    let remove = warden(
        d,
        &[
            "secrets",
            "passphrase",
            "--remove",
            "--reason",
            "moving to a TPM",
        ],
        None,
    );
    assert!(remove.status.success(), "{}", text(&remove));
    let again = warden(
        d,
        &["secrets", "passphrase", "--remove", "--reason", "twice"],
        None,
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("has no passphrase"),
        "{}",
        text(&again)
    );
    let check = warden(d, &["secrets", "check"], None);
    assert!(
        text(&check).contains("is not passphrase-protected"),
        "{}",
        text(&check)
    );
    let mode = std::fs::metadata(d.join("data/identity.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let tail = String::from_utf8_lossy(&warden(d, &["ledger", "tail", "-n", "50"], None).stdout)
        .to_string();
    for (action, reason) in [
        ("identity passphrase set", "initial setup"),
        ("identity passphrase changed", "staff change"),
        ("identity passphrase removed", "moving to a TPM"),
    ] {
        assert!(
            tail.lines().any(|l| l.contains(action)
                && l.contains(reason)
                && l.contains("\"kind\":\"key\"")),
            "{action}: {tail}"
        );
    }
    assert!(!tail.contains(FIRST) && !tail.contains(SECOND), "{tail}");
    let verify = warden(d, &["ledger", "verify"], None);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}
