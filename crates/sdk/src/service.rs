//! What a [`Server`](crate::Server) serves: event sourced entities, value entities, CRDT
//! entities and actions, registered the same way and checked against the descriptor set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cloudstate_protocol::{self as protocol, entity_type};

use crate::Error;
use crate::action::ActionType;
use crate::command::{Shape, Signature};
use crate::crdt::session::CrdtProtocol;
use crate::eventsourced::session::EventSourcedProtocol;
use crate::stream::EntityType;
use crate::valueentity::session::ValueProtocol;

/// A service a [`Server`](crate::Server) can serve:
/// [`EventSourced`](crate::EventSourced), [`ValueEntityService`](crate::ValueEntityService),
/// [`CrdtEntityService`](crate::CrdtEntityService) or [`ActionService`](crate::ActionService).
/// Implemented by those types only.
pub trait Service: Sealed {}

/// Registers a service; not nameable outside the crate, so only the crate's types implement
/// [`Service`].
pub trait Sealed {
    /// Checks the service against `services` and adds it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEntity`] when the service does not match the descriptor set or is
    /// already registered.
    fn register(self, services: &mut Services) -> Result<(), Error>;
}

impl<T: Sealed> Service for T {}

/// What every registered service tells the server.
pub(crate) trait Described: Send + Sync {
    /// The service as reported at discovery.
    fn spec(&self) -> protocol::Entity;

    /// The signatures of its handlers, checked against the descriptor set.
    fn signatures(&self) -> Vec<Signature>;
}

/// The registered services of a server, by kind and service name.
pub struct Services {
    files: prost_types::FileDescriptorSet,
    specs: Vec<protocol::Entity>,
    pub(crate) event_sourced: HashMap<String, Arc<dyn EntityType<EventSourcedProtocol>>>,
    pub(crate) value: HashMap<String, Arc<dyn EntityType<ValueProtocol>>>,
    pub(crate) crdt: HashMap<String, Arc<dyn EntityType<CrdtProtocol>>>,
    pub(crate) actions: HashMap<String, Arc<dyn ActionType>>,
}

impl Services {
    /// No services yet; registrations are checked against `files`.
    pub(crate) fn new(files: prost_types::FileDescriptorSet) -> Self {
        Services {
            files,
            specs: Vec::new(),
            event_sourced: HashMap::new(),
            value: HashMap::new(),
            crdt: HashMap::new(),
            actions: HashMap::new(),
        }
    }

    /// Checks `service` against the descriptor set and the services registered so far, and
    /// records its spec; returns its service name, under which the caller files it.
    pub(crate) fn check(&mut self, service: &dyn Described) -> Result<String, Error> {
        let spec = service.spec();
        let name = spec.service_name.clone();
        let invalid = |reason: String| Error::InvalidEntity {
            service: name.clone(),
            reason,
        };
        if self.specs.iter().any(|known| known.service_name == name) {
            return Err(invalid("registered twice".into()));
        }
        check_service(&self.files, &spec, &service.signatures()).map_err(invalid)?;
        self.specs.push(spec);
        Ok(name)
    }

    /// The registered services as reported at discovery, in registration order.
    pub(crate) fn specs(&self) -> &[protocol::Entity] {
        &self.specs
    }
}

/// What stateful entity types share in their registration: the service, the storage's
/// persistence id and the passivation timeout.
pub(crate) struct EntitySettings {
    pub(crate) service_name: String,
    pub(crate) persistence_id: String,
    pub(crate) passivation_timeout: Option<Duration>,
}

impl EntitySettings {
    /// Serving `service_name`, with persistence id = `service_name` and the proxy's default
    /// passivation.
    pub(crate) fn new(service_name: String) -> Self {
        EntitySettings {
            persistence_id: service_name.clone(),
            service_name,
            passivation_timeout: None,
        }
    }

    /// The entity as reported at discovery, with type `entity_type`.
    pub(crate) fn spec(&self, entity_type: &str) -> protocol::Entity {
        protocol::Entity {
            entity_type: entity_type.to_owned(),
            service_name: self.service_name.clone(),
            persistence_id: self.persistence_id.clone(),
            passivation_strategy: self.passivation_timeout.map(|timeout| {
                protocol::EntityPassivationStrategy {
                    strategy: Some(protocol::entity_passivation_strategy::Strategy::Timeout(
                        protocol::TimeoutPassivationStrategy {
                            timeout: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
                        },
                    )),
                }
            }),
        }
    }
}

/// What the entity type of `spec` is called in messages.
fn kind(spec: &protocol::Entity) -> &'static str {
    match spec.entity_type.as_str() {
        entity_type::EVENT_SOURCED => "event sourced entities",
        entity_type::VALUE_ENTITY => "value entities",
        entity_type::CRDT => "CRDT entities",
        _ => "actions",
    }
}

/// Checks a service's handlers against its service in `files`; returns what is wrong.
///
/// Every handler must name a method of the service, with the same input and output types and
/// the same shape. Event sourced and value entities support no streamed methods, CRDT entities
/// server streaming ones (streamed commands), actions all shapes.
pub(crate) fn check_service(
    files: &prost_types::FileDescriptorSet,
    spec: &protocol::Entity,
    handlers: &[Signature],
) -> Result<(), String> {
    let service_name = spec.service_name.as_str();
    let (client_streaming_allowed, server_streaming_allowed) = match spec.entity_type.as_str() {
        entity_type::ACTION => (true, true),
        entity_type::CRDT => (false, true),
        _ => (false, false),
    };
    let service = files
        .file
        .iter()
        .flat_map(|file| {
            file.service
                .iter()
                .map(move |service| (file.package(), service))
        })
        .find(|(package, service)| {
            let name = match package {
                &"" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            name == service_name
        })
        .map(|(_, service)| service)
        .ok_or_else(|| "the service is not in the descriptor set".to_owned())?;

    for method in &service.method {
        if (method.client_streaming() && !client_streaming_allowed)
            || (method.server_streaming() && !server_streaming_allowed)
        {
            let shape = Shape::of(method.client_streaming(), method.server_streaming());
            return Err(format!(
                "method {} is {shape}, which {} do not support",
                method.name(),
                kind(spec)
            ));
        }
        if !handlers
            .iter()
            .any(|handler| handler.method == method.name())
        {
            tracing::warn!(
                service = service_name,
                method = method.name(),
                "no handler: its commands will fail"
            );
        }
    }
    for handler in handlers {
        let name = &handler.method;
        let method = service
            .method
            .iter()
            .find(|method| method.name() == name)
            .ok_or_else(|| {
                format!("a handler is registered for {name}, which is not a method of the service")
            })?;
        let expected_input = method.input_type().trim_start_matches('.');
        let expected_output = method.output_type().trim_start_matches('.');
        let expected_shape = Shape::of(method.client_streaming(), method.server_streaming());
        if expected_input != handler.input {
            return Err(format!(
                "the handler of {name} takes a {}, the method a {expected_input}",
                handler.input
            ));
        }
        if expected_output != handler.output {
            return Err(format!(
                "the handler of {name} returns a {}, the method a {expected_output}",
                handler.output
            ));
        }
        if expected_shape != handler.shape {
            return Err(format!(
                "the handler of {name} is {}, the method is {expected_shape}",
                handler.shape
            ));
        }
    }
    Ok(())
}
