//! The real file system, through `std::fs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{DurableFile, FileId, FileSystem};

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

struct OsFile(File);

fn id_of(meta: &fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

impl FileSystem for OsFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir)? {
            out.push(entry?.path());
        }
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    fn file_id(&self, path: &Path) -> io::Result<FileId> {
        Ok(id_of(&fs::metadata(path)?))
    }
}

impl DurableFile for OsFile {
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
    use super::*;

    #[test]
    fn append_truncate_and_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        let mut f = OsFs.open_append(&path).unwrap();
        f.write_all(b"hello ").unwrap();
        f.write_all(b"world").unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.len().unwrap(), 11);
        f.set_len(5).unwrap();
        f.write_all(b"!").unwrap();
        assert_eq!(OsFs.read(&path).unwrap(), b"hello!");
        assert!(OsFs.same_file(&path, f.as_ref()).unwrap());

        // Replaced behind our back: the path names another file now.
        let other = tmp.path().join("other");
        std::fs::write(&other, b"x").unwrap();
        OsFs.rename(&other, &path).unwrap();
        assert!(!OsFs.same_file(&path, f.as_ref()).unwrap());
        // Unlinked: the path names nothing.
        OsFs.remove_file(&path).unwrap();
        assert!(!OsFs.same_file(&path, f.as_ref()).unwrap());
        assert!(!OsFs.exists(&path));
    }

    #[test]
    fn create_new_refuses_existing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a");
        OsFs.create_new(&path).unwrap();
        let err = OsFs.create_new(&path).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        OsFs.sync_dir(tmp.path()).unwrap();
        OsFs.create_dir_all(&tmp.path().join("x/y")).unwrap();
        assert_eq!(
            OsFs.list_dir(tmp.path()).unwrap(),
            vec![path, tmp.path().join("x")]
        );
    }
}
