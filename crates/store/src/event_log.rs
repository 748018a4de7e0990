//! Event logs: every event of one persistence id, across all of its entities, in commit order,
//! for consumers (projections, eventing subscriptions) that must resume where they stopped.
//!
//! Every append gives its events the next **offsets** of their persistence id's log (1, 2, 3,
//! ...), inside the append's write transaction, so that offsets follow commit order: a reader
//! that has seen offset `n` has seen every event with a smaller offset, and an event committed
//! later always gets a larger one. A consumer remembers the offset it has processed up to in
//! the store, under an [`OffsetLease`] that only one consumer holds at a time (on PostgreSQL,
//! across every proxy using the database).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::watch;

use crate::{Any, EntityKey, StoreError};

/// One event of an event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Position in its persistence id's log, starting at 1, in commit order.
    pub offset: u64,
    /// The entity that emitted it.
    pub key: EntityKey,
    /// Its sequence number in that entity's journal.
    pub sequence_nr: u64,
    /// The event as the user function emitted it.
    pub payload: Any,
}

/// Where a consumer of an event log stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Every event up to and including this offset has been processed (0: none).
    pub offset: u64,
    /// How many times the consumer was rebuilt (reset to offset 0); lets a read model tell a
    /// rebuild from a redelivery.
    pub generation: u64,
}

/// The exclusive right to consume one event log under one name, and to move its position.
///
/// Dropping the lease releases it. A lease can be lost without being dropped (on PostgreSQL:
/// its connection broke, so another proxy may have taken it): then [`OffsetLease::save`]
/// fails, and the consumer must stop and take a new lease.
#[async_trait]
pub trait OffsetLease: Send + Sync {
    /// The consumer's stored position (offset 0, generation 0 if none was saved).
    async fn position(&mut self) -> Result<Position, StoreError>;

    /// Stores the consumer's position durably; fails with [`StoreError::Unavailable`] if the
    /// lease was lost.
    async fn save(&mut self, position: Position) -> Result<(), StoreError>;
}

/// The last offset appended to each event log by this process, for readers to wait on
/// instead of polling. Stores update it after each commit.
#[derive(Debug, Default)]
pub struct EventLogWatch {
    heads: DashMap<Arc<str>, watch::Sender<u64>>,
}

impl EventLogWatch {
    /// A receiver that changes whenever events of `persistence_id` are committed by this
    /// process. Its value is a hint (the last offset committed here), never a promise about
    /// other processes' writes.
    pub fn subscribe(&self, persistence_id: &str) -> watch::Receiver<u64> {
        if let Some(sender) = self.heads.get(persistence_id) {
            return sender.subscribe();
        }
        self.heads
            .entry(Arc::from(persistence_id))
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Records that events of `persistence_id` up to `last_offset` are committed.
    pub fn advance(&self, persistence_id: &str, last_offset: u64) {
        if let Some(sender) = self.heads.get(persistence_id) {
            sender.send_if_modified(|head| {
                let advanced = last_offset > *head;
                *head = (*head).max(last_offset);
                advanced
            });
        }
    }
}

/// Leases of a store that only one process uses (memory, embedded): exclusive within the
/// process.
#[derive(Debug, Default, Clone)]
pub struct LocalLeases {
    held: Arc<Mutex<HashSet<String>>>,
}

impl LocalLeases {
    /// Takes the lease of `consumer` unless it is held; the guard gives it back when dropped.
    pub fn try_take(&self, consumer: &str) -> Option<LocalLeaseGuard> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(consumer.to_owned()).then(|| LocalLeaseGuard {
            leases: self.clone(),
            consumer: consumer.to_owned(),
        })
    }
}

/// A lease taken from [`LocalLeases`]; released when dropped.
#[derive(Debug)]
pub struct LocalLeaseGuard {
    leases: LocalLeases,
    consumer: String,
}

impl LocalLeaseGuard {
    /// The consumer whose lease this is.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }
}

impl Drop for LocalLeaseGuard {
    fn drop(&mut self) {
        let mut held = self.leases.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.consumer);
    }
}
