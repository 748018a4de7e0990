//! Event sourced entities (EventSourcedEntityTCK): the model cases drive
//! `EventSourcedTckModel` directly; the proxy cases call it through the proxy and check what
//! crossed the protocol, including what the proxy replays after a restart.

use std::time::Duration;

use cloudstate_protocol::eventsourced::{
    EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_out,
};
use cloudstate_protocol::{Any, client_action};
use tonic::Code;

use super::value_entity::timeout_strategy;
use super::{Case, CaseResult, Ctx, Setup};
use crate::Error;
use crate::error::{CheckExt, ensure, ensure_eq};
use crate::frontend;
use crate::http;
use crate::messages::{Effects, any, event_sourced as msg};
use crate::proto::eventsourced::event_sourced_configured_client::EventSourcedConfiguredClient;
use crate::proto::eventsourced::event_sourced_tck_model_client::EventSourcedTckModelClient;
use crate::proto::eventsourced::request_action::Action;
use crate::proto::eventsourced::{
    Effect, Emit, Fail, Forward, Persisted, Request, RequestAction, Response,
};
use crate::proto::service::{EVENT_SOURCED, EVENT_SOURCED_CONFIGURED, EVENT_SOURCED_TWO};
use crate::relay::EventSourcedStream;

const SERVICES: &[&str] = &[EVENT_SOURCED, EVENT_SOURCED_TWO];
const CONFIGURED: &[&str] = &[EVENT_SOURCED_CONFIGURED];

fn emit(value: &str) -> RequestAction {
    action(Action::Emit(Emit {
        value: value.into(),
    }))
}

fn emits(values: &[&str]) -> Vec<RequestAction> {
    values.iter().map(|value| emit(value)).collect()
}

fn forward_to(id: &str) -> RequestAction {
    action(Action::Forward(Forward { id: id.into() }))
}

fn effect(id: &str, synchronous: bool) -> RequestAction {
    action(Action::Effect(Effect {
        id: id.into(),
        synchronous,
    }))
}

fn fail_with(message: &str) -> RequestAction {
    action(Action::Fail(Fail {
        message: message.into(),
    }))
}

fn action(action: Action) -> RequestAction {
    RequestAction {
        action: Some(action),
    }
}

fn request(id: &str, actions: Vec<RequestAction>) -> Request {
    Request {
        id: id.into(),
        actions,
    }
}

fn response(message: &str) -> Response {
    Response {
        message: message.into(),
    }
}

fn persisted(value: &str) -> Any {
    any(&Persisted {
        value: value.into(),
    })
}

fn events(values: &[&str]) -> Effects {
    Effects::none().events(values.iter().map(|value| persisted(value)))
}

fn snapshot_and_events(snapshot: &str, values: &[&str]) -> Effects {
    events(values).snapshot(persisted(snapshot))
}

/// Side effects to `EventSourcedTwo.Call` with `Request{id}` for each of `ids`.
fn effects(ids: &[&str], synchronous: bool) -> Effects {
    ids.iter().fold(Effects::none(), |effects, id| {
        effects.side_effect(EVENT_SOURCED_TWO, "Call", &request(id, vec![]), synchronous)
    })
}

fn process(command_id: i64, id: &str, actions: Vec<RequestAction>) -> EventSourcedStreamIn {
    msg::command(command_id, id, "Process", &request(id, actions))
}

fn reply(command_id: i64, message: &str, effects: Effects) -> EventSourcedStreamOut {
    msg::reply(command_id, &response(message), effects)
}

fn forwarded(command_id: i64, id: &str, effects: Effects) -> EventSourcedStreamOut {
    msg::forward(
        command_id,
        EVENT_SOURCED_TWO,
        "Call",
        &request(id, vec![]),
        effects,
    )
}

/// What a model case sends after `init` (an event to replay, a command), and the answer it
/// expects (to commands).
struct Step {
    send: EventSourcedStreamIn,
    expect: Option<EventSourcedStreamOut>,
}

/// One stream of a model case: `init` (with a snapshot if given), the steps, passivation.
async fn script(
    ctx: &Ctx,
    id: &str,
    snapshot: Option<(i64, &str)>,
    steps: Vec<Step>,
) -> CaseResult {
    let mut stream = frontend::event_sourced(ctx.service()?);
    let snapshot = snapshot.map(|(sequence, value)| (sequence, persisted(value)));
    stream.send(msg::init(EVENT_SOURCED, id, snapshot)).await?;
    for step in steps {
        stream.send(step.send).await?;
        if let Some(expected) = step.expect {
            stream.expect(expected).await?;
        }
    }
    stream.passivate().await
}

