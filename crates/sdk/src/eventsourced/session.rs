//! One entity instance on one stream of the `EventSourced` protocol: the dispatch logic shared
//! by the server and the testkit.
//!
//! A session starts from the stream's `init`, replays events, then turns each command into
//! exactly one reply. Problems with a single command (unknown name, bad payload, a failing or
//! panicking handler) become a failure reply for that command; problems with the stream itself
//! become an [`Error::Protocol`], after which the stream must end.

use std::sync::Arc;

use cloudstate_protocol::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedStreamIn,
    EventSourcedStreamOut, event_sourced_stream_in, event_sourced_stream_out,
};
use cloudstate_protocol::{self as protocol, Any};

use super::{CommandContext, Event, EventSourced, EventSourcedEntity};
use crate::command::{Signature, panicked};
use crate::panic::guard;
use crate::reply::decode_any;
use crate::service::{Described, Sealed, Services};
use crate::stream::{EntityProtocol, EntityType, Session};
use crate::{Error, Failure};

/// An entity instance driven by protocol messages.
pub(crate) struct EventSourcedSession<E: EventSourcedEntity> {
    entity: Arc<EventSourced<E>>,
    entity_id: Arc<str>,
    state: E,
    /// Sequence number of the last event applied to `state`.
    sequence: i64,
    /// Whether a command arrived (events may not follow).
    commands_started: bool,
    /// Why the state can no longer be trusted (user code panicked while changing it).
    broken: Option<String>,
}

impl<E: EventSourcedEntity> EventSourcedSession<E> {
    /// Starts the entity described by `init` (its snapshot, if any, restores the state).
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the snapshot is not the entity's snapshot type or does not
    /// decode, or when user code panics while building the state.
    pub(crate) fn start(
        entity: Arc<EventSourced<E>>,
        init: EventSourcedInit,
    ) -> Result<Self, Error> {
        let entity_id: Arc<str> = init.entity_id.into();
        let (state, sequence) = match init.snapshot {
            None => (guard("default", E::default).map_err(Error::Protocol)?, 0),
            Some(snapshot) => {
                let any = snapshot
                    .snapshot
                    .ok_or_else(|| Error::Protocol("the init snapshot has no payload".into()))?;
                let decoded = decode_any::<E::Snapshot>(&any)
                    .map_err(|error| Error::Protocol(format!("snapshot: {error}")))?;
                let state = guard("from_snapshot", || E::from_snapshot(decoded))
                    .map_err(Error::Protocol)?
                    .ok_or_else(|| {
                        Error::Protocol(format!(
                            "the entity {entity_id} got a snapshot, but its type takes none"
                        ))
                    })?;
                (state, snapshot.snapshot_sequence)
            }
        };
        Ok(EventSourcedSession {
            entity,
            entity_id,
            state,
            sequence,
            commands_started: false,
            broken: None,
        })
    }

    /// The current state.
    pub(crate) fn state(&self) -> &E {
        &self.state
    }

    /// Sequence number of the last event applied.
    pub(crate) fn sequence(&self) -> i64 {
        self.sequence
    }

    /// Handles one message after `init`: replays an event (no output) or runs a command (its
    /// reply).
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for a second `init`, an event after a command, an event that does
    /// not decode or does not follow the previous sequence number, an empty message, and any
    /// message after user code panicked while applying events.
    pub(crate) fn handle(
        &mut self,
        message: Option<event_sourced_stream_in::Message>,
    ) -> Result<Option<EventSourcedReply>, Error> {
        if let Some(reason) = &self.broken {
            return Err(Error::Protocol(format!(
                "the entity cannot continue: {reason}"
            )));
        }
        match message {
            Some(event_sourced_stream_in::Message::Init(_)) => {
                Err(Error::Protocol("a second init message".into()))
            }
            Some(event_sourced_stream_in::Message::Event(event)) => {
                self.replay(event)?;
                Ok(None)
            }
            Some(event_sourced_stream_in::Message::Command(command)) => {
                Ok(Some(self.command(command)))
            }
            None => Err(Error::Protocol("an empty message".into())),
        }
    }

