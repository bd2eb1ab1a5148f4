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