fn exchange(command: EventSourcedStreamIn, expected: EventSourcedStreamOut) -> Step {
    Step {
        send: command,
        expect: Some(expected),
    }
}

fn replayed(sequence: i64, value: &str) -> Step {
    Step {
        send: msg::event(sequence, persisted(value)),
        expect: None,
    }
}

type Script = fn(&str) -> (Option<(i64, &'static str)>, Vec<Step>);

pub(super) fn model_cases() -> Vec<Case> {
    let mut cases = vec![
        Case::model(
            "event sourced model: verify event sourced entity discovery",
            |ctx| Box::pin(discovery(ctx)),
        )
        .original("EventSourcedEntityTCK 1")
        .requires(SERVICES),
        Case::model(
            "event sourced model: verify event sourced configured entity",
            |ctx| Box::pin(configured(ctx)),
        )
        .original("EventSourcedEntityTCK 2")
        .requires(CONFIGURED),
    ];
    let scripts: Vec<(&str, Script)> = vec![
        ("initial empty state", |id| {
            (
                None,
                vec![exchange(
                    process(1, id, vec![]),
                    reply(1, "", Effects::none()),
                )],
            )
        }),
        ("single emitted event", |id| {
            (
                None,
                vec![
                    exchange(process(1, id, emits(&["A"])), reply(1, "A", events(&["A"]))),
                    exchange(process(2, id, vec![]), reply(2, "A", Effects::none())),
                ],
            )
        }),
        ("multiple emitted events", |id| {
            (
                None,
                vec![
                    exchange(
                        process(1, id, emits(&["A", "B", "C"])),
                        reply(1, "ABC", events(&["A", "B", "C"])),
                    ),
                    exchange(process(2, id, vec![]), reply(2, "ABC", Effects::none())),
                ],
            )
        }),
        ("multiple emitted events and snapshots", |id| {
            (
                None,
                vec![
                    exchange(process(1, id, emits(&["A"])), reply(1, "A", events(&["A"]))),
                    exchange(
                        process(2, id, emits(&["B"])),
                        reply(2, "AB", events(&["B"])),
                    ),
                    exchange(
                        process(3, id, emits(&["C"])),
                        reply(3, "ABC", events(&["C"])),
                    ),
                    exchange(
                        process(4, id, emits(&["D"])),
                        reply(4, "ABCD", events(&["D"])),
                    ),
                    exchange(
                        process(5, id, emits(&["E"])),
                        reply(5, "ABCDE", snapshot_and_events("ABCDE", &["E"])),
                    ),
                    exchange(
                        process(6, id, emits(&["F", "G", "H"])),
                        reply(6, "ABCDEFGH", events(&["F", "G", "H"])),
                    ),
                    exchange(
                        process(7, id, emits(&["I", "J"])),
                        reply(
                            7,
                            "ABCDEFGHIJ",
                            snapshot_and_events("ABCDEFGHIJ", &["I", "J"]),
                        ),
                    ),
                    exchange(
                        process(8, id, emits(&["K"])),
                        reply(8, "ABCDEFGHIJK", events(&["K"])),
                    ),
                    exchange(
                        process(9, id, vec![]),
                        reply(9, "ABCDEFGHIJK", Effects::none()),
                    ),
                ],
            )
        }),
        ("initial snapshot", |id| {
            (
                Some((5, "ABCDE")),
                vec![exchange(
                    process(1, id, vec![]),
                    reply(1, "ABCDE", Effects::none()),
                )],
            )
        }),
        ("initial snapshot and events", |id| {
            (
                Some((5, "ABCDE")),
                vec![
                    replayed(6, "F"),
                    replayed(7, "G"),
                    exchange(process(1, id, vec![]), reply(1, "ABCDEFG", Effects::none())),
                ],
            )
        }),
        ("rehydration after passivation", |id| {
            // The first stream runs in `first_life`; this is the second one.
            (
                Some((5, "ABCDE")),
                vec![
                    replayed(6, "F"),
                    replayed(7, "G"),
                    exchange(process(1, id, vec![]), reply(1, "ABCDEFG", Effects::none())),
                ],
            )
        }),
        ("forward to second service", |id| {
            (
                None,
                vec![
                    exchange(
                        process(1, id, emits(&["A", "B", "C"])),
                        reply(1, "ABC", events(&["A", "B", "C"])),
                    ),
                    exchange(
                        process(2, id, vec![forward_to(id)]),
                        forwarded(2, id, Effects::none()),
                    ),
                    exchange(process(3, id, vec![]), reply(3, "ABC", Effects::none())),
                ],
            )
        }),
        ("forward with emitted events", |id| {
            (
                None,
                vec![exchange(
                    process(1, id, vec![emit("A"), forward_to(id)]),
                    forwarded(1, id, events(&["A"])),
                )],
            )
        }),
        ("forward with emitted events and snapshot", |id| {
            (
                None,
                vec![
                    exchange(
                        process(1, id, emits(&["A", "B", "C"])),
                        reply(1, "ABC", events(&["A", "B", "C"])),
                    ),
                    exchange(
                        process(2, id, vec![emit("D"), emit("E"), forward_to(id)]),
                        forwarded(2, id, snapshot_and_events("ABCDE", &["D", "E"])),
                    ),
                ],
            )
        }),
        ("reply with side effect to second service", |id| {
            (
                None,
                vec![
                    exchange(
                        process(1, id, emits(&["A", "B", "C"])),
                        reply(1, "ABC", events(&["A", "B", "C"])),
                    ),
                    exchange(
                        process(2, id, vec![effect(id, false)]),
                        reply(2, "ABC", effects(&[id], false)),
                    ),
                    exchange(process(3, id, vec![]), reply(3, "ABC", Effects::none())),
                ],
            )
        }),
        ("synchronous side effect to second service", |id| {
            (
                None,
                vec![exchange(
                    process(1, id, vec![effect(id, true)]),
                    reply(1, "", effects(&[id], true)),
                )],
            )
        }),
        ("forward and side effect to second service", |id| {
            (
                None,
                vec![exchange(
                    process(1, id, vec![effect(id, false), forward_to(id)]),
                    forwarded(1, id, effects(&[id], false)),
                )],
            )
        }),
        ("reply with multiple side effects", |id| {
            (
                None,
                vec![exchange(
                    process(
                        1,
                        id,
                        vec![effect("1", false), effect("2", false), effect("3", false)],
                    ),
                    reply(1, "", effects(&["1", "2", "3"], false)),
                )],
            )
        }),
        (
            "reply with multiple side effects, events, and snapshot",
            |id| {
                let mut actions = emits(&["A", "B", "C", "D", "E"]);
                actions.extend([effect("1", false), effect("2", false), effect("3", false)]);
                let expected = snapshot_and_events("ABCDE", &["A", "B", "C", "D", "E"])
                    .and(effects(&["1", "2", "3"], false));
                (
                    None,
                    vec![exchange(
                        process(1, id, actions),
                        reply(1, "ABCDE", expected),
                    )],
                )
            },
        ),
        ("failure action", |id| {
            (
                None,
                vec![exchange(
                    process(1, id, vec![fail_with("expected failure")]),
                    msg::failure(1, "expected failure", false),
                )],
            )
        }),
        ("connection after failure action", |id| {
            (
                None,
                vec![
                    exchange(
                        process(1, id, vec![emit("A")]),
                        reply(1, "A", events(&["A"])),
                    ),
                    exchange(
                        process(2, id, vec![fail_with("expected failure")]),
                        msg::failure(2, "expected failure", false),
                    ),
                    exchange(process(3, id, vec![]), reply(3, "A", Effects::none())),
                ],
            )
        }),
    ];
    for (number, (name, script_of)) in (3..).zip(scripts) {
        let rehydration = name == "rehydration after passivation";
        cases.push(
            Case::model(format!("event sourced model: verify {name}"), move |ctx| {
                Box::pin(async move {
                    let id = ctx.entity_id("entity");
                    if rehydration {
                        first_life(ctx, &id).await?;
                    }
                    let (snapshot, steps) = script_of(&id);
                    script(ctx, &id, snapshot, steps).await
                })
            })
            .original(format!("EventSourcedEntityTCK {number}"))
            .requires(SERVICES),
        );
    }
    cases.push(
        Case::model(
            "event sourced model: verify failure actions do not retain emitted events (may request entity restart)",
            |ctx| Box::pin(failure_discards_events(ctx)),
        )
        .original("EventSourcedEntityTCK 20")
        .requires(SERVICES),
    );
    cases.push(
        Case::model(
            "event sourced model: verify failure actions do not allow side effects",
            |ctx| {
                Box::pin(async move {
                    let id = ctx.entity_id("entity");
                    let steps = vec![exchange(
                        process(
                            1,
                            &id,
                            vec![effect(&id, false), fail_with("expected failure")],
                        ),
                        msg::failure(1, "expected failure", false),
                    )];
                    script(ctx, &id, None, steps).await
                })
            },
        )
        .original("EventSourcedEntityTCK 21")
        .requires(SERVICES),
    );
    cases
}

/// The first stream of the rehydration case: A, B, C, then D, E (with the snapshot), F, G.
async fn first_life(ctx: &Ctx, id: &str) -> CaseResult {
    let steps = vec![
        exchange(
            process(1, id, emits(&["A", "B", "C"])),
            reply(1, "ABC", events(&["A", "B", "C"])),
        ),
        exchange(
            process(2, id, emits(&["D", "E"])),
            reply(2, "ABCDE", snapshot_and_events("ABCDE", &["D", "E"])),
        ),
        exchange(
            process(3, id, emits(&["F"])),
            reply(3, "ABCDEF", events(&["F"])),
        ),
        exchange(
            process(4, id, emits(&["G"])),
            reply(4, "ABCDEFG", events(&["G"])),
        ),
    ];
    script(ctx, id, None, steps).await
}

/// The failure in `reply`, if it is one.
fn failure_of(reply: &EventSourcedStreamOut) -> Option<&cloudstate_protocol::Failure> {
    match &reply.message {
        Some(event_sourced_stream_out::Message::Reply(reply)) => {
            match reply.client_action.as_ref()?.action.as_ref()? {
                client_action::Action::Failure(failure) => Some(failure),
                _ => None,
            }
        }
        _ => None,
    }
}

async fn failure_discards_events(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let mut stream = frontend::event_sourced(ctx.service()?);
    stream.send(msg::init(EVENT_SOURCED, &id, None)).await?;
    stream
        .send(process(1, &id, emits(&["A", "B", "C"])))
        .await?;
    stream
        .expect(reply(1, "ABC", events(&["A", "B", "C"])))
        .await?;
    stream
        .send(process(
            2,
            &id,
            vec![emit("4"), emit("5"), fail_with("failure 1")],
        ))
        .await?;
    let answer = stream.next().await?;
    let failure = failure_of(&answer)
        .ok_or_else(|| Error::Check(format!("expected a failure, got {answer:?}")))?;
    ensure_eq(&failure.command_id, &2, "failure's command id")?;
    ensure_eq(
        &failure.description.as_str(),
        &"failure 1",
        "failure's description",
    )?;
    if failure.restart {
        // The library asked for a restart: the proxy would replay A, B, C on a new stream.
        stream.passivate().await?;
        let replay = |more: &[(i64, &str)]| {
            let mut steps = vec![replayed(1, "A"), replayed(2, "B"), replayed(3, "C")];
            steps.extend(
                more.iter()
                    .map(|(sequence, value)| replayed(*sequence, value)),
            );
            steps
        };
        let mut steps = replay(&[]);
        steps.push(exchange(
            process(1, &id, emits(&["D"])),
            reply(1, "ABCD", events(&["D"])),
        ));
        steps.push(exchange(
            process(2, &id, vec![emit("6"), fail_with("failure 2"), emit("7")]),
            msg::failure(2, "failure 2", true),
        ));
        script(ctx, &id, None, steps).await?;
        let mut steps = replay(&[(4, "D")]);
        steps.push(exchange(
            process(1, &id, emits(&["E"])),
            reply(1, "ABCDE", snapshot_and_events("ABCDE", &["E"])),
        ));
        script(ctx, &id, None, steps).await
    } else {
        stream.send(process(3, &id, emits(&["D"]))).await?;
        stream.expect(reply(3, "ABCD", events(&["D"]))).await?;
        stream
            .send(process(
                4,
                &id,
                vec![emit("6"), fail_with("failure 2"), emit("7")],
            ))
            .await?;
        stream.expect(msg::failure(4, "failure 2", false)).await?;
        stream.send(process(5, &id, emits(&["E"]))).await?;
        stream
            .expect(reply(5, "ABCDE", snapshot_and_events("ABCDE", &["E"])))
            .await?;
        stream.passivate().await
    }
}

async fn discovery(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, SERVICES)?;
    for service in SERVICES {
        ensure_eq(
            &ctx.entity(service)?.entity_type.as_str(),
            &cloudstate_protocol::entity_type::EVENT_SOURCED,
            &format!("entity type of {service}"),
        )?;
    }
    ensure_eq(
        &ctx.entity(EVENT_SOURCED)?.persistence_id.as_str(),
        &"event-sourced-tck-model",
        "persistence id",
    )
}

async fn configured(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, CONFIGURED)?;
    let entity = ctx.entity(EVENT_SOURCED_CONFIGURED)?;
    ensure_eq(
        &entity.entity_type.as_str(),
        &cloudstate_protocol::entity_type::EVENT_SOURCED,
        "entity type",
    )?;
    ensure_eq(
        &entity.persistence_id.as_str(),
        &"event-sourced-configured",
        "persistence id",
    )?;
    ensure_eq(
        &entity.passivation_strategy,
        &Some(timeout_strategy(100)),
        "passivation strategy",
    )
}

