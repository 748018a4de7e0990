//! `google.protobuf.Any` with a zero-copy value.

use bytes::Bytes;
use prost::{Message, Name};

/// Prefix of the type URL of protobuf messages: `type.googleapis.com/<full message name>`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// `google.protobuf.Any`: a serialized message and the URL naming its type.
///
/// Unlike `prost_types::Any` the value is [`Bytes`], so decoding a protocol message that carries
/// a payload shares the receive buffer instead of copying it.
#[derive(Clone, PartialEq, Eq, Hash, Message)]
pub struct Any {
    /// `type.googleapis.com/<full message name>`, or a `p.cloudstate.io/<primitive>` /
    /// `json.cloudstate.io/<type>` URL for the support libraries' non-protobuf values.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The serialized value.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

impl Name for Any {
    const NAME: &'static str = "Any";
    const PACKAGE: &'static str = "google.protobuf";

    fn type_url() -> String {
        format!("{TYPE_URL_PREFIX}google.protobuf.Any")
    }
}

impl Any {
    /// The `Any` of a protobuf message, typed `type.googleapis.com/<full name>`.
    pub fn from_message<M: Message + Name>(message: &M) -> Self {
        Any {
            type_url: format!("{TYPE_URL_PREFIX}{}", M::full_name()),
            value: message.encode_to_vec().into(),
        }
    }

    /// The message name part of the type URL (everything after the last `/`).
    pub fn type_name(&self) -> &str {
        self.type_url
            .rsplit_once('/')
            .map_or(self.type_url.as_str(), |(_, name)| name)
    }

    /// Decodes the value as `M`, if the type URL names `M`.
    ///
    /// Returns `None` when the type differs and an error when the bytes do not decode.
    pub fn to_message<M: Message + Name + Default>(&self) -> Option<Result<M, prost::DecodeError>> {
        (self.type_name() == M::full_name()).then(|| M::decode(self.value.clone()))
    }
}
