//! `EventSourcedTckModel`, `EventSourcedTwo`, `EventSourcedConfigured`.

use cloudstate::{CommandContext, EventSourced, EventSourcedEntity, Failure, Reply};

use crate::proto::eventsourced::request_action::Action;
use crate::proto::eventsourced::{self as proto, Persisted, Request, Response, event_sourced_two};
use crate::{CONFIGURED_PASSIVATION, side_effect};

cloudstate::events! {
    /// The model's only event: a value appended to the state.
    pub enum ModelEvent {
        Persisted(Persisted),
    }
}

/// The model entity: its state is the concatenation of its events' values.
#[derive(Default)]
pub struct Model {
    state: String,
}

impl EventSourcedEntity for Model {
    type Event = ModelEvent;
    type Snapshot = Persisted;

    fn apply(&mut self, event: &ModelEvent) {
        let ModelEvent::Persisted(persisted) = event;
        self.state.push_str(&persisted.value);
    }

    fn snapshot(&self) -> Option<Persisted> {
        Some(Persisted {
            value: self.state.clone(),
        })
    }

    fn from_snapshot(snapshot: Persisted) -> Option<Self> {
        Some(Model {
            state: snapshot.value,
        })
    }
}

impl proto::EventSourcedTckModel for Model {
    /// Takes the actions in order: emit, forward, side effect, fail (which ends it).
    fn process(
        &self,
        request: Request,
        ctx: &mut CommandContext<Self>,
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
                    let call = event_sourced_two::call(call(effect.id));
                    ctx.side_effect(side_effect(call, effect.synchronous));
                }
                Action::Fail(fail) => return Err(Failure::new(fail.message)),
            }
        }
        Ok(match forward {
            Some(id) => Reply::forward(event_sourced_two::call(call(id))),
            None => Response { message: state }.into(),
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
#[derive(Default)]
pub struct Stateless;

impl EventSourcedEntity for Stateless {
    type Event = ModelEvent;
    type Snapshot = ();

    fn apply(&mut self, _event: &ModelEvent) {}
}

impl proto::EventSourcedTwo for Stateless {
    fn call(&self, _: Request, _: &mut CommandContext<Self>) -> Result<Reply<Response>, Failure> {
        Ok(Response::default().into())
    }
}

impl proto::EventSourcedConfigured for Stateless {
    fn call(&self, _: Request, _: &mut CommandContext<Self>) -> Result<Reply<Response>, Failure> {
        Ok(Response::default().into())
    }
}

/// The registration of `EventSourcedTckModel`.
pub fn model() -> EventSourced<Model> {
    proto::event_sourced_tck_model::entity()
        .persistence_id("event-sourced-tck-model")
        .snapshot_every(5)
}

/// The registration of `EventSourcedTwo`.
pub fn two() -> EventSourced<Stateless> {
    event_sourced_two::entity().persistence_id("event-sourced-tck-model-two")
}

/// The registration of `EventSourcedConfigured`.
pub fn configured() -> EventSourced<Stateless> {
    proto::event_sourced_configured::entity()
        .persistence_id("event-sourced-configured")
        .passivation_timeout(CONFIGURED_PASSIVATION)
}
