//! The project's record id field, which names the records of an export.
//!
//! A flat export's rows carry the record id in the column of the project's
//! first field — but only when that field was exported: an export of some
//! `fields` may not include it, and its first column is then another
//! field's value (patient data, which must never reach the ledger). So the
//! gateway reads the field from REDCap's metadata, with the account's own
//! token, once per account and ten minutes
//! ([`crate::state::RecordFields`]); the call is the gateway's own and
//! is ledgered like any other (client `gateway`, with its reason). If the
//! metadata cannot be read, the export's entry names no records and an
//! alert says why.

use std::time::Instant;

use ledger::{EntryKind, RecordIds};

use crate::export::RecordIdField;
use crate::policy::Account;
use crate::state::Gateway;

/// The client name the gateway's own calls are ledgered under.
pub const GATEWAY_CLIENT: &str = "gateway";

/// The account's project's record id field, from what was read lately
/// ([`crate::state::RecordFields`]) or from REDCap.
pub(crate) async fn record_id_field(gw: &Gateway, account: &Account) -> Option<RecordIdField> {
    if let Some(field) = gw.record_fields().trusted(&account.name) {
        return field;
    }
    let field = match read_record_id_field(gw, account).await {
        Ok(f) => Some(f),
        Err(why) => {
            let _ = gw
                .ledger()
                .append(EntryKind::Alert {
                    code: "record_ids_unknown".into(),
                    message: format!(
                        "the gateway could not read the record id field of account `{}`'s project ({why}); its exports' response entries name no records until it can",
                        account.name
                    ),
                })
                .await;
            None
        }
    };
    gw.record_fields().remember(&account.name, field.clone());
    field
}

/// Asks REDCap for the metadata: a ledgered call.
async fn read_record_id_field(gw: &Gateway, account: &Account) -> Result<RecordIdField, String> {
    let token = gw
        .tokens()
        .get(&account.secret)
        .await
        .map_err(|_| "the token could not be read from the secrets store".to_string())?;
    let body = "content=metadata&format=json&returnFormat=json";
    let request_id = crate::restart::new_request_id();
    let ledger = gw.ledger();
    ledger
        .append(EntryKind::Request {
            request_id: request_id.clone(),
            client: GATEWAY_CLIENT.into(),
            account: account.name.clone(),
            site: account.site.clone(),
            content: Some("metadata".into()),
            action: Some("export".into()),
            format: Some("json".into()),
            params: vec!["content".into(), "format".into(), "returnFormat".into()],
            record_ids: RecordIds::new(),
            filter_hmac: None,
            body_hmac: gw.fingerprint().hmac_hex(body.as_bytes()),
            body_bytes: body.len() as u64,
            reason: Some(
                "the gateway reads the project's record id field to name the records of exports"
                    .into(),
            ),
        })
        .await
        .map_err(|()| "the ledger is unavailable".to_string())?;
    let started = Instant::now();
    let mut form = String::from(body);
    form.push_str("&token=");
    form.push_str(token.value.expose());
    let reply = gw.upstream().post(form).await;
    let (status, answer) = match &reply {
        Ok(r) => (r.status, r.body.clone()),
        Err(_) => (503, Default::default()),
    };
    let _ = ledger
        .append(EntryKind::Response {
            request_id,
            status,
            record_ids: RecordIds::new(),
            body_hmac: gw.fingerprint().hmac_hex(&answer),
            body_bytes: answer.len() as u64,
            latency_ms: started.elapsed().as_millis() as u64,
            delivery: None,
        })
        .await;
    let reply = reply.map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!(
            "REDCap answered {}: {}",
            reply.status,
            redcap::error_message(&String::from_utf8_lossy(&reply.body))
                .unwrap_or_else(|| "no error text".into())
        ));
    }
    first_field(&reply.body).ok_or_else(|| "the metadata has no fields".to_string())
}

/// The first field of a metadata export (JSON).
fn first_field(body: &[u8]) -> Option<RecordIdField> {
    let fields: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(body).ok()?;
    let first = fields.first()?;
    let text = |k: &str| first.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Some(RecordIdField {
        name: text("field_name")?,
        label: text("field_label").unwrap_or_default(),
    })
}
