//! The gRPC server the proxy talks to: `cloudstate.EntityDiscovery` and
//! `cloudstate.eventsourced.EventSourced`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use cloudstate_protocol::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use cloudstate_protocol::eventsourced::event_sourced_server::{
    EventSourced as EventSourcedProtocol, EventSourcedServer,
};
use cloudstate_protocol::eventsourced::{
    EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in, event_sourced_stream_out,
};
use cloudstate_protocol::{self as protocol, entity_type};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::eventsourced::session::{EntityType, StreamHandler};
use crate::{Error, EventSourced, EventSourcedEntity};

/// Name reported as `ServiceInfo.support_library_name`.
pub const SUPPORT_LIBRARY_NAME: &str = "cloudstate-rust";

/// The default cap on concurrent HTTP/2 streams per connection: effectively none. The proxy
/// keeps one stream per active entity on one connection, so any small cap would stall it.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = u32::MAX;

/// A user function: the descriptor set of its protos and the entities it serves.
///
/// ```no_run
/// # async fn run(descriptor_set: &'static [u8]) -> Result<(), cloudstate::Error> {
/// # struct Cart;
/// # impl cloudstate::EventSourcedEntity for Cart {
/// #     type Event = Event; type Snapshot = ();
/// #     fn new(_: &str) -> Self { Cart }
/// #     fn from_snapshot(_: &str, _: ()) -> Self { Cart }
/// #     fn snapshot(&self) {}
/// #     fn apply(&mut self, _: &Event) {}
/// #     fn commands(_: &mut cloudstate::Commands<Self>) {}
/// # }
/// # cloudstate::events! { enum Event { E(()) } }
/// let cart = cloudstate::EventSourced::<Cart>::new("com.example.shoppingcart.ShoppingCart")
///     .persistence_id("shopping-cart")
///     .snapshot_every(5);
/// cloudstate::Server::new(descriptor_set)?
///     .register(cart)?
///     .serve(cloudstate::address_from_env().await?)
///     .await
/// # }
/// ```
pub struct Server {
    descriptor_set: Bytes,
    files: prost_types::FileDescriptorSet,
    entities: Vec<(String, Arc<dyn EntityType>)>,
    service_name: String,
    service_version: String,
    max_concurrent_streams: u32,
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
            files,
            entities: Vec::new(),
            service_name: String::new(),
            service_version: String::new(),
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
        })
    }

    /// Serves `entity`, after checking it against the descriptor set: its service exists and
    /// has no streamed methods, every handler names one of its methods with the same input
    /// and output types. Methods without a handler are logged (commands for them fail).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEntity`] when a check fails or the service is already registered.
    pub fn register<E: EventSourcedEntity>(
        mut self,
        entity: EventSourced<E>,
    ) -> Result<Self, Error> {
        let service_name = entity.service_name().to_owned();
        let entity: Arc<dyn EntityType> = Arc::new(entity);
        let invalid = |reason: String| Error::InvalidEntity {
            service: service_name.clone(),
            reason,
        };
        if self.entities.iter().any(|(name, _)| *name == service_name) {
            return Err(invalid("registered twice".into()));
        }
        check_entity(&self.files, &service_name, &entity.handlers()).map_err(invalid)?;
        self.entities.push((service_name, entity));
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
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, entities = self.entities.len(), "serving the Cloudstate protocol");
        }
        let spec = protocol::EntitySpec {
            proto: self.descriptor_set,
            entities: self
                .entities
                .iter()
                .map(|(_, entity)| entity.spec())
                .collect(),
            service_info: Some(protocol::ServiceInfo {
                service_name: self.service_name,
                service_version: self.service_version,
                service_runtime: "rustc".to_owned(),
                support_library_name: SUPPORT_LIBRARY_NAME.to_owned(),
                support_library_version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol_major_version: protocol::PROTOCOL_MAJOR_VERSION,
                protocol_minor_version: protocol::PROTOCOL_MINOR_VERSION,
            }),
        };
        let entities = Arc::new(self.entities.into_iter().collect());
        tonic::transport::Server::builder()
            .max_concurrent_streams(self.max_concurrent_streams)
            .add_service(EntityDiscoveryServer::new(Discovery { spec }))
            .add_service(EventSourcedServer::new(EventSourcedService { entities }))
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

