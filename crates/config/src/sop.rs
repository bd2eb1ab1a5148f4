//! `[sop]`: what the token-management SOP that `redcap-warden sop` writes
//! needs besides the accounts and their schedule — its document id and
//! version, who holds each role and who deputises, the revision history,
//! and where the approved copy lies (so a rotation can say when it is
//! stale). `docs/sop.md` describes the document.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::de::DeTable;

use crate::Problem;
use crate::schema::{str_at, table_at, tables_at};

/// `[sop]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SopSection {
    /// The document's identifier in the institution's document system,
    /// e.g. `SOP-IT-017`.
    pub document_id: String,
    /// The document's version; the last `[[sop.revision]]` names it.
    pub version: String,
    /// The document's title; a default one names REDCap API tokens.
    pub title: Option<String>,
    /// The SOP as last approved (signed); `rotate start` and `rotate run`
    /// warn, and record `sop: stale` in the rotation's first entry, when
    /// today's configuration would produce a different procedure.
    pub approved: Option<PathBuf>,
    /// Who owns the document and the procedure.
    pub owner: Role,
    /// Who approves (signs) the document.
    pub approver: Role,
    /// Who runs rotations (`rotate start`, `rotate run`).
    pub operator: Role,
    /// The REDCap administrator who regenerates tokens in the Control
    /// Center.
    pub redcap_admin: Role,
    /// The revision history, oldest first.
    #[serde(default)]
    pub revision: Vec<Revision>,
}

/// A role of the SOP: who holds it and who acts in their absence.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Who holds it (a person or a team).
    pub name: String,
    /// Who acts when they are away.
    pub deputy: String,
    /// How to reach them (an address or a ticket queue).
    pub contact: Option<String>,
}

/// One line of the revision history.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// The version this revision made.
    pub version: String,
    /// Its date, `YYYY-MM-DD`.
    pub date: String,
    /// Who made it.
    pub author: String,
    /// What changed.
    pub change: String,
}

/// What the schema walk cannot say: dates that are dates, deputies who are
/// not the holder, and a version the revision history knows.
pub(crate) fn validate(doc: &DeTable<'_>, text: &str, problems: &mut Vec<Problem>) {
    let Some(sop) = table_at(doc, "sop") else {
        return;
    };
    let mut push = |span: Range<usize>, field: String, message: String, fix: String| {
        problems.push(Problem::at_offset(
            text,
            span.start,
            Some(field),
            message,
            fix,
        ));
    };
    for role in ["owner", "approver", "operator", "redcap_admin"] {
        if let Some(t) = table_at(sop, role)
            && let (Some((name, _)), Some((deputy, span))) =
                (str_at(t, "name"), str_at(t, "deputy"))
            && name.trim() == deputy.trim()
        {
            push(
                span,
                format!("sop.{role}.deputy"),
                format!("`{deputy}` is both the holder and the deputy of {role}"),
                format!("name someone else who acts when {name} is away"),
            );
        }
    }
    let revisions = tables_at(sop, "revision");
    for (i, t, _) in &revisions {
        if let Some((date, span)) = str_at(t, "date")
            && date.parse::<jiff::civil::Date>().is_err()
        {
            push(
                span,
                format!("sop.revision[{i}].date"),
                format!("`{date}` is not a date"),
                "write the date as YYYY-MM-DD, e.g. date = \"2026-12-01\"".into(),
            );
        }
    }
    if let Some((version, span)) = str_at(sop, "version") {
        let last = revisions
            .last()
            .and_then(|(_, t, _)| str_at(t, "version"))
            .map(|(v, _)| v);
        if last != Some(version) {
            let message = match last {
                Some(last) => format!("version `{version}` is not the last revision's (`{last}`)"),
                None => format!("version `{version}` has no [[sop.revision]]"),
            };
            push(
                span,
                "sop.version".into(),
                message,
                format!(
                    "add a [[sop.revision]] with version = \"{version}\", date, author and change (what this version changed), last"
                ),
            );
        }
    }
}
