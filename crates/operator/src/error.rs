//! The operator's errors.

/// What can go wrong while reconciling or writing manifests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be serialized.
    #[error("serializing: {0}")]
    Json(#[from] serde_json::Error),
    /// A manifest could not be written as YAML.
    #[error("writing YAML: {0}")]
    Yaml(String),
    /// A manifest file could not be read or written.
    #[error("{path}: {error}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A `StatefulService` without a namespace (they are namespaced).
    #[error("the StatefulService has no namespace")]
    NotNamespaced,
}

impl Error {
    /// Whether the API refused a write because the object changed meanwhile (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status)) if status.code == 409)
    }
}
