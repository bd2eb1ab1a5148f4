//! The state machine against a simulated disk and a stand-in REDCap: the
//! power is cut after every write of the journal, the escrow and the store,
//! and resuming must end with exactly one valid `current` token, the old
//! one dead, and nothing lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use durable::{FileSystem, SimFs};
use ledger::EntryKind;
use secrets::file::StoreIdentity;
use secrets::{
    FileStore, FileStoreOptions, FingerprintKey, Label, SecretName, SecretStore, SecretValue,
    Selector, VersionMeta,
};

use super::Kind;
use super::*;
use crate::audit::{AuditError, AuditTrail, EntrySink};

const PID: u64 = 14;
const OLD: &str = "0123456789ABCDEF0123456789ABCDEF";
const USER: &str = "svc_site_a";

/// REDCap as far as a rotation sees it: one token per user, regenerated
/// in place (the old one dies at once).
#[derive(Default)]
struct FakeRedcap {
    tokens: Mutex<HashMap<String, (String, u64)>>,
    down: Mutex<bool>,
    /// REDCap's log of Export Project Info: who called it (the token's
    /// user), in order.
    log: Mutex<Vec<String>>,
}

impl FakeRedcap {
    fn with(user: &str, token: &str, pid: u64) -> Arc<FakeRedcap> {
        let r = FakeRedcap::default();
        r.tokens
            .lock()
            .unwrap()
            .insert(user.into(), (token.into(), pid));
        Arc::new(r)
    }
    fn token_of(&self, user: &str) -> String {
        self.tokens.lock().unwrap()[user].0.clone()
    }
}

#[async_trait::async_trait]
impl TokenCheck for FakeRedcap {
    async fn project_of(&self, token: &SecretValue) -> Result<TokenAnswer, String> {
        if *self.down.lock().unwrap() {
            return Err("connection refused".into());
        }
        let tokens = self.tokens.lock().unwrap();
        let found = tokens.iter().find(|(_, (t, _))| t == token.expose());
        if let Some((user, _)) = found {
            self.log.lock().unwrap().push(user.clone());
        }
        Ok(found.map_or(TokenAnswer::Invalid, |(_, (_, p))| TokenAnswer::Project(*p)))
    }
}

/// The sandbox issuer's behaviour: regenerate in place.
struct Regenerate(Arc<FakeRedcap>);

#[async_trait::async_trait]
impl Issuer for Regenerate {
    fn name(&self) -> &'static str {
        "sandbox"
    }
    fn fix(&self) -> String {
        "none".into()
    }
    async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError> {
        let new = durable::random_hex(16).to_uppercase();
        let mut tokens = self.0.tokens.lock().unwrap();
        let entry = tokens
            .get_mut(&target.username)
            .ok_or_else(|| IssueError("no such user".into()))?;
        entry.0 = new.clone();
        Ok(SecretValue::new(new))
    }
}

/// A token of another account (a wrong paste).
struct Fixed(String);

#[async_trait::async_trait]
impl Issuer for Fixed {
    fn name(&self) -> &'static str {
        "manual"
    }
    fn fix(&self) -> String {
        "none".into()
    }
    async fn obtain(&self, _: &Target) -> Result<SecretValue, IssueError> {
        Ok(SecretValue::new(self.0.clone()))
    }
}

/// The ledger: what was acknowledged stays (it is durable on its own).
#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Vec<EntryKind>>>);

#[async_trait::async_trait]
impl EntrySink for Mem {
    async fn append(&self, kind: EntryKind) -> Result<(), AuditError> {
        self.0.lock().unwrap().push(kind);
        Ok(())
    }
}

struct World {
    _tmp: tempfile::TempDir,
    identity_path: PathBuf,
    identity: StoreIdentity,
    fp: FingerprintKey,
    redcap: Arc<FakeRedcap>,
    ledger: Mem,
    hooks: Vec<Box<dyn Hook>>,
    rights: Box<dyn RightsCheck>,
    ownership: Box<dyn OwnershipCheck>,
    pair: MemPair,
}

/// The account status file's active members, as a dual rotation sees
/// them (no gateway to hold or tell).
#[derive(Default)]
struct MemPair(Mutex<HashMap<String, String>>);

#[async_trait::async_trait]
impl Cutover for MemPair {
    async fn hold(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
        Ok("no gateway to hold requests".into())
    }
    async fn release(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
        Ok("no gateway to release".into())
    }
    async fn active(&self, pair: &str) -> Result<String, String> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(pair)
            .cloned()
            .unwrap_or_else(|| pair.to_string()))
    }
    async fn activate(
        &self,
        pair: &str,
        account: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<String, String> {
        self.0
            .lock()
            .unwrap()
            .insert(pair.to_string(), account.to_string());
        Ok(format!("`{account}` is active"))
    }
}

fn name() -> SecretName {
    SecretName::new("redcap/heart/site-a").unwrap()
}

