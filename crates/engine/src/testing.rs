//! Test helpers: compile .proto sources held in strings, as the user function's build would.

use prost_reflect::DescriptorPool;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

/// Resolves files from `(name, source)` pairs, plus the protocol's annotation protos.
struct Sources(Vec<(String, String)>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let annotations = cloudstate_protocol::ANNOTATION_PROTOS
            .iter()
            .map(|(n, s)| (*n, *s));
        let ours = self.0.iter().map(|(n, s)| (n.as_str(), s.as_str()));
        match ours.chain(annotations).find(|(n, _)| *n == name) {
            Some((name, source)) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles `files` with their imports into the encoded `FileDescriptorSet` a user function
/// would send in discovery (options intact).
pub fn descriptor_set(files: &[(&str, &str)]) -> Vec<u8> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Sources(
        files
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect(),
    ));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    for (name, _) in files {
        compiler.open_file(name).expect("test protos compile");
    }
    compiler.encode_file_descriptor_set()
}

/// Compiles `files` into a descriptor pool.
pub fn compile(files: &[(&str, &str)]) -> DescriptorPool {
    DescriptorPool::decode(&descriptor_set(files)[..]).expect("descriptor set decodes")
}
