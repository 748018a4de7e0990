//! A lean gRPC client: HTTP/2 through `h2` directly, one task per connection.
//!
//! A call builds its request head, hands its request frame (framed once, before the run) to
//! `h2`, and reads the answer's frames as `Bytes` without copying them when a message arrives
//! whole. Each client holds its own `SendRequest` handle: as a client has at most one call in
//! flight, `h2` never holds one of its streams back, so no call has to wait for `ready()`.

use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use tokio::net::TcpStream;

use super::{CONNECT_TIMEOUT, CallError, Home, UNAVAILABLE};

/// Flow-control window of each stream and of each connection: large enough that the server
/// never waits for a window update on these small messages.
const WINDOW: u32 = 1 << 20;

/// A gRPC message in its frame (flag byte, length, message), prepared before the run so that a
/// call only clones a `Bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed(Bytes);

impl Framed {
    /// Frames an encoded message (uncompressed).
    pub fn new(message: &[u8]) -> Self {
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0);
        frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
        frame.put_slice(message);
        Framed(frame.freeze())
    }
}

/// A fixed set of HTTP/2 (h2c) connections to one gRPC server, each driven by its own task.
#[derive(Debug, Clone)]
pub struct GrpcPool {
    connections: Vec<Connection>,
    timeout: Duration,
}

#[derive(Debug, Clone)]
struct Connection {
    send: SendRequest<Bytes>,
    authority: Authority,
    home: Home,
}

impl GrpcPool {
    /// Opens `connections` connections to `target` (e.g. `http://127.0.0.1:9000`); calls made
    /// through the pool give up after `timeout`.
    pub async fn connect(
        target: &str,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let uri: Uri = target
            .parse()
            .with_context(|| format!("`{target}` is not a valid target URI"))?;
        anyhow::ensure!(
            uri.scheme() == Some(&Scheme::HTTP),
            "`{target}`: gRPC load needs an http:// target (h2c)"
        );
        let authority = uri
            .authority()
            .cloned()
            .with_context(|| format!("`{target}` has no host and port"))?;
        let mut pool = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let connection = open(&authority)
                .await
                .with_context(|| format!("connecting to {target}"))?;
            pool.push(connection);
        }
        Ok(GrpcPool {
            connections: pool,
            timeout,
        })
    }

    fn connection(&self, index: usize) -> &Connection {
        &self.connections[index % self.connections.len()]
    }

    /// The client for client number `index`: clients share the connections round-robin.
    pub fn client(&self, index: usize) -> GrpcClient {
        let connection = self.connection(index);
        GrpcClient {
            send: connection.send.clone(),
            authority: connection.authority.clone(),
            timeout: self.timeout,
        }
    }

    /// The task of the connection of client number `index`, where its loop should run.
    pub fn home(&self, index: usize) -> &Home {
        &self.connection(index).home
    }
}

