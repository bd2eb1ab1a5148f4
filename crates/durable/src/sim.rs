//! `SimFs`: an in-memory file system that knows what a power cut keeps.
//!
//! Every file has *volatile* contents (what reads see) and *durable*
//! contents (what the last completed `sync_data` covered). Every directory
//! entry has a volatile state and a durable state; `sync_dir` makes the
//! volatile state of that directory's entries durable. [`SimFs::crash`]
//! returns a new file system holding only the durable state: bytes not
//! covered by a completed sync are gone, and creates, renames and removes
//! not followed by a sync of their directory are undone.
//!
//! To enumerate every crash point of a scenario, run it once and read
//! [`SimFs::op_count`]; then for each `k` run it again on a fresh `SimFs`
//! with [`SimFs::crash_after`]`(k)`: the first `k` mutating operations run,
//! every later one fails as if the machine had lost power, and `crash()`
//! gives the disk as it would be found on reboot.
//!
//! Mutating operations (each counts one): creating a file (`open_append` of
//! a missing path, `create_new`), `write_all`, `sync_data`, `set_len`,
//! `rename`, `remove_file`, `sync_dir`, and `create_dir_all`. Reads, listing
//! and opening an existing file do not count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{DurableFile, FileId, FileSystem};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const SIM_DEV: u64 = 0x51;

/// An injected failure, active from [`SimFs::fail`] until
/// [`SimFs::clear_faults`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `write_all` fails with EIO and writes nothing.
    WriteEio,
    /// `sync_data` and `sync_dir` fail with EIO; nothing becomes durable.
    SyncEio,
    /// `write_all` writes the first half of its buffer (a short write, as
    /// a nearly full disk does), then fails with ENOSPC.
    NoSpace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, Node>,
    durable_names: BTreeMap<PathBuf, Node>,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    ops: u64,
    crash_at: Option<u64>,
    powered_off: bool,
    faults: BTreeSet<Fault>,
}

/// An in-memory [`FileSystem`] that simulates power cuts and I/O faults.
/// Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
}

fn is_root(p: &Path) -> bool {
    p.as_os_str().is_empty() || p == Path::new("/") || p == Path::new(".")
}

fn parent_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new(""))
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut: the machine is off")
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", p.display()),
    )
}

impl State {
    /// Counts one mutating operation, or fails if the power is (now) off.
    fn begin_op(&mut self) -> io::Result<()> {
        if self.powered_off {
            return Err(power_cut());
        }
        if self.crash_at == Some(self.ops) {
            self.powered_off = true;
            return Err(power_cut());
        }
        self.ops += 1;
        Ok(())
    }

    fn dir_exists(&self, p: &Path) -> bool {
        is_root(p) || self.names.get(p) == Some(&Node::Dir)
    }

    fn require_parent(&self, p: &Path) -> io::Result<()> {
        let parent = parent_of(p);
        if self.dir_exists(parent) {
            Ok(())
        } else {
            Err(not_found(parent))
        }
    }

    fn file(&self, p: &Path) -> io::Result<u64> {
        match self.names.get(p) {
            Some(Node::File(ino)) => Ok(*ino),
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", p.display()),
            )),
            None => Err(not_found(p)),
        }
    }

    fn new_file(&mut self, p: &Path) -> u64 {
        self.next_ino += 1;
        let ino = self.next_ino;
        self.inodes.insert(ino, Inode::default());
        self.names.insert(p.to_path_buf(), Node::File(ino));
        ino
    }

    /// The disk after a power cut, keeping up to `torn` unsynced appended
    /// bytes of each file.
    fn after_crash(&self, torn: usize) -> State {
        let mut names = BTreeMap::new();
        // BTreeMap<PathBuf> orders a directory before its entries, so one
        // pass drops every entry whose directory did not survive.
        for (path, node) in &self.durable_names {
            let parent = parent_of(path);
            if is_root(parent) || names.get(parent) == Some(&Node::Dir) {
                names.insert(path.clone(), *node);
            }
        }
        let mut inodes = HashMap::new();
        for node in names.values() {
            if let Node::File(ino) = node {
                let inode = &self.inodes[ino];
                let mut data = inode.synced.clone();
                if torn > 0 && inode.data.starts_with(&inode.synced) {
                    let extra = &inode.data[inode.synced.len()..];
                    data.extend_from_slice(&extra[..extra.len().min(torn)]);
                }
                inodes.insert(
                    *ino,
                    Inode {
                        synced: data.clone(),
                        data,
                    },
                );
            }
        }
        State {
            durable_names: names.clone(),
            names,
            inodes,
            next_ino: self.next_ino,
            ..State::default()
        }
    }
}

