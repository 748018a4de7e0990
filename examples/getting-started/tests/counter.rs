//! The counter's behaviour, through the SDK's testkit (no proxy, no network).

use cloudstate::Code;
use cloudstate::testkit::EventSourcedTestKit;
use getting_started::proto::{self, counter};
use getting_started::{Counter, CounterEvent, entity};

fn increase(value: i64) -> proto::IncreaseValue {
    proto::IncreaseValue {
        counter_id: "c1".into(),
        value,
    }
}

#[test]
fn increases_add_up_and_are_events() {
    let mut kit: EventSourcedTestKit<Counter> = EventSourcedTestKit::new(entity(), "c1");
    let result = kit.command(counter::increase(increase(2))).unwrap();
    assert_eq!(result.reply::<proto::CurrentValue>().unwrap().value, 2);
    assert_eq!(
        result.events(),
        [CounterEvent::Increased(proto::Increased { value: 2 })]
    );
    kit.command(counter::increase(increase(3))).unwrap();
    let current = kit
        .command(counter::get_current_value(proto::GetCounter {
            counter_id: "c1".into(),
        }))
        .unwrap();
    assert_eq!(current.reply::<proto::CurrentValue>().unwrap().value, 5);
}

#[test]
fn only_positive_increases_are_accepted() {
    let mut kit: EventSourcedTestKit<Counter> = EventSourcedTestKit::new(entity(), "c1");
    let outcome = kit.command(counter::increase(increase(0))).unwrap();
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.code(), Some(Code::InvalidArgument));
    assert!(outcome.events().is_empty());
}
