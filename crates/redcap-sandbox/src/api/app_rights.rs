//! Check App Rights (`content=appRightsCheck`), REDCap's REDCap Mobile App
//! method (`API/appRightsCheck/export.php`): past the entry gate (API
//! Export), any token gets HTTP 200 with an empty body in its `format`,
//! logging nothing. The app sends `uuid` to register its device, which
//! REDCap answers 403 `This device has been blocked.` once an
//! administrator has revoked it; the sandbox has no device list, so no
//! device is ever blocked.
//!
//! Sent with `data`, REDCap derives the action `import` and includes an
//! `appRightsCheck/import.php` that does not exist: PHP carries on and
//! ends with an empty 200, which the sandbox also answers (after the
//! API Import gate).

use redcap::ApiError;

use super::Ctx;
use crate::format::Reply;

/// Check App Rights.
pub fn check(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    Ok(Reply::ok(ctx.format, String::new()))
}
