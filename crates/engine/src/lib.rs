//! The entity engine of the Cloudstate proxy.
//!
//! The path of a command: the ingress resolves the gRPC path to a [`Route`] and hands the
//! request bytes to [`Engine::call`]; the engine reads the entity key from the bytes
//! ([`payload`]), puts the command in the mailbox of the entity's task ([`entity`]), which sends
//! it to the user function and persists the reply's events ([`eventsourced`]); the engine then
//! runs the reply's side effects and follows forwards, and returns the final reply's bytes.
//!
//! The engine is built from the user function's discovery answer ([`ServiceModel`]) and talks to
//! it over one shared connection ([`UserFunction`]).

mod entity;
mod error;
mod eventsourced;
pub mod model;
pub mod payload;
mod user_function;
pub mod wire;

#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloudstate_store::Store;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Code;

pub use error::Error;
pub use model::{EntityKind, MethodDef, ServiceDef, ServiceModel};
pub use user_function::UserFunction;

use entity::{Action, EntityCommand, Registry};
use eventsourced::EventSourcedEntity;

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            command_timeout: Duration::from_secs(30),
            passivation_timeout: Duration::from_secs(30),
            mailbox_capacity: 1000,
            max_chain_length: 32,
        }
    }
}

/// What every entity task needs.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    user_function: UserFunction,
    config: EngineConfig,
}

/// Where the commands of one method go.
pub struct Route {
    method: Arc<MethodDef>,
    target: Target,
}

enum Target {
    EventSourced(Arc<Registry<EventSourcedEntity>>),
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

type CallFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, Error>> + Send + 'a>>;

impl Engine {
    /// An engine serving `model`, keeping state in `store`.
    pub fn new(
        model: ServiceModel,
        store: Arc<dyn Store>,
        user_function: UserFunction,
        config: EngineConfig,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            user_function,
            config,
        });
        let registries: HashMap<&str, Arc<Registry<EventSourcedEntity>>> = model
            .services()
            .iter()
            .map(|service| {
                let registry = match service.kind {
                    EntityKind::EventSourced => Registry::new(service.clone(), shared.clone()),
                };
                (service.name.as_str(), registry)
            })
            .collect();
        let routes = model
            .methods()
            .map(|method| {
                let target = match method.service.kind {
                    EntityKind::EventSourced => {
                        Target::EventSourced(registries[method.service.name.as_str()].clone())
                    }
                };
                let route = Route {
                    method: method.clone(),
                    target,
                };
                (method.path.clone(), Arc::new(route))
            })
            .collect();
        Engine {
            inner: Arc::new(Inner {
                model: Arc::new(model),
                routes,
                shared,
            }),
        }
    }

    /// What the user function serves.
    pub fn model(&self) -> &Arc<ServiceModel> {
        &self.inner.model
    }

    /// The route for a gRPC path (`/<service>/<method>`).
    pub fn route(&self, path: &str) -> Option<&Arc<Route>> {
        self.inner.routes.get(path)
    }

    /// Runs a unary call: `payload` is the encoded request of `route`'s method; the result is
    /// the encoded reply of the method at the end of the forward chain.
    pub async fn call(&self, route: &Arc<Route>, payload: Bytes) -> Result<Bytes, Error> {
        let deadline = Instant::now() + self.inner.shared.config.command_timeout;
        self.call_chain(route.clone(), payload, deadline, 0).await
    }

    /// Runs one call and follows its forwards, running side effects on the way. Boxed because
    /// side effects are calls too.
    fn call_chain(
        &self,
        mut route: Arc<Route>,
        mut payload: Bytes,
        deadline: Instant,
        mut depth: u32,
    ) -> CallFuture<'_> {
        Box::pin(async move {
            loop {
                let outcome = self.send(&route, payload, deadline).await?;
                self.run_side_effects(&route, outcome.side_effects, deadline, depth)
                    .await?;
                match outcome.action {
                    Action::Reply(bytes) => return Ok(bytes),
                    Action::Fail(error) => return Err(error),
                    Action::Forward(forward) => {
                        depth += 1;
                        self.check_chain(depth)?;
                        route = self.target(
                            "forward",
                            &route,
                            &forward.service_name,
                            &forward.command_name,
                        )?;
                        payload = forward.payload.unwrap_or_default().value;
                    }
                }
            }
        })
    }

    fn check_chain(&self, depth: u32) -> Result<(), Error> {
        let limit = self.inner.shared.config.max_chain_length;
        if depth > limit {
            return Err(Error::ChainTooLong(limit));
        }
        Ok(())
    }

    /// Sends one command to its entity and waits for the outcome.
    async fn send(
        &self,
        route: &Route,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<entity::Outcome, Error> {
        let method = &route.method;
        let entity_id = method
            .key
            .read(&payload)
            .map_err(Error::InvalidPayload)?
            .ok_or_else(|| Error::MissingEntityKey {
                method: method.display_name(),
                fields: method
                    .key
                    .message()
                    .fields()
                    .filter(model::is_entity_key)
                    .map(|f| f.name().to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let (reply, outcome) = oneshot::channel();
        let command = EntityCommand {
            method: method.clone(),
            payload,
            deadline,
            reply,
        };
        match &route.target {
            Target::EventSourced(registry) => registry.dispatch(&entity_id, command)?,
        }
        outcome.await.unwrap_or(Err(Error::ShuttingDown))
    }

    /// Runs side effects in order: synchronous ones are awaited (and their failure fails the
    /// command), asynchronous ones run in the background with failures logged.
    async fn run_side_effects(
        &self,
        from: &Route,
        side_effects: Vec<cloudstate_protocol::SideEffect>,
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
            self.check_chain(depth + 1)?;
            if effect.synchronous {
                self.call_chain(route.clone(), payload, deadline, depth + 1)
                    .await
                    .map_err(|source| Error::SideEffectFailed {
                        target: route.method.display_name(),
                        source: Box::new(source),
                    })?;
            } else {
                let engine = self.clone();
                let deadline = Instant::now() + self.inner.shared.config.command_timeout;
                tokio::spawn(async move {
                    let result = engine
                        .call_chain(route.clone(), payload, deadline, depth + 1)
                        .await;
                    if let Err(error) = result {
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

    /// Resolves the target of a forward or side effect.
    fn target(
        &self,
        kind: &'static str,
        from: &Route,
        service: &str,
        method: &str,
    ) -> Result<Arc<Route>, Error> {
        self.inner
            .routes
            .get(&format!("/{service}/{method}"))
            .cloned()
            .ok_or_else(|| {
                let target = format!("{service}.{method}");
                self.inner.shared.user_function.report_error(format!(
                    "{kind} to unknown method {target}, from {}",
                    from.method.display_name()
                ));
                Error::UnknownTarget { kind, target }
            })
    }
}

/// The status code of a user function's `Failure` (field 4, our extension; 0 means UNKNOWN, as
/// in the original protocol).
fn failure_code(code: i32) -> Code {
    match Code::from_i32(code) {
        Code::Ok => Code::Unknown,
        code => code,
    }
}
