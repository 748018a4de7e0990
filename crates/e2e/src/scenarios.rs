//! End-to-end scenarios written once and run against every shopping cart implementation
//! ([`Library`]), so that our Rust cart and the carts written with the original support
//! libraries are held to the same checks. Each scenario is a whole test: it starts its own
//! processes (a user function and a real proxy) and panics when a check fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cloudstate_store::{EntityKey, Recovery, Store};
use cloudstate_store_embedded::EmbeddedStore;
use cloudstate_testutil::{Proxy, free_port, temp_dir};
use prost::Message;
use shopping_cart::proto::LineItem;
use shopping_cart::proto::persistence::CartSnapshot;
use tonic::Code;

use crate::{Library, Service};

/// How long a proxy gets to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Type URLs of what the cart persists; every library uses these (compat/README.md).
const ITEM_ADDED: &str = "type.googleapis.com/com.example.shoppingcart.persistence.ItemAdded";
const CART_SNAPSHOT: &str = "type.googleapis.com/com.example.shoppingcart.persistence.CartSnapshot";

/// The proxy's `--store` value for an embedded store in `dir`.
pub fn embedded_store(dir: &Path) -> String {
    format!("embedded:{}", dir.display())
}

/// What a proxy persisted for `user`'s cart in the embedded store in `dir`. Call it only while no
/// proxy has the directory open: the embedded store allows one process at a time.
pub async fn journal(dir: &Path, user: &str) -> Recovery {
    let store = EmbeddedStore::open(dir).unwrap();
    store
        .load_journal(&EntityKey::new(shopping_cart::PERSISTENCE_ID, user))
        .await
        .unwrap()
}

/// Asserts that the proxy took the user function's discovery answer as it came: it serves the
/// cart (so it accepted the library's protocol version, resolved its descriptor set and found
/// the entity key of every method), and it logged no error, no failed discovery attempt and
/// nothing it had to report back to the user function (`reportError`, which
/// `cloudstate_engine::user_function` logs as a warning).
pub fn assert_discovery_succeeded(proxy: &Proxy) {
    let log = proxy.process.output();
    assert!(
        log.contains(&format!(
            "serving service={} kind=EventSourced persistence_id={}",
            shopping_cart::proto::shopping_cart::NAME,
            shopping_cart::PERSISTENCE_ID
        )),
        "the proxy should serve the cart; its log:\n{log}"
    );
    let complaints: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains(" ERROR ")
                || (line.contains(" WARN ")
                    && (line.contains("discover")
                        || line.contains("cloudstate_engine::user_function")))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "the proxy complained about the user function:\n{}",
        complaints.join("\n")
    );
}

/// Adds, removes and reads carts over gRPC: quantities of a product merge, carts are separate,
/// `GetCart` returns every field of each item in the order the products were first added, and
/// discovery went through without complaint.
pub async fn add_remove_and_get(library: Library) {
    let service = Service::cart_of(library, "memory", &[]).unwrap();
    assert_discovery_succeeded(&service.proxy);
    let mut cart = service.cart().await.unwrap();

    assert_eq!(
        cart.get("alice").await.unwrap(),
        vec![],
        "a new cart is empty"
    );
    cart.add("alice", "apple", 2).await.unwrap();
    cart.add("alice", "pear", 1).await.unwrap();
    cart.add("alice", "apple", 3).await.unwrap();
    cart.add("bob", "kiwi", 7).await.unwrap();
    assert_eq!(
        cart.line_items("alice").await.unwrap(),
        vec![line_item("apple", 5), line_item("pear", 1)]
    );
    cart.remove("alice", "apple").await.unwrap();
    assert_eq!(cart.get("alice").await.unwrap(), vec![("pear".into(), 1)]);
    assert_eq!(cart.get("bob").await.unwrap(), vec![("kiwi".into(), 7)]);
    // A product removed and added again goes to the end.
    cart.add("alice", "apple", 1).await.unwrap();
    assert_eq!(
        cart.line_items("alice").await.unwrap(),
        vec![line_item("pear", 1), line_item("apple", 1)]
    );
    assert_discovery_succeeded(&service.proxy);
}

/// The line item [`crate::Cart::add`] makes for `product`, with the quantity `quantity`.
fn line_item(product: &str, quantity: i32) -> LineItem {
    LineItem {
        product_id: product.into(),
        name: format!("{product} name"),
        quantity,
    }
}

