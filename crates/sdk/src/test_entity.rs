//! Small services for the crate's tests, modelled on the TCK's: an event sourced entity whose
//! state is the concatenation of the values it was sent, a value entity storing a value, and an
//! action with one method per shape; each has one command per behaviour under test.

use prost::Name;
use tokio_stream::StreamExt;

use crate::action::ActionCommands;
use crate::eventsourced::Commands;
use crate::valueentity::ValueCommands;
use crate::{
    ActionContext, ActionReply, ActionService, Call, CommandContext, EventSourced,
    EventSourcedEntity, Failure, Reply, ReplyStream, RequestStream, ValueContext,
    ValueEntityService,
};

pub(crate) const SERVICE: &str = "test.model.Model";
pub(crate) const VALUE_SERVICE: &str = "test.model.ValueModel";
pub(crate) const ACTION_SERVICE: &str = "test.model.ActionModel";
pub(crate) const PACKAGE: &str = "test.model";

/// A request: the entity id and values to emit.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Request {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, repeated, tag = "2")]
    pub values: Vec<String>,
}

/// The state as a message: the reply of `Get` and the snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct State {
    #[prost(string, tag = "1")]
    pub value: String,
}

/// The only event: a value was appended.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Appended {
    #[prost(string, tag = "1")]
    pub value: String,
}

/// An event type the entity does not know.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Unrelated {
    #[prost(string, tag = "1")]
    pub value: String,
}

macro_rules! names {
    ($($message:ident),*) => {
        $(impl Name for $message {
            const NAME: &'static str = stringify!($message);
            const PACKAGE: &'static str = PACKAGE;
        })*
    };
}
names!(Request, State, Appended, Unrelated);

crate::events! {
    /// The model's events.
    pub(crate) enum ModelEvent {
        Appended(Appended),
    }
}

/// The model's state.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Model {
    pub value: String,
}

pub(crate) fn request(values: &[&str]) -> Request {
    Request {
        id: "e1".into(),
        values: values.iter().map(|value| (*value).to_owned()).collect(),
    }
}

pub(crate) fn appended(value: &str) -> ModelEvent {
    ModelEvent::Appended(Appended {
        value: value.into(),
    })
}

/// A call of `service` `method` with `request`, as generated code makes one.
pub(crate) fn call(
    service: &'static str,
    method: &'static str,
    request: &impl Name,
) -> Call<State> {
    Call::new(service, method, request)
}

/// The registration the tests use: snapshots every 5 events.
pub(crate) fn model() -> EventSourced<Model> {
    EventSourced::new(SERVICE, Model::commands).snapshot_every(5)
}

impl Model {
    fn emit(&self, request: &Request, ctx: &mut CommandContext<Model>) {
        for value in &request.values {
            ctx.emit(Appended {
                value: value.clone(),
            });
        }
    }
}

impl EventSourcedEntity for Model {
    type Event = ModelEvent;
    type Snapshot = State;

    fn from_snapshot(snapshot: State) -> Option<Self> {
        Some(Model {
            value: snapshot.value,
        })
    }

    fn snapshot(&self) -> Option<State> {
        Some(State {
            value: self.value.clone(),
        })
    }

    fn apply(&mut self, ModelEvent::Appended(event): &ModelEvent) {
        assert_ne!(event.value, "boom", "apply refuses boom");
        self.value.push_str(&event.value);
    }
}

