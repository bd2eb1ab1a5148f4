//! `GET /dashboard`: the compliance report's views, live — findings first,
//! then the gateway's request rate, denials and latency per minute, then
//! every section of `report` (docs/report.md). Server-rendered HTML with
//! inline SVG, no script, nothing fetched; the page reloads itself every
//! 30 seconds. Behind the admin credential: as a bearer token, or as the
//! password of HTTP Basic (any user name) so that a browser can ask for
//! it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governance::report::LiveMetrics;
use governance::report::html::{self, Page};
use jiff::Timestamp;

use crate::state::Gateway;

/// How often the page reloads, and how old the evidence it shows may be.
const REFRESH: u32 = 30;

pub(crate) async fn page(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if !gw.admin_token().matches_browser(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"redcap-warden admin\", charset=\"UTF-8\""),
                ),
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            ],
            "the dashboard needs the admin credential ([gateway] admin_token_file): as the password (any user name), or as a bearer token\n",
        )
            .into_response();
    }
    let live = live(&gw);
    let page = Page {
        title: "redcap-warden dashboard".into(),
        refresh_seconds: Some(REFRESH),
    };
    let body = match gw
        .evidence()
        .get(Duration::from_secs(u64::from(REFRESH)))
        .await
    {
        Some(Ok(mut evidence)) => {
            evidence.live = Some(live);
            if let Some(keys) = keys(&gw) {
                evidence.keys = keys;
            }
            html::render(&evidence, &page)
        }
        Some(Err(why)) => html::render_live(
            &live,
            &format!("The evidence could not be gathered: {why}"),
            &page,
        ),
        None => html::render_live(
            &live,
            "This gateway was started without the report's evidence (`redcap-warden serve` provides it); only its own counters are shown.",
            &page,
        ),
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(html::CSP),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

/// The gateway's own counters.
fn live(gw: &Gateway) -> LiveMetrics {
    LiveMetrics {
        minutes: gw.metrics().per_minute(),
        requests_total: gw.metrics().answered(),
        denied_total: gw.metrics().denied_total(),
        ledger_degraded: gw.ledger().degraded(),
        held_accounts: gw.holds().list().into_iter().map(|(a, _)| a).collect(),
    }
}

/// The client keys with the use this gateway has not written to the key
/// file yet (as `GET /admin/keys`); `None` if the file cannot be read
/// (the gathered list stands).
fn keys(gw: &Gateway) -> Option<Vec<governance::report::ClientKeyView>> {
    let mut keys = gw.keys().file().list().ok()?;
    let unflushed = gw.keys().unflushed_use();
    for k in &mut keys {
        if let Some(&t) = unflushed.get(&k.id) {
            k.last_used = Some(k.last_used.map_or(t, |u| u.max(t)));
        }
    }
    let now = Timestamp::now();
    Some(keys.iter().map(|k| k.view(now)).collect())
}
