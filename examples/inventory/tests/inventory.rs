//! The inventory's behaviour, through the SDK's testkit (no proxy, no network).

use cloudstate::Code;
use cloudstate::testkit::{StateAction, ValueEntityTestKit};
use inventory::proto::{self, persistence::ProductStock};

fn product() -> ValueEntityTestKit<ProductStock> {
    ValueEntityTestKit::new(inventory::entity(), "apple")
}

fn set(available: i32) -> proto::SetStockRequest {
    proto::SetStockRequest {
        product_id: "apple".into(),
        available,
    }
}

fn reserve(quantity: i32) -> proto::ReserveRequest {
    proto::ReserveRequest {
        product_id: "apple".into(),
        quantity,
    }
}

fn release(quantity: i32) -> proto::ReleaseRequest {
    proto::ReleaseRequest {
        product_id: "apple".into(),
        quantity,
    }
}

fn id() -> proto::ProductId {
    proto::ProductId {
        product_id: "apple".into(),
    }
}

fn stock(available: i32, reserved: i32) -> proto::Stock {
    proto::Stock {
        product_id: "apple".into(),
        available,
        reserved,
    }
}

fn stored(available: i32, reserved: i32) -> ProductStock {
    ProductStock {
        available,
        reserved,
    }
}

#[test]
fn an_unknown_product_has_no_stock() {
    let mut kit = product();
    let outcome = kit.command(proto::inventory::get_stock(id())).unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(0, 0));
    assert!(outcome.state_action().is_none());
    assert_eq!(kit.stored(), None);
}

#[test]
fn set_reserve_release() {
    let mut kit = product();
    let outcome = kit.command(proto::inventory::set_stock(set(10))).unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(10, 0));
    assert_eq!(
        outcome.state_action(),
        Some(&StateAction::Update(stored(10, 0)))
    );

    let outcome = kit.command(proto::inventory::reserve(reserve(4))).unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(6, 4));
    let outcome = kit.command(proto::inventory::release(release(1))).unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(7, 3));
    assert_eq!(kit.stored(), Some(&stored(7, 3)));

    // Setting the stock keeps the reservations.
    let outcome = kit.command(proto::inventory::set_stock(set(2))).unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(2, 3));

    // What the proxy stored is what a restarted entity sees.
    let mut restarted = kit.restarted().unwrap();
    let outcome = restarted
        .command(proto::inventory::get_stock(id()))
        .unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(2, 3));
}

#[test]
fn reserving_more_than_available_fails_and_changes_nothing() {
    let mut kit =
        ValueEntityTestKit::with_state(inventory::entity(), "apple", stored(3, 1)).unwrap();
    let outcome = kit.command(proto::inventory::reserve(reserve(4))).unwrap();
    let failure = outcome.failure().unwrap();
    assert_eq!(failure.code(), Some(Code::FailedPrecondition));
    assert_eq!(
        failure.description(),
        "Not enough stock of apple: 3 available, 4 requested"
    );
    assert!(outcome.state_action().is_none());
    assert_eq!(kit.stored(), Some(&stored(3, 1)));

    let outcome = kit.command(proto::inventory::release(release(2))).unwrap();
    assert_eq!(
        outcome.failure().unwrap().description(),
        "Cannot release 2 of apple: 1 reserved"
    );
}

#[test]
fn quantities_are_validated() {
    let mut kit = product();
    for outcome in [
        kit.command(proto::inventory::reserve(reserve(0))).unwrap(),
        kit.command(proto::inventory::release(release(-1))).unwrap(),
        kit.command(proto::inventory::set_stock(set(-5))).unwrap(),
    ] {
        assert_eq!(
            outcome.failure().and_then(|f| f.code()),
            Some(Code::InvalidArgument),
            "{outcome:?}"
        );
    }
    let mut full =
        ValueEntityTestKit::with_state(inventory::entity(), "apple", stored(i32::MAX, 1)).unwrap();
    let outcome = full.command(proto::inventory::release(release(1))).unwrap();
    assert_eq!(
        outcome.failure().and_then(|f| f.code()),
        Some(Code::OutOfRange)
    );
}

#[test]
fn remove_deletes_the_stock() {
    let mut kit = product();
    kit.command(proto::inventory::set_stock(set(5))).unwrap();
    let outcome = kit.command(proto::inventory::remove(id())).unwrap();
    outcome.reply::<()>().unwrap();
    assert_eq!(outcome.state_action(), Some(&StateAction::Delete));
    assert_eq!(kit.stored(), None);
    let outcome = kit.command(proto::inventory::get_stock(id())).unwrap();
    assert_eq!(outcome.reply::<proto::Stock>().unwrap(), stock(0, 0));
}

#[test]
fn the_server_accepts_the_registration() {
    inventory::server().unwrap();
}
