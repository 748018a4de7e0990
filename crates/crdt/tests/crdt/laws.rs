//! Property tests: merge laws, convergence of replication deltas, and the protocol mapping's
//! round trips, for every type (ORMaps with nested values, maps two levels deep).

use std::collections::HashSet;

use cloudstate_crdt::{Crdt, ReplicaId, View};
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::crdt_delta::Delta as D;
use cloudstate_protocol::crdt::{CrdtClock, CrdtDelta};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::model::Model;
use crate::reference::Ref;
use crate::strategies::{Event, REPLICAS, Step, run, scenario};

fn joined(a: &Crdt, b: &Crdt) -> Crdt {
    let mut joined = a.clone();
    joined.merge(b).unwrap();
    joined
}

/// Whether a user function's delta, applied by the user function to `view` (its value;
/// `None` for a value it creates), gives what the proxy's CRDT holds after applying it, when
/// no other replica is involved. It does not when an LWW write loses (a `REVERSE` or `CUSTOM`
/// clock not above the current one) or when an ORMap add meets a key the CRDT already has.
fn user_function_agrees(view: Option<&View>, delta: &CrdtDelta) -> bool {
    match &delta.delta {
        Some(D::Lwwregister(d)) => {
            view.is_none()
                || [CrdtClock::Default, CrdtClock::CustomAutoIncrement]
                    .map(i32::from)
                    .contains(&d.clock)
        }
        Some(D::Ormap(d)) => {
            let map = match view {
                Some(View::ORMap(map)) => Some(map),
                None => None,
                Some(_) => return true,
            };
            let mut present: HashSet<&Any> = match map {
                Some(map) if !d.cleared => map.keys().collect(),
                _ => HashSet::new(),
            };
            for key in &d.removed {
                present.remove(key);
            }
            let mut updated = HashSet::new();
            for entry in &d.updated {
                let (key, nested) = (entry.key.as_ref().unwrap(), entry.delta.as_ref().unwrap());
                if !updated.insert(key) {
                    return false;
                }
                let value = map
                    .filter(|_| present.contains(key))
                    .and_then(|m| m.get(key));
                if let Some(value) = value
                    && !user_function_agrees(Some(value), nested)
                {
                    return false;
                }
            }
            let mut added = HashSet::new();
            d.added.iter().all(|entry| {
                let key = entry.key.as_ref().unwrap();
                !present.contains(key)
                    && added.insert(key)
                    && user_function_agrees(None, entry.delta.as_ref().unwrap())
            })
        }
        _ => true,
    }
}

/// Round trips of one step, from the user function's point of view.
fn check_round_trips(step: &Step<'_>) {
    let old = step.before.view(step.replica);
    let new = step.after.view(step.replica);

    // The net delta takes a user function holding the old value to the new one.
    let delta = step.after.delta_since(step.before, step.replica).unwrap();
    let mut model = Model::of(&old);
    match &delta {
        Some(delta) => model.receive(delta),
        None => assert_eq!(old, new, "a change with no delta"),
    }
    assert_eq!(model, Model::of(&new), "delta {delta:?}");

    // The full state delta gives the value to a user function that has nothing.
    assert_eq!(
        Model::from_init(&step.after.full_state_delta(step.replica)),
        Model::of(&new)
    );

    // The user function's own view of its update: the same errors, and the same value when
    // nothing made the CRDT differ.
    if let Some((user_delta, result)) = &step.op {
        let mut belief = old.clone();
        let belief_result = belief.apply_user_delta(user_delta);
        assert_eq!(
            belief_result, *result,
            "the view and the CRDT disagree on {user_delta:?}"
        );
        if result.is_err() {
            assert_eq!(belief, old, "a refused delta changed the view");
        } else if user_function_agrees(Some(&old), user_delta) {
            assert_eq!(belief, new, "after {user_delta:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Merge is commutative, associative and idempotent, on states and on deltas (which are
    /// states too) reached by the same sequence of events.
    #[test]
    fn merge_is_a_join((kind, events) in scenario(), a: Index, b: Index, c: Index) {
        let sim = run(kind, &events, |_| ());
        let pool: Vec<Crdt> = sim
            .states
            .iter()
            .cloned()
            .chain(sim.deltas.iter().cloned().map(|d| d.into_crdt()))
            .collect();
        let (a, b, c) = (a.get(&pool), b.get(&pool), c.get(&pool));
        prop_assert_eq!(joined(a, b), joined(b, a));
        prop_assert_eq!(joined(&joined(a, b), c), joined(a, &joined(b, c)));
        prop_assert_eq!(&joined(a, a), a);
        prop_assert_eq!(joined(&joined(a, b), b), joined(a, b));
    }

    /// Every replica that receives every replication delta, in any order and with repeats,
    /// ends in the same state: the merge of all replicas' states.
    #[test]
    fn replicas_converge((kind, events) in scenario(), orders: [Vec<Index>; 3]) {
        let sim = run(kind, &events, |_| ());
        let all = sim.states.iter().skip(1).fold(sim.states[0].clone(), |s, t| joined(&s, t));
        for (i, (state, order)) in sim.states.iter().zip(&orders).enumerate() {
            let mut state = state.clone();
            let n = sim.deltas.len();
            // A random prefix with repeats, then all of them, rotated per replica.
            let deliveries = order
                .iter()
                .filter(|_| n > 0)
                .map(|index| index.index(n))
                .chain((0..n).map(|k| (k + i * 5) % n));
            for k in deliveries {
                state.apply_delta(&sim.deltas[k]).unwrap();
            }
            prop_assert_eq!(&state, &all, "replica {}", sim.replicas[i]);
        }
    }

    /// After every change (a user function's delta, or a merge), the net delta takes the user
    /// function's old value to the new one, the full state delta rebuilds the value, and the
    /// user function's own application of its delta agrees with the CRDT.
    #[test]
    fn protocol_round_trips((kind, events) in scenario()) {
        run(kind, &events, |step| check_round_trips(&step));
    }

    /// Every replica sees what a naive implementation of the same semantics (tombstones and
    /// unique tags, no dots) shows, after every change and every merge.
    #[test]
    fn observationally_equal_to_the_reference((kind, events) in scenario()) {
        let names = ["a", "b", "c"];
        let replicas = names.map(ReplicaId::from);
        let mut states = vec![Crdt::empty(kind); REPLICAS];
        let mut references = vec![Ref::empty(kind); REPLICAS];
        let mut tags = 0;
        for (i, event) in events.iter().enumerate() {
            let now = i64::try_from(i).unwrap() * 7;
            match event {
                Event::Op(r, delta) => {
                    if states[*r].apply_user_delta(&replicas[*r], delta, &|| now).is_ok() {
                        references[*r].apply(names[*r], delta, now, &mut tags);
                    }
                }
                Event::Sync { from, to } => {
                    let source = states[*from].clone();
                    states[*to].merge(&source).unwrap();
                    let source = references[*from].clone();
                    references[*to].join(&source);
                }
            }
            for r in 0..REPLICAS {
                prop_assert_eq!(
                    Model::of(&states[r].view(&replicas[r])),
                    references[r].model(names[r]),
                    "replica {} after event {}", names[r], i
                );
            }
        }
    }
}
