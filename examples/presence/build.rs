//! Compiles the presence protos: generated types and the descriptor set for discovery. No
//! generated client: tonic's client has a constructor named `connect`, which clashes with the
//! method `Connect` (the crate has a hand-written [`PresenceClient`] instead).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    cloudstate_build::Builder::new()
        .include("proto")
        .build_client(false)
        .compile(&["proto/presence.proto"])?;
    Ok(())
}
