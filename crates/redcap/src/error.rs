//! Every error text the REDCap API answers with, in one place.
//!
//! Texts marked *verbatim* are given in full by `redcap-api.md`; the others
//! are cited there only by their language key (or with an ellipsis) and are
//! our best reconstruction (INF) — they keep the documented status and
//! meaning, and are easy to correct here once checked on a live server.
//!
//! `redcap-api.md` does not cover Export/Import/Delete File (`content=file`)
//! or the text validation of record imports. Texts marked *observed* were
//! read in public copies of REDCap's `API/file/*.php` from versions older
//! than 15.7.6 (or, for validation, in an answer of a live server quoted in
//! a client library's issue tracker): they are REDCap's wording, but 15.7.6
//! may differ — VERIFY on a live server.

use std::fmt;

/// An error answer of the REDCap API: an HTTP status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    // ----- 403: entry gate (§1.6, §1.7) -----
    /// Missing/unknown/malformed token, suspended user, user not in project. *Verbatim.*
    NoApiPermission,
    /// `api_120`: a super token was needed (Create Project) or was invalid. INF completion.
    SuperTokenRequired,
    /// Project rights expired as of the date (`YYYY-MM-DD`). *Verbatim.*
    RightsExpired {
        /// The expiry date, `YYYY-MM-DD`.
        date: String,
    },
    /// Export action without API Export. *Verbatim.*
    NoApiExport,
    /// Import action (or user delete) without API Import. *Verbatim.*
    NoApiImport,
    /// Delete without Delete Record right. *Verbatim.*
    NoDeleteRecord,
    /// Rename without Rename Record right. *Verbatim.*
    NoRenameRecord,
    /// Randomize without Randomize right. *Verbatim.*
    NoRandomize,
    /// `api_183`: DAG methods by a DAG-assigned user. *Verbatim.*
    DagMemberForbidden,
    /// Record/report/log export with "No Access" export rights on every form. *Verbatim.*
    NoExportAccess,
    /// Log export without the Logging right. *Verbatim.*
    NoLoggingRight,
    /// Record import while the project is in Analysis/Cleanup. *Verbatim.*
    AnalysisCleanup,

    // ----- 400: request shape -----
    /// Bad `content`. *Verbatim.*
    InvalidContent,
    /// Bad `action`. *Verbatim.*
    InvalidAction,
    /// `data` is not valid JSON; carries PHP's decoder message. *Verbatim.*
    BadJson {
        /// PHP's `json_last_error_msg()`, e.g. `Syntax error`.
        decoder: String,
    },
    /// `data` is not valid XML. *Verbatim.*
    BadXml {
        /// What the XML parser found wrong, and where.
        details: String,
    },
    /// `data` is not valid CSV (INF: the XML wording with our details).
    BadCsv {
        /// What the CSV reader found wrong, and where.
        details: String,
    },
    /// `api_01`. *Verbatim.*
    ApiDisabled,

    // ----- 400: method-level privileges (§4.1, §5.1, §6) -----
    /// `api_229`: export users/roles/mappings without User Rights. *Verbatim.*
    UserRightsExportPrivilege,
    /// `api_103`: import/delete users without full User Rights. INF text.
    UserRightsImportPrivilege,
    /// `api_171`: import roles / role mappings without full User Rights. INF text.
    UserRoleImportPrivilege,
    /// `api_221`: export DAGs / user-DAG mapping without the DAG right. INF text.
    DagExportPrivilege,
    /// `api_222`: import/delete DAGs / user-DAG mapping without the DAG right. INF text.
    DagImportPrivilege,
    /// `api_184`: user-DAG mapping import by a DAG-assigned user. INF text.
    DagMappingByDagMember,
    /// `api_124`: metadata import without Design. INF text.
    DesignPrivilege,
    /// `api_135`: record delete without API Import. INF text.
    RecordDeleteNeedsImport,

    // ----- 400: Create Project (§2.5) -----
    /// `api_123`: more than one project in `data`. INF text.
    OneProjectOnly,
    /// Missing `project_title`/`purpose` or bad `purpose`. INF completion of an elided text.
    ProjectAttributesMissing,
    /// `purpose` = 1 without `purpose_other`. INF text.
    PurposeOtherMissing,

    // ----- 400: users and roles (§4.3–4.7) -----
    /// `rights_385`–`388`: a rights attribute with a bad value. *Verbatim* for 0/1.
    InvalidRightsValue {
        /// The rights attribute, e.g. `user_rights`.
        field: String,
        /// The username of the row.
        user: String,
        /// The value sent.
        value: String,
        /// The values it may take, as the message words them (`0 or 1`,
        /// `a date (YYYY-MM-DD)`, …).
        allowed: &'static str,
    },
    /// `api_113`–`117`: unknown form name. *Verbatim.*
    UnknownForm {
        /// The form name sent.
        form: String,
        /// The username (or role) of the row.
        user: String,
    },
    /// `api_113`–`117`: bad form-level value. *Verbatim* tail, INF head.
    InvalidFormRight {
        /// The form whose right was sent.
        form: String,
        /// The username (or role) of the row.
        user: String,
        /// The value sent.
        value: String,
    },
    /// `api_112`: user in a role cannot be edited by Import Users. INF completion.
    UserInRole {
        /// The username.
        user: String,
    },
    /// `api_111`: unknown DAG in Import Users. *Verbatim.*
    InvalidUserDag {
        /// The `data_access_group` value sent.
        dag: String,
    },
    /// `rights_443`: bad username. INF text.
    InvalidUsername {
        /// The username sent.
        user: String,
    },
    /// A row without `username`. INF text.
    UsernameMissing,
    /// Delete Users: a name that is not a project user. INF text.
    UnknownUsers {
        /// The names that are not project users.
        users: Vec<String>,
    },
    /// New role without a label. *Verbatim.*
    RoleLabelBlank,
    /// Import roles with unknown unique names. *Verbatim* prefix.
    InvalidRoleNames {
        /// The unique role names the project does not have.
        names: Vec<String>,
    },
    /// `api_170`: delete roles with unknown unique names. INF text.
    UnknownRolesToDelete {
        /// The unique role names the project does not have.
        names: Vec<String>,
    },
    /// Role mapping: first row lacks `username`/`unique_role_name`. INF text.
    RoleMappingKeysMissing,
    /// Role mapping: a username twice. INF text.
    DuplicateUsername {
        /// The repeated username.
        user: String,
    },
    /// Role-based rights and a `users[]`/`roles[]` list that is missing or empty. INF text.
    ListParameterMissing {
        /// The list parameter: `users`, `roles` or `dags`.
        parameter: &'static str,
    },

    // ----- 400: DAGs (§5.3, §5.4) -----
    /// Import DAGs without the two required keys. *Verbatim.*
    DagAttributesMissing,
    /// Import DAGs: unknown unique name. INF completion.
    UnknownDagToRename {
        /// The unique group name sent.
        name: String,
    },
    /// Import DAGs: label longer than 100 characters. INF text.
    DagLabelTooLong {
        /// The label sent.
        label: String,
    },
    /// `api_157`: delete unknown DAGs. INF text.
    UnknownDagsToDelete {
        /// The unique group names the project does not have.
        names: Vec<String>,
    },
    /// User-DAG mapping: unknown DAG. INF text.
    InvalidMappingDag {
        /// The username of the row.
        user: String,
        /// The unique group name sent.
        dag: String,
    },
    /// User-DAG mapping: user not in the project. INF text.
    MappingUserNotInProject {
        /// The username sent.
        user: String,
    },
    /// User-DAG mapping: rows without the two keys. INF text.
    DagMappingKeysMissing,

    // ----- 400: records and metadata (§5.5, §6) -----
    /// Unknown values in `records`/`fields`/`forms`/`events`. *Verbatim.*
    InvalidParameterValues {
        /// `records`, `fields`, `forms` or `events`.
        parameter: &'static str,
        /// The values the project does not have.
        values: Vec<String>,
    },
    /// Export Records: `filterLogic` that does not parse or names what the
    /// project lacks. INF text (REDCap documents only that "the API will
    /// respond with an error message").
    InvalidFilterLogic {
        /// What is wrong, e.g. `'nope' is not a field of the project`.
        reason: String,
    },
    /// `data_import_tool_171/172`: DAG user sent `redcap_data_access_group`. INF completion.
    IllegalDagField,
    /// `data_import_tool_251`: records of another DAG. *Verbatim.*
    RecordsInOtherDag {
        /// The record ids of another DAG.
        records: Vec<String>,
    },
    /// Non-DAG user names invalid DAGs in `redcap_data_access_group`. *Verbatim.*
    InvalidRecordDags {
        /// The `redcap_data_access_group` values that are not DAGs of the project.
        names: Vec<String>,
    },
    /// Record import validation errors (lines of `"record","field","value","message"`).
    RecordValidation {
        /// One line per rejected value.
        lines: Vec<ValidationLine>,
    },
    /// `api_136`: `records` is not an array for delete. INF text.
    RecordsNotArray,
    /// `api_137`: no records for delete. INF text.
    NoRecordsGiven,
    /// `api_131`: records to delete that do not exist. *Verbatim.*
    RecordsDoNotExist {
        /// The record ids the project does not have.
        records: Vec<String>,
    },
    /// `api_102`: design change in production. INF text.
    ProductionDesign,
    /// Arms, events, instrument-event mappings or repeating instruments
    /// asked of a classic project (`what`: `arms`, `events`,
    /// `form/event mappings`, …). *Verbatim* for the exports of arms,
    /// events and mappings (§6.6); INF for the imports and deletes.
    ClassicProject {
        /// `export`, `import` or `delete`.
        verb: &'static str,
        /// What was asked for.
        what: &'static str,
    },
    /// Problems with imported arms, events, mappings or repeating setup
    /// (INF texts).
    BadStructure {
        /// The whole message: what is wrong and with which row.
        details: String,
    },
    /// Metadata import problems (INF texts).
    BadMetadata {
        /// The whole message: what is wrong with the data dictionary.
        details: String,
    },

    // ----- Export / Import / Delete File (`content=file`) -----
    /// Export File: the record does not exist (or is in another DAG). *Observed*;
    /// REDCap HTML-escapes the name.
    FileRecordMissing {
        /// The record id sent (escaped in the message).
        record: String,
    },
    /// Import File: the record does not exist (or is in another DAG). *Observed*, not escaped.
    FileUploadRecordMissing {
        /// The record id sent.
        record: String,
    },
    /// Delete File: the record does not exist (or is in another DAG). *Observed*, not escaped.
    FileDeleteRecordMissing {
        /// The record id sent.
        record: String,
    },
    /// The field does not exist or is not a File Upload field. *Observed*; escaped.
    NotAFileField {
        /// The field name sent (escaped in the message).
        field: String,
    },
    /// Export File: the field holds no file for the record. *Observed.*
    NoFileToDownload,
    /// Delete File: the field holds no file for the record. *Observed.*
    NoFileToDelete,
    /// Import File without a `file` part. *Observed.*
    NoFileUploaded,
    /// Import File with a `file` part PHP reports as failed (no file name). *Observed.*
    FileUploadProblem,
    /// Import File in Analysis/Cleanup (403). *Observed.*
    FileUploadAnalysisCleanup,
    /// Delete File in Analysis/Cleanup (403). *Observed.*
    FileDeleteAnalysisCleanup,
    /// Export File of an identifier field with de-identified or
    /// remove-identifier export rights (403). *Observed.*
    FileIdentifierExport,
    /// Export File when the stored bytes are gone from the server's disk. *Observed*
    /// (REDCap names its storage path, so does the sandbox).
    StoredFileMissing {
        /// The stored file's path on the server.
        path: String,
        /// The file's name as uploaded.
        name: String,
    },
    /// Import/Delete File without view & edit rights on the field's
    /// instrument (403). INF text: the copies read show no such check.
    FileFormNotEditable {
        /// The File Upload field.
        field: String,
    },

    // ----- Surveys and PDFs (`surveyLink`, `surveyQueueLink`,
    // `surveyAccessCode`, `surveyReturnCode`, `participantList`, `pdf`) -----
    // Texts read in REDCap 15.7.6's `API/survey*/export.php`,
    // `API/participantList/export.php` and `API/pdf/export.php`: *verbatim*.
    /// A survey method without the Manage Survey Participants right (403).
    NoSurveyParticipantsRight,
    /// A survey method without a required parameter (`record`,
    /// `instrument`, `event`).
    SurveyParameterMissing {
        /// The parameter's name.
        parameter: &'static str,
    },
    /// `instrument` names no instrument of the project (surveys, `pdf`).
    InvalidInstrument,
    /// `event` names no event of the project (surveys, `pdf`).
    InvalidEvent,
    /// The instrument is not a survey (`surveyLink`, `surveyAccessCode`,
    /// `participantList`: the name in single quotes, unescaped).
    NotASurvey {
        /// The instrument.
        form: String,
    },
    /// The instrument is not a survey (`surveyReturnCode`: the name in
    /// double quotes, HTML-escaped).
    NotASurveyQuoted {
        /// The instrument.
        form: String,
    },
    /// A longitudinal survey link or access code for an event that does
    /// not hold the instrument (both names HTML-escaped).
    SurveyNotInEvent {
        /// The instrument.
        form: String,
        /// The unique event name sent.
        event: String,
    },
    /// `surveyQueueLink` in a project without an active survey queue.
    SurveyQueueDisabled,
    /// `surveyReturnCode` for a survey without "Save & Return Later".
    SaveAndReturnDisabled,

    // ----- File Repository (`content=fileRepository`) -----
    // Texts read in REDCap 15.7.6's `API/fileRepository/*.php` and
    // `Classes/FileRepository.php` (strongest source): *verbatim*.
    /// Any File Repository method without the File Repository right (403).
    NoFileRepositoryRight,
    /// `folder_id` names no folder of the project, or one restricted to
    /// another DAG or role.
    RepositoryFolderInaccessible {
        /// The `folder_id` sent.
        folder_id: String,
    },
    /// Create Folder without a `name`.
    RepositoryFolderNameMissing,
    /// Create Folder with a `folder_id` that is not an integer.
    RepositoryFolderIdInvalid,
    /// Create Folder with the name of a folder already in that directory;
    /// REDCap HTML-escapes the name.
    RepositoryFolderExists {
        /// The folder name (escaped in the message).
        name: String,
    },
    /// Export/Delete a File Repository file: `doc_id` missing, not an
    /// integer, or no file of the project.
    RepositoryDocInvalid,

    // ----- reports, project settings (§6.5) -----
    /// Export Reports: the `report_id` is not one of the project's reports
    /// (REDCap escapes it for HTML). *Observed* in 15.7.6's
    /// `API/report/export.php`.
    ReportNotInProject {
        /// The `report_id` sent.
        report_id: String,
    },
    /// `api_228`: Import Project Information without the Design right.
    /// *Observed* in 15.7.6's `English.ini`.
    ProjectSettingsPrivilege,
    /// `data_import_tool_200`: Import Project Information whose `data`
    /// gives no attributes. *Observed* in 15.7.6's `English.ini`.
    DataNotInFormat,
}

