//! The crate's one error type.

use cloudstate_protocol::Any;

use crate::CrdtKind;

/// Why a delta could not be applied, two states could not be merged, or a change cannot be
/// told to the user function as a delta.
///
/// Errors from [`Crdt::apply_user_delta`](crate::Crdt::apply_user_delta) are the user
/// function's fault; their text is meant to be reported back to it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CrdtError {
    /// A `CrdtDelta` with none of its `oneof` set.
    #[error("the CRDT delta is empty: it sets none of the CRDT types")]
    EmptyDelta,
    /// A delta (or a state to merge) of one CRDT type met a CRDT of another.
    #[error("a {found} is incompatible with CRDT {expected}")]
    TypeMismatch {
        /// The type of the CRDT that was there.
        expected: CrdtKind,
        /// The type of the delta or state that came.
        found: CrdtKind,
    },
    /// A `GCounterDelta.increment` that reads as negative in two's complement: what a user
    /// function with signed 64-bit integers sends when it tries to decrement.
    #[error("cannot decrement a GCounter, requested amount was {0}")]
    NegativeIncrement(i64),
    /// The change would take a counter (or a vote's version) beyond what 64 bits hold.
    #[error("the change would overflow the {0}")]
    Overflow(CrdtKind),
    /// `FlagDelta { value: false }` for an enabled flag: flags cannot be switched off.
    #[error("cannot switch off an already enabled Flag")]
    FlagDisable,
    /// A `LWWRegisterDelta.clock` that is not a `CrdtClock` this proxy knows.
    #[error("unknown LWWRegister clock {0}")]
    UnknownClock(i32),
    /// An `ORMapEntryDelta` without its key or its delta.
    #[error("an ORMap entry delta has no {0}")]
    MissingEntryField(&'static str),
    /// The delta of one ORMap entry failed.
    #[error("in the ORMap entry whose key is a {key_type} of {key_len} bytes: {source}")]
    InEntry {
        /// The type URL of the entry's key.
        key_type: String,
        /// The length of the key's value.
        key_len: usize,
        /// What went wrong with the entry's delta.
        source: Box<CrdtError>,
    },
    /// The new state is not a continuation of the old one as the user function sees it (a
    /// GCounter went down, a GSet lost elements, a Flag was switched off), so no delta can
    /// take the user function from one to the other: it must be sent the full state again.
    #[error("the {kind} {reason}, which no delta can express")]
    Incompatible {
        /// The type whose value changed incompatibly.
        kind: CrdtKind,
        /// What happened to it.
        reason: &'static str,
    },
}

impl CrdtError {
    /// This error, as it happened in the ORMap entry with `key`.
    pub(crate) fn in_entry(self, key: &Any) -> Self {
        CrdtError::InEntry {
            key_type: key.type_url.clone(),
            key_len: key.value.len(),
            source: Box::new(self),
        }
    }
}
