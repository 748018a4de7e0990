//! The end-to-end test user function: the services of `proto/e2e.proto`, small controllable
//! behaviours for proving what the proxy does around value entities, event sourced entities,
//! actions, forwards, side effects, slowness and crashes.
//!
//! - `Counter`: a value entity (persistence id `counter`) holding a number.
//! - `Ledger`: an event sourced entity (persistence id `ledger`, a `Value` snapshot every 5
//!   events) recording amounts.
//! - `Relay`: an action, in all four call shapes, with forwards and side effects.
//!
//! Serves on `HOST:PORT` (default `127.0.0.1:8080`) until Ctrl-C or SIGTERM and logs the address
//! when it listens. Logs go to stderr, filtered by `RUST_LOG` (default `info`).

use std::time::Duration;

use cloudstate::{
    Action, ActionCommands, ActionContext, ActionReply, ActionService, Code, CommandContext,
    Commands, EventSourced, EventSourcedEntity, Failure, Reply, ReplyStream, RequestStream,
    ValueCommands, ValueContext, ValueEntity, ValueEntityService,
};
use tokio_stream::StreamExt;
use tracing_subscriber::EnvFilter;

/// The generated types of `e2e.proto`.
mod proto {
    cloudstate::include_protos!("cloudstate.e2e");

