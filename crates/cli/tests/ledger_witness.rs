//! Checkpoints that cannot be deleted unnoticed (#19 item 1): the witness
//! in the secrets store and the witness file, the age of the unsigned
//! tail, `ledger checkpoint` refusing a tampered ledger, and `ledger
//! adopt-unsigned`.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const TOKEN: &str = "AAAABBBBCCCCDDDDEEEEFFFF00001111";

fn ledger_dir(dir: &Path) -> PathBuf {
    dir.join("data/ledger")
}

fn segment(dir: &Path) -> PathBuf {
    ledger_dir(dir).join("seg-00000000000000000000.jsonl")
}

fn notes(dir: &Path) -> PathBuf {
    ledger_dir(dir).join("checkpoints.notes")
}

fn put(dir: &Path, name: &str, reason: &str) {
    let out = warden(
        dir,
        &["secrets", "put", name, "--reason", reason],
        Some(TOKEN),
    );
    assert!(out.status.success(), "{}", text(&out));
}

fn checkpoint(dir: &Path) {
    let out = warden(dir, &["ledger", "checkpoint"], None);
    assert!(out.status.success(), "{}", text(&out));
}

fn edit(dir: &Path, from: &str, to: &str) {
    let seg = segment(dir);
    let content = std::fs::read_to_string(&seg).unwrap();
    assert!(content.contains(from), "{content}");
    std::fs::write(&seg, content.replacen(from, to, 1)).unwrap();
}

fn verify(dir: &Path) -> (Option<i32>, String) {
    let out = warden(dir, &["ledger", "verify"], None);
    (out.status.code(), text(&out))
}

fn os_login() -> String {
    String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string()
}

/// `init`, a change, and a checkpoint: the witness in the store holds the
/// whole ledger.
fn witnessed(dir: &Path) {
    init(dir, "http://127.0.0.1:9/api/");
    put(dir, "redcap/x", "because");
    checkpoint(dir);
}

#[test]
fn normal_ledgers_verify_with_their_witness() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "http://127.0.0.1:9/api/");
    // Fresh: no writer with the store has opened it yet.
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warden/ledger-witness"), "{out}");
    assert!(out.contains("none yet"), "{out}");
    put(dir.path(), "redcap/x", "because");
    checkpoint(dir.path());
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("holds a checkpoint of 6 entries"), "{out}");
    let json = warden(dir.path(), &["ledger", "verify", "--json"], None);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["witnesses"][0]["ok"], true);
    assert_eq!(v["witnesses"][0]["size"], 6);
    assert_eq!(v["unanchored"], 0);
    // The witness is a public note, not a token: `secrets list` shows it.
    let list = warden(dir.path(), &["secrets", "list"], None);
    assert!(
        text(&list).contains("warden/ledger-witness"),
        "{}",
        text(&list)
    );
}

#[test]
fn deleted_checkpoints_and_an_edited_entry_fail_verify_naming_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    witnessed(dir.path());
    edit(dir.path(), "\"because\"", "\"becausf\"");
    std::fs::remove_file(notes(dir.path())).unwrap();
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED") && l.contains("warden/ledger-witness")),
        "{out}"
    );
    assert!(out.contains("was changed"), "{out}");
    // The next writer open refuses to sign the edited entry.
    let cp = warden(dir.path(), &["ledger", "checkpoint"], None);
    assert_eq!(cp.status.code(), Some(2), "{}", text(&cp));
    assert!(text(&cp).contains("refusing to sign"), "{}", text(&cp));
    assert!(text(&cp).contains("adopt-unsigned"), "{}", text(&cp));
    // Nor does any other command sign it.
    let put = warden(
        dir.path(),
        &["secrets", "put", "redcap/y", "--reason", "later"],
        Some(TOKEN),
    );
    assert_eq!(put.status.code(), Some(2), "{}", text(&put));
    let (code, _) = verify(dir.path());
    assert_eq!(code, Some(1));
}

#[test]
fn checkpoints_cut_to_the_first_note_and_an_edited_entry_fail_verify() {
    let dir = tempfile::tempdir().unwrap();
    witnessed(dir.path());
    let all = std::fs::read_to_string(notes(dir.path())).unwrap();
    // The first note: text, blank line, its signature line.
    let blank = all.find("\n\n").unwrap();
    let first_end = blank + 2 + all[blank + 2..].find('\n').unwrap() + 1;
    assert!(first_end < all.len(), "more than one checkpoint");
    std::fs::write(notes(dir.path()), &all[..first_end]).unwrap();
    edit(dir.path(), "\"because\"", "\"becausf\"");
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILED") && l.contains("warden/ledger-witness")),
        "{out}"
    );
    let cp = warden(dir.path(), &["ledger", "checkpoint"], None);
    assert_eq!(cp.status.code(), Some(2), "{}", text(&cp));
}

