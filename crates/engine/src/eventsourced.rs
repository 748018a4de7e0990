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

use crate::entity::{
    Action, Entity, EntityCommand, EntityContext, Outcome, fail_dependents, write_error,
};
use crate::limits;
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

    /// Up to this many queued commands share one append: while a hot entity's commands wait
    /// for the disk anyway, the next ones run and their events join the same write.
    const MAX_BATCH: usize = 64;

    async fn run(&mut self, command: &EntityCommand) -> Result<Outcome, Error> {
        let mut results = self.run_batch(std::slice::from_ref(command)).await;
        results.pop().unwrap_or(Err(Error::EntityTerminated(
            "the entity ran no command".into(),
        )))
    }

    /// Sends the commands one at a time, collects the events of their replies, and appends all
    /// of them in one atomic write before any reply is released. Should that write fail, every
    /// reply computed on top of the unwritten events fails with it (the user function's state
    /// included them), and the entity restarts.
    async fn run_batch(&mut self, commands: &[EntityCommand]) -> Vec<Result<Outcome, Error>> {
        // A stream that died while the entity was idle (the user function restarted) never
        // saw these commands: they go to a new one.
        if let Some((stream, _)) = self.stream.as_mut()
            && stream.has_ended()
        {
            self.ctx.stream_ended_while_idle();
            Entity::restart(self);
        }
        if self.stream.is_none()
            && let Err(error) = self.recover().await
        {
            return vec![Err(error)];
        }
        let mut results = Vec::with_capacity(commands.len());
        let mut pending = Pending::default();
        let mut restart = false;
        for command in commands {
            match self.exchange(command).await {
                Ok(reply) => {
                    let index = results.len();
                    match self.complete(command, reply, index, &mut pending) {
                        Ok((outcome, restart_asked)) => {
                            results.push(Ok(outcome));
                            if restart_asked {
                                restart = true;
                                break;
                            }
                        }
                        Err(error) => {
                            // The user function applied events that are not stored.
                            results.push(Err(error));
                            restart = true;
                            break;
                        }
                    }
                }
                Err(error) => {
                    // The stream is broken: the rest of the batch waits for the restart.
                    results.push(Err(error));
                    break;
                }
            }
        }
        if let Err(error) = self.persist(&mut pending).await {
            let from = pending.first_dependent.unwrap_or(0);
            fail_dependents(&mut results, from, || write_error(&self.ctx.key, &error));
            restart = true;
        }
        if restart {
            Entity::restart(self);
        }
        results
    }

    fn command_id(&self) -> i64 {
        self.stream
            .as_ref()
            .map_or(0, |(stream, _)| stream.command_id())
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
        // Nothing to load for a user function that cannot be reached.
        self.ctx.shared.user_function.check_up()?;
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
        let (service, entity_id) = (&self.ctx.service.name, &self.ctx.key.entity_id);
        if let Some(snapshot) = &recovery.snapshot {
            let size = limits::snapshot_init_len(service, entity_id, &snapshot.payload);
            self.ctx.check_stored_size("snapshot", size)?;
        }
        for event in &recovery.events {
            let size = limits::event_len(&event.payload);
            self.ctx
                .check_stored_size(&format!("event {}", event.sequence_nr), size)?;
        }
        let mut client = self.ctx.shared.user_function.event_sourced();
        let stream = Stream::open(&self.ctx.shared.user_function, |outbound| async move {
            client.handle(outbound).await
        })?;
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

    /// Sends one command and waits for its reply.
    async fn exchange(&mut self, command: &EntityCommand) -> Result<EventSourcedReply, Error> {
        let Some((stream, _)) = self.stream.as_mut() else {
            return Err(Error::EntityTerminated("the entity restarted".into()));
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
        Ok(reply)
    }

    /// Turns the batch's reply number `index` into its outcome, adding its events (numbered
    /// after those already pending) to `pending`. Returns whether the user function asked for a
    /// restart. Fails, adding nothing, if an event or the snapshot could not be sent back to
    /// the user function at recovery.
    fn complete(
        &self,
        command: &EntityCommand,
        reply: EventSourcedReply,
        index: usize,
        pending: &mut Pending,
    ) -> Result<(Outcome, bool), Error> {
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
            let outcome = Outcome {
                action,
                side_effects: Vec::new(),
            };
            return Ok((outcome, restart));
        }
        self.check_sizes(command, &events, snapshot.as_ref())?;
        if !events.is_empty() {
            let sequence_nr = self.stream.as_ref().map_or(0, |(_, n)| *n);
            pending.add(index, sequence_nr, events, snapshot);
        }
        let outcome = Outcome {
            action,
            side_effects,
        };
        Ok((outcome, false))
    }

    /// Checks that each event, and the snapshot, of a reply to `command` fits in the message
    /// that will carry it back to the user function at recovery.
    fn check_sizes(
        &self,
        command: &EntityCommand,
        events: &[Any],
        snapshot: Option<&Any>,
    ) -> Result<(), Error> {
        let method = || command.method.display_name();
        for event in events {
            let size = limits::event_len(event);
            self.ctx
                .check_result_size(|| format!("an event of {}", method()), size)?;
        }
        if let Some(snapshot) = snapshot {
            let size = limits::snapshot_init_len(
                &self.ctx.service.name,
                &self.ctx.key.entity_id,
                snapshot,
            );
            self.ctx
                .check_result_size(|| format!("the snapshot of {}", method()), size)?;
        }
        Ok(())
    }

    /// Appends the pending events (and the latest snapshot) to the journal, if there are any.
    async fn persist(&mut self, pending: &mut Pending) -> Result<(), StoreError> {
        let Some(last) = pending.events.last().map(|event| event.sequence_nr) else {
            return Ok(());
        };
        let events = std::mem::take(&mut pending.events);
        let append = self
            .ctx
            .shared
            .store
            .append(&self.ctx.key, events, pending.snapshot.take());
        self.ctx.shared.metrics.store("append", append).await?;
        if let Some((_, sequence_nr)) = self.stream.as_mut() {
            *sequence_nr = last;
        }
        Ok(())
    }
}

/// The events of a batch's replies, not yet written.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    /// The latest snapshot of the batch, at the sequence number of its reply's last event.
    snapshot: Option<Snapshot>,
    /// The first command (by index in the batch) whose reply added events: its reply, and
    /// every later one, was computed on top of events that are not durable yet.
    first_dependent: Option<usize>,
}

impl Pending {
    /// Adds the events (and snapshot) of the batch's reply number `index`, numbered after the
    /// journal's `sequence_nr` and the events already pending.
    fn add(&mut self, index: usize, sequence_nr: u64, events: Vec<Any>, snapshot: Option<Any>) {
        let first = sequence_nr + self.events.len() as u64 + 1;
        self.events
            .extend((first..).zip(events).map(|(sequence_nr, payload)| Event {
                sequence_nr,
                payload,
            }));
        let last = sequence_nr + self.events.len() as u64;
        if let Some(payload) = snapshot {
            self.snapshot = Some(Snapshot {
                sequence_nr: last,
                payload,
            });
        }
        self.first_dependent.get_or_insert(index);
    }
}
