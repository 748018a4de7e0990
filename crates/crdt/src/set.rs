//! Grow-only and observed-remove sets of `Any` values.

use std::collections::{BTreeMap, HashMap, HashSet};

use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::OrSetDelta;

use crate::any;
use crate::replica::{Dot, DotAllocator, DotKernel};

/// A grow-only set: elements are added, never removed. The join is the union.
///
/// Elements are equal when their type URL and value bytes are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GSet {
    elements: HashSet<Any>,
}

impl GSet {
    /// The elements, in no particular order.
    pub fn elements(&self) -> impl Iterator<Item = &Any> {
        self.elements.iter()
    }

    /// Whether `element` is in the set.
    pub fn contains(&self, element: &Any) -> bool {
        self.elements.contains(element)
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &GSet) {
        self.elements.extend(other.elements.iter().cloned());
    }

    /// The delta of `GSetDelta { added }`: the elements not in the set yet.
    pub(crate) fn mutation(&self, added: &[Any]) -> GSet {
        GSet {
            elements: added
                .iter()
                .filter(|element| !self.elements.contains(*element))
                .cloned()
                .collect(),
        }
    }
}

/// An add-wins observed-remove set.
///
/// Every addition of an element gets a fresh dot (replica, counter) and replaces the dots of
/// the element the replica had seen; a removal removes exactly the dots the replica had seen.
/// So an addition concurrent with a removal survives it (add wins), while an element removed
/// after every addition of it was seen stays removed, whatever order replicas merge in. The
/// set keeps a causal context (the dots seen, as ranges per replica) instead of tombstones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ORSet {
    kernel: DotKernel<()>,
}

impl ORSet {
    /// The elements, in no particular order.
    pub fn elements(&self) -> impl Iterator<Item = &Any> {
        self.kernel.entries.keys()
    }

    /// Whether `element` is in the set.
    pub fn contains(&self, element: &Any) -> bool {
        self.kernel.entries.contains_key(element)
    }

    /// Merges `other` in: commutative, associative, idempotent.
    pub fn merge(&mut self, other: &ORSet) {
        self.kernel.join(&other.kernel);
    }

    /// The greatest dot counter of `replica` seen.
    pub(crate) fn max_counter(&self, replica: &crate::ReplicaId) -> u64 {
        self.kernel.context.max(replica)
    }

    /// The delta of `ORSetDelta`, applied as clear, then remove, then add.
    pub(crate) fn mutation(&self, delta: &OrSetDelta, dots: &mut DotAllocator) -> ORSet {
        // Per element touched: its new dot, or none if it ends up removed.
        let mut touched: HashMap<Any, Option<Dot>> = HashMap::new();
        if delta.cleared {
            touched.extend(self.kernel.entries.keys().map(|e| (e.clone(), None)));
        }
        touched.extend(delta.removed.iter().map(|e| (e.clone(), None)));
        // Sorted so that which element gets which dot does not depend on the list's order.
        let mut added = any::sorted(&delta.added);
        added.dedup();
        for element in added {
            touched.insert(element, Some(dots.next()));
        }
        let mut result = DotKernel::default();
        for (element, dot) in touched {
            self.kernel.cover(&element, &mut result);
            if let Some(dot) = dot {
                result.entries.insert(element, BTreeMap::from([(dot, ())]));
            }
        }
        self.kernel.seal(dots, &mut result);
        ORSet { kernel: result }
    }
}
