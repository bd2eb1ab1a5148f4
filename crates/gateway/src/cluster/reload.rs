//! Reload fan-out: the document `reload`, a generation counter with who
//! asked and through which gateway.
//!
//! A reload through one gateway (`POST /admin/reload`, `redcap-warden
//! reload`, `SIGHUP`) applies there and then bumps the generation; every
//! other gateway's follower sees the generation move and reloads too (its
//! own `warden.toml`, the keys and status, its cached tokens), recording
//! its own `reload` entry with the operator who asked. A gateway that
//! starts takes the generation as it finds it.

use std::sync::Mutex;

use durable::{DocumentError, SharedDocument};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::document::PgDocument;

const FORMAT: &str = "redcap-warden/reload/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    format: String,
    generation: u64,
    origin: String,
    operator: String,
    at: Timestamp,
}

fn parse(bytes: Option<Vec<u8>>) -> Option<Document> {
    bytes
        .and_then(|b| serde_json::from_slice::<Document>(&b).ok())
        .filter(|d| d.format == FORMAT)
}

/// A reload another gateway asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Asked {
    /// The gateway it went through.
    pub origin: String,
    /// Who asked.
    pub operator: String,
}

/// The `reload` document, and the generation this gateway has applied.
///
/// Lock story: `seen` (`Mutex`) is written by [`ReloadLog::publish`] and
/// the follower's [`ReloadLog::asked`], each holding it across its read
/// so a generation is acted on once.
pub(crate) struct ReloadLog {
    doc: PgDocument,
    me: String,
    seen: Mutex<u64>,
}

impl ReloadLog {
    /// The log, with the generation as it is now taken as seen.
    pub(crate) fn new(doc: PgDocument, me: String) -> Result<ReloadLog, DocumentError> {
        let seen = parse(doc.read()?).map_or(0, |d| d.generation);
        Ok(ReloadLog {
            doc,
            me,
            seen: Mutex::new(seen),
        })
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, u64> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces a reload this gateway applied, by `operator`.
    pub(crate) fn publish(&self, operator: &str) -> Result<(), DocumentError> {
        let mut seen = self.seen();
        let mut generation = 0;
        self.doc.update(&mut |bytes| {
            generation = parse(bytes).map_or(0, |d| d.generation) + 1;
            Some(
                serde_json::to_vec(&Document {
                    format: FORMAT.into(),
                    generation,
                    origin: self.me.clone(),
                    operator: operator.to_string(),
                    at: Timestamp::now(),
                })
                .expect("serialisable"),
            )
        })?;
        *seen = (*seen).max(generation);
        Ok(())
    }

    /// A reload another gateway announced since this one last looked.
    pub(crate) fn asked(&self) -> Result<Option<Asked>, DocumentError> {
        let mut seen = self.seen();
        let Some(d) = parse(self.doc.read()?) else {
            return Ok(None);
        };
        if d.generation <= *seen {
            return Ok(None);
        }
        *seen = d.generation;
        Ok((d.origin != self.me).then_some(Asked {
            origin: d.origin,
            operator: d.operator,
        }))
    }
}
