//! The age file store: the shared contract, plus what only a file can get
//! wrong — wrong keys, damage, power cuts and other processes.

mod contract;

use std::path::Path;
use std::sync::Arc;

use durable::{FileSystem, SimFs};
use secrets::file::{generate_identity, write_identity_file};
use secrets::*;

use contract::{CANARY, meta, name, value};

struct Fixture {
    _dir: tempfile::TempDir,
    store: FileStore,
}

impl std::ops::Deref for Fixture {
    type Target = FileStore;
    fn deref(&self) -> &FileStore {
        &self.store
    }
}

fn options(dir: &Path) -> FileStoreOptions {
    FileStoreOptions {
        path: dir.join("secrets.age"),
        identity: dir.join("identity.txt"),
        keep_versions: 20,
    }
}

async fn new_store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_identity_file(&opts.identity, &generate_identity()).unwrap();
    let store = FileStore::create(opts).unwrap();
    Fixture { _dir: dir, store }
}

contract_suite!(new_store());

#[tokio::test]
async fn the_file_holds_no_plaintext_and_reopens() {
    let f = new_store().await;
    let n = name("redcap/site-a/etl");
    f.put(&n, value(CANARY), meta("test"), Label::Current)
        .await
        .unwrap();
    let dir = f._dir.path();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("identity.txt") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(CANARY),
            "{path:?} holds the value in clear"
        );
        assert!(
            !String::from_utf8_lossy(&bytes).contains("site-a"),
            "{path:?} leaks secret names"
        );
    }
    let again = FileStore::open(options(dir)).unwrap();
    let s = again
        .get(&n, &Selector::Label(Label::Current))
        .await
        .unwrap();
    assert_eq!(s.value.expose(), CANARY);
}

#[tokio::test]
async fn a_wrong_identity_is_named_and_nothing_is_overwritten() {
    let f = new_store().await;
    f.put(&name("a"), value("v"), meta("1"), Label::Current)
        .await
        .unwrap();
    let dir = f._dir.path();
    let before = std::fs::read(dir.join("secrets.age")).unwrap();
    let other = dir.join("other-identity.txt");
    write_identity_file(&other, &generate_identity()).unwrap();
    let wrong = FileStore::open(FileStoreOptions {
        identity: other,
        ..options(dir)
    })
    .unwrap();
    let e = wrong
        .put(&name("a"), value("w"), meta("2"), Label::Current)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::WrongKey { .. }), "{e}");
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1);
    assert!(
        msg.contains("secrets.age") && msg.contains("other-identity.txt") && msg.contains("fix:"),
        "{msg}"
    );
    assert_eq!(std::fs::read(dir.join("secrets.age")).unwrap(), before);
}

