//! Replica identity, dots, causal contexts, and the dot kernel the observed-remove types share.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use cloudstate_protocol::Any;

/// The identity of one replica of a CRDT: a proxy node, as far as this crate is concerned.
///
/// Every replica that changes a CRDT must have its own id, and an id must not be reused by a
/// replica that lost its state (a restarted node without its data takes a new one, for example
/// by adding its start time): the observed-remove types tell events apart by `(replica, n)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaId(Arc<str>);

impl ReplicaId {
    /// A replica id; any string, compared byte-wise.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        ReplicaId(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ReplicaId {
    fn from(id: &str) -> Self {
        ReplicaId::new(id)
    }
}

impl From<String> for ReplicaId {
    fn from(id: String) -> Self {
        ReplicaId::new(id)
    }
}

/// One event of one replica: its `counter`-th. Dots name the additions of observed-remove
/// types, so that a removal can say exactly which additions it saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Dot {
    replica: ReplicaId,
    counter: u64,
}

/// A set of counters as disjoint, non-adjacent inclusive ranges (start → end), so that the
/// usual case, everything from 1 to n, is one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    fn contains(&self, counter: u64) -> bool {
        self.0
            .range(..=counter)
            .next_back()
            .is_some_and(|(_, &end)| counter <= end)
    }

    fn max(&self) -> u64 {
        self.0.last_key_value().map_or(0, |(_, &end)| end)
    }

    /// Adds `start..=end` (nothing when `start > end`), merging touching ranges.
    fn insert(&mut self, mut start: u64, mut end: u64) {
        if start > end {
            return;
        }
        if let Some((&before, &before_end)) = self.0.range(..=start).next_back()
            && before_end.saturating_add(1) >= start
        {
            start = before;
            end = end.max(before_end);
        }
        let absorbed: Vec<u64> = self
            .0
            .range(start..=end.saturating_add(1))
            .map(|(&s, _)| s)
            .collect();
        for s in absorbed {
            if let Some(e) = self.0.remove(&s) {
                end = end.max(e);
            }
        }
        self.0.insert(start, end);
    }
}

/// The dots a replica has seen (a version vector with gaps): every dot of the state's store,
/// and every dot whose addition was removed.
///
/// The representation is canonical (no empty entries, ranges merged), so equal sets compare
/// equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CausalContext(BTreeMap<ReplicaId, Ranges>);

impl CausalContext {
    pub(crate) fn contains(&self, dot: &Dot) -> bool {
        self.0
            .get(&dot.replica)
            .is_some_and(|ranges| ranges.contains(dot.counter))
    }

    /// The greatest counter of `replica` seen; 0 for none.
    pub(crate) fn max(&self, replica: &ReplicaId) -> u64 {
        self.0.get(replica).map_or(0, Ranges::max)
    }

    pub(crate) fn insert(&mut self, dot: &Dot) {
        self.insert_range(&dot.replica, dot.counter, dot.counter);
    }

    /// Adds the dots `start..=end` of `replica`; nothing when `start > end`.
    pub(crate) fn insert_range(&mut self, replica: &ReplicaId, start: u64, end: u64) {
        if start <= end {
            self.0
                .entry(replica.clone())
                .or_default()
                .insert(start, end);
        }
    }

    pub(crate) fn join(&mut self, other: &CausalContext) {
        for (replica, ranges) in &other.0 {
            for (&start, &end) in &ranges.0 {
                self.insert_range(replica, start, end);
            }
        }
    }
}

/// Hands out the dots of one local change: counters after every counter the replica used
/// before anywhere in the entity (nested values included), so that every dot is unique.
#[derive(Debug)]
pub(crate) struct DotAllocator {
    replica: ReplicaId,
    last: u64,
}

impl DotAllocator {
    /// Dots of `replica` numbered from `last + 1`.
    pub(crate) fn after(replica: &ReplicaId, last: u64) -> Self {
        DotAllocator {
            replica: replica.clone(),
            last,
        }
    }

    pub(crate) fn replica(&self) -> &ReplicaId {
        &self.replica
    }

    /// The counter of the last dot handed out (or the starting point).
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    pub(crate) fn next(&mut self) -> Dot {
        // 2^64 events of one replica are out of reach; saturating keeps this panic-free.
        self.last = self.last.saturating_add(1);
        Dot {
            replica: self.replica.clone(),
            counter: self.last,
        }
    }
}

