//! The physical limit: a raw tonic gRPC echo server, and the workload driving it.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
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
use crate::transport::{CallError, GrpcClient, GrpcPool};

/// The service name the echo server answers to.
pub const SERVICE: &str = "echo.Echo";

/// The one method the echo server serves.
pub const PATH: &str = "/echo.Echo/Echo";

/// Serves `/echo.Echo/Echo` (bytes in, same bytes out) on `address` until `shutdown` resolves.
pub async fn serve(
    address: SocketAddr,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(EchoService)
        .serve_with_shutdown(address, shutdown)
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

/// Echo calls with a fixed payload; a reply of another length counts as a bad reply.
#[derive(Debug)]
pub struct EchoWorkload {
    pool: GrpcPool,
    payload: Bytes,
}

impl EchoWorkload {
    /// Sends `payload_size` bytes per call over `pool`.
    pub fn new(pool: GrpcPool, payload_size: usize) -> Self {
        EchoWorkload {
            pool,
            payload: Bytes::from(vec![b'x'; payload_size]),
        }
    }
}

impl Workload for EchoWorkload {
    type Client = GrpcClient;

    fn client(&self, index: usize) -> GrpcClient {
        self.pool.client(index)
    }

    async fn call(&self, client: &mut GrpcClient) -> Result<(), CallError> {
        let path = PathAndQuery::from_static(PATH);
        let reply = client.unary(&path, self.payload.clone()).await?;
        if reply.len() == self.payload.len() {
            Ok(())
        } else {
            Err(CallError::BadReply)
        }
    }
}
