//! The SDK's error type.

/// Errors of the SDK: registration problems found at start-up, protocol violations by the proxy,
/// payloads that do not decode, and server I/O.
///
/// Command failures that a client sees are not errors of the SDK: handlers return
/// [`Failure`](crate::Failure) for those.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The descriptor set given to [`Server::new`](crate::Server::new) does not decode.
    #[error("invalid descriptor set: {0}")]
    InvalidDescriptorSet(prost::DecodeError),
    /// A registered service (entity or action) does not match the descriptor set (unknown
    /// service or method, handler types or shape that differ from the method's, a streamed
    /// method of an entity) or is registered twice.
    #[error("entity {service}: {reason}")]
    InvalidEntity {
        /// The entity's service (full name).
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// An `Any` names a type the receiving side does not know (an event or snapshot type that
    /// is not the entity's).
    #[error("unexpected type {type_url}")]
    UnknownType {
        /// The `Any`'s type URL.
        type_url: String,
    },
    /// An `Any`'s bytes do not decode as the type its URL names.
    #[error("cannot decode {type_url}: {reason}")]
    Decode {
        /// The `Any`'s type URL.
        type_url: String,
        /// What prost reported.
        reason: prost::DecodeError,
    },
    /// The proxy broke the protocol (an entity stream without `init` first, a second `init`, an
    /// event after a command, an event or stored state that does not decode, an unknown
    /// service, an action call of the wrong shape, ...), or the entity cannot continue (user
    /// code panicked while applying events). The stream or call ends with this error.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// `HOST`/`PORT` do not form a usable address, or binding it failed.
    #[error("address {address}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// Why it is not usable.
        reason: std::io::Error,
    },
    /// The gRPC server failed (the cause is the error's source).
    #[error("the gRPC server failed")]
    Transport(#[from] tonic::transport::Error),
    /// A [`ReplySender`](crate::ReplySender)'s call ended: nobody reads its replies any more.
    #[error("the action call ended")]
    CallEnded,
    /// Testkit: the command's outcome was not what the test asked for (a failure where a
    /// reply was expected, a reply of another type, ...).
    #[error("unexpected outcome: {0}")]
    UnexpectedOutcome(String),
}
