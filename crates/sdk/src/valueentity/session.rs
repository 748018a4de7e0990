//! One entity instance on one stream of the `ValueEntity` protocol: the dispatch logic shared
//! by the server and the testkit.
//!
//! A session starts from the stream's `init` (with the stored value, if any), then turns each
//! command into exactly one reply. Problems with a single command (unknown name, bad payload, a
//! failing or panicking handler) become a failure reply for that command; problems with the
//! stream itself become an [`Error::Protocol`], after which the stream must end.

use std::sync::Arc;

use cloudstate_protocol::valueentity::{
    ValueEntityAction, ValueEntityDelete, ValueEntityInit, ValueEntityReply, ValueEntityStreamIn,
    ValueEntityStreamOut, ValueEntityUpdate, value_entity_action, value_entity_stream_in,
    value_entity_stream_out,
};
use cloudstate_protocol::{self as protocol, Any};

use super::{StateAction, ValueContext, ValueEntity, ValueEntityService};
use crate::command::Signature;
use crate::reply::decode_any;
use crate::service::{Described, Sealed, Services};
use crate::stream::{EntityProtocol, EntityType, Session};
use crate::{Error, Failure, SideEffect};

/// A value entity instance driven by protocol messages.
pub(crate) struct ValueSession<E: ValueEntity> {
    entity: Arc<ValueEntityService<E>>,
    entity_id: Arc<str>,
    state: E,
}

impl<E: ValueEntity> ValueSession<E> {
    /// Starts the entity described by `init`: its state is the stored value, or the default
    /// when nothing is stored.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the stored value is not the entity's state type or does not
    /// decode.
    pub(crate) fn start(
        entity: Arc<ValueEntityService<E>>,
        init: ValueEntityInit,
    ) -> Result<Self, Error> {
        let state = match init.state.and_then(|state| state.value) {
            None => E::default(),
            Some(any) => decode_any::<E>(&any)
                .map_err(|error| Error::Protocol(format!("the stored state: {error}")))?,
        };
        Ok(ValueSession {
            entity,
            entity_id: init.entity_id.into(),
            state,
        })
    }

