//! The sandbox's shared state and its persistence.
//!
//! Locking story: one [`std::sync::Mutex`] around [`State`]. Every API or
//! admin request runs start to finish inside one critical section on a
//! blocking thread (`spawn_blocking`): it reads and changes the state, then —
//! still holding the lock — makes its changes durable. So requests are
//! serialised exactly as REDCap's transactions would appear to a client, and
//! the order on disk is the order in memory. The sandbox is a test double:
//! simplicity beats concurrency here.
//!
//! On disk (in the `--data` directory):
//! - `state.json`: everything but the logs, rewritten atomically (temp file,
//!   fsync, rename, fsync directory) whenever it changed;
//! - `log.jsonl`: REDCap's event and page-view logs, one row per line,
//!   appended and fsynced; a torn last line (crash mid-write) is dropped;
//! - `edocs/<doc_id>`: the bytes of each file uploaded to a File Upload
//!   field (REDCap's "edocs"); their name, type and size are in `state.json`.
//!   A new file is written and fsynced before the state that points at it,
//!   and a removed one is unlinked only after the state that forgot it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use redcap::Rights;
use serde::{Deserialize, Serialize};

/// A REDCap account (system level, §8.2).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Account {
    pub username: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub firstname: String,
    #[serde(default)]
    pub lastname: String,
    /// REDCap administrator: bypasses rights, DAGs and expiry (§1.7).
    #[serde(default)]
    pub administrator: bool,
    #[serde(default)]
    pub suspended: bool,
    /// 64-hex super token, at most one per user.
    #[serde(default)]
    pub super_token: Option<String>,
}

/// One field of the data dictionary (§6.4), every column a string.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Field {
    pub field_name: String,
    pub form_name: String,
    pub section_header: String,
    pub field_type: String,
    pub field_label: String,
    pub select_choices_or_calculations: String,
    pub field_note: String,
    pub text_validation_type_or_show_slider_number: String,
    pub text_validation_min: String,
    pub text_validation_max: String,
    pub identifier: String,
    pub branching_logic: String,
    pub required_field: String,
    pub custom_alignment: String,
    pub question_number: String,
    pub matrix_group_name: String,
    pub matrix_ranking: String,
    pub field_annotation: String,
}

impl Field {
    /// The codes of a checkbox/radio/dropdown field (`1, Yes | 2, No`).
    pub fn choice_codes(&self) -> Vec<String> {
        match self.field_type.as_str() {
            "yesno" | "truefalse" => vec!["0".into(), "1".into()],
            "checkbox" | "radio" | "dropdown" => self
                .select_choices_or_calculations
                .split('|')
                .filter_map(|c| c.split_once(',').map(|(code, _)| code.trim().to_owned()))
                .filter(|c| !c.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the field holds no data (descriptive text).
    pub fn is_descriptive(&self) -> bool {
        self.field_type == "descriptive"
    }
}

/// A project member (a row of `redcap_user_rights`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    #[serde(default)]
    pub expiration: Option<String>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub role_id: Option<u64>,
    #[serde(with = "stored_rights")]
    pub rights: Rights,
    /// The user's 32-hex project token.
    #[serde(default)]
    pub token: Option<String>,
}

/// A user role.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    pub id: u64,
    pub unique_name: String,
    pub label: String,
    #[serde(with = "stored_rights")]
    pub rights: Rights,
}

/// A Data Access Group: only id and label are stored (§5.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dag {
    pub id: u64,
    pub name: String,
}

/// One record of a classic project.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Record {
    #[serde(default)]
    pub group_id: Option<u64>,
    pub values: BTreeMap<String, String>,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: u64,
    pub title: String,
    pub purpose: u8,
    #[serde(default)]
    pub purpose_other: String,
    #[serde(default)]
    pub notes: String,
    pub creation_time: String,
    /// 0 development, 1 production, 2 analysis/cleanup.
    #[serde(default)]
    pub status: u8,
    #[serde(default)]
    pub production_time: String,
    #[serde(default)]
    pub is_longitudinal: bool,
    #[serde(default)]
    pub surveys_enabled: bool,
    #[serde(default = "yes")]
    pub record_autonumbering_enabled: bool,
    pub metadata: Vec<Field>,
    pub members: BTreeMap<String, Member>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub dags: Vec<Dag>,
    #[serde(default)]
    pub records: BTreeMap<String, Record>,
}

