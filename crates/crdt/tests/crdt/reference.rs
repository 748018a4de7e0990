//! A naive reference implementation of the same semantics: observed-remove types with
//! tombstones and globally unique tags instead of dots and causal contexts, no compaction, no
//! deltas. The crate's types must be observationally equal to it after any sequence of
//! changes and full-state merges: that checks the dot machinery (contexts, allocation, the
//! kernel join) against the plain definition of add-wins observed-remove.

use std::collections::{BTreeMap, BTreeSet};

use cloudstate_crdt::CrdtKind;
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{CrdtClock, CrdtDelta, OrMapDelta};

use crate::model::{Key, Model, key};

/// Unique in a simulation.
type Tag = u64;

#[derive(Clone, Debug, PartialEq)]
pub enum Ref {
    GCounter(BTreeMap<String, u64>),
    PNCounter(BTreeMap<String, u64>, BTreeMap<String, u64>),
    GSet(BTreeSet<Key>),
    ORSet {
        adds: BTreeMap<Tag, Key>,
        removed: BTreeSet<Tag>,
    },
    LWWRegister(Option<(i64, String, Key)>),
    Flag(bool),
    ORMap {
        writes: BTreeMap<Tag, (Key, Ref)>,
        removed: BTreeSet<Tag>,
    },
    Vote(BTreeMap<String, u64>),
}

fn max_merge(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        let mine = a.entry(k.clone()).or_default();
        *mine = (*mine).max(*v);
    }
}

impl Ref {
    pub fn empty(kind: CrdtKind) -> Ref {
        match kind {
            CrdtKind::GCounter => Ref::GCounter(BTreeMap::new()),
            CrdtKind::PNCounter => Ref::PNCounter(BTreeMap::new(), BTreeMap::new()),
            CrdtKind::GSet => Ref::GSet(BTreeSet::new()),
            CrdtKind::ORSet => Ref::ORSet {
                adds: BTreeMap::new(),
                removed: BTreeSet::new(),
            },
            CrdtKind::LWWRegister => Ref::LWWRegister(None),
            CrdtKind::Flag => Ref::Flag(false),
            CrdtKind::ORMap => Ref::ORMap {
                writes: BTreeMap::new(),
                removed: BTreeSet::new(),
            },
            CrdtKind::Vote => Ref::Vote(BTreeMap::new()),
        }
    }

    fn kind(&self) -> CrdtKind {
        match self {
            Ref::GCounter(_) => CrdtKind::GCounter,
            Ref::PNCounter(..) => CrdtKind::PNCounter,
            Ref::GSet(_) => CrdtKind::GSet,
            Ref::ORSet { .. } => CrdtKind::ORSet,
            Ref::LWWRegister(_) => CrdtKind::LWWRegister,
            Ref::Flag(_) => CrdtKind::Flag,
            Ref::ORMap { .. } => CrdtKind::ORMap,
            Ref::Vote(_) => CrdtKind::Vote,
        }
    }

    /// Same types merge; otherwise the later type in the protocol wins.
    pub fn join(&mut self, other: &Ref) {
        match (&mut *self, other) {
            (Ref::GCounter(a), Ref::GCounter(b)) | (Ref::Vote(a), Ref::Vote(b)) => max_merge(a, b),
            (Ref::PNCounter(ap, an), Ref::PNCounter(bp, bn)) => {
                max_merge(ap, bp);
                max_merge(an, bn);
            }
            (Ref::GSet(a), Ref::GSet(b)) => a.extend(b.iter().cloned()),
            (
                Ref::ORSet { adds, removed },
                Ref::ORSet {
                    adds: a,
                    removed: r,
                },
            ) => {
                adds.extend(a.iter().map(|(t, k)| (*t, k.clone())));
                removed.extend(r);
            }
            (Ref::LWWRegister(a), Ref::LWWRegister(b)) => {
                if b > a {
                    a.clone_from(b);
                }
            }
            (Ref::Flag(a), Ref::Flag(b)) => *a |= b,
            (
                Ref::ORMap { writes, removed },
                Ref::ORMap {
                    writes: w,
                    removed: r,
                },
            ) => {
                // A tag's value never changes after its write.
                for (tag, write) in w {
                    writes.entry(*tag).or_insert_with(|| write.clone());
                }
                removed.extend(r);
            }
            (a, b) => {
                if b.kind() > a.kind() {
                    *a = b.clone();
                }
            }
        }
    }

