//! The `content` whitelist (§1.5) and the derivation of `action` (§1.4).

use crate::ApiError;

macro_rules! contents {
    ($($variant:ident => $wire:literal,)*) => {
        /// A value of the `content` parameter that REDCap 15.7.6 accepts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Content { $($variant,)* }

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
    Record => "record",
    Metadata => "metadata",
    File => "file",
    FileRepository => "fileRepository",
    FileSize => "filesize",
    FileInfo => "fileinfo",
    RepeatingFormsEvents => "repeatingFormsEvents",
    Instrument => "instrument",
    Event => "event",
    Arm => "arm",
    User => "user",
    ProjectSettings => "project_settings",
    Report => "report",
    AuthKey => "authkey",
    Version => "version",
    Pdf => "pdf",
    SurveyLink => "surveyLink",
    SurveyAccessCode => "surveyAccessCode",
    SurveyQueueLink => "surveyQueueLink",
    SurveyReturnCode => "surveyReturnCode",
    ParticipantList => "participantList",
    ExportFieldNames => "exportFieldNames",
    AppRightsCheck => "appRightsCheck",
    FormEventMapping => "formEventMapping",
    FieldValidation => "fieldValidation",
    Attachment => "attachment",
    Project => "project",
    GenerateNextRecordName => "generateNextRecordName",
    ProjectXml => "project_xml",
    Dag => "dag",
    UserDagMapping => "userDagMapping",
    Log => "log",
    Tableau => "tableau",
    MyCap => "mycap",
    UserRole => "userRole",
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
    Export,
    Import,
    Delete,
    Switch,
    Rename,
    Randomize,
    List,
    CreateFolder,
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
