//! The in-memory store (`--store memory`): for tests and benchmarks; nothing survives the process.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::{DashMap, mapref::entry::Entry};

use crate::event_log::{LocalLeaseGuard, LocalLeases};
use crate::{
    Clock, EntityKey, EntitySummary, Event, EventLogWatch, Fence, Inspect, Lease, LoggedEvent,
    OffsetLease, Position, Recovery, ShardId, ShardLeases, Snapshot, Store, StoreError,
    StoredEntity, SystemClock, Value, ValueWrite, check_append, merge_summaries,
};

/// Keeps journals, snapshots and values in process memory, sharded by entity so that entities
/// never wait for each other.
///
/// It also keeps shard leases with the same semantics as PostgreSQL's, against its [`Clock`],
/// so that several simulated nodes sharing one `MemoryStore` are fenced exactly like proxies
/// sharing a database: a fenced write holds the leases' read lock while it checks its fence
/// and writes, and taking a lease needs the write lock.
#[derive(Debug)]
pub struct MemoryStore {
    journals: DashMap<EntityKey, Journal>,
    values: DashMap<EntityKey, Value>,
    /// Per persistence id, every event in commit order (`log[i].offset == i + 1`). An append
    /// takes its entity's journal lock, then its log's lock, so offsets follow commit order.
    logs: DashMap<Arc<str>, Vec<LoggedEvent>>,
    watch: EventLogWatch,
    positions: Arc<DashMap<String, Position>>,
    leases: LocalLeases,
    shard_leases: RwLock<Vec<LeaseRow>>,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock::default()))
    }
}

/// One shard's lease.
#[derive(Debug, Clone, Default)]
struct LeaseRow {
    owner: Option<Arc<str>>,
    epoch: u64,
    /// By the store's clock.
    expires_at: Duration,
}

impl LeaseRow {
    fn held_by(&self, owner: &str, epoch: u64, now: Duration) -> bool {
        self.owner.as_deref() == Some(owner) && self.epoch == epoch && self.expires_at > now
    }
}

#[derive(Debug, Default)]
struct Journal {
    snapshot: Option<Snapshot>,
    /// All events, oldest first; `events[i].sequence_nr == i + 1`.
    events: Vec<Event>,
}

