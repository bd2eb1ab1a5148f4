//! `ledger export` to S3 Object Lock and `verify --from-export`, against a
//! real moto server (scripts/test starts one and sets
//! WARDEN_TEST_AWS_ENDPOINT). The tests rely only on behaviour moto shares
//! with AWS (ecosystem.md §1b): Object Lock buckets, COMPLIANCE uploads,
//! HeadObject's lock fields, new versions of a key.

#![cfg(feature = "s3")]

use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectLockMode;
use durable::{FileSystem, OsFs};
use ed25519_dalek::SigningKey;
use ledger::export::{ExportError, ExportTarget, S3Export};
use ledger::{EntryKind, Ledger, LedgerOptions, VerifierKey};

const ORIGIN: &str = "test.example/redcap-warden/00112233aabbccdd";

fn endpoint() -> Option<String> {
    const VAR: &str = "WARDEN_TEST_AWS_ENDPOINT";
    match std::env::var(VAR) {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{VAR} is not set: run the tests through scripts/test, which starts moto")
        }
        _ => {
            eprintln!("skipped: {VAR} is not set; run through scripts/test to start moto");
            None
        }
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn vkey() -> VerifierKey {
    VerifierKey::from_signing_key(ORIGIN, &key())
}

/// moto checks no signature; static test credentials, passed in rather
/// than through the environment.
fn sdk() -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "warden-tests",
        )))
        .build()
}

fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk())
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn unique(what: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    format!("{what}-{}", hex::encode(b))
}

async fn bucket(endpoint: &str, object_lock: bool) -> String {
    let name = unique("warden-export");
    client(endpoint)
        .create_bucket()
        .bucket(&name)
        .object_lock_enabled_for_bucket(object_lock)
        .send()
        .await
        .unwrap();
    name
}

fn target(endpoint: &str, bucket: &str) -> ExportTarget {
    ExportTarget {
        bucket: bucket.into(),
        prefix: "site-1/ledger/".into(),
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        retention_days: 30,
        interval_minutes: 60,
    }
}

fn options() -> LedgerOptions {
    LedgerOptions {
        segment_max_bytes: 1500,
        checkpoint_interval: None,
        lock: false,
        ..LedgerOptions::default()
    }
}

/// Appends `n` entries (small segments, so several get sealed) and closes
/// the ledger with a final checkpoint.
fn write(dir: &Path, n: usize, create: bool) {
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs);
    let ledger = if create {
        Ledger::create(fs, dir, ORIGIN, key(), options()).unwrap()
    } else {
        Ledger::open(fs, dir, key(), options()).unwrap()
    };
    for i in 0..n {
        ledger
            .append(EntryKind::Admin {
                operator: "ana".into(),
                action: "apply".into(),
                target: format!("account-{i}"),
                reason: "change ticket 7".into(),
            })
            .unwrap();
    }
    ledger.close().unwrap();
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("seg-") && name.ends_with(".jsonl")
        })
        .count()
}

#[tokio::test]
async fn export_then_verify_from_export_round_trip_and_reexport_is_idempotent() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, true).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    write(&dir, 40, true);
    let segs = segments(&dir);
    assert!(segs >= 3, "{segs} segments");
    let export = S3Export::with_sdk_config(target(&endpoint, &bucket), &sdk());

    let first = export.export(&OsFs, &dir, &vkey()).await.unwrap();
    assert_eq!(first.segments.len(), segs - 1, "every sealed segment");
    assert_eq!(first.already, 0);
    let range = first.entries.clone().unwrap();
    assert_eq!(range.start, 0);
    assert_eq!(range.end, first.exported_entries);
    assert!(first.checkpoints.is_some(), "the latest checkpoint ships");
    assert!(first.local_only > 0, "the active segment stays local");
    for s in &first.segments {
        assert!(s.key.starts_with("site-1/ledger/seg-"), "{}", s.key);
    }

    let report = export.verify(&vkey(), Some((&OsFs, &dir))).await.unwrap();
    assert!(report.clean(), "{report:?}");
    assert_eq!(report.segments, segs - 1);
    assert_eq!(report.entries, first.exported_entries);
    assert!(report.checkpoints >= 1);
    assert_eq!(
        report.beyond, 1,
        "the final checkpoint covers the active segment too"
    );
    let local = report.local.unwrap();
    assert_eq!(local.not_exported, first.local_only);
    assert_eq!(local.entries, first.exported_entries + first.local_only);

    // Again at once: nothing new, nothing uploaded, nothing overwritten.
    let again = export.export(&OsFs, &dir, &vkey()).await.unwrap();
    assert!(!again.shipped_anything(), "{again:?}");
    assert_eq!(again.already, segs - 1);
    assert_eq!(again.exported_entries, first.exported_entries);

    // More entries seal more segments: only those ship, with the latest
    // checkpoint, and the whole export still verifies.
    write(&dir, 25, false);
    let more = export.export(&OsFs, &dir, &vkey()).await.unwrap();
    assert_eq!(more.already, segs - 1);
    assert_eq!(more.segments.len(), segments(&dir) - segs);
    assert_eq!(more.entries.unwrap().start, first.exported_entries);
    assert!(more.checkpoints.is_some());
    let report = export.verify(&vkey(), Some((&OsFs, &dir))).await.unwrap();
    assert!(report.clean(), "{report:?}");
    assert_eq!(report.entries, more.exported_entries);
    assert!(report.anchored > first.exported_entries);

    // A verifier holding another key refuses the export.
    let other = VerifierKey::from_signing_key(ORIGIN, &SigningKey::from_bytes(&[9; 32]));
    assert!(matches!(
        export.verify(&other, None).await,
        Err(ExportError::Verify(_))
    ));
}