fn opts(identity: &Path) -> FileStoreOptions {
    FileStoreOptions {
        path: "/data/secrets.age".into(),
        identity: identity.to_path_buf(),
        keep_versions: 20,
    }
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let identity_path = tmp.path().join("identity.txt");
        let identity = secrets::file::create_identity_file(&identity_path, None).unwrap();
        World {
            _tmp: tmp,
            identity_path,
            identity,
            fp: FingerprintKey::generate(1),
            redcap: FakeRedcap::with(USER, OLD, PID),
            ledger: Mem::default(),
            hooks: Vec::new(),
            rights: Box::new(NoRightsCheck),
            pair: MemPair::default(),
            ownership: Box::new(NoLogReader("no log reader in this test".into())),
        }
    }

    /// A disk holding the store with the old token as current.
    fn disk(&self, rt: &tokio::runtime::Runtime) -> SimFs {
        let sim = SimFs::new();
        durable::create_dir_all_durable(&sim, Path::new("/data")).unwrap();
        let store =
            FileStore::create_with(opts(&self.identity_path), Arc::new(sim.clone()), None).unwrap();
        rt.block_on(
            store.put(
                &name(),
                SecretValue::new(OLD.into()),
                VersionMeta {
                    operator: "test".into(),
                    at: jiff::Timestamp::now(),
                    reason: "first token".into(),
                    fingerprint: Some(
                        self.fp
                            .fingerprint(&SecretValue::new(OLD.into()))
                            .to_string(),
                    ),
                    rotation_id: None,
                },
                Label::Current,
            ),
        )
        .unwrap();
        sim
    }

    fn store(&self, sim: &SimFs) -> FileStore {
        FileStore::open_with(opts(&self.identity_path), Arc::new(sim.clone()), None).unwrap()
    }

    fn journal(sim: &SimFs) -> Journal {
        Journal::with(Arc::new(sim.clone()), "/data/rotation".into())
    }

    /// Runs `f` with a rotator over `sim`.
    fn with_rotator<T>(
        &self,
        rt: &tokio::runtime::Runtime,
        sim: &SimFs,
        f: impl AsyncFnOnce(&Rotator<'_>) -> T,
    ) -> T {
        let journal = World::journal(sim);
        let escrow = Escrow::new(
            journal.clone(),
            EscrowKey::store_identity(self.identity.clone(), &self.identity_path),
        );
        let store = self.store(sim);
        let trail = AuditTrail::through(Box::new(self.ledger.clone()));
        let clock = crate::clock::SystemClock;
        let rotator = Rotator {
            journal: &journal,
            escrow: &escrow,
            store: &store,
            trail: &trail,
            fingerprints: &self.fp,
            redcap: &*self.redcap,
            rights: &*self.rights,
            ownership: &*self.ownership,
            cutover: &self.pair,
            hooks: &self.hooks,
            clock: &clock,
            operator: "alice".into(),
            say: &|_| {},
        };
        rt.block_on(f(&rotator))
    }

    fn plan(&self) -> Plan {
        Plan {
            account: "heart-site-a".into(),
            username: USER.into(),
            secret: name(),
            project_id: Some(PID),
            issuer: "sandbox".into(),
            reason: "scheduled".into(),
            note: None,
            others: Vec::new(),
            dual: None,
        }
    }

    /// Plan and drive to the end with the regenerating issuer.
    fn rotate(&self, rt: &tokio::runtime::Runtime, sim: &SimFs) -> Result<Rotation, RotationError> {
        let issuer = Regenerate(self.redcap.clone());
        self.with_rotator(rt, sim, async |r| {
            let rot = r.plan(self.plan()).await?;
            r.drive(rot, Some(&issuer)).await
        })
    }

    fn current(&self, rt: &tokio::runtime::Runtime, sim: &SimFs) -> String {
        let s = rt
            .block_on(
                self.store(sim)
                    .get(&name(), &Selector::Label(Label::Current)),
            )
            .unwrap();
        s.value.expose().to_string()
    }

    /// Every file on the disk except the store and the escrows: none may
    /// hold `value`.
    fn assert_nowhere_but_store_and_escrow(&self, sim: &SimFs, value: &str) {
        fn walk(sim: &SimFs, dir: &Path, out: &mut Vec<PathBuf>) {
            for p in sim.list_dir(dir).unwrap_or_default() {
                if sim.read(&p).is_ok() {
                    out.push(p);
                } else {
                    walk(sim, &p, out);
                }
            }
        }
        let mut files = Vec::new();
        walk(sim, Path::new("/data"), &mut files);
        for f in files {
            let n = f.file_name().unwrap().to_string_lossy().to_string();
            if n.contains("secrets.age") || n.ends_with(".escrow.age") {
                continue;
            }
            let bytes = sim.read(&f).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(value), "{} holds a token value", f.display());
        }
    }

    fn states(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.ledger.0.lock().unwrap().iter() {
            if let EntryKind::Rotation {
                rotation_id, to, ..
            } = e
                && rotation_id == id
                && out.last() != Some(to)
            {
                out.push(to.clone());
            }
        }
        out
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const ALL: [&str; 7] = [
    "planned",
    "obtained",
    "verified",
    "stored",
    "switched",
    "old-revoked-verified",
    "done",
];

#[test]
fn a_rotation_runs_to_done_and_records_every_state() {
    let rt = rt();
    let w = World::new();
    let sim = w.disk(&rt);
    let rot = w.rotate(&rt, &sim).unwrap();
    assert_eq!(rot.state, State::Done);
    let new = w.redcap.token_of(USER);
    assert_ne!(new, OLD);
    assert_eq!(w.current(&rt, &sim), new);
    assert_eq!(w.states(&rot.id), ALL);
    assert!(rot.proof.as_deref().unwrap().contains("403"));
    assert_eq!(rot.ownership.as_deref(), Some("unproven"));
    assert!(!sim.exists(&PathBuf::from(format!(
        "/data/rotation/{}.escrow.age",
        rot.id
    ))));
    // The old version is `previous`, with its history; the new one names
    // the rotation.
    let hist = rt.block_on(w.store(&sim).history(&name())).unwrap();
    assert_eq!(hist[0].labels, [Label::Current]);
    assert_eq!(hist[0].meta.rotation_id.as_deref(), Some(rot.id.as_str()));
    assert_eq!(hist[1].labels, [Label::Previous]);
    // Fingerprints only, in the journal and the ledger.
    w.assert_nowhere_but_store_and_escrow(&sim, &new);
    w.assert_nowhere_but_store_and_escrow(&sim, OLD);
    let ledger = format!("{:?}", w.ledger.0.lock().unwrap());
    assert!(!ledger.contains(&new) && !ledger.contains(OLD));
    assert!(ledger.contains(&rot.new_fingerprint.clone().unwrap()));
    // Reading the journal back gives the same record.
    assert_eq!(World::journal(&sim).load(&rot.id).unwrap(), rot);
}

#[test]
fn a_power_cut_after_any_write_is_finished_by_resume() {
    let rt = rt();
    // One clean run to count the writes.
    let (base, total) = {
        let w = World::new();
        let sim = w.disk(&rt);
        let base = sim.op_count();
        w.rotate(&rt, &sim).unwrap();
        (base, sim.op_count() - base)
    };
    assert!(total > 20, "journal, escrow and store writes: {total}");
    let mut recovered = 0;
    for k in 0..=total {
        let w = World::new();
        let sim = w.disk(&rt);
        sim.crash_after(base + k);
        let first = w.rotate(&rt, &sim);
        // Torn writes too: part of what was not synced reaches the disk.
        let after = sim.crash_keeping(if k % 2 == 0 { 0 } else { 7 });
        let open = World::journal(&after).all().unwrap();
        let rot = match open.into_iter().next() {
            // The journal never became durable: nothing started, nothing
            // was regenerated; a new rotation starts from scratch.
            None => {
                assert_eq!(w.redcap.token_of(USER), OLD, "crash at op {k}");
                w.rotate(&rt, &after).unwrap()
            }
            // Once the token is in escrow, resuming must never ask the
            // issuer again (a person may have gone; REDCap would kill the
            // escrowed token): resume without one.
            Some(rot) if rot.state != State::Planned || after.exists(&escrow_of(&rot.id)) => {
                recovered += 1;
                w.with_rotator(&rt, &after, async |r| r.drive(rot, None).await)
                    .unwrap_or_else(|e| panic!("resume after a crash at op {k}: {e}"))
            }
            Some(rot) => {
                let issuer = Regenerate(w.redcap.clone());
                w.with_rotator(&rt, &after, async |r| r.drive(rot, Some(&issuer)).await)
                    .unwrap_or_else(|e| panic!("resume after a crash at op {k}: {e}"))
            }
        };
        assert_eq!(rot.state, State::Done, "crash at op {k}");
        if k >= total {
            assert!(first.is_ok());
        }
        // Exactly one valid token, and it is the store's current one.
        let valid = w.redcap.token_of(USER);
        assert_eq!(w.current(&rt, &after), valid, "crash at op {k}");
        let dead = rt
            .block_on(w.redcap.project_of(&SecretValue::new(OLD.into())))
            .unwrap();
        assert_eq!(dead, TokenAnswer::Invalid);
        // Every state is in the ledger, in order; no escrow left behind.
        assert_eq!(w.states(&rot.id), ALL, "crash at op {k}");
        let left: Vec<_> = after
            .list_dir(Path::new("/data/rotation"))
            .unwrap()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".escrow.age"))
            .collect();
        assert!(left.is_empty(), "crash at op {k}: {left:?}");
        w.assert_nowhere_but_store_and_escrow(&after, &valid);
    }
    assert!(
        recovered > total / 2,
        "{recovered} of {total} resumed past planned"
    );
}

fn escrow_of(id: &str) -> PathBuf {
    PathBuf::from(format!("/data/rotation/{id}.escrow.age"))
}

