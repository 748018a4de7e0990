//! Event sourced entities: the [`EventSourcedEntity`] trait a state type implements, its command
//! handlers ([`Commands`], [`CommandContext`]) and its registration ([`EventSourced`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};

use crate::{Error, Failure, IntoReply, SideEffect};

pub(crate) mod session;

/// The state of an event sourced entity: what it is built from (a fresh start or a snapshot),
/// how events change it, and which commands it handles.
///
/// State changes only through [`apply`](Self::apply): command handlers read the state and emit
/// events, which the SDK applies after the handler succeeds, in order, exactly as it applies
/// them when the proxy replays the journal. `apply` must therefore be deterministic and must
/// not fail: validate in the command handler, before emitting.
pub trait EventSourcedEntity: Sized + Send + 'static {
    /// The entity's events, usually an enum declared with [`events!`](crate::events).
    type Event: Event;
    /// The protobuf message that stores the whole state; `()` (`google.protobuf.Empty`) if the
    /// entity never snapshots.
    type Snapshot: Message + Name + Default + Clone + fmt::Debug;

    /// The state of an entity that has no snapshot, before any event.
    fn new(entity_id: &str) -> Self;

    /// The state stored in `snapshot` (the inverse of [`snapshot`](Self::snapshot)).
    fn from_snapshot(entity_id: &str, snapshot: Self::Snapshot) -> Self;

    /// The whole state as a snapshot message.
    fn snapshot(&self) -> Self::Snapshot;

    /// Applies one event to the state.
    fn apply(&mut self, event: &Self::Event);

    /// Registers a handler for each command (gRPC method) of the entity's service.
    fn commands(commands: &mut Commands<Self>);
}

/// The events of an entity: each converts to and from a `google.protobuf.Any` whose type URL
/// names its protobuf message. The [`events!`](crate::events) macro implements it for an enum
/// with one protobuf message per variant.
pub trait Event: fmt::Debug + Clone + Send + 'static {
    /// The event as stored in the journal.
    fn to_any(&self) -> Any;

    /// The event stored as `any`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownType`] when the type URL names none of the event types,
    /// [`Error::Decode`] when the bytes do not decode.
    fn from_any(any: &Any) -> Result<Self, Error>;
}

/// Declares an enum of events, one protobuf message type per variant, and implements
/// [`Event`] for it (by type URL `type.googleapis.com/<full message name>`) and `From<Message>`
/// for each variant, so handlers can `ctx.emit(ItemAdded { .. })`.
///
/// ```
/// # mod persistence {
/// #     #[derive(Clone, PartialEq, prost::Message)]
/// #     pub struct ItemAdded { #[prost(string, tag = "1")] pub product_id: String }
/// #     #[derive(Clone, PartialEq, prost::Message)]
/// #     pub struct ItemRemoved { #[prost(string, tag = "1")] pub product_id: String }
/// #     impl prost::Name for ItemAdded { const NAME: &'static str = "ItemAdded"; const PACKAGE: &'static str = "cart"; }
/// #     impl prost::Name for ItemRemoved { const NAME: &'static str = "ItemRemoved"; const PACKAGE: &'static str = "cart"; }
/// # }
/// use cloudstate::Event;
///
/// cloudstate::events! {
///     /// The cart's events.
///     pub enum CartEvent {
///         ItemAdded(persistence::ItemAdded),
///         ItemRemoved(persistence::ItemRemoved),
///     }
/// }
///
/// let removed = CartEvent::from(persistence::ItemRemoved { product_id: "p1".into() });
/// let any = removed.to_any();
/// assert_eq!(any.type_url, "type.googleapis.com/cart.ItemRemoved");
/// assert_eq!(CartEvent::from_any(&any).unwrap(), removed);
/// ```
#[macro_export]
macro_rules! events {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident($message:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant($message), )+
        }

        impl $crate::Event for $name {
            fn to_any(&self) -> $crate::protocol::Any {
                match self {
                    $( Self::$variant(event) => $crate::protocol::Any::from_message(event), )+
                }
            }

            fn from_any(any: &$crate::protocol::Any) -> ::std::result::Result<Self, $crate::Error> {
                $(
                    if let ::std::option::Option::Some(decoded) = any.to_message::<$message>() {
                        return decoded.map(Self::$variant).map_err(|reason| $crate::Error::Decode {
                            type_url: any.type_url.clone(),
                            reason,
                        });
                    }
                )+
                ::std::result::Result::Err($crate::Error::UnknownType {
                    type_url: any.type_url.clone(),
                })
            }
        }

        $(
            impl ::std::convert::From<$message> for $name {
                fn from(event: $message) -> Self {
                    Self::$variant(event)
                }
            }
        )+
    };
}

