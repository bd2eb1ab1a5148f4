//! Rotations under continuous load through the gateway (issue #12, "Done
//! when"): several clients loop record imports and exports through the
//! gateway for the whole of a `rotate run`.
//!
//! - dual mode: the pair's standby is regenerated, the gateway switches,
//!   then the other member is regenerated — not one request fails;
//! - single mode: the gateway holds the account's requests from before
//!   the regeneration to the switch (the issuer here takes a second, so
//!   requests do wait) — not one request fails, and the release entry
//!   says how many waited and that none was refused.
//!
//! Afterwards: the old tokens are dead, the store's `current` tokens are
//! the live ones, the gateway serves, `ledger verify` accepts the chain,
//! and no token value is in any output or file but the store.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use canary::Canary;
use common::site::{ACCOUNT, PARTNER, Site};
use common::{Serving, text, warden};
use serde_json::Value;

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    /// Requests answered while the rotation ran.
    during: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

/// `clients` tasks each import a record and export it back, in a loop,
/// until `stop`; `rotating` says whether the rotation is running.
fn load(
    site: &Site,
    clients: usize,
    stop: Arc<AtomicBool>,
    rotating: Arc<AtomicBool>,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let url = format!("http://127.0.0.1:{}/api/", site.port);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (tally, stop, rotating) = (tally.clone(), stop.clone(), rotating.clone());
        let (url, key) = (url.clone(), site.key.clone());
        let http = reqwest::Client::new();
        tasks.push(site.sandbox.rt.spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let id = format!("c{c}-{i}");
                let data = format!(r#"[{{"record_id":"{id}","age":"{}"}}]"#, 20 + i % 60);
                let calls: [Vec<(&str, &str)>; 2] = [
                    vec![
                        ("token", &key),
                        ("content", "record"),
                        ("action", "import"),
                        ("format", "json"),
                        ("data", &data),
                    ],
                    vec![
                        ("token", &key),
                        ("content", "record"),
                        ("format", "json"),
                        ("records[0]", &id),
                    ],
                ];
                for (n, form) in calls.iter().enumerate() {
                    let during = rotating.load(Ordering::SeqCst);
                    let answer = http.post(&url).form(form).send().await;
                    let (status, body) = match answer {
                        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                        Err(e) => (0, e.to_string()),
                    };
                    let good = status == 200 && (n == 0 || body.contains(&id));
                    if good {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                        if during && rotating.load(Ordering::SeqCst) {
                            tally.during.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        tally.failures.lock().unwrap().push(format!(
                            "client {c} {} {id}: {status} {body}",
                            if n == 0 { "import" } else { "export" }
                        ));
                    }
                }
            }
        }));
    }
    (tally, tasks)
}

