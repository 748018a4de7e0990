//! The CRDT entity testkit.

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudstate_protocol::crdt::{
    CrdtDelete, CrdtDelta, CrdtInit, CrdtStateAction, CrdtStreamedMessage, crdt_state_action,
    crdt_stream_in, crdt_stream_out,
};
use cloudstate_protocol::{self as protocol, Any, StreamCancelled};
use prost::{Message, Name};

use super::{ClientAction, StateAction};
use crate::crdt::session::CrdtSession;
use crate::crdt::{Crdt, CrdtEntity, CrdtEntityService, WriteConsistency};
use crate::{Error, Failure, Forward, SideEffect};

/// One CRDT entity instance driven as the proxy would drive it, on one node: commands (plain and
/// streamed) with ids 1, 2, ..., deltas from elsewhere, cancelled streams and deletion. It keeps
/// the messages each open stream received.
pub struct CrdtTestKit<E: CrdtEntity> {
    entity: Arc<CrdtEntityService<E>>,
    entity_id: String,
    session: CrdtSession<E>,
    next_command_id: i64,
    streamed: BTreeMap<i64, Vec<StreamedMessage>>,
}

impl<E: CrdtEntity> CrdtTestKit<E> {
    /// A new entity `entity_id` without state.
    ///
    /// # Panics
    ///
    /// If the entity's [`CrdtEntity::new`] panics.
    pub fn new(entity: CrdtEntityService<E>, entity_id: &str) -> Self {
        match Self::start(Arc::new(entity), entity_id, None) {
            Ok(kit) => kit,
            Err(error) => panic!("starting entity {entity_id}: {error}"),
        }
    }

    /// The entity `entity_id` whose state is `delta` (a full state, as the proxy sends it in
    /// `init`); see [`deltas`](super::deltas).
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the delta is not a valid state or [`CrdtEntity::new`] panics.
    pub fn with_state(
        entity: CrdtEntityService<E>,
        entity_id: &str,
        delta: CrdtDelta,
    ) -> Result<Self, Error> {
        Self::start(Arc::new(entity), entity_id, Some(delta))
    }

    /// A fresh instance of this entity started the way the proxy starts it after passivation:
    /// `init` carries the current state. Open streams are not carried over.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when [`CrdtEntity::new`] panics.
    pub fn restarted(&self) -> Result<Self, Error> {
        let state = self.session.state().map(|state| state.full_delta());
        Self::start(self.entity.clone(), &self.entity_id, state)
    }

    fn start(
        entity: Arc<CrdtEntityService<E>>,
        entity_id: &str,
        delta: Option<CrdtDelta>,
    ) -> Result<Self, Error> {
        let init = CrdtInit {
            service_name: entity.service_name().to_owned(),
            entity_id: entity_id.to_owned(),
            delta,
        };
        Ok(CrdtTestKit {
            session: CrdtSession::start(entity.clone(), init)?,
            entity,
            entity_id: entity_id.to_owned(),
            next_command_id: 1,
            streamed: BTreeMap::new(),
        })
    }

    /// Sends command `method` with `request`, as the proxy sends a unary call (payload typed
    /// `type.googleapis.com/<full name>`), and returns what the entity answered.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol (the testkit's own check).
    pub fn command<M: Message + Name>(
        &mut self,
        method: &str,
        request: M,
    ) -> Result<CrdtOutcome, Error> {
        self.send_command(method, request, false)
    }

    /// Sends command `method` with `request` as a streamed command, as the proxy sends a
    /// server-streaming call. If the outcome is [`streamed`](CrdtOutcome::streamed), the stream
    /// stays open under the outcome's [`command_id`](CrdtOutcome::command_id): its messages
    /// collect in [`stream`](Self::stream) until it ends or is [`cancel`](Self::cancel)led.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol.
    pub fn streamed_command<M: Message + Name>(
        &mut self,
        method: &str,
        request: M,
    ) -> Result<CrdtOutcome, Error> {
        self.send_command(method, request, true)
    }

