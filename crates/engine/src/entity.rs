//! Active entities: one task per entity, a bounded mailbox in front of it, and passivation.
//!
//! The [`Registry`] of a service maps entity ids to the mailboxes of their running tasks.
//! Commands for one entity are serialised by its mailbox, never by a lock held across a
//! command; different entities run concurrently. A dispatcher only holds the registry's shard
//! lock for a `try_send`, and an idle entity only removes itself while holding that lock and
//! after seeing its mailbox empty, so no command can be left in a mailbox nobody reads.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cloudstate_protocol::{Any, ClientAction, Command, Forward, SideEffect, client_action};
use cloudstate_store::{EntityKey, StoreError};
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Code;
use tracing::Instrument;

use crate::log_limit::LogLimit;
use crate::metrics::EntityMetrics;
use crate::model::{MethodDef, ServiceDef};
use crate::{Error, Shared};

/// A command on its way to an entity.
pub(crate) struct EntityCommand {
    pub method: Arc<MethodDef>,
    pub payload: Bytes,
    /// When the command must have completed.
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<Outcome, Error>>,
    /// For a streamed command (CRDT entities): where the outcomes of the user function's
    /// further messages go after the first reply. Closing its receiver cancels the stream.
    pub stream: Option<mpsc::Sender<Outcome>>,
}

/// What the user function decided for a command, once the command's state change is durable.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub action: Action,
    /// Calls to make before the action completes (synchronous ones) or after (asynchronous).
    pub side_effects: Vec<SideEffect>,
}

/// The client-facing result of a command.
#[derive(Debug)]
pub(crate) enum Action {
    /// Reply with these bytes (an encoded message of the method's output type).
    Reply(Bytes),
    /// The command goes on to another method.
    Forward(Forward),
    /// The user function chose not to reply (allowed for messages of streams).
    NoReply,
    /// The user function failed the command.
    Fail(Error),
}

impl Action {
    /// Reads a `ClientAction` the user function sent for a command of `method`. A reply whose
    /// type is not the method's output type is reported to the user function and passed on.
    pub fn from_client_action(
        shared: &Shared,
        method: &MethodDef,
        action: Option<ClientAction>,
    ) -> Action {
        match action.and_then(|action| action.action) {
            Some(client_action::Action::Reply(reply)) => {
                let payload = reply.payload.unwrap_or_default();
                if !payload.type_url.is_empty() && payload.type_name() != method.output_type {
                    shared.user_function.report_error(format!(
                        "Warning: {}: Expected reply type_url to be [type.googleapis.com/{}] but was [{}].",
                        method.display_name(),
                        method.output_type,
                        payload.type_url
                    ));
                }
                Action::Reply(payload.value)
            }
            Some(client_action::Action::Forward(forward)) => Action::Forward(forward),
            Some(client_action::Action::Failure(failure)) => Action::Fail(Error::CommandFailed {
                code: failure_code(failure.grpc_status_code),
                description: failure.description,
            }),
            None => Action::NoReply,
        }
    }
}

/// The status code of a user function's `Failure` (field 4, our extension; 0 means UNKNOWN, as
/// in the original protocol).
pub(crate) fn failure_code(code: i32) -> Code {
    match Code::from_i32(code) {
        Code::Ok => Code::Unknown,
        code => code,
    }
}

/// What every kind of entity knows about itself: its service, its key, the engine's shared
/// parts; and what they all do the same way.
pub(crate) struct EntityContext {
    pub service: Arc<ServiceDef>,
    pub key: EntityKey,
    pub shared: Arc<Shared>,
}

impl EntityContext {
    pub fn new(service: Arc<ServiceDef>, entity_id: Arc<str>, shared: Arc<Shared>) -> Self {
        EntityContext {
            key: EntityKey {
                persistence_id: service.persistence_id.clone(),
                entity_id,
            },
            service,
            shared,
        }
    }

    /// The protocol's `Command` for `command`, with the stream's command id. Entity commands
    /// carry no metadata (the original proxy's behaviour, which support libraries' tests
    /// compare exactly).
    pub fn command(&self, id: i64, command: &EntityCommand) -> Command {
        Command {
            entity_id: self.key.entity_id.to_string(),
            id,
            name: command.method.name.clone(),
            payload: Some(Any {
                type_url: command.method.input_type_url.clone(),
                value: command.payload.clone(),
            }),
            streamed: command.method.descriptor.is_server_streaming(),
            metadata: None,
        }
    }

