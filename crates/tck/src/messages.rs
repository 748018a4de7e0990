//! Builders of the protocol messages cases expect, one module per protocol, in the words of the
//! original TCK's testkit (`init`, `command`, `reply`, `forward`, `failure`, ...).

use cloudstate_protocol::{self as protocol, Any, ClientAction, client_action};
use prost::{Message, Name};

/// `type.googleapis.com/<full name>` with the message's bytes.
pub fn any<M: Message + Name>(message: &M) -> Any {
    Any::from_message(message)
}

/// What goes with a reply besides its client action.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    side_effects: Vec<protocol::SideEffect>,
    events: Vec<Any>,
    snapshot: Option<Any>,
    value_action: Option<protocol::valueentity::ValueEntityAction>,
    crdt_action: Option<protocol::crdt::CrdtStateAction>,
}

impl Effects {
    /// Nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds a side effect to `service` `command` with `payload`.
    pub fn side_effect<M: Message + Name>(
        mut self,
        service: &str,
        command: &str,
        payload: &M,
        synchronous: bool,
    ) -> Self {
        self.side_effects.push(protocol::SideEffect {
            service_name: service.to_owned(),
            command_name: command.to_owned(),
            payload: Some(any(payload)),
            synchronous,
            metadata: None,
        });
        self
    }

    /// Adds these events (event sourced).
    pub fn events(mut self, events: impl IntoIterator<Item = Any>) -> Self {
        self.events.extend(events);
        self
    }

    /// Sets the snapshot (event sourced).
    pub fn snapshot(mut self, snapshot: Any) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Sets the state action to an update with `value` (value entity).
    pub fn update(mut self, value: Any) -> Self {
        self.value_action = Some(protocol::valueentity::ValueEntityAction {
            action: Some(protocol::valueentity::value_entity_action::Action::Update(
                protocol::valueentity::ValueEntityUpdate { value: Some(value) },
            )),
        });
        self
    }

    /// Sets the state action to a delete (value entity).
    pub fn delete(mut self) -> Self {
        self.value_action = Some(protocol::valueentity::ValueEntityAction {
            action: Some(protocol::valueentity::value_entity_action::Action::Delete(
                protocol::valueentity::ValueEntityDelete {},
            )),
        });
        self
    }

    /// Sets the CRDT state action.
    pub fn crdt_action(mut self, action: protocol::crdt::CrdtStateAction) -> Self {
        self.crdt_action = Some(action);
        self
    }

    /// Adds the side effects of `other` after these.
    pub fn and(mut self, other: Effects) -> Self {
        self.side_effects.extend(other.side_effects);
        self.events.extend(other.events);
        self.snapshot = other.snapshot.or(self.snapshot);
        self.value_action = other.value_action.or(self.value_action);
        self.crdt_action = other.crdt_action.or(self.crdt_action);
        self
    }

    /// The side effects.
    pub fn side_effects(&self) -> &[protocol::SideEffect] {
        &self.side_effects
    }
}

/// A reply client action with `payload`.
pub fn reply_action<M: Message + Name>(payload: &M) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Reply(protocol::Reply::with_payload(
            any(payload),
        ))),
    }
}

/// A forward client action to `service` `command` with `payload`.
pub fn forward_action<M: Message + Name>(
    service: &str,
    command: &str,
    payload: &M,
) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Forward(protocol::Forward {
            service_name: service.to_owned(),
            command_name: command.to_owned(),
            payload: Some(any(payload)),
            metadata: None,
        })),
    }
}

/// A failure client action for command `command_id`.
pub fn failure_action(command_id: i64, description: &str, restart: bool) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Failure(protocol::Failure {
            restart,
            ..protocol::Failure::for_command(command_id, description)
        })),
    }
}

/// A command as the proxy sends it to a stateful entity: no metadata.
fn command<M: Message + Name>(
    id: i64,
    entity_id: &str,
    name: &str,
    payload: &M,
) -> protocol::Command {
    protocol::Command {
        entity_id: entity_id.to_owned(),
        id,
        name: name.to_owned(),
        payload: Some(any(payload)),
        streamed: false,
        metadata: None,
    }
}

/// `cloudstate.eventsourced`.
pub mod event_sourced {
    use cloudstate_protocol::eventsourced::{
        EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot,
        EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in as stream_in,
        event_sourced_stream_out as stream_out,
    };
    use cloudstate_protocol::{Any, ClientAction};
    use prost::{Message, Name};

    use super::Effects;

