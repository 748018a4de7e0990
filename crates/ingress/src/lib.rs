//! The front door of the Cloudstate proxy.
//!
//! One port serves the user function's services over gRPC (HTTP/2, h2c) and the health
//! endpoints over HTTP/1.1 or HTTP/2:
//! - `/live`: 200 as soon as the process serves;
//! - `/ready`: 200 once discovery succeeded and the store answers, 503 otherwise;
//! - `/metrics`: the proxy's metrics in the Prometheus (OpenMetrics) text format;
//! - anything with a gRPC content type: the method discovery declared at that path
//!   ([`grpc`]), UNAVAILABLE until discovery is done, UNIMPLEMENTED for unknown paths.

pub mod grpc;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloudstate_engine::Engine;
use cloudstate_store::Store;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Errors of the ingress.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket failed.
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// What request handlers share.
#[derive(Clone)]
pub struct IngressState {
    /// Set once discovery succeeded.
    engine: Arc<OnceLock<Engine>>,
    store: Arc<dyn Store>,
    metrics: Arc<Registry>,
}

/// The proxy's HTTP/gRPC server, before and after discovery.
#[derive(Clone)]
pub struct Ingress {
    state: IngressState,
}

impl Ingress {
    /// An ingress that answers health checks against `store`, serves `metrics` at `/metrics`,
    /// and serves no methods until [`Ingress::set_engine`] is called.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Registry>) -> Self {
        Ingress {
            state: IngressState {
                engine: Arc::new(OnceLock::new()),
                store,
                metrics,
            },
        }
    }

    /// Starts serving the user function's methods through `engine`. Only the first call has an
    /// effect.
    pub fn set_engine(&self, engine: Engine) {
        let _ = self.state.engine.set(engine);
    }

    /// The routes of the proxy's port.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/live", get(live))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .fallback(dispatch)
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting connections and
    /// waits for in-flight requests to finish.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
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
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(state): State<IngressState>) -> Response {
    if state.engine.get().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the user function to answer discovery",
        )
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(error)) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the store does not answer").into_response(),
    }
}

async fn dispatch(state: State<IngressState>, request: Request) -> Response {
    if grpc::is_grpc(&request) {
        grpc::serve(state, request).await
    } else {
        (StatusCode::NOT_FOUND, "not found").into_response()
    }
}