    /// Fails a command whose result, carried in a message of `size` bytes, the user function
    /// could not be sent; `what` says what it is ("an event of Cart.AddItem").
    pub fn check_result_size(
        &self,
        what: impl FnOnce() -> String,
        size: usize,
    ) -> Result<(), Error> {
        let limit = self.shared.config.max_message_size;
        if size <= limit {
            return Ok(());
        }
        Err(Error::ResultTooLarge(format!(
            "{} of entity {} would be {size} bytes in the message that sends it back to the \
             user function, more than the maximum message size of {limit} bytes; nothing of the \
             command was stored",
            what(),
            self.key.entity_id
        )))
    }

    /// Fails the recovery of an entity whose stored state (`what`, `size` bytes in the message
    /// that carries it) the user function cannot be sent under the configured limit.
    pub fn check_stored_size(&self, what: &str, size: usize) -> Result<(), Error> {
        let limit = self.shared.config.max_message_size;
        if size <= limit {
            return Ok(());
        }
        Err(Error::ResultTooLarge(format!(
            "the stored {what} of entity {} is {size} bytes in the message that sends it to the \
             user function, more than the maximum message size of {limit} bytes: raise the \
             maximum message size of the proxy and the user function to serve this entity",
            self.key
        )))
    }

    /// Notes that the entity's stream was found dead when a command arrived: the entity
    /// restarts and the command goes to a new stream, unseen by the client.
    pub fn stream_ended_while_idle(&self) {
        static LIMIT: LogLimit = LogLimit::new();
        if let Some(suppressed) = LIMIT.allow() {
            tracing::warn!(
                service = %self.service.name,
                entity = %self.key.entity_id,
                suppressed,
                "the entity's stream to the user function ended while it was idle (did the user \
                 function restart?); reopening it for the next command"
            );
        }
        self.shared.user_function.connection_failed();
    }

    /// Reports that the user function broke the protocol (to it, and to the log) and returns
    /// the error that fails the command and restarts the entity.
    pub fn violation(&self, what: &str) -> Error {
        let message = format!(
            "{} entity {}: the user function sent {what}",
            self.service.name, self.key.entity_id
        );
        self.shared.user_function.report_error(message.clone());
        Error::ProtocolViolation(message)
    }
}

/// After a batch's write failed: fails every result from `from` on that had succeeded (their
/// replies were computed on top of the state change that was not written).
pub(crate) fn fail_dependents(
    results: &mut [Result<Outcome, Error>],
    from: usize,
    error: impl Fn() -> Error,
) {
    for result in results.iter_mut().skip(from).filter(|r| r.is_ok()) {
        *result = Err(error());
    }
}

/// The error of a batch's failed write, for each command that depended on it.
pub(crate) fn write_error(key: &EntityKey, error: &StoreError) -> Error {
    match error {
        StoreError::Conflict { .. } => Error::Conflict(key.to_string()),
        other => Error::Store(other.clone()),
    }
}

