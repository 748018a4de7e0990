//! The controller against a mocked API server (a `tower-test` pair behind `kube::Client`),
//! scenario by scenario: every request it makes is checked (method, path, query, body) and
//! answered, and a request nobody expected fails the test.

use std::sync::Arc;
use std::time::Duration;

use cloudstate_operator::controller::{Context, error_policy, reconcile};
use cloudstate_operator::reconcile::OperatorSettings;
use cloudstate_operator::resources::StatefulService;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tower_test::mock::{Handle, pair};

const APPLY: &str = "?&force=true&fieldManager=cloudstate-operator";

/// The mocked API server's side.
struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Waits for the next request, checks its method and path (with query), answers it with
    /// `status` and `response`, and returns the request's JSON body.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        response: Value,
    ) -> Value {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("the controller stopped making requests");
        assert_eq!(
            (request.method(), request.uri().to_string()),
            (&method, path.to_owned()),
            "unexpected request"
        );
        let body = request.into_body().collect_bytes().await.unwrap();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&response).unwrap()))
            .unwrap();
        send.send_response(response);
        body
    }

    /// Answers a server-side apply of `path` with the applied object itself (plus `extra`
    /// merged in, e.g. a status), and returns what was applied.
    async fn expect_apply(&mut self, path: &str, extra: Value) -> Value {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("the controller stopped making requests");
        assert_eq!(
            (request.method(), request.uri().to_string()),
            (&Method::PATCH, format!("{path}{APPLY}")),
            "unexpected request"
        );
        assert_eq!(
            request.headers()["content-type"],
            "application/apply-patch+yaml",
            "server-side apply"
        );
        let body: Value =
            serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        let mut answer = body.clone();
        if let (Some(answer), Some(extra)) = (answer.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                answer.insert(key.clone(), value.clone());
            }
        }
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        body
    }
}

