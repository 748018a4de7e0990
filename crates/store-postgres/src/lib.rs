//! The PostgreSQL store (`--store postgres://...`): journals, snapshots and values in three
//! tables of one PostgreSQL database, shared by any number of proxies.
//!
//! # Schema
//! Created and upgraded at [`PostgresStore::connect`] by embedded, versioned migrations, run in
//! one transaction under a transaction-level advisory lock (so proxies starting together take
//! turns, and the later ones find nothing to do). `cloudstate_schema_version` records the
//! applied versions; a database with a newer schema than [`SCHEMA_VERSION`] is refused.
//!
//! | table | primary key | other columns |
//! |---|---|---|
//! | `journal` | `(persistence_id, entity_id, sequence_nr)` | `type_url`, `payload`, `written_at` |
//! | `snapshots` | `(persistence_id, entity_id)` | `sequence_nr`, `type_url`, `payload`, `written_at` |
//! | `value_entities` | `(persistence_id, entity_id)` | `version`, `type_url`, `payload`, `written_at` |
//! | `event_log_heads` | `persistence_id` | `last_offset`: the last offset of its event log |
//! | `event_log_positions` | `consumer` | `log_offset`, `generation`, `written_at`: where a consumer of an event log stands |
//! | `shard_leases` | `shard` | `owner` (node id, `text`), `epoch`, `expires_at`, `changed_at` |
//!
//! The journal also has `log_offset`, the event's offset in its persistence id's event log
//! (unique per persistence id). An append takes its offsets from `event_log_heads` in its
//! write statement; the head row stays locked until the commit, so appends to one event log
//! commit in offset order (see `writer.rs`), and reading `log_offset > n` in order never skips
//! an event that commits later. The price: two writers appending to one persistence id commit
//! one after the other.
//!
//! Sequence numbers and versions are `bigint` (both start at 1; a number beyond `i64::MAX` is
//! refused as [`StoreError::InvalidWrite`]). Ids, type URLs and payloads are `bytea`, stored
//! byte for byte: the ids may hold any string (even NUL, which `text` refuses), nothing depends
//! on the database's encoding or collation, and keys compare as bytes. To read them in `psql`:
//! `SELECT convert_from(entity_id, 'UTF8'), sequence_nr, convert_from(type_url, 'UTF8') FROM
//! journal`. A snapshot replaces the previous one; events are never removed; deleting a value
//! removes its row.
//!
//! # Writes: group commit and fencing
//! Appends and value writes go to one of a few writer tasks (chosen by a hash of the entity
//! key, so one entity's writes always take the same writer and stay in order), each with its
//! own connection. A writer takes the first queued request and whatever else is queued behind
//! it, and applies them all with two statements: one `SELECT` of the stored last sequence
//! numbers and versions, then one statement writing the events, snapshots and values from
//! arrays, which is a transaction of its own: all of it commits (one WAL flush) or none of it
//! does, before any request is answered. An idle writer commits a lone request at once; under
//! load the batches grow by themselves. There are no timers. See `writer.rs` for the steps.
//!
//! Each request is checked on its own against the stored numbers as the requests before it in
//! the batch left them: an append must start exactly one past the stored last sequence number
//! ([`cloudstate_store::check_append`]), a value write must name the stored version. A refused
//! request gets [`StoreError::Conflict`] or [`StoreError::InvalidWrite`] and writes nothing;
//! the rest of the batch commits. The journal's primary key is the final fence against another
//! process writing the same entity at the same time: if another writer stores one of the
//! batch's sequence numbers between the check and the write, the write fails as a whole and the
//! batch is redone one request at a time, so that only the requests that lost the race are
//! refused (conflict). A value write is conditional on the version it was checked against; if
//! another writer changed the value meanwhile, that request alone is refused.
//!
//! "Acknowledged" means committed: a write resolves after the server answered the committing
//! statement (with the server's `synchronous_commit`, by default after a flush to disk). A
//! write whose future is dropped earlier may or may not be stored.
//!
//! # Shard leases and fenced writes (cluster mode)
//! The store is the [`ShardLeases`] of a cluster (`leases.rs`): one row per shard, taken with
//! the next epoch when free or expired by the database's clock, renewed and released by owner
//! and epoch. Fenced writes ([`Store::append_fenced`], [`Store::write_value_fenced`]) check
//! their lease in the same statement that writes them (`writer.rs`), holding a share lock on
//! the lease row until the commit, so a takeover waits for them and every later write of the
//! old owner fails with [`StoreError::Fenced`].
//!
//! # Reads
//! [`Store::load_journal`] reads the snapshot and the events after it in one statement (one
//! consistent view); [`Store::load_value`] reads one row. Reads use a pool of their own
//! connections and never wait for the writers.
//!
//! # Failures and bounded waits
//! Every wait is bounded: opening a connection (`connect_timeout`), waiting for a free read
//! connection or for room in a writer's queue (`acquire_timeout`), every statement (the
//! server's `statement_timeout`, and the same bound plus a second on the client side, for a
//! server that does not answer at all). When the database is down, operations fail with
//! [`StoreError::Unavailable`] naming the server and the cause, as soon as connecting is
//! refused; nothing needs restarting when it is back: broken connections are dropped and new
//! ones opened on the next operation. A write whose connection breaks (or times out) while its
//! committing statement runs is reported as unavailable with its outcome unknown ("may or may
//! not be stored"); any other failure of a write says that nothing was stored.
//!
//! # Event log consumers
//! A consumer's lease ([`Store::lease_offset`]) is a session-level advisory lock
//! (`pg_try_advisory_lock(0x6373, hashtext(consumer))`) on a connection of its own, which also
//! reads and writes the consumer's position: only one connection in the whole cluster of proxies
//! holds it, and if that connection breaks the lock is gone and the lease's next save fails,
//! so a proxy that lost its lease cannot move the position another one now owns. Two consumer
//! names whose hashes collide exclude each other (they take turns; nothing is lost).
//!
//! # Why sqlx, and its connections rather than its pool
//! sqlx 0.9 with runtime queries (`sqlx::query(..).bind(..)`): its prepared-statement cache
//! and array binding carry a whole batch in two round trips, the second depends on the answer
//! to the first, and group commit amortises both over every request of a batch, so the
//! pipelining of tokio-postgres would save little. sqlx's `Pool`, though, keeps retrying a refused connection
//! until its acquire timeout and pings around every use; the store keeps its own small pool
//! (see `connection.rs`) so that an outage is reported at once and connections are reused
//! without extra round trips.

