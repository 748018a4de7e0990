//! A lean HTTP/1.1 JSON client: one keep-alive connection per client, owned by the client's
//! task.
//!
//! A request (head and body) is prepared once, before the run, as the bytes that go on the
//! wire; a call writes them and parses the answer's head with `httparse` from a buffer the
//! client reuses. No task, channel or lock sits between a client and its socket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::Method;
use http::uri::Authority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CONNECT_TIMEOUT, CallError, UNAVAILABLE};

/// Most header lines an answer may have.
const MAX_HEADERS: usize = 32;

/// A request in its wire form, head and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest(Bytes);

impl HttpRequest {
    /// `method path` to `authority`, with `json` as the body if given.
    pub fn new(method: &Method, path: &str, authority: &Authority, json: Option<&[u8]>) -> Self {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
        match json {
            Some(json) => head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                json.len()
            )),
            None if method == Method::POST || method == Method::PUT => {
                head.push_str("Content-Length: 0\r\n");
            }
            None => {}
        }
        head.push_str("\r\n");
        let mut wire = BytesMut::with_capacity(head.len() + json.map_or(0, <[u8]>::len));
        wire.put_slice(head.as_bytes());
        wire.put_slice(json.unwrap_or_default());
        HttpRequest(wire.freeze())
    }
}

/// The connections to an HTTP/JSON server, one per client, opened before the run.
#[derive(Debug, Clone)]
pub struct HttpPool {
    authority: Authority,
    /// Taken by the clients; a client that finds none connects on its first call.
    connections: Arc<Mutex<Vec<Option<TcpStream>>>>,
    timeout: Duration,
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
        let mut streams = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let stream = open(&authority)
                .await
                .with_context(|| format!("connecting to {target}"))?;
            streams.push(Some(stream));
        }
        Ok(HttpPool {
            authority,
            connections: Arc::new(Mutex::new(streams)),
            timeout,
        })
    }

    /// Prepares a request to this pool's server.
    pub fn request(&self, method: &Method, path: &str, json: Option<&[u8]>) -> HttpRequest {
        HttpRequest::new(method, path, &self.authority, json)
    }

    /// The client for client number `index`, with connection `index` if it is still there.
    pub fn client(&self, index: usize) -> HttpClient {
        let stream = self
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get_mut(index)
            .and_then(Option::take);
        HttpClient {
            stream,
            authority: self.authority.clone(),
            timeout: self.timeout,
            buffer: BytesMut::with_capacity(4096),
        }
    }
}

async fn open(authority: &Authority) -> anyhow::Result<TcpStream> {
    let address = if authority.port().is_some() {
        authority.as_str().to_owned()
    } else {
        format!("{}:80", authority.host())
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One client's keep-alive connection.
#[derive(Debug)]
pub struct HttpClient {
    /// `None` once broken or closed, until the next call reopens it.
    stream: Option<TcpStream>,
    authority: Authority,
    timeout: Duration,
    /// What has been read and not yet parsed.
    buffer: BytesMut,
}

impl HttpClient {
    /// Prepares a request to this client's server.
    pub fn request(&self, method: &Method, path: &str, json: Option<&[u8]>) -> HttpRequest {
        HttpRequest::new(method, path, &self.authority, json)
    }

    /// Sends a prepared request; returns the body of a 200. Any other status is the error of
    /// the JSON error body's gRPC `code`.
    pub async fn call(&mut self, request: &HttpRequest) -> Result<Bytes, CallError> {
        let result = tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .unwrap_or(Err(CallError::Timeout));
        match result {
            Ok(Answer {
                close,
                status,
                body,
            }) => {
                if close {
                    self.stream = None;
                }
                if status == 200 {
                    Ok(body)
                } else {
                    Err(error_of(&body))
                }
            }
            Err(error) => {
                // A connection with an answer left behind, or broken, is not reused.
                self.stream = None;
                Err(error)
            }
        }
    }

    async fn exchange(&mut self, request: &HttpRequest) -> Result<Answer, CallError> {
        self.buffer.clear();
        if self.stream.is_none() {
            self.stream = Some(open(&self.authority).await.map_err(|_| UNAVAILABLE)?);
        }
        let (Some(stream), buffer) = (self.stream.as_mut(), &mut self.buffer) else {
            return Err(UNAVAILABLE);
        };
        stream
            .write_all(&request.0)
            .await
            .map_err(|_| UNAVAILABLE)?;
        let head = loop {
            if let Some(head) = parse_head(buffer)? {
                break head;
            }
            fill(stream, buffer).await?;
        };
        buffer.advance(head.length);
        let body = match head.body {
            BodyLength::Exactly(length) => {
                while buffer.len() < length {
                    fill(stream, buffer).await?;
                }
                buffer.split_to(length).freeze()
            }
            BodyLength::Chunked => read_chunked(stream, buffer).await?,
            BodyLength::UntilClose => {
                while stream.read_buf(buffer).await.map_err(|_| UNAVAILABLE)? > 0 {}
                buffer.split().freeze()
            }
        };
        Ok(Answer {
            close: head.close || head.body == BodyLength::UntilClose,
            status: head.status,
            body,
        })
    }
}

/// A complete answer.
struct Answer {
    close: bool,
    status: u16,
    body: Bytes,
}

/// How the body of an answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Exactly(usize),
    Chunked,
    UntilClose,
}

/// What the head of an answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Bytes of the head, blank line included.
    length: usize,
    status: u16,
    body: BodyLength,
    /// Whether the server closes the connection after this answer.
    close: bool,
}

