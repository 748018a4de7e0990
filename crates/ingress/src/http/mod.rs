//! HTTP/JSON transcoding: the user function's methods called with JSON over HTTP/1.1 or HTTP/2,
//! on the same port as gRPC, following the `google.api.http` rules of its protos.
//!
//! The path of a request: the [`router`] finds the binding whose path template and HTTP method
//! match ([`rules`] compiled them when discovery was done, [`template`] matches paths); the
//! request message is assembled from the JSON body, the query string and the path variables
//! ([`json`]) and encoded to the bytes a gRPC client would send; the engine runs the call; the
//! reply is printed as JSON (or, for `google.api.HttpBody`, sent as it is). Server-streaming
//! replies are newline-delimited JSON. Errors are JSON objects with the gRPC code, its name and
//! a message, under the HTTP status the code maps to. `docs/http.md` describes it for users.

mod json;
mod router;
mod rules;
mod template;
mod transcoder;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cloudstate_engine::{Engine, Route};
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use prost::Message;
use prost_reflect::{DynamicMessage, Value};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::grpc;
use crate::{Error, IngressState};
use router::Router;
use rules::{Binding, Body as BodyRule, Output};
pub use transcoder::Transcoder;

/// Content type of JSON replies and errors.
const JSON: &str = "application/json";
/// Content type of server-streaming replies: one JSON object per line.
const NDJSON: &str = "application/x-ndjson";
/// Replies of a server-streaming call buffered before the client reads them.
const STREAM_BUFFER: usize = 16;

/// The HTTP API of a discovered user function: its routing table, built once.
pub(crate) struct HttpApi {
    engine: Engine,
    router: Router<Arc<Route>>,
}

impl HttpApi {
    /// Compiles the HTTP rules of every method `engine` serves.
    ///
    /// # Errors
    ///
    /// [`Error::HttpRule`], naming the method, if a rule cannot be served.
    pub(crate) fn new(engine: &Engine) -> Result<HttpApi, Error> {
        let mut bindings = Vec::new();
        // In declaration order, so that ties between overlapping rules resolve the same way on
        // every start.
        for service in engine.model().services() {
            for method in service.descriptor.methods() {
                let Some(route) = engine.route(&format!("/{}/{}", service.name, method.name()))
                else {
                    continue;
                };
                for binding in rules::bindings(&method)? {
                    bindings.push((binding, route.clone()));
                }
            }
        }
        Ok(HttpApi {
            engine: engine.clone(),
            router: Router::new(bindings)?,
        })
    }

    /// Serves one HTTP request.
    async fn call(&self, request: Request) -> Result<Response, Error> {
        let (parts, body) = request.into_parts();
        let found = self.router.find(&parts.method, parts.uri.path())?;
        let binding = found.binding;
        let metadata = grpc::metadata(found.target.method(), &parts.headers);
        let body = match binding.body {
            BodyRule::None => Bytes::new(),
            BodyRule::Whole | BodyRule::Field(_) => {
                check_content_type(&parts.headers)?;
                let limit = self.engine.max_message_size();
                axum::body::to_bytes(body, limit)
                    .await
                    .map_err(|error| body_error(&error, limit))?
            }
        };
        let payload = request_bytes(binding, &body, parts.uri.query(), &found.captures)?;
        let route = found.target;
        if binding.server_streaming {
            let requests = Box::pin(tokio_stream::once(Ok(payload)));
            let replies = self.engine.call_streaming(route, metadata, requests);
            return stream_response(binding.clone(), replies).await;
        }
        let reply = if binding.client_streaming {
            let requests = Box::pin(tokio_stream::once(Ok(payload)));
            let mut replies = self.engine.call_streaming(route, metadata, requests);
            match replies.next().await {
                Some(reply) => reply?,
                None => {
                    return Err(cloudstate_engine::Error::NoReply(binding.method.clone()).into());
                }
            }
        } else {
            self.engine.call(route, payload, metadata).await?
        };
        let (content_type, body) = render(binding, &reply)?;
        Ok(([(CONTENT_TYPE, content_type)], body).into_response())
    }
}

/// Serves a request that is not gRPC: the HTTP/JSON API, or a JSON error.
pub(crate) async fn serve(State(state): State<IngressState>, request: Request) -> Response {
    let Some(api) = state.http.get() else {
        return error_response(&Error::NotReady);
    };
    api.call(request)
        .await
        .unwrap_or_else(|error| error_response(&error))
}

