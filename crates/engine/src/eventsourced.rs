//! Event sourced entities: the proxy side of `cloudstate.eventsourced.EventSourced/handle`.
//!
//! An entity starts on its first command: it loads its latest snapshot and the events after it,
//! opens a stream to the user function, sends `init` and replays the events, then sends
//! commands one at a time. A reply's events (and snapshot) are appended to the store before the
//! reply is released. Whenever the stream can no longer be trusted (it broke, the user function
//! violated the protocol or asked for a restart, a write failed), the stream is dropped and the
//! entity recovers from the store on its next command; state that was never persisted is thereby
//! forgotten on both sides.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cloudstate_protocol::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot,
    EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in, event_sourced_stream_out,
};
use cloudstate_protocol::{Any, Command, client_action};
use cloudstate_store::{EntityKey, Event, Snapshot, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use crate::entity::{Action, Entity, EntityCommand, Outcome};
use crate::model::ServiceDef;
use crate::{Error, Shared, failure_code};

type Opening = Pin<
    Box<
        dyn Future<
                Output = Result<tonic::Response<Streaming<EventSourcedStreamOut>>, tonic::Status>,
            > + Send,
    >,
>;

/// An event sourced entity's proxy-side state.
pub(crate) struct EventSourcedEntity {
    service: Arc<ServiceDef>,
    key: EntityKey,
    shared: Arc<Shared>,
    /// The open stream, or `None` when the entity must recover before its next command.
    stream: Option<EntityStream>,
}

/// An entity's stream to the user function.
struct EntityStream {
    outbound: mpsc::UnboundedSender<EventSourcedStreamIn>,
    inbound: Inbound,
    /// Sequence number of the last event in the journal.
    sequence_nr: u64,
    /// Id of the last command sent on this stream.
    command_id: i64,
}

/// The user function's side of the stream. It is opened without waiting for the response
/// headers: some support libraries only send them with their first message, so the proxy
/// writes `init`, the replay and the first command before it waits.
enum Inbound {
    Opening(Opening),
    Open(Box<Streaming<EventSourcedStreamOut>>),
}

impl EntityStream {
    fn send(&self, message: event_sourced_stream_in::Message) -> Result<(), Error> {
        self.outbound
            .send(EventSourcedStreamIn {
                message: Some(message),
            })
            .map_err(|_| {
                Error::EntityTerminated("the stream to the user function is closed".into())
            })
    }

    async fn receive(&mut self) -> Result<EventSourcedStreamOut, Error> {
        if let Inbound::Opening(opening) = &mut self.inbound {
            let response = opening.await.map_err(terminated)?;
            self.inbound = Inbound::Open(Box::new(response.into_inner()));
        }
        let Inbound::Open(inbound) = &mut self.inbound else {
            unreachable!("the stream was opened above");
        };
        match inbound.message().await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::EntityTerminated(
                "the user function closed the entity's stream".into(),
            )),
            Err(status) => Err(terminated(status)),
        }
    }
}

fn terminated(status: tonic::Status) -> Error {
    Error::EntityTerminated(format!(
        "stream to the user function failed: {} ({:?})",
        status.message(),
        status.code()
    ))
}

impl Entity for EventSourcedEntity {
    fn new(service: Arc<ServiceDef>, entity_id: Arc<str>, shared: Arc<Shared>) -> Self {
        EventSourcedEntity {
            key: EntityKey {
                persistence_id: service.persistence_id.clone(),
                entity_id,
            },
            service,
            shared,
            stream: None,
        }
    }

    async fn handle(&mut self, command: EntityCommand) {
        if command.reply.is_closed() {
            return; // the caller went away before the command started: nothing to do
        }
        let timeout = self.shared.config.command_timeout;
        let result = match tokio::time::timeout_at(command.deadline, self.run(&command)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        };
        if let Err(error) = &result {
            self.fail(error);
        }
        let _ = command.reply.send(result);
    }

    async fn stop(self) {
        if let Some(stream) = self.stream {
            close(stream);
        }
    }
}

/// Half-closes the stream and lets the user function finish its side in the background.
fn close(stream: EntityStream) {
    let EntityStream {
        outbound, inbound, ..
    } = stream;
    drop(outbound);
    if let Inbound::Open(mut inbound) = inbound {
        tokio::spawn(async move {
            let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
        });
    }
}

impl EventSourcedEntity {
    /// Forgets the stream after a command failed in a way that leaves the user function's
    /// state in doubt; the next command recovers from the store.
    fn fail(&mut self, error: &Error) {
        let restart = !matches!(
            error,
            Error::CommandFailed { .. } | Error::InvalidPayload(_) | Error::MissingEntityKey { .. }
        );
        if restart && let Some(stream) = self.stream.take() {
            tracing::info!(entity = %self.key, %error, "restarting entity");
            close(stream);
        }
    }