    /// `init` of `entity_id` of `service`, with a snapshot `(sequence, value)` if given.
    pub fn init(
        service: &str,
        entity_id: &str,
        snapshot: Option<(i64, Any)>,
    ) -> EventSourcedStreamIn {
        in_message(stream_in::Message::Init(EventSourcedInit {
            service_name: service.to_owned(),
            entity_id: entity_id.to_owned(),
            snapshot: snapshot.map(|(sequence, snapshot)| EventSourcedSnapshot {
                snapshot_sequence: sequence,
                snapshot: Some(snapshot),
            }),
        }))
    }

    /// A replayed event.
    pub fn event(sequence: i64, payload: Any) -> EventSourcedStreamIn {
        in_message(stream_in::Message::Event(EventSourcedEvent {
            sequence,
            payload: Some(payload),
        }))
    }

    /// Command `id` named `name`.
    pub fn command<M: Message + Name>(
        id: i64,
        entity_id: &str,
        name: &str,
        payload: &M,
    ) -> EventSourcedStreamIn {
        in_message(stream_in::Message::Command(super::command(
            id, entity_id, name, payload,
        )))
    }

    /// A reply to command `id` with `payload`.
    pub fn reply<M: Message + Name>(
        id: i64,
        payload: &M,
        effects: Effects,
    ) -> EventSourcedStreamOut {
        out(id, super::reply_action(payload), effects)
    }

    /// A forward of command `id`.
    pub fn forward<M: Message + Name>(
        id: i64,
        service: &str,
        command: &str,
        payload: &M,
        effects: Effects,
    ) -> EventSourcedStreamOut {
        out(
            id,
            super::forward_action(service, command, payload),
            effects,
        )
    }

    /// A failure of command `id` (a client action).
    pub fn failure(id: i64, description: &str, restart: bool) -> EventSourcedStreamOut {
        out(
            id,
            super::failure_action(id, description, restart),
            Effects::none(),
        )
    }

    fn out(id: i64, action: ClientAction, effects: Effects) -> EventSourcedStreamOut {
        EventSourcedStreamOut {
            message: Some(stream_out::Message::Reply(EventSourcedReply {
                command_id: id,
                client_action: Some(action),
                side_effects: effects.side_effects,
                events: effects.events,
                snapshot: effects.snapshot,
            })),
        }
    }

    fn in_message(message: stream_in::Message) -> EventSourcedStreamIn {
        EventSourcedStreamIn {
            message: Some(message),
        }
    }
}

/// `cloudstate.valueentity`.
pub mod value_entity {
    use cloudstate_protocol::valueentity::{
        ValueEntityInit, ValueEntityInitState, ValueEntityReply, ValueEntityStreamIn,
        ValueEntityStreamOut, value_entity_stream_in as stream_in,
        value_entity_stream_out as stream_out,
    };
    use cloudstate_protocol::{Any, ClientAction};
    use prost::{Message, Name};

    use super::Effects;

    /// `init` of `entity_id` of `service`: the state is always there, its value only if stored.
    pub fn init(service: &str, entity_id: &str, value: Option<Any>) -> ValueEntityStreamIn {
        in_message(stream_in::Message::Init(ValueEntityInit {
            service_name: service.to_owned(),
            entity_id: entity_id.to_owned(),
            state: Some(ValueEntityInitState { value }),
        }))
    }

    /// Command `id` named `name`.
    pub fn command<M: Message + Name>(
        id: i64,
        entity_id: &str,
        name: &str,
        payload: &M,
    ) -> ValueEntityStreamIn {
        in_message(stream_in::Message::Command(super::command(
            id, entity_id, name, payload,
        )))
    }

    /// A reply to command `id` with `payload`.
    pub fn reply<M: Message + Name>(
        id: i64,
        payload: &M,
        effects: Effects,
    ) -> ValueEntityStreamOut {
        out(id, super::reply_action(payload), effects)
    }

    /// A forward of command `id`.
    pub fn forward<M: Message + Name>(
        id: i64,
        service: &str,
        command: &str,
        payload: &M,
        effects: Effects,
    ) -> ValueEntityStreamOut {
        out(
            id,
            super::forward_action(service, command, payload),
            effects,
        )
    }

    /// A failure of command `id` (a client action).
    pub fn failure(id: i64, description: &str) -> ValueEntityStreamOut {
        out(
            id,
            super::failure_action(id, description, false),
            Effects::none(),
        )
    }