/// Opens one h2c connection and spawns the task that drives it.
async fn open(authority: &Authority) -> anyhow::Result<Connection> {
    let address = if authority.port().is_some() {
        authority.as_str().to_owned()
    } else {
        format!("{}:80", authority.host())
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .handshake(stream)
        .await
        .context("HTTP/2 handshake")?;
    let home = Home::spawn(async move {
        let _ = connection.await;
    });
    // Once, not per call: waits until the server's settings are known.
    let send = send.ready().await.context("HTTP/2 handshake")?;
    Ok(Connection {
        send,
        authority: authority.clone(),
        home,
    })
}

/// One client's handle on a connection of a [`GrpcPool`].
#[derive(Debug, Clone)]
pub struct GrpcClient {
    send: SendRequest<Bytes>,
    authority: Authority,
    timeout: Duration,
}

impl GrpcClient {
    /// Makes a unary call with a prepared request; returns the encoded reply.
    pub async fn unary(
        &mut self,
        path: &PathAndQuery,
        request: &Framed,
    ) -> Result<Bytes, CallError> {
        let timeout = self.timeout;
        let call = async {
            let mut replies = self.start(path, request).await?;
            let reply = replies.message().await?.ok_or(CallError::BadReply)?;
            // The trailers carry the call's status.
            match replies.message().await? {
                None => Ok(reply),
                Some(_) => Err(CallError::BadReply),
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// Starts a server-streaming call with a prepared request; returns the stream of encoded
    /// replies once the server has answered with its headers. Dropping the stream cancels the
    /// call.
    pub async fn server_streaming(
        &mut self,
        path: &PathAndQuery,
        request: &Framed,
    ) -> Result<GrpcStream, CallError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.start(path, request))
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// Sends the request and waits for the response head.
    async fn start(
        &mut self,
        path: &PathAndQuery,
        request: &Framed,
    ) -> Result<GrpcStream, CallError> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path.clone())
            .build()
            .map_err(|_| CallError::BadReply)?;
        let mut head = Request::new(());
        *head.method_mut() = Method::POST;
        *head.uri_mut() = uri;
        let headers = head.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        let (response, mut body) = self.send.send_request(head, false).map_err(from_h2)?;
        body.send_data(request.0.clone(), true).map_err(from_h2)?;
        let response = response.await.map_err(from_h2)?;
        if response.status() != StatusCode::OK {
            return Err(CallError::Status(code_of_http_status(response.status())));
        }
        // A trailers-only answer: the status is in the head.
        let finished = match status_of(response.headers()) {
            Some(Ok(())) => true,
            Some(Err(error)) => return Err(error),
            None => false,
        };
        Ok(GrpcStream {
            body: response.into_body(),
            pending: Bytes::new(),
            finished,
        })
    }
}

/// The messages of an answer, as they arrive.
#[derive(Debug)]
pub struct GrpcStream {
    body: h2::RecvStream,
    /// Bytes received and not yet taken as messages.
    pending: Bytes,
    /// Whether the status has been read (OK).
    finished: bool,
}

impl GrpcStream {
    /// The next message; `None` once the server ended the call with status OK. Any other
    /// status is the error.
    pub async fn message(&mut self) -> Result<Option<Bytes>, CallError> {
        loop {
            if let Some(message) = take_message(&mut self.pending)? {
                return Ok(Some(message));
            }
            if self.finished {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(CallError::BadReply) // a truncated message
                };
            }
            match self.body.data().await {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.pending = join(std::mem::take(&mut self.pending), chunk);
                }
                Some(Err(error)) => return Err(from_h2(error)),
                None => {
                    let trailers = self.body.trailers().await.map_err(from_h2)?;
                    match trailers.as_ref().and_then(status_of) {
                        Some(Ok(())) => self.finished = true,
                        Some(Err(error)) => return Err(error),
                        // A stream that ends without a status.
                        None => return Err(CallError::Status(::tonic::Code::Internal)),
                    }
                }
            }
        }
    }
}

/// `pending` followed by `chunk`, copying only when both hold bytes.
fn join(pending: Bytes, chunk: Bytes) -> Bytes {
    if pending.is_empty() {
        return chunk;
    }
    let mut joined = BytesMut::with_capacity(pending.len() + chunk.len());
    joined.put(pending);
    joined.put(chunk);
    joined.freeze()
}

/// Takes the first whole message off `pending`, without copying it.
fn take_message(pending: &mut Bytes) -> Result<Option<Bytes>, CallError> {
    if pending.len() < 5 {
        return Ok(None);
    }
    if pending[0] != 0 {
        return Err(CallError::BadReply); // compressed: never asked for
    }
    let length = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]) as usize;
    if pending.len() < 5 + length {
        return Ok(None);
    }
    pending.advance(5);
    Ok(Some(pending.split_to(length)))
}

/// The `grpc-status` of a head or trailers, if it has one: `Ok` for OK.
fn status_of(headers: &HeaderMap) -> Option<Result<(), CallError>> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .map_or(::tonic::Code::Unknown, ::tonic::Code::from_i32);
    Some(match code {
        ::tonic::Code::Ok => Ok(()),
        code => Err(CallError::Status(code)),
    })
}