impl Model {
    pub(crate) fn commands(commands: &mut Commands<Self>) {
        commands
            .add("Emit", |model: &Model, request: Request, ctx| {
                model.emit(&request, ctx);
                Ok(())
            })
            .add("Get", |model: &Model, _: Request, _: &mut _| {
                Ok(State {
                    value: model.value.clone(),
                })
            })
            .add("Fail", |model: &Model, request: Request, ctx| {
                model.emit(&request, ctx);
                ctx.side_effect(call(SERVICE, "Get", &request));
                Err::<(), _>(
                    Failure::new("expected failure").with_code(tonic::Code::FailedPrecondition),
                )
            })
            .add(
                "Panic",
                |_: &Model, _: Request, _: &mut _| -> Result<(), Failure> { panic!("handler bug") },
            )
            .add("Forward", |model: &Model, request: Request, ctx| {
                model.emit(&request, ctx);
                Ok(Reply::<State>::forward(call(
                    "test.model.Two",
                    "Call",
                    &request,
                )))
            })
            .add("Effects", |_: &Model, request: Request, ctx| {
                ctx.side_effect(call(SERVICE, "Get", &request));
                ctx.side_effect(call(SERVICE, "Emit", &request).synchronous());
                Ok(())
            })
            .add("Nothing", |_: &Model, _: Request, _: &mut _| {
                Ok(Reply::<()>::NoReply)
            })
            .add("Whoami", |_: &Model, _: Request, ctx| {
                Ok(State {
                    value: format!(
                        "{}@{}#{}",
                        ctx.entity_id(),
                        ctx.sequence_number(),
                        ctx.command_id()
                    ),
                })
            });
    }
}

/// The value entity's state is a [`State`]. Its commands:
///
/// - `Set`: for each value, updates the state to it, or deletes it for `-`; replies the last.
/// - `Get`: replies the state.
/// - `Fail`: sets, adds a side effect, then fails (`FAILED_PRECONDITION`).
/// - `Effects`: two side effects (the second synchronous), replies the state.
/// - `Forward`: sets, then forwards to `test.model.Two/Call`.
/// - `Panic`: sets, then panics.
/// - `Whoami`: replies `<entity id>#<command id>`.
impl State {
    pub(crate) fn commands(commands: &mut ValueCommands<Self>) {
        commands
            .add("Set", |_: &State, request: Request, ctx| {
                Ok(State {
                    value: set(&request, ctx),
                })
            })
            .add("Get", |state: &State, _: Request, _: &mut _| {
                Ok(state.clone())
            })
            .add("Fail", |_: &State, request: Request, ctx| {
                set(&request, ctx);
                ctx.side_effect(call(VALUE_SERVICE, "Get", &request));
                Err::<State, _>(
                    Failure::new("expected failure").with_code(tonic::Code::FailedPrecondition),
                )
            })
            .add("Effects", |state: &State, request: Request, ctx| {
                ctx.side_effect(call(VALUE_SERVICE, "Get", &request));
                ctx.side_effect(call(VALUE_SERVICE, "Set", &request).synchronous());
                Ok(state.clone())
            })
            .add("Forward", |_: &State, request: Request, ctx| {
                set(&request, ctx);
                Ok(Reply::<State>::forward(call(
                    "test.model.Two",
                    "Call",
                    &request,
                )))
            })
            .add(
                "Panic",
                |_: &State, request: Request, ctx| -> Result<State, Failure> {
                    set(&request, ctx);
                    panic!("handler bug")
                },
            )
            .add("Whoami", |_: &State, _: Request, ctx| {
                Ok(State {
                    value: format!("{}#{}", ctx.entity_id(), ctx.command_id()),
                })
            });
    }
}

/// Applies the values of a `Set` request; returns the last value set (`""` after a delete).
fn set(request: &Request, ctx: &mut ValueContext<State>) -> String {
    let mut last = String::new();
    for value in &request.values {
        if value == "-" {
            ctx.delete_state();
            last.clear();
        } else {
            ctx.update_state(State {
                value: value.clone(),
            });
            last.clone_from(value);
        }
    }
    last
}

/// The registration of the value entity the tests use.
pub(crate) fn value_model() -> ValueEntityService<State> {
    ValueEntityService::new(VALUE_SERVICE, State::commands).persistence_id("values")
}