mod connection;
mod inspect;
mod leases;
mod schema;
mod writer;

use std::{
    hash::{Hash, Hasher},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use cloudstate_store::{
    Any, EntityKey, Event, EventLogWatch, Fence, LoggedEvent, OffsetLease, Position, Recovery,
    ShardLeases, Snapshot, Store, StoreError, Value, ValueWrite,
};
use sqlx::{PgConnection, Row, postgres::PgConnectOptions};
use tokio::sync::{mpsc, oneshot};

use connection::{Connector, Pool};
pub use inspect::PostgresReader;
use schema::MigrationError;
pub use schema::SCHEMA_VERSION;
use writer::{MAX_BATCH, Op, Request};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not a PostgreSQL connection URL.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// The options do not make sense together.
    #[error("invalid PostgreSQL store options: {0}")]
    Options(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {address}: {error}")]
    Connect {
        /// `host:port/database`.
        address: String,
        /// What sqlx said (part of the message, not a separate source, so that it shows once).
        error: sqlx::Error,
    },
    /// Creating or upgrading the tables failed.
    #[error("cannot migrate the schema of PostgreSQL at {address}: {error}")]
    Migrate {
        /// `host:port/database`.
        address: String,
        /// What sqlx said (part of the message, not a separate source).
        error: sqlx::Error,
    },
    /// The database holds no store: no proxy has set up its tables there (opening it to read
    /// creates nothing).
    #[error("PostgreSQL at {address} holds no Cloudstate store: no proxy has used this database")]
    NoStore {
        /// `host:port/database`.
        address: String,
    },
    /// The database was set up by a newer build.
    #[error(
        "PostgreSQL at {address} has schema version {found}; this build knows versions up to \
         {SCHEMA_VERSION}: upgrade the proxy"
    )]
    SchemaTooNew {
        /// `host:port/database`.
        address: String,
        /// The version recorded in the database.
        found: i32,
    },
}