    fn out(id: i64, action: ClientAction, effects: Effects) -> ValueEntityStreamOut {
        ValueEntityStreamOut {
            message: Some(stream_out::Message::Reply(ValueEntityReply {
                command_id: id,
                client_action: Some(action),
                side_effects: effects.side_effects,
                state_action: effects.value_action,
            })),
        }
    }

    fn in_message(message: stream_in::Message) -> ValueEntityStreamIn {
        ValueEntityStreamIn {
            message: Some(message),
        }
    }
}

/// `cloudstate.action`.
pub mod action {
    use cloudstate_protocol::action::{ActionCommand, ActionResponse, action_response};
    use cloudstate_protocol::{Failure, client_action};
    use prost::{Message, Name};

    use super::{Effects, any};

    /// A command to `service` `name`, with `payload` unless it is the first message of a
    /// streamed call. No metadata: cases compare commands [`without_metadata`].
    pub fn command<M: Message + Name>(
        service: &str,
        name: &str,
        payload: Option<&M>,
    ) -> ActionCommand {
        ActionCommand {
            service_name: service.to_owned(),
            name: name.to_owned(),
            payload: payload.map(any),
            metadata: None,
        }
    }

    /// A later message of a streamed call: the payload only.
    pub fn payload<M: Message + Name>(payload: &M) -> ActionCommand {
        ActionCommand {
            payload: Some(any(payload)),
            ..ActionCommand::default()
        }
    }

    /// `command` without its metadata (the request headers the proxy passes on).
    pub fn without_metadata(command: ActionCommand) -> ActionCommand {
        ActionCommand {
            metadata: None,
            ..command
        }
    }

    /// A reply with `payload`.
    pub fn reply<M: Message + Name>(payload: &M, effects: Effects) -> ActionResponse {
        let action = super::reply_action(payload).action;
        response(
            action.map(|action| match action {
                client_action::Action::Reply(reply) => action_response::Response::Reply(reply),
                _ => unreachable!("a reply action"),
            }),
            effects,
        )
    }

    /// No reply, only `effects`.
    pub fn no_reply(effects: Effects) -> ActionResponse {
        response(None, effects)
    }

    /// A forward to `service` `command` with `payload`.
    pub fn forward<M: Message + Name>(
        service: &str,
        command: &str,
        payload: &M,
        effects: Effects,
    ) -> ActionResponse {
        let forward = match super::forward_action(service, command, payload).action {
            Some(client_action::Action::Forward(forward)) => forward,
            _ => unreachable!("a forward action"),
        };
        response(Some(action_response::Response::Forward(forward)), effects)
    }

    /// A failure with `description` (command id 0: actions have no command ids).
    pub fn failure(description: &str, effects: Effects) -> ActionResponse {
        response(
            Some(action_response::Response::Failure(Failure::for_command(
                0,
                description,
            ))),
            effects,
        )
    }

    fn response(response: Option<action_response::Response>, effects: Effects) -> ActionResponse {
        ActionResponse {
            response,
            side_effects: effects.side_effects,
        }
    }
}

/// `cloudstate.crdt`: stream messages, deltas and state actions.
pub mod crdt {
    use cloudstate_protocol::crdt::{
        CrdtClock, CrdtDelete, CrdtDelta, CrdtInit, CrdtReply, CrdtStateAction,
        CrdtStreamCancelledResponse, CrdtStreamIn, CrdtStreamOut, CrdtStreamedMessage,
        CrdtWriteConsistency, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta, OrMapDelta,
        OrMapEntryDelta, OrSetDelta, PnCounterDelta, VoteDelta, crdt_delta, crdt_state_action,
        crdt_stream_in as stream_in, crdt_stream_out as stream_out,
    };
    use cloudstate_protocol::{Any, ClientAction, StreamCancelled};
    use prost::{Message, Name};

    use super::Effects;

    /// `init` of `entity_id` of `service`, with the entity's whole state as a delta if it has
    /// one.
    pub fn init(service: &str, entity_id: &str, delta: Option<CrdtDelta>) -> CrdtStreamIn {
        in_message(stream_in::Message::Init(CrdtInit {
            service_name: service.to_owned(),
            entity_id: entity_id.to_owned(),
            delta,
        }))
    }

    /// A delta from the proxy.
    pub fn delta(delta: CrdtDelta) -> CrdtStreamIn {
        in_message(stream_in::Message::Delta(delta))
    }

    /// The proxy deleted the entity.
    pub fn delete() -> CrdtStreamIn {
        in_message(stream_in::Message::Delete(CrdtDelete {}))
    }

