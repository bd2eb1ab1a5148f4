//! The contract every `SecretStore` backend keeps, run unchanged against
//! each (`contract_suite!` in each backend's test file).

#![allow(dead_code)]

use secrets::*;

pub const CANARY: &str = "C0FFEE00C0FFEE00C0FFEE00DEADBEEF";

pub fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

pub fn value(s: &str) -> SecretValue {
    SecretValue::new(s.to_string())
}

pub fn meta(reason: &str) -> VersionMeta {
    VersionMeta {
        operator: "tester".into(),
        at: "2026-11-28T10:00:00Z".parse().unwrap(),
        reason: reason.into(),
        fingerprint: Some("fp1:0011223344556677".into()),
        rotation_id: None,
    }
}

async fn current(store: &dyn SecretStore, n: &SecretName) -> Secret {
    store
        .get(n, &Selector::Label(Label::Current))
        .await
        .unwrap()
}

pub async fn put_then_get_returns_value_meta_and_label(store: &dyn SecretStore) {
    let n = name("redcap/site-a/etl");
    let v = store
        .put(&n, value("AAAA"), meta("first"), Label::Current)
        .await
        .unwrap();
    let s = current(store, &n).await;
    assert_eq!(s.version, v);
    assert_eq!(s.value.expose(), "AAAA");
    assert_eq!(s.meta, meta("first"));
    assert_eq!(s.labels, [Label::Current]);
    let by_id = store.get(&n, &Selector::Version(v.clone())).await.unwrap();
    assert_eq!(by_id.value.expose(), "AAAA");
}

pub async fn a_new_current_makes_the_old_one_previous(store: &dyn SecretStore) {
    let n = name("a");
    let v1 = store
        .put(&n, value("one"), meta("1"), Label::Current)
        .await
        .unwrap();
    let v2 = store
        .put(&n, value("two"), meta("2"), Label::Current)
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert_eq!(current(store, &n).await.value.expose(), "two");
    let prev = store
        .get(&n, &Selector::Label(Label::Previous))
        .await
        .unwrap();
    assert_eq!(
        (prev.version, prev.value.expose().to_string()),
        (v1.clone(), "one".to_string())
    );
    let h = store.history(&n).await.unwrap();
    assert_eq!(
        h.iter().map(|i| i.version.clone()).collect::<Vec<_>>(),
        [v2, v1],
        "newest first"
    );
    assert_eq!(h[0].labels, [Label::Current]);
    assert_eq!(h[1].labels, [Label::Previous]);
    assert_eq!(h[1].meta.reason, "1");
}

pub async fn pending_is_promoted_by_moving_current(store: &dyn SecretStore) {
    let n = name("b");
    let v1 = store
        .put(&n, value("old"), meta("1"), Label::Current)
        .await
        .unwrap();
    let v2 = store
        .put(&n, value("new"), meta("2"), Label::Pending)
        .await
        .unwrap();
    assert_eq!(
        current(store, &n).await.value.expose(),
        "old",
        "pending does not change current"
    );
    assert_eq!(
        store
            .get(&n, &Selector::Label(Label::Pending))
            .await
            .unwrap()
            .version,
        v2
    );
    store.move_label(&n, Label::Current, &v2).await.unwrap();
    let c = current(store, &n).await;
    assert_eq!(
        (c.version.clone(), c.labels.clone()),
        (v2, vec![Label::Current]),
        "pending came off"
    );
    assert_eq!(
        store
            .get(&n, &Selector::Label(Label::Previous))
            .await
            .unwrap()
            .version,
        v1
    );
    assert!(matches!(
        store.get(&n, &Selector::Label(Label::Pending)).await,
        Err(StoreError::LabelNotSet {
            label: Label::Pending,
            ..
        })
    ));
}

pub async fn labels_can_be_removed_except_current(store: &dyn SecretStore) {
    let n = name("c");
    store
        .put(&n, value("x"), meta("1"), Label::Current)
        .await
        .unwrap();
    store
        .put(&n, value("y"), meta("2"), Label::Pending)
        .await
        .unwrap();
    store.remove_label(&n, Label::Pending).await.unwrap();
    assert!(
        store
            .get(&n, &Selector::Label(Label::Pending))
            .await
            .is_err()
    );
    assert!(matches!(
        store.remove_label(&n, Label::Current).await,
        Err(StoreError::InvalidRequest { .. })
    ));
    assert!(matches!(
        store.put(&n, value("z"), meta("3"), Label::Previous).await,
        Err(StoreError::InvalidRequest { .. })
    ));
}

