//! The physical limit: a raw tonic gRPC echo server, and the workload driving it with either
//! client: the load generator's lean one, or the minimal tonic one it is compared with.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::codec::BytesCodec;
use crate::runner::Workload;
use crate::transport::tonic::{TonicClient, TonicPool};
use crate::transport::{CallError, Framed, GrpcClient, GrpcPool, Home};

/// The service name the echo server answers to.
pub const SERVICE: &str = "echo.Echo";

/// The one method the echo server serves.
pub const PATH: &str = "/echo.Echo/Echo";

/// Serves `/echo.Echo/Echo` (bytes in, same bytes out) on `listener` until `shutdown`
/// resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(EchoService)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .with_context(|| format!("serving echo on {address}"))
}

/// The echo service, routed by path like generated tonic servers are.
#[derive(Debug, Clone, Copy)]
struct EchoService;

impl NamedService for EchoService {
    const NAME: &'static str = SERVICE;
}

impl Service<http::Request<Body>> for EchoService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == PATH {
            Box::pin(async move { Ok(Grpc::new(BytesCodec).unary(Echo, request).await) })
        } else {
            let path = request.uri().path().to_owned();
            Box::pin(
                async move { Ok(Status::unimplemented(format!("no method {path}")).into_http()) },
            )
        }
    }
}

/// The method: answers with the request's bytes.
struct Echo;

impl UnaryService<Bytes> for Echo {
    type Response = Bytes;
    type Future = Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        ready(Ok(Response::new(request.into_inner())))
    }
}

/// The connections an echo run drives, through either client.
#[derive(Debug)]
pub enum EchoPool {
    /// The load generator's lean client.
    Lean(GrpcPool),
    /// The minimal tonic client.
    Tonic(TonicPool),
}

/// One echo client.
#[derive(Debug)]
pub enum EchoClient {
    /// The lean client.
    Lean(GrpcClient),
    /// The minimal tonic client.
    Tonic(TonicClient),
}

/// Echo calls with a fixed payload; a reply of another length counts as a bad reply.
#[derive(Debug)]
pub struct EchoWorkload {
    pool: EchoPool,
    path: PathAndQuery,
    payload: Bytes,
    framed: Framed,
}

impl EchoWorkload {
    /// Sends `payload_size` bytes per call over `pool`.
    pub fn new(pool: EchoPool, payload_size: usize) -> Self {
        let payload = Bytes::from(vec![b'x'; payload_size]);
        EchoWorkload {
            pool,
            path: PathAndQuery::from_static(PATH),
            framed: Framed::new(&payload),
            payload,
        }
    }
}

impl Workload for EchoWorkload {
    type Client = EchoClient;

    fn client(&self, index: usize) -> EchoClient {
        match &self.pool {
            EchoPool::Lean(pool) => EchoClient::Lean(pool.client(index)),
            EchoPool::Tonic(pool) => EchoClient::Tonic(pool.client(index)),
        }
    }

    fn home(&self, index: usize) -> Option<Home> {
        match &self.pool {
            EchoPool::Lean(pool) => Some(pool.home(index).clone()),
            EchoPool::Tonic(_) => None,
        }
    }

    async fn call(&self, client: &mut EchoClient) -> Result<(), CallError> {
        let reply = match client {
            EchoClient::Lean(client) => client.unary(&self.path, &self.framed).await?,
            EchoClient::Tonic(client) => client.unary(&self.path, self.payload.clone()).await?,
        };
        if reply.len() == self.payload.len() {
            Ok(())
        } else {
            Err(CallError::BadReply)
        }
    }
}
