//! Connections to the target and the calls made over them.
//!
//! Every connection is opened before the run starts and the clients are spread over them
//! round-robin, so the hot path never waits for a lock or a connection to be set up. gRPC
//! clients may share HTTP/2 connections; HTTP/1.1 clients each have their own keep-alive
//! connection (one call in flight per connection), reopened if it breaks.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tonic::client::Grpc;
use tonic::codec::Streaming;
use tonic::transport::{Channel, Endpoint};

use crate::codec::BytesCodec;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed, as counted in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The server, or the gRPC stack on either side, ended the call with this status.
    Status(tonic::Code),
    /// No answer within the client's timeout (the command may still have been applied).
    Timeout,
    /// The server answered, but not with what the workload expected.
    BadReply,
}

impl CallError {
    /// Number of distinct error kinds: the 17 gRPC codes, then the client-side kinds.
    pub const KINDS: usize = 19;

    /// A dense index in `0..KINDS`, to count errors in a plain array.
    pub fn index(self) -> usize {
        match self {
            CallError::Status(code) => code as usize,
            CallError::Timeout => 17,
            CallError::BadReply => 18,
        }
    }

    /// The name of the kind with this index, as shown in the results (`Unavailable`,
    /// `ClientTimeout`, ...).
    pub fn name_of(index: usize) -> String {
        match index {
            17 => "ClientTimeout".to_owned(),
            18 => "BadReply".to_owned(),
            code => format!("{:?}", tonic::Code::from_i32(code as i32)),
        }
    }
}

impl From<tonic::Status> for CallError {
    fn from(status: tonic::Status) -> Self {
        CallError::Status(status.code())
    }
}

/// A fixed set of HTTP/2 (h2c) connections to one gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcPool {
    channels: Vec<Channel>,
    timeout: Duration,
}

impl GrpcPool {
    /// Opens `connections` connections to `target` (e.g. `http://127.0.0.1:9000`); calls made
    /// through the pool give up after `timeout`.
    pub async fn connect(
        target: &str,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(target.to_owned())
            .with_context(|| format!("`{target}` is not a valid target URI"))?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT);
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {target}"))?;
            channels.push(channel);
        }
        Ok(GrpcPool { channels, timeout })
    }

    /// The client for client number `index`: clients share the connections round-robin.
    pub fn client(&self, index: usize) -> GrpcClient {
        let channel = self.channels[index % self.channels.len()].clone();
        GrpcClient {
            grpc: Grpc::new(channel),
            timeout: self.timeout,
        }
    }
}

/// One client's handle on a connection of a [`GrpcPool`].
#[derive(Debug, Clone)]
pub struct GrpcClient {
    grpc: Grpc<Channel>,
    timeout: Duration,
}

