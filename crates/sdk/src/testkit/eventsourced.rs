//! The event sourced entity testkit.

use std::fmt;
use std::sync::Arc;

use cloudstate_protocol::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot,
    event_sourced_stream_in,
};
use cloudstate_protocol::{self as protocol, Any};
use prost::{Message, Name};

use super::{ClientAction, for_service};
use crate::eventsourced::session::EventSourcedSession;
use crate::reply::decode_any;
use crate::{Call, Error, Event, EventSourced, EventSourcedEntity, Failure, Forward, SideEffect};

/// One event sourced entity instance driven as the proxy would drive it.
pub struct EventSourcedTestKit<E: EventSourcedEntity> {
    entity: Arc<EventSourced<E>>,
    entity_id: String,
    session: EventSourcedSession<E>,
    next_command_id: i64,
    journal: Vec<(i64, E::Event)>,
    snapshot: Option<(i64, E::Snapshot)>,
}

impl<E: EventSourcedEntity> EventSourcedTestKit<E> {
    /// A new entity `entity_id` with no snapshot and no events.
    ///
    /// # Panics
    ///
    /// If the entity's `Default` panics.
    pub fn new(entity: EventSourced<E>, entity_id: &str) -> Self {
        match Self::recover(entity, entity_id, None, []) {
            Ok(kit) => kit,
            Err(error) => panic!("starting entity {entity_id}: {error}"),
        }
    }

    /// The entity `entity_id` recovered from `snapshot` (taken at the given sequence number)
    /// and then `events`, numbered from the snapshot's sequence number + 1, as the proxy
    /// recovers it.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the state cannot be built (user code panicked).
    pub fn recover(
        entity: EventSourced<E>,
        entity_id: &str,
        snapshot: Option<(i64, E::Snapshot)>,
        events: impl IntoIterator<Item = E::Event>,
    ) -> Result<Self, Error> {
        Self::start(
            Arc::new(entity),
            entity_id,
            snapshot,
            events.into_iter().collect(),
        )
    }

    /// A fresh instance of this entity recovered the way the proxy recovers it after a restart
    /// or passivation: from the latest snapshot and the journal's events after it.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] when the state cannot be rebuilt (user code panicked).
    pub fn restarted(&self) -> Result<Self, Error> {
        let after = self.snapshot.as_ref().map_or(0, |(sequence, _)| *sequence);
        let events = self
            .journal
            .iter()
            .filter(|(sequence, _)| *sequence > after)
            .map(|(_, event)| event.clone())
            .collect();
        let mut kit = Self::start(
            self.entity.clone(),
            &self.entity_id,
            self.snapshot.clone(),
            events,
        )?;
        kit.journal = self.journal.clone();
        Ok(kit)
    }

    fn start(
        entity: Arc<EventSourced<E>>,
        entity_id: &str,
        snapshot: Option<(i64, E::Snapshot)>,
        events: Vec<E::Event>,
    ) -> Result<Self, Error> {
        let init = EventSourcedInit {
            service_name: entity.service_name().to_owned(),
            entity_id: entity_id.to_owned(),
            snapshot: snapshot
                .as_ref()
                .map(|(sequence, snapshot)| EventSourcedSnapshot {
                    snapshot_sequence: *sequence,
                    snapshot: Some(Any::from_message(snapshot)),
                }),
        };
        let mut kit = EventSourcedTestKit {
            session: EventSourcedSession::start(entity.clone(), init)?,
            entity,
            entity_id: entity_id.to_owned(),
            next_command_id: 1,
            journal: Vec::new(),
            snapshot,
        };
        for event in events {
            let sequence = kit.session.sequence() + 1;
            kit.session
                .handle(Some(event_sourced_stream_in::Message::Event(
                    EventSourcedEvent {
                        sequence,
                        payload: Some(event.to_any()),
                    },
                )))?;
            kit.journal.push((sequence, event));
        }
        Ok(kit)
    }

    /// Sends `call` (a generated call of one of the entity's methods, e.g.
    /// `proto::shopping_cart::add_item(request)`) as the proxy would, and returns what the
    /// entity answered. Events and snapshots of successful commands are added to the journal.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when `call` is for another service; [`Error::Protocol`]
    /// when the entity cannot continue (user code panicked while applying events earlier);
    /// [`Error::UnknownType`] / [`Error::Decode`] when the entity's events or snapshot do not
    /// round-trip through their `Any` encoding.
    pub fn command<Out>(&mut self, call: Call<Out>) -> Result<Outcome<E>, Error> {
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
        let before = self.session.sequence();
        let reply = self
            .session
            .handle(Some(event_sourced_stream_in::Message::Command(command)))?
            .unwrap_or_default();
        let outcome = Outcome::<E>::decode(reply)?;
        for (sequence, event) in (before + 1..).zip(&outcome.events) {
            self.journal.push((sequence, event.clone()));
        }
        if let Some(snapshot) = &outcome.snapshot {
            self.snapshot = Some((self.session.sequence(), snapshot.clone()));
        }
        Ok(outcome)
    }

    /// The entity's current state.
    pub fn state(&self) -> &E {
        self.session.state()
    }

    /// The sequence number of the last event applied to the state.
    pub fn sequence_number(&self) -> i64 {
        self.session.sequence()
    }

    /// Every persisted event with its sequence number: those given to
    /// [`recover`](Self::recover) and those of successful commands.
    pub fn journal(&self) -> &[(i64, E::Event)] {
        &self.journal
    }

    /// The latest snapshot with its sequence number (the one recovered from, or the latest a
    /// command produced).
    pub fn latest_snapshot(&self) -> Option<&(i64, E::Snapshot)> {
        self.snapshot.as_ref()
    }
}

