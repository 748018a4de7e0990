//! Flags.

use crate::CrdtError;

/// A boolean that starts disabled and, once enabled, stays enabled (enable wins). The join is
/// the logical or.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flag {
    enabled: bool,
}

impl Flag {
    /// Whether the flag is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &Flag) {
        self.enabled |= other.enabled;
    }

    /// The delta of `FlagDelta { value }`: `true` enables; `false` changes nothing, and is an
    /// error for an enabled flag.
    pub(crate) fn mutation(&self, value: bool) -> Result<Flag, CrdtError> {
        if !value && self.enabled {
            return Err(CrdtError::FlagDisable);
        }
        Ok(Flag { enabled: value })
    }
}
