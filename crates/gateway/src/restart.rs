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
//!   entries of the last 60 seconds before any call goes out.
//!
//! Both read only the ledger's tail ([`ledger::LedgerBackend::tail`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use ledger::{EntryKind, LedgerBackend};

use crate::server::Shared;

/// The marker's name in the data directory.
pub const MARKER: &str = "gateway.running";

/// The most entries read back to find a crashed run's unanswered requests.
const MAX_SCAN: u64 = 2_000_000;

#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    /// The seq of the run's `start` entry.
    start_seq: u64,
    pid: u32,
    started: Timestamp,
}

/// Where the marker lives.
pub fn marker_path(data_dir: &Path) -> PathBuf {
    data_dir.join(MARKER)
}

impl Shared {
    /// Before the `start` entry: marks what a crashed run left unanswered,
    /// and seeds the outbound window. Returns the seq the new run's
    /// `start` entry will have.
    pub(crate) async fn recover_from_last_run(&self, marker: &Path) -> u64 {
        let Some(ledger) = self.current_ledger_handle() else {
            return 0;
        };
        let size = ledger.size();
        let crashed: Option<Marker> = std::fs::read(marker)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let per_minute = u64::from(self.applied().config.config.gateway.outbound_per_minute);
        // The window needs the requests of the last minute: at most the
        // limit of them, with their responses and a little else around.
        let window_scan = per_minute.saturating_mul(4).saturating_add(1024);
        let crash_scan = crashed
            .as_ref()
            .map_or(0, |m| size.saturating_sub(m.start_seq).min(MAX_SCAN));
        let count = window_scan.max(crash_scan).min(size) as usize;
        let reader = Arc::clone(&ledger);
        let tail = match tokio::task::spawn_blocking(move || reader.tail(count)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not read the ledger's tail at start");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        // The outbound window, from what went out in the last minute.
        let now = Timestamp::now();
        let since = now - Duration::from_secs(60);
        let recent: Vec<Instant> = tail
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Request { .. }) && e.ts >= since)
            .filter_map(|e| {
                let ago = now.duration_since(e.ts).unsigned_abs();
                Instant::now().checked_sub(ago)
            })
            .collect();
        if !recent.is_empty() {
            tracing::info!(
                calls = recent.len(),
                "outbound window rebuilt from the ledger"
            );
        }
        self.upstream.limiter().seed(&recent);

        if let Some(m) = crashed {
            let run: Vec<&ledger::Entry> = tail.iter().filter(|e| e.seq >= m.start_seq).collect();
            let answered: HashSet<&str> = run
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::Response { request_id, .. }
                    | EntryKind::Interrupted { request_id, .. } => Some(request_id.as_str()),
                    _ => None,
                })
                .collect();
            let unanswered: Vec<String> = run
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::Request { request_id, .. }
                        if !answered.contains(request_id.as_str()) =>
                    {
                        Some(request_id.clone())
                    }
                    _ => None,
                })
                .collect();
            let detail = format!(
                "the gateway started at {now} after a run (started {}, pid {}) that ended without its stop entry",
                m.started, m.pid
            );
            for request_id in &unanswered {
                let _ = self
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
            let _ = self
                .append(EntryKind::Alert {
                    code: "unclean_stop".into(),
                    message,
                })
                .await;
        }
        ledger.size()
    }

    fn current_ledger_handle(&self) -> Option<Arc<dyn LedgerBackend>> {
        self.ledger
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Writes the marker (durably: a power cut must not lose it).
pub fn write_marker(path: &Path, start_seq: u64) -> std::io::Result<()> {
    let marker = Marker {
        start_seq,
        pid: std::process::id(),
        started: Timestamp::now(),
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