/// How the store uses the database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections the store opens at most: `writers` for writing, the rest for reads. At
    /// least 2.
    pub pool_size: u32,
    /// Writer tasks, each with a connection of its own, committing batches in parallel. At
    /// most `pool_size - 1` are used.
    pub writers: u32,
    /// Longest wait for a new connection.
    pub connect_timeout: Duration,
    /// Longest wait for a free read connection, or for room in a writer's queue.
    pub acquire_timeout: Duration,
    /// Longest a statement may run (the server's `statement_timeout`; the client gives up a
    /// second later).
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    /// 10 connections of which 2 write; 5 s to connect or get a connection; 10 s per statement.
    fn default() -> Self {
        PostgresOptions {
            pool_size: 10,
            writers: 2,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// A [`Store`] in a PostgreSQL database: durable (each write resolves after it committed),
/// group-committing, fenced against other writers by the journal's primary key and the values'
/// versions. See the [crate docs](crate).
///
/// Dropping it closes the writers' queues; the writer tasks answer every queued request before
/// they close their connections.
pub struct PostgresStore {
    writers: Vec<mpsc::Sender<Request>>,
    reads: Pool,
    connector: Arc<Connector>,
    acquire_timeout: Duration,
    watch: Arc<EventLogWatch>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("address", &self.connector.address)
            .field("writers", &self.writers.len())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// creates or upgrades its tables, and starts the writer tasks (on the current tokio
    /// runtime).
    ///
    /// Fails, naming the server, if it cannot be reached within `connect_timeout`, and if its
    /// schema cannot be brought to [`SCHEMA_VERSION`].
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, Error> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Url(
                "expected postgres://user:password@host:port/database".into(),
            ));
        }
        let connect_options =
            PgConnectOptions::from_str(url).map_err(|error| Error::Url(error.to_string()))?;
        if options.pool_size < 2 {
            return Err(Error::Options(format!(
                "the pool size must be at least 2 (one writer, one reader), not {}",
                options.pool_size
            )));
        }
        if options.writers == 0 {
            return Err(Error::Options("there must be at least one writer".into()));
        }
        let writers = options.writers.min(options.pool_size - 1) as usize;
        let readers = options.pool_size as usize - writers;
        let connector = Arc::new(Connector::new(
            connect_options,
            options.connect_timeout,
            options.statement_timeout,
        ));
        let address = connector.address.clone();
        let mut connection = connector.connect().await.map_err(|error| Error::Connect {
            address: address.clone(),
            error,
        })?;
        match connector
            .bounded(async { Ok(schema::migrate(&mut connection).await) })
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(MigrationError::TooNew(found))) => {
                return Err(Error::SchemaTooNew { address, found });
            }
            Ok(Err(MigrationError::Database(error))) | Err(error) => {
                return Err(Error::Migrate { address, error });
            }
        }
        let reads = Pool::new(connector.clone(), readers, options.acquire_timeout);
        reads.give(connection);
        let watch = Arc::new(EventLogWatch::default());
        let writers = (0..writers)
            .map(|_| {
                // Room for a few full batches: a busy writer always has its next batch waiting,
                // and queued writes take bounded memory (senders wait when it is full).
                let (sender, queue) = mpsc::channel(4 * MAX_BATCH);
                writer::spawn(connector.clone(), watch.clone(), queue);
                sender
            })
            .collect();
        Ok(PostgresStore {
            writers,
            reads,
            connector,
            acquire_timeout: options.acquire_timeout,
            watch,
        })
    }

    /// `host:port/database` of the server.
    pub fn address(&self) -> &str {
        &self.connector.address
    }

    async fn write(
        &self,
        key: &EntityKey,
        op: Op,
        fence: Option<&Fence>,
    ) -> Result<u64, StoreError> {
        let address = self.address();
        // One entity always goes to the same writer, so its writes stay in order.
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        let index = hasher.finish() % self.writers.len().max(1) as u64;
        let writer = usize::try_from(index)
            .ok()
            .and_then(|index| self.writers.get(index))
            .ok_or_else(|| {
                StoreError::Unavailable(format!("no writer for PostgreSQL at {address}"))
            })?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            key: key.clone(),
            op,
            fence: fence.cloned(),
            reply,
        };
        match tokio::time::timeout(self.acquire_timeout, writer.send(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable(format!(
                    "the writer for PostgreSQL at {address} has stopped; nothing was written"
                )));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "the write queue for PostgreSQL at {address} stayed full for {:?}; nothing \
                     was written",
                    self.acquire_timeout
                )));
            }
        }
        answer.await.map_err(|_| {
            StoreError::Unavailable(format!(
                "the writer for PostgreSQL at {address} stopped before answering; the write may \
                 or may not be stored"
            ))
        })?
    }
}

