//! CRDT entities end to end: the real proxy in front of the presence example (a Vote CRDT per
//! chat user, streamed `Connect` and `Monitor` commands) and the counters example.

use std::time::Duration;

use cloudstate_e2e::{START_TIMEOUT, Service, UserFunction};
use cloudstate_testutil::free_port;
use counters::proto::crdt_example_client::CrdtExampleClient;
use counters::proto::{Get, MutateSet, SomeValue, UpdateCounter};
use presence::client::PresenceClient;
use presence::proto::{OnlineStatus, User};
use tonic::codec::Streaming;

fn user(id: &str) -> User {
    User { user_id: id.into() }
}

/// The next status a monitor reports, failing the test if none comes within 10 s.
async fn next(monitor: &mut Streaming<OnlineStatus>) -> bool {
    let status = tokio::time::timeout(Duration::from_secs(10), monitor.message())
        .await
        .expect("a status within 10 s")
        .expect("the monitor stream stays healthy")
        .expect("the monitor stream stays open");
    status.online
}

#[tokio::test(flavor = "multi_thread")]
async fn two_monitors_see_a_connect_and_a_disconnect() {
    let service =
        Service::with(UserFunction::presence(free_port()).unwrap(), "memory", &[]).unwrap();
    let client = PresenceClient::new(service.proxy.channel().await.unwrap());

    let mut first = client
        .clone()
        .monitor(user("ann"))
        .await
        .unwrap()
        .into_inner();
    let mut second = client
        .clone()
        .monitor(user("ann"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next(&mut first).await, "ann starts offline");
    assert!(!next(&mut second).await);

    // Ann connects: both monitors see her online.
    let connection = client.clone().connect_user(user("ann")).await.unwrap();
    assert!(next(&mut first).await);
    assert!(next(&mut second).await);

    // Her connection goes away: the proxy cancels the streamed command, the user function's
    // cancel handler withdraws the vote, and both monitors see her offline.
    drop(connection);
    assert!(!next(&mut first).await);
    assert!(!next(&mut second).await);

    // Another user is unaffected throughout.
    let mut other = client
        .clone()
        .monitor(user("bob"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next(&mut other).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_online_on_two_connections_stays_online_until_both_close() {
    let service =
        Service::with(UserFunction::presence(free_port()).unwrap(), "memory", &[]).unwrap();
    let client = PresenceClient::new(service.proxy.channel().await.unwrap());
    let mut monitor = client
        .clone()
        .monitor(user("cy"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next(&mut monitor).await);

    let phone = client.clone().connect_user(user("cy")).await.unwrap();
    assert!(next(&mut monitor).await);
    let laptop = client.clone().connect_user(user("cy")).await.unwrap();
    drop(phone);
    // Still online: no change to report; the laptop's disconnect is the next change.
    drop(laptop);
    assert!(!next(&mut monitor).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_function_crash_ends_the_streams_and_the_entity_restarts() {
    let port = free_port();
    let service = Service::with(UserFunction::presence(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        proxy,
    } = service;
    let client = PresenceClient::new(proxy.channel().await.unwrap());
    let mut monitor = client
        .clone()
        .monitor(user("dee"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next(&mut monitor).await);
    let _connection = client.clone().connect_user(user("dee")).await.unwrap();
    assert!(next(&mut monitor).await);

    // The user function dies: the entity's open streams end with an error.
    user_function.process.kill();
    let ended = tokio::time::timeout(Duration::from_secs(10), monitor.message()).await;
    assert!(
        matches!(ended, Ok(Err(_)) | Ok(Ok(None))),
        "the monitor's stream ended: {ended:?}"
    );

    // Back up: the entity restarts from the state the proxy kept. Its connection ended with
    // the crash, so the presence logic withdraws the vote no connection backs any more; a new
    // connection brings dee online again.
    let _user_function = UserFunction::presence(port).unwrap();
    let mut proxy = proxy;
    proxy.wait_ready(START_TIMEOUT).unwrap();
    let mut monitor = client
        .clone()
        .monitor(user("dee"))
        .await
        .unwrap()
        .into_inner();
    assert!(!next(&mut monitor).await);
    let _connection = client.clone().connect_user(user("dee")).await.unwrap();
    assert!(next(&mut monitor).await);
}

async fn increment(
    client: &mut CrdtExampleClient<tonic::transport::Channel>,
    key: &str,
    by: i64,
) -> i64 {
    let request = UpdateCounter {
        key: key.into(),
        value: by,
    };
    client
        .update_pn_counter(request)
        .await
        .unwrap()
        .into_inner()
        .value
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_and_sets_through_the_proxy() {
    let service =
        Service::with(UserFunction::counters(free_port()).unwrap(), "memory", &[]).unwrap();
    let mut client = CrdtExampleClient::new(service.proxy.channel().await.unwrap());

    assert_eq!(increment(&mut client, "pn", 5).await, 5);
    assert_eq!(increment(&mut client, "pn", -7).await, -2);
    let value = client
        .get_pn_counter(Get { key: "pn".into() })
        .await
        .unwrap();
    assert_eq!(value.into_inner().value, -2);

    let item = |s: &str| SomeValue {
        key: s.into(),
        description: format!("item {s}"),
    };
    let size = client
        .mutate_or_set(MutateSet {
            key: "set".into(),
            add: vec![item("a"), item("b"), item("c")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(size.into_inner().size, 3);
    let size = client
        .mutate_or_set(MutateSet {
            key: "set".into(),
            remove: vec![item("b")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(size.into_inner().size, 2);

    // A key holds one CRDT type: using it as another is a clear failure.
    let error = client
        .get_g_counter(Get { key: "set".into() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition, "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_function_crash_restarts_the_entity_with_its_last_state() {
    let port = free_port();
    let service = Service::with(UserFunction::counters(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        proxy,
    } = service;
    let mut client = CrdtExampleClient::new(proxy.channel().await.unwrap());
    assert_eq!(increment(&mut client, "k", 3).await, 3);
    assert_eq!(increment(&mut client, "k", 4).await, 7);

    user_function.process.kill();
    let error = client
        .get_pn_counter(Get { key: "k".into() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");

    // The proxy owns the CRDT: the restarted entity gets it in its init. Commands fail fast
    // until the proxy knows the user function is back (readiness checks it).
    let _user_function = UserFunction::counters(port).unwrap();
    let mut proxy = proxy;
    proxy.wait_ready(START_TIMEOUT).unwrap();
    let value = client
        .get_pn_counter(Get { key: "k".into() })
        .await
        .unwrap();
    assert_eq!(value.into_inner().value, 7);
    assert_eq!(increment(&mut client, "k", 1).await, 8);
}

/// The known bug of issue 16: after the user function restarted, the first command to a CRDT
/// entity that was active before failed. Its stream died while it was idle, so the command goes
/// to a new stream and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_function_restart_is_invisible_to_an_idle_crdt_entity() {
    let port = free_port();
    let service = Service::with(UserFunction::counters(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        proxy,
    } = service;
    let mut client = CrdtExampleClient::new(proxy.channel().await.unwrap());
    assert_eq!(increment(&mut client, "idle", 3).await, 3);

    user_function.process.kill();
    let _user_function = tokio::task::spawn_blocking(move || UserFunction::counters(port))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(increment(&mut client, "idle", 1).await, 4);
}