/// The action: replies are prefixed with its prefix. Its methods:
///
/// - `Echo` (unary): the concatenated values, and the `x-user` metadata after a `@` if set.
/// - `Effects` (unary): two side effects (the second synchronous), no reply.
/// - `Fail` (unary): a side effect, then fails (`FAILED_PRECONDITION`).
/// - `Forward` (unary): forwards to `test.model.Two/Call`.
/// - `Panic` (unary): adds a side effect, then panics; `PanicEarly` panics before it returns
///   its future.
/// - `Repeat` (server streaming): a side effect on the context, then one reply per value; `fail`
///   gives a failure, `forward` a forward with a side effect, `none` no reply, `panic` panics.
/// - `Concat` (client streaming): all values of all requests, concatenated.
/// - `Shout` (bidirectional): each request's values upper-cased, as it arrives.
pub(crate) struct ActionModel {
    pub prefix: String,
}

impl ActionModel {
    fn reply(&self, value: &str) -> State {
        State {
            value: format!("{}{value}", self.prefix),
        }
    }

    async fn echo(&self, request: Request, ctx: &mut ActionContext) -> Result<State, Failure> {
        tokio::task::yield_now().await;
        let mut value = request.values.concat();
        if let Some(user) = ctx.metadata().get("x-user") {
            value = format!("{value}@{user}");
        }
        Ok(self.reply(&value))
    }

    async fn effects(
        &self,
        request: Request,
        ctx: &mut ActionContext,
    ) -> Result<Reply<State>, Failure> {
        ctx.side_effect(call(ACTION_SERVICE, "Echo", &request));
        tokio::task::yield_now().await;
        ctx.side_effect(call(ACTION_SERVICE, "Echo", &request).synchronous());
        Ok(Reply::NoReply)
    }

    async fn fail(&self, request: Request, ctx: &mut ActionContext) -> Result<State, Failure> {
        ctx.side_effect(call(ACTION_SERVICE, "Echo", &request));
        Err(Failure::new("expected failure").with_code(tonic::Code::FailedPrecondition))
    }

    async fn forward(
        &self,
        request: Request,
        _: &mut ActionContext,
    ) -> Result<Reply<State>, Failure> {
        Ok(Reply::forward(call("test.model.Two", "Call", &request)))
    }

    async fn panic(&self, request: Request, ctx: &mut ActionContext) -> Result<(), Failure> {
        ctx.side_effect(call(ACTION_SERVICE, "Echo", &request));
        panic!("handler bug")
    }

    /// Panics before it returns its future.
    fn panic_early(
        &self,
        _: Request,
        _: &mut ActionContext,
    ) -> std::future::Ready<Result<State, Failure>> {
        panic!("early bug")
    }

    async fn repeat(
        &self,
        request: Request,
        ctx: &mut ActionContext,
    ) -> Result<ReplyStream<State>, Failure> {
        ctx.side_effect(call(ACTION_SERVICE, "Echo", &request));
        let prefix = self.prefix.clone();
        let values = tokio_stream::iter(request.values.clone());
        Ok(ReplyStream::new(values.map(
            move |value| -> ActionReply<State> {
                match value.as_str() {
                    "fail" => ActionReply::failure(Failure::new("expected failure")),
                    "forward" => ActionReply::forward(call("test.model.Two", "Call", &request))
                        .with_side_effect(call(ACTION_SERVICE, "Echo", &request).synchronous()),
                    "none" => ActionReply::no_reply(),
                    "panic" => panic!("stream bug"),
                    value => ActionReply::message(State {
                        value: format!("{prefix}{value}"),
                    }),
                }
            },
        )))
    }

    async fn concat(
        &self,
        mut requests: RequestStream<Request>,
        _: &mut ActionContext,
    ) -> Result<State, Failure> {
        let mut value = String::new();
        while let Some(request) = requests.next().await {
            value.push_str(&request.values.concat());
        }
        Ok(self.reply(&value))
    }

    async fn shout(
        &self,
        requests: RequestStream<Request>,
        _: &mut ActionContext,
    ) -> Result<ReplyStream<State>, Failure> {
        Ok(ReplyStream::new(requests.map(|request| {
            Ok::<_, Failure>(State {
                value: request.values.concat().to_uppercase(),
            })
        })))
    }
}

