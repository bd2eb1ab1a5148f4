//! Approvals signed by real keys made with `ssh-keygen` (openssh-client),
//! each refusal beside the approval it breaks; `ssh-keygen -Y verify`
//! accepts what this module accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use ledger::{Approval, Entry, EntryKind, ReauthAction};
use warden_config::{AccountSection, Approver};

use super::*;

fn keygen(dir: &Path, name: &str, kind: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name, "-t", kind, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "{out:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_string())
}

fn sign(key: &Path, namespace: &str, file: &Path) -> Vec<u8> {
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sig = file.with_extension("json.sig");
    let bytes = std::fs::read(&sig).unwrap();
    std::fs::remove_file(sig).unwrap();
    bytes
}

fn account(approvers: &[String]) -> AccountSection {
    AccountSection {
        name: "site-a".into(),
        username: "svc_a".into(),
        secret: "redcap/a".parse().unwrap(),
        study: "heart".into(),
        site: Some("a".into()),
        profile: Some("site-data-read".into()),
        rotate_every_days: 90,
        reauth_every_days: Some(90),
        lapse_after_inactive_days: Some(30),
        approvers: approvers
            .iter()
            .map(|l| Approver::parse(l).unwrap())
            .collect(),
        mode: Default::default(),
        partner: None,
    }
}

const DIGEST: &str = "sha256:00";

fn statement(ts: Timestamp) -> Statement {
    let from = day(ts, &TimeZone::UTC);
    Statement {
        account: "site-a".into(),
        study: "heart".into(),
        period: Period {
            from,
            until: add_days(from, 90),
        },
        reason: Some("quarterly review".into()),
        rights_digest: DIGEST.into(),
        ts,
    }
}

fn entry(seq: u64, ts: Timestamp, kind: EntryKind) -> Entry {
    Entry { seq, ts, kind }
}

