//! The sandbox's shared state, its lock and its transactions.
//!
//! Locking story: one [`std::sync::Mutex`] around the settings ([`State`])
//! and the SQLite connection that writes. Every API or admin request runs
//! inside one critical section on a blocking thread (`spawn_blocking`) and
//! one database transaction (`BEGIN IMMEDIATE` … `COMMIT`): it reads and
//! changes what it needs, then — still holding the lock — commits. So
//! answers are ordered as REDCap's transactions would appear to a client.
//! A request that fails part way is rolled back whole (and the settings
//! reloaded), so an import that fails changes nothing.
//!
//! Long exports do not hold the lock while they stream: inside the
//! critical section they take a [`Snapshot`] (a WAL read transaction on a
//! connection of their own), then answer from it after the lock is
//! released; what they send is what was committed when they were ordered.
//!
//! On disk (in the `--data` directory):
//! - `sandbox.db` (+ `-wal`, `-shm`): settings, records and logs, in tables
//!   shaped like REDCap's ([`crate::store`]);
//! - `edocs/<doc_id>`: the bytes of each file uploaded to a File Upload
//!   field (REDCap's "edocs"); their name, type and size are rows of
//!   `redcap_edocs_metadata`. A new file is written and fsynced before the
//!   commit of the row that points at it, and a removed one is unlinked
//!   only after the commit that forgot it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
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
    /// Arms, in arm-number order (longitudinal projects; none in a classic
    /// one).
    #[serde(default)]
    pub arms: Vec<Arm>,
    /// Events, in their order within the arms' order.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Which instruments, or whole events, repeat (§6.6).
    #[serde(default)]
    pub repeating: Vec<Repeating>,
    /// Instrument labels given by a REDCap XML file (others are made
    /// from the instrument's name).
    #[serde(default)]
    pub form_labels: BTreeMap<String, String>,
}

/// An arm of a longitudinal project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Arm {
    pub num: u32,
    pub name: String,
}

/// An event of a longitudinal project (a row of `redcap_events_metadata`)
/// with its designated instruments (`redcap_events_forms`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// REDCap's `event_id`, unique in the whole server; the key of the
    /// event's values in `redcap_data`.
    pub id: i64,
    pub arm_num: u32,
    pub name: String,
    #[serde(default)]
    pub day_offset: f64,
    #[serde(default)]
    pub offset_min: f64,
    #[serde(default)]
    pub offset_max: f64,
    #[serde(default)]
    pub custom_label: String,
    /// Designated instruments, in data-dictionary order.
    #[serde(default)]
    pub forms: Vec<String>,
}

/// A repeating instrument (`form` set) or a repeating event (`form`
/// empty): a row of `redcap_events_repeat`. `event_id` is
/// [`crate::store::CLASSIC_EVENT`] in a classic project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Repeating {
    pub event_id: i64,
    pub form: String,
    pub custom_label: String,
}

