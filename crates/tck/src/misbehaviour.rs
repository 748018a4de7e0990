//! The misbehaviours of `tck-misbehaving`, a user function written on the raw protocol that
//! breaks it on purpose, and how the runner asks for them.
//!
//! Discovery misbehaviours are chosen when the process starts, with the environment variable
//! [`DISCOVERY_ENV`]. Runtime misbehaviours are chosen per command: a request whose `fail`
//! action (step, for actions) has the message `misbehave:<name>` gets that misbehaviour; every
//! other command is answered correctly with `Response{message: "ok"}` (CRDT entities: an empty
//! `Response` and a GCounter increment of 1).

/// The environment variable naming the discovery misbehaviour.
pub const DISCOVERY_ENV: &str = "TCK_MISBEHAVIOUR";

/// The prefix of a `fail` message that asks for a runtime misbehaviour.
pub const PREFIX: &str = "misbehave:";

/// What `tck-misbehaving` answers at discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// A correct spec: the event sourced, value entity, CRDT and action model services.
    Correct,
    /// An entity of a type no proxy hosts.
    UnsupportedEntityType,
    /// An entity whose service the descriptor set does not declare.
    ServiceNotInDescriptors,
    /// No entities at all.
    NoEntities,
    /// Protocol version 1.0.
    UnsupportedProtocolVersion,
    /// A descriptor set without the files the model protos import.
    MissingImport,
    /// An event sourced entity whose service has a server-streaming method.
    StreamedEntityMethod,
    /// A value entity whose method's input has no entity key.
    KeylessEntityMethod,
}

impl Discovery {
    /// Every discovery misbehaviour, with its name.
    pub const ALL: [(&'static str, Discovery); 8] = [
        ("correct", Discovery::Correct),
        ("unsupported-entity-type", Discovery::UnsupportedEntityType),
        (
            "service-not-in-descriptors",
            Discovery::ServiceNotInDescriptors,
        ),
        ("no-entities", Discovery::NoEntities),
        (
            "unsupported-protocol-version",
            Discovery::UnsupportedProtocolVersion,
        ),
        ("missing-import", Discovery::MissingImport),
        ("streamed-entity-method", Discovery::StreamedEntityMethod),
        ("keyless-entity-method", Discovery::KeylessEntityMethod),
    ];

    /// The misbehaviour called `name`.
    pub fn from_name(name: &str) -> Option<Discovery> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, discovery)| *discovery)
    }
}

/// How an entity's stream misbehaves for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// Replies with another command id.
    UnknownCommandId,
    /// Sends a message with nothing set.
    EmptyMessage,
    /// Sends the stream-level `failure` message.
    EntityFailure,
    /// Replies without a client action.
    ReplyWithoutAction,
    /// Ends its side of the stream normally, without replying.
    CloseStream,
    /// Ends its side of the stream with an error status.
    ErrorStream,
    /// The process exits.
    Crash,
    /// (CRDT entities) A delta of another CRDT type than the entity's.
    IncompatibleDelta,
}

impl Entity {
    /// Every entity misbehaviour, with its name.
    pub const ALL: [(&'static str, Entity); 8] = [
        ("unknown-command-id", Entity::UnknownCommandId),
        ("empty-message", Entity::EmptyMessage),
        ("entity-failure", Entity::EntityFailure),
        ("reply-without-action", Entity::ReplyWithoutAction),
        ("close-stream", Entity::CloseStream),
        ("error-stream", Entity::ErrorStream),
        ("crash", Entity::Crash),
        ("incompatible-delta", Entity::IncompatibleDelta),
    ];

    /// The misbehaviour called `name`.
    pub fn from_name(name: &str) -> Option<Entity> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, entity)| *entity)
    }

    /// The misbehaviour's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, entity)| *entity == self)
            .map(|(name, _)| *name)
            .expect("every misbehaviour has a name")
    }
}

/// How an action call misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answers the call with the gRPC status `PERMISSION_DENIED`.
    ErrorStatus,
    /// Replies with a payload typed `OtherRequest` instead of `Response`.
    WrongReplyType,
    /// Forwards to a service that does not exist.
    ForwardUnknown,
}

impl Action {
    /// Every action misbehaviour, with its name.
    pub const ALL: [(&'static str, Action); 3] = [
        ("error-status", Action::ErrorStatus),
        ("wrong-reply-type", Action::WrongReplyType),
        ("forward-unknown", Action::ForwardUnknown),
    ];

    /// The misbehaviour called `name`.
    pub fn from_name(name: &str) -> Option<Action> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, action)| *action)
    }

    /// The misbehaviour's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, action)| *action == self)
            .map(|(name, _)| *name)
            .expect("every misbehaviour has a name")
    }
}

/// The prefix of entity ids whose first stream gets a reply before any command: right after
/// `init`, a reply for command id 0.
pub const EARLY_REPLY_PREFIX: &str = "early";

/// The persistence ids `tck-misbehaving` reports.
pub mod persistence_id {
    /// Of its event sourced entity.
    pub const EVENT_SOURCED: &str = "misbehaving-event-sourced";
    /// Of its value entity.
    pub const VALUE_ENTITY: &str = "misbehaving-value-entity";
    /// Of its CRDT entity.
    pub const CRDT: &str = "misbehaving-crdt";
}

/// A service no user function serves, for forwards that must fail.
pub const UNKNOWN_SERVICE: &str = "cloudstate.tck.model.action.Nowhere";
