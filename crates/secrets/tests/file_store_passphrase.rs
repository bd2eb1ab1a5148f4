//! The age file store with a passphrase-protected identity: the shared
//! contract, unchanged, plus what only a passphrase can get wrong — a wrong
//! or missing passphrase, a readable passphrase file, and a change of
//! passphrase cut short by a power failure.

mod contract;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use durable::{FileSystem, SimFs};
use secrets::file::{
    ExposeSecret, PassphraseSource, PrivateOsFs, SecretString, create_identity_file,
    identity_is_protected, load_identity, replace_identity_file,
};
use secrets::*;

use contract::{CANARY, meta, name, value};

const PASSPHRASE: &str = "correct horse battery staple";

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

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// A 0600 passphrase file holding `passphrase`.
fn passphrase_file(dir: &Path, passphrase: &str) -> PathBuf {
    let path = dir.join("passphrase");
    std::fs::write(&path, format!("{passphrase}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A new store whose identity is protected, opened through a passphrase
/// file as `serve` opens it.
async fn new_store() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path());
    create_identity_file(&opts.identity, Some(&secret(PASSPHRASE))).unwrap();
    let file = passphrase_file(dir.path(), PASSPHRASE);
    let store = FileStore::create_unlocking(opts, &[PassphraseSource::File(file)]).unwrap();
    Fixture { _dir: dir, store }
}

contract_suite!(new_store());

#[tokio::test]
async fn the_identity_holds_no_key_in_clear_and_reopens_with_the_passphrase() {
    let f = new_store().await;
    let dir = f._dir.path();
    f.put(&name("redcap/a"), value(CANARY), meta("t"), Label::Current)
        .await
        .unwrap();
    let text = std::fs::read_to_string(dir.join("identity.txt")).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains("AGE-SECRET-KEY"), "{text}");
    assert!(identity_is_protected(&dir.join("identity.txt")).unwrap());
    let mode = std::fs::metadata(dir.join("identity.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = FileStore::open_unlocking(
        options(dir),
        &[PassphraseSource::Given {
            passphrase: secret(PASSPHRASE),
            from: "typed".into(),
        }],
    )
    .unwrap();
    let s = again
        .get(&name("redcap/a"), &Selector::Label(Label::Current))
        .await
        .unwrap();
    assert_eq!(s.value.expose(), CANARY);
    let report = again.check().await.unwrap();
    assert!(
        report
            .items
            .iter()
            .any(|i| i.what.contains("is passphrase-protected")),
        "{report:?}"
    );
}

/// The scrypt cost is fixed, not measured on a machine that may be busy:
/// the stanza of every protection asks for 2^18.
#[tokio::test]
async fn the_passphrase_protection_costs_two_to_the_eighteen_whatever_the_load() {
    use base64::Engine;
    let f = new_store().await;
    let text = std::fs::read_to_string(f._dir.path().join("identity.txt")).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    let stanza = header
        .lines()
        .find(|l| l.starts_with("-> scrypt "))
        .unwrap_or_else(|| panic!("no scrypt stanza in {header:?}"));
    assert_eq!(stanza.rsplit(' ').next(), Some("18"), "{stanza}");
}

#[tokio::test]
async fn a_wrong_or_missing_passphrase_is_one_line_naming_store_and_fix() {
    let f = new_store().await;
    let dir = f._dir.path();
    let before = std::fs::read(dir.join("secrets.age")).unwrap();
    let wrong = passphrase_file(dir, "not the passphrase at all");
    let e = FileStore::open_unlocking(options(dir), &[PassphraseSource::File(wrong.clone())])
        .err()
        .expect("a wrong passphrase must be refused");
    assert!(matches!(e, StoreError::WrongPassphrase { .. }), "{e}");
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    for needle in ["secrets.age", "identity.txt", "passphrase_file", "fix:"] {
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert!(!msg.contains("not the passphrase"), "{msg}");

    let e = FileStore::open(options(dir))
        .err()
        .expect("a protected identity needs a passphrase");
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(
        msg.contains("passphrase-protected") && msg.contains("passphrase_file"),
        "{msg}"
    );
    // A systemd credential that is absent is skipped, not an error of its own.
    let e = FileStore::open_unlocking(
        options(dir),
        &[PassphraseSource::Credential(dir.join("no-such-credential"))],
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("no passphrase was given"), "{e}");
    assert_eq!(std::fs::read(dir.join("secrets.age")).unwrap(), before);
}

#[tokio::test]
async fn a_passphrase_file_others_can_read_is_refused() {
    let f = new_store().await;
    let dir = f._dir.path();
    let file = passphrase_file(dir, PASSPHRASE);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = FileStore::open_unlocking(options(dir), &[PassphraseSource::File(file)])
        .err()
        .expect("a group-readable passphrase file must be refused");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    assert!(!e.to_string().contains(PASSPHRASE), "{e}");
}

#[tokio::test]
async fn a_systemd_credential_unlocks_the_identity() {
    let f = new_store().await;
    let dir = f._dir.path();
    let creds = dir.join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let cred = creds.join(secrets::file::PASSPHRASE_CREDENTIAL);
    std::fs::write(&cred, PASSPHRASE).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
    let store =
        FileStore::open_unlocking(options(dir), &[PassphraseSource::Credential(cred)]).unwrap();
    assert!(store.identity().is_protected());
    store.list().await.unwrap();
}

/// Changing, removing and adding the passphrase keeps the key: the store
/// opens after each change with the new form and only with it.
#[tokio::test]
async fn the_passphrase_is_changed_removed_and_added_without_touching_the_store() {
    let f = new_store().await;
    let dir = f._dir.path();
    let path = dir.join("identity.txt");
    let store_bytes = std::fs::read(dir.join("secrets.age")).unwrap();
    let identity = f.identity().clone();
    let given = |p: &str| PassphraseSource::Given {
        passphrase: secret(p),
        from: "given".into(),
    };

    replace_identity_file(
        &PrivateOsFs,
        &path,
        &identity,
        Some(&secret("a second passphrase")),
    )
    .unwrap();
    assert!(matches!(
        load_identity(&path, "s", &[given(PASSPHRASE)]),
        Err(StoreError::WrongPassphrase { .. })
    ));
    let reread = load_identity(&path, "s", &[given("a second passphrase")]).unwrap();
    assert_eq!(reread.public_key(), identity.public_key());

    replace_identity_file(&PrivateOsFs, &path, &identity, None).unwrap();
    assert!(!identity_is_protected(&path).unwrap());
    let plain = FileStore::open(options(dir)).unwrap();
    assert!(!plain.identity().is_protected());
    plain.list().await.unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    replace_identity_file(&PrivateOsFs, &path, &identity, Some(&secret(PASSPHRASE))).unwrap();
    assert!(identity_is_protected(&path).unwrap());
    FileStore::open_unlocking(options(dir), &[given(PASSPHRASE)]).unwrap();
    assert_eq!(
        std::fs::read(dir.join("secrets.age")).unwrap(),
        store_bytes,
        "a passphrase change never rewrites the store"
    );
}

/// A power cut after every write and sync of a passphrase change: the
/// identity file afterwards is the old form or the new one, and either
/// unlocks the same key.
#[test]
fn a_power_cut_during_a_passphrase_change_keeps_a_usable_identity() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("identity.txt");
    let identity = create_identity_file(&real, Some(&secret(PASSPHRASE))).unwrap();
    let old_bytes = std::fs::read(&real).unwrap();
    let root = Path::new("/data");
    let path = root.join("identity.txt");
    let fresh = || {
        let sim = SimFs::new();
        sim.create_dir_all(root).unwrap();
        sim.sync_dir(Path::new("/")).unwrap();
        durable::atomic_replace(&sim, &path, &old_bytes).unwrap();
        sim
    };
    let new = secret("the replacement passphrase");
    let sim = fresh();
    let before = sim.op_count();
    replace_identity_file(&sim, &path, &identity, Some(&new)).unwrap();
    let ops = sim.op_count() - before;
    assert!(ops >= 4, "{ops} operations");

    for k in 0..=ops {
        let sim = fresh();
        sim.crash_after(k);
        let acknowledged = replace_identity_file(&sim, &path, &identity, Some(&new)).is_ok();
        let after = sim.crash();
        let bytes = after.read(&path).unwrap();
        let check = dir.path().join(format!("after-{k}.txt"));
        std::fs::write(&check, &bytes).unwrap();
        std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o600)).unwrap();
        let with_new = load_identity(
            &check,
            "s",
            &[PassphraseSource::Given {
                passphrase: new.clone(),
                from: "new".into(),
            }],
        );
        let unlocked = match with_new {
            Ok(i) => i,
            Err(StoreError::WrongPassphrase { .. }) => {
                assert!(!acknowledged, "an acknowledged change was lost at op {k}");
                assert_eq!(bytes, old_bytes, "after a cut at op {k}");
                load_identity(
                    &check,
                    "s",
                    &[PassphraseSource::Given {
                        passphrase: secret(PASSPHRASE),
                        from: "old".into(),
                    }],
                )
                .unwrap()
            }
            Err(e) => panic!("after a cut at op {k}: {e}"),
        };
        assert_eq!(unlocked.public_key(), identity.public_key(), "op {k}");
    }
    assert_ne!(new.expose_secret(), PASSPHRASE);
}
