//! The real proxy, unchanged, in front of a shopping cart written with the original Node support
//! library (npm `cloudstate` 0.0.3, `compat/node-shopping-cart`; install it with
//! `scripts/install-compat.sh`). The library reports protocol version 0.0, marks entity keys
//! with option 50002 and snapshots every 5 events; see compat/README.md for what it does on the
//! wire. The scenarios are shared with the other carts (`cloudstate_e2e::scenarios`).

use cloudstate_e2e::{Library, scenarios};

const LIBRARY: Library = Library::Node;

#[tokio::test(flavor = "multi_thread")]
async fn discovery_is_accepted_and_add_remove_get_work_over_grpc() {
    scenarios::add_remove_and_get(LIBRARY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_an_error_with_the_library_message_and_persists_nothing() {
    scenarios::a_failure_is_an_error_and_persists_nothing(LIBRARY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_proxy_restarts_through_replay_and_the_library_snapshots() {
    assert_eq!(
        LIBRARY.snapshot_every(),
        Some(5),
        "the Node cart snapshots every 5 events"
    );
    scenarios::state_survives_proxy_restarts(LIBRARY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_user_function_loses_no_acknowledged_event() {
    scenarios::killing_the_user_function_loses_no_acknowledged_event(LIBRARY).await;
}
