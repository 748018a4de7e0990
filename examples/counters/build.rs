//! Compiles the example's protos: generated types, the typed service surface and clients, and
//! the descriptor set for discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .crdt_entity("com.example.crdts.CrdtExample")
        .compile(&["proto/crdt_example.proto"])?;
    Ok(())
}