    /// `e2e.proto` and its imports.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

use proto::Value;

const COUNTER: &str = "cloudstate.e2e.Counter";
const LEDGER: &str = "cloudstate.e2e.Ledger";
const RELAY: &str = "cloudstate.e2e.Relay";

/// `Counter`: the state is the stored `Value` (0 when nothing is stored).
impl ValueEntity for Value {
    fn commands(commands: &mut ValueCommands<Self>) {
        commands
            .add("Increment", Self::increment)
            .add("Get", Self::get)
            .add("Delete", Self::delete)
            .add("Slow", Self::slow)
            .add("Crash", Self::crash)
            .add("Fail", Self::fail);
    }
}

impl Value {
    fn increment(
        &self,
        request: proto::IncrementRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Value, Failure> {
        let value = self.value.checked_add(request.by).ok_or_else(|| {
            Failure::new(format!("Counter {} would overflow", request.id))
                .with_code(Code::OutOfRange)
        })?;
        ctx.update_state(Value { value });
        Ok(Value { value })
    }

    fn get(&self, _: proto::CounterId, _: &mut ValueContext<Self>) -> Result<Value, Failure> {
        Ok(*self)
    }

    fn delete(&self, _: proto::CounterId, ctx: &mut ValueContext<Self>) -> Result<(), Failure> {
        ctx.delete_state();
        Ok(())
    }

    /// Blocks this entity's stream for `millis`; other entities keep being served (the runtime
    /// moves its other tasks off this thread meanwhile).
    fn slow(
        &self,
        request: proto::SlowRequest,
        _: &mut ValueContext<Self>,
    ) -> Result<Value, Failure> {
        let pause = Duration::from_millis(u64::from(request.millis));
        tokio::task::block_in_place(|| std::thread::sleep(pause));
        Ok(*self)
    }

    fn crash(
        &self,
        request: proto::CounterId,
        _: &mut ValueContext<Self>,
    ) -> Result<Value, Failure> {
        tracing::warn!(counter = %request.id, "Crash: exiting");
        std::process::exit(1)
    }

    fn fail(
        &self,
        request: proto::FailRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Value, Failure> {
        // Discarded with the failure: the proxy must not store it.
        ctx.update_state(Value { value: -1 });
        Err(Failure::new(request.message).with_code(Code::FailedPrecondition))
    }
}

cloudstate::events! {
    /// The ledger's events.
    enum LedgerEvent {
        Recorded(proto::Recorded),
    }
}

/// `Ledger`: the sum of the recorded amounts.
struct Ledger {
    total: i64,
}

impl Ledger {
    fn record(
        &self,
        request: proto::RecordRequest,
        ctx: &mut CommandContext<LedgerEvent>,
    ) -> Result<Reply<Value>, Failure> {
        let total = self.total.checked_add(request.amount).ok_or_else(|| {
            Failure::new(format!("Ledger {} would overflow", request.id))
                .with_code(Code::OutOfRange)
        })?;
        ctx.emit(proto::Recorded {
            amount: request.amount,
        });
        if request.forward_to.is_empty() {
            return Ok(Reply::Message(Value { value: total }));
        }
        let increment = proto::IncrementRequest {
            id: request.forward_to,
            by: request.amount,
        };
        Ok(Reply::forward(COUNTER, "Increment", &increment))
    }

    fn total(
        &self,
        _: proto::LedgerId,
        _: &mut CommandContext<LedgerEvent>,
    ) -> Result<Value, Failure> {
        Ok(Value { value: self.total })
    }
}

impl EventSourcedEntity for Ledger {
    type Event = LedgerEvent;
    type Snapshot = Value;

    fn new(_: &str) -> Self {
        Ledger { total: 0 }
    }

    fn from_snapshot(_: &str, snapshot: Value) -> Self {
        Ledger {
            total: snapshot.value,
        }
    }

    fn snapshot(&self) -> Value {
        Value { value: self.total }
    }

    fn apply(&mut self, LedgerEvent::Recorded(recorded): &LedgerEvent) {
        self.total = self.total.saturating_add(recorded.amount);
    }

    fn commands(commands: &mut Commands<Self>) {
        commands
            .add("Record", Self::record)
            .add("Total", Self::total);
    }
}

/// `Relay`: stateless.
struct Relay;

impl Relay {
    async fn to_counter(
        &self,
        request: proto::IncrementRequest,
        _: &mut ActionContext,
    ) -> Result<Reply<Value>, Failure> {
        Ok(Reply::forward(COUNTER, "Increment", &request))
    }

    async fn bounce(
        &self,
        request: proto::BounceRequest,
        _: &mut ActionContext,
    ) -> Result<Reply<Value>, Failure> {
        if request.hops == 0 {
            return Ok(Reply::Message(Value {
                value: i64::from(request.seen),
            }));
        }
        let next = proto::BounceRequest {
            hops: request.hops - 1,
            seen: request.seen.saturating_add(1),
        };
        Ok(Reply::forward(RELAY, "Bounce", &next))
    }

    async fn fan_out(
        &self,
        request: proto::FanOutRequest,
        ctx: &mut ActionContext,
    ) -> Result<(), Failure> {
        for id in request.ids {
            let increment = proto::IncrementRequest { id, by: 1 };
            ctx.side_effect(COUNTER, "Increment", &increment, request.synchronous);
        }
        Ok(())
    }

    async fn crashing_effect(
        &self,
        request: proto::CounterId,
        ctx: &mut ActionContext,
    ) -> Result<(), Failure> {
        ctx.side_effect(COUNTER, "Crash", &request, true);
        Ok(())
    }

    async fn echo(&self, text: proto::Text, _: &mut ActionContext) -> Result<proto::Text, Failure> {
        Ok(text)
    }

    async fn repeat(
        &self,
        request: proto::RepeatRequest,
        _: &mut ActionContext,
    ) -> Result<ReplyStream<proto::Text>, Failure> {
        let texts = (1..=request.times).map(move |i| {
            ActionReply::message(proto::Text {
                text: format!("{} {i}", request.text),
            })
        });
        Ok(ReplyStream::new(tokio_stream::iter(texts)))
    }

    async fn concat(
        &self,
        texts: RequestStream<proto::Text>,
        _: &mut ActionContext,
    ) -> Result<proto::Text, Failure> {
        let texts: Vec<String> = texts.map(|text| text.text).collect().await;
        Ok(proto::Text {
            text: texts.join(" "),
        })
    }

    async fn shout(
        &self,
        texts: RequestStream<proto::Text>,
        _: &mut ActionContext,
    ) -> Result<ReplyStream<proto::Text>, Failure> {
        Ok(ReplyStream::new(texts.map(|text| {
            ActionReply::message(proto::Text {
                text: text.text.to_uppercase(),
            })
        })))
    }
}

impl Action for Relay {
    fn commands(commands: &mut ActionCommands<Self>) {
        commands
            .unary("ToCounter", Self::to_counter)
            .unary("Bounce", Self::bounce)
            .unary("FanOut", Self::fan_out)
            .unary("CrashingEffect", Self::crashing_effect)
            .unary("Echo", Self::echo)
            .server_streaming("Repeat", Self::repeat)
            .client_streaming("Concat", Self::concat)
            .streamed("Shout", Self::shout);
    }
}

/// The user function with the three services.
fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(ValueEntityService::<Value>::new(COUNTER).persistence_id("counter"))?
        .register(
            EventSourced::<Ledger>::new(LEDGER)
                .persistence_id("ledger")
                .snapshot_every(5),
        )?
        .register(ActionService::new(RELAY, Relay))?
        .service_info("test-function", env!("CARGO_PKG_VERSION")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let server = server()?;
    let addr = cloudstate::address_from_env().await?;
    tracing::info!(%addr, "test-function starting");
    // Logs the address again once it listens, and serves until Ctrl-C or SIGTERM.
    server.serve(addr).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use cloudstate::protocol::valueentity::value_entity_client::ValueEntityClient;
    use cloudstate::protocol::valueentity::{
        ValueEntityInit, ValueEntityInitState, ValueEntityStreamIn, value_entity_stream_in,
        value_entity_stream_out,
    };
    use cloudstate::protocol::{self, Any};
    use cloudstate::testkit::{
        ActionTestKit, EventSourcedTestKit, StateAction, ValueEntityTestKit,
    };
    use tokio::sync::oneshot;
    use tonic::transport::Channel;

    use super::*;

    fn counter() -> ValueEntityTestKit<Value> {
        ValueEntityTestKit::new(ValueEntityService::new(COUNTER), "c1")
    }

    fn increment(id: &str, by: i64) -> proto::IncrementRequest {
        proto::IncrementRequest { id: id.into(), by }
    }

    fn text(text: &str) -> proto::Text {
        proto::Text { text: text.into() }
    }

    #[test]
    fn counter_counts_deletes_and_does_not_keep_failed_changes() {
        let mut kit = counter();
        let id = proto::CounterId { id: "c1".into() };
        assert_eq!(
            kit.command("Get", id.clone())
                .unwrap()
                .reply::<Value>()
                .unwrap()
                .value,
            0
        );
        let outcome = kit.command("Increment", increment("c1", 5)).unwrap();
        assert_eq!(outcome.reply::<Value>().unwrap().value, 5);
        assert_eq!(
            outcome.state_action(),
            Some(&StateAction::Update(Value { value: 5 }))
        );

        let failed = kit
            .command(
                "Fail",
                proto::FailRequest {
                    id: "c1".into(),
                    message: "no".into(),
                },
            )
            .unwrap();
        let failure = failed.failure().unwrap();
        assert_eq!(
            (failure.description(), failure.code()),
            ("no", Some(Code::FailedPrecondition))
        );
        assert!(failed.state_action().is_none());
        assert_eq!(kit.stored(), Some(&Value { value: 5 }));

        let slow = proto::SlowRequest {
            id: "c1".into(),
            millis: 1,
        };
        assert_eq!(
            kit.command("Slow", slow)
                .unwrap()
                .reply::<Value>()
                .unwrap()
                .value,
            5
        );

        let deleted = kit.command("Delete", id.clone()).unwrap();
        assert_eq!(deleted.state_action(), Some(&StateAction::Delete));
        assert_eq!(
            kit.command("Get", id)
                .unwrap()
                .reply::<Value>()
                .unwrap()
                .value,
            0
        );
    }

    #[test]
    fn ledger_totals_snapshots_every_five_and_forwards() {
        let mut kit =
            EventSourcedTestKit::new(EventSourced::<Ledger>::new(LEDGER).snapshot_every(5), "l1");
        let record = |amount, forward_to: &str| proto::RecordRequest {
            id: "l1".into(),
            amount,
            forward_to: forward_to.into(),
        };
        for amount in 1..=4 {
            let outcome = kit.command("Record", record(amount, "")).unwrap();
            assert!(outcome.snapshot().is_none());
        }
        let fifth = kit.command("Record", record(5, "")).unwrap();
        assert_eq!(fifth.reply::<Value>().unwrap().value, 15);
        assert_eq!(fifth.snapshot(), Some(&Value { value: 15 }));

        let forwarded = kit.command("Record", record(7, "c9")).unwrap();
        let forward = forwarded.forward().unwrap();
        assert_eq!(
            (forward.service.as_str(), forward.method.as_str()),
            (COUNTER, "Increment")
        );
        assert_eq!(forward.payload, Any::from_message(&increment("c9", 7)));
        assert_eq!(forwarded.events().len(), 1);
        let total = kit
            .command("Total", proto::LedgerId { id: "l1".into() })
            .unwrap();
        assert_eq!(total.reply::<Value>().unwrap().value, 22);
    }

    #[tokio::test]
    async fn relay_forwards_and_fans_out() {
        let kit = ActionTestKit::new(ActionService::new(RELAY, Relay));
        let to_counter = kit.unary("ToCounter", increment("c1", 2)).await.unwrap();
        assert_eq!(
            to_counter.forward().unwrap().payload,
            Any::from_message(&increment("c1", 2))
        );

        let bounce = kit
            .unary("Bounce", proto::BounceRequest { hops: 3, seen: 0 })
            .await
            .unwrap();
        let forward = bounce.forward().unwrap();
        assert_eq!(
            (forward.service.as_str(), forward.method.as_str()),
            (RELAY, "Bounce")
        );
        assert_eq!(
            forward.payload,
            Any::from_message(&proto::BounceRequest { hops: 2, seen: 1 })
        );
        let done = kit
            .unary("Bounce", proto::BounceRequest { hops: 0, seen: 3 })
            .await
            .unwrap();
        assert_eq!(done.reply::<Value>().unwrap().value, 3);

        let fan_out = kit
            .unary(
                "FanOut",
                proto::FanOutRequest {
                    ids: vec!["a".into(), "b".into()],
                    synchronous: true,
                },
            )
            .await
            .unwrap();
        fan_out.reply::<()>().unwrap();
        let effects: Vec<_> = fan_out
            .side_effects()
            .iter()
            .map(|e| (e.method.as_str(), e.synchronous, e.payload.clone()))
            .collect();
        assert_eq!(
            effects,
            [
                ("Increment", true, Any::from_message(&increment("a", 1))),
                ("Increment", true, Any::from_message(&increment("b", 1))),
            ]
        );

        let crashing = kit
            .unary("CrashingEffect", proto::CounterId { id: "x".into() })
            .await
            .unwrap();
        let effect = &crashing.side_effects()[0];
        assert_eq!(
            (
                effect.service.as_str(),
                effect.method.as_str(),
                effect.synchronous
            ),
            (COUNTER, "Crash", true)
        );
    }

    #[tokio::test]
    async fn relay_streams_in_all_shapes() {
        let kit = ActionTestKit::new(ActionService::new(RELAY, Relay));
        let echo = kit.unary("Echo", text("hi")).await.unwrap();
        assert_eq!(echo.reply::<proto::Text>().unwrap(), text("hi"));

        let repeated = kit
            .server_streaming(
                "Repeat",
                proto::RepeatRequest {
                    text: "go".into(),
                    times: 3,
                },
            )
            .await
            .unwrap();
        let texts: Vec<_> = repeated
            .iter()
            .map(|outcome| outcome.reply::<proto::Text>().unwrap().text)
            .collect();
        assert_eq!(texts, ["go 1", "go 2", "go 3"]);

        let concat = kit
            .client_streaming("Concat", [text("a"), text("b"), text("c")])
            .await
            .unwrap();
        assert_eq!(concat.reply::<proto::Text>().unwrap().text, "a b c");

        let shouted = kit.streamed("Shout", [text("x"), text("y")]).await.unwrap();
        let texts: Vec<_> = shouted
            .iter()
            .map(|outcome| outcome.reply::<proto::Text>().unwrap().text)
            .collect();
        assert_eq!(texts, ["X", "Y"]);
    }

    fn counter_stream(id: &str, name: &str, payload: Any) -> Vec<ValueEntityStreamIn> {
        vec![
            ValueEntityStreamIn {
                message: Some(value_entity_stream_in::Message::Init(ValueEntityInit {
                    service_name: COUNTER.into(),
                    entity_id: id.into(),
                    state: Some(ValueEntityInitState { value: None }),
                })),
            },
            ValueEntityStreamIn {
                message: Some(value_entity_stream_in::Message::Command(
                    protocol::Command {
                        entity_id: id.into(),
                        id: 1,
                        name: name.into(),
                        payload: Some(payload),
                        ..protocol::Command::default()
                    },
                )),
            },
        ]
    }

    /// Sends one command on a new stream of counter `id`; returns the replied value.
    async fn call(channel: Channel, id: &str, name: &str, payload: Any) -> i64 {
        let mut output = ValueEntityClient::new(channel)
            .handle(tokio_stream::iter(counter_stream(id, name, payload)))
            .await
            .unwrap()
            .into_inner();
        let reply = match output.next().await {
            Some(Ok(out)) => match out.message {
                Some(value_entity_stream_out::Message::Reply(reply)) => reply,
                other => panic!("expected a reply, got {other:?}"),
            },
            other => panic!("expected a reply, got {other:?}"),
        };
        match reply.client_action.and_then(|a| a.action) {
            Some(protocol::client_action::Action::Reply(reply)) => {
                reply
                    .payload
                    .unwrap()
                    .to_message::<Value>()
                    .unwrap()
                    .unwrap()
                    .value
            }
            other => panic!("expected a reply message, got {other:?}"),
        }
    }

    /// `Slow` blocks its own entity only: another entity answers meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_entity_does_not_block_the_others() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server().unwrap().serve_with_listener(listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();

        let started = Instant::now();
        let slow = proto::SlowRequest {
            id: "slow".into(),
            millis: 1500,
        };
        let slow = tokio::spawn(call(
            channel.clone(),
            "slow",
            "Slow",
            Any::from_message(&slow),
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        for id in ["a", "b", "c"] {
            let value = call(
                channel.clone(),
                id,
                "Increment",
                Any::from_message(&increment(id, 2)),
            )
            .await;
            assert_eq!(value, 2);
        }
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(slow.await.unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(1500));
    }
}
