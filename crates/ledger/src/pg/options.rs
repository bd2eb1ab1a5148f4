//! [`PgOptions`]: how a PostgreSQL ledger is opened, and its lease and
//! unsigned-span defaults.

use std::sync::Arc;
use std::time::Duration;

use crate::files;
use crate::guard::Adoption;
use crate::schema::DEFAULT_SCHEMA;
use crate::witness::Witness;

/// How a PostgreSQL ledger is opened.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The schema holding the tables (created if missing): one ledger per
    /// schema. Lowercase letters, digits and `_`, starting with a letter.
    pub schema: String,
    /// Renew the signer lease and sign a checkpoint this often while
    /// entries arrive (`None`: only on [`crate::PgLedger::checkpoint`] and
    /// [`crate::PgLedger::close`], for deterministic tests).
    pub checkpoint_interval: Option<Duration>,
    /// How long a taken or renewed signer lease lasts.
    pub lease: Duration,
    /// How long a deferred entry waits for a batch to ride along with.
    pub deferred_delay: Duration,
    /// The name this process holds the signer lease under (default: host,
    /// process id and a random suffix).
    pub holder: Option<String>,
    /// Where the latest checkpoint is also kept (`docs/ledger.md` §11):
    /// checked on open, kept up to date by this process while it signs.
    pub witnesses: Vec<Arc<dyn Witness>>,
    /// The longest time the entries past the last checkpoint may span for
    /// the open to go on (see [`PG_MAX_UNSIGNED_SPAN`]).
    pub max_unsigned_span: Duration,
    /// Go on where the open would refuse, recording the decision.
    pub adopt: Option<Adoption>,
}

/// The signer lease's default length.
pub const PG_LEASE: Duration = Duration::from_secs(10);

/// The longest a PostgreSQL ledger's unsigned tail may span: a checkpoint
/// interval, plus a signer lease (a signer that dies is replaced once its
/// lease lapses), plus the same slack as a file ledger's.
pub const PG_MAX_UNSIGNED_SPAN: Duration = files::CHECKPOINT_INTERVAL
    .saturating_add(PG_LEASE)
    .saturating_add(files::UNSIGNED_SLACK);

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: DEFAULT_SCHEMA.into(),
            checkpoint_interval: Some(files::CHECKPOINT_INTERVAL),
            lease: PG_LEASE,
            deferred_delay: Duration::from_millis(5),
            holder: None,
            witnesses: Vec::new(),
            max_unsigned_span: PG_MAX_UNSIGNED_SPAN,
            adopt: None,
        }
    }
}
