//! Value entities, actions, forwards, side effects, loops and overload, end to end: the real
//! proxy in front of the test user function (`test-function`, `proto/e2e.proto`).

use std::time::Duration;

use cloudstate_e2e::proto::counter_client::CounterClient;
use cloudstate_e2e::proto::ledger_client::LedgerClient;
use cloudstate_e2e::proto::relay_client::RelayClient;
use cloudstate_e2e::proto::{
    BounceRequest, CounterId, FailRequest, FanOutRequest, IncrementRequest, LedgerId,
    RecordRequest, RepeatRequest, SlowRequest, Text,
};
use cloudstate_e2e::{START_TIMEOUT, Service, UserFunction};
use cloudstate_store::{EntityKey, Store};
use cloudstate_store_embedded::EmbeddedStore;
use cloudstate_testutil::{free_port, temp_dir};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

fn start(store: &str, args: &[&str]) -> Service {
    Service::with(
        UserFunction::test_function(free_port()).unwrap(),
        store,
        args,
    )
    .unwrap()
}

struct Clients {
    counter: CounterClient<Channel>,
    ledger: LedgerClient<Channel>,
    relay: RelayClient<Channel>,
}

async fn clients(service: &Service) -> Clients {
    let channel = service.proxy.channel().await.unwrap();
    Clients {
        counter: CounterClient::new(channel.clone()),
        ledger: LedgerClient::new(channel.clone()),
        relay: RelayClient::new(channel),
    }
}

impl Clients {
    async fn increment(&mut self, id: &str, by: i64) -> Result<i64, tonic::Status> {
        let request = IncrementRequest { id: id.into(), by };
        Ok(self.counter.increment(request).await?.into_inner().value)
    }

