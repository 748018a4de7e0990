//! Inspection ([`Inspect`]) of an embedded store: the open store's own, and [`ReadOnlyStore`],
//! which opens a store's file only to read it (`cloudstate-proxy inspect`).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use cloudstate_store::{EntityKey, EntitySummary, Inspect, StoreError, StoredEntity};
use redb::{DatabaseError, ReadOnlyDatabase, ReadableDatabase};

use crate::layout::{self, Failure, META};
use crate::{EmbeddedStore, Error, FILE_NAME, FORMAT_VERSION};

#[async_trait]
impl Inspect for EmbeddedStore {
    async fn list_entities(&self, persistence_id: &str) -> Result<Vec<EntitySummary>, StoreError> {
        let persistence_id = persistence_id.to_owned();
        self.read(move |transaction, location| {
            layout::entity_summaries(transaction, &persistence_id, location)
        })
        .await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError> {
        let key = key.clone();
        self.read(move |transaction, location| layout::stored_entity(transaction, &key, location))
            .await
    }
}

/// An embedded store's file opened read-only: nothing is created, upgraded, repaired or
/// written. redb lets a file be opened read-only by any number of processes, but not while a
/// process (a running proxy) has it open to write: then [`ReadOnlyStore::open`] fails with
/// [`Error::Locked`].
pub struct ReadOnlyStore {
    db: Arc<ReadOnlyDatabase>,
    location: String,
}

impl std::fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyStore {
    /// Opens the store in `dir` to read it. Fails if there is no store there, if a process has
    /// it open to write, if it was not closed cleanly (only a writer repairs it) or if it is not
    /// of this build's [`FORMAT_VERSION`].
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(Error::Missing { path });
        }
        let db = ReadOnlyDatabase::open(&path).map_err(|source| match source {
            DatabaseError::DatabaseAlreadyOpen => Error::Locked { path: path.clone() },
            DatabaseError::RepairAborted => Error::NeedsRepair { path: path.clone() },
            source => Error::Open {
                path: path.clone(),
                source,
            },
        })?;
        let prepare = |source: redb::Error| Error::Prepare {
            path: path.clone(),
            source,
        };
        let transaction = db.begin_read().map_err(|e| prepare(e.into()))?;
        let found = match transaction.open_table(META) {
            Ok(meta) => meta
                .get(layout::FORMAT_VERSION_KEY)
                .map_err(|e| prepare(e.into()))?
                .map(|version| version.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(prepare(error.into())),
        };
        drop(transaction);
        match found {
            Some(FORMAT_VERSION) => Ok(ReadOnlyStore {
                db: Arc::new(db),
                location: path.display().to_string(),
            }),
            found => Err(Error::Format {
                path,
                found: found.unwrap_or(0),
            }),
        }
    }

    /// The path of the database file.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `read` in a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction, &str) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (db, location) = (self.db.clone(), self.location.clone());
        let result = tokio::task::spawn_blocking(move || {
            let transaction = db.begin_read().map_err(Failure::from)?;
            read(&transaction, &location)
        })
        .await
        .map_err(|error| {
            StoreError::Unavailable(format!("a read of {} failed: {error}", self.location))
        })?;
        result.map_err(|failure| match failure {
            Failure::Refused(error) => error,
            Failure::Storage(error) => {
                StoreError::Unavailable(format!("cannot read {}: {error}", self.location))
            }
        })
    }
}

#[async_trait]
impl Inspect for ReadOnlyStore {
    async fn list_entities(&self, persistence_id: &str) -> Result<Vec<EntitySummary>, StoreError> {
        let persistence_id = persistence_id.to_owned();
        self.read(move |transaction, location| {
            layout::entity_summaries(transaction, &persistence_id, location)
        })
        .await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<StoredEntity, StoreError> {
        let key = key.clone();
        self.read(move |transaction, location| layout::stored_entity(transaction, &key, location))
            .await
    }
}
