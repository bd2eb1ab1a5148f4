//! Step 6: the `request` entry is made durable — or the answer is 503 and
//! nothing is forwarded.

use ledger::{EntryKind, RecordIds};
use redcap::{Action, Content};

use super::authorise::Call;
use super::prepare::Plan;
use crate::export::Scanner;
use crate::form::Form;
use crate::record_field::record_id_field;
use crate::reply::ApiReply;
use crate::state::Gateway;
use crate::upload::Upload;

/// A request made durable by [`record_request`].
pub(super) struct Recorded {
    pub request_id: String,
    /// The canonical urlencoded body, without the token: what the entry
    /// hashes, and (the token added) what goes to REDCap.
    pub canonical: bytes::Bytes,
}

/// Step 6: the `request` entry, durable before anything reaches REDCap.
pub(super) async fn record_request(
    gw: &Gateway,
    call: &Call<'_>,
    plan: &Plan,
    form: &Form,
    upload: Option<&Upload>,
) -> Result<Recorded, ApiReply> {
    let ledger = gw.ledger();
    if ledger.degraded() {
        ledger.count_refused();
        return Err(ApiReply::ledger_unavailable(call.fmt));
    }
    let request_id = crate::restart::new_request_id();
    // What the request entry hashes: the canonical fields, and for an
    // upload the SHA-256 of the file after a line break.
    let canonical = form.encode();
    let body_bytes = canonical.len() as u64 + upload.map_or(0, |u| u.size);
    let mut params = form.names();
    let mut body_hmac = gw.fingerprint().hmac_stream();
    body_hmac.update(canonical.as_bytes());
    if let Some(u) = upload {
        body_hmac.update(b"\n");
        body_hmac.update(hex::encode(u.sha256).as_bytes());
        params.push(u.field.clone());
    }
    let entry = EntryKind::Request {
        request_id: request_id.clone(),
        client: call.client.name.clone(),
        account: call.account.name.clone(),
        site: call.account.site.clone(),
        content: Some(call.content.as_str().into()),
        action: Some(call.action.as_str().into()),
        format: form.get("format").map(str::to_string),
        params,
        record_ids: records_named(gw, call, plan, form).await,
        filter_hmac: form
            .get_bytes("filterLogic")
            .map(|f| gw.fingerprint().hmac_hex(f)),
        body_hmac: body_hmac.finish_hex(),
        body_bytes,
        reason: call.reason.clone(),
    };
    if ledger.append(entry).await.is_err() {
        ledger.count_refused();
        return Err(ApiReply::ledger_unavailable(call.fmt));
    }
    gw.count_request();
    Ok(Recorded {
        request_id,
        canonical: canonical.into(),
    })
}

/// The records the request names: `records`, `record`, and an import's
/// payload — read with the same reader as an export's answer (linear,
/// any format and type).
async fn records_named(gw: &Gateway, call: &Call<'_>, plan: &Plan, form: &Form) -> RecordIds {
    let mut record_ids: RecordIds = form.list("records").into();
    if let Some(r) = form.get("record") {
        record_ids.push(r);
    }
    if call.content == Content::Record
        && call.action == Action::Import
        && let Some(data) = form.get_bytes("data")
    {
        let field = if plan.eav {
            None
        } else {
            record_id_field(gw, call.account).await
        };
        let mut scanner = Scanner::new(plan.shape, plan.eav, field);
        scanner.feed(data);
        scanner.finish();
        record_ids = scanner.into_ids();
    }
    record_ids
}
