//! Inspection ([`Inspect`]) of a PostgreSQL store: each listing is one statement, so it shows
//! one consistent view, read on the store's read connections.

use async_trait::async_trait;
use cloudstate_store::{
    EntityKey, EntitySummary, Event, Inspect, Snapshot, StoreError, StoredEntity, Value,
    merge_summaries,
};
use sqlx::Row;

use crate::{PostgresStore, decode};

/// Per entity of a persistence id: `(0, entity id, last sequence number)` of journals,
/// `(1, entity id, sequence number)` of snapshots, `(2, entity id, version)` of values.
const LIST_ENTITIES: &str = "
SELECT 0, entity_id, max(sequence_nr) FROM journal WHERE persistence_id = $1 GROUP BY entity_id
UNION ALL
SELECT 1, entity_id, sequence_nr FROM snapshots WHERE persistence_id = $1
UNION ALL
SELECT 2, entity_id, version FROM value_entities WHERE persistence_id = $1";

/// Everything of one entity: its snapshot (0), its events in order (1) and its value (2).
const READ_ENTITY: &str = "
SELECT 0, sequence_nr, type_url, payload FROM snapshots
WHERE persistence_id = $1 AND entity_id = $2
UNION ALL
SELECT 1, sequence_nr, type_url, payload FROM journal
WHERE persistence_id = $1 AND entity_id = $2
UNION ALL
SELECT 2, version, type_url, payload FROM value_entities
WHERE persistence_id = $1 AND entity_id = $2
ORDER BY 1, 2";

#[async_trait]
impl Inspect for PostgresStore {
    async fn list_entities(&self, persistence_id: &str) -> Result<Vec<EntitySummary>, StoreError> {
        let mut lease = self.reads.acquire().await?;
        let query = sqlx::query(LIST_ENTITIES)
            .bind(persistence_id.as_bytes())
            .fetch_all(lease.connection());
        let rows = self
            .connector
            .bounded(query)
            .await
            .map_err(|error| self.reads.failure("listing entities", error))?;
        lease.release();
        let address = self.address();
        let corrupt = |detail: String| {
            StoreError::Corrupt(format!(
                "entities of {persistence_id} in {address}: {detail}"
            ))
        };
        let (mut journals, mut snapshots, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let kind: i32 = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
            let entity_id: Vec<u8> = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
            let entity_id = String::from_utf8(entity_id)
                .map_err(|e| corrupt(format!("an entity id is not UTF-8: {e}")))?;
            let number: i64 = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
            let number = u64::try_from(number)
                .map_err(|_| corrupt(format!("negative number {number} of {entity_id}")))?;
            match kind {
                0 => journals.push((entity_id, number)),
                1 => snapshots.push((entity_id, number)),
                _ => values.push((entity_id, number)),
            }
        }
        Ok(merge_summaries(journals, snapshots, values))
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError> {
        let mut lease = self.reads.acquire().await?;
        let query = sqlx::query(READ_ENTITY)
            .bind(key.persistence_id.as_bytes())
            .bind(key.entity_id.as_bytes())
            .fetch_all(lease.connection());
        let rows = self
            .connector
            .bounded(query)
            .await
            .map_err(|error| self.reads.failure("reading an entity", error))?;
        lease.release();
        let address = self.address();
        let mut entity = StoredEntity::default();
        for row in &rows {
            let what = || format!("stored state of {key} in {address}");
            let kind: i32 = row
                .try_get(0)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?;
            let (number, payload) = decode(row, 1, &what)?;
            match kind {
                0 => {
                    entity.snapshot = Some(Snapshot {
                        sequence_nr: number,
                        payload,
                    })
                }
                1 => {
                    let expected = entity.events.len() as u64 + 1;
                    if number != expected {
                        return Err(StoreError::Corrupt(format!(
                            "journal of {key} in {address}: expected event {expected}, found \
                             {number}"
                        )));
                    }
                    entity.events.push(Event {
                        sequence_nr: number,
                        payload,
                    });
                }
                _ => {
                    entity.value = Some(Value {
                        version: number,
                        payload,
                    })
                }
            }
        }
        Ok(entity)
    }
}
