//! The counters example through the SDK's testkit: each command's reply and the exact delta
//! it sends the proxy.

use cloudstate::crdt::Clock;
use cloudstate::testkit::{CrdtTestKit, StateAction, deltas};
use cloudstate::{Call, Code};
use counters::proto::{
    self, CounterValue, FlagValue, Get, MapValue, MutateSet, RegisterValue, SetSize, SetValue,
    SomeValue,
};
use counters::{CrdtExample, entity};

fn kit() -> CrdtTestKit<CrdtExample> {
    CrdtTestKit::new(entity(), "k")
}

fn get() -> Get {
    Get { key: "k".into() }
}

fn counter(value: i64) -> proto::UpdateCounter {
    proto::UpdateCounter {
        key: "k".into(),
        value,
    }
}

fn item(key: &str) -> SomeValue {
    SomeValue {
        key: key.into(),
        description: format!("the {key}"),
    }
}

fn mutate(clear: bool, remove: &[&str], add: &[&str]) -> MutateSet {
    MutateSet {
        key: "k".into(),
        clear,
        remove: remove.iter().map(|key| item(key)).collect(),
        add: add.iter().map(|key| item(key)).collect(),
    }
}

fn failure_code<Out>(kit: &mut CrdtTestKit<CrdtExample>, call: Call<Out>) -> Option<Code> {
    let outcome = kit.command(call).unwrap();
    assert_eq!(outcome.state_action(), None);
    outcome.failure().and_then(cloudstate::Failure::code)
}

#[test]
fn gcounter() {
    let mut kit = kit();
    let get_value = |kit: &mut CrdtTestKit<CrdtExample>| {
        kit.command(proto::crdt_example::get_g_counter(get()))
            .unwrap()
            .reply::<CounterValue>()
            .unwrap()
            .value
    };
    assert_eq!(get_value(&mut kit), 0);
    let outcome = kit
        .command(proto::crdt_example::increment_g_counter(counter(5)))
        .unwrap();
    assert_eq!(outcome.reply::<CounterValue>().unwrap().value, 5);
    assert_eq!(outcome.delta(), Some(&deltas::gcounter(5)));
    let outcome = kit
        .command(proto::crdt_example::increment_g_counter(counter(0)))
        .unwrap();
    assert_eq!(outcome.state_action(), None);
    assert_eq!(
        failure_code(
            &mut kit,
            proto::crdt_example::increment_g_counter(counter(-1))
        ),
        Some(Code::InvalidArgument)
    );
    // Another node's increments arrive as deltas.
    kit.delta(deltas::gcounter(10)).unwrap();
    assert_eq!(get_value(&mut kit), 15);
}

#[test]
fn pncounter() {
    let mut kit = kit();
    let outcome = kit
        .command(proto::crdt_example::update_pn_counter(counter(-3)))
        .unwrap();
    assert_eq!(outcome.reply::<CounterValue>().unwrap().value, -3);
    assert_eq!(outcome.delta(), Some(&deltas::pncounter(-3)));
    kit.delta(deltas::pncounter(10)).unwrap();
    let outcome = kit
        .command(proto::crdt_example::update_pn_counter(counter(1)))
        .unwrap();
    assert_eq!(outcome.reply::<CounterValue>().unwrap().value, 8);
    assert_eq!(outcome.delta(), Some(&deltas::pncounter(1)));
    let value = kit
        .command(proto::crdt_example::get_pn_counter(get()))
        .unwrap();
    assert_eq!(value.reply::<CounterValue>().unwrap().value, 8);
    assert_eq!(value.state_action(), None);
}

