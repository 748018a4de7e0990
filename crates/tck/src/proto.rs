//! The TCK model services' messages and clients (`proto/cloudstate/tck/model/*.proto`), and
//! the descriptor set a user function serving them reports at discovery.

/// Generated code: the message and method names are the protos'.
#[allow(missing_docs, clippy::all)]
mod generated {
    /// `cloudstate.tck.model.action`: `ActionTckModel`, `ActionTwo`.
    pub mod action {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.tck.model.action.rs"));
    }

    /// `cloudstate.tck.model` (event sourced): `EventSourcedTckModel`, `EventSourcedTwo`,
    /// `EventSourcedConfigured`.
    pub mod eventsourced {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.tck.model.rs"));
    }

    /// `cloudstate.tck.model.valueentity`: `ValueEntityTckModel`, `ValueEntityTwo`,
    /// `ValueEntityConfigured`.
    pub mod valueentity {
        include!(concat!(
            env!("OUT_DIR"),
            "/cloudstate.tck.model.valueentity.rs"
        ));
    }

    /// `cloudstate.tck.model.crdt`: `CrdtTckModel`, `CrdtTwo`, `CrdtConfigured`.
    pub mod crdt {
        include!(concat!(env!("OUT_DIR"), "/cloudstate.tck.model.crdt.rs"));
    }
}

pub use generated::*;

/// The encoded `FileDescriptorSet` of the model protos and all their imports.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cloudstate_descriptor_set.bin"));

/// Full names of the model services.
pub mod service {
    /// `cloudstate.tck.model.action.ActionTckModel`.
    pub const ACTION: &str = "cloudstate.tck.model.action.ActionTckModel";
    /// `cloudstate.tck.model.action.ActionTwo`.
    pub const ACTION_TWO: &str = "cloudstate.tck.model.action.ActionTwo";
    /// `cloudstate.tck.model.EventSourcedTckModel`.
    pub const EVENT_SOURCED: &str = "cloudstate.tck.model.EventSourcedTckModel";
    /// `cloudstate.tck.model.EventSourcedTwo`.
    pub const EVENT_SOURCED_TWO: &str = "cloudstate.tck.model.EventSourcedTwo";
    /// `cloudstate.tck.model.EventSourcedConfigured`.
    pub const EVENT_SOURCED_CONFIGURED: &str = "cloudstate.tck.model.EventSourcedConfigured";
    /// `cloudstate.tck.model.valueentity.ValueEntityTckModel`.
    pub const VALUE_ENTITY: &str = "cloudstate.tck.model.valueentity.ValueEntityTckModel";
    /// `cloudstate.tck.model.valueentity.ValueEntityTwo`.
    pub const VALUE_ENTITY_TWO: &str = "cloudstate.tck.model.valueentity.ValueEntityTwo";
    /// `cloudstate.tck.model.valueentity.ValueEntityConfigured`.
    pub const VALUE_ENTITY_CONFIGURED: &str =
        "cloudstate.tck.model.valueentity.ValueEntityConfigured";
    /// `cloudstate.tck.model.crdt.CrdtTckModel`.
    pub const CRDT: &str = "cloudstate.tck.model.crdt.CrdtTckModel";
    /// `cloudstate.tck.model.crdt.CrdtTwo`.
    pub const CRDT_TWO: &str = "cloudstate.tck.model.crdt.CrdtTwo";
    /// `cloudstate.tck.model.crdt.CrdtConfigured`.
    pub const CRDT_CONFIGURED: &str = "cloudstate.tck.model.crdt.CrdtConfigured";
}
