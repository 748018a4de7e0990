//! Dynamic gRPC: serves whatever methods discovery declared, with payloads kept as bytes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes};
use cloudstate_engine::{EntityKind, MethodDef, ReplyStream};
use cloudstate_protocol::{Metadata, MetadataEntry, metadata_entry};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::metadata::{KeyAndValueRef, MetadataMap};

use crate::IngressState;
use crate::health::HealthService;
use crate::reflection::ProxyService;
use tonic_health::pb::health_server::HealthServer;
use tower::util::BoxCloneSyncService;

/// A codec that moves message bytes in and out of gRPC frames without decoding them.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Whether a request is gRPC (`content-type: application/grpc` or `application/grpc+...`).
pub fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value == "application/grpc"
                || value.starts_with("application/grpc+")
                || value.starts_with("application/grpc;")
        })
}

/// Serves one gRPC call, of whatever shape the method has.
pub async fn serve(State(state): State<IngressState>, request: Request) -> Response {
    if let Some(service) = proxy_service(&state, request.uri().path()) {
        return match tower::ServiceExt::oneshot(service, request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
    }
    let Some(engine) = state.engine.get() else {
        return status_response(Status::unavailable(
            "the proxy is starting: waiting for the user function to answer discovery",
        ));
    };
    let path = request.uri().path();
    let Some(route) = engine.route(path) else {
        return status_response(Status::unimplemented(format!(
            "unknown method {path}: the user function does not serve it"
        )));
    };
    let method = route.method();
    let metadata = metadata(method, request.headers());
    let streaming = (
        method.descriptor.is_client_streaming(),
        method.descriptor.is_server_streaming(),
    );
    let limit = engine.max_message_size();
    let mut grpc = tonic::server::Grpc::new(BytesCodec)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let (engine, route) = (engine.clone(), route.clone());
    let response = match streaming {
        (false, false) => {
            let call = tower::service_fn(move |request: tonic::Request<Bytes>| {
                let (engine, route, metadata) = (engine.clone(), route.clone(), metadata.clone());
                async move {
                    let reply = engine.call(&route, request.into_inner(), metadata).await?;
                    Ok::<_, Status>(tonic::Response::new(reply))
                }
            });
            grpc.unary(call, request).await
        }
        (false, true) => {
            let call = tower::service_fn(move |request: tonic::Request<Bytes>| {
                let requests = Box::pin(tokio_stream::once(Ok(request.into_inner())));
                let replies = engine.call_streaming(&route, metadata.clone(), requests);
                async move { Ok::<_, Status>(tonic::Response::new(statuses(replies))) }
            });
            grpc.server_streaming(call, request).await
        }
        (true, false) => {
            let call = tower::service_fn(move |request: tonic::Request<Streaming<Bytes>>| {
                let requests = Box::pin(request.into_inner().map(|r| r.map_err(too_large)));
                let mut replies = engine.call_streaming(&route, metadata.clone(), requests);
                let method = route.method().display_name();
                async move {
                    match replies.next().await {
                        Some(Ok(reply)) => Ok(tonic::Response::new(reply)),
                        Some(Err(error)) => Err(Status::from(error)),
                        None => Err(Status::internal(format!("{method} sent no reply"))),
                    }
                }
            });
            grpc.client_streaming(call, request).await
        }
        (true, true) => {
            let call = tower::service_fn(move |request: tonic::Request<Streaming<Bytes>>| {
                let requests = Box::pin(request.into_inner().map(|r| r.map_err(too_large)));
                let replies = engine.call_streaming(&route, metadata.clone(), requests);
                async move { Ok::<_, Status>(tonic::Response::new(statuses(replies))) }
            });
            grpc.streaming(call, request).await
        }
    };
    // A unary or server-streaming request that tonic refused to decode was answered with its
    // status in the headers.
    let response = response.map(Body::new);
    match Status::from_header_map(response.headers()) {
        Some(status) if is_too_large(&status) => status_response(too_large(status)),
        _ => response,
    }
}

/// Whether tonic refused a request message for its size (it says OUT_OF_RANGE).
fn is_too_large(status: &Status) -> bool {
    status.code() == tonic::Code::OutOfRange
        && status
            .message()
            .starts_with("Error, decoded message length too large")
}

/// A request message over the maximum message size is RESOURCE_EXHAUSTED, as gRPC's own
/// implementations say it.
fn too_large(status: Status) -> Status {
    if is_too_large(&status) {
        Status::resource_exhausted(format!(
            "the request message is larger than the maximum message size: {}",
            status.message()
        ))
    } else {
        status
    }
}

/// The proxy's own gRPC service at `path`, if it is one: health (always), reflection (once
/// discovery succeeded).
fn proxy_service(state: &IngressState, path: &str) -> Option<ProxyService> {
    let reflection = || state.reflection.get();
    if path.starts_with("/grpc.health.v1.Health/") {
        let health = HealthService {
            state: state.clone(),
        };
        Some(BoxCloneSyncService::new(HealthServer::new(health)))
    } else if path.starts_with("/grpc.reflection.v1.ServerReflection/") {
        reflection().map(|r| r.v1.clone())
    } else if path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") {
        reflection().map(|r| r.v1alpha.clone())
    } else {
        None
    }
}

/// A stream of replies as tonic sends them.
fn statuses(replies: ReplyStream) -> impl Stream<Item = Result<Bytes, Status>> + Send + 'static {
    replies.map(|reply| reply.map_err(Status::from))
}

/// The metadata a call of `method` carries: for actions, the request headers (text headers as
/// strings, `-bin` headers decoded, transport headers `te`, `content-type` and `grpc-*` left
/// out); none for entities, whose commands carry no metadata in the protocol.
pub(crate) fn metadata(method: &MethodDef, headers: &http::HeaderMap) -> Metadata {
    if method.service.kind != EntityKind::Action {
        return Metadata::default();
    }
    let entries = MetadataMap::from_headers(headers.clone())
        .iter()
        .filter_map(|entry| {
            let (key, value) = match entry {
                KeyAndValueRef::Ascii(key, value) => (
                    key.as_str(),
                    metadata_entry::Value::StringValue(value.to_str().ok()?.to_owned()),
                ),
                KeyAndValueRef::Binary(key, value) => (
                    key.as_str(),
                    metadata_entry::Value::BytesValue(value.to_bytes().ok()?),
                ),
            };
            let transport = key == "te" || key == "content-type" || key.starts_with("grpc-");
            (!transport).then(|| MetadataEntry {
                key: key.to_owned(),
                value: Some(value),
            })
        })
        .collect();
    Metadata { entries }
}

/// A gRPC error response (trailers only).
fn status_response(status: Status) -> Response {
    status.into_http::<Body>().into_response()
}
