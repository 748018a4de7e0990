//! Actions (ActionTCK): the model cases talk to `ActionTckModel` directly; the proxy cases call
//! it through the proxy and check what crossed the protocol.

use std::time::Instant;

use cloudstate_protocol::action::{ActionCommand, ActionResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::metadata::MetadataValue;

use super::{Case, CaseResult, Ctx};
use crate::error::{CheckExt, ensure, ensure_eq};
use crate::frontend;
use crate::http;
use crate::messages::{Effects, action as msg};
use crate::proto::action::action_tck_model_client::ActionTckModelClient;
use crate::proto::action::process_step::Step;
use crate::proto::action::{
    Fail, Forward, OtherRequest, ProcessGroup, ProcessStep, Reply, Request, Response, SideEffect,
};
use crate::proto::service::{ACTION, ACTION_TWO};
use crate::relay::{Call, Event, PATIENCE};

const SERVICES: &[&str] = &[ACTION, ACTION_TWO];

fn reply_with(message: &str) -> ProcessStep {
    step(Step::Reply(Reply {
        message: message.into(),
    }))
}

fn forward_to(id: &str) -> ProcessStep {
    step(Step::Forward(Forward { id: id.into() }))
}

fn fail_with(message: &str) -> ProcessStep {
    step(Step::Fail(Fail {
        message: message.into(),
    }))
}

fn effect(id: &str, synchronous: bool) -> ProcessStep {
    step(Step::Effect(SideEffect {
        id: id.into(),
        synchronous,
    }))
}

fn step(step: Step) -> ProcessStep {
    ProcessStep { step: Some(step) }
}

fn group<const N: usize>(steps: [ProcessStep; N]) -> ProcessGroup {
    ProcessGroup {
        steps: steps.into(),
    }
}

/// A request of one group.
fn single<const N: usize>(steps: [ProcessStep; N]) -> Request {
    Request {
        groups: vec![group(steps)],
    }
}

fn request<const N: usize>(groups: [ProcessGroup; N]) -> Request {
    Request {
        groups: groups.into(),
    }
}

fn response(message: &str) -> Response {
    Response {
        message: message.into(),
    }
}

/// Side effects to `ActionTwo.Call` with `OtherRequest{id}` for each of `ids`.
fn effects(ids: &[&str], synchronous: bool) -> Effects {
    ids.iter().fold(Effects::none(), |effects, id| {
        effects.side_effect(
            ACTION_TWO,
            "Call",
            &OtherRequest { id: (*id).into() },
            synchronous,
        )
    })
}

fn replied(message: &str, effects: Effects) -> ActionResponse {
    msg::reply(&response(message), effects)
}

fn forwarded(id: &str, effects: Effects) -> ActionResponse {
    msg::forward(ACTION_TWO, "Call", &OtherRequest { id: id.into() }, effects)
}

fn failed(message: &str, effects: Effects) -> ActionResponse {
    msg::failure(message, effects)
}

fn command(name: &str, request: Option<&Request>) -> ActionCommand {
    msg::command(ACTION, name, request)
}

/// The cases of the original's `verifyActionModel`, and ours.
pub(super) fn model_cases() -> Vec<Case> {
    let mut cases = vec![
        Case::model("action model: verify action entity discovery", |ctx| {
            Box::pin(discovery(ctx))
        })
        .original("ActionTCK 1"),
    ];

    let no = Effects::none;
    let unary = [
        (
            "unary command reply",
            single([reply_with("one")]),
            replied("one", no()),
        ),
        (
            "unary command reply with side effect",
            single([reply_with("two"), effect("other", false)]),
            replied("two", effects(&["other"], false)),
        ),
        (
            "unary command reply with synchronous side effect",
            single([reply_with("three"), effect("another", true)]),
            replied("three", effects(&["another"], true)),
        ),
        (
            "unary command reply with multiple side effects",
            single([
                reply_with("four"),
                effect("a", false),
                effect("b", false),
                effect("c", false),
            ]),
            replied("four", effects(&["a", "b", "c"], false)),
        ),
        ("unary command no reply", single([]), msg::no_reply(no())),
        (
            "unary command no reply with side effect",
            single([effect("other", false)]),
            msg::no_reply(effects(&["other"], false)),
        ),
        (
            "unary command no reply with synchronous side effect",
            single([effect("another", true)]),
            msg::no_reply(effects(&["another"], true)),
        ),
        (
            "unary command no reply with multiple side effects",
            single([effect("a", false), effect("b", false), effect("c", false)]),
            msg::no_reply(effects(&["a", "b", "c"], false)),
        ),
        (
            "unary command forward",
            single([forward_to("one")]),
            forwarded("one", no()),
        ),
        (
            "unary command forward with side effect",
            single([forward_to("two"), effect("other", false)]),
            forwarded("two", effects(&["other"], false)),
        ),
        (
            "unary command forward with synchronous side effect",
            single([forward_to("three"), effect("another", true)]),
            forwarded("three", effects(&["another"], true)),
        ),
        (
            "unary command forward with multiple side effects",
            single([
                forward_to("four"),
                effect("a", false),
                effect("b", false),
                effect("c", false),
            ]),
            forwarded("four", effects(&["a", "b", "c"], false)),
        ),
        (
            "unary command failure",
            single([fail_with("one")]),
            failed("one", no()),
        ),
        (
            "unary command failure with side effect",
            single([fail_with("two"), effect("other", false)]),
            failed("two", effects(&["other"], false)),
        ),
        (
            "unary command failure with synchronous side effect",
            single([fail_with("three"), effect("another", true)]),
            failed("three", effects(&["another"], true)),
        ),
        (
            "unary command failure with multiple side effects",
            single([
                fail_with("four"),
                effect("a", false),
                effect("b", false),
                effect("c", false),
            ]),
            failed("four", effects(&["a", "b", "c"], false)),
        ),
    ];
    for (number, (name, request, expected)) in (2..).zip(unary) {
        cases.push(
            Case::model(format!("action model: verify {name}"), move |ctx| {
                let (request, expected) = (request.clone(), expected.clone());
                Box::pin(async move {
                    let response = frontend::action_unary(
                        ctx.service()?,
                        command("ProcessUnary", Some(&request)),
                    )
                    .await?;
                    ensure_eq(&response, &expected, "handleUnary response")
                })
            })
            .original(original_number(number)),
        );
    }

    // The effects the streamed-in cases share: a, b (synchronous), c, d over three requests.
    let abcd = || {
        effects(&["a"], false)
            .and(effects(&["b"], true))
            .and(effects(&["c", "d"], false))
    };
    let three = |first: ProcessStep| {
        vec![
            single([first, effect("a", false)]),
            single([effect("b", true)]),
            single([effect("c", false), effect("d", false)]),
        ]
    };
    let streamed_in = [
        (
            "streamed-in command reply",
            vec![single([reply_with("one")])],
            replied("one", no()),
        ),
        (
            "streamed-in command reply with side effects",
            three(reply_with("two")),
            replied("two", abcd()),
        ),
        (
            "streamed-in command no reply (no requests)",
            vec![],
            msg::no_reply(no()),
        ),
        (
            "streamed-in command no reply",
            vec![single([])],
            msg::no_reply(no()),
        ),
        (
            "streamed-in command no reply with side effects",
            vec![
                single([effect("a", false)]),
                single([effect("b", true)]),
                single([effect("c", false), effect("d", false)]),
            ],
            msg::no_reply(abcd()),
        ),
        (
            "streamed-in command forward",
            vec![single([forward_to("one")])],
            forwarded("one", no()),
        ),
        (
            "streamed-in command forward with side effects",
            three(forward_to("two")),
            forwarded("two", abcd()),
        ),
        (
            "streamed-in command failure",
            vec![single([fail_with("one")])],
            failed("one", no()),
        ),
        (
            "streamed-in command failure with side effects",
            three(fail_with("two")),
            failed("two", abcd()),
        ),
    ];
    for (number, (name, requests, expected)) in (18..).zip(streamed_in) {
        cases.push(
            Case::model(format!("action model: verify {name}"), move |ctx| {
                let (requests, expected) = (requests.clone(), expected.clone());
                Box::pin(async move {
                    let mut commands = vec![command("ProcessStreamedIn", None)];
                    commands.extend(requests.iter().map(msg::payload));
                    let response = frontend::action_streamed_in(ctx.service()?, commands).await?;
                    ensure_eq(&response, &expected, "handleStreamedIn response")
                })
            })
            .original(original_number(number)),
        );
    }

    let four_groups = |first: fn(&str) -> ProcessStep| {
        let with = |word: &str, extra: Vec<ProcessStep>| {
            let mut steps = Vec::new();
            if !word.is_empty() {
                steps.push(first(word));
            }
            steps.extend(extra);
            ProcessGroup { steps }
        };
        (
            with("one", vec![]),
            with("two", vec![effect("other", false)]),
            with("three", vec![effect("another", true)]),
            with(
                "four",
                vec![effect("a", false), effect("b", false), effect("c", false)],
            ),
        )
    };
    let responses = |make: fn(&str, Effects) -> ActionResponse| {
        vec![
            make("one", no()),
            make("two", effects(&["other"], false)),
            make("three", effects(&["another"], true)),
            make("four", effects(&["a", "b", "c"], false)),
        ]
    };
    let (a, b, c, d) = four_groups(reply_with);
    let replies = (request([a, b, c, d]), responses(replied));
    let no_reply_group = |extra: Vec<ProcessStep>| ProcessGroup { steps: extra };
    let no_replies = (
        request([
            no_reply_group(vec![]),
            no_reply_group(vec![effect("other", false)]),
            no_reply_group(vec![effect("another", true)]),
            no_reply_group(vec![
                effect("a", false),
                effect("b", false),
                effect("c", false),
            ]),
        ]),
        vec![
            msg::no_reply(no()),
            msg::no_reply(effects(&["other"], false)),
            msg::no_reply(effects(&["another"], true)),
            msg::no_reply(effects(&["a", "b", "c"], false)),
        ],
    );
    let (a, b, c, d) = four_groups(forward_to);
    let forwards = (request([a, b, c, d]), responses(forwarded));
    let (a, b, c, d) = four_groups(fail_with);
    let failures = (request([a, b, c, d]), responses(failed));
    let streamed_out = [
        ("streamed-out command replies and side effects", replies),
        (
            "streamed-out command no replies and side effects",
            no_replies,
        ),
        ("streamed-out command forwards and side effects", forwards),
        ("streamed-out command failures and side effects", failures),
    ];
    for (number, (name, (request, expected))) in (27..).zip(streamed_out) {
        cases.push(
            Case::model(format!("action model: verify {name}"), move |ctx| {
                let (request, expected) = (request.clone(), expected.clone());
                Box::pin(async move {
                    let mut call = frontend::action_streamed_out(
                        ctx.service()?,
                        command("ProcessStreamedOut", Some(&request)),
                    );
                    for response in expected {
                        call.expect(response).await?;
                    }
                    call.expect_closed().await
                })
            })
            .original(original_number(number)),
        );
    }

    // Duplex: each request is sent, then its responses are expected; the last request has two
    // groups.
    let duplex = |first: fn(&str) -> ProcessStep, make: fn(&str, Effects) -> ActionResponse| {
        let (a, b, c, d) = four_groups(first);
        let mut exchanges: Vec<(Request, Vec<ActionResponse>)> = responses(make)
            .into_iter()
            .zip([a, b, c, d])
            .map(|(expected, group)| {
                (
                    Request {
                        groups: vec![group],
                    },
                    vec![expected],
                )
            })
            .collect();
        exchanges.push((
            request([
                group([first("five")]),
                group([first("six"), effect("other", false)]),
            ]),
            vec![make("five", no()), make("six", effects(&["other"], false))],
        ));
        exchanges
    };
    let mut no_reply_exchanges: Vec<(Request, Vec<ActionResponse>)> = no_replies_requests()
        .into_iter()
        .zip([
            msg::no_reply(no()),
            msg::no_reply(effects(&["other"], false)),
            msg::no_reply(effects(&["another"], true)),
            msg::no_reply(effects(&["a", "b", "c"], false)),
        ])
        .map(|(request, expected)| (request, vec![expected]))
        .collect();
    no_reply_exchanges.push((
        request([group([]), group([effect("other", false)])]),
        vec![
            msg::no_reply(no()),
            msg::no_reply(effects(&["other"], false)),
        ],
    ));
    let streamed = [
        (
            "streamed command replies and side effects",
            duplex(reply_with, replied),
        ),
        (
            "streamed command no replies and side effects",
            no_reply_exchanges,
        ),
        (
            "streamed command forwards and side effects",
            duplex(forward_to, forwarded),
        ),
        (
            "streamed command failures and side effects",
            duplex(fail_with, failed),
        ),
    ];
    for (number, (name, exchanges)) in (31..).zip(streamed) {
        cases.push(
            Case::model(format!("action model: verify {name}"), move |ctx| {
                let exchanges = exchanges.clone();
                Box::pin(async move {
                    let mut call = frontend::action_streamed(ctx.service()?);
                    call.send(command("ProcessStreamed", None)).await?;
                    for (request, expected) in exchanges {
                        call.send(msg::payload(&request)).await?;
                        for response in expected {
                            call.expect(response).await?;
                        }
                    }
                    call.passivate().await
                })
            })
            .original(original_number(number)),
        );
    }
    cases
        .into_iter()
        .map(|case| case.requires(SERVICES))
        .collect()
}

/// The four single-group requests of the "no replies" cases.
fn no_replies_requests() -> Vec<Request> {
    vec![
        single([]),
        single([effect("other", false)]),
        single([effect("another", true)]),
        single([effect("a", false), effect("b", false), effect("c", false)]),
    ]
}

fn original_number(number: usize) -> String {
    format!("ActionTCK {number}")
}

async fn discovery(ctx: &Ctx) -> CaseResult {
    super::has_services(ctx, SERVICES)?;
    for service in SERVICES {
        ensure_eq(
            &ctx.entity(service)?.entity_type.as_str(),
            &cloudstate_protocol::entity_type::ACTION,
            &format!("entity type of {service}"),
        )?;
    }
    Ok(())
}

/// The cases of the original's `verifyActionProxy`, and ours.
pub(super) fn proxy_cases() -> Vec<Case> {
    let cases = vec![
        Case::proxy("action proxy: verify unary command processing", |ctx| {
            Box::pin(unary_processing(ctx))
        })
        .original("ActionTCK 35"),
        Case::proxy(
            "action proxy: verify streamed-in command processing",
            |ctx| Box::pin(streamed_in_processing(ctx)),
        )
        .original("ActionTCK 36"),
        Case::proxy(
            "action proxy: verify streamed-out command processing",
            |ctx| Box::pin(streamed_out_processing(ctx)),
        )
        .original("ActionTCK 37"),
        Case::proxy("action proxy: verify streamed command processing", |ctx| {
            Box::pin(streamed_processing(ctx))
        })
        .original("ActionTCK 38"),
        Case::proxy(
            "action proxy: verify unary forwards and side effects",
            |ctx| Box::pin(unary_forwards_and_side_effects(ctx)),
        )
        .original("ActionTCK 39"),
        Case::proxy(
            "action proxy: verify streamed forwards and side effects",
            |ctx| Box::pin(streamed_forwards_and_side_effects(ctx)),
        )
        .original("ActionTCK 40"),
        Case::proxy("action proxy: verify unary failures", |ctx| {
            Box::pin(unary_failures(ctx))
        })
        .original("ActionTCK 41"),
        Case::proxy("action proxy: verify streamed failures", |ctx| {
            Box::pin(streamed_failures(ctx))
        })
        .original("ActionTCK 42"),
        Case::proxy("action proxy: verify unary HTTP API", |ctx| {
            Box::pin(unary_http(ctx))
        })
        .original("ActionTCK 43"),
        Case::proxy(
            "action proxy: request headers reach the action as metadata",
            |ctx| Box::pin(headers_as_metadata(ctx)),
        ),
        Case::proxy(
            "action proxy: a synchronous side effect completes before the reply",
            |ctx| Box::pin(synchronous_side_effect_first(ctx)),
        ),
        Case::proxy(
            "action proxy: a unary command without a reply fails",
            |ctx| Box::pin(unary_without_reply(ctx)),
        ),
        Case::proxy(
            "action proxy: a client that vanishes mid-stream ends the protocol call",
            |ctx| Box::pin(cancel_streamed(ctx)),
        ),
    ];
    cases
        .into_iter()
        .map(|case| case.requires(SERVICES))
        .collect()
}

fn client(ctx: &Ctx) -> Result<ActionTckModelClient<tonic::transport::Channel>, crate::Error> {
    Ok(ActionTckModelClient::new(ctx.proxy()?.channel.clone()))
}

async fn unary_processing(ctx: &Ctx) -> CaseResult {
    let request = single([reply_with("one")]);
    let reply = client(ctx)?
        .process_unary(request.clone())
        .await
        .check("ProcessUnary")?;
    ensure_eq(reply.get_ref(), &response("one"), "reply")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessUnary", Some(&request)),
        "command",
    )?;
    call.expect_out(replied("one", Effects::none())).await?;
    Ok(())
}

