//! A user-side model: the plain values a support library keeps, and how it applies the deltas
//! the proxy sends. Written independently of the crate's `View`, as the oracle for the deltas
//! the crate produces; it also checks that those deltas are minimal (no removal of what is
//! absent, no addition of what is present, no update of a missing key).

use std::collections::{BTreeMap, BTreeSet};

use cloudstate_crdt::{CrdtKind, View};
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::CrdtDelta;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;

/// An `Any` as a plain, ordered value.
pub type Key = (String, Vec<u8>);

pub fn key(any: &Any) -> Key {
    (any.type_url.clone(), any.value.to_vec())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Model {
    GCounter(u64),
    PNCounter(i64),
    GSet(BTreeSet<Key>),
    ORSet(BTreeSet<Key>),
    LWWRegister(Key),
    Flag(bool),
    ORMap(BTreeMap<Key, Model>),
    Vote {
        self_vote: bool,
        votes_for: i32,
        total_voters: i32,
    },
}

impl Model {
    /// The model of a view.
    pub fn of(view: &View) -> Model {
        match view {
            View::GCounter(v) => Model::GCounter(*v),
            View::PNCounter(v) => Model::PNCounter(*v),
            View::GSet(s) => Model::GSet(s.iter().map(key).collect()),
            View::ORSet(s) => Model::ORSet(s.iter().map(key).collect()),
            View::LWWRegister(v) => Model::LWWRegister(key(v)),
            View::Flag(v) => Model::Flag(*v),
            View::ORMap(m) => Model::ORMap(m.iter().map(|(k, v)| (key(k), Model::of(v))).collect()),
            View::Vote(t) => Model::Vote {
                self_vote: t.self_vote,
                votes_for: t.votes_for.try_into().unwrap(),
                total_voters: t.total_voters.try_into().unwrap(),
            },
        }
    }

    /// What a support library holds after `CrdtInit.delta` (or an ORMap's added entry).
    pub fn from_init(delta: &CrdtDelta) -> Model {
        let mut model = match CrdtKind::of(delta).unwrap() {
            CrdtKind::GCounter => Model::GCounter(0),
            CrdtKind::PNCounter => Model::PNCounter(0),
            CrdtKind::GSet => Model::GSet(BTreeSet::new()),
            CrdtKind::ORSet => Model::ORSet(BTreeSet::new()),
            CrdtKind::LWWRegister => Model::LWWRegister(key(&Any::default())),
            CrdtKind::Flag => Model::Flag(false),
            CrdtKind::ORMap => Model::ORMap(BTreeMap::new()),
            CrdtKind::Vote => Model::Vote {
                self_vote: false,
                votes_for: 0,
                total_voters: 1,
            },
        };
        model.receive(delta);
        model
    }

    /// Applies a delta from the proxy; panics on a delta a correct proxy does not send.
    pub fn receive(&mut self, delta: &CrdtDelta) {
        match (self, delta.delta.as_ref().expect("empty delta")) {
            (Model::GCounter(v), D::Gcounter(d)) => *v = v.checked_add(d.increment).unwrap(),
            (Model::PNCounter(v), D::Pncounter(d)) => *v = v.checked_add(d.change).unwrap(),
            (Model::GSet(s), D::Gset(d)) => {
                for element in &d.added {
                    assert!(s.insert(key(element)), "GSet delta adds a present element");
                }
            }
            (Model::ORSet(s), D::Orset(d)) => {
                if d.cleared {
                    s.clear();
                }
                for element in &d.removed {
                    assert!(
                        s.remove(&key(element)),
                        "ORSet delta removes an absent element"
                    );
                }
                for element in &d.added {
                    assert!(s.insert(key(element)), "ORSet delta adds a present element");
                }
            }
            (Model::LWWRegister(v), D::Lwwregister(d)) => {
                *v = key(d.value.as_ref().expect("register delta without value"));
            }
            // A support library ignores `false` for an enabled flag.
            (Model::Flag(v), D::Flag(d)) => *v |= d.value,
            (Model::ORMap(m), D::Ormap(d)) => {
                if d.cleared {
                    m.clear();
                }
                for k in &d.removed {
                    assert!(
                        m.remove(&key(k)).is_some(),
                        "ORMap delta removes a missing key"
                    );
                }
                for entry in &d.updated {
                    let value = m
                        .get_mut(&key(entry.key.as_ref().unwrap()))
                        .expect("ORMap delta updates a missing key");
                    value.receive(entry.delta.as_ref().unwrap());
                }
                for entry in &d.added {
                    let value = Model::from_init(entry.delta.as_ref().unwrap());
                    let previous = m.insert(key(entry.key.as_ref().unwrap()), value);
                    assert!(previous.is_none(), "ORMap delta adds a present key");
                }
            }
            (
                Model::Vote {
                    self_vote,
                    votes_for,
                    total_voters,
                },
                D::Vote(d),
            ) => {
                *self_vote = d.self_vote;
                *votes_for = d.votes_for;
                *total_voters = d.total_voters;
            }
            (model, delta) => panic!("delta {delta:?} does not fit {model:?}"),
        }
    }
}
