//! What a gateway learns from the ledger when it starts: whether the last
//! run ended cleanly, and how many calls went to REDCap in the last minute.
//!
//! - **Every crash marked.** While the gateway runs, a marker file in the
//!   data directory (`gateway.running`) names the seq of its `start`
//!   entry; a clean stop removes it after the `stop` entry. Finding it at
//!   start means the last run ended without one (a crash, `kill -9`, a
//!   power cut): each `request` entry of that run without a `response`
//!   gets an `interrupted` entry (REDCap may or may not have acted;
//!   reconciling with REDCap's log settles it), and an `unclean_stop` alert
//!   names the stop and the count.
//! - **The rate window survives restarts.** REDCap bans an IP for good past
//!   its threshold, so the outbound window is rebuilt from the `request`
//!   entries of the last 60 seconds before any call goes out. (The window
//!   the replicas share in PostgreSQL survives by itself; it takes the
//!   ledger's calls only when it holds none.)
//!
//! Both read only the ledger's tail, in one pass
//! ([`ledger::LedgerBackend::read_from`]).
//!
//! Replicas sharing a PostgreSQL ledger interleave their entries, so a
//! crashed run's requests are told apart by their id: every request id of
//! a run begins with the run's tag (8 hex digits, random per process),
//! which the marker records. Another replica's requests in flight while a
//! crashed one restarts are not its to mark. (A marker written before tags
//! existed has none: then every unanswered request since its start counts,
//! as before.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ledger::EntryKind;

use crate::state::Gateway;

/// The marker's name in the data directory.
pub use crate::paths::RUN_MARKER as MARKER;

/// The most entries read back to find a crashed run's unanswered requests.
const MAX_SCAN: u64 = 2_000_000;

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    /// The seq of the run's `start` entry.
    start_seq: u64,
    pid: u32,
    started: Timestamp,
    /// What the run's request ids begin with ([`run_tag`]).
    #[serde(default)]
    run_tag: Option<String>,
}

/// This process's run tag: 8 random hex digits every request id of the
/// run begins with.
pub fn run_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| durable::random_hex(4))
}

/// A new request id: the run's tag, then 16 random hex digits (24 in all,
/// as before tags). The random bytes come from the operating system's
/// random source read 4 KiB at a time per thread, not a system call per
/// request.
pub fn new_request_id() -> String {
    const ID: usize = 8;
    const POOL: usize = 512 * ID;
    thread_local! {
        static RANDOM: std::cell::RefCell<(Box<[u8; POOL]>, usize)> =
            std::cell::RefCell::new((Box::new([0; POOL]), POOL));
    }
    RANDOM.with_borrow_mut(|(pool, used)| {
        if *used == POOL {
            getrandom::fill(&mut pool[..]).expect("the operating system's random source failed");
            *used = 0;
        }
        let bytes = &mut pool[*used..*used + ID];
        let tag = run_tag();
        let mut digits = [0u8; 2 * ID];
        hex::encode_to_slice(&*bytes, &mut digits).expect("two digits per byte");
        let mut id = String::with_capacity(tag.len() + digits.len());
        id.push_str(tag);
        id.push_str(std::str::from_utf8(&digits).expect("ASCII hex digits"));
        // Handed out once: not left in memory.
        bytes.fill(0);
        *used += ID;
        id
    })
}

/// Where the marker lives.
pub fn marker_path(data_dir: &Path) -> PathBuf {
    data_dir.join(MARKER)
}

