//! The entity engine of the Cloudstate proxy.
//!
//! The path of a command: the ingress resolves the gRPC path to a [`Route`] and hands the
//! request bytes to [`Engine::call`] (or [`Engine::call_streaming`] for streaming actions); the
//! engine checks the bytes and reads the entity key ([`payload`]), puts the command in the
//! mailbox of the entity's task ([`entity`]), which sends it to the user function and makes the
//! reply's state change durable ([`eventsourced`], [`value_entity`]), or calls an action
//! ([`action`]); the engine then runs the reply's side effects, follows forwards, and returns
//! the final reply's bytes.
//!
//! The engine is built from the user function's discovery answer ([`ServiceModel`]) and talks to
//! it over one shared connection ([`UserFunction`]).

mod action;
mod crdt;
mod entity;
mod error;
mod eventsourced;
mod limits;
mod log_limit;
mod metrics;
pub mod model;
pub mod payload;
mod stream;
mod user_function;
mod value_entity;
pub mod wire;

#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloudstate_protocol::{Forward, Metadata, SideEffect};
use cloudstate_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

pub use action::{ReplyStream, RequestStream};
pub use error::Error;
pub use metrics::{EngineMetrics, LoadCounters};
pub use model::{EntityKind, MethodDef, ServiceDef, ServiceModel};
pub use user_function::UserFunction;

use crdt::{CrdtEntity, CrdtStates};
use entity::{Action, EntityCommand, Outcome, Registry};
use eventsourced::EventSourcedEntity;
use value_entity::ValueEntity;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a command may take, from arrival to reply, including waiting in the mailbox.
    pub command_timeout: Duration,
    /// Idle time after which an entity is unloaded, unless the user function declared its own.
    pub passivation_timeout: Duration,
    /// Commands that may wait for one entity; more are refused with RESOURCE_EXHAUSTED.
    pub mailbox_capacity: usize,
    /// Longest chain of forwards and side effects one client call may cause.
    pub max_chain_length: u32,
    /// Largest message, in bytes, exchanged with clients and the user function (see
    /// [`cloudstate_protocol::DEFAULT_MAX_MESSAGE_SIZE`]). A command whose request, or whose
    /// events, snapshot or value, would not fit in such a message is refused, and nothing of it
    /// is stored.
    pub max_message_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            command_timeout: Duration::from_secs(30),
            passivation_timeout: Duration::from_secs(30),
            mailbox_capacity: 1000,
            max_chain_length: 32,
            max_message_size: cloudstate_protocol::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// What every entity task needs.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    user_function: UserFunction,
    config: EngineConfig,
    metrics: EngineMetrics,
    /// The CRDT states of this node.
    crdt_states: CrdtStates,
    /// This node's identity in CRDT states: unique per process, as the states live in memory.
    replica: cloudstate_crdt::ReplicaId,
    /// Side effects that no client call waits for (of CRDT stream cancellations).
    orphan_side_effects: mpsc::UnboundedSender<Vec<SideEffect>>,
}

/// Where the calls of one method go.
pub struct Route {
    method: Arc<MethodDef>,
    target: Target,
    metrics: metrics::MethodMetrics,
}

#[derive(Clone)]
enum Target {
    EventSourced(Arc<Registry<EventSourcedEntity>>),
    ValueEntity(Arc<Registry<ValueEntity>>),
    Crdt(Arc<Registry<CrdtEntity>>),
    Action,
}

impl Target {
    fn lifecycle(&self) -> Option<&dyn entity::Lifecycle> {
        match self {
            Target::EventSourced(registry) => Some(registry.as_ref()),
            Target::ValueEntity(registry) => Some(registry.as_ref()),
            Target::Crdt(registry) => Some(registry.as_ref()),
            Target::Action => None,
        }
    }
}

impl Route {
    /// The method this route serves.
    pub fn method(&self) -> &Arc<MethodDef> {
        &self.method
    }
}

/// Serves the methods of a discovered user function. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    model: Arc<ServiceModel>,
    routes: HashMap<String, Arc<Route>>,
    shared: Arc<Shared>,
}

type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, Error>> + Send + 'a>>;

