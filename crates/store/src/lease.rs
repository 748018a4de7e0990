//! Shard leases: who owns which shard, with epochs, and the fence a writer shows.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;

/// A shard number, `0..shard count`.
pub type ShardId = u32;

/// What a node shows with a write in cluster mode: "I own `shard` at `epoch`". The store
/// checks it against the shard's lease in the write's transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The shard of the written entity.
    pub shard: ShardId,
    /// The writing node's id.
    pub owner: Arc<str>,
    /// The epoch of the writer's lease on the shard.
    pub epoch: u64,
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} held by {} at epoch {}",
            self.shard, self.owner, self.epoch
        )
    }
}

/// A shard's lease as the store has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The shard.
    pub shard: ShardId,
    /// The node holding the lease; `None` if it was released or never taken.
    pub owner: Option<Arc<str>>,
    /// Grows by one every time the lease is taken; 0 if it never was.
    pub epoch: u64,
    /// How long the lease has left by the store's clock when it was read; `None` if nobody
    /// holds it, zero if it has expired (and may be taken over).
    pub remaining: Option<Duration>,
}

impl Lease {
    /// The owner, if the lease is held and has not expired.
    pub fn holder(&self) -> Option<&Arc<str>> {
        match self.remaining {
            Some(remaining) if !remaining.is_zero() => self.owner.as_ref(),
            _ => None,
        }
    }
}

/// The shard leases of a cluster, kept by a store every node shares. The store's clock decides
/// expiry; each operation is atomic.
///
/// Guarantees (checked by the storage test suite):
/// - a lease is taken only if it is free or expired, and taking it bumps its epoch;
/// - renewing and releasing need the holder's id and epoch, so a node cannot extend or drop a
///   lease that was taken over;
/// - a fenced write commits only while its fence matches the lease (owner, epoch, unexpired),
///   and taking a lease waits for fenced writes in progress on it.
#[async_trait]
pub trait ShardLeases: Send + Sync {
    /// Makes sure there is a lease for each of `shards` shards. Fails with
    /// [`StoreError::ShardCount`] if the leases were set up for another count and any is held;
    /// if none is held, the leases are set up anew for `shards` (epochs keep growing).
    async fn prepare(&self, shards: u32) -> Result<(), StoreError>;

    /// Takes each of `shards` that is free or expired for `owner`, for `ttl`; returns the
    /// shards taken with their new epochs. Shards that are held, or busy with a write, are
    /// skipped.
    async fn acquire(
        &self,
        owner: &str,
        shards: &[ShardId],
        ttl: Duration,
    ) -> Result<Vec<(ShardId, u64)>, StoreError>;

    /// Extends `owner`'s unexpired leases on `held` (shard, epoch) to `ttl` from now; returns
    /// the shards renewed. A shard missing from the answer is lost.
    async fn renew(
        &self,
        owner: &str,
        held: &[(ShardId, u64)],
        ttl: Duration,
    ) -> Result<Vec<ShardId>, StoreError>;

    /// Gives up `owner`'s leases on `held` (shard, epoch), so another node can take them at
    /// once; returns the shards released.
    async fn release(
        &self,
        owner: &str,
        held: &[(ShardId, u64)],
    ) -> Result<Vec<ShardId>, StoreError>;

    /// Every lease, by shard.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;
}

/// A source of monotonic time, so that lease expiry in [`MemoryStore`](crate::MemoryStore) can
/// follow a simulated clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin; never goes backwards.
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}