/// What a command handler can do besides replying: read the entity's id and sequence number,
/// emit events and request side effects.
///
/// Everything recorded here is discarded when the handler returns a [`Failure`] (or panics).
pub struct CommandContext<Ev> {
    entity_id: Arc<str>,
    sequence_number: i64,
    command_id: i64,
    events: Vec<Ev>,
    side_effects: Vec<SideEffect>,
}

impl<Ev> CommandContext<Ev> {
    pub(crate) fn new(entity_id: Arc<str>, sequence_number: i64, command_id: i64) -> Self {
        CommandContext {
            entity_id,
            sequence_number,
            command_id,
            events: Vec::new(),
            side_effects: Vec::new(),
        }
    }

    /// The entity's id.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The sequence number of the last event applied to the state (0 for none); events emitted
    /// by this command get the following numbers.
    pub fn sequence_number(&self) -> i64 {
        self.sequence_number
    }

    /// The command's id on the proxy's stream (1 for the first command of each stream).
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// Emits an event. If the handler succeeds, its events are persisted by the proxy and
    /// applied to the state in the order they were emitted, before the next command. The
    /// handler itself still sees the state as it was when the command arrived.
    pub fn emit(&mut self, event: impl Into<Ev>) {
        self.events.push(event.into());
    }

    /// Asks the proxy to call `service` (full name) `method` with `request` once this
    /// command's events are persisted; `synchronous` makes the proxy wait for the call before
    /// replying. The call's result is ignored.
    pub fn side_effect<R: Message + Name>(
        &mut self,
        service: impl Into<String>,
        method: impl Into<String>,
        request: &R,
        synchronous: bool,
    ) {
        self.side_effects.push(SideEffect {
            service: service.into(),
            method: method.into(),
            payload: Any::from_message(request),
            synchronous,
        });
    }

    /// The events and side effects recorded so far.
    pub(crate) fn into_effects(self) -> (Vec<Ev>, Vec<SideEffect>) {
        (self.events, self.side_effects)
    }
}

/// A type-erased command handler: decodes the payload, runs the handler, encodes the reply.
type HandlerFn<E> = dyn Fn(
        &E,
        Bytes,
        &mut CommandContext<<E as EventSourcedEntity>::Event>,
    ) -> Result<Option<protocol::client_action::Action>, Failure>
    + Send
    + Sync;

/// A registered command handler with its input and output message names.
pub(crate) struct Handler<E: EventSourcedEntity> {
    /// Full name of the input message.
    pub(crate) input_type: String,
    /// Full name of the output message.
    pub(crate) output_type: String,
    pub(crate) call: Box<HandlerFn<E>>,
}

/// The command handlers of an entity, by gRPC method name; filled in by
/// [`EventSourcedEntity::commands`].
pub struct Commands<E: EventSourcedEntity> {
    handlers: HashMap<String, Handler<E>>,
}

