//! Value entities (EntityTCK): the model cases drive `ValueEntityTckModel` directly; the proxy
//! cases call it through the proxy and check what crossed the protocol.

use std::time::Duration;

use cloudstate_protocol::valueentity::{ValueEntityStreamIn, ValueEntityStreamOut};
use cloudstate_protocol::{Any, EntityPassivationStrategy, TimeoutPassivationStrategy};
use tonic::Code;
use tonic::metadata::MetadataValue;

use super::{Case, CaseResult, Ctx, Setup};
use crate::Error;
use crate::error::{CheckExt, ensure, ensure_eq};
use crate::frontend;
use crate::http;
use crate::messages::{Effects, any, value_entity as msg};
use crate::proto::service::{VALUE_ENTITY, VALUE_ENTITY_CONFIGURED, VALUE_ENTITY_TWO};
use crate::proto::valueentity::request_action::Action;
use crate::proto::valueentity::value_entity_configured_client::ValueEntityConfiguredClient;
use crate::proto::valueentity::value_entity_tck_model_client::ValueEntityTckModelClient;
use crate::proto::valueentity::{
    Delete, Effect, Fail, Forward, Persisted, Request, RequestAction, Response, Update,
};

const SERVICES: &[&str] = &[VALUE_ENTITY, VALUE_ENTITY_TWO];
const CONFIGURED: &[&str] = &[VALUE_ENTITY_CONFIGURED];

fn update(value: &str) -> RequestAction {
    action(Action::Update(Update {
        value: value.into(),
    }))
}

fn updates(values: &[&str]) -> Vec<RequestAction> {
    values.iter().map(|value| update(value)).collect()
}