    /// Command `id` named `name`; `streamed` for a server-streaming call.
    pub fn command<M: Message + Name>(
        id: i64,
        entity_id: &str,
        name: &str,
        payload: &M,
        streamed: bool,
    ) -> CrdtStreamIn {
        let mut command = super::command(id, entity_id, name, payload);
        command.streamed = streamed;
        in_message(stream_in::Message::Command(command))
    }

    /// The client cancelled streamed command `id`.
    pub fn stream_cancelled(id: i64, entity_id: &str) -> CrdtStreamIn {
        in_message(stream_in::Message::StreamCancelled(StreamCancelled {
            entity_id: entity_id.to_owned(),
            id,
        }))
    }

    /// A reply to command `id` with `payload`.
    pub fn reply<M: Message + Name>(id: i64, payload: &M, effects: Effects) -> CrdtStreamOut {
        out(id, Some(super::reply_action(payload)), effects, false)
    }

    /// The first reply to streamed command `id`, keeping its stream open.
    pub fn reply_streamed<M: Message + Name>(
        id: i64,
        payload: &M,
        effects: Effects,
    ) -> CrdtStreamOut {
        out(id, Some(super::reply_action(payload)), effects, true)
    }

    /// A reply to command `id` without a client action (a streamed command's empty start).
    pub fn reply_without_action(id: i64, effects: Effects, streamed: bool) -> CrdtStreamOut {
        out(id, None, effects, streamed)
    }

    /// A forward of command `id`.
    pub fn forward<M: Message + Name>(
        id: i64,
        service: &str,
        command: &str,
        payload: &M,
        effects: Effects,
    ) -> CrdtStreamOut {
        out(
            id,
            Some(super::forward_action(service, command, payload)),
            effects,
            false,
        )
    }

    /// A failure of command `id` (a client action).
    pub fn failure(id: i64, description: &str) -> CrdtStreamOut {
        out(
            id,
            Some(super::failure_action(id, description, false)),
            Effects::none(),
            false,
        )
    }

    /// A later message of streamed command `id`.
    pub fn streamed<M: Message + Name>(
        id: i64,
        payload: &M,
        effects: Effects,
        end_stream: bool,
    ) -> CrdtStreamOut {
        CrdtStreamOut {
            message: Some(stream_out::Message::StreamedMessage(CrdtStreamedMessage {
                command_id: id,
                client_action: Some(super::reply_action(payload)),
                side_effects: effects.side_effects,
                end_stream,
            })),
        }
    }

    /// The answer to the cancellation of streamed command `id`.
    pub fn cancelled(id: i64, effects: Effects) -> CrdtStreamOut {
        CrdtStreamOut {
            message: Some(stream_out::Message::StreamCancelledResponse(
                CrdtStreamCancelledResponse {
                    command_id: id,
                    side_effects: effects.side_effects,
                    state_action: effects.crdt_action,
                },
            )),
        }
    }

    fn out(
        id: i64,
        action: Option<ClientAction>,
        effects: Effects,
        streamed: bool,
    ) -> CrdtStreamOut {
        CrdtStreamOut {
            message: Some(stream_out::Message::Reply(CrdtReply {
                command_id: id,
                client_action: action,
                side_effects: effects.side_effects,
                state_action: effects.crdt_action,
                streamed,
            })),
        }
    }

    fn in_message(message: stream_in::Message) -> CrdtStreamIn {
        CrdtStreamIn {
            message: Some(message),
        }
    }

    /// An update of the state with `delta`, written locally.
    pub fn update(delta: CrdtDelta) -> CrdtStateAction {
        update_with(delta, CrdtWriteConsistency::Local)
    }

    /// An update of the state with `delta`, written with `consistency`.
    pub fn update_with(delta: CrdtDelta, consistency: CrdtWriteConsistency) -> CrdtStateAction {
        CrdtStateAction {
            action: Some(crdt_state_action::Action::Update(delta)),
            write_consistency: consistency.into(),
        }
    }

    /// The deletion of the entity.
    pub fn delete_action() -> CrdtStateAction {
        CrdtStateAction {
            action: Some(crdt_state_action::Action::Delete(CrdtDelete {})),
            write_consistency: CrdtWriteConsistency::Local.into(),
        }
    }

    /// A string as CRDT elements, keys and register values travel: `p.cloudstate.io/string`.
    pub fn string(value: &str) -> Any {
        Any {
            type_url: "p.cloudstate.io/string".to_owned(),
            value: value.to_owned().encode_to_vec().into(),
        }
    }

