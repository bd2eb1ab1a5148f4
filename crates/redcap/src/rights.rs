//! The user-rights model of §4.3–4.5.
//!
//! [`Rights`] holds the privileges shared by users and roles; [`UserRights`]
//! adds the user's identity, expiration and DAG (the shape of Export Users).
//! Per-form viewing rights come in two encodings (legacy 0–3 and the ≥ 15.6
//! bitmask 128–154); both parse into one [`FormRight`], so equal meanings
//! compare equal, and [`FormRightsEncoding`] picks the encoding to write.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::RedcapVersion;

/// Data viewing rights on one instrument (`forms`, §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FormRight {
    /// Cannot see the instrument (legacy 0, bitmask 128).
    NoAccess,
    /// May see, not change, the instrument's data (legacy 2, bitmask 129).
    ReadOnly,
    /// View & edit; survey responses read-only.
    ViewEdit,
    /// View & edit, and edit survey responses.
    ViewEditResponses,
    /// View & edit, and delete (bitmask only).
    ViewEditDelete,
    /// View & edit, edit survey responses, and delete (bitmask only).
    ViewEditResponsesDelete,
}

/// Which numbers [`FormRight`] is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormRightsEncoding {
    /// 0 no access, 2 read only, 1 view & edit, 3 + edit survey responses.
    Legacy,
    /// 128 + 1 read only / + 2 view & edit, + 8 edit responses, + 16 delete.
    Bitmask,
}

impl FormRightsEncoding {
    /// The encoding a REDCap version writes (bitmask from 15.6.0 on).
    pub fn for_version(version: RedcapVersion) -> Self {
        if version >= RedcapVersion::FORM_RIGHTS_BITMASK {
            Self::Bitmask
        } else {
            Self::Legacy
        }
    }
}

impl FormRight {
    /// Every right, weakest first.
    pub const ALL: [FormRight; 6] = [
        FormRight::NoAccess,
        FormRight::ReadOnly,
        FormRight::ViewEdit,
        FormRight::ViewEditResponses,
        FormRight::ViewEditDelete,
        FormRight::ViewEditResponsesDelete,
    ];

    /// Parses either encoding; `None` for a value REDCap would refuse.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 | 128 => FormRight::NoAccess,
            2 | 129 => FormRight::ReadOnly,
            1 | 130 => FormRight::ViewEdit,
            3 | 138 => FormRight::ViewEditResponses,
            146 => FormRight::ViewEditDelete,
            154 => FormRight::ViewEditResponsesDelete,
            _ => return None,
        })
    }

    /// Parses a wire value (`"1"`, `" 130"`); `None` if not a valid right.
    pub fn from_wire(value: &str) -> Option<Self> {
        value.trim().parse::<i64>().ok().and_then(Self::from_code)
    }

    /// The number in the chosen encoding. The legacy encoding cannot say
    /// "delete"; those rights are written as their view & edit part (lossy).
    pub fn code(self, encoding: FormRightsEncoding) -> u16 {
        match encoding {
            FormRightsEncoding::Legacy => match self {
                FormRight::NoAccess => 0,
                FormRight::ReadOnly => 2,
                FormRight::ViewEdit | FormRight::ViewEditDelete => 1,
                FormRight::ViewEditResponses | FormRight::ViewEditResponsesDelete => 3,
            },
            FormRightsEncoding::Bitmask => match self {
                FormRight::NoAccess => 128,
                FormRight::ReadOnly => 129,
                FormRight::ViewEdit => 130,
                FormRight::ViewEditResponses => 138,
                FormRight::ViewEditDelete => 146,
                FormRight::ViewEditResponsesDelete => 154,
            },
        }
    }

    /// May see the instrument's data.
    pub fn can_view(self) -> bool {
        self != FormRight::NoAccess
    }

    /// May change the instrument's data.
    pub fn can_edit(self) -> bool {
        !matches!(self, FormRight::NoAccess | FormRight::ReadOnly)
    }
}

