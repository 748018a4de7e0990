//! The front door of the Cloudstate proxy.
//!
//! One port serves the user function's services over gRPC (HTTP/2, h2c) and the health
//! endpoints over HTTP/1.1 or HTTP/2:
//! - `/live`: 200 as soon as the process serves;
//! - `/ready`: 200 while discovery has succeeded, the store answers and the user function
//!   answers (a bounded gRPC probe), 503 otherwise (the gRPC health service says the same);
//! - `/metrics`: the proxy's metrics in the Prometheus (OpenMetrics) text format;
//! - anything with a gRPC content type: the method discovery declared at that path
//!   ([`grpc`]), UNAVAILABLE until discovery is done, UNIMPLEMENTED for unknown paths; and the
//!   proxy's own `grpc.health.v1.Health` and `grpc.reflection.v1[alpha].ServerReflection`;
//! - anything else: the HTTP/JSON API that the methods' `google.api.http` rules declare
//!   (`docs/http.md`), with JSON errors (404 for paths no rule matches).
//!
//! CORS is off unless [`Ingress::with_cors`] allows origins ([`cors`]).

pub mod cors;
pub mod grpc;
mod health;
mod http;
mod reflection;

#[doc(hidden)]
pub use http::Transcoder;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use cloudstate_engine::Engine;
use cloudstate_store::Store;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Errors of the ingress: serving, refusing the user function's HTTP rules, and what an
/// HTTP/JSON request can fail with ([`Error::code`] and [`Error::http_status`] say how a client
/// sees it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket failed.
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
    /// The user function's descriptors cannot be served by reflection.
    #[error("the user function's descriptors cannot be served by reflection: {0}")]
    Descriptors(String),
    /// A `google.api.http` rule of the user function cannot be served.
    #[error("invalid HTTP rule for {method}: {reason}")]
    HttpRule {
        /// The method's full name, `package.Service.Method`.
        method: String,
        /// What is wrong with the rule.
        reason: String,
    },
    /// An HTTP request that cannot be transcoded: malformed JSON, an unknown field, a value of
    /// the wrong type, a bad path variable or query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// A request body that is not JSON.
    #[error("unsupported content type {0:?}: send the body as application/json")]
    UnsupportedMediaType(String),
    /// A request body larger than the proxy accepts.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No HTTP rule matches the request's path.
    #[error("no HTTP rule matches {method} {path}")]
    NoRoute {
        /// The request's HTTP method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// HTTP rules match the request's path, but not with its HTTP method.
    #[error("{path} does not accept {method}; it accepts {allow}")]
    MethodNotAllowed {
        /// The request's HTTP method.
        method: String,
        /// The request's path.
        path: String,
        /// The methods it accepts, comma-separated (the `Allow` header).
        allow: String,
    },
    /// Discovery has not completed yet.
    #[error("the proxy is starting: waiting for the user function to answer discovery")]
    NotReady,
    /// The call failed in the engine (or the user function failed it).
    #[error(transparent)]
    Call(#[from] cloudstate_engine::Error),
    /// A reply that cannot be sent as JSON (it does not decode as the method's output type).
    #[error("{0}")]
    InvalidReply(String),
}

/// What request handlers share.
#[derive(Clone)]
pub struct IngressState {
    /// Set once discovery succeeded.
    engine: Arc<OnceLock<Engine>>,
    /// The HTTP/JSON routing table; set with the engine.
    http: Arc<OnceLock<http::HttpApi>>,
    /// gRPC server reflection over the user function's descriptors; set with the engine.
    reflection: Arc<OnceLock<reflection::Reflection>>,
    store: Arc<dyn Store>,
    metrics: Arc<Registry>,
}

/// The proxy's HTTP/gRPC server, before and after discovery.
#[derive(Clone)]
pub struct Ingress {
    state: IngressState,
    cors: Option<cors::CorsOrigins>,
}

impl Ingress {
    /// An ingress that answers health checks against `store`, serves `metrics` at `/metrics`,
    /// and serves no methods until [`Ingress::set_engine`] is called.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Registry>) -> Self {
        Ingress {
            state: IngressState {
                engine: Arc::new(OnceLock::new()),
                http: Arc::new(OnceLock::new()),
                reflection: Arc::new(OnceLock::new()),
                store,
                metrics,
            },
            cors: None,
        }
    }

    /// Lets web pages of `origins` call the proxy from a browser (CORS, see [`cors`]).
    pub fn with_cors(mut self, origins: cors::CorsOrigins) -> Self {
        self.cors = Some(origins);
        self
    }

    /// Starts serving the user function's methods through `engine`, over gRPC and HTTP/JSON.
    /// Only the first successful call has an effect.
    ///
    /// # Errors
    ///
    /// [`Error::HttpRule`] if a method's `google.api.http` rule cannot be served; then nothing
    /// is served, and the caller should refuse the user function.
    pub fn set_engine(&self, engine: Engine) -> Result<(), Error> {
        let api = http::HttpApi::new(&engine)?;
        let reflection = reflection::Reflection::new(&engine)
            .map_err(|error| Error::Descriptors(error.to_string()))?;
        let _ = self.state.http.set(api);
        let _ = self.state.reflection.set(reflection);
        let _ = self.state.engine.set(engine);
        Ok(())
    }

    /// The routes of the proxy's port.
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/live", get(live))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .fallback(dispatch)
            .with_state(self.state.clone());
        match &self.cors {
            Some(origins) => router.layer(cors::layer(origins)),
            None => router,
        }
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting connections and
    /// waits for in-flight requests to finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        // Without TCP_NODELAY, a streamed message written while the previous one is still
        // unacknowledged waits for the client's delayed ACK (about 40 ms).
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY on a client connection");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

async fn live() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<IngressState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.metrics) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(state): State<IngressState>) -> Response {
    match health::readiness(&state).await {
        Ok(()) => "ready".into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn dispatch(state: State<IngressState>, request: Request) -> Response {
    if grpc::is_grpc(&request) {
        grpc::serve(state, request).await
    } else {
        http::serve(state, request).await
    }
}
