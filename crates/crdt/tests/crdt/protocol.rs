//! The protocol mapping against the facts the TCK checks (reference §2.7) and the proxy's
//! delta rules (§3.8), and the replication semantics of the observed-remove types.

use cloudstate_crdt::{Crdt, CrdtError, CrdtKind, Delta, ReplicaId, View, VoteTally};
use cloudstate_protocol::Any;
use cloudstate_protocol::crdt::CrdtClock::{Custom, CustomAutoIncrement, Default, Reverse};
use cloudstate_protocol::crdt::{CrdtDelta, OrMapEntryDelta};

use crate::strategies::{elem, entry, flag, gcounter, gset, lww, ormap, orset, pncounter, vote};

/// String elements.
fn els(names: &[&str]) -> Vec<Any> {
    names.iter().map(|name| elem(name)).collect()
}

fn replica(name: &str) -> ReplicaId {
    ReplicaId::from(name)
}

/// Applies user function deltas on replica "a" at 1 s after the epoch.
fn apply(crdt: &mut Crdt, deltas: &[CrdtDelta]) -> Result<(), CrdtError> {
    apply_at(crdt, "a", 1_000, deltas)
}

fn apply_at(crdt: &mut Crdt, on: &str, now: i64, deltas: &[CrdtDelta]) -> Result<(), CrdtError> {
    for delta in deltas {
        crdt.apply_user_delta(&replica(on), delta, &|| now)?;
    }
    Ok(())
}

fn create(delta: CrdtDelta) -> Crdt {
    Crdt::from_initial_delta(&replica("a"), &delta, &|| 1_000)
        .unwrap()
        .0
}

/// The net delta for replica "a" after `deltas`.
fn net(crdt: &mut Crdt, deltas: &[CrdtDelta]) -> Option<CrdtDelta> {
    let old = crdt.clone();
    apply(crdt, deltas).unwrap();
    crdt.delta_since(&old, &replica("a")).unwrap()
}

fn merged(a: &Crdt, b: &Crdt) -> Crdt {
    let mut merged = a.clone();
    merged.merge(b).unwrap();
    merged
}

#[test]
fn initial_empty_states_as_the_user_function_sees_them() {
    let a = replica("a");
    let full = |kind| Crdt::empty(kind).full_state_delta(&a);
    assert_eq!(full(CrdtKind::GCounter), gcounter(0));
    assert_eq!(full(CrdtKind::PNCounter), pncounter(0));
    assert_eq!(full(CrdtKind::ORSet), orset(false, &[], &[]));
    assert_eq!(full(CrdtKind::Flag), flag(false));
    assert_eq!(full(CrdtKind::ORMap), ormap(false, &[], vec![], vec![]));
    assert_eq!(full(CrdtKind::Vote), vote(false, 0, 1));
    assert_eq!(full(CrdtKind::LWWRegister), lww(Any::default(), Default, 0));
    for kind in crate::strategies::KINDS {
        assert_eq!(Crdt::empty(kind).view(&a), View::empty(kind));
    }
}

#[test]
fn a_register_created_with_the_empty_value_holds_it() {
    let register = create(lww(Any::default(), Default, 0));
    assert_eq!(register.kind(), CrdtKind::LWWRegister);
    assert_eq!(
        register.view(&replica("a")),
        View::LWWRegister(Any::default())
    );
}

#[test]
fn counters_report_the_net_change() {
    let mut counter = Crdt::empty(CrdtKind::PNCounter);
    let deltas = [pncounter(1), pncounter(-2), pncounter(3)];
    assert_eq!(net(&mut counter, &deltas), Some(pncounter(2)));
    assert_eq!(net(&mut counter, &[pncounter(2), pncounter(-2)]), None);

    let mut counter = create(gcounter(5));
    assert_eq!(
        net(&mut counter, &[gcounter(1), gcounter(0)]),
        Some(gcounter(1))
    );
    assert_eq!(counter.view(&replica("a")), View::GCounter(6));
}

