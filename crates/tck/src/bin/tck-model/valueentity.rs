//! `ValueEntityTckModel`, `ValueEntityTwo`, `ValueEntityConfigured`.

use cloudstate::{Failure, Reply, ValueContext, ValueEntityService};

use crate::proto::valueentity::request_action::Action;
use crate::proto::valueentity::{self as proto, Persisted, Request, Response, value_entity_two};
use crate::{CONFIGURED_PASSIVATION, side_effect};

/// The model entity: its state is the stored `Persisted` value.
impl proto::ValueEntityTckModel for Persisted {
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
                    let call = value_entity_two::call(call(effect.id));
                    ctx.side_effect(side_effect(call, effect.synchronous));
                }
                Action::Fail(fail) => return Err(Failure::new(fail.message)),
            }
        }
        Ok(match forward {
            Some(id) => Reply::forward(value_entity_two::call(call(id))),
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

/// The state of `ValueEntityTwo` and `ValueEntityConfigured`, which never store one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unused {}

impl prost::Name for Unused {
    const NAME: &'static str = "Unused";
    const PACKAGE: &'static str = "cloudstate.tck.model.valueentity";
}

/// `ValueEntityTwo`: `Call` answers an empty response.
impl proto::ValueEntityTwo for Unused {
    fn call(&self, _: Request, _: &mut ValueContext<Self>) -> Result<Reply<Response>, Failure> {
        Ok(Response::default().into())
    }
}

/// `ValueEntityConfigured`: `Call` answers an empty response.
impl proto::ValueEntityConfigured for Unused {
    fn call(&self, _: Request, _: &mut ValueContext<Self>) -> Result<Reply<Response>, Failure> {
        Ok(Response::default().into())
    }
}

/// The registration of `ValueEntityTckModel`.
pub fn model() -> ValueEntityService<Persisted> {
    proto::value_entity_tck_model::entity().persistence_id("value-entity-tck-model")
}

/// The registration of `ValueEntityTwo`.
pub fn two() -> ValueEntityService<Unused> {
    value_entity_two::entity().persistence_id("value-entity-tck-model-two")
}

/// The registration of `ValueEntityConfigured`.
pub fn configured() -> ValueEntityService<Unused> {
    proto::value_entity_configured::entity()
        .persistence_id("value-entity-configured")
        .passivation_timeout(CONFIGURED_PASSIVATION)
}