async fn streamed_in_processing(ctx: &Ctx) -> CaseResult {
    let request = single([reply_with("two")]);
    let reply = client(ctx)?
        .process_streamed_in(tokio_stream::iter([request.clone()]))
        .await
        .check("ProcessStreamedIn")?;
    ensure_eq(reply.get_ref(), &response("two"), "reply")?;
    let call = ctx.relay()?.expect_action(Call::ActionStreamedIn).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessStreamedIn", None),
        "first message",
    )?;
    ensure_eq(
        &call.in_message().await?,
        &msg::payload(&request),
        "second message",
    )?;
    call.expect_in_complete().await?;
    call.expect_out(replied("two", Effects::none())).await?;
    Ok(())
}

async fn streamed_out_processing(ctx: &Ctx) -> CaseResult {
    let request = request([
        group([reply_with("A")]),
        group([reply_with("B")]),
        group([reply_with("C")]),
    ]);
    let mut replies = client(ctx)?
        .process_streamed_out(request.clone())
        .await
        .check("ProcessStreamedOut")?
        .into_inner();
    for expected in ["A", "B", "C"] {
        let reply = replies.message().await.check("ProcessStreamedOut reply")?;
        ensure_eq(&reply, &Some(response(expected)), "reply")?;
    }
    ensure_eq(
        &replies.message().await.check("ProcessStreamedOut end")?,
        &None,
        "end of replies",
    )?;
    let call = ctx.relay()?.expect_action(Call::ActionStreamedOut).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessStreamedOut", Some(&request)),
        "command",
    )?;
    for expected in ["A", "B", "C"] {
        call.expect_out(replied(expected, Effects::none())).await?;
    }
    call.expect_out_complete().await?;
    Ok(())
}

