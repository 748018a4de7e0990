//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), over the user function's
//! descriptors, so that grpcurl and friends can list and describe the served services.

use std::convert::Infallible;

use axum::body::Body;
use cloudstate_engine::Engine;
use tower::util::BoxCloneSyncService;

/// A gRPC service of the proxy's own (not the user function's).
pub(crate) type ProxyService =
    BoxCloneSyncService<http::Request<Body>, http::Response<tonic::body::Body>, Infallible>;

/// The reflection services of both versions, built once discovery succeeded.
pub(crate) struct Reflection {
    pub v1: ProxyService,
    pub v1alpha: ProxyService,
}

/// Names the health service advertises beside the user's services.
const HEALTH: &str = "grpc.health.v1.Health";

impl Reflection {
    /// Reflection over the engine's descriptors, advertising the served services, the health
    /// service and the reflection service itself.
    pub fn new(engine: &Engine) -> Result<Self, tonic_reflection::server::Error> {
        let model = engine.model();
        let descriptors = model.descriptor_set().as_ref();
        let builder = |reflection: &str| {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(descriptors)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(reflection)
                .with_service_name(HEALTH);
            for service in model.services() {
                builder = builder.with_service_name(service.name.clone());
            }
            builder
        };
        Ok(Reflection {
            v1: BoxCloneSyncService::new(
                builder("grpc.reflection.v1.ServerReflection").build_v1()?,
            ),
            v1alpha: BoxCloneSyncService::new(
                builder("grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?,
            ),
        })
    }
}
