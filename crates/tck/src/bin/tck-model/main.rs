//! `tck-model`: the TCK model services written with the Rust SDK, the reference frontend the
//! TCK checks and the user function behind the proxy in the backend cases.
//!
//! - `EventSourcedTckModel` (persistence id `event-sourced-tck-model`, a snapshot every 5
//!   events), `EventSourcedTwo`, `EventSourcedConfigured` (passivation after 100 ms);
//! - `ValueEntityTckModel` (`value-entity-tck-model`), `ValueEntityTwo`
//!   (`value-entity-tck-model-two`), `ValueEntityConfigured` (`value-entity-configured`,
//!   passivation after 100 ms);
//! - `CrdtTckModel` (the CRDT type named by the entity id's prefix), `CrdtTwo`,
//!   `CrdtConfigured` (passivation after 100 ms);
//! - `ActionTckModel`, `ActionTwo`.
//!
//! What each must do is in the comments of `proto/cloudstate/tck/model/*.proto`. Serves on
//! `HOST:PORT` (default `127.0.0.1:8080`) until Ctrl-C or SIGTERM; logs go to stderr, filtered
//! by `RUST_LOG` (default `info`).

mod action;
mod crdt;
mod eventsourced;
mod valueentity;

use std::time::Duration;

use cloudstate::{Call, Server, SideEffect};

/// The model protos' generated types and service traits, in this crate (the traits are
/// implemented on the generated state messages).
mod proto {
    /// `cloudstate.tck.model.action`.
    pub mod action {
        cloudstate::include_protos!("cloudstate.tck.model.action");
    }

    /// `cloudstate.tck.model.crdt`.
    pub mod crdt {
        cloudstate::include_protos!("cloudstate.tck.model.crdt");
    }

    /// `cloudstate.tck.model` (event sourced).
    pub mod eventsourced {
        cloudstate::include_protos!("cloudstate.tck.model");
    }

    /// `cloudstate.tck.model.valueentity`.
    pub mod valueentity {
        cloudstate::include_protos!("cloudstate.tck.model.valueentity");
    }

    /// The model protos and their imports.
    pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
}

/// The passivation timeout of the `*Configured` services.
const CONFIGURED_PASSIVATION: Duration = Duration::from_millis(100);

/// `call` as a side effect, synchronous or not as the TCK's request says.
fn side_effect<Out>(call: Call<Out>, synchronous: bool) -> SideEffect {
    if synchronous {
        call.synchronous()
    } else {
        call.into()
    }
}

#[tokio::main]
async fn main() -> Result<(), cloudstate::Error> {
    Server::new(proto::FILE_DESCRIPTOR_SET)?
        .service_info("tck-model", env!("CARGO_PKG_VERSION"))
        .register(eventsourced::model())?
        .register(eventsourced::two())?
        .register(eventsourced::configured())?
        .register(valueentity::model())?
        .register(valueentity::two())?
        .register(valueentity::configured())?
        .register(crdt::model())?
        .register(crdt::two())?
        .register(crdt::configured())?
        .register(action::model())?
        .register(action::two())?
        .serve_from_env()
        .await
}
