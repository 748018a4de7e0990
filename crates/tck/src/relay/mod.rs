//! The recording relay: a gRPC server the proxy takes for the user function. It implements
//! every protocol service (`EntityDiscovery`, `EventSourced`, `ValueEntity`, `Crdt`,
//! `ActionProtocol`), forwards every call verbatim to the real user function and records every
//! message both ways, with the time it crossed and the stream it belongs to ([`Recorder`]).
//!
//! The proxy is started pointed at the relay: service first, relay second, proxy last.

mod record;

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cloudstate_protocol::action::action_protocol_client::ActionProtocolClient;
use cloudstate_protocol::action::action_protocol_server::{ActionProtocol, ActionProtocolServer};
use cloudstate_protocol::action::{ActionCommand, ActionResponse};
use cloudstate_protocol::crdt::crdt_client::CrdtClient;
use cloudstate_protocol::crdt::crdt_server::{Crdt, CrdtServer};
use cloudstate_protocol::crdt::{CrdtStreamIn, CrdtStreamOut};
use cloudstate_protocol::entity_discovery_client::EntityDiscoveryClient;
use cloudstate_protocol::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use cloudstate_protocol::eventsourced::event_sourced_client::EventSourcedClient;
use cloudstate_protocol::eventsourced::event_sourced_server::{EventSourced, EventSourcedServer};
use cloudstate_protocol::eventsourced::{EventSourcedStreamIn, EventSourcedStreamOut};
use cloudstate_protocol::valueentity::value_entity_client::ValueEntityClient;
use cloudstate_protocol::valueentity::value_entity_server::{ValueEntity, ValueEntityServer};
use cloudstate_protocol::valueentity::{ValueEntityStreamIn, ValueEntityStreamOut};
use cloudstate_protocol::{EntitySpec, ProxyInfo, UserFunctionError};
use futures_util::Stream as FuturesStream;
use futures_util::stream::BoxStream;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

pub use record::{
    ActionStream, Call, CrdtStream, Direction, Discovery, Event, EventSourcedStream, LogEntry,
    Opened, PATIENCE, Probe, Recorded, Recorder, Stream, ValueEntityStream,
};

use crate::Error;