#[test]
fn gset() {
    let mut kit = kit();
    let outcome = kit
        .command(proto::crdt_example::mutate_g_set(mutate(
            false,
            &[],
            &["b", "a"],
        )))
        .unwrap();
    assert_eq!(outcome.reply::<SetSize>().unwrap().size, 2);
    assert_eq!(
        outcome.delta(),
        Some(&deltas::gset(&[&item("a"), &item("b")]))
    );
    assert_eq!(
        outcome.delta().map(|delta| format!("{delta:?}")
            .contains("type.googleapis.com/com.example.crdts.SomeValue")),
        Some(true)
    );
    let outcome = kit
        .command(proto::crdt_example::mutate_g_set(mutate(
            false,
            &[],
            &["a", "c"],
        )))
        .unwrap();
    assert_eq!(outcome.delta(), Some(&deltas::gset(&[&item("c")])));
    assert_eq!(
        failure_code(
            &mut kit,
            proto::crdt_example::mutate_g_set(mutate(false, &["a"], &[]))
        ),
        Some(Code::InvalidArgument)
    );
    let items = kit
        .command(proto::crdt_example::get_g_set(get()))
        .unwrap()
        .reply::<SetValue>()
        .unwrap()
        .items;
    assert_eq!(items.len(), 3);
    assert!(items.contains(&item("c")));
}

#[test]
fn orset() {
    let mut kit = kit();
    let none: &[&SomeValue] = &[];
    let outcome = kit
        .command(proto::crdt_example::mutate_or_set(mutate(
            false,
            &[],
            &["a", "b", "c"],
        )))
        .unwrap();
    assert_eq!(outcome.reply::<SetSize>().unwrap().size, 3);
    assert_eq!(
        outcome.delta(),
        Some(&deltas::orset(
            false,
            none,
            &[&item("a"), &item("b"), &item("c")]
        ))
    );
    let outcome = kit
        .command(proto::crdt_example::mutate_or_set(mutate(
            false,
            &["b", "x"],
            &["d"],
        )))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::orset(false, &[&item("b")], &[&item("d")]))
    );
    let outcome = kit
        .command(proto::crdt_example::mutate_or_set(mutate(
            true,
            &[],
            &["e"],
        )))
        .unwrap();
    assert_eq!(outcome.reply::<SetSize>().unwrap().size, 1);
    assert_eq!(
        outcome.delta(),
        Some(&deltas::orset(true, none, &[&item("e")]))
    );
    kit.delta(deltas::orset(false, none, &[&item("f")]))
        .unwrap();
    let items = kit
        .command(proto::crdt_example::get_or_set(get()))
        .unwrap()
        .reply::<SetValue>()
        .unwrap()
        .items;
    assert_eq!(items.len(), 2);
    assert!(items.contains(&item("e")) && items.contains(&item("f")));
}

fn write(value: &str, clock: proto::Clock, custom_clock_value: i64) -> proto::SetRegisterValue {
    proto::SetRegisterValue {
        key: "k".into(),
        value: Some(item(value)),
        clock: clock.into(),
        custom_clock_value,
    }
}

#[test]
fn register() {
    let mut kit = kit();
    let read = |kit: &mut CrdtTestKit<CrdtExample>| {
        kit.command(proto::crdt_example::get_register(get()))
            .unwrap()
            .reply::<RegisterValue>()
            .unwrap()
            .value
    };
    assert_eq!(read(&mut kit), None);
    let outcome = kit
        .command(proto::crdt_example::set_register(write(
            "a",
            proto::Clock::Default,
            0,
        )))
        .unwrap();
    assert_eq!(outcome.delta(), Some(&deltas::lww(&item("a"))));
    let outcome = kit
        .command(proto::crdt_example::set_register(write(
            "a",
            proto::Clock::Custom,
            7,
        )))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::lww_with_clock(&item("a"), Clock::Custom(7)))
    );
    let outcome = kit
        .command(proto::crdt_example::set_register(write(
            "b",
            proto::Clock::Reverse,
            0,
        )))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::lww_with_clock(&item("b"), Clock::Reverse))
    );
    let outcome = kit
        .command(proto::crdt_example::set_register(write(
            "c",
            proto::Clock::CustomAutoIncrement,
            9,
        )))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::lww_with_clock(
            &item("c"),
            Clock::CustomAutoIncrement(9)
        ))
    );
    assert_eq!(read(&mut kit), Some(item("c")));
    kit.delta(deltas::lww(&item("elsewhere"))).unwrap();
    assert_eq!(read(&mut kit), Some(item("elsewhere")));
    let mut missing = write("x", proto::Clock::Default, 0);
    missing.value = None;
    assert_eq!(
        failure_code(&mut kit, proto::crdt_example::set_register(missing)),
        Some(Code::InvalidArgument)
    );
}

