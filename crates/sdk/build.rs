//! Compiles the protos of the crate documentation's examples (`proto/doc`), so that its
//! examples use the code `cloudstate-build` generates, as a user's crate does.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto/doc")
        .event_sourced("example.counter.Counter")
        .value_entity("example.stock.Inventory")
        .crdt_entity("example.chat.Presence")
        .action("example.shop.Shop")
        .build_client(false)
        .compile(&[
            "proto/doc/counter.proto",
            "proto/doc/stock.proto",
            "proto/doc/chat.proto",
            "proto/doc/shop.proto",
        ])?;
    Ok(())
}
