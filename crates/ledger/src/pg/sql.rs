//! The database session: the SQL of one ledger schema, connecting, the
//! durability check, the idempotent migration, the writer's prepared
//! statements, and database errors in words (never the connection string).

use std::str::FromStr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use postgres::{Client, NoTls, Statement};
use sha2::{Digest, Sha256};

use crate::checkpoint::VerifierKey;
use crate::entry::Entry;
use crate::error::LedgerError;
use crate::schema::valid_schema;

/// Rows fetched per round trip when a whole ledger is read.
pub(super) const FETCH_ROWS: i32 = 10_000;

/// The SQL of one ledger schema.
#[derive(Clone, Debug)]
pub(super) struct Sql {
    pub(super) schema: String,
    /// The advisory lock key of this ledger: the first 8 bytes of
    /// SHA-256("redcap-warden ledger\n" ‖ schema), big-endian.
    pub(super) lock_key: i64,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Result<Sql, LedgerError> {
        if valid_schema(schema).is_err() {
            return Err(LedgerError::BadSchema {
                schema: schema.to_owned(),
            });
        }
        let mut h = Sha256::new();
        h.update(b"redcap-warden ledger\n");
        h.update(schema.as_bytes());
        let d = h.finalize();
        let lock_key = i64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        Ok(Sql {
            schema: schema.to_owned(),
            lock_key,
        })
    }

    pub(super) fn entries(&self) -> String {
        format!("{}.entries", self.schema)
    }

    pub(super) fn checkpoints(&self) -> String {
        format!("{}.checkpoints", self.schema)
    }

    /// A name for the ledger in messages.
    pub(super) fn place(&self) -> std::path::PathBuf {
        format!("postgres schema {}", self.schema).into()
    }

