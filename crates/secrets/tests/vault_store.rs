//! The Vault backend against a real OpenBao dev server (started by
//! scripts/test): the shared contract, plus concurrent processes, AppRole,
//! namespaces, a custom CA, and one-line errors for an unreachable server,
//! a bad token and a sealed server.

mod contract;

use std::path::PathBuf;
use std::time::Duration;

use secrets::*;

use contract::{meta, name, value};

/// The dev server's address and the name of the variable holding its root
/// token, or `None` (after saying so) when run by hand without a server.
/// Under CI a missing server is a failure, never a skip.
fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run the tests through scripts/test, which starts OpenBao")
        }
        _ => {
            eprintln!("skipped: {var} is not set; run through scripts/test to start OpenBao");
            None
        }
    }
}

const TOKEN_VAR: &str = "WARDEN_TEST_VAULT_TOKEN";

fn root_token() -> String {
    std::env::var(TOKEN_VAR).expect("scripts/test exports WARDEN_TEST_VAULT_TOKEN with the address")
}

fn unique(what: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    format!("{what}-{}", hex::encode(b))
}

fn options(addr: &str, prefix: &str) -> VaultStoreOptions {
    VaultStoreOptions {
        address: addr.to_string(),
        mount: "secret".into(),
        prefix: prefix.to_string(),
        namespace: None,
        ca_file: None,
        auth: VaultAuth::Token(CredentialSource::Env(TOKEN_VAR.into())),
        max_versions: 100,
        timeout: Duration::from_secs(20),
    }
}

async fn new_store() -> Option<Box<VaultStore>> {
    let addr = server("WARDEN_TEST_VAULT_ADDR")?;
    Some(Box::new(
        VaultStore::open(options(&addr, &format!("test/{}", unique("contract")))).unwrap(),
    ))
}

contract_suite!(optional: new_store());

/// Administrative calls with the root token, for setting up AppRole and
/// namespaces.
async fn admin(
    addr: &str,
    namespace: Option<&str>,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.parse().unwrap(), format!("{addr}/v1/{path}"))
        .header("X-Vault-Token", root_token())
        .json(&body);
    if let Some(ns) = namespace {
        req = req.header("X-Vault-Namespace", ns);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

fn one_line(e: &StoreError) -> String {
    let msg = e.to_string();
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("fix:"), "no fix in: {msg}");
    msg
}

/// Two processes (this test binary re-run), each with several concurrent
/// tasks, writing one secret: every acknowledged write is a version, and
/// the labels entry stayed consistent.
#[test]
fn two_processes_writing_concurrently_lose_no_version() {
    let Some(addr) = server("WARDEN_TEST_VAULT_ADDR") else {
        return;
    };
    let prefix = format!("test/{}", unique("processes"));
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(&exe)
                .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
                .env("WARDEN_TEST_VAULT_CHILD_PREFIX", &prefix)
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
    let store = VaultStore::open(options(&addr, &prefix)).unwrap();
    let h = rt.block_on(store.history(&name("shared"))).unwrap();
    let mut reasons: Vec<_> = h.iter().map(|i| i.meta.reason.clone()).collect();
    reasons.sort();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|c| {
            (0..TASKS).flat_map(move |t| (0..WRITES).map(move |w| format!("{c}-{t}-{w}")))
        })
        .collect();
    expected.sort();
    assert_eq!(reasons, expected, "every acknowledged write is a version");
    let current: Vec<_> = h
        .iter()
        .filter(|i| i.labels.contains(&Label::Current))
        .collect();
    assert_eq!(current.len(), 1, "exactly one current version");
    let previous: Vec<_> = h
        .iter()
        .filter(|i| i.labels.contains(&Label::Previous))
        .collect();
    assert_eq!(previous.len(), 1, "exactly one previous version");
    assert_ne!(current[0].version, previous[0].version);
}

const TASKS: usize = 3;
const WRITES: usize = 4;

