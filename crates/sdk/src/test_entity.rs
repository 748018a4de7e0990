//! A small entity for the crate's tests, modelled on the TCK's: its state is the concatenation
//! of the values it was sent, and it has one command per behaviour under test.

use prost::Name;

use crate::{CommandContext, Commands, EventSourced, EventSourcedEntity, Failure, Reply};

pub(crate) const SERVICE: &str = "test.model.Model";
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

/// The registration the tests use: snapshots every 5 events.
pub(crate) fn model() -> EventSourced<Model> {
    EventSourced::new(SERVICE).snapshot_every(5)
}

impl Model {
    fn emit(&self, request: &Request, ctx: &mut CommandContext<ModelEvent>) {
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

    fn new(_entity_id: &str) -> Self {
        Model::default()
    }

    fn from_snapshot(_entity_id: &str, snapshot: State) -> Self {
        Model {
            value: snapshot.value,
        }
    }

    fn snapshot(&self) -> State {
        State {
            value: self.value.clone(),
        }
    }

    fn apply(&mut self, ModelEvent::Appended(event): &ModelEvent) {
        assert_ne!(event.value, "boom", "apply refuses boom");
        self.value.push_str(&event.value);
    }

    fn commands(commands: &mut Commands<Self>) {
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
                ctx.side_effect(SERVICE, "Get", &request, false);
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
                Ok(Reply::<State>::forward("test.model.Two", "Call", &request))
            })
            .add("Effects", |_: &Model, request: Request, ctx| {
                ctx.side_effect(SERVICE, "Get", &request, false);
                ctx.side_effect(SERVICE, "Emit", &request, true);
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
                service: vec![ServiceDescriptorProto {
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
                }],
                ..FileDescriptorProto::default()
            },
        ],
    }
    .encode_to_vec()
}
