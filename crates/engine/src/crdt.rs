//! CRDT entities: the proxy side of `cloudstate.crdt.Crdt/handle`.
//!
//! The proxy owns the replicated data type ([`cloudstate_crdt::Crdt`], kept in the
//! [`CrdtStates`] of the engine, so it outlives passivation); the user function holds only its
//! value and exchanges deltas. For each entity the proxy also tracks what the user function
//! believes the value is (a [`View`]): after every command, and whenever the state changed
//! underneath (another command's effect, a stream cancellation, and later other nodes), the
//! proxy sends the user function the net delta between the two, never while a command is
//! outstanding.
//!
//! Commands run one at a time. A server-streaming method is a **streamed command**: if the
//! user function's first reply says `streamed`, the client's stream stays open and every later
//! `CrdtStreamedMessage` for that command goes to it, until `end_stream` or until the client
//! goes away, which the proxy reports with `StreamCancelled` (the user function answers with a
//! `CrdtStreamCancelledResponse` that may change the state, e.g. withdraw a vote).
//!
//! Write consistency: a single proxy node holds every replica there is, so `LOCAL`, `MAJORITY`
//! and `ALL` are all satisfied once the local state is updated.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use cloudstate_crdt::{Crdt, CrdtError, ReplicaId, SystemClock, View};
use cloudstate_protocol::crdt::{
    CrdtDelta, CrdtInit, CrdtReply, CrdtStateAction, CrdtStreamCancelledResponse, CrdtStreamIn,
    CrdtStreamOut, CrdtStreamedMessage, crdt_state_action, crdt_stream_in, crdt_stream_out,
};
use cloudstate_protocol::{SideEffect, StreamCancelled};
use cloudstate_store::EntityKey;
use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::entity::{Action, Entity, EntityCommand, EntityContext, Outcome};
use crate::model::{MethodDef, ServiceDef};
use crate::stream::EntityStream;
use crate::{Error, Shared};

type Stream = EntityStream<CrdtStreamIn, CrdtStreamOut>;

fn message(message: crdt_stream_in::Message) -> CrdtStreamIn {
    CrdtStreamIn {
        message: Some(message),
    }
}

/// The CRDT states of every entity on this node, by entity. Entities read theirs when they
/// start and write it after every change; this is where replication between nodes will plug in.
#[derive(Default)]
pub(crate) struct CrdtStates {
    states: DashMap<EntityKey, Crdt>,
}

/// A CRDT entity's proxy-side state.
pub(crate) struct CrdtEntity {
    ctx: EntityContext,
    /// The open stream to the user function, or `None` before the first command and after a
    /// restart or a delete.
    stream: Option<Stream>,
    /// The entity's value as the user function believes it (`None`: it has none).
    belief: Option<View>,
    /// Streamed commands whose client stream is open, by command id.
    streams: HashMap<i64, (Arc<MethodDef>, mpsc::Sender<Outcome>)>,
    /// The streamed command whose cancellation was sent and not answered yet. Waiting for the
    /// answer happens in `background`, which is dropped when a command arrives; the command
    /// then takes the answer in passing.
    cancelling: Option<i64>,
}

impl Entity for CrdtEntity {
    fn new(service: Arc<ServiceDef>, entity_id: Arc<str>, shared: Arc<Shared>) -> Self {
        CrdtEntity {
            ctx: EntityContext::new(service, entity_id, shared),
            stream: None,
            belief: None,
            streams: HashMap::new(),
            cancelling: None,
        }
    }