#[test]
fn writer_child() {
    let Ok(prefix) = std::env::var("WARDEN_TEST_VAULT_CHILD_PREFIX") else {
        return;
    };
    let addr = std::env::var("WARDEN_TEST_VAULT_ADDR").unwrap();
    let who = std::env::var("WARDEN_TEST_WRITER").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = std::sync::Arc::new(VaultStore::open(options(&addr, &prefix)).unwrap());
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (store, who) = (store.clone(), who.clone());
                tokio::spawn(async move {
                    for w in 0..WRITES {
                        store
                            .put(
                                &name("shared"),
                                value("v"),
                                meta(&format!("{who}-{t}-{w}")),
                                Label::Current,
                            )
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[tokio::test]
async fn an_unreachable_server_is_one_line_naming_the_store() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("http://127.0.0.1:{port}");
    let store = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::Token(CredentialSource::Value(SecretValue::new("unused".into()))),
        ..options(&addr, "x")
    })
    .unwrap();
    let e = store
        .get(&name("a"), &Selector::Label(Label::Current))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    let msg = one_line(&e);
    assert!(
        msg.contains(&addr) && msg.contains("mount `secret`"),
        "{msg}"
    );
    assert!(msg.contains("server is running"), "{msg}");
    let report = store.check().await.unwrap();
    assert!(!report.ok());
}

#[tokio::test]
async fn a_bad_token_is_one_line_saying_permission_denied() {
    let Some(addr) = server("WARDEN_TEST_VAULT_ADDR") else {
        return;
    };
    let bad = "s.bad-token-0000";
    let store = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::Token(CredentialSource::Value(SecretValue::new(bad.into()))),
        ..options(&addr, "x")
    })
    .unwrap();
    let e = store
        .put(&name("a"), value("v"), meta("1"), Label::Current)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Denied { .. }), "{e}");
    let msg = one_line(&e);
    assert!(
        msg.contains(&addr) && msg.contains("permission denied"),
        "{msg}"
    );
    assert!(!msg.contains(bad), "the token leaked into: {msg}");
    assert!(!store.check().await.unwrap().ok());
}

#[tokio::test]
async fn a_missing_token_source_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::Token(CredentialSource::File(dir.path().join("no-token"))),
        ..options("http://127.0.0.1:1", "x")
    })
    .err()
    .unwrap();
    let msg = one_line(&e);
    assert!(msg.contains("no-token"), "{msg}");
    let e = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::Token(CredentialSource::Env(
            "WARDEN_TEST_SURELY_UNSET_VARIABLE".into(),
        )),
        ..options("http://127.0.0.1:1", "x")
    })
    .err()
    .unwrap();
    assert!(one_line(&e).contains("export WARDEN_TEST_SURELY_UNSET_VARIABLE"));
}

/// Sealed is not something to do to the shared dev server, so a one-shot
/// HTTP responder answers exactly as a sealed OpenBao does.
#[tokio::test]
async fn a_sealed_server_is_one_line_saying_unseal() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(4) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"errors":["Vault is sealed"]}"#;
            let _ = write!(
                s,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let store = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::Token(CredentialSource::Value(SecretValue::new("t".into()))),
        ..options(&addr, "x")
    })
    .unwrap();
    let e = store.list().await.unwrap_err();
    let msg = one_line(&e);
    assert!(
        msg.contains("sealed") && msg.contains("operator unseal") && msg.contains(&addr),
        "{msg}"
    );
}