    /// Starts entity `entity_id` with nothing stored.
    pub(crate) fn fresh(entity: Arc<ValueEntityService<E>>, entity_id: &str) -> Self {
        ValueSession {
            entity,
            entity_id: entity_id.into(),
            state: E::default(),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> &E {
        &self.state
    }

    /// Handles one message after `init`: runs a command and returns its reply.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for a second `init` and an empty message.
    pub(crate) fn handle(
        &mut self,
        message: Option<value_entity_stream_in::Message>,
    ) -> Result<ValueEntityReply, Error> {
        match message {
            Some(value_entity_stream_in::Message::Init(_)) => {
                Err(Error::Protocol("a second init message".into()))
            }
            Some(value_entity_stream_in::Message::Command(command)) => Ok(self.command(command)),
            None => Err(Error::Protocol("an empty message".into())),
        }
    }

    fn command(&mut self, command: protocol::Command) -> ValueEntityReply {
        let protocol::Command {
            id, name, payload, ..
        } = command;
        let mut ctx = ValueContext::new(self.entity_id.clone(), id);
        let action = match self.entity.commands().dispatch(
            self.entity.service_name(),
            &self.entity_id,
            &self.state,
            &name,
            payload,
            &mut ctx,
        ) {
            Ok(action) => action,
            Err(failure) => return failure_reply(id, failure),
        };
        let (state_action, side_effects) = ctx.into_effects();
        let state_action = state_action.map(|change| {
            let action = match change {
                StateAction::Update(state) => {
                    let value = Any::from_message(&state);
                    self.state = state;
                    value_entity_action::Action::Update(ValueEntityUpdate { value: Some(value) })
                }
                StateAction::Delete => {
                    self.state = E::default();
                    value_entity_action::Action::Delete(ValueEntityDelete {})
                }
            };
            ValueEntityAction {
                action: Some(action),
            }
        });
        ValueEntityReply {
            command_id: id,
            client_action: action.map(|action| protocol::ClientAction {
                action: Some(action),
            }),
            side_effects: side_effects
                .into_iter()
                .map(SideEffect::into_proto)
                .collect(),
            state_action,
        }
    }
}

/// The reply to command `command_id` that carries only `failure`.
fn failure_reply(command_id: i64, failure: Failure) -> ValueEntityReply {
    ValueEntityReply {
        command_id,
        client_action: Some(protocol::ClientAction {
            action: Some(protocol::client_action::Action::Failure(
                failure.into_proto(command_id),
            )),
        }),
        ..ValueEntityReply::default()
    }
}

/// The `ValueEntity` protocol's messages.
pub(crate) struct ValueProtocol;

impl EntityProtocol for ValueProtocol {
    type In = ValueEntityStreamIn;
    type Out = ValueEntityStreamOut;
    type Message = value_entity_stream_in::Message;
    type Init = ValueEntityInit;
    type Reply = ValueEntityReply;

    fn message(input: ValueEntityStreamIn) -> Option<Self::Message> {
        input.message
    }

    fn init(message: Option<Self::Message>) -> Option<ValueEntityInit> {
        match message {
            Some(value_entity_stream_in::Message::Init(init)) => Some(init),
            _ => None,
        }
    }

    fn target(init: &ValueEntityInit) -> (&str, &str) {
        (&init.service_name, &init.entity_id)
    }

    fn reply(reply: ValueEntityReply) -> impl IntoIterator<Item = ValueEntityStreamOut> {
        std::iter::once(ValueEntityStreamOut {
            message: Some(value_entity_stream_out::Message::Reply(reply)),
        })
    }

    fn failure(failure: protocol::Failure) -> ValueEntityStreamOut {
        ValueEntityStreamOut {
            message: Some(value_entity_stream_out::Message::Failure(failure)),
        }
    }
}

impl<E: ValueEntity> Session<ValueProtocol> for ValueSession<E> {
    fn handle(
        &mut self,
        message: Option<value_entity_stream_in::Message>,
    ) -> Result<Option<ValueEntityReply>, Error> {
        ValueSession::handle(self, message).map(Some)
    }
}

impl<E: ValueEntity> Described for ValueEntityService<E> {
    fn spec(&self) -> protocol::Entity {
        self.settings().spec(protocol::entity_type::VALUE_ENTITY)
    }

    fn signatures(&self) -> Vec<Signature> {
        self.commands().signatures()
    }
}

impl<E: ValueEntity> EntityType<ValueProtocol> for ValueEntityService<E> {
    fn start(
        self: Arc<Self>,
        init: ValueEntityInit,
    ) -> Result<Box<dyn Session<ValueProtocol>>, Error> {
        Ok(Box::new(ValueSession::start(self, init)?))
    }
}

impl<E: ValueEntity> Sealed for ValueEntityService<E> {
    fn register(self, services: &mut Services) -> Result<(), Error> {
        let entity = Arc::new(self);
        let name = services.check(&*entity)?;
        services.value.insert(name, entity);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cloudstate_protocol::valueentity::ValueEntityInitState;

    use super::*;
    use crate::test_entity::{Request, State, VALUE_SERVICE, request, value_model};

    fn start(stored: Option<&str>) -> ValueSession<State> {
        let init = ValueEntityInit {
            service_name: VALUE_SERVICE.into(),
            entity_id: "v1".into(),
            state: Some(ValueEntityInitState {
                value: stored.map(|value| {
                    Any::from_message(&State {
                        value: value.into(),
                    })
                }),
            }),
        };
        ValueSession::start(Arc::new(value_model()), init).unwrap()
    }

    fn command(id: i64, name: &str, payload: Any) -> Option<value_entity_stream_in::Message> {
        Some(value_entity_stream_in::Message::Command(
            protocol::Command {
                entity_id: "v1".into(),
                id,
                name: name.into(),
                payload: Some(payload),
                ..protocol::Command::default()
            },
        ))
    }

    fn run(
        session: &mut ValueSession<State>,
        id: i64,
        name: &str,
        values: &[&str],
    ) -> ValueEntityReply {
        session
            .handle(command(id, name, Any::from_message(&request(values))))
            .unwrap()
    }

    fn action(reply: &ValueEntityReply) -> Option<&protocol::client_action::Action> {
        reply.client_action.as_ref().and_then(|a| a.action.as_ref())
    }

    fn replied(reply: &ValueEntityReply) -> String {
        match action(reply) {
            Some(protocol::client_action::Action::Reply(reply)) => {
                decode_any::<State>(reply.payload.as_ref().unwrap())
                    .unwrap()
                    .value
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn failure(reply: &ValueEntityReply) -> &protocol::Failure {
        match action(reply) {
            Some(protocol::client_action::Action::Failure(failure)) => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn updated(reply: &ValueEntityReply) -> Option<String> {
        match reply.state_action.as_ref().and_then(|a| a.action.as_ref()) {
            Some(value_entity_action::Action::Update(update)) => Some(
                decode_any::<State>(update.value.as_ref().unwrap())
                    .unwrap()
                    .value,
            ),
            _ => None,
        }
    }

    fn deleted(reply: &ValueEntityReply) -> bool {
        matches!(
            reply.state_action.as_ref().and_then(|a| a.action.as_ref()),
            Some(value_entity_action::Action::Delete(_))
        )
    }

    #[test]
    fn initial_state_is_the_stored_value_or_the_default() {
        let mut fresh = start(None);
        let reply = run(&mut fresh, 1, "Get", &[]);
        assert_eq!((reply.command_id, replied(&reply)), (1, String::new()));
        assert!(reply.state_action.is_none());

        let mut stored = start(Some("D"));
        assert_eq!(replied(&run(&mut stored, 1, "Get", &[])), "D");

        // An init without a state at all is treated as nothing stored.
        let init = ValueEntityInit {
            service_name: VALUE_SERVICE.into(),
            entity_id: "v1".into(),
            state: None,
        };
        let session = ValueSession::start(Arc::new(value_model()), init).unwrap();
        assert_eq!(session.state(), &State::default());
    }

    #[test]
    fn the_last_state_action_wins_and_becomes_the_state() {
        let mut session = start(None);
        let reply = run(&mut session, 1, "Set", &["A", "B", "C"]);
        assert_eq!(replied(&reply), "C");
        assert_eq!(updated(&reply).as_deref(), Some("C"));
        assert_eq!(
            reply
                .state_action
                .as_ref()
                .and_then(|a| a.action.as_ref())
                .map(|a| match a {
                    value_entity_action::Action::Update(update) =>
                        update.value.as_ref().unwrap().type_url.clone(),
                    value_entity_action::Action::Delete(_) => String::new(),
                }),
            Some("type.googleapis.com/test.model.State".to_owned())
        );
        assert_eq!(replied(&run(&mut session, 2, "Get", &[])), "C");

        let reply = run(&mut session, 3, "Set", &["A", "B", "-"]);
        assert!(deleted(&reply));
        assert_eq!(session.state(), &State::default());

        let reply = run(&mut session, 4, "Set", &["A", "-", "B"]);
        assert_eq!(updated(&reply).as_deref(), Some("B"));
        assert_eq!(session.state().value, "B");
    }

    #[test]
    fn failure_discards_the_state_action_and_side_effects() {
        let mut session = start(Some("A"));
        let reply = run(&mut session, 5, "Fail", &["X"]);
        assert!(reply.state_action.is_none());
        assert!(reply.side_effects.is_empty());
        let failure = failure(&reply);
        assert_eq!(
            (failure.command_id, failure.description.as_str()),
            (5, "expected failure")
        );
        assert_eq!(
            failure.grpc_status_code,
            i32::from(tonic::Code::FailedPrecondition)
        );
        assert_eq!(replied(&run(&mut session, 6, "Get", &[])), "A");
    }

    #[test]
    fn panics_fail_the_command_and_keep_the_state() {
        let mut session = start(Some("A"));
        let reply = run(&mut session, 1, "Panic", &["X"]);
        assert!(failure(&reply).description.contains("handler bug"));
        assert!(reply.state_action.is_none());
        assert_eq!(session.state().value, "A");
    }

    #[test]
    fn forwards_and_side_effects_go_with_the_state_action() {
        let mut session = start(None);
        let reply = run(&mut session, 1, "Forward", &["A"]);
        assert_eq!(updated(&reply).as_deref(), Some("A"));
        match action(&reply) {
            Some(protocol::client_action::Action::Forward(forward)) => {
                assert_eq!(
                    (forward.service_name.as_str(), forward.command_name.as_str()),
                    ("test.model.Two", "Call")
                );
            }
            other => panic!("expected a forward, got {other:?}"),
        }
        let reply = run(&mut session, 2, "Effects", &["B"]);
        let effects: Vec<_> = reply
            .side_effects
            .iter()
            .map(|e| {
                (
                    e.service_name.as_str(),
                    e.command_name.as_str(),
                    e.synchronous,
                )
            })
            .collect();
        assert_eq!(
            effects,
            [(VALUE_SERVICE, "Get", false), (VALUE_SERVICE, "Set", true)]
        );
        assert_eq!(replied(&reply), "A");
        assert_eq!(replied(&run(&mut session, 7, "Whoami", &[])), "v1#7");
    }

    #[test]
    fn command_errors_fail_that_command_only() {
        let mut session = start(None);
        let reply = run(&mut session, 1, "Nope", &[]);
        assert_eq!(
            failure(&reply).description,
            "Unknown command Nope on service test.model.ValueModel"
        );
        let other = Any::from_message(&State::default());
        let reply = session.handle(command(2, "Get", other)).unwrap();
        assert_eq!(
            failure(&reply).grpc_status_code,
            i32::from(tonic::Code::InvalidArgument)
        );
        let garbage = Any {
            type_url: Any::from_message(&Request::default()).type_url,
            value: vec![0x0a, 0xff].into(),
        };
        let reply = session.handle(command(3, "Get", garbage)).unwrap();
        assert!(
            failure(&reply)
                .description
                .starts_with("Command Get: cannot decode")
        );
        assert_eq!(replied(&run(&mut session, 4, "Get", &[])), "");
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut session = start(None);
        let init = Some(value_entity_stream_in::Message::Init(
            ValueEntityInit::default(),
        ));
        assert!(matches!(session.handle(init), Err(Error::Protocol(_))));
        assert!(matches!(session.handle(None), Err(Error::Protocol(_))));
        let init = ValueEntityInit {
            service_name: VALUE_SERVICE.into(),
            entity_id: "v1".into(),
            state: Some(ValueEntityInitState {
                value: Some(Any {
                    type_url: Any::from_message(&State::default()).type_url,
                    value: vec![0xff].into(),
                }),
            }),
        };
        assert!(matches!(
            ValueSession::start(Arc::new(value_model()), init),
            Err(Error::Protocol(_))
        ));
    }
}