#[tokio::test]
async fn a_corrupt_file_is_reported_and_never_overwritten() {
    let f = new_store().await;
    let path = f._dir.path().join("secrets.age");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let e = f
        .put(&name("a"), value("v"), meta("1"), Label::Current)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(
        e.to_string().contains("restore the file from backup"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    std::fs::write(&path, b"not age at all").unwrap();
    assert!(matches!(f.list().await, Err(StoreError::Corrupt { .. })));
}

#[tokio::test]
async fn a_readable_identity_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_identity_file(&opts.identity, &generate_identity()).unwrap();
    FileStore::create(opts.clone()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&opts.identity, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = FileStore::open(opts)
        .err()
        .expect("a world-readable identity must be refused");
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

#[test]
fn create_refuses_to_overwrite_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_identity_file(&opts.identity, &generate_identity()).unwrap();
    FileStore::create(opts.clone()).unwrap();
    assert!(FileStore::create(opts.clone()).is_err());
    assert!(
        write_identity_file(&opts.identity, &generate_identity()).is_err(),
        "identity must not be replaced"
    );
}

#[tokio::test]
async fn old_versions_are_pruned_but_labelled_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileStoreOptions {
        keep_versions: 3,
        ..options(dir.path())
    };
    write_identity_file(&opts.identity, &generate_identity()).unwrap();
    let store = FileStore::create(opts).unwrap();
    let n = name("p");
    let first = store
        .put(&n, value("0"), meta("0"), Label::Current)
        .await
        .unwrap();
    store
        .put(&n, value("p"), meta("p"), Label::Pending)
        .await
        .unwrap();
    for i in 1..6 {
        store
            .put(
                &n,
                value(&i.to_string()),
                meta(&i.to_string()),
                Label::Current,
            )
            .await
            .unwrap();
    }
    let h = store.history(&n).await.unwrap();
    assert_eq!(h.len(), 3, "{h:?}");
    assert!(
        h.iter().any(|i| i.labels == [Label::Pending]),
        "the pending version survives pruning"
    );
    assert!(!h.iter().any(|i| i.version == first));
    assert_eq!(
        h[0].version,
        VersionId("7".into()),
        "version numbers are never reused"
    );
}

/// A power cut after every single write and sync of a `put`: after
/// recovery the store holds either the old document or the new one, never
/// garbage, and an acknowledged put is never lost.
#[tokio::test]
async fn a_power_cut_at_any_point_keeps_the_old_or_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity.txt");
    write_identity_file(&identity, &generate_identity()).unwrap();
    let root = Path::new("/data");
    let opts = FileStoreOptions {
        path: root.join("secrets.age"),
        identity,
        keep_versions: 20,
    };

    let fresh = || {
        let sim = SimFs::new();
        sim.create_dir_all(root).unwrap();
        sim.sync_dir(Path::new("/")).unwrap();
        let store = FileStore::create_with(opts.clone(), Arc::new(sim.clone()), None).unwrap();
        (sim, store)
    };
    let n = name("token");
    // Count the operations one put performs.
    let (sim, store) = fresh();
    store
        .put(&n, value("old"), meta("1"), Label::Current)
        .await
        .unwrap();
    let before = sim.op_count();
    store
        .put(&n, value("new"), meta("2"), Label::Current)
        .await
        .unwrap();
    let ops = sim.op_count() - before;
    assert!(
        ops >= 4,
        "a put writes, syncs, renames and syncs the directory ({ops} ops)"
    );

    for k in 0..=ops {
        let (sim, store) = fresh();
        store
            .put(&n, value("old"), meta("1"), Label::Current)
            .await
            .unwrap();
        sim.crash_after(k);
        let acknowledged = store
            .put(&n, value("new"), meta("2"), Label::Current)
            .await
            .is_ok();
        let after = sim.crash();
        let reopened = FileStore::open_with(opts.clone(), Arc::new(after), None).unwrap();
        let got = reopened
            .get(&n, &Selector::Label(Label::Current))
            .await
            .unwrap();
        let got = got.value.expose();
        assert!(got == "old" || got == "new", "after a cut at op {k}: {got}");
        if acknowledged {
            assert_eq!(
                got, "new",
                "an acknowledged put was lost by a cut at op {k}"
            );
        }
    }
}

/// Two processes writing the same secret at once: every acknowledged write
/// must be a version afterwards. The child processes are this test binary
/// re-run with `WARDEN_TEST_STORE_DIR` set.
#[test]
fn two_processes_writing_concurrently_lose_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    write_identity_file(&opts.identity, &generate_identity()).unwrap();
    FileStore::create(opts.clone()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(&exe)
                .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
                .env("WARDEN_TEST_STORE_DIR", dir.path())
                .env("WARDEN_TEST_WRITER", i.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = FileStore::open(opts).unwrap();
    let h = rt.block_on(store.history(&name("shared"))).unwrap();
    assert_eq!(
        h.len(),
        2 * WRITES_PER_CHILD,
        "{:?}",
        h.iter().map(|i| &i.meta.reason).collect::<Vec<_>>()
    );
}

// Two children together write no more versions than the store keeps (20).
const WRITES_PER_CHILD: usize = 10;

#[test]
fn writer_child() {
    let Ok(dir) = std::env::var("WARDEN_TEST_STORE_DIR") else {
        return;
    };
    let who = std::env::var("WARDEN_TEST_WRITER").unwrap();
    let store = FileStore::open(options(Path::new(&dir))).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..WRITES_PER_CHILD {
        rt.block_on(store.put(
            &name("shared"),
            value("v"),
            meta(&format!("{who}-{i}")),
            Label::Current,
        ))
        .unwrap();
    }
}