/// Largest message the relay accepts either way (descriptor sets can be big).
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A running relay.
pub struct Relay {
    address: SocketAddr,
    recorder: Arc<Recorder>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Relay {
    /// Listens on `bind` (port 0 for any free port) and relays to the user function at
    /// `user_function`.
    ///
    /// # Errors
    ///
    /// [`Error::Setup`] when `bind` cannot be bound.
    pub async fn start(bind: SocketAddr, user_function: SocketAddr) -> Result<Relay, Error> {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|error| Error::Setup(format!("binding the relay to {bind}: {error}")))?;
        let address = listener.local_addr()?;
        let channel = Endpoint::from_shared(format!("http://{user_function}"))
            .map_err(|error| Error::Setup(format!("user function address: {error}")))?
            .connect_lazy();
        let recorder = Arc::new(Recorder::new());
        let services = Services {
            channel,
            recorder: recorder.clone(),
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(
                EntityDiscoveryServer::new(services.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                EventSourcedServer::new(services.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                ValueEntityServer::new(services.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                CrdtServer::new(services.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE),
            )
            .add_service(
                ActionProtocolServer::new(services).max_decoding_message_size(MAX_MESSAGE_SIZE),
            );
        let server = tokio::spawn(router.serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            async {
                stopped.await.ok();
            },
        ));
        Ok(Relay {
            address,
            recorder,
            shutdown: Some(shutdown),
            server,
        })
    }

    /// Where the relay listens: the address to give the proxy as its user function.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What the relay saw.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Stops listening.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
        // Streams still open (a proxy that is still up) would hold a graceful stop forever.
        self.server.abort();
        (&mut self.server).await.ok();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The relay's protocol services: each call is recorded and forwarded on `channel`.
#[derive(Clone)]
struct Services {
    channel: Channel,
    recorder: Arc<Recorder>,
}

impl Services {
    fn discovery(&self) -> EntityDiscoveryClient<Channel> {
        EntityDiscoveryClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    fn action(&self) -> ActionProtocolClient<Channel> {
        ActionProtocolClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE)
    }

    fn open<In, Out>(
        &self,
        call: Call,
        wrap: impl FnOnce(Arc<Stream<In, Out>>) -> Opened,
    ) -> Arc<Stream<In, Out>>
    where
        In: Clone + fmt::Debug,
        Out: Clone + fmt::Debug,
    {
        self.recorder.open(call, wrap)
    }
}

/// The proxy's side of a recorded stream, forwarded: records each message and passes it on,
/// then records how the proxy ended it.
fn forward_requests<In, Out>(
    mut requests: Streaming<In>,
    stream: Arc<Stream<In, Out>>,
) -> ReceiverStream<In>
where
    In: Clone + fmt::Debug + Send + 'static,
    Out: Clone + fmt::Debug + Send + Sync + 'static,
{
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            match requests.message().await {
                Ok(Some(message)) => {
                    stream.record_in(Event::Message(message.clone()));
                    if sender.send(message).await.is_err() {
                        // The user function's call is over; keep recording what the proxy sends.
                        continue;
                    }
                }
                Ok(None) => {
                    stream.record_in(Event::Complete);
                    break;
                }
                Err(status) => {
                    stream.record_in(Event::Error(status));
                    break;
                }
            }
        }
        // Dropping the sender half-closes the user function's request stream.
    });
    ReceiverStream::new(receiver)
}

/// The user function's side of a recorded stream: records each message as the proxy reads it,
/// and the end (or that the proxy dropped the call before the end).
struct Responses<In: Clone + fmt::Debug, Out: Clone + fmt::Debug> {
    inner: Streaming<Out>,
    stream: Arc<Stream<In, Out>>,
    ended: bool,
}

impl<In, Out> FuturesStream for Responses<In, Out>
where
    In: Clone + fmt::Debug,
    Out: Clone + fmt::Debug,
{
    type Item = Result<Out, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let next = Pin::new(&mut this.inner).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(message))) => {
                this.stream.record_out(Event::Message(message.clone()))
            }
            Poll::Ready(Some(Err(status))) => {
                this.ended = true;
                this.stream.record_out(Event::Error(status.clone()));
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.stream.record_out(Event::Complete);
            }
            Poll::Pending => {}
        }
        next
    }
}

impl<In: Clone + fmt::Debug, Out: Clone + fmt::Debug> Drop for Responses<In, Out> {
    fn drop(&mut self) {
        if !self.ended {
            self.stream.record_out(Event::Cancelled);
        }
    }
}

/// Relays one bidirectional call: the proxy's messages to `call`, its answers back.
async fn relay_streams<In, Out, F, Fut>(
    stream: Arc<Stream<In, Out>>,
    requests: Streaming<In>,
    call: F,
) -> Result<Response<BoxStream<'static, Result<Out, Status>>>, Status>
where
    In: Clone + fmt::Debug + Send + 'static,
    Out: Clone + fmt::Debug + Send + Sync + 'static,
    F: FnOnce(ReceiverStream<In>) -> Fut,
    Fut: Future<Output = Result<Response<Streaming<Out>>, Status>>,
{
    let forwarded = forward_requests(requests, stream.clone());
    match call(forwarded).await {
        Ok(response) => Ok(Response::new(Box::pin(Responses {
            inner: response.into_inner(),
            stream,
            ended: false,
        }))),
        Err(status) => {
            stream.record_out(Event::Error(status.clone()));
            Err(status)
        }
    }
}

/// Records the outcome of a call with one response.
fn record_single<In, Out>(stream: &Stream<In, Out>, result: &Result<Response<Out>, Status>)
where
    In: Clone + fmt::Debug,
    Out: Clone + fmt::Debug,
{
    match result {
        Ok(response) => {
            stream.record_out(Event::Message(response.get_ref().clone()));
            stream.record_out(Event::Complete);
        }
        Err(status) => stream.record_out(Event::Error(status.clone())),
    }
}