    async fn run(&mut self, command: &EntityCommand) -> Result<Outcome, Error> {
        // A stream that died while the entity was idle (the user function restarted) never
        // saw this command: it goes to a new one.
        if let Some(stream) = self.stream.as_mut()
            && stream.has_ended()
        {
            self.ctx.stream_ended_while_idle();
            self.restart();
        }
        if self.stream.is_none() {
            self.start()?;
        }
        let Some(stream) = self.stream.as_mut() else {
            unreachable!("started above");
        };
        let command_id = stream.next_command_id();
        stream.send(message(crdt_stream_in::Message::Command(
            self.ctx.command(command_id, command),
        )))?;
        let reply = loop {
            match self.receive().await? {
                crdt_stream_out::Message::Reply(reply) if reply.command_id == command_id => {
                    break reply;
                }
                crdt_stream_out::Message::StreamedMessage(streamed) => {
                    self.deliver_streamed(streamed);
                }
                crdt_stream_out::Message::StreamCancelledResponse(response)
                    if Some(response.command_id) == self.cancelling =>
                {
                    self.cancelled(response)?;
                }
                other => return Err(self.ctx.violation(&describe(&other))),
            }
        };
        let outcome = self.complete(command, reply)?;
        self.push_changes()?;
        Ok(outcome)
    }

    fn command_id(&self) -> i64 {
        self.stream.as_ref().map_or(0, EntityStream::command_id)
    }

    fn restart(&mut self) {
        // The client streams of the old stream's commands end with it, with an error.
        for (_, sender) in self.streams.drain().map(|(_, stream)| stream) {
            let _ = sender.try_send(Outcome {
                action: Action::Fail(Error::EntityTerminated(
                    "the entity restarted; its streams ended".into(),
                )),
                side_effects: Vec::new(),
            });
        }
        self.belief = None;
        self.cancelling = None;
        if let Some(stream) = self.stream.take() {
            tokio::spawn(stream.close());
        }
    }

    async fn stop(self) {
        if let Some(stream) = self.stream {
            stream.close().await;
        }
    }

    async fn background(&mut self) {
        if self.cancelling.is_some() {
            // A command arrived while the answer to a cancellation was awaited: wait again.
            if let Err(error) = self.await_cancelled().await {
                tracing::debug!(entity = %self.ctx.key, %error, "restarting CRDT entity");
                self.restart();
            }
            return;
        }
        if self.streams.is_empty() {
            return std::future::pending().await;
        }
        let cancelled = closed_streams(&self.streams);
        let Some(stream) = self.stream.as_mut() else {
            return std::future::pending().await;
        };
        let event = tokio::select! {
            message = stream.receive() => Event::Message(message.map(|m| m.message)),
            command_id = cancelled => Event::Cancelled(command_id),
        };
        let result = match event {
            Event::Message(Ok(Some(crdt_stream_out::Message::StreamedMessage(streamed)))) => {
                self.deliver_streamed(streamed);
                Ok(())
            }
            Event::Message(Ok(Some(other))) => Err(self.ctx.violation(&describe(&other))),
            Event::Message(Ok(None)) => Err(self.ctx.violation("an empty CrdtStreamOut message")),
            Event::Message(Err(error)) => Err(error),
            Event::Cancelled(command_id) => self.cancel(command_id).await,
        };
        if let Err(error) = result {
            tracing::debug!(entity = %self.ctx.key, %error, "restarting CRDT entity");
            self.restart();
        }
    }

    fn can_passivate(&self) -> bool {
        self.streams.is_empty()
    }
}

/// What woke an idle CRDT entity up.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one event; boxing would allocate per streamed message"
)]
enum Event {
    Message(Result<Option<crdt_stream_out::Message>, Error>),
    Cancelled(i64),
}

/// Resolves with the id of a streamed command whose client went away. The future owns what it
/// needs, so it does not keep the entity borrowed.
fn closed_streams(
    streams: &HashMap<i64, (Arc<MethodDef>, mpsc::Sender<Outcome>)>,
) -> impl Future<Output = i64> + Send + 'static {
    let closed: Vec<_> = streams
        .iter()
        .map(|(&id, (_, sender))| {
            let sender = sender.clone();
            Box::pin(async move {
                sender.closed().await;
                id
            })
        })
        .collect();
    async move { futures_util::future::select_all(closed).await.0 }
}

fn describe(message: &crdt_stream_out::Message) -> String {
    match message {
        crdt_stream_out::Message::Reply(reply) => {
            format!(
                "a reply for command {} that is not in flight",
                reply.command_id
            )
        }
        crdt_stream_out::Message::StreamedMessage(m) => {
            format!("a streamed message for command {}", m.command_id)
        }
        crdt_stream_out::Message::StreamCancelledResponse(r) => format!(
            "a stream cancelled response for command {} that was not cancelled",
            r.command_id
        ),
        crdt_stream_out::Message::Failure(failure) => {
            format!("a failure: {}", failure.description)
        }
    }
}