/// Accepts a body that is JSON: `application/json` or `*/*+json` (with parameters), no content
/// type at all, or `application/x-www-form-urlencoded`, which `curl -d` sends by default (read
/// as JSON too, as grpc-gateway and most JSON gateways do; a form body then fails as JSON with
/// a 400 that says why).
fn check_content_type(headers: &http::HeaderMap) -> Result<(), Error> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text.split(';').next().unwrap_or_default().trim();
    let json = essence.eq_ignore_ascii_case(JSON)
        || essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"));
    if json {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(text.to_owned()))
    }
}

/// What reading the request body failed with: too large, or the client went away.
fn body_error(error: &axum::Error, limit: usize) -> Error {
    let too_large = std::error::Error::source(error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
    if too_large {
        Error::PayloadTooLarge(limit)
    } else {
        Error::BadRequest(format!("reading the request body failed: {error}"))
    }
}

/// Assembles the request message (body, then query parameters, then path variables: later
/// ones win) and encodes it as a gRPC client would.
fn request_bytes(
    binding: &Binding,
    body: &[u8],
    query: Option<&str>,
    captures: &[String],
) -> Result<Bytes, Error> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let mut message = match &binding.body {
        BodyRule::Whole if !empty => json::parse_message(&binding.input, body),
        BodyRule::Field(field) if !empty => json::parse_field(&binding.input, field, body),
        _ => Ok(DynamicMessage::new(binding.input.clone())),
    }
    .map_err(Error::BadRequest)?;
    // With `body: "*"` every field can come from the body: the query string is ignored.
    if !matches!(binding.body, BodyRule::Whole)
        && let Some(query) = query
    {
        set_query(binding, &mut message, query)?;
    }
    for (path, value) in binding.variables.iter().zip(captures) {
        path.set(&mut message, value)
            .map_err(|reason| Error::BadRequest(format!("path variable {reason}")))?;
    }
    Ok(message.encode_to_vec().into())
}

/// Sets the fields the query parameters name (`a.b.c=value`; repeated fields take repeated
/// parameters).
fn set_query(binding: &Binding, message: &mut DynamicMessage, query: &str) -> Result<(), Error> {
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let parts: Vec<&str> = name.split('.').collect();
        let path = json::FieldPath::resolve(&binding.input, &parts)
            .map_err(|reason| Error::BadRequest(format!("query parameter {name:?}: {reason}")))?;
        if !path.is_repeated() {
            if seen.iter().any(|other| *other == name) {
                return Err(Error::BadRequest(format!(
                    "query parameter {name:?} is given more than once, but the field is not \
                     repeated"
                )));
            }
            seen.push(name.to_string());
        }
        path.set(message, &value)
            .map_err(|reason| Error::BadRequest(format!("query parameter {reason}")))?;
    }
    Ok(())
}

/// Renders a reply: its content type and body.
fn render(binding: &Binding, reply: &[u8]) -> Result<(HeaderValue, Vec<u8>), Error> {
    let output = binding.output.message();
    let message = DynamicMessage::decode(output.clone(), reply).map_err(|error| {
        Error::InvalidReply(format!(
            "the reply of {} does not decode as {}: {error}",
            binding.method,
            output.full_name()
        ))
    })?;
    let printed = match &binding.output {
        Output::Message(_) => json::print_message(&message),
        Output::Field(_, field) => json::print_field(&message, field),
        Output::HttpBody(_) => return Ok(http_body(&message)),
    };
    let body = printed.map_err(|error| {
        Error::InvalidReply(format!(
            "the reply of {} cannot be printed as JSON: {error}",
            binding.method
        ))
    })?;
    Ok((HeaderValue::from_static(JSON), body))
}

/// The content type and data of a `google.api.HttpBody`.
fn http_body(message: &DynamicMessage) -> (HeaderValue, Vec<u8>) {
    let content_type = match message.get_field_by_name("content_type").as_deref() {
        Some(Value::String(text)) if !text.is_empty() => HeaderValue::from_str(text).ok(),
        _ => None,
    };
    let data = match message.get_field_by_name("data").as_deref() {
        Some(Value::Bytes(data)) => data.to_vec(),
        _ => Vec::new(),
    };
    let content_type =
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    (content_type, data)
}

