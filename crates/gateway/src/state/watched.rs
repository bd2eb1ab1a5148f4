//! A small state file the gateway re-reads when it changes: the client
//! keys, the account status. Other processes (`redcap-warden keys revoke`,
//! `accounts release`) replace these files atomically while the gateway
//! runs, and a change must count from the next request — a revoked key
//! must not keep working.
//!
//! [`Watched::read`] costs one `stat` when nothing changed. When the stamp
//! moved it re-reads, taking the stamp *before* reading and again after:
//! a file replaced during the read is read again, so the value kept is
//! never older than the stamp kept with it. (Stamping after the read
//! would pair old content with the new stamp, and the change would stay
//! unseen until the file changed once more.)

use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// What identifies a version of a small state file: the files are replaced
/// atomically (a new inode each time), so inode, length and modification
/// time together change on every write, even two writes within one tick
/// of the file system's clock.
pub(crate) type FileStamp = durable::DocumentStamp;

/// A file the gateway watches, and how to read it.
pub(crate) trait Source: Send + Sync {
    type Value: Send + Sync;
    type Error: std::fmt::Display;
    /// The file to watch.
    fn path(&self) -> &Path;
    /// Reads the file into its value (a missing file is a value too).
    fn load(&self) -> Result<Self::Value, Self::Error>;
    /// The version of the file now. A source no `stat` can watch (a row
    /// of PostgreSQL) answers `None` always: it is never re-read on a
    /// request, only by [`Watched::reload`] (which the cluster's listener
    /// calls on each notification and periodic re-read).
    fn stamp(&self) -> Option<FileStamp> {
        durable::file_stamp(self.path())
    }
}

/// Reads on a failed re-read: a file replaced faster than it can be read
/// is served from the last good version rather than read forever.
const MAX_REREADS: usize = 3;

/// A [`Source`]'s value as last read, re-read when its file changes.
///
/// Lock story: one `RwLock` over the value and its stamp; written by the
/// first request that sees the stamp move (and by [`Watched::reload`] and
/// [`Watched::modify`]), read by every request.
pub(crate) struct Watched<S: Source> {
    source: S,
    path: PathBuf,
    current: RwLock<(S::Value, Option<FileStamp>)>,
}

impl<S: Source> Watched<S> {
    /// Reads the file a first time.
    pub(crate) fn new(source: S) -> Result<Watched<S>, S::Error> {
        let path = source.path().to_path_buf();
        let stamp = source.stamp();
        let value = source.load()?;
        let watched = Watched {
            source,
            path,
            current: RwLock::new((value, stamp)),
        };
        // Changed while it was read: read again now.
        if watched.source.stamp() != stamp {
            let _ = watched.reload();
        }
        Ok(watched)
    }

    /// What is read and written through.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// `f` of the file's value as it is now: re-read first if the file
    /// changed since it was last read. A file that cannot be read keeps
    /// the value last read (a half-written or unreadable file must not
    /// lock every client out, nor resurrect a revoked key).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&S::Value) -> R) -> R {
        let stamp = self.source.stamp();
        if self.lock_read().1 != stamp {
            self.reread(stamp);
        }
        f(&self.lock_read().0)
    }

    /// Re-reads now, whatever the stamp says (a reload, or a change this
    /// process has just made).
    pub(crate) fn reload(&self) -> Result<(), S::Error> {
        let stamp = self.source.stamp();
        let value = self.source.load()?;
        let moved = self.source.stamp() != stamp;
        *self.lock_write() = (value, stamp);
        if moved {
            self.reread(self.source.stamp());
        }
        Ok(())
    }

    /// Changes the value in memory only, keeping its stamp: what the file
    /// says wins again once it changes.
    pub(crate) fn modify(&self, f: impl FnOnce(&mut S::Value)) {
        f(&mut self.lock_write().0);
    }

    /// Reads the file, which had the stamp `stamp` just before; reads
    /// again while the stamp moves under the read.
    fn reread(&self, mut stamp: Option<FileStamp>) {
        for _ in 0..MAX_REREADS {
            let value = match self.source.load() {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.path.display(), "could not re-read a state file; keeping what was read last");
                    return;
                }
            };
            let after = self.source.stamp();
            let mut current = self.lock_write();
            *current = (value, stamp);
            if after == stamp {
                return;
            }
            drop(current);
            stamp = after;
        }
    }

    fn lock_read(&self) -> std::sync::RwLockReadGuard<'_, (S::Value, Option<FileStamp>)> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_write(&self) -> std::sync::RwLockWriteGuard<'_, (S::Value, Option<FileStamp>)> {
        self.current.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A file of one line, with a hook that runs between reading the
    /// file and returning what was read: another process's write landing
    /// in the window between the read and the stamp.
    struct Line {
        path: PathBuf,
        between: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Source for Line {
        type Value = String;
        type Error = std::io::Error;
        fn path(&self) -> &Path {
            &self.path
        }
        fn load(&self) -> Result<String, std::io::Error> {
            let read = std::fs::read_to_string(&self.path)?;
            if let Some(hook) = self.between.lock().unwrap().take() {
                hook();
            }
            Ok(read)
        }
    }

    fn replace(path: &Path, text: &str) {
        durable::atomic_replace(&durable::OsFs, path, text.as_bytes()).unwrap();
    }

    #[test]
    fn a_write_during_the_read_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace(&path, "one");
        let w = Watched::new(Line {
            path: path.clone(),
            between: Mutex::new(None),
        })
        .unwrap();
        assert_eq!(w.read(String::clone), "one");
        replace(&path, "two");
        let hook_path = path.clone();
        *w.source().between.lock().unwrap() =
            Some(Box::new(move || replace(&hook_path, "three, revoked")));
        // The re-read sees "two", and "three" lands before its stamp is
        // taken again: read once more, at once.
        assert_eq!(w.read(String::clone), "three, revoked");
        assert_eq!(w.read(String::clone), "three, revoked");
    }

    #[test]
    fn an_unreadable_file_keeps_the_last_value_and_modify_holds_until_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        replace(&path, "one");
        let w = Watched::new(Line {
            path: path.clone(),
            between: Mutex::new(None),
        })
        .unwrap();
        w.modify(|v| v.push_str(" and more"));
        assert_eq!(w.read(String::clone), "one and more");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(w.read(String::clone), "one and more", "kept");
        replace(&path, "two");
        assert_eq!(w.read(String::clone), "two");
    }
}
