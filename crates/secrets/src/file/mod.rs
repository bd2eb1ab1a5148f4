//! The embedded default backend: every secret in one age-encrypted file.
//!
//! - The file is encrypted to an X25519 identity kept in its own file
//!   (mode 0600) beside it, plain or protected by a passphrase; losing that
//!   identity (or its passphrase) means every token must be re-issued
//!   through REDCap's UI, so it is what must be backed up.
//! - Every write decrypts, changes and re-encrypts the whole document under
//!   an exclusive lock (`<file>.lock`), so two processes never lose each
//!   other's writes, and replaces the file atomically through
//!   [`durable::atomic_replace`]: after a power cut the file holds the old
//!   document or the new one, never a mix.
//! - A file that does not decrypt with the identity (wrong key) or does not
//!   parse (damage) is reported and never overwritten.

mod document;
mod identity;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use durable::FileSystem;
use zeroize::Zeroizing;

use self::document::{Document, Entry, FORMAT, StoredVersion};
pub use self::identity::{
    MIN_PASSPHRASE_CHARS, PASSPHRASE_CREDENTIAL, PassphraseSource, StoreIdentity,
    create_identity_file, generate_identity, identity_is_protected, load_identity,
    read_passphrase_file, replace_identity_file, seal_to, write_identity_file,
    write_new_identity_file,
};
use crate::labels::{check_new_version_label, check_removable, labels_of, move_label};
use crate::{
    CheckItem, CheckReport, Label, Result, Secret, SecretName, SecretStore, SecretValue, Selector,
    StoreError, VersionId, VersionInfo, VersionMeta,
};
pub use age::secrecy::{ExposeSecret, SecretString};
pub use durable::PrivateOsFs;

/// Where the store and its identity are, and how many unlabelled old
/// versions of each secret to keep.
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// The age-encrypted store file (`[secrets.file] path`).
    pub path: PathBuf,
    /// The age identity file the store is encrypted to
    /// (`[secrets.file] identity`); keep it, and a backup, mode 600.
    pub identity: PathBuf,
    /// How many versions of each secret to keep (at least 1): after a
    /// write, the oldest versions carrying no label are dropped until this
    /// many remain. Labelled versions are never dropped.
    pub keep_versions: usize,
}

/// A [`SecretStore`] in one age-encrypted file, the embedded default.
/// Every write re-encrypts the whole document to a temporary file, syncs
/// it and renames it over the store, under `<file>.lock`. Cloning shares
/// the open store.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    opts: FileStoreOptions,
    fs: Arc<dyn FileSystem>,
    identity: StoreIdentity,
    /// Serialises this process's own operations; `<file>.lock` (when
    /// `lock_file` is set) excludes other processes.
    local: Mutex<()>,
    lock_file: Option<PathBuf>,
}

impl FileStore {
    /// Opens an existing store on the real file system. A
    /// passphrase-protected identity needs [`FileStore::open_unlocking`].
    pub fn open(opts: FileStoreOptions) -> Result<FileStore> {
        FileStore::on_os(opts, &[], false)
    }

    /// Opens an existing store, unlocking a passphrase-protected identity
    /// with the first of `sources` that gives a passphrase.
    pub fn open_unlocking(
        opts: FileStoreOptions,
        sources: &[PassphraseSource],
    ) -> Result<FileStore> {
        FileStore::on_os(opts, sources, false)
    }

    /// Opens an existing store with an identity already unlocked.
    pub fn open_with_identity(
        opts: FileStoreOptions,
        identity: StoreIdentity,
    ) -> Result<FileStore> {
        FileStore::on_os_with_identity(opts, identity, false)
    }

    /// Creates a new, empty store encrypted to the identity file at
    /// `opts.identity`, which must exist. Refuses to overwrite a store.
    pub fn create(opts: FileStoreOptions) -> Result<FileStore> {
        FileStore::on_os(opts, &[], true)
    }

    /// [`FileStore::create`] with a passphrase-protected identity.
    pub fn create_unlocking(
        opts: FileStoreOptions,
        sources: &[PassphraseSource],
    ) -> Result<FileStore> {
        FileStore::on_os(opts, sources, true)
    }

    /// [`FileStore::create`] with an identity already unlocked.
    pub fn create_with_identity(
        opts: FileStoreOptions,
        identity: StoreIdentity,
    ) -> Result<FileStore> {
        FileStore::on_os_with_identity(opts, identity, true)
    }

