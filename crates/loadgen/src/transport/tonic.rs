//! The reference gRPC client: tonic used the way its documentation shows, for the echo
//! baseline's comparison with the lean client.
//!
//! One `Channel` per connection, clients spread over them round-robin, each call a `ready()`
//! then a `unary()` on a `tonic::client::Grpc`. A `Channel` hands each call to a buffer task
//! before the connection's task sends it: this is the path the lean client avoids, and the
//! echo baseline measures both in the same run (`echo --client tonic`).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use super::{CONNECT_TIMEOUT, CallError};
use crate::codec::BytesCodec;

/// A fixed set of tonic channels (one HTTP/2 connection each) to one gRPC server.
#[derive(Debug, Clone)]
pub struct TonicPool {
    channels: Vec<Channel>,
    timeout: Duration,
}

impl TonicPool {
    /// Opens `connections` channels to `target`; calls give up after `timeout`.
    pub async fn connect(
        target: &str,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(target.to_owned())
            .with_context(|| format!("`{target}` is not a valid target URI"))?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT);
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {target}"))?;
            channels.push(channel);
        }
        Ok(TonicPool { channels, timeout })
    }

    /// The client for client number `index`: clients share the channels round-robin.
    pub fn client(&self, index: usize) -> TonicClient {
        let channel = self.channels[index % self.channels.len()].clone();
        TonicClient {
            grpc: Grpc::new(channel),
            timeout: self.timeout,
        }
    }
}

/// One client's handle on a channel of a [`TonicPool`].
#[derive(Debug, Clone)]
pub struct TonicClient {
    grpc: Grpc<Channel>,
    timeout: Duration,
}

impl TonicClient {
    /// Makes a unary call with an encoded request; returns the encoded reply.
    pub async fn unary(&mut self, path: &PathAndQuery, request: Bytes) -> Result<Bytes, CallError> {
        let call = async {
            self.grpc
                .ready()
                .await
                .map_err(|_| CallError::Status(tonic::Code::Unavailable))?;
            let reply = self
                .grpc
                .unary(tonic::Request::new(request), path.clone(), BytesCodec)
                .await?;
            Ok(reply.into_inner())
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }
}