/// Data export rights on one instrument (`forms_export`, §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportRight {
    /// 0: the instrument's fields are never exported.
    NoAccess,
    /// 1: every field.
    FullDataSet,
    /// 2: without identifier, free-text and date fields; the record id is
    /// hashed when it is an identifier.
    DeIdentified,
    /// 3: without the fields tagged as identifiers.
    RemoveIdentifiers,
}

impl ExportRight {
    /// Parses the code 0–3; `None` for a value REDCap would refuse.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => ExportRight::NoAccess,
            1 => ExportRight::FullDataSet,
            2 => ExportRight::DeIdentified,
            3 => ExportRight::RemoveIdentifiers,
            _ => return None,
        })
    }

    /// Parses a wire value (`"2"`, `" 1"`); `None` if not a valid right.
    pub fn from_wire(value: &str) -> Option<Self> {
        value.trim().parse::<i64>().ok().and_then(Self::from_code)
    }

    /// The code REDCap writes (0–3).
    pub fn code(self) -> u8 {
        match self {
            ExportRight::NoAccess => 0,
            ExportRight::FullDataSet => 1,
            ExportRight::DeIdentified => 2,
            ExportRight::RemoveIdentifiers => 3,
        }
    }
}

/// The `user_rights` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UserRightsLevel {
    /// 0: no access to the User Rights page.
    #[default]
    NoAccess,
    /// 1: full access: may change users' and roles' rights (Import Users
    /// and Import User Roles need it).
    Full,
    /// 2: may see, not change, users' rights (newer servers only).
    ReadOnly,
}

impl UserRightsLevel {
    /// The code REDCap writes (0–2).
    pub fn code(self) -> u8 {
        match self {
            Self::NoAccess => 0,
            Self::Full => 1,
            Self::ReadOnly => 2,
        }
    }

    /// Parses the code 0–2; `None` for a value REDCap would refuse.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::NoAccess,
            1 => Self::Full,
            2 => Self::ReadOnly,
            _ => return None,
        })
    }
}

/// The `lock_records` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LockRecords {
    /// 0: may not lock forms.
    #[default]
    Disabled,
    /// 1: may lock and unlock forms.
    LockUnlock,
    /// 2: may lock and unlock forms, and e-sign them.
    LockUnlockWithESignature,
}

impl LockRecords {
    /// The code REDCap writes (0–2).
    pub fn code(self) -> u8 {
        match self {
            Self::Disabled => 0,
            Self::LockUnlock => 1,
            Self::LockUnlockWithESignature => 2,
        }
    }

    /// Parses the code 0–2; `None` for a value REDCap would refuse.
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Disabled,
            1 => Self::LockUnlock,
            2 => Self::LockUnlockWithESignature,
            _ => return None,
        })
    }
}

/// A bad rights value; the caller adds the user name to make REDCap's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RightsError {
    /// A rights attribute has a value outside its codes
    /// (REDCap's `rights_385`–`388`).
    #[error("the field {field:?} has the invalid value {value:?} (it must be {allowed})")]
    InvalidValue {
        /// The attribute, e.g. `api_export`.
        field: String,
        /// The value given.
        value: String,
        /// The values it may take, e.g. `0 or 1`.
        allowed: &'static str,
    },
    /// A `forms` or `forms_export` entry has a value that is not a right
    /// (REDCap's `api_113`–`117`).
    #[error("the form {form:?} has the invalid value {value:?} (it must be 0, 1, 2 or 3)")]
    InvalidFormValue {
        /// The instrument's name.
        form: String,
        /// The value given.
        value: String,
    },
    /// An attribute has the wrong JSON shape (e.g. `forms` not an object).
    #[error("the attribute {field:?} is not a {what}")]
    Malformed {
        /// The attribute.
        field: String,
        /// The shape it must have, e.g. `number`.
        what: &'static str,
    },
}

/// How the values of a JSON export are typed: Export Users writes integers,
/// Export User Roles writes strings (§10.14; `forms` stay integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueStyle {
    /// `"design": 1` (Export Users).
    Integers,
    /// `"design": "1"` (Export User Roles).
    Strings,
}