#[tokio::test]
async fn uploads_are_locked_in_compliance_mode_for_the_retention() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, true).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    write(&dir, 30, true);
    let export = S3Export::with_sdk_config(target(&endpoint, &bucket), &sdk());
    let report = export.export(&OsFs, &dir, &vkey()).await.unwrap();
    let shipped: Vec<_> = report.segments.iter().chain(&report.checkpoints).collect();
    assert!(shipped.len() >= 2);
    let now = jiff::Timestamp::now().as_second();
    let s3 = client(&endpoint);
    for s in shipped {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(&s.key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Compliance),
            "{}",
            s.key
        );
        let until = head.object_lock_retain_until_date().unwrap().secs();
        let days = (until - now) as f64 / 86_400.0;
        assert!(
            (29.9..=30.1).contains(&days),
            "{}: locked for {days} days",
            s.key
        );
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(&s.key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let local = if s.key.contains("/checkpoints/") {
            std::fs::read(dir.join("checkpoints.notes")).unwrap()[..body.len()].to_vec()
        } else {
            std::fs::read(dir.join(s.key.rsplit('/').next().unwrap())).unwrap()
        };
        assert_eq!(&body[..], &local[..], "{}", s.key);
        assert_eq!(
            s.sha256,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&local))
        );
    }
}

#[tokio::test]
async fn a_tampered_exported_object_is_caught() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, true).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    write(&dir, 40, true);
    let export = S3Export::with_sdk_config(target(&endpoint, &bucket), &sdk());
    let report = export.export(&OsFs, &dir, &vkey()).await.unwrap();
    assert!(export.verify(&vkey(), None).await.unwrap().clean());

    // Object Lock keeps the original version, but a writer can still put
    // a new version on top: the verifier reads the current one and must
    // notice. One changed byte in the newest exported segment:
    let victim = &report.segments.last().unwrap().key;
    let s3 = client(&endpoint);
    let mut data = std::fs::read(dir.join(victim.rsplit('/').next().unwrap())).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x01;
    s3.put_object()
        .bucket(&bucket)
        .key(victim)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap();
    let err = export.verify(&vkey(), None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ExportError::Verify(_)), "{text}");
    assert!(
        text.contains(victim.rsplit('/').next().unwrap()) || text.contains("root"),
        "{text}"
    );
    // And an export refuses to continue over a segment that differs.
    write(&dir, 1, false);
    let err = export.export(&OsFs, &dir, &vkey()).await.unwrap_err();
    assert!(matches!(err, ExportError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn a_tampered_exported_checkpoint_is_caught() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, true).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    write(&dir, 40, true);
    let export = S3Export::with_sdk_config(target(&endpoint, &bucket), &sdk());
    let report = export.export(&OsFs, &dir, &vkey()).await.unwrap();
    let piece = report.checkpoints.unwrap();
    let s3 = client(&endpoint);
    let mut data =
        std::fs::read(dir.join("checkpoints.notes")).unwrap()[..piece.bytes as usize].to_vec();
    // The size line of the first note: "…\n<size>\n…" → another size.
    let nl = data.iter().position(|&b| b == b'\n').unwrap();
    data[nl + 1] = if data[nl + 1] == b'9' { b'8' } else { b'9' };
    s3.put_object()
        .bucket(&bucket)
        .key(&piece.key)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap();
    let err = export.verify(&vkey(), None).await.unwrap_err();
    assert!(matches!(err, ExportError::Verify(_)), "{err}");
}

#[tokio::test]
async fn a_bucket_without_object_lock_is_refused() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, false).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    write(&dir, 30, true);
    let export = S3Export::with_sdk_config(target(&endpoint, &bucket), &sdk());
    let err = export.export(&OsFs, &dir, &vkey()).await.unwrap_err();
    assert!(matches!(err, ExportError::NoObjectLock { .. }), "{err}");
    assert!(err.to_string().contains("Object Lock"), "{err}");
    // Nothing was uploaded.
    let listed = client(&endpoint)
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty());
}

#[tokio::test]
async fn a_ledger_that_does_not_verify_is_not_exported() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = bucket(&endpoint, true).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    write(&dir, 40, true);
    let first = dir.join("seg-00000000000000000000.jsonl");
    let mut data = std::fs::read(&first).unwrap();
    let at = data.len() - 10;
    data[at] ^= 0x01;
    std::fs::write(&first, data).unwrap();
    let export = S3Export::with_sdk_config(target(&endpoint, &bucket), &sdk());
    let err = export.export(&OsFs, &dir, &vkey()).await.unwrap_err();
    assert!(matches!(err, ExportError::Local(_)), "{err}");
}
