//! The S3 side of the export: aws-sdk-s3, credentials from the standard
//! AWS chain (or a configuration the caller built).

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ObjectLockEnabled, ObjectLockMode};
use base64::Engine;
use durable::FileSystem;
use sha2::{Digest, Sha256};

use super::{
    ExportError, ExportReport, ExportTarget, ExportVerifyReport, Listed, Shipped, notes_pieces,
    plan, segment_objects, sha256_hex, verify_downloaded,
};
use crate::checkpoint::VerifierKey;
use crate::files;

/// An S3 bucket with Object Lock that a ledger is exported to.
pub struct S3Export {
    client: Client,
    target: ExportTarget,
}

/// An S3 error in one line: S3's code and message when it answered, the
/// SDK's chain of causes otherwise (a network or credentials problem).
fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(E) -> ExportError {
    let what = what.into();
    move |e| {
        let detail = match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&e).to_string(),
        };
        ExportError::S3 { op, what, detail }
    }
}

impl S3Export {
    /// A client from the standard AWS chain (environment, shared files,
    /// SSO, instance or container role); `target.region` and
    /// `target.endpoint_url` apply when set.
    pub async fn connect(target: ExportTarget) -> Result<S3Export, ExportError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &target.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(ExportError::Config(
                "no AWS region is configured for the export; fix: set region in [ledger.export], or AWS_REGION".into(),
            ));
        }
        Ok(S3Export::with_sdk_config(target, &sdk))
    }

    /// A client from a configuration the caller built (tests pass static
    /// credentials this way); `target.region` and `target.endpoint_url`
    /// still apply.
    pub fn with_sdk_config(target: ExportTarget, sdk: &aws_config::SdkConfig) -> S3Export {
        let mut conf = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(region) = &target.region {
            conf = conf.region(aws_sdk_s3::config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &target.endpoint_url {
            conf = conf.endpoint_url(endpoint).force_path_style(true);
        }
        S3Export {
            client: Client::from_conf(conf.build()),
            target,
        }
    }

    /// Where this client exports to.
    pub fn target(&self) -> &ExportTarget {
        &self.target
    }

    /// Refuses a bucket without Object Lock: an export must be write-once.
    async fn check_object_lock(&self) -> Result<(), ExportError> {
        let bucket = &self.target.bucket;
        let answer = self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await;
        match answer {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled());
                if enabled == Some(&ObjectLockEnabled::Enabled) {
                    Ok(())
                } else {
                    Err(ExportError::NoObjectLock {
                        bucket: bucket.clone(),
                        detail: "its Object Lock configuration is not Enabled".into(),
                    })
                }
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
                Err(ExportError::NoObjectLock {
                    bucket: bucket.clone(),
                    detail: "it has no Object Lock configuration".into(),
                })
            }
            Err(e) => Err(s3_error(
                "GetObjectLockConfiguration",
                format!("of bucket {bucket}"),
            )(e)),
        }
    }

    /// Every object under the prefix.
    async fn list(&self) -> Result<BTreeMap<String, Listed>, ExportError> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.target.bucket)
                .prefix(&self.target.prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(s3_error("ListObjectsV2", self.target.url()))?;
            for obj in page.contents() {
                if let Some(key) = obj.key() {
                    out.insert(
                        key.to_owned(),
                        Listed {
                            size: obj.size().unwrap_or(0).max(0) as u64,
                            modified: obj.last_modified().map(|t| t.secs()),
                        },
                    );
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, ExportError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.target.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error("GetObject", key))?;
        let body = out.body.collect().await.map_err(|e| ExportError::S3 {
            op: "GetObject",
            what: key.to_owned(),
            detail: DisplayErrorContext(&e).to_string(),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    /// The object's SHA-256 as S3 reports it (its stored checksum, or, if
    /// the store keeps none, by reading it back), and its lock.
    async fn stored(
        &self,
        key: &str,
    ) -> Result<(String, Option<String>, Option<DateTime>), ExportError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.target.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(s3_error("HeadObject", key))?;
        let sha = match head
            .checksum_sha256()
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        {
            Some(raw) if raw.len() == 32 => hex::encode(raw),
            _ => sha256_hex(&self.get(key).await?),
        };
        let mode = head.object_lock_mode().map(|m| m.as_str().to_owned());
        Ok((sha, mode, head.object_lock_retain_until_date().copied()))
    }

    /// Uploads one object under COMPLIANCE lock, then checks S3 holds it
    /// with the SHA-256 computed here and the lock asked for.
    async fn put_locked(&self, key: &str, data: Vec<u8>, now: i64) -> Result<Shipped, ExportError> {
        let digest = Sha256::digest(&data);
        let sha = hex::encode(digest);
        let until = now + i64::from(self.target.retention_days) * 86_400;
        let bytes = data.len() as u64;
        self.client
            .put_object()
            .bucket(&self.target.bucket)
            .key(key)
            .body(ByteStream::from(data))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from_secs(until))
            .metadata("sha256", &sha)
            .send()
            .await
            .map_err(s3_error("PutObject", key))?;
        let (stored, mode, retain) = self.stored(key).await?;
        let problem = if stored != sha {
            Some(format!(
                "S3 holds SHA-256 {stored} after the upload, the ledger's bytes hash to {sha}"
            ))
        } else if mode.as_deref() != Some(ObjectLockMode::Compliance.as_str()) {
            Some(format!(
                "the object is not locked in COMPLIANCE mode after the upload (mode {mode:?})"
            ))
        } else if retain.is_none_or(|r| r.secs() < until - 1) {
            Some(format!(
                "the object's retain-until date is {retain:?}, not the {} days asked for",
                self.target.retention_days
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ExportError::Upload {
                key: key.to_owned(),
                problem,
            });
        }
        Ok(Shipped {
            key: key.to_owned(),
            bytes,
            sha256: sha,
            retain_until: jiff::Timestamp::from_second(until)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        })
    }

    /// Ships what is not yet in the bucket: sealed segments, then the
    /// checkpoints up to the latest (`docs/ledger.md` §10). The local
    /// ledger is checked against `key` first; nothing is shipped from a
    /// ledger that does not verify. Segments already in the bucket are
    /// compared, never overwritten.
    pub async fn export(
        &self,
        fs: &dyn FileSystem,
        dir: &Path,
        key: &VerifierKey,
    ) -> Result<ExportReport, ExportError> {
        self.check_object_lock().await?;
        let view = files::export_view(fs, dir, key).map_err(ExportError::Local)?;
        let listed = self.list().await?;
        let now = jiff::Timestamp::now().as_second();
        let plan = plan(&view, &self.target, &listed, now)?;
        let read = |path: &Path| {
            fs.read(path).map_err(|source| {
                ExportError::Local(crate::error::VerifyError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            })
        };
        // The newest exported segment must be the local one (older ones
        // were compared when the segments after them were shipped).
        if let Some((path, key)) = plan.present.last() {
            let (stored, _, _) = self.stored(key).await?;
            let local = sha256_hex(&read(path)?);
            if stored != local {
                return Err(ExportError::Conflict(format!(
                    "{key} in the bucket differs from the local {} (SHA-256 {stored} there, {local} here); nothing was overwritten: run `ledger verify` and `ledger verify --from-export`",
                    path.display()
                )));
            }
        }
        let mut report = ExportReport {
            already: plan.present.len(),
            exported_entries: plan.exported_entries,
            local_only: view.entries - plan.exported_entries,
            held_back: plan.held_back,
            checkpoint_size: plan.checkpoint_size,
            ..ExportReport::default()
        };
        for (path, key, first, next) in &plan.upload {
            let shipped = self.put_locked(key, read(path)?, now).await?;
            report.segments.push(shipped);
            let start = report.entries.as_ref().map_or(*first, |r| r.start);
            report.entries = Some(start..*next);
        }
        if let Some((from, to, _)) = plan.notes {
            let piece = view.notes[from as usize..to as usize].to_vec();
            report.checkpoints = Some(
                self.put_locked(&self.target.notes_key(from), piece, now)
                    .await?,
            );
        }
        Ok(report)
    }

    /// Downloads every exported object and verifies it as `verify_dir`
    /// verifies a directory (`key` is the pinned verifier key); checks
    /// each object is locked in COMPLIANCE mode; compares with the local
    /// ledger when given.
    pub async fn verify(
        &self,
        key: &VerifierKey,
        local: Option<(&dyn FileSystem, &Path)>,
    ) -> Result<ExportVerifyReport, ExportError> {
        let listed = self.list().await?;
        let segments = segment_objects(&self.target, &listed);
        let pieces = notes_pieces(&self.target, &listed)?;
        if segments.is_empty() && pieces.is_empty() {
            return Err(ExportError::Layout {
                url: self.target.url(),
                problem: "nothing has been exported there (no segments, no checkpoints); run `ledger export`".into(),
            });
        }
        let mut unlocked = Vec::new();
        let mut lock_of = async |key: &str| -> Result<(), ExportError> {
            let head = self
                .client
                .head_object()
                .bucket(&self.target.bucket)
                .key(key)
                .send()
                .await
                .map_err(s3_error("HeadObject", key))?;
            let mode = head.object_lock_mode().map(|m| m.as_str().to_owned());
            if mode.as_deref() != Some(ObjectLockMode::Compliance.as_str()) {
                unlocked.push((key.to_owned(), format!("lock mode {mode:?}")));
            }
            Ok(())
        };
        let mut downloaded = Vec::with_capacity(segments.len());
        for (_, key) in &segments {
            lock_of(key).await?;
            downloaded.push((key.clone(), self.get(key).await?));
        }
        let mut notes = Vec::new();
        for (_, size, key) in &pieces {
            lock_of(key).await?;
            let piece = self.get(key).await?;
            if piece.len() as u64 != *size {
                return Err(ExportError::Layout {
                    url: self.target.url(),
                    problem: format!("{key} changed while it was read"),
                });
            }
            notes.extend_from_slice(&piece);
        }
        verify_downloaded(&self.target, downloaded, notes, key, local, unlocked)
    }
}