/// The head at the start of `buffer`, `None` if it is not complete yet.
fn parse_head(buffer: &[u8]) -> Result<Option<Head>, CallError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(CallError::BadReply),
    };
    let status = response.code.ok_or(CallError::BadReply)?;
    let mut close = response.version == Some(0);
    let mut body = if status == 204 || status == 304 || status < 200 {
        BodyLength::Exactly(0)
    } else {
        BodyLength::UntilClose
    };
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| CallError::BadReply)?;
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = value.trim().parse().map_err(|_| CallError::BadReply)?;
            body = BodyLength::Exactly(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            body = BodyLength::Chunked;
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(Head {
        length,
        status,
        body,
        close,
    }))
}

/// Reads more of the answer into `buffer`; the end of the connection is an error.
async fn fill(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<(), CallError> {
    buffer.reserve(4096);
    match stream.read_buf(buffer).await {
        Ok(0) | Err(_) => Err(UNAVAILABLE),
        Ok(_) => Ok(()),
    }
}

/// Reads a chunked body (and any trailer lines after it).
async fn read_chunked(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<Bytes, CallError> {
    let mut body = BytesMut::new();
    loop {
        let (header, size) = match httparse::parse_chunk_size(buffer) {
            Ok(httparse::Status::Complete((header, size))) => (
                header,
                usize::try_from(size).map_err(|_| CallError::BadReply)?,
            ),
            Ok(httparse::Status::Partial) => {
                fill(stream, buffer).await?;
                continue;
            }
            Err(_) => return Err(CallError::BadReply),
        };
        if size == 0 {
            buffer.advance(header);
            // Trailer lines, then a blank line.
            loop {
                match buffer.windows(2).position(|pair| pair == b"\r\n") {
                    Some(0) => {
                        buffer.advance(2);
                        return Ok(body.freeze());
                    }
                    Some(line) => buffer.advance(line + 2),
                    None => fill(stream, buffer).await?,
                }
            }
        }
        while buffer.len() < header + size + 2 {
            fill(stream, buffer).await?;
        }
        body.put_slice(&buffer[header..header + size]);
        buffer.advance(header + size + 2);
    }
}

/// The error of a JSON error body (`{"code": 3, ...}`), `BadReply` if it has none.
fn error_of(body: &[u8]) -> CallError {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|error| error.get("code")?.as_i64())
        .and_then(|code| i32::try_from(code).ok())
        .map_or(CallError::BadReply, |code| {
            CallError::Status(::tonic::Code::from_i32(code))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[test]
    fn http_errors_are_the_codes_of_their_json_bodies() {
        let body = br#"{"code":3,"message":"no","status":"INVALID_ARGUMENT"}"#;
        assert_eq!(
            error_of(body),
            CallError::Status(::tonic::Code::InvalidArgument)
        );
        assert_eq!(error_of(b"<html>"), CallError::BadReply);
    }

    #[test]
    fn requests_are_prepared_whole() {
        let authority = Authority::from_static("127.0.0.1:9000");
        let request = HttpRequest::new(&Method::POST, "/cart/a/items/add", &authority, Some(b"{}"));
        assert_eq!(
            &request.0[..],
            b"POST /cart/a/items/add HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\
              Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let request = HttpRequest::new(&Method::GET, "/carts/a", &authority, None);
        assert_eq!(
            &request.0[..],
            b"GET /carts/a HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"
        );
    }

    #[test]
    fn heads_say_how_long_the_body_is() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{}").unwrap();
        assert_eq!(
            head,
            Some(Head {
                length: 39,
                status: 200,
                body: BodyLength::Exactly(12),
                close: false
            })
        );
        let head = parse_head(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.body, head.close),
            (404, BodyLength::Chunked, true)
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap(), None);
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(CallError::BadReply));
    }

    /// Serves canned answers on 127.0.0.1: one per request line read, in turn.
    async fn server(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let mut answers = answers.into_iter();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("GET ") {
                    let Some(answer) = answers.next() else { break };
                    write.write_all(answer).await.unwrap();
                }
            }
        });
        (target, task)
    }

    #[tokio::test]
    async fn answers_of_every_length_kind_are_read_on_one_connection() {
        let (target, server) = server(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n{\"code\": 5 }",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let pool = HttpPool::connect(&target, 1, Duration::from_secs(5))
            .await
            .unwrap();
        let request = pool.request(&Method::GET, "/", None);
        let mut client = pool.client(0);
        assert_eq!(
            client.call(&request).await,
            Ok(Bytes::from_static(b"hello"))
        );
        assert_eq!(
            client.call(&request).await,
            Ok(Bytes::from_static(b"abcde"))
        );
        assert_eq!(
            client.call(&request).await,
            Err(CallError::Status(::tonic::Code::NotFound))
        );
        assert_eq!(client.call(&request).await, Ok(Bytes::new()));
        drop(client);
        server.await.unwrap();
    }
}