/// The cases of `verifyEventSourcedEntityProxy`, and ours.
pub(super) fn proxy_cases() -> Vec<Case> {
    vec![
        Case::proxy("event sourced proxy: verify state changes", |ctx| {
            Box::pin(state_changes(ctx))
        })
        .original("EventSourcedEntityTCK 22")
        .requires(SERVICES),
        Case::proxy("event sourced proxy: verify forwards and side effects", |ctx| {
            Box::pin(forwards_and_side_effects(ctx))
        })
        .original("EventSourcedEntityTCK 23")
        .requires(SERVICES),
        Case::proxy("event sourced proxy: verify failures", |ctx| Box::pin(failures(ctx)))
            .original("EventSourcedEntityTCK 24")
            .requires(SERVICES),
        Case::proxy("event sourced proxy: verify HTTP API", |ctx| Box::pin(http_api(ctx)))
            .original("EventSourcedEntityTCK 25")
            .requires(SERVICES),
        Case::proxy("event sourced proxy: verify passivation timeout", |ctx| {
            Box::pin(passivation(ctx))
        })
        .original("EventSourcedEntityTCK 26")
        .requires(CONFIGURED),
        Case::proxy(
            "event sourced proxy: commands to one entity are sent one at a time, in order",
            |ctx| Box::pin(one_at_a_time(ctx)),
        )
        .requires(SERVICES),
        Case::proxy(
            "event sourced proxy: a synchronous side effect completes before the reply",
            |ctx| Box::pin(synchronous_side_effect_first(ctx)),
        )
        .requires(SERVICES),
        Case::proxy(
            "event sourced proxy: after a restart the proxy replays the snapshot and the later events",
            |ctx| Box::pin(replay_after_restart(ctx)),
        )
        .setup(Setup::ProxyRestart)
        .requires(SERVICES),
    ]
}