fn delete() -> RequestAction {
    action(Action::Delete(Delete {}))
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

fn updated(value: &str) -> Effects {
    Effects::none().update(persisted(value))
}

/// Side effects to `ValueEntityTwo.Call` with `Request{id}` for each of `ids`.
fn effects(ids: &[&str], synchronous: bool) -> Effects {
    ids.iter().fold(Effects::none(), |effects, id| {
        effects.side_effect(VALUE_ENTITY_TWO, "Call", &request(id, vec![]), synchronous)
    })
}

fn process(command_id: i64, id: &str, actions: Vec<RequestAction>) -> ValueEntityStreamIn {
    msg::command(command_id, id, "Process", &request(id, actions))
}

fn reply(command_id: i64, message: &str, effects: Effects) -> ValueEntityStreamOut {
    msg::reply(command_id, &response(message), effects)
}

/// One model case: a stream with `init` of a fresh entity (with `state`), then each command and
/// the answer it must get, then passivation.
async fn script(
    ctx: &Ctx,
    id: &str,
    state: Option<Any>,
    exchanges: Vec<(ValueEntityStreamIn, ValueEntityStreamOut)>,
) -> CaseResult {
    let mut stream = frontend::value_entity(ctx.service()?);
    stream.send(msg::init(VALUE_ENTITY, id, state)).await?;
    for (command, expected) in exchanges {
        stream.send(command).await?;
        stream.expect(expected).await?;
    }
    stream.passivate().await
}

/// The model cases of `verifyEntityModel`, in order, from their number.
type Script = fn(
    &str,
) -> (
    Option<Any>,
    Vec<(ValueEntityStreamIn, ValueEntityStreamOut)>,
);

pub(super) fn model_cases() -> Vec<Case> {
    let mut cases = vec![
        Case::model("value entity model: verify entity discovery", |ctx| {
            Box::pin(discovery(ctx))
        })
        .original("EntityTCK 1")
        .requires(SERVICES),
        Case::model("value entity model: verify configured entity", |ctx| {
            Box::pin(configured(ctx))
        })
        .original("EntityTCK 2")
        .requires(CONFIGURED),
    ];
    let scripts: Vec<(&str, Script)> = vec![
        ("initial empty state", |id| {
            (
                None,
                vec![(process(1, id, vec![]), reply(1, "", Effects::none()))],
            )
        }),
        ("update state", |id| {
            (
                None,
                vec![
                    (process(1, id, updates(&["A"])), reply(1, "A", updated("A"))),
                    (process(2, id, vec![]), reply(2, "A", Effects::none())),
                ],
            )
        }),
        ("delete state", |id| {
            (
                None,
                vec![
                    (process(1, id, updates(&["A"])), reply(1, "A", updated("A"))),
                    (
                        process(2, id, vec![delete()]),
                        reply(2, "", Effects::none().delete()),
                    ),
                    (process(3, id, vec![]), reply(3, "", Effects::none())),
                ],
            )
        }),
        ("sub invocations with multiple update states", |id| {
            (
                None,
                vec![
                    (
                        process(1, id, updates(&["A", "B", "C"])),
                        reply(1, "C", updated("C")),
                    ),
                    (process(2, id, vec![]), reply(2, "C", Effects::none())),
                ],
            )
        }),
        (
            "sub invocations with multiple update states and delete states",
            |id| {
                let mut actions = updates(&["A", "B"]);
                actions.push(delete());
                (
                    None,
                    vec![
                        (
                            process(1, id, actions),
                            reply(1, "", Effects::none().delete()),
                        ),
                        (process(2, id, vec![]), reply(2, "", Effects::none())),
                    ],
                )
            },
        ),
        (
            "sub invocations with update, delete and update states",
            |id| {
                (
                    None,
                    vec![
                        (
                            process(1, id, vec![update("A"), delete(), update("B")]),
                            reply(1, "B", updated("B")),
                        ),
                        (process(2, id, vec![]), reply(2, "B", Effects::none())),
                    ],
                )
            },
        ),
        ("rehydration after passivation", |id| {
            // The first stream (A to D) runs in `rehydration`; this is the second one.
            (
                Some(persisted("D")),
                vec![
                    (process(1, id, updates(&["E"])), reply(1, "E", updated("E"))),
                    (process(2, id, vec![]), reply(2, "E", Effects::none())),
                ],
            )
        }),
        ("reply with multiple side effects", |id| {
            let actions = vec![effect("1", false), effect("2", false), effect("3", false)];
            (
                None,
                vec![(
                    process(1, id, actions),
                    reply(1, "", effects(&["1", "2", "3"], false)),
                )],
            )
        }),
        ("reply with side effect to second service", |id| {
            (
                None,
                vec![
                    (process(1, id, updates(&["X"])), reply(1, "X", updated("X"))),
                    (
                        process(2, id, vec![effect(id, false)]),
                        reply(2, "X", effects(&[id], false)),
                    ),
                    (process(3, id, vec![]), reply(3, "X", Effects::none())),
                ],
            )
        }),
        ("reply with multiple side effects and state", |id| {
            let mut actions = updates(&["A", "B", "C", "D", "E"]);
            actions.extend([effect("1", false), effect("2", false), effect("3", false)]);
            let expected = effects(&["1", "2", "3"], false).update(persisted("E"));
            (
                None,
                vec![(process(1, id, actions), reply(1, "E", expected))],
            )
        }),
        ("synchronous side effect to second service", |id| {
            (
                None,
                vec![(
                    process(1, id, vec![effect(id, true)]),
                    reply(1, "", effects(&[id], true)),
                )],
            )
        }),
        ("forward to second service", |id| {
            (
                None,
                vec![
                    (process(1, id, updates(&["X"])), reply(1, "X", updated("X"))),
                    (
                        process(2, id, vec![forward_to(id)]),
                        msg::forward(
                            2,
                            VALUE_ENTITY_TWO,
                            "Call",
                            &request(id, vec![]),
                            Effects::none(),
                        ),
                    ),
                    (process(3, id, vec![]), reply(3, "X", Effects::none())),
                ],
            )
        }),
        ("forward with updated state to second service", |id| {
            (
                None,
                vec![(
                    process(1, id, vec![update("A"), forward_to(id)]),
                    msg::forward(
                        1,
                        VALUE_ENTITY_TWO,
                        "Call",
                        &request(id, vec![]),
                        updated("A"),
                    ),
                )],
            )
        }),
        ("forward and side effect to second service", |id| {
            (
                None,
                vec![(
                    process(1, id, vec![effect(id, false), forward_to(id)]),
                    msg::forward(
                        1,
                        VALUE_ENTITY_TWO,
                        "Call",
                        &request(id, vec![]),
                        effects(&[id], false),
                    ),
                )],
            )
        }),
        ("failure action", |id| {
            (
                None,
                vec![(
                    process(1, id, vec![fail_with("expected failure")]),
                    msg::failure(1, "expected failure"),
                )],
            )
        }),
        ("connection after failure action", |id| {
            (
                None,
                vec![
                    (
                        process(1, id, vec![update("A")]),
                        reply(1, "A", updated("A")),
                    ),
                    (
                        process(2, id, vec![fail_with("expected failure")]),
                        msg::failure(2, "expected failure"),
                    ),
                    (process(3, id, vec![]), reply(3, "A", Effects::none())),
                ],
            )
        }),
        ("failure action do not allow side effects", |id| {
            (
                None,
                vec![(
                    process(
                        1,
                        id,
                        vec![effect(id, false), fail_with("expected failure")],
                    ),
                    msg::failure(1, "expected failure"),
                )],
            )
        }),
    ];
    for (number, (name, script_of)) in (3..).zip(scripts) {
        let rehydration = name == "rehydration after passivation";
        cases.push(
            Case::model(format!("value entity model: verify {name}"), move |ctx| {
                Box::pin(async move {
                    let id = ctx.entity_id("entity");
                    if rehydration {
                        first_life(ctx, &id).await?;
                    }
                    let (state, exchanges) = script_of(&id);
                    script(ctx, &id, state, exchanges).await
                })
            })
            .original(format!("EntityTCK {number}"))
            .requires(SERVICES),
        );
    }
    cases
}

/// The first stream of the rehydration case: A, B, C, D.
async fn first_life(ctx: &Ctx, id: &str) -> CaseResult {
    let exchanges = ["A", "B", "C", "D"]
        .into_iter()
        .zip(1..)
        .map(|(value, n)| {
            (
                process(n, id, updates(&[value])),
                reply(n, value, updated(value)),
            )
        })
        .collect();
    script(ctx, id, None, exchanges).await
}

async fn discovery(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, SERVICES)?;
    let pids = [
        (VALUE_ENTITY, "value-entity-tck-model"),
        (VALUE_ENTITY_TWO, "value-entity-tck-model-two"),
    ];
    for (service, pid) in pids {
        let entity = ctx.entity(service)?;
        ensure_eq(
            &entity.entity_type.as_str(),
            &cloudstate_protocol::entity_type::VALUE_ENTITY,
            &format!("entity type of {service}"),
        )?;
        ensure_eq(
            &entity.persistence_id.as_str(),
            &pid,
            &format!("persistence id of {service}"),
        )?;
    }
    Ok(())
}

