//! The token-management SOP, generated from `warden.toml`
//! (`redcap-warden sop`, `docs/sop.md`).
//!
//! A standard operating procedure that is written by hand drifts from what
//! the tool does; this one is built from the configuration in force and
//! from the same text the tool prints (the Control Center steps of the
//! `manual` issuer, [`crate::rotation::issuer::manual_steps`]), so a
//! changed rotation period, role or issuer changes the document.
//!
//! - [`model`]: the document as data — a [`Header`] (generation time, tool
//!   version, the configuration's SHA-256) and the **procedure**, a list of
//!   [`Section`]s that depends on nothing but the configuration's meaning;
//! - [`markdown`] and [`html`]: the two renderings (the HTML one
//!   self-contained: inline style, no script, no external reference), both
//!   marking where the procedure begins and ends;
//! - [`check`]: today's procedure against a written copy (`sop --check`,
//!   and the rotation's "approved SOP is stale" warning), section by
//!   section, with a short unified diff of each that differs.

pub mod check;
pub mod html;
pub mod markdown;
pub mod model;

#[cfg(test)]
mod tests;

pub use check::{Difference, compare, stale};
pub use model::{Block, Document, Header, Section, build};

/// The line before the procedure in both renderings.
pub const BEGIN: &str = "<!-- sop:procedure:begin -->";
/// The line after it.
pub const END: &str = "<!-- sop:procedure:end -->";

/// Why no SOP could be built or checked.
#[derive(Debug, thiserror::Error)]
pub enum SopError {
    /// The configuration has no `[sop]`.
    #[error(
        "{path} has no [sop] section; fix: add one with document_id, version, owner, approver, operator, redcap_admin and a [[sop.revision]] (docs/sop.md shows an example)"
    )]
    NotConfigured {
        /// The configuration file.
        path: String,
    },
    /// The file checked is no SOP this tool wrote.
    #[error(
        "{what} holds no procedure (no `{BEGIN}` … `{END}` lines); fix: give a file `redcap-warden sop --out` wrote"
    )]
    NoProcedure {
        /// The file, as named.
        what: String,
    },
}