#[test]
fn a_token_of_another_project_fails_verification_and_stays_in_escrow() {
    let rt = rt();
    let w = World::new();
    let other = "FEDCBA9876543210FEDCBA9876543210";
    w.redcap
        .tokens
        .lock()
        .unwrap()
        .insert("svc_other".into(), (other.into(), PID + 1));
    let sim = w.disk(&rt);
    let rot = w
        .with_rotator(&rt, &sim, async |r| {
            let rot = r.plan(w.plan()).await?;
            r.drive(rot, Some(&Fixed(other.into()))).await
        })
        .unwrap();
    assert_eq!(rot.state, State::Failed);
    assert!(
        rot.detail.contains("opens project 15, not 14"),
        "{}",
        rot.detail
    );
    assert_eq!(w.current(&rt, &sim), OLD, "the store is unchanged");
    // The escrow is age, to the store's identity: `rage -d -i` opens it.
    let sealed = sim.read(&escrow_of(&rot.id)).unwrap();
    let text = String::from_utf8(sealed.clone()).unwrap();
    assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!text.contains(other));
    assert_eq!(w.identity.unseal(&sealed).unwrap().expose(), other);
    // A failed rotation is closed: a new one may start.
    assert!(
        World::journal(&sim)
            .open_for("heart-site-a")
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_second_rotation_of_the_account_is_refused_while_one_is_open() {
    let rt = rt();
    let w = World::new();
    let sim = w.disk(&rt);
    let first = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap();
    let err = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap_err();
    assert!(matches!(err, RotationError::Open { ref id, .. } if *id == first.id));
    assert!(err.to_string().contains("rotate resume"), "{err}");
}

#[test]
fn redcap_down_stops_the_rotation_and_resume_continues() {
    let rt = rt();
    let w = World::new();
    let sim = w.disk(&rt);
    let issuer = Regenerate(w.redcap.clone());
    let rot = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap();
    *w.redcap.down.lock().unwrap() = true;
    let err = w
        .with_rotator(&rt, &sim, async |r| {
            r.drive(rot.clone(), Some(&issuer)).await
        })
        .unwrap_err();
    assert!(matches!(err, RotationError::Redcap { .. }), "{err}");
    let kept = World::journal(&sim).load(&rot.id).unwrap();
    assert_eq!(kept.state, State::Obtained, "the escrowed token is kept");
    *w.redcap.down.lock().unwrap() = false;
    let done = w
        .with_rotator(&rt, &sim, async |r| r.drive(kept, None).await)
        .unwrap();
    assert_eq!(done.state, State::Done);
    assert_eq!(w.current(&rt, &sim), w.redcap.token_of(USER));
}

#[test]
fn abort_after_obtained_stores_the_escrowed_token_as_current() {
    let rt = rt();
    let w = World::new();
    let sim = w.disk(&rt);
    let issuer = Regenerate(w.redcap.clone());
    let rot = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap();
    *w.redcap.down.lock().unwrap() = true;
    let _ = w.with_rotator(&rt, &sim, async |r| {
        r.drive(rot.clone(), Some(&issuer)).await
    });
    let obtained = World::journal(&sim).load(&rot.id).unwrap();
    assert_eq!(obtained.state, State::Obtained);
    let aborted = w
        .with_rotator(&rt, &sim, async |r| {
            r.abort(obtained, "operator stopped it").await
        })
        .unwrap();
    assert_eq!(aborted.state, State::Aborted);
    assert!(
        aborted.detail.contains("is now current"),
        "{}",
        aborted.detail
    );
    assert_eq!(w.current(&rt, &sim), w.redcap.token_of(USER));
    assert!(!sim.exists(&PathBuf::from(format!(
        "/data/rotation/{}.escrow.age",
        rot.id
    ))));
    // Abort before anything was obtained leaves the token alone.
    *w.redcap.down.lock().unwrap() = false;
    let before = w.current(&rt, &sim);
    let planned = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap();
    let aborted = w
        .with_rotator(&rt, &sim, async |r| r.abort(planned, "t").await)
        .unwrap();
    assert_eq!(aborted.state, State::Aborted);
    assert_eq!(w.current(&rt, &sim), before);
    let again = w
        .with_rotator(&rt, &sim, async |r| r.abort(aborted, "t").await)
        .unwrap_err();
    assert!(again.to_string().contains("already ended"), "{again}");
}

#[test]
fn a_torn_journal_line_is_ignored_and_cut_before_the_next_append() {
    let rt = rt();
    let w = World::new();
    let sim = w.disk(&rt);
    let rot = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap();
    let journal = World::journal(&sim);
    let path = journal.path(&rot.id);
    let mut f = sim.open_append(&path).unwrap();
    f.write_all(b"{\"id\":\"torn").unwrap();
    assert_eq!(journal.load(&rot.id).unwrap(), rot);
    let mut next = rot.clone();
    next.detail = "next".into();
    journal.append(&next).unwrap();
    assert_eq!(journal.load(&rot.id).unwrap(), next);
    // Damage in the middle is reported, not skipped.
    let bytes = sim.read(&path).unwrap();
    let mut damaged = b"garbage\n".to_vec();
    damaged.extend_from_slice(&bytes);
    durable::atomic_replace(&sim, &path, &damaged).unwrap();
    let err = journal.load(&rot.id).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

fn target() -> Target {
    Target {
        first: false,
        account: "heart-site-a".into(),
        username: USER.into(),
        project_id: PID,
        role: Role::Single,
    }
}

fn sh(script: &str) -> CommandIssuer {
    CommandIssuer::new(vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "issuer".into(),
        "{account}".into(),
        "{username}".into(),
        "{project_id}".into(),
    ])
}

#[test]
fn the_command_issuer_reads_one_line_and_passes_no_environment() {
    let rt = rt();
    // The placeholders are replaced; cargo's variables (set for every
    // test process) are not passed on.
    let got = rt
        .block_on(sh(r#"test -z "$CARGO_MANIFEST_DIR" && test "$1/$2/$3" = "heart-site-a/svc_site_a/14" && echo ABCDEF0123456789ABCDEF0123456789"#).obtain(&target()))
        .unwrap();
    assert_eq!(got.expose(), "ABCDEF0123456789ABCDEF0123456789");
    for (script, says) in [
        ("exit 3", "failed"),
        ("true", "printed nothing"),
        ("echo A; echo B", "more than one line"),
    ] {
        let err = rt.block_on(sh(script).obtain(&target())).unwrap_err();
        assert!(err.to_string().contains(says), "{script}: {err}");
    }
    let err = rt
        .block_on(CommandIssuer::new(vec!["/nonexistent/regenerate".into()]).obtain(&target()))
        .unwrap_err();
    assert!(err.to_string().contains("cannot run"), "{err}");
}

#[test]
fn the_escrow_identity_of_stores_without_one_is_made_once_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rotation").join(escrow::ESCROW_IDENTITY);
    let first = EscrowKey::own_identity(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let journal = Journal::on_os(tmp.path().join("rotation"));
    let token = SecretValue::new(OLD.into());
    Escrow::new(journal.clone(), first)
        .put("r1", &token)
        .unwrap();
    // Opened again later (another process): the same key reads it.
    let again = Escrow::new(journal, EscrowKey::own_identity(&path).unwrap());
    assert!(again.holds("r1"));
    assert_eq!(again.take("r1").unwrap().expose(), OLD);
    again.remove("r1").unwrap();
    assert!(!again.holds("r1"));
    again.remove("r1").unwrap();
}

/// A hook that fails its first `fail` runs, counting every run.
struct Flaky {
    runs: Arc<Mutex<Vec<Switched>>>,
    fail: usize,
}

#[async_trait::async_trait]
impl Hook for Flaky {
    fn describe(&self) -> String {
        "the test hook".into()
    }
    async fn run(&self, e: &Switched) -> Result<(), String> {
        let mut runs = self.runs.lock().unwrap();
        runs.push(e.clone());
        if runs.len() <= self.fail {
            Err("deploy target unreachable".into())
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_failing_hook_stops_after_the_switch_and_resume_runs_it_again() {
    let rt = rt();
    let mut w = World::new();
    let runs = Arc::new(Mutex::new(Vec::new()));
    w.hooks.push(Box::new(Flaky {
        runs: runs.clone(),
        fail: 1,
    }));
    let sim = w.disk(&rt);
    let err = w.rotate(&rt, &sim).unwrap_err();
    assert!(matches!(err, RotationError::Hook { .. }), "{err}");
    assert!(err.to_string().contains("already current"), "{err}");
    let rot = World::journal(&sim)
        .open_for("heart-site-a")
        .unwrap()
        .unwrap();
    assert_eq!(rot.state, State::Switched);
    assert_eq!(w.current(&rt, &sim), w.redcap.token_of(USER));
    let done = w
        .with_rotator(&rt, &sim, async |r| r.drive(rot, None).await)
        .unwrap();
    assert_eq!(done.state, State::Done);
    assert!(done.detail.contains("rotation complete"));
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), 2);
    // The hook is told the fingerprint, never the token.
    assert_eq!(Some(&runs[1].fingerprint), done.new_fingerprint.as_ref());
    assert!(!format!("{:?}", runs[1]).contains(&w.redcap.token_of(USER)));
}

/// One HTTP answer with `status`, after reading the request; returns the
/// request's bytes.
async fn answer_once(listener: tokio::net::TcpListener, status: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length || n == 0 {
                break;
            }
        }
    }
    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    conn.write_all(reply.as_bytes()).await.unwrap();
    got
}

#[test]
fn the_webhook_posts_the_switch_without_the_token_and_needs_a_2xx() {
    let rt = rt();
    let event = Switched {
        rotation_id: "20261207T000000Z-abcdef".into(),
        account: "heart-site-a".into(),
        username: USER.into(),
        project_id: PID,
        secret: "redcap/heart/site-a".into(),
        fingerprint: "fp1:0123456789abcdef".into(),
    };
    for (status, ok) in [
        ("204 No Content", true),
        ("500 Internal Server Error", false),
    ] {
        let (got, result) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/hooks/redcap", listener.local_addr().unwrap());
            let server = tokio::spawn(answer_once(listener, status));
            let result = WebhookHook::new(&url).run(&event).await;
            (server.await.unwrap(), result)
        });
        assert_eq!(result.is_ok(), ok, "{status}: {result:?}");
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("POST /hooks/redcap "), "{text}");
        assert!(
            text.contains("\"fingerprint\":\"fp1:0123456789abcdef\""),
            "{text}"
        );
        assert!(
            text.contains("\"rotation_id\":\"20261207T000000Z-abcdef\""),
            "{text}"
        );
    }
}

