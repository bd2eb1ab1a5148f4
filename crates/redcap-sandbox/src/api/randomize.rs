//! Randomize Record (`content=record&action=randomize`), as REDCap
//! 15.7.6's `API/record/randomize.php` answers a project without a
//! randomization model.
//!
//! The entry gate needs the Randomize right (`random_perform`, 403 `You
//! do not have Randomize privileges`; administrators have it). REDCap then
//! looks up `randomization_id`; the lookup fails unless the project has
//! randomization enabled **and** an allocation table with that id, both
//! set up only in the web UI. The sandbox has neither, so every call that
//! passes the gate is answered as REDCap answers a failed lookup: HTTP 200
//! with the plain text `Invalid data supplied` (in `format`'s content
//! type), before the record is even looked at, logging nothing.

use redcap::ApiError;

use super::Ctx;
use crate::format::Reply;

/// REDCap's answer to a `randomization_id` it cannot find. *Observed* in
/// 15.7.6's `API/record/randomize.php`.
pub const INVALID_DATA: &str = "Invalid data supplied";

/// Randomize Record.
pub fn randomize(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(ctx.format, INVALID_DATA.into()))
}
