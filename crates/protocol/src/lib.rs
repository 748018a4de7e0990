//! The Cloudstate protocol, wire-compatible with the original (protocol version 0.2).
//!
//! The crate root is the `cloudstate` protobuf package (discovery and the messages every entity
//! type shares); each entity type's package is a module. Generated from the `.proto` files in
//! `proto/`, which `docs/protocol.md` specifies in prose.
//!
//! `google.protobuf.Any` is the crate's own [`Any`], whose value is [`Bytes`]: payloads pass
//! through the proxy without being copied or decoded.

mod any;

pub use any::{Any, TYPE_URL_PREFIX};

/// Generated code; the protocol's rpc names (`handle`, `reportError`) are not Rust-cased, and
/// only some messages and fields have comments in the `.proto` files (`docs/protocol.md`
/// documents them all).
#[allow(non_camel_case_types, clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/cloudstate.rs"));

    /// `cloudstate.eventsourced`: event sourced entities.
    pub mod eventsourced {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.eventsourced.rs"));
    }

    /// `cloudstate.valueentity`: value (key-value) entities.
    pub mod valueentity {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.valueentity.rs"));
    }

    /// `cloudstate.action`: stateless actions.
    pub mod action {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.action.rs"));
    }

    /// `cloudstate.crdt`: CRDT entities.
    pub mod crdt {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.crdt.rs"));
    }

    /// `google.api`: HTTP transcoding annotations.
    pub mod google_api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

pub use generated::*;

/// The protocol version this implementation speaks.
pub const PROTOCOL_MAJOR_VERSION: i32 = 0;
/// The protocol version this implementation speaks.
pub const PROTOCOL_MINOR_VERSION: i32 = 2;

/// The default largest message, in bytes, that the proxy and a user function exchange (and that
/// the proxy accepts from clients): gRPC's own default receive limit, so that user functions
/// written with any support library accept whatever the proxy sends them. The proxy's
/// `--max-message-size` and the SDK's `Server::max_message_size` change it; both sides must
/// agree (see docs/protocol.md, "Message sizes").
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Entity type names, as they appear in `Entity.entity_type` and `ProxyInfo.supported_entity_types`.
pub mod entity_type {
    /// `cloudstate.eventsourced.EventSourced`.
    pub const EVENT_SOURCED: &str = "cloudstate.eventsourced.EventSourced";
    /// `cloudstate.valueentity.ValueEntity`.
    pub const VALUE_ENTITY: &str = "cloudstate.valueentity.ValueEntity";
    /// `cloudstate.crdt.Crdt`.
    pub const CRDT: &str = "cloudstate.crdt.Crdt";
    /// `cloudstate.action.ActionProtocol`.
    pub const ACTION: &str = "cloudstate.action.ActionProtocol";
}

/// Field and method option numbers the proxy reads from user descriptors.
pub mod option_number {
    /// `(cloudstate.entity_key)` on a field.
    pub const ENTITY_KEY: u32 = 1080;
    /// The pre-0.2 number of the entity key option, still used by older support libraries.
    pub const LEGACY_ENTITY_KEY: u32 = 50002;
    /// `(cloudstate.eventing)` on a method.
    pub const EVENTING: u32 = 1081;
    /// `(google.api.http)` on a method.
    pub const HTTP_RULE: u32 = 72_295_728;
}

/// The serialized `FileDescriptorSet` of every protocol and annotation file, imports included.
pub const DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/protocol_descriptor_set.bin"));

/// The annotation `.proto` files that user protos import (`cloudstate/entity_key.proto`,
/// `google/api/annotations.proto`, ...), as `(import path, source)`, for build tools that
/// compile user protos.
pub const ANNOTATION_PROTOS: &[(&str, &str)] = &[
    (
        "cloudstate/entity_key.proto",
        include_str!("../proto/cloudstate/entity_key.proto"),
    ),
    (
        "cloudstate/legacy_entity_key.proto",
        include_str!("../proto/cloudstate/legacy_entity_key.proto"),
    ),
    (
        "cloudstate/eventing.proto",
        include_str!("../proto/cloudstate/eventing.proto"),
    ),
    (
        "google/api/annotations.proto",
        include_str!("../proto/google/api/annotations.proto"),
    ),
    (
        "google/api/http.proto",
        include_str!("../proto/google/api/http.proto"),
    ),
    (
        "google/api/httpbody.proto",
        include_str!("../proto/google/api/httpbody.proto"),
    ),
];

impl Failure {
    /// A failure of one command with the given description.
    pub fn for_command(command_id: i64, description: impl Into<String>) -> Self {
        Failure {
            command_id,
            description: description.into(),
            ..Failure::default()
        }
    }
}

impl Reply {
    /// A reply carrying `payload` and no metadata.
    pub fn with_payload(payload: Any) -> Self {
        Reply {
            payload: Some(payload),
            metadata: None,
        }
    }
}