/// Before the `start` entry: marks what a crashed run left unanswered,
/// and seeds the outbound window. Returns the seq the new run's `start`
/// entry will have.
pub(crate) async fn recover_from_last_run(gw: &Gateway, marker: &Path) -> u64 {
    let Some(ledger) = gw.ledger().current() else {
        return 0;
    };
    let size = ledger.size();
    let crashed: Option<Marker> = std::fs::read(marker)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let per_minute = u64::from(gw.applied().config.config.gateway.outbound_per_minute);
    // The window needs the requests of the last minute: at most the
    // limit of them, with their responses and a little else around.
    let window_from = size.saturating_sub(per_minute.saturating_mul(4).saturating_add(1024));
    let crash_from = crashed
        .as_ref()
        .map(|m| m.start_seq.max(size.saturating_sub(MAX_SCAN)));
    let from = crash_from.map_or(window_from, |c| c.min(window_from));
    // One pass, in order: the memory is the requests still unanswered,
    // however long the crashed run was.
    let now = Timestamp::now();
    let since = now - Duration::from_secs(60);
    let start_seq = crashed.as_ref().map(|m| m.start_seq);
    let tag = crashed.as_ref().and_then(|m| m.run_tag.clone());
    let reader = Arc::clone(&ledger);
    let read = tokio::task::spawn_blocking(move || {
        let mut recent: Vec<Timestamp> = Vec::new();
        // Request id -> seq, of the crashed run's requests not answered.
        let mut unanswered: HashMap<String, u64> = HashMap::new();
        let result = reader.read_from(from, &mut |e| {
            let in_run = start_seq.is_some_and(|s| e.seq >= s);
            match e.kind {
                EntryKind::Request { request_id, .. } => {
                    if e.ts >= since {
                        recent.push(e.ts);
                    }
                    if in_run && tag.as_deref().is_none_or(|t| request_id.starts_with(t)) {
                        unanswered.insert(request_id, e.seq);
                    }
                }
                EntryKind::Response { request_id, .. }
                | EntryKind::Interrupted { request_id, .. }
                    if in_run =>
                {
                    unanswered.remove(&request_id);
                }
                _ => {}
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not read the ledger's tail at start");
        }
        let mut unanswered: Vec<(String, u64)> = unanswered.into_iter().collect();
        unanswered.sort_by_key(|(_, seq)| *seq);
        (recent, unanswered)
    });
    let (recent, unanswered) = read.await.unwrap_or_default();
    // The outbound window, from what went out in the last minute (a
    // shared window takes them only if no replica has counted a call in
    // it: see `Limiter::seed`).
    let seeded = gw.upstream().limiter().seed(&recent).await;
    if seeded > 0 {
        tracing::info!(calls = seeded, "outbound window rebuilt from the ledger");
    }

    if let Some(m) = crashed {
        mark_interrupted(gw, &m, &unanswered, size, now).await;
    }
    ledger.size()
}

/// The crashed run's requests without a response get an `interrupted`
/// entry each, and the stop an `unclean_stop` alert counting them.
async fn mark_interrupted(
    gw: &Gateway,
    m: &Marker,
    unanswered: &[(String, u64)],
    size: u64,
    now: Timestamp,
) {
    let detail = format!(
        "the gateway started at {now} after a run (started {}, pid {}) that ended without its stop entry",
        m.started, m.pid
    );
    for (request_id, _) in unanswered {
        let _ = gw
            .ledger()
            .append(EntryKind::Interrupted {
                request_id: request_id.clone(),
                detail: detail.clone(),
            })
            .await;
    }
    let partial = if size.saturating_sub(m.start_seq) > MAX_SCAN {
        format!(" (only its last {MAX_SCAN} entries were read)")
    } else {
        String::new()
    };
    let message = format!(
        "the gateway stopped uncleanly (a crash, kill -9 or a power cut): the run that started at seq {} (pid {}, {}) has no stop entry; {} forwarded request(s) have no response entry and are marked interrupted{partial}: reconcile them with REDCap's log",
        m.start_seq,
        m.pid,
        m.started,
        unanswered.len()
    );
    tracing::warn!("{message}");
    let _ = gw
        .ledger()
        .append(EntryKind::Alert {
            code: "unclean_stop".into(),
            message,
        })
        .await;
}

/// Writes the marker (durably: a power cut must not lose it).
pub fn write_marker(path: &Path, start_seq: u64) -> std::io::Result<()> {
    let marker = Marker {
        start_seq,
        pid: std::process::id(),
        started: Timestamp::now(),
        run_tag: Some(run_tag().to_string()),
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&marker).expect("serialises"))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes the marker after a clean stop.
pub fn remove_marker(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, path = %path.display(), "could not remove the gateway's run marker");
    }
}
