//! `[ledger]`: where the audit ledger lives and the key that verifies it.
//!
//! ```toml
//! [ledger]
//! backend = "postgres"          # or "file" (the default)
//! verifier_key = "…"
//! witness_file = "/mnt/other/witness.note"   # optional: the latest checkpoint, on other storage
//!
//! [ledger.postgres]
//! url_file = "data/ledger-db.url"   # a 0600 file holding the connection string
//! # url = "postgresql://warden@127.0.0.1/warden"  # only without a password
//! schema = "redcap_warden"
//! ```
//!
//! A connection string may hold a password, so it is never written in
//! `warden.toml` with one: `url` is refused if it carries a password, and
//! `url_file` names a file readable by its owner only.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// `[ledger]`. `init` writes it; the verifier key is pinned here so that
/// `ledger verify` never trusts a key found beside the ledger itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawLedgerSection")]
pub struct LedgerSection {
    /// Which store holds the ledger.
    pub backend: LedgerBackendKind,
    /// The directory of segment files and checkpoints (file backend).
    pub dir: PathBuf,
    /// The checkpoint verifier key, `<origin>+<key id>+<base64 key>`.
    pub verifier_key: Spanned<String>,
    /// A file on other storage than the ledger that keeps a copy of the
    /// latest checkpoint (a witness, `docs/ledger.md` §11), beside the one
    /// in the secrets store.
    pub witness_file: Option<PathBuf>,
    /// `[ledger.postgres]`, required when `backend = "postgres"`.
    pub postgres: Option<PostgresLedgerSection>,
    /// `[ledger.export]`: where `ledger export` ships sealed segments.
    pub export: Option<crate::ExportSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedgerSection {
    #[serde(default)]
    backend: LedgerBackendKind,
    #[serde(default = "default_dir")]
    dir: PathBuf,
    verifier_key: Spanned<String>,
    witness_file: Option<PathBuf>,
    postgres: Option<PostgresLedgerSection>,
    export: Option<crate::ExportSection>,
}

impl TryFrom<RawLedgerSection> for LedgerSection {
    type Error = String;
    fn try_from(raw: RawLedgerSection) -> Result<Self, String> {
        if raw.backend == LedgerBackendKind::Postgres && raw.postgres.is_none() {
            return Err(
                "invalid value: backend = \"postgres\" needs a [ledger.postgres] table with url_file (or url, without a password); see docs/ledger.md §9".into(),
            );
        }
        if let Some(w) = &raw.witness_file
            && raw.backend == LedgerBackendKind::File
            && (w.starts_with(&raw.dir) || w.as_os_str().is_empty())
        {
            return Err(format!(
                "invalid value: witness_file {} is inside the ledger directory {}, where whoever can change the ledger can change it too; fix: name a file on other storage, e.g. witness_file = \"/mnt/other/witness.note\"",
                w.display(),
                raw.dir.display()
            ));
        }
        Ok(LedgerSection {
            backend: raw.backend,
            dir: raw.dir,
            witness_file: raw.witness_file,
            verifier_key: raw.verifier_key,
            postgres: raw.postgres,
            export: raw.export,
        })
    }
}

/// Where the ledger is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerBackendKind {
    /// Segment files in `dir` (the default): one machine.
    #[default]
    File,
    /// Tables in a PostgreSQL database (`[ledger.postgres]`): several
    /// gateways share one ledger.
    Postgres,
}

impl LedgerBackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerBackendKind::File => "file",
            LedgerBackendKind::Postgres => "postgres",
        }
    }
}

/// `[ledger.postgres]`: the database holding the ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPostgresSection")]
pub struct PostgresLedgerSection {
    pub connection: ConnectionFrom,
    /// The schema of the ledger's tables (one ledger per schema).
    pub schema: String,
}