/// Rights that drift until `fixed` is set.
struct Drifting {
    fixed: Arc<Mutex<bool>>,
}

#[async_trait::async_trait]
impl RightsCheck for Drifting {
    async fn verdict(&self, _: &str) -> Result<RightsVerdict, String> {
        Ok(if *self.fixed.lock().unwrap() {
            RightsVerdict::Clean(Vec::new())
        } else {
            RightsVerdict::Drift(vec![
                "CRITICAL mobile_app: held, the profile does not grant it".into(),
            ])
        })
    }
}

#[test]
fn rights_drift_keeps_the_token_in_escrow_until_fixed() {
    let rt = rt();
    let mut w = World::new();
    let fixed = Arc::new(Mutex::new(false));
    w.rights = Box::new(Drifting {
        fixed: fixed.clone(),
    });
    let sim = w.disk(&rt);
    let err = w.rotate(&rt, &sim).unwrap_err();
    assert!(matches!(err, RotationError::RightsDrift { .. }), "{err}");
    assert!(err.to_string().contains("mobile_app"), "{err}");
    let rot = World::journal(&sim)
        .open_for("heart-site-a")
        .unwrap()
        .unwrap();
    assert_eq!(rot.state, State::Obtained);
    assert!(sim.exists(&escrow_of(&rot.id)));
    assert_eq!(
        w.current(&rt, &sim),
        OLD,
        "not stored while the rights drift"
    );
    *fixed.lock().unwrap() = true;
    let done = w
        .with_rotator(&rt, &sim, async |r| r.drive(rot, None).await)
        .unwrap();
    assert_eq!(done.state, State::Done);
    assert_eq!(w.current(&rt, &sim), w.redcap.token_of(USER));
    let ledger = format!("{:?}", w.ledger.0.lock().unwrap());
    assert!(
        ledger.contains("rights and DAG within its profile"),
        "{ledger}"
    );
}

/// A store whose `n`-th operation (counting from 0) fails as an
/// unreachable server would; every other one goes to `inner`.
struct FlakyStore {
    inner: FileStore,
    calls: Mutex<usize>,
    fail_at: Option<usize>,
}

