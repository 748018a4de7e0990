//! Build-script helper for Cloudstate user functions.
//!
//! Compiles a user's `.proto` files with [protox] (pure Rust, no `protoc`) and writes to `OUT_DIR`:
//!
//! - `cloudstate_descriptor_set.bin`: the encoded `FileDescriptorSet` the user function reports
//!   at discovery. It contains every import (`cloudstate/entity_key.proto`,
//!   `google/api/annotations.proto`, `google/protobuf/*.proto`, ...) and keeps every custom
//!   option (`(cloudstate.entity_key)`, `(google.api.http)`, ...) byte for byte as compiled;
//!   the proxy reads entity keys and HTTP routes from those options.
//! - `<package>.rs` per protobuf package: prost messages implementing [`prost::Name`] (so they
//!   convert to and from `Any`; `type_url()` is `type.googleapis.com/<full name>`), tonic
//!   clients for the services, and the typed surface of each service for the `cloudstate` SDK:
//!   a module named after the service (`ShoppingCart` → `shopping_cart`) with its full name
//!   (`NAME`) and a function per method making a typed `cloudstate::Call` (for forwards, side
//!   effects and testkits); and, for a service declared with the kind that serves it
//!   ([`Builder::event_sourced`], [`Builder::value_entity`], [`Builder::crdt_entity`],
//!   [`Builder::action`]), a trait named after the service with one handler method per RPC and
//!   the registration (`shopping_cart::entity()`, or `action(value)` for actions). A misspelt
//!   handler, a wrong type or a missing handler is then a compile error.
//!
//! The Cloudstate annotation protos (`cloudstate/entity_key.proto`, `cloudstate/eventing.proto`,
//! `google/api/annotations.proto`, `google/api/http.proto`, `google/api/httpbody.proto`) and the
//! `google/protobuf/*` files resolve in memory; users need no copies of them.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     cloudstate_build::Builder::new()
//!         .include("proto")
//!         .event_sourced("com.example.shoppingcart.ShoppingCart")
//!         .compile(&["proto/shoppingcart.proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! The crate then includes the results with the `cloudstate` SDK's macros:
//!
//! ```ignore
//! pub mod proto {
//!     cloudstate::include_protos!("com.example.shoppingcart");
//!     pub const FILE_DESCRIPTOR_SET: &[u8] = cloudstate::include_descriptor_set!();
//! }
//! ```
//!
//! and implements the traits (`impl proto::ShoppingCart for ShoppingCart { ... }`); the
//! `cloudstate` SDK's documentation shows a complete entity of each kind.
//!
//! Generated code refers to the crates `prost`, `tonic` and `tonic-prost` (user crates depend on
//! them), to `prost-types` for well-known types other than `Any` and `Empty`, and to the
//! `cloudstate` SDK for the typed services, `google.protobuf.Any` and `google.api.*` types (see
//! [`Builder::protocol_path`]).
//!
//! [protox]: https://docs.rs/protox
//! [`prost::Name`]: https://docs.rs/prost/latest/prost/trait.Name.html

#![warn(missing_docs)]

mod services;

use std::path::{Path, PathBuf};

use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

/// Name of the descriptor set file written to `OUT_DIR`; the `cloudstate` SDK's
/// `include_descriptor_set!` macro reads it.
pub const DESCRIPTOR_SET_FILE: &str = "cloudstate_descriptor_set.bin";

/// Why compiling the protos failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `.proto` file did not parse, an import was not found, or a type did not resolve.
    #[error("compiling protos: {0}")]
    Compile(Box<protox::Error>),
    /// Writing the descriptor set or generating code failed.
    #[error("generating code: {0}")]
    Io(std::io::Error),
    /// A service declared with a kind ([`Builder::event_sourced`], ...) is not in the protos,
    /// or has a method its kind does not support.
    #[error("service {service}: {reason}")]
    Service {
        /// The service's full name, as declared.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// Neither [`Builder::out_dir`] nor the `OUT_DIR` environment variable (set by cargo for
    /// build scripts) gave an output directory.
    #[error("no output directory: OUT_DIR is not set (call this from a build script)")]
    NoOutDir,
}

impl From<protox::Error> for Error {
    fn from(error: protox::Error) -> Self {
        Error::Compile(Box::new(error))
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(error)
    }
}

/// Compiles `protos` (paths under one of `includes`) with the defaults of [`Builder`]: no
/// service declared with a kind, so no handler traits (clients and calls only).
///
/// # Errors
///
/// See [`Builder::compile`].
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<(), Error> {
    Builder::new().includes(includes).compile(protos)
}

