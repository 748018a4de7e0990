//! Actions: stateless, asynchronous handlers of a gRPC service, in all four call shapes. The
//! [`Action`] trait a type implements, its handlers ([`ActionCommands`], [`ActionContext`]),
//! the streams they take and return ([`RequestStream`], [`ReplyStream`], [`ActionReply`]) and
//! the registration ([`ActionService`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, future};
use prost::{Message, Name};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::command::{Shape, Signature, decode_request};
use crate::{Call, Error, Failure, IntoReply, Metadata, Reply, SideEffect};

mod dispatch;

pub(crate) use dispatch::{ActionType, Calls, Payloads, call};
use dispatch::{Handler, Many, Single};

/// A stateless service: a type whose methods handle the calls of one gRPC service, one call
/// at a time or many concurrently. Its handlers are the methods of the trait `cloudstate-build`
/// generates for the service (e.g. `proto::Checkout`), which the type implements.
///
/// One value serves every call (the registration owns it), so it is the place for clients of
/// other services, configuration and other shared resources. Handlers are `async` methods
/// taking `&self`, the decoded request (or a [`RequestStream`] of them) and an
/// [`ActionContext`]; they return the reply (or a [`ReplyStream`]) or a [`Failure`]:
///
/// | method shape | handler |
/// |---|---|
/// | unary | `async fn(&self, In, &mut ActionContext) -> Result<Reply<Out>, Failure>` |
/// | server streaming | `async fn(&self, In, &mut ActionContext) -> Result<ReplyStream<Out>, Failure>` |
/// | client streaming | `async fn(&self, RequestStream<In>, &mut ActionContext) -> Result<Reply<Out>, Failure>` |
/// | bidirectional | `async fn(&self, RequestStream<In>, &mut ActionContext) -> Result<ReplyStream<Out>, Failure>` |
pub trait Action: Send + Sync + 'static {}

impl<T: Send + Sync + 'static> Action for T {}

/// An asynchronous handler of an action method: a function (usually an `async fn`) taking the
/// action, the input and the context and returning a `Send` future of the output or a
/// [`Failure`].
///
/// Implemented for every such function; the lifetime `'a` lets the future borrow the action
/// and the context, as an `async fn` taking `&self` and `&mut ActionContext` does. (Closures
/// qualify only when their future borrows neither.)
pub trait ActionHandler<'a, A: 'a, In, Out>: Send + Sync + 'static {
    /// The future the handler returns.
    type Future: Future<Output = Result<Out, Failure>> + Send + 'a;

    /// Calls the handler.
    fn call(&self, action: &'a A, input: In, ctx: &'a mut ActionContext) -> Self::Future;
}

impl<'a, A: 'a, In, Out, F, Fut> ActionHandler<'a, A, In, Out> for F
where
    F: Fn(&'a A, In, &'a mut ActionContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, Failure>> + Send + 'a,
{
    type Future = Fut;

    fn call(&self, action: &'a A, input: In, ctx: &'a mut ActionContext) -> Fut {
        self(action, input, ctx)
    }
}

/// What an action handler can do besides replying: read the call's metadata and request side
/// effects.
///
/// The side effects go with the call's response (for a streamed response, in a response of
/// their own before the stream's). Unlike an entity's, they are sent even when the handler
/// returns a [`Failure`] (the proxy runs them, as the original protocol has it); they are
/// discarded only when the handler panics.
#[derive(Debug)]
pub struct ActionContext {
    metadata: Metadata,
    side_effects: Vec<SideEffect>,
}

impl ActionContext {
    pub(crate) fn new(metadata: Metadata) -> Self {
        ActionContext {
            metadata,
            side_effects: Vec::new(),
        }
    }

    /// The call's metadata: the request headers the proxy passed on.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Asks the proxy to make `effect` (a generated call, e.g.
    /// `proto::inventory::reserve(request)`, or `call.synchronous()`) along with
    /// the response: a synchronous one is waited for before the client gets it (and its
    /// failure fails the call). The call's result is ignored.
    pub fn side_effect(&mut self, effect: impl Into<SideEffect>) {
        self.side_effects.push(effect.into());
    }

    /// The side effects recorded so far.
    pub(crate) fn take_side_effects(&mut self) -> Vec<SideEffect> {
        std::mem::take(&mut self.side_effects)
    }
}

/// One response of a streamed action call: a reply message, a forward, no reply, or a failure,
/// with the side effects the proxy runs for it.
///
/// Converts from a [`Reply`], a [`Failure`] and a `Result` of a reply or message and a
/// failure, so a stream may yield those directly.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionReply<M> {
    result: Result<Reply<M>, Failure>,
    side_effects: Vec<SideEffect>,
}

impl<M> ActionReply<M> {
    /// A reply with `message`.
    pub fn message(message: M) -> Self {
        Reply::Message(message).into()
    }

    /// A forward to `call` (a generated call of a method with the same output type); the
    /// proxy sends the client that method's reply.
    pub fn forward(call: Call<M>) -> Self {
        Reply::forward(call).into()
    }

    /// No message for the client (its side effects still run).
    pub fn no_reply() -> Self {
        Reply::NoReply.into()
    }

