//! `tck-misbehaving`: a user function written on the raw protocol (the generated servers of
//! `cloudstate-protocol`, not the SDK) that breaks the protocol on purpose, for the TCK's cases
//! of misbehaving user functions.
//!
//! At discovery it answers what `TCK_MISBEHAVIOUR` names (`correct` by default: the event
//! sourced, value entity, CRDT and action model services). A command whose request carries a `fail`
//! action (or step) with the message `misbehave:<name>` gets that misbehaviour; every other
//! command is answered `Response{message: "ok"}`. See `cloudstate_tck::misbehaviour`.
//!
//! Serves on `HOST:PORT` (default `127.0.0.1:8080`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cloudstate_protocol::action::action_protocol_server::{ActionProtocol, ActionProtocolServer};
use cloudstate_protocol::action::{ActionCommand, ActionResponse, action_response};
use cloudstate_protocol::crdt::crdt_server::{Crdt, CrdtServer};
use cloudstate_protocol::crdt::{
    CrdtDelta, CrdtReply, CrdtStateAction, CrdtStreamIn, CrdtStreamOut, GCounterDelta,
    PnCounterDelta, crdt_delta, crdt_state_action, crdt_stream_in, crdt_stream_out,
};
use cloudstate_protocol::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use cloudstate_protocol::eventsourced::event_sourced_server::{EventSourced, EventSourcedServer};
use cloudstate_protocol::eventsourced::{
    EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in,
    event_sourced_stream_out,
};
use cloudstate_protocol::valueentity::value_entity_server::{ValueEntity, ValueEntityServer};
use cloudstate_protocol::valueentity::{
    ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut, value_entity_stream_in,
    value_entity_stream_out,
};
use cloudstate_protocol::{
    Any, ClientAction, Command, Entity as EntityDef, EntitySpec, Failure, Forward, ProxyInfo,
    Reply, ServiceInfo, UserFunctionError, client_action, entity_type,
};
use cloudstate_tck::misbehaviour::{
    self, Action as ActionMisbehaviour, DISCOVERY_ENV, Discovery, EARLY_REPLY_PREFIX,
    Entity as EntityMisbehaviour, PREFIX, UNKNOWN_SERVICE,
};
use cloudstate_tck::proto::{
    FILE_DESCRIPTOR_SET, action, crdt, eventsourced, service, valueentity,
};
use futures_util::stream::BoxStream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode = std::env::var(DISCOVERY_ENV).unwrap_or_else(|_| "correct".to_owned());
    let discovery =
        Discovery::from_name(&mode).with_context(|| format!("unknown {DISCOVERY_ENV}: {mode}"))?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("HOST:PORT {host}:{port}"))?;
    let user_function = Misbehaving {
        discovery,
        answered_early: Arc::new(Mutex::new(HashSet::new())),
    };
    eprintln!("tck-misbehaving ({mode}) serving on {address}");
    tonic::transport::Server::builder()
        .add_service(EntityDiscoveryServer::new(user_function.clone()))
        .add_service(EventSourcedServer::new(user_function.clone()))
        .add_service(ValueEntityServer::new(user_function.clone()))
        .add_service(CrdtServer::new(user_function.clone()))
        .add_service(ActionProtocolServer::new(user_function))
        .serve(address)
        .await?;
    Ok(())
}

#[derive(Clone)]
struct Misbehaving {
    discovery: Discovery,
    /// Entities whose first stream already got a reply before any command.
    answered_early: Arc<Mutex<HashSet<String>>>,
}

