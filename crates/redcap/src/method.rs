//! The `content` whitelist (§1.5) and the derivation of `action` (§1.4).

use crate::ApiError;

macro_rules! contents {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// A value of the `content` parameter that REDCap 15.7.6 accepts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Content { $($(#[$doc])* $variant,)* }

        impl Content {
            /// Every accepted value, in the order of §1.5.
            pub const ALL: &'static [Content] = &[$(Content::$variant,)*];

            /// The wire name (`userRoleMapping`, `exportFieldNames`, …).
            pub fn as_str(self) -> &'static str {
                match self { $(Content::$variant => $wire,)* }
            }

            /// Exact, case-sensitive match as PHP does; `None` for anything
            /// REDCap would answer with "content is not valid".
            pub fn parse(value: &str) -> Option<Content> {
                match value { $($wire => Some(Content::$variant),)* _ => None }
            }
        }
    };
}

contents! {
    /// Export/Import/Delete/Rename/Randomize Records (§6).
    Record => "record",
    /// The data dictionary: Export/Import Metadata.
    Metadata => "metadata",
    /// A record's File Upload field: Export/Import/Delete File.
    File => "file",
    /// The File Repository: list, export, import, delete files and create folders.
    FileRepository => "fileRepository",
    /// The size of a file in a record's File Upload field.
    FileSize => "filesize",
    /// Facts about a file in a record's File Upload field.
    FileInfo => "fileinfo",
    /// Which instruments and events repeat: Export/Import Repeating Instruments and Events.
    RepeatingFormsEvents => "repeatingFormsEvents",
    /// Export Instruments (the project's forms).
    Instrument => "instrument",
    /// Export/Import/Delete Events (longitudinal projects).
    Event => "event",
    /// Export/Import/Delete Arms (longitudinal projects).
    Arm => "arm",
    /// Export/Import/Delete Users: user rights, including API rights and DAG (§4).
    User => "user",
    /// Import Project Info (`project_settings`).
    ProjectSettings => "project_settings",
    /// Export Reports.
    Report => "report",
    /// Verifies an "Advanced project bookmark" key and answers the
    /// browser session's username and DAG; needs no token (§2.1).
    AuthKey => "authkey",
    /// Export REDCap Version: answered for any valid token.
    Version => "version",
    /// Export PDF file of instruments.
    Pdf => "pdf",
    /// Export a survey link for a record.
    SurveyLink => "surveyLink",
    /// Export a survey access code for a record.
    SurveyAccessCode => "surveyAccessCode",
    /// Export a record's survey queue link.
    SurveyQueueLink => "surveyQueueLink",
    /// Export a survey return code for a record.
    SurveyReturnCode => "surveyReturnCode",
    /// Export a survey's participant list.
    ParticipantList => "participantList",
    /// Export List of Export Field Names (checkbox fields expanded).
    ExportFieldNames => "exportFieldNames",
    /// The REDCap Mobile App's check of the caller's rights.
    AppRightsCheck => "appRightsCheck",
    /// Export/Import Instrument-Event Mappings.
    FormEventMapping => "formEventMapping",
    /// The field validation types the server knows.
    FieldValidation => "fieldValidation",
    /// A field's attachment file.
    Attachment => "attachment",
    /// Export Project Info; with a super token, Create Project (§2.5).
    Project => "project",
    /// Generate Next Record Name (auto-numbered record ids).
    GenerateNextRecordName => "generateNextRecordName",
    /// Export Entire Project as REDCap XML (CDISC ODM).
    ProjectXml => "project_xml",
    /// Export/Import/Delete/Switch Data Access Groups (§5).
    Dag => "dag",
    /// Export/Import User-DAG Assignments (§5.4).
    UserDagMapping => "userDagMapping",
    /// Export Logging.
    Log => "log",
    /// Tableau's web data connector (accepted over GET too, §1.1).
    Tableau => "tableau",
    /// MyCap's calls (accepted over GET too, §1.1).
    MyCap => "mycap",
    /// Export/Import/Delete User Roles (§4.7).
    UserRole => "userRole",
    /// Export/Import User-Role Assignments (§4.7).
    UserRoleMapping => "userRoleMapping",
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does, after the derivation of §1.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read data (the default for most contents).
    Export,
    /// Create or update: the default when a `data` parameter is present.
    Import,
    /// Delete what `content` names.
    Delete,
    /// Switch the caller's current DAG (`content=dag`, §5.4).
    Switch,
    /// Rename a record (`content=record`).
    Rename,
    /// Randomize a record (`content=record`).
    Randomize,
    /// List a File Repository folder.
    List,
    /// Create a File Repository folder.
    CreateFolder,
    /// `import_app`: an import as the REDCap Mobile App sends it.
    ImportApp,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Export => "export",
            Action::Import => "import",
            Action::Delete => "delete",
            Action::Switch => "switch",
            Action::Rename => "rename",
            Action::Randomize => "randomize",
            Action::List => "list",
            Action::CreateFolder => "createFolder",
            Action::ImportApp => "import_app",
        }
    }

    /// Exact match on the wire name.
    pub fn parse(value: &str) -> Option<Action> {
        Some(match value {
            "export" => Action::Export,
            "import" => Action::Import,
            "delete" => Action::Delete,
            "switch" => Action::Switch,
            "rename" => Action::Rename,
            "randomize" => Action::Randomize,
            "list" => Action::List,
            "createFolder" => Action::CreateFolder,
            "import_app" => Action::ImportApp,
            _ => return None,
        })
    }

    /// Derives the action REDCap acts on from `content`, the raw `action`
    /// parameter and whether a `data` parameter is present (§1.4).
    ///
    /// Quirks kept on purpose: `content=dag` with `data` but no `action` is an
    /// export (§10.9); for `user`/`userRole`/`userRoleMapping`, `data`
    /// turns anything but `delete` into an import.
    pub fn derive(content: Content, action: &str, has_data: bool) -> Result<Action, ApiError> {
        use Content as C;
        let mut action = action;
        let defaults_to_export = matches!(
            content,
            C::Version
                | C::Event
                | C::Arm
                | C::AuthKey
                | C::RepeatingFormsEvents
                | C::Dag
                | C::User
                | C::UserRole
                | C::UserRoleMapping
        );
        if defaults_to_export && action.is_empty() {
            action = "export";
        }
        if matches!(content, C::User | C::UserRole | C::UserRoleMapping)
            && has_data
            && action != "delete"
        {
            action = "import";
        }
        if matches!(
            content,
            C::FileRepository | C::File | C::Event | C::Arm | C::Dag | C::User | C::UserRole
        ) {
            return match Action::parse(action) {
                Some(
                    a @ (Action::Export
                    | Action::Delete
                    | Action::Import
                    | Action::ImportApp
                    | Action::Switch
                    | Action::List
                    | Action::CreateFolder),
                ) => Ok(a),
                _ => Err(ApiError::InvalidAction),
            };
        }
        if content == C::Record
            && let Some(a @ (Action::Delete | Action::Rename | Action::Randomize)) =
                Action::parse(action)
        {
            return Ok(a);
        }
        if content == C::Version || !has_data {
            Ok(Action::Export)
        } else {
            Ok(Action::Import)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_content_round_trips() {
        assert_eq!(Content::ALL.len(), 36);
        for c in Content::ALL {
            assert_eq!(Content::parse(c.as_str()), Some(*c));
        }
        assert_eq!(Content::parse("Record"), None);
        assert_eq!(Content::parse("externalModule"), None);
    }

    #[test]
    fn action_derivation_table() {
        use Action as A;
        use Content as C;
        let ok = |c, a, d| Action::derive(c, a, d).unwrap();
        assert_eq!(ok(C::Version, "", false), A::Export);
        assert_eq!(ok(C::Version, "import", true), A::Export);
        assert_eq!(ok(C::User, "", false), A::Export);
        assert_eq!(ok(C::User, "", true), A::Import);
        assert_eq!(ok(C::User, "export", true), A::Import);
        assert_eq!(ok(C::User, "delete", true), A::Delete);
        assert_eq!(ok(C::UserRoleMapping, "", true), A::Import);
        // §10.9: a DAG import needs action=import.
        assert_eq!(ok(C::Dag, "", true), A::Export);
        assert_eq!(ok(C::Dag, "import", true), A::Import);
        assert_eq!(ok(C::Dag, "switch", false), A::Switch);
        assert_eq!(ok(C::Record, "", false), A::Export);
        assert_eq!(ok(C::Record, "", true), A::Import);
        assert_eq!(ok(C::Record, "delete", false), A::Delete);
        assert_eq!(ok(C::Record, "bogus", true), A::Import);
        assert_eq!(ok(C::Metadata, "delete", true), A::Import);
        assert_eq!(ok(C::Project, "", true), A::Import);
        assert_eq!(ok(C::UserDagMapping, "import", false), A::Export);
        for (c, a) in [
            (C::Dag, "bogus"),
            (C::User, "rename"),
            (C::UserRole, "Export"),
        ] {
            assert_eq!(Action::derive(c, a, false), Err(ApiError::InvalidAction));
        }
    }
}
