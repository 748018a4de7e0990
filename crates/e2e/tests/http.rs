//! HTTP/JSON transcoding end to end: the real proxy binary in front of the real user functions,
//! called over HTTP/1.1 with a real HTTP client (hyper), on the same port as gRPC.
//!
//! The shopping cart's `google.api.http` rules, the default route of methods without rules (the
//! test function), the JSON mapping (defaults printed, int64 as strings), server streaming as
//! newline-delimited JSON, and every error a client can get, with its status and JSON body.

use bytes::Bytes;
use cloudstate_e2e::{Service, UserFunction};
use cloudstate_testutil::free_port;
use http::header::{ALLOW, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// An HTTP response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("{error}: not JSON: {:?}", self.body))
    }

    fn content_type(&self) -> &str {
        self.headers[CONTENT_TYPE].to_str().unwrap()
    }

    /// Checks a JSON error reply: HTTP status, gRPC code name, and a part of the message.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str, message: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.content_type(), "application/json");
        let body = self.json();
        assert_eq!(body["status"], code, "{body}");
        assert!(body["code"].is_u64(), "{body}");
        let text = body["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "{text:?} does not contain {message:?}"
        );
    }
}

/// An HTTP/1.1 client of the proxy on `port`.
struct Http {
    port: u16,
}

impl Http {
    /// Sends one request on a new connection (the body as JSON, if any) and reads the reply.
    async fn send(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let content_type = body.map(|_| "application/json");
        self.send_as(method, path, content_type, body.unwrap_or_default())
            .await
    }

    async fn send_as(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Reply {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "127.0.0.1");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &str) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }
}

fn cart_service() -> (Service, Http) {
    let service = Service::rust_cart("memory", &[]).unwrap();
    let http = Http {
        port: service.proxy.port,
    };
    (service, http)
}