fn client(ctx: &Ctx) -> Result<EventSourcedTckModelClient<tonic::transport::Channel>, Error> {
    Ok(EventSourcedTckModelClient::new(
        ctx.proxy()?.channel.clone(),
    ))
}

/// Calls `Process` through the proxy and expects `expected` back.
async fn call(ctx: &Ctx, request: Request, expected: &str) -> CaseResult {
    let reply = client(ctx)?.process(request).await.check("Process")?;
    ensure_eq(reply.get_ref(), &response(expected), "reply")
}

/// Calls `Process` through the proxy and expects a failure with `description`.
async fn call_failing(ctx: &Ctx, request: Request, description: &str) -> CaseResult {
    match client(ctx)?.process(request).await {
        Ok(reply) => Err(Error::Check(format!(
            "expected a failure, got {:?}",
            reply.get_ref()
        ))),
        Err(status) => {
            ensure_eq(&status.code(), &Code::Unknown, "failure status")?;
            ensure_eq(&status.message(), &description, "failure description")
        }
    }
}

/// Expects a new stream of `service` for `id`: `init` (no snapshot), then `command`, answered
/// by `expected`.
async fn expect_new_stream(
    ctx: &Ctx,
    service: &str,
    id: &str,
    command: EventSourcedStreamIn,
    expected: EventSourcedStreamOut,
) -> Result<std::sync::Arc<EventSourcedStream>, Error> {
    let stream = ctx.relay()?.expect_event_sourced().await?;
    stream.expect_in(msg::init(service, id, None)).await?;
    stream.expect_in(command).await?;
    stream.expect_out(expected).await?;
    Ok(stream)
}