/// The simple 0/1 attributes, in the order of §4.3 / Export Users.
const ORDER: &[&str] = &[
    "design",
    "alerts",
    "user_rights",
    "data_access_groups",
    "reports",
    "stats_and_charts",
    "manage_survey_participants",
    "calendar",
    "data_import_tool",
    "data_comparison_tool",
    "logging",
    "email_logging",
    "file_repository",
    "data_quality_create",
    "data_quality_execute",
    "data_quality_resolution",
    "api_export",
    "api_import",
    "api_modules",
    "mobile_app",
    "mobile_app_download_data",
    "record_create",
    "record_rename",
    "record_delete",
    "lock_records_customization",
    "lock_records",
    "lock_records_all_forms",
    "double_data",
    "random_setup",
    "random_dashboard",
    "random_perform",
    "mycap_participants",
];

/// The privileges of a user or role (every attribute of §4.3 but the user's
/// identity, expiration and DAG). Conditional attributes (§4.2: Data
/// Resolution Workflow, Double Data Entry, randomization, MyCap) are `None`
/// when the feature is off, and are then left out of exports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rights {
    /// Project Design and Setup.
    pub design: bool,
    /// Alerts & Notifications.
    pub alerts: bool,
    /// The User Rights page (and the user and role API methods).
    pub user_rights: UserRightsLevel,
    /// The DAGs page and the DAG API methods.
    pub data_access_groups: bool,
    /// Add, edit and organise reports.
    pub reports: bool,
    /// Stats & Charts (`graphical`).
    pub stats_and_charts: bool,
    /// Survey distribution tools (`participants`).
    pub manage_survey_participants: bool,
    /// The Calendar.
    pub calendar: bool,
    /// The Data Import Tool (UI).
    pub data_import_tool: bool,
    /// The Data Comparison Tool.
    pub data_comparison_tool: bool,
    /// The Logging page and Export Logging.
    pub logging: bool,
    /// Email Logging (14.4.0 on).
    pub email_logging: bool,
    /// The File Repository.
    pub file_repository: bool,
    /// Create and edit data quality rules.
    pub data_quality_create: bool,
    /// Run data quality rules.
    pub data_quality_execute: bool,
    /// 0 none … 5 open and respond; not validated by REDCap.
    pub data_quality_resolution: Option<u8>,
    /// API Export: every export method.
    pub api_export: bool,
    /// API Import/Update: every import (and user delete).
    pub api_import: bool,
    /// API access to External Module actions (14.0.3 on).
    pub api_modules: bool,
    /// The REDCap Mobile App (it can hold a token: §4.8).
    pub mobile_app: bool,
    /// The Mobile App may download all records.
    pub mobile_app_download_data: bool,
    /// Create records.
    pub record_create: bool,
    /// Rename records.
    pub record_rename: bool,
    /// Delete records.
    pub record_delete: bool,
    /// Record Locking Customization.
    pub lock_records_customization: bool,
    /// Lock and unlock forms.
    pub lock_records: LockRecords,
    /// Lock and unlock entire records.
    pub lock_records_all_forms: bool,
    /// 0 reviewer, 1 person #1, 2 person #2; not validated by REDCap.
    pub double_data: Option<u8>,
    /// Randomization setup; `None` when randomization is off.
    pub random_setup: Option<bool>,
    /// The randomization dashboard; `None` when randomization is off.
    pub random_dashboard: Option<bool>,
    /// Randomize records; `None` when randomization is off.
    pub random_perform: Option<bool>,
    /// MyCap participant management; `None` when MyCap is off.
    pub mycap_participants: Option<bool>,
    /// Per-instrument data viewing rights.
    pub forms: BTreeMap<String, FormRight>,
    /// Per-instrument data export rights.
    pub forms_export: BTreeMap<String, ExportRight>,
}

fn parse_int(field: &str, value: &str, allowed: &'static str) -> Result<i64, RightsError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| RightsError::InvalidValue {
            field: field.to_owned(),
            value: value.to_owned(),
            allowed,
        })
}

fn parse_flag(field: &str, value: &str) -> Result<bool, RightsError> {
    match parse_int(field, value, "0 or 1")? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(RightsError::InvalidValue {
            field: field.to_owned(),
            value: value.to_owned(),
            allowed: "0 or 1",
        }),
    }
}

