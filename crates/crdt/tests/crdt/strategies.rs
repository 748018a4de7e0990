//! Delta builders, proptest strategies, and a simulation of replicas that change and merge.

use bytes::Bytes;
use cloudstate_crdt::{Crdt, CrdtError, CrdtKind, Delta, ReplicaId};
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{
    CrdtClock, CrdtDelta, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta, OrMapDelta,
    OrMapEntryDelta, OrSetDelta, PnCounterDelta, VoteDelta,
};
use proptest::collection::vec;
use proptest::prelude::*;

pub const KINDS: [CrdtKind; 8] = [
    CrdtKind::GCounter,
    CrdtKind::PNCounter,
    CrdtKind::GSet,
    CrdtKind::ORSet,
    CrdtKind::LWWRegister,
    CrdtKind::Flag,
    CrdtKind::ORMap,
    CrdtKind::Vote,
];

/// An element or key: a string value.
pub fn elem(name: &str) -> Any {
    Any {
        type_url: "p.cloudstate.io/string".into(),
        value: Bytes::copy_from_slice(name.as_bytes()),
    }
}

fn delta(delta: D) -> CrdtDelta {
    CrdtDelta { delta: Some(delta) }
}

pub fn gcounter(increment: u64) -> CrdtDelta {
    delta(D::Gcounter(GCounterDelta { increment }))
}

pub fn pncounter(change: i64) -> CrdtDelta {
    delta(D::Pncounter(PnCounterDelta { change }))
}

pub fn gset(added: &[Any]) -> CrdtDelta {
    delta(D::Gset(GSetDelta {
        added: added.to_vec(),
    }))
}

pub fn orset(cleared: bool, removed: &[Any], added: &[Any]) -> CrdtDelta {
    delta(D::Orset(OrSetDelta {
        cleared,
        removed: removed.to_vec(),
        added: added.to_vec(),
    }))
}

pub fn lww(value: Any, clock: CrdtClock, custom_clock_value: i64) -> CrdtDelta {
    delta(D::Lwwregister(LwwRegisterDelta {
        value: Some(value),
        clock: clock.into(),
        custom_clock_value,
    }))
}

pub fn flag(value: bool) -> CrdtDelta {
    delta(D::Flag(FlagDelta { value }))
}

pub fn entry(key: Any, delta: CrdtDelta) -> OrMapEntryDelta {
    OrMapEntryDelta {
        key: Some(key),
        delta: Some(delta),
    }
}

pub fn ormap(
    cleared: bool,
    removed: &[Any],
    updated: Vec<OrMapEntryDelta>,
    added: Vec<OrMapEntryDelta>,
) -> CrdtDelta {
    delta(D::Ormap(OrMapDelta {
        cleared,
        removed: removed.to_vec(),
        updated,
        added,
    }))
}

pub fn vote(self_vote: bool, votes_for: i32, total_voters: i32) -> CrdtDelta {
    delta(D::Vote(VoteDelta {
        self_vote,
        votes_for,
        total_voters,
    }))
}

/// One of six elements, of two types.
fn element() -> impl Strategy<Value = Any> {
    (0..2u8, 0..3u8).prop_map(|(t, v)| Any {
        type_url: format!("type.googleapis.com/e{t}"),
        value: Bytes::from(vec![v]),
    })
}

fn clock() -> impl Strategy<Value = CrdtClock> {
    prop_oneof![
        Just(CrdtClock::Default),
        Just(CrdtClock::Reverse),
        Just(CrdtClock::Custom),
        Just(CrdtClock::CustomAutoIncrement),
    ]
}

/// The kinds an ORMap at `depth` may hold: maps only above depth 0.
fn nested_kinds(depth: u32) -> Vec<CrdtKind> {
    KINDS
        .into_iter()
        .filter(|kind| depth > 0 || *kind != CrdtKind::ORMap)
        .collect()
}

/// An ORMap entry: keys name a type, and usually carry a delta of that type.
fn map_entry(depth: u32) -> BoxedStrategy<OrMapEntryDelta> {
    let kinds = nested_kinds(depth);
    (
        proptest::sample::select(kinds.clone()),
        0..2u8,
        proptest::sample::select(kinds),
        proptest::bool::weighted(0.2),
    )
        .prop_flat_map(move |(kind, v, other, mismatched)| {
            let key = Any {
                type_url: format!("type.googleapis.com/{kind}"),
                value: Bytes::from(vec![v]),
            };
            let nested = if mismatched { other } else { kind };
            delta_of(nested, depth.saturating_sub(1)).prop_map(move |d| entry(key.clone(), d))
        })
        .boxed()
}

