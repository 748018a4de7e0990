//! The real proxy, unchanged, in front of a shopping cart written with the original Python
//! support library (PyPI `cloudstate` 0.1.1, `compat/python-shopping-cart`; install it with
//! `scripts/install-compat.sh`). The library reports protocol version 0.0, marks entity keys
//! with option 50002, sends its descriptor set with files before their imports, wraps failure
//! messages as `['…']`, serves at most 10 concurrent streams (so these tests use at most 4 carts
//! each) and runs here without snapshots, because it crashes when handed one in `init`; see
//! compat/README.md. The scenarios are shared with the other carts (`cloudstate_e2e::scenarios`).

use cloudstate_e2e::{Library, scenarios};

const LIBRARY: Library = Library::Python;

#[tokio::test(flavor = "multi_thread")]
async fn discovery_is_accepted_and_add_remove_get_work_over_grpc() {
    scenarios::add_remove_and_get(LIBRARY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_is_an_error_with_the_library_message_and_persists_nothing() {
    scenarios::a_failure_is_an_error_and_persists_nothing(LIBRARY).await;
}

/// Ten events, and the store never holds a snapshot: every recovery is a pure replay.
#[tokio::test(flavor = "multi_thread")]
async fn state_survives_proxy_restarts_through_pure_replay_with_no_snapshot_ever_stored() {
    assert_eq!(
        LIBRARY.snapshot_every(),
        None,
        "the Python cart runs without snapshots"
    );
    scenarios::state_survives_proxy_restarts(LIBRARY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_user_function_loses_no_acknowledged_event() {
    scenarios::killing_the_user_function_loses_no_acknowledged_event(LIBRARY).await;
}
