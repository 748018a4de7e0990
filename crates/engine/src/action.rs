//! Actions: stateless calls of `cloudstate.action.ActionProtocol`, one protocol call per client
//! call, of the same shape.
//!
//! Unary calls go through [`unary`] like any command. Streaming calls run in their own task
//! ([`streaming`]): it pumps the client's messages to the user function (a header message with
//! service and method first, then payload-only messages) and turns every `ActionResponse` into
//! a message for the client, running its side effects and following its forward first.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cloudstate_protocol::action::{ActionCommand, ActionResponse, action_response};
use cloudstate_protocol::{Any, ClientAction, Metadata, client_action};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::entity::{Action, Outcome};
use crate::model::MethodDef;
use crate::{Engine, Error, Route, Shared, payload};

/// Request messages of a streaming call, as the client sends them.
pub type RequestStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Reply messages of a streaming call, as they become ready. An error ends the stream.
pub type ReplyStream = ReceiverStream<Result<Bytes, Error>>;

/// Messages buffered between the user function and a slow client.
pub(crate) const STREAM_BUFFER: usize = 16;

fn command(
    method: &MethodDef,
    payload: Option<Bytes>,
    metadata: Option<Metadata>,
) -> ActionCommand {
    ActionCommand {
        service_name: method.service.name.clone(),
        name: method.name.clone(),
        payload: payload.map(|value| Any {
            type_url: method.input_type_url.clone(),
            value,
        }),
        metadata,
    }
}

/// A failed call; one the connection failed makes the user function's watcher check on it.
fn call_failed(shared: &Shared, method: &MethodDef, status: Status) -> Error {
    if status.code() == tonic::Code::Unavailable {
        shared.user_function.connection_failed();
    }
    Error::ActionCall {
        method: method.display_name(),
        status,
    }
}

/// Reads one `ActionResponse`: its side effects are kept even when it is a failure.
fn outcome(shared: &Shared, method: &MethodDef, response: ActionResponse) -> Outcome {
    let action = response.response.map(|response| match response {
        action_response::Response::Reply(reply) => client_action::Action::Reply(reply),
        action_response::Response::Forward(forward) => client_action::Action::Forward(forward),
        action_response::Response::Failure(failure) => client_action::Action::Failure(failure),
    });
    Outcome {
        action: Action::from_client_action(shared, method, Some(ClientAction { action })),
        side_effects: response.side_effects,
    }
}

/// Runs a unary action call.
pub(crate) async fn unary(
    shared: &Shared,
    method: &MethodDef,
    payload: Bytes,
    metadata: Metadata,
) -> Result<Outcome, Error> {
    shared.user_function.check_up()?;
    let response = shared
        .user_function
        .action()
        .handle_unary(command(method, Some(payload), Some(metadata)))
        .await
        .map_err(|status| call_failed(shared, method, status))?;
    Ok(outcome(shared, method, response.into_inner()))
}

/// Runs a streaming action call (client, server or bidirectional streaming) in its own task.
pub(crate) fn streaming(
    engine: Engine,
    route: Arc<Route>,
    metadata: Metadata,
    requests: RequestStream,
) -> ReplyStream {
    let (replies, receiver) = mpsc::channel(STREAM_BUFFER);
    let timer = route.metrics.start();
    tokio::spawn(async move {
        let call = run_streaming(&engine, &route, metadata, requests, &replies);
        match engine.inner.shared.metrics.user_function(call).await {
            Ok(()) => timer.finish(tonic::Code::Ok),
            Err(error) => {
                timer.finish(error.code());
                let _ = replies.send(Err(error)).await;
            }
        }
    });
    ReceiverStream::new(receiver)
}