    fn replay(&mut self, event: EventSourcedEvent) -> Result<(), Error> {
        if self.commands_started {
            return Err(Error::Protocol(format!(
                "event {} arrived after a command",
                event.sequence
            )));
        }
        if event.sequence <= self.sequence {
            return Err(Error::Protocol(format!(
                "event {} does not follow event {}",
                event.sequence, self.sequence
            )));
        }
        let decoded = event
            .payload
            .ok_or_else(|| Error::Protocol("the event has no payload".into()))
            .and_then(|any| E::Event::from_any(&any))
            .map_err(|error| Error::Protocol(format!("event {}: {error}", event.sequence)))?;
        if let Err(panic) = guard("apply", || self.state.apply(&decoded)) {
            let reason = format!("replaying event {}: {panic}", event.sequence);
            self.broken = Some(reason.clone());
            return Err(Error::Protocol(reason));
        }
        self.sequence = event.sequence;
        Ok(())
    }

    fn command(&mut self, command: protocol::Command) -> EventSourcedReply {
        self.commands_started = true;
        let protocol::Command {
            id, name, payload, ..
        } = command;
        let mut ctx = CommandContext::new(self.entity_id.clone(), self.sequence, id);
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
        let (events, side_effects) = ctx.into_effects();
        let encoded = match guard("to_any", || events.iter().map(Event::to_any).collect()) {
            Ok(encoded) => encoded,
            Err(panic) => return failure_reply(id, panicked(&self.entity_id, &name, &panic)),
        };

        // The reply's events become the state's; if applying them fails the state is neither
        // before nor after them, so the proxy must restart the entity from its journal.
        if let Err(panic) = guard("apply", || events.iter().for_each(|e| self.state.apply(e))) {
            let reason = format!("applying the events of command {name}: {panic}");
            tracing::error!(entity_id = %self.entity_id, "{reason}; asking for a restart");
            self.broken = Some(reason.clone());
            return failure_reply(
                id,
                Failure::new(format!("Command {name} failed: {reason}")).with_restart(),
            );
        }
        let before = self.sequence;
        self.sequence = before.saturating_add(i64::try_from(events.len()).unwrap_or(i64::MAX));

        let snapshot = if snapshot_due(before, self.sequence, self.entity.snapshot_every_n()) {
            // A snapshot only saves replay time: without one the reply is still correct.
            guard("snapshot", || {
                self.state
                    .snapshot()
                    .map(|snapshot| Any::from_message(&snapshot))
            })
            .inspect_err(|panic| {
                tracing::warn!(entity_id = %self.entity_id, "no snapshot taken: {panic}");
            })
            .ok()
            .flatten()
        } else {
            None
        };

        EventSourcedReply {
            command_id: id,
            client_action: action.map(|action| protocol::ClientAction {
                action: Some(action),
            }),
            side_effects: side_effects
                .into_iter()
                .map(crate::SideEffect::into_proto)
                .collect(),
            events: encoded,
            snapshot,
        }
    }
}

/// Whether a reply taking the event count from `before` to `after` carries a snapshot: it
/// reaches or crosses a multiple of `every` (`0` = never).
fn snapshot_due(before: i64, after: i64, every: u32) -> bool {
    let every = i64::from(every);
    every > 0 && after > before && after.div_euclid(every) > before.div_euclid(every)
}

/// The reply to command `command_id` that carries only `failure`.
fn failure_reply(command_id: i64, failure: Failure) -> EventSourcedReply {
    EventSourcedReply {
        command_id,
        client_action: Some(protocol::ClientAction {
            action: Some(protocol::client_action::Action::Failure(
                failure.into_proto(command_id),
            )),
        }),
        ..EventSourcedReply::default()
    }
}