/// Runs `rotate run ACCOUNT` while the load runs; answers its output and
/// the tally.
fn rotate_under_load(site: &Site, clients: usize) -> (std::process::Output, Arc<Tally>) {
    let stop = Arc::new(AtomicBool::new(false));
    let rotating = Arc::new(AtomicBool::new(false));
    let (tally, tasks) = load(site, clients, stop.clone(), rotating.clone());
    // The load is running before the rotation starts.
    while tally.ok.load(Ordering::SeqCst) < 4 * clients {
        assert!(
            tally.failures.lock().unwrap().is_empty(),
            "{:?}",
            tally.failures.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rotating.store(true, Ordering::SeqCst);
    let out = warden(
        &site.dir,
        &["rotate", "run", ACCOUNT, "--reason", "under load"],
        None,
    );
    rotating.store(false, Ordering::SeqCst);
    // And goes on after it.
    let after = tally.ok.load(Ordering::SeqCst);
    while tally.ok.load(Ordering::SeqCst) < after + 4 * clients {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    site.sandbox.rt.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    eprintln!(
        "{} requests answered, {} of them while the rotation ran, {} failed",
        tally.ok.load(Ordering::SeqCst),
        tally.during.load(Ordering::SeqCst),
        tally.failures.lock().unwrap().len()
    );
    (out, tally)
}

/// `ledger tail` of everything, `ledger verify` passing.
fn ledger(site: &Site) -> String {
    let verify = warden(&site.dir, &["ledger", "verify"], None);
    assert!(verify.status.success(), "{}", text(&verify));
    let tail = warden(&site.dir, &["ledger", "tail", "-n", "100000"], None);
    String::from_utf8_lossy(&tail.stdout).to_string()
}

/// The `to` of each rotation entry, in order.
fn rotation_states(entries: &str) -> Vec<String> {
    entries
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "rotation")
        .map(|e| e["to"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// No token value in any output or file but the store.
fn assert_no_leak(site: &Site, outputs: &[String], tokens: &[String]) {
    let mut leaks = Vec::new();
    for t in tokens {
        let c = Canary::new(t);
        for (i, o) in outputs.iter().enumerate() {
            leaks.extend(c.find(&format!("output {i}"), o.as_bytes()));
        }
        leaks.extend(c.scan_dir(&site.dir, &[site.dir.join("data/secrets.age")]));
        c.assert_clean(&leaks);
    }
}

/// A site whose issuer (the `command` issuer) waits a second before it has
/// the sandbox regenerate the token, so that requests keep arriving while
/// each token is regenerated — and, in single mode, while the gateway
/// holds.
fn slow_site(dual: bool) -> Site {
    let site = Site::new(dual, Some("\n"));
    std::fs::write(
        site.dir.join("sandbox-admin-header"),
        format!("Authorization: Bearer {}\n", common::sandbox::ADMIN),
    )
    .unwrap();
    common::add_config(
        &site.dir,
        &format!(
            r#"
[rotation]
issuer = "command"
command = ["/bin/sh", "-c", "sleep 1 && curl -sf -X POST -H @sandbox-admin-header \"$1/sandbox/projects/$2/users/$3/token/regenerate\" | sed -E 's/.*\"token\": *\"([0-9A-F]+)\".*/\\1/'", "issuer", "{}", "{{project_id}}", "{{username}}"]
"#,
            site.sandbox.base
        ),
    );
    site
}

#[test]
fn a_dual_rotation_under_load_fails_no_request() {
    let site = slow_site(true);
    let before = site.live_tokens();
    let serving = Serving::start(&site.dir, site.port);
    let (out, tally) = rotate_under_load(&site, 4);
    let all = text(&out);
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}\n{all}",
        failures.len()
    );
    assert!(
        tally.during.load(Ordering::SeqCst) > 0,
        "requests were answered during the rotation"
    );

    // Both members regenerated, both old tokens dead, the store's current
    // tokens the live ones (`rotate status` shows the pair switched).
    let after = site.live_tokens();
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old, new, "{all}");
        assert!(!site.works(old), "an old token still works");
        assert!(site.works(new));
    }
    let status = warden(&site.dir, &["rotate", "status", "--json"], None);
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["account"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(row(ACCOUNT)["dual"]["active"], false, "{rows}");
    assert_eq!(row(PARTNER)["dual"]["active"], true, "{rows}");
    assert_eq!(row(ACCOUNT)["mode"], "dual");

    // The rotation ran to the end of its work; `done` needs ownership
    // proved by REDCap's log, which without it is refused, named.
    let entries = ledger(&site);
    let states = rotation_states(&entries);
    let work = [
        "planned",
        "obtained",
        "verified",
        "stored",
        "switched",
        "second-obtained",
        "second-verified",
        "second-stored",
        "old-revoked-verified",
    ];
    assert_eq!(states[..9], work, "{all}");
    if out.status.success() {
        assert_eq!(states[9..], ["done"], "{all}");
        assert!(all.contains("ownership: proved"), "{all}");
    } else {
        assert_eq!(states.len(), 9, "{all}");
        assert!(all.contains("does not finish without proof"), "{all}");
        let open = row(PARTNER)["open_rotation"].clone();
        assert_eq!(open["state"], "old-revoked-verified", "{rows}");
        let abort = warden(
            &site.dir,
            &[
                "rotate",
                "abort",
                open["id"].as_str().unwrap(),
                "--reason",
                "log reviewed by hand",
            ],
            None,
        );
        assert!(abort.status.success(), "{}", text(&abort));
        assert!(
            text(&abort).contains("without proof of ownership"),
            "{}",
            text(&abort)
        );
    }
    // The gateway switched with an admin entry, and serves the pair now.
    assert!(
        entries.contains("\"action\":\"dual-activate\""),
        "the gateway confirmed the switch"
    );
    let (code, body) = site.sandbox.post(
        &format!("http://127.0.0.1:{}/api/", site.port),
        &[("token", &site.key), ("content", "version")],
    );
    assert_eq!(code, 200, "{body}");
    drop(serving);
    let entries = ledger(&site);
    let mut tokens = before.clone();
    tokens.extend(after);
    tokens.extend(site.tokens.iter().cloned());
    assert_no_leak(&site, &[all, entries, text(&status)], &tokens);
}

#[test]
fn a_single_rotation_under_load_fails_no_request_inside_the_hold() {
    let site = slow_site(false);
    let check = warden(&site.dir, &["config", "check"], None);
    assert!(check.status.success(), "{}", text(&check));
    let before = site.live_tokens();
    let serving = Serving::start(&site.dir, site.port);
    let (out, tally) = rotate_under_load(&site, 4);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}\n{all}",
        failures.len()
    );
    assert!(tally.during.load(Ordering::SeqCst) > 0);

    let after = site.live_tokens();
    assert_ne!(before[0], after[0]);
    assert!(!site.works(&before[0]) && site.works(&after[0]));
    drop(serving);
    let entries = ledger(&site);
    assert_eq!(
        rotation_states(&entries),
        [
            "planned",
            "obtained",
            "verified",
            "stored",
            "switched",
            "old-revoked-verified",
            "done"
        ],
        "{all}"
    );
    // The release says how many requests waited in the hold: some did, and
    // none was refused (the hold's bound, cutover_hold_seconds, was not
    // reached).
    let release: Value = entries
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["kind"] == "admin" && e["action"] == "cutover-release")
        .expect("a cutover-release entry");
    let reason = release["reason"].as_str().unwrap();
    let waited: usize = reason
        .split(" requests waited")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(waited > 0, "requests waited in the hold: {reason}");
    assert!(reason.contains(", 0 were refused"), "{reason}");
    let mut tokens = before.clone();
    tokens.extend(after);
    tokens.extend(site.tokens.iter().cloned());
    assert_no_leak(&site, &[all, entries], &tokens);
}