impl Misbehaving {
    fn spec(&self) -> EntitySpec {
        let entity = |entity_type: &str, service_name: &str, persistence_id: &str| EntityDef {
            entity_type: entity_type.to_owned(),
            service_name: service_name.to_owned(),
            persistence_id: persistence_id.to_owned(),
            passivation_strategy: None,
        };
        let mut entities = vec![
            entity(
                entity_type::EVENT_SOURCED,
                service::EVENT_SOURCED,
                misbehaviour::persistence_id::EVENT_SOURCED,
            ),
            entity(
                entity_type::VALUE_ENTITY,
                service::VALUE_ENTITY,
                misbehaviour::persistence_id::VALUE_ENTITY,
            ),
            entity(
                entity_type::CRDT,
                service::CRDT,
                misbehaviour::persistence_id::CRDT,
            ),
            entity(entity_type::ACTION, service::ACTION, ""),
            entity(entity_type::ACTION, service::ACTION_TWO, ""),
        ];
        let mut proto = bytes::Bytes::from_static(FILE_DESCRIPTOR_SET);
        let mut version = (0, 2);
        match self.discovery {
            Discovery::Correct => {}
            Discovery::UnsupportedEntityType => {
                entities[0].entity_type = "cloudstate.unknown.Unknown".to_owned();
            }
            Discovery::ServiceNotInDescriptors => {
                entities[0].service_name = "cloudstate.tck.model.Nowhere".to_owned();
            }
            Discovery::NoEntities => entities.clear(),
            Discovery::UnsupportedProtocolVersion => version = (1, 0),
            Discovery::MissingImport => proto = model_files_only(FILE_DESCRIPTOR_SET),
            Discovery::StreamedEntityMethod => {
                entities = vec![entity(
                    entity_type::EVENT_SOURCED,
                    service::CRDT,
                    "misbehaving",
                )];
            }
            Discovery::KeylessEntityMethod => {
                entities = vec![entity(
                    entity_type::VALUE_ENTITY,
                    service::ACTION,
                    "misbehaving",
                )];
            }
        }
        EntitySpec {
            proto,
            entities,
            service_info: Some(ServiceInfo {
                service_name: "tck-misbehaving".to_owned(),
                service_version: env!("CARGO_PKG_VERSION").to_owned(),
                service_runtime: "rustc".to_owned(),
                support_library_name: "none (raw protocol)".to_owned(),
                support_library_version: String::new(),
                protocol_major_version: version.0,
                protocol_minor_version: version.1,
            }),
        }
    }
}

/// The descriptor set without the files the model protos import: only the
/// `cloudstate/tck/model/` files, each kept byte for byte.
fn model_files_only(set: &[u8]) -> bytes::Bytes {
    let mut kept = Vec::new();
    let mut rest = set;
    while !rest.is_empty() {
        let key = prost::encoding::decode_varint(&mut rest).expect("a field key");
        let length = prost::encoding::decode_varint(&mut rest).expect("a field length");
        let length = usize::try_from(length).expect("a small file");
        let (file, after) = rest.split_at(length);
        rest = after;
        let name = prost_types::FileDescriptorProto::decode(file)
            .map(|file| file.name().to_owned())
            .unwrap_or_default();
        if key == 0x0a && name.starts_with("cloudstate/tck/model/") {
            prost::encoding::encode_varint(key, &mut kept);
            prost::encoding::encode_varint(length as u64, &mut kept);
            kept.extend_from_slice(file);
        }
    }
    kept.into()
}

#[tonic::async_trait]
impl EntityDiscovery for Misbehaving {
    async fn discover(&self, _: Request<ProxyInfo>) -> Result<Response<EntitySpec>, Status> {
        Ok(Response::new(self.spec()))
    }

    async fn report_error(
        &self,
        request: Request<UserFunctionError>,
    ) -> Result<Response<()>, Status> {
        eprintln!("the proxy reported: {}", request.into_inner().message);
        Ok(Response::new(()))
    }
}

/// The misbehaviour a `fail` message asks for, if it asks for one.
fn asked(message: &str) -> Option<&str> {
    message.strip_prefix(PREFIX)
}

/// The entity misbehaviour `command` asks for, if any (its payload decodes as `R`, whose
/// actions `fails` lists the `fail` messages of).
fn entity_misbehaviour<R: Message + Default>(
    command: &Command,
    fails: impl Fn(R) -> Vec<String>,
) -> Option<EntityMisbehaviour> {
    let payload = command.payload.as_ref()?;
    let request = R::decode(payload.value.clone()).ok()?;
    fails(request)
        .iter()
        .find_map(|message| asked(message).and_then(EntityMisbehaviour::from_name))
}