    /// A failure: the proxy ends the client's call with this error.
    pub fn failure(failure: Failure) -> Self {
        failure.into()
    }

    /// Adds a side effect the proxy runs before sending this response.
    pub fn with_side_effect(mut self, effect: impl Into<SideEffect>) -> Self {
        self.side_effects.push(effect.into());
        self
    }
}

impl<M> From<Reply<M>> for ActionReply<M> {
    fn from(reply: Reply<M>) -> Self {
        ActionReply {
            result: Ok(reply),
            side_effects: Vec::new(),
        }
    }
}

impl<M> From<Failure> for ActionReply<M> {
    fn from(failure: Failure) -> Self {
        ActionReply {
            result: Err(failure),
            side_effects: Vec::new(),
        }
    }
}

impl<M, R: IntoReply<Output = M>> From<Result<R, Failure>> for ActionReply<M> {
    fn from(result: Result<R, Failure>) -> Self {
        ActionReply {
            result: result.map(IntoReply::into_reply),
            side_effects: Vec::new(),
        }
    }
}

/// The responses of a server streaming or bidirectional action call, in order.
///
/// Built from any `Send` stream of [`ActionReply`]s (or of what converts into one) with
/// [`new`](Self::new), or fed from a task through a [`ReplySender`] made by
/// [`channel`](Self::channel). The call ends when the stream does; a failure does not end it
/// (the proxy ends the client's call at a failure).
pub struct ReplyStream<M> {
    replies: BoxStream<'static, ActionReply<M>>,
}

impl<M: Message + Name + 'static> ReplyStream<M> {
    /// The responses `replies` yields.
    pub fn new<S, T>(replies: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
        T: Into<ActionReply<M>> + 'static,
    {
        ReplyStream {
            replies: replies.map(Into::into).boxed(),
        }
    }

    /// A stream fed by the returned sender: it yields what is sent, and ends when every sender
    /// is dropped. `buffer` replies (at least 1) may wait to be sent before
    /// [`ReplySender::send`] waits.
    pub fn channel(buffer: usize) -> (ReplySender<M>, Self) {
        let (sender, receiver) = mpsc::channel(buffer.max(1));
        let stream = ReplyStream {
            replies: ReceiverStream::new(receiver).boxed(),
        };
        (ReplySender { sender }, stream)
    }

    /// The protocol's responses.
    fn into_responses(self) -> BoxStream<'static, dispatch::Response> {
        self.replies.map(dispatch::reply_response).boxed()
    }
}

/// Sends the responses of a [`ReplyStream::channel`].
pub struct ReplySender<M> {
    sender: mpsc::Sender<ActionReply<M>>,
}

impl<M> Clone for ReplySender<M> {
    fn clone(&self) -> Self {
        ReplySender {
            sender: self.sender.clone(),
        }
    }
}

impl<M> ReplySender<M> {
    /// Sends one response, waiting while the buffer is full.
    ///
    /// # Errors
    ///
    /// [`Error::CallEnded`] when nobody reads the responses any more (the proxy or the client
    /// ended the call): stop producing.
    pub async fn send(&self, reply: impl Into<ActionReply<M>>) -> Result<(), Error> {
        self.sender
            .send(reply.into())
            .await
            .map_err(|_| Error::CallEnded)
    }

    /// Whether the call ended, so that further sends fail.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The requests of a client streaming or bidirectional action call, decoded, in order; ends
/// when the client half-closes its stream.
///
/// A request that does not decode as `M` ends the stream, and the call fails with
/// `INVALID_ARGUMENT` (its handler's result is then ignored). Use it with the combinators of
/// `tokio_stream::StreamExt` or `futures::StreamExt`.
pub struct RequestStream<M> {
    requests: BoxStream<'static, M>,
}

impl<M: Message + Name + Default + 'static> RequestStream<M> {
    /// The requests of command `command`, decoded from `payloads`; the first that does not
    /// decode ends the stream and goes to `failed`.
    fn decoding(command: Arc<str>, payloads: Payloads, failed: oneshot::Sender<Failure>) -> Self {
        let mut failed = Some(failed);
        let requests = payloads
            .scan((), move |(), payload| {
                future::ready(match decode_request::<M>(&command, payload) {
                    Ok(request) => Some(request),
                    Err(failure) => {
                        if let Some(failed) = failed.take() {
                            // The call may be over already; then nobody needs to know.
                            failed.send(failure).ok();
                        }
                        None
                    }
                })
            })
            .boxed();
        RequestStream { requests }
    }
}

impl<M> Stream for RequestStream<M> {
    type Item = M;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<M>> {
        self.requests.poll_next_unpin(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.requests.size_hint()
    }
}

/// The handlers of an action, by gRPC method name; filled in by the code `cloudstate-build`
/// generates.
///
/// At registration the server checks each handler's input and output types and shape against
/// the method's in the descriptor set. Registering a method twice keeps the last handler.
#[doc(hidden)]
pub struct ActionCommands<A> {
    handlers: HashMap<String, (Signature, Handler<A>)>,
}

impl<A: Action> ActionCommands<A> {
    fn new() -> Self {
        ActionCommands {
            handlers: HashMap::new(),
        }
    }

