//! Readiness, as `/ready` and as the gRPC health service (`grpc.health.v1.Health`).
//!
//! The proxy is ready when discovery succeeded, the store answers and the user function
//! answers a gRPC call (so a frozen user function is not ready either). Every check asks all three afresh, so readiness turns false while the
//! user function or the store is down and true again when it is back.

use std::pin::Pin;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::IngressState;

/// How long a readiness check waits for the store or the user function.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often `Watch` re-checks readiness.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the proxy can serve calls now; why not otherwise.
pub(crate) async fn readiness(state: &IngressState) -> Result<(), String> {
    let Some(engine) = state.engine.get() else {
        return Err("waiting for the user function to answer discovery".into());
    };
    match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err("the store does not answer".into()),
    }
    engine.user_function().probe(CHECK_TIMEOUT).await
}

/// The gRPC health service: the whole server (`""`) and every served service are `SERVING`
/// exactly when the proxy is ready.
pub(crate) struct HealthService {
    pub state: IngressState,
}

impl HealthService {
    async fn status(&self, service: &str) -> Result<ServingStatus, Status> {
        let known =
            service.is_empty()
                || self.state.engine.get().is_some_and(|engine| {
                    engine.model().services().iter().any(|s| s.name == service)
                });
        if !known && self.state.engine.get().is_some() {
            return Err(Status::not_found(format!("unknown service {service}")));
        }
        Ok(match readiness(&self.state).await {
            Ok(()) => ServingStatus::Serving,
            Err(_) => ServingStatus::NotServing,
        })
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = self.status(&request.into_inner().service).await?;
        Ok(Response::new(HealthCheckResponse {
            status: status.into(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let checker = HealthService {
            state: self.state.clone(),
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let status = checker.status(&service).await;
                let changed = match (&status, last) {
                    (Ok(status), Some(previous)) => *status != previous,
                    _ => true,
                };
                if changed {
                    last = status.as_ref().ok().copied();
                    let message = status.map(|status| HealthCheckResponse {
                        status: status.into(),
                    });
                    if sender.send(message).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_INTERVAL) => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
