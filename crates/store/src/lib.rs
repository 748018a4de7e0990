//! The storage API of the Cloudstate proxy.
//!
//! The proxy keeps three kinds of state on behalf of entities:
//! - the **journal** of an event sourced entity: events with sequence numbers 1, 2, 3, ...;
//! - its latest **snapshot**: the state after some event, so recovery need not replay everything;
//! - the **value** of a value entity, with a version for optimistic concurrency.
//!
//! [`Store`] is the trait every backend implements ([`MemoryStore`] here, the embedded on-disk
//! store and PostgreSQL in their own crates). Guarantees every backend gives, and the shared
//! test suite (feature `testsuite`) checks:
//! - an append is atomic: all of its events and its snapshot are stored, or none;
//! - an append whose first sequence number is not exactly one past the last stored event fails
//!   with [`StoreError::Conflict`] and stores nothing: that is the fence that stops two writers
//!   from forking a journal;
//! - a successful append or value write is durable when the future resolves;
//! - a value write whose expected version is not the stored one fails with
//!   [`StoreError::Conflict`];
//! - every appended event gets the next offset of its persistence id's **event log** in the
//!   same transaction, so offsets follow commit order and a reader never sees a later offset
//!   before an earlier one ([`event_log`]);
//! - a consumer's position in an event log is stored durably, under a lease that one consumer
//!   holds at a time.
//!
//! Every backend also implements [`Inspect`], read-only listings of what it holds for
//! debugging (`cloudstate-proxy inspect`).
//!
//! # Shard leases and fencing (cluster mode)
//! In a cluster every entity key belongs to one of a fixed number of shards, and each shard has
//! at most one owner at a time, recorded by the store as a lease with an epoch
//! ([`ShardLeases`], offered by stores shared between nodes: PostgreSQL, and [`MemoryStore`]
//! for simulations). A node writes with a [`Fence`] naming the shard, itself and the epoch it
//! holds ([`Store::append_fenced`], [`Store::write_value_fenced`]): the store checks the fence
//! **inside the write's transaction** and refuses the write with [`StoreError::Fenced`] unless
//! the lease is still the writer's, with that epoch, unexpired. Taking a lease over waits for
//! fenced writes in progress on it, so once a new owner holds a shard no write of an earlier
//! owner can land. Single-node writes ([`Store::append`], [`Store::write_value`]) carry no
//! fence and do no extra work.

pub mod event_log;
mod inspect;
mod lease;
mod memory;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use std::sync::Arc;

use async_trait::async_trait;
pub use cloudstate_protocol::Any;

pub use event_log::{EventLogWatch, LoggedEvent, OffsetLease, Position};
pub use inspect::{EntitySummary, Inspect, StoredEntity, merge_summaries};
pub use lease::{Clock, Fence, Lease, ShardId, ShardLeases, SystemClock};
pub use memory::MemoryStore;

/// Addresses the state of one entity: its service's persistence id and its entity id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    /// The persistence id the user function declared for the entity's service.
    pub persistence_id: Arc<str>,
    /// The entity id (the value of the request's entity key fields).
    pub entity_id: Arc<str>,
}

impl EntityKey {
    /// A key for `entity_id` in `persistence_id`.
    pub fn new(persistence_id: impl Into<Arc<str>>, entity_id: impl Into<Arc<str>>) -> Self {
        EntityKey {
            persistence_id: persistence_id.into(),
            entity_id: entity_id.into(),
        }
    }
}

impl std::fmt::Display for EntityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}", self.persistence_id, self.entity_id)
    }
}

/// One journal event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the entity's journal, starting at 1.
    pub sequence_nr: u64,
    /// The event as the user function emitted it; stored and replayed byte for byte.
    pub payload: Any,
}

/// A snapshot of an entity's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Sequence number of the last event the snapshot includes.
    pub sequence_nr: u64,
    /// The state as the user function sent it.
    pub payload: Any,
}

/// What an event sourced entity recovers from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Every event after the snapshot (all events if there is none), in order.
    pub events: Vec<Event>,
}

impl Recovery {
    /// The sequence number of the last event in the journal (0 for an empty journal).
    pub fn last_sequence_nr(&self) -> u64 {
        self.events
            .last()
            .map(|event| event.sequence_nr)
            .or(self.snapshot.as_ref().map(|snapshot| snapshot.sequence_nr))
            .unwrap_or(0)
    }
}

/// The stored value of a value entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// Increases by one on every write; 0 means "no value".
    pub version: u64,
    /// The value as the user function sent it.
    pub payload: Any,
}

/// A change to a value entity's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueWrite {
    /// Store this value (creating it if absent).
    Update(Any),
    /// Remove the value.
    Delete,
}

/// Errors of storage operations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first: the sequence number or version did not match. Nothing
    /// was written; the caller should reload the entity.
    #[error("write conflict on {key}: {detail}")]
    Conflict {
        /// The entity whose write was rejected.
        key: EntityKey,
        /// What did not match.
        detail: String,
    },
    /// The append was not well formed (sequence numbers not consecutive, snapshot beyond the
    /// events, ...). Nothing was written.
    #[error("invalid write to {key}: {detail}")]
    InvalidWrite {
        /// The entity whose write was rejected.
        key: EntityKey,
        /// What was wrong.
        detail: String,
    },
    /// The store could not be reached or failed to complete the operation; the outcome of a
    /// write that returns this is unknown only if the backend says so in `detail`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A fenced write whose writer no longer holds the shard's lease (another node took it
    /// over, or it expired). Nothing was written; the writer must drop the shard.
    #[error("write to {key} fenced off: {detail}")]
    Fenced {
        /// The entity whose write was refused.
        key: EntityKey,
        /// Which lease did not match.
        detail: String,
    },
    /// The shard leases were set up for another number of shards, and some are held.
    #[error(
        "the cluster's store is set up for {stored} shards, not {requested}: every node must use \
         the same shard count (stop every node to change it)"
    )]
    ShardCount {
        /// The shard count the store holds leases for.
        stored: u32,
        /// The shard count asked for.
        requested: u32,
    },
}