/// The protocol-specific part of an entity: runs commands against the user function.
pub(crate) trait Entity: Send + Sized + 'static {
    /// A fresh, not yet recovered entity.
    fn new(service: Arc<ServiceDef>, entity_id: Arc<str>, shared: Arc<Shared>) -> Self;

    /// Commands [`Entity::run_batch`] may get at once.
    const MAX_BATCH: usize = 1;

    /// Runs one command (recovering first if needed): sends it to the user function and makes
    /// the reply's state change durable.
    fn run(
        &mut self,
        command: &EntityCommand,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send;

    /// Runs commands in order and returns the result of each one it ran: at least the first,
    /// and a prefix of `commands` (the rest run later). By default, one command.
    fn run_batch(
        &mut self,
        commands: &[EntityCommand],
    ) -> impl Future<Output = Vec<Result<Outcome, Error>>> + Send {
        async move { vec![self.run(&commands[0]).await] }
    }

    /// The id of the last command sent on the entity's current stream (0 if none), for logs.
    fn command_id(&self) -> i64;

    /// Forgets the stream to the user function after a failed command; the next command
    /// recovers the entity from the store.
    fn restart(&mut self);

    /// Unloads the entity: half-closes its stream to the user function and waits (boundedly)
    /// for the user function to end its side.
    fn stop(self) -> impl Future<Output = ()> + Send;

    /// Work the entity does between commands (CRDT entities: messages of open streamed
    /// commands, cancellations). Resolves after handling one event; must be cancel safe, as it
    /// is dropped when a command arrives. Never resolves for entities without such work.
    fn background(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Whether the entity may be unloaded now that it is idle (not while a client stream is
    /// open on it).
    fn can_passivate(&self) -> bool {
        true
    }
}

/// The running entities of one service.
pub(crate) struct Registry<E> {
    service: Arc<ServiceDef>,
    shared: Arc<Shared>,
    metrics: EntityMetrics,
    entities: DashMap<Arc<str>, Mailbox>,
    next_generation: AtomicU64,
    /// Entity tasks that have not ended yet.
    running: AtomicUsize,
    /// Set by [`Registry::shutdown`]: no entity starts any more.
    closed: AtomicBool,
    _entity: std::marker::PhantomData<fn() -> E>,
}

/// The sending side of a running entity's mailbox.
struct Mailbox {
    /// Tells incarnations of the same entity id apart.
    generation: u64,
    sender: mpsc::Sender<EntityCommand>,
}

impl<E: Entity> Registry<E> {
    pub fn new(service: Arc<ServiceDef>, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Registry {
            metrics: shared.metrics.entities(&service.name),
            service,
            shared,
            entities: DashMap::new(),
            next_generation: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            _entity: std::marker::PhantomData,
        })
    }

    /// Puts `command` in the mailbox of entity `entity_id`, starting the entity if it is not
    /// running. Fails at once if the mailbox is full.
    pub fn dispatch(
        self: &Arc<Self>,
        entity_id: &str,
        command: EntityCommand,
    ) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let mut command = command;
        // At most two rounds: a mailbox found closed belongs to an entity that just stopped.
        for _ in 0..2 {
            // The common case, a running entity, only takes the shard's read lock.
            let result = match self.entities.get(entity_id) {
                Some(mailbox) => (mailbox.generation, mailbox.sender.try_send(command)),
                None => {
                    let id: Arc<str> = Arc::from(entity_id);
                    let mailbox = self
                        .entities
                        .entry(id.clone())
                        .or_insert_with(|| self.start(id))
                        .downgrade();
                    (mailbox.generation, mailbox.sender.try_send(command))
                }
            };
            match result {
                (_, Ok(())) => return Ok(()),
                (_, Err(mpsc::error::TrySendError::Full(_))) => {
                    return Err(Error::Overloaded {
                        entity: format!("{}|{entity_id}", self.service.persistence_id),
                        capacity: self.shared.config.mailbox_capacity,
                    });
                }
                (generation, Err(mpsc::error::TrySendError::Closed(returned))) => {
                    self.entities
                        .remove_if(entity_id, |_, m| m.generation == generation);
                    command = returned;
                }
            }
        }
        Err(Error::EntityTerminated(format!(
            "entity {entity_id} stopped while receiving a command"
        )))
    }

    fn start(self: &Arc<Self>, entity_id: Arc<str>) -> Mailbox {
        let (sender, receiver) = mpsc::channel(self.shared.config.mailbox_capacity);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let entity = E::new(self.service.clone(), entity_id.clone(), self.shared.clone());
        self.metrics.active.inc();
        self.running.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(self.clone().run(entity_id, generation, receiver, entity));
        Mailbox { generation, sender }
    }

    fn passivation_timeout(&self) -> Duration {
        self.service
            .passivation_timeout
            .unwrap_or(self.shared.config.passivation_timeout)
    }

    /// The entity task: handles commands one at a time until it has been idle for the
    /// passivation timeout.
    async fn run(
        self: Arc<Self>,
        entity_id: Arc<str>,
        generation: u64,
        mut mailbox: mpsc::Receiver<EntityCommand>,
        mut entity: E,
    ) {
        let idle = self.passivation_timeout();
        // Commands taken from the mailbox that have not run yet, oldest first.
        let mut backlog = VecDeque::new();
        loop {
            if backlog.is_empty() {
                let next = tokio::select! {
                    next = tokio::time::timeout(idle, mailbox.recv()) => next,
                    () = entity.background() => continue,
                };
                match next {
                    Ok(Some(command)) => backlog.push_back(command),
                    Ok(None) => break,
                    Err(_) => {
                        if !entity.can_passivate() {
                            continue;
                        }
                        let removed = self.entities.remove_if(&entity_id, |_, m| {
                            m.generation == generation && mailbox.is_empty()
                        });
                        if removed.is_some() {
                            self.metrics.passivations.inc();
                            tracing::debug!(
                                service = %self.service.name,
                                entity = %entity_id,
                                "passivating idle entity"
                            );
                            break;
                        }
                        continue;
                    }
                }
            }
            // Whatever else is already waiting joins the batch (never waiting for more).
            while backlog.len() < E::MAX_BATCH {
                match mailbox.try_recv() {
                    Ok(command) => backlog.push_back(command),
                    Err(_) => break,
                }
            }
            self.handle(&mut entity, &entity_id, &mut backlog).await;
        }
        entity.stop().await;
        self.metrics.active.dec();
        self.running.fetch_sub(1, Ordering::AcqRel);
    }

    /// Runs the next commands of `backlog` as one batch, within the earliest of their deadlines,
    /// and answers their callers; commands the entity did not get to stay in the backlog.
    /// Commands whose caller went away before they started are dropped.
    async fn handle(&self, entity: &mut E, entity_id: &str, backlog: &mut VecDeque<EntityCommand>) {
        let mut batch = Vec::with_capacity(backlog.len().min(E::MAX_BATCH));
        while batch.len() < E::MAX_BATCH
            && let Some(command) = backlog.pop_front()
        {
            if !command.reply.is_closed() {
                batch.push(command);
            }
        }
        let Some(deadline) = batch.iter().map(|command| command.deadline).min() else {
            return;
        };
        let span = tracing::debug_span!(
            "commands",
            service = %self.service.name,
            entity = %entity_id,
            count = batch.len(),
        );
        let run = entity.run_batch(&batch).instrument(span);
        let results = match tokio::time::timeout_at(deadline, run).await {
            Ok(results) => results,
            Err(_) => (0..batch.len())
                .map(|_| Err(Error::Timeout(self.shared.config.command_timeout)))
                .collect(),
        };
        let failed = batch
            .iter()
            .zip(&results)
            .find_map(|(command, result)| match result {
                Err(error) if error.restarts_entity() => Some((command, error)),
                _ => None,
            });
        if let Some((command, error)) = failed {
            self.metrics.restarts.inc();
            static LIMIT: LogLimit = LogLimit::new();
            if let Some(suppressed) = LIMIT.allow() {
                tracing::warn!(
                    service = %self.service.name,
                    entity = %entity_id,
                    command = %command.method.name,
                    command_id = entity.command_id(),
                    code = ?error.code(),
                    %error,
                    suppressed,
                    "command failed; restarting the entity from the store"
                );
            }
            entity.restart();
        }
        let ran = results.len();
        let mut batch = batch.into_iter();
        for (command, result) in batch.by_ref().zip(results) {
            let _ = command.reply.send(result);
        }
        // The rest go first next time, in their order.
        for command in batch.rev() {
            backlog.push_front(command);
        }
        debug_assert!(ran > 0, "an entity runs at least one command of a batch");
    }
}

/// Stopping a registry, whatever its entity kind.
pub(crate) trait Lifecycle: Send + Sync {
    /// Stops every entity once it has handled the commands already in its mailbox; refuses new
    /// commands. Returns at once; [`Lifecycle::running`] reaches 0 when all have stopped.
    fn shutdown(&self);

    /// Entity tasks that have not ended yet.
    fn running(&self) -> usize;
}

impl<E: Entity> Lifecycle for Registry<E> {
    fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        // Dropping the mailboxes' senders ends each entity task after its queued commands.
        self.entities.clear();
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}