/// A unique event name before its arm suffix (§6.6): the label in lower
/// case, characters other than letters, digits and spaces dropped, spaces
/// made `_`, cut to 18 characters.
fn event_name_stem(label: &str) -> String {
    // REDCap's `Project::getUniqueEventNames`: keep ASCII letters, digits,
    // `_` and spaces of the trimmed label, spaces become `_`, cut to 18,
    // lower-case, strip `_` at both ends; nothing left → the first 10 hex
    // digits of the label's MD5.
    let label = label.trim();
    let stem: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ' ')
        .map(|c| {
            if c == ' ' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .take(18)
        .collect();
    let stem = stem.trim_matches('_');
    if stem.is_empty() {
        use md5::Digest;
        let digest = md5::Md5::digest(label.as_bytes());
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..10]
            .to_owned()
    } else {
        stem.to_owned()
    }
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

    /// Unique event names (`<stem>_arm_<n>`), aligned with `self.events`;
    /// a name already taken gets `b`, `c`, … appended.
    pub fn unique_event_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::with_capacity(self.events.len());
        for e in &self.events {
            let base = format!("{}_arm_{}", event_name_stem(&e.name), e.arm_num);
            let mut name = base.clone();
            let mut suffix = b'b';
            while names.contains(&name) {
                name = format!("{base}{}", suffix as char);
                suffix = suffix.saturating_add(1);
            }
            names.push(name);
        }
        names
    }

    /// The event of a unique name.
    pub fn event_by_unique(&self, unique: &str) -> Option<&Event> {
        let names = self.unique_event_names();
        names
            .iter()
            .position(|n| n == unique)
            .map(|i| &self.events[i])
    }

    /// Whether the project has repeating instruments or events.
    pub fn has_repeating(&self) -> bool {
        !self.repeating.is_empty()
    }

    /// Whether `form` repeats on the event (as an instrument).
    pub fn repeats_form(&self, event_id: i64, form: &str) -> bool {
        self.repeating
            .iter()
            .any(|r| r.event_id == event_id && r.form == form)
    }

    /// Whether the whole event repeats.
    pub fn repeats_event(&self, event_id: i64) -> bool {
        self.repeating
            .iter()
            .any(|r| r.event_id == event_id && r.form.is_empty())
    }

    /// The events a record's values may sit in: the project's, or the
    /// classic project's single implicit one.
    pub fn event_ids(&self) -> Vec<i64> {
        if self.is_longitudinal {
            self.events.iter().map(|e| e.id).collect()
        } else {
            vec![crate::store::CLASSIC_EVENT]
        }
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

/// What a request changed in the settings, so that only that is written.
#[derive(Debug, Clone, Default)]
pub struct Dirty {
    /// Accounts, counters, system settings, the set of projects.
    pub system: bool,
    /// Projects whose settings (users, roles, DAGs, metadata) changed.
    pub projects: std::collections::BTreeSet<u64>,
}

/// The settings: everything but records and logs (those stay in the
/// database, see [`crate::store`]). Small whatever the projects' size, so
/// they are held in memory and loaded at start.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub next_project_id: u64,
    pub next_group_id: u64,
    pub next_role_id: u64,
    /// The next `event_id` (shared by all projects, as in REDCap).
    #[serde(default)]
    pub next_event_id: i64,
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
    /// Files of this request to write before the commit (doc id, bytes).
    #[serde(skip)]
    docs_to_write: Vec<(u64, axum::body::Bytes)>,
    /// Files of this request to unlink after the commit.
    #[serde(skip)]
    docs_to_remove: Vec<u64>,
    /// Recent API hits per IP (last 60 seconds), for the limiter.
    #[serde(skip)]
    pub hits:
        std::collections::HashMap<std::net::IpAddr, std::collections::VecDeque<std::time::Instant>>,
    #[serde(skip)]
    pending_log: Vec<LogRow>,
    #[serde(skip)]
    dirty: Dirty,
}

impl State {
    /// Marks the settings as changed: they are written when the request
    /// ends.
    pub fn touch(&mut self) {
        self.dirty.system = true;
    }

    /// Marks one project's settings as changed.
    pub fn touch_project(&mut self, pid: u64) {
        self.dirty.projects.insert(pid);
    }

    /// Appends a log row (written when the request ends).
    pub fn log(&mut self, row: LogRow) {
        self.pending_log.push(row);
    }

    /// Stores an uploaded file; its bytes reach the disk before the
    /// database row that refers to it. Answers the new doc id.
    pub fn add_doc(&mut self, doc: Doc, bytes: axum::body::Bytes) -> u64 {
        let id = self.next_doc_id.max(1);
        self.next_doc_id = id + 1;
        self.docs.insert(id, doc);
        self.docs_to_write.push((id, bytes));
        self.touch();
        id
    }

    /// Forgets a stored file; its bytes are unlinked once the commit is
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

/// The settings and the connection that writes.
struct Inner {
    state: State,
    conn: rusqlite::Connection,
    /// `conn.total_changes()` when the checkpointer was last woken.
    changes_at_checkpoint: u64,
}

/// Rows written since the last checkpoint that make the next one worth
/// it (a few MB of WAL). A checkpoint briefly holds back the transactions
/// that begin while it syncs the database file, so small requests do not
/// each wake it: like SQLite's own automatic checkpoint, it runs once the
/// WAL has grown, but on its own thread.
const CHECKPOINT_AFTER_ROWS: u64 = 20_000;

/// The shared, persistent state.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Mutex<Inner>>,
    dir: Arc<PathBuf>,
    /// Idle read-only connections (WAL readers for streamed exports).
    readers: Arc<Mutex<Vec<rusqlite::Connection>>>,
    /// Wakes the checkpointer after a commit (see [`start_checkpointer`]).
    checkpoints: std::sync::mpsc::SyncSender<()>,
}

