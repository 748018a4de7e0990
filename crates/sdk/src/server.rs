//! The gRPC server the proxy talks to: `cloudstate.EntityDiscovery` and the protocols of the
//! registered services' kinds (`cloudstate.eventsourced.EventSourced`,
//! `cloudstate.valueentity.ValueEntity`, `cloudstate.crdt.Crdt`,
//! `cloudstate.action.ActionProtocol`).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cloudstate_protocol::action::action_protocol_server::{ActionProtocol, ActionProtocolServer};
use cloudstate_protocol::action::{ActionCommand, ActionResponse};
use cloudstate_protocol::crdt::CrdtStreamIn;
use cloudstate_protocol::crdt::crdt_server::{Crdt as CrdtRpc, CrdtServer};
use cloudstate_protocol::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use cloudstate_protocol::eventsourced::EventSourcedStreamIn;
use cloudstate_protocol::eventsourced::event_sourced_server::{
    EventSourced as EventSourcedRpc, EventSourcedServer,
};
use cloudstate_protocol::valueentity::ValueEntityStreamIn;
use cloudstate_protocol::valueentity::value_entity_server::{
    ValueEntity as ValueEntityRpc, ValueEntityServer,
};
use cloudstate_protocol::{self as protocol};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use prost::Message;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::action::{self, ActionType, Calls, Payloads};
use crate::command::Shape;
use crate::crdt::session::CrdtProtocol;
use crate::eventsourced::session::EventSourcedProtocol;
use crate::service::Services;
use crate::stream::{EntityStream, Registry};
use crate::valueentity::session::ValueProtocol;
use crate::{Error, Service};

/// Name reported as `ServiceInfo.support_library_name`.
pub const SUPPORT_LIBRARY_NAME: &str = "cloudstate-rust";

/// The default cap on concurrent HTTP/2 streams per connection: effectively none. The proxy
/// keeps one stream per active entity on one connection, so any small cap would stall it.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = u32::MAX;

/// A user function: the descriptor set of its protos and the services it serves, of any kinds
/// ([`EventSourced`](crate::EventSourced), value entities
/// ([`ValueEntityService`](crate::ValueEntityService)), CRDT entities
/// ([`CrdtEntityService`](crate::CrdtEntityService)), actions
/// ([`ActionService`](crate::ActionService))), together on one port.
///
/// ```no_run
/// # pub mod proto { cloudstate::include_protos!("example.counter"); }
/// # #[derive(Default)] struct Counter;
/// # cloudstate::events! { enum Event { Incremented(proto::Incremented) } }
/// # impl cloudstate::EventSourcedEntity for Counter {
/// #     type Event = Event;
/// #     type Snapshot = ();
/// #     fn apply(&mut self, _: &Event) {}
/// # }
/// # use cloudstate::{CommandContext, Failure, Reply};
/// # impl proto::Counter for Counter {
/// #     fn increment(&self, _: proto::Increment, _: &mut CommandContext<Self>) -> Result<Reply<proto::Value>, Failure> { unimplemented!() }
/// #     fn get_value(&self, _: proto::GetValue, _: &mut CommandContext<Self>) -> Result<Reply<proto::Value>, Failure> { unimplemented!() }
/// # }
/// # async fn run(descriptor_set: &'static [u8]) -> Result<(), cloudstate::Error> {
/// let counter = proto::counter::entity::<Counter>()
///     .persistence_id("counters")
///     .snapshot_every(5);
/// cloudstate::Server::new(descriptor_set)?
///     .register(counter)?
///     .service_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
///     .serve_from_env()
///     .await
/// # }
/// ```
pub struct Server {
    descriptor_set: Bytes,
    services: Services,
    service_name: String,
    service_version: String,
    max_concurrent_streams: u32,
    max_message_size: usize,
}

impl Server {
    /// A server reporting `descriptor_set` (the encoded `FileDescriptorSet` of the user's
    /// protos with all imports, e.g. from `cloudstate::include_descriptor_set!()`) at
    /// discovery, byte for byte.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDescriptorSet`] when the bytes are not a `FileDescriptorSet`.
    pub fn new(descriptor_set: impl Into<Bytes>) -> Result<Self, Error> {
        let descriptor_set = descriptor_set.into();
        // Decoded only to check registrations; discovery sends the original bytes, which keep
        // the extension options that prost_types would drop.
        let files = prost_types::FileDescriptorSet::decode(descriptor_set.clone())
            .map_err(Error::InvalidDescriptorSet)?;
        Ok(Server {
            descriptor_set,
            services: Services::new(files),
            service_name: String::new(),
            service_version: String::new(),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_message_size: protocol::DEFAULT_MAX_MESSAGE_SIZE,
        })
    }

    /// Serves `service` (an entity type or an action), after checking it against the
    /// descriptor set: its service exists, every handler names one of its methods with the same
    /// input and output types and shape (event sourced and value entities have no streamed
    /// methods, CRDT entities only server streaming ones). Methods without a handler are logged
    /// (calls of them fail).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEntity`] when a check fails or the service is already registered.
    pub fn register(mut self, service: impl Service) -> Result<Self, Error> {
        service.register(&mut self.services)?;
        Ok(self)
    }