impl SimFs {
    /// An empty file system (only the roots `/` and `.` exist).
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this test's result.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many mutating operations have completed.
    pub fn op_count(&self) -> u64 {
        self.lock().ops
    }

    /// Cuts the power once `k` mutating operations have completed in total:
    /// operation `k + 1` and every later one fail without effect.
    pub fn crash_after(&self, k: u64) {
        let mut s = self.lock();
        s.crash_at = Some(k);
        if s.ops >= k {
            s.powered_off = true;
        }
    }

    /// Whether the simulated power cut has happened.
    pub fn is_powered_off(&self) -> bool {
        self.lock().powered_off
    }

    /// Cuts the power now and returns the file system found on reboot:
    /// every unsynced byte and every unsynced directory change discarded.
    /// Handles opened on `self` keep referring to the old, dead machine.
    pub fn crash(&self) -> SimFs {
        self.crash_keeping(0)
    }

    /// Like [`SimFs::crash`], but up to `torn` bytes written after the last
    /// sync of each file reach the disk anyway (a torn write: part of the
    /// page cache was flushed). Files truncated since their last sync keep
    /// their synced contents.
    pub fn crash_keeping(&self, torn: usize) -> SimFs {
        let mut s = self.lock();
        s.powered_off = true;
        SimFs {
            state: Arc::new(Mutex::new(s.after_crash(torn))),
        }
    }

    /// Activates a fault until [`SimFs::clear_faults`].
    pub fn fail(&self, fault: Fault) {
        self.lock().faults.insert(fault);
    }

    /// Deactivates every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Removes the name `path` as another process (or an operator's `rm`)
    /// would, without counting an operation: open handles keep working on
    /// the now nameless file, and `same_file` reports `false`.
    pub fn unlink_live(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.file(path)?;
        s.names.remove(path);
        Ok(())
    }

    /// The contents a power cut right now would leave at `path`, or `None`
    /// if the path would not exist.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        let after = s.after_crash(0);
        match after.names.get(path) {
            Some(Node::File(ino)) => Some(after.inodes[ino].data.clone()),
            _ => None,
        }
    }
}

impl FileSystem for SimFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let mut s = self.lock();
        if s.powered_off {
            return Err(power_cut());
        }
        let ino = match s.names.get(path) {
            Some(_) => s.file(path)?,
            None => {
                s.require_parent(path)?;
                s.begin_op()?;
                s.new_file(path)
            }
        };
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
        }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let mut s = self.lock();
        if s.powered_off {
            return Err(power_cut());
        }
        if s.names.contains_key(path) || is_root(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", path.display()),
            ));
        }
        s.require_parent(path)?;
        s.begin_op()?;
        let ino = s.new_file(path);
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock();
        let ino = s.file(path)?;
        Ok(s.inodes[&ino].data.clone())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let ino = s.file(from)?;
        s.require_parent(to)?;
        if s.names.get(to) == Some(&Node::Dir) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", to.display()),
            ));
        }
        s.begin_op()?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), Node::File(ino));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.file(path)?;
        s.begin_op()?;
        s.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if !s.dir_exists(dir) {
            return Err(not_found(dir));
        }
        s.begin_op()?;
        if s.faults.contains(&Fault::SyncEio) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let in_dir = |p: &PathBuf| {
            let parent = parent_of(p);
            parent == dir || (is_root(parent) && is_root(dir))
        };
        let keys: BTreeSet<PathBuf> = s
            .names
            .keys()
            .chain(s.durable_names.keys())
            .filter(|p| in_dir(p))
            .cloned()
            .collect();
        for key in keys {
            match s.names.get(&key).copied() {
                Some(node) => s.durable_names.insert(key, node),
                None => s.durable_names.remove(&key),
            };
        }
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let mut missing = Vec::new();
        let mut cur = dir;
        while !s.dir_exists(cur) {
            if s.names.contains_key(cur) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", cur.display()),
                ));
            }
            missing.push(cur.to_path_buf());
            cur = parent_of(cur);
        }
        if missing.is_empty() {
            return Ok(());
        }
        s.begin_op()?;
        for p in missing {
            s.names.insert(p, Node::Dir);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = self.lock();
        if !s.dir_exists(dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| {
                let parent = parent_of(p);
                parent == dir || (is_root(parent) && is_root(dir))
            })
            .cloned()
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        is_root(path) || s.names.contains_key(path)
    }

    fn file_id(&self, path: &Path) -> io::Result<FileId> {
        let s = self.lock();
        Ok(FileId {
            dev: SIM_DEV,
            ino: s.file(path)?,
        })
    }
}

