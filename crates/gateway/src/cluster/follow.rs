//! The follower: a thread of the gateway's own that `LISTEN`s on the
//! shared-state channel and has the gateway re-read a document when it
//! is announced changed, and every document every [`REREAD`] whatever it
//! heard — so a notification lost with a dropped connection (or a change
//! made without one) only delays the change, never loses it.

use std::sync::Arc;

use postgres::fallible_iterator::FallibleIterator;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::database::{CHANNEL, Database};

/// How often every shared document is re-read, notified or not.
pub const REREAD: Duration = Duration::from_secs(5);

/// What changed: one document by name, or (the periodic re-read, and after
/// the listener reconnects) possibly all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Changed<'a> {
    One(&'a str),
    All,
}

/// The follower thread. Dropping it stops the thread (within a second).
pub(crate) struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following `db`'s channel; `apply` re-reads what changed.
    pub(crate) fn start(
        db: Arc<Database>,
        every: Duration,
        apply: impl Fn(Changed<'_>) + Send + 'static,
    ) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shared-state follower".into())
            .spawn(move || follow(&db, every, &flag, &apply))
            .expect("spawning the shared-state follower");
        Follower {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(db: &Database, every: Duration, stop: &AtomicBool, apply: &dyn Fn(Changed<'_>)) {
    let prefix = format!("{}:", db.schema());
    let mut listener: Option<postgres::Client> = None;
    let mut last_all = Instant::now();
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        if listener.as_ref().is_none_or(|c| c.is_closed()) {
            listener = None;
            match db.connect("state listener").and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {CHANNEL}"))
                    .map_err(super::database::db("listen"))?;
                Ok(c)
            }) {
                Ok(c) => {
                    if warned {
                        tracing::info!("listening for shared-state changes again");
                    }
                    warned = false;
                    listener = Some(c);
                    // Whatever was announced while nobody listened.
                    apply(Changed::All);
                    last_all = Instant::now();
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot listen for shared-state changes; re-reading every {} s meanwhile", every.as_secs());
                        warned = true;
                    }
                }
            }
        }
        if last_all.elapsed() >= every {
            apply(Changed::All);
            last_all = Instant::now();
        }
        let wait = every
            .saturating_sub(last_all.elapsed())
            .min(Duration::from_secs(1));
        let Some(client) = listener.as_mut() else {
            std::thread::sleep(wait);
            continue;
        };
        let mut names = std::collections::BTreeSet::new();
        let mut lost = false;
        {
            let mut notes = client.notifications();
            let mut waiting = notes.timeout_iter(wait);
            match waiting.next() {
                Ok(Some(n)) => {
                    names.insert(n.payload().to_string());
                    drop(waiting);
                    // And whatever else is already queued.
                    let mut queued = notes.iter();
                    loop {
                        match queued.next() {
                            Ok(Some(n)) => {
                                names.insert(n.payload().to_string());
                            }
                            Ok(None) => break,
                            Err(_) => {
                                lost = true;
                                break;
                            }
                        }
                    }
                }
                Ok(None) => {}
                Err(_) => lost = true,
            }
        }
        if lost {
            tracing::warn!("the shared-state listener's connection was lost; reconnecting");
            listener = None;
        }
        for name in &names {
            if let Some(doc) = name.strip_prefix(&prefix) {
                apply(Changed::One(doc));
            }
        }
    }
}
