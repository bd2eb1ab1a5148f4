//! OpenBao / HashiCorp Vault backend, on a KV version 2 engine.
//!
//! Layout under `<mount>` (paths below are relative to the configured
//! prefix):
//!
//! - `<name>`: one KV version per secret version; each version's data is
//!   `{"value": …, "meta": {operator, at, reason, fingerprint, rotation_id}}`,
//!   so the metadata travels with the version. Version ids are KV version
//!   numbers.
//! - `<name>.labels`: `{"labels": {"current": "3", …}}`, always written with
//!   check-and-set (`options.cas`) and retried on a mismatch, so two writers
//!   never lose each other's label move.
//! - The key-level `custom_metadata` of `<name>` holds only non-sensitive
//!   facts (`managed-by`).
//!
//! Soft delete is KV's delete of every version; restore is undelete. A
//! secret counts as deleted when its newest KV version is deleted.

mod http;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use self::http::{Answer, Http};
pub use self::http::{CredentialSource, VaultAuth};
use crate::labels::{Labels, check_new_version_label, check_removable, labels_of, move_label};
use crate::{
    CheckItem, CheckReport, Label, Result, Secret, SecretName, SecretStore, SecretValue, Selector,
    StoreError, VersionId, VersionInfo, VersionMeta,
};

/// How to reach the KV engine.
#[derive(Debug, Clone)]
pub struct VaultStoreOptions {
    /// `https://vault.example.org:8200`
    pub address: String,
    /// The KV version 2 mount, e.g. `secret`.
    pub mount: String,
    /// Path under the mount holding redcap-warden's secrets ("" for none).
    pub prefix: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// A PEM CA bundle to trust in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// How to log in: a token or AppRole.
    pub auth: VaultAuth,
    /// KV `max_versions` set on each secret this store creates (0: the
    /// mount's setting).
    pub max_versions: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// How many times a label update is retried after losing a check-and-set
/// race before giving up with [`StoreError::Conflict`].
const CAS_ATTEMPTS: usize = 200;

/// A [`SecretStore`] on an OpenBao or HashiCorp Vault KV version 2
/// engine (layout in the module docs). Label moves use check-and-set, so
/// concurrent writers on any number of hosts never lose a move.
pub struct VaultStore {
    http: Http,
    opts: VaultStoreOptions,
}

/// What KV says about a key.
enum KeyState {
    Missing,
    Deleted(KeyMetadata),
    Live(KeyMetadata),
}

#[derive(Deserialize)]
struct KeyMetadata {
    current_version: u64,
    #[serde(default)]
    versions: BTreeMap<String, KvVersion>,
}

#[derive(Deserialize)]
struct KvVersion {
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

impl KvVersion {
    fn readable(&self) -> bool {
        self.deletion_time.is_empty() && !self.destroyed
    }
}

impl KeyMetadata {
    /// Readable version numbers, oldest first.
    fn readable(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .versions
            .iter()
            .filter(|(_, m)| m.readable())
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    fn has(&self, n: u64) -> bool {
        self.versions
            .get(&n.to_string())
            .is_some_and(KvVersion::readable)
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct DataRead<T> {
    data: Option<T>,
    metadata: Option<DataReadMeta>,
}

#[derive(Deserialize)]
struct DataReadMeta {
    version: u64,
}

#[derive(Deserialize)]
struct Written {
    version: u64,
}

#[derive(Serialize)]
struct PayloadOut<'a> {
    value: &'a str,
    meta: &'a VersionMeta,
}

#[derive(Deserialize)]
struct PayloadIn {
    #[serde(deserialize_with = "secret_value")]
    value: SecretValue,
    meta: VersionMeta,
}

#[derive(Deserialize)]
struct MetaOnly {
    meta: VersionMeta,
}

fn secret_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
    String::deserialize(d).map(SecretValue::new)
}

#[derive(Serialize, Deserialize, Default)]
struct LabelsDoc {
    labels: Labels,
}

impl VaultStore {
    /// Prepares the client and reads a token credential. Nothing is sent to
    /// the server until the first operation (`check` probes it).
    pub fn open(opts: VaultStoreOptions) -> Result<VaultStore> {
        let store = describe(&opts);
        let http = Http::new(
            &opts.address,
            opts.namespace.clone(),
            opts.ca_file.as_deref(),
            opts.auth.clone(),
            opts.timeout,
            store,
        )?;
        Ok(VaultStore { http, opts })
    }