async fn run_streaming(
    engine: &Engine,
    route: &Arc<Route>,
    metadata: Metadata,
    mut requests: RequestStream,
    replies: &mpsc::Sender<Result<Bytes, Error>>,
) -> Result<(), Error> {
    let method = &route.method;
    let shared = &engine.inner.shared;
    shared.user_function.check_up()?;
    let mut client = shared.user_function.action();
    let client_streaming = method.descriptor.is_client_streaming();
    let server_streaming = method.descriptor.is_server_streaming();

    if !client_streaming {
        // Server streaming: one request, a stream of responses.
        let Some(request) = requests.next().await else {
            return Err(Error::ProtocolViolation("no request message".into()));
        };
        let request = request.map_err(|status| Error::ActionCall {
            method: method.display_name(),
            status,
        })?;
        check(method, &request)?;
        let responses = client
            .handle_streamed_out(command(method, Some(request), Some(metadata)))
            .await
            .map_err(|status| call_failed(shared, method, status))?
            .into_inner();
        return forward_responses(engine, route, responses, replies).await;
    }

    // Client (or bidirectional) streaming: a header, then the client's messages as they come.
    let (outbound, receiver) = mpsc::channel(STREAM_BUFFER);
    let _ = outbound.try_send(command(method, None, Some(metadata)));
    let pump = {
        let (method, replies) = (method.clone(), replies.clone());
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                // A failed client stream ends the call; the client is gone anyway.
                let Ok(request) = request else { break };
                if let Err(error) = check(&method, &request) {
                    let _ = replies.send(Err(error)).await;
                    break;
                }
                let message = ActionCommand {
                    payload: Some(Any {
                        type_url: method.input_type_url.clone(),
                        value: request,
                    }),
                    ..ActionCommand::default()
                };
                if outbound.send(message).await.is_err() {
                    break;
                }
            }
        })
    };
    let outbound = ReceiverStream::new(receiver);
    let result = if server_streaming {
        match client.handle_streamed(outbound).await {
            Ok(responses) => {
                forward_responses(engine, route, responses.into_inner(), replies).await
            }
            Err(status) => Err(call_failed(shared, method, status)),
        }
    } else {
        match client.handle_streamed_in(outbound).await {
            Ok(response) => {
                let outcome = outcome(shared, method, response.into_inner());
                deliver(engine, route, outcome, replies).await.map(|_| ())
            }
            Err(status) => Err(call_failed(shared, method, status)),
        }
    };
    pump.abort();
    result
}

/// Delivers every response of a streamed call until the user function ends the stream, a
/// response fails the call, or the client goes away.
async fn forward_responses(
    engine: &Engine,
    route: &Arc<Route>,
    mut responses: tonic::Streaming<ActionResponse>,
    replies: &mpsc::Sender<Result<Bytes, Error>>,
) -> Result<(), Error> {
    loop {
        let response = tokio::select! {
            response = responses.message() => response,
            // Stop as soon as the client is gone; dropping `responses` cancels the call.
            () = replies.closed() => return Ok(()),
        };
        let response =
            response.map_err(|status| call_failed(&engine.inner.shared, &route.method, status))?;
        let Some(response) = response else {
            return Ok(());
        };
        let outcome = outcome(&engine.inner.shared, &route.method, response);
        if !deliver(engine, route, outcome, replies).await? {
            return Ok(());
        }
    }
}

/// Runs one response's side effects and sends its reply (following a forward). Returns whether
/// the stream goes on.
pub(crate) async fn deliver(
    engine: &Engine,
    route: &Arc<Route>,
    outcome: Outcome,
    replies: &mpsc::Sender<Result<Bytes, Error>>,
) -> Result<bool, Error> {
    let deadline = engine.deadline();
    engine
        .run_side_effects(&*route.method, outcome.side_effects, deadline, 0)
        .await?;
    let reply = match outcome.action {
        Action::Reply(bytes) => bytes,
        Action::NoReply => return Ok(true),
        Action::Fail(error) => return Err(error),
        Action::Forward(forward) => engine.follow(&route.method, forward, deadline, 0).await?,
    };
    Ok(replies.send(Ok(reply)).await.is_ok())
}

fn check(method: &MethodDef, request: &Bytes) -> Result<(), Error> {
    payload::check_message(&method.input, request).map_err(Error::InvalidPayload)
}
