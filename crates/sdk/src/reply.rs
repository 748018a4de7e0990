//! What a command handler produces besides state changes: its reply (a message, a forward or
//! nothing), side effects, and failures.

use std::fmt;
use std::marker::PhantomData;

use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};
use tonic::Code;

use crate::Error;

/// The reply of a command whose method returns `M`.
///
/// Handlers usually return `M` itself (see [`IntoReply`]); `Reply` is for the other two cases.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<M> {
    /// Reply with this message (sent as `type.googleapis.com/<full name of M>`).
    Message(M),
    /// Hand the command over to another service method; its reply becomes this command's.
    Forward(Forward),
    /// No client action: the proxy sends the client no message for this command.
    NoReply,
}

impl<M> Reply<M> {
    /// Hands the command over to `call` (a method with the same output type, from the
    /// generated code: `proto::inventory::reserve(request)`); its reply becomes this
    /// command's.
    ///
    /// The proxy executes the forward after this command's state change (events, value) is
    /// durable and its side effects ran.
    pub fn forward(call: Call<M>) -> Self {
        Reply::Forward(call.into_forward())
    }
}

impl<M> From<M> for Reply<M> {
    fn from(message: M) -> Self {
        Reply::Message(message)
    }
}

/// A call of one method of a service, typed by the method's output `Out`: what a forward
/// ([`Reply::forward`]) or a side effect (the contexts' `side_effect`) targets, and what the
/// testkits run.
///
/// `cloudstate-build` generates a function per method that makes one, e.g.
/// `proto::shopping_cart::add_item(request)`, so the service, the method and the request
/// type are checked by the compiler.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<Out> {
    service: &'static str,
    method: &'static str,
    payload: Any,
    output: PhantomData<fn() -> Out>,
}

impl<Out> Call<Out> {
    /// A call of `service` (full name) `method` with `request`. For generated code.
    #[doc(hidden)]
    pub fn new<In: Message + Name>(
        service: &'static str,
        method: &'static str,
        request: &In,
    ) -> Self {
        Call {
            service,
            method,
            payload: Any::from_message(request),
            output: PhantomData,
        }
    }

    /// Full name of the called service.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Name of the called method.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The request, as sent.
    pub fn payload(&self) -> &Any {
        &self.payload
    }

    /// As a side effect the proxy waits for before answering the client (and whose failure
    /// fails the command); a `Call` used as a side effect as it is is asynchronous.
    pub fn synchronous(self) -> SideEffect {
        SideEffect {
            synchronous: true,
            ..self.into()
        }
    }

    pub(crate) fn into_parts(self) -> (&'static str, &'static str, Any) {
        (self.service, self.method, self.payload)
    }

    fn into_forward(self) -> Forward {
        Forward {
            service: self.service.to_owned(),
            method: self.method.to_owned(),
            payload: self.payload,
        }
    }
}

/// An asynchronous side effect: the proxy calls the method and does not wait for it.
impl<Out> From<Call<Out>> for SideEffect {
    fn from(call: Call<Out>) -> Self {
        SideEffect {
            service: call.service.to_owned(),
            method: call.method.to_owned(),
            payload: call.payload,
            synchronous: false,
        }
    }
}

/// What a handler may return in `Ok`: a reply message `M` (including `()`, which is
/// `google.protobuf.Empty`) or a [`Reply<M>`].
pub trait IntoReply {
    /// The message type of the method's output.
    type Output: Message + Name;

    /// Converts into a [`Reply`].
    fn into_reply(self) -> Reply<Self::Output>;
}

impl<M: Message + Name> IntoReply for M {
    type Output = M;

    fn into_reply(self) -> Reply<M> {
        Reply::Message(self)
    }
}

impl<M: Message + Name> IntoReply for Reply<M> {
    type Output = M;

    fn into_reply(self) -> Reply<M> {
        self
    }
}

impl<M: Message + Name> Reply<M> {
    /// The protocol's client action; `None` for [`Reply::NoReply`].
    pub(crate) fn into_action(self) -> Option<protocol::client_action::Action> {
        match self {
            Reply::Message(message) => Some(protocol::client_action::Action::Reply(
                protocol::Reply::with_payload(Any::from_message(&message)),
            )),
            Reply::Forward(forward) => Some(protocol::client_action::Action::Forward(
                forward.into_proto(),
            )),
            Reply::NoReply => None,
        }
    }
}

/// A command handed over to another service method.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// Full name of the target service.
    pub service: String,
    /// Name of the target method.
    pub method: String,
    /// The target method's input.
    pub payload: Any,
}

impl Forward {
    fn into_proto(self) -> protocol::Forward {
        protocol::Forward {
            service_name: self.service,
            command_name: self.method,
            payload: Some(self.payload),
            metadata: None,
        }
    }

    /// Converts the protocol's message.
    pub(crate) fn from_proto(forward: protocol::Forward) -> Self {
        Forward {
            service: forward.service_name,
            method: forward.command_name,
            payload: forward.payload.unwrap_or_default(),
        }
    }
}

/// A further call the proxy makes on a handler's behalf, after the command's state change is
/// durable and before the client gets its answer; its result is ignored.
///
/// Made from a [`Call`]: as it is (asynchronous) or with [`Call::synchronous`]. Handlers add
/// them with their context's `side_effect` method (every kind of context has one); streamed
/// action replies carry their own
/// ([`ActionReply::with_side_effect`](crate::ActionReply::with_side_effect)).
#[derive(Debug, Clone, PartialEq)]
pub struct SideEffect {
    /// Full name of the service to call.
    pub service: String,
    /// Name of the method to call.
    pub method: String,
    /// The method's input.
    pub payload: Any,
    /// Whether the proxy waits for the call to finish before replying.
    pub synchronous: bool,
}

