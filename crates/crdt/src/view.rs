//! The CRDT as the user function sees it, and the deltas between such views.

use std::collections::{HashMap, HashSet};

use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{
    CrdtDelta, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta, OrMapDelta, OrMapEntryDelta,
    OrSetDelta, PnCounterDelta, VoteDelta,
};

use crate::counter::check_increment;
use crate::map::entry_parts;
use crate::register::parse_clock;
use crate::{Crdt, CrdtError, CrdtKind, ReplicaId, VoteTally, any};

/// The plain value a user function holds for a CRDT: what its support library keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// A GCounter's value.
    GCounter(u64),
    /// A PNCounter's value.
    PNCounter(i64),
    /// A GSet's elements.
    GSet(HashSet<Any>),
    /// An ORSet's elements.
    ORSet(HashSet<Any>),
    /// An LWWRegister's value (the empty `Any` before any write).
    LWWRegister(Any),
    /// Whether a Flag is enabled.
    Flag(bool),
    /// An ORMap's entries.
    ORMap(HashMap<Any, View>),
    /// A Vote as the local replica sees it.
    Vote(VoteTally),
}

impl Crdt {
    /// This CRDT as the user function on `replica` sees it.
    pub fn view(&self, replica: &ReplicaId) -> View {
        match self {
            Crdt::GCounter(c) => View::GCounter(c.value()),
            Crdt::PNCounter(c) => View::PNCounter(c.value()),
            Crdt::GSet(s) => View::GSet(s.elements().cloned().collect()),
            Crdt::ORSet(s) => View::ORSet(s.elements().cloned().collect()),
            Crdt::LWWRegister(r) => View::LWWRegister(r.value().cloned().unwrap_or_default()),
            Crdt::Flag(f) => View::Flag(f.is_enabled()),
            Crdt::ORMap(m) => View::ORMap(
                m.iter()
                    .map(|(key, value)| (key.clone(), value.view(replica)))
                    .collect(),
            ),
            Crdt::Vote(v) => View::Vote(v.tally(replica)),
        }
    }

    /// The full state as a delta for the user function on `replica`: `CrdtInit.delta`.
    pub fn full_state_delta(&self, replica: &ReplicaId) -> CrdtDelta {
        self.view(replica).full_delta()
    }

    /// The net delta that takes the user function on `replica` from `old` to this state;
    /// `None` when nothing it sees changed. See [`View::delta_since`].
    pub fn delta_since(
        &self,
        old: &Crdt,
        replica: &ReplicaId,
    ) -> Result<Option<CrdtDelta>, CrdtError> {
        self.view(replica).delta_since(&old.view(replica))
    }
}

impl View {
    /// What a user function holds for a new CRDT of `kind`: zero, empty, the empty `Any`,
    /// disabled, or a vote of no by the only voter.
    pub fn empty(kind: CrdtKind) -> View {
        match kind {
            CrdtKind::GCounter => View::GCounter(0),
            CrdtKind::PNCounter => View::PNCounter(0),
            CrdtKind::GSet => View::GSet(HashSet::new()),
            CrdtKind::ORSet => View::ORSet(HashSet::new()),
            CrdtKind::LWWRegister => View::LWWRegister(Any::default()),
            CrdtKind::Flag => View::Flag(false),
            CrdtKind::ORMap => View::ORMap(HashMap::new()),
            CrdtKind::Vote => View::Vote(VoteTally {
                self_vote: false,
                votes_for: 0,
                total_voters: 1,
            }),
        }
    }

    /// The type of the CRDT this is a view of.
    pub fn kind(&self) -> CrdtKind {
        match self {
            View::GCounter(_) => CrdtKind::GCounter,
            View::PNCounter(_) => CrdtKind::PNCounter,
            View::GSet(_) => CrdtKind::GSet,
            View::ORSet(_) => CrdtKind::ORSet,
            View::LWWRegister(_) => CrdtKind::LWWRegister,
            View::Flag(_) => CrdtKind::Flag,
            View::ORMap(_) => CrdtKind::ORMap,
            View::Vote(_) => CrdtKind::Vote,
        }
    }

    /// What a user function holds after creating a CRDT with its first update `delta`.
    pub fn from_user_delta(delta: &CrdtDelta) -> Result<View, CrdtError> {
        let mut view = View::empty(CrdtKind::of(delta)?);
        view.apply_user_delta(delta)?;
        Ok(view)
    }

