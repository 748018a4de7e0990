//! The engine's error type. Every failure a client can see maps to one gRPC status.

use std::time::Duration;

use cloudstate_store::StoreError;
use tonic::{Code, Status};

use crate::payload::PayloadError;

/// Errors of the engine: what a command can fail with, and what can stop the proxy at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names a service or method the user function does not serve.
    #[error("unknown method {0}")]
    UnknownMethod(String),
    /// The request bytes do not decode as the method's input type.
    #[error("request does not decode as {0}")]
    InvalidPayload(PayloadError),
    /// The request's entity key fields are all empty.
    #[error("request to {method} has no entity key: set {fields}")]
    MissingEntityKey {
        /// `Service.Method`.
        method: String,
        /// The key field names.
        fields: String,
    },
    /// The user function failed the command (a `Failure` client action).
    #[error("{description}")]
    CommandFailed {
        /// The status code the user function chose (UNKNOWN by default).
        code: Code,
        /// The user function's description.
        description: String,
    },
    /// A call of an action failed at the gRPC level (the user function is down, or answered
    /// with an error status instead of a response).
    #[error("call of action {method} failed: {}", status.message())]
    ActionCall {
        /// `Service.Method`.
        method: String,
        /// The status of the failed call; its code is passed on to the client.
        status: Status,
    },
    /// The user function reported a failure of the whole entity stream.
    #[error("Unexpected entity failure: {0}")]
    EntityFailure(String),
    /// The entity's stream to the user function broke or ended.
    #[error("Unexpected entity termination: {0}")]
    EntityTerminated(String),
    /// The user function sent something the protocol does not allow.
    #[error("protocol violation by the user function: {0}")]
    ProtocolViolation(String),
    /// The command did not complete within the command timeout.
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    /// The entity's queue of waiting commands is full.
    #[error("entity {entity} is overloaded: {capacity} commands are already waiting")]
    Overloaded {
        /// The entity, `persistence id|entity id`.
        entity: String,
        /// The queue's capacity.
        capacity: usize,
    },
    /// Another writer changed the entity's state first; the entity reloads.
    #[error("entity {0} was changed concurrently by another writer; retry the command")]
    Conflict(String),
    /// The store failed.
    #[error("store failure: {0}")]
    Store(StoreError),
    /// A forward or side effect names a method that does not exist.
    #[error("{kind} to unknown method {target}")]
    UnknownTarget {
        /// "forward" or "side effect".
        kind: &'static str,
        /// `Service.Method`.
        target: String,
    },
    /// Forwards and side effects nested deeper than the configured limit.
    #[error("forward/side effect chain is longer than {0} hops; is it a loop?")]
    ChainTooLong(u32),
    /// A unary call got no reply from the user function.
    #[error("{0} sent no reply")]
    NoReply(String),
    /// A synchronous side effect failed, which fails the command.
    #[error("synchronous side effect {target} failed: {source}")]
    SideEffectFailed {
        /// `Service.Method`.
        target: String,
        /// What the side effect failed with.
        source: Box<Error>,
    },
    /// The user function does not accept connections; nothing was sent to it.
    #[error("the user function at {0} is down (it does not accept connections); retry later")]
    UserFunctionDown(String),
    /// The engine is stopping.
    #[error("the proxy is shutting down")]
    ShuttingDown,
    /// A request larger than the maximum message size (with the envelope the protocol puts
    /// around it). Nothing was sent to the user function.
    #[error("{what} is {size} bytes, more than the maximum message size of {limit} bytes")]
    RequestTooLarge {
        /// What was too large.
        what: String,
        /// Its size in the message that would carry it.
        size: usize,
        /// The maximum message size.
        limit: usize,
    },
    /// What a command produced (a reply, an event, a snapshot, a value) does not fit in a
    /// message the user function can be sent (or sent the proxy). Nothing was stored; the
    /// entity restarts from what was stored before.
    #[error("{0}")]
    ResultTooLarge(String),
    /// The user function's discovery answer cannot be served.
    #[error("invalid entity specification from the user function: {0}")]
    InvalidSpec(String),
}

impl Error {
    /// The gRPC status code a client sees for this error.
    pub fn code(&self) -> Code {
        match self {
            Error::UnknownMethod(_) => Code::Unimplemented,
            Error::InvalidPayload(_) | Error::MissingEntityKey { .. } => Code::InvalidArgument,
            Error::CommandFailed { code, .. } => *code,
            Error::ActionCall { status, .. } => status.code(),
            Error::EntityFailure(_) | Error::ProtocolViolation(_) | Error::NoReply(_) => {
                Code::Internal
            }
            Error::EntityTerminated(_) | Error::ShuttingDown | Error::UserFunctionDown(_) => {
                Code::Unavailable
            }
            Error::RequestTooLarge { .. } => Code::ResourceExhausted,
            Error::ResultTooLarge(_) => Code::FailedPrecondition,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Overloaded { .. } => Code::ResourceExhausted,
            Error::Conflict(_) => Code::Aborted,
            Error::Store(StoreError::Conflict { .. }) => Code::Aborted,
            Error::Store(StoreError::InvalidWrite { .. } | StoreError::ShardCount { .. }) => {
                Code::Internal
            }
            Error::Store(StoreError::Corrupt(_)) => Code::DataLoss,
            // The shard moved to another node: a retry goes there.
            Error::Store(StoreError::Unavailable(_) | StoreError::Fenced { .. }) => {
                Code::Unavailable
            }
            Error::UnknownTarget { .. } | Error::ChainTooLong(_) | Error::InvalidSpec(_) => {
                Code::Internal
            }
            Error::SideEffectFailed { source, .. } => source.code(),
        }
    }

    /// Whether the entity must restart after a command failed with this error: its stream or
    /// the user function's state can no longer be trusted. A command refused before it was
    /// sent leaves both as they were.
    pub(crate) fn restarts_entity(&self) -> bool {
        !matches!(
            self,
            Error::RequestTooLarge { .. }
                | Error::Overloaded { .. }
                | Error::ShuttingDown
                | Error::UserFunctionDown(_)
        )
    }

    /// The gRPC status a client sees for this error.
    pub fn to_status(&self) -> Status {
        Status::new(self.code(), self.to_string())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        error.to_status()
    }
}