/// A JSON value as the text PHP would see (`1`, `"1"`, `true` → `"1"`).
pub fn wire_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(if *b { "1" } else { "" }.to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Reads `forms`/`forms_export` from either a JSON object or the CSV cell
/// form `form:value,form:value`. Returns (form, value) pairs in input order.
pub fn form_pairs(field: &str, value: &Value) -> Result<Vec<(String, String)>, RightsError> {
    let malformed = || RightsError::Malformed {
        field: field.to_owned(),
        what: "map of instrument names to rights",
    };
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), wire_text(v).ok_or_else(malformed)?)))
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once(':').ok_or_else(malformed)?;
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect(),
        Value::Array(a) if a.is_empty() => Ok(Vec::new()),
        Value::Null => Ok(Vec::new()),
        _ => Err(malformed()),
    }
}

impl Rights {
    /// Every privilege, every form view & edit + edit responses + full
    /// export: what Create Project gives its creator (§2.5).
    pub fn full<S: AsRef<str>>(forms: &[S]) -> Self {
        let mut r = Rights {
            design: true,
            alerts: true,
            user_rights: UserRightsLevel::Full,
            data_access_groups: true,
            reports: true,
            stats_and_charts: true,
            manage_survey_participants: true,
            calendar: true,
            data_import_tool: true,
            data_comparison_tool: true,
            logging: true,
            email_logging: true,
            file_repository: true,
            data_quality_create: true,
            data_quality_execute: true,
            api_export: true,
            api_import: true,
            api_modules: true,
            mobile_app: true,
            mobile_app_download_data: true,
            record_create: true,
            record_rename: true,
            record_delete: true,
            lock_records_customization: true,
            lock_records: LockRecords::LockUnlock,
            lock_records_all_forms: true,
            ..Rights::default()
        };
        for f in forms {
            r.forms
                .insert(f.as_ref().to_owned(), FormRight::ViewEditResponses);
            r.forms_export
                .insert(f.as_ref().to_owned(), ExportRight::FullDataSet);
        }
        r
    }

    /// No privilege at all and no access to any of `forms` (a new user, §4.6).
    pub fn none<S: AsRef<str>>(forms: &[S]) -> Self {
        let mut r = Rights::default();
        for f in forms {
            r.forms.insert(f.as_ref().to_owned(), FormRight::NoAccess);
            r.forms_export
                .insert(f.as_ref().to_owned(), ExportRight::NoAccess);
        }
        r
    }

    /// The §4.8 escalation for a request with `mobile_app=1`: API export and
    /// import, full export on every form, User Rights, DAGs and Design.
    pub fn escalate_for_mobile_app(&mut self) {
        self.api_export = true;
        self.api_import = true;
        self.user_rights = UserRightsLevel::Full;
        self.data_access_groups = true;
        self.design = true;
        for v in self.forms_export.values_mut() {
            *v = ExportRight::FullDataSet;
        }
    }

    /// The summary export right that gates record, report and log exports
    /// (§4.5): none if every form is "no access".
    pub fn has_any_export_right(&self) -> bool {
        self.forms_export
            .values()
            .any(|r| *r != ExportRight::NoAccess)
    }

    /// Whether `name` is a privilege attribute (not `forms`/`forms_export`).
    pub fn is_attribute(name: &str) -> bool {
        ORDER.contains(&name)
    }

