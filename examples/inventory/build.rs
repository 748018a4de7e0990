//! Compiles the inventory's protos: generated types, the typed service surface and clients,
//! and the descriptor set for discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .value_entity("com.example.inventory.Inventory")
        .compile(&["proto/inventory.proto", "proto/inventory_domain.proto"])?;
    Ok(())
}