fn map_key(depth: u32) -> impl Strategy<Value = Any> {
    (proptest::sample::select(nested_kinds(depth)), 0..2u8).prop_map(|(kind, v)| Any {
        type_url: format!("type.googleapis.com/{kind}"),
        value: Bytes::from(vec![v]),
    })
}

/// A user function's delta of `kind`; ORMaps nest maps `depth` levels deep.
pub fn delta_of(kind: CrdtKind, depth: u32) -> BoxedStrategy<CrdtDelta> {
    match kind {
        CrdtKind::GCounter => (0..4u64).prop_map(gcounter).boxed(),
        CrdtKind::PNCounter => (-4..4i64).prop_map(pncounter).boxed(),
        CrdtKind::GSet => vec(element(), 0..3).prop_map(|a| gset(&a)).boxed(),
        CrdtKind::ORSet => (
            proptest::bool::weighted(0.15),
            vec(element(), 0..3),
            vec(element(), 0..3),
        )
            .prop_map(|(c, r, a)| orset(c, &r, &a))
            .boxed(),
        CrdtKind::LWWRegister => (element(), clock(), -3..4i64)
            .prop_map(|(v, c, t)| lww(v, c, t))
            .boxed(),
        CrdtKind::Flag => proptest::bool::weighted(0.6).prop_map(flag).boxed(),
        CrdtKind::ORMap => (
            proptest::bool::weighted(0.1),
            vec(map_key(depth), 0..2),
            vec(map_entry(depth), 0..3),
            vec(map_entry(depth), 0..3),
        )
            .prop_map(|(c, r, u, a)| ormap(c, &r, u, a))
            .boxed(),
        CrdtKind::Vote => (any::<bool>(), any::<i32>(), any::<i32>())
            .prop_map(|(s, f, t)| vote(s, f, t))
            .boxed(),
    }
}

/// What happens in a simulation: a replica applies a user function's delta, or a replica
/// merges another's full state.
#[derive(Clone, Debug)]
pub enum Event {
    Op(usize, CrdtDelta),
    Sync { from: usize, to: usize },
}

pub const REPLICAS: usize = 3;

pub fn events(kind: CrdtKind) -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        3 => (0..REPLICAS, delta_of(kind, 1)).prop_map(|(r, d)| Event::Op(r, d)),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Event::Sync { from, to }),
    ];
    vec(event, 0..16)
}

/// A kind, and events for it.
pub fn scenario() -> impl Strategy<Value = (CrdtKind, Vec<Event>)> {
    proptest::sample::select(KINDS.to_vec()).prop_flat_map(|kind| (Just(kind), events(kind)))
}

/// One step of a simulation, as `run` reports it.
pub struct Step<'a> {
    pub replica: &'a ReplicaId,
    pub before: &'a Crdt,
    pub after: &'a Crdt,
    /// For an op: the user function's delta and whether the CRDT accepted it.
    pub op: Option<(&'a CrdtDelta, Result<(), CrdtError>)>,
}

/// Replicas after a simulation, and every replication delta their ops produced.
pub struct Sim {
    pub replicas: Vec<ReplicaId>,
    pub states: Vec<Crdt>,
    pub deltas: Vec<Delta>,
}

/// Runs `events` on replicas "a", "b", "c" that start with an empty CRDT of `kind`; the wall
/// clock advances 7 ms per event. Checks that a refused delta changed nothing.
pub fn run(kind: CrdtKind, events: &[Event], mut observe: impl FnMut(Step<'_>)) -> Sim {
    let replicas: Vec<ReplicaId> = ["a", "b", "c"].map(ReplicaId::from).to_vec();
    let mut states = vec![Crdt::empty(kind); REPLICAS];
    let mut deltas = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let now = i64::try_from(i).unwrap() * 7;
        let clock = move || now;
        match event {
            Event::Op(r, user_delta) => {
                let before = states[*r].clone();
                let result = states[*r].apply_user_delta(&replicas[*r], user_delta, &clock);
                let result = match result {
                    Ok(delta) => {
                        deltas.push(delta);
                        Ok(())
                    }
                    Err(error) => {
                        assert_eq!(states[*r], before, "a refused delta changed the state");
                        Err(error)
                    }
                };
                observe(Step {
                    replica: &replicas[*r],
                    before: &before,
                    after: &states[*r],
                    op: Some((user_delta, result)),
                });
            }
            Event::Sync { from, to } => {
                let before = states[*to].clone();
                let source = states[*from].clone();
                states[*to].merge(&source).unwrap();
                observe(Step {
                    replica: &replicas[*to],
                    before: &before,
                    after: &states[*to],
                    op: None,
                });
            }
        }
    }
    Sim {
        replicas,
        states,
        deltas,
    }
}