/// Starts the thread that copies committed WAL frames into the database
/// file (a passive checkpoint) once a commit has grown the WAL, on a
/// connection of its own: the request that committed does not wait for it. Durability does
/// not depend on it (a commit is durable once the WAL is fsynced); the
/// writer still checkpoints itself should the WAL pass 256 MB. The thread
/// ends when the last [`Db`] is dropped.
fn start_checkpointer(path: &Path) -> anyhow::Result<std::sync::mpsc::SyncSender<()>> {
    let conn = crate::store::connect(path)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("sandbox-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!("checkpoint of the sandbox's WAL failed: {e}");
                }
            }
        })
        .context("cannot start the checkpoint thread")?;
    Ok(tx)
}

/// A critical section and a database transaction: the locked settings and
/// the connection inside `BEGIN IMMEDIATE`; changes are made durable by
/// [`Txn::commit`], dropped without it they are rolled back.
pub struct Txn<'a> {
    guard: MutexGuard<'a, Inner>,
    db: &'a Db,
    open: bool,
}

/// A read transaction on its own connection: a snapshot of the database
/// as of the moment it was taken, readable while other requests write.
pub struct Snapshot {
    conn: Option<rusqlite::Connection>,
    readers: Arc<Mutex<Vec<rusqlite::Connection>>>,
}

impl Snapshot {
    /// The connection, inside its read transaction.
    pub fn conn(&self) -> &rusqlite::Connection {
        self.conn.as_ref().expect("a snapshot holds its connection")
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && conn.execute_batch("COMMIT").is_ok()
        {
            let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < 8 {
                pool.push(conn);
            }
        }
    }
}

impl Db {
    /// Opens (or creates) the state in `dir`: `DIR/sandbox.db`, converting
    /// an old `state.json` / `log.jsonl` once.
    pub fn open(dir: &Path) -> anyhow::Result<Db> {
        // The database holds every token in clear, as REDCap's does: only
        // its owner may read it.
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let (conn, state) = crate::store::open(dir)?;
        let checkpoints = start_checkpointer(&dir.join(crate::store::DB_FILE))?;
        Ok(Db {
            inner: Arc::new(Mutex::new(Inner {
                changes_at_checkpoint: conn.total_changes(),
                state,
                conn,
            })),
            dir: Arc::new(dir.to_owned()),
            readers: Arc::new(Mutex::new(Vec::new())),
            checkpoints,
        })
    }

    /// Enters the critical section and begins the write transaction.
    pub fn begin(&self) -> Txn<'_> {
        // A panic in another request must not take the sandbox down with it;
        // a failed request's changes are rolled back and reloaded.
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut txn = Txn {
            guard,
            db: self,
            open: false,
        };
        txn.open = txn.guard.conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        txn
    }

    /// Opens a read snapshot (a WAL reader) of what is committed now.
    pub fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = crate::store::connect(&self.dir.join(crate::store::DB_FILE))?;
                c.pragma_update(None, "query_only", true)?;
                c
            }
        };
        // The read transaction starts at its first read: pin it now.
        conn.execute_batch("BEGIN")?;
        conn.query_row("SELECT count(*) FROM redcap_config", [], |_| Ok(()))?;
        Ok(Snapshot {
            conn: Some(conn),
            readers: self.readers.clone(),
        })
    }
}

impl<'a> Txn<'a> {
    /// The settings.
    pub fn state(&mut self) -> &mut State {
        &mut self.guard.state
    }

    /// The settings and the connection inside the transaction.
    pub fn parts(&mut self) -> (&mut State, &rusqlite::Connection) {
        let inner = &mut *self.guard;
        (&mut inner.state, &inner.conn)
    }