/// The snapshot of an entity and the events after it, in one statement (one consistent view):
/// the snapshot row first (flag true), then the events in order.
const LOAD_JOURNAL: &str = "
WITH s AS (
    SELECT sequence_nr, type_url, payload FROM snapshots
    WHERE persistence_id = $1 AND entity_id = $2
)
SELECT true, sequence_nr, type_url, payload FROM s
UNION ALL
SELECT false, j.sequence_nr, j.type_url, j.payload FROM journal j
WHERE j.persistence_id = $1 AND j.entity_id = $2
  AND j.sequence_nr > coalesce((SELECT sequence_nr FROM s), 0)
ORDER BY 1 DESC, 2";

/// A page of an event log, with the events' payloads.
const READ_EVENT_LOG: &str = "
SELECT log_offset, entity_id, sequence_nr, type_url, payload FROM journal
WHERE persistence_id = $1 AND log_offset > $2
ORDER BY log_offset
LIMIT $3";

const LOAD_VALUE: &str = "
SELECT version, type_url, payload FROM value_entities
WHERE persistence_id = $1 AND entity_id = $2";

/// Decodes a stored number, type URL and payload.
fn decode(
    row: &sqlx::postgres::PgRow,
    first: usize,
    what: &dyn Fn() -> String,
) -> Result<(u64, Any), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt(format!("{}: {detail}", what()));
    let number: i64 = row
        .try_get(first)
        .map_err(|error| corrupt(error.to_string()))?;
    let number = u64::try_from(number).map_err(|_| corrupt(format!("negative number {number}")))?;
    let type_url: Vec<u8> = row
        .try_get(first + 1)
        .map_err(|error| corrupt(error.to_string()))?;
    let type_url = String::from_utf8(type_url)
        .map_err(|error| corrupt(format!("type URL is not UTF-8: {error}")))?;
    let payload: Vec<u8> = row
        .try_get(first + 2)
        .map_err(|error| corrupt(error.to_string()))?;
    Ok((
        number,
        Any {
            type_url,
            value: payload.into(),
        },
    ))
}

#[async_trait]
impl Store for PostgresStore {
    async fn load_journal(&self, key: &EntityKey) -> Result<Recovery, StoreError> {
        let mut lease = self.reads.acquire().await?;
        let query = sqlx::query(LOAD_JOURNAL)
            .bind(key.persistence_id.as_bytes())
            .bind(key.entity_id.as_bytes())
            .fetch_all(lease.connection());
        let rows = self
            .connector
            .bounded(query)
            .await
            .map_err(|error| self.reads.failure("loading a journal", error))?;
        lease.release();
        let address = self.address();
        let mut recovery = Recovery::default();
        for row in &rows {
            let is_snapshot: bool = row.try_get(0).map_err(|error| {
                StoreError::Corrupt(format!("journal of {key} in {address}: {error}"))
            })?;
            if is_snapshot {
                let what = || format!("snapshot of {key} in {address}");
                let (sequence_nr, payload) = decode(row, 1, &what)?;
                recovery.snapshot = Some(Snapshot {
                    sequence_nr,
                    payload,
                });
            } else {
                let expected = recovery.last_sequence_nr() + 1;
                let what = || format!("event {expected} of {key} in {address}");
                let (sequence_nr, payload) = decode(row, 1, &what)?;
                if sequence_nr != expected {
                    return Err(StoreError::Corrupt(format!(
                        "journal of {key} in {address}: expected event {expected}, found \
                         {sequence_nr}"
                    )));
                }
                recovery.events.push(Event {
                    sequence_nr,
                    payload,
                });
            }
        }
        Ok(recovery)
    }

