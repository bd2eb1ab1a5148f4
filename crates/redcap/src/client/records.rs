//! Records: Export / Import / Delete / Rename Records (§6.1–6.3).

use serde::Deserialize;
use serde_json::Value;

use super::rows::{Row, decode_rows, text};
use super::{Error, Format, OutboundLimiter, Params, Project};
use crate::Content;

/// Flat (one row per record) or EAV (one row per value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordType {
    /// `flat`: one row per record (and event and repeat instance).
    #[default]
    Flat,
    /// `eav`: one row per value (`record`, `field_name`, `value`).
    Eav,
}

impl RecordType {
    fn as_str(self) -> &'static str {
        match self {
            RecordType::Flat => "flat",
            RecordType::Eav => "eav",
        }
    }
}

/// Raw codes or choice labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RawOrLabel {
    /// The stored codes (`1`).
    #[default]
    Raw,
    /// The choices' labels (`Yes`).
    Label,
}

/// What to export (§6.1). Empty lists mean "all".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordQuery {
    /// Record ids to export.
    pub records: Vec<String>,
    /// Fields to export (the record id is not added: list it too).
    pub fields: Vec<String>,
    /// Instruments whose fields to export.
    pub forms: Vec<String>,
    /// Choice codes or their labels.
    pub raw_or_label: RawOrLabel,
    /// Adds `redcap_data_access_group` (ignored for DAG members).
    pub export_data_access_groups: bool,
    /// With labels: checked checkbox columns hold the choice's label
    /// instead of `Checked` (REDCap's `exportCheckboxLabel`).
    pub export_checkbox_label: bool,
}

impl RecordQuery {
    fn params(&self, record_type: RecordType) -> Params {
        let mut p = Params::export(Content::Record)
            .set("type", record_type.as_str())
            .list("records", &self.records)
            .list("fields", &self.fields)
            .list("forms", &self.forms);
        if self.raw_or_label == RawOrLabel::Label {
            p = p.set("rawOrLabel", "label");
        }
        if self.export_data_access_groups {
            p = p.set("exportDataAccessGroups", "true");
        }
        if self.export_checkbox_label {
            p = p.set("exportCheckboxLabel", "true");
        }
        p
    }
}

/// One EAV row: `record`, `field_name`, `value` (plus event/repeat columns
/// in `other` for longitudinal or repeating projects).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EavRow {
    /// The record id.
    #[serde(deserialize_with = "text")]
    pub record: String,
    /// The field.
    #[serde(deserialize_with = "text")]
    pub field_name: String,
    /// The value, as text.
    #[serde(deserialize_with = "text")]
    pub value: String,
    /// `redcap_event_name`, `redcap_repeat_instrument`, `redcap_repeat_instance` when the project has them.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// `overwriteBehavior`: whether blank values erase stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverwriteBehavior {
    /// Blanks are ignored.
    #[default]
    Normal,
    /// Blanks erase.
    Overwrite,
}

/// `returnContent` of Import Records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnContent {
    /// The number of records imported.
    #[default]
    Count,
    /// The ids of the records imported.
    Ids,
    /// The new and the original ids (only with `force_auto_number`).
    AutoIds,
    /// An empty body.
    Nothing,
}

/// How to import (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// The shape of the data sent.
    pub record_type: RecordType,
    /// Whether blank values erase stored ones.
    pub overwrite: OverwriteBehavior,
    /// Give new records the next ids instead of the ones sent.
    pub force_auto_number: bool,
    /// What the answer lists.
    pub return_content: ReturnContent,
}

/// The answer of Import Records, by `returnContent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportResult {
    /// The number of records imported.
    Count(usize),
    /// The ids of the records imported.
    Ids(Vec<String>),
    /// `(new id, original id)` pairs.
    AutoIds(Vec<(String, String)>),
    /// Nothing was asked for.
    Nothing,
}

