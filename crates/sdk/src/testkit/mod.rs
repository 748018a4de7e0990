//! Unit-test entities and actions without a proxy or a network.
//!
//! Each testkit plays the proxy's part: it sends the same protocol messages the proxy would to
//! the same dispatch code the [`Server`](crate::Server) runs, and decodes the answers back into
//! typed values.
//!
//! - [`EventSourcedTestKit`]: one event sourced entity instance (init, replayed events,
//!   commands with ids 1, 2, ...), with a journal of the persisted events and the latest
//!   snapshot.
//! - [`ValueEntityTestKit`]: one value entity instance, with the value the proxy would have
//!   stored.
//! - [`CrdtTestKit`]: one CRDT entity instance on one node: commands and streamed commands,
//!   deltas from elsewhere ([`deltas`] writes them), cancelled streams, deletion; the deltas
//!   the entity sends, the messages of its streams and its state.
//! - [`ActionTestKit`]: calls of an action in any of the four shapes.
//!
//! ```
//! # pub mod proto { cloudstate::include_protos!("example.counter"); }
//! # use cloudstate::{CommandContext, EventSourcedEntity, Failure, Reply};
//! # cloudstate::events! { pub enum CounterEvent { Incremented(proto::Incremented) } }
//! # #[derive(Default)] struct Counter(i64);
//! # impl EventSourcedEntity for Counter {
//! #     type Event = CounterEvent;
//! #     type Snapshot = ();
//! #     fn apply(&mut self, CounterEvent::Incremented(e): &CounterEvent) { self.0 += e.by }
//! # }
//! # impl proto::Counter for Counter {
//! #     fn increment(&self, r: proto::Increment, ctx: &mut CommandContext<Self>) -> Result<Reply<proto::Value>, Failure> {
//! #         ctx.emit(proto::Incremented { by: r.by });
//! #         Ok(proto::Value { value: self.0 + r.by }.into())
//! #     }
//! #     fn get_value(&self, _: proto::GetValue, _: &mut CommandContext<Self>) -> Result<Reply<proto::Value>, Failure> {
//! #         Ok(proto::Value { value: self.0 }.into())
//! #     }
//! # }
//! use cloudstate::testkit::EventSourcedTestKit;
//!
//! let mut counter = EventSourcedTestKit::new(proto::counter::entity::<Counter>(), "c1");
//! let increment = proto::Increment { counter_id: "c1".into(), by: 2 };
//! let outcome = counter.command(proto::counter::increment(increment)).unwrap();
//! assert_eq!(outcome.reply::<proto::Value>().unwrap().value, 2);
//! assert_eq!(outcome.events(), [CounterEvent::Incremented(proto::Incremented { by: 2 })]);
//! assert_eq!(counter.state().0, 2);
//! ```
//!
//! The crate documentation has examples of the value entity, CRDT entity and action testkits.

use cloudstate_protocol::action::action_response;
use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};

use crate::reply::decode_any;
use crate::{Call, Error, Failure, Forward};

mod action;
mod crdt;
pub mod deltas;
mod eventsourced;
mod value;

pub use self::action::{ActionOutcome, ActionTestKit};
pub use self::crdt::{CancelOutcome, CrdtOutcome, CrdtTestKit, StreamedMessage};
pub use self::eventsourced::{EventSourcedTestKit, Outcome};
pub use self::value::{ValueEntityTestKit, ValueOutcome};
pub use crate::valueentity::StateAction;

/// What the client gets for a command or an action response.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAction {
    /// A reply message.
    Reply(Any),
    /// The command was forwarded.
    Forward(Forward),
    /// The command failed.
    Failure(Failure),
    /// No client action.
    NoReply,
}

impl ClientAction {
    /// The client action of an entity's reply.
    fn from_entity(action: Option<protocol::ClientAction>) -> Self {
        match action.and_then(|action| action.action) {
            Some(protocol::client_action::Action::Reply(reply)) => {
                ClientAction::Reply(reply.payload.unwrap_or_default())
            }
            Some(protocol::client_action::Action::Forward(forward)) => {
                ClientAction::Forward(Forward::from_proto(forward))
            }
            Some(protocol::client_action::Action::Failure(failure)) => {
                ClientAction::Failure(Failure::from_proto(failure))
            }
            None => ClientAction::NoReply,
        }
    }

    /// The client action of an action's response.
    fn from_action(response: Option<action_response::Response>) -> Self {
        match response {
            Some(action_response::Response::Reply(reply)) => {
                ClientAction::Reply(reply.payload.unwrap_or_default())
            }
            Some(action_response::Response::Forward(forward)) => {
                ClientAction::Forward(Forward::from_proto(forward))
            }
            Some(action_response::Response::Failure(failure)) => {
                ClientAction::Failure(Failure::from_proto(failure))
            }
            None => ClientAction::NoReply,
        }
    }

    /// The reply message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when this is not a reply with an `M` (a failure, a forward,
    /// no reply, or a reply of another type).
    pub fn reply<M: Message + Name + Default>(&self) -> Result<M, Error> {
        match self {
            ClientAction::Reply(any) => {
                decode_any(any).map_err(|error| Error::UnexpectedOutcome(format!("reply: {error}")))
            }
            other => Err(Error::UnexpectedOutcome(format!(
                "expected a {} reply, got {other:?}",
                M::full_name()
            ))),
        }
    }

    /// The failure, if this is one.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            ClientAction::Failure(failure) => Some(failure),
            _ => None,
        }
    }

    /// The forward, if this is one.
    pub fn forward(&self) -> Option<&Forward> {
        match self {
            ClientAction::Forward(forward) => Some(forward),
            _ => None,
        }
    }
}

/// The method and request of `call`, which must be for `service`.
fn for_service<Out>(service: &str, call: Call<Out>) -> Result<(&'static str, Any), Error> {
    let (called, method, payload) = call.into_parts();
    if called != service {
        return Err(Error::UnexpectedOutcome(format!(
            "the call of {called}.{method} is not for {service}, the service under test"
        )));
    }
    Ok((method, payload))
}