pub async fn missing_things_are_distinct_errors(store: &dyn SecretStore) {
    let n = name("nothing/here");
    assert!(matches!(
        store.get(&n, &Selector::Label(Label::Current)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.history(&n).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .put(&n, value("v"), meta("1"), Label::Current)
        .await
        .unwrap();
    assert!(matches!(
        store.get(&n, &Selector::Label(Label::Previous)).await,
        Err(StoreError::LabelNotSet { .. })
    ));
    assert!(matches!(
        store
            .get(&n, &Selector::Version(VersionId("no-such-version".into())))
            .await,
        Err(StoreError::NoSuchVersion { .. })
    ));
    assert!(matches!(
        store
            .move_label(&n, Label::Current, &VersionId("no-such-version".into()))
            .await,
        Err(StoreError::NoSuchVersion { .. })
    ));
}

pub async fn list_is_sorted_and_omits_deleted(store: &dyn SecretStore) {
    for n in ["zeta", "alpha", "mid/x"] {
        store
            .put(&name(n), value("v"), meta("1"), Label::Current)
            .await
            .unwrap();
    }
    let all: Vec<String> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    for n in ["alpha", "mid/x", "zeta"] {
        assert!(all.contains(&n.to_string()), "{all:?}");
    }
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
    store.delete(&name("mid/x")).await.unwrap();
    assert!(!store.list().await.unwrap().contains(&name("mid/x")));
}

pub async fn soft_delete_and_restore(store: &dyn SecretStore) {
    let n = name("d");
    store
        .put(&n, value("keep me"), meta("1"), Label::Current)
        .await
        .unwrap();
    store.delete(&n).await.unwrap();
    assert!(matches!(
        store.get(&n, &Selector::Label(Label::Current)).await,
        Err(StoreError::Deleted { .. })
    ));
    assert!(matches!(
        store.put(&n, value("v2"), meta("2"), Label::Current).await,
        Err(StoreError::Deleted { .. })
    ));
    // Vault keeps a version's metadata inside its (now deleted) data, so no
    // backend serves the history of a deleted secret.
    assert!(matches!(
        store.history(&n).await,
        Err(StoreError::Deleted { .. })
    ));
    store.restore(&n).await.unwrap();
    assert_eq!(store.history(&n).await.unwrap().len(), 1);
    assert_eq!(current(store, &n).await.value.expose(), "keep me");
}

pub async fn history_never_carries_values(store: &dyn SecretStore) {
    let n = name("canary");
    store
        .put(&n, value(CANARY), meta("canary"), Label::Current)
        .await
        .unwrap();
    let h = store.history(&n).await.unwrap();
    let text = format!("{h:?} {}", serde_json::to_string(&h).unwrap());
    assert!(!text.contains(CANARY), "{text}");
    let s = current(store, &n).await;
    assert!(!format!("{s:?}").contains(CANARY));
}

pub async fn concurrent_writers_lose_no_version(store: &dyn SecretStore) {
    let n = name("busy");
    let writes = (0..8).map(|i| {
        store.put(
            &n,
            value(&format!("v{i}")),
            meta(&format!("w{i}")),
            Label::Current,
        )
    });
    let versions = futures_join_all(writes).await;
    let h = store.history(&n).await.unwrap();
    assert_eq!(h.len(), 8, "every acknowledged write is a version");
    for v in versions {
        assert!(h.iter().any(|i| i.version == v.as_ref().unwrap().clone()));
    }
}

pub async fn check_reports_a_healthy_store(store: &dyn SecretStore) {
    let r = store.check().await.unwrap();
    assert!(r.ok(), "{r:?}");
    assert!(!r.items.is_empty());
}

async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = fs.map(Box::pin).collect();
    // Poll them together so the writes really are concurrent.
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, res) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *res = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(|r| r.unwrap()));
    out
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh store
/// made by `$make` (an async expression yielding something that derefs to a
/// `dyn SecretStore`).
///
/// `contract_suite!(optional: $make)` is for backends that need a server:
/// `$make` yields an `Option`, and `None` (no server configured, outside
/// CI) skips the case after the maker has said why.
#[macro_export]
macro_rules! contract_suite {
    (optional: $make:expr) => {
        $crate::contract_suite!(@all ($make.await));
    };
    ($make:expr) => {
        $crate::contract_suite!(@all (Some($make.await)));
    };
    (@all $get:tt) => {
        $crate::contract_suite!(@cases $get;
            put_then_get_returns_value_meta_and_label,
            a_new_current_makes_the_old_one_previous,
            pending_is_promoted_by_moving_current,
            labels_can_be_removed_except_current,
            missing_things_are_distinct_errors,
            list_is_sorted_and_omits_deleted,
            soft_delete_and_restore,
            history_never_carries_values,
            concurrent_writers_lose_no_version,
            check_reports_a_healthy_store
        );
    };
    (@cases $get:tt; $($case:ident),*) => {
        mod contract_cases {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(store) = $get else { return };
                    contract::$case(&*store).await;
                }
            )*
        }
    };
}