    fn store(&self) -> String {
        self.http.store.clone()
    }

    fn key(&self, name: &str) -> String {
        let prefix = self.opts.prefix.trim_matches('/');
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        }
    }

    fn path(&self, kind: &str, name: &str) -> String {
        format!(
            "{}/{kind}/{}",
            self.opts.mount.trim_matches('/'),
            self.key(name)
        )
    }

    fn labels_name(name: &SecretName) -> String {
        format!("{name}.labels")
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Answer> {
        self.http.call(method, path, body).await
    }

    fn expect(&self, path: &str, answer: Answer, ok: &[u16]) -> Result<Answer> {
        if ok.contains(&answer.status) {
            Ok(answer)
        } else {
            Err(self.http.status_error(path, &answer))
        }
    }

    async fn key_state(&self, name: &SecretName) -> Result<KeyState> {
        let path = self.path("metadata", name.as_str());
        let answer = self.call(Method::GET, &path, None).await?;
        if answer.status == 404 {
            return Ok(KeyState::Missing);
        }
        let answer = self.expect(&path, answer, &[200])?;
        let meta: Envelope<KeyMetadata> = answer.json(&self.http, &format!("GET {path}"))?;
        let meta = meta.data;
        if meta.current_version == 0 {
            return Ok(KeyState::Missing);
        }
        let newest_live = meta
            .versions
            .get(&meta.current_version.to_string())
            .is_some_and(KvVersion::readable);
        Ok(if newest_live {
            KeyState::Live(meta)
        } else {
            KeyState::Deleted(meta)
        })
    }

    async fn live(&self, name: &SecretName) -> Result<KeyMetadata> {
        match self.key_state(name).await? {
            KeyState::Missing => Err(StoreError::NotFound {
                store: self.store(),
                name: name.clone(),
            }),
            KeyState::Deleted(_) => Err(StoreError::Deleted {
                store: self.store(),
                name: name.clone(),
            }),
            KeyState::Live(m) => Ok(m),
        }
    }

    /// The labels and the KV version of the labels entry (0: none yet).
    async fn read_labels(&self, name: &SecretName) -> Result<(Labels, u64)> {
        let path = self.path("data", &Self::labels_name(name));
        let answer = self.call(Method::GET, &path, None).await?;
        let answer = self.expect(&path, answer, &[200, 404])?;
        if answer.status == 404 {
            // A never-written entry has no body worth reading; a deleted one
            // still reports its version, which the next CAS must name.
            let cas = serde_json::from_slice::<Envelope<DataRead<LabelsDoc>>>(&answer.body)
                .ok()
                .and_then(|e| e.data.metadata)
                .map_or(0, |m| m.version);
            return Ok((Labels::new(), cas));
        }
        let read: Envelope<DataRead<LabelsDoc>> =
            answer.json(&self.http, &format!("GET {path}"))?;
        let cas = read.data.metadata.map_or(0, |m| m.version);
        Ok((read.data.data.unwrap_or_default().labels, cas))
    }

    /// Read-modify-write of the labels entry with check-and-set, retried
    /// until no other writer came in between.
    async fn update_labels(
        &self,
        name: &SecretName,
        mut change: impl FnMut(&mut Labels),
    ) -> Result<()> {
        let path = self.path("data", &Self::labels_name(name));
        for _ in 0..CAS_ATTEMPTS {
            let (mut labels, cas) = self.read_labels(name).await?;
            let before = serde_json::to_vec(&labels).expect("serialisable");
            change(&mut labels);
            if serde_json::to_vec(&labels).expect("serialisable") == before && cas != 0 {
                return Ok(());
            }
            let body = serde_json::to_vec(&serde_json::json!({
                "options": {"cas": cas},
                "data": LabelsDoc { labels },
            }))
            .expect("serialisable");
            let answer = self.call(Method::POST, &path, Some(body)).await?;
            if answer.status == 400 && is_cas_mismatch(&answer) {
                continue;
            }
            self.expect(&path, answer, &[200, 204])?;
            return Ok(());
        }
        Err(StoreError::Conflict {
            store: self.store(),
            name: name.clone(),
        })
    }

    /// Sets the key-level settings of a new secret: how many versions KV
    /// keeps, and non-sensitive facts only.
    async fn init_key(&self, name: &SecretName) -> Result<()> {
        let path = self.path("metadata", name.as_str());
        let mut body = serde_json::json!({
            "custom_metadata": {"managed-by": "redcap-warden"},
        });
        if self.opts.max_versions > 0 {
            body["max_versions"] = self.opts.max_versions.into();
        }
        let answer = self
            .call(
                Method::POST,
                &path,
                Some(serde_json::to_vec(&body).expect("serialisable")),
            )
            .await?;
        self.expect(&path, answer, &[200, 204])?;
        Ok(())
    }

    async fn read_version<T: for<'de> Deserialize<'de>>(
        &self,
        name: &SecretName,
        n: u64,
        what: &Selector,
    ) -> Result<T> {
        let path = self.path("data", name.as_str());
        let answer = self
            .call(Method::GET, &format!("{path}?version={n}"), None)
            .await?;
        if answer.status == 404 {
            return Err(StoreError::NoSuchVersion {
                store: self.store(),
                name: name.clone(),
                what: what.to_string(),
            });
        }
        let answer = self.expect(&path, answer, &[200])?;
        let read: Envelope<DataRead<T>> =
            answer.json(&self.http, &format!("GET {path} (a redcap-warden version)"))?;
        read.data.data.ok_or_else(|| StoreError::NoSuchVersion {
            store: self.store(),
            name: name.clone(),
            what: what.to_string(),
        })
    }

    /// Every key under `dir` (relative to the prefix), recursively.
    fn list_dir<'a>(
        &'a self,
        dir: String,
        out: &'a mut Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let base = self.path("metadata", &dir);
            let path = format!("{}/?list=true", base.trim_end_matches('/'));
            let answer = self.call(Method::GET, &path, None).await?;
            if answer.status == 404 {
                return Ok(());
            }
            let answer = self.expect(&path, answer, &[200])?;
            #[derive(Deserialize)]
            struct Keys {
                keys: Vec<String>,
            }
            let keys: Envelope<Keys> = answer.json(&self.http, &format!("LIST {base}"))?;
            for k in keys.data.keys {
                let full = if dir.is_empty() {
                    k.clone()
                } else {
                    format!("{dir}/{k}")
                };
                if let Some(sub) = full.strip_suffix('/') {
                    self.list_dir(sub.to_string(), out).await?;
                } else {
                    out.push(full);
                }
            }
            Ok(())
        })
    }