fn test_function_service() -> (Service, Http) {
    let user_function = UserFunction::test_function(free_port()).unwrap();
    let service = Service::with(user_function, "memory", &[]).unwrap();
    let http = Http {
        port: service.proxy.port,
    };
    (service, http)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cart_over_its_http_rules() {
    let (service, http) = cart_service();

    let reply = http.get("/carts/ann").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.body, r#"{"items":[]}"#);

    // `body: "*"` with the user from the path; lowerCamelCase and original names both accepted.
    let reply = http
        .post(
            "/cart/ann/items/add",
            r#"{"productId": "apple", "name": "Apple", "quantity": 2}"#,
        )
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "{}"));
    let reply = http
        .post(
            "/cart/ann/items/add",
            r#"{"product_id": "pear", "name": "Pear", "quantity": 1}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Percent-encoded path variables are decoded.
    let reply = http
        .post(
            "/cart/ann/items/add",
            r#"{"productId": "kiwi fruit", "quantity": 4}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = http
        .send(Method::POST, "/cart/ann/items/kiwi%20fruit/remove", None)
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "{}"));

    // Defaults are printed: the empty name of nothing here, but every field of every item.
    let reply = http.get("/carts/ann").await;
    assert_eq!(
        reply.json(),
        json!({"items": [
            {"productId": "apple", "name": "Apple", "quantity": 2},
            {"productId": "pear", "name": "Pear", "quantity": 1},
        ]})
    );
    // The additional binding with `response_body: "items"`.
    let reply = http.get("/carts/ann/items").await;
    assert_eq!(
        reply.json(),
        json!([
            {"productId": "apple", "name": "Apple", "quantity": 2},
            {"productId": "pear", "name": "Pear", "quantity": 1},
        ])
    );

    let reply = http
        .send(Method::POST, "/cart/ann/items/apple/remove", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // The same entity over gRPC, on the same port.
    let mut cart = service.cart().await.unwrap();
    assert_eq!(cart.get("ann").await.unwrap(), vec![("pear".into(), 1)]);
    cart.add("ann", "fig", 3).await.unwrap();
    let reply = http.get("/carts/ann/items").await;
    assert_eq!(
        reply.json(),
        json!([
            {"productId": "pear", "name": "Pear", "quantity": 1},
            {"productId": "fig", "name": "fig name", "quantity": 3},
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_is_json_with_its_status() {
    let (_service, http) = cart_service();
    let add = "/cart/bob/items/add";

    http.post(add, r#"{"productId": "apple", "quantity": 2"#)
        .await
        .assert_error(400, "INVALID_ARGUMENT", "invalid JSON");
    http.post(add, r#"{"productId": "apple", "colour": "red"}"#)
        .await
        .assert_error(400, "INVALID_ARGUMENT", "colour");
    http.post(add, r#"{"productId": "apple", "quantity": "two"}"#)
        .await
        .assert_error(400, "INVALID_ARGUMENT", "at quantity");
    http.post(add, r#"{"productId": "apple", "quantity": 1.5}"#)
        .await
        .assert_error(400, "INVALID_ARGUMENT", "quantity");
    http.send_as(Method::POST, add, Some("text/plain"), r#"{"quantity": 1}"#)
        .await
        .assert_error(415, "INVALID_ARGUMENT", "text/plain");
    // What `curl -d` sends, and no content type at all, are read as JSON.
    let plum = r#"{"productId": "plum", "quantity": 1}"#;
    let form = Some("application/x-www-form-urlencoded");
    let curly = "/cart/curly/items/add";
    for content_type in [form, None] {
        let added = http.send_as(Method::POST, curly, content_type, plum).await;
        assert_eq!(
            added.status.as_u16(),
            200,
            "{content_type:?}: {}",
            added.body
        );
    }
    http.send_as(Method::POST, curly, form, "productId=plum&quantity=1")
        .await
        .assert_error(400, "INVALID_ARGUMENT", "invalid JSON");
    http.get("/carts/bob?colour=red")
        .await
        .assert_error(400, "INVALID_ARGUMENT", "colour");
    http.get("/carts/%FF")
        .await
        .assert_error(400, "INVALID_ARGUMENT", "UTF-8");

    // The user function's failures, with the code it chose.
    http.post(add, r#"{"productId": "apple", "quantity": -1}"#)
        .await
        .assert_error(
            400,
            "INVALID_ARGUMENT",
            "Cannot add negative quantity of item apple",
        );
    http.send(Method::POST, "/cart/bob/items/pear/remove", None)
        .await
        .assert_error(
            404,
            "NOT_FOUND",
            "Cannot remove item pear because it is not in the cart.",
        );
    // An empty entity key is refused by the proxy.
    http.get("/carts/")
        .await
        .assert_error(400, "INVALID_ARGUMENT", "no entity key");

    // Routing.
    http.get("/nowhere")
        .await
        .assert_error(404, "NOT_FOUND", "no HTTP rule matches GET /nowhere");
    let reply = http.send(Method::DELETE, "/carts/bob", None).await;
    reply.assert_error(405, "UNIMPLEMENTED", "does not accept DELETE");
    assert_eq!(reply.headers[ALLOW], "GET");
    let reply = http.get(add).await;
    reply.assert_error(405, "UNIMPLEMENTED", "does not accept GET");
    assert_eq!(reply.headers[ALLOW], "POST");
    // Methods with rules have no default route.
    http.post("/com.example.shoppingcart.ShoppingCart/GetCart", "{}")
        .await
        .assert_error(404, "NOT_FOUND", "no HTTP rule");

    // Nothing was added by the failed requests.
    assert_eq!(http.get("/carts/bob").await.body, r#"{"items":[]}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_without_rules_on_the_default_route() {
    let (_service, http) = test_function_service();
    let increment = "/cloudstate.e2e.Counter/Increment";

    // int64 in and out as strings (numbers are accepted in).
    let reply = http.post(increment, r#"{"id": "c1", "by": "5"}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json(), json!({"value": "5"}));
    let reply = http
        .post(increment, r#"{"id": "c1", "by": 9007199254740993}"#)
        .await;
    assert_eq!(reply.json(), json!({"value": "9007199254740998"}));
    // An empty body is an empty message; defaults are printed.
    let reply = http
        .send(Method::POST, "/cloudstate.e2e.Relay/Echo", None)
        .await;
    assert_eq!(reply.body, r#"{"text":""}"#);
    let reply = http.get(increment).await;
    reply.assert_error(405, "UNIMPLEMENTED", "does not accept GET");

    // A failure with FAILED_PRECONDITION maps to 400 (google.rpc's mapping).
    http.post(
        "/cloudstate.e2e.Counter/Fail",
        r#"{"id": "c2", "message": "no way"}"#,
    )
    .await
    .assert_error(400, "FAILED_PRECONDITION", "no way");
    // A forward: the reply is the target's.
    let reply = http
        .post(
            "/cloudstate.e2e.Relay/ToCounter",
            r#"{"id": "c1", "by": "1"}"#,
        )
        .await;
    assert_eq!(reply.json(), json!({"value": "9007199254740999"}));

    // Client streaming over HTTP: one message.
    let reply = http
        .post("/cloudstate.e2e.Relay/Concat", r#"{"text": "alone"}"#)
        .await;
    assert_eq!(reply.json(), json!({"text": "alone"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_streaming_as_newline_delimited_json() {
    let (_service, http) = test_function_service();

    let reply = http
        .post(
            "/cloudstate.e2e.Relay/Repeat",
            r#"{"text": "hi", "times": 3}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.content_type(), "application/x-ndjson");
    assert_eq!(
        reply.body,
        "{\"text\":\"hi 1\"}\n{\"text\":\"hi 2\"}\n{\"text\":\"hi 3\"}\n"
    );
    // No messages: an empty body.
    let reply = http
        .post(
            "/cloudstate.e2e.Relay/Repeat",
            r#"{"text": "hi", "times": 0}"#,
        )
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, ""));
    // A bad request fails before the stream starts: a plain JSON error.
    http.post("/cloudstate.e2e.Relay/Repeat", r#"{"times": -1}"#)
        .await
        .assert_error(400, "INVALID_ARGUMENT", "times");
    // Bidirectional streaming: one message in, its replies out.
    let reply = http
        .post("/cloudstate.e2e.Relay/Shout", r#"{"text": "quiet"}"#)
        .await;
    assert_eq!(reply.body, "{\"text\":\"QUIET\"}\n");
}
