//! Step 5: a single-account token cut-over holds the request
//! ([`crate::state::Holds`]).

use axum::http::StatusCode;

use crate::policy::Account;
use crate::reply::{ApiReply, Format};
use crate::state::Holds;

/// Step 5: a single-account token cut-over holds the request until the
/// new token is in, within the hold's bound.
pub(super) async fn hold(holds: &Holds, account: &Account, fmt: Format) -> Result<(), ApiReply> {
    if let Err(expired) = holds.wait(&account.name).await {
        return Err(ApiReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "The gateway held this request for {} s while account \"{}\"'s REDCap token was being replaced, and the replacement did not finish; try again later",
                expired.seconds, account.name
            ),
            fmt,
        ));
    }
    Ok(())
}
