//! User functions that break the protocol (`tck-misbehaving`): the proxy must answer clearly
//! (the statuses and texts of docs/protocol.md) and recover. The original TCK had no such cases.

use std::sync::Arc;
use std::time::Duration;

use cloudstate_protocol::eventsourced::{EventSourcedStreamIn, EventSourcedStreamOut};
use tonic::Code;

use super::{Case, CaseResult, Ctx, Setup};
use crate::Error;
use crate::error::{CheckExt, ensure, ensure_eq};
use crate::messages::{
    Effects, action as action_msg, crdt as crdt_msg, event_sourced as es_msg,
    value_entity as ve_msg,
};
use crate::misbehaviour::{Action, EARLY_REPLY_PREFIX, Entity, PREFIX, UNKNOWN_SERVICE};
use crate::proto::action::action_tck_model_client::ActionTckModelClient;
use crate::proto::action::{ProcessGroup, ProcessStep, process_step};
use crate::proto::crdt::crdt_tck_model_client::CrdtTckModelClient;
use crate::proto::eventsourced::event_sourced_tck_model_client::EventSourcedTckModelClient;
use crate::proto::service::{CRDT, EVENT_SOURCED, VALUE_ENTITY};
use crate::proto::valueentity::value_entity_tck_model_client::ValueEntityTckModelClient;
use crate::proto::{action, crdt, eventsourced, valueentity};
use crate::relay::{Call, Stream};

/// How the proxy must answer a misbehaviour, and what becomes of the entity.
#[derive(Clone, Copy)]
struct Expected {
    code: Code,
    /// The start of the client's error message, where docs/protocol.md §4.5 gives one that the
    /// proxy follows.
    text: Option<&'static str>,
    /// Whether the proxy must tell the user function with `reportError` (naming the entity).
    report: bool,
    /// Whether the entity is restarted (a new stream for the next command).
    restart: bool,
    /// Whether the user function's misbehaviour is a message (else it ends its side).
    answers: bool,
}

fn entity_expectation(misbehaviour: Entity) -> Expected {
    let violation = Expected {
        code: Code::Internal,
        text: Some("protocol violation by the user function"),
        report: true,
        restart: true,
        answers: true,
    };
    let termination = Expected {
        code: Code::Unavailable,
        text: Some("Unexpected entity termination"),
        report: false,
        restart: true,
        answers: false,
    };
    match misbehaviour {
        Entity::UnknownCommandId | Entity::EmptyMessage | Entity::IncompatibleDelta => violation,
        // docs/protocol.md §4.5 words it "protocol violation ...: got a reply without a client
        // action"; the proxy says "<Service.Method> sent no reply". Only the status and what
        // becomes of the entity are checked (docs/tck.md).
        Entity::ReplyWithoutAction => Expected {
            text: None,
            report: false,
            restart: false,
            ..violation
        },
        Entity::EntityFailure => Expected {
            text: Some("Unexpected entity failure"),
            report: false,
            ..violation
        },
        Entity::CloseStream | Entity::ErrorStream | Entity::Crash => termination,
    }
}

pub(super) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // What the `reportError` message must contain (one of them) for each discovery misbehaviour.
    let discovery: [(&str, &str, &[&str]); 7] = [
        (
            "an entity of an unsupported type",
            "unsupported-entity-type",
            &["unsupported entity type"],
        ),
        (
            "a service that is not in the descriptors",
            "service-not-in-descriptors",
            &["not found in descriptors"],
        ),
        ("no entities", "no-entities", &["No entities"]),
        (
            "an unsupported protocol version",
            "unsupported-protocol-version",
            &["1.0"],
        ),
        (
            "a descriptor set without its imports",
            "missing-import",
            &[
                "cloudstate/entity_key.proto",
                "google/api/annotations.proto",
            ],
        ),
        (
            "a streamed event sourced method",
            "streamed-entity-method",
            &["ProcessStreamed"],
        ),
        (
            "a value entity method without entity key",
            "keyless-entity-method",
            &["ProcessUnary"],
        ),
    ];
    for (what, mode, report) in discovery {
        cases.push(
            Case::proxy(
                format!("misbehaving proxy: discovery with {what} is refused"),
                move |ctx| Box::pin(refused_at_discovery(ctx, report)),
            )
            .setup(Setup::Misbehaving(Some(mode))),
        );
    }
    for (name, misbehaviour) in Entity::ALL {
        let expected = entity_expectation(misbehaviour);
        let case = |kind: &str| {
            format!("misbehaving proxy: {kind} {name} fails the command and the entity recovers")
        };
        if misbehaviour != Entity::IncompatibleDelta {
            cases.push(shared(case("event sourced"), move |ctx| {
                Box::pin(event_sourced(ctx, misbehaviour, expected))
            }));
        }
        if !matches!(misbehaviour, Entity::Crash | Entity::IncompatibleDelta) {
            cases.push(shared(case("value entity"), move |ctx| {
                Box::pin(value_entity(ctx, misbehaviour, expected))
            }));
        }
        // A CRDT command's reply without client action is legal for streamed commands, and
        // the crash is the event sourced case's.
        if !matches!(misbehaviour, Entity::Crash | Entity::ReplyWithoutAction) {
            cases.push(shared(case("crdt"), move |ctx| {
                Box::pin(crdt(ctx, misbehaviour, expected))
            }));
        }
    }
    cases.push(shared(
        "misbehaving proxy: event sourced reply before any command fails and the entity recovers",
        |ctx| Box::pin(early_reply(ctx)),
    ));
    cases.push(shared(
        "misbehaving proxy: an action's error status reaches the client",
        |ctx| Box::pin(action_error_status(ctx)),
    ));
    cases.push(shared(
        "misbehaving proxy: a reply of the wrong type is reported and still delivered",
        |ctx| Box::pin(wrong_reply_type(ctx)),
    ));
    cases.push(shared(
        "misbehaving proxy: a forward to an unknown service is reported and fails",
        |ctx| Box::pin(forward_unknown(ctx)),
    ));
    cases
}