fn yes() -> bool {
    true
}

impl Project {
    /// Instrument names in data-dictionary order.
    pub fn forms(&self) -> Vec<String> {
        let mut forms: Vec<String> = Vec::new();
        for f in &self.metadata {
            if !forms.contains(&f.form_name) {
                forms.push(f.form_name.clone());
            }
        }
        forms
    }

    /// The record ID field: the first field (§6.4).
    pub fn record_id_field(&self) -> &str {
        self.metadata
            .first()
            .map(|f| f.field_name.as_str())
            .unwrap_or("record_id")
    }

    /// Unique DAG names, aligned with `self.dags`.
    pub fn dag_unique_names(&self) -> Vec<String> {
        let labels: Vec<&str> = self.dags.iter().map(|d| d.name.as_str()).collect();
        redcap::dag::unique_group_names(&labels)
    }

    /// The unique name of a DAG id (`None` if the DAG is gone).
    pub fn dag_name(&self, id: u64) -> Option<String> {
        let names = self.dag_unique_names();
        self.dags
            .iter()
            .position(|d| d.id == id)
            .map(|i| names[i].clone())
    }

    /// The DAG id of a unique name.
    pub fn dag_id(&self, unique: &str) -> Option<u64> {
        let names = self.dag_unique_names();
        names
            .iter()
            .position(|n| n == unique)
            .map(|i| self.dags[i].id)
    }

    /// The rights that apply to a member: the role's if in one (§4.2).
    pub fn member_rights(&self, member: &Member) -> Rights {
        let mut rights = member
            .role_id
            .and_then(|id| self.roles.iter().find(|r| r.id == id))
            .map(|r| r.rights.clone())
            .unwrap_or_else(|| member.rights.clone());
        self.normalise_forms(&mut rights);
        rights
    }

    /// Makes the form maps cover exactly the project's instruments.
    pub fn normalise_forms(&self, rights: &mut Rights) {
        let forms = self.forms();
        rights.forms.retain(|f, _| forms.contains(f));
        rights.forms_export.retain(|f, _| forms.contains(f));
        for f in forms {
            rights
                .forms
                .entry(f.clone())
                .or_insert(redcap::FormRight::NoAccess);
            rights
                .forms_export
                .entry(f)
                .or_insert(redcap::ExportRight::NoAccess);
        }
    }
}

/// Which of REDCap's logs a row belongs to, and its `logtype` (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// Manage/Design events.
    Manage,
    /// Events on user rights (incl. token lifecycle, user/role exports).
    User,
    /// Data exports.
    Export,
    RecordAdd,
    RecordEdit,
    RecordDelete,
    /// The page-view table.
    PageView,
}

/// A file stored for a File Upload field (a row of REDCap's
/// `redcap_edocs_metadata`); its bytes are `edocs/<doc_id>`. The record
/// value of the field is the doc id, as in REDCap.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Doc {
    pub project_id: u64,
    /// The uploader's file name.
    pub name: String,
    /// The type the uploader declared (or one guessed from the name).
    pub mime_type: String,
    pub size: u64,
}

/// Where the bytes of a doc live.
pub fn doc_path(dir: &Path, doc_id: u64) -> PathBuf {
    dir.join("edocs").join(doc_id.to_string())
}

/// One log row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRow {
    pub id: u64,
    /// `None`: not visible in any project (super-token calls, bad tokens).
    pub project_id: Option<u64>,
    /// `YYYY-MM-DD HH:MM`, server-local.
    pub ts: String,
    pub username: String,
    pub kind: LogKind,
    pub action: String,
    pub details: String,
    #[serde(default)]
    pub record: Option<String>,
    /// The DAG of the record the row is about.
    #[serde(default)]
    pub group_id: Option<u64>,
}