impl<E: EventSourcedEntity> Commands<E> {
    /// Handles the service method `method` with `handler`.
    ///
    /// The handler gets the state, the decoded request and the [`CommandContext`], and
    /// returns the reply (the method's output message, `()` for `google.protobuf.Empty`, or a
    /// [`Reply`](crate::Reply)) or a [`Failure`]. Registering a method twice keeps the last
    /// handler. At registration the server checks the handler's input and output types
    /// against the method's in the descriptor set.
    pub fn add<In, R, F>(&mut self, method: &str, handler: F) -> &mut Self
    where
        In: Message + Name + Default + 'static,
        R: IntoReply,
        F: Fn(&E, In, &mut CommandContext<E::Event>) -> Result<R, Failure> + Send + Sync + 'static,
    {
        let name = method.to_owned();
        let call = move |state: &E, payload: Bytes, ctx: &mut CommandContext<E::Event>| {
            let request = In::decode(payload).map_err(|error| {
                Failure::new(format!(
                    "Command {name}: cannot decode the request as {}: {error}",
                    In::full_name()
                ))
                .with_code(tonic::Code::InvalidArgument)
            })?;
            handler(state, request, ctx).map(|reply| reply.into_reply().into_action())
        };
        self.handlers.insert(
            method.to_owned(),
            Handler {
                input_type: In::full_name(),
                output_type: <R::Output as Name>::full_name(),
                call: Box::new(call),
            },
        );
        self
    }

    pub(crate) fn get(&self, method: &str) -> Option<&Handler<E>> {
        self.handlers.get(method)
    }

    /// The registered handlers, by method name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Handler<E>)> {
        self.handlers
            .iter()
            .map(|(name, handler)| (name.as_str(), handler))
    }
}

/// An event sourced entity type as registered with the [`Server`](crate::Server) or a
/// [`testkit`](crate::testkit): the gRPC service it implements and how the proxy persists it.
pub struct EventSourced<E: EventSourcedEntity> {
    service_name: String,
    persistence_id: String,
    snapshot_every: u32,
    passivation_timeout: Option<Duration>,
    commands: Commands<E>,
}

impl<E: EventSourcedEntity> EventSourced<E> {
    /// The entity serving `service_name` (the service's full name, e.g.
    /// `com.example.shoppingcart.ShoppingCart`), with the handlers of
    /// [`EventSourcedEntity::commands`], persistence id = `service_name`, no snapshots and the
    /// proxy's default passivation.
    pub fn new(service_name: impl Into<String>) -> Self {
        let service_name = service_name.into();
        let mut commands = Commands {
            handlers: HashMap::new(),
        };
        E::commands(&mut commands);
        EventSourced {
            persistence_id: service_name.clone(),
            service_name,
            snapshot_every: 0,
            passivation_timeout: None,
            commands,
        }
    }

    /// Sets the journal's persistence id (entities of one id share a journal namespace).
    pub fn persistence_id(mut self, persistence_id: impl Into<String>) -> Self {
        self.persistence_id = persistence_id.into();
        self
    }

    /// Snapshots every `n` events: the reply whose events make the entity's event count reach
    /// or cross a multiple of `n` also carries a snapshot of the state after all of that
    /// reply's events. `0` (the default) never snapshots.
    pub fn snapshot_every(mut self, n: u32) -> Self {
        self.snapshot_every = n;
        self
    }

    /// Asks the proxy to passivate (stop) an entity after `timeout` without commands.
    pub fn passivation_timeout(mut self, timeout: Duration) -> Self {
        self.passivation_timeout = Some(timeout);
        self
    }

    /// The full name of the entity's service.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    pub(crate) fn commands(&self) -> &Commands<E> {
        &self.commands
    }

    pub(crate) fn snapshot_every_n(&self) -> u32 {
        self.snapshot_every
    }

    /// The entity as reported at discovery.
    pub(crate) fn spec(&self) -> protocol::Entity {
        protocol::Entity {
            entity_type: protocol::entity_type::EVENT_SOURCED.to_owned(),
            service_name: self.service_name.clone(),
            persistence_id: self.persistence_id.clone(),
            passivation_strategy: self.passivation_timeout.map(|timeout| {
                protocol::EntityPassivationStrategy {
                    strategy: Some(protocol::entity_passivation_strategy::Strategy::Timeout(
                        protocol::TimeoutPassivationStrategy {
                            timeout: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
                        },
                    )),
                }
            }),
        }
    }
}
