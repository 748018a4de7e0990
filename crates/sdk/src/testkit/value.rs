//! The value entity testkit.

use std::sync::Arc;

use cloudstate_protocol::valueentity::{
    ValueEntityInit, ValueEntityInitState, ValueEntityReply, value_entity_action,
    value_entity_stream_in,
};
use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};

use super::{ClientAction, StateAction, for_service};
use crate::reply::decode_any;
use crate::valueentity::session::ValueSession;
use crate::{Call, Error, Failure, Forward, SideEffect, ValueEntity, ValueEntityService};

/// One value entity instance driven as the proxy would drive it: it keeps the value the proxy
/// would have stored (updated and deleted by the commands' state actions).
pub struct ValueEntityTestKit<E: ValueEntity> {
    entity: Arc<ValueEntityService<E>>,
    entity_id: String,
    session: ValueSession<E>,
    next_command_id: i64,
    stored: Option<E>,
}

impl<E: ValueEntity> ValueEntityTestKit<E> {
    /// A new entity `entity_id` with nothing stored: its state is the default.
    pub fn new(entity: ValueEntityService<E>, entity_id: &str) -> Self {
        let entity = Arc::new(entity);
        let session = ValueSession::fresh(entity.clone(), entity_id);
        ValueEntityTestKit {
            entity,
            entity_id: entity_id.to_owned(),
            session,
            next_command_id: 1,
            stored: None,
        }
    }

    /// The entity `entity_id` with `state` stored, as the proxy starts it.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when `state` does not round-trip through its `Any` encoding.
    pub fn with_state(
        entity: ValueEntityService<E>,
        entity_id: &str,
        state: E,
    ) -> Result<Self, Error> {
        Self::start(Arc::new(entity), entity_id, Some(state))
    }

    /// A fresh instance of this entity started the way the proxy starts it after a restart or
    /// passivation: from the stored value.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the stored value does not round-trip through its `Any`
    /// encoding.
    pub fn restarted(&self) -> Result<Self, Error> {
        Self::start(self.entity.clone(), &self.entity_id, self.stored.clone())
    }

    fn start(
        entity: Arc<ValueEntityService<E>>,
        entity_id: &str,
        stored: Option<E>,
    ) -> Result<Self, Error> {
        // The proxy always sends the state; its value is absent when nothing is stored.
        let init = ValueEntityInit {
            service_name: entity.service_name().to_owned(),
            entity_id: entity_id.to_owned(),
            state: Some(ValueEntityInitState {
                value: stored.as_ref().map(Any::from_message),
            }),
        };
        Ok(ValueEntityTestKit {
            session: ValueSession::start(entity.clone(), init)?,
            entity,
            entity_id: entity_id.to_owned(),
            next_command_id: 1,
            stored,
        })
    }

    /// Sends `call` (a generated call of one of the entity's methods, e.g.
    /// `proto::inventory::reserve(request)`) as the proxy would, and returns what the entity
    /// answered. The state action of a successful command changes the stored value.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when `call` is for another service;
    /// [`Error::UnknownType`] / [`Error::Decode`] when the entity's new state does not
    /// round-trip through its `Any` encoding.
    pub fn command<Out>(&mut self, call: Call<Out>) -> Result<ValueOutcome<E>, Error> {
        let (method, payload) = for_service(self.entity.service_name(), call)?;
        let id = self.next_command_id;
        self.next_command_id += 1;
        let command = protocol::Command {
            entity_id: self.entity_id.clone(),
            id,
            name: method.to_owned(),
            payload: Some(payload),
            ..protocol::Command::default()
        };
        let reply = self
            .session
            .handle(Some(value_entity_stream_in::Message::Command(command)))?;
        let outcome = ValueOutcome::<E>::decode(reply)?;
        match &outcome.state_action {
            Some(StateAction::Update(state)) => self.stored = Some(state.clone()),
            Some(StateAction::Delete) => self.stored = None,
            None => {}
        }
        Ok(outcome)
    }

    /// The entity's current state (the default when nothing is stored).
    pub fn state(&self) -> &E {
        self.session.state()
    }

    /// The value the proxy would have stored: `None` before the first update and after a
    /// delete.
    pub fn stored(&self) -> Option<&E> {
        self.stored.as_ref()
    }
}

