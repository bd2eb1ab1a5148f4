//! The shared window against a real PostgreSQL (WARDEN_TEST_DATABASE_URL,
//! which scripts/test sets; without it each test prints a notice and
//! passes without running, or fails under CI), with windows of a second or two so that
//! several of them pass in a test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::upstream::{Limiter, UpstreamError};

fn database(test: &str) -> Option<String> {
    test_database::url(test)
}

/// A schema of its own for one test, dropped first if a run left it.
fn fresh_schema(url: &str, name: &str) -> String {
    let schema = format!("w{}_{name}", std::process::id());
    drop_schema(url, &schema);
    schema
}

fn drop_schema(url: &str, schema: &str) {
    let url = url.to_owned();
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    // The synchronous client must not run on a runtime's worker.
    std::thread::spawn(move || {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .batch_execute(&sql)
            .unwrap();
    })
    .join()
    .unwrap();
}

/// The most admissions inside any half-open span of `length` (times in
/// microseconds).
fn most_in_any_window(times: &[i64], length: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let span = length.as_micros() as i64;
    let mut most = 0;
    let mut first = 0;
    for (i, t) in sorted.iter().enumerate() {
        while sorted[first] <= t - span {
            first += 1;
        }
        most = most.max(i + 1 - first);
    }
    most
}

#[test]
fn the_counting_finds_the_busiest_span() {
    let s = Duration::from_micros(10);
    assert_eq!(most_in_any_window(&[0, 5, 9, 10, 19, 20], s), 3);
    assert_eq!(most_in_any_window(&[0, 10, 20], s), 1);
    assert_eq!(most_in_any_window(&[3, 1, 2], s), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_together_never_pass_the_budget_in_any_window() {
    let Some(url) = database("replicas_together") else {
        return;
    };
    let schema = fresh_schema(&url, "replicas");
    let (budget, length) = (5usize, Duration::from_millis(1500));
    // Four replicas, each with its own connections, two callers each,
    // until three windows' worth of calls were admitted.
    let target = 3 * budget;
    let admitted: Arc<Mutex<Vec<(usize, u32, i64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for replica in 0..4 {
        let window = Arc::new(SharedWindow::with_length(&url, &schema, length).unwrap());
        for _ in 0..2 {
            let (window, admitted) = (Arc::clone(&window), Arc::clone(&admitted));
            tasks.push(tokio::spawn(async move {
                while admitted.lock().unwrap().len() < target {
                    let (slot, at) = window
                        .admit_at(budget, Duration::from_secs(30))
                        .await
                        .unwrap();
                    admitted.lock().unwrap().push((replica, slot, at));
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.lock().unwrap().clone();
    let times: Vec<i64> = admitted.iter().map(|(_, _, at)| *at).collect();
    assert!(admitted.len() >= target);
    assert_eq!(
        most_in_any_window(&times, length),
        budget,
        "the budget was not used, or passed: {admitted:?}"
    );
    let replicas: std::collections::BTreeSet<usize> = admitted.iter().map(|a| a.0).collect();
    assert!(
        replicas.len() > 1,
        "one replica took every slot: {admitted:?}"
    );
    assert!(
        admitted
            .iter()
            .all(|(_, slot, _)| (*slot as usize) < budget)
    );
    drop_schema(&url, &schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_refuses_within_the_wait_and_counts_every_replica() {
    let Some(url) = database("full_window") else {
        return;
    };
    let schema = fresh_schema(&url, "full");
    let a = Limiter::shared(
        3,
        Duration::from_millis(50),
        SharedWindow::new(&url, &schema).unwrap(),
    );
    let b = Limiter::shared(
        3,
        Duration::from_millis(50),
        SharedWindow::new(&url, &schema).unwrap(),
    );
    a.admit().await.unwrap();
    b.admit().await.unwrap();
    a.admit().await.unwrap();
    // The fourth call in the minute, through either replica, waits past
    // its deadline: the oldest call ages out only after 60 s.
    assert!(matches!(b.admit().await, Err(UpstreamError::Limited(3))));
    assert!(!a.acquire().await);
    b.refresh().await;
    assert_eq!(b.in_window(), 3);
    assert!(a.is_shared());
    drop_schema(&url, &schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_seeds_an_empty_shared_window_only() {
    let Some(url) = database("seed") else {
        return;
    };
    let schema = fresh_schema(&url, "seed");
    let limiter = Limiter::shared(
        4,
        Duration::from_millis(50),
        SharedWindow::new(&url, &schema).unwrap(),
    );
    let now = Timestamp::now();
    let made = [
        now - Duration::from_secs(2),
        now - Duration::from_secs(1),
        now - Duration::from_secs(90),
    ];
    // The call of 90 s ago is out of the window.
    assert_eq!(limiter.seed(&made).await, 2);
    // A second start finds calls in the window: the replicas record
    // theirs there, so the ledger's are not counted twice.
    assert_eq!(limiter.seed(&made).await, 0);
    limiter.admit().await.unwrap();
    limiter.admit().await.unwrap();
    assert!(matches!(
        limiter.admit().await,
        Err(UpstreamError::Limited(4))
    ));
    drop_schema(&url, &schema);
}

#[tokio::test]
async fn an_unreachable_database_refuses_the_call_without_the_connection_string() {
    // Nothing listens on port 1; the password must appear nowhere.
    let window = SharedWindow::new(
        "postgresql://warden:hunter2-canary@127.0.0.1:1/warden",
        "redcap_warden",
    )
    .unwrap();
    let limiter = Limiter::shared(10, Duration::from_secs(1), window);
    let Err(UpstreamError::WindowUnavailable(why)) = limiter.admit().await else {
        panic!("an unreachable window must refuse the call");
    };
    assert!(why.contains("cannot be used"), "{why}");
    assert!(why.contains("no call is sent to REDCap"), "{why}");
    assert!(!why.contains("hunter2"), "{why}");
    // The next call within the second is refused at once, with the same
    // reason.
    let Err(UpstreamError::WindowUnavailable(again)) = limiter.admit().await else {
        panic!("still unreachable");
    };
    assert!(!again.contains("hunter2"), "{again}");
    assert!(!limiter.acquire().await);
    // /health keeps answering: the last count stays.
    limiter.refresh().await;
    assert_eq!(limiter.in_window(), 0);
}

#[test]
fn a_bad_schema_name_is_refused() {
    let Err(WindowRefusal::Unavailable(why)) =
        SharedWindow::new("postgresql://warden@127.0.0.1:1/warden", "x; DROP")
    else {
        panic!("a schema name that is not a plain identifier must be refused");
    };
    assert!(why.contains("schema"), "{why}");
}
