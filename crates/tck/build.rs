//! Compiles the TCK model protos (`proto/cloudstate/tck/model/*.proto`): prost messages, tonic
//! clients (the runner calls the model services through the proxy) and the descriptor set the
//! model user functions report at discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .protocol_path("::cloudstate_protocol")
        .compile(&[
            "proto/cloudstate/tck/model/action.proto",
            "proto/cloudstate/tck/model/crdt.proto",
            "proto/cloudstate/tck/model/eventsourced.proto",
            "proto/cloudstate/tck/model/valueentity.proto",
        ])?;
    Ok(())
}