    fn send_command<M: Message + Name>(
        &mut self,
        method: &str,
        request: M,
        streamed: bool,
    ) -> Result<CrdtOutcome, Error> {
        let id = self.next_command_id;
        self.next_command_id += 1;
        let command = protocol::Command {
            entity_id: self.entity_id.clone(),
            id,
            name: method.to_owned(),
            payload: Some(Any::from_message(&request)),
            streamed,
            metadata: None,
        };
        let mut messages = self
            .session
            .handle(Some(crdt_stream_in::Message::Command(command)))?
            .into_iter();
        let Some(crdt_stream_out::Message::Reply(reply)) = messages.next() else {
            return Err(unexpected(
                "a command's answer does not start with its reply",
            ));
        };
        if reply.command_id != id {
            return Err(unexpected("a reply for another command"));
        }
        let (state_action, write_consistency) = decode_state_action(reply.state_action);
        if reply.streamed {
            self.streamed.insert(id, Vec::new());
        }
        Ok(CrdtOutcome {
            command_id: id,
            action: ClientAction::from_entity(reply.client_action),
            side_effects: from_proto(reply.side_effects),
            state_action,
            write_consistency,
            streamed: reply.streamed,
            streamed_messages: self.record(messages)?,
        })
    }

    /// Delivers `delta`, a change that happened elsewhere (see [`deltas`](super::deltas)), and
    /// returns the messages the open streams got for it.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the delta does not apply to the entity's state.
    pub fn delta(&mut self, delta: CrdtDelta) -> Result<Vec<StreamedMessage>, Error> {
        let messages = self
            .session
            .handle(Some(crdt_stream_in::Message::Delta(delta)))?;
        self.record(messages.into_iter())
    }

    /// Cancels streamed command `command_id`, as when its client goes away, and returns the
    /// entity's answer.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol.
    pub fn cancel(&mut self, command_id: i64) -> Result<CancelOutcome, Error> {
        let cancelled = StreamCancelled {
            entity_id: self.entity_id.clone(),
            id: command_id,
        };
        self.streamed.remove(&command_id);
        let mut messages = self
            .session
            .handle(Some(crdt_stream_in::Message::StreamCancelled(cancelled)))?
            .into_iter();
        let Some(crdt_stream_out::Message::StreamCancelledResponse(response)) = messages.next()
        else {
            return Err(unexpected(
                "the answer to a cancellation does not start with its response",
            ));
        };
        let (state_action, write_consistency) = decode_state_action(response.state_action);
        Ok(CancelOutcome {
            side_effects: from_proto(response.side_effects),
            state_action,
            write_consistency,
            streamed_messages: self.record(messages)?,
        })
    }

    /// Deletes the entity, as the proxy does when it was deleted elsewhere: its state is gone
    /// and its streams end.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the entity broke the protocol.
    pub fn delete(&mut self) -> Result<(), Error> {
        let messages = self
            .session
            .handle(Some(crdt_stream_in::Message::Delete(CrdtDelete {})))?;
        self.streamed.clear();
        self.record(messages.into_iter()).map(drop)
    }

    /// The entity's state as a `T`'s plain value; `None` while it has none.
    ///
    /// # Errors
    ///
    /// A failure when the entity's CRDT is another type or does not decode as a `T`.
    pub fn value<T: Crdt>(&self) -> Result<Option<T::Value>, Failure> {
        self.session.state().map(T::value).transpose()
    }

    /// The ids of the streamed commands whose streams are open, in order.
    pub fn open_streams(&self) -> Vec<i64> {
        self.session.open_streams()
    }

    /// The messages streamed command `command_id` has sent since its reply (empty for a
    /// command that is not streamed; kept after the stream ends, until it is cancelled).
    pub fn stream(&self, command_id: i64) -> &[StreamedMessage] {
        self.streamed.get(&command_id).map_or(&[], Vec::as_slice)
    }

    /// Decodes streamed messages and adds them to their streams' logs.
    fn record(
        &mut self,
        messages: impl Iterator<Item = crdt_stream_out::Message>,
    ) -> Result<Vec<StreamedMessage>, Error> {
        messages
            .map(|message| match message {
                crdt_stream_out::Message::StreamedMessage(message) => {
                    let message = StreamedMessage::decode(message);
                    self.streamed
                        .entry(message.command_id)
                        .or_default()
                        .push(message.clone());
                    Ok(message)
                }
                _ => Err(unexpected("a message other than a streamed message")),
            })
            .collect()
    }
}

fn unexpected(what: &str) -> Error {
    Error::Protocol(format!("the entity sent {what}"))
}

fn from_proto(side_effects: Vec<protocol::SideEffect>) -> Vec<SideEffect> {
    side_effects
        .into_iter()
        .map(SideEffect::from_proto)
        .collect()
}