/// A join-semilattice: `join` is commutative, associative and idempotent.
pub(crate) trait Lattice: Clone + PartialEq {
    fn join(&mut self, other: &Self);
}

impl Lattice for () {
    fn join(&mut self, _: &()) {}
}

/// The store of an observed-remove type: per key, the dots of the additions that are still
/// live with the value each carries, plus the causal context of everything seen.
///
/// The join keeps a dot when both sides have it (joining its values), or when one side has it
/// and the other has not seen it; a dot one side has seen but no longer holds was removed
/// there, and stays removed. This is the standard dot-kernel join: commutative, associative
/// and idempotent for every state whose store dots are all in its context, which every state
/// built by this crate satisfies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DotKernel<V> {
    pub(crate) entries: HashMap<Any, BTreeMap<Dot, V>>,
    pub(crate) context: CausalContext,
}

impl<V> Default for DotKernel<V> {
    fn default() -> Self {
        DotKernel {
            entries: HashMap::new(),
            context: CausalContext::default(),
        }
    }
}

impl<V: Lattice> DotKernel<V> {
    pub(crate) fn join(&mut self, other: &DotKernel<V>) {
        for (key, dots) in &mut self.entries {
            let theirs = other.entries.get(key);
            dots.retain(
                |dot, value| match theirs.and_then(|theirs| theirs.get(dot)) {
                    Some(their_value) => {
                        value.join(their_value);
                        true
                    }
                    None => !other.context.contains(dot),
                },
            );
        }
        for (key, theirs) in &other.entries {
            for (dot, value) in theirs {
                if !self.context.contains(dot) {
                    self.entries
                        .entry(key.clone())
                        .or_default()
                        .insert(dot.clone(), value.clone());
                }
            }
        }
        self.entries.retain(|_, dots| !dots.is_empty());
        self.context.join(&other.context);
    }

    /// The delta that removes every live addition of `key` (nothing if it has none).
    pub(crate) fn cover(&self, key: &Any, delta: &mut DotKernel<V>) {
        for dot in self.entries.get(key).into_iter().flat_map(BTreeMap::keys) {
            delta.context.insert(dot);
        }
    }

    /// Completes a delta whose new dots came from `dots`: its context also gets the counters
    /// from just after this store's last one up to the last one handed out, which covers the
    /// new dots and the counters the replica used elsewhere meanwhile (never dots of this
    /// store), so that the store's context stays one range per replica.
    pub(crate) fn seal(&self, dots: &DotAllocator, delta: &mut DotKernel<V>) {
        let replica = dots.replica();
        delta.context.insert_range(
            replica,
            self.context.max(replica).saturating_add(1),
            dots.last(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_touching_and_overlapping_inserts() {
        let mut ranges = Ranges::default();
        ranges.insert(5, 6);
        ranges.insert(1, 2);
        ranges.insert(9, 9);
        assert_eq!(ranges.0, BTreeMap::from([(1, 2), (5, 6), (9, 9)]));
        ranges.insert(3, 4);
        assert_eq!(ranges.0, BTreeMap::from([(1, 6), (9, 9)]));
        ranges.insert(7, 12);
        assert_eq!(ranges.0, BTreeMap::from([(1, 12)]));
        ranges.insert(4, 2);
        assert_eq!(ranges.0, BTreeMap::from([(1, 12)]));
        ranges.insert(u64::MAX, u64::MAX);
        assert!(ranges.contains(u64::MAX) && ranges.contains(12) && !ranges.contains(13));
        assert_eq!(ranges.max(), u64::MAX);
    }

    #[test]
    fn context_contains_exactly_what_was_inserted() {
        let a = ReplicaId::from("a");
        let mut context = CausalContext::default();
        context.insert_range(&a, 1, 3);
        context.insert(&Dot {
            replica: a.clone(),
            counter: 7,
        });
        let has = |n| {
            context.contains(&Dot {
                replica: a.clone(),
                counter: n,
            })
        };
        assert!(has(1) && has(3) && has(7) && !has(4) && !has(8) && !has(0));
        assert_eq!(context.max(&a), 7);
        assert_eq!(context.max(&ReplicaId::from("b")), 0);
    }
}