    /// Applies a user function's delta the crate accepted, on `replica` at `now`.
    pub fn apply(&mut self, replica: &str, delta: &CrdtDelta, now: i64, tags: &mut Tag) {
        let mut tag = || {
            *tags += 1;
            *tags
        };
        match (&mut *self, delta.delta.as_ref().unwrap()) {
            (Ref::GCounter(c), D::Gcounter(d)) => {
                *c.entry(replica.into()).or_default() += d.increment
            }
            (Ref::PNCounter(p, n), D::Pncounter(d)) => {
                let side = if d.change >= 0 { p } else { n };
                *side.entry(replica.into()).or_default() += d.change.unsigned_abs();
            }
            (Ref::GSet(s), D::Gset(d)) => s.extend(d.added.iter().map(key)),
            (Ref::ORSet { adds, removed }, D::Orset(d)) => {
                let kill = |element: Option<&Key>,
                            adds: &BTreeMap<Tag, Key>,
                            removed: &mut BTreeSet<Tag>| {
                    for (t, k) in adds {
                        if element.is_none_or(|e| e == k) {
                            removed.insert(*t);
                        }
                    }
                };
                if d.cleared {
                    kill(None, adds, removed);
                }
                for element in &d.removed {
                    kill(Some(&key(element)), adds, removed);
                }
                let added: BTreeSet<Key> = d.added.iter().map(key).collect();
                for element in added {
                    kill(Some(&element), adds, removed);
                    adds.insert(tag(), element);
                }
            }
            (Ref::LWWRegister(current), D::Lwwregister(d)) => {
                let ts = current.as_ref().map(|(ts, ..)| *ts);
                let custom = d.custom_clock_value;
                let timestamp = match (CrdtClock::try_from(d.clock).unwrap(), ts) {
                    (CrdtClock::Default, None) => now,
                    (CrdtClock::Default, Some(ts)) => now.max(ts + 1),
                    (CrdtClock::Reverse, None) => -now,
                    (CrdtClock::Reverse, Some(ts)) => (-now).min(ts - 1),
                    (CrdtClock::CustomAutoIncrement, Some(ts)) if custom <= ts => ts + 1,
                    (CrdtClock::Custom | CrdtClock::CustomAutoIncrement, _) => custom,
                };
                let write = Some((
                    timestamp,
                    replica.to_string(),
                    key(d.value.as_ref().unwrap()),
                ));
                if write > *current {
                    *current = write;
                }
            }
            (Ref::Flag(f), D::Flag(d)) => *f |= d.value,
            (Ref::ORMap { .. }, D::Ormap(d)) => self.apply_map(replica, d, now, tags),
            (Ref::Vote(v), D::Vote(d)) => {
                let version = v.entry(replica.into()).or_insert(u64::from(d.self_vote));
                if (*version % 2 == 1) != d.self_vote {
                    *version += 1;
                }
            }
            (r, d) => panic!("{d:?} does not fit {r:?}"),
        }
    }

    fn live(&self, k: &Key) -> Option<Ref> {
        let Ref::ORMap { writes, removed } = self else {
            unreachable!()
        };
        writes
            .iter()
            .filter(|(t, (key, _))| key == k && !removed.contains(t))
            .map(|(_, (_, v))| v.clone())
            .reduce(|mut a, b| {
                a.join(&b);
                a
            })
    }

    fn apply_map(&mut self, replica: &str, d: &OrMapDelta, now: i64, tags: &mut Tag) {
        let Ref::ORMap { writes, .. } = &*self else {
            unreachable!()
        };
        let mut touched: BTreeMap<Key, Option<Ref>> = BTreeMap::new();
        if d.cleared {
            for (k, _) in writes.values() {
                touched.insert(k.clone(), None);
            }
        }
        for k in &d.removed {
            touched.insert(key(k), None);
        }
        let parts = |e: &cloudstate_protocol::crdt::OrMapEntryDelta| {
            let nested = e.delta.clone().unwrap();
            (
                key(e.key.as_ref().unwrap()),
                CrdtKind::of(&nested).unwrap(),
                nested,
            )
        };
        for e in &d.updated {
            let (k, kind, nested) = parts(e);
            let current = touched.get(&k).cloned().unwrap_or_else(|| self.live(&k));
            // An update that changes nothing is no write.
            if let Some(value) = current.filter(|v| v.kind() == kind) {
                let mut updated = value.clone();
                updated.apply(replica, &nested, now, tags);
                if updated != value {
                    touched.insert(k, Some(updated));
                }
            }
        }
        for e in &d.added {
            let (k, kind, nested) = parts(e);
            let current = touched.get(&k).cloned().unwrap_or_else(|| self.live(&k));
            // An existing flag ignores `false` here, which a reference flag always does.
            let existing = current.filter(|v| v.kind() == kind);
            let mut value = existing.clone().unwrap_or_else(|| Ref::empty(kind));
            value.apply(replica, &nested, now, tags);
            if existing.as_ref() != Some(&value) {
                touched.insert(k, Some(value));
            }
        }
        let Ref::ORMap { writes, removed } = self else {
            unreachable!()
        };
        for (k, value) in touched {
            for (t, (key, _)) in writes.iter() {
                if *key == k {
                    removed.insert(*t);
                }
            }
            if let Some(value) = value {
                *tags += 1;
                writes.insert(*tags, (k, value));
            }
        }
    }

    /// The user function's value on `replica`.
    pub fn model(&self, replica: &str) -> Model {
        match self {
            Ref::GCounter(c) => Model::GCounter(c.values().sum()),
            Ref::PNCounter(p, n) => {
                let sum =
                    |m: &BTreeMap<String, u64>| m.values().map(|v| i128::from(*v)).sum::<i128>();
                Model::PNCounter((sum(p) - sum(n)).try_into().unwrap())
            }
            Ref::GSet(s) => Model::GSet(s.clone()),
            Ref::ORSet { adds, removed } => Model::ORSet(
                adds.iter()
                    .filter(|(t, _)| !removed.contains(t))
                    .map(|(_, k)| k.clone())
                    .collect(),
            ),
            Ref::LWWRegister(w) => Model::LWWRegister(
                w.as_ref()
                    .map_or_else(|| key(&Any::default()), |(.., v)| v.clone()),
            ),
            Ref::Flag(f) => Model::Flag(*f),
            Ref::ORMap { writes, .. } => {
                let keys: BTreeSet<&Key> = writes.values().map(|(k, _)| k).collect();
                Model::ORMap(
                    keys.into_iter()
                        .filter_map(|k| Some((k.clone(), self.live(k)?.model(replica))))
                        .collect(),
                )
            }
            Ref::Vote(v) => Model::Vote {
                self_vote: v.get(replica).is_some_and(|v| v % 2 == 1),
                votes_for: v
                    .values()
                    .filter(|v| *v % 2 == 1)
                    .count()
                    .try_into()
                    .unwrap(),
                total_voters: (v.keys().filter(|r| *r != replica).count() + 1)
                    .try_into()
                    .unwrap(),
            },
        }
    }
}
