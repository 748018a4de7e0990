//! The embedded on-disk store (`--store embedded`): journals, snapshots and values in one
//! [redb](https://docs.rs/redb) database file, for a single proxy process.
//!
//! # Writes: group commit
//! One dedicated writer thread owns every write. [`Store::append`] and [`Store::write_value`]
//! queue a request and wait for its answer. The thread blocks until a request arrives, then takes
//! whatever else is already queued (up to 1024 requests), applies them all in one write
//! transaction and commits it once, with [`redb::Durability::Immediate`] (fsync), before it
//! answers any of them. An idle store commits a lone request at once; under load the batches
//! grow by themselves, so many entities share one fsync. There are no timers.
//!
//! Inside the transaction each request is checked on its own, against the tables as the
//! requests before it in the batch left them: an append against the stored last sequence
//! number ([`cloudstate_store::check_append`]), a value write against the stored version. A
//! request that fails its check gets its own error and writes nothing; the rest of the batch
//! still commits. If the transaction or its commit fails, every request of the batch gets
//! [`StoreError::Unavailable`].
//!
//! A write resolves only after its commit; if its future is dropped earlier, the write may or
//! may not be stored.
//!
//! # Healing after an I/O error
//! After a failed transaction (a full disk, an I/O error) redb refuses every later one until
//! the database is opened again. So the writer thread then closes the database (once the reads
//! in flight are done), opens it again (redb repairs it to its last commit: every acknowledged
//! write is there) and commits a small probe write; while that fails it tries again, waiting
//! from 100 ms up to 5 s between attempts. Until a probe commits the store is **broken**:
//! writes fail at once with [`StoreError::Unavailable`] naming the cause, [`Store::ping`] fails
//! (so the proxy is not ready), and reads fail only while the database is closed. The failure,
//! the attempts (sparsely) and the recovery are logged.
//!
//! The store belongs to one process, so it keeps no shard leases and refuses fenced writes
//! (a cluster needs PostgreSQL).
//!
//! # Reads
//! [`Store::load_journal`] and [`Store::load_value`] run on tokio's blocking pool in read
//! transactions, which see the last commit and never wait for the writer.
//!
//! # On-disk layout
//! The directory given to [`EmbeddedStore::open`] holds one file, `cloudstate.redb`, with these
//! tables (persistence ids and entity ids are stored as UTF-8 strings; numbers are `u64`):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` name | `u64`: `"format_version"` → [`FORMAT_VERSION`] |
//! | `journal` | `(persistence id, entity id, sequence number)` | the event's `google.protobuf.Any`, protobuf encoded |
//! | `snapshots` | `(persistence id, entity id)` | the latest snapshot: a protobuf message with field 1 `uint64` sequence number and field 2 the `google.protobuf.Any` |
//! | `values` | `(persistence id, entity id)` | the value: the same message, field 1 being the version |
//! | `event_log` | `(persistence id, offset)` | `(entity id, sequence number)` of the event at that offset |
//! | `event_log_heads` | persistence id | the last offset of its event log |
//! | `positions` | consumer name | `(offset, generation)`: where that consumer of an event log stands |
//!
//! Keys sort by persistence id, then entity id, then sequence number, so an entity's events are
//! one contiguous range: its last sequence number is the last key of that range, and recovery
//! reads the range after the snapshot. A snapshot replaces the previous one; events are never
//! removed. A value delete removes the row. An `Any`'s type URL and bytes are stored as given.
//!
//! An append gives its events the next offsets of their persistence id's event log in the
//! same transaction (the writer thread commits one transaction at a time, so offsets follow
//! commit order). Consumers' positions are written in transactions of their own; leases are
//! exclusive within the process, which is the only one that can open the file.
//!
//! Opening a file of format version 1 (before event logs) builds the event logs from the
//! journal (by persistence id, entity id and sequence number) and upgrades it to version 2.
//! Opening a file with another format version fails. Bytes that do not decode are reported as
//! [`StoreError::Corrupt`], naming the entity, the record and the file.

mod inspect;
mod layout;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use async_trait::async_trait;
use cloudstate_store::event_log::{LocalLeaseGuard, LocalLeases};
use cloudstate_store::{
    EntityKey, Event, EventLogWatch, Fence, LoggedEvent, OffsetLease, Position, Recovery, Snapshot,
    Store, StoreError, Value, ValueWrite, no_leases,
};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

