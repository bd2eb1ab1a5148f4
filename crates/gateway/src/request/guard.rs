//! Step 8: the DAG guard. A site account's record export is asked for
//! with `exportDataAccessGroups=true`, which REDCap ignores for
//! DAG-restricted users; so the answer's head (the CSV header, the first
//! JSON object or XML item) is held back and read before anything reaches
//! the client. The DAG column there means the account is not restricted:
//! the whole answer is withheld, an alert written and the account
//! quarantined. An answer that is not its format is withheld too.

use axum::http::StatusCode;
use futures_util::StreamExt;
use ledger::{Delivery, EntryKind};

use super::authorise::Call;
use super::prepare::Plan;
use super::stream::Streaming;
use crate::export::Head;
use crate::reply::ApiReply;
use crate::state::Gateway;

/// The most of a record export's head the gateway holds back while the
/// DAG guard decides (one record's row, or the CSV header).
const HEAD_LIMIT: usize = 16 * 1024 * 1024;

/// Step 8: reads the head of a guarded export's answer and decides; the
/// head read stays held in `answer`, to go to the client first.
pub(super) async fn guard(
    gw: &Gateway,
    call: &Call<'_>,
    plan: &Plan,
    answer: &mut Streaming,
) -> Result<(), ApiReply> {
    if !plan.dag_guard {
        return Ok(());
    }
    read_head(call, answer).await?;
    let tally = &mut answer.tally;
    match tally.scanner.head() {
        Head::Clean => Ok(()),
        Head::DagColumn => {
            tally.write(Delivery::Withheld);
            Err(withhold_and_quarantine(gw, call).await)
        }
        Head::Pending => {
            tally.write(Delivery::Withheld);
            let why = if tally.scanner.broken() {
                "REDCap's answer is not the format it was asked for".to_string()
            } else {
                format!("its first record is larger than {} MB", HEAD_LIMIT >> 20)
            };
            Err(ApiReply::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "The gateway withheld this export because it could not check it against the site's Data Access Group: {why}"
                ),
                call.fmt,
            ))
        }
    }
}

/// Reads until the head is decided, the answer is not its format, or
/// [`HEAD_LIMIT`] is held.
async fn read_head(call: &Call<'_>, answer: &mut Streaming) -> Result<(), ApiReply> {
    let mut held_bytes = 0usize;
    while answer.tally.scanner.head() == Head::Pending && !answer.tally.scanner.broken() {
        match answer.upstream.next().await {
            None => {
                answer.tally.scanner.finish();
                answer.ended = true;
            }
            Some(Ok(chunk)) => {
                answer.tally.pass(&chunk);
                held_bytes += chunk.len();
                answer.held.push(chunk);
                if held_bytes > HEAD_LIMIT {
                    break;
                }
            }
            Some(Err(e)) => {
                answer.tally.write(Delivery::UpstreamFailed);
                return Err(ApiReply::new(
                    StatusCode::BAD_GATEWAY,
                    format!("REDCap's answer broke off ({e}); nothing was sent to the client"),
                    call.fmt,
                ));
            }
        }
    }
    Ok(())
}

/// The DAG guard found the column: the export is withheld, an alert
/// written and the account quarantined.
async fn withhold_and_quarantine(gw: &Gateway, call: &Call<'_>) -> ApiReply {
    let account = call.account;
    let why = format!(
        "REDCap returned the Data Access Group column to site account `{}` (site `{}`, DAG id {}): it is not restricted to its DAG (removed from the DAG, or made an administrator); its export was withheld",
        account.name,
        account.site.as_deref().unwrap_or_default(),
        account.dag_id.unwrap_or_default()
    );
    let _ = gw
        .ledger()
        .append(EntryKind::Alert {
            code: "dag_guard".into(),
            message: why.clone(),
        })
        .await;
    gw.quarantines().quarantine(&account.name, &why);
    ApiReply::new(
        StatusCode::FORBIDDEN,
        format!(
            "The gateway withheld this export: REDCap no longer restricts account \"{}\" to its Data Access Group. The account is quarantined until an operator releases it",
            account.name
        ),
        call.fmt,
    )
}
