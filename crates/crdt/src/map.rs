//! Observed-remove maps of nested CRDTs.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{CrdtDelta, FlagDelta, OrMapDelta, OrMapEntryDelta};

use crate::replica::{DotAllocator, DotKernel, Lattice};
use crate::{Clock, Crdt, CrdtError, CrdtKind, ReplicaId, any};

/// An add-wins observed-remove map from `Any` keys to CRDTs of any type, nested maps included.
///
/// Each write of a key (adding it, or changing its value) is an *incarnation* of the key: a
/// fresh dot carrying the whole new value, which replaces the incarnations the replica had
/// seen. Removing a key removes the incarnations the replica had seen. The map is the
/// [`ORSet`](crate::ORSet) construction with values: a key's value is the join of its live
/// incarnations, so
/// - concurrent changes of a key on several replicas all count (two incarnations, joined);
/// - a change concurrent with a removal survives it, with the value the changing replica saw;
/// - a removed and re-added key starts from its new initial value: the old incarnations are
///   covered by the causal context, so no replica that still has them brings them back.
///
/// When live incarnations hold values of different types (a key re-added with another type on
/// two replicas at once), the value is the one of the type declared later in the protocol's
/// `CrdtDelta` (the join of [`Crdt`] values of different types keeps that one); the next
/// write of the key settles it for good.
///
/// The cost of this design is in replication, not in the user function's deltas: the delta
/// of a change to a key carries the key's whole new value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ORMap {
    kernel: DotKernel<Crdt>,
}

impl Lattice for Crdt {
    fn join(&mut self, other: &Crdt) {
        Crdt::join(self, other);
    }
}

impl ORMap {
    /// The keys, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &Any> {
        self.kernel.entries.keys()
    }

    /// The value of `key`: the join of its live incarnations.
    pub fn get(&self, key: &Any) -> Option<Cow<'_, Crdt>> {
        let mut incarnations = self.kernel.entries.get(key)?.values();
        let first = incarnations.next()?;
        Some(incarnations.fold(Cow::Borrowed(first), |mut value, other| {
            value.to_mut().join(other);
            value
        }))
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Any, Cow<'_, Crdt>)> {
        self.keys()
            .filter_map(|key| self.get(key).map(|value| (key, value)))
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &ORMap) {
        self.kernel.join(&other.kernel);
    }

    /// The greatest dot counter of `replica` seen, here or in any nested value.
    pub(crate) fn max_counter(&self, replica: &ReplicaId) -> u64 {
        self.kernel.context.max(replica)
    }

    /// The delta of `ORMapDelta`, applied as clear, remove, update, add.
    ///
    /// An update of a missing key, or with a delta of another type than the key's value, is
    /// ignored: the key was removed or replaced concurrently. An add of a key that exists (the
    /// user function had not seen it yet) with a value of the same type applies the delta to
    /// that value, as concurrent adds on two replicas would join, except that a Flag's `false`
    /// leaves the existing flag as it is; with another type, the new value replaces it.
    pub(crate) fn mutation(
        &self,
        delta: &OrMapDelta,
        dots: &mut DotAllocator,
        clock: &dyn Clock,
    ) -> Result<ORMap, CrdtError> {
        // Per key touched: its new value, or none if it ends up removed.
        let mut touched: HashMap<&Any, Option<Crdt>> = HashMap::new();
        if delta.cleared {
            touched.extend(self.kernel.entries.keys().map(|key| (key, None)));
        }
        touched.extend(delta.removed.iter().map(|key| (key, None)));
        let current = |touched: &HashMap<&Any, Option<Crdt>>, key: &Any| -> Option<Crdt> {
            match touched.get(key) {
                Some(value) => value.clone(),
                None => self.get(key).map(Cow::into_owned),
            }
        };

        for entry in &delta.updated {
            let (key, nested, kind) = entry_parts(entry)?;
            let Some(value) = current(&touched, key).filter(|value| value.kind() == kind) else {
                continue;
            };
            let updated = apply_nested(&value, key, nested, dots, clock)?;
            if updated != value {
                touched.insert(key, Some(updated));
            }
        }
        for entry in &delta.added {
            let (key, nested, kind) = entry_parts(entry)?;
            match current(&touched, key).filter(|value| value.kind() == kind) {
                // For an added entry `false` is the initial state of a new flag, not a request
                // to switch an existing one off.
                Some(_) if is_new_disabled_flag(nested) => {}
                Some(value) => {
                    let updated = apply_nested(&value, key, nested, dots, clock)?;
                    if updated != value {
                        touched.insert(key, Some(updated));
                    }
                }
                None => {
                    let value = apply_nested(&Crdt::empty(kind), key, nested, dots, clock)?;
                    touched.insert(key, Some(value));
                }
            }
        }

        // Sorted so that which key gets which dot does not depend on hashing.
        let mut touched: Vec<(&Any, Option<Crdt>)> = touched.into_iter().collect();
        touched.sort_by(|(a, _), (b, _)| any::cmp(a, b));
        let mut result = DotKernel::default();
        for (key, value) in touched {
            self.kernel.cover(key, &mut result);
            if let Some(value) = value {
                result
                    .entries
                    .insert(key.clone(), BTreeMap::from([(dots.next(), value)]));
            }
        }
        self.kernel.seal(dots, &mut result);
        Ok(ORMap { kernel: result })
    }
}

/// The key, delta and delta type of an entry delta.
pub(crate) fn entry_parts(
    entry: &OrMapEntryDelta,
) -> Result<(&Any, &CrdtDelta, CrdtKind), CrdtError> {
    let key = entry
        .key
        .as_ref()
        .ok_or(CrdtError::MissingEntryField("key"))?;
    let delta = entry
        .delta
        .as_ref()
        .ok_or(CrdtError::MissingEntryField("delta"))?;
    let kind = CrdtKind::of(delta).map_err(|error| error.in_entry(key))?;
    Ok((key, delta, kind))
}

/// Whether `delta` is a Flag's `false`.
fn is_new_disabled_flag(delta: &CrdtDelta) -> bool {
    matches!(delta.delta, Some(D::Flag(FlagDelta { value: false })))
}

/// `value` with the user function's `delta` applied, as the new value of `key`.
fn apply_nested(
    value: &Crdt,
    key: &Any,
    delta: &CrdtDelta,
    dots: &mut DotAllocator,
    clock: &dyn Clock,
) -> Result<Crdt, CrdtError> {
    let change = value
        .mutation(delta, dots, clock)
        .map_err(|error| error.in_entry(key))?;
    let mut value = value.clone();
    value.join(&change);
    Ok(value)
}
