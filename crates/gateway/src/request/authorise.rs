//! Step 3: what the client's policy allows — its allowed methods, source
//! addresses, a reason for writes, the account's quarantine or lapse, exports the
//! DAG guard cannot check.

use axum::http::{HeaderMap, StatusCode};
use redcap::{Action, Content};
use warden_config::WriteReason;

use super::authenticate::Caller;
use crate::answer;
use crate::form::Form;
use crate::policy::{self, Account, Client};
use crate::reply::{ApiReply, Format, NO_API_PERMISSION};
use crate::state::{Applied, Gateway, Refusal};

/// An authorised call: who, for which account, doing what.
pub(super) struct Call<'a> {
    pub client: &'a Client,
    pub account: &'a Account,
    pub content: Content,
    pub action: Action,
    pub reason: Option<String>,
    pub fmt: Format,
}

/// A refusal counted into `denied` entries: why (for the entry), status,
/// message (for the client).
type Deny<'d> = &'d dyn Fn(String, StatusCode, String) -> ApiReply;

/// Step 3: what the client's policy allows, or the refusal.
pub(super) fn authorise<'a>(
    gw: &Gateway,
    applied: &'a Applied,
    caller: &'a Caller,
    form: &mut Form,
    headers: &HeaderMap,
    fmt: Format,
) -> Result<Call<'a>, ApiReply> {
    let deny = |why: String, status, message| caller.deny(gw, why, status, message, fmt);
    let (client, named) = client_of(applied, caller, &deny)?;
    // A dual pair's clients are served by its active member: the token,
    // the ledger entries and the DAG guard are that account's.
    let (serving, refusal) = gw
        .quarantines()
        .standing(&named.name, named.pair.as_deref());
    let account = applied.policy.accounts.get(&serving).unwrap_or(named);
    let (content, action) = method_of(form, client, fmt, &deny)?;
    let call = Call {
        client,
        account,
        content,
        action,
        reason: reason_of(headers, form),
        fmt,
    };
    allowed_now(&call, refusal, form, &deny)?;
    Ok(call)
}

/// The caller's client and its account, if the client is still
/// configured and may call from the caller's address.
fn client_of<'a>(
    applied: &'a Applied,
    caller: &Caller,
    deny: Deny<'_>,
) -> Result<(&'a Client, &'a Account), ApiReply> {
    let Some(client) = applied.policy.clients.get(&caller.key.client) else {
        return Err(deny(
            "client no longer configured".into(),
            StatusCode::FORBIDDEN,
            NO_API_PERMISSION.into(),
        ));
    };
    let account = &client.account;
    let ip = caller.source.parse().expect("an IP address printed");
    if !client.source_allowed(ip) {
        return Err(deny(
            format!("source {} not allowed", caller.source),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway does not accept requests for client \"{}\" from this address",
                client.name
            ),
        ));
    }
    Ok((client, account))
}

/// The method the form calls, if it is one and the client may call it.
fn method_of(
    form: &Form,
    client: &Client,
    fmt: Format,
    deny: Deny<'_>,
) -> Result<(Content, Action), ApiReply> {
    let Some(content) = Content::parse(form.get("content").unwrap_or("")) else {
        return Err(ApiReply::new(
            StatusCode::BAD_REQUEST,
            redcap::ApiError::InvalidContent.message(),
            fmt,
        ));
    };
    let action = Action::derive(
        content,
        form.get("action").unwrap_or(""),
        form.get_bytes("data").is_some(),
    )
    .map_err(|e| ApiReply::new(StatusCode::BAD_REQUEST, e.message(), fmt))?;
    if !client.allows(content, action) {
        return Err(deny(
            format!("not allowed: {}:{}", content.as_str(), action.as_str()),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway does not allow client \"{}\" to call {}:{}",
                client.name,
                content.as_str(),
                action.as_str()
            ),
        ));
    }
    Ok((content, action))
}

/// What else must hold for this call now: a reason for a write where the
/// client must give one, the account not quarantined, no background
/// import, no site export the DAG guard cannot check.
fn allowed_now(
    call: &Call<'_>,
    refusal: Option<(String, Refusal)>,
    form: &Form,
    deny: Deny<'_>,
) -> Result<(), ApiReply> {
    let Call {
        client,
        account,
        content,
        action,
        ..
    } = *call;
    if policy::is_write(action)
        && client.write_reason == WriteReason::Required
        && call.reason.is_none()
    {
        return Err(deny(
            "write without a reason".into(),
            StatusCode::BAD_REQUEST,
            "This client must give a reason for changes: send it in the X-Warden-Reason header or a \"reason\" field".into(),
        ));
    }
    match refusal {
        None => {}
        Some((refused, Refusal::Quarantined(q))) => {
            return Err(deny(
                "account quarantined".into(),
                StatusCode::FORBIDDEN,
                format!(
                    "The gateway has quarantined account \"{refused}\" since {} ({}); an operator must release it",
                    q.since, q.reason
                ),
            ));
        }
        Some((refused, Refusal::Retired(r))) => {
            return Err(deny(
                "account retired".into(),
                StatusCode::FORBIDDEN,
                format!(
                    "The gateway no longer serves account \"{refused}\": it was retired on {} by {} ({}); its REDCap token is dead. Use the account that replaced it, or enrol it again (redcap-warden accounts enroll)",
                    r.since.strftime("%Y-%m-%d"),
                    r.by,
                    r.reason
                ),
            ));
        }
        Some((refused, Refusal::Lapsed(l))) => {
            return Err(deny(
                format!("account lapsed: {}", l.reason),
                StatusCode::FORBIDDEN,
                format!(
                    "The gateway refuses account \"{refused}\": its re-authorisation lapsed on {} ({}); an approver must re-approve it (redcap-warden reauth)",
                    l.since.strftime("%Y-%m-%d"),
                    l.reason
                ),
            ));
        }
    }
    // REDCap then answers without record ids: the ledger could not say
    // which records changed.
    if answer::php_true(form.get("backgroundProcess")) {
        return Err(deny(
            "backgroundProcess".into(),
            StatusCode::BAD_REQUEST,
            "The gateway does not forward backgroundProcess=true: REDCap would not report which records changed; send the import without it".into(),
        ));
    }
    let site_export = account.dag_id.is_some() && !policy::is_write(action);
    if site_export
        && !client.unchecked_exports
        && let Some(what) = policy::unguarded_export(content, form)
    {
        return Err(deny(
            format!("unchecked export: {}:{}", content.as_str(), action.as_str()),
            StatusCode::FORBIDDEN,
            format!(
                "The gateway cannot check {what} against site \"{}\"'s Data Access Group, and client \"{}\" is not allowed unchecked exports",
                account.site.as_deref().unwrap_or_default(),
                client.name
            ),
        ));
    }
    Ok(())
}

/// The reason for a change: the `X-Warden-Reason` header or a `reason`
/// field (removed before forwarding: REDCap has no such parameter).
fn reason_of(headers: &HeaderMap, form: &mut Form) -> Option<String> {
    let field = form.take("reason");
    let header = headers
        .get("x-warden-reason")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    header
        .or(field)
        .map(|r| r.trim().chars().take(1000).collect::<String>())
        .filter(|r| !r.is_empty())
}