#[test]
fn a_gcounter_cannot_be_decremented_nor_overflow() {
    let mut counter = create(gcounter(5));
    let error = apply(&mut counter, &[gcounter(-1i64 as u64)]).unwrap_err();
    assert_eq!(error, CrdtError::NegativeIncrement(-1));
    assert_eq!(
        error.to_string(),
        "cannot decrement a GCounter, requested amount was -1"
    );
    let huge = i64::MAX as u64;
    apply(&mut counter, &[gcounter(huge)]).unwrap();
    assert_eq!(
        apply(&mut counter, &[gcounter(huge)]),
        Err(CrdtError::Overflow(CrdtKind::GCounter))
    );
    assert_eq!(counter.view(&replica("a")), View::GCounter(huge + 5));

    let mut counter = create(pncounter(i64::MIN));
    assert_eq!(
        apply(&mut counter, &[pncounter(-1)]),
        Err(CrdtError::Overflow(CrdtKind::PNCounter))
    );
    assert_eq!(
        net(&mut counter, &[pncounter(i64::MAX)]),
        Some(pncounter(i64::MAX))
    );
}

#[test]
fn a_gset_reports_only_new_elements() {
    let (b, c) = (elem("b"), elem("c"));
    let mut set = create(gset(&els(&["b"])));
    assert_eq!(net(&mut set, &[gset(&els(&["b", "c"]))]), Some(gset(&[c])));
    assert_eq!(net(&mut set, &[gset(&[b])]), None);
}

#[test]
fn orset_changes() {
    let mut set = create(orset(false, &[], &els(&["a", "b"])));
    // Removing an absent element changes nothing.
    assert_eq!(net(&mut set, &[orset(false, &els(&["x"]), &[])]), None);
    assert_eq!(
        net(&mut set, &[orset(false, &els(&["a"]), &els(&["x"]))]),
        Some(orset(false, &els(&["a"]), &els(&["x"])))
    );
    // Emptied: cleared.
    assert_eq!(
        net(&mut set, &[orset(true, &[], &[])]),
        Some(orset(true, &[], &[]))
    );
    assert_eq!(net(&mut set, &[orset(true, &[], &[])]), None);

    // Add a, clear, add x, from {b}: cleared with x is shorter than removing a and b.
    let mut set = create(orset(false, &[], &els(&["b"])));
    let steps = [
        orset(false, &[], &els(&["a"])),
        orset(true, &[], &[]),
        orset(false, &[], &els(&["x"])),
    ];
    assert_eq!(
        net(&mut set.clone(), &steps),
        Some(orset(true, &[], &els(&["x"])))
    );
    // The same as one delta, which applies clear, then remove, then add.
    let one = orset(true, &els(&["x"]), &els(&["x", "a"]));
    assert_eq!(
        net(&mut set, &[one]),
        Some(orset(true, &[], &els(&["a", "x"])))
    );
}

#[test]
fn orset_additions_win_over_concurrent_removals() {
    let x = elem("x");
    let mut a = create(orset(false, &[], &els(&["x"])));
    let mut b = Crdt::empty(CrdtKind::ORSet);
    b.merge(&a).unwrap();
    apply_at(&mut a, "a", 0, &[orset(false, &els(&["x"]), &[])]).unwrap();
    apply_at(&mut b, "b", 0, &[orset(false, &[], &els(&["x"]))]).unwrap();
    let both = merged(&a, &b);
    assert_eq!(both, merged(&b, &a));
    assert_eq!(both.view(&replica("a")), View::ORSet([x.clone()].into()));

    // A removal that saw every addition wins.
    let mut a = both.clone();
    apply_at(&mut a, "a", 0, &[orset(false, &[x], &[])]).unwrap();
    assert_eq!(merged(&a, &b).view(&replica("b")), View::ORSet([].into()));
}

#[test]
fn flags_enable_once_and_never_disable() {
    let mut f = Crdt::empty(CrdtKind::Flag);
    assert_eq!(net(&mut f, &[flag(false)]), None);
    assert_eq!(net(&mut f, &[flag(true)]), Some(flag(true)));
    assert_eq!(net(&mut f, &[flag(true)]), None);
    let before = f.clone();
    assert_eq!(apply(&mut f, &[flag(false)]), Err(CrdtError::FlagDisable));
    assert_eq!(f, before);
}

#[test]
fn votes_count_every_voter() {
    let mut others = Crdt::empty(CrdtKind::Vote);
    for (name, yes) in [("b", true), ("c", true), ("d", true), ("e", false)] {
        apply_at(&mut others, name, 0, &[vote(yes, 0, 0)]).unwrap();
    }
    let mut mine = create(vote(false, 0, 0));
    mine.merge(&others).unwrap();
    assert_eq!(mine.full_state_delta(&replica("a")), vote(false, 3, 5));
    // The user function's votes_for and total_voters are ignored.
    assert_eq!(
        net(&mut mine, &[vote(true, 100, 100)]),
        Some(vote(true, 4, 5))
    );
    assert_eq!(net(&mut mine, &[vote(true, 0, 0)]), None);
    // Each replica sees its own vote.
    assert_eq!(mine.full_state_delta(&replica("e")), vote(false, 4, 5));

    // The user function's side of the same change.
    let mut view = View::Vote(VoteTally {
        self_vote: false,
        votes_for: 3,
        total_voters: 5,
    });
    view.apply_user_delta(&vote(true, 0, 0)).unwrap();
    assert_eq!(view.full_delta(), vote(true, 4, 5));
}

