//! The forward chain: `cloudstate.e2e.Relay.Bounce{hops: N}` forwards to itself N times through
//! the proxy, then replies `Value{value: N}`. Each hop is one more action call: the proxy
//! resolves the forward and sends the next command to the user function. A reply with another
//! value is a `BadReply` (a hop lost or repeated).

use bytes::Bytes;
use http::uri::PathAndQuery;
use prost::Message;

use crate::proto::{self, e2e};
use crate::runner::Workload;
use crate::transport::{CallError, Framed, GrpcClient, GrpcPool, Home};

/// The `Relay.Bounce` workload: one prepared request, the same for every call.
#[derive(Debug)]
pub struct BounceWorkload {
    pool: GrpcPool,
    hops: u32,
    request: Framed,
    path: PathAndQuery,
}

impl BounceWorkload {
    /// Calls that go through `hops` forwards before the reply.
    pub fn new(pool: GrpcPool, hops: u32) -> Self {
        BounceWorkload {
            pool,
            hops,
            request: Framed::new(&e2e::BounceRequest { hops, seen: 0 }.encode_to_vec()),
            path: proto::path(e2e::RELAY, "Bounce"),
        }
    }

    /// The method the clients call.
    pub fn method(&self) -> &str {
        self.path.as_str()
    }
}

/// Whether `reply` is the answer of a chain of `hops` forwards.
pub fn reply_ok(reply: Bytes, hops: u32) -> bool {
    e2e::Value::decode(reply).is_ok_and(|value| value.value == i64::from(hops))
}

impl Workload for BounceWorkload {
    type Client = GrpcClient;

    fn client(&self, index: usize) -> GrpcClient {
        self.pool.client(index)
    }

    fn home(&self, index: usize) -> Option<Home> {
        Some(self.pool.home(index).clone())
    }

    async fn call(&self, client: &mut GrpcClient) -> Result<(), CallError> {
        let reply = client.unary(&self.path, &self.request).await?;
        if reply_ok(reply, self.hops) {
            Ok(())
        } else {
            Err(CallError::BadReply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_must_count_every_hop() {
        let value = |value| Bytes::from(e2e::Value { value }.encode_to_vec());
        assert!(reply_ok(value(4), 4));
        assert!(reply_ok(value(0), 0));
        assert!(!reply_ok(value(3), 4));
        assert!(!reply_ok(Bytes::from_static(&[0x0a, 0x01, b'x']), 0));
    }
}
