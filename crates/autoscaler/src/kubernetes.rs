//! The Kubernetes scaler: reads a `StatefulService` (its replicas and its `Upgrading`
//! condition, which the operator maintains) and sets its replicas through the scale
//! subresource; the operator applies them to the Deployment. It speaks plain HTTPS to the API
//! server with the pod's service account, so the proxy needs no Kubernetes client library.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::{Deployment, Error, Scaler};

/// Where a pod finds its service account.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Longest an API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Scales a `StatefulService` through the Kubernetes API.
pub struct KubernetesScaler {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `https://host:port` of the API server.
    base: String,
    token: Option<String>,
    /// Path of the service, `/apis/cloudstate.io/v1alpha1/namespaces/NS/statefulservices/NAME`.
    path: String,
}

impl KubernetesScaler {
    /// The scaler of the StatefulService `name` in this pod's namespace, with the pod's
    /// service account (token, CA, namespace) and `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub fn in_cluster(name: &str) -> Result<Self, Error> {
        let read = |file: &str| {
            std::fs::read(format!("{SERVICE_ACCOUNT_DIR}/{file}"))
                .map_err(|e| Error::Scaler(format!("reading {SERVICE_ACCOUNT_DIR}/{file}: {e}")))
        };
        let env = |name: &str| {
            std::env::var(name)
                .map_err(|_| Error::Scaler(format!("{name} is not set: not in a Kubernetes pod?")))
        };
        let host = env("KUBERNETES_SERVICE_HOST")?;
        let port = env("KUBERNETES_SERVICE_PORT")?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_owned();
        let namespace = String::from_utf8_lossy(&read("namespace")?)
            .trim()
            .to_owned();
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
            let certificate =
                certificate.map_err(|e| Error::Scaler(format!("the service account's CA: {e}")))?;
            roots
                .add(certificate)
                .map_err(|e| Error::Scaler(format!("the service account's CA: {e}")))?;
        }
        Self::new(
            &format!("https://{host}:{port}"),
            Some(token),
            &namespace,
            name,
            roots,
        )
    }

    /// The scaler of the StatefulService `name` in `namespace`, on the API server at `base`
    /// (`https://…`, or `http://…` for tests), trusting `roots`.
    pub fn new(
        base: &str,
        token: Option<String>,
        namespace: &str,
        name: &str,
        roots: RootCertStore,
    ) -> Result<Self, Error> {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Scaler(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(KubernetesScaler {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_owned(),
            token,
            path: format!(
                "/apis/cloudstate.io/v1alpha1/namespaces/{namespace}/statefulservices/{name}"
            ),
        })
    }

    async fn call(&self, method: Method, path: &str, patch: Option<Value>) -> Result<Value, Error> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match &patch {
            Some(patch) => {
                request = request.header(header::CONTENT_TYPE, "application/merge-patch+json");
                Bytes::from(patch.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| Error::Scaler(format!("{method} {path}: {e}")))?;
        let failed = |e: String| Error::Scaler(format!("{method} {path}: {e}"));
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| failed("timed out".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| failed("timed out".into()))?
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body);
            return Err(failed(format!(
                "{status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        serde_json::from_slice(&body).map_err(|e| failed(format!("not JSON: {e}")))
    }
}

#[async_trait]
impl Scaler for KubernetesScaler {
    async fn deployment(&self) -> Result<Option<Deployment>, Error> {
        let service = self.call(Method::GET, &self.path, None).await?;
        let replicas = service["spec"]["replicas"]
            .as_u64()
            .map_or(Ok(1), u32::try_from)
            .map_err(|_| Error::Scaler("spec.replicas is out of range".into()))?;
        let upgrading = service["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Upgrading" && c["status"] == "True");
        Ok(Some(Deployment {
            replicas,
            upgrading,
        }))
    }

    async fn scale(&self, nodes: u32) -> Result<(), Error> {
        let path = format!("{}/scale", self.path);
        self.call(
            Method::PATCH,
            &path,
            Some(json!({ "spec": { "replicas": nodes } })),
        )
        .await?;
        tracing::info!(nodes, "autoscaler: StatefulService scaled");
        Ok(())
    }
}