async fn state_changes(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, vec![]), "").await?;
    let stream = expect_new_stream(
        ctx,
        EVENT_SOURCED,
        &id,
        process(1, &id, vec![]),
        reply(1, "", Effects::none()),
    )
    .await?;
    let steps: [(&[&str], &str, Effects); 5] = [
        (&["A"], "A", events(&["A"])),
        (&["B", "C", "D"], "ABCD", events(&["B", "C", "D"])),
        (&["E"], "ABCDE", snapshot_and_events("ABCDE", &["E"])),
        (
            &["F", "G", "H", "I"],
            "ABCDEFGHI",
            events(&["F", "G", "H", "I"]),
        ),
        (
            &["J", "K"],
            "ABCDEFGHIJK",
            snapshot_and_events("ABCDEFGHIJK", &["J", "K"]),
        ),
    ];
    for ((values, state, effects), n) in steps.into_iter().zip(2..) {
        call(ctx, request(&id, emits(values)), state).await?;
        stream.expect_in(process(n, &id, emits(values))).await?;
        stream.expect_out(reply(n, state, effects)).await?;
    }
    Ok(())
}

async fn forwards_and_side_effects(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, emits(&["one"])), "one").await?;
    let stream = expect_new_stream(
        ctx,
        EVENT_SOURCED,
        &id,
        process(1, &id, emits(&["one"])),
        reply(1, "one", events(&["one"])),
    )
    .await?;

    call(ctx, request(&id, vec![forward_to(&id)]), "").await?;
    stream
        .expect_in(process(2, &id, vec![forward_to(&id)]))
        .await?;
    stream
        .expect_out(forwarded(2, &id, Effects::none()))
        .await?;
    let two = expect_new_stream(
        ctx,
        EVENT_SOURCED_TWO,
        &id,
        msg::command(1, &id, "Call", &request(&id, vec![])),
        reply(1, "", Effects::none()),
    )
    .await?;

    call(ctx, request(&id, vec![effect(&id, false)]), "one").await?;
    stream
        .expect_in(process(3, &id, vec![effect(&id, false)]))
        .await?;
    stream
        .expect_out(reply(3, "one", effects(&[&id], false)))
        .await?;
    two.expect_in(msg::command(2, &id, "Call", &request(&id, vec![])))
        .await?;
    two.expect_out(reply(2, "", Effects::none())).await?;

    call(ctx, request(&id, vec![]), "one").await?;
    stream.expect_in(process(4, &id, vec![])).await?;
    stream.expect_out(reply(4, "one", Effects::none())).await?;
    Ok(())
}