/// Rename Record answers its validation failures with HTTP **200** and the
/// message as a plain body (§6.3, §10.3); these are not [`ApiError`]s.
pub mod rename {
    /// `api_187`. *Verbatim.*
    pub const RECORD_MISSING: &str = "Current record name must be provided.";
    /// `api_188`. *Verbatim* (REDCap's grammar).
    pub const RECORD_UNKNOWN: &str = "Current Record does not exists.";
    /// `api_189`. *Verbatim.*
    pub const NEW_NAME_MISSING: &str = "New record name must be provided.";
    /// The new name is taken. INF text.
    pub const NEW_NAME_TAKEN: &str = "The new record name already exists in the project.";
}

/// One line of a record import validation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationLine {
    /// The record id of the row.
    pub record: String,
    /// The field the value was for.
    pub field: String,
    /// The value sent.
    pub value: String,
    /// Why it was refused (one of the constants below, or another text).
    pub message: String,
}

impl ValidationLine {
    /// Text that `data_import_tool_307` gives for an existing record with no DAG
    /// touched by a DAG user. *Verbatim.*
    pub const OTHER_DAG: &'static str = "This record cannot be imported because it already exists in the project and belongs to another Data Access Group.";
    /// An imported field that the project does not have. INF text.
    pub const NO_SUCH_FIELD: &'static str = "The field does not exist in the project.";
    /// Import into an instrument without view & edit rights. INF text.
    pub const NO_FORM_EDIT: &'static str =
        "You do not have edit privileges for the instrument containing this field.";
    /// Creating a record without the Create Records right. INF text.
    pub const NO_RECORD_CREATE: &'static str = "You do not have privileges to create new records.";
    /// A longitudinal import's value on an instrument the event does not
    /// hold (`{field}`, `{event}` = the event's label). *Observed* on live
    /// servers (PyCap issue #142, redcapAPI PR #348).
    pub const NOT_DESIGNATED: &'static str = "This field ('{field}') exists on an instrument that is not designated for the event named '{event}'. You are not allowed to import data for this field into this event.";
    /// A `redcap_event_name` that names no event of the project. INF text.
    pub const BAD_EVENT: &'static str = "The value provided for redcap_event_name is not a valid unique event name in this project.";
    /// A `redcap_repeat_instrument` that does not repeat on the row's event. INF text.
    pub const BAD_REPEAT_INSTRUMENT: &'static str = "The value provided for redcap_repeat_instrument is not a repeating instrument on this event.";
    /// A `redcap_repeat_instance` that is not a whole number from 1 (or `new`). INF text.
    pub const BAD_REPEAT_INSTANCE: &'static str =
        "The value provided for redcap_repeat_instance must be an integer greater than 0.";
    /// A row with `redcap_repeat_instance` on a non-repeating instrument or event, or one
    /// missing it for a repeating one. INF text.
    pub const MISSING_REPEAT_INSTANCE: &'static str = "The value provided for redcap_repeat_instance is missing or is not allowed for this instrument and event.";
    /// A row with `redcap_repeat_instrument` holding data of another instrument. INF text.
    pub const OTHER_INSTRUMENT: &'static str =
        "This field is not on the repeating instrument given in redcap_repeat_instrument.";
    /// A row whose record ID is blank. INF text.
    pub const BLANK_RECORD_ID: &'static str = "The record ID cannot be blank.";
    /// A checkbox or yes/no value outside its choices. INF text.
    pub const BAD_CHOICE: &'static str = "The value is not a valid category for this field.";
    /// A value that fails its field's text validation (integer, number,
    /// dates, email, phone, zipcode, time…). *Observed* on a live server for
    /// `number_1dp` (redcapAPI issue #217); the sandbox uses it for every type.
    pub const BAD_FORMAT: &'static str = "The value you provided could not be validated because it does not follow the expected format. Please try again.";
}

