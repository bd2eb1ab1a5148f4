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
use toml::de::DeTable;

use crate::Problem;
use crate::schema::{str_at, table_at};

/// `[ledger]`. `init` writes it; the verifier key is pinned here so that
/// `ledger verify` never trusts a key found beside the ledger itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawLedgerSection")]
pub struct LedgerSection {
    /// Which store holds the ledger (`backend`, and `[ledger.postgres]`
    /// for a database).
    pub store: LedgerStore,
    /// The directory of segment files and checkpoints (file backend; a
    /// PostgreSQL ledger takes over the file ledger `init` wrote there);
    /// `<data_dir>/ledger` unless set.
    pub dir: PathBuf,
    /// The pinned checkpoint verifier key.
    pub verifier_key: ledger::VerifierKey,
    /// A file on other storage than the ledger that keeps a copy of the
    /// latest checkpoint (a witness, `docs/ledger.md` §11), beside the one
    /// in the secrets store.
    pub witness_file: Option<PathBuf>,
    /// `[ledger.export]`: where `ledger export` ships sealed segments.
    pub export: Option<crate::ExportSection>,
}

/// Where the ledger is kept, with what that store needs.
#[derive(Debug, Clone)]
pub enum LedgerStore {
    /// Segment files in `dir`: one machine.
    File,
    /// Tables in a PostgreSQL database: several gateways share one ledger.
    Postgres(PostgresLedgerSection),
}

impl LedgerSection {
    /// Which kind of store holds the ledger.
    pub fn backend(&self) -> LedgerBackendKind {
        match self.store {
            LedgerStore::File => LedgerBackendKind::File,
            LedgerStore::Postgres(_) => LedgerBackendKind::Postgres,
        }
    }

    /// The pinned key.
    pub fn verifier_key(&self) -> ledger::VerifierKey {
        self.verifier_key.clone()
    }