    /// Sets one privilege attribute from its wire text. Returns `Ok(false)`
    /// for a name that is not an attribute. An empty value changes nothing
    /// (REDCap validates only non-empty values).
    pub fn set_attribute(&mut self, name: &str, value: &str) -> Result<bool, RightsError> {
        if !Self::is_attribute(name) {
            return Ok(false);
        }
        if value.trim().is_empty() {
            return Ok(true);
        }
        match name {
            "user_rights" => {
                self.user_rights =
                    UserRightsLevel::from_code(parse_int(name, value, "0, 1, or 2")?).ok_or_else(
                        || RightsError::InvalidValue {
                            field: name.into(),
                            value: value.into(),
                            allowed: "0, 1, or 2",
                        },
                    )?;
            }
            "lock_records" => {
                self.lock_records = LockRecords::from_code(parse_int(name, value, "0, 1, or 2")?)
                    .ok_or_else(|| RightsError::InvalidValue {
                    field: name.into(),
                    value: value.into(),
                    allowed: "0, 1, or 2",
                })?;
            }
            // Not validated by REDCap; kept when numeric, ignored otherwise.
            "data_quality_resolution" => {
                if let Ok(v) = value.trim().parse::<u8>() {
                    self.data_quality_resolution = Some(v);
                }
            }
            "double_data" => {
                if let Ok(v) = value.trim().parse::<u8>() {
                    self.double_data = Some(v);
                }
            }
            "random_setup" => self.random_setup = Some(parse_flag(name, value)?),
            "random_dashboard" => self.random_dashboard = Some(parse_flag(name, value)?),
            "random_perform" => self.random_perform = Some(parse_flag(name, value)?),
            "mycap_participants" => self.mycap_participants = Some(parse_flag(name, value)?),
            _ => {
                let v = parse_flag(name, value)?;
                if let Some(slot) = self.flag_mut(name) {
                    *slot = v;
                }
            }
        }
        Ok(true)
    }

