//! Errors say which store failed and what to do about it, in one line.
//! None of them ever contains a secret value.

use crate::{Label, SecretName};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{store}: no secret named `{name}`; fix: check the name with `redcap-warden secrets list`"
    )]
    NotFound { store: String, name: SecretName },

    #[error("{store}: secret `{name}` has no version {what}")]
    NoSuchVersion {
        store: String,
        name: SecretName,
        what: String,
    },

    #[error("{store}: secret `{name}` has no `{label}` version")]
    LabelNotSet {
        store: String,
        name: SecretName,
        label: Label,
    },

    #[error("{store}: secret `{name}` is deleted; fix: restore it before using it")]
    Deleted { store: String, name: SecretName },

    #[error("{store}: {detail}")]
    InvalidRequest { store: String, detail: String },

    #[error(
        "{store}: cannot decrypt with identity {identity}: it is not the key this store was encrypted to; fix: point [secrets.file] identity at the right identity file (restore it from backup); the store was not modified"
    )]
    WrongKey { store: String, identity: String },

    #[error(
        "{store}: the passphrase {from} does not unlock identity {identity}; fix: give the identity's passphrase (check [secrets.file] passphrase_file or the systemd credential; if it is lost, restore a backup of the identity whose passphrase you know); nothing was modified"
    )]
    WrongPassphrase {
        store: String,
        identity: String,
        from: String,
    },

    #[error(
        "{store}: the store is damaged ({detail}); fix: restore the file from backup; it was not modified"
    )]
    Corrupt { store: String, detail: String },

    #[error("{store}: identity {identity} is unusable ({detail}); fix: {fix}")]
    BadIdentity {
        store: String,
        identity: String,
        detail: String,
        fix: String,
    },

    #[error("{store}: {op} failed: {source}; fix: {fix}")]
    Io {
        store: String,
        op: String,
        fix: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{store}: unreachable ({detail}); fix: {fix}")]
    Unreachable {
        store: String,
        detail: String,
        fix: String,
    },

    #[error("{store}: access denied ({detail}); fix: {fix}")]
    Denied {
        store: String,
        detail: String,
        fix: String,
    },

    #[error("{store}: a concurrent writer changed secret `{name}` first; fix: retry")]
    Conflict { store: String, name: SecretName },

    #[error("{store}: cannot read {what} ({detail}); fix: {fix}")]
    Credential {
        store: String,
        what: String,
        detail: String,
        fix: String,
    },

    #[error("{store}: the server refused the request ({detail}); fix: {fix}")]
    Backend {
        store: String,
        detail: String,
        fix: String,
    },
}

/// A JSON parse error without its message: serde's messages quote the
/// offending input ("invalid type: string \"…\""), which here may be a
/// secret, so only the kind and position are kept.
pub(crate) fn json_error_position(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "structure",
        serde_json::error::Category::Eof => "truncation",
    };
    format!(
        "JSON {kind} error at line {}, column {}",
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_errors_never_quote_the_input() {
        let e = serde_json::from_str::<std::collections::BTreeMap<String, u32>>(
            r#"{"a": "C0FFEE00SECRET"}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("C0FFEE00SECRET"),
            "serde quotes input"
        );
        let safe = super::json_error_position(&e);
        assert!(!safe.contains("C0FFEE00SECRET"), "{safe}");
        assert_eq!(safe, "JSON structure error at line 1, column 22");
    }
}
