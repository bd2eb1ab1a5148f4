//! [`PgDocument`]: a [`SharedDocument`] that is a row of `shared_state`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use durable::{DocumentError, DocumentStamp, SharedDocument};

use super::database::{CHANNEL, Database, db};

/// One named document in `<schema>.shared_state`, shared by every gateway
/// and `redcap-warden` command of the installation.
pub struct PgDocument {
    db: Arc<Database>,
    name: &'static str,
    place: PathBuf,
}

impl PgDocument {
    pub(crate) fn new(db: Arc<Database>, name: &'static str) -> PgDocument {
        let place = format!("postgres schema {}, shared_state '{name}'", db.schema()).into();
        PgDocument { db, name, place }
    }
}

impl SharedDocument for PgDocument {
    fn place(&self) -> &Path {
        &self.place
    }

    fn read(&self) -> Result<Option<Vec<u8>>, DocumentError> {
        let name = self.name;
        self.db.run("read the shared state", move |client, table| {
            let row = client
                .query_opt(
                    &format!("SELECT document FROM {table} WHERE name = $1"),
                    &[&name],
                )
                .map_err(db("read the shared state"))?;
            Ok(row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
        })
    }

    fn update(
        &self,
        change: &mut (dyn FnMut(Option<Vec<u8>>) -> Option<Vec<u8>> + Send),
    ) -> Result<(), DocumentError> {
        let name = self.name;
        let schema = self.db.schema().to_string();
        self.db.run("change the shared state", move |client, table| {
            let op = "change the shared state";
            let mut tx = client.transaction().map_err(db(op))?;
            tx.execute(
                &format!("INSERT INTO {table} (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"),
                &[&name],
            )
            .map_err(db(op))?;
            let current: Option<Vec<u8>> = tx
                .query_one(
                    &format!("SELECT document FROM {table} WHERE name = $1 FOR UPDATE"),
                    &[&name],
                )
                .map_err(db(op))?
                .get(0);
            let Some(new) = change(current) else {
                // Nothing to write: the transaction (and a row it may have
                // inserted) rolls back.
                return Ok(());
            };
            tx.execute(
                &format!(
                    "UPDATE {table} SET document = $2, version = version + 1, changed_at = now() WHERE name = $1"
                ),
                &[&name, &new],
            )
            .map_err(db(op))?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{schema}:{name}")],
            )
            .map_err(db(op))?;
            tx.commit().map_err(db(op))
        })
    }

    fn stamp(&self) -> Option<DocumentStamp> {
        // No `stat` watches a row: the gateway's follower re-reads it on
        // each notification and every few seconds.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres::fallible_iterator::FallibleIterator;
    use zeroize::Zeroizing;

    /// The test database (scripts/test sets it; [`test_database::url`]).
    fn database(schema: &str) -> Option<Arc<Database>> {
        let url = test_database::url(schema)?;
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .unwrap();
        Some(Arc::new(Database::new(Zeroizing::new(url), schema)))
    }

    #[test]
    fn changes_from_two_sessions_are_serialised_and_announced() {
        let Some(db) = database("gw_doc_serialised") else {
            return;
        };
        let mut listener = db.connect("test listener").unwrap();
        listener
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .unwrap();
        let a = PgDocument::new(db.clone(), "counter");
        // Another process: a session of its own.
        let other = Arc::new(Database::new(
            Zeroizing::new(std::env::var("WARDEN_TEST_DATABASE_URL").unwrap()),
            "gw_doc_serialised",
        ));
        let b = PgDocument::new(other, "counter");
        assert_eq!(a.read().unwrap(), None, "never written");
        a.update(&mut |_| None).unwrap();
        assert_eq!(
            b.read().unwrap(),
            None,
            "a change that writes nothing leaves no row"
        );

        let bump = |doc: &PgDocument| {
            doc.update(&mut |old| {
                let n: u64 = old.map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
                Some((n + 1).to_string().into_bytes())
            })
            .unwrap()
        };
        std::thread::scope(|s| {
            for doc in [&a, &b] {
                s.spawn(move || {
                    for _ in 0..20 {
                        bump(doc);
                    }
                });
            }
        });
        assert_eq!(a.read().unwrap().unwrap(), b"40", "no change was lost");

        let mut payloads = Vec::new();
        let mut notes = listener.notifications();
        let mut it = notes.timeout_iter(std::time::Duration::from_secs(5));
        while payloads.len() < 40 {
            match it.next().unwrap() {
                Some(n) => payloads.push(n.payload().to_string()),
                None => break,
            }
        }
        assert_eq!(payloads.len(), 40, "each committed change is announced");
        assert!(payloads.iter().all(|p| p == "gw_doc_serialised:counter"));
        assert!(a.stamp().is_none(), "no stat watches a row");
        assert!(
            a.place()
                .display()
                .to_string()
                .contains("shared_state 'counter'")
        );
    }

    #[test]
    fn an_unreachable_database_is_an_error_naming_no_connection_string() {
        let db = Arc::new(Database::new(
            Zeroizing::new("postgresql://warden:s3cret@127.0.0.1:1/none?connect_timeout=2".into()),
            "gw_doc_down",
        ));
        let doc = PgDocument::new(db, "client-keys");
        let e = doc.read().unwrap_err().to_string();
        assert!(e.contains("PostgreSQL"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let keys = crate::keys::KeyFile::shared(Arc::new(doc));
        let e = keys.list().unwrap_err().to_string();
        assert!(e.contains("fix:") && !e.contains("s3cret"), "{e}");
    }
}
