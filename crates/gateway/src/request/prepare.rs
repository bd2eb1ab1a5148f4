//! Step 4: the form as it will be forwarded — the DAG guard's
//! `exportDataAccessGroups`, `returnContent=ids` for imports — and what
//! the later steps will do with the answer.

use redcap::{Action, Content};

use super::authorise::Call;
use crate::answer;
use crate::export::Shape;
use crate::form::{self, Form};
use crate::reply::{ApiReply, upperfirst};

/// What [`prepare`] decided.
pub(super) struct Plan {
    /// The DAG guard reads this export's head.
    pub dag_guard: bool,
    /// A record export: its answer streams.
    pub streamed_export: bool,
    /// The import answer the client asked for, when the gateway asked
    /// REDCap for ids instead.
    pub rewrite_ids: Option<answer::ReturnContent>,
    /// The shape of the records sent or answered (the form's `format`).
    pub shape: Shape,
    /// `type=eav`.
    pub eav: bool,
}

/// Step 4: the form as it will be forwarded.
pub(super) fn prepare(
    call: &Call<'_>,
    form: &mut Form,
    max_input_vars: usize,
) -> Result<Plan, ApiReply> {
    form.take("backgroundProcess");
    let record = call.content == Content::Record;
    // DAG guard: REDCap never gives a DAG-restricted account the DAG
    // column, so asking for it proves the restriction on every export. (A
    // restricted account's answer has no such column to strip; an
    // unrestricted one's is withheld whole.)
    let dag_guard = record && call.account.dag_id.is_some() && call.action == Action::Export;
    if dag_guard {
        form.set("exportDataAccessGroups", "true");
    }
    // Learn the ids of imported records.
    let wanted = answer::ReturnContent::of(
        form.get("returnContent"),
        answer::php_true(form.get("forceAutoNumber")),
    );
    let rewrite_ids =
        (record && call.action == Action::Import && wanted.needs_rewrite()).then(|| {
            form.set("returnContent", "ids");
            wanted
        });
    // The body was checked before the gateway added its own fields; PHP
    // must still read all of them, the token too.
    let count = form.field_count() + 1;
    if count > max_input_vars {
        let refusal = form::Refusal::TooManyOutgoing {
            count,
            max: max_input_vars,
        };
        return Err(ApiReply::bad_request(
            upperfirst(&refusal.to_string()),
            call.fmt,
        ));
    }
    Ok(Plan {
        dag_guard,
        streamed_export: record && call.action == Action::Export,
        rewrite_ids,
        shape: export_shape(form),
        eav: form.get("type") == Some("eav"),
    })
}

/// The shape of records sent or answered in this form's `format`.
fn export_shape(form: &Form) -> Shape {
    match form.get("format").unwrap_or("") {
        "json" => Shape::Json,
        "csv" => Shape::Csv(answer::csv_delimiter(form.get("csvDelimiter"))),
        "odm" => Shape::Odm,
        _ => Shape::Xml,
    }
}