/// Answers a server-streaming call with newline-delimited JSON, one reply per line, sent as
/// each arrives. If the call fails before its first reply the response is a plain error
/// response with its status; a later error becomes a last line `{"error": {...}}`.
async fn stream_response(
    binding: Arc<Binding>,
    mut replies: cloudstate_engine::ReplyStream,
) -> Result<Response, Error> {
    let first = match replies.next().await {
        Some(reply) => Some(line(&binding, reply?)?),
        None => None,
    };
    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(STREAM_BUFFER);
    tokio::spawn(async move {
        if let Some(first) = first
            && sender.send(Ok(first)).await.is_err()
        {
            return;
        }
        while let Some(reply) = replies.next().await {
            let (line, last) = match reply.map_err(Error::from).and_then(|r| line(&binding, r)) {
                Ok(line) => (line, false),
                Err(error) => (error_line(&error), true),
            };
            // The client went away (dropping the replies cancels the call), or an error ended it.
            if sender.send(Ok(line)).await.is_err() || last {
                return;
            }
        }
    });
    Ok((
        [(CONTENT_TYPE, NDJSON)],
        Body::from_stream(ReceiverStream::new(receiver)),
    )
        .into_response())
}

/// One line of a streamed reply.
fn line(binding: &Binding, reply: Bytes) -> Result<Bytes, Error> {
    let (_, mut body) = render(binding, &reply)?;
    body.push(b'\n');
    Ok(body.into())
}

/// The last line of a stream that failed: `{"error": {"code": .., "status": .., "message": ..}}`.
fn error_line(error: &Error) -> Bytes {
    let mut line = serde_json::json!({ "error": error_body(error) }).to_string();
    line.push('\n');
    line.into()
}

/// The JSON error body: the gRPC code (number and name) and the message.
fn error_body(error: &Error) -> serde_json::Value {
    let code = error.code();
    serde_json::json!({
        "code": code as i32,
        "status": code_name(code),
        "message": error.to_string(),
    })
}

