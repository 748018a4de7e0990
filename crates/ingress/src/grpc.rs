//! Dynamic gRPC: serves whatever methods discovery declared, with payloads kept as bytes.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::IngressState;

/// Largest request message the proxy accepts.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

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

/// Serves one gRPC call.
pub async fn serve(State(state): State<IngressState>, request: Request) -> Response {
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
    let (engine, route) = (engine.clone(), route.clone());
    let call = tower::service_fn(move |request: tonic::Request<Bytes>| {
        let (engine, route) = (engine.clone(), route.clone());
        async move {
            engine
                .call(&route, request.into_inner())
                .await
                .map(tonic::Response::new)
                .map_err(Status::from)
        }
    });
    tonic::server::Grpc::new(BytesCodec)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .unary(call, request)
        .await
        .map(Body::new)
}

/// A gRPC error response (trailers only).
fn status_response(status: Status) -> Response {
    status.into_http::<Body>().into_response()
}
