//! Export REDCap Version (`content=version`, §6.5).

use redcap::ApiError;

use super::Ctx;
use crate::db::LogKind;
use crate::format::Reply;

/// Answers the configured version as plain text (`text/csv`, §6.5). A super
/// token's call is logged with no project (project id 0 in REDCap).
pub fn export(ctx: &mut Ctx) -> Result<Reply, ApiError> {
    ctx.log_manage(LogKind::Manage, "Export REDCap version");
    Ok(Reply::text(
        200,
        "text/csv; charset=utf-8",
        ctx.config.version.to_string(),
    ))
}
