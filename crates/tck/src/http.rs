//! Minimal HTTP clients of the proxy: HTTP/1.1 for its HTTP/JSON API (one request per
//! connection), and a raw gRPC call on an HTTP/2 connection of its own, for a client that
//! vanishes mid-call.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HOST, TE};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::Error;
use crate::relay::PATIENCE;

/// An HTTP response, read whole.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// `POST http://<address><path>` with `body` as `application/json`.
pub async fn post_json(address: SocketAddr, path: &str, body: &str) -> Result<HttpReply, Error> {
    send(address, Method::POST, path, Some(body)).await
}

/// `GET http://<address><path>`.
pub async fn get(address: SocketAddr, path: &str) -> Result<HttpReply, Error> {
    send(address, Method::GET, path, None).await
}

async fn send(
    address: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> Result<HttpReply, Error> {
    let what = format!("{method} {path}");
    let exchange = async {
        let stream = TcpStream::connect(address).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, address.to_string());
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .map_err(std::io::Error::other)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok::<_, std::io::Error>(HttpReply {
            status,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    match tokio::time::timeout(PATIENCE, exchange).await {
        Err(_) => Err(Error::Check(format!(
            "{what}: no answer within {PATIENCE:?}"
        ))),
        Ok(Err(error)) => Err(Error::Check(format!("{what}: {error}"))),
        Ok(Ok(reply)) => Ok(reply),
    }
}

/// A bidirectional gRPC call on an HTTP/2 connection of its own, framed by hand, so that the
/// client can vanish mid-call (close its connection) as a crashed client does. (A tonic client
/// cannot cancel a call whose request stream is still open: hyper keeps the stream alive.)
pub struct RawGrpcCall {
    requests: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    responses: Incoming,
    buffer: BytesMut,
    connection: JoinHandle<()>,
}

impl RawGrpcCall {
    /// Opens a connection to `address` and starts a call of `path` (`/<service>/<method>`).
    pub async fn start(address: SocketAddr, path: &str) -> Result<Self, Error> {
        let what = format!("gRPC call of {path}");
        let start = async {
            let stream = TcpStream::connect(address).await?;
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
            let connection = tokio::spawn(async move {
                connection.await.ok();
            });
            let (requests, body) = mpsc::channel(16);
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!("http://{address}{path}"))
                .header(CONTENT_TYPE, "application/grpc")
                .header(TE, "trailers")
                .body(StreamBody::new(ReceiverStream::new(body)))
                .map_err(std::io::Error::other)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>(RawGrpcCall {
                requests,
                responses: response.into_body(),
                buffer: BytesMut::new(),
                connection,
            })
        };
        match tokio::time::timeout(PATIENCE, start).await {
            Err(_) => Err(Error::Check(format!(
                "{what}: no answer within {PATIENCE:?}"
            ))),
            Ok(Err(error)) => Err(Error::Check(format!("{what}: {error}"))),
            Ok(Ok(call)) => Ok(call),
        }
    }

    /// Sends one request message.
    pub async fn send<M: Message>(&self, message: &M) -> Result<(), Error> {
        let encoded = message.encode_to_vec();
        let mut frame = BytesMut::with_capacity(5 + encoded.len());
        frame.extend_from_slice(&[0]);
        frame.extend_from_slice(
            &u32::try_from(encoded.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        frame.extend_from_slice(&encoded);
        self.requests
            .send(Ok(Frame::data(frame.freeze())))
            .await
            .map_err(|_| Error::Check("the call's request stream is closed".into()))
    }

    /// The next response message, decoded as `M`; `None` at the end of the responses.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, Error> {
        let read = async {
            loop {
                if self.buffer.len() >= 5 {
                    let length = u32::from_be_bytes([
                        self.buffer[1],
                        self.buffer[2],
                        self.buffer[3],
                        self.buffer[4],
                    ]) as usize;
                    if self.buffer.len() >= 5 + length {
                        self.buffer.advance(5);
                        let message = self.buffer.split_to(length);
                        return M::decode(message).map(Some).map_err(std::io::Error::other);
                    }
                }
                match self.responses.frame().await {
                    None => return Ok(None),
                    Some(frame) => {
                        if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
                            self.buffer.extend_from_slice(&data);
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(PATIENCE, read).await {
            Err(_) => Err(Error::Check(format!("no response within {PATIENCE:?}"))),
            Ok(result) => result.map_err(|error| Error::Check(format!("response: {error}"))),
        }
    }

    /// Closes the connection at once, without ending the call.
    pub fn vanish(self) {
        self.connection.abort();
    }
}