    /// Sets the name and version reported in `ServiceInfo` (informational; e.g.
    /// `env!("CARGO_PKG_NAME")`, `env!("CARGO_PKG_VERSION")`).
    pub fn service_info(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.service_name = name.into();
        self.service_version = version.into();
        self
    }

    /// Caps the concurrent HTTP/2 streams per connection (default: no practical cap). Each
    /// active entity holds one stream, so the cap bounds the entities one proxy connection
    /// can keep active.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Runs the user function as a process of its own would: logs to stderr filtered by
    /// `RUST_LOG` (default `info`; unless the program installed a logger already), binds the
    /// address of [`address_from_env`] (`HOST`, `PORT`, default `127.0.0.1:8080`) and serves
    /// until Ctrl-C or SIGTERM, then finishes open calls.
    ///
    /// ```no_run
    /// # fn server() -> Result<cloudstate::Server, cloudstate::Error> { unimplemented!() }
    /// #[tokio::main]
    /// async fn main() -> Result<(), cloudstate::Error> {
    ///     server()?.serve_from_env().await
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Address`] when `HOST`/`PORT` are not an address or binding it fails,
    /// [`Error::Transport`] when the server fails.
    pub async fn serve_from_env(self) -> Result<(), Error> {
        // Fails only when the program installed a logger of its own, which then stays.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
        let addr = address_from_env().await?;
        self.serve(addr).await
    }

    /// Sets the largest message, in bytes, the server accepts from the proxy and sends it
    /// (default [`protocol::DEFAULT_MAX_MESSAGE_SIZE`], 4 MiB). It must be at least the proxy's
    /// `--max-message-size`, or the proxy could send an event, snapshot or value that this
    /// server refuses. A reply larger than this fails its command; nothing of it is stored.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Binds `addr` and serves until Ctrl-C or SIGTERM, then finishes open calls.
    ///
    /// # Errors
    ///
    /// [`Error::Address`] when binding fails, [`Error::Transport`] when the server fails.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|reason| Error::Address {
                address: addr.to_string(),
                reason,
            })?;
        self.serve_with_listener(listener, shutdown_signal()).await
    }

    /// Serves on `listener` until `shutdown` completes, then finishes open calls.
    ///
    /// # Errors
    ///
    /// [`Error::Transport`] when the server fails.
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let Server {
            descriptor_set,
            services,
            service_name,
            service_version,
            max_concurrent_streams,
            max_message_size: limit,
        } = self;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, services = services.specs().len(), "serving the Cloudstate protocol");
        }
        let spec = protocol::EntitySpec {
            proto: descriptor_set,
            entities: services.specs().to_vec(),
            service_info: Some(protocol::ServiceInfo {
                service_name,
                service_version,
                service_runtime: "rustc".to_owned(),
                support_library_name: SUPPORT_LIBRARY_NAME.to_owned(),
                support_library_version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol_major_version: protocol::PROTOCOL_MAJOR_VERSION,
                protocol_minor_version: protocol::PROTOCOL_MINOR_VERSION,
            }),
        };
        let Services {
            event_sourced,
            value,
            crdt,
            actions,
            ..
        } = services;
        tonic::transport::Server::builder()
            .max_concurrent_streams(max_concurrent_streams)
            .add_service(
                EntityDiscoveryServer::new(Discovery { spec })
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            )
            .add_service(
                EventSourcedServer::new(EventSourcedService {
                    entities: Arc::new(event_sourced),
                })
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            )
            .add_service(
                ValueEntityServer::new(ValueService {
                    entities: Arc::new(value),
                })
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            )
            .add_service(
                CrdtServer::new(CrdtService {
                    entities: Arc::new(crdt),
                })
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            )
            .add_service(
                ActionProtocolServer::new(ActionProtocolService {
                    actions: Arc::new(actions),
                })
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
            )
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await?;
        Ok(())
    }
}

/// The address from the environment: `HOST` (default `127.0.0.1`) and `PORT` (default `8080`),
/// as the original support libraries read them. `HOST` may be a name; its first address is used.
///
/// # Errors
///
/// [`Error::Address`] when `PORT` is not a port number or `HOST` does not resolve.
pub async fn address_from_env() -> Result<SocketAddr, Error> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let address = format!("{host}:{port}");
    let invalid = |reason| Error::Address {
        address: address.clone(),
        reason,
    };
    let port: u16 = port
        .parse()
        .map_err(|error| invalid(std::io::Error::new(std::io::ErrorKind::InvalidInput, error)))?;
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(invalid)?
        .next()
        .ok_or_else(|| {
            invalid(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the host has no address",
            ))
        })
}

/// Completes on Ctrl-C or (on Unix) SIGTERM; never if the signals cannot be watched.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// `cloudstate.EntityDiscovery`.
struct Discovery {
    spec: protocol::EntitySpec,
}

#[tonic::async_trait]
impl EntityDiscovery for Discovery {
    async fn discover(
        &self,
        request: Request<protocol::ProxyInfo>,
    ) -> Result<Response<protocol::EntitySpec>, Status> {
        let info = request.into_inner();
        tracing::info!(
            proxy = %info.proxy_name,
            version = %info.proxy_version,
            protocol = %format!("{}.{}", info.protocol_major_version, info.protocol_minor_version),
            "discovery"
        );
        for entity in &self.spec.entities {
            if !info.supported_entity_types.contains(&entity.entity_type) {
                tracing::warn!(
                    service = %entity.service_name,
                    entity_type = %entity.entity_type,
                    supported = ?info.supported_entity_types,
                    "the proxy does not support this service's entity type"
                );
            }
        }
        Ok(Response::new(self.spec.clone()))
    }

    async fn report_error(
        &self,
        request: Request<protocol::UserFunctionError>,
    ) -> Result<Response<()>, Status> {
        tracing::warn!(message = %request.into_inner().message, "the proxy reported an error");
        Ok(Response::new(()))
    }
}

/// `cloudstate.eventsourced.EventSourced`.
struct EventSourcedService {
    entities: Registry<EventSourcedProtocol>,
}

#[tonic::async_trait]
impl EventSourcedRpc for EventSourcedService {
    type handleStream = EntityStream<EventSourcedProtocol>;

    async fn handle(
        &self,
        request: Request<Streaming<EventSourcedStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        Ok(Response::new(EntityStream::new(
            request.into_inner(),
            self.entities.clone(),
        )))
    }
}

/// `cloudstate.valueentity.ValueEntity`.
struct ValueService {
    entities: Registry<ValueProtocol>,
}

#[tonic::async_trait]
impl ValueEntityRpc for ValueService {
    type handleStream = EntityStream<ValueProtocol>;

    async fn handle(
        &self,
        request: Request<Streaming<ValueEntityStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        Ok(Response::new(EntityStream::new(
            request.into_inner(),
            self.entities.clone(),
        )))
    }
}

/// `cloudstate.crdt.Crdt`.
struct CrdtService {
    entities: Registry<CrdtProtocol>,
}

#[tonic::async_trait]
impl CrdtRpc for CrdtService {
    type handleStream = EntityStream<CrdtProtocol>;

    async fn handle(
        &self,
        request: Request<Streaming<CrdtStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        Ok(Response::new(EntityStream::new(
            request.into_inner(),
            self.entities.clone(),
        )))
    }
}

/// `cloudstate.action.ActionProtocol`: one gRPC call per action call, of the same shape.
struct ActionProtocolService {
    actions: Arc<HashMap<String, Arc<dyn ActionType>>>,
}

/// The responses of a streamed action call, as gRPC sends them.
type ResponseStream = BoxStream<'static, Result<ActionResponse, Status>>;

impl ActionProtocolService {
    /// Runs a call whose other messages are `input` (for the streamed-in shapes): its first
    /// message is the header.
    async fn call_streamed(
        &self,
        shape: Shape,
        mut input: Streaming<ActionCommand>,
    ) -> Result<Calls, Status> {
        let header = input.message().await?.ok_or_else(|| {
            protocol_status(&Error::Protocol(
                "the call ended before its first message".into(),
            ))
        })?;
        Ok(action::call(&self.actions, shape, header, payloads(input)))
    }
}

/// The payloads of the messages of `input`, which ends at the first error (the proxy cancelled
/// the call).
fn payloads(input: Streaming<ActionCommand>) -> Payloads {
    stream::unfold(input, |mut input| async move {
        match input.message().await {
            Ok(Some(command)) => Some((command.payload, input)),
            Ok(None) => None,
            Err(status) => {
                tracing::debug!(%status, "the proxy's action stream failed");
                None
            }
        }
    })
    .boxed()
}

/// The only response of a unary or streamed-in call.
async fn only_response(mut calls: Calls) -> Result<Response<ActionResponse>, Status> {
    match calls.next().await {
        Some(Ok(response)) => Ok(Response::new(response)),
        Some(Err(error)) => Err(protocol_status(&error)),
        None => Err(Status::internal("the action call produced no response")),
    }
}

/// The responses of a streamed-out call.
fn response_stream(calls: Calls) -> Response<ResponseStream> {
    Response::new(
        calls
            .map(|item| item.map_err(|error| protocol_status(&error)))
            .boxed(),
    )
}

/// The status ending a call that broke the protocol.
fn protocol_status(error: &Error) -> Status {
    tracing::warn!("ending the action call: {error}");
    Status::failed_precondition(error.to_string())
}

#[tonic::async_trait]
impl ActionProtocol for ActionProtocolService {
    type handleStreamedOutStream = ResponseStream;
    type handleStreamedStream = ResponseStream;

    async fn handle_unary(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ActionResponse>, Status> {
        let calls = action::call(
            &self.actions,
            Shape::Unary,
            request.into_inner(),
            stream::empty().boxed(),
        );
        only_response(calls).await
    }

    async fn handle_streamed_in(
        &self,
        request: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ActionResponse>, Status> {
        let calls = self
            .call_streamed(Shape::StreamedIn, request.into_inner())
            .await?;
        only_response(calls).await
    }

    async fn handle_streamed_out(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ResponseStream>, Status> {
        let calls = action::call(
            &self.actions,
            Shape::StreamedOut,
            request.into_inner(),
            stream::empty().boxed(),
        );
        Ok(response_stream(calls))
    }

    async fn handle_streamed(
        &self,
        request: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let calls = self
            .call_streamed(Shape::Streamed, request.into_inner())
            .await?;
        Ok(response_stream(calls))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloudstate_protocol::action::action_protocol_client::ActionProtocolClient;
    use cloudstate_protocol::action::action_response;
    use cloudstate_protocol::crdt::crdt_client::CrdtClient;
    use cloudstate_protocol::crdt::{
        CrdtDelete, CrdtInit, CrdtStreamOut, crdt_state_action, crdt_stream_in, crdt_stream_out,
    };
    use cloudstate_protocol::entity_discovery_client::EntityDiscoveryClient;
    use cloudstate_protocol::eventsourced::event_sourced_client::EventSourcedClient;
    use cloudstate_protocol::eventsourced::{
        EventSourcedInit, EventSourcedStreamOut, event_sourced_stream_in, event_sourced_stream_out,
    };
    use cloudstate_protocol::valueentity::value_entity_client::ValueEntityClient;
    use cloudstate_protocol::valueentity::{
        ValueEntityInit, ValueEntityInitState, value_entity_action, value_entity_stream_in,
        value_entity_stream_out,
    };
    use cloudstate_protocol::{Any, ProxyInfo, entity_type};
    use tokio::sync::{mpsc, oneshot};
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;

    use super::*;
    use crate::EventSourced;
    use crate::command::Signature;
    use crate::service::check_service;
    use crate::test_crdt::{CRDT_SERVICE, CrdtModel, crdt_model};
    use crate::test_entity::{self, Request, State, action_model, model, request, value_model};
    use crate::testkit::deltas;

    /// Starts a server with the test model on a free port; it stops when the sender drops.
    async fn start() -> (Channel, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(test_entity::descriptor_set())
            .unwrap()
            .register(model().passivation_timeout(Duration::from_millis(100)))
            .unwrap()
            .register(value_model())
            .unwrap()
            .register(action_model())
            .unwrap()
            .register(crdt_model())
            .unwrap()
            .service_info("model", "1.2.3");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve_with_listener(listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        (channel, stop)
    }

    fn init(service: &str) -> EventSourcedStreamIn {
        EventSourcedStreamIn {
            message: Some(event_sourced_stream_in::Message::Init(EventSourcedInit {
                service_name: service.into(),
                entity_id: "e1".into(),
                snapshot: None,
            })),
        }
    }

    fn command(id: i64, name: &str, values: &[&str]) -> EventSourcedStreamIn {
        EventSourcedStreamIn {
            message: Some(event_sourced_stream_in::Message::Command(
                protocol::Command {
                    entity_id: "e1".into(),
                    id,
                    name: name.into(),
                    payload: Some(Any::from_message(&request(values))),
                    ..protocol::Command::default()
                },
            )),
        }
    }

    #[tokio::test]
    async fn discovery_reports_the_descriptor_set_and_entities() {
        let (channel, _stop) = start().await;
        let spec = EntityDiscoveryClient::new(channel.clone())
            .discover(ProxyInfo::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(spec.proto, test_entity::descriptor_set());
        let kinds: Vec<_> = spec
            .entities
            .iter()
            .map(|e| {
                (
                    e.entity_type.as_str(),
                    e.service_name.as_str(),
                    e.persistence_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    entity_type::EVENT_SOURCED,
                    test_entity::SERVICE,
                    test_entity::SERVICE
                ),
                (
                    entity_type::VALUE_ENTITY,
                    test_entity::VALUE_SERVICE,
                    "values"
                ),
                (entity_type::ACTION, test_entity::ACTION_SERVICE, ""),
                (entity_type::CRDT, CRDT_SERVICE, "crdts"),
            ]
        );
        assert!(spec.entities[1].passivation_strategy.is_none());
        let entity = &spec.entities[0];
        assert_eq!(entity.entity_type, entity_type::EVENT_SOURCED);
        assert_eq!(entity.service_name, test_entity::SERVICE);
        assert_eq!(entity.persistence_id, test_entity::SERVICE);
        assert_eq!(
            entity.passivation_strategy.and_then(|p| p.strategy),
            Some(protocol::entity_passivation_strategy::Strategy::Timeout(
                protocol::TimeoutPassivationStrategy { timeout: 100 }
            ))
        );
        let info = spec.service_info.unwrap();
        assert_eq!(info.support_library_name, "cloudstate-rust");
        assert_eq!(info.service_runtime, "rustc");
        assert_eq!(
            (info.service_name.as_str(), info.service_version.as_str()),
            ("model", "1.2.3")
        );
        assert_eq!(
            (info.protocol_major_version, info.protocol_minor_version),
            (0, 2)
        );

        EntityDiscoveryClient::new(channel)
            .report_error(protocol::UserFunctionError {
                message: "test".into(),
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn handle_replies_in_order() {
        let (channel, _stop) = start().await;
        let input = vec![
            init(test_entity::SERVICE),
            command(1, "Emit", &["A", "B"]),
            command(2, "Get", &[]),
        ];
        let mut output = EventSourcedClient::new(channel)
            .handle(tokio_stream::iter(input))
            .await
            .unwrap()
            .into_inner();
        let mut replies = Vec::new();
        while let Some(out) = output.next().await {
            match out.unwrap().message {
                Some(event_sourced_stream_out::Message::Reply(reply)) => replies.push(reply),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(replies.len(), 2);
        assert_eq!((replies[0].command_id, replies[0].events.len()), (1, 2));
        let Some(protocol::client_action::Action::Reply(reply)) =
            replies[1].client_action.clone().and_then(|a| a.action)
        else {
            panic!("expected a reply: {:?}", replies[1]);
        };
        let state = reply
            .payload
            .unwrap()
            .to_message::<State>()
            .unwrap()
            .unwrap();
        assert_eq!(state.value, "AB");
    }

    /// Sends `input` and returns the failure message and the final status.
    async fn violate(input: Vec<EventSourcedStreamIn>) -> (protocol::Failure, Status) {
        let (channel, _stop) = start().await;
        let mut output = EventSourcedClient::new(channel)
            .handle(tokio_stream::iter(input))
            .await
            .unwrap()
            .into_inner();
        let failure = match output.next().await {
            Some(Ok(EventSourcedStreamOut {
                message: Some(event_sourced_stream_out::Message::Failure(failure)),
            })) => failure,
            other => panic!("expected a failure, got {other:?}"),
        };
        let status = match output.next().await {
            Some(Err(status)) => status,
            other => panic!("expected an error, got {other:?}"),
        };
        (failure, status)
    }

    #[tokio::test]
    async fn protocol_violations_end_the_stream() {
        let (failure, status) = violate(vec![command(1, "Get", &[])]).await;
        assert_eq!(
            failure.description,
            "protocol error: the first message is not init"
        );
        assert_eq!(failure.command_id, 0);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);

        let (failure, _) = violate(vec![init("no.Such")]).await;
        assert_eq!(
            failure.description,
            "protocol error: unknown service no.Such"
        );

        let (failure, _) =
            violate(vec![init(test_entity::SERVICE), init(test_entity::SERVICE)]).await;
        assert_eq!(failure.description, "protocol error: a second init message");
    }

    /// The proxy keeps one stream per active entity on one connection: far more than
    /// hyper's default cap of 200 must be open at once.
    #[tokio::test]
    async fn many_entity_streams_share_one_connection() {
        let (channel, _stop) = start().await;
        let mut open = Vec::new();
        let all = async {
            for id in 0..300 {
                let (input, rx) = mpsc::channel(2);
                input.send(init(test_entity::SERVICE)).await.unwrap();
                input
                    .send(command(1, "Emit", &[&id.to_string()]))
                    .await
                    .unwrap();
                let mut output = EventSourcedClient::new(channel.clone())
                    .handle(ReceiverStream::new(rx))
                    .await
                    .unwrap()
                    .into_inner();
                let reply = output.next().await.unwrap().unwrap();
                assert!(matches!(
                    reply.message,
                    Some(event_sourced_stream_out::Message::Reply(_))
                ));
                open.push((input, output));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("streams stalled");
        assert_eq!(open.len(), 300);
    }

    #[test]
    fn registration_is_checked_against_the_descriptor_set() {
        let server = || Server::new(test_entity::descriptor_set()).unwrap();
        assert!(server().register(model()).is_ok());
        let twice = server().register(model()).unwrap().register(model());
        assert!(matches!(twice, Err(Error::InvalidEntity { .. })));
        let unknown = server().register(EventSourced::<test_entity::Model>::new(
            "test.model.Nope",
            test_entity::Model::commands,
        ));
        assert!(matches!(unknown, Err(Error::InvalidEntity { .. })));
        assert!(matches!(
            Server::new(vec![0xff, 0xff]),
            Err(Error::InvalidDescriptorSet(_))
        ));
        // Kinds mix; a service name counts once across kinds.
        let all = server()
            .register(model())
            .and_then(|s| s.register(value_model()))
            .and_then(|s| s.register(action_model()));
        assert!(all.is_ok());
        let clash = server().register(value_model()).unwrap().register(
            crate::ValueEntityService::<State>::new(test_entity::VALUE_SERVICE, State::commands),
        );
        assert!(matches!(clash, Err(Error::InvalidEntity { .. })));
        // The action's service is streamed: no entity may serve it.
        let streamed = server().register(crate::ValueEntityService::<State>::new(
            test_entity::ACTION_SERVICE,
            State::commands,
        ));
        match streamed {
            Err(Error::InvalidEntity { reason, .. }) => {
                assert!(
                    reason.contains("which value entities do not support"),
                    "{reason}"
                );
            }
            _ => panic!("a value entity with streamed methods was accepted"),
        }
        // CRDT entities have server streaming methods, not client streaming ones.
        let client_streaming = server().register(crate::CrdtEntityService::<CrdtModel>::new(
            test_entity::ACTION_SERVICE,
            CrdtModel::commands,
        ));
        match client_streaming {
            Err(Error::InvalidEntity { reason, .. }) => assert_eq!(
                reason,
                "method Concat is client streaming, which CRDT entities do not support"
            ),
            _ => panic!("a CRDT entity with client streaming methods was accepted"),
        }
    }

    fn signature(method: &str, input: &str, output: &str, shape: Shape) -> Signature {
        Signature {
            method: method.into(),
            input: input.into(),
            output: output.into(),
            shape,
        }
    }

    #[test]
    fn handler_types_must_match_the_methods() {
        let files =
            prost_types::FileDescriptorSet::decode(&test_entity::descriptor_set()[..]).unwrap();
        let request = "test.model.Request";
        let state = "test.model.State";
        let spec = |entity_type: &str, service: &str| protocol::Entity {
            entity_type: entity_type.into(),
            service_name: service.into(),
            ..protocol::Entity::default()
        };
        let entity = spec(entity_type::EVENT_SOURCED, test_entity::SERVICE);
        let check = |handlers: &[Signature]| check_service(&files, &entity, handlers);
        assert!(check(&[signature("Get", request, state, Shape::Unary)]).is_ok());
        assert!(
            check(&[signature(
                "Get",
                request,
                "google.protobuf.Empty",
                Shape::Unary
            )])
            .is_err()
        );
        assert!(check(&[signature("Get", state, state, Shape::Unary)]).is_err());
        assert!(
            check(&[signature(
                "Nope",
                request,
                "google.protobuf.Empty",
                Shape::Unary
            )])
            .is_err()
        );
        assert!(
            check_service(&files, &spec(entity_type::EVENT_SOURCED, "test.Model"), &[]).is_err()
        );

        let action = spec(entity_type::ACTION, test_entity::ACTION_SERVICE);
        let check = |handlers: &[Signature]| check_service(&files, &action, handlers);
        assert!(check(&[signature("Repeat", request, state, Shape::StreamedOut)]).is_ok());
        assert!(check(&[signature("Shout", request, state, Shape::Streamed)]).is_ok());
        let wrong = check(&[signature("Concat", request, state, Shape::Unary)]).unwrap_err();
        assert_eq!(
            wrong,
            "the handler of Concat is unary, the method is client streaming"
        );
    }

    fn value_init(service: &str, stored: Option<&str>) -> ValueEntityStreamIn {
        ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Init(ValueEntityInit {
                service_name: service.into(),
                entity_id: "v1".into(),
                state: Some(ValueEntityInitState {
                    value: stored.map(|value| {
                        Any::from_message(&State {
                            value: value.into(),
                        })
                    }),
                }),
            })),
        }
    }

    fn value_command(id: i64, name: &str, values: &[&str]) -> ValueEntityStreamIn {
        ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Command(
                protocol::Command {
                    entity_id: "v1".into(),
                    id,
                    name: name.into(),
                    payload: Some(Any::from_message(&request(values))),
                    ..protocol::Command::default()
                },
            )),
        }
    }

    #[tokio::test]
    async fn value_entity_streams_reply_in_order_with_state_actions() {
        let (channel, _stop) = start().await;
        let input = vec![
            value_init(test_entity::VALUE_SERVICE, Some("D")),
            value_command(1, "Get", &[]),
            value_command(2, "Set", &["A", "B"]),
            value_command(3, "Set", &["-"]),
            value_command(4, "Fail", &["X"]),
        ];
        let mut output = ValueEntityClient::new(channel)
            .handle(tokio_stream::iter(input))
            .await
            .unwrap()
            .into_inner();
        let mut replies = Vec::new();
        while let Some(out) = output.next().await {
            match out.unwrap().message {
                Some(value_entity_stream_out::Message::Reply(reply)) => replies.push(reply),
                other => panic!("unexpected {other:?}"),
            }
        }
        let ids: Vec<_> = replies.iter().map(|reply| reply.command_id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let Some(protocol::client_action::Action::Reply(reply)) =
            replies[0].client_action.clone().and_then(|a| a.action)
        else {
            panic!("expected a reply: {:?}", replies[0]);
        };
        let state = reply
            .payload
            .unwrap()
            .to_message::<State>()
            .unwrap()
            .unwrap();
        assert_eq!(state.value, "D");
        assert!(replies[0].state_action.is_none());
        assert_eq!(
            replies[1].state_action.clone().and_then(|a| a.action),
            Some(value_entity_action::Action::Update(
                cloudstate_protocol::valueentity::ValueEntityUpdate {
                    value: Some(Any::from_message(&State { value: "B".into() }))
                }
            ))
        );
        assert!(matches!(
            replies[2].state_action.clone().and_then(|a| a.action),
            Some(value_entity_action::Action::Delete(_))
        ));
        assert!(replies[3].state_action.is_none());
        assert!(replies[3].side_effects.is_empty());
    }

    /// Sends `input` on a value entity stream and returns the failure and the final status.
    async fn violate_value(input: Vec<ValueEntityStreamIn>) -> (protocol::Failure, Status) {
        let (channel, _stop) = start().await;
        let mut output = ValueEntityClient::new(channel)
            .handle(tokio_stream::iter(input))
            .await
            .unwrap()
            .into_inner();
        let failure = match output.next().await {
            Some(Ok(protocol::valueentity::ValueEntityStreamOut {
                message: Some(value_entity_stream_out::Message::Failure(failure)),
            })) => failure,
            other => panic!("expected a failure, got {other:?}"),
        };
        let status = match output.next().await {
            Some(Err(status)) => status,
            other => panic!("expected an error, got {other:?}"),
        };
        (failure, status)
    }

    #[tokio::test]
    async fn value_entity_protocol_violations_end_the_stream() {
        let (failure, status) = violate_value(vec![value_command(1, "Get", &[])]).await;
        assert_eq!(
            failure.description,
            "protocol error: the first message is not init"
        );
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let (failure, _) = violate_value(vec![value_init(test_entity::SERVICE, None)]).await;
        assert_eq!(
            failure.description,
            format!("protocol error: unknown service {}", test_entity::SERVICE)
        );
        let (failure, _) = violate_value(vec![
            value_init(test_entity::VALUE_SERVICE, None),
            value_init(test_entity::VALUE_SERVICE, None),
        ])
        .await;
        assert_eq!(failure.description, "protocol error: a second init message");
        let unrelated = ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Init(ValueEntityInit {
                service_name: test_entity::VALUE_SERVICE.into(),
                entity_id: "v1".into(),
                state: Some(ValueEntityInitState {
                    value: Some(Any::from_message(&Request::default())),
                }),
            })),
        };
        let (failure, _) = violate_value(vec![unrelated]).await;
        assert!(
            failure
                .description
                .contains("the stored state: unexpected type"),
            "{failure:?}"
        );
    }

    fn crdt_in(message: crdt_stream_in::Message) -> CrdtStreamIn {
        CrdtStreamIn {
            message: Some(message),
        }
    }

    fn crdt_command(id: i64, name: &str, values: &[&str], streamed: bool) -> CrdtStreamIn {
        crdt_in(crdt_stream_in::Message::Command(protocol::Command {
            entity_id: "c1".into(),
            id,
            name: name.into(),
            payload: Some(Any::from_message(&request(values))),
            streamed,
            metadata: None,
        }))
    }

    /// One CRDT entity stream: each message from the proxy gets its answers, in order, before
    /// the next is sent; a streamed command's messages follow the reply of the command that
    /// changed the state.
    #[tokio::test]
    async fn crdt_streams_answer_each_message_with_its_messages() {
        let (channel, _stop) = start().await;
        let (input, rx) = mpsc::channel(1);
        let mut output = CrdtClient::new(channel)
            .handle(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        input
            .send(crdt_in(crdt_stream_in::Message::Init(CrdtInit {
                service_name: CRDT_SERVICE.into(),
                entity_id: "c1".into(),
                delta: Some(deltas::gcounter(2)),
            })))
            .await
            .unwrap();
        input
            .send(crdt_command(1, "Watch", &["cancel:gcounter+5"], true))
            .await
            .unwrap();
        let Some(crdt_stream_out::Message::Reply(watch)) = next(&mut output).await else {
            panic!("expected the reply to Watch");
        };
        assert!(watch.streamed);
        input
            .send(crdt_command(2, "Process", &["gcounter+1"], false))
            .await
            .unwrap();
        let Some(crdt_stream_out::Message::Reply(process)) = next(&mut output).await else {
            panic!("expected the reply to Process");
        };
        assert_eq!(
            process.state_action.and_then(|a| a.action),
            Some(crdt_state_action::Action::Update(deltas::gcounter(1)))
        );
        let Some(crdt_stream_out::Message::StreamedMessage(message)) = next(&mut output).await
        else {
            panic!("expected a streamed message");
        };
        assert_eq!(message.command_id, 1);
        input
            .send(crdt_in(crdt_stream_in::Message::StreamCancelled(
                protocol::StreamCancelled {
                    entity_id: "c1".into(),
                    id: 1,
                },
            )))
            .await
            .unwrap();
        let Some(crdt_stream_out::Message::StreamCancelledResponse(response)) =
            next(&mut output).await
        else {
            panic!("expected the stream cancelled response");
        };
        assert_eq!(response.command_id, 1);
        assert_eq!(
            response.state_action.and_then(|a| a.action),
            Some(crdt_state_action::Action::Update(deltas::gcounter(5)))
        );
        input
            .send(crdt_in(crdt_stream_in::Message::Delete(CrdtDelete {})))
            .await
            .unwrap();
        drop(input);
        assert!(output.next().await.is_none());
    }

    async fn next(output: &mut Streaming<CrdtStreamOut>) -> Option<crdt_stream_out::Message> {
        output.next().await.unwrap().unwrap().message
    }

    #[tokio::test]
    async fn crdt_protocol_violations_end_the_stream() {
        let (channel, _stop) = start().await;
        let input = vec![
            crdt_in(crdt_stream_in::Message::Init(CrdtInit {
                service_name: CRDT_SERVICE.into(),
                entity_id: "c1".into(),
                delta: Some(deltas::gcounter(2)),
            })),
            crdt_in(crdt_stream_in::Message::Delta(deltas::flag(true))),
        ];
        let mut output = CrdtClient::new(channel)
            .handle(tokio_stream::iter(input))
            .await
            .unwrap()
            .into_inner();
        let Some(crdt_stream_out::Message::Failure(failure)) = next(&mut output).await else {
            panic!("expected a failure");
        };
        assert_eq!(
            failure.description,
            "protocol error: a delta that does not apply: a Flag is incompatible with CRDT GCounter"
        );
        let status = output.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    }

    fn action_command(name: &str, values: Option<&[&str]>) -> ActionCommand {
        ActionCommand {
            service_name: test_entity::ACTION_SERVICE.into(),
            name: name.into(),
            payload: values.map(|values| Any::from_message(&request(values))),
            metadata: None,
        }
    }

    fn payload(values: &[&str]) -> ActionCommand {
        ActionCommand {
            payload: Some(Any::from_message(&request(values))),
            ..ActionCommand::default()
        }
    }

    fn reply_value(response: &ActionResponse) -> String {
        match &response.response {
            Some(action_response::Response::Reply(reply)) => {
                let payload = reply.payload.clone().unwrap();
                payload.to_message::<State>().unwrap().unwrap().value
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn actions_answer_all_four_shapes() {
        let (channel, _stop) = start().await;
        let mut client = ActionProtocolClient::new(channel);

        let mut unary = tonic::Request::new(action_command("Echo", Some(&["a", "b"])));
        unary
            .metadata_mut()
            .insert("x-user", "ann".parse().unwrap());
        // The proxy passes headers on in the command, not as gRPC metadata.
        let response = client.handle_unary(unary).await.unwrap().into_inner();
        assert_eq!(reply_value(&response), ">ab");

        let mut with_metadata = action_command("Echo", Some(&["a"]));
        with_metadata.metadata = Some(protocol::Metadata {
            entries: vec![protocol::MetadataEntry {
                key: "x-user".into(),
                value: Some(protocol::metadata_entry::Value::StringValue("ann".into())),
            }],
        });
        let response = client
            .handle_unary(with_metadata)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply_value(&response), ">a@ann");

        let streamed_out = client
            .handle_streamed_out(action_command("Repeat", Some(&["x", "y"])))
            .await
            .unwrap()
            .into_inner();
        let responses: Vec<_> = streamed_out.map(Result::unwrap).collect().await;
        assert_eq!(responses.len(), 3, "{responses:?}");
        assert!(responses[0].response.is_none());
        assert_eq!(responses[0].side_effects.len(), 1);
        assert_eq!(reply_value(&responses[1]), ">x");
        assert_eq!(reply_value(&responses[2]), ">y");

        let input = vec![
            action_command("Concat", None),
            payload(&["a"]),
            payload(&["b", "c"]),
        ];
        let response = client
            .handle_streamed_in(tokio_stream::iter(input))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply_value(&response), ">abc");

        // Bidirectional: each response arrives before the next request is sent.
        let (requests, rx) = mpsc::channel(1);
        requests.send(action_command("Shout", None)).await.unwrap();
        let mut responses = client
            .handle_streamed(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        for word in ["hey", "you"] {
            requests.send(payload(&[word])).await.unwrap();
            let response = responses.next().await.unwrap().unwrap();
            assert_eq!(reply_value(&response), word.to_uppercase());
        }
        drop(requests);
        assert!(responses.next().await.is_none());
    }

    #[tokio::test]
    async fn action_protocol_errors_are_statuses_and_command_errors_failures() {
        let (channel, _stop) = start().await;
        let mut client = ActionProtocolClient::new(channel);

        let mut unknown_service = action_command("Echo", Some(&[]));
        unknown_service.service_name = "no.Such".into();
        let status = client.handle_unary(unknown_service).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(status.message(), "protocol error: unknown service no.Such");

        let status = client
            .handle_unary(action_command("Repeat", Some(&[])))
            .await
            .unwrap_err();
        assert_eq!(
            status.message(),
            "protocol error: method Repeat is server streaming, but was called as unary"
        );

        let status = client
            .handle_streamed_in(tokio_stream::iter(vec![action_command(
                "Concat",
                Some(&[]),
            )]))
            .await
            .unwrap_err();
        assert!(status.message().contains("carries a payload"), "{status:?}");

        let status = client
            .handle_streamed_in(tokio_stream::iter(Vec::<ActionCommand>::new()))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);

        let response = client
            .handle_unary(action_command("Nope", Some(&[])))
            .await
            .unwrap()
            .into_inner();
        match response.response {
            Some(action_response::Response::Failure(failure)) => {
                assert_eq!(
                    failure.description,
                    "Unknown command Nope on service test.model.ActionModel"
                );
                assert_eq!(
                    failure.grpc_status_code,
                    i32::from(tonic::Code::Unimplemented)
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}