#[test]
fn register_clocks() {
    let (v1, v2, v3, v4) = (elem("1"), elem("2"), elem("3"), elem("4"));
    let timestamp = |r: &Crdt| match r {
        Crdt::LWWRegister(r) => r.timestamp(),
        _ => unreachable!(),
    };

    let mut r = create(lww(v1.clone(), Custom, 123));
    assert_eq!(timestamp(&r), Some(123));
    // CUSTOM below the current clock loses at once.
    assert_eq!(net(&mut r, &[lww(v2.clone(), Custom, 100)]), None);
    // CUSTOM_AUTO_INCREMENT is raised above it.
    assert_eq!(
        net(&mut r, &[lww(v3.clone(), CustomAutoIncrement, 100)]),
        Some(lww(v3.clone(), Default, 0))
    );
    assert_eq!(timestamp(&r), Some(124));
    apply(&mut r, &[lww(v4, CustomAutoIncrement, 456)]).unwrap();
    assert_eq!(timestamp(&r), Some(456));

    // REVERSE: the first write wins, locally and across replicas.
    let mut r = create(lww(v1.clone(), Reverse, 0));
    assert_eq!(timestamp(&r), Some(-1_000));
    assert_eq!(net(&mut r, &[lww(v2.clone(), Reverse, 0)]), None);
    let mut later = Crdt::empty(CrdtKind::LWWRegister);
    apply_at(&mut later, "b", 2_000, &[lww(v2.clone(), Reverse, 0)]).unwrap();
    assert_eq!(
        merged(&later, &r).view(&replica("b")),
        View::LWWRegister(v1)
    );

    // DEFAULT: the wall clock, but always after the current write.
    let mut r = Crdt::empty(CrdtKind::LWWRegister);
    apply_at(&mut r, "a", 5_000, &[lww(v2.clone(), Default, 0)]).unwrap();
    assert_eq!(timestamp(&r), Some(5_000));
    apply_at(&mut r, "a", 10, &[lww(v3.clone(), Default, 0)]).unwrap();
    assert_eq!(
        (timestamp(&r), r.view(&replica("a"))),
        (Some(5_001), View::LWWRegister(v3))
    );

    let mut bad = lww(v2, Default, 0);
    if let Some(cloudstate_protocol::crdt::crdt_delta::Delta::Lwwregister(d)) = &mut bad.delta {
        d.clock = 9;
    }
    assert_eq!(apply(&mut r, &[bad]), Err(CrdtError::UnknownClock(9)));
}

/// An ORMap entry delta keyed by a string.
fn e(key: &str, delta: CrdtDelta) -> OrMapEntryDelta {
    entry(elem(key), delta)
}

#[test]
fn ormap_added_entries_carry_the_initial_delta_of_the_new_value() {
    let mut map = Crdt::empty(CrdtKind::ORMap);
    let added = vec![
        e("pncounter", pncounter(0)),
        e("orset", orset(false, &[], &[])),
        e("flag", flag(false)),
        e("gcounter", gcounter(0)),
    ];
    let expected = vec![
        e("flag", flag(false)),
        e("gcounter", gcounter(0)),
        e("orset", orset(false, &[], &[])),
        e("pncounter", pncounter(0)),
    ];
    assert_eq!(
        net(&mut map, &[ormap(false, &[], vec![], added)]),
        Some(ormap(false, &[], vec![], expected.clone()))
    );
    assert_eq!(
        map.full_state_delta(&replica("a")),
        ormap(false, &[], vec![], expected)
    );
    // Removing missing keys changes nothing.
    assert_eq!(
        net(
            &mut map,
            &[ormap(false, &[elem("missing")], vec![], vec![])]
        ),
        None
    );
    // Updates, removals, type changes, clearing.
    let step = ormap(
        false,
        &[elem("flag")],
        vec![e("pncounter", pncounter(-7)), e("orset", flag(true))],
        vec![e("gcounter", vote(true, 0, 0))],
    );
    assert_eq!(
        net(&mut map, &[step]),
        Some(ormap(
            false,
            &[elem("flag"), elem("gcounter")],
            vec![e("pncounter", pncounter(-7))],
            vec![e("gcounter", vote(true, 1, 1))],
        ))
    );
    assert_eq!(
        net(&mut map, &[ormap(true, &[], vec![], vec![])]),
        Some(ormap(true, &[], vec![], vec![]))
    );
}

