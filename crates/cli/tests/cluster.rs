//! Two gateways against one sandbox and one PostgreSQL (issue #15): the
//! replicas of `common::cluster` serve the same clients, share one ledger
//! that stays gap-free and verifiable, one outbound rate window, and one
//! checkpoint signer.
//!
//! Runs when WARDEN_TEST_DATABASE_URL names a database the tests may
//! create schemas in (`scripts/test -E 'binary(cluster)'` starts one);
//! otherwise each test prints a notice and passes without running.

mod common;

use common::cluster::{CLIENT, Cluster};
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