/// A backend for journals, snapshots and values. Implementations are cheap to share
/// (`Arc<dyn Store>`) and safe to call from many entities at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Loads the latest snapshot of `key` and every event after it.
    async fn load_journal(&self, key: &EntityKey) -> Result<Recovery, StoreError>;

    /// Appends `events` (consecutive sequence numbers, the first exactly one past the last stored
    /// event) and, optionally, a snapshot taken at or before the last of them, atomically and
    /// durably. A snapshot replaces the previous one. `events` may be empty only when there is no
    /// snapshot either (then nothing happens).
    async fn append(
        &self,
        key: &EntityKey,
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
    ) -> Result<(), StoreError>;

    /// Loads the value of a value entity, `None` if it has none.
    async fn load_value(&self, key: &EntityKey) -> Result<Option<Value>, StoreError>;

    /// Writes a value entity's value if its stored version is `expected_version` (0: no value),
    /// durably. Returns the new version (0 after a delete).
    async fn write_value(
        &self,
        key: &EntityKey,
        expected_version: u64,
        write: ValueWrite,
    ) -> Result<u64, StoreError>;

    /// Like [`Store::append`], but only if `fence` is still valid when the write commits
    /// (checked in the same transaction); otherwise [`StoreError::Fenced`] and nothing is
    /// written. Stores without leases refuse every fenced write.
    async fn append_fenced(
        &self,
        key: &EntityKey,
        events: Vec<Event>,
        snapshot: Option<Snapshot>,
        fence: &Fence,
    ) -> Result<(), StoreError>;

    /// Like [`Store::write_value`], but only if `fence` is still valid when the write commits
    /// (checked in the same transaction); otherwise [`StoreError::Fenced`] and nothing is
    /// written. Stores without leases refuse every fenced write.
    async fn write_value_fenced(
        &self,
        key: &EntityKey,
        expected_version: u64,
        write: ValueWrite,
        fence: &Fence,
    ) -> Result<u64, StoreError>;

    /// The store's shard leases, if it keeps any (stores shared by the nodes of a cluster).
    fn leases(&self) -> Option<&dyn ShardLeases> {
        None
    }

    /// Succeeds if the store is reachable and answering.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The events of `persistence_id`'s event log with offsets after `after`, oldest first, at
    /// most `limit` of them. Offsets are consecutive from 1 in commit order, so the first event
    /// returned has offset `after + 1` unless there is none yet.
    async fn read_event_log(
        &self,
        persistence_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, StoreError>;

    /// Changes whenever this process commits events of `persistence_id` (its value: the last
    /// offset committed here). Other processes' writes are not seen: readers of a shared
    /// database also poll.
    fn watch_event_log(&self, persistence_id: &str) -> tokio::sync::watch::Receiver<u64>;

    /// Takes the lease of the consumer named `consumer`, with which it reads and saves its
    /// position; `None` if another consumer (in this process or, on a shared database, in
    /// another) holds it.
    async fn lease_offset(
        &self,
        consumer: &str,
    ) -> Result<Option<Box<dyn OffsetLease>>, StoreError>;
}

/// The refusal of a fenced write by a store that keeps no leases.
pub fn no_leases(key: &EntityKey, store: &str) -> StoreError {
    StoreError::InvalidWrite {
        key: key.clone(),
        detail: format!(
            "{store} keeps no shard leases, so it cannot fence writes: a cluster needs a store \
             shared by its nodes (PostgreSQL)"
        ),
    }
}

/// Checks the shape of an append before a backend writes it: consecutive sequence numbers
/// starting right after `last_sequence_nr`, and a snapshot no later than the last event.
/// Backends call this inside their write transaction, with the stored last sequence number.
pub fn check_append(
    key: &EntityKey,
    last_sequence_nr: u64,
    events: &[Event],
    snapshot: Option<&Snapshot>,
) -> Result<(), StoreError> {
    let invalid = |detail: String| StoreError::InvalidWrite {
        key: key.clone(),
        detail,
    };
    let Some(first) = events.first() else {
        return match snapshot {
            Some(_) => Err(invalid("a snapshot without events".into())),
            None => Ok(()),
        };
    };
    if first.sequence_nr != last_sequence_nr + 1 {
        return Err(StoreError::Conflict {
            key: key.clone(),
            detail: format!(
                "append starts at sequence number {} but the journal ends at {}",
                first.sequence_nr, last_sequence_nr
            ),
        });
    }
    for (expected, event) in (first.sequence_nr..).zip(events) {
        if event.sequence_nr != expected {
            return Err(invalid(format!(
                "sequence numbers are not consecutive: expected {expected}, got {}",
                event.sequence_nr
            )));
        }
    }
    let last = first.sequence_nr + events.len() as u64 - 1;
    if let Some(snapshot) = snapshot
        && (snapshot.sequence_nr > last || snapshot.sequence_nr == 0)
    {
        return Err(invalid(format!(
            "snapshot at sequence number {} but the events end at {last}",
            snapshot.sequence_nr
        )));
    }
    Ok(())
}