    /// Opens a store through any file system (tests use `durable::SimFs`);
    /// `lock_file` names the inter-process lock, `None` for in-process only.
    pub fn open_with(
        opts: FileStoreOptions,
        fs: Arc<dyn FileSystem>,
        lock_file: Option<PathBuf>,
    ) -> Result<FileStore> {
        FileStore::through(opts, fs, lock_file, false)
    }

    /// [`FileStore::open_with`] for a new store: creates it, empty,
    /// through `fs`, refusing to overwrite one.
    pub fn create_with(
        opts: FileStoreOptions,
        fs: Arc<dyn FileSystem>,
        lock_file: Option<PathBuf>,
    ) -> Result<FileStore> {
        FileStore::through(opts, fs, lock_file, true)
    }

    /// On the real file system, with the identity loaded (and unlocked from
    /// `sources` if protected); `create` a new store or open one.
    fn on_os(
        opts: FileStoreOptions,
        sources: &[PassphraseSource],
        create: bool,
    ) -> Result<FileStore> {
        let identity = identity::load_identity(&opts.identity, &describe(&opts.path), sources)?;
        FileStore::on_os_with_identity(opts, identity, create)
    }

    /// On the real file system (files private to the owner), locked against
    /// other processes by `<file>.lock`.
    fn on_os_with_identity(
        opts: FileStoreOptions,
        identity: StoreIdentity,
        create: bool,
    ) -> Result<FileStore> {
        let lock = durable::lock_path_for(&opts.path);
        FileStore::build(opts, Arc::new(PrivateOsFs), Some(lock), identity, create)
    }

    /// Through `fs`; the identity (unprotected) is read from the real file
    /// system.
    fn through(
        opts: FileStoreOptions,
        fs: Arc<dyn FileSystem>,
        lock_file: Option<PathBuf>,
        create: bool,
    ) -> Result<FileStore> {
        let identity = identity::read_identity(&opts.identity, &describe(&opts.path))?;
        FileStore::build(opts, fs, lock_file, identity, create)
    }

    fn build(
        opts: FileStoreOptions,
        fs: Arc<dyn FileSystem>,
        lock_file: Option<PathBuf>,
        identity: StoreIdentity,
        create: bool,
    ) -> Result<FileStore> {
        let store = describe(&opts.path);
        if create && fs.exists(&opts.path) {
            return Err(StoreError::InvalidRequest {
                store,
                detail: "a store already exists at this path; it was not touched".into(),
            });
        }
        let s = FileStore {
            inner: Arc::new(Inner {
                opts,
                fs,
                identity,
                local: Mutex::new(()),
                lock_file,
            }),
        };
        if create {
            let _guard = s.lock()?;
            s.write_doc(&Document::empty())?;
        } else if !s.inner.fs.exists(&s.inner.opts.path) {
            return Err(StoreError::Io {
                store,
                op: "opening the store".into(),
                fix: "restore the store file from backup, or run `redcap-warden init` for a new setup".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        Ok(s)
    }

    /// The identity this store was opened with.
    pub fn identity(&self) -> &StoreIdentity {
        &self.inner.identity
    }

    fn describe(&self) -> String {
        describe(&self.inner.opts.path)
    }

    fn io(&self, op: &str, fix: &str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            store: self.describe(),
            op: op.into(),
            fix: fix.into(),
            source,
        }
    }

    /// Holds the in-process mutex and, when configured, the exclusive lock
    /// file until dropped.
    fn lock(&self) -> Result<(std::sync::MutexGuard<'_, ()>, Option<File>)> {
        let guard = self.inner.local.lock().unwrap_or_else(|p| p.into_inner());
        let file = match &self.inner.lock_file {
            None => None,
            Some(path) => Some(durable::lock_exclusive(path).map_err(|e| {
                self.io(
                    "taking the store lock",
                    "check the data directory's permissions and file system",
                    e,
                )
            })?),
        };
        Ok((guard, file))
    }

    fn read_doc(&self) -> Result<Document> {
        let store = self.describe();
        let ciphertext = self.inner.fs.read(&self.inner.opts.path).map_err(|e| {
            self.io(
                "reading the store",
                "restore the store file from backup, or run `redcap-warden init` for a new setup",
                e,
            )
        })?;
        let plaintext = Zeroizing::new(
            age::decrypt(&self.inner.identity.key, &ciphertext).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => StoreError::WrongKey {
                    store: store.clone(),
                    identity: self.inner.opts.identity.display().to_string(),
                },
                other => StoreError::Corrupt {
                    store: store.clone(),
                    detail: format!("not a readable age file: {other}"),
                },
            })?,
        );
        let doc: Document =
            serde_json::from_slice(&plaintext).map_err(|e| StoreError::Corrupt {
                store: store.clone(),
                detail: format!(
                    "decrypted, but not a store document: {}",
                    crate::error::json_error_position(&e)
                ),
            })?;
        if doc.format != FORMAT {
            return Err(StoreError::Corrupt {
                store,
                detail: format!(
                    "unknown format `{}`; this version of redcap-warden reads `{FORMAT}`",
                    doc.format
                ),
            });
        }
        Ok(doc)
    }

