//! `ActionTckModel` and `ActionTwo`.

use cloudstate::{
    ActionContext, ActionReply, ActionService, Failure, Reply, ReplyStream, RequestStream,
};
use futures_util::StreamExt;

use crate::proto::action::process_step::Step;
use crate::proto::action::{
    self as proto, OtherRequest, ProcessStep, Request, Response, action_two,
};
use crate::side_effect;

/// What a run of steps makes: the last reply, forward or failure (none: no reply), and every
/// side effect (to `ActionTwo.Call` with `OtherRequest{id}`: id, synchronous), in order.
struct Outcome {
    result: Option<Result<Reply<Response>, Failure>>,
    side_effects: Vec<(String, bool)>,
}

impl Outcome {
    fn of(steps: impl IntoIterator<Item = ProcessStep>) -> Self {
        let mut outcome = Outcome {
            result: None,
            side_effects: Vec::new(),
        };
        for step in steps.into_iter().filter_map(|step| step.step) {
            match step {
                Step::Reply(reply) => {
                    outcome.result = Some(Ok(Response {
                        message: reply.message,
                    }
                    .into()));
                }
                Step::Forward(to) => {
                    let call = action_two::call(OtherRequest { id: to.id });
                    outcome.result = Some(Ok(Reply::forward(call)));
                }
                Step::Fail(fail) => outcome.result = Some(Err(Failure::new(fail.message))),
                Step::Effect(effect) => {
                    outcome.side_effects.push((effect.id, effect.synchronous));
                }
            }
        }
        outcome
    }

    /// As the result of a unary or client-streaming handler, its side effects in `ctx`.
    fn into_result(self, ctx: &mut ActionContext) -> Result<Reply<Response>, Failure> {
        for (id, synchronous) in self.side_effects {
            ctx.side_effect(side_effect(
                action_two::call(OtherRequest { id }),
                synchronous,
            ));
        }
        self.result.unwrap_or(Ok(Reply::NoReply))
    }

    /// As one response of a stream.
    fn into_reply(self) -> ActionReply<Response> {
        let reply = match self.result {
            None => ActionReply::no_reply(),
            Some(Ok(reply)) => reply.into(),
            Some(Err(failure)) => failure.into(),
        };
        self.side_effects
            .into_iter()
            .fold(reply, |reply, (id, synchronous)| {
                reply.with_side_effect(side_effect(
                    action_two::call(OtherRequest { id }),
                    synchronous,
                ))
            })
    }
}

/// The model action.
pub struct Model;

impl proto::ActionTckModel for Model {
    /// Every step of every group makes one response.
    async fn process_unary(
        &self,
        request: Request,
        ctx: &mut ActionContext,
    ) -> Result<Reply<Response>, Failure> {
        let steps = request.groups.into_iter().flat_map(|group| group.steps);
        Outcome::of(steps).into_result(ctx)
    }

    /// Every step of every request makes one response, once the requests end.
    async fn process_streamed_in(
        &self,
        requests: RequestStream<Request>,
        ctx: &mut ActionContext,
    ) -> Result<Reply<Response>, Failure> {
        let requests: Vec<Request> = requests.collect().await;
        let steps = requests
            .into_iter()
            .flat_map(|request| request.groups)
            .flat_map(|group| group.steps);
        Outcome::of(steps).into_result(ctx)
    }

    /// One response per group.
    async fn process_streamed_out(
        &self,
        request: Request,
        _: &mut ActionContext,
    ) -> Result<ReplyStream<Response>, Failure> {
        let replies: Vec<_> = request
            .groups
            .into_iter()
            .map(|group| Outcome::of(group.steps).into_reply())
            .collect();
        Ok(ReplyStream::new(futures_util::stream::iter(replies)))
    }

    /// One response per group of each request, as the requests arrive.
    async fn process_streamed(
        &self,
        requests: RequestStream<Request>,
        _: &mut ActionContext,
    ) -> Result<ReplyStream<Response>, Failure> {
        let replies = requests.flat_map(|request| {
            futures_util::stream::iter(
                request
                    .groups
                    .into_iter()
                    .map(|group| Outcome::of(group.steps).into_reply())
                    .collect::<Vec<_>>(),
            )
        });
        Ok(ReplyStream::new(replies))
    }
}

/// `ActionTwo`: `Call` answers an empty response.
pub struct Two;

impl proto::ActionTwo for Two {
    async fn call(
        &self,
        _: OtherRequest,
        _: &mut ActionContext,
    ) -> Result<Reply<Response>, Failure> {
        Ok(Response::default().into())
    }
}

/// The registration of `ActionTckModel`.
pub fn model() -> ActionService<Model> {
    proto::action_tck_model::action(Model)
}

/// The registration of `ActionTwo`.
pub fn two() -> ActionService<Two> {
    action_two::action(Two)
}
