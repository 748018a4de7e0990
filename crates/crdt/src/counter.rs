//! Grow-only and positive-negative counters.

use std::collections::BTreeMap;

use crate::{CrdtError, CrdtKind, ReplicaId};

/// A grow-only counter: per replica, the sum of that replica's increments; the value is the
/// sum over replicas. The join takes the maximum per replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GCounter {
    counts: BTreeMap<ReplicaId, u64>,
}

impl GCounter {
    /// The counter's value, saturating at `u64::MAX` (which only concurrent increments on
    /// several replicas can exceed).
    pub fn value(&self) -> u64 {
        u64::try_from(self.total()).unwrap_or(u64::MAX)
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &GCounter) {
        for (replica, &count) in &other.counts {
            let mine = self.counts.entry(replica.clone()).or_default();
            *mine = (*mine).max(count);
        }
    }

    fn total(&self) -> u128 {
        self.counts.values().map(|&count| u128::from(count)).sum()
    }

    fn count(&self, replica: &ReplicaId) -> u64 {
        self.counts.get(replica).copied().unwrap_or(0)
    }

    /// The delta of adding `amount` to `replica`'s count (empty for 0), after checking that
    /// the value stays within a `u64`.
    fn add(&self, replica: &ReplicaId, amount: u64, kind: CrdtKind) -> Result<GCounter, CrdtError> {
        if amount == 0 {
            return Ok(GCounter::default());
        }
        if self.total() + u128::from(amount) > u128::from(u64::MAX) {
            return Err(CrdtError::Overflow(kind));
        }
        // Cannot overflow: the replica's count is part of the total just checked.
        let count = self.count(replica).saturating_add(amount);
        Ok(GCounter {
            counts: BTreeMap::from([(replica.clone(), count)]),
        })
    }

    /// The delta of `GCounterDelta { increment }` from `replica`.
    pub(crate) fn mutation(
        &self,
        replica: &ReplicaId,
        increment: u64,
    ) -> Result<GCounter, CrdtError> {
        self.add(replica, check_increment(increment)?, CrdtKind::GCounter)
    }
}

/// Refuses increments that a user function with signed integers meant as negative, as the
/// original proxy (which read the field as a signed long) did.
pub(crate) fn check_increment(increment: u64) -> Result<u64, CrdtError> {
    match i64::try_from(increment) {
        Ok(_) => Ok(increment),
        Err(_) => Err(CrdtError::NegativeIncrement(increment.cast_signed())),
    }
}

/// A counter that goes both ways: two grow-only counters, one of increments and one of
/// decrements; the value is their difference. The join joins both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PNCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PNCounter {
    /// The counter's value, clamped to the `i64` range (which only concurrent changes on
    /// several replicas can leave).
    pub fn value(&self) -> i64 {
        let value = to_i128(self.increments.total()) - to_i128(self.decrements.total());
        i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &PNCounter) {
        self.increments.merge(&other.increments);
        self.decrements.merge(&other.decrements);
    }

    /// The delta of `PNCounterDelta { change }` from `replica`, after checking that the
    /// value stays within an `i64`.
    pub(crate) fn mutation(
        &self,
        replica: &ReplicaId,
        change: i64,
    ) -> Result<PNCounter, CrdtError> {
        let kind = CrdtKind::PNCounter;
        let value = to_i128(self.increments.total()) - to_i128(self.decrements.total());
        if i64::try_from(value + i128::from(change)).is_err() {
            return Err(CrdtError::Overflow(kind));
        }
        let amount = change.unsigned_abs();
        Ok(if change >= 0 {
            PNCounter {
                increments: self.increments.add(replica, amount, kind)?,
                decrements: GCounter::default(),
            }
        } else {
            PNCounter {
                increments: GCounter::default(),
                decrements: self.decrements.add(replica, amount, kind)?,
            }
        })
    }
}

/// A sum of `u64`s over replicas fits an `i128` unless there are more than 2^63 replicas.
fn to_i128(total: u128) -> i128 {
    i128::try_from(total).unwrap_or(i128::MAX)
}
