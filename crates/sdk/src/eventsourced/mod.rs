//! Event sourced entities: the [`EventSourcedEntity`] trait a state type implements, its command
//! handlers' context ([`CommandContext`]) and its registration ([`EventSourced`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cloudstate_protocol::Any;
use prost::{Message, Name};

use crate::command::CommandHandlers;
use crate::service::EntitySettings;
use crate::{Error, SideEffect};

pub(crate) mod session;

/// The state of an event sourced entity: how events change it and how it is snapshotted. Its
/// commands are the methods of the trait `cloudstate-build` generates for its service (e.g.
/// `proto::ShoppingCart`), which the same type implements.
///
/// An entity without a snapshot starts as `Self::default()`. State changes only through
/// [`apply`](Self::apply): command handlers read the state and emit events, which the SDK
/// applies after the handler succeeds, in order, exactly as it applies them when the proxy
/// replays the journal. `apply` must therefore be deterministic and must not fail: validate in
/// the command handler, before emitting.
pub trait EventSourcedEntity: Default + Send + 'static {
    /// The entity's events, usually an enum declared with [`events!`](crate::events).
    type Event: Event;
    /// The protobuf message that stores the whole state; `()` (`google.protobuf.Empty`) if the
    /// entity never snapshots.
    type Snapshot: Message + Name + Default + Clone + fmt::Debug;

    /// Applies one event to the state.
    fn apply(&mut self, event: &Self::Event);

    /// The whole state as a snapshot message, taken when the registration's
    /// [`snapshot_every`](EventSourced::snapshot_every) says so; `None` (the default) takes
    /// none.
    fn snapshot(&self) -> Option<Self::Snapshot> {
        None
    }

    /// The state stored in `snapshot` (the inverse of [`snapshot`](Self::snapshot)); `None`
    /// (the default, for entities that never snapshot) refuses it, which ends the entity's
    /// stream with an error.
    fn from_snapshot(snapshot: Self::Snapshot) -> Option<Self> {
        let _ = snapshot;
        None
    }
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
/// Everything recorded here is discarded when the handler returns a [`Failure`](crate::Failure) (or panics).
pub struct CommandContext<E: EventSourcedEntity> {
    entity_id: Arc<str>,
    sequence_number: i64,
    command_id: i64,
    events: Vec<E::Event>,
    side_effects: Vec<SideEffect>,
}

impl<E: EventSourcedEntity> CommandContext<E> {
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
    pub fn emit(&mut self, event: impl Into<E::Event>) {
        self.events.push(event.into());
    }

    /// Asks the proxy to make `effect` (a generated call, e.g.
    /// `proto::inventory::reserve(request)`, or `call.synchronous()`) once this
    /// command's events are persisted: an asynchronous one is not waited for, a synchronous one
    /// is, before the client gets the reply. The call's result is ignored.
    pub fn side_effect(&mut self, effect: impl Into<SideEffect>) {
        self.side_effects.push(effect.into());
    }

    /// The events and side effects recorded so far.
    pub(crate) fn into_effects(self) -> (Vec<E::Event>, Vec<SideEffect>) {
        (self.events, self.side_effects)
    }
}

/// The command handlers of an event sourced entity, by gRPC method name; filled in by the code
/// `cloudstate-build` generates.
#[doc(hidden)]
pub type Commands<E> = CommandHandlers<E, CommandContext<E>>;

/// An event sourced entity type as registered with the [`Server`](crate::Server) or a
/// [`testkit`](crate::testkit): the gRPC service it implements and how the proxy persists it.
pub struct EventSourced<E: EventSourcedEntity> {
    settings: EntitySettings,
    snapshot_every: u32,
    commands: Commands<E>,
}

impl<E: EventSourcedEntity> EventSourced<E> {
    /// The entity serving `service_name` with the handlers `register` adds, persistence id =
    /// `service_name`, no snapshots and the proxy's default passivation. For generated code:
    /// users call the generated `entity()` of their service's module.
    #[doc(hidden)]
    pub fn new(service_name: &str, register: impl FnOnce(&mut Commands<E>)) -> Self {
        let mut commands = Commands::<E>::new();
        register(&mut commands);
        EventSourced {
            settings: EntitySettings::new(service_name.to_owned()),
            snapshot_every: 0,
            commands,
        }
    }

    /// Sets the journal's persistence id (entities of one id share a journal namespace).
    pub fn persistence_id(mut self, persistence_id: impl Into<String>) -> Self {
        self.settings.persistence_id = persistence_id.into();
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
        self.settings.passivation_timeout = Some(timeout);
        self
    }

    /// The full name of the entity's service.
    pub fn service_name(&self) -> &str {
        &self.settings.service_name
    }

    pub(crate) fn commands(&self) -> &Commands<E> {
        &self.commands
    }

    pub(crate) fn settings(&self) -> &EntitySettings {
        &self.settings
    }

    pub(crate) fn snapshot_every_n(&self) -> u32 {
        self.snapshot_every
    }
}
