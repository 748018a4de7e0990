//! Shard leases in the `shard_leases` table (cluster mode): one row per shard with its owner,
//! epoch and expiry. The database's clock (`now()`) decides expiry, so the nodes' clocks need
//! not agree. Taking leases locks the rows in shard order and skips rows a fenced write holds
//! (`FOR UPDATE SKIP LOCKED`), so it never waits behind writes and never deadlocks with
//! another node taking leases.

use std::time::Duration;

use async_trait::async_trait;
use cloudstate_store::{Lease, ShardId, ShardLeases, StoreError};
use sqlx::{PgConnection, Row};

use crate::PostgresStore;

/// The key of the transaction-level advisory lock that serialises setting up the leases:
/// "shardlse".
const PREPARE_LOCK: i64 = 0x7368_6172_646c_7365;

const ACQUIRE: &str = "
WITH free AS (
    SELECT shard FROM shard_leases
    WHERE shard = ANY($2::integer[]) AND (owner IS NULL OR expires_at <= now())
    ORDER BY shard
    FOR UPDATE SKIP LOCKED
)
UPDATE shard_leases l
SET owner = $1, epoch = l.epoch + 1, expires_at = now() + $3::bigint * interval '1 millisecond',
    changed_at = now()
FROM free WHERE l.shard = free.shard
RETURNING l.shard, l.epoch";

const RENEW: &str = "
UPDATE shard_leases l
SET expires_at = now() + $4::bigint * interval '1 millisecond'
FROM unnest($2::integer[], $3::bigint[]) AS h(shard, epoch)
WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1 AND l.expires_at > now()
RETURNING l.shard";

const RELEASE: &str = "
UPDATE shard_leases l
SET owner = NULL, expires_at = NULL, changed_at = now()
FROM unnest($2::integer[], $3::bigint[]) AS h(shard, epoch)
WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1
RETURNING l.shard";

const LEASES: &str = "
SELECT shard, owner, epoch,
       CASE WHEN owner IS NULL THEN NULL
            ELSE greatest(0, ceil(extract(epoch FROM expires_at - now()) * 1000))::bigint END
FROM shard_leases ORDER BY shard";

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn shard_ids(held: &[(ShardId, u64)]) -> (Vec<i32>, Vec<i64>) {
    held.iter()
        .map(|&(shard, epoch)| (shard as i32, i64::try_from(epoch).unwrap_or(-1)))
        .unzip()
}

fn shards_of(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<ShardId>, sqlx::Error> {
    let mut shards = rows
        .iter()
        .map(|row| Ok(row.try_get::<i32, _>(0)? as ShardId))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    shards.sort_unstable();
    Ok(shards)
}

impl PostgresStore {
    /// Runs one lease statement on a read connection, bounded like every statement.
    async fn lease_statement(
        &self,
        what: &str,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        let mut lease = self.reads.acquire().await?;
        let rows = self
            .connector
            .bounded(query.fetch_all(lease.connection()))
            .await
            .map_err(|error| self.reads.failure(what, error))?;
        lease.release();
        Ok(rows)
    }
}

/// Sets up the leases of `shards` shards in one transaction (see [`ShardLeases::prepare`]).
async fn prepare(connection: &mut PgConnection, shards: u32) -> Result<Option<u32>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PREPARE_LOCK)
        .execute(&mut *connection)
        .await?;
    let row = sqlx::query(
        "SELECT count(*), count(*) FILTER (WHERE owner IS NOT NULL AND expires_at > now()),
                coalesce(max(epoch), 0)
         FROM shard_leases",
    )
    .fetch_one(&mut *connection)
    .await?;
    let (count, held, epoch): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if count == i64::from(shards) {
        return Ok(None);
    }
    if count > 0 && held > 0 {
        return Ok(Some(count as u32));
    }
    // Epochs keep growing across a change of the count, so no old fence matches again.
    sqlx::query("DELETE FROM shard_leases")
        .execute(&mut *connection)
        .await?;
    sqlx::query(
        "INSERT INTO shard_leases (shard, epoch) SELECT s, $2 FROM generate_series(0, $1 - 1) AS s",
    )
    .bind(shards as i32)
    .bind(epoch)
    .execute(&mut *connection)
    .await?;
    Ok(None)
}

#[async_trait]
impl ShardLeases for PostgresStore {
    async fn prepare(&self, shards: u32) -> Result<(), StoreError> {
        if shards == 0 || shards > i32::MAX as u32 {
            return Err(StoreError::Unavailable(format!(
                "cannot set up {shards} shards"
            )));
        }
        let mut lease = self.reads.acquire().await?;
        let connection = lease.connection();
        let result = self
            .connector
            .bounded(async {
                sqlx::raw_sql("BEGIN").execute(&mut *connection).await?;
                match prepare(connection, shards).await {
                    Ok(outcome) => {
                        sqlx::raw_sql("COMMIT").execute(&mut *connection).await?;
                        Ok(outcome)
                    }
                    Err(error) => {
                        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
                        Err(error)
                    }
                }
            })
            .await
            .map_err(|error| self.reads.failure("setting up the shard leases", error))?;
        lease.release();
        match result {
            None => Ok(()),
            Some(stored) => Err(StoreError::ShardCount {
                stored,
                requested: shards,
            }),
        }
    }

    async fn acquire(
        &self,
        owner: &str,
        shards: &[ShardId],
        ttl: Duration,
    ) -> Result<Vec<(ShardId, u64)>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i32> = shards.iter().map(|&shard| shard as i32).collect();
        let query = sqlx::query(ACQUIRE).bind(owner).bind(ids).bind(millis(ttl));
        let rows = self.lease_statement("taking shard leases", query).await?;
        let mut taken = rows
            .iter()
            .map(|row| {
                let shard: i32 = row.try_get(0)?;
                let epoch: i64 = row.try_get(1)?;
                Ok((shard as ShardId, epoch as u64))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|error| StoreError::Corrupt(format!("shard leases: {error}")))?;
        taken.sort_unstable();
        Ok(taken)
    }

    async fn renew(
        &self,
        owner: &str,
        held: &[(ShardId, u64)],
        ttl: Duration,
    ) -> Result<Vec<ShardId>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (shards, epochs) = shard_ids(held);
        let query = sqlx::query(RENEW)
            .bind(owner)
            .bind(shards)
            .bind(epochs)
            .bind(millis(ttl));
        let rows = self.lease_statement("renewing shard leases", query).await?;
        shards_of(&rows).map_err(|error| StoreError::Corrupt(format!("shard leases: {error}")))
    }

    async fn release(
        &self,
        owner: &str,
        held: &[(ShardId, u64)],
    ) -> Result<Vec<ShardId>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let (shards, epochs) = shard_ids(held);
        let query = sqlx::query(RELEASE).bind(owner).bind(shards).bind(epochs);
        let rows = self
            .lease_statement("releasing shard leases", query)
            .await?;
        shards_of(&rows).map_err(|error| StoreError::Corrupt(format!("shard leases: {error}")))
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        let rows = self
            .lease_statement("reading shard leases", sqlx::query(LEASES))
            .await?;
        rows.iter()
            .map(|row| {
                let shard: i32 = row.try_get(0)?;
                let owner: Option<String> = row.try_get(1)?;
                let epoch: i64 = row.try_get(2)?;
                let remaining: Option<i64> = row.try_get(3)?;
                Ok(Lease {
                    shard: shard as ShardId,
                    owner: owner.map(Into::into),
                    epoch: epoch as u64,
                    remaining: remaining.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|error| StoreError::Corrupt(format!("shard leases: {error}")))
    }
}