    fn flag_mut(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "design" => &mut self.design,
            "alerts" => &mut self.alerts,
            "data_access_groups" => &mut self.data_access_groups,
            "reports" => &mut self.reports,
            "stats_and_charts" => &mut self.stats_and_charts,
            "manage_survey_participants" => &mut self.manage_survey_participants,
            "calendar" => &mut self.calendar,
            "data_import_tool" => &mut self.data_import_tool,
            "data_comparison_tool" => &mut self.data_comparison_tool,
            "logging" => &mut self.logging,
            "email_logging" => &mut self.email_logging,
            "file_repository" => &mut self.file_repository,
            "data_quality_create" => &mut self.data_quality_create,
            "data_quality_execute" => &mut self.data_quality_execute,
            "api_export" => &mut self.api_export,
            "api_import" => &mut self.api_import,
            "api_modules" => &mut self.api_modules,
            "mobile_app" => &mut self.mobile_app,
            "mobile_app_download_data" => &mut self.mobile_app_download_data,
            "record_create" => &mut self.record_create,
            "record_rename" => &mut self.record_rename,
            "record_delete" => &mut self.record_delete,
            "lock_records_customization" => &mut self.lock_records_customization,
            "lock_records_all_forms" => &mut self.lock_records_all_forms,
            _ => return None,
        })
    }

    /// The attribute's value as a number, `None` if the feature is off.
    pub fn attribute(&self, name: &str) -> Option<u8> {
        let flag = |b: bool| Some(u8::from(b));
        match name {
            "user_rights" => Some(self.user_rights.code()),
            "lock_records" => Some(self.lock_records.code()),
            "data_quality_resolution" => self.data_quality_resolution,
            "double_data" => self.double_data,
            "random_setup" => self.random_setup.map(u8::from),
            "random_dashboard" => self.random_dashboard.map(u8::from),
            "random_perform" => self.random_perform.map(u8::from),
            "mycap_participants" => self.mycap_participants.map(u8::from),
            "design" => flag(self.design),
            "alerts" => flag(self.alerts),
            "data_access_groups" => flag(self.data_access_groups),
            "reports" => flag(self.reports),
            "stats_and_charts" => flag(self.stats_and_charts),
            "manage_survey_participants" => flag(self.manage_survey_participants),
            "calendar" => flag(self.calendar),
            "data_import_tool" => flag(self.data_import_tool),
            "data_comparison_tool" => flag(self.data_comparison_tool),
            "logging" => flag(self.logging),
            "email_logging" => flag(self.email_logging),
            "file_repository" => flag(self.file_repository),
            "data_quality_create" => flag(self.data_quality_create),
            "data_quality_execute" => flag(self.data_quality_execute),
            "api_export" => flag(self.api_export),
            "api_import" => flag(self.api_import),
            "api_modules" => flag(self.api_modules),
            "mobile_app" => flag(self.mobile_app),
            "mobile_app_download_data" => flag(self.mobile_app_download_data),
            "record_create" => flag(self.record_create),
            "record_rename" => flag(self.record_rename),
            "record_delete" => flag(self.record_delete),
            "lock_records_customization" => flag(self.lock_records_customization),
            "lock_records_all_forms" => flag(self.lock_records_all_forms),
            _ => None,
        }
    }

    /// Applies `forms` pairs: every form listed in `known` but missing from
    /// `pairs` becomes no access (§4.4). Unknown names are returned as errors
    /// by the caller (it knows the project's instruments), so this only
    /// validates values.
    pub fn set_forms(
        &mut self,
        known: &[String],
        pairs: &[(String, String)],
    ) -> Result<(), RightsError> {
        self.forms = form_map(known, pairs, FormRight::NoAccess, FormRight::from_wire)?;
        Ok(())
    }

    /// Applies `forms_export` pairs; missing forms become no access.
    pub fn set_forms_export(
        &mut self,
        known: &[String],
        pairs: &[(String, String)],
    ) -> Result<(), RightsError> {
        self.forms_export = form_map(known, pairs, ExportRight::NoAccess, ExportRight::from_wire)?;
        Ok(())
    }

    /// Writes the attributes, then `forms` and `forms_export`, into `out` as
    /// a version of REDCap would export them. Attributes newer than `version`
    /// (`api_modules` 14.0.3, `email_logging` 14.4.0) are left out, as are
    /// conditional ones whose feature is off. `form_order` orders the form
    /// maps (instrument order of the project); forms not in it follow.
    pub fn write_json(
        &self,
        out: &mut Map<String, Value>,
        version: RedcapVersion,
        style: ValueStyle,
        form_order: &[String],
    ) {
        for name in ORDER {
            if *name == "api_modules" && version < RedcapVersion::new(14, 0, 3) {
                continue;
            }
            if *name == "email_logging" && version < RedcapVersion::new(14, 4, 0) {
                continue;
            }
            if let Some(v) = self.attribute(name) {
                let value = match style {
                    ValueStyle::Integers => Value::from(v),
                    ValueStyle::Strings => Value::from(v.to_string()),
                };
                out.insert((*name).to_owned(), value);
            }
        }
        let encoding = FormRightsEncoding::for_version(version);
        let ordered = |keys: Vec<&String>| {
            let mut v: Vec<String> = form_order
                .iter()
                .filter(|f| keys.contains(f))
                .cloned()
                .collect();
            for k in keys {
                if !v.contains(k) {
                    v.push(k.clone());
                }
            }
            v
        };
        let mut forms = Map::new();
        for f in ordered(self.forms.keys().collect()) {
            forms.insert(f.clone(), Value::from(self.forms[&f].code(encoding)));
        }
        out.insert("forms".into(), Value::Object(forms));
        let mut export = Map::new();
        for f in ordered(self.forms_export.keys().collect()) {
            export.insert(f.clone(), Value::from(self.forms_export[&f].code()));
        }
        out.insert("forms_export".into(), Value::Object(export));
    }

    /// Reads every attribute present in an exported object (users or roles;
    /// integers or strings; `forms` as object or CSV cell).
    pub fn from_json(object: &Map<String, Value>) -> Result<Self, RightsError> {
        let mut r = Rights::default();
        for (k, v) in object {
            if Self::is_attribute(k) {
                let text = wire_text(v).ok_or_else(|| RightsError::Malformed {
                    field: k.clone(),
                    what: "number",
                })?;
                r.set_attribute(k, &text)?;
            }
        }
        if let Some(v) = object.get("forms") {
            r.set_forms(&[], &form_pairs("forms", v)?)?;
        }
        if let Some(v) = object.get("forms_export") {
            r.set_forms_export(&[], &form_pairs("forms_export", v)?)?;
        }
        Ok(r)
    }
}

