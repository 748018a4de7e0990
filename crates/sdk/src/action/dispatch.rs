//! Running action calls: the type-erased handlers and the one code path, shared by the server
//! and the testkit, that turns a call of any shape (its first `ActionCommand` and the payloads of
//! the following ones) into the protocol's responses.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use cloudstate_protocol::action::{ActionCommand, ActionResponse, action_response};
use cloudstate_protocol::{self as protocol, Any};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream};
use prost::{Message, Name};
use tokio::sync::oneshot;
use tokio_stream::Stream;

use super::{Action, ActionContext, ActionReply, ActionService};
use crate::command::{Shape, Signature, panicked, unknown_command};
use crate::panic::{describe, guard_future};
use crate::service::{Described, Sealed, Services};
use crate::{Error, Failure, Metadata, Reply, SideEffect};

/// A response of an action call.
pub(crate) type Response = ActionResponse;

/// The payloads of the messages after the first of a streamed-in call.
pub(crate) type Payloads = BoxStream<'static, Option<Any>>;

/// The responses of a call; an error (a protocol violation) is the last item.
pub(crate) type Calls = BoxStream<'static, Result<Response, Error>>;

/// What a unary or client streaming handler produces: its client action.
pub(crate) type Single = Result<Option<protocol::client_action::Action>, Failure>;

/// What a server streaming or bidirectional handler produces: its responses.
pub(crate) type Many = Result<BoxStream<'static, Response>, Failure>;

/// A unary handler, erased: decodes the payload, runs the handler, encodes the reply.
pub(crate) type UnaryFn<A> = Box<
    dyn for<'a> Fn(&'a A, Option<Any>, &'a mut ActionContext) -> BoxFuture<'a, Single>
        + Send
        + Sync,
>;

/// A server streaming handler, erased.
pub(crate) type StreamedOutFn<A> = Box<
    dyn for<'a> Fn(&'a A, Option<Any>, &'a mut ActionContext) -> BoxFuture<'a, Many> + Send + Sync,
>;

/// A client streaming handler, erased: a request that does not decode goes to the sender.
pub(crate) type StreamedInFn<A> = Box<
    dyn for<'a> Fn(
            &'a A,
            Payloads,
            oneshot::Sender<Failure>,
            &'a mut ActionContext,
        ) -> BoxFuture<'a, Single>
        + Send
        + Sync,
>;

/// A bidirectional handler, erased: a request that does not decode goes to the sender.
pub(crate) type StreamedFn<A> = Box<
    dyn for<'a> Fn(
            &'a A,
            Payloads,
            oneshot::Sender<Failure>,
            &'a mut ActionContext,
        ) -> BoxFuture<'a, Many>
        + Send
        + Sync,
>;

/// A registered handler of one of the four shapes.
pub(crate) enum Handler<A> {
    Unary(UnaryFn<A>),
    StreamedOut(StreamedOutFn<A>),
    StreamedIn(StreamedInFn<A>),
    Streamed(StreamedFn<A>),
}

/// A registered action of any type, as the server sees it.
pub(crate) trait ActionType: Described {
    /// Runs a call of shape `shape` that starts with `header` (for the streamed-in shapes the
    /// other messages' payloads follow in `payloads`).
    fn call(self: Arc<Self>, shape: Shape, header: ActionCommand, payloads: Payloads) -> Calls;
}

/// Runs a call on the action its header names, among `actions`.
pub(crate) fn call(
    actions: &HashMap<String, Arc<dyn ActionType>>,
    shape: Shape,
    header: ActionCommand,
    payloads: Payloads,
) -> Calls {
    match actions.get(&header.service_name) {
        Some(action) => action.clone().call(shape, header, payloads),
        None => single(Err(Error::Protocol(format!(
            "unknown service {}",
            header.service_name
        )))),
    }
}

impl<A: Action> Described for ActionService<A> {
    fn spec(&self) -> protocol::Entity {
        protocol::Entity {
            entity_type: protocol::entity_type::ACTION.to_owned(),
            service_name: self.service_name.clone(),
            ..protocol::Entity::default()
        }
    }

    fn signatures(&self) -> Vec<Signature> {
        self.commands
            .handlers
            .values()
            .map(|(signature, _)| signature.clone())
            .collect()
    }
}

impl<A: Action> ActionType for ActionService<A> {
    fn call(self: Arc<Self>, shape: Shape, header: ActionCommand, payloads: Payloads) -> Calls {
        stream::once(async move { self.run(shape, header, payloads).await })
            .flatten()
            .boxed()
    }
}

impl<A: Action> Sealed for ActionService<A> {
    fn register(self, services: &mut Services) -> Result<(), Error> {
        let action = Arc::new(self);
        let name = services.check(&*action)?;
        services.actions.insert(name, action);
        Ok(())
    }
}