pub use inspect::ReadOnlyStore;
pub use layout::FORMAT_VERSION;
use layout::{EVENT_LOG, EVENT_LOG_HEADS, Failure, JOURNAL, META, POSITIONS, SNAPSHOTS, VALUES};
use writer::{MAX_BATCH, Op, Request, WriterThread};

/// The name of the database file inside the store's directory.
pub const FILE_NAME: &str = "cloudstate.redb";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory could not be created (or is not a directory).
    #[error("cannot create the store directory {}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another process, or another store in this one, has the database open.
    #[error("the store {} is locked: another process (or another store in this process) has it open", path.display())]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// There is no store to open read-only ([`ReadOnlyStore::open`] creates none).
    #[error("there is no store in {}: the file {} does not exist", path.parent().unwrap_or(path).display(), path.display())]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// The file was not closed cleanly (its process was killed) and must be repaired, which
    /// only opening it to write does.
    #[error("the store {} was not closed cleanly and needs a repair, which only a writer does: start the proxy on it once (or open it with EmbeddedStore::open)", path.display())]
    NeedsRepair {
        /// The database file.
        path: PathBuf,
    },
    /// The database file could not be opened (unreadable, not a redb file, ...).
    #[error("cannot open the store {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: DatabaseError,
    },
    /// The file was written in a format this build does not read.
    #[error("the store {} has format version {found}; this build reads version {FORMAT_VERSION}", path.display())]
    Format {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u64,
    },
    /// Creating the tables or reading the format version failed.
    #[error("cannot prepare the store {}: {source}", path.display())]
    Prepare {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        source: redb::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread of the store {}: {source}", path.display())]
    Thread {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What the store's handle, its read tasks and its writer thread share.
pub(crate) struct Shared {
    /// The open database; `None` while the writer thread reopens it.
    db: RwLock<Option<Arc<Database>>>,
    /// Why the store cannot write, while it cannot (see "Healing" in the crate docs).
    broken: Mutex<Option<String>>,
    /// The database file.
    path: PathBuf,
    /// The database file's path, for messages.
    location: String,
    /// Wakes readers of event logs after commits.
    watch: EventLogWatch,
}

/// A [`Store`] in a redb database file: durable (each write resolves after an fsynced commit),
/// group-committing, with reads that never wait for writes. See the [crate docs](crate).
///
/// Dropping it lets the writer thread answer every queued request and waits until the thread
/// has exited; the database file is closed (and its lock released) once the last running read
/// has finished too.
pub struct EmbeddedStore {
    // Fields drop in declaration order: dropping the sender first closes the channel, so the
    // writer thread drains it and exits, which `_writer`'s drop then waits for.
    requests: mpsc::Sender<Request>,
    _writer: WriterThread,
    shared: Arc<Shared>,
    leases: LocalLeases,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating the directory and the database file
    /// ([`FILE_NAME`]) if they do not exist, and starts its writer thread.
    ///
    /// Fails if the directory is unusable, if the file is locked by another process or store, or
    /// if it is not a store of this [`FORMAT_VERSION`].
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|source| match source {
            DatabaseError::DatabaseAlreadyOpen => Error::Locked { path: path.clone() },
            source => Error::Open {
                path: path.clone(),
                source,
            },
        })?;
        prepare(&db)
            .map_err(|source| Error::Prepare {
                path: path.clone(),
                source,
            })?
            .map_err(|found| Error::Format {
                path: path.clone(),
                found,
            })?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            broken: Mutex::new(None),
            location: path.display().to_string(),
            path: path.clone(),
            watch: EventLogWatch::default(),
        });
        // Room for a few full batches: enough that a busy writer always has its next batch
        // waiting, and a bound on the memory queued writes take (senders wait when it is full).
        let (requests, queue) = mpsc::channel(4 * MAX_BATCH);
        let writer = WriterThread::spawn(shared.clone(), queue)
            .map_err(|source| Error::Thread { path, source })?;
        Ok(EmbeddedStore {
            requests,
            _writer: writer,
            shared,
            leases: LocalLeases::default(),
        })
    }

    /// The path of the database file.
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    async fn write(&self, key: &EntityKey, op: Op) -> Result<u64, StoreError> {
        self.shared.check_writable()?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            key: key.clone(),
            op,
            reply,
        };
        self.requests.send(request).await.map_err(|_| {
            StoreError::Unavailable(format!(
                "the writer of {} has stopped; nothing was written",
                self.shared.location
            ))
        })?;
        answer.await.map_err(|_| {
            StoreError::Unavailable(format!(
                "the writer of {} stopped before answering; the write may or may not be stored",
                self.shared.location
            ))
        })?
    }

    /// Runs `read` in a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction, &str) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            let db = shared.database().map_err(Failure::Refused)?;
            let transaction = db.begin_read().map_err(Failure::from)?;
            read(&transaction, &shared.location)
        })
        .await
        .map_err(|error| {
            StoreError::Unavailable(format!(
                "a read of {} failed: {error}",
                self.shared.location
            ))
        })?;
        result.map_err(|failure| match failure {
            Failure::Refused(error) => error,
            Failure::Storage(error) => {
                StoreError::Unavailable(format!("cannot read {}: {error}", self.shared.location))
            }
        })
    }
}

