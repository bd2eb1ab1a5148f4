//! The real file system, through `std::fs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{DurableFile, FileId, FileSystem};

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

/// [`OsFs`] whose new files are mode 0600 from their first byte, whatever
/// the umask: for files only their owner may read, such as a secrets
/// store's identity, which must never exist — not even as the temporary
/// file of an [`crate::atomic_replace`] — readable by other users.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrivateOsFs;

struct OsFile(File);

fn id_of(meta: &fs::Metadata) -> FileId {
    FileId {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

/// Opens `path` for appending, creating it (only if new, with
/// `create_new`) with `mode` if given, else as the umask says.
fn open(path: &Path, create_new: bool, mode: Option<u32>) -> io::Result<Box<dyn DurableFile>> {
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    if let Some(mode) = mode {
        options.mode(mode);
    }
    Ok(Box::new(OsFile(options.open(path)?)))
}

impl FileSystem for OsFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        open(path, false, None)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        open(path, true, None)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn open_read_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn io::Read + Send>> {
        use std::io::Seek;
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} holds {len} bytes, fewer than {offset}", path.display()),
            ));
        }
        file.seek(io::SeekFrom::Start(offset))?;
        Ok(Box::new(file))
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

impl FileSystem for PrivateOsFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        open(path, false, Some(0o600))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        open(path, true, Some(0o600))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsFs.read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        OsFs.open_read(path)
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
    fn private_files_are_0600_even_when_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        crate::atomic_replace(&PrivateOsFs, &path, b"new").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let fresh = tmp.path().join("g");
        PrivateOsFs.open_append(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
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
