//! Errors say which store failed and what to do about it, in one line.
//! None of them ever contains a secret value.

use crate::{Label, SecretName};

/// Why a [`SecretStore`](crate::SecretStore) operation failed.
///
/// Every variant names the store (`store`: the backend and its file, address
/// or region, as [`SecretStore::describe`](crate::SecretStore::describe) gives it) and,
/// where there is one, what the user should do (`fix`). No field ever holds
/// a secret value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No secret has this name (or it was purged). Check the name with
    /// `redcap-warden secrets list`.
    #[error(
        "{store}: no secret named `{name}`; fix: check the name with `redcap-warden secrets list`"
    )]
    NotFound {
        /// The store that was asked.
        store: String,
        /// The name that was looked up.
        name: SecretName,
    },

    /// The secret exists but not the version asked for (by id, or the
    /// version a label was to be moved to).
    #[error("{store}: secret `{name}` has no version {what}")]
    NoSuchVersion {
        /// The store that was asked.
        store: String,
        /// The secret whose versions were searched.
        name: SecretName,
        /// The version asked for, as the message shows it (an id in
        /// backquotes, or a selector such as `label pending`).
        what: String,
    },

    /// No version of the secret carries this staging label (for example
    /// `pending` outside a rotation).
    #[error("{store}: secret `{name}` has no `{label}` version")]
    LabelNotSet {
        /// The store that was asked.
        store: String,
        /// The secret whose labels were read.
        name: SecretName,
        /// The label no version carries.
        label: Label,
    },

    /// The secret is marked deleted (recoverable): restore it before
    /// reading or writing it.
    #[error("{store}: secret `{name}` is deleted; fix: restore it before using it")]
    Deleted {
        /// The store that was asked.
        store: String,
        /// The deleted secret.
        name: SecretName,
    },

    /// The request breaks the store's rules or its configuration is
    /// incomplete (a new version labelled `previous`, removing `current`,
    /// creating over an existing store, no AWS region); `detail` says what
    /// and how to ask instead.
    #[error("{store}: {detail}")]
    InvalidRequest {
        /// The store that refused.
        store: String,
        /// What was wrong with the request, and what to do instead.
        detail: String,
    },

    #[error(
        "{store}: cannot decrypt with identity {identity}: it is not the key this store was encrypted to; fix: point [secrets.file] identity at the right identity file (restore it from backup); the store was not modified"
    )]
    /// The file store was encrypted to a different age identity than the
    /// one configured. Point `[secrets.file] identity` at the right file;
    /// nothing was modified.
    WrongKey {
        /// The file store that could not be decrypted.
        store: String,
        /// The path of the identity file that was tried.
        identity: String,
    },

    #[error(
        "{store}: the passphrase {from} does not unlock identity {identity}; fix: give the identity's passphrase (check [secrets.file] passphrase_file or the systemd credential; if it is lost, restore a backup of the identity whose passphrase you know); nothing was modified"
    )]
    /// The passphrase given does not decrypt the (passphrase-protected)
    /// identity file. Nothing was modified.
    WrongPassphrase {
        /// The file store whose identity was being opened.
        store: String,
        /// The path of the identity file.
        identity: String,
        /// Where the passphrase came from (a file, a systemd credential, the
        /// terminal), so the user knows which one to correct.
        from: String,
    },

    #[error(
        "{store}: the store is damaged ({detail}); fix: restore the file from backup; it was not modified"
    )]
    /// The store file decrypted badly or holds no store document of a
    /// known format. Restore it from backup; it was not modified.
    Corrupt {
        /// The damaged file store.
        store: String,
        /// What is wrong with it (never its content).
        detail: String,
    },

    #[error("{store}: identity {identity} is unusable ({detail}); fix: {fix}")]
    /// The identity file cannot be used: unreadable, too open
    /// permissions, not an age identity, or the wrong kind of one.
    BadIdentity {
        /// The file store the identity belongs to.
        store: String,
        /// The path of the identity file.
        identity: String,
        /// What is wrong with it.
        detail: String,
        /// What the user should do about it.
        fix: String,
    },

    #[error("{store}: {op} failed: {source}; fix: {fix}")]
    /// A file-system operation of the file store failed (create, read,
    /// write, sync, rename). Nothing acknowledged before it is lost.
    Io {
        /// The file store whose file failed.
        store: String,
        /// What the store was doing, e.g. `"writing the store"`.
        op: String,
        /// What the user should do about it.
        fix: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    #[error("{store}: unreachable ({detail}); fix: {fix}")]
    /// A networked store (OpenBao/Vault, AWS) could not be reached or did
    /// not answer in time; the operation may be retried.
    Unreachable {
        /// The store that could not be reached.
        store: String,
        /// The connection or timeout error.
        detail: String,
        /// What the user should check (address, TLS, network).
        fix: String,
    },

    #[error("{store}: access denied ({detail}); fix: {fix}")]
    /// The networked store refused our credentials or their policy does
    /// not allow the operation.
    Denied {
        /// The store that refused.
        store: String,
        /// The server's reason, without any secret.
        detail: String,
        /// Which permission or policy the user should grant.
        fix: String,
    },

    #[error("{store}: a concurrent writer changed secret `{name}` first; fix: retry")]
    /// Another writer changed the secret between our read and our
    /// (check-and-set) write, and the retries ran out. Run the operation
    /// again.
    Conflict {
        /// The store that refused the write.
        store: String,
        /// The secret that changed under us.
        name: SecretName,
    },

    #[error("{store}: cannot read {what} ({detail}); fix: {fix}")]
    /// The credential for a networked store (a Vault token file, AWS
    /// credentials) could not be found or read.
    Credential {
        /// The store the credential is for.
        store: String,
        /// Which credential, and where it was looked for.
        what: String,
        /// Why it could not be read.
        detail: String,
        /// Where the user should put it.
        fix: String,
    },

    #[error("{store}: the server refused the request ({detail}); fix: {fix}")]
    /// The networked store answered with an error we do not classify
    /// further (an unexpected status, or an answer we cannot parse).
    Backend {
        /// The store that answered.
        store: String,
        /// The status and the server's message, without any secret.
        detail: String,
        /// What the user should do about it.
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
