//! Value entities: the [`ValueEntity`] trait a state message implements, its command handlers
//! ([`ValueCommands`], [`ValueContext`]) and its registration ([`ValueEntityService`]).

use std::sync::Arc;
use std::time::Duration;

use prost::{Message, Name};

use crate::service::EntitySettings;
use crate::{CommandHandlers, SideEffect};

pub(crate) mod session;

/// The state of a value entity: a protobuf message the proxy stores whole, and the commands
/// that read and replace it.
///
/// Each command handler gets the current state as `&self` (the stored value, or
/// `Default::default()` when nothing is stored), the decoded request and a [`ValueContext`],
/// through which it replaces ([`update_state`](ValueContext::update_state)) or deletes
/// ([`delete_state`](ValueContext::delete_state)) the stored value. The proxy stores the change
/// before the client gets the reply; the next command sees the new state.
pub trait ValueEntity: Message + Name + Default + Clone + 'static {
    /// Registers a handler for each command (gRPC method) of the entity's service.
    fn commands(commands: &mut ValueCommands<Self>);
}

/// The command handlers of a value entity, by gRPC method name; filled in by
/// [`ValueEntity::commands`] with [`CommandHandlers::add`].
pub type ValueCommands<E> = CommandHandlers<E, ValueContext<E>>;

/// A change of a value entity's stored state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateAction<S> {
    /// Store this value, replacing the previous one.
    Update(S),
    /// Remove the stored value; the entity's state is the default again.
    Delete,
}

/// What a value entity's command handler can do besides replying: read the entity's id, change
/// the stored state and request side effects.
///
/// Everything recorded here is discarded when the handler returns a [`Failure`](crate::Failure)
/// (or panics).
pub struct ValueContext<S> {
    entity_id: Arc<str>,
    command_id: i64,
    state_action: Option<StateAction<S>>,
    side_effects: Vec<SideEffect>,
}

impl<S> ValueContext<S> {
    pub(crate) fn new(entity_id: Arc<str>, command_id: i64) -> Self {
        ValueContext {
            entity_id,
            command_id,
            state_action: None,
            side_effects: Vec::new(),
        }
    }

    /// The entity's id.
    pub fn entity_id(&self) -> &str {
        &self.entity_id
    }

    /// The command's id on the proxy's stream (1 for the first command of each stream).
    pub fn command_id(&self) -> i64 {
        self.command_id
    }

    /// Replaces the stored state with `state` once the handler succeeds. A reply carries one
    /// state change: the last `update_state` or [`delete_state`](Self::delete_state) wins. The
    /// handler itself still sees the state as it was when the command arrived.
    pub fn update_state(&mut self, state: S) {
        self.state_action = Some(StateAction::Update(state));
    }

    /// Deletes the stored state once the handler succeeds; the next command sees the default
    /// state. The last `delete_state` or [`update_state`](Self::update_state) wins.
    pub fn delete_state(&mut self) {
        self.state_action = Some(StateAction::Delete);
    }

    /// Asks the proxy to call `service` (full name) `method` with `request` once this
    /// command's state change is stored; `synchronous` makes the proxy wait for the call before
    /// replying. The call's result is ignored.
    pub fn side_effect<R: Message + Name>(
        &mut self,
        service: impl Into<String>,
        method: impl Into<String>,
        request: &R,
        synchronous: bool,
    ) {
        self.side_effects
            .push(SideEffect::new(service, method, request, synchronous));
    }

    /// The state change and side effects recorded so far.
    pub(crate) fn into_effects(self) -> (Option<StateAction<S>>, Vec<SideEffect>) {
        (self.state_action, self.side_effects)
    }
}

/// A value entity type as registered with the [`Server`](crate::Server) or a
/// [`testkit`](crate::testkit): the gRPC service it implements and where the proxy stores it.
pub struct ValueEntityService<E: ValueEntity> {
    settings: EntitySettings,
    commands: ValueCommands<E>,
}

impl<E: ValueEntity> ValueEntityService<E> {
    /// The entity serving `service_name` (the service's full name, e.g.
    /// `com.example.inventory.Inventory`), with the handlers of [`ValueEntity::commands`],
    /// persistence id = `service_name` and the proxy's default passivation.
    pub fn new(service_name: impl Into<String>) -> Self {
        let mut commands = ValueCommands::<E>::new();
        E::commands(&mut commands);
        ValueEntityService {
            settings: EntitySettings::new(service_name.into()),
            commands,
        }
    }

    /// Sets the store's persistence id (entities of one id share a key namespace).
    pub fn persistence_id(mut self, persistence_id: impl Into<String>) -> Self {
        self.settings.persistence_id = persistence_id.into();
        self
    }

    /// Asks the proxy to passivate (stop) an entity after `timeout` without commands.
    pub fn passivation_timeout(mut self, timeout: Duration) -> Self {
        self.settings.passivation_timeout = Some(timeout);
        self
    }

    /// The full name of the entity's service.
    pub fn service_name(&self) -> &str {
        &self.settings.service_name
    }

    pub(crate) fn commands(&self) -> &ValueCommands<E> {
        &self.commands
    }

    pub(crate) fn settings(&self) -> &EntitySettings {
        &self.settings
    }
}
