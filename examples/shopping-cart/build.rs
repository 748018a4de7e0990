//! Compiles the cart's protos: generated types, the typed service surface and clients, and the
//! descriptor set for discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .event_sourced("com.example.shoppingcart.ShoppingCart")
        .compile(&["proto/shoppingcart.proto", "proto/domain.proto"])?;
    Ok(())
}
