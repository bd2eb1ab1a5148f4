//! The rotation journal: one file per rotation, `<dir>/<id>.journal`,
//! JSON Lines, each line the whole [`Rotation`] record after a transition,
//! appended and synced (`fdatasync`) before the next external step. The
//! last line that parses is the rotation's state; a torn last line (a
//! power cut in the middle of a write) is cut off before the next append.
//! A line that does not parse anywhere but at the end means the file was
//! damaged, and is reported rather than guessed around.
//!
//! The journal holds fingerprints, never token values.
//!
//! [`Journal::lock`] takes `<dir>/<account>.lock` (an advisory lock, not
//! waited for): one process at a time works on an account's rotations, and
//! a second is refused at once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::FileSystem;

use super::{Rotation, RotationError};

/// The journals of one installation (`<data_dir>/rotation/`).
#[derive(Clone)]
pub struct Journal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// Whether `lock` takes a lock file on the real file system (off for
    /// simulated file systems, whose paths do not exist on disk).
    os_locks: bool,
}

/// The span in which one rotation had REDCap regenerate `username`'s token
/// ([`Journal::regenerations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regeneration {
    /// The rotation.
    pub rotation_id: String,
    /// The REDCap user whose token it regenerated.
    pub username: String,
    /// When the rotation was planned.
    pub from: jiff::Timestamp,
    /// When the new token was in escrow (or the rotation's last record).
    pub until: jiff::Timestamp,
}

/// Held while a process works on an account's rotation; released on drop.
pub struct AccountLock {
    _file: Option<std::fs::File>,
}

const SUFFIX: &str = ".journal";

impl Journal {
    /// The journals in `dir` on the real file system.
    pub fn on_os(dir: PathBuf) -> Journal {
        Journal {
            fs: Arc::new(durable::PrivateOsFs),
            dir,
            os_locks: true,
        }
    }

    /// The journals in `dir` through `fs` (tests: [`durable::SimFs`]); no
    /// lock files.
    pub fn with(fs: Arc<dyn FileSystem>, dir: PathBuf) -> Journal {
        Journal {
            fs,
            dir,
            os_locks: false,
        }
    }

