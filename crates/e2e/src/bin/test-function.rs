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
    ActionContext, ActionReply, CommandContext, EventSourcedEntity, Failure, Reply, ReplyStream,
    RequestStream, ValueContext,
};
use tokio_stream::StreamExt;

/// The generated types of `e2e.proto`.
mod proto {
    cloudstate::include_protos!("cloudstate.e2e");

    /// `e2e.proto` and its imports.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

use proto::{Value, counter, relay};

/// `Counter`: the state is the stored `Value` (0 when nothing is stored).
impl proto::Counter for Value {
    fn increment(
        &self,
        request: proto::IncrementRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        let value = self.value.checked_add(request.by).ok_or_else(|| {
            Failure::out_of_range(format!("Counter {} would overflow", request.id))
        })?;
        ctx.update_state(Value { value });
        Ok(Value { value }.into())
    }

    fn get(
        &self,
        _: proto::CounterId,
        _: &mut ValueContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        Ok((*self).into())
    }

    fn delete(
        &self,
        _: proto::CounterId,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<()>, Failure> {
        ctx.delete_state();
        Ok(().into())
    }

    /// Blocks this entity's stream for `millis`; other entities keep being served (the runtime
    /// moves its other tasks off this thread meanwhile).
    fn slow(
        &self,
        request: proto::SlowRequest,
        _: &mut ValueContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        let pause = Duration::from_millis(u64::from(request.millis));
        tokio::task::block_in_place(|| std::thread::sleep(pause));
        Ok((*self).into())
    }

    fn crash(
        &self,
        request: proto::CounterId,
        _: &mut ValueContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        tracing::warn!(counter = %request.id, "Crash: exiting");
        std::process::exit(1)
    }

    fn fail(
        &self,
        request: proto::FailRequest,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        // Discarded with the failure: the proxy must not store it.
        ctx.update_state(Value { value: -1 });
        Err(Failure::failed_precondition(request.message))
    }
}

cloudstate::events! {
    /// The ledger's events.
    enum LedgerEvent {
        Recorded(proto::Recorded),
    }
}

/// `Ledger`: the sum of the recorded amounts.
#[derive(Default)]
struct Ledger {
    total: i64,
}

impl proto::Ledger for Ledger {
    fn record(
        &self,
        request: proto::RecordRequest,
        ctx: &mut CommandContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        let total = self.total.checked_add(request.amount).ok_or_else(|| {
            Failure::out_of_range(format!("Ledger {} would overflow", request.id))
        })?;
        ctx.emit(proto::Recorded {
            amount: request.amount,
        });
        if request.forward_to.is_empty() {
            return Ok(Value { value: total }.into());
        }
        let increment = proto::IncrementRequest {
            id: request.forward_to,
            by: request.amount,
        };
        Ok(Reply::forward(counter::increment(increment)))
    }

    fn total(
        &self,
        _: proto::LedgerId,
        _: &mut CommandContext<Self>,
    ) -> Result<Reply<Value>, Failure> {
        Ok(Value { value: self.total }.into())
    }
}

impl EventSourcedEntity for Ledger {
    type Event = LedgerEvent;
    type Snapshot = Value;

    fn apply(&mut self, LedgerEvent::Recorded(recorded): &LedgerEvent) {
        self.total = self.total.saturating_add(recorded.amount);
    }

    fn snapshot(&self) -> Option<Value> {
        Some(Value { value: self.total })
    }

    fn from_snapshot(snapshot: Value) -> Option<Self> {
        Some(Ledger {
            total: snapshot.value,
        })
    }
}

/// `Relay`: stateless.
struct Relay;

impl proto::Relay for Relay {
    async fn to_counter(
        &self,
        request: proto::IncrementRequest,
        _: &mut ActionContext,
    ) -> Result<Reply<Value>, Failure> {
        Ok(Reply::forward(counter::increment(request)))
    }

    async fn bounce(
        &self,
        request: proto::BounceRequest,
        _: &mut ActionContext,
    ) -> Result<Reply<Value>, Failure> {
        if request.hops == 0 {
            return Ok(Value {
                value: i64::from(request.seen),
            }
            .into());
        }
        let next = proto::BounceRequest {
            hops: request.hops - 1,
            seen: request.seen.saturating_add(1),
        };
        Ok(Reply::forward(relay::bounce(next)))
    }

    async fn fan_out(
        &self,
        request: proto::FanOutRequest,
        ctx: &mut ActionContext,
    ) -> Result<Reply<()>, Failure> {
        for id in request.ids {
            let increment = proto::IncrementRequest { id, by: 1 };
            let call = counter::increment(increment);
            if request.synchronous {
                ctx.side_effect(call.synchronous());
            } else {
                ctx.side_effect(call);
            }
        }
        Ok(().into())
    }

    async fn crashing_effect(
        &self,
        request: proto::CounterId,
        ctx: &mut ActionContext,
    ) -> Result<Reply<()>, Failure> {
        ctx.side_effect(counter::crash(request).synchronous());
        Ok(().into())
    }