    fn write_doc(&self, doc: &Document) -> Result<()> {
        let plaintext = Zeroizing::new(serde_json::to_vec(doc).expect("the document serialises"));
        let ciphertext =
            age::encrypt(&self.inner.identity.key.to_public(), &plaintext).map_err(|e| {
                StoreError::Io {
                    store: self.describe(),
                    op: "encrypting the store".into(),
                    fix: "report this as a bug".into(),
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        durable::atomic_replace(&*self.inner.fs, &self.inner.opts.path, &ciphertext).map_err(|e| {
            self.io(
                "writing the store",
                "check free space and permissions of the data directory; the previous contents are intact",
                e,
            )
        })
    }

    /// Read-modify-write under the lock. `f`'s error leaves the file as it was.
    fn update<T>(&self, f: impl FnOnce(&mut Document) -> Result<T>) -> Result<T> {
        let _guard = self.lock()?;
        let mut doc = self.read_doc()?;
        let out = f(&mut doc)?;
        self.write_doc(&doc)?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Document) -> Result<T>) -> Result<T> {
        let _guard = self.lock()?;
        f(&self.read_doc()?)
    }

    fn live_entry<'d>(&self, doc: &'d Document, name: &SecretName) -> Result<&'d Entry> {
        let entry = doc.secrets.get(name).ok_or_else(|| StoreError::NotFound {
            store: self.describe(),
            name: name.clone(),
        })?;
        if entry.deleted_at.is_some() {
            return Err(StoreError::Deleted {
                store: self.describe(),
                name: name.clone(),
            });
        }
        Ok(entry)
    }

