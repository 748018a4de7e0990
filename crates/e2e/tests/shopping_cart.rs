//! The shopping cart end to end: the real proxy binary in front of the real Rust user function,
//! both as processes on 127.0.0.1, called over gRPC.

use std::time::Duration;

use bytes::Bytes;
use cloudstate_e2e::{Library, START_TIMEOUT, Service, UserFunction, raw_call, scenarios};
use cloudstate_store::{EntityKey, Store};
use cloudstate_store_embedded::EmbeddedStore;
use cloudstate_testutil::{free_port, temp_dir};
use tonic::Code;

fn cart_key(user: &str) -> EntityKey {
    EntityKey::new("shopping-cart", user)
}

/// Reads what the proxy persisted for `user` in an embedded store directory (after the proxy
/// stopped, since the store allows one process at a time).
async fn journal(dir: &std::path::Path, user: &str) -> cloudstate_store::Recovery {
    let store = EmbeddedStore::open(dir).unwrap();
    store.load_journal(&cart_key(user)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn add_remove_and_get_over_grpc() {
    let service = Service::rust_cart("memory", &[]).unwrap();
    let mut cart = service.cart().await.unwrap();

    assert_eq!(cart.get("alice").await.unwrap(), vec![]);
    cart.add("alice", "apple", 2).await.unwrap();
    cart.add("alice", "pear", 1).await.unwrap();
    cart.add("alice", "apple", 3).await.unwrap();
    cart.add("bob", "kiwi", 7).await.unwrap();
    assert_eq!(
        cart.get("alice").await.unwrap(),
        vec![("apple".into(), 5), ("pear".into(), 1)]
    );
    cart.remove("alice", "apple").await.unwrap();
    assert_eq!(cart.get("alice").await.unwrap(), vec![("pear".into(), 1)]);
    assert_eq!(cart.get("bob").await.unwrap(), vec![("kiwi".into(), 7)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_an_error_and_persists_nothing() {
    let dir = temp_dir("cart-failure-");
    let store = format!("embedded:{}", dir.path().display());
    let mut service = Service::rust_cart(&store, &[]).unwrap();
    let mut cart = service.cart().await.unwrap();

    cart.add("carol", "apple", 1).await.unwrap();
    let error = cart.add("carol", "apple", -1).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error.message().contains("Cannot add negative quantity"),
        "{error:?}"
    );
    let error = cart.remove("carol", "pear").await.unwrap_err();
    assert!(error.message().contains("pear"), "{error:?}");
    assert_eq!(cart.get("carol").await.unwrap(), vec![("apple".into(), 1)]);

    service
        .proxy
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();
    let recovery = journal(dir.path(), "carol").await;
    assert_eq!(
        recovery.events.len(),
        1,
        "only the successful add is persisted: {recovery:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_a_proxy_restart_through_replay_and_snapshot() {
    let dir = temp_dir("cart-restart-");
    let store = format!("embedded:{}", dir.path().display());
    let user_function = UserFunction::rust_cart(free_port()).unwrap();
    let uf_port = user_function.port;
    let mut service = Service::with(user_function, &store, &[]).unwrap();
    let mut cart = service.cart().await.unwrap();

    // Three events: below the snapshot interval of 5, so recovery replays the journal.
    for product in ["a", "b", "c"] {
        cart.add("dave", product, 1).await.unwrap();
    }
    service
        .proxy
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();
    let recovery = journal(dir.path(), "dave").await;
    assert!(recovery.snapshot.is_none());
    assert_eq!(recovery.events.len(), 3);

    let mut service = Service::with(service.user_function, &store, &[]).unwrap();
    assert_eq!(service.user_function.port, uf_port);
    let mut cart = service.cart().await.unwrap();
    let expected: Vec<(String, i32)> = ["a", "b", "c"].map(|p| (p.into(), 1)).to_vec();
    assert_eq!(
        cart.get("dave").await.unwrap(),
        expected,
        "replayed from the journal"
    );

    // Four more: the fifth event brings a snapshot; recovery then starts from it.
    for product in ["a", "d", "e", "f"] {
        cart.add("dave", product, 1).await.unwrap();
    }
    service
        .proxy
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();
    let recovery = journal(dir.path(), "dave").await;
    let snapshot = recovery.snapshot.expect("a snapshot was taken");
    assert_eq!(snapshot.sequence_nr, 5);
    assert_eq!(
        recovery
            .events
            .iter()
            .map(|e| e.sequence_nr)
            .collect::<Vec<_>>(),
        vec![6, 7]
    );

    let service = Service::with(service.user_function, &store, &[]).unwrap();
    let mut cart = service.cart().await.unwrap();
    assert_eq!(
        cart.get("dave").await.unwrap(),
        vec![
            ("a".into(), 2),
            ("b".into(), 1),
            ("c".into(), 1),
            ("d".into(), 1),
            ("e".into(), 1),
            ("f".into(), 1)
        ],
        "recovered from the snapshot plus events"
    );
}

/// Shared with the carts written with the original libraries (tests `compat_*`).
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_user_function_loses_no_acknowledged_event() {
    scenarios::killing_the_user_function_loses_no_acknowledged_event(Library::Rust).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_a_clear_status() {
    let service = Service::rust_cart("memory", &[]).unwrap();
    let channel = service.proxy.channel().await.unwrap();
    const ADD: &str = "/com.example.shoppingcart.ShoppingCart/AddItem";

    // Truncated: field 1 says 10 bytes follow, 2 do.
    let error = raw_call(channel.clone(), ADD, Bytes::from_static(b"\x0a\x0aab"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error
            .message()
            .contains("com.example.shoppingcart.AddLineItem"),
        "{error:?}"
    );

    // The key field with the wrong wire type.
    let error = raw_call(channel.clone(), ADD, Bytes::from_static(b"\x08\x01"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("user_id"), "{error:?}");

    // No entity key.
    let error = raw_call(channel.clone(), ADD, Bytes::from_static(b"\x12\x01p"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("no entity key"), "{error:?}");

    // Unknown method and unknown service.
    for path in [
        "/com.example.shoppingcart.ShoppingCart/Checkout",
        "/com.example.Nothing/Do",
    ] {
        let error = raw_call(channel.clone(), path, Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unimplemented, "{error:?}");
        assert!(error.message().contains(path), "{error:?}");
    }

    // The proxy is still fine.
    let mut cart = service.cart().await.unwrap();
    cart.add("erin", "fig", 1).await.unwrap();
    assert_eq!(cart.get("erin").await.unwrap(), vec![("fig".into(), 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_waits_for_a_user_function_that_starts_later() {
    let port = free_port();
    let mut proxy = cloudstate_testutil::Proxy::start(cloudstate_testutil::ProxyOptions {
        user_function_port: port,
        store: "memory".into(),
        args: vec![],
    })
    .unwrap();
    proxy
        .process
        .wait_for_output("waiting for the user function", START_TIMEOUT)
        .unwrap();
    assert_eq!(
        cloudstate_testutil::http_get_status(proxy.port, "/ready"),
        Some(503)
    );
    let error = raw_call(
        proxy.channel().await.unwrap(),
        "/com.example.shoppingcart.ShoppingCart/GetCart",
        Bytes::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");

    let user_function = UserFunction::rust_cart(port).unwrap();
    proxy.wait_ready(Duration::from_secs(30)).unwrap();
    let service = Service {
        user_function,
        proxy,
    };
    let mut cart = service.cart().await.unwrap();
    cart.add("frank", "fig", 2).await.unwrap();
    assert_eq!(cart.get("frank").await.unwrap(), vec![("fig".into(), 2)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_entities_are_passivated_and_reloaded() {
    let mut service = Service::rust_cart("memory", &["--passivation-timeout", "200ms"]).unwrap();
    let mut cart = service.cart().await.unwrap();
    cart.add("gina", "fig", 2).await.unwrap();
    service
        .proxy
        .process
        .wait_for_output("passivating idle entity", START_TIMEOUT)
        .unwrap();
    cart.add("gina", "fig", 1).await.unwrap();
    assert_eq!(cart.get("gina").await.unwrap(), vec![("fig".into(), 3)]);
}

/// The fat cart of issue 16: items so large that the snapshot of the cart would exceed what
/// the user function can be sent. The command that would store that snapshot fails with a
/// permanent status, nothing of it is stored, and the cart stays usable, also after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_cart_whose_snapshot_would_be_too_large_stays_usable() {
    use shopping_cart::proto::{AddLineItem, RemoveLineItem};
    const MIB: usize = 1024 * 1024;
    let dir = temp_dir("cart-fat-");
    let store = format!("embedded:{}", dir.path().display());
    let user_function = UserFunction::rust_cart(free_port()).unwrap();
    let uf_port = user_function.port;
    let mut service = Service::with(user_function, &store, &[]).unwrap();
    let mut cart = service.cart().await.unwrap();
    let item = |product: &str, name_len: usize| AddLineItem {
        user_id: "fat".into(),
        product_id: product.into(),
        name: "n".repeat(name_len),
        quantity: 1,
    };

    // Two 3 MiB items and two small ones: four events, each fits.
    for (product, len) in [("big1", 3 * MIB), ("big2", 3 * MIB), ("s1", 1), ("s2", 1)] {
        cart.0.add_item(item(product, len)).await.unwrap();
    }
    // The fifth event comes with a snapshot of both big items: about 6 MiB.
    let error = cart.0.add_item(item("s3", 1)).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(
        error.message().contains("maximum message size"),
        "{error:?}"
    );
    // The cart is usable: removing a big item makes the snapshot fit again.
    cart.0
        .remove_item(RemoveLineItem {
            user_id: "fat".into(),
            product_id: "big1".into(),
        })
        .await
        .unwrap();
    cart.add("fat", "s4", 2).await.unwrap();
    let expected = vec![
        ("big2".to_owned(), 1),
        ("s1".into(), 1),
        ("s2".into(), 1),
        ("s4".into(), 2),
    ];
    assert_eq!(cart.get("fat").await.unwrap(), expected);

    // Over-size requests are refused as such, not as an outage.
    let error = cart.0.add_item(item("huge", 5 * MIB)).await.unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    // A key that fits in the request but not twice in the command sent to the user function.
    let error = cart
        .0
        .get_cart(shopping_cart::proto::GetShoppingCart {
            user_id: "k".repeat(3 * MIB),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(
        error.message().contains("maximum message size"),
        "{error:?}"
    );

    // After a restart the cart recovers from what was stored: the snapshot of the remove and
    // the event after it; nothing of the refused command.
    service
        .proxy
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();
    let recovery = journal(dir.path(), "fat").await;
    assert_eq!(recovery.last_sequence_nr(), 6);
    assert_eq!(recovery.snapshot.map(|s| s.sequence_nr), Some(5));
    let user_function = UserFunction {
        process: service.user_function.process,
        port: uf_port,
    };
    let service = Service::with(user_function, &store, &[]).unwrap();
    let mut cart = service.cart().await.unwrap();
    assert_eq!(cart.get("fat").await.unwrap(), expected);
}