    async fn set_deleted(&self, name: &SecretName, delete: bool) -> Result<()> {
        let meta = match self.key_state(name).await? {
            KeyState::Missing => {
                return Err(StoreError::NotFound {
                    store: self.store(),
                    name: name.clone(),
                });
            }
            KeyState::Live(m) | KeyState::Deleted(m) => m,
        };
        let versions: Vec<u64> = meta
            .versions
            .iter()
            .filter(|(_, v)| !v.destroyed && (v.deletion_time.is_empty() == delete))
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        if versions.is_empty() {
            return Ok(());
        }
        let path = self.path(if delete { "delete" } else { "undelete" }, name.as_str());
        let body =
            serde_json::to_vec(&serde_json::json!({"versions": versions})).expect("serialisable");
        let answer = self.call(Method::POST, &path, Some(body)).await?;
        self.expect(&path, answer, &[200, 204])?;
        Ok(())
    }

    fn parse_version(&self, name: &SecretName, v: &VersionId) -> Result<u64> {
        v.0.parse::<u64>().map_err(|_| StoreError::NoSuchVersion {
            store: self.store(),
            name: name.clone(),
            what: format!("`{v}`"),
        })
    }
}

fn is_cas_mismatch(answer: &Answer) -> bool {
    String::from_utf8_lossy(&answer.body).contains("check-and-set")
}