/// One row of Export Users (§4.2): identity, expiration, DAG and rights.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRights {
    /// The account name (1–255 letters, digits, `_ ' . - @` and spaces).
    pub username: String,
    /// The account's e-mail address (from the account, not the project).
    pub email: String,
    /// The account's first name.
    pub firstname: String,
    /// The account's last name.
    pub lastname: String,
    /// `YYYY-MM-DD`, or `None` for no expiry.
    pub expiration: Option<String>,
    /// Unique DAG name, or `None` for no DAG.
    pub data_access_group: Option<String>,
    /// The DAG's id (stable across renames), or `None` for no DAG.
    pub data_access_group_id: Option<u64>,
    /// The DAG's label; exported from REDCap 16.0.0 on (§4.9).
    pub data_access_group_label: Option<String>,
    /// The user's privileges (its role's, when it is in one).
    pub rights: Rights,
}

impl UserRights {
    /// The JSON object a REDCap of `version` exports (integers, §4.2).
    pub fn to_json(&self, version: RedcapVersion, form_order: &[String]) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("username".into(), self.username.clone().into());
        m.insert("email".into(), self.email.clone().into());
        m.insert("firstname".into(), self.firstname.clone().into());
        m.insert("lastname".into(), self.lastname.clone().into());
        m.insert(
            "expiration".into(),
            self.expiration.clone().unwrap_or_default().into(),
        );
        m.insert(
            "data_access_group".into(),
            self.data_access_group.clone().unwrap_or_default().into(),
        );
        m.insert(
            "data_access_group_id".into(),
            self.data_access_group_id
                .map(Value::from)
                .unwrap_or_else(|| Value::from("")),
        );
        if version >= RedcapVersion::new(16, 0, 0) {
            m.insert(
                "data_access_group_label".into(),
                self.data_access_group_label
                    .clone()
                    .unwrap_or_default()
                    .into(),
            );
        }
        self.rights
            .write_json(&mut m, version, ValueStyle::Integers, form_order);
        m
    }

    /// Reads an Export Users row.
    pub fn from_json(object: &Map<String, Value>) -> Result<Self, RightsError> {
        let text = |k: &str| object.get(k).and_then(wire_text).unwrap_or_default();
        let opt = |k: &str| Some(text(k)).filter(|s| !s.is_empty());
        Ok(UserRights {
            username: text("username"),
            email: text("email"),
            firstname: text("firstname"),
            lastname: text("lastname"),
            expiration: opt("expiration"),
            data_access_group: opt("data_access_group"),
            data_access_group_id: opt("data_access_group_id").and_then(|s| s.parse().ok()),
            data_access_group_label: opt("data_access_group_label"),
            rights: Rights::from_json(object)?,
        })
    }
}

