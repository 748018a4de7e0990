//! Compiles the inventory's protos: generated types and clients, and the descriptor set for
//! discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::compile_protos(
        &["proto/inventory.proto", "proto/inventory_domain.proto"],
        &["proto"],
    )?;
    Ok(())
}
