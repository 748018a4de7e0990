//! The writer thread: the only place that writes to the database, one group commit at a time.

use std::{
    collections::HashMap,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use cloudstate_store::{EntityKey, Event, Snapshot, StoreError, ValueWrite, check_append};
use prost::Message;
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Shared,
    layout::{
        self, EVENT_LOG, EVENT_LOG_HEADS, EntityColumns, Failure, JOURNAL, JournalKey, META,
        SNAPSHOTS, VALUES,
    },
};

/// The most requests one transaction takes: bounds the latency a request queued behind a big
/// batch sees, and the memory of one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

/// A write waiting for the writer thread.
pub(crate) struct Request {
    pub(crate) key: EntityKey,
    pub(crate) op: Op,
    /// The new last sequence number (appends) or version (value writes), once committed.
    pub(crate) reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// What a [`Request`] writes.
pub(crate) enum Op {
    Append {
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
    },
    WriteValue {
        expected_version: u64,
        write: ValueWrite,
    },
}

/// The writer thread; dropping it waits until the thread has exited, which it does once every
/// sender of its channel is gone and the queued requests are answered.
pub(crate) struct WriterThread(Option<JoinHandle<()>>);

impl WriterThread {
    /// Starts the writer thread on `shared`'s database, taking requests from `requests`.
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        requests: mpsc::Receiver<Request>,
    ) -> std::io::Result<Self> {
        let handle = std::thread::Builder::new()
            .name("cloudstate-store-writer".into())
            .spawn(move || run(&shared, requests))?;
        Ok(WriterThread(Some(handle)))
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // A panic on the writer thread has already failed its requests (their reply senders
            // were dropped); there is nobody left to tell.
            let _ = handle.join();
        }
    }
}

fn run(shared: &Shared, mut requests: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Blocking for the first request and then taking only what is already queued means an idle
    // store commits a lone request at once, while a busy one gathers everything that arrived
    // during the previous commit into the next.
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        if let Err(cause) = commit(shared, &mut batch) {
            heal(shared, &mut requests, cause);
        }
    }
}

/// The first wait between two attempts to reopen a broken database.
const HEAL_DELAY_INITIAL: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to reopen a broken database.
const HEAL_DELAY_MAX: Duration = Duration::from_secs(5);

/// How long reopening waits for the reads in flight on the broken database to finish.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a failed transaction: reopens the database until a probe write commits (see "Healing"
/// in the crate docs). Writes queued meanwhile fail.
fn heal(shared: &Shared, requests: &mut mpsc::Receiver<Request>, cause: String) {
    let started = Instant::now();
    tracing::error!(
        store = %shared.location,
        %cause,
        "the store cannot write: reopening it until a write succeeds"
    );
    shared.set_broken(Some(cause));
    let mut delay = HEAL_DELAY_INITIAL;
    for attempt in 1u64.. {
        match reopen(shared) {
            Ok(()) => {
                shared.set_broken(None);
                tracing::warn!(
                    store = %shared.location,
                    attempts = attempt,
                    broken_for = ?started.elapsed(),
                    "the store writes again"
                );
                return;
            }
            Err(error) => {
                // Attempts 1, 2, 4, 8, ...: a long outage logs a few lines, not one a second.
                if attempt.is_power_of_two() {
                    tracing::warn!(store = %shared.location, attempt, %error, "the store still cannot write");
                }
                shared.set_broken(Some(error));
            }
        }
        // Writes that were queued before the store was marked broken.
        while let Ok(request) = requests.try_recv() {
            let _ = request.reply.send(shared.check_writable().map(|()| 0));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(HEAL_DELAY_MAX);
    }
}

/// Closes the database (waiting for reads in flight), opens it again, and commits a probe
/// write. A database that opened but cannot write stays open for reads.
fn reopen(shared: &Shared) -> Result<(), String> {
    let taken = shared.db.write().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut db) = taken {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(shared_db) if Instant::now() < deadline => {
                    db = shared_db;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(shared_db) => {
                    *shared.db.write().unwrap_or_else(|e| e.into_inner()) = Some(shared_db);
                    return Err(format!(
                        "reads of {} did not finish within {CLOSE_TIMEOUT:?}",
                        shared.location
                    ));
                }
            }
        }
    }
    let db = Database::create(&shared.path)
        .map_err(|error| format!("reopening {} failed: {error}", shared.location))?;
    let probe = probe(&db);
    *shared.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
    probe.map_err(|error| format!("a probe write to {} failed: {error}", shared.location))
}

/// Commits one small write: proof that the database can write again.
fn probe(db: &Database) -> Result<(), redb::Error> {
    let mut transaction = db.begin_write()?;
    transaction.set_durability(Durability::Immediate)?;
    {
        let mut meta = transaction.open_table(META)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        meta.insert(layout::PROBE_KEY, now)?;
    }
    transaction.commit()?;
    Ok(())
}

