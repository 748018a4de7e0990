//! The checkout's behaviour, through the SDK's testkit (no proxy, no network).

use checkout::proto;
use cloudstate::Code;
use cloudstate::protocol::Any;
use cloudstate::testkit::ActionTestKit;
use inventory::proto::ReserveRequest;

fn kit() -> ActionTestKit<checkout::Checkout> {
    ActionTestKit::new(checkout::action())
}

fn line(product_id: &str, quantity: i32) -> proto::OrderLine {
    proto::OrderLine {
        product_id: product_id.into(),
        quantity,
    }
}

fn order(lines: Vec<proto::OrderLine>) -> proto::Order {
    proto::Order {
        order_id: "o1".into(),
        lines,
    }
}

fn reserve(product_id: &str, quantity: i32) -> Any {
    Any::from_message(&ReserveRequest {
        product_id: product_id.into(),
        quantity,
    })
}

#[tokio::test]
async fn an_order_forwards_its_last_line_and_fans_out_the_others() {
    let lines = vec![line("apple", 2), line("pear", 1), line("plum", 3)];
    let outcome = kit()
        .unary(proto::checkout::place_order(order(lines)))
        .await
        .unwrap();

    let forward = outcome.forward().unwrap();
    assert_eq!(
        (forward.service.as_str(), forward.method.as_str()),
        (inventory::proto::inventory::NAME, "Reserve")
    );
    assert_eq!(forward.payload, reserve("plum", 3));

    let effects: Vec<_> = outcome
        .side_effects()
        .iter()
        .map(|e| (e.service.as_str(), e.method.as_str(), e.synchronous))
        .collect();
    assert_eq!(
        effects,
        [
            (inventory::proto::inventory::NAME, "Reserve", true),
            (inventory::proto::inventory::NAME, "Reserve", true),
            (checkout::proto::checkout::NAME, "Notify", false),
            (checkout::proto::checkout::NAME, "Notify", false),
            (checkout::proto::checkout::NAME, "Notify", false),
        ]
    );
    assert_eq!(outcome.side_effects()[0].payload, reserve("apple", 2));
    assert_eq!(outcome.side_effects()[1].payload, reserve("pear", 1));
    assert_eq!(
        outcome.side_effects()[4].payload,
        Any::from_message(&proto::OrderLineNotice {
            order_id: "o1".into(),
            product_id: "plum".into(),
            quantity: 3,
        })
    );
}

#[tokio::test]
async fn a_single_line_is_just_a_forward_and_a_notice() {
    let outcome = kit()
        .unary(proto::checkout::place_order(order(vec![line("apple", 1)])))
        .await
        .unwrap();
    assert_eq!(outcome.forward().unwrap().payload, reserve("apple", 1));
    assert_eq!(outcome.side_effects().len(), 1);
    assert!(!outcome.side_effects()[0].synchronous);
}

#[tokio::test]
async fn invalid_orders_fail_without_side_effects() {
    for bad in [
        order(vec![]),
        order(vec![line("apple", 1), line("pear", 0)]),
    ] {
        let outcome = kit()
            .unary(proto::checkout::place_order(bad))
            .await
            .unwrap();
        assert_eq!(
            outcome.failure().and_then(|f| f.code()),
            Some(Code::InvalidArgument),
            "{outcome:?}"
        );
        assert!(outcome.side_effects().is_empty());
    }
}

#[tokio::test]
async fn notify_replies_empty() {
    let notice = proto::OrderLineNotice {
        order_id: "o1".into(),
        product_id: "apple".into(),
        quantity: 1,
    };
    let outcome = kit().unary(proto::checkout::notify(notice)).await.unwrap();
    outcome.reply::<()>().unwrap();
}
