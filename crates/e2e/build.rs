//! Compiles the end-to-end test user function's protos (`proto/e2e.proto`): generated types,
//! clients (for the tests) and typed services (for the `test-function` binary), and the
//! descriptor set for discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .value_entity("cloudstate.e2e.Counter")
        .event_sourced("cloudstate.e2e.Ledger")
        .action("cloudstate.e2e.Relay")
        .compile(&["proto/e2e.proto"])?;
    Ok(())
}