/// Where the connection string comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionFrom {
    /// Written in `warden.toml`: allowed only without a password (loopback
    /// or socket trust authentication, client certificates).
    Url(String),
    /// A file holding the connection string, readable by its owner only.
    File(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgresSection {
    url: Option<String>,
    url_file: Option<PathBuf>,
    #[serde(default = "default_schema")]
    schema: String,
}

impl TryFrom<RawPostgresSection> for PostgresLedgerSection {
    type Error = String;
    fn try_from(raw: RawPostgresSection) -> Result<Self, String> {
        ledger::valid_schema(&raw.schema).map_err(|e| {
            format!("invalid value: {e}; fix: name a plain schema, e.g. schema = \"redcap_warden\"")
        })?;
        let connection = match (raw.url, raw.url_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "invalid value: [ledger.postgres] has both url and url_file; keep one (url_file if the connection needs a password)".into(),
                );
            }
            (None, None) => {
                return Err(
                    "missing field: [ledger.postgres] needs url_file (a 0600 file holding the connection string) or url (without a password)".into(),
                );
            }
            (Some(url), None) => {
                check_connection_string(&url).map_err(|e| format!("invalid value: url {e}"))?;
                if has_password(&url) {
                    return Err(
                        "invalid value: url holds a password, and no secret is ever written in warden.toml; fix: remove the url line, put the connection string in a file only you can read (chmod 600) and name it with url_file".into(),
                    );
                }
                ConnectionFrom::Url(url)
            }
            (None, Some(path)) => ConnectionFrom::File(path),
        };
        Ok(PostgresLedgerSection {
            connection,
            schema: raw.schema,
        })
    }
}

fn default_dir() -> PathBuf {
    "data/ledger".into()
}

fn default_schema() -> String {
    ledger::DEFAULT_SCHEMA.into()
}

impl LedgerSection {
    /// The pinned key, already validated.
    pub fn verifier_key(&self) -> ledger::VerifierKey {
        ledger::VerifierKey::parse(self.verifier_key.get_ref())
            .expect("validated when the file was loaded")
    }
}

impl PostgresLedgerSection {
    /// The connection string: `url`, or the contents of `url_file`
    /// (resolved against the configuration's directory by `resolve`). The
    /// file must belong to the user running redcap-warden and be readable
    /// by nobody else. Errors never contain the string itself.
    pub fn connection_string(&self, resolve: impl Fn(&Path) -> PathBuf) -> Result<String, String> {
        match &self.connection {
            ConnectionFrom::Url(url) => Ok(url.clone()),
            ConnectionFrom::File(path) => read_url_file(&resolve(path)),
        }
    }
}

fn read_url_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "[ledger.postgres] url_file {}: {e}; fix: write the connection string to that file (chmod 600)",
            path.display()
        )
    })?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "[ledger.postgres] url_file {} is readable by others (mode {:o}) and may hold a password; fix: chmod 600 {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("[ledger.postgres] url_file {}: {e}", path.display()))?;
    let url = text.trim();
    if url.is_empty() {
        return Err(format!(
            "[ledger.postgres] url_file {} is empty; fix: write the connection string to it, e.g. postgresql://warden:PASSWORD@db.example.org/warden",
            path.display()
        ));
    }
    check_connection_string(url).map_err(|e| {
        format!(
            "[ledger.postgres] url_file {}: the connection string {e}",
            path.display()
        )
    })?;
    Ok(url.to_owned())
}

/// A light check of the connection string's form; the database client
/// parses it fully. Messages never quote it.
fn check_connection_string(s: &str) -> Result<(), String> {
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        url::Url::parse(s)
            .map(|_| ())
            .map_err(|e| format!("is not a valid postgresql:// URL ({e})"))
    } else if s.contains('=') {
        Ok(())
    } else {
        Err("is neither a postgresql:// URL nor key=value pairs (e.g. \"host=127.0.0.1 dbname=warden user=warden\")".into())
    }
}

/// Whether a connection string carries a password (URL user info, a
/// `password` query parameter, or a `password=` pair).
fn has_password(s: &str) -> bool {
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        match url::Url::parse(s) {
            Ok(u) => {
                u.password().is_some()
                    || u.query_pairs()
                        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
            }
            // Unparsable: refused elsewhere; assume the worst here.
            Err(_) => s.contains('@'),
        }
    } else {
        s.split_whitespace().any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("password"))
        })
    }
}

pub(crate) fn check_verifier_key(key: &str) -> Result<(), String> {
    ledger::VerifierKey::parse(key)
        .map(|_| ())
        .map_err(|e| format!("not a verifier key ({e})"))
}

#[cfg(test)]
mod ledger_tests {
    use super::*;