    fn insert<In: Name, Out: Name>(&mut self, method: &str, shape: Shape, handler: Handler<A>) {
        let signature = Signature {
            method: method.to_owned(),
            input: In::full_name(),
            output: Out::full_name(),
            shape,
        };
        self.handlers
            .insert(method.to_owned(), (signature, handler));
    }

    /// Handles the unary method `method` with `handler`, an
    /// `async fn(&A, In, &mut ActionContext) -> Result<R, Failure>` where `R` is the output
    /// message, `()` (`google.protobuf.Empty`) or a [`Reply`].
    pub fn unary<In, R, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        R: IntoReply + 'static,
        F: for<'a> ActionHandler<'a, A, In, R>,
    {
        let name: Arc<str> = method.into();
        let call: dispatch::UnaryFn<A> = Box::new(
            move |action, payload, ctx| match decode_request::<In>(&name, payload) {
                Ok(request) => handler
                    .call(action, request, ctx)
                    .map(|result| result.map(|reply| reply.into_reply().into_action()))
                    .boxed(),
                Err(failure) => future::ready::<Single>(Err(failure)).boxed(),
            },
        );
        self.insert::<In, R::Output>(method, Shape::Unary, Handler::Unary(call));
        self
    }

    /// Handles the server streaming method `method` with `handler`, an
    /// `async fn(&A, In, &mut ActionContext) -> Result<ReplyStream<Out>, Failure>`.
    ///
    /// A failure instead of a stream is the call's only response.
    pub fn server_streaming<In, Out, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        Out: Message + Name + 'static,
        F: for<'a> ActionHandler<'a, A, In, ReplyStream<Out>>,
    {
        let name: Arc<str> = method.into();
        let call: dispatch::StreamedOutFn<A> =
            Box::new(
                move |action, payload, ctx| match decode_request::<In>(&name, payload) {
                    Ok(request) => handler
                        .call(action, request, ctx)
                        .map(|result| result.map(ReplyStream::into_responses))
                        .boxed(),
                    Err(failure) => future::ready::<Many>(Err(failure)).boxed(),
                },
            );
        self.insert::<In, Out>(method, Shape::StreamedOut, Handler::StreamedOut(call));
        self
    }

    /// Handles the client streaming method `method` with `handler`, an
    /// `async fn(&A, RequestStream<In>, &mut ActionContext) -> Result<R, Failure>` where `R` is
    /// the output message, `()` (`google.protobuf.Empty`) or a [`Reply`].
    pub fn client_streaming<In, R, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        R: IntoReply + 'static,
        F: for<'a> ActionHandler<'a, A, RequestStream<In>, R>,
    {
        let name: Arc<str> = method.into();
        let call: dispatch::StreamedInFn<A> = Box::new(move |action, payloads, failed, ctx| {
            let requests = RequestStream::decoding(name.clone(), payloads, failed);
            handler
                .call(action, requests, ctx)
                .map(|result| result.map(|reply| reply.into_reply().into_action()))
                .boxed()
        });
        self.insert::<In, R::Output>(method, Shape::StreamedIn, Handler::StreamedIn(call));
        self
    }

    /// Handles the bidirectional streaming method `method` with `handler`, an
    /// `async fn(&A, RequestStream<In>, &mut ActionContext) -> Result<ReplyStream<Out>, Failure>`.
    ///
    /// The handler returns the reply stream at once (typically built from the requests, e.g.
    /// with `StreamExt::map`); responses flow while requests arrive. A failure instead of a
    /// stream is the call's only response.
    pub fn streamed<In, Out, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        Out: Message + Name + 'static,
        F: for<'a> ActionHandler<'a, A, RequestStream<In>, ReplyStream<Out>>,
    {
        let name: Arc<str> = method.into();
        let call: dispatch::StreamedFn<A> = Box::new(move |action, payloads, failed, ctx| {
            let requests = RequestStream::decoding(name.clone(), payloads, failed);
            handler
                .call(action, requests, ctx)
                .map(|result| result.map(ReplyStream::into_responses))
                .boxed()
        });
        self.insert::<In, Out>(method, Shape::Streamed, Handler::Streamed(call));
        self
    }
}

/// An action as registered with the [`Server`](crate::Server) or a
/// [`testkit`](crate::testkit): the gRPC service it implements and the value that serves it.
pub struct ActionService<A: Action> {
    service_name: String,
    action: A,
    commands: ActionCommands<A>,
}

impl<A: Action> ActionService<A> {
    /// `action` serving `service_name` with the handlers `register` adds. For generated code:
    /// users call the generated `action(value)` of their service's module.
    #[doc(hidden)]
    pub fn new(
        service_name: &str,
        action: A,
        register: impl FnOnce(&mut ActionCommands<A>),
    ) -> Self {
        let mut commands = ActionCommands::new();
        register(&mut commands);
        ActionService {
            service_name: service_name.to_owned(),
            action,
            commands,
        }
    }

    /// The full name of the action's service.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }
}
