//! Last-writer-wins registers.

use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::{CrdtClock, LwwRegisterDelta};

use crate::{Clock, CrdtError, ReplicaId, any};

/// A last-writer-wins register of an `Any` value.
///
/// A write carries a timestamp from the clock the user function chose, and the replica that
/// made it. Writes are totally ordered by (timestamp, replica, value) and the join keeps the
/// greatest, so it is commutative, associative and idempotent, even for equal timestamps. A
/// register nobody wrote is the bottom of that order (its value reads as the empty `Any`).
///
/// Local writes go through the same order: a write whose clock is not above the current
/// write's loses at once. With `DEFAULT` (wall clock, but always above the current timestamp)
/// and `CUSTOM_AUTO_INCREMENT` every write wins; with `REVERSE` (negated wall clock, always
/// below the current timestamp) only the first write to the register wins, and with `CUSTOM`
/// a write wins when its clock value is above the current one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LWWRegister {
    current: Option<Write>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Write {
    timestamp: i64,
    replica: ReplicaId,
    value: Any,
}

impl Write {
    fn wins_over(&self, other: &Write) -> bool {
        (self.timestamp, &self.replica)
            .cmp(&(other.timestamp, &other.replica))
            .then_with(|| any::cmp(&self.value, &other.value))
            .is_gt()
    }
}

impl LWWRegister {
    /// The value of the winning write; `None` if nobody wrote.
    pub fn value(&self) -> Option<&Any> {
        self.current.as_ref().map(|write| &write.value)
    }

    /// The timestamp of the winning write; `None` if nobody wrote.
    pub fn timestamp(&self) -> Option<i64> {
        self.current.as_ref().map(|write| write.timestamp)
    }

    /// Merges `other` in, keeping the greater write: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &LWWRegister) {
        if let Some(theirs) = &other.current
            && self
                .current
                .as_ref()
                .is_none_or(|mine| theirs.wins_over(mine))
        {
            self.current = Some(theirs.clone());
        }
    }

    /// The delta of `LWWRegisterDelta` from `replica`: the write, with its timestamp from the
    /// delta's clock. A missing value writes the empty `Any`.
    pub(crate) fn mutation(
        &self,
        replica: &ReplicaId,
        delta: &LwwRegisterDelta,
        clock: &dyn Clock,
    ) -> Result<LWWRegister, CrdtError> {
        let current = self.timestamp();
        let custom = delta.custom_clock_value;
        let timestamp = match (parse_clock(delta.clock)?, current) {
            (CrdtClock::Default, None) => clock.now_millis(),
            (CrdtClock::Default, Some(current)) => {
                clock.now_millis().max(current.saturating_add(1))
            }
            (CrdtClock::Reverse, None) => clock.now_millis().saturating_neg(),
            (CrdtClock::Reverse, Some(current)) => clock
                .now_millis()
                .saturating_neg()
                .min(current.saturating_sub(1)),
            (CrdtClock::CustomAutoIncrement, Some(current)) if custom <= current => {
                current.saturating_add(1)
            }
            (CrdtClock::Custom | CrdtClock::CustomAutoIncrement, _) => custom,
        };
        Ok(LWWRegister {
            current: Some(Write {
                timestamp,
                replica: replica.clone(),
                value: delta.value.clone().unwrap_or_default(),
            }),
        })
    }
}

/// The clock of a register delta, or [`CrdtError::UnknownClock`].
pub(crate) fn parse_clock(clock: i32) -> Result<CrdtClock, CrdtError> {
    CrdtClock::try_from(clock).map_err(|_| CrdtError::UnknownClock(clock))
}