impl<A: Action> ActionService<A> {
    async fn run(&self, shape: Shape, header: ActionCommand, payloads: Payloads) -> Calls {
        let ActionCommand {
            name,
            payload,
            metadata,
            ..
        } = header;
        let Some((signature, handler)) = self.commands.handlers.get(&name) else {
            let failure = unknown_command(&name, &self.service_name);
            return single(Ok(response(Err(failure), Vec::new())));
        };
        if signature.shape != shape {
            return single(Err(Error::Protocol(format!(
                "method {name} is {}, but was called as {shape}",
                signature.shape
            ))));
        }
        if matches!(shape, Shape::StreamedIn | Shape::Streamed) && payload.is_some() {
            return single(Err(Error::Protocol(format!(
                "the first message of a {shape} call of {name} carries a payload"
            ))));
        }

        let mut ctx = ActionContext::new(Metadata::from_proto(metadata));
        let action = &self.action;
        // Handlers are called inside the guarded futures: a function that panics before it
        // returns its future is caught too.
        match handler {
            Handler::Unary(handler) => {
                let outcome = guard_future("the handler", async {
                    handler(action, payload, &mut ctx).await
                })
                .await;
                let (result, effects) = self.settle(&name, outcome, &mut ctx);
                single(Ok(response(result, effects)))
            }
            Handler::StreamedOut(handler) => {
                let outcome = guard_future("the handler", async {
                    handler(action, payload, &mut ctx).await
                })
                .await;
                let (result, effects) = self.settle(&name, outcome, &mut ctx);
                self.many(&name, result, effects)
            }
            Handler::StreamedIn(handler) => {
                let (failed, mut failure) = oneshot::channel();
                let outcome = guard_future("the handler", async {
                    handler(action, payloads, failed, &mut ctx).await
                })
                .await;
                let (result, effects) = self.settle(&name, outcome, &mut ctx);
                match failure.try_recv() {
                    Ok(failure) => single(Ok(response(Err(failure), Vec::new()))),
                    Err(_) => single(Ok(response(result, effects))),
                }
            }
            Handler::Streamed(handler) => {
                let (failed, failure) = oneshot::channel();
                let outcome = guard_future("the handler", async {
                    handler(action, payloads, failed, &mut ctx).await
                })
                .await;
                let (result, effects) = self.settle(&name, outcome, &mut ctx);
                let result = result.map(|responses| WatchInput::new(responses, failure).boxed());
                self.many(&name, result, effects)
            }
        }
    }

    /// The result of handler `name` and the side effects to send with it: none if it panicked.
    fn settle<T>(
        &self,
        name: &str,
        outcome: Result<Result<T, Failure>, String>,
        ctx: &mut ActionContext,
    ) -> (Result<T, Failure>, Vec<SideEffect>) {
        match outcome {
            Ok(result) => (result, ctx.take_side_effects()),
            Err(panic) => (Err(panicked(&self.service_name, name, &panic)), Vec::new()),
        }
    }

    /// The responses of a streamed-out handler `name` that produced `result`: a failure alone,
    /// or the stream, preceded by a response with no reply carrying the context's side
    /// effects, if there are any.
    fn many(
        &self,
        name: &str,
        result: Result<BoxStream<'static, Response>, Failure>,
        effects: Vec<SideEffect>,
    ) -> Calls {
        match result {
            Err(failure) => single(Ok(response(Err(failure), effects))),
            Ok(responses) => {
                let leading = (!effects.is_empty()).then(|| response(Ok(None), effects));
                let service = self.service_name.clone();
                let name = name.to_owned();
                let responses = AssertUnwindSafe(responses).catch_unwind().map(move |item| {
                    item.unwrap_or_else(|payload| {
                        let panic = describe("the reply stream", payload.as_ref());
                        response(Err(panicked(&service, &name, &panic)), Vec::new())
                    })
                });
                stream::iter(leading).chain(responses).map(Ok).boxed()
            }
        }
    }
}

/// A call's only item.
fn single(item: Result<Response, Error>) -> Calls {
    stream::iter([item]).boxed()
}

/// The protocol's response for a client action or a failure, with side effects.
pub(crate) fn response(result: Single, side_effects: Vec<SideEffect>) -> Response {
    let response = match result {
        Ok(action) => action.map(|action| match action {
            protocol::client_action::Action::Reply(reply) => {
                action_response::Response::Reply(reply)
            }
            protocol::client_action::Action::Forward(forward) => {
                action_response::Response::Forward(forward)
            }
            protocol::client_action::Action::Failure(failure) => {
                action_response::Response::Failure(failure)
            }
        }),
        // Actions have no command ids.
        Err(failure) => Some(action_response::Response::Failure(failure.into_proto(0))),
    };
    ActionResponse {
        response,
        side_effects: side_effects
            .into_iter()
            .map(SideEffect::into_proto)
            .collect(),
    }
}

/// The protocol's response for one reply of a stream.
pub(crate) fn reply_response<M: Message + Name>(reply: ActionReply<M>) -> Response {
    response(reply.result.map(Reply::into_action), reply.side_effects)
}

/// The responses of a bidirectional call, ended by a failure when a request does not decode.
struct WatchInput {
    responses: Option<BoxStream<'static, Response>>,
    failure: Option<oneshot::Receiver<Failure>>,
}

impl WatchInput {
    fn new(responses: BoxStream<'static, Response>, failure: oneshot::Receiver<Failure>) -> Self {
        WatchInput {
            responses: Some(responses),
            failure: Some(failure),
        }
    }

    /// Ends the responses with `failure`.
    fn fail(&mut self, failure: Failure) -> Response {
        self.responses = None;
        self.failure = None;
        response(Err(failure), Vec::new())
    }
}

impl Stream for WatchInput {
    type Item = Response;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let this = &mut *self;
        if let Some(failure) = &mut this.failure {
            match Pin::new(failure).poll(cx) {
                Poll::Ready(Ok(failure)) => return Poll::Ready(Some(this.fail(failure))),
                // The requests ended without a failure.
                Poll::Ready(Err(_)) => this.failure = None,
                Poll::Pending => {}
            }
        }
        let Some(responses) = &mut this.responses else {
            return Poll::Ready(None);
        };
        match ready!(responses.poll_next_unpin(cx)) {
            Some(response) => Poll::Ready(Some(response)),
            None => {
                // The responses may have ended because the requests did, at a failure.
                let failure = this
                    .failure
                    .take()
                    .and_then(|mut failure| failure.try_recv().ok());
                this.responses = None;
                Poll::Ready(failure.map(|failure| response(Err(failure), Vec::new())))
            }
        }
    }
}
