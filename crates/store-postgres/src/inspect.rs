//! Inspection ([`Inspect`]) of a PostgreSQL store: each listing is one statement, so it shows
//! one consistent view, read on the store's read connections; and [`PostgresReader`], which
//! opens a store's database only to read it (`cloudstate-proxy inspect`).

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use cloudstate_store::{
    EntityKey, EntitySummary, Event, Inspect, Snapshot, StoreError, StoredEntity, Value,
    merge_summaries,
};
use sqlx::Row;
use sqlx::postgres::PgConnectOptions;

use crate::connection::{Connector, Pool};
use crate::{Error, PostgresOptions, PostgresStore, SCHEMA_VERSION, decode};

/// A store's database opened only to read it: one connection whose session is read-only (the
/// server refuses any write), no migrations, no writers. Safe beside running proxies.
pub struct PostgresReader {
    reads: Pool,
    connector: Arc<Connector>,
}

impl std::fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReader")
            .field("address", &self.connector.address)
            .finish_non_exhaustive()
    }
}

impl PostgresReader {
    /// Connects to the database at `url` (as [`PostgresStore::connect`]) with the timeouts of
    /// `options`. Fails if it cannot connect, if no proxy has set up the store's tables in that
    /// database, or if their schema is newer than [`SCHEMA_VERSION`].
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<Self, Error> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Url(
                "expected postgres://user:password@host:port/database".into(),
            ));
        }
        let connect_options =
            PgConnectOptions::from_str(url).map_err(|error| Error::Url(error.to_string()))?;
        let connector = Arc::new(
            Connector::new(
                connect_options,
                options.connect_timeout,
                options.statement_timeout,
            )
            .read_only(),
        );
        let address = connector.address.clone();
        let connect = |error| Error::Connect {
            address: address.clone(),
            error,
        };
        let mut connection = connector.connect().await.map_err(connect)?;
        let exists: bool =
            sqlx::query("SELECT to_regclass('cloudstate_schema_version') IS NOT NULL")
                .fetch_one(&mut connection)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(connect)?;
        if !exists {
            return Err(Error::NoStore { address });
        }
        let found: i32 =
            sqlx::query("SELECT coalesce(max(version), 0)::integer FROM cloudstate_schema_version")
                .fetch_one(&mut connection)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(connect)?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew { address, found });
        }
        let reads = Pool::new(connector.clone(), 1, options.acquire_timeout);
        reads.give(connection);
        Ok(PostgresReader { reads, connector })
    }

    /// `host:port/database` of the server.
    pub fn address(&self) -> &str {
        &self.connector.address
    }
}

#[async_trait]
impl Inspect for PostgresReader {
    async fn list_entities(&self, persistence_id: &str) -> Result<Vec<EntitySummary>, StoreError> {
        list_entities(&self.reads, &self.connector, persistence_id).await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError> {
        read_entity(&self.reads, &self.connector, key).await
    }
}

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
        list_entities(&self.reads, &self.connector, persistence_id).await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError> {
        read_entity(&self.reads, &self.connector, key).await
    }
}

async fn list_entities(
    reads: &Pool,
    connector: &Connector,
    persistence_id: &str,
) -> Result<Vec<EntitySummary>, StoreError> {
    let mut lease = reads.acquire().await?;
    let query = sqlx::query(LIST_ENTITIES)
        .bind(persistence_id.as_bytes())
        .fetch_all(lease.connection());
    let rows = connector
        .bounded(query)
        .await
        .map_err(|error| reads.failure("listing entities", error))?;
    lease.release();
    let address = &connector.address;
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

async fn read_entity(
    reads: &Pool,
    connector: &Connector,
    key: &EntityKey,
) -> Result<StoredEntity, StoreError> {
    let mut lease = reads.acquire().await?;
    let query = sqlx::query(READ_ENTITY)
        .bind(key.persistence_id.as_bytes())
        .bind(key.entity_id.as_bytes())
        .fetch_all(lease.connection());
    let rows = connector
        .bounded(query)
        .await
        .map_err(|error| reads.failure("reading an entity", error))?;
    lease.release();
    let address = &connector.address;
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