/// The answer to a command that emitted and then failed: a failure of command `command_id`
/// with `description`; whether the user function asked for a restart.
async fn emitted_then_failed(
    stream: &EventSourcedStream,
    command_id: i64,
    description: &str,
) -> Result<bool, Error> {
    let answer = stream.out_message().await?;
    let failure = failure_of(&answer)
        .ok_or_else(|| Error::Check(format!("expected a failure, got {answer:?}")))?;
    ensure_eq(&failure.command_id, &command_id, "failure's command id")?;
    ensure_eq(
        &failure.description.as_str(),
        &description,
        "failure's description",
    )?;
    Ok(failure.restart)
}

async fn failures(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, emits(&["1", "2", "3"])), "123").await?;
    let stream = expect_new_stream(
        ctx,
        EVENT_SOURCED,
        &id,
        process(1, &id, emits(&["1", "2", "3"])),
        reply(1, "123", events(&["1", "2", "3"])),
    )
    .await?;

    let failing = vec![fail_with("expected failure")];
    call_failing(ctx, request(&id, failing.clone()), "expected failure").await?;
    stream.expect_in(process(2, &id, failing)).await?;
    stream
        .expect_out(msg::failure(2, "expected failure", false))
        .await?;

    call(ctx, request(&id, vec![]), "123").await?;
    stream.expect_in(process(3, &id, vec![])).await?;
    stream.expect_out(reply(3, "123", Effects::none())).await?;

    let emit_and_fail = vec![emit("4"), fail_with("another failure"), emit("5")];
    call_failing(ctx, request(&id, emit_and_fail.clone()), "another failure").await?;
    stream.expect_in(process(4, &id, emit_and_fail)).await?;
    let restart = emitted_then_failed(&stream, 4, "another failure").await?;
    let expected = reply(1, "12345", snapshot_and_events("12345", &["4", "5"]));
    call(ctx, request(&id, emits(&["4", "5"])), "12345").await?;
    if restart {
        stream.expect_closed(Duration::from_secs(3)).await?;
        let stream = ctx.relay()?.expect_event_sourced().await?;
        stream
            .expect_in(msg::init(EVENT_SOURCED, &id, None))
            .await?;
        for (sequence, value) in [(1, "1"), (2, "2"), (3, "3")] {
            stream
                .expect_in(msg::event(sequence, persisted(value)))
                .await?;
        }
        stream
            .expect_in(process(1, &id, emits(&["4", "5"])))
            .await?;
        stream.expect_out(expected).await?;
    } else {
        stream
            .expect_in(process(5, &id, emits(&["4", "5"])))
            .await?;
        stream
            .expect_out(reply(5, "12345", snapshot_and_events("12345", &["4", "5"])))
            .await?;
    }
    Ok(())
}