    async fn append(
        &self,
        key: &EntityKey,
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
    ) -> Result<(), StoreError> {
        if events.is_empty() && snapshot.is_none() {
            return Ok(());
        }
        self.write(key, Op::Append { events, snapshot }, None)
            .await
            .map(|_| ())
    }

    async fn append_fenced(
        &self,
        key: &EntityKey,
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        if events.is_empty() && snapshot.is_none() {
            return Ok(());
        }
        self.write(key, Op::Append { events, snapshot }, Some(fence))
            .await
            .map(|_| ())
    }

    async fn write_value_fenced(
        &self,
        key: &EntityKey,
        expected_version: u64,
        write: ValueWrite,
        fence: &Fence,
    ) -> Result<u64, StoreError> {
        let op = Op::WriteValue {
            expected_version,
            write,
        };
        self.write(key, op, Some(fence)).await
    }

    fn leases(&self) -> Option<&dyn ShardLeases> {
        Some(self)
    }

    async fn load_value(&self, key: &EntityKey) -> Result<Option<Value>, StoreError> {
        let mut lease = self.reads.acquire().await?;
        let query = sqlx::query(LOAD_VALUE)
            .bind(key.persistence_id.as_bytes())
            .bind(key.entity_id.as_bytes())
            .fetch_optional(lease.connection());
        let row = self
            .connector
            .bounded(query)
            .await
            .map_err(|error| self.reads.failure("loading a value", error))?;
        lease.release();
        let Some(row) = row else {
            return Ok(None);
        };
        let what = || format!("value of {key} in {}", self.address());
        let (version, payload) = decode(&row, 0, &what)?;
        Ok(Some(Value { version, payload }))
    }

    async fn write_value(
        &self,
        key: &EntityKey,
        expected_version: u64,
        write: ValueWrite,
    ) -> Result<u64, StoreError> {
        self.write(
            key,
            Op::WriteValue {
                expected_version,
                write,
            },
            None,
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writers.iter().any(|writer| writer.is_closed()) {
            return Err(StoreError::Unavailable(format!(
                "a writer for PostgreSQL at {} has stopped",
                self.address()
            )));
        }
        let mut lease = self.reads.acquire().await?;
        let query = sqlx::query("SELECT 1").execute(lease.connection());
        self.connector
            .bounded(query)
            .await
            .map_err(|error| self.reads.failure("ping", error))?;
        lease.release();
        Ok(())
    }

    async fn read_event_log(
        &self,
        persistence_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut lease = self.reads.acquire().await?;
        let query = sqlx::query(READ_EVENT_LOG)
            .bind(persistence_id.as_bytes())
            .bind(after)
            .bind(limit)
            .fetch_all(lease.connection());
        let rows = self
            .connector
            .bounded(query)
            .await
            .map_err(|error| self.reads.failure("reading an event log", error))?;
        lease.release();
        let address = self.address();
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let corrupt = |detail: String| {
                StoreError::Corrupt(format!(
                    "event log of {persistence_id} in {address}: {detail}"
                ))
            };
            let offset: i64 = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
            let entity_id: Vec<u8> = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
            let entity_id = String::from_utf8(entity_id)
                .map_err(|e| corrupt(format!("entity id is not UTF-8: {e}")))?;
            let expected = after as u64 + events.len() as u64 + 1;
            if offset as u64 != expected {
                return Err(corrupt(format!(
                    "expected offset {expected}, found {offset}"
                )));
            }
            let what = || format!("event at offset {offset} of {persistence_id} in {address}");
            let (sequence_nr, payload) = decode(row, 2, &what)?;
            events.push(LoggedEvent {
                offset: expected,
                key: EntityKey::new(persistence_id, entity_id),
                sequence_nr,
                payload,
            });
        }
        Ok(events)
    }

