//! The file-system trait every durable write of redcap-warden goes through.
//!
//! The ledger, the secrets file store and the rotation escrow all promise that
//! what they acknowledge survives a power cut. Those promises rest on a few
//! POSIX rules that are easy to get wrong: written bytes are durable only once
//! `fdatasync` has returned, and a create, rename or unlink is durable only
//! once the *directory* has been synced. Routing every durable write through
//! [`FileSystem`] lets tests run the same code against [`SimFs`], which
//! enforces exactly those rules and can cut the power after any operation
//! ([`SimFs::crash_after`], [`SimFs::crash`]) or inject I/O errors
//! ([`Fault`]).
//!
//! Errors are plain [`std::io::Error`]s: this crate is a thin layer over the
//! operating system, and callers wrap them in their own typed errors with the
//! path that failed.
//!
//! [`host`] holds the two other things every crate asks of the host: its
//! name and random bytes.

#![warn(missing_docs)]

mod document;
pub mod host;
mod os;
mod sim;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use document::{DocumentError, DocumentStamp, FileDocument, SharedDocument, file_stamp};
pub use host::{host_name, random_hex};
pub use os::{OsFs, PrivateOsFs};
pub use sim::{Fault, SimFs};

/// The identity of a file independent of its name: device and inode on Unix.
/// Two handles with the same `FileId` are the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The device the file lives on (`st_dev`).
    pub dev: u64,
    /// The inode number on that device (`st_ino`).
    pub ino: u64,
}

/// The file-system operations durable storage needs, and nothing more.
///
/// Paths are used as given; implementations do not resolve `..` or symlinks
/// beyond what the operating system does.
pub trait FileSystem: Send + Sync {
    /// Opens `path` for appending, creating it (empty) if it does not exist.
    /// Creating is durable only after [`FileSystem::sync_dir`] of the parent.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>>;
    /// Creates `path`, failing with [`io::ErrorKind::AlreadyExists`] if it
    /// exists, and opens it for appending.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>>;
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens the file for reading in pieces, so a large file can be read
    /// through a reused buffer. The default reads it whole first.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }
    /// Opens the file for reading from byte `offset` on (an append-only
    /// file's new bytes). The default reads and drops the bytes before it;
    /// a file shorter than `offset` is [`io::ErrorKind::UnexpectedEof`].
    fn open_read_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn io::Read + Send>> {
        use io::Read as _;
        let mut file = self.open_read(path)?;
        let skipped = io::copy(&mut (&mut file).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} holds {skipped} bytes, fewer than {offset}",
                    path.display()
                ),
            ));
        }
        Ok(file)
    }
    /// Renames a file, replacing `to` if it exists. Durable only after both
    /// parent directories are synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Durable only after the parent directory is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes every create, rename and remove in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates `dir` and its missing ancestors. Each new directory is durable
    /// only after its parent is synced.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The entries of `dir` (files and directories) as `dir.join(name)`,
    /// sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether `path` names a file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// The identity of the file `path` names now.
    fn file_id(&self, path: &Path) -> io::Result<FileId>;
    /// Whether `path` still names the open `file` (it was not unlinked or
    /// replaced behind our back). A missing path is `Ok(false)`.
    fn same_file(&self, path: &Path, file: &dyn DurableFile) -> io::Result<bool> {
        match self.file_id(path) {
            Ok(id) => Ok(id == file.id()?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An open file that is only ever appended to (or truncated).
pub trait DurableFile: Send {
    /// Appends all of `buf`. On error an unknown prefix may have been written.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// `fdatasync`: on success every byte written so far is durable.
    fn sync_data(&mut self) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates (or zero-extends) the file to `len` bytes; used to cut a
    /// torn tail. Durable after the next [`DurableFile::sync_data`].
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The identity of this open file.
    fn id(&self) -> io::Result<FileId>;
}

/// Replaces the contents of `path` with `bytes` so that after a power cut
/// the path holds either the old contents or the new ones, never a mix:
/// write a temporary file in the same directory, sync it, rename it over
/// `path`, sync the directory.
///
/// On success the new contents are durable. On error the temporary file is
/// removed (best effort) and `path` is untouched unless the rename happened,
/// in which case only the directory sync failed.
pub fn atomic_replace(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let dir = parent_dir(path);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = fs.create_new(&tmp)?;
        file.write_all(bytes)?;
        file.sync_data()
    })();
    if let Err(e) = written.and_then(|()| fs.rename(&tmp, path)) {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    fs.sync_dir(dir)
}

/// Creates `dir` and its missing ancestors durably: after each new
/// directory is created, its parent is synced, so a power cut cannot undo
/// the directory after this returns.
pub fn create_dir_all_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.as_os_str().is_empty() && !fs.exists(cur) {
        missing.push(cur);
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        fs.sync_dir(parent_dir(created))?;
    }
    Ok(())
}

/// Takes an exclusive advisory lock on `lock_path` (created if missing),
/// waiting for other holders — other processes, or other opens in this
/// one. The lock is held until the returned file is dropped. It lives
/// outside [`FileSystem`]: a power cut releases every lock anyway.
pub fn lock_exclusive(lock_path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)?;
    file.lock()?;
    Ok(file)
}

