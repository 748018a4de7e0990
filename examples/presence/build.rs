//! Compiles the presence protos: generated types, the typed service surface, and the
//! descriptor set for discovery. No tonic client: its constructor named `connect` clashes with
//! the method `Connect` (the crate has a hand-written [`PresenceClient`] instead).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .build_client(false)
        .crdt_entity("cloudstate.examples.chat.presence.Presence")
        .compile(&["proto/presence.proto"])?;
    Ok(())
}