impl CrdtEntity {
    fn states(&self) -> &DashMap<EntityKey, Crdt> {
        &self.ctx.shared.crdt_states.states
    }

    fn replica(&self) -> &ReplicaId {
        &self.ctx.shared.replica
    }

    /// Opens the stream with `init`: the current state as a delta, if the entity exists.
    fn start(&mut self) -> Result<(), Error> {
        let state = self.states().get(&self.ctx.key).map(|state| state.clone());
        let mut client = self.ctx.shared.user_function.crdt();
        let stream = Stream::open(&self.ctx.shared.user_function, |outbound| async move {
            client.handle(outbound).await
        })?;
        stream.send(message(crdt_stream_in::Message::Init(CrdtInit {
            service_name: self.ctx.service.name.clone(),
            entity_id: self.ctx.key.entity_id.to_string(),
            delta: state.as_ref().map(|s| s.full_state_delta(self.replica())),
        })))?;
        self.belief = state.map(|s| s.view(self.replica()));
        self.stream = Some(stream);
        self.cancelling = None;
        Ok(())
    }

    /// The next message from the user function; a stream-level failure is an entity failure.
    async fn receive(&mut self) -> Result<crdt_stream_out::Message, Error> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::EntityTerminated("the entity restarted".into()));
        };
        match stream.receive().await?.message {
            Some(crdt_stream_out::Message::Failure(failure)) => {
                Err(Error::EntityFailure(failure.description))
            }
            Some(message) => Ok(message),
            None => Err(self.ctx.violation("an empty CrdtStreamOut message")),
        }
    }

    /// Applies a command's reply: its state action, then its client action.
    fn complete(&mut self, command: &EntityCommand, reply: CrdtReply) -> Result<Outcome, Error> {
        let CrdtReply {
            command_id,
            client_action,
            side_effects,
            state_action,
            streamed,
        } = reply;
        let action = Action::from_client_action(&self.ctx.shared, &command.method, client_action);
        if let Action::Fail(_) = action {
            if state_action.is_some() {
                // The user function changed its value and failed: its value is in doubt.
                self.ctx.shared.user_function.report_error(format!(
                    "{}: a failure reply carried a state action; it was not applied",
                    command.method.display_name()
                ));
                self.restart();
            }
            return Ok(Outcome {
                action,
                side_effects: Vec::new(),
            });
        }
        self.apply(state_action)?;
        if streamed && let Some(sender) = &command.stream {
            self.streams
                .insert(command_id, (command.method.clone(), sender.clone()));
        }
        Ok(Outcome {
            action,
            side_effects,
        })
    }

    /// Applies a state action of the user function to the CRDT and to the belief.
    fn apply(&mut self, state_action: Option<CrdtStateAction>) -> Result<(), Error> {
        // A single node satisfies every write consistency as soon as its state is updated.
        match state_action.and_then(|action| action.action) {
            None => Ok(()),
            Some(crdt_state_action::Action::Update(delta)) => self.update(&delta),
            Some(crdt_state_action::Action::Delete(_)) => {
                self.states().remove(&self.ctx.key);
                // The user function cleared its own state; the entity may be created again.
                self.belief = None;
                self.streams.clear();
                if let Some(stream) = self.stream.take() {
                    tokio::spawn(stream.close());
                }
                Ok(())
            }
        }
    }

    fn update(&mut self, delta: &CrdtDelta) -> Result<(), Error> {
        let incompatible = |error: CrdtError| {
            let message = format!(
                "{} entity {}: incompatible CRDT delta: {error}",
                self.ctx.service.name, self.ctx.key.entity_id
            );
            self.ctx.shared.user_function.report_error(message.clone());
            Error::ProtocolViolation(message)
        };
        let replica = self.replica().clone();
        {
            let mut entry = self.states().entry(self.ctx.key.clone());
            match &mut entry {
                dashmap::Entry::Occupied(state) => {
                    state
                        .get_mut()
                        .apply_user_delta(&replica, delta, &SystemClock)
                        .map_err(incompatible)?;
                }
                dashmap::Entry::Vacant(_) => {
                    let (state, _) = Crdt::from_initial_delta(&replica, delta, &SystemClock)
                        .map_err(incompatible)?;
                    entry.insert(state);
                }
            }
        }
        // The user function applied its own delta to its value.
        let belief = match self.belief.take() {
            Some(mut belief) => belief.apply_user_delta(delta).map(|()| belief),
            None => View::from_user_delta(delta),
        };
        self.belief = belief.ok();
        Ok(())
    }

    /// Sends the user function the net change between its belief and the state, if any.
    fn push_changes(&mut self) -> Result<(), Error> {
        let Some(stream) = self.stream.as_ref() else {
            return Ok(());
        };
        let Some(state) = self.states().get(&self.ctx.key).map(|state| state.clone()) else {
            return Ok(());
        };
        let view = state.view(self.replica());
        let delta = match &self.belief {
            None => Some(state.full_state_delta(self.replica())),
            Some(belief) => match view.delta_since(belief) {
                Ok(delta) => delta,
                // The change cannot be said as a delta: start the user function over.
                Err(_) => {
                    self.restart();
                    return Ok(());
                }
            },
        };
        if let Some(delta) = delta {
            stream.send(message(crdt_stream_in::Message::Delta(delta)))?;
        }
        self.belief = Some(view);
        Ok(())
    }

    /// Hands a streamed message to its client stream (dropped if that stream is gone).
    fn deliver_streamed(&mut self, streamed: CrdtStreamedMessage) {
        let CrdtStreamedMessage {
            command_id,
            client_action,
            side_effects,
            end_stream,
        } = streamed;
        let Some((method, sender)) = self.streams.get(&command_id) else {
            return; // its client went away; the cancellation is on its way
        };
        let action = Action::from_client_action(&self.ctx.shared, method, client_action);
        // A full client buffer means a client that does not read; it must not stall the entity.
        let delivered = sender
            .try_send(Outcome {
                action,
                side_effects,
            })
            .is_ok();
        if !delivered || end_stream {
            self.streams.remove(&command_id);
        }
    }

    /// Tells the user function that the client of a streamed command went away and applies its
    /// answer.
    async fn cancel(&mut self, command_id: i64) -> Result<(), Error> {
        self.streams.remove(&command_id);
        let Some(stream) = self.stream.as_ref() else {
            return Ok(());
        };
        stream.send(message(crdt_stream_in::Message::StreamCancelled(
            StreamCancelled {
                entity_id: self.ctx.key.entity_id.to_string(),
                id: command_id,
            },
        )))?;
        self.cancelling = Some(command_id);
        self.await_cancelled().await
    }

    /// Reads the user function's messages until it answers the pending cancellation, then
    /// applies the answer. Cancel safe: the cancellation stays pending until its answer is read.
    async fn await_cancelled(&mut self) -> Result<(), Error> {
        while let Some(command_id) = self.cancelling {
            match self.receive().await? {
                crdt_stream_out::Message::StreamCancelledResponse(response)
                    if response.command_id == command_id =>
                {
                    self.cancelled(response)?;
                }
                crdt_stream_out::Message::StreamedMessage(streamed) => {
                    self.deliver_streamed(streamed);
                }
                other => return Err(self.ctx.violation(&describe(&other))),
            }
        }
        self.push_changes()
    }

    /// Applies the user function's answer to the pending cancellation (the caller pushes the
    /// changes once no command is outstanding).
    fn cancelled(&mut self, response: CrdtStreamCancelledResponse) -> Result<(), Error> {
        self.cancelling = None;
        self.apply(response.state_action)?;
        self.run_orphan_side_effects(response.side_effects);
        Ok(())
    }

    /// Side effects with no client call to wait for them run in the background.
    fn run_orphan_side_effects(&self, side_effects: Vec<SideEffect>) {
        if !side_effects.is_empty() {
            let _ = self.ctx.shared.orphan_side_effects.send(side_effects);
        }
    }
}