/// `<path>.lock`: where the lock guarding `path` lives.
pub fn lock_path_for(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The directory containing `path` (`.` for a bare file name, as the
/// operating system resolves it).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durable_dir(sim: &SimFs, root: &Path, dir: &Path) {
        sim.create_dir_all(dir).unwrap();
        sim.sync_dir(Path::new("/")).unwrap();
        sim.sync_dir(root).unwrap();
    }

    fn atomic_replace_survives_every_crash_point(fs_root: &Path) {
        let sim = SimFs::new();
        let dir = fs_root.join("store");
        let path = dir.join("secrets.age");
        durable_dir(&sim, fs_root, &dir);
        atomic_replace(&sim, &path, b"old").unwrap();
        let base = sim.op_count();
        atomic_replace(&sim, &path, b"new contents").unwrap();
        let total = sim.op_count() - base;
        assert!(total >= 5, "create, write, sync, rename, sync_dir");
        for k in 0..=total {
            let sim = SimFs::new();
            durable_dir(&sim, fs_root, &dir);
            atomic_replace(&sim, &path, b"old").unwrap();
            sim.crash_after(sim.op_count() + k);
            let result = atomic_replace(&sim, &path, b"new contents");
            let after = sim.crash();
            let got = after.read(&path).unwrap();
            if result.is_ok() {
                assert_eq!(got, b"new contents", "acknowledged replace lost at op {k}");
            } else {
                assert!(
                    got == b"old" || got == b"new contents",
                    "torn replace at op {k}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn atomic_replace_is_atomic_under_power_cut() {
        atomic_replace_survives_every_crash_point(Path::new("/data"));
    }

    #[test]
    fn atomic_replace_on_os() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        atomic_replace(&OsFs, &path, b"one").unwrap();
        atomic_replace(&OsFs, &path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = OsFs.list_dir(tmp.path()).unwrap();
        assert_eq!(names, vec![path]);
    }

    #[test]
    fn atomic_replace_cleans_up_after_write_error() {
        let sim = SimFs::new();
        sim.create_dir_all(Path::new("/d")).unwrap();
        sim.fail(Fault::WriteEio);
        let err = atomic_replace(&sim, Path::new("/d/f"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5));
        sim.clear_faults();
        assert!(sim.list_dir(Path::new("/d")).unwrap().is_empty());
    }

    #[test]
    fn create_dir_all_durable_survives_a_crash() {
        let sim = SimFs::new();
        create_dir_all_durable(&sim, Path::new("/a/b/c")).unwrap();
        let after = sim.crash();
        assert!(after.exists(Path::new("/a/b/c")));
        // Plain create_dir_all does not.
        let sim = SimFs::new();
        sim.create_dir_all(Path::new("/a/b/c")).unwrap();
        assert!(!sim.crash().exists(Path::new("/a")));
        // Existing ancestors are left alone; relative paths work.
        let sim = SimFs::new();
        create_dir_all_durable(&sim, Path::new("x/y")).unwrap();
        create_dir_all_durable(&sim, Path::new("x/y")).unwrap();
        assert!(sim.crash().exists(Path::new("x/y")));
    }

    #[test]
    fn parent_dir_of_bare_name_is_dot() {
        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/a/f")), Path::new("/a"));
    }
}