impl Shared {
    /// The open database; fails while the writer thread reopens it.
    pub(crate) fn database(&self) -> Result<Arc<Database>, StoreError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        db.clone().ok_or_else(|| {
            StoreError::Unavailable(format!(
                "{} is being reopened after a failed write",
                self.location
            ))
        })
    }

    /// Fails while the store cannot write.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        match &*self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(cause) => Err(StoreError::Unavailable(format!(
                "{} cannot write since: {cause}; nothing was written (the store is reopened \
                 until a write succeeds)",
                self.location
            ))),
        }
    }

    /// Records why the store cannot write (`None`: it can again).
    pub(crate) fn set_broken(&self, cause: Option<String>) {
        *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = cause;
    }
}

/// Creates the tables of a new file and records its format version, or checks the version of
/// an existing one. Returns the version found if it is not [`FORMAT_VERSION`].
fn prepare(db: &Database) -> Result<Result<(), u64>, redb::Error> {
    let transaction = db.begin_write()?;
    {
        let mut meta = transaction.open_table(META)?;
        let found = meta
            .get(layout::FORMAT_VERSION_KEY)?
            .map(|version| version.value());
        match found {
            None => {
                meta.insert(layout::FORMAT_VERSION_KEY, FORMAT_VERSION)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(1) => {
                build_event_logs(&transaction)?;
                meta.insert(layout::FORMAT_VERSION_KEY, FORMAT_VERSION)?;
            }
            Some(other) => return Ok(Err(other)),
        }
        // Created here so that read transactions can always open them.
        transaction.open_table(JOURNAL)?;
        transaction.open_table(SNAPSHOTS)?;
        transaction.open_table(VALUES)?;
        transaction.open_table(EVENT_LOG)?;
        transaction.open_table(EVENT_LOG_HEADS)?;
        transaction.open_table(POSITIONS)?;
    }
    transaction.commit()?;
    Ok(Ok(()))
}

/// Upgrades a format 1 file: every event of the journal gets an offset in its persistence id's
/// event log, in key order (persistence id, entity id, sequence number).
fn build_event_logs(transaction: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let journal = transaction.open_table(JOURNAL)?;
    let mut event_log = transaction.open_table(EVENT_LOG)?;
    let mut heads = transaction.open_table(EVENT_LOG_HEADS)?;
    for entry in journal.iter()? {
        let (key, _) = entry?;
        let (persistence_id, entity_id, sequence_nr) = key.value();
        writer::log_events(
            &mut event_log,
            &mut heads,
            &EntityKey::new(persistence_id, entity_id),
            std::iter::once(sequence_nr),
        )?;
    }
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn load_journal(&self, key: &EntityKey) -> Result<Recovery, StoreError> {
        let key = key.clone();
        self.read(move |transaction, location| {
            let snapshot = layout::snapshot(&transaction.open_table(SNAPSHOTS)?, &key, location)?;
            let after = snapshot.as_ref().map_or(0, |snapshot| snapshot.sequence_nr);
            let events =
                layout::events_after(&transaction.open_table(JOURNAL)?, &key, after, location)?;
            Ok(Recovery { snapshot, events })
        })
        .await
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
        self.write(key, Op::Append { events, snapshot })
            .await
            .map(|_| ())
    }

    async fn load_value(&self, key: &EntityKey) -> Result<Option<Value>, StoreError> {
        let key = key.clone();
        self.read(move |transaction, location| {
            layout::value(&transaction.open_table(VALUES)?, &key, location)
        })
        .await
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
        )
        .await
    }

    async fn append_fenced(
        &self,
        key: &EntityKey,
        _events: Vec<Event>,
        _snapshot: Option<Snapshot>,
        _fence: &Fence,
    ) -> Result<(), StoreError> {
        Err(no_leases(key, "the embedded store"))
    }

    async fn write_value_fenced(
        &self,
        key: &EntityKey,
        _expected_version: u64,
        _write: ValueWrite,
        _fence: &Fence,
    ) -> Result<u64, StoreError> {
        Err(no_leases(key, "the embedded store"))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.requests.is_closed() {
            return Err(StoreError::Unavailable(format!(
                "the writer of {} has stopped",
                self.shared.location
            )));
        }
        self.shared.check_writable()?;
        let read = self.read(|transaction, location| {
            let meta = transaction.open_table(META)?;
            match meta
                .get(layout::FORMAT_VERSION_KEY)?
                .map(|version| version.value())
            {
                Some(FORMAT_VERSION) => Ok(()),
                found => Err(Failure::Refused(StoreError::Corrupt(format!(
                    "{location}: format version {found:?}, expected {FORMAT_VERSION}"
                )))),
            }
        });
        // A write may fail while the ping runs; then the reason it cannot write is the answer,
        // not the closed database the writer is reopening.
        read.await
            .map_err(|error| self.shared.check_writable().err().unwrap_or(error))
    }

    async fn read_event_log(
        &self,
        persistence_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let persistence_id = persistence_id.to_owned();
        self.read(move |transaction, location| {
            layout::event_log_after(transaction, &persistence_id, after, limit, location)
        })
        .await
    }

    fn watch_event_log(&self, persistence_id: &str) -> tokio::sync::watch::Receiver<u64> {
        self.shared.watch.subscribe(persistence_id)
    }

    async fn lease_offset(
        &self,
        consumer: &str,
    ) -> Result<Option<Box<dyn OffsetLease>>, StoreError> {
        Ok(self.leases.try_take(consumer).map(|guard| {
            Box::new(EmbeddedLease {
                guard,
                shared: self.shared.clone(),
            }) as Box<dyn OffsetLease>
        }))
    }
}

