//! Two gateways against one sandbox and one PostgreSQL (issue #15): the
//! replicas of `common::cluster` serve the same clients, share one ledger
//! that stays gap-free and verifiable, one outbound rate window, and one
//! checkpoint signer.
//!
//! Runs when WARDEN_TEST_DATABASE_URL names a database the tests may
//! create schemas in (`scripts/test -E 'binary(cluster)'` starts one);
//! otherwise each test prints a notice and passes without running.

mod common;

use std::time::Duration;

use common::cluster::{CLIENT, Cluster, ClusterOptions};
use common::text;

#[test]
fn both_gateways_serve_one_client_and_the_shared_ledger_verifies() {
    let Some(mut cluster) = Cluster::new("both_serve") else {
        return;
    };
    cluster.start_all();
    let key = cluster.issue_key(0, CLIENT);
    for (i, id) in [(0, "a-1"), (1, "b-1"), (0, "a-2"), (1, "b-2")] {
        let (status, body) = cluster.import(i, &key, id);
        assert_eq!(status, 200, "import {id} through node {i}: {body}");
    }
    // Each reads what the other wrote: one REDCap behind both.
    for (i, id) in [(1, "a-1"), (0, "b-1")] {
        let (status, body) = cluster.export(i, &key, id);
        assert_eq!(status, 200, "export {id} through node {i}: {body}");
        assert!(body.contains(&format!("\"{id}\"")), "{body}");
    }
    let (status, body) = cluster.version(1, &key);
    assert_eq!(status, 200, "{body}");

    cluster.stop(0);
    cluster.stop(1);
    let entries = cluster.assert_verified_gap_free();
    // Both replicas wrote: two start entries and two stop entries.
    let all = cluster.entries();
    assert_eq!(all.len() as u64, entries);
    let admin_actions = |action: &str| {
        all.iter()
            .filter(|e| e["kind"] == "admin" && e["action"] == action)
            .count()
    };
    assert_eq!(admin_actions("start"), 2, "{all:#?}");
    assert_eq!(admin_actions("stop"), 2, "{all:#?}");
    let requests = all
        .iter()
        .filter(|e| e["kind"] == "request" && e["client"] == CLIENT)
        .count();
    assert_eq!(requests, 7, "{all:#?}");
    let verify = cluster.verify(1);
    assert!(verify.status.success(), "{}", text(&verify));
}

/// The budget of the rate-window test: REDCap's threshold as the sandbox
/// plays it, and each replica's `outbound_per_minute`.
const BUDGET: u32 = 10;

#[test]
fn two_gateways_under_load_stay_inside_one_rate_window() {
    // The sandbox bans the gateways' address past BUDGET calls in 60 s,
    // as REDCap does; each replica is configured with the whole budget.
    // Windows kept per replica would let 2 x BUDGET calls through and get
    // the address banned.
    let Some(mut cluster) = Cluster::with(
        "one_window",
        ClusterOptions {
            gateway: format!("outbound_per_minute = {BUDGET}"),
            page_hit_threshold: Some(BUDGET),
            ..ClusterOptions::default()
        },
    ) else {
        return;
    };
    cluster.start_all();
    let key = cluster.issue_key(0, CLIENT);
    // Three budgets' worth of calls at once, half through each replica.
    // The first BUDGET go out; the others wait for a slot (at most 30 s)
    // and none frees up within a minute of the first call.
    let calls = 3 * BUDGET as usize;
    let answers: Vec<(usize, u16, String)> = cluster.sandbox.rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..calls {
            let node = n % 2;
            let url = cluster.nodes[node].api_url();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let r = reqwest::Client::new()
                    .post(&url)
                    .form(&[("token", key.as_str()), ("content", "version")])
                    .send()
                    .await
                    .unwrap();
                (node, r.status().as_u16(), r.text().await.unwrap())
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    });
    let sent: Vec<_> = answers.iter().filter(|(_, s, _)| *s == 200).collect();
    let limited: Vec<_> = answers
        .iter()
        .filter(|(_, s, body)| *s == 503 && body.contains("outbound limit of 10 calls a minute"))
        .collect();
    assert!(
        answers.iter().all(|(_, s, _)| *s == 200 || *s == 503),
        "{answers:#?}"
    );
    assert!(
        cluster.banned_ips().is_empty(),
        "the sandbox banned the gateways: {answers:#?}"
    );
    assert!(sent.len() <= BUDGET as usize, "{answers:#?}");
    assert_eq!(sent.len() + limited.len(), calls, "{answers:#?}");
    assert!(
        limited.len() >= calls - BUDGET as usize,
        "more calls went out than the budget: {answers:#?}"
    );
    // Both replicas count the same calls: the window is one.
    let (a, b) = (cluster.health(0), cluster.health(1));
    assert_eq!(a["outbound_window"], "shared", "{a}");
    assert_eq!(a["outbound_in_window"], b["outbound_in_window"], "{a} {b}");
    let in_window = a["outbound_in_window"].as_u64().unwrap();
    assert!(
        in_window >= sent.len() as u64 && in_window <= BUDGET as u64,
        "{a}"
    );
    assert_eq!(a["redcap_banned"], false, "{a}");
    assert_eq!(b["redcap_banned"], false, "{b}");

    // The ledger agrees: every refused call has its 503 response entry,
    // and no more 200 responses than the budget.
    cluster.stop(0);
    cluster.stop(1);
    cluster.assert_verified_gap_free();
    let entries = cluster.entries();
    let responses = |status: u64| {
        entries
            .iter()
            .filter(|e| e["kind"] == "response" && e["status"] == status)
            .count()
    };
    assert_eq!(responses(200), sent.len());
    assert_eq!(responses(503), limited.len());
}

