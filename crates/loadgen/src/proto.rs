//! The messages of the user functions the workloads drive, written by hand from their .proto
//! files so that this crate builds without the examples and the end-to-end crate (a test keeps
//! the field numbers in step with the .proto files).
//!
//! Every workload prepares its request bytes before the run; these types encode them once and
//! decode the replies.

/// `cloudstate.e2e` (`crates/e2e/proto/e2e.proto`): the test function's `Counter` value entity
/// and `Relay` action.
pub mod e2e {
    /// The value entity.
    pub const COUNTER: &str = "cloudstate.e2e.Counter";
    /// The action.
    pub const RELAY: &str = "cloudstate.e2e.Relay";

    /// `cloudstate.e2e.IncrementRequest`: the argument of `Counter.Increment` and
    /// `Relay.ToCounter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IncrementRequest {
        /// The counter: the entity key.
        #[prost(string, tag = "1")]
        pub id: String,
        /// How much to add.
        #[prost(int64, tag = "2")]
        pub by: i64,
    }

    /// `cloudstate.e2e.CounterId`: the argument of `Counter.Get`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CounterId {
        /// The counter: the entity key.
        #[prost(string, tag = "1")]
        pub id: String,
    }

    /// `cloudstate.e2e.Value`: what the counter's methods and `Relay.Bounce` answer.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Value {
        /// The counter's value, or the hops a bounce went through.
        #[prost(int64, tag = "1")]
        pub value: i64,
    }

    /// `cloudstate.e2e.BounceRequest`: `Relay.Bounce` forwards to itself `hops` times.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BounceRequest {
        /// Forwards still to make.
        #[prost(uint32, tag = "1")]
        pub hops: u32,
        /// Forwards made so far.
        #[prost(uint32, tag = "2")]
        pub seen: u32,
    }
}

/// `com.example.crdts` (`examples/counters/proto/crdt_example.proto`): the counters example.
pub mod crdts {
    /// The service.
    pub const SERVICE: &str = "com.example.crdts.CrdtExample";

    /// `com.example.crdts.UpdateCounter`: the argument of `IncrementGCounter` and
    /// `UpdatePNCounter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UpdateCounter {
        /// The entity key.
        #[prost(string, tag = "1")]
        pub key: String,
        /// How much to add.
        #[prost(int64, tag = "2")]
        pub value: i64,
    }

    /// `com.example.crdts.Get`: the argument of `GetGCounter` and `GetPNCounter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Get {
        /// The entity key.
        #[prost(string, tag = "1")]
        pub key: String,
    }

    /// `com.example.crdts.CounterValue`: what the counter methods answer.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct CounterValue {
        /// The counter's value.
        #[prost(int64, tag = "1")]
        pub value: i64,
    }
}

/// `cloudstate.examples.chat.presence` (`examples/presence/proto/presence.proto`): the
/// presence example.
pub mod presence {
    /// The service.
    pub const SERVICE: &str = "cloudstate.examples.chat.presence.Presence";

    /// `cloudstate.examples.chat.presence.User`: the argument of `Connect` and `Monitor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct User {
        /// The user: the entity key.
        #[prost(string, tag = "1")]
        pub user_id: String,
    }

    /// `cloudstate.examples.chat.presence.OnlineStatus`: what `Monitor` streams.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct OnlineStatus {
        /// Whether the user is online.
        #[prost(bool, tag = "1")]
        pub online: bool,
    }
}

/// The gRPC path of `method` of `service`.
pub fn path(service: &str, method: &str) -> http::uri::PathAndQuery {
    let path = format!("/{service}/{method}");
    http::uri::PathAndQuery::try_from(path.as_str())
        .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The .proto file at `relative` (from the workspace root), its whitespace collapsed;
    /// `None` if it is not in this checkout.
    fn proto_text(relative: &str) -> Option<String> {
        let path = format!("{}/../../{relative}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    fn assert_contains(relative: &str, expected: &[&str]) {
        let Some(text) = proto_text(relative) else {
            return;
        };
        for expected in expected {
            assert!(
                text.contains(expected),
                "{relative} no longer has `{expected}`"
            );
        }
    }

    #[test]
    fn e2e_messages_match_the_proto() {
        assert_contains(
            "crates/e2e/proto/e2e.proto",
            &[
                "package cloudstate.e2e;",
                "service Counter {",
                "rpc Increment(IncrementRequest) returns (Value);",
                "rpc Get(CounterId) returns (Value);",
                "service Relay {",
                "rpc ToCounter(IncrementRequest) returns (Value);",
                "rpc Bounce(BounceRequest) returns (Value);",
                "message CounterId { string id = 1 [(cloudstate.entity_key) = true]; }",
                "message IncrementRequest { string id = 1 [(cloudstate.entity_key) = true]; \
                 int64 by = 2; }",
                "message Value { int64 value = 1; }",
                "message BounceRequest { uint32 hops = 1; uint32 seen = 2; }",
            ],
        );
    }

    #[test]
    fn crdt_messages_match_the_proto() {
        assert_contains(
            "examples/counters/proto/crdt_example.proto",
            &[
                "package com.example.crdts;",
                "service CrdtExample {",
                "rpc IncrementGCounter(UpdateCounter) returns (CounterValue)",
                "rpc GetGCounter(Get) returns (CounterValue)",
                "rpc UpdatePNCounter(UpdateCounter) returns (CounterValue)",
                "rpc GetPNCounter(Get) returns (CounterValue)",
                "message UpdateCounter { string key = 1 [(cloudstate.entity_key) = true]; \
                 int64 value = 2; }",
                "message CounterValue { int64 value = 1; }",
                "message Get { string key = 1 [(cloudstate.entity_key) = true]; }",
            ],
        );
    }

    #[test]
    fn presence_messages_match_the_proto() {
        assert_contains(
            "examples/presence/proto/presence.proto",
            &[
                "package cloudstate.examples.chat.presence;",
                "service Presence {",
                "rpc Connect(User) returns (stream google.protobuf.Empty)",
                "rpc Monitor(User) returns (stream OnlineStatus)",
                "message User { string user_id = 1 [(cloudstate.entity_key) = true]; }",
                "message OnlineStatus { bool online = 1; }",
            ],
        );
    }

    #[test]
    fn paths_name_service_and_method() {
        assert_eq!(
            path(e2e::RELAY, "Bounce").as_str(),
            "/cloudstate.e2e.Relay/Bounce"
        );
        assert_eq!(
            path(crdts::SERVICE, "UpdatePNCounter").as_str(),
            "/com.example.crdts.CrdtExample/UpdatePNCounter"
        );
    }
}
