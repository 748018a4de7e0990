//! Event sourced entities: the proxy side of `cloudstate.eventsourced.EventSourced/handle`.
//!
//! An entity starts on its first command: it loads its latest snapshot and the events after it,
//! opens a stream to the user function, sends `init` and replays the events, then sends
//! commands one at a time. A reply's events (and snapshot) are appended to the store before the
//! reply is released. Whenever the stream can no longer be trusted (it broke, the user function
//! violated the protocol or asked for a restart, a write failed), the stream is dropped and the
//! entity recovers from the store on its next command; state that was never persisted is thereby
//! forgotten on both sides.

use std::sync::Arc;

use cloudstate_protocol::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot,
    EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in, event_sourced_stream_out,
};
use cloudstate_protocol::{Any, client_action};
use cloudstate_store::{Event, Snapshot, StoreError};

use crate::entity::{Action, Entity, EntityCommand, EntityContext, Outcome};
use crate::model::ServiceDef;
use crate::stream::EntityStream;
use crate::{Error, Shared};

type Stream = EntityStream<EventSourcedStreamIn, EventSourcedStreamOut>;

fn message(message: event_sourced_stream_in::Message) -> EventSourcedStreamIn {
    EventSourcedStreamIn {
        message: Some(message),
    }
}

/// An event sourced entity's proxy-side state.
pub(crate) struct EventSourcedEntity {
    ctx: EntityContext,
    /// The open stream and the journal's last sequence number, or `None` when the entity must
    /// recover before its next command.
    stream: Option<(Stream, u64)>,
}

impl Entity for EventSourcedEntity {
    fn new(service: Arc<ServiceDef>, entity_id: Arc<str>, shared: Arc<Shared>) -> Self {
        EventSourcedEntity {
            ctx: EntityContext::new(service, entity_id, shared),
            stream: None,
        }
    }

    async fn run(&mut self, command: &EntityCommand) -> Result<Outcome, Error> {
        if self.stream.is_none() {
            self.recover().await?;
        }
        let Some((stream, _)) = self.stream.as_mut() else {
            unreachable!("recovered above");
        };
        let command_id = stream.next_command_id();
        stream.send(message(event_sourced_stream_in::Message::Command(
            self.ctx.command(command_id, command),
        )))?;
        let reply = match self
            .ctx
            .shared
            .metrics
            .user_function(stream.receive())
            .await?
            .message
        {
            Some(event_sourced_stream_out::Message::Reply(reply)) => reply,
            Some(event_sourced_stream_out::Message::Failure(failure)) => {
                return Err(Error::EntityFailure(failure.description));
            }
            None => return Err(self.ctx.violation("an empty EventSourcedStreamOut message")),
        };
        if reply.command_id != command_id {
            return Err(self.ctx.violation(&format!(
                "a reply for command {} while command {command_id} was in flight",
                reply.command_id
            )));
        }
        self.complete(command, reply).await
    }

    fn restart(&mut self) {
        if let Some((stream, _)) = self.stream.take() {
            tokio::spawn(stream.close());
        }
    }

    async fn stop(self) {
        if let Some((stream, _)) = self.stream {
            stream.close().await;
        }
    }
}

impl EventSourcedEntity {
    /// Loads the entity from the store and opens its stream: `init`, then the replay.
    async fn recover(&mut self) -> Result<(), Error> {
        let recovery = self
            .ctx
            .shared
            .metrics
            .store(
                "load_journal",
                self.ctx.shared.store.load_journal(&self.ctx.key),
            )
            .await
            .map_err(Error::Store)?;
        let sequence_nr = recovery.last_sequence_nr();
        let mut client = self.ctx.shared.user_function.event_sourced();
        let stream = Stream::open(|outbound| async move { client.handle(outbound).await });
        stream.send(message(event_sourced_stream_in::Message::Init(
            EventSourcedInit {
                service_name: self.ctx.service.name.clone(),
                entity_id: self.ctx.key.entity_id.to_string(),
                snapshot: recovery.snapshot.map(|snapshot| EventSourcedSnapshot {
                    snapshot_sequence: snapshot.sequence_nr as i64,
                    snapshot: Some(snapshot.payload),
                }),
            },
        )))?;
        for event in recovery.events {
            stream.send(message(event_sourced_stream_in::Message::Event(
                EventSourcedEvent {
                    sequence: event.sequence_nr as i64,
                    payload: Some(event.payload),
                },
            )))?;
        }
        self.stream = Some((stream, sequence_nr));
        Ok(())
    }

    async fn complete(
        &mut self,
        command: &EntityCommand,
        reply: EventSourcedReply,
    ) -> Result<Outcome, Error> {
        let EventSourcedReply {
            client_action,
            side_effects,
            events,
            snapshot,
            ..
        } = reply;
        let restart = matches!(
            client_action.as_ref().and_then(|a| a.action.as_ref()),
            Some(client_action::Action::Failure(failure)) if failure.restart
        );
        let action = Action::from_client_action(&self.ctx.shared, &command.method, client_action);
        if let Action::Fail(_) = action {
            // Nothing of a failed command is kept: not its events, not its side effects.
            if !events.is_empty() {
                self.ctx.shared.user_function.report_error(format!(
                    "{}: a failure reply carried {} events; they were not persisted",
                    command.method.display_name(),
                    events.len()
                ));
            }
            if restart {
                self.restart();
            }
            return Ok(Outcome {
                action,
                side_effects: Vec::new(),
            });
        }
        if !events.is_empty() {
            self.persist(events, snapshot).await?;
        }
        Ok(Outcome {
            action,
            side_effects,
        })
    }

    /// Appends a reply's events (and snapshot) to the journal.
    async fn persist(&mut self, events: Vec<Any>, snapshot: Option<Any>) -> Result<(), Error> {
        let Some((_, sequence_nr)) = self.stream.as_mut() else {
            return Err(Error::EntityTerminated("the entity restarted".into()));
        };
        let first = *sequence_nr + 1;
        let events: Vec<Event> = (first..)
            .zip(events)
            .map(|(sequence_nr, payload)| Event {
                sequence_nr,
                payload,
            })
            .collect();
        let last = first + events.len() as u64 - 1;
        let snapshot = snapshot.map(|payload| Snapshot {
            sequence_nr: last,
            payload,
        });
        let append = self
            .ctx
            .shared
            .store
            .append(&self.ctx.key, events, snapshot);
        match self.ctx.shared.metrics.store("append", append).await {
            Ok(()) => {
                *sequence_nr = last;
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(Error::Conflict(self.ctx.key.to_string())),
            Err(error) => Err(Error::Store(error)),
        }
    }
}