/// The `EventSourced` protocol's messages.
pub(crate) struct EventSourcedProtocol;

impl EntityProtocol for EventSourcedProtocol {
    type In = EventSourcedStreamIn;
    type Out = EventSourcedStreamOut;
    type Message = event_sourced_stream_in::Message;
    type Init = EventSourcedInit;
    type Reply = EventSourcedReply;

    fn message(input: EventSourcedStreamIn) -> Option<Self::Message> {
        input.message
    }

    fn init(message: Option<Self::Message>) -> Option<EventSourcedInit> {
        match message {
            Some(event_sourced_stream_in::Message::Init(init)) => Some(init),
            _ => None,
        }
    }

    fn target(init: &EventSourcedInit) -> (&str, &str) {
        (&init.service_name, &init.entity_id)
    }

    fn reply(reply: EventSourcedReply) -> impl IntoIterator<Item = EventSourcedStreamOut> {
        std::iter::once(EventSourcedStreamOut {
            message: Some(event_sourced_stream_out::Message::Reply(reply)),
        })
    }

    fn failure(failure: protocol::Failure) -> EventSourcedStreamOut {
        EventSourcedStreamOut {
            message: Some(event_sourced_stream_out::Message::Failure(failure)),
        }
    }
}

impl<E: EventSourcedEntity> Session<EventSourcedProtocol> for EventSourcedSession<E> {
    fn handle(
        &mut self,
        message: Option<event_sourced_stream_in::Message>,
    ) -> Result<Option<EventSourcedReply>, Error> {
        EventSourcedSession::handle(self, message)
    }
}

impl<E: EventSourcedEntity> Described for EventSourced<E> {
    fn spec(&self) -> protocol::Entity {
        self.settings().spec(protocol::entity_type::EVENT_SOURCED)
    }

    fn signatures(&self) -> Vec<Signature> {
        self.commands().signatures()
    }
}

impl<E: EventSourcedEntity> EntityType<EventSourcedProtocol> for EventSourced<E> {
    fn start(
        self: Arc<Self>,
        init: EventSourcedInit,
    ) -> Result<Box<dyn Session<EventSourcedProtocol>>, Error> {
        Ok(Box::new(EventSourcedSession::start(self, init)?))
    }
}

