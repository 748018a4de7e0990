//! `EventSourcedTckModel`, `EventSourcedTwo`, `EventSourcedConfigured`.

use cloudstate::{CommandContext, Commands, EventSourced, EventSourcedEntity, Failure, Reply};

use crate::CONFIGURED_PASSIVATION;
use crate::proto::eventsourced::request_action::Action;
use crate::proto::eventsourced::{Persisted, Request, Response};

const MODEL: &str = "cloudstate.tck.model.EventSourcedTckModel";
const TWO: &str = "cloudstate.tck.model.EventSourcedTwo";
const CONFIGURED: &str = "cloudstate.tck.model.EventSourcedConfigured";

cloudstate::events! {
    /// The model's only event: a value appended to the state.
    pub enum ModelEvent {
        Persisted(Persisted),
    }
}

/// The model entity: its state is the concatenation of its events' values.
pub struct Model {
    state: String,
}

impl EventSourcedEntity for Model {
    type Event = ModelEvent;
    type Snapshot = Persisted;

    fn new(_entity_id: &str) -> Self {
        Model {
            state: String::new(),
        }
    }

    fn from_snapshot(_entity_id: &str, snapshot: Persisted) -> Self {
        Model {
            state: snapshot.value,
        }
    }

    fn snapshot(&self) -> Persisted {
        Persisted {
            value: self.state.clone(),
        }
    }

    fn apply(&mut self, event: &ModelEvent) {
        let ModelEvent::Persisted(persisted) = event;
        self.state.push_str(&persisted.value);
    }

    fn commands(commands: &mut Commands<Self>) {
        commands.add("Process", Self::process);
    }
}

impl Model {
    /// Takes the actions in order: emit, forward, side effect, fail (which ends it).
    fn process(
        &self,
        request: Request,
        ctx: &mut CommandContext<ModelEvent>,
    ) -> Result<Reply<Response>, Failure> {
        let mut state = self.state.clone();
        let mut forward = None;
        for action in request
            .actions
            .into_iter()
            .filter_map(|action| action.action)
        {
            match action {
                Action::Emit(emit) => {
                    state.push_str(&emit.value);
                    ctx.emit(Persisted { value: emit.value });
                }
                Action::Forward(to) => forward = Some(to.id),
                Action::Effect(effect) => {
                    ctx.side_effect(TWO, "Call", &call(effect.id), effect.synchronous);
                }
                Action::Fail(fail) => return Err(Failure::new(fail.message)),
            }
        }
        Ok(match forward {
            Some(id) => Reply::forward(TWO, "Call", &call(id)),
            None => Reply::Message(Response { message: state }),
        })
    }
}

/// The request forwards and side effects carry.
fn call(id: String) -> Request {
    Request {
        id,
        actions: Vec::new(),
    }
}

/// `EventSourcedTwo` and `EventSourcedConfigured`: `Call` answers an empty response.
pub struct Stateless;

impl EventSourcedEntity for Stateless {
    type Event = ModelEvent;
    type Snapshot = ();

    fn new(_entity_id: &str) -> Self {
        Stateless
    }

    fn from_snapshot(_entity_id: &str, _snapshot: ()) -> Self {
        Stateless
    }

    fn snapshot(&self) {}

    fn apply(&mut self, _event: &ModelEvent) {}

    fn commands(commands: &mut Commands<Self>) {
        commands.add(
            "Call",
            |_: &Self, _: Request, _: &mut CommandContext<ModelEvent>| {
                Ok::<_, Failure>(Response::default())
            },
        );
    }
}

/// The registration of `EventSourcedTckModel`.
pub fn model() -> EventSourced<Model> {
    EventSourced::new(MODEL)
        .persistence_id("event-sourced-tck-model")
        .snapshot_every(5)
}

/// The registration of `EventSourcedTwo`.
pub fn two() -> EventSourced<Stateless> {
    EventSourced::new(TWO).persistence_id("event-sourced-tck-model-two")
}

/// The registration of `EventSourcedConfigured`.
pub fn configured() -> EventSourced<Stateless> {
    EventSourced::new(CONFIGURED)
        .persistence_id("event-sourced-configured")
        .passivation_timeout(CONFIGURED_PASSIVATION)
}