async fn streamed_processing(ctx: &Ctx) -> CaseResult {
    let requests: Vec<_> = ["X", "Y", "Z"]
        .into_iter()
        .map(|word| single([reply_with(word)]))
        .collect();
    let mut replies = client(ctx)?
        .process_streamed(tokio_stream::iter(requests.clone()))
        .await
        .check("ProcessStreamed")?
        .into_inner();
    for expected in ["X", "Y", "Z"] {
        let reply = replies.message().await.check("ProcessStreamed reply")?;
        ensure_eq(&reply, &Some(response(expected)), "reply")?;
    }
    ensure_eq(
        &replies.message().await.check("ProcessStreamed end")?,
        &None,
        "end of replies",
    )?;
    let call = ctx.relay()?.expect_action(Call::ActionStreamed).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessStreamed", None),
        "first message",
    )?;
    for (request, word) in requests.iter().zip(["X", "Y", "Z"]) {
        ensure_eq(&call.in_message().await?, &msg::payload(request), "message")?;
        call.expect_out(replied(word, Effects::none())).await?;
    }
    call.expect_in_complete().await?;
    call.expect_out_complete().await?;
    Ok(())
}

/// Expects the proxy's unary call of `ActionTwo.Call` with `OtherRequest{id}`, answered with an
/// empty response.
async fn expect_call_of_two(ctx: &Ctx, id: &str) -> CaseResult {
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &msg::command(ACTION_TWO, "Call", Some(&OtherRequest { id: id.into() })),
        "command",
    )?;
    call.expect_out(replied("", Effects::none())).await?;
    Ok(())
}

