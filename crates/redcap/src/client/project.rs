//! Project-level methods: version, project info, Create Project's input,
//! metadata, field names, instruments, next record name (§2.5, §6.4, §6.5).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rows::{self, flag, number, text};
use super::{Error, Format, OutboundLimiter, Params, Project};
use crate::{Content, RedcapVersion};

/// The `data` of Create Project (§2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct NewProject {
    /// The title users see (required).
    pub project_title: String,
    /// 0 practice, 1 other (needs `purpose_other`), 2 research, 3 quality
    /// improvement, 4 operational support.
    pub purpose: u8,
    /// What the purpose is, when `purpose` is 1 (other).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub purpose_other: String,
    /// Free-text notes on the project.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project_notes: String,
    /// Create the project longitudinal (events and arms).
    #[serde(skip_serializing_if = "std::ops::Not::not", serialize_with = "as_01")]
    pub is_longitudinal: bool,
    /// Enable surveys.
    #[serde(skip_serializing_if = "std::ops::Not::not", serialize_with = "as_01")]
    pub surveys_enabled: bool,
    /// Number new records automatically.
    #[serde(skip_serializing_if = "std::ops::Not::not", serialize_with = "as_01")]
    pub record_autonumbering_enabled: bool,
}

fn as_01<S: serde::Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*v))
}

/// Export Project Info (§6.5). Attributes this type does not name are kept
/// in `other`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProjectInfo {
    /// REDCap's id of the project.
    #[serde(deserialize_with = "number")]
    pub project_id: u64,
    /// The title users see.
    #[serde(deserialize_with = "text")]
    pub project_title: String,
    /// When the project was created (`YYYY-MM-DD HH:MM:SS`, server time).
    #[serde(deserialize_with = "text", default)]
    pub creation_time: String,
    /// When it moved to production (same format), empty if never.
    #[serde(deserialize_with = "text", default)]
    pub production_time: String,
    /// 0 development, 1 production, 2 analysis/cleanup.
    #[serde(deserialize_with = "number")]
    pub in_production: u64,
    /// 0 practice, 1 other, 2 research, 3 quality improvement, 4 operational support.
    #[serde(deserialize_with = "number")]
    pub purpose: u64,
    /// What the purpose is, when `purpose` is 1 (other).
    #[serde(deserialize_with = "text", default)]
    pub purpose_other: String,
    /// Free-text notes on the project.
    #[serde(deserialize_with = "text", default)]
    pub project_notes: String,
    /// Whether the project has events and arms.
    #[serde(deserialize_with = "flag", default)]
    pub is_longitudinal: bool,
    /// Whether surveys are enabled.
    #[serde(deserialize_with = "flag", default)]
    pub surveys_enabled: bool,
    /// Whether new records are numbered automatically.
    #[serde(deserialize_with = "flag", default)]
    pub record_autonumbering_enabled: bool,
    /// Every other attribute, as REDCap sent it (the list grows with versions).
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// One field of the data dictionary (§6.4), every column as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Field {
    /// The variable name.
    #[serde(deserialize_with = "text")]
    pub field_name: String,
    /// The instrument the field is on.
    #[serde(deserialize_with = "text")]
    pub form_name: String,
    /// A header shown above the field.
    #[serde(deserialize_with = "text")]
    pub section_header: String,
    /// `text`, `notes`, `dropdown`, `radio`, `checkbox`, `file`, `calc`, `descriptive`, …
    #[serde(deserialize_with = "text")]
    pub field_type: String,
    /// The question text.
    #[serde(deserialize_with = "text")]
    pub field_label: String,
    /// Choices (`1, Yes | 0, No`) or a calculation.
    #[serde(deserialize_with = "text")]
    pub select_choices_or_calculations: String,
    /// Help text shown under the field.
    #[serde(deserialize_with = "text")]
    pub field_note: String,
    /// A text field's validation (`integer`, `date_ymd`, `email`, …).
    #[serde(deserialize_with = "text")]
    pub text_validation_type_or_show_slider_number: String,
    /// The validation's minimum.
    #[serde(deserialize_with = "text")]
    pub text_validation_min: String,
    /// The validation's maximum.
    #[serde(deserialize_with = "text")]
    pub text_validation_max: String,
    /// `y` for an identifier (dropped from de-identified exports).
    #[serde(deserialize_with = "text")]
    pub identifier: String,
    /// When the field is shown.
    #[serde(deserialize_with = "text")]
    pub branching_logic: String,
    /// `y` when a value is required.
    #[serde(deserialize_with = "text")]
    pub required_field: String,
    /// Layout of the field (`RV`, `RH`, `LV`, `LH`).
    #[serde(deserialize_with = "text")]
    pub custom_alignment: String,
    /// The number shown for a survey question.
    #[serde(deserialize_with = "text")]
    pub question_number: String,
    /// The matrix the field belongs to, if any.
    #[serde(deserialize_with = "text")]
    pub matrix_group_name: String,
    /// `y` for a ranked matrix.
    #[serde(deserialize_with = "text")]
    pub matrix_ranking: String,
    /// Action tags and notes.
    #[serde(deserialize_with = "text")]
    pub field_annotation: String,
}