impl MemoryStore {
    /// An empty store whose leases expire by the process's clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose leases expire by `clock` (a simulation's clock).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            journals: DashMap::new(),
            values: DashMap::new(),
            logs: DashMap::new(),
            watch: EventLogWatch::default(),
            positions: Arc::default(),
            leases: LocalLeases::default(),
            shard_leases: RwLock::new(Vec::new()),
            clock,
        }
    }

    fn read_leases(&self) -> RwLockReadGuard<'_, Vec<LeaseRow>> {
        self.shard_leases.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_leases(&self) -> RwLockWriteGuard<'_, Vec<LeaseRow>> {
        self.shard_leases.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `write` while holding the leases' read lock, if `fence` is valid.
    fn fenced<T>(
        &self,
        key: &EntityKey,
        fence: &Fence,
        write: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let leases = self.read_leases();
        let now = self.clock.now();
        let valid = leases
            .get(fence.shard as usize)
            .is_some_and(|row| row.held_by(&fence.owner, fence.epoch, now));
        if !valid {
            return Err(StoreError::Fenced {
                key: key.clone(),
                detail: format!("the lease of {fence} is no longer valid"),
            });
        }
        let result = write();
        drop(leases);
        result
    }

    fn append_now(
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

    fn write_value_now(
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
        self.append_now(key, events, snapshot)
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
        self.write_value_now(key, expected_version, write)
    }

    async fn append_fenced(
        &self,
        key: &EntityKey,
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
        fence: &Fence,
    ) -> Result<(), StoreError> {
        self.fenced(key, fence, || self.append_now(key, events, snapshot))
    }

    async fn write_value_fenced(
        &self,
        key: &EntityKey,
        expected_version: u64,
        write: ValueWrite,
        fence: &Fence,
    ) -> Result<u64, StoreError> {
        self.fenced(key, fence, || {
            self.write_value_now(key, expected_version, write)
        })
    }

    fn leases(&self) -> Option<&dyn ShardLeases> {
        Some(self)
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

#[async_trait]
impl Inspect for MemoryStore {
    async fn list_entities(&self, persistence_id: &str) -> Result<Vec<EntitySummary>, StoreError> {
        let journals = self
            .journals
            .iter()
            .filter(|entry| &*entry.key().persistence_id == persistence_id)
            .map(|entry| (entry.key().entity_id.to_string(), entry.events.len() as u64))
            .filter(|(_, last)| *last > 0)
            .collect::<Vec<_>>();
        let snapshots = self
            .journals
            .iter()
            .filter(|entry| &*entry.key().persistence_id == persistence_id)
            .filter_map(|entry| {
                let snapshot = entry.snapshot.as_ref()?;
                Some((entry.key().entity_id.to_string(), snapshot.sequence_nr))
            })
            .collect::<Vec<_>>();
        let values = self
            .values
            .iter()
            .filter(|entry| &*entry.key().persistence_id == persistence_id)
            .map(|entry| (entry.key().entity_id.to_string(), entry.version))
            .collect::<Vec<_>>();
        Ok(merge_summaries(journals, snapshots, values))
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError> {
        let (snapshot, events) = match self.journals.get(key) {
            Some(journal) => (journal.snapshot.clone(), journal.events.clone()),
            None => (None, Vec::new()),
        };
        Ok(StoredEntity {
            snapshot,
            events,
            value: self.values.get(key).map(|value| value.clone()),
        })
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

#[async_trait]
impl ShardLeases for MemoryStore {
    async fn prepare(&self, shards: u32) -> Result<(), StoreError> {
        let mut leases = self.write_leases();
        if leases.len() == shards as usize {
            return Ok(());
        }
        let now = self.clock.now();
        if !leases.is_empty()
            && leases
                .iter()
                .any(|row| row.expires_at > now && row.owner.is_some())
        {
            return Err(StoreError::ShardCount {
                stored: leases.len() as u32,
                requested: shards,
            });
        }
        // Epochs keep growing across a change of the count, so no old fence matches again.
        let epoch = leases.iter().map(|row| row.epoch).max().unwrap_or(0);
        *leases = vec![
            LeaseRow {
                owner: None,
                epoch,
                expires_at: Duration::ZERO,
            };
            shards as usize
        ];
        Ok(())
    }

    async fn acquire(
        &self,
        owner: &str,
        shards: &[ShardId],
        ttl: Duration,
    ) -> Result<Vec<(ShardId, u64)>, StoreError> {
        let mut leases = self.write_leases();
        let now = self.clock.now();
        let owner: Arc<str> = Arc::from(owner);
        let mut taken = Vec::new();
        for &shard in shards {
            let Some(row) = leases.get_mut(shard as usize) else {
                continue;
            };
            if row.owner.is_some() && row.expires_at > now {
                continue;
            }
            row.owner = Some(owner.clone());
            row.epoch += 1;
            row.expires_at = now + ttl;
            taken.push((shard, row.epoch));
        }
        Ok(taken)
    }

    async fn renew(
        &self,
        owner: &str,
        held: &[(ShardId, u64)],
        ttl: Duration,
    ) -> Result<Vec<ShardId>, StoreError> {
        let mut leases = self.write_leases();
        let now = self.clock.now();
        let mut renewed = Vec::new();
        for &(shard, epoch) in held {
            if let Some(row) = leases.get_mut(shard as usize)
                && row.held_by(owner, epoch, now)
            {
                row.expires_at = now + ttl;
                renewed.push(shard);
            }
        }
        Ok(renewed)
    }

    async fn release(
        &self,
        owner: &str,
        held: &[(ShardId, u64)],
    ) -> Result<Vec<ShardId>, StoreError> {
        let mut leases = self.write_leases();
        let mut released = Vec::new();
        for &(shard, epoch) in held {
            if let Some(row) = leases.get_mut(shard as usize)
                && row.owner.as_deref() == Some(owner)
                && row.epoch == epoch
            {
                row.owner = None;
                row.expires_at = Duration::ZERO;
                released.push(shard);
            }
        }
        Ok(released)
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let leases = self.read_leases();
        let now = self.clock.now();
        Ok(leases
            .iter()
            .zip(0..)
            .map(|(row, shard)| Lease {
                shard,
                owner: row.owner.clone(),
                epoch: row.epoch,
                remaining: row
                    .owner
                    .as_ref()
                    .map(|_| row.expires_at.saturating_sub(now)),
            })
            .collect())
    }
}
