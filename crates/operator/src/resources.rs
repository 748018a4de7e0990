//! The custom resources: `StatefulService` and `StatefulStore` (group `cloudstate.io`, version
//! `v1alpha1`, as in the original Cloudstate). Their OpenAPI schemas are generated from these
//! types; rules a schema can state (at least one container, replicas not negative, exactly one
//! kind of store, autoscaling bounds in order) are in it, as CEL rules where needed, so the
//! API server refuses such specs. What only the operator can check is reported in the
//! service's status conditions.

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stateful service: the user function's containers, with the Cloudstate proxy injected by
/// the operator, its store, and how many nodes run it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cloudstate.io",
    version = "v1alpha1",
    kind = "StatefulService",
    namespaced,
    status = "StatefulServiceStatus",
    derive = "PartialEq",
    shortname = "statefulsvc",
    category = "cloudstate",
    doc = "A Cloudstate stateful service: user function containers run with the Cloudstate proxy beside them",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.summary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.autoscaling) || !self.autoscaling.enabled || self.autoscaling.minReplicas <= self.autoscaling.maxReplicas",
        "message": "autoscaling.minReplicas must not be above autoscaling.maxReplicas"
    }
]))]
pub struct StatefulServiceSpec {
    /// The user function's containers. The first serves the Cloudstate protocol, on its
    /// port named `user-port`, else its first port, else 8080.
    #[schemars(length(min = 1))]
    pub containers: Vec<Container>,
    /// The `StatefulStore` (in the same namespace) that keeps the state; without one, state is
    /// kept in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreReference>,
    /// Nodes to run (default 1). With autoscaling enabled the autoscaler sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// The proxy's autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Settings of the injected proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySpec>,
}

/// Names a `StatefulStore`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct StoreReference {
    /// The store's name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The autoscaler's bounds and targets (see docs/kubernetes.md). Off unless enabled.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Whether the autoscaler runs.
    #[serde(default)]
    pub enabled: bool,
    /// Fewest nodes.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most nodes.
    #[serde(default = "ten")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// User function calls in progress per node above which nodes are added (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub user_function_target_concurrency: Option<f64>,
    /// Client requests in progress per node (less those waiting for the store) above which
    /// nodes are added (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub request_target_concurrency: Option<f64>,
    /// Wait after scaling up, e.g. `3m` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub scale_up_stable_deadline: Option<String>,
    /// Wait after scaling down, e.g. `30s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"))]
    pub scale_down_stable_deadline: Option<String>,
}

fn one() -> i32 {
    1
}

fn ten() -> i32 {
    10
}

/// Settings of the injected proxy container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// The proxy image (default: the operator's `--proxy-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Log format of the proxy: `text` or `json` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(text|json)$"))]
    pub log_format: Option<String>,
}

/// What the operator observed of a `StatefulService`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatefulServiceStatus {
    /// Nodes available (the scale subresource's status replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the service's pods (for the scale subresource).
    #[serde(default)]
    pub selector: String,
    /// One word: `Ready`, or the reason it is not.
    #[serde(default)]
    pub summary: String,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Upgrading`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A store for stateful services: exactly one of in memory, embedded or PostgreSQL.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cloudstate.io",
    version = "v1alpha1",
    kind = "StatefulStore",
    namespaced,
    derive = "PartialEq",
    category = "cloudstate",
    doc = "Where Cloudstate stateful services keep their state",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.inMemory) && self.inMemory, has(self.embedded), has(self.postgres)].filter(x, x).size() == 1",
        "message": "exactly one of inMemory, embedded and postgres must be set"
    }
]))]
pub struct StatefulStoreSpec {
    /// State in each proxy's memory, lost when a pod stops (development).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_memory: Option<bool>,
    /// The proxy's embedded on-disk store: one node only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStore>,
    /// PostgreSQL, shared by every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStore>,
}

/// The embedded store's volume.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedStore {
    /// A PersistentVolumeClaim to keep the data in; without one the data is in an `emptyDir`
    /// and lost with the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim: Option<String>,
}

/// A PostgreSQL database, its connection URL in a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStore {
    /// The Secret (same namespace) holding `postgres://user:password@host:port/database`.
    #[schemars(length(min = 1))]
    pub secret: String,
    /// The key of the URL in the Secret (default `url`).
    #[serde(default = "url_key")]
    pub key: String,
    /// Most connections each proxy opens (default: the proxy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2))]
    pub pool_size: Option<i32>,
}

fn url_key() -> String {
    "url".to_owned()
}