async fn unary_forwards_and_side_effects(ctx: &Ctx) -> CaseResult {
    let mut client = client(ctx)?;
    let request = single([forward_to("other")]);
    let reply = client
        .process_unary(request.clone())
        .await
        .check("ProcessUnary")?;
    ensure_eq(reply.get_ref(), &response(""), "forwarded reply")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessUnary", Some(&request)),
        "command",
    )?;
    call.expect_out(forwarded("other", Effects::none())).await?;
    expect_call_of_two(ctx, "other").await?;

    let request = single([reply_with(""), effect("another", false)]);
    let reply = client
        .process_unary(request.clone())
        .await
        .check("ProcessUnary")?;
    ensure_eq(reply.get_ref(), &response(""), "reply")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessUnary", Some(&request)),
        "command",
    )?;
    call.expect_out(replied("", effects(&["another"], false)))
        .await?;
    expect_call_of_two(ctx, "another").await
}

async fn streamed_forwards_and_side_effects(ctx: &Ctx) -> CaseResult {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut replies = client(ctx)?
        .process_streamed(ReceiverStream::new(receiver))
        .await
        .check("ProcessStreamed")?
        .into_inner();
    let forward = single([forward_to("one")]);
    sender.send(forward.clone()).await.check("sending")?;
    let reply = tokio::time::timeout(PATIENCE, replies.message())
        .await
        .check("reply")?;
    ensure_eq(
        &reply.check("reply")?,
        &Some(response("")),
        "forwarded reply",
    )?;
    let call = ctx.relay()?.expect_action(Call::ActionStreamed).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessStreamed", None),
        "first message",
    )?;
    ensure_eq(
        &call.in_message().await?,
        &msg::payload(&forward),
        "message",
    )?;
    call.expect_out(forwarded("one", Effects::none())).await?;
    expect_call_of_two(ctx, "one").await?;

    let side_effect = single([effect("two", false)]);
    sender.send(side_effect.clone()).await.check("sending")?;
    ensure_eq(
        &call.in_message().await?,
        &msg::payload(&side_effect),
        "message",
    )?;
    call.expect_out(msg::no_reply(effects(&["two"], false)))
        .await?;
    expect_call_of_two(ctx, "two").await?;

    drop(sender);
    let end = tokio::time::timeout(PATIENCE, replies.message())
        .await
        .check("end")?;
    ensure_eq(
        &end.check("end of replies")?,
        &None,
        "end of replies (no reply for the side effect)",
    )?;
    call.expect_in_complete().await?;
    call.expect_out_complete().await?;
    Ok(())
}