#[tokio::test]
async fn approle_credentials_from_files_work() {
    let Some(addr) = server("WARDEN_TEST_VAULT_ADDR") else {
        return;
    };
    let mount = unique("approle");
    let prefix = format!("test/{}", unique("approle"));
    admin(
        &addr,
        None,
        "POST",
        &format!("sys/auth/{mount}"),
        serde_json::json!({"type": "approle"}),
    )
    .await;
    let policy = unique("warden");
    let rules = format!(
        r#"path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list", "update", "create"] }}
path "secret/metadata/{prefix}" {{ capabilities = ["list"] }}
path "secret/delete/{prefix}/*" {{ capabilities = ["update"] }}
path "secret/undelete/{prefix}/*" {{ capabilities = ["update"] }}"#
    );
    admin(
        &addr,
        None,
        "PUT",
        &format!("sys/policies/acl/{policy}"),
        serde_json::json!({"policy": rules}),
    )
    .await;
    admin(
        &addr,
        None,
        "POST",
        &format!("auth/{mount}/role/warden"),
        serde_json::json!({"token_policies": [policy], "token_ttl": "5m"}),
    )
    .await;
    let role_id = admin(
        &addr,
        None,
        "GET",
        &format!("auth/{mount}/role/warden/role-id"),
        serde_json::Value::Null,
    )
    .await;
    let secret_id = admin(
        &addr,
        None,
        "POST",
        &format!("auth/{mount}/role/warden/secret-id"),
        serde_json::json!({}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, v: &str| -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(file);
        std::fs::write(&p, format!("{v}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let role_file = write("role-id", role_id["data"]["role_id"].as_str().unwrap());
    let secret_file = write(
        "secret-id",
        secret_id["data"]["secret_id"].as_str().unwrap(),
    );
    let store = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::AppRole {
            mount: mount.clone(),
            role_id: CredentialSource::File(role_file),
            secret_id: CredentialSource::File(secret_file.clone()),
        },
        ..options(&addr, &prefix)
    })
    .unwrap();
    let n = name("site/etl");
    let v = store
        .put(&n, value("approle-value"), meta("1"), Label::Current)
        .await
        .unwrap();
    let got = store.get(&n, &Selector::Version(v)).await.unwrap();
    assert_eq!(got.value.expose(), "approle-value");
    assert_eq!(store.list().await.unwrap(), std::slice::from_ref(&n));
    let report = store.check().await.unwrap();
    assert!(report.ok(), "{report:?}");

    // Outside its policy the AppRole token is denied, in one line.
    let outside = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::AppRole {
            mount: mount.clone(),
            role_id: CredentialSource::File(dir.path().join("role-id")),
            secret_id: CredentialSource::File(secret_file.clone()),
        },
        ..options(&addr, "elsewhere")
    })
    .unwrap();
    let e = outside
        .put(&n, value("v"), meta("1"), Label::Current)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Denied { .. }), "{e}");
    one_line(&e);
    assert!(!outside.check().await.unwrap().ok());

    // A wrong secret id is refused at login, in one line.
    let wrong = write("wrong-secret-id", "00000000-0000-0000-0000-000000000000");
    let denied = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::AppRole {
            mount,
            role_id: CredentialSource::File(dir.path().join("role-id")),
            secret_id: CredentialSource::File(wrong),
        },
        ..options(&addr, &prefix)
    })
    .unwrap();
    let e = denied.list().await.unwrap_err();
    assert!(matches!(e, StoreError::Denied { .. }), "{e}");
    assert!(one_line(&e).contains("AppRole login"));
}

#[tokio::test]
async fn a_world_readable_credential_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, "t\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = VaultStore::open(VaultStoreOptions {
        auth: VaultAuth::Token(CredentialSource::File(p)),
        ..options("http://127.0.0.1:1", "x")
    })
    .err()
    .unwrap();
    assert!(one_line(&e).contains("chmod o-rwx"));
}

#[tokio::test]
async fn a_namespace_keeps_its_secrets_apart() {
    let Some(addr) = server("WARDEN_TEST_VAULT_ADDR") else {
        return;
    };
    let ns = unique("ns");
    admin(
        &addr,
        None,
        "POST",
        &format!("sys/namespaces/{ns}"),
        serde_json::json!({}),
    )
    .await;
    admin(
        &addr,
        Some(&ns),
        "POST",
        "sys/mounts/secret",
        serde_json::json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    let prefix = "warden";
    let inside = VaultStore::open(VaultStoreOptions {
        namespace: Some(ns.clone()),
        ..options(&addr, prefix)
    })
    .unwrap();
    assert!(inside.describe().contains(&ns));
    let n = name("in-namespace");
    inside
        .put(&n, value("v"), meta("1"), Label::Current)
        .await
        .unwrap();
    assert_eq!(inside.list().await.unwrap(), std::slice::from_ref(&n));
    assert_eq!(
        inside
            .get(&n, &Selector::Label(Label::Current))
            .await
            .unwrap()
            .value
            .expose(),
        "v"
    );
    let root = VaultStore::open(options(&addr, prefix)).unwrap();
    assert!(matches!(
        root.get(&n, &Selector::Label(Label::Current)).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_custom_ca_is_trusted_and_its_absence_named() {
    let Some(addr) = server("WARDEN_TEST_VAULT_TLS_ADDR") else {
        return;
    };
    let ca =
        PathBuf::from(std::env::var("WARDEN_TEST_VAULT_TLS_CA").expect("set with the TLS address"));
    let prefix = format!("test/{}", unique("tls"));
    let store = VaultStore::open(VaultStoreOptions {
        ca_file: Some(ca),
        ..options(&addr, &prefix)
    })
    .unwrap();
    let n = name("over-tls");
    store
        .put(&n, value("v"), meta("1"), Label::Current)
        .await
        .unwrap();
    assert!(store.check().await.unwrap().ok());
    let untrusting = VaultStore::open(options(&addr, &prefix)).unwrap();
    let e = untrusting.list().await.unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    assert!(one_line(&e).contains("ca_file"), "{e}");
}
