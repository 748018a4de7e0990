//! Compiles the counters example's protos: generated types and clients, and the descriptor
//! set for discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::compile_protos(&["proto/crdt_example.proto"], &["proto"])?;
    Ok(())
}