    async fn get(&mut self, id: &str) -> i64 {
        let request = CounterId { id: id.into() };
        self.counter.get(request).await.unwrap().into_inner().value
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn value_entity_writes_are_durable_and_delete_removes_the_value() {
    let dir = temp_dir("values-");
    let store = format!("embedded:{}", dir.path().display());
    let mut service = start(&store, &[]);
    let mut c = clients(&service).await;

    assert_eq!(c.get("x").await, 0);
    assert_eq!(c.increment("x", 5).await.unwrap(), 5);
    assert_eq!(c.increment("x", 2).await.unwrap(), 7);
    assert_eq!(c.increment("y", 1).await.unwrap(), 1);

    // A new proxy on the same directory reloads the values.
    service
        .proxy
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();
    let mut service = Service::with(service.user_function, &store, &[]).unwrap();
    let mut c = clients(&service).await;
    assert_eq!(c.get("x").await, 7);

    c.counter
        .delete(CounterId { id: "x".into() })
        .await
        .unwrap();
    assert_eq!(c.get("x").await, 0);
    service
        .proxy
        .process
        .terminate(Duration::from_secs(10))
        .unwrap();

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let key = |id: &str| EntityKey::new("counter", id);
    assert_eq!(
        store.load_value(&key("x")).await.unwrap(),
        None,
        "the row is gone"
    );
    assert_eq!(
        store.load_value(&key("y")).await.unwrap().unwrap().version,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_entity_failure_changes_nothing() {
    let service = start("memory", &[]);
    let mut c = clients(&service).await;
    c.increment("f", 3).await.unwrap();
    let error = c
        .counter
        .fail(FailRequest {
            id: "f".into(),
            message: "not today".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert_eq!(error.message(), "not today");
    assert_eq!(
        c.get("f").await,
        3,
        "the failed command's update was not written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_serve_all_four_call_shapes() {
    let service = start("memory", &[]);
    let mut relay = clients(&service).await.relay;
    let text = |t: &str| Text { text: t.into() };

    let echoed = relay.echo(text("hello")).await.unwrap().into_inner();
    assert_eq!(echoed.text, "hello");

    let repeated: Vec<String> = relay
        .repeat(RepeatRequest {
            text: "tick".into(),
            times: 3,
        })
        .await
        .unwrap()
        .into_inner()
        .map(|t| t.unwrap().text)
        .collect()
        .await;
    assert_eq!(repeated, ["tick 1", "tick 2", "tick 3"]);

    let parts = tokio_stream::iter(["a", "b", "c"].map(text));
    let joined = relay.concat(parts).await.unwrap().into_inner();
    assert_eq!(joined.text, "a b c");

    // Bidirectional: each answer arrives before the next message is sent.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut answers = relay
        .shout(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    for word in ["one", "two"] {
        sender.send(text(word)).await.unwrap();
        let answer = answers.next().await.unwrap().unwrap();
        assert_eq!(answer.text, word.to_uppercase());
    }
    drop(sender);
    assert!(
        answers.next().await.is_none(),
        "the stream ends with the client's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_run_the_target_and_return_its_reply() {
    let service = start("memory", &[]);
    let mut c = clients(&service).await;

    // Action → value entity.
    let reply = c
        .relay
        .to_counter(IncrementRequest {
            id: "fw".into(),
            by: 4,
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().value, 4);
    assert_eq!(c.get("fw").await, 4);

    // Event sourced entity → value entity: the forwarding entity's event is kept too.
    let reply = c
        .ledger
        .record(RecordRequest {
            id: "l".into(),
            amount: 3,
            forward_to: "fw".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().value, 7, "the counter's reply");
    let total = c.ledger.total(LedgerId { id: "l".into() }).await.unwrap();
    assert_eq!(total.into_inner().value, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_loops_are_cut_by_the_chain_limit() {
    let service = start("memory", &["--max-chain-length", "8"]);
    let mut relay = clients(&service).await.relay;
    let bounce = |hops| BounceRequest { hops, seen: 0 };

    let reply = relay.bounce(bounce(5)).await.unwrap().into_inner();
    assert_eq!(reply.value, 5);
    let error = relay.bounce(bounce(1000)).await.unwrap_err();
    assert_eq!(error.code(), Code::Internal, "{error:?}");
    assert!(error.message().contains("longer than 8"), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn synchronous_side_effects_finish_before_the_reply_asynchronous_ones_after() {
    let service = start("memory", &[]);
    let mut c = clients(&service).await;
    let fan_out = |ids: &[&str], synchronous| FanOutRequest {
        ids: ids.iter().map(|id| id.to_string()).collect(),
        synchronous,
    };

    c.relay
        .fan_out(fan_out(&["s1", "s2", "s3"], true))
        .await
        .unwrap();
    for id in ["s1", "s2", "s3"] {
        assert_eq!(c.get(id).await, 1, "{id} was incremented before the reply");
    }

    c.relay
        .fan_out(fan_out(&["a1", "a2"], false))
        .await
        .unwrap();
    for id in ["a1", "a2"] {
        let mut value = c.get(id).await;
        for _ in 0..100 {
            if value == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            value = c.get(id).await;
        }
        assert_eq!(value, 1, "{id} was incremented in the background");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_a_synchronous_side_effect_fails_the_command() {
    let port = free_port();
    let service = Service::with(UserFunction::test_function(port).unwrap(), "memory", &[]).unwrap();
    let Service {
        mut user_function,
        proxy,
    } = service;
    let channel = proxy.channel().await.unwrap();
    let mut relay = RelayClient::new(channel.clone());
    let mut counter = CounterClient::new(channel);

    counter
        .increment(IncrementRequest {
            id: "c".into(),
            by: 1,
        })
        .await
        .unwrap();
    let error = relay
        .crashing_effect(CounterId { id: "c".into() })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(error.message().contains("side effect"), "{error:?}");
    let exit_code = user_function
        .process
        .wait_for_exit(Duration::from_secs(10))
        .unwrap();
    assert_eq!(exit_code, Some(1), "the user function crashed");

    // Once the user function is back (and the proxy knows), everything works again and
    // nothing was lost.
    let _user_function = UserFunction::test_function(port).unwrap();
    let mut proxy = proxy;
    proxy.wait_ready(START_TIMEOUT).unwrap();
    let value = counter
        .increment(IncrementRequest {
            id: "c".into(),
            by: 1,
        })
        .await;
    // The value entity lives in the proxy's memory store: its value survived the crash.
    assert_eq!(value.unwrap().into_inner().value, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_entity_queue_is_refused_and_other_keys_go_on() {
    let service = start("memory", &["--entity-mailbox-capacity", "2"]);
    let c = clients(&service).await;

    // Occupy entity "q" for a while.
    let mut counter = c.counter.clone();
    let slow = tokio::spawn(async move {
        counter
            .slow(SlowRequest {
                id: "q".into(),
                millis: 3000,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // More commands for "q" than its mailbox holds: the extra ones are refused at once.
    let mut waiting = Vec::new();
    for _ in 0..6 {
        let mut c = clients(&service).await;
        waiting.push(tokio::spawn(async move { c.increment("q", 1).await }));
    }
    // Meanwhile another key is served while "q" is still busy.
    let mut other = clients(&service).await;
    assert_eq!(other.increment("r", 1).await.unwrap(), 1);
    assert!(!slow.is_finished(), "entity r was served while q was busy");

    let mut refused = 0;
    let mut served = 0;
    for call in waiting {
        match call.await.unwrap() {
            Ok(_) => served += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("overloaded"), "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 1, "some commands were refused");
    assert!(served >= 1, "the queued commands ran after the slow one");
    slow.await.unwrap().unwrap();
    let mut c = clients(&service).await;
    assert_eq!(c.get("q").await, served as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_past_its_deadline_fails_and_the_entity_recovers() {
    let service = start("memory", &["--command-timeout", "500ms"]);
    let mut c = clients(&service).await;
    c.increment("t", 1).await.unwrap();
    let error = c
        .counter
        .slow(SlowRequest {
            id: "t".into(),
            millis: 5000,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    // The entity restarts from the store for the next command.
    assert_eq!(c.increment("t", 1).await.unwrap(), 2);
}
