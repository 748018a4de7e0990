//! The action testkit.

use std::sync::Arc;

use cloudstate_protocol::Any;
use cloudstate_protocol::action::{ActionCommand, ActionResponse};
use futures_util::StreamExt;
use futures_util::stream;
use prost::{Message, Name};

use super::{ClientAction, for_service};
use crate::action::{ActionType, Calls};
use crate::command::Shape;
use crate::{Action, ActionService, Call, Error, Failure, Forward, Metadata, SideEffect};

/// Calls an action as the proxy would: the same protocol messages (a first `ActionCommand`
/// with service, method and metadata, then payloads), the same dispatch code as the
/// [`Server`](crate::Server), and the responses decoded.
///
/// The calls are `async`; run them in an async test (`#[tokio::test]`).
pub struct ActionTestKit<A: Action> {
    action: Arc<ActionService<A>>,
    metadata: Metadata,
}

impl<A: Action> ActionTestKit<A> {
    /// Calls `action`, with no metadata.
    pub fn new(action: ActionService<A>) -> Self {
        ActionTestKit {
            action: Arc::new(action),
            metadata: Metadata::default(),
        }
    }

    /// Adds a metadata entry (a request header) to every call.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push(key, value);
        self
    }

    /// Makes `call` (a generated call of one of the action's unary methods, e.g.
    /// `proto::checkout::place_order(order)`).
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when `call` is for another service, [`Error::Protocol`]
    /// when its method is not unary.
    pub async fn unary<Out>(&self, call: Call<Out>) -> Result<ActionOutcome, Error> {
        let (method, payload) = for_service(self.action.service_name(), call)?;
        let calls = self.call(Shape::Unary, method, Some(payload), Vec::new());
        only(collect(calls).await?)
    }

    /// Makes `call` of a server streaming method; returns every response.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when `call` is for another service, [`Error::Protocol`]
    /// when its method is not server streaming.
    pub async fn server_streaming<Out>(
        &self,
        call: Call<Out>,
    ) -> Result<Vec<ActionOutcome>, Error> {
        let (method, payload) = for_service(self.action.service_name(), call)?;
        collect(self.call(Shape::StreamedOut, method, Some(payload), Vec::new())).await
    }

    /// Calls a client streaming method with `requests`, then ends the request stream. The
    /// method is given by its generated call function (e.g. `proto::relay::concat`), which
    /// makes each request's call.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when the method is of another service, [`Error::Protocol`]
    /// when it is not client streaming.
    pub async fn client_streaming<In: Default, Out>(
        &self,
        method: impl Fn(In) -> Call<Out>,
        requests: impl IntoIterator<Item = In>,
    ) -> Result<ActionOutcome, Error> {
        let (method, payloads) = self.stream_of(method, requests)?;
        let calls = self.call(Shape::StreamedIn, method, None, payloads);
        only(collect(calls).await?)
    }

    /// Calls a bidirectional method with `requests`, then ends the request stream; returns
    /// every response. The method is given by its generated call function, as for
    /// [`client_streaming`](Self::client_streaming).
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when the method is of another service, [`Error::Protocol`]
    /// when it is not bidirectional.
    pub async fn streamed<In: Default, Out>(
        &self,
        method: impl Fn(In) -> Call<Out>,
        requests: impl IntoIterator<Item = In>,
    ) -> Result<Vec<ActionOutcome>, Error> {
        let (method, payloads) = self.stream_of(method, requests)?;
        collect(self.call(Shape::Streamed, method, None, payloads)).await
    }

    /// The method and the payloads of the calls `method` makes of `requests`.
    fn stream_of<In: Default, Out>(
        &self,
        method: impl Fn(In) -> Call<Out>,
        requests: impl IntoIterator<Item = In>,
    ) -> Result<(&'static str, Vec<Option<Any>>), Error> {
        let (name, _) = for_service(self.action.service_name(), method(In::default()))?;
        let payloads = requests
            .into_iter()
            .map(|request| Some(method(request).into_parts().2))
            .collect();
        Ok((name, payloads))
    }

    fn call(
        &self,
        shape: Shape,
        method: &str,
        payload: Option<Any>,
        payloads: Vec<Option<Any>>,
    ) -> Calls {
        let header = ActionCommand {
            service_name: self.action.service_name().to_owned(),
            name: method.to_owned(),
            payload,
            metadata: self.metadata.clone().into_proto(),
        };
        self.action
            .clone()
            .call(shape, header, stream::iter(payloads).boxed())
    }
}