/// Applies `batch` in one transaction, commits it, and answers (and removes) every request.
/// Fails, with what happened, if the transaction failed as a whole.
pub(crate) fn commit(shared: &Shared, batch: &mut Vec<Request>) -> Result<(), String> {
    match apply(shared, batch) {
        Ok((outcomes, heads)) => {
            for (persistence_id, head) in heads {
                shared.watch.advance(persistence_id, head);
            }
            for (request, outcome) in batch.drain(..).zip(outcomes) {
                // The caller may have stopped waiting; its write stands all the same.
                let _ = request.reply.send(outcome);
            }
            Ok(())
        }
        Err(failure) => {
            let (location, writes) = (&shared.location, batch.len());
            let detail = match failure {
                BatchFailure::BeforeCommit(error) => format!(
                    "the write transaction on {location} failed: {error}; none of its {writes} \
                     writes was stored"
                ),
                BatchFailure::Commit(error) => format!(
                    "the commit to {location} failed: {error}; its {writes} writes may or may \
                     not be stored"
                ),
            };
            for request in batch.drain(..) {
                let _ = request
                    .reply
                    .send(Err(StoreError::Unavailable(detail.clone())));
            }
            Err(detail)
        }
    }
}

/// How a batch failed as a whole.
enum BatchFailure {
    /// Before the commit: the transaction is dropped, so nothing of it is stored.
    BeforeCommit(redb::Error),
    /// In the commit: whether it reached the disk is unknown.
    Commit(redb::Error),
}

/// The tables one batch writes.
struct Tables<'txn> {
    journal: Table<'txn, JournalKey, &'static [u8]>,
    snapshots: Table<'txn, EntityColumns, &'static [u8]>,
    values: Table<'txn, EntityColumns, &'static [u8]>,
    event_log: Table<'txn, (&'static str, u64), (&'static str, u64)>,
    event_log_heads: Table<'txn, &'static str, u64>,
}

/// The outcome of every request of a batch, and the new last offset of each event log it
/// appended to.
type Applied<'b> = (Vec<Result<u64, StoreError>>, HashMap<&'b str, u64>);

fn apply<'b>(shared: &Shared, batch: &'b [Request]) -> Result<Applied<'b>, BatchFailure> {
    let db = shared.database().map_err(|error| {
        BatchFailure::BeforeCommit(redb::Error::Io(std::io::Error::other(error.to_string())))
    })?;
    let mut transaction = db
        .begin_write()
        .map_err(|error| BatchFailure::BeforeCommit(error.into()))?;
    // The default already, but durability is this store's promise, so it is not left implicit.
    transaction
        .set_durability(Durability::Immediate)
        .map_err(|error| BatchFailure::BeforeCommit(error.into()))?;
    let outcomes =
        write_all(&transaction, batch, &shared.location).map_err(BatchFailure::BeforeCommit)?;
    transaction
        .commit()
        .map_err(|error| BatchFailure::Commit(error.into()))?;
    Ok(outcomes)
}

/// Gives `events` of `key` the next offsets of its persistence id's log; returns the new last
/// offset.
pub(crate) fn log_events(
    event_log: &mut Table<'_, (&'static str, u64), (&'static str, u64)>,
    heads: &mut Table<'_, &'static str, u64>,
    key: &EntityKey,
    sequence_nrs: impl Iterator<Item = u64>,
) -> Result<u64, redb::Error> {
    let persistence_id: &str = &key.persistence_id;
    let mut head = heads.get(persistence_id)?.map_or(0, |head| head.value());
    for sequence_nr in sequence_nrs {
        head += 1;
        event_log.insert((persistence_id, head), (&*key.entity_id, sequence_nr))?;
    }
    heads.insert(persistence_id, head)?;
    Ok(head)
}

/// Writes every request that passes its checks; fails only if the database does.
fn write_all<'b>(
    transaction: &WriteTransaction,
    batch: &'b [Request],
    location: &str,
) -> Result<Applied<'b>, redb::Error> {
    let mut tables = Tables {
        journal: transaction.open_table(JOURNAL)?,
        snapshots: transaction.open_table(SNAPSHOTS)?,
        values: transaction.open_table(VALUES)?,
        event_log: transaction.open_table(EVENT_LOG)?,
        event_log_heads: transaction.open_table(EVENT_LOG_HEADS)?,
    };
    let mut heads = HashMap::new();
    let outcomes = batch
        .iter()
        // Requests are checked against the tables as this transaction has changed them, so two
        // requests for one entity in a batch behave like two calls one after the other.
        .map(|request| match apply_one(&mut tables, request, location) {
            Ok((number, head)) => {
                if let Some(head) = head {
                    heads.insert(&*request.key.persistence_id, head);
                }
                Ok(Ok(number))
            }
            Err(Failure::Refused(error)) => Ok(Err(error)),
            Err(Failure::Storage(error)) => Err(error),
        })
        .collect::<Result<_, _>>()?;
    Ok((outcomes, heads))
}

