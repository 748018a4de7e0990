//! Compiles the protocol's .proto files with protox (pure Rust, no protoc) and generates prost
//! types plus tonic clients and servers for the protocol services.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "cloudstate/entity.proto",
    "cloudstate/event_sourced.proto",
    "cloudstate/value_entity.proto",
    "cloudstate/action.proto",
    "cloudstate/crdt.proto",
    "cloudstate/entity_key.proto",
    "cloudstate/legacy_entity_key.proto",
    "cloudstate/eventing.proto",
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/httpbody.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true);
    compiler.open_files(PROTOS)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("protocol_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .bytes(".")
        .extern_path(".google.protobuf.Any", "crate::Any")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
