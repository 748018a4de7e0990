//! HTTP/JSON transcoding without the engine, for the criterion benchmarks
//! (`benches/transcoding.rs`): the routing, request assembly and reply rendering a served
//! HTTP/JSON call goes through, on a service's `google.api.http` rules. Not an API.

use bytes::Bytes;
use prost_reflect::ServiceDescriptor;

use super::router::Router;
use super::{render, request_bytes, rules};
use crate::Error;

/// A service's HTTP rules, compiled as the HTTP API compiles them.
pub struct Transcoder {
    router: Router<String>,
}

impl Transcoder {
    /// Compiles the HTTP rules of every method of `service`.
    ///
    /// # Errors
    ///
    /// [`Error::HttpRule`] if a rule cannot be served.
    pub fn new(service: &ServiceDescriptor) -> Result<Self, Error> {
        let mut bindings = Vec::new();
        for method in service.methods() {
            for binding in rules::bindings(&method)? {
                bindings.push((binding, method.name().to_owned()));
            }
        }
        Ok(Transcoder {
            router: Router::new(bindings)?,
        })
    }

    /// The method a request reaches and the protobuf request it is transcoded to.
    ///
    /// # Errors
    ///
    /// What the HTTP API answers for the request: no rule matches, a bad body, ...
    pub fn request(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        body: &[u8],
    ) -> Result<(&str, Bytes), Error> {
        let found = self.router.find(method, uri.path())?;
        let bytes = request_bytes(found.binding, body, uri.query(), &found.captures)?;
        Ok((found.target.as_str(), bytes))
    }

    /// The JSON body of `reply`, as the rule matching `method` and `path` prints it.
    ///
    /// # Errors
    ///
    /// No rule matches, or the reply does not decode as the method's output.
    pub fn reply(&self, method: &http::Method, path: &str, reply: &[u8]) -> Result<Vec<u8>, Error> {
        let found = self.router.find(method, path)?;
        Ok(render(found.binding, reply)?.1)
    }
}
