//! Read-only views of what a store holds, for debugging (`cloudstate-proxy inspect`): which
//! entities a persistence id has, and everything stored for one of them.

use async_trait::async_trait;

use crate::{EntityKey, Event, Snapshot, StoreError, Value};

/// What is stored for one entity of a persistence id, in brief.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntitySummary {
    /// The entity id.
    pub entity_id: String,
    /// The sequence number of its last event (0: no events).
    pub last_sequence_nr: u64,
    /// The sequence number of its snapshot, if it has one.
    pub snapshot_sequence_nr: Option<u64>,
    /// The version of its value, if it has one (a value entity).
    pub value_version: Option<u64>,
}

/// Everything stored for one entity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredEntity {
    /// Its latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Every event of its journal, from the first (events are never removed), in order.
    pub events: Vec<Event>,
    /// Its value, if it is a value entity with one.
    pub value: Option<Value>,
}

/// Reads what a store holds without changing it. Every backend implements it; the storage
/// test suite checks it against what was written.
#[async_trait]
pub trait Inspect: Send + Sync {
    /// The entities of `persistence_id` that have events, a snapshot or a value, sorted by
    /// entity id.
    async fn list_entities(&self, persistence_id: &str) -> Result<Vec<EntitySummary>, StoreError>;

    /// Everything stored for `key` (empty if nothing is).
    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError>;
}

/// Merges per-entity facts into sorted summaries: `journals` gives `(entity id, last sequence
/// number)`, `snapshots` `(entity id, snapshot sequence number)`, `values` `(entity id,
/// version)`. For backends that read the three separately.
pub fn merge_summaries(
    journals: impl IntoIterator<Item = (String, u64)>,
    snapshots: impl IntoIterator<Item = (String, u64)>,
    values: impl IntoIterator<Item = (String, u64)>,
) -> Vec<EntitySummary> {
    let mut entities = std::collections::BTreeMap::<String, EntitySummary>::new();
    for (entity_id, last) in journals {
        summary(&mut entities, entity_id).last_sequence_nr = last;
    }
    for (entity_id, sequence_nr) in snapshots {
        summary(&mut entities, entity_id).snapshot_sequence_nr = Some(sequence_nr);
    }
    for (entity_id, version) in values {
        summary(&mut entities, entity_id).value_version = Some(version);
    }
    entities.into_values().collect()
}

fn summary(
    entities: &mut std::collections::BTreeMap<String, EntitySummary>,
    entity_id: String,
) -> &mut EntitySummary {
    entities
        .entry(entity_id.clone())
        .or_insert_with(|| EntitySummary {
            entity_id,
            last_sequence_nr: 0,
            snapshot_sequence_nr: None,
            value_version: None,
        })
}