/// Every response of a call, decoded.
async fn collect(calls: Calls) -> Result<Vec<ActionOutcome>, Error> {
    calls
        .map(|response| response.map(ActionOutcome::decode))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The only response of a unary or client streaming call.
fn only(mut outcomes: Vec<ActionOutcome>) -> Result<ActionOutcome, Error> {
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(outcome), true) => Ok(outcome),
        _ => Err(Error::UnexpectedOutcome(
            "expected exactly one response".into(),
        )),
    }
}

/// One response of an action call, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    action: ClientAction,
    side_effects: Vec<SideEffect>,
}

impl ActionOutcome {
    fn decode(response: ActionResponse) -> Self {
        ActionOutcome {
            action: ClientAction::from_action(response.response),
            side_effects: response
                .side_effects
                .into_iter()
                .map(SideEffect::from_proto)
                .collect(),
        }
    }

    /// What the client gets.
    pub fn action(&self) -> &ClientAction {
        &self.action
    }

    /// The reply message, decoded as `M`.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedOutcome`] when the response is not a reply with an `M` (a failure, a
    /// forward, no reply, or a reply of another type).
    pub fn reply<M: Message + Name + Default>(&self) -> Result<M, Error> {
        self.action.reply()
    }

    /// The failure, if the response is one.
    pub fn failure(&self) -> Option<&Failure> {
        self.action.failure()
    }

    /// The forward, if the response is one.
    pub fn forward(&self) -> Option<&Forward> {
        self.action.forward()
    }

    /// The side effects the proxy runs for this response, in order (an action's failure
    /// carries its side effects too).
    pub fn side_effects(&self) -> &[SideEffect] {
        &self.side_effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_entity::{ACTION_SERVICE, Request, State, action_model, call, request};
    use crate::testkit::ClientAction;

    fn kit() -> ActionTestKit<crate::test_entity::ActionModel> {
        ActionTestKit::new(action_model())
    }

    fn effects(outcome: &ActionOutcome) -> Vec<(&str, bool)> {
        outcome
            .side_effects()
            .iter()
            .map(|effect| (effect.method.as_str(), effect.synchronous))
            .collect()
    }

    fn value(outcome: &ActionOutcome) -> String {
        outcome.reply::<State>().unwrap().value
    }

    #[tokio::test]
    async fn unary_replies_see_metadata() {
        let echo = kit()
            .unary(call(ACTION_SERVICE, "Echo", &request(&["a", "b"])))
            .await
            .unwrap();
        assert_eq!(value(&echo), ">ab");
        assert!(echo.side_effects().is_empty());
        let echo = kit()
            .with_metadata("X-User", "ann")
            .unary(call(ACTION_SERVICE, "Echo", &request(&["a"])))
            .await
            .unwrap();
        assert_eq!(value(&echo), ">a@ann");
    }

    #[tokio::test]
    async fn side_effects_go_with_no_reply_and_with_failures() {
        let none = kit()
            .unary(call(ACTION_SERVICE, "Effects", &request(&["a"])))
            .await
            .unwrap();
        assert_eq!(*none.action(), ClientAction::NoReply);
        assert_eq!(effects(&none), [("Echo", false), ("Echo", true)]);
        assert_eq!(
            none.side_effects()[0].payload,
            Any::from_message(&request(&["a"]))
        );
        assert_eq!(none.side_effects()[0].service, ACTION_SERVICE);

        let failed = kit()
            .unary(call(ACTION_SERVICE, "Fail", &request(&[])))
            .await
            .unwrap();
        let failure = failed.failure().unwrap();
        assert_eq!(failure.description(), "expected failure");
        assert_eq!(failure.code(), Some(tonic::Code::FailedPrecondition));
        assert_eq!(effects(&failed), [("Echo", false)]);
    }

    #[tokio::test]
    async fn forwards_and_panics() {
        let forwarded = kit()
            .unary(call(ACTION_SERVICE, "Forward", &request(&["a"])))
            .await
            .unwrap();
        let forward = forwarded.forward().unwrap();
        assert_eq!(
            (forward.service.as_str(), forward.method.as_str()),
            ("test.model.Two", "Call")
        );
        assert_eq!(forward.payload, Any::from_message(&request(&["a"])));

        let panicked = kit()
            .unary(call(ACTION_SERVICE, "Panic", &request(&[])))
            .await
            .unwrap();
        let failure = panicked.failure().unwrap();
        assert_eq!(
            failure.description(),
            "Command Panic failed: the handler panicked: handler bug"
        );
        assert!(
            panicked.side_effects().is_empty(),
            "a panic discards effects"
        );
    }

    #[tokio::test]
    async fn server_streaming_responds_per_item() {
        let outcomes = kit()
            .server_streaming(call(
                ACTION_SERVICE,
                "Repeat",
                &request(&["a", "fail", "forward", "none", "b"]),
            ))
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 6, "{outcomes:?}");
        // The context's side effects lead, without a reply.
        assert_eq!(*outcomes[0].action(), ClientAction::NoReply);
        assert_eq!(effects(&outcomes[0]), [("Echo", false)]);
        assert_eq!(value(&outcomes[1]), ">a");
        assert_eq!(
            outcomes[2].failure().map(Failure::description),
            Some("expected failure")
        );
        assert!(outcomes[3].forward().is_some());
        assert_eq!(effects(&outcomes[3]), [("Echo", true)]);
        assert_eq!(*outcomes[4].action(), ClientAction::NoReply);
        assert!(outcomes[4].side_effects().is_empty());
        assert_eq!(value(&outcomes[5]), ">b");
    }