impl ActionModel {
    pub(crate) fn commands(commands: &mut ActionCommands<Self>) {
        commands
            .unary("Echo", Self::echo)
            .unary("Effects", Self::effects)
            .unary("Fail", Self::fail)
            .unary("Forward", Self::forward)
            .unary("Panic", Self::panic)
            .unary("PanicEarly", Self::panic_early)
            .server_streaming("Repeat", Self::repeat)
            .client_streaming("Concat", Self::concat)
            .streamed("Shout", Self::shout);
    }
}

/// The registration of the action the tests use, replying with prefix `>`.
pub(crate) fn action_model() -> ActionService<ActionModel> {
    ActionService::new(
        ACTION_SERVICE,
        ActionModel { prefix: ">".into() },
        ActionModel::commands,
    )
}

/// The descriptor set of the model's service, as a build would produce it.
pub(crate) fn descriptor_set() -> Vec<u8> {
    use prost::Message;
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        MethodDescriptorProto, ServiceDescriptorProto, field_descriptor_proto::Type,
    };
    let message = |name: &str| DescriptorProto {
        name: Some(name.into()),
        field: vec![FieldDescriptorProto {
            name: Some("value".into()),
            number: Some(1),
            r#type: Some(Type::String.into()),
            ..FieldDescriptorProto::default()
        }],
        ..DescriptorProto::default()
    };
    let method = |name: &str, output: &str| MethodDescriptorProto {
        name: Some(name.into()),
        input_type: Some(format!(".{PACKAGE}.Request")),
        output_type: Some(output.into()),
        ..MethodDescriptorProto::default()
    };
    let streamed = |name: &str, client: bool, server: bool| MethodDescriptorProto {
        client_streaming: Some(client),
        server_streaming: Some(server),
        ..method(name, ".test.model.State")
    };
    let empty = ".google.protobuf.Empty";
    let state = ".test.model.State";
    FileDescriptorSet {
        file: vec![
            FileDescriptorProto {
                name: Some("google/protobuf/empty.proto".into()),
                package: Some("google.protobuf".into()),
                message_type: vec![DescriptorProto {
                    name: Some("Empty".into()),
                    ..DescriptorProto::default()
                }],
                ..FileDescriptorProto::default()
            },
            FileDescriptorProto {
                name: Some("model.proto".into()),
                package: Some(PACKAGE.into()),
                dependency: vec!["google/protobuf/empty.proto".into()],
                message_type: vec![message("Request"), message("State"), message("Appended")],
                service: vec![
                    ServiceDescriptorProto {
                        name: Some("Model".into()),
                        method: vec![
                            method("Emit", empty),
                            method("Get", state),
                            method("Fail", empty),
                            method("Panic", empty),
                            method("Forward", state),
                            method("Effects", empty),
                            method("Nothing", empty),
                            method("Whoami", state),
                        ],
                        ..ServiceDescriptorProto::default()
                    },
                    ServiceDescriptorProto {
                        name: Some("ValueModel".into()),
                        method: [
                            "Set", "Get", "Fail", "Effects", "Forward", "Panic", "Whoami",
                        ]
                        .into_iter()
                        .map(|name| method(name, state))
                        .collect(),
                        ..ServiceDescriptorProto::default()
                    },
                    ServiceDescriptorProto {
                        name: Some("CrdtModel".into()),
                        method: vec![method("Process", state), streamed("Watch", false, true)],
                        ..ServiceDescriptorProto::default()
                    },
                    ServiceDescriptorProto {
                        name: Some("ActionModel".into()),
                        method: vec![
                            method("Echo", state),
                            method("Effects", state),
                            method("Fail", state),
                            method("Forward", state),
                            method("Panic", empty),
                            method("PanicEarly", state),
                            streamed("Repeat", false, true),
                            streamed("Concat", true, false),
                            streamed("Shout", true, true),
                        ],
                        ..ServiceDescriptorProto::default()
                    },
                ],
                ..FileDescriptorProto::default()
            },
        ],
    }
    .encode_to_vec()
}
