//! The operating system's file system, with every file this store creates
//! made mode 0600 from the first byte: [`durable::OsFs`] creates files
//! with the process umask (often 0644), and the identity file — rewritten
//! through [`durable::atomic_replace`] when its passphrase changes — must
//! never exist, even as a temporary file, readable by other users.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use durable::{DurableFile, FileId, FileSystem, OsFs};

/// [`OsFs`] whose `create_new` makes 0600 files.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrivateOsFs;

struct PrivateFile(File);

fn id_of(meta: &std::fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

impl FileSystem for PrivateOsFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(PrivateFile(file)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(PrivateFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsFs.read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFs.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFs.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        OsFs.list_dir(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        OsFs.exists(path)
    }

    fn file_id(&self, path: &Path) -> io::Result<FileId> {
        OsFs.file_id(path)
    }
}

impl DurableFile for PrivateFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn id(&self) -> io::Result<FileId> {
        Ok(id_of(&self.0.metadata()?))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn replaced_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        durable::atomic_replace(&PrivateOsFs, &path, b"new").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