/// A command the cart refuses (adding a negative quantity, removing a product that is not in the
/// cart) comes back as a gRPC error carrying the cart's message, persists nothing, and leaves the
/// entity running (no restart, so no replay).
pub async fn a_failure_is_an_error_and_persists_nothing(library: Library) {
    let dir = temp_dir("cart-failure-");
    let mut service = Service::cart_of(library, &embedded_store(dir.path()), &[]).unwrap();
    let mut cart = service.cart().await.unwrap();

    cart.add("carol", "apple", 1).await.unwrap();
    // Contains, not equals: the Python library sends `['<message>']` (compat/README.md).
    let error = cart.add("carol", "apple", -1).await.unwrap_err();
    assert_eq!(
        error.code(),
        failure_code(library, Code::InvalidArgument),
        "{error:?}"
    );
    assert!(
        error
            .message()
            .contains("Cannot add negative quantity of item apple"),
        "{error:?}"
    );
    let error = cart.remove("carol", "pear").await.unwrap_err();
    assert_eq!(
        error.code(),
        failure_code(library, Code::NotFound),
        "{error:?}"
    );
    assert!(
        error
            .message()
            .contains("Cannot remove item pear because it is not in the cart."),
        "{error:?}"
    );
    assert_eq!(cart.get("carol").await.unwrap(), vec![("apple".into(), 1)]);
    let log = service.proxy.process.output();
    assert!(
        !log.contains("restarting entity"),
        "a failed command must not restart the entity; proxy log:\n{log}"
    );

    service.proxy.process.terminate(STOP_TIMEOUT).unwrap();
    let recovery = journal(dir.path(), "carol").await;
    assert!(recovery.snapshot.is_none(), "{recovery:?}");
    assert_eq!(
        sequence_nrs(&recovery),
        vec![1],
        "only the successful add is persisted: {recovery:?}"
    );
}

/// The status a refused command gets: our Rust cart sets its own code; the original libraries
/// cannot (`Failure.grpc_status_code` is our extension), so the proxy answers UNKNOWN as the
/// original proxy did.
fn failure_code(library: Library, rust_code: Code) -> Code {
    match library {
        Library::Rust => rust_code,
        Library::Node | Library::Python => Code::Unknown,
    }
}

/// A cart survives proxy restarts on the same embedded store directory, with the same user
/// function process throughout. Three rounds of adds (3, 4 and 3 events), each followed by a
/// proxy restart; after every round the journal holds exactly what the library sent — every
/// event, with its type URL, and a snapshot only if the library takes them, at the multiple of
/// its interval, holding the cart as it was then — and the restarted proxy recovers the cart.
///
/// With snapshots (every 5 events) the second restart recovers from the snapshot at 5 plus
/// events 6 and 7, and the third round checks that the library, having counted on from the
/// sequence numbers the proxy sent in `init` and the replay, snapshots again at 10. Without
/// snapshots (the Python cart) none is ever stored, so every recovery is a pure replay.
pub async fn state_survives_proxy_restarts(library: Library) {
    const USER: &str = "dave";
    let dir = temp_dir("cart-restart-");
    let store = embedded_store(dir.path());
    let mut service = Service::cart_of(library, &store, &[]).unwrap();
    let uf_port = service.user_function.port;
    let mut added: Vec<&str> = Vec::new();

    for round in [
        &["a", "b", "c"][..],
        &["a", "d", "e", "f"],
        &["g", "h", "i"],
    ] {
        let mut cart = service.cart().await.unwrap();
        for &product in round {
            cart.add(USER, product, 1).await.unwrap();
            added.push(product);
        }
        service.proxy.process.terminate(STOP_TIMEOUT).unwrap();

        let recovery = journal(dir.path(), USER).await;
        let total = added.len() as u64;
        // Every reply carries one event, so a snapshot comes with each multiple of the interval.
        let snapshot_at = library
            .snapshot_every()
            .map(|every| total / every * every)
            .filter(|&at| at > 0);
        match (&recovery.snapshot, snapshot_at) {
            (None, None) => {}
            (Some(snapshot), Some(at)) => {
                assert_eq!(snapshot.sequence_nr, at, "{recovery:?}");
                assert_eq!(snapshot.payload.type_url, CART_SNAPSHOT);
                let snapshot = CartSnapshot::decode(snapshot.payload.value.clone()).unwrap();
                let mut items: Vec<_> = snapshot
                    .items
                    .into_iter()
                    .map(|item| (item.product_id, item.quantity))
                    .collect();
                items.sort();
                assert_eq!(
                    items,
                    cart_of(&added[..at as usize]),
                    "the snapshot holds the cart after event {at}"
                );
            }
            (snapshot, expected) => panic!(
                "{library:?} after {total} events: expected a snapshot at {expected:?}, the store has {snapshot:?}"
            ),
        }
        let first_event = snapshot_at.unwrap_or(0) + 1;
        assert_eq!(
            sequence_nrs(&recovery),
            (first_event..=total).collect::<Vec<_>>(),
            "the events after the snapshot (all of them without one)"
        );
        assert!(
            recovery
                .events
                .iter()
                .all(|event| event.payload.type_url == ITEM_ADDED),
            "{recovery:?}"
        );

        service = Service::with(service.user_function, &store, &[]).unwrap();
        assert_eq!(
            service.user_function.port, uf_port,
            "the same user function throughout"
        );
        let mut cart = service.cart().await.unwrap();
        assert_eq!(
            cart.get(USER).await.unwrap(),
            cart_of(&added),
            "{library:?} cart recovered after {total} events (snapshot at {snapshot_at:?})"
        );
    }
}