/// Checks an entity's handlers (`(method, input type, output type)`) against its service in
/// `files`; returns what is wrong.
fn check_entity(
    files: &prost_types::FileDescriptorSet,
    service_name: &str,
    handlers: &[(&str, &str, &str)],
) -> Result<(), String> {
    let service = files
        .file
        .iter()
        .flat_map(|file| {
            file.service
                .iter()
                .map(move |service| (file.package(), service))
        })
        .find(|(package, service)| {
            let name = match package {
                &"" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            name == service_name
        })
        .map(|(_, service)| service)
        .ok_or_else(|| "the service is not in the descriptor set".to_owned())?;

    for method in &service.method {
        if method.client_streaming() || method.server_streaming() {
            return Err(format!(
                "method {} is streamed, which event sourced entities do not support",
                method.name()
            ));
        }
        if !handlers.iter().any(|(name, _, _)| *name == method.name()) {
            tracing::warn!(
                service = service_name,
                method = method.name(),
                "no handler: its commands will fail"
            );
        }
    }
    for (name, input, output) in handlers {
        let method = service
            .method
            .iter()
            .find(|method| method.name() == *name)
            .ok_or_else(|| {
                format!("a handler is registered for {name}, which is not a method of the service")
            })?;
        let expected_input = method.input_type().trim_start_matches('.');
        let expected_output = method.output_type().trim_start_matches('.');
        if expected_input != *input {
            return Err(format!(
                "the handler of {name} takes a {input}, the method a {expected_input}"
            ));
        }
        if expected_output != *output {
            return Err(format!(
                "the handler of {name} returns a {output}, the method a {expected_output}"
            ));
        }
    }
    Ok(())
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
        if !self.spec.entities.is_empty()
            && !info
                .supported_entity_types
                .iter()
                .any(|supported| supported == entity_type::EVENT_SOURCED)
        {
            tracing::warn!(
                supported = ?info.supported_entity_types,
                "the proxy does not support event sourced entities (is a journal configured?)"
            );
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
    entities: Arc<HashMap<String, Arc<dyn EntityType>>>,
}

#[tonic::async_trait]
impl EventSourcedProtocol for EventSourcedService {
    type handleStream = EntityStream;

    async fn handle(
        &self,
        request: Request<Streaming<EventSourcedStreamIn>>,
    ) -> Result<Response<EntityStream>, Status> {
        Ok(Response::new(EntityStream {
            input: request.into_inner(),
            entities: self.entities.clone(),
            session: None,
            entity: String::new(),
            phase: Phase::Running,
        }))
    }
}

/// Where an [`EntityStream`] is.
enum Phase {
    /// Turning input into replies.
    Running,
    /// A protocol error was reported in a failure message; the stream ends with this status.
    Failing(Status),
    /// Ended.
    Done,
}

/// The replies of one entity stream, produced as the proxy's messages arrive: each command is
/// handled when the proxy sends it and the stream is polled, on the stream's own task, so
/// entities run in parallel and one entity's commands run in order.
pub(crate) struct EntityStream {
    input: Streaming<EventSourcedStreamIn>,
    entities: Arc<HashMap<String, Arc<dyn EntityType>>>,
    session: Option<Box<dyn StreamHandler>>,
    /// `service/entity id`, for logs.
    entity: String,
    phase: Phase,
}

impl EntityStream {
    fn process(
        &mut self,
        message: Option<event_sourced_stream_in::Message>,
    ) -> Result<Option<event_sourced_stream_out::Message>, Error> {
        let reply = match (&mut self.session, message) {
            (Some(session), message) => session.handle(message)?,
            (None, Some(event_sourced_stream_in::Message::Init(init))) => {
                self.entity = format!("{}/{}", init.service_name, init.entity_id);
                let entity = self.entities.get(&init.service_name).ok_or_else(|| {
                    Error::Protocol(format!("unknown service {}", init.service_name))
                })?;
                self.session = Some(entity.clone().start(init)?);
                None
            }
            (None, _) => return Err(Error::Protocol("the first message is not init".into())),
        };
        Ok(reply.map(event_sourced_stream_out::Message::Reply))
    }
}

impl Stream for EntityStream {
    type Item = Result<EventSourcedStreamOut, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.phase, Phase::Done) {
                Phase::Running => this.phase = Phase::Running,
                Phase::Failing(status) => return Poll::Ready(Some(Err(status))),
                Phase::Done => return Poll::Ready(None),
            }
            let message = match ready!(Pin::new(&mut this.input).poll_next(cx)) {
                Some(Ok(message)) => message.message,
                Some(Err(status)) => {
                    tracing::debug!(entity = %this.entity, %status, "the proxy's stream failed");
                    this.phase = Phase::Done;
                    return Poll::Ready(None);
                }
                None => {
                    this.phase = Phase::Done;
                    return Poll::Ready(None);
                }
            };
            match this.process(message) {
                Ok(None) => continue,
                Ok(Some(out)) => {
                    return Poll::Ready(Some(Ok(EventSourcedStreamOut { message: Some(out) })));
                }
                Err(error) => {
                    let description = error.to_string();
                    tracing::warn!(entity = %this.entity, "ending the entity stream: {description}");
                    this.phase = Phase::Failing(Status::failed_precondition(description.clone()));
                    return Poll::Ready(Some(Ok(EventSourcedStreamOut {
                        message: Some(event_sourced_stream_out::Message::Failure(
                            protocol::Failure {
                                description,
                                ..protocol::Failure::default()
                            },
                        )),
                    })));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloudstate_protocol::entity_discovery_client::EntityDiscoveryClient;
    use cloudstate_protocol::eventsourced::EventSourcedInit;
    use cloudstate_protocol::eventsourced::event_sourced_client::EventSourcedClient;
    use cloudstate_protocol::{Any, ProxyInfo};
    use tokio::sync::{mpsc, oneshot};
    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;

    use super::*;
    use crate::test_entity::{self, State, model, request};

    /// Starts a server with the test model on a free port; it stops when the sender drops.
    async fn start() -> (Channel, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(test_entity::descriptor_set())
            .unwrap()
            .register(model().passivation_timeout(Duration::from_millis(100)))
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
        assert_eq!(spec.entities.len(), 1);
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
        let unknown = server().register(EventSourced::<test_entity::Model>::new("test.model.Nope"));
        assert!(matches!(unknown, Err(Error::InvalidEntity { .. })));
        assert!(matches!(
            Server::new(vec![0xff, 0xff]),
            Err(Error::InvalidDescriptorSet(_))
        ));
    }

    #[test]
    fn handler_types_must_match_the_methods() {
        let files =
            prost_types::FileDescriptorSet::decode(&test_entity::descriptor_set()[..]).unwrap();
        let request = "test.model.Request";
        let check =
            |handlers: &[(&str, &str, &str)]| check_entity(&files, test_entity::SERVICE, handlers);
        assert!(check(&[("Get", request, "test.model.State")]).is_ok());
        assert!(check(&[("Get", request, "google.protobuf.Empty")]).is_err());
        assert!(check(&[("Get", "test.model.State", "test.model.State")]).is_err());
        assert!(check(&[("Nope", request, "google.protobuf.Empty")]).is_err());
        assert!(check_entity(&files, "test.Model", &[]).is_err());
    }
}
