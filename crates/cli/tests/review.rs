//! `review statement | sign | list` end to end: a reviewer listed in
//! `[review] reviewers` prints the statement of today's review, signs it
//! with `ssh-keygen -Y sign`, records it; the `review` entry holds what
//! `ssh-keygen -Y verify` accepts; an unsigned, wrongly signed (other
//! namespace, a key not listed, another person's key), edited,
//! self-incoherent or replayed review is refused with its reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{add_config, init, put_secrets, text, warden};
use serde_json::Value;

/// An Ed25519 key made by ssh-keygen in `dir`: (private key path,
/// public key line).
fn key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

/// Signs `file` with `key` in `namespace`; the signature's path.
fn sign(key: &Path, namespace: &str, file: &Path) -> PathBuf {
    let sig = PathBuf::from(format!("{}.sig", file.display()));
    let _ = std::fs::remove_file(&sig);
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    sig
}

fn login() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_review_is_signed_by_a_listed_reviewer_and_every_bad_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    std::fs::create_dir(&dir).unwrap();
    init(&dir, "http://127.0.0.1:9/api/");
    let me = login();
    let (mine, mine_pub) = key(tmp.path(), "reviewer");
    let (other, other_pub) = key(tmp.path(), "other");
    let (stranger, _) = key(tmp.path(), "stranger");
    add_config(
        &dir,
        &format!(
            "\n[review]\nreviewers = [\"{me}@example.org {mine_pub}\", \"someone-else {other_pub}\"]\n"
        ),
    );
    let check = warden(&dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    put_secrets(&dir, &[("redcap/x", "0123456789ABCDEF0123456789ABCDEF")]);
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();

    let list = warden(&dir, &["review", "list"], None);
    assert!(
        text(&list).contains("no review recorded yet"),
        "{}",
        text(&list)
    );

    let out = warden(
        &dir,
        &[
            "--operator",
            "Ana Reviewer",
            "review",
            "statement",
            "--period",
            &today,
            "--note",
            "nothing unusual",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let statement: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The OS login, with the typed name beside it, never instead.
    assert_eq!(
        statement["reviewer"],
        format!("{me} as \"Ana Reviewer\""),
        "{statement}"
    );
    assert_eq!(statement["entries"]["first_seq"], 0, "{statement}");
    let file = tmp.path().join("review.json");
    std::fs::write(&file, &out.stdout).unwrap();

    let sign_in = |sig: &Path, operator: &str| {
        warden(
            &dir,
            &[
                "--operator",
                operator,
                "review",
                "sign",
                "--period",
                &today,
                "--signature",
                sig.to_str().unwrap(),
                "--statement",
                file.to_str().unwrap(),
            ],
            None,
        )
    };
    let refused = |sig: &Path, operator: &str, why: &str| {
        let out = sign_in(sig, operator);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(why), "want {why:?}: {}", text(&out));
    };
    // Unsigned: the statement itself given as its signature.
    refused(&file, "Ana Reviewer", "unsigned");
    // Wrongly signed.
    let sig = sign(&mine, "redcap-warden-reauth", &file);
    refused(&sig, "Ana Reviewer", "namespace `redcap-warden-reauth`");
    let sig = sign(&stranger, "redcap-warden-review", &file);
    refused(&sig, "Ana Reviewer", "not among [review] reviewers");
    let sig = sign(&other, "redcap-warden-review", &file);
    refused(
        &sig,
        "Ana Reviewer",
        "each reviewer signs with their own key",
    );
    // Printed with one typed name, signed in with another: not the same
    // reviewer.
    let sig = sign(&mine, "redcap-warden-review", &file);
    refused(
        &sig,
        "Someone Else",
        "the reviewer prints, signs and records",
    );

    let ok = sign_in(&sig, "Ana Reviewer");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("recorded"), "{}", text(&ok));
    // Replayed.
    refused(&sig, "Ana Reviewer", "replayed");
    // Edited after signing.
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("nothing unusual", "nothing at all");
    std::fs::write(&file, edited).unwrap();
    refused(&sig, "Ana Reviewer", "does not match the statement");
    // Self-incoherent: a statement claiming a range the ledger does not
    // hold, signed properly.
    let mut claim = statement.clone();
    claim["entries"]["count"] = Value::from(999);
    std::fs::write(&file, format!("{claim}\n")).unwrap();
    let sig = sign(&mine, "redcap-warden-review", &file);
    refused(&sig, "Ana Reviewer", "self-incoherent");

    // The review entry, as the ledger holds it, verifies with ssh-keygen.
    let list = warden(&dir, &["--json", "review", "list"], None);
    assert!(list.status.success(), "{}", text(&list));
    let reviews: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(reviews.as_array().unwrap().len(), 1, "{reviews}");
    assert_eq!(reviews[0]["signer"], format!("{me}@example.org"));
    let seq = reviews[0]["seq"].as_u64().unwrap();
    let show = warden(&dir, &["ledger", "show", &seq.to_string()], None);
    let entry: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(entry["kind"], "review");
    let signed = &entry["signed"];
    let allowed = tmp.path().join("allowed_signers");
    std::fs::write(&allowed, signed["allowed_signer"].as_str().unwrap()).unwrap();
    let sigfile = tmp.path().join("entry.sig");
    std::fs::write(&sigfile, signed["signature"].as_str().unwrap()).unwrap();
    let mut verify = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&allowed)
        .args(["-I", signed["signer"].as_str().unwrap()])
        .args(["-n", "redcap-warden-review", "-s"])
        .arg(&sigfile)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    verify
        .stdin
        .take()
        .unwrap()
        .write_all(signed["statement"].as_str().unwrap().as_bytes())
        .unwrap();
    assert!(verify.wait().unwrap().success());
    let human = warden(&dir, &["review", "list"], None);
    assert!(
        text(&human).contains("note: nothing unusual"),
        "{}",
        text(&human)
    );

    let verified = warden(&dir, &["ledger", "verify"], None);
    assert!(verified.status.success(), "{}", text(&verified));
}