impl FlakyStore {
    fn tick(&self) -> secrets::Result<()> {
        let mut calls = self.calls.lock().unwrap();
        let n = *calls;
        *calls += 1;
        if Some(n) == self.fail_at {
            return Err(secrets::StoreError::Unreachable {
                store: "the flaky test store".into(),
                detail: "connection refused".into(),
                fix: "wait".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SecretStore for FlakyStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put(
        &self,
        name: &SecretName,
        value: SecretValue,
        meta: VersionMeta,
        label: Label,
    ) -> secrets::Result<secrets::VersionId> {
        self.tick()?;
        self.inner.put(name, value, meta, label).await
    }
    async fn get(&self, name: &SecretName, which: &Selector) -> secrets::Result<secrets::Secret> {
        self.tick()?;
        self.inner.get(name, which).await
    }
    async fn move_label(
        &self,
        name: &SecretName,
        label: Label,
        to: &secrets::VersionId,
    ) -> secrets::Result<()> {
        self.tick()?;
        self.inner.move_label(name, label, to).await
    }
    async fn remove_label(&self, name: &SecretName, label: Label) -> secrets::Result<()> {
        self.tick()?;
        self.inner.remove_label(name, label).await
    }
    async fn list(&self) -> secrets::Result<Vec<SecretName>> {
        self.inner.list().await
    }
    async fn history(&self, name: &SecretName) -> secrets::Result<Vec<secrets::VersionInfo>> {
        self.inner.history(name).await
    }
    async fn delete(&self, name: &SecretName) -> secrets::Result<()> {
        self.inner.delete(name).await
    }
    async fn restore(&self, name: &SecretName) -> secrets::Result<()> {
        self.inner.restore(name).await
    }
    async fn check(&self) -> secrets::Result<secrets::CheckReport> {
        self.inner.check().await
    }
}

/// REDCap failing its `n`-th call (counting from 0), up otherwise.
struct FlakyRedcap {
    inner: Arc<FakeRedcap>,
    calls: Mutex<usize>,
    fail_at: usize,
}

#[async_trait::async_trait]
impl TokenCheck for FlakyRedcap {
    async fn project_of(&self, token: &SecretValue) -> Result<TokenAnswer, String> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls - 1
        };
        if n == self.fail_at {
            return Err("REDCap answered 503".into());
        }
        self.inner.project_of(token).await
    }
}

#[test]
fn the_store_or_redcap_unavailable_at_each_step_is_finished_by_resume() {
    let rt = rt();
    // Store operations and REDCap calls of one clean rotation.
    let w = World::new();
    let sim = w.disk(&rt);
    let counting = FlakyStore {
        inner: w.store(&sim),
        calls: Mutex::new(0),
        fail_at: None,
    };
    let run = |w: &World, sim: &SimFs, store: &dyn SecretStore, redcap: &dyn TokenCheck| {
        let journal = World::journal(sim);
        let escrow = Escrow::new(
            journal.clone(),
            EscrowKey::store_identity(w.identity.clone(), &w.identity_path),
        );
        let trail = AuditTrail::through(Box::new(w.ledger.clone()));
        let clock = crate::clock::SystemClock;
        let issuer = Regenerate(w.redcap.clone());
        let r = Rotator {
            journal: &journal,
            escrow: &escrow,
            store,
            trail: &trail,
            fingerprints: &w.fp,
            redcap,
            rights: &NoRightsCheck,
            ownership: &NoLogReader("no log reader in this test".into()),
            cutover: &NoGateway,
            hooks: &[],
            clock: &clock,
            operator: "alice".into(),
            say: &|_| {},
        };
        rt.block_on(async {
            let rot = match journal.open_for("heart-site-a")? {
                Some(rot) => rot,
                None => r.plan(w.plan()).await?,
            };
            r.drive(rot, Some(&issuer)).await
        })
    };
    run(&w, &sim, &counting, &*w.redcap).unwrap();
    let store_ops = *counting.calls.lock().unwrap();
    assert!(store_ops >= 6, "{store_ops}");
    for n in 0..store_ops {
        let w = World::new();
        let sim = w.disk(&rt);
        let flaky = FlakyStore {
            inner: w.store(&sim),
            calls: Mutex::new(0),
            fail_at: Some(n),
        };
        let first = run(&w, &sim, &flaky, &*w.redcap);
        assert!(
            matches!(first, Err(RotationError::Store { .. })),
            "store op {n}: {first:?}"
        );
        let done = run(&w, &sim, &w.store(&sim), &*w.redcap)
            .unwrap_or_else(|e| panic!("resume after store op {n} failed: {e}"));
        assert_eq!(done.state, State::Done, "store op {n}");
        assert_eq!(
            w.current(&rt, &sim),
            w.redcap.token_of(USER),
            "store op {n}"
        );
    }
    // REDCap: the project check at verify, the old token's proof.
    for n in 0..2 {
        let w = World::new();
        let sim = w.disk(&rt);
        let flaky = FlakyRedcap {
            inner: w.redcap.clone(),
            calls: Mutex::new(0),
            fail_at: n,
        };
        let first = run(&w, &sim, &w.store(&sim), &flaky);
        assert!(
            matches!(first, Err(RotationError::Redcap { .. })),
            "REDCap call {n}: {first:?}"
        );
        let done = run(&w, &sim, &w.store(&sim), &*w.redcap)
            .unwrap_or_else(|e| panic!("resume after REDCap call {n} failed: {e}"));
        assert_eq!(done.state, State::Done, "REDCap call {n}");
        assert_eq!(w.current(&rt, &sim), w.redcap.token_of(USER));
        assert_eq!(w.states(&done.id), ALL, "REDCap call {n}");
    }
}

// Dual-account mode: `heart-site-a` (svc_site_a, active: the pair's key)
// and `heart-site-a-2` (svc_site_a2, standby) alternate.

const USER2: &str = "svc_site_a2";
const OLD2: &str = "ABCDEF0123456789ABCDEF0123456789";
const PAIR: &str = "heart-site-a";
const STANDBY: &str = "heart-site-a-2";

fn name2() -> SecretName {
    SecretName::new("redcap/heart/site-a-2").unwrap()
}

const DUAL: [&str; 10] = [
    "planned",
    "obtained",
    "verified",
    "stored",
    "switched",
    "second-obtained",
    "second-verified",
    "second-stored",
    "old-revoked-verified",
    "done",
];

impl World {
    /// A world with the pair's second member in REDCap.
    fn dual() -> World {
        let mut w = World::new();
        // REDCap's log, read as the study's log reader: ownership is proved.
        w.ownership = Box::new(FakeLog(w.redcap.clone()));
        w.redcap
            .tokens
            .lock()
            .unwrap()
            .insert(USER2.into(), (OLD2.into(), PID));
        w
    }

    /// A disk with both members' tokens current.
    fn dual_disk(&self, rt: &tokio::runtime::Runtime) -> SimFs {
        let sim = self.disk(rt);
        let value = SecretValue::new(OLD2.into());
        rt.block_on(self.store(&sim).put(
            &name2(),
            value.clone(),
            VersionMeta {
                operator: "test".into(),
                at: jiff::Timestamp::now(),
                reason: "first token".into(),
                fingerprint: Some(self.fp.fingerprint(&value).to_string()),
                rotation_id: None,
            },
            Label::Current,
        ))
        .unwrap();
        sim
    }

    /// The pair's rotation: the standby first.
    fn dual_plan(&self) -> Plan {
        Plan {
            account: STANDBY.into(),
            username: USER2.into(),
            secret: name2(),
            project_id: Some(PID),
            issuer: "sandbox".into(),
            reason: "scheduled".into(),
            note: None,
            others: Vec::new(),
            dual: Some(DualPlan {
                pair: PAIR.into(),
                account: PAIR.into(),
                username: USER.into(),
                secret: name(),
            }),
        }
    }

    fn current_of(&self, rt: &tokio::runtime::Runtime, sim: &SimFs, n: &SecretName) -> String {
        let s = rt
            .block_on(self.store(sim).get(n, &Selector::Label(Label::Current)))
            .unwrap();
        s.value.expose().to_string()
    }

    /// Plans (unless one is open) and drives with the regenerating issuer.
    fn rotate_dual(
        &self,
        rt: &tokio::runtime::Runtime,
        sim: &SimFs,
    ) -> Result<Rotation, RotationError> {
        let issuer = Regenerate(self.redcap.clone());
        self.with_rotator(rt, sim, async |r| {
            let rot = match r.journal.open_for(PAIR)? {
                Some(rot) => rot,
                None => r.plan(self.dual_plan()).await?,
            };
            r.drive(rot, Some(&issuer)).await
        })
    }

    /// What a finished dual rotation must show: both tokens regenerated
    /// and current, both old ones dead, the standby active, every state
    /// in the ledger in order, no escrow left, no value outside the store.
    /// Until ownership is proved by log correlation the rotation stops at
    /// old-revoked-verified, refusing `done` with the reason.
    fn assert_dual_finished(
        &self,
        rt: &tokio::runtime::Runtime,
        sim: &SimFs,
        result: Result<Rotation, RotationError>,
        what: &str,
    ) {
        let rot = match result {
            Ok(rot) => {
                assert_eq!(rot.state, State::Done, "{what}");
                assert!(ownership_proved(rot.ownership.as_deref()), "{what}");
                rot
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("does not finish without proof") && msg.contains("rotate abort"),
                    "{what}: {msg}"
                );
                let rot = World::journal(sim).open_for(PAIR).unwrap().unwrap();
                assert_eq!(rot.state, State::OldRevokedVerified, "{what}");
                assert!(!ownership_proved(rot.ownership.as_deref()), "{what}");
                rot
            }
        };
        let (new1, new2) = (self.redcap.token_of(USER), self.redcap.token_of(USER2));
        assert!(new1 != OLD && new2 != OLD2, "{what}: both regenerated");
        assert_eq!(self.current_of(rt, sim, &name()), new1, "{what}");
        assert_eq!(self.current_of(rt, sim, &name2()), new2, "{what}");
        for old in [OLD, OLD2] {
            let answer = rt
                .block_on(self.redcap.project_of(&SecretValue::new(old.into())))
                .unwrap();
            assert_eq!(answer, TokenAnswer::Invalid, "{what}");
        }
        assert_eq!(
            self.pair.0.lock().unwrap().get(PAIR).map(String::as_str),
            Some(STANDBY),
            "{what}: the standby serves"
        );
        let states = self.states(&rot.id);
        let expected = if rot.state == State::Done {
            &DUAL[..]
        } else {
            &DUAL[..9]
        };
        assert_eq!(states, expected, "{what}");
        let d = rot.dual.as_ref().unwrap();
        assert!(d.second_leg, "{what}");
        assert_eq!(d.first.account, STANDBY);
        assert_eq!(rot.account, PAIR);
        assert_eq!(
            rot.proof
                .as_deref()
                .unwrap()
                .matches("invalid-token answer")
                .count(),
            2,
            "{what}: both old tokens proved dead"
        );
        let left: Vec<_> = sim
            .list_dir(Path::new("/data/rotation"))
            .unwrap()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".escrow.age"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?}");
        for v in [OLD, OLD2, new1.as_str(), new2.as_str()] {
            self.assert_nowhere_but_store_and_escrow(sim, v);
        }
        let ledger = format!("{:?}", self.ledger.0.lock().unwrap());
        for v in [OLD, OLD2, new1.as_str(), new2.as_str()] {
            assert!(!ledger.contains(v), "{what}: a value in the ledger");
        }
    }
}