/// Options for compiling a user function's protos; [`compile_protos`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Builder {
    includes: Vec<PathBuf>,
    out_dir: Option<PathBuf>,
    protocol_path: String,
    build_client: bool,
    extern_paths: Vec<(String, String)>,
    kinds: Vec<(String, services::Kind)>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            includes: Vec::new(),
            out_dir: None,
            protocol_path: "::cloudstate::protocol".to_owned(),
            build_client: true,
            extern_paths: Vec::new(),
            kinds: Vec::new(),
        }
    }
}

impl Builder {
    /// Defaults: no include directories, output to `OUT_DIR`, tonic clients generated, protocol
    /// types from `::cloudstate::protocol`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory to search for the protos and their imports, before the bundled
    /// annotation and `google/protobuf` files.
    pub fn include(mut self, dir: impl AsRef<Path>) -> Self {
        self.includes.push(dir.as_ref().to_owned());
        self
    }

    /// Adds several include directories, in order; see [`Builder::include`].
    pub fn includes(mut self, dirs: &[impl AsRef<Path>]) -> Self {
        self.includes
            .extend(dirs.iter().map(|dir| dir.as_ref().to_owned()));
        self
    }

    /// Writes the outputs to `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The Rust path of the `cloudstate-protocol` crate, used in generated code for
    /// `google.protobuf.Any` (`<path>::Any`) and `google.api.*` (`<path>::google_api`).
    ///
    /// Defaults to `::cloudstate::protocol` (the SDK's re-export); crates that depend on
    /// `cloudstate-protocol` but not on the SDK use `::cloudstate_protocol`.
    pub fn protocol_path(mut self, path: impl Into<String>) -> Self {
        self.protocol_path = path.into();
        self
    }

    /// Whether to generate tonic clients for the services (default `true`).
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Uses existing Rust types for the protobuf package or type `proto_path` (e.g.
    /// `.com.example.inventory`) instead of generating them: they are at `rust_path` (e.g.
    /// `::inventory::proto`). For protos that import protos another crate already compiled, so
    /// that both crates share one Rust type per message. The imported files stay in the
    /// descriptor set.
    pub fn extern_path(
        mut self,
        proto_path: impl Into<String>,
        rust_path: impl Into<String>,
    ) -> Self {
        self.extern_paths
            .push((proto_path.into(), rust_path.into()));
        self
    }

    /// Declares `service` (full name, e.g. `com.example.shoppingcart.ShoppingCart`) an event
    /// sourced entity: the generated trait named after it has one method per RPC taking
    /// `&self`, the request and a `CommandContext<Self>`, and its module's `entity()`
    /// registers a type implementing it. Its methods must be unary.
    pub fn event_sourced(mut self, service: impl Into<String>) -> Self {
        self.kinds
            .push((service.into(), services::Kind::EventSourced));
        self
    }

    /// Declares `service` a value entity: its trait's methods take `&self` (the state message),
    /// the request and a `ValueContext<Self>`; its module's `entity()` registers it. Its methods
    /// must be unary.
    pub fn value_entity(mut self, service: impl Into<String>) -> Self {
        self.kinds
            .push((service.into(), services::Kind::ValueEntity));
        self
    }

    /// Declares `service` a CRDT entity: its trait's methods take `&mut self`, the request and a
    /// `CrdtContext` (a `StreamedContext` for server streaming methods); its module's
    /// `entity()` registers it. Its methods must not stream requests.
    pub fn crdt_entity(mut self, service: impl Into<String>) -> Self {
        self.kinds.push((service.into(), services::Kind::Crdt));
        self
    }

    /// Declares `service` an action: its trait's methods are `async` (they return a `Send`
    /// future) and take `&self`, the request (a `RequestStream` when requests stream) and an
    /// `ActionContext`; its module's `action(value)` registers a value serving every call.
    pub fn action(mut self, service: impl Into<String>) -> Self {
        self.kinds.push((service.into(), services::Kind::Action));
        self
    }

    /// Compiles `protos` and writes the descriptor set and the generated code.
    ///
    /// Also tells cargo to rerun the build script when any compiled file on disk changes.
    ///
    /// # Errors
    ///
    /// [`Error::Compile`] when a file does not compile, [`Error::Io`] when an output cannot be
    /// written, [`Error::NoOutDir`] outside a build script without [`Builder::out_dir`].
    pub fn compile(self, protos: &[impl AsRef<Path>]) -> Result<(), Error> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or(Error::NoOutDir)?,
        };