/// Everything an entity answered to one command, decoded.
pub struct Outcome<E: EventSourcedEntity> {
    action: ClientAction,
    events: Vec<E::Event>,
    side_effects: Vec<SideEffect>,
    snapshot: Option<E::Snapshot>,
}

impl<E: EventSourcedEntity> Outcome<E> {
    fn decode(reply: EventSourcedReply) -> Result<Self, Error> {
        let action = ClientAction::from_entity(reply.client_action);
        Ok(Outcome {
            action,
            events: reply
                .events
                .iter()
                .map(E::Event::from_any)
                .collect::<Result<_, _>>()?,
            side_effects: reply
                .side_effects
                .into_iter()
                .map(SideEffect::from_proto)
                .collect(),
            snapshot: reply.snapshot.as_ref().map(decode_any).transpose()?,
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

    /// The events the proxy persists, in order (none if the command failed).
    pub fn events(&self) -> &[E::Event] {
        &self.events
    }

    /// The side effects the proxy runs, in order (none if the command failed).
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }

    /// The snapshot the proxy saves with the events, if one was due.
    pub fn snapshot(&self) -> Option<&E::Snapshot> {
        self.snapshot.as_ref()
    }
}

impl<E: EventSourcedEntity> fmt::Debug for Outcome<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("action", &self.action)
            .field("events", &self.events)
            .field("side_effects", &self.side_effects)
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_entity::{Model, Request, SERVICE, State, appended, call, model, request};

    #[test]
    fn commands_are_numbered_and_journaled() {
        let mut kit = EventSourcedTestKit::new(model(), "e1");
        kit.command(call(SERVICE, "Emit", &request(&["A", "B"])))
            .unwrap();
        let whoami = kit.command(call(SERVICE, "Whoami", &request(&[]))).unwrap();
        assert_eq!(whoami.reply::<State>().unwrap().value, "e1@2#2");
        assert_eq!(
            kit.journal(),
            [(1, appended("A")), (2, appended("B"))].as_slice()
        );
        assert_eq!(kit.sequence_number(), 2);
    }

    #[test]
    fn outcome_accessors() {
        let mut kit = EventSourcedTestKit::new(model(), "e1");
        let failed = kit
            .command(call(SERVICE, "Fail", &request(&["A"])))
            .unwrap();
        assert_eq!(
            failed.failure().map(Failure::description),
            Some("expected failure")
        );
        assert!(failed.events().is_empty() && failed.side_effects().is_empty());
        assert!(matches!(
            failed.reply::<()>(),
            Err(Error::UnexpectedOutcome(_))
        ));

        let forwarded = kit
            .command(call(SERVICE, "Forward", &request(&["A"])))
            .unwrap();
        assert_eq!(forwarded.forward().map(|f| f.method.as_str()), Some("Call"));
        assert_eq!(forwarded.events(), [appended("A")]);

        let get = kit.command(call(SERVICE, "Get", &request(&[]))).unwrap();
        assert!(matches!(
            get.reply::<Request>(),
            Err(Error::UnexpectedOutcome(_))
        ));
        assert_eq!(
            *kit.command(call(SERVICE, "Nothing", &request(&[])))
                .unwrap()
                .action(),
            ClientAction::NoReply
        );
    }

    #[test]
    fn snapshots_are_kept_and_restarts_recover_the_same_state() {
        let mut kit = EventSourcedTestKit::new(model(), "e1");
        for value in ["A", "B", "C", "D"] {
            assert!(
                kit.command(call(SERVICE, "Emit", &request(&[value])))
                    .unwrap()
                    .snapshot()
                    .is_none()
            );
        }
        let fifth = kit
            .command(call(SERVICE, "Emit", &request(&["E", "F"])))
            .unwrap();
        assert_eq!(fifth.snapshot().map(|s| s.value.as_str()), Some("ABCDEF"));
        kit.command(call(SERVICE, "Emit", &request(&["G"])))
            .unwrap();
        assert_eq!(
            kit.latest_snapshot()
                .map(|(seq, s)| (*seq, s.value.as_str())),
            Some((6, "ABCDEF"))
        );

        let restarted = kit.restarted().unwrap();
        assert_eq!(restarted.state(), kit.state());
        assert_eq!(restarted.sequence_number(), 7);
        assert_eq!(restarted.journal(), kit.journal());
    }

    #[test]
    fn recover_numbers_events_after_the_snapshot() {
        let snapshot = State {
            value: "ABCDE".into(),
        };
        let mut kit = EventSourcedTestKit::<Model>::recover(
            model(),
            "e1",
            Some((5, snapshot)),
            [appended("F"), appended("G")],
        )
        .unwrap();
        assert_eq!(kit.state().value, "ABCDEFG");
        assert_eq!(kit.journal()[0].0, 6);
        let outcome = kit
            .command(call(SERVICE, "Emit", &request(&["H", "I", "J"])))
            .unwrap();
        assert_eq!(
            outcome.snapshot().map(|s| s.value.as_str()),
            Some("ABCDEFGHIJ")
        );
    }

    #[test]
    fn a_broken_entity_reports_a_protocol_error() {
        let mut kit = EventSourcedTestKit::new(model(), "e1");
        let outcome = kit
            .command(call(SERVICE, "Emit", &request(&["boom"])))
            .unwrap();
        assert!(outcome.failure().is_some_and(Failure::restart));
        assert!(kit.journal().is_empty());
        assert!(matches!(
            kit.command(call(SERVICE, "Get", &request(&[]))),
            Err(Error::Protocol(_))
        ));
        // What the proxy does on restart: recover from the journal.
        assert_eq!(kit.restarted().unwrap().state().value, "");
    }
}