#[test]
fn a_dual_rotation_regenerates_the_standby_switches_then_regenerates_the_other() {
    let rt = rt();
    let w = World::dual();
    let sim = w.dual_disk(&rt);
    // The standby is regenerated while the active member serves (its
    // token still works, nothing switched yet); the other member only
    // once the pair has switched to the standby.
    struct Watch<'w>(&'w World, Mutex<Vec<String>>);
    #[async_trait::async_trait]
    impl Issuer for Watch<'_> {
        fn name(&self) -> &'static str {
            "sandbox"
        }
        fn fix(&self) -> String {
            "none".into()
        }
        async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError> {
            let active = self.0.pair.0.lock().unwrap().get(PAIR).cloned();
            let old_works = self.0.redcap.token_of(USER) == OLD;
            self.1
                .lock()
                .unwrap()
                .push(format!("{} {active:?} {old_works}", target.username));
            Regenerate(self.0.redcap.clone()).obtain(target).await
        }
    }
    let issuer = Watch(&w, Mutex::new(Vec::new()));
    let rot = w.with_rotator(&rt, &sim, async |r| {
        let rot = r.plan(w.dual_plan()).await?;
        assert_eq!(rot.mode, "dual");
        assert!(rot.detail.contains("dual-account mode"), "{}", rot.detail);
        r.drive(rot, Some(&issuer)).await
    });
    assert_eq!(
        *issuer.1.lock().unwrap(),
        [
            format!("{USER2} None true"),
            format!("{USER} Some(\"{STANDBY}\") true"),
        ]
    );
    w.assert_dual_finished(&rt, &sim, rot, "a clean run");
    // Both members' rotations are in `rotate status`'s view.
    let all = World::journal(&sim).all().unwrap();
    assert!(all[0].concerns(PAIR) && all[0].concerns(STANDBY));
    // Regenerations for reconcile: one per member.
    let regens = World::journal(&sim).regenerations().unwrap();
    let users: Vec<&str> = regens.iter().map(|r| r.username.as_str()).collect();
    assert_eq!(users, [USER2, USER]);
    assert!(regens[1].from >= regens[0].until);
}

#[test]
fn a_dual_rotation_without_ownership_proof_can_be_ended_by_abort() {
    let rt = rt();
    let mut w = World::dual();
    w.ownership = Box::new(NoLogReader("no log reader in this test".into()));
    let sim = w.dual_disk(&rt);
    let first = w.rotate_dual(&rt, &sim);
    if first.is_ok() {
        // Ownership was proved: nothing to end.
        return;
    }
    let open = World::journal(&sim).open_for(STANDBY).unwrap().unwrap();
    assert_eq!(open.state, State::OldRevokedVerified);
    // A second rotation of either member is refused meanwhile.
    let err = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.dual_plan()).await)
        .unwrap_err();
    assert!(matches!(err, RotationError::Open { .. }), "{err}");
    let ended = w
        .with_rotator(&rt, &sim, async |r| {
            r.abort(open, "reviewed REDCap's log").await
        })
        .unwrap();
    assert_eq!(ended.state, State::Aborted);
    assert!(
        ended.detail.contains("without proof of ownership"),
        "{}",
        ended.detail
    );
    assert!(World::journal(&sim).open_for(PAIR).unwrap().is_none());
}

#[test]
fn a_power_cut_after_any_write_of_a_dual_rotation_is_finished_by_resume() {
    let rt = rt();
    let (base, total) = {
        let w = World::dual();
        let sim = w.dual_disk(&rt);
        let base = sim.op_count();
        let _ = w.rotate_dual(&rt, &sim);
        (base, sim.op_count() - base)
    };
    assert!(total > 30, "journal, escrow and store writes: {total}");
    for k in 0..=total {
        let w = World::dual();
        let sim = w.dual_disk(&rt);
        sim.crash_after(base + k);
        let _ = w.rotate_dual(&rt, &sim);
        let after = sim.crash_keeping(if k % 2 == 0 { 0 } else { 7 });
        let rot = World::journal(&after).all().unwrap().into_iter().next();
        let result = match rot {
            None => {
                assert_eq!(w.redcap.token_of(USER2), OLD2, "crash at op {k}");
                w.rotate_dual(&rt, &after)
            }
            // The issuer is given (the second member may still need it),
            // but a token in escrow is never asked for again: if it were,
            // REDCap would have killed the escrowed one and verification
            // would fail.
            Some(rot) => {
                let issuer = Regenerate(w.redcap.clone());
                w.with_rotator(&rt, &after, async |r| r.drive(rot, Some(&issuer)).await)
            }
        };
        w.assert_dual_finished(&rt, &after, result, &format!("crash at op {k}"));
    }
}

