//! The window's database side: connections on threads of their own, the
//! table, and the statements of an admission, a count and a seeding.

use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use super::WindowRefusal;

/// The table's name in the ledger's schema.
pub const WINDOW_TABLE: &str = "outbound_slots";

/// After a failed connection, calls are refused at once for this long.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// What one admission found.
pub(super) enum Admission {
    /// A slot was taken: the call may go out.
    Admitted { slot: u32, at_micros: i64 },
    /// Every slot is in use; the oldest use ages out of the window in
    /// `retry_in`.
    Full { retry_in: Duration },
}

enum Job {
    Admit {
        budget: usize,
        reply: oneshot::Sender<Result<Admission, WindowRefusal>>,
    },
    Count {
        reply: oneshot::Sender<Result<usize, WindowRefusal>>,
    },
    Seed {
        budget: usize,
        micros: Vec<i64>,
        reply: oneshot::Sender<Result<usize, WindowRefusal>>,
    },
}

/// What the threads share: the connection string (wiped on drop), the
/// table's SQL, and when the database last failed to connect.
struct Shared {
    config: postgres::Config,
    sql: Sql,
    replica: String,
    /// Set after a failed connection: until then, calls are refused with
    /// this text without trying again.
    down: Mutex<Option<(Instant, String)>>,
}

/// The threads and the queue they take jobs from. Dropping it ends them.
pub(super) struct Pool {
    jobs: mpsc::Sender<Job>,
    schema: String,
}