/// The sequence numbers of a recovery's events.
fn sequence_nrs(recovery: &Recovery) -> Vec<u64> {
    recovery
        .events
        .iter()
        .map(|event| event.sequence_nr)
        .collect()
}

/// The cart (as [`crate::Cart::get`] returns it) after adding one of each of `products`.
fn cart_of(products: &[&str]) -> Vec<(String, i32)> {
    let mut cart = BTreeMap::<String, i32>::new();
    for product in products {
        *cart.entry((*product).to_owned()).or_default() += 1;
    }
    cart.into_iter().collect()
}

/// Eight clients add items to four carts while the user function is killed (SIGKILL) and started
/// again on the same port. Commands fail while it is gone, but no acknowledged event is lost and
/// none that failed is kept: every cart recovers with exactly the acknowledged items.
///
/// Four carts because the Python library serves at most 10 concurrent streams, one per entity.
pub async fn killing_the_user_function_loses_no_acknowledged_event(library: Library) {
    let dir = temp_dir("cart-crash-");
    let port = free_port();
    let user_function = library.start_cart(port).unwrap();
    let service = Service::with(user_function, &embedded_store(dir.path()), &[]).unwrap();
    let cart = service.cart().await.unwrap();
    let Service {
        mut user_function,
        proxy: _proxy,
    } = service;

    // Eight clients add items to four carts until told to stop, counting acknowledgements.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let (mut cart, stop) = (cart.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let user = format!("crash-{}", client % 4);
            let (mut acked, mut failed) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match cart.add(&user, "item", 1).await {
                    Ok(()) => acked += 1,
                    Err(status) => {
                        assert!(
                            matches!(status.code(), Code::Unavailable | Code::Internal),
                            "unexpected failure {status:?}"
                        );
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (user, acked, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    user_function.process.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Starting waits for the port without yielding: keep it off the runtime's workers, which
    // run the clients.
    let _user_function = tokio::task::spawn_blocking(move || library.start_cart(port))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked_per_user = BTreeMap::<String, i32>::new();
    let mut failures = 0;
    for client in clients {
        let (user, acked, failed) = client.await.unwrap();
        *acked_per_user.entry(user).or_default() += acked;
        failures += failed;
    }
    // Printed for whoever reads a failing run: how much load there was around the crash.
    eprintln!("{library:?}: acknowledged adds per cart {acked_per_user:?}, {failures} failed");
    assert!(failures > 0, "the crash should have failed some commands");
    let mut cart = cart.clone();
    for (user, acked) in acked_per_user {
        assert!(acked > 0);
        // A command whose reply never arrived was never persisted: the proxy persists a reply's
        // events only after receiving it. So the cart holds exactly the acknowledged items.
        assert_eq!(
            cart.get(&user).await.unwrap(),
            vec![("item".into(), acked)],
            "cart {user} after the user function crashed and came back"
        );
    }
}