#[test]
fn the_store_or_redcap_unavailable_at_each_step_of_a_dual_rotation_is_finished_by_resume() {
    let rt = rt();
    let run = |w: &World,
               sim: &SimFs,
               store: &dyn SecretStore,
               redcap: &dyn TokenCheck,
               issuer: &dyn Issuer| {
        let journal = World::journal(sim);
        let escrow = Escrow::new(
            journal.clone(),
            EscrowKey::store_identity(w.identity.clone(), &w.identity_path),
        );
        let trail = AuditTrail::through(Box::new(w.ledger.clone()));
        let clock = crate::clock::SystemClock;
        let r = Rotator {
            journal: &journal,
            escrow: &escrow,
            store,
            trail: &trail,
            fingerprints: &w.fp,
            redcap,
            rights: &NoRightsCheck,
            ownership: &*w.ownership,
            cutover: &w.pair,
            hooks: &[],
            clock: &clock,
            operator: "alice".into(),
            say: &|_| {},
        };
        rt.block_on(async {
            let rot = match journal.open_for(PAIR)? {
                Some(rot) => rot,
                None => r.plan(w.dual_plan()).await?,
            };
            r.drive(rot, Some(issuer)).await
        })
    };
    let w = World::dual();
    let sim = w.dual_disk(&rt);
    let counting = FlakyStore {
        inner: w.store(&sim),
        calls: Mutex::new(0),
        fail_at: None,
    };
    let _ = run(
        &w,
        &sim,
        &counting,
        &*w.redcap,
        &Regenerate(w.redcap.clone()),
    );
    let store_ops = *counting.calls.lock().unwrap();
    assert!(store_ops >= 12, "{store_ops}");
    for n in 0..store_ops {
        let w = World::dual();
        let sim = w.dual_disk(&rt);
        let flaky = FlakyStore {
            inner: w.store(&sim),
            calls: Mutex::new(0),
            fail_at: Some(n),
        };
        let first = run(&w, &sim, &flaky, &*w.redcap, &Regenerate(w.redcap.clone()));
        assert!(
            matches!(first, Err(RotationError::Store { .. })),
            "store op {n}: {first:?}"
        );
        assert!(
            first.unwrap_err().to_string().contains("rotate resume"),
            "store op {n}: the error says how to continue"
        );
        let done = run(
            &w,
            &sim,
            &w.store(&sim),
            &*w.redcap,
            &Regenerate(w.redcap.clone()),
        );
        w.assert_dual_finished(&rt, &sim, done, &format!("store op {n}"));
    }
    // REDCap: each leg's project check and both old tokens' proofs.
    for n in 0..4 {
        let w = World::dual();
        let sim = w.dual_disk(&rt);
        let flaky = FlakyRedcap {
            inner: w.redcap.clone(),
            calls: Mutex::new(0),
            fail_at: n,
        };
        let first = run(
            &w,
            &sim,
            &w.store(&sim),
            &flaky,
            &Regenerate(w.redcap.clone()),
        );
        assert!(
            matches!(first, Err(RotationError::Redcap { .. })),
            "REDCap call {n}: {first:?}"
        );
        let done = run(
            &w,
            &sim,
            &w.store(&sim),
            &*w.redcap,
            &Regenerate(w.redcap.clone()),
        );
        w.assert_dual_finished(&rt, &sim, done, &format!("REDCap call {n}"));
    }
    // The issuer (the sandbox's admin endpoint) unreachable for each leg:
    // nothing regenerated, resume asks again.
    for leg in 0..2 {
        let w = World::dual();
        let sim = w.dual_disk(&rt);
        let down = Down {
            inner: Regenerate(w.redcap.clone()),
            calls: Mutex::new(0),
            fail_at: leg,
        };
        let first = run(&w, &sim, &w.store(&sim), &*w.redcap, &down);
        let err = first.unwrap_err();
        assert!(
            matches!(err, RotationError::Issuer { .. }),
            "leg {leg}: {err}"
        );
        assert!(err.to_string().contains("rotate resume"), "{err}");
        let open = World::journal(&sim).open_for(PAIR).unwrap().unwrap();
        assert_eq!(
            open.state,
            if leg == 0 {
                State::Planned
            } else {
                State::Switched
            },
            "leg {leg}"
        );
        let done = run(
            &w,
            &sim,
            &w.store(&sim),
            &*w.redcap,
            &Regenerate(w.redcap.clone()),
        );
        w.assert_dual_finished(&rt, &sim, done, &format!("issuer down in leg {leg}"));
    }
}

/// An issuer whose `n`-th call fails as an unreachable sandbox would.
struct Down {
    inner: Regenerate,
    calls: Mutex<usize>,
    fail_at: usize,
}

#[async_trait::async_trait]
impl Issuer for Down {
    fn name(&self) -> &'static str {
        "sandbox"
    }
    fn fix(&self) -> String {
        "check that the sandbox answers".into()
    }
    async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls - 1
        };
        if n == self.fail_at {
            return Err(IssueError("connection refused".into()));
        }
        self.inner.obtain(target).await
    }
}

#[test]
fn a_token_of_the_wrong_account_is_refused_and_its_escrow_kept() {
    let rt = rt();
    // Single mode: another account of the project pasted.
    let w = World::dual();
    let sim = w.dual_disk(&rt);
    let mut plan = w.plan();
    plan.others = vec![("heart-other".into(), name2())];
    let rot = w
        .with_rotator(&rt, &sim, async |r| {
            let rot = r.plan(plan).await?;
            r.drive(rot, Some(&Fixed(OLD2.into()))).await
        })
        .unwrap();
    assert_eq!(rot.state, State::Failed);
    assert!(
        rot.detail
            .contains("current token of account `heart-other`"),
        "{}",
        rot.detail
    );
    assert_eq!(w.current(&rt, &sim), OLD, "nothing stored");
    let sealed = sim.read(&escrow_of(&rot.id)).unwrap();
    assert_eq!(w.identity.unseal(&sealed).unwrap().expose(), OLD2);
    assert!(!rot.detail.contains(OLD2));

    // Dual mode: the other member's token pasted for the standby.
    let w = World::dual();
    let sim = w.dual_disk(&rt);
    let rot = w
        .with_rotator(&rt, &sim, async |r| {
            let rot = r.plan(w.dual_plan()).await?;
            r.drive(rot, Some(&Fixed(OLD.into()))).await
        })
        .unwrap();
    assert_eq!(rot.state, State::Failed);
    assert!(
        rot.detail
            .contains("current token of account `heart-site-a`"),
        "{}",
        rot.detail
    );
    assert_eq!(w.current_of(&rt, &sim, &name2()), OLD2, "nothing stored");
    assert_eq!(w.current(&rt, &sim), OLD);
    assert!(w.pair.0.lock().unwrap().is_empty(), "no switch");
    let sealed = sim.read(&escrow_of(&rot.id)).unwrap();
    assert_eq!(w.identity.unseal(&sealed).unwrap().expose(), OLD);

    // Dual mode, second leg: the first member's new token pasted for the
    // second.
    let w = World::dual();
    let sim = w.dual_disk(&rt);
    struct FirstThenItsToken(Arc<FakeRedcap>, Mutex<bool>);
    #[async_trait::async_trait]
    impl Issuer for FirstThenItsToken {
        fn name(&self) -> &'static str {
            "manual"
        }
        fn fix(&self) -> String {
            "none".into()
        }
        async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError> {
            let again = std::mem::replace(&mut *self.1.lock().unwrap(), true);
            if again {
                return Ok(SecretValue::new(self.0.token_of(USER2)));
            }
            Regenerate(self.0.clone()).obtain(target).await
        }
    }
    let issuer = FirstThenItsToken(w.redcap.clone(), Mutex::new(false));
    let rot = w
        .with_rotator(&rt, &sim, async |r| {
            let rot = r.plan(w.dual_plan()).await?;
            r.drive(rot, Some(&issuer)).await
        })
        .unwrap();
    assert_eq!(rot.state, State::Failed);
    assert!(
        rot.detail
            .contains("current token of account `heart-site-a-2`"),
        "{}",
        rot.detail
    );
    assert_eq!(
        w.current(&rt, &sim),
        OLD,
        "the second member's store is unchanged"
    );
    assert_eq!(
        w.current_of(&rt, &sim, &name2()),
        w.redcap.token_of(USER2),
        "the first member serves with its new token"
    );
    assert!(sim.exists(&escrow_of(&format!("{}-second", rot.id))));
}

