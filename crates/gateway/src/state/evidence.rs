//! The dashboard's evidence: where it comes from — an [`EvidenceSource`]
//! the process that starts the gateway plugs in (`redcap-warden serve`
//! gathers it exactly as `report` does, from the ledger, the store, the
//! journals) — and the last gathering, kept for a short while so that a
//! page refreshing itself does not re-read and re-verify the ledger on
//! every load.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use governance::report::Evidence;

/// What gathers the report's evidence for the dashboard.
#[async_trait::async_trait]
pub trait EvidenceSource: Send + Sync {
    /// Everything but the gateway's own live counters and client keys
    /// (the dashboard adds those); an error says what could not be read.
    async fn gather(&self) -> Result<Evidence, String>;
}

/// The source, once plugged in, and the last gathering. Lock story: the
/// source is set once; `last` is an async mutex held across a gathering,
/// so concurrent page loads wait for one gathering instead of starting
/// several.
#[derive(Default)]
pub(crate) struct EvidenceSlot {
    source: OnceLock<Arc<dyn EvidenceSource>>,
    last: tokio::sync::Mutex<Option<(Instant, Result<Evidence, String>)>>,
}

impl EvidenceSlot {
    /// Plugs the source in; `false` if one already was.
    pub(crate) fn set(&self, source: Arc<dyn EvidenceSource>) -> bool {
        self.source.set(source).is_ok()
    }

    /// The evidence no older than `max_age` (gathered now if need be);
    /// `None` when no source is plugged in.
    pub(crate) async fn get(&self, max_age: Duration) -> Option<Result<Evidence, String>> {
        let source = self.source.get()?;
        let mut last = self.last.lock().await;
        if let Some((at, e)) = &*last
            && at.elapsed() < max_age
        {
            return Some(e.clone());
        }
        let gathered = source.gather().await;
        *last = Some((Instant::now(), gathered.clone()));
        Some(gathered)
    }
}