impl<E: EventSourcedEntity> Sealed for EventSourced<E> {
    fn register(self, services: &mut Services) -> Result<(), Error> {
        let entity = Arc::new(self);
        let name = services.check(&*entity)?;
        services.event_sourced.insert(name, entity);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cloudstate_protocol::eventsourced::EventSourcedSnapshot;
    use prost::Message;

    use super::*;
    use crate::test_entity::{Model, Request, State, Unrelated, appended, model, request};

    fn start(snapshot: Option<(i64, &str)>) -> EventSourcedSession<Model> {
        let init = EventSourcedInit {
            service_name: model().service_name().to_owned(),
            entity_id: "e1".into(),
            snapshot: snapshot.map(|(sequence, value)| EventSourcedSnapshot {
                snapshot_sequence: sequence,
                snapshot: Some(Any::from_message(&State {
                    value: value.into(),
                })),
            }),
        };
        EventSourcedSession::start(Arc::new(model()), init).unwrap()
    }

    fn event(sequence: i64, value: &str) -> Option<event_sourced_stream_in::Message> {
        Some(event_sourced_stream_in::Message::Event(EventSourcedEvent {
            sequence,
            payload: Some(appended(value).to_any()),
        }))
    }

    fn command(id: i64, name: &str, payload: Any) -> Option<event_sourced_stream_in::Message> {
        Some(event_sourced_stream_in::Message::Command(
            protocol::Command {
                entity_id: "e1".into(),
                id,
                name: name.into(),
                payload: Some(payload),
                ..protocol::Command::default()
            },
        ))
    }

    fn run(
        session: &mut EventSourcedSession<Model>,
        id: i64,
        name: &str,
        values: &[&str],
    ) -> EventSourcedReply {
        session
            .handle(command(id, name, Any::from_message(&request(values))))
            .unwrap()
            .unwrap()
    }

    fn failure(reply: &EventSourcedReply) -> &protocol::Failure {
        match reply.client_action.as_ref().and_then(|a| a.action.as_ref()) {
            Some(protocol::client_action::Action::Failure(failure)) => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn reply_payload(reply: &EventSourcedReply) -> &Any {
        match reply.client_action.as_ref().and_then(|a| a.action.as_ref()) {
            Some(protocol::client_action::Action::Reply(reply)) => reply.payload.as_ref().unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn snapshot_value(reply: &EventSourcedReply) -> Option<String> {
        reply
            .snapshot
            .as_ref()
            .map(|any| decode_any::<State>(any).unwrap().value)
    }

    #[test]
    fn snapshot_rule_reaches_or_crosses_a_multiple() {
        assert!(!snapshot_due(0, 4, 5));
        assert!(snapshot_due(4, 5, 5));
        assert!(snapshot_due(4, 6, 5));
        assert!(snapshot_due(0, 5, 5));
        assert!(!snapshot_due(5, 9, 5));
        assert!(snapshot_due(8, 11, 5));
        assert!(!snapshot_due(5, 5, 5), "no events, no snapshot");
        assert!(!snapshot_due(0, 100, 0), "0 disables");
        assert!(snapshot_due(1, 2, 1));
    }

    #[test]
    fn snapshots_follow_the_tck_sequence() {
        let mut session = start(None);
        let commands: [&[&str]; 8] = [
            &["A"],
            &["B"],
            &["C"],
            &["D"],
            &["E"],
            &["F", "G", "H"],
            &["I", "J"],
            &["K"],
        ];
        let snapshots: Vec<_> = commands
            .iter()
            .zip(1..)
            .map(|(values, id)| snapshot_value(&run(&mut session, id, "Emit", values)))
            .collect();
        let expected = [
            None,
            None,
            None,
            None,
            Some("ABCDE".to_owned()),
            None,
            Some("ABCDEFGHIJ".to_owned()),
            None,
        ];
        assert_eq!(snapshots, expected);
        assert_eq!(session.sequence(), 11);
        assert_eq!(session.state().value, "ABCDEFGHIJK");
    }

    #[test]
    fn reply_carries_command_id_events_and_typed_payload() {
        let mut session = start(None);
        let reply = run(&mut session, 7, "Emit", &["A", "B"]);
        assert_eq!(reply.command_id, 7);
        assert_eq!(
            reply.events,
            [appended("A").to_any(), appended("B").to_any()]
        );
        assert_eq!(
            reply.events[0].type_url,
            "type.googleapis.com/test.model.Appended"
        );
        assert_eq!(
            reply_payload(&reply).type_url,
            "type.googleapis.com/google.protobuf.Empty"
        );
        let reply = run(&mut session, 8, "Get", &[]);
        assert_eq!(
            reply_payload(&reply).type_url,
            "type.googleapis.com/test.model.State"
        );
        assert_eq!(
            decode_any::<State>(reply_payload(&reply)).unwrap().value,
            "AB"
        );
    }

    #[test]
    fn failure_discards_events_and_side_effects() {
        let mut session = start(None);
        run(&mut session, 1, "Emit", &["A"]);
        let reply = run(&mut session, 2, "Fail", &["X", "Y", "Z", "W", "V"]);
        assert_eq!(reply.command_id, 2);
        assert!(reply.events.is_empty());
        assert!(reply.side_effects.is_empty());
        assert!(reply.snapshot.is_none());
        let failure = failure(&reply);
        assert_eq!(failure.command_id, 2);
        assert_eq!(failure.description, "expected failure");
        assert_eq!(
            failure.grpc_status_code,
            i32::from(tonic::Code::FailedPrecondition)
        );
        assert!(!failure.restart);
        assert_eq!(session.state().value, "A");
        assert_eq!(session.sequence(), 1);
        // The stream carries on.
        assert_eq!(run(&mut session, 3, "Emit", &["B"]).events.len(), 1);
    }

    #[test]
    fn unknown_command_fails_that_command_only() {
        let mut session = start(None);
        let reply = run(&mut session, 1, "Nope", &[]);
        let failure = failure(&reply);
        assert_eq!(failure.command_id, 1);
        assert_eq!(
            failure.description,
            "Unknown command Nope on service test.model.Model"
        );
        assert_eq!(
            failure.grpc_status_code,
            i32::from(tonic::Code::Unimplemented)
        );
        assert!(run(&mut session, 2, "Emit", &["A"]).client_action.is_some());
    }

    #[test]
    fn payload_of_another_type_or_undecodable_fails_the_command() {
        let mut session = start(None);
        let other = Any::from_message(&State { value: "x".into() });
        let reply = session.handle(command(1, "Emit", other)).unwrap().unwrap();
        let wrong_type = failure(&reply);
        assert!(
            wrong_type
                .description
                .contains("expects a test.model.Request"),
            "{wrong_type:?}"
        );
        assert_eq!(
            wrong_type.grpc_status_code,
            i32::from(tonic::Code::InvalidArgument)
        );

        let garbage = Any {
            type_url: Any::from_message(&Request::default()).type_url,
            value: vec![0x0a, 0xff].into(),
        };
        let reply = session
            .handle(command(2, "Emit", garbage))
            .unwrap()
            .unwrap();
        let undecodable = failure(&reply);
        assert!(
            undecodable
                .description
                .starts_with("Command Emit: cannot decode"),
            "{undecodable:?}"
        );
        assert_eq!(
            undecodable.grpc_status_code,
            i32::from(tonic::Code::InvalidArgument)
        );
        assert_eq!(session.sequence(), 0);
    }

    #[test]
    fn missing_payload_is_the_default_message() {
        let mut session = start(None);
        let message = Some(event_sourced_stream_in::Message::Command(
            protocol::Command {
                id: 1,
                name: "Get".into(),
                ..protocol::Command::default()
            },
        ));
        let reply = session.handle(message).unwrap().unwrap();
        assert_eq!(
            decode_any::<State>(reply_payload(&reply)).unwrap(),
            State::default()
        );
    }

    #[test]
    fn handler_panic_fails_the_command_and_keeps_the_state() {
        let mut session = start(None);
        run(&mut session, 1, "Emit", &["A"]);
        let reply = run(&mut session, 2, "Panic", &[]);
        let failure = failure(&reply);
        assert!(failure.description.contains("handler bug"), "{failure:?}");
        assert!(!failure.restart);
        assert_eq!(session.state().value, "A");
        assert!(run(&mut session, 3, "Emit", &["B"]).client_action.is_some());
    }

    #[test]
    fn apply_panic_asks_for_a_restart_and_ends_the_session() {
        let mut session = start(None);
        let reply = run(&mut session, 1, "Emit", &["A", "boom"]);
        assert!(reply.events.is_empty());
        let failure = failure(&reply);
        assert!(failure.restart);
        assert!(
            failure.description.contains("apply refuses boom"),
            "{failure:?}"
        );
        let next = session.handle(command(2, "Get", Any::from_message(&request(&[]))));
        assert!(matches!(next, Err(Error::Protocol(_))));
    }

    #[test]
    fn forward_and_side_effects_go_with_the_events() {
        let mut session = start(None);
        let reply = run(&mut session, 1, "Forward", &["A"]);
        assert_eq!(reply.events.len(), 1);
        match reply.client_action.and_then(|a| a.action) {
            Some(protocol::client_action::Action::Forward(forward)) => {
                assert_eq!(forward.service_name, "test.model.Two");
                assert_eq!(forward.command_name, "Call");
                assert_eq!(
                    forward.payload.unwrap(),
                    Any::from_message(&request(&["A"]))
                );
            }
            other => panic!("expected a forward, got {other:?}"),
        }
        let reply = run(&mut session, 2, "Effects", &["B"]);
        let effects: Vec<_> = reply
            .side_effects
            .iter()
            .map(|e| (e.command_name.as_str(), e.synchronous))
            .collect();
        assert_eq!(effects, [("Get", false), ("Emit", true)]);
        assert!(reply.client_action.is_some());
        let reply = run(&mut session, 3, "Nothing", &[]);
        assert!(reply.client_action.is_none());
    }

    #[test]
    fn replay_from_snapshot_and_events() {
        let mut session = start(Some((5, "ABCDE")));
        session.handle(event(6, "F")).unwrap();
        session.handle(event(7, "G")).unwrap();
        assert_eq!(session.state().value, "ABCDEFG");
        assert_eq!(session.sequence(), 7);
        let reply = run(&mut session, 1, "Whoami", &[]);
        assert_eq!(
            decode_any::<State>(reply_payload(&reply)).unwrap().value,
            "e1@7#1"
        );
        // Events 8, 9, 10: the count crosses 10, so a snapshot of everything comes along.
        let reply = run(&mut session, 2, "Emit", &["H", "I", "J"]);
        assert_eq!(snapshot_value(&reply).as_deref(), Some("ABCDEFGHIJ"));
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut session = start(None);
        let init = Some(event_sourced_stream_in::Message::Init(
            EventSourcedInit::default(),
        ));
        assert!(matches!(session.handle(init), Err(Error::Protocol(_))));
        assert!(matches!(session.handle(None), Err(Error::Protocol(_))));

        let mut session = start(Some((5, "ABCDE")));
        assert!(matches!(
            session.handle(event(5, "F")),
            Err(Error::Protocol(_))
        ));
        let unknown = Some(event_sourced_stream_in::Message::Event(EventSourcedEvent {
            sequence: 6,
            payload: Some(Any::from_message(&Unrelated::default())),
        }));
        assert!(matches!(session.handle(unknown), Err(Error::Protocol(_))));
        let garbage = Some(event_sourced_stream_in::Message::Event(EventSourcedEvent {
            sequence: 6,
            payload: Some(Any {
                type_url: appended("x").to_any().type_url,
                value: vec![0xff].into(),
            }),
        }));
        assert!(matches!(session.handle(garbage), Err(Error::Protocol(_))));

        run(&mut session, 1, "Get", &[]);
        assert!(matches!(
            session.handle(event(6, "F")),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn snapshot_of_another_type_is_rejected() {
        let init = EventSourcedInit {
            service_name: model().service_name().to_owned(),
            entity_id: "e1".into(),
            snapshot: Some(EventSourcedSnapshot {
                snapshot_sequence: 1,
                snapshot: Some(Any::from_message(&Unrelated::default())),
            }),
        };
        assert!(matches!(
            EventSourcedSession::start(Arc::new(model()), init),
            Err(Error::Protocol(_))
        ));
        // A snapshot that decodes is fine even when encoded by someone else.
        let bytes = State { value: "Z".into() }.encode_to_vec();
        let init = EventSourcedInit {
            service_name: model().service_name().to_owned(),
            entity_id: "e1".into(),
            snapshot: Some(EventSourcedSnapshot {
                snapshot_sequence: 1,
                snapshot: Some(Any {
                    type_url: Any::from_message(&State::default()).type_url,
                    value: bytes.into(),
                }),
            }),
        };
        assert_eq!(
            EventSourcedSession::start(Arc::new(model()), init)
                .unwrap()
                .state()
                .value,
            "Z"
        );
    }
}
