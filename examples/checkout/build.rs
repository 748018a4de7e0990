//! Compiles the checkout's protos. They import the inventory's, whose Rust types (and typed
//! calls) come from the `inventory` crate; the descriptor set holds both services, so one user
//! function can serve them together.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .includes(&["proto", "../inventory/proto"])
        .extern_path(".com.example.inventory", "::inventory::proto")
        .action("com.example.checkout.Checkout")
        .compile(&["proto/checkout.proto"])?;
    Ok(())
}