/// Runs one reconciliation of `service` while `script` plays the API server; fails if the
/// controller makes a request after the script ended.
async fn reconcile_with<F, Fut>(
    service: Value,
    script: F,
) -> Result<Action, cloudstate_operator::Error>
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: Future<Output = ApiServer>,
{
    let (mock, handle) = pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(mock, "default");
    let context = Arc::new(Context {
        client,
        settings: OperatorSettings {
            proxy_image: "cloudstate/cloudstate-proxy:test".into(),
        },
    });
    let service: StatefulService = serde_json::from_value(service).unwrap();
    let service = Arc::new(service);
    let task = tokio::spawn(reconcile(service.clone(), context.clone()));
    let mut server = script(ApiServer(handle)).await;
    let outcome = tokio::select! {
        outcome = task => outcome.unwrap(),
        extra = server.0.next_request() => {
            let (request, _) = extra.unwrap();
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    };
    if let Err(error) = &outcome {
        // What the controller would do next.
        let _ = error_policy(service, error, context);
    }
    outcome
}

fn cart(extra_spec: Value) -> Value {
    let mut spec = json!({
        "containers": [{
            "image": "example/shopping-cart:1",
            "ports": [{ "name": "user-port", "containerPort": 8080 }]
        }],
        "store": { "name": "pg" },
        "replicas": 2
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (key, value) in extra {
            spec.insert(key.clone(), value.clone());
        }
    }
    json!({
        "apiVersion": "cloudstate.io/v1alpha1",
        "kind": "StatefulService",
        "metadata": {
            "name": "cart",
            "namespace": "shop",
            "uid": "11111111-2222-3333-4444-555555555555",
            "resourceVersion": "41",
            "generation": 3
        },
        "spec": spec
    })
}

fn postgres_store() -> Value {
    json!({
        "apiVersion": "cloudstate.io/v1alpha1",
        "kind": "StatefulStore",
        "metadata": { "name": "pg", "namespace": "shop" },
        "spec": { "postgres": { "secret": "cart-db", "key": "url" } }
    })
}

const STORE_PATH: &str = "/apis/cloudstate.io/v1alpha1/namespaces/shop/statefulstores/pg";
const STATUS_PATH: &str =
    "/apis/cloudstate.io/v1alpha1/namespaces/shop/statefulservices/cart/status?";

fn owner() -> Value {
    json!([{
        "apiVersion": "cloudstate.io/v1alpha1",
        "kind": "StatefulService",
        "name": "cart",
        "uid": "11111111-2222-3333-4444-555555555555",
        "controller": true,
        "blockOwnerDeletion": true
    }])
}

/// Plays the applies of the six objects; returns the applied Deployment.
async fn applies(server: &mut ApiServer, deployment_status: Value) -> (Value, Vec<Value>) {
    let mut applied = Vec::new();
    for path in [
        "/api/v1/namespaces/shop/serviceaccounts/cart",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/cart-cloudstate-proxy",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/cart-cloudstate-proxy",
        "/api/v1/namespaces/shop/services/cart-cluster",
        "/api/v1/namespaces/shop/services/cart",
    ] {
        applied.push(server.expect_apply(path, json!({})).await);
    }
    let deployment = server
        .expect_apply(
            "/apis/apps/v1/namespaces/shop/deployments/cart",
            json!({ "status": deployment_status, "metadata": { "name": "cart", "namespace": "shop", "generation": 1 } }),
        )
        .await;
    applied.push(deployment.clone());
    (deployment, applied)
}

fn env(container: &Value, name: &str) -> Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn create_makes_every_object_owned_by_the_service_and_reports_status() {
    let action = reconcile_with(cart(json!({})), |mut server| async move {
        server
            .expect(Method::GET, STORE_PATH, StatusCode::OK, postgres_store())
            .await;
        let (deployment, applied) = applies(&mut server, json!({})).await;
        for object in &applied {
            assert_eq!(object["metadata"]["ownerReferences"], owner(), "{object}");
            assert_eq!(
                object["metadata"]["labels"]["cloudstate.io/stateful-service"],
                "cart"
            );
        }
        assert_eq!(
            applied
                .iter()
                .map(|o| o["kind"].as_str().unwrap())
                .collect::<Vec<_>>(),
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "Service",
                "Service",
                "Deployment"
            ]
        );
        // Without autoscaling the proxy needs no rights and gets no token.
        assert_eq!(applied[1]["rules"], json!([]));
        assert_eq!(applied[0]["automountServiceAccountToken"], false);
        assert_eq!(applied[3]["spec"]["clusterIP"], "None");
        assert_eq!(applied[3]["spec"]["publishNotReadyAddresses"], true);
        assert_eq!(applied[4]["spec"]["ports"][0]["targetPort"], "http");

        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 2);
        assert_eq!(
            spec["selector"]["matchLabels"],
            json!({ "cloudstate.io/stateful-service": "cart" })
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "cart");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["name"], "user-function");
        assert_eq!(containers[0]["image"], "example/shopping-cart:1");
        let proxy = &containers[1];
        assert_eq!(proxy["name"], "cloudstate-proxy");
        assert_eq!(proxy["image"], "cloudstate/cloudstate-proxy:test");
        assert_eq!(env(proxy, "USER_FUNCTION_PORT")["value"], "8080");
        assert_eq!(env(proxy, "HTTP_PORT")["value"], "9000");
        assert_eq!(
            env(proxy, "CLOUDSTATE_STORE")["valueFrom"],
            json!({ "secretKeyRef": { "name": "cart-db", "key": "url" } })
        );
        assert_eq!(
            proxy["args"],
            json!([
                "--cluster-seeds=cart-cluster:9100",
                "--cluster-port=9100",
                "--cluster-advertise-host=$(POD_IP)",
                "--node-id=$(POD_NAME)"
            ])
        );
        assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(proxy["livenessProbe"]["httpGet"]["path"], "/live");

        let status = server
            .expect(Method::PATCH, STATUS_PATH, StatusCode::OK, cart(json!({})))
            .await;
        assert_eq!(
            status["metadata"],
            json!({ "resourceVersion": "41" }),
            "guarded by the version read"
        );
        let status = &status["status"];
        assert_eq!(status["replicas"], 0);
        assert_eq!(status["selector"], "cloudstate.io/stateful-service=cart");
        assert_eq!(status["summary"], "Unavailable");
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["conditions"][0]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(
            status["conditions"][0]["message"],
            "All replicas are unavailable"
        );
        assert_eq!(status["conditions"][1]["type"], "Upgrading");
        server
    })
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn reconciling_again_applies_the_same_objects_and_writes_no_status() {
    let ready = json!({ "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2 });
    let mut first_applied = Vec::new();
    let mut written_status = Value::Null;
    reconcile_with(cart(json!({})), |mut server| {
        let (applied, status) = (&mut first_applied, &mut written_status);
        let ready = ready.clone();
        async move {
            server
                .expect(Method::GET, STORE_PATH, StatusCode::OK, postgres_store())
                .await;
            *applied = applies(&mut server, ready).await.1;
            let patch = server
                .expect(Method::PATCH, STATUS_PATH, StatusCode::OK, cart(json!({})))
                .await;
            assert_eq!(patch["status"]["summary"], "Ready");
            assert_eq!(patch["status"]["replicas"], 2);
            *status = patch["status"].clone();
            server
        }
    })
    .await
    .unwrap();
    // The service as the API server now has it: with that status.
    let mut service = cart(json!({}));
    service["status"] = written_status;
    reconcile_with(service, |mut server| {
        let first = first_applied.clone();
        async move {
            server
                .expect(Method::GET, STORE_PATH, StatusCode::OK, postgres_store())
                .await;
            let again = applies(&mut server, ready).await.1;
            assert_eq!(again, first, "the same objects");
            // No status write: it would not change anything.
            server
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_spec_change_rolls_the_deployment_and_reports_the_upgrade() {
    let mut service = cart(json!({
        "replicas": 3,
        "containers": [{ "image": "example/shopping-cart:2", "ports": [{ "containerPort": 8080 }] }],
        "autoscaling": { "enabled": true, "minReplicas": 2, "maxReplicas": 6, "userFunctionTargetConcurrency": 4.0 }
    }));
    service["status"] = json!({ "replicas": 2, "selector": "cloudstate.io/stateful-service=cart", "summary": "Ready", "conditions": [] });
    reconcile_with(service, |mut server| async move {
        server.expect(Method::GET, STORE_PATH, StatusCode::OK, postgres_store()).await;
        // The Deployment, applied with the new template, has one updated pod of three.
        let rolling = json!({ "observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2 });
        let (deployment, applied) = applies(&mut server, rolling).await;
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 3);
        let proxy = &spec["template"]["spec"]["containers"][1];
        assert_eq!(spec["template"]["spec"]["containers"][0]["image"], "example/shopping-cart:2");
        assert_eq!(env(proxy, "AUTOSCALER_ENABLED")["value"], "true");
        assert_eq!(env(proxy, "AUTOSCALER_SCALER")["value"], "statefulservice:cart");
        assert_eq!(env(proxy, "AUTOSCALER_MIN_NODES")["value"], "2");
        assert_eq!(env(proxy, "AUTOSCALER_MAX_NODES")["value"], "6");
        assert_eq!(env(proxy, "USER_FUNCTION_TARGET_CONCURRENCY")["value"], "4");
        assert_eq!(spec["template"]["spec"]["automountServiceAccountToken"], true);
        // The autoscaling proxy may read its service and set its scale, and nothing else.
        assert_eq!(
            applied[1]["rules"],
            json!([
                { "apiGroups": ["cloudstate.io"], "resources": ["statefulservices"], "resourceNames": ["cart"], "verbs": ["get"] },
                { "apiGroups": ["cloudstate.io"], "resources": ["statefulservices/scale"], "resourceNames": ["cart"], "verbs": ["get", "patch", "update"] }
            ])
        );
        let patch = server.expect(Method::PATCH, STATUS_PATH, StatusCode::OK, cart(json!({}))).await;
        let status = &patch["status"];
        assert_eq!(status["summary"], "UpdateInProgress");
        assert_eq!(status["replicas"], 2);
        assert_eq!(status["conditions"][1]["type"], "Upgrading");
        assert_eq!(status["conditions"][1]["status"], "True");
        server
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_deleted_service_is_left_to_the_garbage_collector() {
    let mut service = cart(json!({}));
    service["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let action = reconcile_with(service, |server| async move { server })
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_missing_store_is_a_condition_and_a_retry_not_a_failure() {
    let action = reconcile_with(cart(json!({})), |mut server| async move {
        let not_found = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "statefulstores.cloudstate.io \"pg\" not found", "reason": "NotFound", "code": 404
        });
        server.expect(Method::GET, STORE_PATH, StatusCode::NOT_FOUND, not_found).await;
        // Nothing is applied.
        let patch = server.expect(Method::PATCH, STATUS_PATH, StatusCode::OK, cart(json!({}))).await;
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "StoreNotFound");
        assert_eq!(ready["message"], "StatefulStore pg does not exist");
        assert_eq!(patch["status"]["summary"], "StoreNotFound");
        server
    })
    .await
    .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_bad_spec_is_reported_and_nothing_is_applied() {
    // The user function's container takes the proxy's port; no store named.
    let mut service = cart(
        json!({ "containers": [{ "name": "uf", "image": "x", "ports": [{ "containerPort": 9000 }] }] }),
    );
    service["spec"].as_object_mut().unwrap().remove("store");
    reconcile_with(service, |mut server| async move {
        let patch = server
            .expect(Method::PATCH, STATUS_PATH, StatusCode::OK, cart(json!({})))
            .await;
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(ready["reason"], "InvalidSpec");
        assert_eq!(
            ready["message"],
            "container uf uses port 9000, which the proxy needs"
        );
        server
    })
    .await
    .unwrap();
    // A store that sets two kinds.
    reconcile_with(cart(json!({})), |mut server| async move {
        let mut store = postgres_store();
        store["spec"]["inMemory"] = json!(true);
        server
            .expect(Method::GET, STORE_PATH, StatusCode::OK, store)
            .await;
        let patch = server
            .expect(Method::PATCH, STATUS_PATH, StatusCode::OK, cart(json!({})))
            .await;
        assert_eq!(patch["status"]["conditions"][0]["reason"], "InvalidStore");
        server
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_conflict_on_the_status_write_is_retried_at_once() {
    let error = reconcile_with(cart(json!({})), |mut server| async move {
        server.expect(Method::GET, STORE_PATH, StatusCode::OK, postgres_store()).await;
        applies(&mut server, json!({})).await;
        let conflict = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
            "message": "Operation cannot be fulfilled on statefulservices.cloudstate.io \"cart\": the object has been modified"
        });
        server.expect(Method::PATCH, STATUS_PATH, StatusCode::CONFLICT, conflict).await;
        server
    })
    .await
    .unwrap_err();
    assert!(error.is_conflict(), "{error}");
    let (mock, _handle) = pair::<Request<Body>, Response<Body>>();
    let context = Arc::new(Context {
        client: kube::Client::new(mock, "default"),
        settings: OperatorSettings {
            proxy_image: "p".into(),
        },
    });
    let service = Arc::new(serde_json::from_value::<StatefulService>(cart(json!({}))).unwrap());
    assert_eq!(
        error_policy(service, &error, context),
        Action::requeue(Duration::from_secs(1))
    );
}