async fn http_api(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let address = ctx.proxy()?.address;
    let path = format!("/tck/model/eventsourced/{id}");
    let expect_ok = |reply: http::HttpReply, body: &str| {
        ensure_eq(&reply.status, &200, "HTTP status")?;
        ensure_eq(&reply.body.as_str(), &body, "body")
    };
    expect_ok(
        http::post_json(address, &path, "{}").await?,
        r#"{"message":""}"#,
    )?;
    let stream = expect_new_stream(
        ctx,
        EVENT_SOURCED,
        &id,
        process(1, &id, vec![]),
        reply(1, "", Effects::none()),
    )
    .await?;

    let two_path = format!("/{EVENT_SOURCED_TWO}/Call");
    expect_ok(
        http::post_json(address, &two_path, &format!(r#"{{"id": "{id}"}}"#)).await?,
        r#"{"message":""}"#,
    )?;
    expect_new_stream(
        ctx,
        EVENT_SOURCED_TWO,
        &id,
        msg::command(1, &id, "Call", &request(&id, vec![])),
        reply(1, "", Effects::none()),
    )
    .await?;

    let body = r#"{"actions": [{"emit": {"value": "x"}}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"message":"x"}"#,
    )?;
    stream.expect_in(process(2, &id, emits(&["x"]))).await?;
    stream.expect_out(reply(2, "x", events(&["x"]))).await?;

    let body = r#"{"actions": [{"fail": {"message": "expected failure"}}]}"#;
    super::action::expect_http_failure(
        &http::post_json(address, &path, body).await?,
        "expected failure",
    )?;
    stream
        .expect_in(process(3, &id, vec![fail_with("expected failure")]))
        .await?;
    stream
        .expect_out(msg::failure(3, "expected failure", false))
        .await?;

    let body = r#"{"actions": [{"emit": {"value": "y"}}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"message":"xy"}"#,
    )?;
    stream.expect_in(process(4, &id, emits(&["y"]))).await?;
    stream.expect_out(reply(4, "xy", events(&["y"]))).await?;

    let body =
        r#"{"actions": [{"emit": {"value": "z"}}, {"fail": {"message": "emit then fail"}}]}"#;
    super::action::expect_http_failure(
        &http::post_json(address, &path, body).await?,
        "emit then fail",
    )?;
    stream
        .expect_in(process(
            5,
            &id,
            vec![emit("z"), fail_with("emit then fail")],
        ))
        .await?;
    let restart = emitted_then_failed(&stream, 5, "emit then fail").await?;

    let body = r#"{"actions": [{"emit": {"value": "z"}}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"message":"xyz"}"#,
    )?;
    if restart {
        stream.expect_closed(Duration::from_secs(3)).await?;
        let stream = ctx.relay()?.expect_event_sourced().await?;
        stream
            .expect_in(msg::init(EVENT_SOURCED, &id, None))
            .await?;
        stream.expect_in(msg::event(1, persisted("x"))).await?;
        stream.expect_in(msg::event(2, persisted("y"))).await?;
        stream.expect_in(process(1, &id, emits(&["z"]))).await?;
        stream.expect_out(reply(1, "xyz", events(&["z"]))).await?;
    } else {
        stream.expect_in(process(6, &id, emits(&["z"]))).await?;
        stream.expect_out(reply(6, "xyz", events(&["z"]))).await?;
    }
    Ok(())
}