    fn watch_event_log(&self, persistence_id: &str) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe(persistence_id)
    }

    async fn lease_offset(
        &self,
        consumer: &str,
    ) -> Result<Option<Box<dyn OffsetLease>>, StoreError> {
        let address = self.address().to_owned();
        let unavailable = |error: sqlx::Error| {
            connection::unavailable(&address, "taking a consumer's lease", &error)
        };
        let mut connection = self.connector.connect().await.map_err(unavailable)?;
        let query = sqlx::query("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(LEASE_LOCK_CLASS)
            .bind(consumer)
            .fetch_one(&mut connection);
        let taken: bool = self
            .connector
            .bounded(query)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(unavailable)?;
        if !taken {
            return Ok(None);
        }
        Ok(Some(Box::new(PostgresLease {
            connection: Some(connection),
            connector: self.connector.clone(),
            consumer: consumer.as_bytes().to_vec(),
        })))
    }
}

/// A statement running on a borrowed connection.
type StatementFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// The first key of the advisory locks of consumers' leases: "cs".
const LEASE_LOCK_CLASS: i32 = 0x6373;

/// A consumer's lease: a connection holding the consumer's advisory lock; `None` once that
/// connection failed (the lock may be someone else's now).
struct PostgresLease {
    connection: Option<PgConnection>,
    connector: Arc<Connector>,
    consumer: Vec<u8>,
}

impl PostgresLease {
    /// Runs one statement on the lease's connection; a failure loses the lease.
    async fn run<T>(
        &mut self,
        what: &str,
        statement: impl for<'c> FnOnce(&'c mut PgConnection, &'c [u8]) -> StatementFuture<'c, T>,
    ) -> Result<T, StoreError> {
        let address = self.connector.address.clone();
        let Some(connection) = self.connection.as_mut() else {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL at {address}: the consumer's lease was lost; take it again"
            )));
        };
        match self
            .connector
            .bounded(statement(connection, &self.consumer))
            .await
        {
            Ok(value) => Ok(value),
            Err(error) => {
                self.connection = None;
                Err(StoreError::Unavailable(format!(
                    "{}; the consumer's lease is lost",
                    connection::unavailable(&address, what, &error)
                )))
            }
        }
    }
}

#[async_trait]
impl OffsetLease for PostgresLease {
    async fn position(&mut self) -> Result<Position, StoreError> {
        let row = self
            .run("reading a consumer's position", |connection, consumer| {
                Box::pin(
                    sqlx::query(
                        "SELECT log_offset, generation FROM event_log_positions \
                         WHERE consumer = $1",
                    )
                    .bind(consumer)
                    .fetch_optional(connection),
                )
            })
            .await?;
        let Some(row) = row else {
            return Ok(Position::default());
        };
        let number = |index: usize| -> Result<u64, StoreError> {
            let value: i64 = row
                .try_get(index)
                .map_err(|error| StoreError::Corrupt(format!("a consumer's position: {error}")))?;
            u64::try_from(value)
                .map_err(|_| StoreError::Corrupt(format!("a consumer's position: {value}")))
        };
        Ok(Position {
            offset: number(0)?,
            generation: number(1)?,
        })
    }

    async fn save(&mut self, position: Position) -> Result<(), StoreError> {
        let bigint = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (offset, generation) = (bigint(position.offset), bigint(position.generation));
        self.run(
            "saving a consumer's position",
            move |connection, consumer| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO event_log_positions (consumer, log_offset, generation) \
                     VALUES ($1, $2, $3) ON CONFLICT (consumer) DO UPDATE \
                     SET log_offset = excluded.log_offset, generation = excluded.generation, \
                         written_at = now()",
                    )
                    .bind(consumer)
                    .bind(offset)
                    .bind(generation)
                    .execute(connection)
                    .await
                    .map(|_| ())
                })
            },
        )
        .await
    }
}