impl Pool {
    pub(super) fn new(
        url: &str,
        schema: &str,
        length: Duration,
        connections: usize,
    ) -> Result<Pool, WindowRefusal> {
        ledger::valid_schema(schema).map_err(|e| {
            WindowRefusal::Unavailable(format!("the outbound window's schema: {e}"))
        })?;
        let url = Zeroizing::new(url.to_owned());
        let mut config = postgres::Config::from_str(&url).map_err(|e| {
            WindowRefusal::Unavailable(format!(
                "the outbound window's connection string does not parse: {e} (the string itself is not shown: it may hold a password)"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("redcap-warden outbound window");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let shared = Arc::new(Shared {
            config,
            sql: Sql::new(schema, length),
            replica: replica_name(),
            down: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..connections.max(1) {
            let (shared, rx) = (Arc::clone(&shared), Arc::clone(&rx));
            std::thread::Builder::new()
                .name(format!("outbound-window-{n}"))
                .spawn(move || serve(&shared, &rx))
                .map_err(|e| {
                    WindowRefusal::Unavailable(format!(
                        "could not start the outbound window's threads: {e}"
                    ))
                })?;
        }
        Ok(Pool {
            jobs: tx,
            schema: schema.to_owned(),
        })
    }

    pub(super) fn place(&self) -> String {
        format!("postgres schema {}, table {WINDOW_TABLE}", self.schema)
    }

    pub(super) async fn admit(&self, budget: usize) -> Result<Admission, WindowRefusal> {
        let (reply, answer) = oneshot::channel();
        self.ask(Job::Admit { budget, reply }, answer).await
    }

    pub(super) async fn count(&self) -> Result<usize, WindowRefusal> {
        let (reply, answer) = oneshot::channel();
        self.ask(Job::Count { reply }, answer).await
    }

    pub(super) async fn seed(
        &self,
        budget: usize,
        micros: Vec<i64>,
    ) -> Result<usize, WindowRefusal> {
        let (reply, answer) = oneshot::channel();
        self.ask(
            Job::Seed {
                budget,
                micros,
                reply,
            },
            answer,
        )
        .await
    }

    async fn ask<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T, WindowRefusal>>,
    ) -> Result<T, WindowRefusal> {
        let gone = || {
            WindowRefusal::Unavailable("the outbound window's database threads have stopped".into())
        };
        self.jobs.send(job).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// `host:pid`, written beside each slot taken (for an operator reading the
/// table; nothing depends on it).
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host}:{}", std::process::id())
}

/// One thread: takes jobs until the pool is dropped, keeping one
/// connection, made on first use and again after any error.
fn serve(shared: &Shared, jobs: &Mutex<mpsc::Receiver<Job>>) {
    let mut conn: Option<Conn> = None;
    loop {
        // The job waited for, and whatever else is queued behind it: the
        // admissions among them share one commit.
        let batch = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let mut admits = Vec::new();
        for job in batch {
            match job {
                Job::Admit { budget, reply } => admits.push((budget, reply)),
                Job::Count { reply } => {
                    let _ = reply.send(with_conn(shared, &mut conn, Conn::count));
                }
                Job::Seed {
                    budget,
                    micros,
                    reply,
                } => {
                    let _ = reply.send(with_conn(shared, &mut conn, |c| c.seed(budget, &micros)));
                }
            }
        }
        if admits.is_empty() {
            continue;
        }
        let budgets: Vec<usize> = admits.iter().map(|(b, _)| *b).collect();
        match with_conn(shared, &mut conn, |c| c.admit_batch(&budgets)) {
            Ok(answers) => {
                for ((_, reply), answer) in admits.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                for (_, reply) in admits {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The most jobs one thread takes at once.
const MAX_BATCH: usize = 64;

/// Runs `work` on the thread's connection, connecting first if needed; an
/// error drops the connection (the next job reconnects).
fn with_conn<T>(
    shared: &Shared,
    conn: &mut Option<Conn>,
    work: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>,
) -> Result<T, WindowRefusal> {
    if conn.is_none() {
        *conn = Some(connect(shared)?);
    }
    let c = conn.as_mut().expect("connected above");
    work(c).map_err(|e| {
        *conn = None;
        unavailable(&shared.sql, &describe(&e))
    })
}

fn unavailable(sql: &Sql, detail: &str) -> WindowRefusal {
    WindowRefusal::Unavailable(format!(
        "the outbound rate window shared by the gateways (postgres schema {}, table {WINDOW_TABLE}) cannot be used: {detail}; no call is sent to REDCap outside the window",
        sql.schema
    ))
}

fn connect(shared: &Shared) -> Result<Conn, WindowRefusal> {
    {
        let down = shared.down.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((since, why)) = down.as_ref()
            && since.elapsed() < DOWN_FOR
        {
            return Err(unavailable(&shared.sql, why));
        }
    }
    let result = Conn::open(shared);
    let mut down = shared.down.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(c) => {
            *down = None;
            Ok(c)
        }
        Err(why) => {
            *down = Some((Instant::now(), why.clone()));
            Err(unavailable(&shared.sql, &why))
        }
    }
}

/// A database error in words, never the connection string.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

/// The statements of one schema's window.
struct Sql {
    schema: String,
    /// The window's length in seconds (60 but in tests).
    seconds: f64,
    /// The ledger's advisory lock key for this schema: the migration takes
    /// it, so creating the schema never races the ledger's own migration.
    lock_key: i64,
}

impl Sql {
    fn new(schema: &str, length: Duration) -> Sql {
        // As the ledger derives it (crates/ledger/src/pg/sql.rs): the first
        // 8 bytes of SHA-256("redcap-warden ledger\n" ‖ schema).
        let mut h = Sha256::new();
        h.update(b"redcap-warden ledger\n");
        h.update(schema.as_bytes());
        let d = h.finalize();
        Sql {
            schema: schema.to_owned(),
            seconds: length.as_secs_f64(),
            lock_key: i64::from_be_bytes(d[..8].try_into().expect("8 bytes")),
        }
    }

    fn migration(&self) -> String {
        let s = &self.schema;
        format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.{WINDOW_TABLE} (
    slot integer PRIMARY KEY CHECK (slot >= 0),
    last_at timestamptz NOT NULL,
    replica text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS {WINDOW_TABLE}_last_at ON {s}.{WINDOW_TABLE} (last_at);"
        )
    }
}

/// A row of `take` or `add`: the slot and its new stamp.
fn admitted(row: &postgres::Row) -> Admission {
    Admission::Admitted {
        slot: row.get::<_, i32>(0) as u32,
        at_micros: row.get(1),
    }
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    take: postgres::Statement,
    add: postgres::Statement,
    full: postgres::Statement,
    count: postgres::Statement,
    seed: postgres::Statement,
    sql_schema: String,
    seconds: f64,
    replica: String,
}

impl Conn {
    /// Connects, checks that commits are durable, and creates the table if
    /// missing. The error is in words, without the connection string.
    fn open(shared: &Shared) -> Result<Conn, String> {
        let sql = &shared.sql;
        let mut client = shared
            .config
            .connect(NoTls)
            .map_err(|e| format!("could not connect: {}", describe(&e)))?;
        let words = |e: postgres::Error| describe(&e);
        // A replica cut off mid-statement must not hold a slot's lock for
        // long.
        client
            .batch_execute(
                "SET statement_timeout = '10s'; SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '10s'",
            )
            .map_err(words)?;
        for setting in ["synchronous_commit", "fsync"] {
            let value: String = client
                .query_one("SELECT current_setting($1)", &[&setting])
                .map_err(words)?
                .get(0);
            if value == "off" {
                return Err(format!(
                    "the server runs with {setting} = off, so an admission could be forgotten by a crash after its call went out; fix: set {setting} = on (the ledger needs it too)"
                ));
            }
        }
        let mut tx = client.transaction().map_err(words)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_key])
            .map_err(words)?;
        tx.batch_execute(&sql.migration()).map_err(words)?;
        tx.commit().map_err(words)?;
        let s = &sql.schema;
        let t = WINDOW_TABLE;
        let mut prepare = |text: String| client.prepare(&text).map_err(words);
        // The oldest free slot (the index on last_at finds it at once).
        let take = prepare(format!(
            "UPDATE {s}.{t} SET last_at = clock_timestamp(), replica = $3
              WHERE slot = (SELECT slot FROM {s}.{t}
                             WHERE slot < $1 AND last_at <= clock_timestamp() - make_interval(secs => $2)
                             ORDER BY last_at LIMIT 1 FOR UPDATE SKIP LOCKED)
              RETURNING slot, (extract(epoch FROM last_at) * 1000000)::int8"
        ))?;
        // No slot free: a new one while there are fewer than the budget.
        // Slots are made densely from 0, so the next one's number is the
        // count below the budget; two replicas making the same one at once
        // conflict, and the one that loses tries again.
        let add = prepare(format!(
            "INSERT INTO {s}.{t} (slot, last_at, replica)
             SELECT n, clock_timestamp(), $2
               FROM (SELECT count(*)::int4 AS n FROM {s}.{t} WHERE slot < $1) AS next
              WHERE n < $1
             ON CONFLICT (slot) DO NOTHING
             RETURNING slot, (extract(epoch FROM last_at) * 1000000)::int8"
        ))?;
        let full = prepare(format!(
            "SELECT count(*), extract(epoch FROM (min(last_at) + make_interval(secs => $2) - clock_timestamp()))::float8
               FROM {s}.{t} WHERE slot < $1"
        ))?;
        let count = prepare(format!(
            "SELECT count(*) FROM {s}.{t} WHERE last_at > clock_timestamp() - make_interval(secs => $1)"
        ))?;
        let seed = prepare(format!(
            "INSERT INTO {s}.{t} (slot, last_at, replica)
             VALUES ($1, to_timestamp($2::int8::float8 / 1000000), $3)
             ON CONFLICT (slot) DO UPDATE SET last_at = EXCLUDED.last_at, replica = EXCLUDED.replica"
        ))?;
        Ok(Conn {
            client,
            take,
            add,
            full,
            count,
            seed,
            sql_schema: sql.schema.clone(),
            seconds: sql.seconds,
            replica: shared.replica.clone(),
        })
    }

    /// Admissions for calls within `budgets` (one each). The free slots
    /// are taken in one transaction, one commit for all; where none was
    /// free, each goes on alone ([`Conn::admit`]). The transaction only
    /// ever takes unlocked rows (`SKIP LOCKED`) and makes none, so it never
    /// waits on another replica's.
    fn admit_batch(&mut self, budgets: &[usize]) -> Result<Vec<Admission>, postgres::Error> {
        if let [budget] = budgets {
            return Ok(vec![self.admit(*budget)?]);
        }
        let mut answers: Vec<Option<Admission>> = budgets.iter().map(|_| None).collect();
        {
            let Conn {
                client,
                take,
                seconds,
                replica,
                ..
            } = self;
            let mut tx = client.transaction()?;
            for (answer, budget) in answers.iter_mut().zip(budgets) {
                let b = i32::try_from(*budget).unwrap_or(i32::MAX);
                if let Some(row) = tx.query_opt(&*take, &[&b, &*seconds, &*replica])? {
                    *answer = Some(admitted(&row));
                }
            }
            tx.commit()?;
        }
        answers
            .into_iter()
            .zip(budgets)
            .map(|(answer, budget)| match answer {
                Some(a) => Ok(a),
                None => self.admit(*budget),
            })
            .collect()
    }

    /// One admission, each statement committing by itself.
    fn admit(&mut self, budget: usize) -> Result<Admission, postgres::Error> {
        let b = i32::try_from(budget).unwrap_or(i32::MAX);
        // A lost race for a new slot means another replica made it: look
        // again (a handful of times at most under any real contention).
        for _ in 0..8 {
            if let Some(row) = self
                .client
                .query_opt(&self.take, &[&b, &self.seconds, &self.replica])?
            {
                return Ok(admitted(&row));
            }
            if let Some(row) = self.client.query_opt(&self.add, &[&b, &self.replica])? {
                return Ok(admitted(&row));
            }
            let row = self.client.query_one(&self.full, &[&b, &self.seconds])?;
            let slots: i64 = row.get(0);
            if slots >= i64::from(b) {
                let retry: Option<f64> = row.get(1);
                return Ok(Admission::Full {
                    retry_in: Duration::from_secs_f64(
                        retry.unwrap_or(0.0).clamp(0.0, self.seconds),
                    ),
                });
            }
        }
        Ok(Admission::Full {
            retry_in: Duration::ZERO,
        })
    }

    fn count(&mut self) -> Result<usize, postgres::Error> {
        let n: i64 = self.client.query_one(&self.count, &[&self.seconds])?.get(0);
        Ok(n.max(0) as usize)
    }

    /// Counts `micros` (calls the ledger says were made) into an empty
    /// window, the newest first and at most `budget` of them; answers how
    /// many. The table is locked against admissions meanwhile.
    fn seed(&mut self, budget: usize, micros: &[i64]) -> Result<usize, postgres::Error> {
        let s = self.sql_schema.clone();
        let seconds = self.seconds;
        let mut tx = self.client.transaction()?;
        tx.batch_execute(&format!(
            "LOCK TABLE {s}.{WINDOW_TABLE} IN SHARE ROW EXCLUSIVE MODE"
        ))?;
        let in_use: i64 = tx.query_one(&self.count, &[&seconds])?.get(0);
        if in_use > 0 {
            tx.commit()?;
            return Ok(0);
        }
        let now = jiff::Timestamp::now().as_microsecond();
        let window = (seconds * 1e6) as i64;
        let mut newest: Vec<i64> = micros
            .iter()
            .copied()
            .filter(|at| *at > now - window)
            .collect();
        newest.sort_unstable_by(|a, b| b.cmp(a));
        newest.truncate(budget);
        let note = format!("{} (seeded from the ledger)", self.replica);
        for (slot, at) in newest.iter().enumerate() {
            let slot = i32::try_from(slot).unwrap_or(i32::MAX);
            tx.execute(&self.seed, &[&slot, at, &note])?;
        }
        tx.commit()?;
        Ok(newest.len())
    }
}