#[test]
fn adopt_unsigned_records_an_entry_and_lets_signing_proceed() {
    let dir = tempfile::tempdir().unwrap();
    witnessed(dir.path());
    // Nothing to adopt: nothing recorded.
    let out = warden(
        dir.path(),
        &["ledger", "adopt-unsigned", "--reason", "just checking"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Nothing to adopt"), "{}", text(&out));
    let tail = text(&warden(dir.path(), &["ledger", "tail", "-n", "1"], None));
    assert!(!tail.contains("just checking"), "{tail}");

    edit(dir.path(), "\"because\"", "\"becausf\"");
    std::fs::remove_file(notes(dir.path())).unwrap();
    let out = warden(
        dir.path(),
        &[
            "ledger",
            "adopt-unsigned",
            "--reason",
            "the reason was retyped; compared with the paper record",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Adopted"), "{}", text(&out));
    let tail =
        String::from_utf8_lossy(&warden(dir.path(), &["ledger", "tail", "-n", "1"], None).stdout)
            .to_string();
    let last: serde_json::Value = serde_json::from_str(tail.trim()).unwrap();
    assert_eq!(last["kind"], "admin");
    assert_eq!(last["action"], "ledger.adopt-unsigned");
    assert_eq!(last["operator"], os_login());
    assert_eq!(
        last["reason"],
        "the reason was retyped; compared with the paper record"
    );
    assert!(
        last["target"]
            .as_str()
            .unwrap()
            .contains("warden/ledger-witness"),
        "{last}"
    );
    // Signed: verify passes, and writers sign again.
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    put(dir.path(), "redcap/y", "after the adoption");
    checkpoint(dir.path());
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn an_old_unsigned_tail_fails_verify_and_is_not_signed() {
    let dir = tempfile::tempdir().unwrap();
    // No writer with the store has opened this ledger: no witness yet,
    // only the age of the unsigned tail tells.
    init(dir.path(), "http://127.0.0.1:9/api/");
    std::fs::remove_file(notes(dir.path())).unwrap();
    // The header a year older than the rest.
    let seg = segment(dir.path());
    let content = std::fs::read_to_string(&seg).unwrap();
    let at = content.find("\"ts\":\"").unwrap() + 6;
    let year: u32 = content[at..at + 4].parse().unwrap();
    let older = format!("{}{}{}", &content[..at], year - 1, &content[at + 4..]);
    std::fs::write(&seg, older).unwrap();
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("signed by no checkpoint"), "{out}");
    assert!(out.contains("adopt-unsigned"), "{out}");
    let cp = warden(dir.path(), &["ledger", "checkpoint"], None);
    assert_eq!(cp.status.code(), Some(2), "{}", text(&cp));
    assert!(text(&cp).contains("span"), "{}", text(&cp));
    let (code, _) = verify(dir.path());
    assert_eq!(code, Some(1), "the refused open signed nothing");
}

#[test]
fn a_witness_larger_than_the_ledger_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let witness_file = other.path().join("witness.note");
    init(dir.path(), "http://127.0.0.1:9/api/");
    let cfg = dir.path().join("warden.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        toml.replacen(
            "[ledger]\n",
            &format!("[ledger]\nwitness_file = \"{}\"\n", witness_file.display()),
            1,
        ),
    )
    .unwrap();
    put(dir.path(), "redcap/x", "first");
    checkpoint(dir.path());
    let (seg, old_notes) = (
        std::fs::read(segment(dir.path())).unwrap(),
        std::fs::read(notes(dir.path())).unwrap(),
    );
    put(dir.path(), "redcap/y", "second");
    checkpoint(dir.path());
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("witness file"), "{out}");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&witness_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600);
    // The ledger put back to its earlier state: consistent in itself.
    std::fs::write(segment(dir.path()), seg).unwrap();
    std::fs::write(notes(dir.path()), old_notes).unwrap();
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(1), "{out}");
    for witness in ["warden/ledger-witness", "witness file"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAILED") && l.contains(witness) && l.contains("removed")),
            "{witness}: {out}"
        );
    }
    // A configured witness file that is gone is a finding too.
    std::fs::remove_file(&witness_file).unwrap();
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is missing"), "{out}");
}

#[test]
fn a_running_gateway_and_its_clean_shutdown_verify() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let witness_file = other.path().join("witness.note");
    init(dir.path(), "http://127.0.0.1:9/api/");
    let cfg = dir.path().join("warden.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        toml.replacen(
            "[ledger]\n",
            &format!("[ledger]\nwitness_file = \"{}\"\n", witness_file.display()),
            1,
        ),
    )
    .unwrap();
    let (extra, port, _) = gateway_config(r#"["version"]"#);
    add_config(dir.path(), &extra);
    let serving = Serving::start(dir.path(), port);
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
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "while serving: {out}");
    assert!(witness_file.exists(), "the gateway keeps the witness file");
    drop(serving);
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "after a clean shutdown: {out}");
    let json = warden(dir.path(), &["ledger", "verify", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let file = v["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["witness"].as_str().unwrap().contains("witness file"))
        .unwrap()
        .clone();
    assert_eq!(file["size"], v["entries"], "the final checkpoint: {v}");
}