    /// Fills the ledger directory in from the data directory when `dir`
    /// is left out.
    pub(crate) fn derive_paths(&mut self, data_dir: &Path) {
        crate::paths::derive(&mut self.dir, data_dir, "ledger");
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLedgerSection {
    #[serde(default)]
    backend: LedgerBackendKind,
    #[serde(default)]
    dir: PathBuf,
    verifier_key: String,
    witness_file: Option<PathBuf>,
    postgres: Option<PostgresLedgerSection>,
    export: Option<crate::ExportSection>,
}

impl TryFrom<RawLedgerSection> for LedgerSection {
    type Error = String;
    fn try_from(raw: RawLedgerSection) -> Result<Self, String> {
        let store = match (raw.backend, raw.postgres) {
            (LedgerBackendKind::File, _) => LedgerStore::File,
            (LedgerBackendKind::Postgres, Some(pg)) => LedgerStore::Postgres(pg),
            (LedgerBackendKind::Postgres, None) => {
                return Err(format!(
                    "invalid value: backend = \"postgres\" needs {POSTGRES_NEEDS}"
                ));
            }
        };
        let verifier_key = parse_verifier_key(&raw.verifier_key)
            .map_err(|e| format!("invalid value: verifier_key is {e}"))?;
        Ok(LedgerSection {
            store,
            dir: raw.dir,
            witness_file: raw.witness_file,
            verifier_key,
            export: raw.export,
        })
    }
}

/// `witness_file` must not lie inside the ledger directory of a file
/// ledger: whoever can change the ledger could change its witness too.
/// Checked on the generic document, so the problem has its position.
pub(crate) fn validate_witness(doc: &DeTable<'_>, text: &str, problems: &mut Vec<Problem>) {
    let Some(section) = table_at(doc, "ledger") else {
        return;
    };
    let Some((witness, span)) = str_at(section, "witness_file") else {
        return;
    };
    if witness.is_empty() || str_at(section, "backend").is_some_and(|(b, _)| b != "file") {
        return;
    }
    let dir = match str_at(section, "dir") {
        Some((dir, _)) => PathBuf::from(dir),
        None => table_at(doc, "paths")
            .and_then(|paths| str_at(paths, "data_dir"))
            .map_or_else(
                || crate::PathsSection::default().data_dir,
                |(d, _)| d.into(),
            )
            .join("ledger"),
    };
    if Path::new(witness).starts_with(&dir) {
        problems.push(Problem::at_offset(
            text,
            span.start,
            Some("ledger.witness_file".into()),
            format!(
                "witness_file {witness} is inside the ledger directory {}, where whoever can change the ledger can change it too",
                dir.display()
            ),
            "name a file on other storage, e.g. witness_file = \"/mnt/other/witness.note\"".into(),
        ));
    }
}

/// What `backend = "postgres"` needs besides.
pub(crate) const POSTGRES_NEEDS: &str =
    "a [ledger.postgres] table with url_file (or url, without a password); see docs/ledger.md §9";

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
    /// The value as written in `[ledger] backend`.
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
    /// The connection string, from `url`, `url_file` or `url_credential`
    /// (exactly one).
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
    /// A systemd credential (`LoadCredential=NAME:…` in the unit): the
    /// file `$CREDENTIALS_DIRECTORY/NAME`, held to the same rules as
    /// `url_file`.
    Credential(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgresSection {
    url: Option<String>,
    url_file: Option<PathBuf>,
    url_credential: Option<String>,
    #[serde(default = "default_schema")]
    schema: String,
}

impl TryFrom<RawPostgresSection> for PostgresLedgerSection {
    type Error = String;
    fn try_from(raw: RawPostgresSection) -> Result<Self, String> {
        ledger::valid_schema(&raw.schema).map_err(|e| {
            format!("invalid value: {e}; fix: name a plain schema, e.g. schema = \"redcap_warden\"")
        })?;
        let given = [
            raw.url.is_some(),
            raw.url_file.is_some(),
            raw.url_credential.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(
                "invalid value: [ledger.postgres] has more than one of url, url_file and url_credential; keep one (url_file or url_credential if the connection needs a password)".into(),
            );
        }
        let connection = match (raw.url, raw.url_file, raw.url_credential) {
            (Some(url), _, _) => {
                check_connection_string(&url).map_err(|e| format!("invalid value: url {e}"))?;
                if has_password(&url) {
                    return Err(
                        "invalid value: url holds a password, and no secret is ever written in warden.toml; fix: remove the url line, put the connection string in a file only you can read (chmod 600) and name it with url_file".into(),
                    );
                }
                ConnectionFrom::Url(url)
            }
            (None, Some(path), _) => ConnectionFrom::File(path),
            (None, None, Some(name)) => {
                valid_credential_name(&name)
                    .map_err(|e| format!("invalid value: url_credential {e}"))?;
                ConnectionFrom::Credential(name)
            }
            (None, None, None) => {
                return Err(
                    "missing field: [ledger.postgres] needs url_file (a 0600 file holding the connection string), url_credential (a systemd credential's name) or url (without a password)".into(),
                );
            }
        };
        Ok(PostgresLedgerSection {
            connection,
            schema: raw.schema,
        })
    }
}

fn default_schema() -> String {
    ledger::DEFAULT_SCHEMA.into()
}

impl PostgresLedgerSection {
    /// The connection string: `url`, or the contents of `url_file`
    /// (resolved against the configuration's directory by `resolve`). The
    /// file must belong to the user running redcap-warden and be readable
    /// by nobody else. Errors never contain the string itself.
    pub fn connection_string(&self, resolve: impl Fn(&Path) -> PathBuf) -> Result<String, String> {
        self.connection_string_with(resolve, std::env::var_os("CREDENTIALS_DIRECTORY"))
    }

    /// [`Self::connection_string`] with `$CREDENTIALS_DIRECTORY` given.
    fn connection_string_with(
        &self,
        resolve: impl Fn(&Path) -> PathBuf,
        credentials_directory: Option<std::ffi::OsString>,
    ) -> Result<String, String> {
        match &self.connection {
            ConnectionFrom::Url(url) => Ok(url.clone()),
            ConnectionFrom::File(path) => read_url_file(&resolve(path)),
            ConnectionFrom::Credential(name) => {
                let dir = credentials_directory
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "[ledger.postgres] url_credential {name}: $CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with LoadCredential={name}:FILE); fix: run under such a unit, or use url_file outside systemd"
                        )
                    })?;
                read_url_file(&Path::new(&dir).join(name))
            }
        }
    }
}