    /// The database, for [`Db::snapshot`].
    pub fn db(&self) -> &'a Db {
        self.db
    }

    /// Commits what the request did so far and begins a new transaction
    /// (still inside the critical section): what follows sees it, and a
    /// snapshot taken now contains it.
    pub fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.guard.conn.execute_batch("COMMIT")?;
        self.open = false;
        self.wake_checkpointer();
        self.unlink_removed_docs();
        self.guard.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.open = true;
        Ok(())
    }

    /// Writes this request's files, log rows and changed settings into the
    /// transaction (files first: their bytes are durable before the rows
    /// that point at them).
    fn flush(&mut self) -> anyhow::Result<()> {
        if !self.open {
            anyhow::bail!("the database transaction could not begin");
        }
        let dir = self.db.dir.clone();
        let inner = &mut *self.guard;
        let state = &mut inner.state;
        if !state.docs_to_write.is_empty() {
            let edocs = dir.join("edocs");
            fs::create_dir_all(&edocs)
                .with_context(|| format!("cannot create {}", edocs.display()))?;
            for (id, bytes) in std::mem::take(&mut state.docs_to_write) {
                write_durably(&doc_path(&dir, id), &bytes)?;
                crate::store::save_doc(&inner.conn, id, state.docs.get(&id))?;
            }
            sync_dir(&edocs)?;
        }
        for id in &state.docs_to_remove {
            crate::store::save_doc(&inner.conn, *id, None)?;
        }
        let rows = std::mem::take(&mut state.pending_log);
        crate::store::append_log(&inner.conn, &rows)?;
        let dirty = std::mem::take(&mut state.dirty);
        if dirty.system || !dirty.projects.is_empty() {
            crate::store::save_state(&inner.conn, state, &dirty)?;
        }
        Ok(())
    }

    /// After a commit: wakes the checkpointer once enough was written
    /// (see [`CHECKPOINT_AFTER_ROWS`]).
    fn wake_checkpointer(&mut self) {
        let changes = self.guard.conn.total_changes();
        if changes.saturating_sub(self.guard.changes_at_checkpoint) >= CHECKPOINT_AFTER_ROWS {
            self.guard.changes_at_checkpoint = changes;
            // Full means a wake-up is already pending.
            let _ = self.db.checkpoints.try_send(());
        }
    }

    fn unlink_removed_docs(&mut self) {
        let dir = self.db.dir.clone();
        for id in std::mem::take(&mut self.guard.state.docs_to_remove) {
            let path = doc_path(&dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // The database no longer refers to it: a leftover file is
                // harmless, so the request still succeeds.
                Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
            }
        }
    }

    /// Makes this request's changes durable in one transaction (COMMIT
    /// fsyncs the WAL: `synchronous=FULL`), then unlinks forgotten files.
    /// On failure everything is rolled back and the settings reloaded.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let result = self
            .flush()
            .and_then(|()| Ok(self.guard.conn.execute_batch("COMMIT")?));
        match result {
            Ok(()) => {
                self.open = false;
                self.wake_checkpointer();
                self.unlink_removed_docs();
                Ok(())
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Drops this request's changes: the transaction is rolled back and the
    /// settings are read back from the database.
    pub fn rollback(&mut self) {
        let inner = &mut *self.guard;
        let _ = inner.conn.execute_batch("ROLLBACK");
        self.open = false;
        // Files written for this request are orphans: the rows pointing at
        // them were never committed.
        for (id, _) in std::mem::take(&mut inner.state.docs_to_write) {
            let _ = fs::remove_file(doc_path(&self.db.dir, id));
        }
        match crate::store::load_state(&inner.conn) {
            Ok(mut fresh) => {
                fresh.hits = std::mem::take(&mut inner.state.hits);
                inner.state = fresh;
            }
            Err(e) => tracing::error!("cannot reload the sandbox's settings: {e:#}"),
        }
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.open {
            self.rollback();
        }
    }
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

/// `Rights` is stored as its REDCap export (bitmask form codes), so the old
/// state file read like REDCap's own JSON (read by the migration).
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

    /// The database holds tokens in clear: only its owner may read it.
    #[test]
    fn the_state_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let db = Db::open(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let mut txn = db.begin();
        txn.state().next_project_id += 1;
        txn.state().touch();
        txn.commit().unwrap();
        assert_eq!(mode(&dir.join(crate::store::DB_FILE)), 0o600);
        drop(db);
        let db = Db::open(&dir).unwrap();
        assert_eq!(db.begin().state().next_project_id, 2);
    }
}
