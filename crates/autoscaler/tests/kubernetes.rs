//! The Kubernetes scaler against a stand-in API server on 127.0.0.1 (plain HTTP): the exact
//! requests it makes (paths, token, merge patch) and how it reads the answers.

use std::convert::Infallible;

use bytes::Bytes;
use cloudstate_autoscaler::{Deployment, KubernetesScaler, Scaler};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the API server saw it.
#[derive(Debug, PartialEq)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

const SERVICE: &str = "/apis/cloudstate.io/v1alpha1/namespaces/shop/statefulservices/cart";

/// Serves the StatefulService `answer` at its path and accepts patches of its scale; reports
/// every request.
async fn api_server(answer: Value, status: StatusCode) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (seen, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, answer) = (seen.clone(), answer.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (seen, answer) = (seen.clone(), answer.clone());
                    async move {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                        };
                        let (method, path) = (
                            request.method().to_string(),
                            request.uri().path().to_owned(),
                        );
                        let (authorization, content_type) =
                            (header("authorization"), header("content-type"));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let body = if body.is_empty() {
                            Value::Null
                        } else {
                            serde_json::from_slice(&body).unwrap()
                        };
                        let reply = if path == SERVICE {
                            answer
                        } else {
                            body.clone()
                        };
                        let _ = seen.send(Seen {
                            method,
                            path,
                            authorization,
                            content_type,
                            body,
                        });
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(reply.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{address}"), requests)
}

fn scaler(base: &str) -> KubernetesScaler {
    KubernetesScaler::new(
        base,
        Some("the-token".into()),
        "shop",
        "cart",
        RootCertStore::empty(),
    )
    .unwrap()
}

#[tokio::test]
async fn it_reads_replicas_and_the_upgrade_and_patches_the_scale() {
    let service = json!({
        "spec": { "replicas": 3 },
        "status": { "conditions": [
            { "type": "Ready", "status": "False" },
            { "type": "Upgrading", "status": "True" }
        ] }
    });
    let (base, mut requests) = api_server(service, StatusCode::OK).await;
    let scaler = scaler(&base);
    assert_eq!(
        scaler.deployment().await.unwrap(),
        Some(Deployment {
            replicas: 3,
            upgrading: true
        })
    );
    assert_eq!(
        requests.recv().await.unwrap(),
        Seen {
            method: "GET".into(),
            path: SERVICE.into(),
            authorization: Some("Bearer the-token".into()),
            content_type: None,
            body: Value::Null,
        }
    );
    scaler.scale(5).await.unwrap();
    assert_eq!(
        requests.recv().await.unwrap(),
        Seen {
            method: "PATCH".into(),
            path: format!("{SERVICE}/scale"),
            authorization: Some("Bearer the-token".into()),
            content_type: Some("application/merge-patch+json".into()),
            body: json!({ "spec": { "replicas": 5 } }),
        }
    );
}

#[tokio::test]
async fn a_service_without_replicas_or_conditions_has_one_node_and_no_upgrade() {
    let (base, _requests) = api_server(json!({ "spec": {} }), StatusCode::OK).await;
    assert_eq!(
        scaler(&base).deployment().await.unwrap(),
        Some(Deployment {
            replicas: 1,
            upgrading: false
        })
    );
}

#[tokio::test]
async fn a_refusal_is_an_error_that_names_the_status() {
    let (base, _requests) =
        api_server(json!({ "reason": "Forbidden" }), StatusCode::FORBIDDEN).await;
    let error = scaler(&base).scale(2).await.unwrap_err().to_string();
    assert!(error.contains("403 Forbidden"), "{error}");
    assert!(error.contains("/scale"), "{error}");
    let error = scaler("http://127.0.0.1:1")
        .deployment()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("GET"), "{error}");
}
