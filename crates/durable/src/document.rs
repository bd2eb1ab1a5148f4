//! A small state document several processes share and change: the client
//! keys, the account status, the cut-over holds.
//!
//! On one machine it is a file ([`FileDocument`]), changed by
//! read-modify-write under an exclusive lock and replaced atomically. With
//! several gateways it is a row of a PostgreSQL table (the gateway's
//! `cluster` module), changed in a transaction that holds the row locked.
//! Whoever changes a document does not care which: both serialise every
//! change across processes, and a reader sees either the old document or
//! the new one, never a mix.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::FileSystem;

/// Why a shared document could not be read or changed.
#[derive(Debug)]
pub enum DocumentError {
    /// The file could not be read, locked or written (`op` says which).
    Io {
        /// What was being done: `reading`, `locking` or `writing`.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The database did not answer or refused (its words, never the
    /// connection string).
    Database {
        /// What was being done.
        op: &'static str,
        /// The database's error.
        detail: String,
    },
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentError::Io { op, source } => write!(f, "{op} failed: {source}"),
            DocumentError::Database { op, detail } => {
                write!(f, "PostgreSQL: could not {op}: {detail}")
            }
        }
    }
}

impl std::error::Error for DocumentError {}

/// Which version of a document a reader holds: for a file, its inode,
/// length and modification time (a file is replaced atomically, so these
/// change on every write).
pub type DocumentStamp = (u64, u64, std::time::SystemTime);

/// A document several processes share.
pub trait SharedDocument: Send + Sync {
    /// Where the document lives, for messages: a file's path, or
    /// `postgres schema S, shared_state 'NAME'`.
    fn place(&self) -> &Path;
    /// The document's bytes now; `None` when it was never written.
    fn read(&self) -> Result<Option<Vec<u8>>, DocumentError>;
    /// Changes the document under an exclusive lock held across processes:
    /// `change` gets the current bytes and returns the new ones, or `None`
    /// to leave the document as it is (the caller keeps its own reason).
    fn update(
        &self,
        change: &mut (dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>> + Send),
    ) -> Result<(), DocumentError>;
    /// The version a reader can compare cheaply to learn that the document
    /// changed (a file's stamp). `None` for a document that no `stat` can
    /// watch: its owner re-reads it when told (PostgreSQL's `NOTIFY`, and a
    /// periodic re-read).
    fn stamp(&self) -> Option<DocumentStamp>;
}

/// A document that is a file, locked through `<file>.lock`.
pub struct FileDocument {
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
    lock: Option<PathBuf>,
}

impl FileDocument {
    /// The file at `path` on the real file system, locked through
    /// `<path>.lock`.
    pub fn new(path: &Path) -> FileDocument {
        FileDocument {
            path: path.to_path_buf(),
            fs: Arc::new(crate::OsFs),
            lock: Some(crate::lock_path_for(path)),
        }
    }

    /// Through any file system (tests), without an inter-process lock.
    pub fn with_fs(path: &Path, fs: Arc<dyn FileSystem>) -> FileDocument {
        FileDocument {
            path: path.to_path_buf(),
            fs,
            lock: None,
        }
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> DocumentError {
    move |source| DocumentError::Io { op, source }
}

impl SharedDocument for FileDocument {
    fn place(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<Vec<u8>>, DocumentError> {
        if !self.fs.exists(&self.path) {
            return Ok(None);
        }
        self.fs
            .read(&self.path)
            .map(Some)
            .map_err(io_err("reading"))
    }

    fn update(
        &self,
        change: &mut (dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>> + Send),
    ) -> Result<(), DocumentError> {
        let _lock = self
            .lock
            .as_deref()
            .map(crate::lock_exclusive)
            .transpose()
            .map_err(io_err("locking"))?;
        let Some(bytes) = change(self.read()?) else {
            return Ok(());
        };
        crate::atomic_replace(&*self.fs, &self.path, &bytes).map_err(io_err("writing"))
    }

    fn stamp(&self) -> Option<DocumentStamp> {
        file_stamp(&self.path)
    }
}

/// A file's stamp: its inode, size and modification time (`None` if it
/// cannot be read); any write or replacement changes it.
pub fn file_stamp(path: &Path) -> Option<DocumentStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_document_is_absent_then_changed_under_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let doc = FileDocument::new(&dir.path().join("state.json"));
        assert!(doc.read().unwrap().is_none());
        assert!(doc.stamp().is_none());
        doc.update(&mut |old| {
            assert!(old.is_none());
            Some(b"one".to_vec())
        })
        .unwrap();
        let first = doc.stamp().unwrap();
        doc.update(&mut |_| None).unwrap();
        assert_eq!(doc.read().unwrap().unwrap(), b"one", "None leaves it");
        doc.update(&mut |old| {
            let mut v = old.unwrap();
            v.extend_from_slice(b", two");
            Some(v)
        })
        .unwrap();
        assert_eq!(doc.read().unwrap().unwrap(), b"one, two");
        assert_ne!(doc.stamp().unwrap(), first);
    }
}
