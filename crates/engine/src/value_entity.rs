//! Value entities: the proxy side of `cloudstate.valueentity.ValueEntity/handle`.
//!
//! An entity starts on its first command: it loads its value (with the value's version), opens a
//! stream to the user function and sends `init` with the value, then commands one at a time. A
//! reply's `update` or `delete` is written to the store, conditional on the version the entity
//! loaded, before the reply is released. A write that finds another version (a second writer)
//! fails the command and restarts the entity, which reloads the value.

use std::sync::Arc;

use cloudstate_protocol::valueentity::{
    ValueEntityInit, ValueEntityInitState, ValueEntityReply, ValueEntityStreamIn,
    ValueEntityStreamOut, value_entity_action, value_entity_stream_in, value_entity_stream_out,
};

use cloudstate_store::{StoreError, ValueWrite};

use crate::entity::{
    Action, Entity, EntityCommand, EntityContext, Outcome, fail_dependents, write_error,
};
use crate::limits;
use crate::model::ServiceDef;
use crate::stream::EntityStream;
use crate::{Error, Shared};

type Stream = EntityStream<ValueEntityStreamIn, ValueEntityStreamOut>;

fn message(message: value_entity_stream_in::Message) -> ValueEntityStreamIn {
    ValueEntityStreamIn {
        message: Some(message),
    }
}

/// A value entity's proxy-side state.
pub(crate) struct ValueEntity {
    ctx: EntityContext,
    /// The open stream and the version of the stored value (0: none), or `None` when the entity
    /// must reload before its next command.
    stream: Option<(Stream, u64)>,
}

impl Entity for ValueEntity {
    fn new(service: Arc<ServiceDef>, entity_id: Arc<str>, shared: Arc<Shared>) -> Self {
        ValueEntity {
            ctx: EntityContext::new(service, entity_id, shared),
            stream: None,
        }
    }

    /// Up to this many queued commands share one write, as for event sourced entities.
    const MAX_BATCH: usize = 64;

    async fn run(&mut self, command: &EntityCommand) -> Result<Outcome, Error> {
        let mut results = self.run_batch(std::slice::from_ref(command)).await;
        results.pop().unwrap_or(Err(Error::EntityTerminated(
            "the entity ran no command".into(),
        )))
    }

    /// Sends the commands one at a time and writes the value their replies leave (the last
    /// update or delete) once, before any reply is released. Should that write fail, every
    /// reply from the first state change on fails with it, and the entity restarts.
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
        let mut pending = None;
        let mut first_dependent = None;
        let mut restart = false;
        for command in commands {
            match self.exchange(command).await {
                Ok(reply) => match self.complete(command, reply) {
                    Ok((outcome, write)) => {
                        if write.is_some() {
                            pending = write;
                            first_dependent.get_or_insert(results.len());
                        }
                        results.push(Ok(outcome));
                    }
                    Err(error) => {
                        // The user function holds a value that is not stored.
                        results.push(Err(error));
                        restart = true;
                        break;
                    }
                },
                Err(error) => {
                    // The stream is broken: the rest of the batch waits for the restart.
                    results.push(Err(error));
                    break;
                }
            }
        }
        if let Some(write) = pending
            && let Err(error) = self.write(write).await
        {
            let from = first_dependent.unwrap_or(0);
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

impl ValueEntity {
    /// Loads the value from the store and opens the stream with `init`.
    async fn recover(&mut self) -> Result<(), Error> {
        // Nothing to load for a user function that cannot be reached.
        self.ctx.shared.user_function.check_up()?;
        let stored = self
            .ctx
            .shared
            .metrics
            .store(
                "load_value",
                self.ctx.shared.store.load_value(&self.ctx.key),
            )
            .await
            .map_err(Error::Store)?;
        let (version, value) = match stored {
            Some(value) => (value.version, Some(value.payload)),
            None => (0, None),
        };
        if let Some(value) = &value {
            let size =
                limits::value_init_len(&self.ctx.service.name, &self.ctx.key.entity_id, value);
            self.ctx.check_stored_size("value", size)?;
        }
        let mut client = self.ctx.shared.user_function.value_entity();
        let stream = Stream::open(&self.ctx.shared.user_function, |outbound| async move {
            client.handle(outbound).await
        })?;
        // The state is always present, empty when nothing is stored (the original proxy's
        // behaviour, which support libraries' tests compare exactly).
        stream.send(message(value_entity_stream_in::Message::Init(
            ValueEntityInit {
                service_name: self.ctx.service.name.clone(),
                entity_id: self.ctx.key.entity_id.to_string(),
                state: Some(ValueEntityInitState { value }),
            },
        )))?;
        self.stream = Some((stream, version));
        Ok(())
    }

    /// Sends one command and waits for its reply.
    async fn exchange(&mut self, command: &EntityCommand) -> Result<ValueEntityReply, Error> {
        let Some((stream, _)) = self.stream.as_mut() else {
            return Err(Error::EntityTerminated("the entity restarted".into()));
        };
        let command_id = stream.next_command_id();
        stream.send(message(value_entity_stream_in::Message::Command(
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
            Some(value_entity_stream_out::Message::Reply(reply)) => reply,
            Some(value_entity_stream_out::Message::Failure(failure)) => {
                return Err(Error::EntityFailure(failure.description));
            }
            None => return Err(self.ctx.violation("an empty ValueEntityStreamOut message")),
        };
        if reply.command_id != command_id {
            return Err(self.ctx.violation(&format!(
                "a reply for command {} while command {command_id} was in flight",
                reply.command_id
            )));
        }
        Ok(reply)
    }

    /// Turns a reply into its outcome and the write of its state action, if any. Fails if the
    /// new value could not be sent back to the user function at recovery.
    fn complete(
        &self,
        command: &EntityCommand,
        reply: ValueEntityReply,
    ) -> Result<(Outcome, Option<ValueWrite>), Error> {
        let ValueEntityReply {
            client_action,
            side_effects,
            state_action,
            ..
        } = reply;
        let action = Action::from_client_action(&self.ctx.shared, &command.method, client_action);
        if let Action::Fail(_) = action {
            // Nothing of a failed command is kept: not its state change, not its side effects.
            let outcome = Outcome {
                action,
                side_effects: Vec::new(),
            };
            return Ok((outcome, None));
        }
        let write = match state_action.and_then(|a| a.action) {
            Some(value_entity_action::Action::Update(update)) => {
                let value = update.value.unwrap_or_default();
                let size =
                    limits::value_init_len(&self.ctx.service.name, &self.ctx.key.entity_id, &value);
                self.ctx.check_result_size(
                    || format!("the value of {}", command.method.display_name()),
                    size,
                )?;
                Some(ValueWrite::Update(value))
            }
            Some(value_entity_action::Action::Delete(_)) => Some(ValueWrite::Delete),
            None => None,
        };
        let outcome = Outcome {
            action,
            side_effects,
        };
        Ok((outcome, write))
    }

    /// Writes the value, conditional on the version this entity loaded or last wrote.
    async fn write(&mut self, write: ValueWrite) -> Result<(), StoreError> {
        let Some((_, version)) = self.stream.as_mut() else {
            return Err(StoreError::Unavailable("the entity restarted".into()));
        };
        let write = self
            .ctx
            .shared
            .store
            .write_value(&self.ctx.key, *version, write);
        *version = self.ctx.shared.metrics.store("write_value", write).await?;
        Ok(())
    }
}
