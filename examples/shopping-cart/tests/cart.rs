//! The cart's behaviour, through the SDK's testkit (no proxy, no network).

use cloudstate::Code;
use cloudstate::testkit::EventSourcedTestKit;
use shopping_cart::proto::{self, persistence};
use shopping_cart::{CartEvent, ShoppingCart, entity};

fn cart() -> EventSourcedTestKit<ShoppingCart> {
    EventSourcedTestKit::new(entity(), "user1")
}

fn add(product_id: &str, name: &str, quantity: i32) -> proto::AddLineItem {
    proto::AddLineItem {
        user_id: "user1".into(),
        product_id: product_id.into(),
        name: name.into(),
        quantity,
    }
}

fn remove(product_id: &str) -> proto::RemoveLineItem {
    proto::RemoveLineItem {
        user_id: "user1".into(),
        product_id: product_id.into(),
    }
}

fn get() -> proto::GetShoppingCart {
    proto::GetShoppingCart {
        user_id: "user1".into(),
    }
}

fn line(product_id: &str, name: &str, quantity: i32) -> proto::LineItem {
    proto::LineItem {
        product_id: product_id.into(),
        name: name.into(),
        quantity,
    }
}

fn items(kit: &mut EventSourcedTestKit<ShoppingCart>) -> Vec<proto::LineItem> {
    kit.command(proto::shopping_cart::get_cart(get()))
        .unwrap()
        .reply::<proto::Cart>()
        .unwrap()
        .items
}

#[test]
fn add_remove_and_get() {
    let mut kit = cart();
    assert!(items(&mut kit).is_empty());

    let added = kit
        .command(proto::shopping_cart::add_item(add("apple", "Apple", 2)))
        .unwrap();
    added.reply::<()>().unwrap();
    assert_eq!(
        added.events(),
        [CartEvent::ItemAdded(persistence::ItemAdded {
            item: Some(persistence::LineItem {
                product_id: "apple".into(),
                name: "Apple".into(),
                quantity: 2,
            }),
        })]
    );
    kit.command(proto::shopping_cart::add_item(add("pear", "Pear", 1)))
        .unwrap();
    kit.command(proto::shopping_cart::add_item(add("apple", "Apple", 3)))
        .unwrap();
    assert_eq!(
        items(&mut kit),
        [line("apple", "Apple", 5), line("pear", "Pear", 1)]
    );

    let removed = kit
        .command(proto::shopping_cart::remove_item(remove("apple")))
        .unwrap();
    removed.reply::<()>().unwrap();
    assert_eq!(
        removed.events(),
        [CartEvent::ItemRemoved(persistence::ItemRemoved {
            product_id: "apple".into()
        })]
    );
    kit.command(proto::shopping_cart::add_item(add("apple", "Apple", 1)))
        .unwrap();
    // Insertion order: a product added again goes to the end.
    assert_eq!(
        items(&mut kit),
        [line("pear", "Pear", 1), line("apple", "Apple", 1)]
    );
}

#[test]
fn failures_emit_nothing() {
    let mut kit = cart();
    kit.command(proto::shopping_cart::add_item(add("apple", "Apple", 1)))
        .unwrap();

    for quantity in [0, -3] {
        let outcome = kit
            .command(proto::shopping_cart::add_item(add(
                "pear", "Pear", quantity,
            )))
            .unwrap();
        let failure = outcome.failure().unwrap();
        assert_eq!(
            failure.description(),
            "Cannot add negative quantity of item pear"
        );
        assert_eq!(failure.code(), Some(Code::InvalidArgument));
        assert!(outcome.events().is_empty());
    }

    let outcome = kit
        .command(proto::shopping_cart::remove_item(remove("pear")))
        .unwrap();
    let failure = outcome.failure().unwrap();
    assert_eq!(
        failure.description(),
        "Cannot remove item pear because it is not in the cart."
    );
    assert_eq!(failure.code(), Some(Code::NotFound));
    assert!(outcome.events().is_empty());

    assert_eq!(kit.journal().len(), 1);
    assert_eq!(items(&mut kit), [line("apple", "Apple", 1)]);
}

#[test]
fn snapshot_every_five_events() {
    let mut kit = cart();
    let snapshots: Vec<bool> = (1..=11)
        .map(|n| {
            kit.command(proto::shopping_cart::add_item(add(
                &format!("p{n}"),
                "Product",
                1,
            )))
            .unwrap()
            .snapshot()
            .is_some()
        })
        .collect();
    let expected: Vec<bool> = (1..=11).map(|n| n % 5 == 0).collect();
    assert_eq!(snapshots, expected);

    let (sequence, snapshot) = kit.latest_snapshot().unwrap();
    assert_eq!(*sequence, 10);
    assert_eq!(snapshot.items.len(), 10);
    // Reads emit nothing, so they never snapshot.
    assert!(
        kit.command(proto::shopping_cart::get_cart(get()))
            .unwrap()
            .snapshot()
            .is_none()
    );
}

#[test]
fn recovery_from_snapshot_and_events_gives_the_same_cart() {
    let mut kit = cart();
    for (n, product) in ["a", "b", "c", "a", "d", "e", "b"].iter().enumerate() {
        kit.command(proto::shopping_cart::add_item(add(
            product,
            &product.to_uppercase(),
            n as i32 + 1,
        )))
        .unwrap();
    }
    kit.command(proto::shopping_cart::remove_item(remove("c")))
        .unwrap();
    assert_eq!(
        kit.latest_snapshot().map(|(sequence, _)| *sequence),
        Some(5)
    );

    let mut recovered = kit.restarted().unwrap();
    assert_eq!(recovered.state(), kit.state());
    assert_eq!(recovered.sequence_number(), 8);
    assert_eq!(items(&mut recovered), items(&mut kit));

    // Replaying the whole journal without a snapshot agrees as well.
    let events = kit.journal().iter().map(|(_, event)| event.clone());
    let replayed = EventSourcedTestKit::recover(entity(), "user1", None, events).unwrap();
    assert_eq!(replayed.state(), kit.state());
}