#[test]
fn killing_the_signer_lease_holder_mid_load_moves_signing_and_the_ledger_stays_whole() {
    let Some(mut cluster) = Cluster::with(
        "lease_kill",
        ClusterOptions {
            gateway: "outbound_per_minute = 100000".into(),
            ..ClusterOptions::default()
        },
    ) else {
        return;
    };
    cluster.start_all();
    let key = cluster.issue_key(0, CLIENT);
    let load = cluster.load(&[0, 1], 3, &key);
    load.wait_for(40, Duration::from_secs(120));
    // The lease goes to a replica once the setup's commands let theirs
    // lapse; that replica signs while entries arrive.
    let holder = cluster.wait_for_lease_holder(Duration::from_secs(60));
    let other = 1 - holder;
    let old_signer = cluster.lease_holder().unwrap();
    wait_until(
        Duration::from_secs(60),
        "the holder signs a checkpoint",
        || cluster.checkpoints().iter().any(|(_, s)| *s == old_signer),
    );

    // kill -9 in the middle of the load: no stop entry, writes in flight.
    cluster.kill(holder);
    let survivors_ok = load.tally.ok_at(other);
    // The other replica takes the lease once it lapses, and signs.
    let new_holder = cluster.wait_for_lease_holder(Duration::from_secs(90));
    assert_eq!(new_holder, other);
    let new_signer = cluster.lease_holder().unwrap();
    wait_until(Duration::from_secs(60), "the new holder signs", || {
        cluster.checkpoints().iter().any(|(_, s)| *s == new_signer)
    });
    wait_until(
        Duration::from_secs(60),
        "the survivor keeps serving",
        || load.tally.ok_at(other) > survivors_ok + 20,
    );
    // The killed replica comes back while the other serves: it marks its
    // own unanswered requests interrupted, and none of the other's.
    cluster.start(holder);
    let back_ok = load.tally.ok_at(holder);
    wait_until(
        Duration::from_secs(60),
        "the restarted replica serves",
        || load.tally.ok_at(holder) > back_ok + 10,
    );
    let tally = load.finish(&cluster.sandbox.rt);
    // Only requests to the killed replica failed, and only by losing
    // their connection or the rest of their answer.
    for (node, status, body) in tally.failed.lock().unwrap().iter() {
        assert_eq!(*node, holder, "{status} {body}");
        assert_eq!(*status, 0, "{body}");
    }

    // No inconsistent checkpoint: sizes never go back, signers follow the
    // lease, and `ledger verify` checks every checkpoint against the tree.
    let checkpoints = cluster.checkpoints();
    assert!(
        checkpoints.windows(2).all(|w| w[0].0 <= w[1].0),
        "{checkpoints:?}"
    );
    let first_new = checkpoints
        .iter()
        .position(|(_, s)| *s == new_signer)
        .unwrap();
    assert!(
        checkpoints[first_new..]
            .iter()
            .all(|(_, s)| *s != old_signer),
        "the killed holder signed after its successor: {checkpoints:?}"
    );

    cluster.stop(other);
    cluster.stop(holder);
    let entries = cluster.entries();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "alert" && e["code"] == "unclean_stop"),
        "no unclean_stop alert"
    );
    let responded: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "response")
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    for e in entries.iter().filter(|e| e["kind"] == "interrupted") {
        let id = e["request_id"].as_str().unwrap();
        assert!(
            !responded.contains(id),
            "request {id} was marked interrupted but was answered (another replica's?)"
        );
    }
    let n = cluster.assert_verified_gap_free();
    assert_eq!(n as usize, entries.len());
    assert!(tally.ok_at(holder) > 0 && tally.ok_at(other) > 0);
}

/// Polls `done` every 100 ms until it holds; fails after `within`.
fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