    async fn echo(
        &self,
        text: proto::Text,
        _: &mut ActionContext,
    ) -> Result<Reply<proto::Text>, Failure> {
        Ok(text.into())
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
    ) -> Result<Reply<proto::Text>, Failure> {
        let texts: Vec<String> = texts.map(|text| text.text).collect().await;
        Ok(proto::Text {
            text: texts.join(" "),
        }
        .into())
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

/// The user function with the three services.
fn server() -> Result<cloudstate::Server, cloudstate::Error> {
    Ok(cloudstate::Server::new(proto::FILE_DESCRIPTOR_SET)?
        .register(counter::entity::<Value>().persistence_id("counter"))?
        .register(
            proto::ledger::entity::<Ledger>()
                .persistence_id("ledger")
                .snapshot_every(5),
        )?
        .register(relay::action(Relay))?
        .service_info("test-function", env!("CARGO_PKG_VERSION")))
}

#[tokio::main]
async fn main() -> Result<(), cloudstate::Error> {
    // Logs the address once it listens, and serves until Ctrl-C or SIGTERM.
    server()?.serve_from_env().await
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
    use cloudstate::Code;

    fn counter() -> ValueEntityTestKit<Value> {
        ValueEntityTestKit::new(counter::entity(), "c1")
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
            kit.command(counter::get(id.clone()))
                .unwrap()
                .reply::<Value>()
                .unwrap()
                .value,
            0
        );
        let outcome = kit.command(counter::increment(increment("c1", 5))).unwrap();
        assert_eq!(outcome.reply::<Value>().unwrap().value, 5);
        assert_eq!(
            outcome.state_action(),
            Some(&StateAction::Update(Value { value: 5 }))
        );

        let failed = kit
            .command(counter::fail(proto::FailRequest {
                id: "c1".into(),
                message: "no".into(),
            }))
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
            kit.command(counter::slow(slow))
                .unwrap()
                .reply::<Value>()
                .unwrap()
                .value,
            5
        );

        let deleted = kit.command(counter::delete(id.clone())).unwrap();
        assert_eq!(deleted.state_action(), Some(&StateAction::Delete));
        assert_eq!(
            kit.command(counter::get(id))
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
            EventSourcedTestKit::new(proto::ledger::entity::<Ledger>().snapshot_every(5), "l1");
        let record = |amount, forward_to: &str| proto::RecordRequest {
            id: "l1".into(),
            amount,
            forward_to: forward_to.into(),
        };
        for amount in 1..=4 {
            let outcome = kit
                .command(proto::ledger::record(record(amount, "")))
                .unwrap();
            assert!(outcome.snapshot().is_none());
        }
        let fifth = kit.command(proto::ledger::record(record(5, ""))).unwrap();
        assert_eq!(fifth.reply::<Value>().unwrap().value, 15);
        assert_eq!(fifth.snapshot(), Some(&Value { value: 15 }));

        let forwarded = kit.command(proto::ledger::record(record(7, "c9"))).unwrap();
        let forward = forwarded.forward().unwrap();
        assert_eq!(
            (forward.service.as_str(), forward.method.as_str()),
            (counter::NAME, "Increment")
        );
        assert_eq!(forward.payload, Any::from_message(&increment("c9", 7)));
        assert_eq!(forwarded.events().len(), 1);
        let total = kit
            .command(proto::ledger::total(proto::LedgerId { id: "l1".into() }))
            .unwrap();
        assert_eq!(total.reply::<Value>().unwrap().value, 22);
    }

    #[tokio::test]
    async fn relay_forwards_and_fans_out() {
        let kit = ActionTestKit::new(relay::action(Relay));
        let to_counter = kit
            .unary(relay::to_counter(increment("c1", 2)))
            .await
            .unwrap();
        assert_eq!(
            to_counter.forward().unwrap().payload,
            Any::from_message(&increment("c1", 2))
        );

        let bounce = kit
            .unary(relay::bounce(proto::BounceRequest { hops: 3, seen: 0 }))
            .await
            .unwrap();
        let forward = bounce.forward().unwrap();
        assert_eq!(
            (forward.service.as_str(), forward.method.as_str()),
            (relay::NAME, "Bounce")
        );
        assert_eq!(
            forward.payload,
            Any::from_message(&proto::BounceRequest { hops: 2, seen: 1 })
        );
        let done = kit
            .unary(relay::bounce(proto::BounceRequest { hops: 0, seen: 3 }))
            .await
            .unwrap();
        assert_eq!(done.reply::<Value>().unwrap().value, 3);

        let fan_out = kit
            .unary(relay::fan_out(proto::FanOutRequest {
                ids: vec!["a".into(), "b".into()],
                synchronous: true,
            }))
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
            .unary(relay::crashing_effect(proto::CounterId { id: "x".into() }))
            .await
            .unwrap();
        let effect = &crashing.side_effects()[0];
        assert_eq!(
            (
                effect.service.as_str(),
                effect.method.as_str(),
                effect.synchronous
            ),
            (counter::NAME, "Crash", true)
        );
    }

    #[tokio::test]
    async fn relay_streams_in_all_shapes() {
        let kit = ActionTestKit::new(relay::action(Relay));
        let echo = kit.unary(relay::echo(text("hi"))).await.unwrap();
        assert_eq!(echo.reply::<proto::Text>().unwrap(), text("hi"));

        let repeated = kit
            .server_streaming(relay::repeat(proto::RepeatRequest {
                text: "go".into(),
                times: 3,
            }))
            .await
            .unwrap();
        let texts: Vec<_> = repeated
            .iter()
            .map(|outcome| outcome.reply::<proto::Text>().unwrap().text)
            .collect();
        assert_eq!(texts, ["go 1", "go 2", "go 3"]);

        let concat = kit
            .client_streaming(relay::concat, [text("a"), text("b"), text("c")])
            .await
            .unwrap();
        assert_eq!(concat.reply::<proto::Text>().unwrap().text, "a b c");

        let shouted = kit
            .streamed(relay::shout, [text("x"), text("y")])
            .await
            .unwrap();
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
                    service_name: counter::NAME.into(),
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