impl Engine {
    /// An engine serving `model`, keeping state in `store`, recording into `metrics`.
    pub fn new(
        model: ServiceModel,
        store: Arc<dyn Store>,
        user_function: UserFunction,
        config: EngineConfig,
        metrics: EngineMetrics,
    ) -> Self {
        user_function.record_into(metrics.user_function_health());
        let (orphan_side_effects, mut orphans) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store,
            user_function,
            config,
            metrics,
            crdt_states: CrdtStates::default(),
            replica: replica_id(),
            orphan_side_effects,
        });
        let mut routes = HashMap::new();
        for service in model.services() {
            // All methods of a service share one registry: an entity serves them all.
            let target = match service.kind {
                EntityKind::EventSourced => {
                    Target::EventSourced(Registry::new(service.clone(), shared.clone()))
                }
                EntityKind::ValueEntity => {
                    Target::ValueEntity(Registry::new(service.clone(), shared.clone()))
                }
                EntityKind::Crdt => Target::Crdt(Registry::new(service.clone(), shared.clone())),
                EntityKind::Action => Target::Action,
            };
            for method in model.methods().filter(|m| Arc::ptr_eq(&m.service, service)) {
                let route = Route {
                    method: method.clone(),
                    target: target.clone(),
                    metrics: shared.metrics.method(&service.name, &method.name),
                };
                routes.insert(method.path.clone(), Arc::new(route));
            }
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                model: Arc::new(model),
                routes,
                shared,
            }),
        };
        let runner = engine.clone();
        tokio::spawn(async move {
            while let Some(side_effects) = orphans.recv().await {
                let deadline = runner.deadline();
                if let Err(error) = runner
                    .run_side_effects(&"a stream cancellation", side_effects, deadline, 0)
                    .await
                {
                    tracing::warn!(%error, "side effect of a stream cancellation failed");
                }
            }
        });
        engine
    }

    /// What the user function serves.
    pub fn model(&self) -> &Arc<ServiceModel> {
        &self.inner.model
    }

    /// The connection to the user function.
    pub fn user_function(&self) -> &UserFunction {
        &self.inner.shared.user_function
    }

    /// The largest message, in bytes, the engine accepts and sends.
    pub fn max_message_size(&self) -> usize {
        self.inner.shared.config.max_message_size
    }

    /// The route for a gRPC path (`/<service>/<method>`).
    pub fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.inner.routes.get(path)
    }

    /// Runs a unary call: `payload` is the encoded request of `route`'s method; the result is
    /// the encoded reply of the method at the end of the forward chain. `metadata` (request
    /// headers) reaches actions only.
    pub async fn call(
        &self,
        route: &Arc<Route>,
        payload: Bytes,
        metadata: Metadata,
    ) -> Result<Bytes, Error> {
        let timer = route.metrics.start();
        let result = self
            .call_chain(route.clone(), payload, metadata, self.deadline(), 0)
            .await;
        timer.finish(
            result
                .as_ref()
                .map_or_else(Error::code, |_| tonic::Code::Ok),
        );
        result
    }

    /// Runs a streaming call: an action of any streaming shape, or a streamed command of a CRDT
    /// entity (server streaming). The replies come as the user function sends them; an error
    /// ends the stream.
    pub fn call_streaming(
        &self,
        route: &Arc<Route>,
        metadata: Metadata,
        requests: RequestStream,
    ) -> ReplyStream {
        match &route.target {
            Target::Crdt(registry) => {
                self.streamed_command(route.clone(), registry.clone(), requests)
            }
            _ => action::streaming(self.clone(), route.clone(), metadata, requests),
        }
    }

    /// Runs a streamed command of a CRDT entity: the first reply, then every message the user
    /// function sends for it, until it ends the stream or the client goes away (which the entity
    /// reports to the user function).
    fn streamed_command(
        &self,
        route: Arc<Route>,
        registry: Arc<Registry<CrdtEntity>>,
        mut requests: RequestStream,
    ) -> ReplyStream {
        let (replies, receiver) = mpsc::channel(action::STREAM_BUFFER);
        let engine = self.clone();
        tokio::spawn(async move {
            let timer = route.metrics.start();
            let result = async {
                let payload = match tokio_stream::StreamExt::next(&mut requests).await {
                    Some(Ok(payload)) => payload,
                    Some(Err(status)) => {
                        return Err(Error::ActionCall {
                            method: route.method.display_name(),
                            status,
                        });
                    }
                    None => return Err(Error::ProtocolViolation("no request message".into())),
                };
                let (stream, mut outcomes) = mpsc::channel(action::STREAM_BUFFER);
                let first = engine
                    .dispatch(
                        &registry,
                        &route.method,
                        payload,
                        engine.deadline(),
                        Some(stream),
                    )?
                    .await
                    .unwrap_or(Err(Error::ShuttingDown))?;
                if !action::deliver(&engine, &route, first, &replies).await? {
                    return Ok(());
                }
                loop {
                    let outcome = tokio::select! {
                        outcome = outcomes.recv() => outcome,
                        // The client went away: dropping `outcomes` tells the entity.
                        () = replies.closed() => return Ok(()),
                    };
                    let Some(outcome) = outcome else {
                        return Ok(());
                    };
                    if !action::deliver(&engine, &route, outcome, &replies).await? {
                        return Ok(());
                    }
                }
            }
            .await;
            match result {
                Ok(()) => timer.finish(tonic::Code::Ok),
                Err(error) => {
                    timer.finish(error.code());
                    let _ = replies.send(Err(error)).await;
                }
            }
        });
        ReceiverStream::new(receiver)
    }

    /// Unloads every entity, letting each finish the commands already queued for it, and
    /// half-closes every stream to the user function; waits at most `timeout` for all of them.
    /// Commands arriving afterwards fail with UNAVAILABLE.
    pub async fn shutdown(&self, timeout: Duration) {
        let registries: Vec<&dyn entity::Lifecycle> = self
            .inner
            .routes
            .values()
            .filter_map(|route| route.target.lifecycle())
            .collect();
        for registry in &registries {
            registry.shutdown();
        }
        let deadline = Instant::now() + timeout;
        while registries.iter().any(|r| r.running() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The deadline of a call starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.shared.config.command_timeout
    }

    /// Runs one call and follows its forwards, running side effects on the way. Boxed because
    /// side effects and forwards are calls too.
    fn call_chain(
        &self,
        route: Arc<Route>,
        payload: Bytes,
        metadata: Metadata,
        deadline: Instant,
        depth: u32,
    ) -> CallFuture<'_> {
        Box::pin(async move {
            let outcome = self.send(&route, payload, metadata, deadline).await?;
            self.run_side_effects(&*route.method, outcome.side_effects, deadline, depth)
                .await?;
            match outcome.action {
                Action::Reply(bytes) => Ok(bytes),
                Action::Fail(error) => Err(error),
                Action::NoReply => Err(Error::NoReply(route.method.display_name())),
                Action::Forward(forward) => {
                    self.follow(&route.method, forward, deadline, depth).await
                }
            }
        })
    }

    /// Calls the target of a forward; its reply is the forwarding call's reply.
    async fn follow(
        &self,
        from: &MethodDef,
        forward: Forward,
        deadline: Instant,
        depth: u32,
    ) -> Result<Bytes, Error> {
        self.check_chain(depth + 1)?;
        let target = self.target(
            "forward",
            from,
            &forward.service_name,
            &forward.command_name,
        )?;
        let payload = forward.payload.unwrap_or_default().value;
        let metadata = forward.metadata.unwrap_or_default();
        self.call_chain(target, payload, metadata, deadline, depth + 1)
            .await
    }

    fn check_chain(&self, depth: u32) -> Result<(), Error> {
        let limit = self.inner.shared.config.max_chain_length;
        if depth > limit {
            return Err(Error::ChainTooLong(limit));
        }
        Ok(())
    }

    /// Sends one command to its entity (or action) and waits for the outcome.
    async fn send(
        &self,
        route: &Route,
        payload: Bytes,
        metadata: Metadata,
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        let method = &route.method;
        let outcome = match &route.target {
            Target::Action => {
                payload::check_message(&method.input, &payload).map_err(Error::InvalidPayload)?;
                let size = limits::action_command_len(
                    &method.service.name,
                    &method.name,
                    &method.input_type_url,
                    payload.len(),
                    prost::Message::encoded_len(&metadata),
                );
                self.check_request_size(method, size)?;
                let shared = &self.inner.shared;
                let call = shared
                    .metrics
                    .user_function(action::unary(shared, method, payload, metadata));
                return tokio::time::timeout_at(deadline, call)
                    .await
                    .unwrap_or_else(|_| {
                        static LIMIT: log_limit::LogLimit = log_limit::LogLimit::new();
                        if let Some(suppressed) = LIMIT.allow() {
                            tracing::warn!(
                                service = %method.service.name,
                                command = %method.name,
                                suppressed,
                                "action call timed out"
                            );
                        }
                        Err(Error::Timeout(self.inner.shared.config.command_timeout))
                    });
            }
            Target::EventSourced(registry) => {
                self.dispatch(registry, method, payload, deadline, None)?
            }
            Target::ValueEntity(registry) => {
                self.dispatch(registry, method, payload, deadline, None)?
            }
            Target::Crdt(registry) => self.dispatch(registry, method, payload, deadline, None)?,
        };
        outcome.await.unwrap_or(Err(Error::ShuttingDown))
    }

    /// Puts a command in its entity's mailbox; the receiver gets the outcome.
    fn dispatch<E: entity::Entity>(
        &self,
        registry: &Arc<Registry<E>>,
        method: &Arc<MethodDef>,
        payload: Bytes,
        deadline: Instant,
        stream: Option<mpsc::Sender<Outcome>>,
    ) -> Result<oneshot::Receiver<Result<Outcome, Error>>, Error> {
        let entity_id = self.entity_id(method, &payload)?;
        let size = limits::command_len(
            &entity_id,
            &method.name,
            &method.input_type_url,
            payload.len(),
        );
        self.check_request_size(method, size)?;
        let (reply, outcome) = oneshot::channel();
        let command = EntityCommand {
            method: method.clone(),
            payload,
            deadline,
            reply,
            stream,
        };
        registry.dispatch(&entity_id, command)?;
        Ok(outcome)
    }

    /// Refuses a command whose message to the user function (`size` bytes) would exceed the
    /// maximum message size.
    fn check_request_size(&self, method: &MethodDef, size: usize) -> Result<(), Error> {
        let limit = self.inner.shared.config.max_message_size;
        if size > limit {
            return Err(Error::RequestTooLarge {
                what: format!("the command to {} with its envelope", method.display_name()),
                size,
                limit,
            });
        }
        Ok(())
    }

    /// Checks a stateful method's request and reads its entity key.
    fn entity_id(&self, method: &MethodDef, payload: &[u8]) -> Result<String, Error> {
        let Some(key) = &method.key else {
            return Err(Error::ProtocolViolation(format!(
                "{} has no entity key reader",
                method.display_name()
            )));
        };
        key.read(payload)
            .map_err(Error::InvalidPayload)?
            .ok_or_else(|| Error::MissingEntityKey {
                method: method.display_name(),
                fields: key
                    .message()
                    .fields()
                    .filter(model::is_entity_key)
                    .map(|f| f.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Runs side effects in order: synchronous ones are awaited (and their failure fails the
    /// command), asynchronous ones run in the background with failures logged.
    async fn run_side_effects(
        &self,
        from: &(dyn std::fmt::Display + Sync),
        side_effects: Vec<SideEffect>,
        deadline: Instant,
        depth: u32,
    ) -> Result<(), Error> {
        for effect in side_effects {
            let route = self.target(
                "side effect",
                from,
                &effect.service_name,
                &effect.command_name,
            )?;
            let payload = effect.payload.unwrap_or_default().value;
            let metadata = effect.metadata.unwrap_or_default();
            self.check_chain(depth + 1)?;
            if effect.synchronous {
                self.call_chain(route.clone(), payload, metadata, deadline, depth + 1)
                    .await
                    .map_err(|source| Error::SideEffectFailed {
                        target: route.method.display_name(),
                        source: Box::new(source),
                    })?;
            } else {
                let engine = self.clone();
                let deadline = self.deadline();
                tokio::spawn(async move {
                    let result = engine
                        .call_chain(route.clone(), payload, metadata, deadline, depth + 1)
                        .await;
                    if let Err(error) = result {
                        engine.inner.shared.metrics.side_effect_failed();
                        tracing::warn!(
                            target = %route.method.display_name(),
                            %error,
                            "asynchronous side effect failed"
                        );
                    }
                });
            }
        }
        Ok(())
    }

    /// Resolves the target of a forward or side effect: a unary method of a served service.
    fn target(
        &self,
        kind: &'static str,
        from: &(dyn std::fmt::Display + Sync),
        service: &str,
        method: &str,
    ) -> Result<Arc<Route>, Error> {
        let route = self
            .inner
            .routes
            .get(&format!("/{service}/{method}"))
            .filter(|route| {
                let m = &route.method.descriptor;
                !m.is_client_streaming() && !m.is_server_streaming()
            });
        route.cloned().ok_or_else(|| {
            let target = format!("{service}.{method}");
            self.inner.shared.user_function.report_error(format!(
                "{kind} to unknown (or streaming) method {target}, from {from}",
            ));
            Error::UnknownTarget { kind, target }
        })
    }
}

/// A replica id unique to this process: CRDT states live in memory, so a restarted proxy is a
/// new replica.
fn replica_id() -> cloudstate_crdt::ReplicaId {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    cloudstate_crdt::ReplicaId::new(format!("proxy-{}-{started}", std::process::id()))
}