#[test]
fn ormap_updates_of_missing_keys_or_other_types_are_ignored_and_entry_errors_name_the_key() {
    let mut map = create(ormap(false, &[], vec![], vec![e("f", flag(true))]));
    let ignored = ormap(
        false,
        &[],
        vec![e("missing", gcounter(1)), e("f", gcounter(1))],
        vec![],
    );
    assert_eq!(net(&mut map, &[ignored]), None);

    let before = map.clone();
    let error = apply(
        &mut map,
        &[ormap(false, &[], vec![e("f", flag(false))], vec![])],
    );
    let error = error.unwrap_err();
    assert_eq!(
        error,
        CrdtError::InEntry {
            key_type: "p.cloudstate.io/string".into(),
            key_len: 1,
            source: Box::new(CrdtError::FlagDisable),
        }
    );
    assert_eq!(
        error.to_string(),
        "in the ORMap entry whose key is a p.cloudstate.io/string of 1 bytes: \
         cannot switch off an already enabled Flag"
    );
    let no_key = ormap(false, &[], vec![], vec![OrMapEntryDelta::default()]);
    assert_eq!(
        apply(&mut map, &[no_key]),
        Err(CrdtError::MissingEntryField("key"))
    );
    let empty = ormap(false, &[], vec![], vec![e("g", CrdtDelta::default())]);
    assert!(matches!(
        apply(&mut map, &[empty]),
        Err(CrdtError::InEntry { source, .. }) if *source == CrdtError::EmptyDelta
    ));
    assert_eq!(map, before);

    // Adding a key that exists: the delta applies to its value; a flag's `false` is a no-op.
    let again = ormap(false, &[], vec![], vec![e("f", flag(false))]);
    assert_eq!(net(&mut map, &[again]), None);
}

#[test]
fn ormap_concurrent_changes_of_a_key_all_count() {
    let add = ormap(false, &[], vec![], vec![e("k", gcounter(1))]);
    let mut a = create(add);
    let mut b = a.clone();
    apply_at(
        &mut a,
        "a",
        0,
        &[ormap(false, &[], vec![e("k", gcounter(2))], vec![])],
    )
    .unwrap();
    apply_at(
        &mut b,
        "b",
        0,
        &[ormap(false, &[], vec![e("k", gcounter(3))], vec![])],
    )
    .unwrap();
    let both = merged(&a, &b);
    assert_eq!(
        both.view(&replica("a")),
        View::ORMap([(elem("k"), View::GCounter(6))].into())
    );
}

#[test]
fn ormap_removed_keys_come_back_fresh_and_concurrent_updates_survive_removals() {
    let [x, y] = ["x", "y"].map(elem);
    let mut a = create(ormap(false, &[], vec![], vec![e("k", gset(&els(&["x"])))]));
    let stale = a.clone();
    // Remove and re-add: the stale replica's old value does not come back.
    let readd = ormap(
        false,
        &[elem("k")],
        vec![],
        vec![e("k", gset(&els(&["y"])))],
    );
    apply(&mut a, &[readd]).unwrap();
    let fresh = View::ORMap([(elem("k"), View::GSet([y.clone()].into()))].into());
    assert_eq!(merged(&stale, &a).view(&replica("b")), fresh);
    assert_eq!(merged(&a, &stale).view(&replica("a")), fresh);

    // An update concurrent with the removal survives it, with what the updater saw.
    let mut removed = stale.clone();
    apply(&mut removed, &[ormap(false, &[elem("k")], vec![], vec![])]).unwrap();
    let mut updated = stale.clone();
    let update = ormap(false, &[], vec![e("k", gset(&els(&["y"])))], vec![]);
    apply_at(&mut updated, "b", 0, &[update]).unwrap();
    assert_eq!(
        merged(&removed, &updated).view(&replica("a")),
        View::ORMap([(elem("k"), View::GSet([x, y].into()))].into())
    );
}