/// Checks one request and, if it passes, writes it: its new number, and for an append of
/// events the new last offset of its event log. A refusal writes nothing.
fn apply_one(
    tables: &mut Tables<'_>,
    request: &Request,
    location: &str,
) -> Result<(u64, Option<u64>), Failure> {
    let key = &request.key;
    let columns = layout::entity(key);
    match &request.op {
        Op::Append { events, snapshot } => {
            let last = layout::last_sequence_nr(&tables.journal, key)?;
            check_append(key, last, events, snapshot.as_ref())?;
            for event in events {
                let record = event.payload.encode_to_vec();
                tables
                    .journal
                    .insert((columns.0, columns.1, event.sequence_nr), record.as_slice())?;
            }
            if let Some(snapshot) = snapshot {
                let record = layout::encode_numbered(snapshot.sequence_nr, &snapshot.payload);
                tables.snapshots.insert(columns, record.as_slice())?;
            }
            let head = if events.is_empty() {
                None
            } else {
                Some(log_events(
                    &mut tables.event_log,
                    &mut tables.event_log_heads,
                    key,
                    events.iter().map(|event| event.sequence_nr),
                )?)
            };
            Ok((events.last().map_or(last, |event| event.sequence_nr), head))
        }
        Op::WriteValue {
            expected_version,
            write,
        } => {
            let stored =
                layout::value(&tables.values, key, location)?.map_or(0, |value| value.version);
            if stored != *expected_version {
                return Err(Failure::Refused(StoreError::Conflict {
                    key: key.clone(),
                    detail: format!("expected version {expected_version}, stored {stored}"),
                }));
            }
            match write {
                ValueWrite::Update(payload) => {
                    let version = stored.checked_add(1).ok_or_else(|| {
                        Failure::Refused(StoreError::InvalidWrite {
                            key: key.clone(),
                            detail: "the version cannot grow past u64::MAX".into(),
                        })
                    })?;
                    let record = layout::encode_numbered(version, payload);
                    tables.values.insert(columns, record.as_slice())?;
                    Ok((version, None))
                }
                ValueWrite::Delete => {
                    tables.values.remove(columns)?;
                    Ok((0, None))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cloudstate_store::{Any, EntityKey, Event, Snapshot, Store, StoreError, ValueWrite};
    use tokio::sync::oneshot;

    use super::{Op, Request, commit};
    use crate::EmbeddedStore;

    fn event(sequence_nr: u64) -> Event {
        Event {
            sequence_nr,
            payload: Any {
                type_url: "t".into(),
                value: format!("e{sequence_nr}").into(),
            },
        }
    }

    fn append(sequence_nrs: &[u64], snapshot: Option<u64>) -> Op {
        Op::Append {
            events: sequence_nrs.iter().copied().map(event).collect(),
            snapshot: snapshot.map(|sequence_nr| Snapshot {
                sequence_nr,
                payload: event(sequence_nr).payload,
            }),
        }
    }

    /// One batch, applied by the writer's own commit: requests for one entity see each other's
    /// writes, and a refused request fails alone while the rest commits.
    #[tokio::test]
    async fn a_batch_commits_all_but_its_refused_requests() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let journal = EntityKey::new("p", "journal");
        let value = EntityKey::new("p", "value");
        let other = EntityKey::new("p", "other");
        let ops = vec![
            (journal.clone(), append(&[1, 2], None)),
            (journal.clone(), append(&[3], Some(2))),
            (journal.clone(), append(&[3], Some(3))),
            (
                value.clone(),
                Op::WriteValue {
                    expected_version: 0,
                    write: ValueWrite::Update(event(1).payload),
                },
            ),
            (
                value.clone(),
                Op::WriteValue {
                    expected_version: 0,
                    write: ValueWrite::Update(event(2).payload),
                },
            ),
            (
                value.clone(),
                Op::WriteValue {
                    expected_version: 1,
                    write: ValueWrite::Delete,
                },
            ),
            (other.clone(), append(&[1, 3], None)),
            (other.clone(), append(&[1], Some(1))),
        ];
        let (mut batch, mut answers): (Vec<_>, Vec<_>) = ops
            .into_iter()
            .map(|(key, op)| {
                let (reply, answer) = oneshot::channel();
                (Request { key, op, reply }, answer)
            })
            .unzip();
        commit(&store.shared, &mut batch).unwrap();
        assert!(batch.is_empty());
        let mut answers = answers.iter_mut().map(|answer| answer.try_recv().unwrap());
        assert_eq!(answers.next().unwrap().unwrap(), 2);
        assert_eq!(answers.next().unwrap().unwrap(), 3);
        assert!(matches!(
            answers.next().unwrap(),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(answers.next().unwrap().unwrap(), 1);
        assert!(matches!(
            answers.next().unwrap(),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(answers.next().unwrap().unwrap(), 0);
        assert!(matches!(
            answers.next().unwrap(),
            Err(StoreError::InvalidWrite { .. })
        ));
        assert_eq!(answers.next().unwrap().unwrap(), 1);

        let recovery = store.load_journal(&journal).await.unwrap();
        assert_eq!(recovery.snapshot.map(|s| s.sequence_nr), Some(2));
        assert_eq!(recovery.events, vec![event(3)]);
        assert_eq!(store.load_value(&value).await.unwrap(), None);
        let recovery = store.load_journal(&other).await.unwrap();
        assert_eq!(recovery.snapshot.map(|s| s.sequence_nr), Some(1));
        assert_eq!(recovery.events, vec![]);
    }
}
