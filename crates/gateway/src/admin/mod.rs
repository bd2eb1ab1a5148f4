//! The admin listener: its own address, never the clients'.
//!
//! - `GET /health`, `GET /ready`: for load balancers; reveal nothing
//!   ([`status`]).
//! - `GET /metrics`: Prometheus text (bearer; [`status`]).
//! - `GET /dashboard`: the compliance report's views, live (bearer, or
//!   HTTP Basic with the credential as password; [`dashboard`]).
//! - `POST /admin/reload`: re-read `warden.toml` and the key and status
//!   files, forget cached tokens (bearer; [`reload`]). The ledger entry
//!   carries the new file's SHA-256 and a field-level diff.
//! - `POST /admin/ledger/append`: while the gateway holds the ledger, the
//!   CLI submits its entries here (bearer; [`ledger`]).
//! - `GET /admin/keys`, `POST /admin/keys/issue`, `POST /admin/keys/revoke`:
//!   client-key management (bearer; [`keys`]).
//! - `POST /admin/accounts/{account}/hold`, `.../release`: the cut-over
//!   hold (bearer; [`holds`]).
//!
//! The bearer credential is [`crate::state::AdminToken`]. What every
//! state-changing endpoint checks first, and how it answers, is [`call`].

mod call;
mod dashboard;
mod holds;
mod keys;
mod ledger;
mod reload;
pub use reload::Reloaded;
pub(crate) use reload::{apply_reload, follow_reload};
mod status;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::state::Gateway;

/// The admin listener's routes.
pub(crate) fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/health", get(status::health))
        .route("/ready", get(status::ready))
        .route("/metrics", get(status::metrics))
        .route("/dashboard", get(dashboard::page))
        .route("/admin/reload", post(reload::reload))
        .route("/admin/ledger/append", post(ledger::append))
        .route("/admin/keys", get(keys::list))
        .route("/admin/keys/issue", post(keys::issue))
        .route("/admin/keys/revoke", post(keys::revoke))
        .route("/admin/accounts/{account}/hold", post(holds::start))
        .route("/admin/accounts/{account}/release", post(holds::release))
        .route("/admin/accounts/{account}/activate", post(holds::activate))
}