/// Everything but the logs.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub next_project_id: u64,
    pub next_group_id: u64,
    pub next_role_id: u64,
    pub accounts: BTreeMap<String, Account>,
    pub projects: BTreeMap<u64, Project>,
    /// The system setting "API enabled" is off (§1.3 step 3).
    #[serde(default)]
    pub api_disabled: bool,
    /// IP addresses banned by the page-hit limiter (permanent, §9.1).
    #[serde(default)]
    pub banned_ips: std::collections::BTreeSet<std::net::IpAddr>,
    /// Uploaded files by doc id.
    #[serde(default)]
    pub docs: BTreeMap<u64, Doc>,
    #[serde(default)]
    pub next_doc_id: u64,
    /// Files of this request to write before the state (doc id, bytes).
    #[serde(skip)]
    docs_to_write: Vec<(u64, axum::body::Bytes)>,
    /// Files of this request to unlink after the state.
    #[serde(skip)]
    docs_to_remove: Vec<u64>,
    /// Recent API hits per IP (last 60 seconds), for the limiter.
    #[serde(skip)]
    pub hits:
        std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<std::time::Instant>>,
    #[serde(skip)]
    pub log: Vec<LogRow>,
    #[serde(skip)]
    pending_log: Vec<LogRow>,
    #[serde(skip)]
    dirty: bool,
}

impl State {
    /// Marks the state as changed: it is written out when the request ends.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// Appends a log row (written out when the request ends).
    pub fn log(&mut self, mut row: LogRow) {
        row.id = self.log.last().map_or(1, |r| r.id + 1);
        self.log.push(row.clone());
        self.pending_log.push(row);
    }

    /// Stores an uploaded file; its bytes reach the disk before the state
    /// that refers to it. Answers the new doc id.
    pub fn add_doc(&mut self, doc: Doc, bytes: axum::body::Bytes) -> u64 {
        let id = self.next_doc_id.max(1);
        self.next_doc_id = id + 1;
        self.docs.insert(id, doc);
        self.docs_to_write.push((id, bytes));
        self.touch();
        id
    }

    /// Forgets a stored file; its bytes are unlinked once the state is
    /// durable. Unknown ids (a value that is not a doc id) are ignored.
    pub fn remove_doc(&mut self, id: u64) {
        if self.docs.remove(&id).is_some() {
            self.docs_to_write.retain(|(i, _)| *i != id);
            self.docs_to_remove.push(id);
            self.touch();
        }
    }

    /// Finds the project member whose token this is (account not suspended).
    pub fn find_token(&self, token: &str) -> Option<(u64, String)> {
        self.projects.values().find_map(|p| {
            p.members.iter().find_map(|(user, m)| {
                let live = self.accounts.get(user).is_none_or(|a| !a.suspended);
                (m.token.as_deref() == Some(token) && live).then(|| (p.id, user.clone()))
            })
        })
    }

    /// Whether a token value is in use anywhere (project or super).
    pub fn token_in_use(&self, token: &str) -> bool {
        self.projects.values().any(|p| {
            p.members
                .values()
                .any(|m| m.token.as_deref() == Some(token))
        }) || self
            .accounts
            .values()
            .any(|a| a.super_token.as_deref() == Some(token))
    }

    /// A fresh project token (32 uppercase hex, unique).
    pub fn new_project_token(&self) -> String {
        loop {
            let t = random_hex(16);
            if !self.token_in_use(&t) {
                return t;
            }
        }
    }

    /// A fresh super token (64 uppercase hex, unique).
    pub fn new_super_token(&self) -> String {
        loop {
            let t = random_hex(32);
            if !self.token_in_use(&t) {
                return t;
            }
        }
    }
}

/// `n` random bytes as uppercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    hex::encode_upper(bytes)
}

/// A random integer in `0..n`.
pub fn random_below(n: u32) -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    u32::from_le_bytes(b) % n
}

/// The shared, persistent state.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Mutex<State>>,
    dir: Arc<PathBuf>,
}

/// A critical section: the locked state; changes are made durable by
/// [`Txn::commit`].
pub struct Txn<'a> {
    pub state: MutexGuard<'a, State>,
    dir: &'a Path,
}