    /// The idempotent migration (run under the advisory lock).
    pub(super) fn migration(&self) -> String {
        let s = &self.schema;
        format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.entries (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    entry bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.checkpoints (
    id bigserial PRIMARY KEY,
    size bigint NOT NULL CHECK (size >= 0),
    note text NOT NULL,
    signer text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.signer_lease (
    id smallint PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE OR REPLACE FUNCTION {s}.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the redcap-warden ledger table %.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.entries
    FOR EACH ROW EXECUTE FUNCTION {s}.append_only();
CREATE OR REPLACE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.entries
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.append_only();
CREATE OR REPLACE TRIGGER append_only BEFORE UPDATE OR DELETE ON {s}.checkpoints
    FOR EACH ROW EXECUTE FUNCTION {s}.append_only();
CREATE OR REPLACE TRIGGER append_only_truncate BEFORE TRUNCATE ON {s}.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.append_only();"
        )
    }
}

pub(super) fn db(op: &'static str) -> impl FnOnce(postgres::Error) -> LedgerError {
    move |e| LedgerError::Database {
        op,
        detail: describe(&e),
    }
}

/// A database error in words, never the connection string.
pub(super) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

/// Connects with the connection string `url` (a `postgresql://` URL or
/// `key=value` pairs). The string is never repeated in an error: it may
/// hold a password.
pub(super) fn connect(url: &str, role: &str) -> Result<Client, LedgerError> {
    let mut config = postgres::Config::from_str(url).map_err(|e| LedgerError::Database {
        op: "parse the connection string",
        detail: format!("{e} (the string itself is not shown: it may hold a password)"),
    })?;
    if config.get_application_name().is_none() {
        config.application_name(&format!("redcap-warden ledger {role}"));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.connect(NoTls).map_err(db("connect"))
}

/// Refuses a session in which a commit may be acknowledged before its WAL
/// is on disk.
pub(super) fn check_durability(client: &mut Client) -> Result<(), LedgerError> {
    for setting in ["synchronous_commit", "fsync"] {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[&setting])
            .map_err(db("read the server settings"))?
            .get(0);
        if value == "off" {
            return Err(LedgerError::NotDurable {
                setting: setting.into(),
                value,
            });
        }
    }
    Ok(())
}

/// Creates the schema and tables if missing (serialised by the ledger's
/// advisory lock, so concurrent openers do not race).
pub(super) fn migrate(client: &mut Client, sql: &Sql) -> Result<(), LedgerError> {
    let mut tx = client
        .transaction()
        .map_err(db("begin the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .map_err(db("lock the ledger"))?;
    tx.batch_execute(&sql.migration())
        .map_err(db("create the ledger tables"))?;
    tx.commit().map_err(db("commit the schema migration"))
}

pub(super) struct Statements {
    pub(super) lock: Statement,
    pub(super) last: Statement,
    pub(super) insert: Statement,
    pub(super) take_lease: Statement,
    pub(super) hold_lease: Statement,
    pub(super) lease_holder: Statement,
    pub(super) add_note: Statement,
    pub(super) release: Statement,
}

/// What a commit or a checkpoint may fail with: a database error poisons
/// the writer, as does damage found in the tables.
pub(super) enum Failure {
    Db(&'static str, postgres::Error),
    Damage(String),
    /// Not a failure of the writer: the request is refused (the lease is
    /// another process's, the key is the current one, …) and the writer
    /// goes on.
    Refused(LedgerError),
}

impl From<Failure> for String {
    fn from(f: Failure) -> String {
        match f {
            Failure::Db(op, e) => format!("ledger database: cannot {op}: {}", describe(&e)),
            Failure::Damage(d) => d,
            Failure::Refused(e) => e.to_string(),
        }
    }
}

pub(super) fn at(op: &'static str) -> impl FnOnce(postgres::Error) -> Failure {
    move |e| Failure::Db(op, e)
}

impl Statements {
    pub(super) fn prepare(client: &mut Client, sql: &Sql) -> Result<Statements, postgres::Error> {
        let s = &sql.schema;
        Ok(Statements {
            lock: client.prepare("SELECT pg_advisory_xact_lock($1)")?,
            last: client.prepare(&format!(
                "SELECT seq, entry FROM {s}.entries ORDER BY seq DESC LIMIT 1"
            ))?,
            insert: client.prepare(&format!(
                "INSERT INTO {s}.entries (seq, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
            ))?,
            take_lease: client.prepare(&format!(
                "INSERT INTO {s}.signer_lease AS l (id, holder, expires_at)
                 VALUES (1, $1, now() + $2::bigint * interval '1 millisecond')
                 ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
                 RETURNING holder"
            ))?,
            hold_lease: client.prepare(&format!(
                "SELECT holder FROM {s}.signer_lease WHERE id = 1 AND holder = $1 AND expires_at > now() FOR UPDATE"
            ))?,
            lease_holder: client.prepare(&format!(
                "SELECT holder || ' until ' || expires_at::text FROM {s}.signer_lease WHERE id = 1"
            ))?,
            add_note: client.prepare(&format!(
                "INSERT INTO {s}.checkpoints (size, note, signer) VALUES ($1, $2, $3) RETURNING id"
            ))?,
            release: client.prepare(&format!(
                "DELETE FROM {s}.signer_lease WHERE id = 1 AND holder = $1"
            ))?,
        })
    }
}

/// Writes the header as seq 0 of an empty ledger (under the advisory
/// lock, so two creators cannot both succeed).
pub(super) fn create_header(
    client: &mut Client,
    sql: &Sql,
    origin: &str,
    key: &SigningKey,
) -> Result<(), LedgerError> {
    let mut tx = client
        .transaction()
        .map_err(db("begin creating the ledger"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
        .map_err(db("lock the ledger"))?;
    let entries: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", sql.entries()), &[])
        .map_err(db("count the entries"))?
        .get(0);
    let notes: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", sql.checkpoints()), &[])
        .map_err(db("count the checkpoints"))?
        .get(0);
    if entries > 0 || notes > 0 {
        return Err(LedgerError::AlreadyExists { dir: sql.place() });
    }
    let key_id = VerifierKey::from_signing_key(origin, key).key_id_hex();
    let header = Entry::first_header(origin, key_id);
    tx.execute(
        &format!("INSERT INTO {} (seq, entry) VALUES (0, $1)", sql.entries()),
        &[&header.to_line()],
    )
    .map_err(db("write the header"))?;
    tx.commit().map_err(db("commit the header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_has_its_own_lock_key() {
        let a = Sql::new("a").unwrap().lock_key;
        let b = Sql::new("b").unwrap().lock_key;
        assert_ne!(a, b);
        assert_eq!(a, Sql::new("a").unwrap().lock_key);
    }
}