        let mut resolver = ChainFileResolver::new();
        for include in &self.includes {
            resolver.add(IncludeFileResolver::new(include.clone()));
        }
        resolver.add(AnnotationResolver);
        resolver.add(GoogleFileResolver::new());

        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_files(protos)?;

        for file in compiler.files() {
            if let Some(path) = file.path() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }

        // Encoded by protox itself: decoding into prost_types and re-encoding would drop the
        // extension options the proxy needs.
        std::fs::write(
            out_dir.join(DESCRIPTOR_SET_FILE),
            compiler.encode_file_descriptor_set(),
        )?;

        // prost needs every file to resolve types, but generates no code for the bundled files:
        // their types are extern (the protocol crate's and prost-types').
        let files = compiler.file_descriptor_set();
        let mut config = prost_build::Config::new();
        config
            .enable_type_names()
            .type_name_domain(["."], "type.googleapis.com")
            // Messages and fields are documented only where the .proto has comments.
            .type_attribute(".", "#[allow(clippy::all, missing_docs)]")
            .extern_path(
                ".google.protobuf.Any",
                format!("{}::Any", self.protocol_path),
            )
            .extern_path(".google.api", format!("{}::google_api", self.protocol_path));
        for (proto_path, rust_path) in &self.extern_paths {
            config.extern_path(proto_path, rust_path);
        }
        let mut externs = self.extern_paths.clone();
        externs.push((
            ".google.protobuf.Any".to_owned(),
            format!("{}::Any", self.protocol_path),
        ));
        externs.push((
            ".google.api".to_owned(),
            format!("{}::google_api", self.protocol_path),
        ));
        // Package `cloudstate` is the protocol crate's root; user packages may live under
        // `cloudstate.*` (the TCK's do), so only the bundled types are mapped, one by one.
        for file in files
            .file
            .iter()
            .filter(|file| is_bundled(file.name()) && file.package() == "cloudstate")
        {
            let names = file.message_type.iter().map(|message| message.name());
            for name in names.chain(file.enum_type.iter().map(|e| e.name())) {
                let (proto_path, rust_path) = (
                    format!(".cloudstate.{name}"),
                    format!("{}::{name}", self.protocol_path),
                );
                config.extern_path(&proto_path, &rust_path);
                externs.push((proto_path, rust_path));
            }
        }
        tonic_prost_build::configure()
            .out_dir(&out_dir)
            // Method names are the user's: `ToCounter` becomes a `to_counter(&mut self)`.
            .client_mod_attribute(".", "#[allow(clippy::all)]")
            .build_server(false)
            .build_client(self.build_client)
            .compile_fds_with_config(files.clone(), config)?;

        // The typed services, after each package's prost code.
        let generated = |name: &str| {
            let Some(file) = files.file.iter().find(|file| file.name() == name) else {
                return false;
            };
            let package = format!(".{}", file.package());
            !is_bundled(name)
                && file.package() != "google.protobuf"
                && !self.extern_paths.iter().any(|(proto_path, _)| {
                    package == *proto_path
                        || package
                            .strip_prefix(proto_path.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                })
        };
        let types = services::Types::new(&files, externs);
        for (package, code) in services::generate(&files, generated, &types, &self.kinds)? {
            let path = out_dir.join(match package.as_str() {
                "" => "_.rs".to_owned(),
                package => format!("{package}.rs"),
            });
            let mut source = std::fs::read_to_string(&path)?;
            if let Some(start) = source.find(services::MARKER) {
                source.truncate(start);
            }
            source.push_str(services::MARKER);
            source.push_str(&code);
            std::fs::write(&path, source)?;
        }
        Ok(())
    }
}

/// Whether `name` is one of the annotation files served from memory.
fn is_bundled(name: &str) -> bool {
    cloudstate_protocol::ANNOTATION_PROTOS
        .iter()
        .any(|(bundled, _)| *bundled == name)
}

/// Resolves the Cloudstate and `google.api` annotation protos from the protocol crate.
struct AnnotationResolver;