#[test]
fn flag() {
    let mut kit = kit();
    let read = |kit: &mut CrdtTestKit<CrdtExample>| {
        kit.command(proto::crdt_example::get_flag(get()))
            .unwrap()
            .reply::<FlagValue>()
            .unwrap()
            .enabled
    };
    assert!(!read(&mut kit));
    let outcome = kit
        .command(proto::crdt_example::enable_flag(get()))
        .unwrap();
    assert_eq!(outcome.delta(), Some(&deltas::flag(true)));
    let outcome = kit
        .command(proto::crdt_example::enable_flag(get()))
        .unwrap();
    assert_eq!(outcome.state_action(), None);
    assert!(read(&mut kit));
}

fn map_update(counter: &str, value: i64) -> proto::UpdateMapCounter {
    proto::UpdateMapCounter {
        key: "k".into(),
        counter: counter.into(),
        value,
    }
}

fn map_remove(counter: &str) -> proto::RemoveMapCounter {
    proto::RemoveMapCounter {
        key: "k".into(),
        counter: counter.into(),
    }
}

fn counters(outcome: &cloudstate::testkit::CrdtOutcome) -> Vec<(String, i64)> {
    let mut counters: Vec<_> = outcome
        .reply::<MapValue>()
        .unwrap()
        .counters
        .into_iter()
        .collect();
    counters.sort();
    counters
}

#[test]
fn map_of_counters() {
    let mut kit = kit();
    let none: &[&str] = &[];
    let outcome = kit
        .command(proto::crdt_example::update_map_counter(map_update("x", 2)))
        .unwrap();
    assert_eq!(counters(&outcome), [("x".to_owned(), 2)]);
    assert_eq!(
        outcome.delta(),
        Some(&deltas::ormap(
            false,
            none,
            &[],
            &[("x", deltas::pncounter(2))]
        ))
    );
    let outcome = kit
        .command(proto::crdt_example::update_map_counter(map_update("x", -5)))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::ormap(
            false,
            none,
            &[("x", deltas::pncounter(-5))],
            &[]
        ))
    );
    let outcome = kit
        .command(proto::crdt_example::update_map_counter(map_update("y", 0)))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::ormap(
            false,
            none,
            &[],
            &[("y", deltas::pncounter(0))]
        ))
    );
    assert_eq!(
        counters(&outcome),
        [("x".to_owned(), -3), ("y".to_owned(), 0)]
    );
    let outcome = kit
        .command(proto::crdt_example::remove_map_counter(map_remove("x")))
        .unwrap();
    assert_eq!(
        outcome.delta(),
        Some(&deltas::ormap(false, &["x"], &[], &[]))
    );
    let outcome = kit
        .command(proto::crdt_example::remove_map_counter(map_remove("nope")))
        .unwrap();
    assert_eq!(outcome.state_action(), None);
    assert_eq!(counters(&outcome), [("y".to_owned(), 0)]);
    kit.delta(deltas::ormap(
        false,
        none,
        &[("y", deltas::pncounter(4))],
        &[],
    ))
    .unwrap();
    let outcome = kit.command(proto::crdt_example::get_map(get())).unwrap();
    assert_eq!(counters(&outcome), [("y".to_owned(), 4)]);
}

#[test]
fn a_key_holds_one_type_until_deleted() {
    let mut kit = kit();
    kit.command(proto::crdt_example::increment_g_counter(counter(1)))
        .unwrap();
    assert_eq!(
        failure_code(&mut kit, proto::crdt_example::update_pn_counter(counter(1))),
        Some(Code::FailedPrecondition)
    );
    assert_eq!(
        failure_code(&mut kit, proto::crdt_example::get_or_set(get())),
        Some(Code::FailedPrecondition)
    );
    let deleted = kit.command(proto::crdt_example::delete(get())).unwrap();
    assert_eq!(deleted.state_action(), Some(&StateAction::Delete));
    let outcome = kit
        .command(proto::crdt_example::update_pn_counter(counter(1)))
        .unwrap();
    assert_eq!(outcome.delta(), Some(&deltas::pncounter(1)));
}