    /// Applies a delta the user function sent, as the user function did to its own value:
    /// additions, removals, the register's new value, its own vote (counting it in
    /// `votes_for`), ORMap updates of missing keys or of another type ignored, ORMap adds
    /// replacing the key's value with a new one. Arithmetic saturates.
    ///
    /// It refuses what [`Crdt::apply_user_delta`] refuses for a CRDT with this view, and on
    /// error nothing changed.
    pub fn apply_user_delta(&mut self, delta: &CrdtDelta) -> Result<(), CrdtError> {
        if let View::ORMap(_) = self {
            // Nested entries may fail after earlier ones applied: work on a copy.
            let mut changed = self.clone();
            changed.apply(delta)?;
            *self = changed;
            Ok(())
        } else {
            self.apply(delta)
        }
    }

    fn apply(&mut self, delta: &CrdtDelta) -> Result<(), CrdtError> {
        let found = CrdtKind::of(delta)?;
        match (&mut *self, &delta.delta) {
            (View::GCounter(v), Some(D::Gcounter(d))) => {
                *v = v.saturating_add(check_increment(d.increment)?);
            }
            (View::PNCounter(v), Some(D::Pncounter(d))) => *v = v.saturating_add(d.change),
            (View::GSet(s), Some(D::Gset(d))) => s.extend(d.added.iter().cloned()),
            (View::ORSet(s), Some(D::Orset(d))) => {
                if d.cleared {
                    s.clear();
                }
                for element in &d.removed {
                    s.remove(element);
                }
                s.extend(d.added.iter().cloned());
            }
            (View::LWWRegister(v), Some(D::Lwwregister(d))) => {
                parse_clock(d.clock)?;
                *v = d.value.clone().unwrap_or_default();
            }
            (View::Flag(f), Some(D::Flag(d))) => {
                if d.value {
                    *f = true;
                } else if *f {
                    return Err(CrdtError::FlagDisable);
                }
            }
            (View::ORMap(m), Some(D::Ormap(d))) => apply_to_map(m, d)?,
            (View::Vote(t), Some(D::Vote(d))) => {
                if t.self_vote != d.self_vote {
                    t.self_vote = d.self_vote;
                    t.votes_for = if d.self_vote {
                        t.votes_for.saturating_add(1)
                    } else {
                        t.votes_for.saturating_sub(1)
                    };
                }
            }
            (this, _) => {
                return Err(CrdtError::TypeMismatch {
                    expected: this.kind(),
                    found,
                });
            }
        }
        Ok(())
    }

    /// This view as one delta, which takes a user function with nothing to it: the
    /// `CrdtInit.delta` of the state. Elements and keys are sorted by type URL and bytes.
    pub fn full_delta(&self) -> CrdtDelta {
        let delta = match self {
            View::GCounter(v) => D::Gcounter(GCounterDelta { increment: *v }),
            View::PNCounter(v) => D::Pncounter(PnCounterDelta { change: *v }),
            View::GSet(s) => D::Gset(GSetDelta {
                added: any::sorted(s),
            }),
            View::ORSet(s) => D::Orset(OrSetDelta {
                added: any::sorted(s),
                ..OrSetDelta::default()
            }),
            View::LWWRegister(v) => D::Lwwregister(register_delta(v)),
            View::Flag(v) => D::Flag(FlagDelta { value: *v }),
            View::ORMap(m) => D::Ormap(OrMapDelta {
                added: sorted_entries(m, View::full_delta),
                ..OrMapDelta::default()
            }),
            View::Vote(t) => D::Vote(vote_delta(t)),
        };
        CrdtDelta { delta: Some(delta) }
    }

    /// The net delta that takes a user function holding `old` to this view; `None` when they
    /// are equal. Elements and keys in the delta are sorted by type URL and bytes.
    ///
    /// - counters: the difference;
    /// - GSet: the new elements;
    /// - ORSet: `cleared` when the set became empty, else the removed and added elements, or
    ///   `cleared` with every element when that is shorter;
    /// - LWWRegister: the new value (with the default clock, which the user function ignores);
    /// - Flag: enabled;
    /// - ORMap: `cleared` when the map became empty, else the removed keys, the updated keys
    ///   with their nested delta, and the added keys with their full value; a key whose value
    ///   changed type, or changed in a way no nested delta expresses, is removed and added;
    /// - Vote: all three fields, when any changed.
    ///
    /// Errors: [`CrdtError::TypeMismatch`] between views of two types, and
    /// [`CrdtError::Incompatible`] when a GCounter went down, a GSet lost an element, a Flag
    /// was switched off, or a PNCounter moved by more than a `sint64`; then the user function
    /// needs the full state instead.
    pub fn delta_since(&self, old: &View) -> Result<Option<CrdtDelta>, CrdtError> {
        let incompatible = |reason| CrdtError::Incompatible {
            kind: self.kind(),
            reason,
        };
        let delta = match (old, self) {
            _ if old == self => return Ok(None),
            (View::GCounter(old), View::GCounter(new)) => {
                let increment = new.checked_sub(*old).ok_or(incompatible("went down"))?;
                D::Gcounter(GCounterDelta { increment })
            }
            (View::PNCounter(old), View::PNCounter(new)) => {
                let change = i64::try_from(i128::from(*new) - i128::from(*old))
                    .map_err(|_| incompatible("changed by more than a sint64 holds"))?;
                D::Pncounter(PnCounterDelta { change })
            }
            (View::GSet(old), View::GSet(new)) => {
                if !old.is_subset(new) {
                    return Err(incompatible("lost elements"));
                }
                D::Gset(GSetDelta {
                    added: any::sorted(new.difference(old)),
                })
            }
            (View::ORSet(old), View::ORSet(new)) => D::Orset(set_delta(old, new)),
            (View::LWWRegister(_), View::LWWRegister(new)) => D::Lwwregister(register_delta(new)),
            (View::Flag(_), View::Flag(new)) => {
                if !new {
                    return Err(incompatible("was switched off"));
                }
                D::Flag(FlagDelta { value: true })
            }
            (View::ORMap(old), View::ORMap(new)) => D::Ormap(map_delta(old, new)),
            (View::Vote(_), View::Vote(new)) => D::Vote(vote_delta(new)),
            _ => {
                return Err(CrdtError::TypeMismatch {
                    expected: old.kind(),
                    found: self.kind(),
                });
            }
        };
        Ok(Some(CrdtDelta { delta: Some(delta) }))
    }
}