impl GrpcClient {
    /// Makes a unary call with an already encoded request; returns the encoded reply.
    pub async fn unary(&mut self, path: &PathAndQuery, request: Bytes) -> Result<Bytes, CallError> {
        let call = async {
            self.grpc
                .ready()
                .await
                .map_err(|_| CallError::Status(tonic::Code::Unavailable))?;
            let reply = self
                .grpc
                .unary(tonic::Request::new(request), path.clone(), BytesCodec)
                .await?;
            Ok(reply.into_inner())
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// Starts a server-streaming call with an already encoded request; returns the stream of
    /// encoded replies once the server has answered with its headers. Dropping the stream
    /// cancels the call.
    pub async fn server_streaming(
        &mut self,
        path: &PathAndQuery,
        request: Bytes,
    ) -> Result<Streaming<Bytes>, CallError> {
        let call = async {
            self.grpc
                .ready()
                .await
                .map_err(|_| CallError::Status(tonic::Code::Unavailable))?;
            let stream = self
                .grpc
                .server_streaming(tonic::Request::new(request), path.clone(), BytesCodec)
                .await?;
            Ok(stream.into_inner())
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}

/// One HTTP/1.1 keep-alive connection per client to an HTTP/JSON server.
#[derive(Debug, Clone)]
pub struct HttpPool {
    connections: Vec<HttpClient>,
}

impl HttpPool {
    /// Opens `connections` connections to `target` (e.g. `http://127.0.0.1:9000`); calls made
    /// through the pool give up after `timeout`.
    pub async fn connect(
        target: &str,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let uri: http::Uri = target
            .parse()
            .with_context(|| format!("`{target}` is not a valid target URI"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http"),
            "`{target}`: HTTP load needs an http:// target"
        );
        let authority = uri
            .authority()
            .cloned()
            .with_context(|| format!("`{target}` has no host and port"))?;
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let sender = open(&authority)
                .await
                .with_context(|| format!("connecting to {target}"))?;
            pool.push(HttpClient {
                connection: Arc::new(Mutex::new(Some(sender))),
                authority: authority.clone(),
                timeout,
            });
        }
        Ok(HttpPool { connections: pool })
    }

    /// The client for client number `index`: its own connection if there are as many
    /// connections as clients.
    pub fn client(&self, index: usize) -> HttpClient {
        self.connections[index % self.connections.len()].clone()
    }
}

/// Opens one HTTP/1.1 connection, driven by its own task.
async fn open(authority: &Authority) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority.as_str()))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One client's HTTP/1.1 connection of an [`HttpPool`].
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// `None` once broken, until the next call reopens it.
    connection: Arc<Mutex<Option<SendRequest<Full<Bytes>>>>>,
    authority: Authority,
    timeout: Duration,
}

impl HttpClient {
    /// Sends a request with an optional JSON body; returns the response body of a 200. Any
    /// other status is the error of the JSON error body's gRPC `code`.
    pub async fn call(
        &mut self,
        method: Method,
        path: &PathAndQuery,
        json: Option<Bytes>,
    ) -> Result<Bytes, CallError> {
        let mut connection = self.connection.lock().await;
        let call = async {
            if connection.is_none() {
                *connection = Some(open(&self.authority).await.map_err(|_| UNAVAILABLE)?);
            }
            let sender = connection.as_mut().ok_or(UNAVAILABLE)?;
            sender.ready().await.map_err(|_| UNAVAILABLE)?;
            let mut request = Request::builder()
                .method(method)
                .uri(path.as_str())
                .header(http::header::HOST, self.authority.as_str());
            if json.is_some() {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(Full::new(json.unwrap_or_default()))
                .map_err(|_| CallError::BadReply)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|_| UNAVAILABLE)?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| UNAVAILABLE)?
                .to_bytes();
            if status == StatusCode::OK {
                Ok(body)
            } else {
                Err(error_of(&body))
            }
        };
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout));
        // A connection with a call left behind, or broken, is not reused.
        if matches!(result, Err(CallError::Timeout)) || result == Err(UNAVAILABLE) {
            *connection = None;
        }
        result
    }
}

/// What a failed call reports when the connection failed.
const UNAVAILABLE: CallError = CallError::Status(tonic::Code::Unavailable);

/// The error of a JSON error body (`{"code": 3, ...}`), `BadReply` if it has none.
fn error_of(body: &[u8]) -> CallError {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|error| error.get("code")?.as_i64())
        .and_then(|code| i32::try_from(code).ok())
        .map_or(CallError::BadReply, |code| {
            CallError::Status(tonic::Code::from_i32(code))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_have_distinct_indices_and_names() {
        let mut names = std::collections::HashSet::new();
        for index in 0..CallError::KINDS {
            assert!(names.insert(CallError::name_of(index)));
        }
        assert_eq!(CallError::Status(tonic::Code::Unavailable).index(), 14);
        assert_eq!(CallError::name_of(14), "Unavailable");
        assert_eq!(
            CallError::name_of(CallError::Timeout.index()),
            "ClientTimeout"
        );
        assert!(CallError::BadReply.index() < CallError::KINDS);
    }

    #[test]
    fn http_errors_are_the_codes_of_their_json_bodies() {
        let body = br#"{"code":3,"message":"no","status":"INVALID_ARGUMENT"}"#;
        assert_eq!(
            error_of(body),
            CallError::Status(tonic::Code::InvalidArgument)
        );
        assert_eq!(error_of(b"<html>"), CallError::BadReply);
    }
}
