//! `ValueEntityTckModel`, `ValueEntityTwo`, `ValueEntityConfigured`.

use cloudstate::{Failure, Reply, ValueCommands, ValueContext, ValueEntity, ValueEntityService};

use crate::CONFIGURED_PASSIVATION;
use crate::proto::valueentity::request_action::Action;
use crate::proto::valueentity::{Persisted, Request, Response};

const MODEL: &str = "cloudstate.tck.model.valueentity.ValueEntityTckModel";
const TWO: &str = "cloudstate.tck.model.valueentity.ValueEntityTwo";
const CONFIGURED: &str = "cloudstate.tck.model.valueentity.ValueEntityConfigured";

/// The model entity: its state is the stored `Persisted` value.
impl ValueEntity for Persisted {
    fn commands(commands: &mut ValueCommands<Self>) {
        commands.add("Process", Self::process);
    }
}

impl Persisted {
    /// Takes the actions in order: update, delete, forward, side effect, fail (which ends it).
    /// The last update or delete is the one sent.
    fn process(
        &self,
        request: Request,
        ctx: &mut ValueContext<Self>,
    ) -> Result<Reply<Response>, Failure> {
        let mut state = self.value.clone();
        let mut forward = None;
        for action in request
            .actions
            .into_iter()
            .filter_map(|action| action.action)
        {
            match action {
                Action::Update(update) => {
                    state.clone_from(&update.value);
                    ctx.update_state(Persisted {
                        value: update.value,
                    });
                }
                Action::Delete(_) => {
                    state.clear();
                    ctx.delete_state();
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

/// The state of `ValueEntityTwo` and `ValueEntityConfigured`, which never store one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unused {}

impl prost::Name for Unused {
    const NAME: &'static str = "Unused";
    const PACKAGE: &'static str = "cloudstate.tck.model.valueentity";
}

/// `ValueEntityTwo` and `ValueEntityConfigured`: `Call` answers an empty response.
impl ValueEntity for Unused {
    fn commands(commands: &mut ValueCommands<Self>) {
        commands.add("Call", |_: &Self, _: Request, _: &mut ValueContext<Self>| {
            Ok::<_, Failure>(Response::default())
        });
    }
}

/// The registration of `ValueEntityTckModel`.
pub fn model() -> ValueEntityService<Persisted> {
    ValueEntityService::new(MODEL).persistence_id("value-entity-tck-model")
}

/// The registration of `ValueEntityTwo`.
pub fn two() -> ValueEntityService<Unused> {
    ValueEntityService::new(TWO).persistence_id("value-entity-tck-model-two")
}

/// The registration of `ValueEntityConfigured`.
pub fn configured() -> ValueEntityService<Unused> {
    ValueEntityService::new(CONFIGURED)
        .persistence_id("value-entity-configured")
        .passivation_timeout(CONFIGURED_PASSIVATION)
}