    /// Loads the entity from the store and opens its stream: `init`, then the replay.
    async fn recover(&mut self) -> Result<&mut EntityStream, Error> {
        let recovery = self
            .shared
            .store
            .load_journal(&self.key)
            .await
            .map_err(Error::Store)?;
        let sequence_nr = recovery.last_sequence_nr();
        let (outbound, receiver) = mpsc::unbounded_channel();
        let mut client = self.shared.user_function.event_sourced();
        let opening: Opening =
            Box::pin(async move { client.handle(UnboundedReceiverStream::new(receiver)).await });
        let stream = EntityStream {
            outbound,
            inbound: Inbound::Opening(opening),
            sequence_nr,
            command_id: 0,
        };
        stream.send(event_sourced_stream_in::Message::Init(EventSourcedInit {
            service_name: self.service.name.clone(),
            entity_id: self.key.entity_id.to_string(),
            snapshot: recovery.snapshot.map(|snapshot| EventSourcedSnapshot {
                snapshot_sequence: snapshot.sequence_nr as i64,
                snapshot: Some(snapshot.payload),
            }),
        }))?;
        for event in recovery.events {
            stream.send(event_sourced_stream_in::Message::Event(EventSourcedEvent {
                sequence: event.sequence_nr as i64,
                payload: Some(event.payload),
            }))?;
        }
        Ok(self.stream.insert(stream))
    }

    /// Sends one command and turns the user function's answer into an outcome, persisting its
    /// events first.
    async fn run(&mut self, command: &EntityCommand) -> Result<Outcome, Error> {
        let entity_id = self.key.entity_id.to_string();
        let stream = match self.stream {
            Some(ref mut stream) => stream,
            None => self.recover().await?,
        };
        stream.command_id += 1;
        let command_id = stream.command_id;
        stream.send(event_sourced_stream_in::Message::Command(Command {
            entity_id,
            id: command_id,
            name: command.method.name.clone(),
            payload: Some(Any {
                type_url: command.method.input_type_url.clone(),
                value: command.payload.clone(),
            }),
            streamed: false,
            metadata: None,
        }))?;
        let reply = match stream.receive().await?.message {
            Some(event_sourced_stream_out::Message::Reply(reply)) => reply,
            Some(event_sourced_stream_out::Message::Failure(failure)) => {
                return Err(Error::EntityFailure(failure.description));
            }
            None => {
                return Err(self.violation("an empty EventSourcedStreamOut message".into()));
            }
        };
        if reply.command_id != command_id {
            return Err(self.violation(format!(
                "a reply for command {} while command {command_id} was in flight",
                reply.command_id
            )));
        }
        self.complete(command, reply).await
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
        let action = match client_action.and_then(|action| action.action) {
            Some(client_action::Action::Failure(failure)) => {
                if !events.is_empty() {
                    self.shared.user_function.report_error(format!(
                        "{}: a failure reply carried {} events; they were not persisted",
                        command.method.display_name(),
                        events.len()
                    ));
                }
                if failure.restart
                    && let Some(stream) = self.stream.take()
                {
                    close(stream);
                }
                // Side effects of a failed command are dropped, like its events.
                return Ok(Outcome {
                    action: Action::Fail(Error::CommandFailed {
                        code: failure_code(failure.grpc_status_code),
                        description: failure.description,
                    }),
                    side_effects: Vec::new(),
                });
            }
            Some(client_action::Action::Reply(reply)) => {
                let payload = reply.payload.unwrap_or_default();
                if !payload.type_url.is_empty() && payload.type_name() != command.method.output_type
                {
                    self.shared.user_function.report_error(format!(
                        "Warning: {}: Expected reply type_url to be [type.googleapis.com/{}] but was [{}].",
                        command.method.display_name(),
                        command.method.output_type,
                        payload.type_url
                    ));
                }
                Action::Reply(payload.value)
            }
            Some(client_action::Action::Forward(forward)) => Action::Forward(forward),
            None => Action::Fail(Error::ProtocolViolation(format!(
                "{} got a reply without a client action",
                command.method.display_name()
            ))),
        };
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
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::EntityTerminated("the entity restarted".into()));
        };
        let first = stream.sequence_nr + 1;
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
        match self.shared.store.append(&self.key, events, snapshot).await {
            Ok(()) => {
                stream.sequence_nr = last;
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(Error::Conflict(self.key.to_string())),
            Err(error) => Err(Error::Store(error)),
        }
    }

    fn violation(&self, what: String) -> Error {
        let message = format!(
            "{} entity {}: the user function sent {what}",
            self.service.name, self.key.entity_id
        );
        self.shared.user_function.report_error(message.clone());
        Error::ProtocolViolation(message)
    }
}