async fn configured(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, CONFIGURED)?;
    let entity = ctx.entity(VALUE_ENTITY_CONFIGURED)?;
    ensure_eq(
        &entity.entity_type.as_str(),
        &cloudstate_protocol::entity_type::VALUE_ENTITY,
        "entity type",
    )?;
    ensure_eq(
        &entity.persistence_id.as_str(),
        &"value-entity-configured",
        "persistence id",
    )?;
    ensure_eq(
        &entity.passivation_strategy,
        &Some(timeout_strategy(100)),
        "passivation strategy",
    )
}

/// A timeout passivation strategy of `millis`.
pub(super) fn timeout_strategy(millis: i64) -> EntityPassivationStrategy {
    EntityPassivationStrategy {
        strategy: Some(
            cloudstate_protocol::entity_passivation_strategy::Strategy::Timeout(
                TimeoutPassivationStrategy { timeout: millis },
            ),
        ),
    }
}

/// The cases of `verifyEntityProxy`, and ours.
pub(super) fn proxy_cases() -> Vec<Case> {
    vec![
        Case::proxy("value entity proxy: verify state changes", |ctx| {
            Box::pin(state_changes(ctx))
        })
        .original("EntityTCK 20")
        .requires(SERVICES),
        Case::proxy(
            "value entity proxy: verify forwards and side effects",
            |ctx| Box::pin(forwards_and_side_effects(ctx)),
        )
        .original("EntityTCK 21")
        .requires(SERVICES),
        Case::proxy("value entity proxy: verify failures", |ctx| {
            Box::pin(failures(ctx))
        })
        .original("EntityTCK 22")
        .requires(SERVICES),
        Case::proxy("value entity proxy: verify HTTP API", |ctx| {
            Box::pin(http_api(ctx))
        })
        .original("EntityTCK 23")
        .requires(SERVICES),
        Case::proxy("value entity proxy: verify passivation timeout", |ctx| {
            Box::pin(passivation(ctx))
        })
        .original("EntityTCK 24")
        .requires(CONFIGURED),
        Case::proxy(
            "value entity proxy: commands carry no metadata, whatever the request's headers",
            |ctx| Box::pin(no_metadata(ctx)),
        )
        .requires(SERVICES),
        Case::proxy(
            "value entity proxy: a request without entity key is refused before the user function",
            |ctx| Box::pin(no_entity_key(ctx)),
        )
        .requires(SERVICES),
        Case::proxy(
            "value entity proxy: the state survives a restart of the proxy",
            |ctx| Box::pin(survives_restart(ctx)),
        )
        .setup(Setup::ProxyRestart)
        .requires(SERVICES),
    ]
}