    /// Where the journals are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system journals and escrows are written through.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// The journal file of rotation `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// Takes the account's lock, or refuses at once if another process
    /// holds it.
    pub fn lock(&self, account: &str) -> Result<AccountLock, RotationError> {
        if !self.os_locks {
            return Ok(AccountLock { _file: None });
        }
        self.create_dir()?;
        let path = self.dir.join(format!("{}.lock", file_safe(account)));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| io_error("opening the rotation lock", &path, source))?;
        match file.try_lock() {
            Ok(()) => Ok(AccountLock { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => Err(RotationError::Busy {
                account: account.to_string(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(io_error("locking the rotation lock", &path, source))
            }
        }
    }

    fn create_dir(&self) -> Result<(), RotationError> {
        durable::create_dir_all_durable(&*self.fs, &self.dir)
            .map_err(|source| io_error("creating the rotation directory", &self.dir, source))
    }

    /// Writes the first record of a new rotation: the file is created,
    /// written, synced, and its directory synced.
    pub fn create(&self, rotation: &Rotation) -> Result<(), RotationError> {
        self.create_dir()?;
        let path = self.path(&rotation.id);
        let line = line_of(rotation);
        let written = (|| {
            let mut file = self.fs.create_new(&path)?;
            file.write_all(&line)?;
            file.sync_data()?;
            self.fs.sync_dir(&self.dir)
        })();
        written.map_err(|source| io_error("writing the rotation journal", &path, source))
    }

    /// Appends a record and syncs it; returns once it is durable.
    pub fn append(&self, rotation: &Rotation) -> Result<(), RotationError> {
        let path = self.path(&rotation.id);
        let line = line_of(rotation);
        let written = (|| {
            let mut file = self.fs.open_append(&path)?;
            // A torn last line (power cut mid-write) is cut off first, so
            // the new line starts on a line of its own.
            let bytes = self.fs.read(&path)?;
            let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            if whole < bytes.len() {
                file.set_len(whole as u64)?;
            }
            file.write_all(&line)?;
            file.sync_data()
        })();
        written.map_err(|source| io_error("writing the rotation journal", &path, source))
    }

    /// The rotation's state: the last whole record of its journal.
    pub fn load(&self, id: &str) -> Result<Rotation, RotationError> {
        let path = self.path(id);
        if id.is_empty()
            || id.contains(['/', '\\'])
            || id.starts_with('.')
            || !self.fs.exists(&path)
        {
            return Err(RotationError::NotFound {
                id: id.to_string(),
                dir: self.dir.clone(),
            });
        }
        self.read(&path)
    }

    fn read(&self, path: &Path) -> Result<Rotation, RotationError> {
        let mut records = self.records(path)?;
        records.pop().ok_or_else(|| RotationError::Damaged {
            path: path.to_path_buf(),
            detail: "it holds no complete record".into(),
        })
    }

    /// Every whole record of one journal, oldest first.
    fn records(&self, path: &Path) -> Result<Vec<Rotation>, RotationError> {
        let bytes = self
            .fs
            .read(path)
            .map_err(|source| io_error("reading the rotation journal", path, source))?;
        let damaged = |detail: String| RotationError::Damaged {
            path: path.to_path_buf(),
            detail,
        };
        let mut records = Vec::new();
        // Only lines ending in a line break count: a last line without one
        // is a write the power cut tore — never acknowledged, and cut off
        // by the next append.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for (n, line) in bytes[..whole].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Rotation>(line) {
                Ok(r) => records.push(r),
                Err(e) => return Err(damaged(format!("line {}: {e}", n + 1))),
            }
        }
        Ok(records)
    }

    /// Every rotation with a journal, oldest first.
    pub fn all(&self) -> Result<Vec<Rotation>, RotationError> {
        self.journals()?
            .iter()
            .map(|path| self.read(path))
            .collect::<Result<Vec<_>, _>>()
            .map(|mut out| {
                out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
                out
            })
    }

    /// When each rotation had REDCap regenerate a token: from its planning
    /// to the record that holds the new token in escrow (`obtained`) — or,
    /// for one that never got that far, its last record. REDCap logs the
    /// regeneration inside that span (`reconcile` explains the row by it).
    pub fn regenerations(&self) -> Result<Vec<Regeneration>, RotationError> {
        let mut out = Vec::new();
        for path in self.journals()? {
            let records = self.records(&path)?;
            let Some(first) = records.first() else {
                continue;
            };
            let obtained = records
                .iter()
                .find(|r| r.new_fingerprint.is_some())
                .or(records.last())
                .map_or(first.at, |r| r.at);
            out.push(Regeneration {
                rotation_id: first.id.clone(),
                username: first.username.clone(),
                from: first.started,
                until: obtained,
            });
            // A dual rotation regenerates the second member once it has
            // switched: from that record to the one that escrowed the
            // second token.
            if let Some(d) = &first.dual
                && let Some(switched) = records.iter().find(|r| r.state == super::State::Switched)
            {
                let until = records
                    .iter()
                    .find(|r| r.second_leg() && r.new_fingerprint.is_some())
                    .or(records.last())
                    .map_or(switched.at, |r| r.at);
                out.push(Regeneration {
                    rotation_id: first.id.clone(),
                    username: d.second.username.clone(),
                    from: switched.at,
                    until,
                });
            }
        }
        Ok(out)
    }

    fn journals(&self) -> Result<Vec<PathBuf>, RotationError> {
        if !self.fs.exists(&self.dir) {
            return Ok(Vec::new());
        }
        let entries = self
            .fs
            .list_dir(&self.dir)
            .map_err(|source| io_error("listing the rotation journals", &self.dir, source))?;
        Ok(entries
            .into_iter()
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with('.'))
            })
            .collect())
    }

    /// The account's open rotation, if any.
    pub fn open_for(&self, account: &str) -> Result<Option<Rotation>, RotationError> {
        Ok(self
            .all()?
            .into_iter()
            .find(|r| r.concerns(account) && r.state.is_open()))
    }
}

fn line_of(rotation: &Rotation) -> Vec<u8> {
    let mut line = serde_json::to_vec(rotation).expect("a rotation record always serializes");
    line.push(b'\n');
    line
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> RotationError {
    RotationError::Io {
        op,
        path: path.to_path_buf(),
        fix: format!(
            "check that {} is writable and the disk has space, then `redcap-warden rotate resume` the rotation (`rotate status` lists it)",
            durable::parent_dir(path).display()
        ),
        source,
    }
}

/// An account name as a file name: kept as is when it is plain letters,
/// digits, `-`, `_` and `.`, otherwise hex.
fn file_safe(account: &str) -> String {
    if !account.is_empty()
        && !account.starts_with('.')
        && account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        account.to_string()
    } else {
        format!("x-{}", hex::encode(account))
    }
}