/// A per-form rights map: every `known` form at `none`, then `pairs` parsed
/// with `parse` on top (an unparseable value is an error naming the form).
fn form_map<R: Copy>(
    known: &[String],
    pairs: &[(String, String)],
    none: R,
    parse: fn(&str) -> Option<R>,
) -> Result<BTreeMap<String, R>, RightsError> {
    let mut forms: BTreeMap<String, R> = known.iter().map(|f| (f.clone(), none)).collect();
    for (form, value) in pairs {
        let right = parse(value).ok_or_else(|| RightsError::InvalidFormValue {
            form: form.clone(),
            value: value.clone(),
        })?;
        forms.insert(form.clone(), right);
    }
    Ok(forms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_form_encodings_mean_the_same() {
        let pairs = [(0, 128), (2, 129), (1, 130), (3, 138)];
        for (legacy, bitmask) in pairs {
            assert_eq!(FormRight::from_code(legacy), FormRight::from_code(bitmask));
            let r = FormRight::from_code(legacy).unwrap();
            assert_eq!(i64::from(r.code(FormRightsEncoding::Legacy)), legacy);
            assert_eq!(i64::from(r.code(FormRightsEncoding::Bitmask)), bitmask);
        }
        assert_eq!(FormRight::from_code(146), Some(FormRight::ViewEditDelete));
        assert_eq!(
            FormRight::from_code(154),
            Some(FormRight::ViewEditResponsesDelete)
        );
        for bad in [4, -1, 131, 127, 255] {
            assert_eq!(FormRight::from_code(bad), None, "{bad}");
        }
        for r in FormRight::ALL {
            assert_eq!(
                FormRight::from_code(i64::from(r.code(FormRightsEncoding::Bitmask))),
                Some(r)
            );
        }
    }

    #[test]
    fn encoding_follows_version() {
        assert_eq!(
            FormRightsEncoding::for_version(RedcapVersion::SPEC),
            FormRightsEncoding::Bitmask
        );
        assert_eq!(
            FormRightsEncoding::for_version(RedcapVersion::new(15, 5, 9)),
            FormRightsEncoding::Legacy
        );
    }

    #[test]
    fn legacy_and_bitmask_exports_parse_equal() {
        let legacy = json!({"username": "a", "design": 1, "user_rights": "2",
            "forms": {"f1": 1, "f2": 2}, "forms_export": {"f1": 1, "f2": 0}});
        let bitmask = json!({"username": "a", "design": "1", "user_rights": 2,
            "forms": "f1:130,f2:129", "forms_export": "f1:1,f2:0"});
        let a = UserRights::from_json(legacy.as_object().unwrap()).unwrap();
        let b = UserRights::from_json(bitmask.as_object().unwrap()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rights.user_rights, UserRightsLevel::ReadOnly);
    }

    #[test]
    fn writes_in_the_chosen_encoding_and_order() {
        let forms = vec!["b_form".to_owned(), "a_form".to_owned()];
        let u = UserRights {
            username: "alice".into(),
            rights: Rights::full(&forms),
            ..Default::default()
        };
        let new = u.to_json(RedcapVersion::SPEC, &forms);
        assert_eq!(new["forms"], json!({"b_form": 138, "a_form": 138}));
        let keys: Vec<_> = new["forms"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, forms);
        assert_eq!(new["design"], json!(1));
        assert!(new.get("data_quality_resolution").is_none());
        assert!(new.get("data_access_group_label").is_none());
        let v16 = u.to_json(RedcapVersion::new(16, 0, 0), &forms);
        assert_eq!(v16["data_access_group_label"], json!(""));
        let old = u.to_json(RedcapVersion::new(14, 0, 0), &forms);
        assert_eq!(old["forms"], json!({"b_form": 3, "a_form": 3}));
        assert!(old.get("email_logging").is_none());
        assert!(old.get("api_modules").is_none());
        let mut roles = Map::new();
        u.rights
            .write_json(&mut roles, RedcapVersion::SPEC, ValueStyle::Strings, &forms);
        assert_eq!(roles["design"], json!("1"));
        assert_eq!(roles["forms"]["a_form"], json!(138));
    }

    #[test]
    fn attribute_validation() {
        let mut r = Rights::default();
        assert_eq!(r.set_attribute("design", "1"), Ok(true));
        assert!(r.design);
        assert_eq!(r.set_attribute("design", ""), Ok(true));
        assert!(r.design);
        assert_eq!(r.set_attribute("nonsense", "1"), Ok(false));
        assert!(matches!(
            r.set_attribute("design", "2"),
            Err(RightsError::InvalidValue {
                allowed: "0 or 1",
                ..
            })
        ));
        assert_eq!(r.set_attribute("user_rights", "2"), Ok(true));
        assert!(r.set_attribute("user_rights", "3").is_err());
        assert!(r.set_attribute("lock_records", "x").is_err());
        let known = vec!["f".to_owned(), "g".to_owned()];
        r.set_forms(&known, &[("f".into(), "146".into())]).unwrap();
        assert_eq!(r.forms["g"], FormRight::NoAccess);
        assert!(r.set_forms(&known, &[("f".into(), "5".into())]).is_err());
    }

    #[test]
    fn mobile_app_escalation() {
        let forms = ["f"];
        let mut r = Rights::none(&forms);
        r.mobile_app = true;
        assert!(!r.has_any_export_right());
        r.escalate_for_mobile_app();
        assert!(r.api_export && r.api_import && r.design && r.data_access_groups);
        assert_eq!(r.user_rights, UserRightsLevel::Full);
        assert!(r.has_any_export_right());
    }
}