    fn live_entry_mut<'d>(
        &self,
        doc: &'d mut Document,
        name: &SecretName,
    ) -> Result<&'d mut Entry> {
        self.live_entry(doc, name)?;
        Ok(doc.secrets.get_mut(name).expect("checked above"))
    }

    fn put_sync(
        &self,
        name: &SecretName,
        value: SecretValue,
        meta: VersionMeta,
        label: Label,
    ) -> Result<VersionId> {
        check_new_version_label(self, label)?;
        let keep = self.inner.opts.keep_versions.max(1);
        self.update(|doc| {
            let entry = doc.secrets.entry(name.clone()).or_default();
            if entry.deleted_at.is_some() {
                return Err(StoreError::Deleted {
                    store: self.describe(),
                    name: name.clone(),
                });
            }
            entry.next_version += 1;
            let version = VersionId(entry.next_version.to_string());
            entry.versions.push(StoredVersion {
                version: version.clone(),
                value,
                meta,
            });
            move_label(&mut entry.labels, label, &version);
            entry.prune(keep);
            Ok(version)
        })
    }

    fn get_sync(&self, name: &SecretName, which: &Selector) -> Result<Secret> {
        self.read(|doc| {
            let entry = self.live_entry(doc, name)?;
            let id = match which {
                Selector::Version(v) => v.clone(),
                Selector::Label(l) => {
                    entry
                        .labels
                        .get(l)
                        .cloned()
                        .ok_or_else(|| StoreError::LabelNotSet {
                            store: self.describe(),
                            name: name.clone(),
                            label: *l,
                        })?
                }
            };
            let v = entry
                .version(&id)
                .ok_or_else(|| StoreError::NoSuchVersion {
                    store: self.describe(),
                    name: name.clone(),
                    what: which.to_string(),
                })?;
            Ok(Secret {
                name: name.clone(),
                version: id.clone(),
                value: v.value.clone(),
                meta: v.meta.clone(),
                labels: labels_of(&entry.labels, &id),
            })
        })
    }

    fn move_label_sync(&self, name: &SecretName, label: Label, to: &VersionId) -> Result<()> {
        self.update(|doc| {
            let store = self.describe();
            let entry = self.live_entry_mut(doc, name)?;
            if entry.version(to).is_none() {
                return Err(StoreError::NoSuchVersion {
                    store,
                    name: name.clone(),
                    what: format!("`{to}`"),
                });
            }
            move_label(&mut entry.labels, label, to);
            Ok(())
        })
    }

    fn remove_label_sync(&self, name: &SecretName, label: Label) -> Result<()> {
        check_removable(self, label)?;
        self.update(|doc| {
            self.live_entry_mut(doc, name)?.labels.remove(&label);
            Ok(())
        })
    }

    fn set_deleted(&self, name: &SecretName, deleted: bool) -> Result<()> {
        self.update(|doc| {
            let entry = doc
                .secrets
                .get_mut(name)
                .ok_or_else(|| StoreError::NotFound {
                    store: self.describe(),
                    name: name.clone(),
                })?;
            entry.deleted_at = deleted.then(jiff::Timestamp::now);
            Ok(())
        })
    }

    fn check_sync(&self) -> Result<CheckReport> {
        let mut items = Vec::new();
        items.extend(identity::check_identity_file(
            &self.inner.opts.identity,
            Some(&self.inner.identity),
        ));
        match self.read(|doc| Ok(doc.secrets.len())) {
            Ok(n) => items.push(CheckItem {
                ok: true,
                what: format!("store decrypts with the identity and holds {n} secret(s)"),
                fix: None,
            }),
            Err(e) => items.push(CheckItem {
                ok: false,
                what: e.to_string(),
                fix: None,
            }),
        }
        Ok(CheckReport {
            store: self.describe(),
            items,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(FileStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| StoreError::Io {
                store: self.describe(),
                op: "running a store operation".into(),
                fix: "report this as a bug".into(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

#[async_trait::async_trait]
impl SecretStore for FileStore {
    fn describe(&self) -> String {
        FileStore::describe(self)
    }

    async fn put(
        &self,
        name: &SecretName,
        value: SecretValue,
        meta: VersionMeta,
        label: Label,
    ) -> Result<VersionId> {
        let name = name.clone();
        self.blocking(move |s| s.put_sync(&name, value, meta, label))
            .await
    }

    async fn get(&self, name: &SecretName, which: &Selector) -> Result<Secret> {
        let (name, which) = (name.clone(), which.clone());
        self.blocking(move |s| s.get_sync(&name, &which)).await
    }

    async fn move_label(&self, name: &SecretName, label: Label, to: &VersionId) -> Result<()> {
        let (name, to) = (name.clone(), to.clone());
        self.blocking(move |s| s.move_label_sync(&name, label, &to))
            .await
    }

    async fn remove_label(&self, name: &SecretName, label: Label) -> Result<()> {
        let name = name.clone();
        self.blocking(move |s| s.remove_label_sync(&name, label))
            .await
    }

    async fn list(&self) -> Result<Vec<SecretName>> {
        self.blocking(|s| {
            s.read(|doc| {
                Ok(doc
                    .secrets
                    .iter()
                    .filter(|(_, e)| e.deleted_at.is_none())
                    .map(|(n, _)| n.clone())
                    .collect())
            })
        })
        .await
    }

    async fn history(&self, name: &SecretName) -> Result<Vec<VersionInfo>> {
        let name = name.clone();
        self.blocking(move |s| {
            s.read(|doc| {
                let entry = s.live_entry(doc, &name)?;
                Ok(entry
                    .versions
                    .iter()
                    .rev()
                    .map(|v| VersionInfo {
                        version: v.version.clone(),
                        labels: labels_of(&entry.labels, &v.version),
                        meta: v.meta.clone(),
                    })
                    .collect())
            })
        })
        .await
    }

    async fn delete(&self, name: &SecretName) -> Result<()> {
        let name = name.clone();
        self.blocking(move |s| s.set_deleted(&name, true)).await
    }

    async fn restore(&self, name: &SecretName) -> Result<()> {
        let name = name.clone();
        self.blocking(move |s| s.set_deleted(&name, false)).await
    }

    async fn check(&self) -> Result<CheckReport> {
        self.blocking(|s| s.check_sync()).await
    }
}

fn describe(path: &Path) -> String {
    format!("age file store {}", path.display())
}