impl fmt::Display for ValidationLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\",\"{}\",\"{}\",\"{}\"",
            self.record, self.field, self.value, self.message
        )
    }
}

/// PHP's `htmlspecialchars` (REDCap's `RCView::escape`): `& " ' < >`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of [`ApiError::RightsExpired`] before its date, which
/// [`crate::classify`] recognises it by.
pub(crate) const RIGHTS_EXPIRED_PREFIX: &str =
    "You do not have API rights because your privileges have expired for this project as of ";

impl ApiError {
    /// The HTTP status REDCap answers with.
    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            NoApiPermission
            | SuperTokenRequired
            | RightsExpired { .. }
            | NoApiExport
            | NoApiImport
            | NoDeleteRecord
            | NoRenameRecord
            | NoRandomize
            | DagMemberForbidden
            | NoExportAccess
            | NoLoggingRight
            | AnalysisCleanup
            | FileUploadAnalysisCleanup
            | FileDeleteAnalysisCleanup
            | FileIdentifierExport
            | FileFormNotEditable { .. }
            | NoSurveyParticipantsRight
            | NoFileRepositoryRight
            | ReportNotInProject { .. } => 403,
            _ => 400,
        }
    }

    /// The message, exactly as it goes into the error body.
    pub fn message(&self) -> String {
        use ApiError::*;
        match self {
            NoApiPermission => "You do not have permissions to use the API".into(),
            SuperTokenRequired => "You do not have permissions to use the API 'Create Project' method. You must have been granted a 64-character Super API Token by a REDCap administrator in order to use this method.".into(),
            RightsExpired { date } => format!("{RIGHTS_EXPIRED_PREFIX}{date}."),
            NoApiExport => "You do not have API Export privileges".into(),
            NoApiImport => "You do not have API Import/Update privileges".into(),
            NoDeleteRecord => "You do not have Delete Record privileges".into(),
            NoRenameRecord => "You do not have Rename Record privileges".into(),
            NoRandomize => "You do not have Randomize privileges".into(),
            DagMemberForbidden => "You do not have permission to export/import/delete Data Access Groups because you have been assigned to a Data Access Group.".into(),
            NoExportAccess => "The API request cannot complete because currently you have \"No Access\" data export rights. Higher level data export rights are required for this operation.".into(),
            NoLoggingRight => "The API request cannot complete because currently you do not have \"Logging\" privileges, which are required for this operation.".into(),
            AnalysisCleanup => "Data may not be imported because the project is in Analysis/Cleanup status.".into(),
            InvalidContent => "The value of the parameter \"content\" is not valid".into(),
            InvalidAction => "The value of the parameter \"action\" is not valid".into(),
            BadJson { decoder } => format!("The data being imported is not formatted correctly. PHP error from JSON decoder: {decoder}. The JSON must be in an array, as in [{{ ... }}]."),
            BadXml { details } | BadCsv { details } => format!("The data being imported is not formatted correctly. Error: {details}"),
            ApiDisabled => "The REDCap API is not enabled.".into(),
            UserRightsExportPrivilege => "Insufficient user privileges: You must have 'API Export' privileges and 'User Rights' privileges (Full Access or Read Only) in the project.".into(),
            UserRightsImportPrivilege => "Insufficient user privileges: You must have 'API Import/Update' privileges and 'User Rights' privileges (Full Access) in the project.".into(),
            UserRoleImportPrivilege => "Insufficient user privileges: You must have 'API Import/Update' privileges and 'User Rights' privileges (Full Access) in the project to import user roles or user-role assignments.".into(),
            DagExportPrivilege => "Insufficient user privileges: You must have 'API Export' privileges and 'Data Access Groups' privileges in the project.".into(),
            DagImportPrivilege => "Insufficient user privileges: You must have 'API Import/Update' privileges and 'Data Access Groups' privileges in the project.".into(),
            DagMappingByDagMember => "You do not have permission to import User-DAG assignments because you have been assigned to a Data Access Group.".into(),
            DesignPrivilege => "Insufficient user privileges: You must have 'Project Design and Setup' privileges in the project.".into(),
            RecordDeleteNeedsImport => "Insufficient user privileges: You must have 'API Import/Update' privileges in the project to delete records.".into(),
            OneProjectOnly => "Only one project may be created at a time. The data contains more than one project.".into(),
            ProjectAttributesMissing => "One or more components are missing in your input data. The following attributes are required: project_title, purpose. Also, 'purpose' must have a value of 0, 1, 2, 3, or 4.".into(),
            PurposeOtherMissing => "The attribute 'purpose_other' is required when 'purpose' has a value of 1 (Other).".into(),
            InvalidRightsValue { field, user, value, allowed } => format!("The field named \"{field}\" for user \"{user}\" with value \"{value}\" is not a valid rights value. It must be {allowed}."),
            UnknownForm { form, user } => format!("The form named \"{form}\" is incorrect for the user \"{user}\" The form does not exist in this project."),
            InvalidFormRight { form, user, value } => format!("The form named \"{form}\" for user \"{user}\" with value \"{value}\" is not a valid form-level rights value. It must be 0, 1, 2 or 3."),
            UserInRole { user } => format!("The user \"{user}\" cannot have their user privileges modified because the user belongs to a user role. Remove the user from the role first."),
            InvalidUserDag { dag } => format!("data_access_group \"{dag}\" is not a valid unique Data Access Group name for this project."),
            InvalidUsername { user } => format!("The username \"{user}\" is not valid. Usernames may contain only letters, numbers, underscores, apostrophes, spaces, periods, hyphens and the at sign (@)."),
            UsernameMissing => "One or more components are missing in your input data. The following attributes are required: username".into(),
            UnknownUsers { users } => format!("The following users are not users in this project: {}", users.join(", ")),
            RoleLabelBlank => "The Role Label is blank.".into(),
            InvalidRoleNames { names } => format!("Invalid Unique Role Names: {}", names.join(", ")),
            UnknownRolesToDelete { names } => format!("The following unique role names are invalid: {}", names.join(", ")),
            RoleMappingKeysMissing => "One or more components are missing in your input data. The following attributes are required: username, unique_role_name".into(),
            DuplicateUsername { user } => format!("The username \"{user}\" appears more than once in the data."),
            ListParameterMissing { parameter } => format!("The parameter \"{parameter}\" is missing or empty."),
            DagAttributesMissing => "One or more components are missing in your input data. The following attributes are required: data_access_group_name, unique_group_name".into(),
            UnknownDagToRename { name } => format!("The unique group name \"{name}\" does not exist in the project. NOTE: The unique group name is auto-generated by REDCap; leave it blank to create a new Data Access Group."),
            DagLabelTooLong { label } => format!("The Data Access Group name \"{label}\" is longer than 100 characters."),
            UnknownDagsToDelete { names } => format!("The following Data Access Groups are not valid: {}", names.join(", ")),
            InvalidMappingDag { user, dag } => format!("The unique group name \"{dag}\" for user \"{user}\" is not a valid Data Access Group in this project."),
            MappingUserNotInProject { user } => format!("The user \"{user}\" is not a user in this project."),
            DagMappingKeysMissing => "One or more components are missing in your input data. The following attributes are required: username, redcap_data_access_group".into(),
            InvalidParameterValues { parameter, values } => format!("The following values in the parameter \"{parameter}\" are not valid: {}", quoted_list(values)),
            IllegalDagField => "ERROR: Illegal use of 'redcap_data_access_group' field! You are currently in a Data Access Group, so you may not assign records to Data Access Groups. Remove the field from your data.".into(),
            RecordsInOtherDag { records } => format!("The following records cannot be modified because they do not belong to your Data Access Group: {}", records.join(", ")),
            InvalidRecordDags { names } => format!("The following Data Access Group are invalid for the redcap_data_access_group field: {}", names.join(", ")),
            RecordValidation { lines } => lines.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
            InvalidFilterLogic { reason } => format!("The parameter \"filterLogic\" is not valid logic: {reason}. Write it in REDCap's logic syntax, e.g. [age] > 30 and [sex] = '1'."),
            RecordsNotArray => "The parameter \"records\" must be an array.".into(),
            NoRecordsGiven => "No records were provided to delete.".into(),
            RecordsDoNotExist { records } => format!("One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: {}", records.join(", ")),
            ProductionDesign => "This method cannot be used while the project is in production status.".into(),
            BadMetadata { details } => details.clone(),
            ClassicProject { verb, what } => format!("You cannot {verb} {what} for classic projects"),
            BadStructure { details } => details.clone(),
            FileRecordMissing { record } => format!("The record \"{}\" does not exist", html_escape(record)),
            FileUploadRecordMissing { record } => format!("The record '{record}' does not exist. It must exist to upload a file"),
            FileDeleteRecordMissing { record } => format!("The record '{record}' does not exist"),
            NotAFileField { field } => format!("The field '{}' does not exist or is not a 'file' field", html_escape(field)),
            NoFileToDownload => "There is no file to download for this record".into(),
            NoFileToDelete => "There is no file to delete for this record".into(),
            NoFileUploaded => "No valid file was uploaded".into(),
            FileUploadProblem => "There was a problem with the uploaded file".into(),
            FileUploadAnalysisCleanup => "The file cannot be uploaded because the project is in Analysis/Cleanup status.".into(),
            FileDeleteAnalysisCleanup => "The file cannot be deleted because the project is in Analysis/Cleanup status.".into(),
            FileIdentifierExport => "The API request cannot complete because this File Upload field is an Identifier field while at the same time you currently have either \"De-Identified\" data export rights or \"Remove all tagged Identifier fields\" data export rights, which prevent you from exporting fields tagged as Identifiers. Higher level data export rights are required for this operation.".into(),
            StoredFileMissing { path, name } => format!("The file \"{path}\" (\"{name}\") does not exist"),
            FileFormNotEditable { field } => format!("You do not have edit privileges for the instrument containing the field '{field}'."),
            NoSurveyParticipantsRight => "The API request cannot complete because currently you do not have \"Manage Survey Participants\" privileges, which are required for this operation.".into(),
            SurveyParameterMissing { parameter } => format!("The parameter '{parameter}' is missing"),
            InvalidInstrument => "Invalid instrument".into(),
            InvalidEvent => "Invalid event".into(),
            NotASurvey { form } => format!("The instrument '{form}' has not been enabled as a survey"),
            NotASurveyQuoted { form } => format!("The instrument \"{}\" has not been enabled as a survey", html_escape(form)),
            SurveyNotInEvent { form, event } => format!("The instrument \"{}\" has not been designated for the event \"{}\"", html_escape(form), html_escape(event)),
            SurveyQueueDisabled => "The Survey Queue has not been enabled in this project. You will need to enable the Survey Queue before using this method.".into(),
            SaveAndReturnDisabled => "The 'Save & Return Later' feature has not been enabled for this survey".into(),
            NoFileRepositoryRight => "The API request cannot complete because currently you do not have \"File Repository\" rights, which are required for this operation.".into(),
            RepositoryFolderInaccessible { folder_id } => format!("The File Repository folder folder_id={folder_id} does not exist or else you do not have permission to that folder because it is DAG-restricted or Role-restricted."),
            RepositoryFolderNameMissing => "new folder 'name' not provided".into(),
            RepositoryFolderIdInvalid => "folder_id is not valid".into(),
            RepositoryFolderExists { name } => format!("ERROR: The folder name \"{}\" could not be created because a folder with that same name already exists in this directory. You should create a new folder with a different name instead.", html_escape(name)),
            RepositoryDocInvalid => "Invalid doc_id or missing doc_id".into(),
            ReportNotInProject { report_id } => format!(
                "The API request cannot complete because report_id={} does not belong to this project.",
                html_escape(report_id)
            ),
            ProjectSettingsPrivilege => "Insufficient user privileges: You must have 'API Import/Update' privileges and 'Project Setup/Design' privileges in the project.".into(),
            DataNotInFormat => "The data is not in the specified format.".into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_catalogue() {
        assert_eq!(ApiError::NoApiPermission.status(), 403);
        assert_eq!(ApiError::DagMemberForbidden.status(), 403);
        assert_eq!(ApiError::UserRightsExportPrivilege.status(), 400);
        assert_eq!(ApiError::InvalidContent.status(), 400);
    }

    #[test]
    fn parameterised_texts() {
        assert_eq!(
            ApiError::RightsExpired {
                date: "2026-01-31".into()
            }
            .message(),
            "You do not have API rights because your privileges have expired for this project as of 2026-01-31."
        );
        assert_eq!(
            ApiError::BadJson {
                decoder: "Syntax error".into()
            }
            .message(),
            "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error. The JSON must be in an array, as in [{ ... }]."
        );
        assert_eq!(
            ApiError::InvalidParameterValues {
                parameter: "fields",
                values: vec!["x".into(), "y".into()]
            }
            .message(),
            "The following values in the parameter \"fields\" are not valid: 'x', 'y'"
        );
        let line = ValidationLine {
            record: "1".into(),
            field: "f".into(),
            value: "v".into(),
            message: "m".into(),
        };
        assert_eq!(
            ApiError::RecordValidation {
                lines: vec![line.clone(), line]
            }
            .message(),
            "\"1\",\"f\",\"v\",\"m\"\n\"1\",\"f\",\"v\",\"m\""
        );
    }
}