fn decode_state_action(
    action: Option<CrdtStateAction>,
) -> (Option<StateAction<CrdtDelta>>, WriteConsistency) {
    let Some(action) = action else {
        return (None, WriteConsistency::default());
    };
    let change = match action.action {
        Some(crdt_state_action::Action::Update(delta)) => Some(StateAction::Update(delta)),
        Some(crdt_state_action::Action::Delete(_)) => Some(StateAction::Delete),
        None => None,
    };
    (
        change,
        WriteConsistency::from_proto(action.write_consistency),
    )
}

/// Everything a CRDT entity answered to one command, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CrdtOutcome {
    command_id: i64,
    action: ClientAction,
    side_effects: Vec<SideEffect>,
    state_action: Option<StateAction<CrdtDelta>>,
    write_consistency: WriteConsistency,
    streamed: bool,
    streamed_messages: Vec<StreamedMessage>,
}

impl CrdtOutcome {
    /// The command's id (to [`cancel`](CrdtTestKit::cancel) its stream).
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// What the client gets first ([`ClientAction::NoReply`] for a streamed command that
    /// replied nothing yet).
    pub fn action(&self) -> &ClientAction {
        &self.action
    }

    /// The reply message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when the command did not reply with an `M`.
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

    /// The state change sent to the proxy: the net delta, or the deletion (none if the
    /// command failed or changed nothing).
    pub fn state_action(&self) -> Option<&StateAction<CrdtDelta>> {
        self.state_action.as_ref()
    }

    /// The net delta sent to the proxy, if any.
    pub fn delta(&self) -> Option<&CrdtDelta> {
        match &self.state_action {
            Some(StateAction::Update(delta)) => Some(delta),
            _ => None,
        }
    }

    /// The write consistency of the state change.
    pub fn write_consistency(&self) -> WriteConsistency {
        self.write_consistency
    }

    /// Whether the command is streamed and its stream stays open.
    pub fn streamed(&self) -> bool {
        self.streamed
    }

    /// The messages other open streams got because this command changed the state.
    pub fn streamed_messages(&self) -> &[StreamedMessage] {
        &self.streamed_messages
    }
}

/// What a CRDT entity answered to the cancellation of a streamed command, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelOutcome {
    side_effects: Vec<SideEffect>,
    state_action: Option<StateAction<CrdtDelta>>,
    write_consistency: WriteConsistency,
    streamed_messages: Vec<StreamedMessage>,
}

impl CancelOutcome {
    /// The side effects the proxy runs.
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// The state change of the on-cancel callback, if any.
    pub fn state_action(&self) -> Option<&StateAction<CrdtDelta>> {
        self.state_action.as_ref()
    }

    /// The net delta of the on-cancel callback, if any.
    pub fn delta(&self) -> Option<&CrdtDelta> {
        match &self.state_action {
            Some(StateAction::Update(delta)) => Some(delta),
            _ => None,
        }
    }

    /// The write consistency of the state change.
    pub fn write_consistency(&self) -> WriteConsistency {
        self.write_consistency
    }

    /// The messages other open streams got because the state changed.
    pub fn streamed_messages(&self) -> &[StreamedMessage] {
        &self.streamed_messages
    }
}

/// A message on the stream of a streamed command, after its reply, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedMessage {
    command_id: i64,
    action: ClientAction,
    side_effects: Vec<SideEffect>,
    end_stream: bool,
}

impl StreamedMessage {
    fn decode(message: CrdtStreamedMessage) -> Self {
        StreamedMessage {
            command_id: message.command_id,
            action: ClientAction::from_entity(message.client_action),
            side_effects: from_proto(message.side_effects),
            end_stream: message.end_stream,
        }
    }

    /// The streamed command's id.
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// What the client gets ([`ClientAction::NoReply`] for a message with side effects or the
    /// end of the stream only).
    pub fn action(&self) -> &ClientAction {
        &self.action
    }

    /// The message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when this is not a message of type `M`.
    pub fn reply<M: Message + Name + Default>(&self) -> Result<M, Error> {
        self.action.reply()
    }

    /// The failure, if the stream failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.action.failure()
    }

    /// The side effects the proxy runs with this message.
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// Whether the stream ends with this message.
    pub fn end_stream(&self) -> bool {
        self.end_stream
    }
}