    #[tokio::test]
    async fn a_panicking_reply_stream_ends_with_a_failure() {
        let outcomes = kit()
            .server_streaming(call(
                ACTION_SERVICE,
                "Repeat",
                &request(&["a", "panic", "b"]),
            ))
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 3, "{outcomes:?}");
        assert_eq!(value(&outcomes[1]), ">a");
        assert!(
            outcomes[2]
                .failure()
                .unwrap()
                .description()
                .contains("stream bug")
        );
    }

    #[tokio::test]
    async fn client_streaming_and_bidirectional() {
        let requests = [request(&["a"]), request(&[]), request(&["b", "c"])];
        let concat = kit()
            .client_streaming(
                |request| call(ACTION_SERVICE, "Concat", &request),
                requests.clone(),
            )
            .await
            .unwrap();
        assert_eq!(value(&concat), ">abc");
        let none = kit()
            .client_streaming(
                |request| call(ACTION_SERVICE, "Concat", &request),
                Vec::<Request>::new(),
            )
            .await
            .unwrap();
        assert_eq!(value(&none), ">");

        let shouted = kit()
            .streamed(|request| call(ACTION_SERVICE, "Shout", &request), requests)
            .await
            .unwrap();
        let values: Vec<_> = shouted.iter().map(value).collect();
        assert_eq!(values, ["A", "", "BC"]);
    }

    #[tokio::test]
    async fn wrong_shapes_are_protocol_errors_and_unknown_methods_failures() {
        assert!(matches!(
            kit()
                .unary(call(ACTION_SERVICE, "Repeat", &request(&[])))
                .await,
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            kit()
                .streamed(
                    |request| call(ACTION_SERVICE, "Concat", &request),
                    [request(&[])]
                )
                .await,
            Err(Error::Protocol(_))
        ));
        let unknown = kit()
            .unary(call(ACTION_SERVICE, "Nope", &request(&[])))
            .await
            .unwrap();
        assert_eq!(
            unknown.failure().and_then(Failure::code),
            Some(tonic::Code::Unimplemented)
        );
        // A request of another type fails the call.
        let wrong = kit()
            .unary(call(ACTION_SERVICE, "Echo", &State::default()))
            .await
            .unwrap();
        assert_eq!(
            wrong.failure().and_then(Failure::code),
            Some(tonic::Code::InvalidArgument)
        );
    }

    /// Runs a streamed-in call of `method` whose second payload is of another type.
    async fn with_bad_payload(shape: Shape, method: &str) -> Vec<ActionOutcome> {
        let kit = kit();
        let header = ActionCommand {
            service_name: ACTION_SERVICE.into(),
            name: method.into(),
            ..ActionCommand::default()
        };
        let payloads = vec![
            Some(Any::from_message(&request(&["a"]))),
            Some(Any::from_message(&State::default())),
            Some(Any::from_message(&request(&["b"]))),
        ];
        let calls = kit
            .action
            .clone()
            .call(shape, header, stream::iter(payloads).boxed());
        collect(calls).await.unwrap()
    }

    #[tokio::test]
    async fn a_streamed_request_that_does_not_decode_fails_the_call() {
        let concat = with_bad_payload(Shape::StreamedIn, "Concat").await;
        assert_eq!(concat.len(), 1);
        let failure = concat[0].failure().unwrap();
        assert_eq!(failure.code(), Some(tonic::Code::InvalidArgument));
        assert_eq!(
            failure.description(),
            "Command Concat expects a test.model.Request but got a type.googleapis.com/test.model.State"
        );

        let shout = with_bad_payload(Shape::Streamed, "Shout").await;
        assert_eq!(shout.len(), 2, "{shout:?}");
        assert_eq!(value(&shout[0]), "A");
        assert_eq!(
            shout[1].failure().and_then(Failure::code),
            Some(tonic::Code::InvalidArgument)
        );
    }
}