/// Everything a value entity answered to one command, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueOutcome<E> {
    action: ClientAction,
    side_effects: Vec<SideEffect>,
    state_action: Option<StateAction<E>>,
}

impl<E: ValueEntity> ValueOutcome<E> {
    fn decode(reply: ValueEntityReply) -> Result<Self, Error> {
        let state_action = match reply.state_action.and_then(|action| action.action) {
            Some(value_entity_action::Action::Update(update)) => Some(StateAction::Update(
                decode_any(&update.value.unwrap_or_default())?,
            )),
            Some(value_entity_action::Action::Delete(_)) => Some(StateAction::Delete),
            None => None,
        };
        Ok(ValueOutcome {
            action: ClientAction::from_entity(reply.client_action),
            side_effects: reply
                .side_effects
                .into_iter()
                .map(SideEffect::from_proto)
                .collect(),
            state_action,
        })
    }

    /// What the client gets.
    pub fn action(&self) -> &ClientAction {
        &self.action
    }

    /// The reply message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when the command did not reply with an `M` (it failed, was
    /// forwarded, replied nothing or another type).
    pub fn reply<M: Message + Name + Default>(&self) -> Result<M, Error> {
        self.action.reply()
    }

    /// The failure, if the command failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.action.failure()
    }

    /// The forward, if the command was forwarded.
    pub fn forward(&self) -> Option<&Forward> {
        self.action.forward()
    }

    /// The side effects the proxy runs, in order (none if the command failed).
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// The change of the stored value (none if the command failed or changed nothing).
    pub fn state_action(&self) -> Option<&StateAction<E>> {
        self.state_action.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_entity::{State, VALUE_SERVICE, call, request, value_model};

    fn state(value: &str) -> State {
        State {
            value: value.into(),
        }
    }

    #[test]
    fn tracks_what_the_proxy_stores() {
        let mut kit = ValueEntityTestKit::new(value_model(), "v1");
        assert_eq!(kit.stored(), None);
        let set = kit
            .command(call(VALUE_SERVICE, "Set", &request(&["A", "B"])))
            .unwrap();
        assert_eq!(set.reply::<State>().unwrap(), state("B"));
        assert_eq!(set.state_action(), Some(&StateAction::Update(state("B"))));
        assert_eq!(kit.stored(), Some(&state("B")));
        assert_eq!(kit.state(), &state("B"));

        let whoami = kit
            .command(call(VALUE_SERVICE, "Whoami", &request(&[])))
            .unwrap();
        assert_eq!(whoami.reply::<State>().unwrap().value, "v1#2");
        assert_eq!(whoami.state_action(), None);

        let restarted = kit.restarted().unwrap();
        assert_eq!(restarted.state(), &state("B"));

        let deleted = kit
            .command(call(VALUE_SERVICE, "Set", &request(&["-"])))
            .unwrap();
        assert_eq!(deleted.state_action(), Some(&StateAction::Delete));
        assert_eq!(kit.stored(), None);
        assert_eq!(kit.restarted().unwrap().state(), &State::default());
    }

    #[test]
    fn outcome_accessors() {
        let mut kit = ValueEntityTestKit::with_state(value_model(), "v1", state("A")).unwrap();
        let failed = kit
            .command(call(VALUE_SERVICE, "Fail", &request(&["X"])))
            .unwrap();
        assert_eq!(
            failed.failure().map(Failure::description),
            Some("expected failure")
        );
        assert!(failed.side_effects().is_empty() && failed.state_action().is_none());
        assert_eq!(kit.stored(), Some(&state("A")));

        let forwarded = kit
            .command(call(VALUE_SERVICE, "Forward", &request(&["F"])))
            .unwrap();
        assert_eq!(forwarded.forward().map(|f| f.method.as_str()), Some("Call"));
        assert_eq!(
            forwarded.state_action(),
            Some(&StateAction::Update(state("F")))
        );
        assert!(matches!(
            forwarded.reply::<State>(),
            Err(Error::UnexpectedOutcome(_))
        ));

        let effects = kit
            .command(call(VALUE_SERVICE, "Effects", &request(&[])))
            .unwrap();
        assert_eq!(effects.side_effects().len(), 2);
        assert!(matches!(effects.action(), ClientAction::Reply(_)));
    }
}