#[test]
fn approvals_signed_with_ssh_keygen_are_checked_and_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let (ana, ana_pub) = keygen(dir.path(), "ana", "ed25519");
    let (eve, _) = keygen(dir.path(), "eve", "ed25519");
    let (ecdsa, ecdsa_pub) = keygen(dir.path(), "ecd", "ecdsa");
    let ana_line = format!("ana@example.org {ana_pub}");
    let acct = account(std::slice::from_ref(&ana_line));
    let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
    let tz = TimeZone::UTC;
    let facts = LedgerFacts::default();
    let file = dir.path().join("statement.json");
    let text = statement(now).to_text();
    std::fs::write(&file, &text).unwrap();
    let sig = sign(&ana, REAUTH_NAMESPACE, &file);
    let check = |statement: &[u8], signature: &[u8], facts: &LedgerFacts, now| {
        verify(
            &acct,
            &Presented {
                statement,
                signature,
            },
            facts,
            DIGEST,
            now,
            &tz,
        )
    };

    let ok = check(text.as_bytes(), &sig, &facts, now).unwrap();
    assert_eq!(ok.signer, "ana@example.org");
    assert!(ok.fingerprint.starts_with("SHA256:"));
    assert_eq!(ok.statement, statement(now));

    // ssh-keygen accepts the same files.
    let signers = dir.path().join("allowed_signers");
    std::fs::write(&signers, format!("{}\n", acct.approvers[0].line)).unwrap();
    std::fs::write(dir.path().join("statement.json.sig"), &sig).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(&signers)
        .args(["-I", "ana@example.org", "-n", REAUTH_NAMESPACE, "-s"])
        .arg(dir.path().join("statement.json.sig"))
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen -Y verify: {out:?}");
    std::fs::remove_file(dir.path().join("statement.json.sig")).unwrap();

    let refused = |r: Result<Verified, Refusal>| r.unwrap_err();
    // Unsigned: no signature, or the statement given as its own signature.
    assert!(matches!(
        refused(check(text.as_bytes(), b"", &facts, now)),
        Refusal::Unsigned(_)
    ));
    let r = refused(check(text.as_bytes(), text.as_bytes(), &facts, now));
    assert!(r.to_string().contains("is unsigned"), "{r}");
    // Wrong signer.
    let r = refused(check(
        text.as_bytes(),
        &sign(&eve, REAUTH_NAMESPACE, &file),
        &facts,
        now,
    ));
    assert!(matches!(r, Refusal::NotAnApprover { .. }), "{r}");
    assert!(r.to_string().contains("wrong signer"), "{r}");
    // Wrong namespace.
    let r = refused(check(
        text.as_bytes(),
        &sign(&ana, "git", &file),
        &facts,
        now,
    ));
    assert_eq!(r, Refusal::WrongNamespace("git".into()));
    // A key type the library cannot verify, named.
    let r = refused(check(
        text.as_bytes(),
        &sign(&ecdsa, REAUTH_NAMESPACE, &file),
        &facts,
        now,
    ));
    assert!(r.to_string().contains("ecdsa-sha2-nistp256"), "{r}");
    assert!(
        Approver::parse(&format!("x {ecdsa_pub}"))
            .unwrap_err()
            .contains("ecdsa-sha2-nistp256")
    );
    // Modified after signing.
    let changed = text.replace("quarterly", "yearly");
    assert_eq!(
        refused(check(changed.as_bytes(), &sig, &facts, now)),
        Refusal::BadSignature
    );
    // Signed, but not a statement we print.
    let pretty = format!(
        "{}\n",
        serde_json::to_string_pretty(&statement(now)).unwrap()
    );
    std::fs::write(&file, &pretty).unwrap();
    let pretty_sig = sign(&ana, REAUTH_NAMESPACE, &file);
    let r = refused(check(pretty.as_bytes(), &pretty_sig, &facts, now));
    assert!(matches!(r, Refusal::NotAStatement(_)), "{r}");
    // Expired: printed eight days before it is presented.
    let later: Timestamp = "2026-12-15T10:00:01Z".parse().unwrap();
    assert!(matches!(
        refused(check(text.as_bytes(), &sig, &facts, later)),
        Refusal::Expired(_)
    ));
    // Replayed: an approval in the ledger used this statement.
    let mut used = LedgerFacts::default();
    used.observe(&entry(
        4,
        now,
        EntryKind::Reauth {
            operator: "op".into(),
            account: "site-a".into(),
            until: Some("2027-03-07".into()),
            reason: "r".into(),
            action: Some(ReauthAction::Approve),
            approval: Some(Approval {
                signer: "ana@example.org".into(),
                allowed_signer: ana_line.clone(),
                statement: text.clone(),
                signature: String::from_utf8(sig.clone()).unwrap(),
            }),
        },
    ));
    assert_eq!(
        refused(check(text.as_bytes(), &sig, &used, now)),
        Refusal::Replayed(4)
    );
    // Self-approval: ana last changed the account's rights; a rights
    // check (which changes nothing) does not count.
    let mut changed_by_ana = LedgerFacts::default();
    for (seq, operator, changes) in [
        (
            7,
            "ana (via sudo by root)",
            vec!["design: 1 -> 0".to_string()],
        ),
        (
            8,
            "bob",
            vec![
                "check: 0 finding(s), digest sha256:00".to_string(),
                "probe: Export DAGs with the token of `site-a` (administrator test; refused)"
                    .to_string(),
            ],
        ),
        (9, "bob", vec![]),
    ] {
        changed_by_ana.observe(&entry(
            seq,
            now,
            EntryKind::Rights {
                operator: operator.into(),
                account: "site-a".into(),
                project: "heart".into(),
                changes,
                reason: "r".into(),
            },
        ));
    }
    let r = refused(check(text.as_bytes(), &sig, &changed_by_ana, now));
    assert!(matches!(r, Refusal::SelfApproval { seq: 7, .. }), "{r}");
    // Rights changed since the statement.
    let r = verify(
        &acct,
        &Presented {
            statement: text.as_bytes(),
            signature: &sig,
        },
        &facts,
        "sha256:11",
        now,
        &tz,
    )
    .unwrap_err();
    assert!(matches!(r, Refusal::RightsChanged { .. }), "{r}");
}

