//! Step 2: the client key (the form's `token`: REDCap gets the real token
//! instead), checked against the key file as it is now
//! ([`crate::state::ClientKeys`]). A refused key is answered in REDCap's
//! 403 shape and counted per source and minute; one that is a real REDCap
//! token raises an alert.

use std::net::SocketAddr;

use axum::http::StatusCode;
use jiff::Timestamp;
use ledger::EntryKind;

use crate::keys::KeyRecord;
use crate::reply::{ApiReply, Format, NO_API_PERMISSION};
use crate::state::Gateway;

/// Who is calling: the key and where from.
pub(super) struct Caller {
    pub key: std::sync::Arc<KeyRecord>,
    pub source: String,
    pub now: Timestamp,
}

impl Caller {
    /// A refusal after the key is known: counted into `denied` entries.
    pub(super) fn deny(
        &self,
        gw: &Gateway,
        why: String,
        status: StatusCode,
        message: String,
        fmt: Format,
    ) -> ApiReply {
        gw.denials()
            .count(self.now, &self.source, Some(&self.key.client), &why);
        gw.metrics().denied();
        ApiReply::new(status, message, fmt)
    }
}

/// Step 2: the presented key, or REDCap's own refusal.
pub(super) async fn authenticate(
    gw: &Gateway,
    presented: &str,
    peer: SocketAddr,
    fmt: Format,
) -> Result<Caller, ApiReply> {
    let now = Timestamp::now();
    let source = peer.ip().to_string();
    // Fail closed: keys not confirmed with PostgreSQL lately may include
    // one revoked meanwhile.
    if let Some(ago) = gw.cluster().and_then(|l| l.confirmed.stale()) {
        gw.denials().count(
            now,
            &source,
            None,
            "client keys not confirmed with PostgreSQL",
        );
        gw.metrics().denied();
        return Err(ApiReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The gateway could not confirm client keys with its database for {} s; try again later.",
                ago.as_secs()
            ),
            fmt,
        ));
    }
    let mut verdict = gw.keys().check(presented, now);
    // With shared keys an unknown key may be one issued on another host
    // whose notification is still on its way: read the keys once more.
    if verdict == Err("unknown key") && gw.cluster().is_some() && gw.keys().may_recheck() {
        if let Err(e) = gw.keys().try_reload() {
            tracing::warn!(error = %e, "could not re-read the client keys from PostgreSQL");
        }
        verdict = gw.keys().check(presented, now);
    }
    match verdict {
        Ok(key) => {
            gw.keys().note_use(&key.id, now);
            Ok(Caller { key, source, now })
        }
        Err(why) => {
            let fp = gw.fingerprint().fingerprint_bytes(presented.as_bytes()).0;
            if let Some(account) = gw.token_holder(&fp) {
                let _ = gw
                    .ledger()
                    .append(EntryKind::Alert {
                        code: "real_token_presented".into(),
                        message: format!(
                            "a client at {source} presented the REDCap token of account `{account}` ({fp}) to the gateway: someone holds the real token; rotate it now"
                        ),
                    })
                    .await;
            }
            gw.denials().count(now, &source, None, why);
            gw.metrics().denied();
            Err(ApiReply::new(StatusCode::FORBIDDEN, NO_API_PERMISSION, fmt))
        }
    }
}