async fn unary_failures(ctx: &Ctx) -> CaseResult {
    let request = single([fail_with("expected failure")]);
    let status = match client(ctx)?.process_unary(request.clone()).await {
        Ok(reply) => {
            return Err(crate::Error::Check(format!(
                "expected a failure, got {:?}",
                reply.get_ref()
            )));
        }
        Err(status) => status,
    };
    ensure_eq(
        &status.message(),
        &"expected failure",
        "failure description",
    )?;
    ensure_eq(&status.code(), &Code::Unknown, "failure status")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessUnary", Some(&request)),
        "command",
    )?;
    call.expect_out(failed("expected failure", Effects::none()))
        .await?;
    Ok(())
}

async fn streamed_failures(ctx: &Ctx) -> CaseResult {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut replies = client(ctx)?
        .process_streamed(ReceiverStream::new(receiver))
        .await
        .check("ProcessStreamed")?
        .into_inner();
    let call = ctx.relay()?.expect_action(Call::ActionStreamed).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessStreamed", None),
        "first message",
    )?;
    let request = single([fail_with("expected failure")]);
    sender.send(request.clone()).await.check("sending")?;
    match tokio::time::timeout(PATIENCE, replies.message())
        .await
        .check("reply")?
    {
        Err(status) => {
            ensure_eq(
                &status.message(),
                &"expected failure",
                "failure description",
            )?;
        }
        Ok(reply) => {
            return Err(crate::Error::Check(format!(
                "expected the stream to fail, got {reply:?}"
            )));
        }
    }
    ensure_eq(
        &call.in_message().await?,
        &msg::payload(&request),
        "message",
    )?;
    call.expect_out(failed("expected failure", Effects::none()))
        .await?;
    Ok(())
}

