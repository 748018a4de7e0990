//! The in-memory store (`--store memory`): for tests and benchmarks; nothing survives the process.

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::{DashMap, mapref::entry::Entry};

use crate::event_log::{LocalLeaseGuard, LocalLeases};
use crate::{
    EntityKey, Event, EventLogWatch, LoggedEvent, OffsetLease, Position, Recovery, Snapshot, Store,
    StoreError, Value, ValueWrite, check_append,
};

/// Keeps journals, snapshots and values in process memory, sharded by entity so that entities
/// never wait for each other.
#[derive(Debug, Default)]
pub struct MemoryStore {
    journals: DashMap<EntityKey, Journal>,
    values: DashMap<EntityKey, Value>,
    /// Per persistence id, every event in commit order (`log[i].offset == i + 1`). An append
    /// takes its entity's journal lock, then its log's lock, so offsets follow commit order.
    logs: DashMap<Arc<str>, Vec<LoggedEvent>>,
    watch: EventLogWatch,
    positions: Arc<DashMap<String, Position>>,
    leases: LocalLeases,
}

#[derive(Debug, Default)]
struct Journal {
    snapshot: Option<Snapshot>,
    /// All events, oldest first; `events[i].sequence_nr == i + 1`.
    events: Vec<Event>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load_journal(&self, key: &EntityKey) -> Result<Recovery, StoreError> {
        let Some(journal) = self.journals.get(key) else {
            return Ok(Recovery::default());
        };
        let after = journal.snapshot.as_ref().map_or(0, |s| s.sequence_nr) as usize;
        Ok(Recovery {
            snapshot: journal.snapshot.clone(),
            events: journal.events[after..].to_vec(),
        })
    }

    async fn append(
        &self,
        key: &EntityKey,
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
    ) -> Result<(), StoreError> {
        let mut journal = self.journals.entry(key.clone()).or_default();
        check_append(key, journal.events.len() as u64, &events, snapshot.as_ref())?;
        if !events.is_empty() {
            let mut log = self.logs.entry(key.persistence_id.clone()).or_default();
            let first = log.len() as u64 + 1;
            log.extend(
                events
                    .iter()
                    .zip(first..)
                    .map(|(event, offset)| LoggedEvent {
                        offset,
                        key: key.clone(),
                        sequence_nr: event.sequence_nr,
                        payload: event.payload.clone(),
                    }),
            );
            let last = log.len() as u64;
            drop(log);
            self.watch.advance(&key.persistence_id, last);
        }
        journal.events.extend(events);
        if snapshot.is_some() {
            journal.snapshot = snapshot;
        }
        Ok(())
    }

    async fn load_value(&self, key: &EntityKey) -> Result<Option<Value>, StoreError> {
        Ok(self.values.get(key).map(|value| value.clone()))
    }

    async fn write_value(
        &self,
        key: &EntityKey,
        expected_version: u64,
        write: ValueWrite,
    ) -> Result<u64, StoreError> {
        let conflict = |stored: u64| StoreError::Conflict {
            key: key.clone(),
            detail: format!("expected version {expected_version}, stored {stored}"),
        };
        // The entry holds the shard's lock, so the check and the write are one step.
        match (self.values.entry(key.clone()), write) {
            (Entry::Occupied(entry), _) if entry.get().version != expected_version => {
                Err(conflict(entry.get().version))
            }
            (Entry::Vacant(_), _) if expected_version != 0 => Err(conflict(0)),
            (Entry::Occupied(mut entry), ValueWrite::Update(payload)) => {
                let version = expected_version + 1;
                *entry.get_mut() = Value { version, payload };
                Ok(version)
            }
            (Entry::Vacant(entry), ValueWrite::Update(payload)) => {
                entry.insert(Value {
                    version: 1,
                    payload,
                });
                Ok(1)
            }
            (Entry::Occupied(entry), ValueWrite::Delete) => {
                entry.remove();
                Ok(0)
            }
            (Entry::Vacant(_), ValueWrite::Delete) => Ok(0),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read_event_log(
        &self,
        persistence_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let Some(log) = self.logs.get(persistence_id) else {
            return Ok(Vec::new());
        };
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(log.len());
        let end = start.saturating_add(limit).min(log.len());
        Ok(log[start..end].to_vec())
    }

    fn watch_event_log(&self, persistence_id: &str) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe(persistence_id)
    }

    async fn lease_offset(
        &self,
        consumer: &str,
    ) -> Result<Option<Box<dyn OffsetLease>>, StoreError> {
        Ok(self.leases.try_take(consumer).map(|guard| {
            Box::new(MemoryLease {
                guard,
                positions: self.positions.clone(),
            }) as Box<dyn OffsetLease>
        }))
    }
}

/// A consumer's lease on a [`MemoryStore`].
struct MemoryLease {
    guard: LocalLeaseGuard,
    positions: Arc<DashMap<String, Position>>,
}

#[async_trait]
impl OffsetLease for MemoryLease {
    async fn position(&mut self) -> Result<Position, StoreError> {
        Ok(self
            .positions
            .get(self.guard.consumer())
            .map(|position| *position)
            .unwrap_or_default())
    }

    async fn save(&mut self, position: Position) -> Result<(), StoreError> {
        self.positions
            .insert(self.guard.consumer().to_owned(), position);
        Ok(())
    }
}