#[test]
fn types_never_mix() {
    let mut counter = create(gcounter(1));
    let mismatch = CrdtError::TypeMismatch {
        expected: CrdtKind::GCounter,
        found: CrdtKind::Flag,
    };
    assert_eq!(apply(&mut counter, &[flag(true)]), Err(mismatch.clone()));
    assert_eq!(
        counter.merge(&Crdt::empty(CrdtKind::Flag)),
        Err(mismatch.clone())
    );
    assert_eq!(
        mismatch.to_string(),
        "a Flag is incompatible with CRDT GCounter"
    );
    assert_eq!(
        apply(&mut counter, &[CrdtDelta::default()]),
        Err(CrdtError::EmptyDelta)
    );
    assert_eq!(
        Crdt::from_initial_delta(&replica("a"), &CrdtDelta::default(), &|| 0),
        Err(CrdtError::EmptyDelta)
    );
    assert_eq!(counter.view(&replica("a")), View::GCounter(1));
    assert_eq!(
        counter.delta_since(&Crdt::empty(CrdtKind::Flag), &replica("a")),
        Err(CrdtError::TypeMismatch {
            expected: CrdtKind::Flag,
            found: CrdtKind::GCounter,
        })
    );
}

#[test]
fn changes_no_delta_expresses_are_errors() {
    let a = replica("a");
    let incompatible = |kind, reason| Err(CrdtError::Incompatible { kind, reason });
    let (big, small) = (create(gcounter(2)), create(gcounter(1)));
    assert_eq!(
        small.delta_since(&big, &a),
        incompatible(CrdtKind::GCounter, "went down")
    );
    let (big, small) = (create(gset(&[elem("x")])), Crdt::empty(CrdtKind::GSet));
    assert_eq!(
        small.delta_since(&big, &a),
        incompatible(CrdtKind::GSet, "lost elements")
    );
    let off = View::Flag(false);
    assert_eq!(
        off.delta_since(&View::Flag(true)),
        incompatible(CrdtKind::Flag, "was switched off")
    );
    let (low, high) = (View::PNCounter(i64::MIN), View::PNCounter(i64::MAX));
    assert_eq!(
        high.delta_since(&low),
        incompatible(CrdtKind::PNCounter, "changed by more than a sint64 holds")
    );
}

#[test]
fn a_replica_without_the_entity_starts_from_a_delta() {
    let (state, delta): (Crdt, Delta) =
        Crdt::from_initial_delta(&replica("a"), &orset(false, &[], &[elem("x")]), &|| 0).unwrap();
    assert_eq!(delta.kind(), CrdtKind::ORSet);
    assert_eq!(delta.clone().into_crdt(), state);
    let mut grouped = delta;
    let mut next = state.clone();
    let more = next
        .apply_user_delta(
            &replica("a"),
            &orset(false, &[elem("x")], &[elem("y")]),
            &|| 0,
        )
        .unwrap();
    grouped.merge(&more).unwrap();
    assert_eq!(grouped.into_crdt(), next);
    assert_eq!(Delta::from(next.clone()).into_crdt(), next);
}

#[test]
fn ormap_updates_that_change_nothing_leave_the_state_alone() {
    let mut map = create(ormap(
        false,
        &[],
        vec![],
        vec![e("f", flag(true)), e("s", gset(&els(&["x"])))],
    ));
    let before = map.clone();
    let noop = ormap(
        false,
        &[],
        vec![e("f", flag(true)), e("s", gset(&els(&["x"])))],
        vec![e("f", flag(true))],
    );
    apply(&mut map, &[noop]).unwrap();
    assert_eq!(map, before);
}

#[test]
fn a_key_added_with_two_types_at_once_holds_the_later_type_in_the_protocol() {
    let mut a = Crdt::empty(CrdtKind::ORMap);
    let mut b = a.clone();
    apply_at(
        &mut a,
        "a",
        0,
        &[ormap(false, &[], vec![], vec![e("k", gcounter(1))])],
    )
    .unwrap();
    apply_at(
        &mut b,
        "b",
        0,
        &[ormap(false, &[], vec![], vec![e("k", flag(true))])],
    )
    .unwrap();
    let flag_wins = View::ORMap([(elem("k"), View::Flag(true))].into());
    assert_eq!(merged(&a, &b).view(&replica("a")), flag_wins);
    assert_eq!(merged(&b, &a).view(&replica("a")), flag_wins);
    // The next write of the key settles it: here, an update of the flag's type.
    let mut both = merged(&a, &b);
    apply(
        &mut both,
        &[ormap(false, &[], vec![e("k", gcounter(1))], vec![])],
    )
    .unwrap();
    assert_eq!(both.view(&replica("a")), flag_wins);
}