impl SimFile {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DurableFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        s.begin_op()?;
        if s.faults.contains(&Fault::WriteEio) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let short = s.faults.contains(&Fault::NoSpace);
        let inode = s.inodes.get_mut(&self.ino).expect("open inode exists");
        if short {
            inode.data.extend_from_slice(&buf[..buf.len() / 2]);
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        inode.data.extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.lock();
        s.begin_op()?;
        if s.faults.contains(&Fault::SyncEio) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let inode = s.inodes.get_mut(&self.ino).expect("open inode exists");
        inode.synced = inode.data.clone();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().inodes[&self.ino].data.len() as u64)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.begin_op()?;
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let inode = s.inodes.get_mut(&self.ino).expect("open inode exists");
        inode.data.resize(len, 0);
        Ok(())
    }

    fn id(&self) -> io::Result<FileId> {
        Ok(FileId {
            dev: SIM_DEV,
            ino: self.ino,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    /// A file system with a durable directory `/d`.
    fn with_dir() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_all(p("/d")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs
    }

    /// `/d/f` created durably and holding durable `contents`.
    fn with_file(contents: &[u8]) -> SimFs {
        let fs = with_dir();
        let mut f = fs.create_new(p("/d/f")).unwrap();
        f.write_all(contents).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(p("/d")).unwrap();
        fs
    }

    #[test]
    fn unsynced_bytes_are_lost_synced_bytes_kept() {
        let fs = with_file(b"");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        f.write_all(b"one ").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"two").unwrap();
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"one two");
        assert_eq!(fs.durable_contents(p("/d/f")).unwrap(), b"one ");
        let after = fs.crash();
        assert_eq!(after.read(p("/d/f")).unwrap(), b"one ");
    }

    #[test]
    fn create_without_dir_sync_vanishes_even_if_data_synced() {
        let fs = with_dir();
        let mut f = fs.create_new(p("/d/new")).unwrap();
        f.write_all(b"x").unwrap();
        f.sync_data().unwrap();
        assert!(!fs.crash().exists(p("/d/new")));

        let fs = with_dir();
        let mut f = fs.open_append(p("/d/new")).unwrap();
        f.write_all(b"x").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(p("/d")).unwrap();
        assert_eq!(fs.crash().read(p("/d/new")).unwrap(), b"x");
    }

    #[test]
    fn dir_sync_without_data_sync_keeps_an_empty_file() {
        let fs = with_dir();
        let mut f = fs.create_new(p("/d/new")).unwrap();
        f.write_all(b"lost").unwrap();
        fs.sync_dir(p("/d")).unwrap();
        assert_eq!(fs.crash().read(p("/d/new")).unwrap(), b"");
    }

    #[test]
    fn rename_is_undone_without_dir_sync() {
        let fs = with_file(b"old");
        let mut t = fs.create_new(p("/d/tmp")).unwrap();
        t.write_all(b"new").unwrap();
        t.sync_data().unwrap();
        fs.rename(p("/d/tmp"), p("/d/f")).unwrap();
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"new");
        assert!(!fs.exists(p("/d/tmp")));
        let after = fs.crash();
        assert_eq!(after.read(p("/d/f")).unwrap(), b"old");
        assert!(!after.exists(p("/d/tmp")), "tmp create was never synced");

        let fs = with_file(b"old");
        let mut t = fs.create_new(p("/d/tmp")).unwrap();
        t.write_all(b"new").unwrap();
        t.sync_data().unwrap();
        fs.rename(p("/d/tmp"), p("/d/f")).unwrap();
        fs.sync_dir(p("/d")).unwrap();
        let after = fs.crash();
        assert_eq!(after.read(p("/d/f")).unwrap(), b"new");
        assert_eq!(
            after.list_dir(p("/d")).unwrap(),
            vec![PathBuf::from("/d/f")]
        );
    }

    #[test]
    fn rename_across_directories_needs_both_syncs() {
        let fs = with_file(b"data");
        fs.create_dir_all(p("/e")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs.rename(p("/d/f"), p("/e/g")).unwrap();
        fs.sync_dir(p("/e")).unwrap();
        // Only the target directory was synced: both names survive.
        let after = fs.crash();
        assert_eq!(after.read(p("/d/f")).unwrap(), b"data");
        assert_eq!(after.read(p("/e/g")).unwrap(), b"data");
    }

    #[test]
    fn remove_is_undone_without_dir_sync() {
        let fs = with_file(b"keep");
        fs.remove_file(p("/d/f")).unwrap();
        assert!(!fs.exists(p("/d/f")));
        assert_eq!(fs.crash().read(p("/d/f")).unwrap(), b"keep");

        let fs = with_file(b"keep");
        fs.remove_file(p("/d/f")).unwrap();
        fs.sync_dir(p("/d")).unwrap();
        assert!(!fs.crash().exists(p("/d/f")));
    }

    #[test]
    fn directories_are_durable_only_after_parent_sync() {
        let fs = SimFs::new();
        fs.create_dir_all(p("/a/b")).unwrap();
        fs.sync_dir(p("/a")).unwrap();
        let mut f = fs.create_new(p("/a/b/f")).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(p("/a/b")).unwrap();
        // `/a` itself was never synced into `/`: everything below is gone.
        let after = fs.crash();
        assert!(!after.exists(p("/a")));
        assert!(!after.exists(p("/a/b/f")));

        let fs = SimFs::new();
        fs.create_dir_all(p("/a/b")).unwrap();
        fs.sync_dir(p("/")).unwrap();
        fs.sync_dir(p("/a")).unwrap();
        assert!(fs.crash().exists(p("/a/b")));
    }

    #[test]
    fn truncation_is_durable_only_after_sync() {
        let fs = with_file(b"complete line\ntorn");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        f.set_len(14).unwrap();
        assert_eq!(f.len().unwrap(), 14);
        assert_eq!(fs.crash().read(p("/d/f")).unwrap(), b"complete line\ntorn");

        let fs = with_file(b"complete line\ntorn");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        f.set_len(14).unwrap();
        f.sync_data().unwrap();
        assert_eq!(fs.crash().read(p("/d/f")).unwrap(), b"complete line\n");
    }

    #[test]
    fn torn_crash_keeps_a_prefix_of_unsynced_bytes() {
        let fs = with_file(b"ab");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        f.write_all(b"cdef").unwrap();
        assert_eq!(fs.crash_keeping(0).read(p("/d/f")).unwrap(), b"ab");
        assert_eq!(fs.crash_keeping(3).read(p("/d/f")).unwrap(), b"abcde");
        assert_eq!(fs.crash_keeping(99).read(p("/d/f")).unwrap(), b"abcdef");
    }

    #[test]
    fn crash_after_k_freezes_the_machine() {
        let fs = with_dir();
        let base = fs.op_count();
        fs.crash_after(base + 2);
        let mut f = fs.create_new(p("/d/f")).unwrap(); // op 1
        f.write_all(b"x").unwrap(); // op 2
        assert!(!fs.is_powered_off());
        assert!(f.sync_data().is_err()); // op 3: the power is off
        assert!(fs.is_powered_off());
        assert!(f.write_all(b"y").is_err());
        assert!(fs.sync_dir(p("/d")).is_err());
        assert!(fs.open_append(p("/d/g")).is_err());
        assert_eq!(fs.op_count(), base + 2);
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"x");
        assert!(!fs.crash().exists(p("/d/f")));
    }

    #[test]
    fn crash_after_counts_every_mutating_operation() {
        let fs = SimFs::new();
        fs.create_dir_all(p("/d")).unwrap(); // 1
        fs.sync_dir(p("/")).unwrap(); // 2
        let mut f = fs.open_append(p("/d/f")).unwrap(); // 3 (creates)
        let _again = fs.open_append(p("/d/f")).unwrap(); // exists: no op
        f.write_all(b"a").unwrap(); // 4
        f.sync_data().unwrap(); // 5
        f.set_len(0).unwrap(); // 6
        fs.rename(p("/d/f"), p("/d/g")).unwrap(); // 7
        fs.remove_file(p("/d/g")).unwrap(); // 8
        fs.read(p("/")).err();
        fs.list_dir(p("/d")).unwrap();
        assert_eq!(fs.op_count(), 8);
    }

    #[test]
    fn crash_after_zero_runs_nothing() {
        let fs = SimFs::new();
        fs.crash_after(0);
        assert!(fs.create_dir_all(p("/d")).is_err());
        assert!(fs.is_powered_off());
    }

    #[test]
    fn old_handles_do_not_reach_the_rebooted_machine() {
        let fs = with_file(b"a");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        let after = fs.crash();
        assert!(f.write_all(b"b").is_err());
        assert_eq!(after.read(p("/d/f")).unwrap(), b"a");
        let mut g = after.open_append(p("/d/f")).unwrap();
        g.write_all(b"c").unwrap();
        assert_eq!(after.read(p("/d/f")).unwrap(), b"ac");
    }

    #[test]
    fn write_eio_writes_nothing() {
        let fs = with_file(b"a");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        fs.fail(Fault::WriteEio);
        assert_eq!(f.write_all(b"b").unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"a");
        f.sync_data().unwrap();
        fs.clear_faults();
        f.write_all(b"b").unwrap();
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"ab");
    }

    #[test]
    fn sync_eio_makes_nothing_durable() {
        let fs = with_dir();
        let mut f = fs.create_new(p("/d/f")).unwrap();
        f.write_all(b"a").unwrap();
        fs.fail(Fault::SyncEio);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(fs.sync_dir(p("/d")).unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(fs.durable_contents(p("/d/f")), None);
        fs.clear_faults();
        fs.sync_dir(p("/d")).unwrap();
        assert_eq!(fs.durable_contents(p("/d/f")).unwrap(), b"");
    }

    #[test]
    fn no_space_is_a_short_write() {
        let fs = with_file(b"");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        fs.fail(Fault::NoSpace);
        let err = f.write_all(b"abcd").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        assert_eq!(fs.read(p("/d/f")).unwrap(), b"ab");
    }

    #[test]
    fn unlink_live_detaches_the_open_file() {
        let fs = with_file(b"a");
        let mut f = fs.open_append(p("/d/f")).unwrap();
        assert!(fs.same_file(p("/d/f"), f.as_ref()).unwrap());
        let before = fs.op_count();
        fs.unlink_live(p("/d/f")).unwrap();
        assert_eq!(fs.op_count(), before);
        assert!(!fs.same_file(p("/d/f"), f.as_ref()).unwrap());
        f.write_all(b"b").unwrap();
        assert!(!fs.exists(p("/d/f")));
        // A new file at the same path is a different file.
        let g = fs.open_append(p("/d/f")).unwrap();
        assert!(!fs.same_file(p("/d/f"), f.as_ref()).unwrap());
        assert!(fs.same_file(p("/d/f"), g.as_ref()).unwrap());
    }

    #[test]
    fn namespace_errors() {
        let fs = with_file(b"");
        assert_eq!(
            fs.create_new(p("/d/f")).err().unwrap().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            fs.open_append(p("/missing/f")).err().unwrap().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.read(p("/d/none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.rename(p("/d/none"), p("/d/x")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.remove_file(p("/d")).unwrap_err().kind(),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(
            fs.create_dir_all(p("/d/f/g")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            fs.sync_dir(p("/nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(fs.exists(p("/d")) && fs.exists(p("/d/f")) && !fs.exists(p("/e")));
        assert_eq!(fs.list_dir(p("/")).unwrap(), vec![PathBuf::from("/d")]);
    }

    #[test]
    fn relative_paths_live_under_dot() {
        let fs = SimFs::new();
        fs.create_dir_all(p("led")).unwrap();
        fs.sync_dir(p(".")).unwrap();
        let mut f = fs.create_new(p("led/x")).unwrap();
        f.write_all(b"1").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(p("led")).unwrap();
        assert_eq!(fs.crash().read(p("led/x")).unwrap(), b"1");
    }
}
