//! Compiles the TCK model protos (`proto/cloudstate/tck/model/*.proto`): prost messages, tonic
//! clients (the runner calls the model services through the proxy), the typed services the
//! model user function implements, and the descriptor set it reports at discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .protocol_path("::cloudstate_protocol")
        .event_sourced("cloudstate.tck.model.EventSourcedTckModel")
        .event_sourced("cloudstate.tck.model.EventSourcedTwo")
        .event_sourced("cloudstate.tck.model.EventSourcedConfigured")
        .value_entity("cloudstate.tck.model.valueentity.ValueEntityTckModel")
        .value_entity("cloudstate.tck.model.valueentity.ValueEntityTwo")
        .value_entity("cloudstate.tck.model.valueentity.ValueEntityConfigured")
        .crdt_entity("cloudstate.tck.model.crdt.CrdtTckModel")
        .crdt_entity("cloudstate.tck.model.crdt.CrdtTwo")
        .crdt_entity("cloudstate.tck.model.crdt.CrdtConfigured")
        .action("cloudstate.tck.model.action.ActionTckModel")
        .action("cloudstate.tck.model.action.ActionTwo")
        .compile(&[
            "proto/cloudstate/tck/model/action.proto",
            "proto/cloudstate/tck/model/crdt.proto",
            "proto/cloudstate/tck/model/eventsourced.proto",
            "proto/cloudstate/tck/model/valueentity.proto",
        ])?;
    Ok(())
}