fn ok_action<M: Message + prost::Name + Default>(message: M) -> ClientAction {
    ClientAction {
        action: Some(client_action::Action::Reply(Reply::with_payload(
            Any::from_message(&message),
        ))),
    }
}

/// How an entity stream answers one command.
enum Answer<Out> {
    Send(Out),
    Close,
    Fail(Status),
}

/// Serves one entity stream: `init` first (answered early for entities so named, once), then
/// each command answered by `answer`.
fn serve_entity<In, Out>(
    mut requests: Streaming<In>,
    early: Arc<Mutex<HashSet<String>>>,
    entity_id_of_init: fn(&In) -> Option<String>,
    command_of: fn(In) -> Option<Command>,
    early_reply: fn() -> Out,
    answer: fn(&Command) -> Answer<Out>,
) -> BoxStream<'static, Result<Out, Status>>
where
    In: Send + 'static,
    Out: Send + 'static,
{
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok(Some(message)) = requests.message().await {
            if let Some(entity_id) = entity_id_of_init(&message) {
                let first = early
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(entity_id.clone());
                if first && entity_id.starts_with(EARLY_REPLY_PREFIX) {
                    sender.send(Ok(early_reply())).await.ok();
                }
                continue;
            }
            let Some(command) = command_of(message) else {
                continue;
            };
            match answer(&command) {
                Answer::Send(out) => {
                    if sender.send(Ok(out)).await.is_err() {
                        break;
                    }
                }
                Answer::Close => break,
                Answer::Fail(status) => {
                    sender.send(Err(status)).await.ok();
                    break;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}

/// What every entity misbehaviour but the stream-level ones becomes, given how the kind builds
/// a reply (`reply(command_id, client_action)`) and a stream failure.
fn entity_answer<Out>(
    command: &Command,
    misbehaviour: Option<EntityMisbehaviour>,
    ok: ClientAction,
    reply: fn(i64, Option<ClientAction>) -> Out,
    failure: fn(Failure) -> Out,
    empty: Out,
) -> Answer<Out> {
    match misbehaviour {
        None => Answer::Send(reply(command.id, Some(ok))),
        Some(EntityMisbehaviour::UnknownCommandId) => {
            Answer::Send(reply(command.id + 100, Some(ok)))
        }
        Some(EntityMisbehaviour::EmptyMessage) => Answer::Send(empty),
        Some(EntityMisbehaviour::EntityFailure) => Answer::Send(failure(Failure::for_command(
            command.id,
            "misbehaving entity failure",
        ))),
        Some(EntityMisbehaviour::ReplyWithoutAction) => Answer::Send(reply(command.id, None)),
        Some(EntityMisbehaviour::CloseStream) => Answer::Close,
        Some(EntityMisbehaviour::ErrorStream) => {
            Answer::Fail(Status::internal("misbehaving stream error"))
        }
        Some(EntityMisbehaviour::Crash) => {
            eprintln!(
                "crashing on command {} of {}",
                command.id, command.entity_id
            );
            std::process::exit(3)
        }
        // Only CRDT entities have deltas (`crdt_answer`); other kinds answer correctly.
        Some(EntityMisbehaviour::IncompatibleDelta) => Answer::Send(reply(command.id, Some(ok))),
    }
}

fn es_reply(command_id: i64, client_action: Option<ClientAction>) -> EventSourcedStreamOut {
    EventSourcedStreamOut {
        message: Some(event_sourced_stream_out::Message::Reply(
            EventSourcedReply {
                command_id,
                client_action,
                ..EventSourcedReply::default()
            },
        )),
    }
}

fn es_answer(command: &Command) -> Answer<EventSourcedStreamOut> {
    let misbehaviour = entity_misbehaviour(command, |request: eventsourced::Request| {
        request
            .actions
            .into_iter()
            .filter_map(|action| match action.action {
                Some(eventsourced::request_action::Action::Fail(fail)) => Some(fail.message),
                _ => None,
            })
            .collect()
    });
    entity_answer(
        command,
        misbehaviour,
        ok_action(eventsourced::Response {
            message: "ok".into(),
        }),
        es_reply,
        |failure| EventSourcedStreamOut {
            message: Some(event_sourced_stream_out::Message::Failure(failure)),
        },
        EventSourcedStreamOut { message: None },
    )
}

#[tonic::async_trait]
impl EventSourced for Misbehaving {
    type handleStream = BoxStream<'static, Result<EventSourcedStreamOut, Status>>;

    async fn handle(
        &self,
        request: Request<Streaming<EventSourcedStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        Ok(Response::new(serve_entity(
            request.into_inner(),
            self.answered_early.clone(),
            |message| match &message.message {
                Some(event_sourced_stream_in::Message::Init(init)) => Some(init.entity_id.clone()),
                _ => None,
            },
            |message| match message.message {
                Some(event_sourced_stream_in::Message::Command(command)) => Some(command),
                _ => None,
            },
            || {
                es_reply(
                    0,
                    Some(ok_action(eventsourced::Response {
                        message: "early".into(),
                    })),
                )
            },
            es_answer,
        )))
    }
}

fn ve_reply(command_id: i64, client_action: Option<ClientAction>) -> ValueEntityStreamOut {
    ValueEntityStreamOut {
        message: Some(value_entity_stream_out::Message::Reply(ValueEntityReply {
            command_id,
            client_action,
            ..ValueEntityReply::default()
        })),
    }
}

fn ve_answer(command: &Command) -> Answer<ValueEntityStreamOut> {
    let misbehaviour = entity_misbehaviour(command, |request: valueentity::Request| {
        request
            .actions
            .into_iter()
            .filter_map(|action| match action.action {
                Some(valueentity::request_action::Action::Fail(fail)) => Some(fail.message),
                _ => None,
            })
            .collect()
    });
    entity_answer(
        command,
        misbehaviour,
        ok_action(valueentity::Response {
            message: "ok".into(),
        }),
        ve_reply,
        |failure| ValueEntityStreamOut {
            message: Some(value_entity_stream_out::Message::Failure(failure)),
        },
        ValueEntityStreamOut { message: None },
    )
}

#[tonic::async_trait]
impl ValueEntity for Misbehaving {
    type handleStream = BoxStream<'static, Result<ValueEntityStreamOut, Status>>;

    async fn handle(
        &self,
        request: Request<Streaming<ValueEntityStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        Ok(Response::new(serve_entity(
            request.into_inner(),
            self.answered_early.clone(),
            |message| match &message.message {
                Some(value_entity_stream_in::Message::Init(init)) => Some(init.entity_id.clone()),
                _ => None,
            },
            |message| match message.message {
                Some(value_entity_stream_in::Message::Command(command)) => Some(command),
                _ => None,
            },
            || {
                ve_reply(
                    0,
                    Some(ok_action(valueentity::Response {
                        message: "early".into(),
                    })),
                )
            },
            ve_answer,
        )))
    }
}

#[tonic::async_trait]
impl ActionProtocol for Misbehaving {
    async fn handle_unary(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ActionResponse>, Status> {
        let command = request.into_inner();
        let misbehaviour = command
            .payload
            .as_ref()
            .and_then(|payload| action::Request::decode(payload.value.clone()).ok())
            .into_iter()
            .flat_map(|request| request.groups)
            .flat_map(|group| group.steps)
            .find_map(|step| match step.step {
                Some(action::process_step::Step::Fail(fail)) => {
                    asked(&fail.message).and_then(ActionMisbehaviour::from_name)
                }
                _ => None,
            });
        let reply = |payload: Any| action_response::Response::Reply(Reply::with_payload(payload));
        let response = match misbehaviour {
            None => reply(Any::from_message(&action::Response {
                message: "ok".into(),
            })),
            Some(ActionMisbehaviour::ErrorStatus) => {
                return Err(Status::permission_denied("misbehaving"));
            }
            Some(ActionMisbehaviour::WrongReplyType) => {
                reply(Any::from_message(&action::OtherRequest {
                    id: "typed".into(),
                }))
            }
            Some(ActionMisbehaviour::ForwardUnknown) => {
                action_response::Response::Forward(Forward {
                    service_name: UNKNOWN_SERVICE.to_owned(),
                    command_name: "Call".to_owned(),
                    payload: Some(Any::from_message(&action::OtherRequest {
                        id: "nowhere".into(),
                    })),
                    metadata: None,
                })
            }
        };
        Ok(Response::new(ActionResponse {
            response: Some(response),
            side_effects: Vec::new(),
        }))
    }

    async fn handle_streamed_in(
        &self,
        _: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ActionResponse>, Status> {
        Err(Status::unimplemented(
            "tck-misbehaving serves unary calls only",
        ))
    }

    type handleStreamedOutStream = BoxStream<'static, Result<ActionResponse, Status>>;

    async fn handle_streamed_out(
        &self,
        _: Request<ActionCommand>,
    ) -> Result<Response<Self::handleStreamedOutStream>, Status> {
        Err(Status::unimplemented(
            "tck-misbehaving serves unary calls only",
        ))
    }

    type handleStreamedStream = BoxStream<'static, Result<ActionResponse, Status>>;

    async fn handle_streamed(
        &self,
        _: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<Self::handleStreamedStream>, Status> {
        Err(Status::unimplemented(
            "tck-misbehaving serves unary calls only",
        ))
    }
}

/// A CRDT reply, with the GCounter increment of 1 every correct reply carries.
fn crdt_reply(command_id: i64, client_action: Option<ClientAction>) -> CrdtStreamOut {
    crdt_reply_with(
        command_id,
        client_action,
        crdt_delta::Delta::Gcounter(GCounterDelta { increment: 1 }),
    )
}

fn crdt_reply_with(
    command_id: i64,
    client_action: Option<ClientAction>,
    delta: crdt_delta::Delta,
) -> CrdtStreamOut {
    CrdtStreamOut {
        message: Some(crdt_stream_out::Message::Reply(CrdtReply {
            command_id,
            client_action,
            state_action: Some(CrdtStateAction {
                action: Some(crdt_state_action::Action::Update(CrdtDelta {
                    delta: Some(delta),
                })),
                write_consistency: 0,
            }),
            ..CrdtReply::default()
        })),
    }
}

fn crdt_answer(command: &Command) -> Answer<CrdtStreamOut> {
    let misbehaviour = entity_misbehaviour(command, |request: crdt::Request| {
        request
            .actions
            .into_iter()
            .filter_map(|action| match action.action {
                Some(crdt::request_action::Action::Fail(fail)) => Some(fail.message),
                _ => None,
            })
            .collect()
    });
    let ok = ok_action(crdt::Response::default());
    if misbehaviour == Some(EntityMisbehaviour::IncompatibleDelta) {
        // The entity is a GCounter (every correct reply increments it): a PNCounter delta.
        let delta = crdt_delta::Delta::Pncounter(PnCounterDelta { change: -1 });
        return Answer::Send(crdt_reply_with(command.id, Some(ok), delta));
    }
    entity_answer(
        command,
        misbehaviour,
        ok,
        crdt_reply,
        |failure| CrdtStreamOut {
            message: Some(crdt_stream_out::Message::Failure(failure)),
        },
        CrdtStreamOut { message: None },
    )
}

#[tonic::async_trait]
impl Crdt for Misbehaving {
    type handleStream = BoxStream<'static, Result<CrdtStreamOut, Status>>;

    async fn handle(
        &self,
        request: Request<Streaming<CrdtStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        Ok(Response::new(serve_entity(
            request.into_inner(),
            self.answered_early.clone(),
            |message| match &message.message {
                Some(crdt_stream_in::Message::Init(init)) => Some(init.entity_id.clone()),
                _ => None,
            },
            |message| match message.message {
                Some(crdt_stream_in::Message::Command(command)) => Some(command),
                _ => None,
            },
            || crdt_reply(0, Some(ok_action(crdt::Response::default()))),
            crdt_answer,
        )))
    }
}