fn describe(opts: &VaultStoreOptions) -> String {
    let mut s = format!(
        "vault store {} (mount `{}`",
        opts.address.trim_end_matches('/'),
        opts.mount
    );
    if let Some(ns) = &opts.namespace {
        s.push_str(&format!(", namespace `{ns}`"));
    }
    if !opts.prefix.is_empty() {
        s.push_str(&format!(", prefix `{}`", opts.prefix));
    }
    s.push(')');
    s
}

#[async_trait::async_trait]
impl SecretStore for VaultStore {
    fn describe(&self) -> String {
        self.store()
    }

    async fn put(
        &self,
        name: &SecretName,
        value: SecretValue,
        meta: VersionMeta,
        label: Label,
    ) -> Result<VersionId> {
        check_new_version_label(self, label)?;
        match self.key_state(name).await? {
            KeyState::Deleted(_) => {
                return Err(StoreError::Deleted {
                    store: self.store(),
                    name: name.clone(),
                });
            }
            KeyState::Missing => self.init_key(name).await?,
            KeyState::Live(_) => {}
        }
        let path = self.path("data", name.as_str());
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "data": PayloadOut { value: value.expose(), meta: &meta },
            }))
            .expect("serialisable"),
        );
        let answer = self.call(Method::POST, &path, Some(body.to_vec())).await?;
        let answer = self.expect(&path, answer, &[200])?;
        let written: Envelope<Written> = answer.json(&self.http, &format!("POST {path}"))?;
        let version = VersionId(written.data.version.to_string());
        self.update_labels(name, |labels| move_label(labels, label, &version))
            .await?;
        Ok(version)
    }

    async fn get(&self, name: &SecretName, which: &Selector) -> Result<Secret> {
        let meta = self.live(name).await?;
        let (labels, _) = self.read_labels(name).await?;
        let id = match which {
            Selector::Version(v) => v.clone(),
            Selector::Label(l) => {
                labels
                    .get(l)
                    .cloned()
                    .ok_or_else(|| StoreError::LabelNotSet {
                        store: self.store(),
                        name: name.clone(),
                        label: *l,
                    })?
            }
        };
        let n = self.parse_version(name, &id)?;
        if !meta.has(n) {
            return Err(StoreError::NoSuchVersion {
                store: self.store(),
                name: name.clone(),
                what: which.to_string(),
            });
        }
        let payload: PayloadIn = self.read_version(name, n, which).await?;
        Ok(Secret {
            name: name.clone(),
            labels: labels_of(&labels, &id),
            version: id,
            value: payload.value,
            meta: payload.meta,
        })
    }

    async fn move_label(&self, name: &SecretName, label: Label, to: &VersionId) -> Result<()> {
        let meta = self.live(name).await?;
        let n = self.parse_version(name, to)?;
        if !meta.has(n) {
            return Err(StoreError::NoSuchVersion {
                store: self.store(),
                name: name.clone(),
                what: format!("`{to}`"),
            });
        }
        self.update_labels(name, |labels| move_label(labels, label, to))
            .await
    }

    async fn remove_label(&self, name: &SecretName, label: Label) -> Result<()> {
        check_removable(self, label)?;
        self.live(name).await?;
        self.update_labels(name, |labels| {
            labels.remove(&label);
        })
        .await
    }

    async fn list(&self) -> Result<Vec<SecretName>> {
        let mut keys = Vec::new();
        self.list_dir(String::new(), &mut keys).await?;
        let mut names = Vec::new();
        for k in keys {
            // Label entries, and anything else that is not a valid name, are
            // not secrets of ours.
            let Ok(name) = SecretName::new(&k) else {
                continue;
            };
            if let KeyState::Live(_) = self.key_state(&name).await? {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn history(&self, name: &SecretName) -> Result<Vec<VersionInfo>> {
        let meta = self.live(name).await?;
        let (labels, _) = self.read_labels(name).await?;
        let mut out = Vec::new();
        for n in meta.readable().into_iter().rev() {
            let id = VersionId(n.to_string());
            let m: MetaOnly = self
                .read_version(name, n, &Selector::Version(id.clone()))
                .await?;
            out.push(VersionInfo {
                labels: labels_of(&labels, &id),
                version: id,
                meta: m.meta,
            });
        }
        Ok(out)
    }

    async fn delete(&self, name: &SecretName) -> Result<()> {
        self.set_deleted(name, true).await
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        self.set_deleted(name, false).await
    }

    async fn check(&self) -> Result<CheckReport> {
        let mut items = Vec::new();
        // Unauthenticated: tells reachable, initialised and unsealed apart.
        match self
            .http
            .send(Method::GET, "sys/health?standbyok=true", None, None)
            .await
        {
            Ok(a) if a.status == 200 || a.status == 429 => items.push(CheckItem {
                ok: true,
                what: "server reachable, initialised and unsealed".into(),
                fix: None,
            }),
            Ok(a) => items.push(CheckItem {
                ok: false,
                what: format!("server health answered HTTP {}", a.status),
                fix: Some("initialise and unseal the server, or check the address".into()),
            }),
            Err(e) => {
                items.push(CheckItem {
                    ok: false,
                    what: e.to_string(),
                    fix: None,
                });
                return Ok(CheckReport {
                    store: self.store(),
                    items,
                });
            }
        }
        // What the token may do on this store's paths.
        let probe = self.key("warden-check");
        let mount = self.opts.mount.trim_matches('/');
        let needed: [(&str, &[&str]); 4] = [
            ("data", &["create", "read", "update"]),
            ("metadata", &["create", "read", "update", "list"]),
            ("delete", &["update"]),
            ("undelete", &["update"]),
        ];
        let paths: Vec<String> = needed
            .iter()
            .map(|(kind, _)| format!("{mount}/{kind}/{probe}"))
            .collect();
        let body =
            serde_json::to_vec(&serde_json::json!({ "paths": paths })).expect("serialisable");
        let result = async {
            let answer = self
                .call(Method::POST, "sys/capabilities-self", Some(body))
                .await?;
            let answer = self.expect("sys/capabilities-self", answer, &[200])?;
            let caps: BTreeMap<String, serde_json::Value> =
                answer.json(&self.http, "sys/capabilities-self")?;
            Ok::<_, StoreError>(caps)
        }
        .await;
        match result {
            Err(e) => items.push(CheckItem {
                ok: false,
                what: e.to_string(),
                fix: None,
            }),
            Ok(caps) => {
                for ((kind, want), path) in needed.iter().zip(&paths) {
                    let have: Vec<String> = caps
                        .get(path)
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| c.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let root = have.iter().any(|c| c == "root" || c == "sudo");
                    let missing: Vec<&str> = want
                        .iter()
                        .copied()
                        .filter(|w| !root && !have.iter().any(|c| c == w))
                        .collect();
                    let pattern = format!("{mount}/{kind}/{}*", self.key(""));
                    items.push(if missing.is_empty() {
                        CheckItem {
                            ok: true,
                            what: format!("may {} {pattern}", want.join(", ")),
                            fix: None,
                        }
                    } else {
                        CheckItem {
                            ok: false,
                            what: format!("may not {} {pattern}", missing.join(", ")),
                            fix: Some(format!(
                                "grant capabilities [{}] on \"{pattern}\" in the token's policy (docs/secrets.md)",
                                want.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ")
                            )),
                        }
                    });
                }
            }
        }
        Ok(CheckReport {
            store: self.store(),
            items,
        })
    }
}