#[tonic::async_trait]
impl EntityDiscovery for Services {
    async fn discover(&self, request: Request<ProxyInfo>) -> Result<Response<EntitySpec>, Status> {
        let proxy_info = request.into_inner();
        let result = self
            .discovery()
            .discover(proxy_info.clone())
            .await
            .map(Response::into_inner);
        self.recorder.discovered(Discovery {
            proxy_info,
            result: result.clone(),
        });
        result.map(Response::new)
    }

    async fn report_error(
        &self,
        request: Request<UserFunctionError>,
    ) -> Result<Response<()>, Status> {
        let error = request.into_inner();
        self.recorder.reported(error.message.clone());
        self.discovery().report_error(error).await
    }
}

#[tonic::async_trait]
impl EventSourced for Services {
    type handleStream = BoxStream<'static, Result<EventSourcedStreamOut, Status>>;

    async fn handle(
        &self,
        request: Request<Streaming<EventSourcedStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        let stream = self.open(Call::EventSourced, Opened::EventSourced);
        let mut client = EventSourcedClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        relay_streams(stream, request.into_inner(), |requests| async move {
            client.handle(requests).await
        })
        .await
    }
}

#[tonic::async_trait]
impl ValueEntity for Services {
    type handleStream = BoxStream<'static, Result<ValueEntityStreamOut, Status>>;

    async fn handle(
        &self,
        request: Request<Streaming<ValueEntityStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        let stream = self.open(Call::ValueEntity, Opened::ValueEntity);
        let mut client = ValueEntityClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        relay_streams(stream, request.into_inner(), |requests| async move {
            client.handle(requests).await
        })
        .await
    }
}

#[tonic::async_trait]
impl Crdt for Services {
    type handleStream = BoxStream<'static, Result<CrdtStreamOut, Status>>;

    async fn handle(
        &self,
        request: Request<Streaming<CrdtStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        let stream = self.open(Call::Crdt, Opened::Crdt);
        let mut client =
            CrdtClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE);
        relay_streams(stream, request.into_inner(), |requests| async move {
            client.handle(requests).await
        })
        .await
    }
}

#[tonic::async_trait]
impl ActionProtocol for Services {
    async fn handle_unary(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ActionResponse>, Status> {
        let stream = self.open(Call::ActionUnary, Opened::Action);
        let command = request.into_inner();
        stream.record_in(Event::Message(command.clone()));
        stream.record_in(Event::Complete);
        let result = self.action().handle_unary(command).await;
        record_single(&stream, &result);
        result
    }

    async fn handle_streamed_in(
        &self,
        request: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ActionResponse>, Status> {
        let stream = self.open(Call::ActionStreamedIn, Opened::Action);
        let forwarded = forward_requests(request.into_inner(), stream.clone());
        let result = self.action().handle_streamed_in(forwarded).await;
        record_single(&stream, &result);
        result
    }

    type handleStreamedOutStream = BoxStream<'static, Result<ActionResponse, Status>>;

    async fn handle_streamed_out(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<Self::handleStreamedOutStream>, Status> {
        let stream = self.open(Call::ActionStreamedOut, Opened::Action);
        let command = request.into_inner();
        stream.record_in(Event::Message(command.clone()));
        stream.record_in(Event::Complete);
        match self.action().handle_streamed_out(command).await {
            Ok(response) => Ok(Response::new(Box::pin(Responses {
                inner: response.into_inner(),
                stream,
                ended: false,
            }))),
            Err(status) => {
                stream.record_out(Event::Error(status.clone()));
                Err(status)
            }
        }
    }

    type handleStreamedStream = BoxStream<'static, Result<ActionResponse, Status>>;

    async fn handle_streamed(
        &self,
        request: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<Self::handleStreamedStream>, Status> {
        let stream = self.open(Call::ActionStreamed, Opened::Action);
        let mut client = self.action();
        relay_streams(stream, request.into_inner(), |requests| async move {
            client.handle_streamed(requests).await
        })
        .await
    }
}