impl Field {
    /// A field with the three columns every field needs.
    pub fn new(field_name: &str, form_name: &str, field_type: &str, field_label: &str) -> Field {
        Field {
            field_name: field_name.into(),
            form_name: form_name.into(),
            field_type: field_type.into(),
            field_label: field_label.into(),
            ..Field::default()
        }
    }
}

/// One row of Export List of Export Field Names (§6.4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExportFieldName {
    /// The field's variable name.
    #[serde(deserialize_with = "text")]
    pub original_field_name: String,
    /// For a checkbox, the choice's code; empty otherwise.
    #[serde(deserialize_with = "text")]
    pub choice_value: String,
    /// The column the export uses (`var___code` for a checkbox choice).
    #[serde(deserialize_with = "text")]
    pub export_field_name: String,
}

/// One instrument (§6.4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Instrument {
    /// The instrument's unique name (the `forms` key).
    #[serde(deserialize_with = "text")]
    pub instrument_name: String,
    /// The label users see.
    #[serde(deserialize_with = "text")]
    pub instrument_label: String,
}

pub(crate) fn parse_version(body: &str) -> Result<RedcapVersion, Error> {
    body.trim().parse().map_err(|_| Error::Decode {
        what: "Export REDCap Version",
        detail: format!("not a version: {:?}", body.trim()),
    })
}

impl<L: OutboundLimiter> Project<L> {
    /// Export REDCap Version.
    pub async fn version(&self) -> Result<RedcapVersion, Error> {
        let answer = self
            .call(Params::export(Content::Version).format(Format::Json))
            .await?;
        parse_version(&answer.body)
    }

    /// Export Project Info.
    pub async fn project_info(&self) -> Result<ProjectInfo, Error> {
        self.call_json("Export Project Info", Params::export(Content::Project))
            .await
    }

    /// Export Metadata, optionally only some `fields` / `forms`.
    pub async fn export_metadata<S: AsRef<str>>(
        &self,
        fields: &[S],
        forms: &[S],
    ) -> Result<Vec<Field>, Error> {
        self.call_json(
            "Export Metadata",
            Params::export(Content::Metadata)
                .list("fields", fields)
                .list("forms", forms),
        )
        .await
    }

    /// Import Metadata (development status and Design right); answers the
    /// number of fields.
    pub async fn import_metadata(&self, fields: &[Field]) -> Result<usize, Error> {
        self.import_json("Import Metadata", Params::write(Content::Metadata), fields)
            .await
    }

    /// Export List of Export Field Names, for one field or all.
    pub async fn export_field_names(
        &self,
        field: Option<&str>,
    ) -> Result<Vec<ExportFieldName>, Error> {
        self.call_json(
            "Export Field Names",
            Params::export(Content::ExportFieldNames).set_opt("field", field),
        )
        .await
    }

    /// Export Instruments.
    pub async fn export_instruments(&self) -> Result<Vec<Instrument>, Error> {
        self.call_json("Export Instruments", Params::export(Content::Instrument))
            .await
    }

    /// Generate Next Record Name (`<group_id>-<n>` for DAG users).
    pub async fn generate_next_record_name(&self) -> Result<String, Error> {
        let answer = self
            .call(Params::export(Content::GenerateNextRecordName).format(Format::Json))
            .await?;
        Ok(answer.body.trim().to_owned())
    }

    /// Any export of rows in any format, decoded: for methods and formats
    /// without a typed wrapper.
    pub async fn export_rows(
        &self,
        params: Params,
        format: Format,
    ) -> Result<Vec<rows::Row>, Error> {
        let answer = self.call(params.format(format)).await?;
        rows::decode_rows(format, &answer.body)
    }
}