async fn passivation(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let mut client = EventSourcedConfiguredClient::new(ctx.proxy()?.channel.clone());
    client.call(request(&id, vec![])).await.check("Call")?;
    let stream = expect_new_stream(
        ctx,
        EVENT_SOURCED_CONFIGURED,
        &id,
        msg::command(1, &id, "Call", &request(&id, vec![])),
        reply(1, "", Effects::none()),
    )
    .await?;
    // Passivation after 100 ms of idleness: the proxy closes the stream.
    stream.expect_closed(Duration::from_secs(2)).await
}

async fn one_at_a_time(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let values = ["a", "b", "c", "d", "e", "f"];
    let calls = values.iter().map(|value| {
        let client = client(ctx);
        let request = request(&id, emits(&[value]));
        async move {
            let mut client = client?;
            client.process(request).await.check("Process").map(|_| ())
        }
    });
    for result in futures_util::future::join_all(calls).await {
        result?;
    }
    let stream = ctx.relay()?.expect_event_sourced().await?;
    stream
        .expect_in(msg::init(EVENT_SOURCED, &id, None))
        .await?;
    // Whatever order the proxy took them in, each command comes after the previous reply,
    // and the ids count from 1.
    let mut previous_reply = None;
    for n in 1..=values.len() as i64 {
        let command = stream.next_in().await?;
        if let Some(replied_at) = previous_reply {
            ensure(command.at >= replied_at, || {
                format!("command {n} was sent before the reply to command {}", n - 1)
            })?;
        }
        let crate::relay::Event::Message(command) = command.event else {
            return Err(Error::Check(format!(
                "expected command {n}, saw {:?}",
                command.event
            )));
        };
        let Some(cloudstate_protocol::eventsourced::event_sourced_stream_in::Message::Command(
            command,
        )) = command.message
        else {
            return Err(Error::Check(format!(
                "expected command {n}, saw {command:?}"
            )));
        };
        ensure_eq(&command.id, &n, "command id")?;
        let answer = stream.next_out().await?;
        previous_reply = Some(answer.at);
    }
    Ok(())
}

async fn synchronous_side_effect_first(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, vec![effect(&id, true)]), "").await?;
    let answered = std::time::Instant::now();
    expect_new_stream(
        ctx,
        EVENT_SOURCED,
        &id,
        process(1, &id, vec![effect(&id, true)]),
        reply(1, "", effects(&[&id], true)),
    )
    .await?;
    let two = ctx.relay()?.expect_event_sourced().await?;
    two.expect_in(msg::init(EVENT_SOURCED_TWO, &id, None))
        .await?;
    two.expect_in(msg::command(1, &id, "Call", &request(&id, vec![])))
        .await?;
    let done = two.next_out().await?;
    ensure(done.at <= answered, || {
        "the client got its reply before the synchronous side effect was answered".into()
    })
}

async fn replay_after_restart(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, emits(&["A", "B", "C"])), "ABC").await?;
    call_failing(
        ctx,
        request(&id, vec![emit("x"), fail_with("not kept")]),
        "not kept",
    )
    .await?;
    call(ctx, request(&id, emits(&["D", "E"])), "ABCDE").await?;
    call(ctx, request(&id, emits(&["F", "G"])), "ABCDEFG").await?;
    let stream = ctx.relay()?.expect_event_sourced().await?;

    ctx.restart_proxy().await?;
    stream
        .expect_in(msg::init(EVENT_SOURCED, &id, None))
        .await?;
    for _ in 0..4 {
        stream.in_message().await?;
        stream.out_message().await?;
    }
    stream.expect_closed(Duration::from_secs(10)).await?;

    call(ctx, request(&id, vec![]), "ABCDEFG").await?;
    let stream = ctx.relay()?.expect_event_sourced().await?;
    stream
        .expect_in(msg::init(EVENT_SOURCED, &id, Some((5, persisted("ABCDE")))))
        .await?;
    stream.expect_in(msg::event(6, persisted("F"))).await?;
    stream.expect_in(msg::event(7, persisted("G"))).await?;
    stream.expect_in(process(1, &id, vec![])).await?;
    stream
        .expect_out(reply(1, "ABCDEFG", Effects::none()))
        .await?;
    Ok(())
}