fn shared<F>(name: impl Into<String>, run: F) -> Case
where
    F: for<'a> Fn(&'a Ctx) -> futures_util::future::BoxFuture<'a, CaseResult>
        + Send
        + Sync
        + 'static,
{
    Case::proxy(name, run).setup(Setup::Misbehaving(None))
}

async fn refused_at_discovery(ctx: &Ctx, report: &[&str]) -> CaseResult {
    let relay = ctx.relay()?;
    let reported = relay
        .expect_reported_error_matching(|message| report.iter().any(|text| message.contains(text)))
        .await;
    reported.map_err(|_| {
        Error::Check(format!(
            "the proxy reported no error naming any of {report:?} to the user function \
             (reported: {:?})",
            relay.reported_errors()
        ))
    })?;
    let code = ctx.proxy_exit_code(Duration::from_secs(15)).await?;
    ensure_eq(
        &code,
        &Some(1),
        "the proxy's exit code (docs/protocol.md §2.3)",
    )
}

fn misbehave(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Checks a client's error status against `expected`.
fn check_status(status: &tonic::Status, expected: Expected) -> CaseResult {
    ensure_eq(
        &status.code(),
        &expected.code,
        &format!("status ({})", status.message()),
    )?;
    match expected.text {
        Some(text) => ensure(status.message().starts_with(text), || {
            format!(
                "the message {:?} does not start with {text:?}",
                status.message()
            )
        }),
        None => Ok(()),
    }
}

/// Consumes what the relay saw of a misbehaving command: the command, the misbehaviour, and
/// (when the entity restarts) the end of the stream.
async fn after_misbehaviour<In, Out>(stream: &Stream<In, Out>, expected: Expected) -> CaseResult
where
    In: Clone + std::fmt::Debug,
    Out: Clone + std::fmt::Debug,
{
    stream.in_message().await?;
    if expected.answers {
        stream.out_message().await?;
    }
    if expected.restart {
        stream.expect_closed(Duration::from_secs(5)).await?;
    }
    Ok(())
}

async fn event_sourced(ctx: &Ctx, misbehaviour: Entity, expected: Expected) -> CaseResult {
    let id = ctx.entity_id("entity");
    let request = |actions: Vec<eventsourced::RequestAction>| eventsourced::Request {
        id: id.clone(),
        actions,
    };
    let fail = |message: String| eventsourced::RequestAction {
        action: Some(eventsourced::request_action::Action::Fail(
            eventsourced::Fail { message },
        )),
    };
    let process = |n: i64, actions| es_msg::command(n, &id, "Process", &request(actions));
    let ok = |n: i64| {
        es_msg::reply(
            n,
            &eventsourced::Response {
                message: "ok".into(),
            },
            Effects::none(),
        )
    };
    let mut client = EventSourcedTckModelClient::new(ctx.proxy()?.channel.clone());

    client
        .process(request(vec![]))
        .await
        .check("a correct command")?;
    let stream = ctx.relay()?.expect_event_sourced().await?;
    stream
        .expect_in(es_msg::init(EVENT_SOURCED, &id, None))
        .await?;
    expect_exchange(&stream, process(1, vec![]), ok(1)).await?;

    let bad = vec![fail(misbehave(misbehaviour.name()))];
    let status = client
        .process(request(bad))
        .await
        .err()
        .ok_or_else(|| Error::Check("the misbehaving command succeeded".into()))?;
    check_status(&status, expected)?;
    after_misbehaviour(&stream, expected).await?;
    if expected.report {
        ctx.relay()?.expect_reported_error(&id).await?;
    }
    if misbehaviour == Entity::Crash {
        ctx.restart_service().await?;
    }

    client
        .process(request(vec![]))
        .await
        .check("the next command")?;
    if expected.restart {
        let stream = ctx.relay()?.expect_event_sourced().await?;
        stream
            .expect_in(es_msg::init(EVENT_SOURCED, &id, None))
            .await?;
        expect_exchange(&stream, process(1, vec![]), ok(1)).await
    } else {
        expect_exchange(&stream, process(3, vec![]), ok(3)).await
    }
}

async fn value_entity(ctx: &Ctx, misbehaviour: Entity, expected: Expected) -> CaseResult {
    let id = ctx.entity_id("entity");
    let request = |actions: Vec<valueentity::RequestAction>| valueentity::Request {
        id: id.clone(),
        actions,
    };
    let fail = |message: String| valueentity::RequestAction {
        action: Some(valueentity::request_action::Action::Fail(
            valueentity::Fail { message },
        )),
    };
    let process = |n: i64, actions| ve_msg::command(n, &id, "Process", &request(actions));
    let ok = |n: i64| {
        ve_msg::reply(
            n,
            &valueentity::Response {
                message: "ok".into(),
            },
            Effects::none(),
        )
    };
    let mut client = ValueEntityTckModelClient::new(ctx.proxy()?.channel.clone());

    client
        .process(request(vec![]))
        .await
        .check("a correct command")?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream
        .expect_in(ve_msg::init(VALUE_ENTITY, &id, None))
        .await?;
    expect_exchange(&stream, process(1, vec![]), ok(1)).await?;

    let bad = vec![fail(misbehave(misbehaviour.name()))];
    let status = client
        .process(request(bad))
        .await
        .err()
        .ok_or_else(|| Error::Check("the misbehaving command succeeded".into()))?;
    check_status(&status, expected)?;
    after_misbehaviour(&stream, expected).await?;
    if expected.report {
        ctx.relay()?.expect_reported_error(&id).await?;
    }

    client
        .process(request(vec![]))
        .await
        .check("the next command")?;
    if expected.restart {
        let stream = ctx.relay()?.expect_value_entity().await?;
        stream
            .expect_in(ve_msg::init(VALUE_ENTITY, &id, None))
            .await?;
        expect_exchange(&stream, process(1, vec![]), ok(1)).await
    } else {
        expect_exchange(&stream, process(3, vec![]), ok(3)).await
    }
}

async fn crdt(ctx: &Ctx, misbehaviour: Entity, expected: Expected) -> CaseResult {
    let id = ctx.entity_id("entity");
    let request = |actions: Vec<crdt::RequestAction>| crdt::Request {
        id: id.clone(),
        actions,
    };
    let fail = |message: String| crdt::RequestAction {
        action: Some(crdt::request_action::Action::Fail(crdt::Fail { message })),
    };
    let process = |n: i64, actions| crdt_msg::command(n, &id, "Process", &request(actions), false);
    // Every correct answer increments the entity, a GCounter, by 1.
    let ok = |n: i64| {
        crdt_msg::reply(
            n,
            &crdt::Response::default(),
            Effects::none().crdt_action(crdt_msg::update(crdt_msg::gcounter(1))),
        )
    };
    let mut client = CrdtTckModelClient::new(ctx.proxy()?.channel.clone());

    client
        .process(request(vec![]))
        .await
        .check("a correct command")?;
    let stream = ctx.relay()?.expect_crdt().await?;
    stream.expect_in(crdt_msg::init(CRDT, &id, None)).await?;
    expect_exchange(&stream, process(1, vec![]), ok(1)).await?;

    let bad = vec![fail(misbehave(misbehaviour.name()))];
    let status = client
        .process(request(bad))
        .await
        .err()
        .ok_or_else(|| Error::Check("the misbehaving command succeeded".into()))?;
    check_status(&status, expected)?;
    after_misbehaviour(&stream, expected).await?;
    if expected.report {
        ctx.relay()?.expect_reported_error(&id).await?;
    }

    client
        .process(request(vec![]))
        .await
        .check("the next command")?;
    if expected.restart {
        // The proxy kept the state: the new stream starts with it.
        let stream = ctx.relay()?.expect_crdt().await?;
        let state = Some(crdt_msg::gcounter(1));
        stream.expect_in(crdt_msg::init(CRDT, &id, state)).await?;
        expect_exchange(&stream, process(1, vec![]), ok(1)).await
    } else {
        expect_exchange(&stream, process(3, vec![]), ok(3)).await
    }
}

async fn expect_exchange<In, Out>(
    stream: &Arc<Stream<In, Out>>,
    command: In,
    reply: Out,
) -> CaseResult
where
    In: Clone + std::fmt::Debug + PartialEq,
    Out: Clone + std::fmt::Debug + PartialEq,
{
    stream.expect_in(command).await?;
    stream.expect_out(reply).await?;
    Ok(())
}

async fn early_reply(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id(EARLY_REPLY_PREFIX);
    let request = eventsourced::Request {
        id: id.clone(),
        actions: vec![],
    };
    let mut client = EventSourcedTckModelClient::new(ctx.proxy()?.channel.clone());
    let status = client
        .process(request.clone())
        .await
        .err()
        .ok_or_else(|| Error::Check("the command answered early succeeded".into()))?;
    check_status(&status, entity_expectation(Entity::UnknownCommandId))?;
    let stream = ctx.relay()?.expect_event_sourced().await?;
    stream
        .expect_in(es_msg::init(EVENT_SOURCED, &id, None))
        .await?;
    stream.skip_to_end(Duration::from_secs(5)).await?;
    ctx.relay()?.expect_reported_error(&id).await?;

    let reply = client
        .process(request.clone())
        .await
        .check("the next command")?;
    ensure_eq(&reply.get_ref().message.as_str(), &"ok", "reply")?;
    let stream = ctx.relay()?.expect_event_sourced().await?;
    let expected_in: EventSourcedStreamIn = es_msg::init(EVENT_SOURCED, &id, None);
    stream.expect_in(expected_in).await?;
    let expected_out: EventSourcedStreamOut = es_msg::reply(
        1,
        &eventsourced::Response {
            message: "ok".into(),
        },
        Effects::none(),
    );
    expect_exchange(
        &stream,
        es_msg::command(1, &id, "Process", &request),
        expected_out,
    )
    .await
}

fn action_request(misbehaviour: Action) -> action::Request {
    action::Request {
        groups: vec![ProcessGroup {
            steps: vec![ProcessStep {
                step: Some(process_step::Step::Fail(action::Fail {
                    message: misbehave(misbehaviour.name()),
                })),
            }],
        }],
    }
}

async fn action_error_status(ctx: &Ctx) -> CaseResult {
    let mut client = ActionTckModelClient::new(ctx.proxy()?.channel.clone());
    let status = client
        .process_unary(action_request(Action::ErrorStatus))
        .await
        .err()
        .ok_or_else(|| Error::Check("the failing call succeeded".into()))?;
    ensure_eq(
        &status.code(),
        &Code::PermissionDenied,
        "status (docs/protocol.md §7)",
    )?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    call.in_message().await?;
    let end = call.next_out().await?;
    ensure(matches!(end.event, crate::relay::Event::Error(_)), || {
        format!(
            "expected the user function's error status, saw {:?}",
            end.event
        )
    })
}

async fn wrong_reply_type(ctx: &Ctx) -> CaseResult {
    let mut client = ActionTckModelClient::new(ctx.proxy()?.channel.clone());
    let reply = client
        .process_unary(action_request(Action::WrongReplyType))
        .await
        .check("ProcessUnary")?;
    // The bytes of `OtherRequest{id: "typed"}` read as a `Response`.
    ensure_eq(&reply.get_ref().message.as_str(), &"typed", "reply")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    call.in_message().await?;
    call.out_message().await?;
    ctx.relay()?.expect_reported_error("OtherRequest").await?;
    Ok(())
}

async fn forward_unknown(ctx: &Ctx) -> CaseResult {
    let mut client = ActionTckModelClient::new(ctx.proxy()?.channel.clone());
    let status = client
        .process_unary(action_request(Action::ForwardUnknown))
        .await
        .err()
        .ok_or_else(|| Error::Check("the forward to an unknown service succeeded".into()))?;
    ensure_eq(
        &status.code(),
        &Code::Internal,
        "status (docs/protocol.md §3.4)",
    )?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    call.in_message().await?;
    let forward = call.out_message().await?;
    ensure_eq(
        &forward,
        &action_msg::forward(
            UNKNOWN_SERVICE,
            "Call",
            &action::OtherRequest {
                id: "nowhere".into(),
            },
            Effects::none(),
        ),
        "the user function's forward",
    )?;
    ctx.relay()?.expect_reported_error(UNKNOWN_SERVICE).await?;
    Ok(())
}