/// An error as an HTTP response: the status the error maps to, and its JSON body.
pub(crate) fn error_response(error: &Error) -> Response {
    let mut response = (
        error.http_status(),
        [(CONTENT_TYPE, JSON)],
        error_body(error).to_string(),
    )
        .into_response();
    if let Error::MethodNotAllowed { allow, .. } = error
        && let Ok(allow) = HeaderValue::from_str(allow)
    {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

impl Error {
    /// The gRPC status code of this error, as HTTP clients see it in the error body.
    pub fn code(&self) -> Code {
        match self {
            Error::Call(error) => error.code(),
            Error::BadRequest(_) | Error::UnsupportedMediaType(_) => Code::InvalidArgument,
            Error::PayloadTooLarge(_) => Code::ResourceExhausted,
            Error::NoRoute { .. } => Code::NotFound,
            Error::MethodNotAllowed { .. } => Code::Unimplemented,
            Error::NotReady => Code::Unavailable,
            Error::Serve(_)
            | Error::HttpRule { .. }
            | Error::Descriptors(_)
            | Error::InvalidReply(_) => Code::Internal,
        }
    }

    /// The HTTP status of this error: that of its gRPC code (by the mapping `google.rpc.Code`
    /// documents), except for the errors HTTP has its own status for (405, 413, 415).
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge(_)
            | Error::Call(cloudstate_engine::Error::RequestTooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            other => http_status(other.code()),
        }
    }
}

/// The HTTP status of a gRPC status code, as `google.rpc.Code` documents it.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The name of a gRPC status code, as in `google.rpc.Code` (`INVALID_ARGUMENT`, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;
    use prost_reflect::DescriptorPool;
    use shopping_cart::proto::{AddLineItem, Cart, GetShoppingCart, LineItem, RemoveLineItem};

    use super::*;

    /// The shopping cart's bindings, each with its method's name.
    static CART: LazyLock<Router<String>> = LazyLock::new(|| {
        let pool = DescriptorPool::decode(shopping_cart::proto::FILE_DESCRIPTOR_SET).unwrap();
        let service = pool
            .get_service_by_name(shopping_cart::proto::shopping_cart::NAME)
            .unwrap();
        let mut bindings = Vec::new();
        for method in service.methods() {
            for binding in rules::bindings(&method).unwrap() {
                bindings.push((binding, method.name().to_owned()));
            }
        }
        Router::new(bindings).unwrap()
    });

    /// Transcodes a request as the handler does: the method it reaches and the request bytes.
    fn transcode(method: &str, uri: &str, body: &str) -> Result<(String, Bytes), Error> {
        let uri: http::Uri = uri.parse().unwrap();
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        let found = CART.find(&method, uri.path())?;
        let bytes = request_bytes(found.binding, body.as_bytes(), uri.query(), &found.captures)?;
        Ok((found.target.clone(), bytes))
    }

    /// Renders `reply` as the binding that `GET path` finds does.
    fn render_get(path: &str, reply: &impl Message) -> String {
        let found = CART.find(&http::Method::GET, path).unwrap();
        let (content_type, body) = render(found.binding, &reply.encode_to_vec()).unwrap();
        assert_eq!(content_type, JSON);
        String::from_utf8(body).unwrap()
    }

    fn item(product: &str, quantity: i32) -> LineItem {
        LineItem {
            product_id: product.into(),
            name: format!("{product} name"),
            quantity,
        }
    }

    #[test]
    fn transcodes_the_cart_rules_to_the_bytes_of_a_grpc_client() {
        let add = AddLineItem {
            user_id: "ann".into(),
            product_id: "apple".into(),
            name: "Apple".into(),
            quantity: 3,
        };
        let body = r#"{"productId": "apple", "name": "Apple", "quantity": 3}"#;
        let (method, bytes) = transcode("POST", "/cart/ann/items/add", body).unwrap();
        assert_eq!(
            (method.as_str(), bytes),
            ("AddItem", add.encode_to_vec().into())
        );
        // Original field names are accepted too; the path wins over the body; the query string
        // of a `body: "*"` rule is ignored.
        let body = r#"{"user_id": "bob", "product_id": "apple", "name": "Apple", "quantity": 3}"#;
        let (_, bytes) = transcode("POST", "/cart/ann/items/add?quantity=9", body).unwrap();
        assert_eq!(bytes, add.encode_to_vec());

        let remove = RemoveLineItem {
            user_id: "a b".into(),
            product_id: "é/1".into(),
        };
        let (method, bytes) =
            transcode("POST", "/cart/a%20b/items/%C3%A9%2F1/remove", "ignored").unwrap();
        assert_eq!(
            (method.as_str(), bytes),
            ("RemoveItem", remove.encode_to_vec().into())
        );

        let get = GetShoppingCart {
            user_id: "ann".into(),
        };
        for uri in [
            "/carts/ann",
            "/carts/ann/items",
            "/carts/x?user_id=ann",
            "/carts/ann?userId=x",
        ] {
            let expected = if uri.contains('x') && !uri.contains("?userId") {
                GetShoppingCart {
                    user_id: "x".into(),
                }
            } else {
                get.clone()
            };
            let (method, bytes) = transcode("GET", uri, "").unwrap();
            assert_eq!(
                (method.as_str(), bytes),
                ("GetCart", expected.encode_to_vec().into()),
                "{uri}"
            );
        }
        // The default route of a method with rules does not exist; an empty body is `{}`.
        let (method, bytes) = transcode("POST", "/cart/ann/items/add", " ").unwrap();
        assert_eq!(method, "AddItem");
        assert_eq!(
            bytes,
            AddLineItem {
                user_id: "ann".into(),
                ..Default::default()
            }
            .encode_to_vec()
        );
    }

    #[test]
    fn renders_replies_with_defaults_and_the_response_body() {
        let cart = Cart {
            items: vec![item("apple", 2), item("pear", 0)],
        };
        assert_eq!(
            render_get("/carts/ann", &cart),
            r#"{"items":[{"productId":"apple","name":"apple name","quantity":2},{"productId":"pear","name":"pear name","quantity":0}]}"#
        );
        assert_eq!(
            render_get("/carts/ann/items", &cart),
            r#"[{"productId":"apple","name":"apple name","quantity":2},{"productId":"pear","name":"pear name","quantity":0}]"#
        );
        assert_eq!(
            render_get("/carts/ann", &Cart::default()),
            r#"{"items":[]}"#
        );
        assert_eq!(render_get("/carts/ann/items", &Cart::default()), "[]");
        let found = CART.find(&http::Method::GET, "/carts/ann").unwrap();
        let error = render(found.binding, b"\xff\xff").unwrap_err();
        assert_eq!(error.http_status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            error
                .to_string()
                .contains("does not decode as com.example.shoppingcart.Cart")
        );
    }

    #[test]
    fn refuses_bad_requests_naming_the_field() {
        let error = |method: &str, uri: &str, body: &str| {
            let error = transcode(method, uri, body).unwrap_err();
            (error.http_status().as_u16(), error.to_string())
        };
        let (status, message) = error("POST", "/cart/ann/items/add", r#"{"quantity": "many"}"#);
        assert_eq!(status, 400);
        assert!(message.contains("at quantity"), "{message}");
        let (status, message) = error("POST", "/cart/ann/items/add", r#"{"colour": "red"}"#);
        assert_eq!(status, 400);
        assert!(message.contains("colour"), "{message}");
        let (status, message) = error("POST", "/cart/ann/items/add", r#"{"quantity": 1"#);
        assert_eq!(status, 400);
        assert!(message.contains("invalid JSON"), "{message}");
        let (status, message) = error("GET", "/carts/ann?colour=red", "");
        assert_eq!(status, 400);
        assert!(message.contains("query parameter \"colour\""), "{message}");
        let (status, message) = error("GET", "/carts/ann?user_id=a&user_id=b", "");
        assert_eq!(status, 400);
        assert!(message.contains("more than once"), "{message}");
        let (status, message) = error("GET", "/carts/%FF", "");
        assert_eq!(status, 400);
        assert!(message.contains("UTF-8"), "{message}");
        assert_eq!(error("GET", "/nowhere", "").0, 404);
        let not_allowed = transcode("DELETE", "/carts/ann", "").unwrap_err();
        assert_eq!(not_allowed.http_status(), StatusCode::METHOD_NOT_ALLOWED);
        let response = error_response(&not_allowed);
        assert_eq!(response.headers()[ALLOW], "GET");
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_payload_too_large() {
        let error = axum::body::to_bytes(Body::from(vec![b' '; 20]), 10)
            .await
            .unwrap_err();
        assert_eq!(
            body_error(&error, 10).http_status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn accepts_json_bodies_only() {
        let headers = |value: Option<&str>| {
            let mut headers = http::HeaderMap::new();
            if let Some(value) = value {
                headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            }
            check_content_type(&headers)
        };
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/merge-patch+json"),
            Some("application/x-www-form-urlencoded"),
        ] {
            assert!(headers(ok).is_ok(), "{ok:?}");
        }
        for refused in ["text/plain", "multipart/form-data", "application/jsonx"] {
            let error = headers(Some(refused)).unwrap_err();
            assert_eq!(error.http_status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    #[test]
    fn maps_grpc_codes_to_http_statuses() {
        let expected = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, status) in expected {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        let failure = Error::Call(cloudstate_engine::Error::CommandFailed {
            code: Code::NotFound,
            description: "Cannot remove item pear because it is not in the cart.".into(),
        });
        assert_eq!(
            error_body(&failure),
            serde_json::json!({
                "code": 5,
                "status": "NOT_FOUND",
                "message": "Cannot remove item pear because it is not in the cart.",
            })
        );
        let line = error_line(&failure);
        assert!(
            line.ends_with(b"}}\n") && line.starts_with(br#"{"error":{"#),
            "{line:?}"
        );
    }

    /// The binding of a server-streaming method (the default route).
    fn streaming_binding() -> Arc<Binding> {
        let proto = r#"
            syntax = "proto3";
            package s;
            import "kitchen.proto";
            service S { rpc Watch(test.Kitchen) returns (stream test.Inner); }
        "#;
        let pool =
            json::tests::pool(&[("kitchen.proto", json::tests::KITCHEN), ("s.proto", proto)]);
        let method = pool
            .get_service_by_name("s.S")
            .unwrap()
            .methods()
            .next()
            .unwrap();
        Arc::new(rules::bindings(&method).unwrap().remove(0))
    }

    fn replies(
        items: Vec<Result<Bytes, cloudstate_engine::Error>>,
    ) -> cloudstate_engine::ReplyStream {
        let (sender, receiver) = mpsc::channel(items.len().max(1));
        for item in items {
            sender.try_send(item).unwrap();
        }
        ReceiverStream::new(receiver)
    }

    fn inner(label: &str) -> Bytes {
        // test.Inner { label }
        let mut bytes = vec![0x0a, label.len() as u8];
        bytes.extend_from_slice(label.as_bytes());
        bytes.into()
    }

    fn failure(code: Code, description: &str) -> cloudstate_engine::Error {
        cloudstate_engine::Error::CommandFailed {
            code,
            description: description.into(),
        }
    }

    #[tokio::test]
    async fn streams_one_json_line_per_reply_and_ends_with_an_error_line() {
        let stream = replies(vec![
            Ok(inner("a")),
            Ok(inner("b")),
            Err(failure(Code::Unavailable, "gone")),
        ]);
        let response = stream_response(streaming_binding(), stream).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], NDJSON);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let lines: Vec<serde_json::Value> = std::str::from_utf8(&body)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"label": "a"}),
                serde_json::json!({"label": "b"}),
                serde_json::json!({"error": {"code": 14, "status": "UNAVAILABLE", "message": "gone"}}),
            ]
        );
    }

    #[tokio::test]
    async fn a_stream_failing_at_once_is_a_plain_error_response() {
        let stream = replies(vec![Err(failure(Code::PermissionDenied, "no"))]);
        let error = stream_response(streaming_binding(), stream)
            .await
            .unwrap_err();
        assert_eq!(error.http_status(), StatusCode::FORBIDDEN);
        // A reply that does not decode ends the stream with an error line too.
        let stream = replies(vec![Ok(inner("a")), Ok(Bytes::from_static(b"\xff"))]);
        let response = stream_response(streaming_binding(), stream).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.starts_with("{\"label\":\"a\"}\n{\"error\":"), "{text}");
        assert!(
            text.contains("INTERNAL") && text.ends_with("}}\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn answers_json_before_discovery_and_grpc_by_content_type() {
        use tower::ServiceExt;
        let ingress = crate::Ingress::new(
            Arc::new(cloudstate_store::MemoryStore::default()),
            Arc::new(prometheus_client::registry::Registry::default()),
        );
        let request = Request::builder()
            .uri("/carts/ann")
            .body(Body::empty())
            .unwrap();
        let response = ingress.router().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
        let request = Request::builder()
            .method("POST")
            .uri("/com.example.shoppingcart.ShoppingCart/GetCart")
            .header(CONTENT_TYPE, "application/grpc")
            .body(Body::empty())
            .unwrap();
        let response = ingress.router().oneshot(request).await.unwrap();
        // gRPC answers with HTTP 200 and the status in `grpc-status` (14: UNAVAILABLE).
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "14");
    }

    fn line_item() -> impl Strategy<Value = LineItem> {
        (any::<String>(), any::<String>(), any::<i32>()).prop_map(|(product_id, name, quantity)| {
            LineItem {
                product_id,
                name,
                quantity,
            }
        })
    }

    proptest! {
        /// JSON → proto → JSON: a reply printed as JSON and sent back as a request decodes to the
        /// same bytes, and printing is stable.
        #[test]
        fn cart_messages_round_trip_through_json(
            user_id in "[^/]{1,8}",
            items in prop::collection::vec(line_item(), 0..4),
        ) {
            let cart = Cart { items };
            let json = render_get("/carts/ann", &cart);
            let pool = DescriptorPool::decode(shopping_cart::proto::FILE_DESCRIPTOR_SET).unwrap();
            let descriptor = pool.get_message_by_name("com.example.shoppingcart.Cart").unwrap();
            let parsed = json::parse_message(&descriptor, json.as_bytes()).unwrap();
            prop_assert_eq!(parsed.encode_to_vec(), cart.encode_to_vec());
            prop_assert_eq!(json::print_message(&parsed).unwrap(), json.into_bytes());

            for item in &cart.items {
                let add = AddLineItem {
                    user_id: user_id.clone(),
                    product_id: item.product_id.clone(),
                    name: item.name.clone(),
                    quantity: item.quantity,
                };
                let body = serde_json::json!({
                    "productId": item.product_id, "name": item.name, "quantity": item.quantity,
                });
                let path = format!("/cart/{}/items/add", percent_encode(&user_id));
                let (_, bytes) = transcode("POST", &path, &body.to_string()).unwrap();
                prop_assert_eq!(bytes, add.encode_to_vec());
            }
        }

        /// Whatever the path, query and body, transcoding never panics.
        #[test]
        fn never_panics_on_any_request(
            method in prop::sample::select(vec!["GET", "POST", "DELETE"]),
            path in prop::sample::select(vec!["/cart/a/items/add", "/cart/a/items/b/remove", "/carts/a", "/carts/a/items", "/x"]),
            query in "[a-zA-Z_.=&%0-9]{0,20}",
            body in prop::collection::vec(any::<u8>(), 0..64),
            json in r#"[{}\[\]":,a-zA-Z0-9 .\-]{0,40}"#,
        ) {
            let uri = format!("{path}?{query}");
            if uri.parse::<http::Uri>().is_ok() {
                let _ = transcode(method, &uri, &String::from_utf8_lossy(&body));
                let _ = transcode(method, &uri, &json);
                let _ = transcode(method, &uri, &format!(r#"{{"quantity": {json}}}"#));
            }
        }
    }

    /// Percent-encodes every byte outside `[A-Za-z0-9]`.
    fn percent_encode(text: &str) -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}