async fn unary_http(ctx: &Ctx) -> CaseResult {
    let address = ctx.proxy()?.address;
    let reply = http::post_json(
        address,
        "/tck/model/action/unary",
        r#"{"groups": [{"steps": [{"reply": {"message": "foo"}}]}]}"#,
    )
    .await?;
    ensure_eq(&reply.status, &200, "HTTP status")?;
    ensure_eq(
        &reply.content_type.as_deref(),
        &Some("application/json"),
        "content type",
    )?;
    ensure_eq(&reply.body.as_str(), &r#"{"message":"foo"}"#, "body")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessUnary", Some(&single([reply_with("foo")]))),
        "command",
    )?;
    call.expect_out(replied("foo", Effects::none())).await?;

    let reply = http::post_json(
        address,
        "/tck/model/action/unary",
        r#"{"groups": [{"steps": [{"fail": {"message": "boom"}}]}]}"#,
    )
    .await?;
    expect_http_failure(&reply, "boom")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    ensure_eq(
        &msg::without_metadata(call.in_message().await?),
        &command("ProcessUnary", Some(&single([fail_with("boom")]))),
        "command",
    )?;
    call.expect_out(failed("boom", Effects::none())).await?;
    Ok(())
}

/// Checks an HTTP error reply for a user function's failure: status 500 and the description.
///
/// The original proxy answered the bare description as the body; this proxy answers a JSON
/// error object (`{"code":2,"status":"UNKNOWN","message":"..."}`, docs/http.md "Errors"), so
/// either form is accepted.
pub(super) fn expect_http_failure(reply: &http::HttpReply, description: &str) -> CaseResult {
    ensure_eq(&reply.status, &500, "HTTP status of a failure")?;
    if reply.body == description {
        return Ok(());
    }
    let body: serde_json::Value = serde_json::from_str(&reply.body).check("error body")?;
    ensure_eq(
        &body["message"].as_str(),
        &Some(description),
        &format!("description in the error body {}", reply.body),
    )
}

