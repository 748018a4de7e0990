//! The schema, as embedded, versioned migrations applied at connect.

use sqlx::{PgConnection, Row};

/// One step of the schema: applied once, in order, recorded in `cloudstate_schema_version`.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Append new ones; never change one that has shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "journal, snapshots and value entities",
        sql: "
CREATE TABLE journal (
    persistence_id bytea NOT NULL,
    entity_id bytea NOT NULL,
    sequence_nr bigint NOT NULL CHECK (sequence_nr > 0),
    type_url bytea NOT NULL,
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (persistence_id, entity_id, sequence_nr)
);
CREATE TABLE snapshots (
    persistence_id bytea NOT NULL,
    entity_id bytea NOT NULL,
    sequence_nr bigint NOT NULL CHECK (sequence_nr > 0),
    type_url bytea NOT NULL,
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (persistence_id, entity_id)
);
CREATE TABLE value_entities (
    persistence_id bytea NOT NULL,
    entity_id bytea NOT NULL,
    version bigint NOT NULL CHECK (version > 0),
    type_url bytea NOT NULL,
    payload bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (persistence_id, entity_id)
);
",
    },
    Migration {
        version: 2,
        description: "event logs: an offset per event in its persistence id's log, consumers' positions",
        sql: "
CREATE TABLE event_log_heads (
    persistence_id bytea PRIMARY KEY,
    last_offset bigint NOT NULL CHECK (last_offset > 0)
);
ALTER TABLE journal ADD COLUMN log_offset bigint;
UPDATE journal j SET log_offset = o.n
FROM (
    SELECT persistence_id, entity_id, sequence_nr,
           row_number() OVER (PARTITION BY persistence_id
                              ORDER BY written_at, entity_id, sequence_nr) AS n
    FROM journal
) o
WHERE j.persistence_id = o.persistence_id AND j.entity_id = o.entity_id
  AND j.sequence_nr = o.sequence_nr;
INSERT INTO event_log_heads (persistence_id, last_offset)
SELECT persistence_id, max(log_offset) FROM journal GROUP BY persistence_id;
ALTER TABLE journal ALTER COLUMN log_offset SET NOT NULL;
CREATE UNIQUE INDEX journal_event_log ON journal (persistence_id, log_offset);
CREATE TABLE event_log_positions (
    consumer bytea PRIMARY KEY,
    log_offset bigint NOT NULL CHECK (log_offset >= 0),
    generation bigint NOT NULL CHECK (generation >= 0),
    written_at timestamptz NOT NULL DEFAULT now()
);
",
    },
    Migration {
        version: 3,
        description: "shard leases",
        sql: "
CREATE TABLE shard_leases (
    shard integer PRIMARY KEY CHECK (shard >= 0),
    owner text,
    epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires_at timestamptz,
    changed_at timestamptz NOT NULL DEFAULT now()
);
",
    },
];

/// The schema version this build creates and expects.
pub const SCHEMA_VERSION: i32 = 3;

/// Why the migrations could not run.
pub(crate) enum MigrationError {
    /// The database failed.
    Database(sqlx::Error),
    /// The database's schema is newer than this build.
    TooNew(i32),
}

impl From<sqlx::Error> for MigrationError {
    fn from(error: sqlx::Error) -> Self {
        MigrationError::Database(error)
    }
}

/// The key of the transaction-level advisory lock that serialises migrations: "cloudsta".
const MIGRATION_LOCK: i64 = 0x636c_6f75_6473_7461;

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, under an advisory lock so
/// that stores starting together take turns (the later ones find nothing left to do). An error
/// rolls everything back.
pub(crate) async fn migrate(connection: &mut PgConnection) -> Result<(), MigrationError> {
    sqlx::raw_sql("BEGIN").execute(&mut *connection).await?;
    match apply(connection).await {
        Ok(()) => {
            sqlx::raw_sql("COMMIT").execute(&mut *connection).await?;
            Ok(())
        }
        Err(error) => {
            // The connection is dropped by the caller after an error; this is a courtesy.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
            Err(error)
        }
    }
}

async fn apply(connection: &mut PgConnection) -> Result<(), MigrationError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *connection)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS cloudstate_schema_version (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *connection)
    .await?;
    let found: i32 =
        sqlx::query("SELECT coalesce(max(version), 0)::integer FROM cloudstate_schema_version")
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(MigrationError::TooNew(found));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        sqlx::raw_sql(migration.sql)
            .execute(&mut *connection)
            .await?;
        sqlx::query("INSERT INTO cloudstate_schema_version (version, description) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *connection)
            .await?;
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "applied a PostgreSQL schema migration"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_to_the_schema_version() {
        for (migration, version) in MIGRATIONS.iter().zip(1..) {
            assert_eq!(migration.version, version);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