fn register_delta(value: &Any) -> LwwRegisterDelta {
    LwwRegisterDelta {
        value: Some(value.clone()),
        ..LwwRegisterDelta::default()
    }
}

fn vote_delta(tally: &VoteTally) -> VoteDelta {
    VoteDelta {
        self_vote: tally.self_vote,
        votes_for: i32::try_from(tally.votes_for).unwrap_or(i32::MAX),
        total_voters: i32::try_from(tally.total_voters).unwrap_or(i32::MAX),
    }
}

/// The delta between two different sets.
fn set_delta(old: &HashSet<Any>, new: &HashSet<Any>) -> OrSetDelta {
    let removed = old.difference(new).count();
    let added = new.difference(old).count();
    if new.is_empty() || removed + added > new.len() {
        OrSetDelta {
            cleared: true,
            added: any::sorted(new),
            ..OrSetDelta::default()
        }
    } else {
        OrSetDelta {
            removed: any::sorted(old.difference(new)),
            added: any::sorted(new.difference(old)),
            ..OrSetDelta::default()
        }
    }
}

/// The delta between two different maps.
fn map_delta(old: &HashMap<Any, View>, new: &HashMap<Any, View>) -> OrMapDelta {
    if new.is_empty() {
        return OrMapDelta {
            cleared: true,
            ..OrMapDelta::default()
        };
    }
    let mut removed: Vec<&Any> = old.keys().filter(|key| !new.contains_key(*key)).collect();
    let mut updated = HashMap::new();
    let mut added = HashMap::new();
    for (key, value) in new {
        let Some(old_value) = old.get(key) else {
            added.insert(key.clone(), value.clone());
            continue;
        };
        match value.delta_since(old_value) {
            Ok(None) => {}
            Ok(Some(delta)) => {
                updated.insert(key.clone(), delta);
            }
            Err(_) => {
                removed.push(key);
                added.insert(key.clone(), value.clone());
            }
        }
    }
    OrMapDelta {
        cleared: false,
        removed: any::sorted(removed),
        updated: sorted_entries(&updated, Clone::clone),
        added: sorted_entries(&added, View::full_delta),
    }
}

/// Entry deltas for `entries`, each value made a delta by `delta`, sorted by key.
fn sorted_entries<V>(
    entries: &HashMap<Any, V>,
    delta: impl Fn(&V) -> CrdtDelta,
) -> Vec<OrMapEntryDelta> {
    any::sorted(entries.keys())
        .into_iter()
        .filter_map(|key| {
            let value = entries.get(&key)?;
            Some(OrMapEntryDelta {
                delta: Some(delta(value)),
                key: Some(key),
            })
        })
        .collect()
}

/// What the user function does with its map for an `ORMapDelta` it sends.
fn apply_to_map(map: &mut HashMap<Any, View>, delta: &OrMapDelta) -> Result<(), CrdtError> {
    if delta.cleared {
        map.clear();
    }
    for key in &delta.removed {
        map.remove(key);
    }
    for entry in &delta.updated {
        let (key, nested, kind) = entry_parts(entry)?;
        if let Some(value) = map.get_mut(key).filter(|value| value.kind() == kind) {
            value.apply(nested).map_err(|error| error.in_entry(key))?;
        }
    }
    for entry in &delta.added {
        let (key, nested, _) = entry_parts(entry)?;
        let value = View::from_user_delta(nested).map_err(|error| error.in_entry(key))?;
        map.insert(key.clone(), value);
    }
    Ok(())
}