    fn delta_of(delta: crdt_delta::Delta) -> CrdtDelta {
        CrdtDelta { delta: Some(delta) }
    }

    /// A GCounter delta.
    pub fn gcounter(increment: u64) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Gcounter(GCounterDelta { increment }))
    }

    /// A PNCounter delta.
    pub fn pncounter(change: i64) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Pncounter(PnCounterDelta { change }))
    }

    /// A GSet delta adding `added`.
    pub fn gset(added: &[&str]) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Gset(GSetDelta {
            added: added.iter().map(|element| string(element)).collect(),
        }))
    }

    /// An ORSet delta.
    pub fn orset(cleared: bool, removed: &[&str], added: &[&str]) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Orset(OrSetDelta {
            cleared,
            removed: removed.iter().map(|element| string(element)).collect(),
            added: added.iter().map(|element| string(element)).collect(),
        }))
    }

    /// An LWWRegister delta with the default clock.
    pub fn lww(value: &str) -> CrdtDelta {
        lww_clock(value, CrdtClock::Default, 0)
    }

    /// An LWWRegister delta with `clock`.
    pub fn lww_clock(value: &str, clock: CrdtClock, custom_clock_value: i64) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Lwwregister(LwwRegisterDelta {
            value: Some(string(value)),
            clock: clock.into(),
            custom_clock_value,
        }))
    }

    /// A Flag delta.
    pub fn flag(value: bool) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Flag(FlagDelta { value }))
    }

    /// A Vote delta (the user function sends only its own vote; the proxy all three).
    pub fn vote(self_vote: bool, votes_for: i32, total_voters: i32) -> CrdtDelta {
        delta_of(crdt_delta::Delta::Vote(VoteDelta {
            self_vote,
            votes_for,
            total_voters,
        }))
    }

    /// An ORMap delta.
    pub fn ormap(
        cleared: bool,
        removed: &[&str],
        updated: Vec<(&str, CrdtDelta)>,
        added: Vec<(&str, CrdtDelta)>,
    ) -> CrdtDelta {
        let entries = |entries: Vec<(&str, CrdtDelta)>| {
            entries
                .into_iter()
                .map(|(key, delta)| OrMapEntryDelta {
                    key: Some(string(key)),
                    delta: Some(delta),
                })
                .collect()
        };
        delta_of(crdt_delta::Delta::Ormap(OrMapDelta {
            cleared,
            removed: removed.iter().map(|key| string(key)).collect(),
            updated: entries(updated),
            added: entries(added),
        }))
    }

    /// `message` with the elements and entries of the deltas it carries sorted, so that
    /// deltas compare whatever order a library builds them in.
    pub fn normalized(mut message: CrdtStreamOut) -> CrdtStreamOut {
        let action = match &mut message.message {
            Some(stream_out::Message::Reply(reply)) => reply.state_action.as_mut(),
            Some(stream_out::Message::StreamCancelledResponse(response)) => {
                response.state_action.as_mut()
            }
            _ => None,
        };
        if let Some(CrdtStateAction {
            action: Some(crdt_state_action::Action::Update(delta)),
            ..
        }) = action
        {
            sort_delta(delta);
        }
        message
    }

    fn sort_anys(anys: &mut [Any]) {
        anys.sort_by(|a, b| (&a.type_url, &a.value).cmp(&(&b.type_url, &b.value)));
    }

    fn sort_delta(delta: &mut CrdtDelta) {
        match &mut delta.delta {
            Some(crdt_delta::Delta::Gset(set)) => sort_anys(&mut set.added),
            Some(crdt_delta::Delta::Orset(set)) => {
                sort_anys(&mut set.removed);
                sort_anys(&mut set.added);
            }
            Some(crdt_delta::Delta::Ormap(map)) => {
                sort_anys(&mut map.removed);
                for entries in [&mut map.updated, &mut map.added] {
                    for entry in entries.iter_mut() {
                        if let Some(delta) = &mut entry.delta {
                            sort_delta(delta);
                        }
                    }
                    entries.sort_by(|a, b| {
                        let key = |entry: &OrMapEntryDelta| {
                            entry
                                .key
                                .as_ref()
                                .map(|key| (key.type_url.clone(), key.value.clone()))
                        };
                        key(a).cmp(&key(b))
                    });
                }
            }
            _ => {}
        }
    }
}