/// The gRPC code of an HTTP status other than 200, as the gRPC specification maps them.
fn code_of_http_status(status: StatusCode) -> ::tonic::Code {
    match status.as_u16() {
        400 => ::tonic::Code::Internal,
        401 => ::tonic::Code::Unauthenticated,
        403 => ::tonic::Code::PermissionDenied,
        404 => ::tonic::Code::Unimplemented,
        429 | 502 | 503 | 504 => ::tonic::Code::Unavailable,
        _ => ::tonic::Code::Unknown,
    }
}

/// The error of a failed HTTP/2 exchange: a stream reset by the server keeps its meaning,
/// anything else means the connection is unusable.
fn from_h2(error: h2::Error) -> CallError {
    match error.reason() {
        Some(h2::Reason::CANCEL) => CallError::Status(::tonic::Code::Cancelled),
        Some(h2::Reason::NO_ERROR) if error.is_remote() => {
            CallError::Status(::tonic::Code::Internal)
        }
        _ => UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn messages_are_framed_and_taken_back_whole() {
        let framed = Framed::new(b"hello");
        assert_eq!(&framed.0[..], b"\0\0\0\0\x05hello");
        let mut pending = join(framed.0.clone(), Framed::new(b"").0);
        assert_eq!(
            take_message(&mut pending),
            Ok(Some(Bytes::from_static(b"hello")))
        );
        assert_eq!(take_message(&mut pending), Ok(Some(Bytes::new())));
        assert_eq!(take_message(&mut pending), Ok(None));
        assert!(pending.is_empty());
    }

    #[test]
    fn a_message_split_over_chunks_waits_for_its_end() {
        let framed = Framed::new(b"split message").0;
        let mut pending = framed.slice(..7);
        assert_eq!(take_message(&mut pending), Ok(None));
        pending = join(pending, framed.slice(7..));
        assert_eq!(
            take_message(&mut pending),
            Ok(Some(Bytes::from_static(b"split message")))
        );
        let mut compressed = Bytes::from_static(b"\x01\0\0\0\x01x");
        assert_eq!(take_message(&mut compressed), Err(CallError::BadReply));
    }

    #[test]
    fn statuses_come_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_of(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(status_of(&headers), Some(Ok(())));
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        assert_eq!(
            status_of(&headers),
            Some(Err(CallError::Status(::tonic::Code::NotFound)))
        );
        assert_eq!(
            code_of_http_status(StatusCode::SERVICE_UNAVAILABLE),
            ::tonic::Code::Unavailable
        );
    }

    /// A real tonic server on 127.0.0.1 (the echo server), driven by the lean client.
    #[tokio::test]
    async fn unary_and_status_against_a_tonic_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::echo::serve(listener, async {
            let _ = stopped.await;
        }));
        let target = format!("http://{address}");
        let pool = GrpcPool::connect(&target, 2, Duration::from_secs(5))
            .await
            .unwrap();
        let path = PathAndQuery::from_static(crate::echo::PATH);
        let mut client = pool.client(1);
        for size in [0, 19, 100_000] {
            let payload = vec![b'x'; size];
            let reply = client.unary(&path, &Framed::new(&payload)).await.unwrap();
            assert_eq!(reply.len(), size);
        }
        // The loop of a client runs in its connection's task.
        let mut client = pool.client(0);
        let reply = pool
            .home(0)
            .run(async move { client.unary(&path, &Framed::new(b"home")).await })
            .await
            .unwrap();
        assert_eq!(reply, Ok(Bytes::from_static(b"home")));
        let missing = PathAndQuery::from_static("/echo.Echo/Missing");
        assert_eq!(
            pool.client(0).unary(&missing, &Framed::new(b"x")).await,
            Err(CallError::Status(::tonic::Code::Unimplemented))
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