impl SideEffect {
    pub(crate) fn into_proto(self) -> protocol::SideEffect {
        protocol::SideEffect {
            service_name: self.service,
            command_name: self.method,
            payload: Some(self.payload),
            synchronous: self.synchronous,
            metadata: None,
        }
    }

    pub(crate) fn from_proto(effect: protocol::SideEffect) -> Self {
        SideEffect {
            service: effect.service_name,
            method: effect.command_name,
            payload: effect.payload.unwrap_or_default(),
            synchronous: effect.synchronous,
        }
    }
}

/// A command that failed: the client gets an error with this description.
///
/// For entities, the command's events or state change and its side effects are discarded
/// (never sent to the proxy). An action's side effects still go with its failure (the proxy
/// runs them), as in the original protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    description: String,
    code: Option<Code>,
    restart: bool,
}

impl Failure {
    /// A failure the client sees as gRPC `UNKNOWN` with `description` (HTTP 500): the only
    /// kind the original protocol knows. The constructors named after the other status codes
    /// (`Failure::not_found`, `Failure::invalid_argument`, ...) choose the code.
    pub fn new(description: impl Into<String>) -> Self {
        Failure {
            description: description.into(),
            code: None,
            restart: false,
        }
    }

    /// A failure the client sees as gRPC `CANCELLED` with `description`.
    pub fn cancelled(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::Cancelled)
    }

    /// A failure the client sees as gRPC `INVALID_ARGUMENT` with `description`.
    pub fn invalid_argument(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::InvalidArgument)
    }

    /// A failure the client sees as gRPC `DEADLINE_EXCEEDED` with `description`.
    pub fn deadline_exceeded(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::DeadlineExceeded)
    }

    /// A failure the client sees as gRPC `NOT_FOUND` with `description`.
    pub fn not_found(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::NotFound)
    }

    /// A failure the client sees as gRPC `ALREADY_EXISTS` with `description`.
    pub fn already_exists(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::AlreadyExists)
    }

    /// A failure the client sees as gRPC `PERMISSION_DENIED` with `description`.
    pub fn permission_denied(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::PermissionDenied)
    }

    /// A failure the client sees as gRPC `RESOURCE_EXHAUSTED` with `description`.
    pub fn resource_exhausted(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::ResourceExhausted)
    }

    /// A failure the client sees as gRPC `FAILED_PRECONDITION` with `description`.
    pub fn failed_precondition(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::FailedPrecondition)
    }

    /// A failure the client sees as gRPC `ABORTED` with `description`.
    pub fn aborted(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::Aborted)
    }

    /// A failure the client sees as gRPC `OUT_OF_RANGE` with `description`.
    pub fn out_of_range(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::OutOfRange)
    }

    /// A failure the client sees as gRPC `UNIMPLEMENTED` with `description`.
    pub fn unimplemented(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::Unimplemented)
    }

    /// A failure the client sees as gRPC `INTERNAL` with `description`.
    pub fn internal(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::Internal)
    }

    /// A failure the client sees as gRPC `UNAVAILABLE` with `description`.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::Unavailable)
    }

    /// A failure the client sees as gRPC `DATA_LOSS` with `description`.
    pub fn data_loss(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::DataLoss)
    }

    /// A failure the client sees as gRPC `UNAUTHENTICATED` with `description`.
    pub fn unauthenticated(description: impl Into<String>) -> Self {
        Failure::new(description).with_code(Code::Unauthenticated)
    }

    /// Sets the gRPC status code the client sees instead of `UNKNOWN` (this implementation's
    /// protocol extension `Failure.grpc_status_code`; the original proxy ignores it), for a
    /// code known only at run time.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = (code != Code::Unknown).then_some(code);
        self
    }

    /// Asks the proxy to restart the entity after replying: close the stream and recover the
    /// state from the journal on a new one (event sourced entities only; value entities and
    /// actions ignore it).
    pub fn with_restart(mut self) -> Self {
        self.restart = true;
        self
    }

    /// The text the client sees.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The gRPC status code the client sees, if not `UNKNOWN`.
    pub fn code(&self) -> Option<Code> {
        self.code
    }

    /// Whether the proxy is asked to restart the entity.
    pub fn restart(&self) -> bool {
        self.restart
    }

    /// The protocol's failure of command `command_id`.
    pub(crate) fn into_proto(self, command_id: i64) -> protocol::Failure {
        protocol::Failure {
            command_id,
            description: self.description,
            restart: self.restart,
            grpc_status_code: self.code.map_or(0, i32::from),
        }
    }

    pub(crate) fn from_proto(failure: protocol::Failure) -> Self {
        Failure {
            description: failure.description,
            code: (failure.grpc_status_code != 0).then(|| Code::from(failure.grpc_status_code)),
            restart: failure.restart,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl std::error::Error for Failure {}

/// Decodes `any` as `M`, checking that its type URL names `M`.
pub(crate) fn decode_any<M: Message + Name + Default>(any: &Any) -> Result<M, Error> {
    match any.to_message::<M>() {
        Some(Ok(message)) => Ok(message),
        Some(Err(reason)) => Err(Error::Decode {
            type_url: any.type_url.clone(),
            reason,
        }),
        None => Err(Error::UnknownType {
            type_url: any.type_url.clone(),
        }),
    }
}
