//! Command handlers: the registry a stateful entity type fills in (shared by event sourced and
//! value entities), and what every kind of handler shares: decoding requests, the failures for
//! unknown commands and panics, and the signatures checked against the descriptor set.

use std::collections::HashMap;
use std::fmt;

use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};
use tonic::Code;

use crate::panic::guard;
use crate::{Failure, IntoReply};

/// The shape of a gRPC method: whether its input and its output are streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    StreamedIn,
    /// One request, a stream of responses.
    StreamedOut,
    /// Streams both ways.
    Streamed,
}

impl Shape {
    /// The shape of a method with these streaming flags.
    pub(crate) fn of(client_streaming: bool, server_streaming: bool) -> Self {
        match (client_streaming, server_streaming) {
            (false, false) => Shape::Unary,
            (true, false) => Shape::StreamedIn,
            (false, true) => Shape::StreamedOut,
            (true, true) => Shape::Streamed,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Unary => "unary",
            Shape::StreamedIn => "client streaming",
            Shape::StreamedOut => "server streaming",
            Shape::Streamed => "bidirectional streaming",
        })
    }
}

/// A handler's method, message types and shape, as checked against the descriptor set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signature {
    /// The gRPC method name.
    pub(crate) method: String,
    /// Full name of the input message.
    pub(crate) input: String,
    /// Full name of the output message.
    pub(crate) output: String,
    /// Whether input and output are streams.
    pub(crate) shape: Shape,
}

/// A type-erased entity command handler: decodes the payload, runs the handler, encodes the
/// reply.
type HandlerFn<S, C> = dyn Fn(&S, Option<Any>, &mut C) -> Result<Option<protocol::client_action::Action>, Failure>
    + Send
    + Sync;

/// A registered command handler.
struct Handler<S, C> {
    signature: Signature,
    call: Box<HandlerFn<S, C>>,
}

/// The command handlers of a stateful entity type, by gRPC method name: state `S`, context `C`.
///
/// Filled in by the code `cloudstate-build` generates, for event sourced entities (as
/// `Commands`) and value entities (as `ValueCommands`).
#[doc(hidden)]
pub struct CommandHandlers<S, C> {
    handlers: HashMap<String, Handler<S, C>>,
}

impl<S, C> CommandHandlers<S, C> {
    pub(crate) fn new() -> Self {
        CommandHandlers {
            handlers: HashMap::new(),
        }
    }

    /// Handles the service method `method` with `handler`.
    ///
    /// The handler gets the state, the decoded request and the context
    /// ([`CommandContext`](crate::CommandContext) for event sourced entities,
    /// [`ValueContext`](crate::ValueContext) for value entities), and returns the reply (the
    /// method's output message, `()` for `google.protobuf.Empty`, or a
    /// [`Reply`](crate::Reply)) or a [`Failure`]. Registering a method twice keeps the last
    /// handler. At registration the server checks the handler's input and output types
    /// against the method's in the descriptor set.
    pub fn add<In, R, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        R: IntoReply,
        F: Fn(&S, In, &mut C) -> Result<R, Failure> + Send + Sync + 'static,
    {
        let name = method.to_owned();
        let call = move |state: &S, payload: Option<Any>, ctx: &mut C| {
            let request = decode_request::<In>(&name, payload)?;
            handler(state, request, ctx).map(|reply| reply.into_reply().into_action())
        };
        self.handlers.insert(
            method.to_owned(),
            Handler {
                signature: Signature {
                    method: method.to_owned(),
                    input: In::full_name(),
                    output: <R::Output as Name>::full_name(),
                    shape: Shape::Unary,
                },
                call: Box::new(call),
            },
        );
        self
    }

    /// Runs command `name` of `service` on `state`: its client action, or the failure for an
    /// unknown command, a request that does not decode, a failing or a panicking handler.
    pub(crate) fn dispatch(
        &self,
        service: &str,
        entity_id: &str,
        state: &S,
        name: &str,
        payload: Option<Any>,
        ctx: &mut C,
    ) -> Result<Option<protocol::client_action::Action>, Failure> {
        let handler = self
            .handlers
            .get(name)
            .ok_or_else(|| unknown_command(name, service))?;
        guard("the handler", || (handler.call)(state, payload, ctx))
            .unwrap_or_else(|panic| Err(panicked(entity_id, name, &panic)))
    }

    /// The signatures of the handlers.
    pub(crate) fn signatures(&self) -> Vec<Signature> {
        self.handlers
            .values()
            .map(|handler| handler.signature.clone())
            .collect()
    }
}

/// Decodes the request of command `command` as `In`: a payload of another type (by type URL) or
/// that does not decode is the command's failure (`INVALID_ARGUMENT`); no payload is `In`'s
/// default.
pub(crate) fn decode_request<In: Message + Name + Default>(
    command: &str,
    payload: Option<Any>,
) -> Result<In, Failure> {
    let payload = payload.unwrap_or_default();
    if !payload.type_url.is_empty() && payload.type_name() != In::full_name() {
        return Err(Failure::new(format!(
            "Command {command} expects a {} but got a {}",
            In::full_name(),
            payload.type_url
        ))
        .with_code(Code::InvalidArgument));
    }
    In::decode(payload.value).map_err(|error| {
        Failure::new(format!(
            "Command {command}: cannot decode the request as {}: {error}",
            In::full_name()
        ))
        .with_code(Code::InvalidArgument)
    })
}

/// The failure of a command that has no handler (`UNIMPLEMENTED`).
pub(crate) fn unknown_command(command: &str, service: &str) -> Failure {
    Failure::new(format!("Unknown command {command} on service {service}"))
        .with_code(Code::Unimplemented)
}

/// Logs a panic of user code running command `command` of `entity` (an entity id, or an
/// action's service) and returns the command's failure.
pub(crate) fn panicked(entity: &str, command: &str, panic: &str) -> Failure {
    tracing::error!(entity, command, "{panic}");
    Failure::new(format!("Command {command} failed: {panic}"))
}
