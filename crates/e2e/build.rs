//! Compiles the end-to-end test user function's protos (`proto/e2e.proto`): generated types and
//! clients (for the tests and the `test-function` binary) and the descriptor set for discovery.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::compile_protos(&["proto/e2e.proto"], &["proto"])?;
    Ok(())
}