/// A credential name as systemd takes it: one file name, no `/`.
fn valid_credential_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.len() > 255 {
        return Err(format!(
            "`{name}` is not a credential name; fix: write the NAME of the unit's LoadCredential=NAME:FILE, e.g. url_credential = \"redcap-warden-ledger-db-url\""
        ));
    }
    Ok(())
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

pub(crate) fn parse_verifier_key(key: &str) -> Result<ledger::VerifierKey, String> {
    ledger::VerifierKey::parse(key).map_err(|e| format!("not a verifier key ({e})"))
}

#[cfg(test)]
mod ledger_tests {
    use super::*;

    // The example key of Go's note package documentation.
    const KEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

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
        assert_eq!(s.backend(), LedgerBackendKind::File);
        assert!(matches!(s.store, LedgerStore::File));
        assert_eq!(s.verifier_key.to_string(), KEY);
    }

    #[test]
    fn postgres_with_a_url_file_or_a_passwordless_url() {
        let s = section("backend = \"postgres\"\n[ledger.postgres]\nurl_file = \"data/db.url\"\n")
            .unwrap();
        assert_eq!(s.backend(), LedgerBackendKind::Postgres);
        let LedgerStore::Postgres(pg) = s.store else {
            panic!("a PostgreSQL ledger")
        };
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
            let LedgerStore::Postgres(pg) = s.store else {
                panic!("a PostgreSQL ledger")
            };
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
                "more than one of url, url_file and url_credential",
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
    fn postgres_with_a_systemd_credential() {
        let s = section(
            "backend = \"postgres\"\n[ledger.postgres]\nurl_credential = \"redcap-warden-ledger-db-url\"\n",
        )
        .unwrap();
        let LedgerStore::Postgres(pg) = s.store else {
            panic!("a PostgreSQL ledger")
        };
        assert_eq!(
            pg.connection,
            ConnectionFrom::Credential("redcap-warden-ledger-db-url".into())
        );
        for (text, want) in [
            (
                "url_credential = \"../db.url\"\n",
                "is not a credential name",
            ),
            (
                "url_credential = \"db\"\nurl_file = \"f\"\n",
                "more than one of",
            ),
        ] {
            let err = section(&format!(
                "backend = \"postgres\"\n[ledger.postgres]\n{text}"
            ))
            .unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        // Read from $CREDENTIALS_DIRECTORY, held to url_file's rules.
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let resolve = |p: &Path| p.to_path_buf();
        let err = pg.connection_string_with(resolve, None).unwrap_err();
        assert!(err.contains("CREDENTIALS_DIRECTORY is not set"), "{err}");
        let dir = Some(tmp.path().as_os_str().to_owned());
        let path = tmp.path().join("redcap-warden-ledger-db-url");
        std::fs::write(&path, "postgresql://w:s3cret@db/w\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        let err = pg.connection_string_with(resolve, dir.clone()).unwrap_err();
        assert!(
            err.contains("chmod 600") && !err.contains("s3cret"),
            "{err}"
        );
        // systemd writes credentials 0400.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(
            pg.connection_string_with(resolve, dir).unwrap(),
            "postgresql://w:s3cret@db/w"
        );
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
