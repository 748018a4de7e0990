//! Connections to the target and the calls made over them.
//!
//! Every connection is opened before the run starts and the clients are spread over them
//! round-robin, so the hot path never waits for a lock or a connection to be set up.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::codec::BytesCodec;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed, as counted in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The server, or the gRPC stack on either side, ended the call with this status.
    Status(tonic::Code),
    /// No answer within the client's timeout (the command may still have been applied).
    Timeout,
    /// The server answered, but not with what the workload expected.
    BadReply,
}

impl CallError {
    /// Number of distinct error kinds: the 17 gRPC codes, then the client-side kinds.
    pub const KINDS: usize = 19;

    /// A dense index in `0..KINDS`, to count errors in a plain array.
    pub fn index(self) -> usize {
        match self {
            CallError::Status(code) => code as usize,
            CallError::Timeout => 17,
            CallError::BadReply => 18,
        }
    }

    /// The name of the kind with this index, as shown in the results (`Unavailable`,
    /// `ClientTimeout`, ...).
    pub fn name_of(index: usize) -> String {
        match index {
            17 => "ClientTimeout".to_owned(),
            18 => "BadReply".to_owned(),
            code => format!("{:?}", tonic::Code::from_i32(code as i32)),
        }
    }
}

impl From<tonic::Status> for CallError {
    fn from(status: tonic::Status) -> Self {
        CallError::Status(status.code())
    }
}

/// A fixed set of HTTP/2 (h2c) connections to one gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcPool {
    channels: Vec<Channel>,
    timeout: Duration,
}

impl GrpcPool {
    /// Opens `connections` connections to `target` (e.g. `http://127.0.0.1:9000`); calls made
    /// through the pool give up after `timeout`.
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
        Ok(GrpcPool { channels, timeout })
    }

    /// The client for client number `index`: clients share the connections round-robin.
    pub fn client(&self, index: usize) -> GrpcClient {
        let channel = self.channels[index % self.channels.len()].clone();
        GrpcClient {
            grpc: Grpc::new(channel),
            timeout: self.timeout,
        }
    }
}

/// One client's handle on a connection of a [`GrpcPool`].
#[derive(Debug, Clone)]
pub struct GrpcClient {
    grpc: Grpc<Channel>,
    timeout: Duration,
}

impl GrpcClient {
    /// Makes a unary call with an already encoded request; returns the encoded reply.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_have_distinct_indices_and_names() {
        let mut names = std::collections::HashSet::new();
        for index in 0..CallError::KINDS {
            assert!(names.insert(CallError::name_of(index)));
        }
        assert_eq!(CallError::Status(tonic::Code::Unavailable).index(), 14);
        assert_eq!(CallError::name_of(14), "Unavailable");
        assert_eq!(
            CallError::name_of(CallError::Timeout.index()),
            "ClientTimeout"
        );
        assert!(CallError::BadReply.index() < CallError::KINDS);
    }
}