/// A consumer's lease on an [`EmbeddedStore`]: exclusive within the process, which is the only
/// one that can have the file open.
struct EmbeddedLease {
    guard: LocalLeaseGuard,
    shared: Arc<Shared>,
}

impl EmbeddedLease {
    /// Runs `work` on the blocking pool with the database.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database, &str) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.shared.database()?;
        let consumer = self.guard.consumer().to_owned();
        let location = self.shared.location.clone();
        tokio::task::spawn_blocking(move || work(&db, &consumer))
            .await
            .map_err(|error| StoreError::Unavailable(format!("{location}: {error}")))?
            .map_err(|error| {
                StoreError::Unavailable(format!("a consumer position in {location}: {error}"))
            })
    }
}

#[async_trait]
impl OffsetLease for EmbeddedLease {
    async fn position(&mut self) -> Result<Position, StoreError> {
        self.blocking(|db, consumer| {
            let transaction = db.begin_read()?;
            let positions = transaction.open_table(POSITIONS)?;
            Ok(positions
                .get(consumer)?
                .map(|stored| {
                    let (offset, generation) = stored.value();
                    Position { offset, generation }
                })
                .unwrap_or_default())
        })
        .await
    }

    async fn save(&mut self, position: Position) -> Result<(), StoreError> {
        self.shared.check_writable()?;
        self.blocking(move |db, consumer| {
            let transaction = db.begin_write()?;
            transaction
                .open_table(POSITIONS)?
                .insert(consumer, (position.offset, position.generation))?;
            transaction.commit()?;
            Ok(())
        })
        .await
    }
}