/// The study's log reader over the stand-in REDCap's log: every row is
/// of the same minute, so only the count before and after tells a new
/// call from an earlier one.
struct FakeLog(Arc<FakeRedcap>);

#[async_trait::async_trait]
impl OwnershipCheck for FakeLog {
    async fn calls(&self, username: Option<&str>, _: jiff::Timestamp) -> Result<LogCalls, String> {
        Ok(LogCalls::Rows(
            self.0
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|u| username.is_none_or(|w| w == u.as_str()))
                .map(|u| LoggedCall {
                    username: u.clone(),
                    row: format!(
                        "2026-12-07 09:30 (UTC) {u}: Manage/Design Export project information (API)"
                    ),
                })
                .collect(),
        ))
    }
}

#[test]
fn ownership_is_proved_by_the_call_in_redcaps_log_under_the_accounts_username() {
    let rt = rt();
    let mut w = World::new();
    w.ownership = Box::new(FakeLog(w.redcap.clone()));
    let sim = w.disk(&rt);
    // An earlier call in the same minute (the old token's) is in the log
    // before verification: it must not count as the proof.
    rt.block_on(w.redcap.project_of(&SecretValue::new(OLD.into())))
        .unwrap();
    let rot = w.rotate(&rt, &sim).unwrap();
    assert_eq!(rot.state, State::Done);
    assert_eq!(rot.ownership.as_deref(), Some("proved"));
    let evidence = rot.ownership_evidence.clone().unwrap();
    assert!(
        evidence.contains("2026-12-07 09:30") && evidence.contains(USER),
        "{evidence}"
    );
    let ledger = format!("{:?}", w.ledger.0.lock().unwrap());
    assert!(
        ledger.contains("ownership: proved (REDCap's log: "),
        "{ledger}"
    );
}

#[test]
fn a_token_of_another_user_of_the_project_is_refuted_by_the_log_and_kept_in_escrow() {
    let rt = rt();
    let mut w = World::new();
    w.ownership = Box::new(FakeLog(w.redcap.clone()));
    // Another account of the same project: Export Project Info cannot
    // tell its token from this account's.
    let other = "FEDCBA9876543210FEDCBA9876543210";
    w.redcap
        .tokens
        .lock()
        .unwrap()
        .insert("svc_other".into(), (other.into(), PID));
    let sim = w.disk(&rt);
    let rot = w
        .with_rotator(&rt, &sim, async |r| {
            let rot = r.plan(w.plan()).await?;
            r.drive(rot, Some(&Fixed(other.into()))).await
        })
        .unwrap();
    assert_eq!(rot.state, State::Failed, "{}", rot.detail);
    assert_eq!(rot.ownership.as_deref(), Some("refuted"));
    assert!(
        rot.detail
            .contains("no Export Project Info by `svc_site_a`")
            && rot.detail.contains("appears under `svc_other` instead"),
        "{}",
        rot.detail
    );
    assert_eq!(w.current(&rt, &sim), OLD, "the store is unchanged");
    let sealed = sim.read(&escrow_of(&rot.id)).unwrap();
    assert_eq!(w.identity.unseal(&sealed).unwrap().expose(), other);
}

#[test]
fn an_enrolment_obtains_the_first_token_and_ends_done_without_an_old_one() {
    let rt = rt();
    let mut w = World::new();
    w.ownership = Box::new(FakeLog(w.redcap.clone()));
    // A store without the account's secret.
    let sim = SimFs::new();
    durable::create_dir_all_durable(&sim, Path::new("/data")).unwrap();
    FileStore::create_with(opts(&w.identity_path), Arc::new(sim.clone()), None).unwrap();
    // A plain rotation has nothing to replace, and says how to start.
    let refused = w
        .with_rotator(&rt, &sim, async |r| r.plan(w.plan()).await)
        .unwrap_err();
    assert!(
        refused.to_string().contains("accounts enroll heart-site-a"),
        "{refused}"
    );
    let issuer = Regenerate(w.redcap.clone());
    let rot = w
        .with_rotator(&rt, &sim, async |r| {
            let rot = r.plan_enrol(w.plan()).await?;
            r.drive(rot, Some(&issuer)).await
        })
        .unwrap();
    assert_eq!(rot.state, State::Done, "{}", rot.detail);
    assert_eq!(rot.kind, Kind::Enrol);
    assert_eq!(
        w.states(&rot.id),
        [
            "planned", "obtained", "verified", "stored", "switched", "done"
        ]
    );
    assert_eq!(w.current(&rt, &sim), w.redcap.token_of(USER));
    assert_eq!(rot.ownership.as_deref(), Some("proved"));
    assert!(rot.proof.is_none(), "no old token to prove dead");
    let ledger = format!("{:?}", w.ledger.0.lock().unwrap());
    assert!(
        ledger.contains("first token of the account (enrolment): no old token"),
        "{ledger}"
    );
    // The journal reads back as an enrolment; the next one is a rotation.
    let back = World::journal(&sim).load(&rot.id).unwrap();
    assert_eq!(back.kind, Kind::Enrol);
    let next = w.rotate(&rt, &sim).unwrap();
    assert_eq!(next.kind, Kind::Rotation);
    assert_eq!(next.state, State::Done);
}

/// The `manual` issuer's regeneration steps say what the gateway does
/// meanwhile for each mode: holds the requests (single), keeps serving with
/// the active member (dual, standby), already serves with the regenerated
/// standby (dual, second leg) — never "holds" in dual mode.
#[test]
fn manual_steps_say_what_the_gateway_does_in_each_mode() {
    let url = "https://redcap.example.org/api/";
    let single = issuer::manual_steps(url, USER, "7", &Role::Single).join("\n");
    assert!(
        single.contains("the gateway holds the account's requests"),
        "{single}"
    );
    let standby = issuer::manual_steps(
        url,
        USER,
        "7",
        &Role::Standby {
            active: "heart-b".into(),
        },
    )
    .join("\n");
    assert!(!standby.contains("holds"), "{standby}");
    assert!(
        standby.contains("standby")
            && standby.contains("keeps serving with the active member `heart-b`"),
        "{standby}"
    );
    let second = issuer::manual_steps(
        url,
        USER,
        "7",
        &Role::PreviousActive {
            serving: "heart-a".into(),
        },
    )
    .join("\n");
    assert!(!second.contains("holds"), "{second}");
    assert!(
        second.contains("was the pair's active member")
            && second.contains("already serves with `heart-a`"),
        "{second}"
    );
}