fn client(ctx: &Ctx) -> Result<ValueEntityTckModelClient<tonic::transport::Channel>, Error> {
    Ok(ValueEntityTckModelClient::new(ctx.proxy()?.channel.clone()))
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

async fn state_changes(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, vec![]), "").await?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream.expect_in(msg::init(VALUE_ENTITY, &id, None)).await?;
    stream.expect_in(process(1, &id, vec![])).await?;
    stream.expect_out(reply(1, "", Effects::none())).await?;
    let steps: [(Vec<RequestAction>, &str, Effects); 7] = [
        (updates(&["one"]), "one", updated("one")),
        (updates(&["two"]), "two", updated("two")),
        (vec![], "two", Effects::none()),
        (vec![delete()], "", Effects::none().delete()),
        (vec![], "", Effects::none()),
        (updates(&["foo"]), "foo", updated("foo")),
        (vec![delete()], "", Effects::none().delete()),
    ];
    for ((actions, state, effects), n) in steps.into_iter().zip(2..) {
        call(ctx, request(&id, actions.clone()), state).await?;
        stream.expect_in(process(n, &id, actions)).await?;
        stream.expect_out(reply(n, state, effects)).await?;
    }
    Ok(())
}

async fn forwards_and_side_effects(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, updates(&["one"])), "one").await?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream.expect_in(msg::init(VALUE_ENTITY, &id, None)).await?;
    stream.expect_in(process(1, &id, updates(&["one"]))).await?;
    stream.expect_out(reply(1, "one", updated("one"))).await?;

    call(ctx, request(&id, vec![forward_to(&id)]), "").await?;
    stream
        .expect_in(process(2, &id, vec![forward_to(&id)]))
        .await?;
    stream
        .expect_out(msg::forward(
            2,
            VALUE_ENTITY_TWO,
            "Call",
            &request(&id, vec![]),
            Effects::none(),
        ))
        .await?;
    let two = ctx.relay()?.expect_value_entity().await?;
    two.expect_in(msg::init(VALUE_ENTITY_TWO, &id, None))
        .await?;
    two.expect_in(msg::command(1, &id, "Call", &request(&id, vec![])))
        .await?;
    two.expect_out(reply(1, "", Effects::none())).await?;

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

async fn failures(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, updates(&["one"])), "one").await?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream.expect_in(msg::init(VALUE_ENTITY, &id, None)).await?;
    stream.expect_in(process(1, &id, updates(&["one"]))).await?;
    stream.expect_out(reply(1, "one", updated("one"))).await?;

    let failing = vec![fail_with("expected failure")];
    call_failing(ctx, request(&id, failing.clone()), "expected failure").await?;
    stream.expect_in(process(2, &id, failing)).await?;
    stream
        .expect_out(msg::failure(2, "expected failure"))
        .await?;

    call(ctx, request(&id, vec![]), "one").await?;
    stream.expect_in(process(3, &id, vec![])).await?;
    stream.expect_out(reply(3, "one", Effects::none())).await?;
    Ok(())
}