#[test]
fn statements_are_canonical() {
    let s = statement("2026-12-07T10:00:00Z".parse().unwrap());
    let text = s.to_text();
    assert_eq!(
        text,
        "{\"account\":\"site-a\",\"study\":\"heart\",\"period\":{\"from\":\"2026-12-07\",\"until\":\"2027-03-07\"},\"reason\":\"quarterly review\",\"rights_digest\":\"sha256:00\",\"ts\":\"2026-12-07T10:00:00Z\"}\n"
    );
    assert_eq!(Statement::parse(text.as_bytes()).unwrap(), s);
    for bad in [
        text.trim_end().to_string(),
        text.replace(",\"study\"", ", \"study\""),
        text.replace("}\n", ",\"extra\":1}\n"),
        text.replace("\"reason\":\"quarterly review\",", ""),
    ] {
        assert!(Statement::parse(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn rights_digests_ignore_the_expiration_and_the_encoding_of_form_rights() {
    let row = |exp: &str, forms: serde_json::Value| {
        serde_json::json!({
            "username": "svc_a", "expiration": exp, "data_access_group": "a",
            "data_access_group_id": 3, "api_export": 1, "design": 0,
            "forms": forms, "forms_export": {"f": 2},
        })
        .as_object()
        .unwrap()
        .clone()
    };
    let a = rights_digest(&row("", serde_json::json!({"f": 2})), None).unwrap();
    let b = rights_digest(&row("2027-01-01", serde_json::json!({"f": 129})), Some("")).unwrap();
    assert_eq!(a, b, "legacy 2 and bitmask 129 are both read-only");
    let c = rights_digest(&row("", serde_json::json!({"f": 1})), None).unwrap();
    assert_ne!(a, c);
    let d = rights_digest(&row("", serde_json::json!({"f": 2})), Some("U-123")).unwrap();
    assert_ne!(a, d, "a role is part of the rights");
}

#[test]
fn lapses_come_from_the_period_the_idle_days_or_the_ledger() {
    let tz = TimeZone::UTC;
    let acct = account(&[]);
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let mut facts = LedgerFacts::default();
    facts.observe(&entry(
        0,
        t("2026-01-01T00:00:00Z"),
        EntryKind::Alert {
            code: "c".into(),
            message: "m".into(),
        },
    ));
    // Never approved: due 90 days after the ledger began; idle after 30.
    let s = assess(&acct, &facts, t("2026-01-20T00:00:00Z"), &tz);
    assert_eq!(s.due.unwrap().to_string(), "2026-04-01");
    assert_eq!(s.lapsed, None);
    let s = assess(&acct, &facts, t("2026-01-31T00:00:00Z"), &tz);
    assert!(
        matches!(s.lapsed, Some(LapseCause::Inactive { days: 30, .. })),
        "{s:?}"
    );
    let request = |seq, ts| {
        entry(
            seq,
            ts,
            EntryKind::Request {
                request_id: "r".into(),
                client: "c".into(),
                account: "site-a".into(),
                site: None,
                content: None,
                action: None,
                format: None,
                params: vec![],
                record_ids: Default::default(),
                filter_hmac: None,
                body_hmac: "h".into(),
                body_bytes: 0,
                reason: None,
            },
        )
    };
    facts.observe(&request(1, t("2026-03-20T00:00:00Z")));
    let s = assess(&acct, &facts, t("2026-04-01T00:00:00Z"), &tz);
    assert_eq!(
        s.lapsed,
        Some(LapseCause::Unapproved {
            due: "2026-04-01".parse().unwrap()
        })
    );
    assert_eq!(s.last_use, Some(t("2026-03-20T00:00:00Z")));
    // A lapse recorded stays until an approval comes after it.
    let reauth = |seq, until: Option<&str>, action| {
        entry(
            seq,
            t("2026-04-02T00:00:00Z"),
            EntryKind::Reauth {
                operator: "op".into(),
                account: "site-a".into(),
                until: until.map(str::to_string),
                reason: "r".into(),
                action: Some(action),
                approval: None,
            },
        )
    };
    facts.observe(&reauth(2, None, ReauthAction::Lapse));
    let s = assess(&acct, &facts, t("2026-04-02T00:00:01Z"), &tz);
    assert!(s.lapse_recorded);
    assert!(matches!(
        s.lapsed,
        Some(LapseCause::Recorded { seq: 2, .. })
    ));
    facts.observe(&reauth(3, Some("2026-07-01"), ReauthAction::Approve));
    let s = assess(&acct, &facts, t("2026-04-03T00:00:00Z"), &tz);
    assert_eq!(s.lapsed, None, "{s:?}");
    assert_eq!(s.due.unwrap().to_string(), "2026-07-01");
    assert_eq!(facts.next, 4, "a later read goes on from entry 4");
}

#[test]
fn principals_match_logins() {
    assert!(principal_is("ana@example.org", "ana"));
    assert!(principal_is("Ana", "ana as \"Ana B\""));
    assert!(principal_is("root", "ana (via sudo by root)"));
    assert!(!principal_is("bob@example.org", "ana"));
    assert!(!principal_is("via", "ana (via sudo by root)"));
}
