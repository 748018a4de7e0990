//! Compiles the counter's proto: its types, the typed service surface and the descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .event_sourced("com.example.counter.Counter")
        .compile(&["proto/counter.proto"])?;
    Ok(())
}