impl ImportResult {
    fn parse(requested: ReturnContent, auto: bool, body: &str) -> Result<ImportResult, Error> {
        let bad = |detail: String| Error::Decode {
            what: "Import Records",
            detail,
        };
        let ids = || -> Result<Vec<String>, Error> {
            serde_json::from_str::<Vec<Value>>(body)
                .map_err(|e| bad(e.to_string()))
                .map(|v| {
                    v.into_iter()
                        .map(|id| match id {
                            Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect()
                })
        };
        match requested {
            ReturnContent::Nothing => Ok(ImportResult::Nothing),
            ReturnContent::Ids => ids().map(ImportResult::Ids),
            ReturnContent::AutoIds if auto => Ok(ImportResult::AutoIds(
                ids()?
                    .into_iter()
                    .map(|pair| match pair.split_once(',') {
                        Some((new, old)) => (new.to_owned(), old.to_owned()),
                        None => (pair, String::new()),
                    })
                    .collect(),
            )),
            ReturnContent::Count | ReturnContent::AutoIds => {
                #[derive(Deserialize)]
                struct Count {
                    count: Value,
                }
                let c: Count = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
                let n = match c.count {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.parse().ok(),
                    _ => None,
                };
                n.map(|n| ImportResult::Count(n as usize))
                    .ok_or_else(|| bad("count is not a number".into()))
            }
        }
    }
}

impl<L: OutboundLimiter> Project<L> {
    /// Export Records, flat JSON.
    pub async fn export_records(&self, query: &RecordQuery) -> Result<Vec<Row>, Error> {
        self.export_records_in(Format::Json, query).await
    }

    /// Export Records, flat, in `format`, decoded into rows (CSV and XML
    /// values are strings).
    pub async fn export_records_in(
        &self,
        format: Format,
        query: &RecordQuery,
    ) -> Result<Vec<Row>, Error> {
        let body = self
            .export_records_raw(format, RecordType::Flat, query)
            .await?;
        decode_rows(format, &body)
    }

    /// Export Records as EAV rows.
    pub async fn export_records_eav(&self, query: &RecordQuery) -> Result<Vec<EavRow>, Error> {
        self.call_json("Export Records (EAV)", query.params(RecordType::Eav))
            .await
    }

    /// Export Records: the body exactly as REDCap sent it.
    pub async fn export_records_raw(
        &self,
        format: Format,
        record_type: RecordType,
        query: &RecordQuery,
    ) -> Result<String, Error> {
        let answer = self.call(query.params(record_type).format(format)).await?;
        Ok(answer.body)
    }

    /// Import Records from rows (flat, or EAV rows with
    /// `ImportOptions::record_type`).
    pub async fn import_records(
        &self,
        rows: &[Row],
        options: &ImportOptions,
    ) -> Result<ImportResult, Error> {
        let data = serde_json::to_string(rows).map_err(Error::encode)?;
        self.import_records_raw(Format::Json, &data, options).await
    }

    /// Import Records from `data` already in `format` (CSV, XML, JSON).
    /// The answer is requested as JSON.
    pub async fn import_records_raw(
        &self,
        format: Format,
        data: &str,
        options: &ImportOptions,
    ) -> Result<ImportResult, Error> {
        let mut p = Params::write(Content::Record)
            .format(format)
            .set("returnFormat", "json")
            .set("type", options.record_type.as_str())
            .set(
                "overwriteBehavior",
                match options.overwrite {
                    OverwriteBehavior::Normal => "normal",
                    OverwriteBehavior::Overwrite => "overwrite",
                },
            )
            .set(
                "returnContent",
                match options.return_content {
                    ReturnContent::Count => "count",
                    ReturnContent::Ids => "ids",
                    ReturnContent::AutoIds => "auto_ids",
                    ReturnContent::Nothing => "nothing",
                },
            )
            .set("data", data);
        if options.force_auto_number {
            p = p.set("forceAutoNumber", "true");
        }
        let answer = self.call(p).await?;
        ImportResult::parse(
            options.return_content,
            options.force_auto_number,
            &answer.body,
        )
    }

    /// Delete Records (`records[]`, optionally only one `instrument`);
    /// answers the number deleted. Nothing is deleted if one is missing.
    pub async fn delete_records<S: AsRef<str>>(
        &self,
        records: &[S],
        instrument: Option<&str>,
    ) -> Result<usize, Error> {
        self.call_count(
            "Delete Records",
            Params::delete(Content::Record, "records", records).set_opt("instrument", instrument),
        )
        .await
    }

    /// Rename Record. REDCap answers its validation failures with HTTP 200
    /// and a plain message (§6.3): those become [`Error::BadRequest`].
    pub async fn rename_record(&self, record: &str, new_name: &str) -> Result<(), Error> {
        let answer = self
            .call(
                Params::write(Content::Record)
                    .set("action", "rename")
                    .format(Format::Json)
                    .set("record", record)
                    .set("new_record_name", new_name),
            )
            .await?;
        match answer.body.trim() {
            "1" => Ok(()),
            other => Err(Error::BadRequest {
                message: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_answers() {
        assert_eq!(
            ImportResult::parse(ReturnContent::Count, false, "{\"count\": 2}").unwrap(),
            ImportResult::Count(2)
        );
        assert_eq!(
            ImportResult::parse(ReturnContent::Ids, false, "[\"1\",\"2\"]").unwrap(),
            ImportResult::Ids(vec!["1".into(), "2".into()])
        );
        assert_eq!(
            ImportResult::parse(ReturnContent::AutoIds, true, "[\"5,a\"]").unwrap(),
            ImportResult::AutoIds(vec![("5".into(), "a".into())])
        );
        // auto_ids without forceAutoNumber is a count (§6.2).
        assert_eq!(
            ImportResult::parse(ReturnContent::AutoIds, false, "{\"count\": 1}").unwrap(),
            ImportResult::Count(1)
        );
        assert_eq!(
            ImportResult::parse(ReturnContent::Nothing, false, "").unwrap(),
            ImportResult::Nothing
        );
        assert!(ImportResult::parse(ReturnContent::Count, false, "2").is_err());
    }
}