    // Not parsed by the section itself (the crate's validation checks it).
    const KEY: &str = "t.example/redcap-warden/0011223344556677+4cb46ec6+Aa4jICU7RL7XsRmLWIzU7PHoUmB/kNbp1JF9DgOhIKCy";

    fn section(text: &str) -> Result<LedgerSection, String> {
        #[derive(Deserialize)]
        struct Doc {
            ledger: LedgerSection,
        }
        toml::from_str::<Doc>(&format!("[ledger]\nverifier_key = \"{KEY}\"\n{text}"))
            .map(|d| d.ledger)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_backend_is_the_default() {
        let s = section("").unwrap();
        assert_eq!(s.backend, LedgerBackendKind::File);
        assert_eq!(s.dir, PathBuf::from("data/ledger"));
        assert!(s.postgres.is_none());
    }

    #[test]
    fn postgres_with_a_url_file_or_a_passwordless_url() {
        let s = section("backend = \"postgres\"\n[ledger.postgres]\nurl_file = \"data/db.url\"\n")
            .unwrap();
        assert_eq!(s.backend, LedgerBackendKind::Postgres);
        let pg = s.postgres.unwrap();
        assert_eq!(pg.connection, ConnectionFrom::File("data/db.url".into()));
        assert_eq!(pg.schema, "redcap_warden");
        for url in [
            "postgresql://warden@127.0.0.1:5432/warden",
            "postgres://%2Frun%2Fpostgresql/warden",
            "host=/run/postgresql dbname=warden user=warden",
        ] {
            let s = section(&format!(
                "backend = \"postgres\"\n[ledger.postgres]\nurl = \"{url}\"\nschema = \"ledger2\"\n"
            ))
            .unwrap();
            let pg = s.postgres.unwrap();
            assert_eq!(pg.connection, ConnectionFrom::Url(url.into()));
            assert_eq!(pg.schema, "ledger2");
        }
    }

    #[test]
    fn bad_postgres_sections_say_what_to_fix() {
        let cases = [
            (
                "backend = \"postgres\"\n",
                "needs a [ledger.postgres] table",
            ),
            ("backend = \"sqlite\"\n", "unknown variant"),
            (
                "backend = \"postgres\"\n[ledger.postgres]\n",
                "needs url_file",
            ),
            (
                "backend = \"postgres\"\n[ledger.postgres]\nurl = \"postgresql://w:s3cret@db/w\"\n",
                "holds a password",
            ),
            (
                "backend = \"postgres\"\n[ledger.postgres]\nurl = \"postgresql://w@db/w?password=s3cret\"\n",
                "holds a password",
            ),
            (
                "backend = \"postgres\"\n[ledger.postgres]\nurl = \"host=db password=s3cret\"\n",
                "holds a password",
            ),
            (
                "backend = \"postgres\"\n[ledger.postgres]\nurl = \"x\"\nurl_file = \"f\"\n",
                "both url and url_file",
            ),
            (
                "backend = \"postgres\"\n[ledger.postgres]\nurl = \"db.example.org\"\n",
                "neither a postgresql:// URL",
            ),
            (
                "backend = \"postgres\"\n[ledger.postgres]\nurl_file = \"f\"\nschema = \"Drop;\"\n",
                "not a plain lowercase name",
            ),
        ];
        for (text, want) in cases {
            let err = section(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
            assert!(
                !err.contains("s3cret"),
                "{text}: the password leaked: {err}"
            );
        }
    }

    #[test]
    fn the_url_file_must_be_private_and_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db.url");
        let pg = PostgresLedgerSection {
            connection: ConnectionFrom::File("db.url".into()),
            schema: "redcap_warden".into(),
        };
        let resolve = |p: &Path| tmp.path().join(p);
        let err = pg.connection_string(resolve).unwrap_err();
        assert!(err.contains("write the connection string"), "{err}");
        std::fs::write(&path, "postgresql://w:s3cret@db/w\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = pg.connection_string(resolve).unwrap_err();
        assert!(
            err.contains("chmod 600") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            pg.connection_string(resolve).unwrap(),
            "postgresql://w:s3cret@db/w"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(
            pg.connection_string(resolve)
                .unwrap_err()
                .contains("is empty")
        );
    }
}