async fn headers_as_metadata(ctx: &Ctx) -> CaseResult {
    let mut request = tonic::Request::new(single([reply_with("headers")]));
    request
        .metadata_mut()
        .insert("x-tck-header", MetadataValue::from_static("hello"));
    client(ctx)?
        .process_unary(request)
        .await
        .check("ProcessUnary")?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    let command = call.in_message().await?;
    let entries = command
        .metadata
        .map(|metadata| metadata.entries)
        .unwrap_or_default();
    let found = entries.iter().any(|entry| {
        entry.key == "x-tck-header"
            && entry.value
                == Some(cloudstate_protocol::metadata_entry::Value::StringValue(
                    "hello".into(),
                ))
    });
    ensure(found, || {
        format!("no metadata entry x-tck-header=hello in {entries:?}")
    })?;
    call.expect_out(replied("headers", Effects::none())).await?;
    Ok(())
}

async fn synchronous_side_effect_first(ctx: &Ctx) -> CaseResult {
    let request = single([reply_with("after"), effect("first", true)]);
    client(ctx)?
        .process_unary(request)
        .await
        .check("ProcessUnary")?;
    let answered = Instant::now();
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    call.in_message().await?;
    call.expect_out(replied("after", effects(&["first"], true)))
        .await?;
    let side_effect = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    side_effect.in_message().await?;
    let done = side_effect.next_out().await?;
    ensure(matches!(done.event, Event::Message(_)), || {
        format!("expected ActionTwo's reply, saw {:?}", done.event)
    })?;
    ensure(done.at <= answered, || {
        "the client got its reply before the synchronous side effect was answered".into()
    })
}

async fn unary_without_reply(ctx: &Ctx) -> CaseResult {
    let request = single([]);
    let status = match client(ctx)?.process_unary(request).await {
        Ok(reply) => {
            return Err(crate::Error::Check(format!(
                "expected a failure (docs/protocol.md §7), got {:?}",
                reply.get_ref()
            )));
        }
        Err(status) => status,
    };
    ensure_eq(
        &status.code(),
        &Code::Internal,
        "status of a unary call without reply",
    )?;
    let call = ctx.relay()?.expect_action(Call::ActionUnary).await?;
    call.in_message().await?;
    call.expect_out(msg::no_reply(Effects::none())).await?;
    Ok(())
}

async fn cancel_streamed(ctx: &Ctx) -> CaseResult {
    let path = format!("/{ACTION}/ProcessStreamed");
    let mut call = http::RawGrpcCall::start(ctx.proxy()?.address, &path).await?;
    call.send(&single([reply_with("X")])).await?;
    ensure_eq(
        &call.next::<Response>().await?,
        &Some(response("X")),
        "reply",
    )?;
    let protocol_call = ctx.relay()?.expect_action(Call::ActionStreamed).await?;
    protocol_call.in_message().await?;
    protocol_call.in_message().await?;
    protocol_call.out_message().await?;
    // The client vanishes with its call still open.
    call.vanish();
    let end = protocol_call.next_in().await?;
    ensure(end.event.is_end(), || {
        format!(
            "expected the proxy to end the protocol call, saw {:?}",
            end.event
        )
    })?;
    let end = protocol_call.next_out().await?;
    ensure(end.event.is_end(), || {
        format!(
            "expected the user function's side to end, saw {:?}",
            end.event
        )
    })
}