async fn http_api(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let address = ctx.proxy()?.address;
    let path = format!("/tck/model/entity/{id}");
    let expect_ok = |reply: http::HttpReply, body: &str| {
        ensure_eq(&reply.status, &200, "HTTP status")?;
        ensure_eq(&reply.body.as_str(), &body, "body")
    };
    expect_ok(
        http::post_json(address, &path, "{}").await?,
        r#"{"message":""}"#,
    )?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream.expect_in(msg::init(VALUE_ENTITY, &id, None)).await?;
    stream.expect_in(process(1, &id, vec![])).await?;
    stream.expect_out(reply(1, "", Effects::none())).await?;

    let two_path = format!("/{VALUE_ENTITY_TWO}/Call");
    expect_ok(
        http::post_json(address, &two_path, &format!(r#"{{"id": "{id}"}}"#)).await?,
        r#"{"message":""}"#,
    )?;
    let two = ctx.relay()?.expect_value_entity().await?;
    two.expect_in(msg::init(VALUE_ENTITY_TWO, &id, None))
        .await?;
    two.expect_in(msg::command(1, &id, "Call", &request(&id, vec![])))
        .await?;
    two.expect_out(reply(1, "", Effects::none())).await?;

    let body = r#"{"actions": [{"update": {"value": "one"}}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"message":"one"}"#,
    )?;
    stream.expect_in(process(2, &id, updates(&["one"]))).await?;
    stream.expect_out(reply(2, "one", updated("one"))).await?;

    let body = r#"{"actions": [{"fail": {"message": "expected failure"}}]}"#;
    super::action::expect_http_failure(
        &http::post_json(address, &path, body).await?,
        "expected failure",
    )?;
    stream
        .expect_in(process(3, &id, vec![fail_with("expected failure")]))
        .await?;
    stream
        .expect_out(msg::failure(3, "expected failure"))
        .await?;

    let body = r#"{"actions": [{"update": {"value": "two"}}]}"#;
    expect_ok(
        http::post_json(address, &path, body).await?,
        r#"{"message":"two"}"#,
    )?;
    stream.expect_in(process(4, &id, updates(&["two"]))).await?;
    stream.expect_out(reply(4, "two", updated("two"))).await?;

    expect_ok(
        http::post_json(address, &path, "{}").await?,
        r#"{"message":"two"}"#,
    )?;
    stream.expect_in(process(5, &id, vec![])).await?;
    stream.expect_out(reply(5, "two", Effects::none())).await?;
    Ok(())
}

async fn passivation(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let mut client = ValueEntityConfiguredClient::new(ctx.proxy()?.channel.clone());
    client.call(request(&id, vec![])).await.check("Call")?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream
        .expect_in(msg::init(VALUE_ENTITY_CONFIGURED, &id, None))
        .await?;
    stream
        .expect_in(msg::command(1, &id, "Call", &request(&id, vec![])))
        .await?;
    stream.expect_out(reply(1, "", Effects::none())).await?;
    // Passivation after 100 ms of idleness: the proxy closes the stream.
    stream.expect_closed(Duration::from_secs(2)).await
}

async fn no_metadata(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    let mut call = tonic::Request::new(request(&id, vec![]));
    call.metadata_mut()
        .insert("x-tck-header", MetadataValue::from_static("hello"));
    client(ctx)?.process(call).await.check("Process")?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream.expect_in(msg::init(VALUE_ENTITY, &id, None)).await?;
    // `process` builds the command without metadata: any would make it differ.
    stream.expect_in(process(1, &id, vec![])).await?;
    stream.expect_out(reply(1, "", Effects::none())).await?;
    Ok(())
}

async fn no_entity_key(ctx: &Ctx) -> CaseResult {
    match client(ctx)?.process(request("", vec![])).await {
        Ok(reply) => Err(Error::Check(format!(
            "expected INVALID_ARGUMENT (docs/protocol.md §3.1), got {:?}",
            reply.get_ref()
        ))),
        Err(status) => {
            ensure_eq(&status.code(), &Code::InvalidArgument, "status")?;
            ensure(status.message().contains("entity key"), || {
                format!(
                    "the message does not mention the entity key: {}",
                    status.message()
                )
            })
        }
    }
}

async fn survives_restart(ctx: &Ctx) -> CaseResult {
    let id = ctx.entity_id("entity");
    call(ctx, request(&id, updates(&["kept"])), "kept").await?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream.expect_in(msg::init(VALUE_ENTITY, &id, None)).await?;
    stream
        .expect_in(process(1, &id, updates(&["kept"])))
        .await?;
    stream.expect_out(reply(1, "kept", updated("kept"))).await?;

    ctx.restart_proxy().await?;
    stream.expect_closed(Duration::from_secs(10)).await?;

    call(ctx, request(&id, vec![]), "kept").await?;
    let stream = ctx.relay()?.expect_value_entity().await?;
    stream
        .expect_in(msg::init(VALUE_ENTITY, &id, Some(persisted("kept"))))
        .await?;
    stream.expect_in(process(1, &id, vec![])).await?;
    stream.expect_out(reply(1, "kept", Effects::none())).await?;
    Ok(())
}