impl FileResolver for AnnotationResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match cloudstate_protocol::ANNOTATION_PROTOS
            .iter()
            .find(|(bundled, _)| *bundled == name)
        {
            Some((_, source)) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` under `proto/` in a fresh directory that also has an empty `out/`.
    fn scratch(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, source) in files {
            std::fs::create_dir_all(dir.path().join("proto")).unwrap();
            std::fs::write(dir.path().join("proto").join(name), source).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        dir
    }

    const SERVICE: &str = r#"
        syntax = "proto3";
        package test.svc;
        import "cloudstate/entity_key.proto";
        import "google/api/annotations.proto";
        import "google/protobuf/empty.proto";
        import "google/protobuf/any.proto";
        import "cloudstate/eventing.proto";
        service Counter {
          rpc Add(AddRequest) returns (google.protobuf.Empty) {
            option (google.api.http).post = "/counter/{id}";
          }
        }
        message AddRequest {
          string id = 1 [(cloudstate.entity_key) = true];
          google.protobuf.Any extra = 2;
        }
    "#;

    #[test]
    fn writes_descriptor_set_with_imports_and_options_and_code() {
        let tmp = scratch(&[("svc.proto", SERVICE)]);
        let dir = tmp.path();
        Builder::new()
            .include(dir.join("proto"))
            .out_dir(dir.join("out"))
            .compile(&[dir.join("proto/svc.proto")])
            .unwrap();

        let bytes = std::fs::read(dir.join("out").join(DESCRIPTOR_SET_FILE)).unwrap();
        // FieldDescriptorProto.options (field 8, 3 bytes) = FieldOptions{ 1080: true }.
        assert!(
            bytes
                .windows(5)
                .any(|w| w == [0x42, 0x03, 0xc0, 0x43, 0x01])
        );
        for name in [
            "svc.proto",
            "cloudstate/entity_key.proto",
            "google/api/annotations.proto",
            "google/api/http.proto",
            "google/protobuf/descriptor.proto",
            "google/protobuf/empty.proto",
            "google/protobuf/any.proto",
        ] {
            assert!(
                bytes.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name} missing"
            );
        }

        let code = std::fs::read_to_string(dir.join("out/test.svc.rs")).unwrap();
        assert!(code.contains("impl ::prost::Name for AddRequest"));
        assert!(code.contains("\"type.googleapis.com/test.svc.AddRequest\""));
        assert!(code.contains("::cloudstate::protocol::Any"));
        assert!(code.contains("pub struct CounterClient"));
        assert!(code.contains("#[allow(clippy::all)]\npub mod counter_client"));
        assert!(!dir.join("out/cloudstate.rs").exists());
        assert!(!dir.join("out/google.api.rs").exists());
    }

    #[test]
    fn extern_paths_reuse_another_crates_types() {
        let other = r#"
            syntax = "proto3";
            package other.pkg;
            message Thing { string id = 1; }
        "#;
        let user = r#"
            syntax = "proto3";
            package user.pkg;
            import "other.proto";
            service Uses { rpc Get(other.pkg.Thing) returns (other.pkg.Thing); }
            message Holder { other.pkg.Thing thing = 1; }
        "#;
        let tmp = scratch(&[("other.proto", other), ("user.proto", user)]);
        let dir = tmp.path();
        Builder::new()
            .include(dir.join("proto"))
            .out_dir(dir.join("out"))
            .extern_path(".other.pkg", "::other_crate::proto")
            .compile(&["user.proto"])
            .unwrap();
        let code = std::fs::read_to_string(dir.join("out/user.pkg.rs")).unwrap();
        assert!(code.contains("::other_crate::proto::Thing"), "{code}");
        assert!(!dir.join("out/other.pkg.rs").exists());
        let bytes = std::fs::read(dir.join("out").join(DESCRIPTOR_SET_FILE)).unwrap();
        assert!(bytes.windows(11).any(|w| w == b"other.proto"));
    }

    #[test]
    fn declared_services_get_a_trait_a_registration_and_typed_calls() {
        let tmp = scratch(&[("svc.proto", SERVICE)]);
        let dir = tmp.path();
        let build = || {
            Builder::new()
                .include(dir.join("proto"))
                .out_dir(dir.join("out"))
        };
        build()
            .event_sourced("test.svc.Counter")
            .compile(&["svc.proto"])
            .unwrap();
        let code = std::fs::read_to_string(dir.join("out/test.svc.rs")).unwrap();
        assert!(
            code.contains("pub trait Counter: ::cloudstate::EventSourcedEntity {"),
            "{code}"
        );
        assert!(code.contains(
            "fn add(&self, request: AddRequest, ctx: &mut ::cloudstate::CommandContext<Self>) \
             -> ::core::result::Result<::cloudstate::Reply<()>, ::cloudstate::Failure>;"
        ));
        assert!(code.contains("pub const NAME: &str = \"test.svc.Counter\";"));
        assert!(code.contains("commands.add(\"Add\", <E as super::Counter>::add);"));
        assert!(code.contains("pub fn add(request: super::AddRequest) -> ::cloudstate::Call<()>"));

        // A second build replaces the services, never appends them twice.
        build()
            .action("test.svc.Counter")
            .compile(&["svc.proto"])
            .unwrap();
        let code = std::fs::read_to_string(dir.join("out/test.svc.rs")).unwrap();
        assert_eq!(code.matches(services::MARKER).count(), 1);
        assert!(code.contains("pub trait Counter: ::cloudstate::Action {"));
        assert!(code.contains("-> impl ::core::future::Future<Output = "));

        // Undeclared services get only their module.
        build().compile(&["svc.proto"]).unwrap();
        let code = std::fs::read_to_string(dir.join("out/test.svc.rs")).unwrap();
        assert!(!code.contains("pub trait Counter"));
        assert!(code.contains("pub mod counter {"));
    }

    #[test]
    fn declared_services_must_exist_and_suit_their_kind() {
        let streamed = r#"
            syntax = "proto3";
            package test.stream;
            service Feed { rpc Watch(Tick) returns (stream Tick); rpc Send(stream Tick) returns (Tick); }
            message Tick { int64 at = 1; }
        "#;
        let tmp = scratch(&[("feed.proto", streamed)]);
        let dir = tmp.path();
        let build = || {
            Builder::new()
                .include(dir.join("proto"))
                .out_dir(dir.join("out"))
        };
        let error = build()
            .event_sourced("test.stream.Nope")
            .compile(&["feed.proto"])
            .unwrap_err();
        assert!(
            error.to_string().contains("no service of this name"),
            "{error}"
        );
        let error = build()
            .value_entity("test.stream.Feed")
            .compile(&["feed.proto"])
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "service test.stream.Feed: method Watch streams replies, which value entities do not support"
        );
        let error = build()
            .crdt_entity("test.stream.Feed")
            .compile(&["feed.proto"])
            .unwrap_err();
        assert!(
            error.to_string().contains("method Send streams requests"),
            "{error}"
        );
        build()
            .action("test.stream.Feed")
            .compile(&["feed.proto"])
            .unwrap();
        let code = std::fs::read_to_string(dir.join("out/test.stream.rs")).unwrap();
        assert!(
            code.contains("requests: ::cloudstate::RequestStream<Tick>"),
            "{code}"
        );
        assert!(code.contains("::cloudstate::ReplyStream<Tick>"));
    }

    #[test]
    fn types_resolve_across_packages_as_prost_names_them() {
        let files = prost_types::FileDescriptorSet {
            file: ["a.b", "a.b.c", "a.x", "google.protobuf"]
                .iter()
                .map(|package| prost_types::FileDescriptorProto {
                    package: Some((*package).to_owned()),
                    ..Default::default()
                })
                .collect(),
        };
        let types = services::Types::new(
            &files,
            vec![(".ext".to_owned(), "::ext_crate::proto".to_owned())],
        );
        let cases = [
            (".a.b.Msg", "a.b", 0, "Msg"),
            (".a.b.Msg", "a.b", 1, "super::Msg"),
            (".a.b.Outer.Inner", "a.b", 0, "outer::Inner"),
            (".a.b.c.Deep", "a.b", 0, "c::Deep"),
            (".a.x.Other", "a.b", 0, "super::x::Other"),
            (".a.b.Msg", "a.b.c", 1, "super::super::Msg"),
            (".ext.pkg.Thing", "a.b", 0, "::ext_crate::proto::pkg::Thing"),
            (".google.protobuf.Empty", "a.b", 0, "()"),
            (
                ".google.protobuf.Timestamp",
                "a.b",
                0,
                "::prost_types::Timestamp",
            ),
        ];
        for (name, from, depth, rust) in cases {
            assert_eq!(types.rust(name, from, depth), rust, "{name} from {from}");
        }
    }

    #[test]
    fn reports_missing_imports() {
        let tmp = scratch(&[("bad.proto", "syntax = \"proto3\"; import \"nope.proto\";")]);
        let dir = tmp.path();
        let error = Builder::new()
            .include(dir.join("proto"))
            .out_dir(dir.join("out"))
            .compile(&["bad.proto"])
            .unwrap_err();
        assert!(matches!(error, Error::Compile(_)), "{error}");
    }
}