impl Db {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Db> {
        // The state holds every token in clear, as REDCap's database does:
        // only its owner may read it.
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let state_path = dir.join("state.json");
        // A temporary file a crash left behind (never the state itself: the
        // rename is what commits).
        let _ = fs::remove_file(dir.join("state.json.tmp"));
        let mut state: State = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a sandbox state file", state_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                next_project_id: 1,
                next_group_id: 1,
                next_role_id: 1,
                ..State::default()
            },
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", state_path.display()));
            }
        };
        state.log = read_log(&dir.join("log.jsonl"))?;
        Ok(Db {
            inner: Arc::new(Mutex::new(state)),
            dir: Arc::new(dir.to_owned()),
        })
    }

    /// Enters the critical section.
    pub fn begin(&self) -> Txn<'_> {
        // A panic in another request must not take the sandbox down with it;
        // the state is only ever changed in ways that keep it consistent.
        let state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Txn {
            state,
            dir: &self.dir,
        }
    }
}

impl Txn<'_> {
    /// Makes this request's changes durable: log rows first (append + fsync),
    /// then the state file if it changed.
    pub fn commit(mut self) -> anyhow::Result<()> {
        if !self.state.docs_to_write.is_empty() {
            let dir = self.dir.join("edocs");
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for (id, bytes) in std::mem::take(&mut self.state.docs_to_write) {
                write_durably(&doc_path(self.dir, id), &bytes)?;
            }
            sync_dir(&dir)?;
        }
        if !self.state.pending_log.is_empty() {
            let path = self.dir.join("log.jsonl");
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut buf = Vec::new();
            for row in self.state.pending_log.drain(..) {
                serde_json::to_writer(&mut buf, &row)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)
                .and_then(|()| f.sync_data())
                .with_context(|| format!("cannot append to {}", path.display()))?;
        }
        if self.state.dirty {
            let bytes = serde_json::to_vec_pretty(&*self.state)?;
            write_atomically(&self.dir.join("state.json"), &bytes)?;
            self.state.dirty = false;
        }
        for id in std::mem::take(&mut self.state.docs_to_remove) {
            let path = doc_path(self.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // The state no longer refers to it: a leftover file is
                // harmless, so the request still succeeds.
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            }
        }
        Ok(())
    }
}

fn read_log(path: &Path) -> anyhow::Result<Vec<LogRow>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut rows = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        match serde_json::from_str::<LogRow>(&line) {
            Ok(row) => rows.push(row),
            // Only a torn final line is tolerated; it was never acknowledged.
            Err(_) => {
                tracing::warn!("{}: ignoring unreadable line {}", path.display(), n + 1);
            }
        }
    }
    Ok(rows)
}

/// Temp file, fsync, rename over the target, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_durably(path, bytes)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Temp file, fsync, rename over the target (the caller syncs the directory).
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))
}

/// `Rights` is stored as its REDCap export (bitmask form codes), so the state
/// file reads like REDCap's own JSON.
mod stored_rights {
    use redcap::rights::ValueStyle;
    use redcap::{RedcapVersion, Rights};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use serde_json::{Map, Value};

    pub fn serialize<S: Serializer>(rights: &Rights, s: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::new();
        rights.write_json(&mut map, RedcapVersion::SPEC, ValueStyle::Integers, &[]);
        serde::Serialize::serialize(&map, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rights, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        Rights::from_json(&map).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The state holds tokens in clear: only its owner may read it, and a
    /// temporary file a crash left behind does not linger.
    #[test]
    fn the_state_is_private_and_crash_leftovers_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let db = Db::open(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let mut txn = db.begin();
        txn.state.next_project_id += 1;
        txn.state.touch();
        txn.commit().unwrap();
        assert_eq!(mode(&dir.join("state.json")), 0o600);
        fs::write(dir.join("state.json.tmp"), b"{\"tokens\": \"half written\"").unwrap();
        drop(db);
        Db::open(&dir).unwrap();
        assert!(!dir.join("state.json.tmp").exists());
    }
}
