//! Reconciliation as pure functions: from a `StatefulService` and what was observed (its
//! store, its Deployment) to the objects that should exist and the status to report. The
//! controller only fetches, applies and patches; everything decided is decided here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, SecretKeySelector, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition, LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::resources::{StatefulService, StatefulServiceStatus, StatefulStore};

/// Label on every object made for a service, and the pods' selector.
pub const SERVICE_LABEL: &str = "cloudstate.io/stateful-service";
/// Name of the injected proxy container.
pub const PROXY_CONTAINER: &str = "cloudstate-proxy";
/// The proxy's port for clients (gRPC and HTTP/JSON), health and metrics.
pub const PROXY_HTTP_PORT: i32 = 9000;
/// The proxy's port for traffic between proxies of one cluster.
pub const PROXY_CLUSTER_PORT: i32 = 9100;
/// Where the embedded store keeps its data in the proxy container.
const EMBEDDED_DIR: &str = "/var/lib/cloudstate";
/// Name of the first user container when it has none.
const USER_CONTAINER: &str = "user-function";

/// How the operator is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorSettings {
    /// The proxy image injected unless a service names its own.
    pub proxy_image: String,
}

/// The store a service names, as looked up.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreLookup {
    /// The service names no store: state in memory.
    None,
    /// The named store does not exist.
    Missing(String),
    /// The named store.
    Found(Box<StatefulStore>),
}

/// Why a service cannot be deployed as it is; reported in its `Ready` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The condition's reason: `InvalidSpec`, `StoreNotFound` or `InvalidStore`.
    pub reason: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl Problem {
    fn invalid(message: impl Into<String>) -> Self {
        Problem {
            reason: "InvalidSpec",
            message: message.into(),
        }
    }
}

/// The objects a service needs, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The pods' identity.
    pub service_account: ServiceAccount,
    /// The rights the proxy needs (none unless the autoscaler runs).
    pub role: Role,
    /// Grants `role` to `service_account`.
    pub role_binding: RoleBinding,
    /// Headless Service through which proxies find each other.
    pub cluster_service: Service,
    /// The Service clients call.
    pub service: Service,
    /// The user's containers with the proxy beside them.
    pub deployment: Deployment,
}

/// Where the proxy keeps state.
enum StoreChoice {
    Memory,
    Embedded(Option<String>),
    Postgres {
        secret: String,
        key: String,
        pool_size: Option<i32>,
    },
}

/// What should exist for `service`, or why it cannot be deployed.
pub fn plan(
    service: &StatefulService,
    store: &StoreLookup,
    settings: &OperatorSettings,
) -> Result<Children, Problem> {
    let name = service.name_any();
    let spec = &service.spec;
    let store = choose_store(store)?;
    let autoscaling = spec.autoscaling.as_ref().filter(|a| a.enabled);
    if let Some(autoscaling) = autoscaling
        && autoscaling.min_replicas > autoscaling.max_replicas
    {
        return Err(Problem::invalid(format!(
            "autoscaling.minReplicas ({}) is above autoscaling.maxReplicas ({})",
            autoscaling.min_replicas, autoscaling.max_replicas
        )));
    }
    let replicas = match (spec.replicas, autoscaling) {
        (Some(replicas), _) => replicas,
        (None, Some(autoscaling)) => autoscaling.min_replicas,
        (None, None) => 1,
    };
    if replicas < 0 {
        return Err(Problem::invalid("replicas must not be negative"));
    }
    let most_nodes = autoscaling.map_or(replicas, |a| a.max_replicas.max(replicas));
    if matches!(store, StoreChoice::Embedded(_)) && most_nodes > 1 {
        return Err(Problem {
            reason: "InvalidStore",
            message: "an embedded store keeps each node's state on that node: run one node \
                      (replicas 1, no autoscaling) or use PostgreSQL"
                .into(),
        });
    }
    let (user_containers, user_port) = user_containers(&spec.containers)?;

    let labels = labels(&name);
    let owner = owner_reference(service);
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: service.namespace(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let selector = BTreeMap::from([(SERVICE_LABEL.to_owned(), name.clone())]);
    let role_name = format!("{name}-cloudstate-proxy");

    let rules = match autoscaling {
        // The autoscaler reads its service (the Upgrading condition) and sets its scale.
        Some(_) => vec![
            PolicyRule {
                api_groups: Some(vec!["cloudstate.io".into()]),
                resources: Some(vec!["statefulservices".into()]),
                resource_names: Some(vec![name.clone()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["cloudstate.io".into()]),
                resources: Some(vec!["statefulservices/scale".into()]),
                resource_names: Some(vec![name.clone()]),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
                ..PolicyRule::default()
            },
        ],
        None => Vec::new(),
    };

    let mut proxy_args = Vec::new();
    if most_nodes > 1 {
        proxy_args.extend([
            format!("--cluster-seeds={name}-cluster:{PROXY_CLUSTER_PORT}"),
            format!("--cluster-port={PROXY_CLUSTER_PORT}"),
            "--cluster-advertise-host=$(POD_IP)".to_owned(),
            "--node-id=$(POD_NAME)".to_owned(),
        ]);
    }
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        value_env("HTTP_PORT", PROXY_HTTP_PORT.to_string()),
        value_env("USER_FUNCTION_PORT", user_port.to_string()),
        value_env(
            "LOG_FORMAT",
            spec.proxy
                .as_ref()
                .and_then(|p| p.log_format.clone())
                .unwrap_or_else(|| "json".into()),
        ),
    ];
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    match &store {
        StoreChoice::Memory => env.push(value_env("CLOUDSTATE_STORE", "memory".into())),
        StoreChoice::Embedded(claim) => {
            env.push(value_env(
                "CLOUDSTATE_STORE",
                format!("embedded:{EMBEDDED_DIR}"),
            ));
            volumes.push(Volume {
                name: "cloudstate-data".into(),
                persistent_volume_claim: claim.as_ref().map(|claim| {
                    PersistentVolumeClaimVolumeSource {
                        claim_name: claim.clone(),
                        read_only: None,
                    }
                }),
                empty_dir: claim.is_none().then(Default::default),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "cloudstate-data".into(),
                mount_path: EMBEDDED_DIR.into(),
                ..VolumeMount::default()
            });
        }
        StoreChoice::Postgres {
            secret,
            key,
            pool_size,
        } => {
            env.push(EnvVar {
                name: "CLOUDSTATE_STORE".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.clone(),
                        key: key.clone(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
            if let Some(pool_size) = pool_size {
                env.push(value_env("STORE_POOL_SIZE", pool_size.to_string()));
            }
        }
    }
    if let Some(autoscaling) = autoscaling {
        env.push(value_env("AUTOSCALER_ENABLED", "true".into()));
        env.push(value_env(
            "AUTOSCALER_SCALER",
            format!("statefulservice:{name}"),
        ));
        env.push(value_env(
            "AUTOSCALER_MIN_NODES",
            autoscaling.min_replicas.to_string(),
        ));
        env.push(value_env(
            "AUTOSCALER_MAX_NODES",
            autoscaling.max_replicas.to_string(),
        ));
        let optional = [
            (
                "USER_FUNCTION_TARGET_CONCURRENCY",
                autoscaling
                    .user_function_target_concurrency
                    .map(|v| v.to_string()),
            ),
            (
                "REQUEST_TARGET_CONCURRENCY",
                autoscaling
                    .request_target_concurrency
                    .map(|v| v.to_string()),
            ),
            (
                "SCALE_UP_STABLE_DEADLINE",
                autoscaling.scale_up_stable_deadline.clone(),
            ),
            (
                "SCALE_DOWN_STABLE_DEADLINE",
                autoscaling.scale_down_stable_deadline.clone(),
            ),
        ];
        for (variable, value) in optional {
            if let Some(value) = value {
                env.push(value_env(variable, value));
            }
        }
    }
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    let proxy = Container {
        name: PROXY_CONTAINER.into(),
        image: Some(
            spec.proxy
                .as_ref()
                .and_then(|p| p.image.clone())
                .unwrap_or_else(|| settings.proxy_image.clone()),
        ),
        args: (!proxy_args.is_empty()).then_some(proxy_args),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: PROXY_HTTP_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("cluster".into()),
                container_port: PROXY_CLUSTER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http_probe("/ready", 2, 3)),
        liveness_probe: Some(http_probe("/live", 10, 5)),
        resources: spec.proxy.as_ref().and_then(|p| p.resources.clone()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };
    let mut containers = user_containers;
    containers.push(proxy);

    let service_port = |name: &str, port: i32, target: &str| ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    Ok(Children {
        service_account: ServiceAccount {
            metadata: meta(name.clone()),
            automount_service_account_token: Some(autoscaling.is_some()),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: meta(role_name.clone()),
            rules: Some(rules),
        },
        role_binding: RoleBinding {
            metadata: meta(role_name.clone()),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: role_name,
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.clone(),
                namespace: service.namespace(),
                ..Subject::default()
            }]),
        },
        cluster_service: Service {
            metadata: meta(format!("{name}-cluster")),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                publish_not_ready_addresses: Some(true),
                selector: Some(selector.clone()),
                ports: Some(vec![service_port("cluster", PROXY_CLUSTER_PORT, "cluster")]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
        service: Service {
            metadata: meta(name.clone()),
            spec: Some(ServiceSpec {
                selector: Some(selector.clone()),
                ports: Some(vec![ServicePort {
                    app_protocol: Some("kubernetes.io/h2c".into()),
                    ..service_port("http", 80, "http")
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
        deployment: Deployment {
            metadata: meta(name.clone()),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers,
                        service_account_name: Some(name),
                        automount_service_account_token: Some(autoscaling.is_some()),
                        volumes: (!volumes.is_empty()).then_some(volumes),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        },
    })
}

fn choose_store(store: &StoreLookup) -> Result<StoreChoice, Problem> {
    let store = match store {
        StoreLookup::None => return Ok(StoreChoice::Memory),
        StoreLookup::Missing(name) => {
            return Err(Problem {
                reason: "StoreNotFound",
                message: format!("StatefulStore {name} does not exist"),
            });
        }
        StoreLookup::Found(store) => store,
    };
    let spec = &store.spec;
    let kinds = usize::from(spec.in_memory == Some(true))
        + usize::from(spec.embedded.is_some())
        + usize::from(spec.postgres.is_some());
    if kinds != 1 {
        return Err(Problem {
            reason: "InvalidStore",
            message: format!(
                "StatefulStore {} must set exactly one of inMemory, embedded and postgres",
                store.name_any()
            ),
        });
    }
    Ok(if let Some(embedded) = &spec.embedded {
        StoreChoice::Embedded(embedded.volume_claim.clone())
    } else if let Some(postgres) = &spec.postgres {
        StoreChoice::Postgres {
            secret: postgres.secret.clone(),
            key: postgres.key.clone(),
            pool_size: postgres.pool_size,
        }
    } else {
        StoreChoice::Memory
    })
}

/// The user's containers (the first named if it is not) and the port of the first.
fn user_containers(containers: &[Container]) -> Result<(Vec<Container>, i32), Problem> {
    let Some(first) = containers.first() else {
        return Err(Problem::invalid("at least one container is needed"));
    };
    let ports = first.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("user-port"))
        .or(ports.first())
        .map_or(8080, |p| p.container_port);
    let mut containers = containers.to_vec();
    if containers[0].name.is_empty() {
        containers[0].name = USER_CONTAINER.into();
    }
    for container in &containers {
        if container.name == PROXY_CONTAINER {
            return Err(Problem::invalid(format!(
                "the container name {PROXY_CONTAINER} is the injected proxy's"
            )));
        }
        for port in container.ports.as_deref().unwrap_or_default() {
            if [PROXY_HTTP_PORT, PROXY_CLUSTER_PORT].contains(&port.container_port) {
                return Err(Problem::invalid(format!(
                    "container {} uses port {}, which the proxy needs",
                    container.name, port.container_port
                )));
            }
        }
    }
    Ok((containers, port))
}

/// The labels of everything made for the service `name`.
fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SERVICE_LABEL.to_owned(), name.to_owned()),
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "cloudstate-operator".to_owned(),
        ),
    ])
}

/// Makes `service` the controller of an object, so deleting it deletes the object.
fn owner_reference(service: &StatefulService) -> OwnerReference {
    OwnerReference {
        api_version: StatefulService::api_version(&()).into_owned(),
        kind: StatefulService::kind(&()).into_owned(),
        name: service.name_any(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Whether `deployment` is rolling out a new version: pods of an older template still run.
/// (Scaling alone changes no template, so it is not an upgrade.)
pub fn rolling_out(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .is_some_and(|status| status.replicas.unwrap_or(0) > status.updated_replicas.unwrap_or(0))
}

/// The status to report for `service`, from its Deployment (if applied) or the problem that
/// kept it from being applied. Conditions keep their transition time while they hold.
pub fn status(
    service: &StatefulService,
    deployment: Option<&Deployment>,
    problem: Option<&Problem>,
    now: &Time,
) -> StatefulServiceStatus {
    let previous = service.status.clone().unwrap_or_default();
    let available = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let desired = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let upgrading = deployment.is_some_and(rolling_out);
    let (ready, reason, message) = match (problem, deployment) {
        (Some(problem), _) => (false, problem.reason, problem.message.clone()),
        (None, None) => (
            false,
            "Unavailable",
            "The application is not running yet".into(),
        ),
        (None, Some(_)) if upgrading => (
            false,
            "UpdateInProgress",
            "A new version is rolling out".into(),
        ),
        (None, Some(_)) if desired > 0 && available == 0 => {
            (false, "Unavailable", "All replicas are unavailable".into())
        }
        (None, Some(_)) if available < desired => (
            false,
            "PartiallyReady",
            format!("{available} of {desired} replicas are available"),
        ),
        (None, Some(_)) => (true, "Ready", format!("{available} replicas are available")),
    };
    let generation = service.metadata.generation;
    let condition = |type_: &str, holds: bool, reason: &str, message: String| {
        let status = if holds { "True" } else { "False" };
        let since = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    StatefulServiceStatus {
        replicas: available,
        selector: format!("{SERVICE_LABEL}={}", service.name_any()),
        summary: reason.into(),
        observed_generation: generation,
        conditions: vec![
            condition("Ready", ready, reason, message),
            condition(
                "Upgrading",
                upgrading,
                if upgrading { "RollingOut" } else { "Stable" },
                if upgrading {
                    "The Deployment is rolling out a new version".into()
                } else {
                    "No rollout in progress".into()
                },
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{EmbeddedStore, StatefulServiceSpec, StatefulStoreSpec};
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn service(ports: Vec<ContainerPort>, replicas: Option<i32>) -> StatefulService {
        let mut service = StatefulService::new(
            "svc",
            StatefulServiceSpec {
                containers: vec![Container {
                    image: Some("uf".into()),
                    ports: Some(ports),
                    ..Container::default()
                }],
                store: None,
                replicas,
                autoscaling: None,
                proxy: None,
            },
        );
        service.metadata.namespace = Some("ns".into());
        service
    }

    fn port(name: Option<&str>, number: i32) -> ContainerPort {
        ContainerPort {
            name: name.map(Into::into),
            container_port: number,
            ..ContainerPort::default()
        }
    }

    fn settings() -> OperatorSettings {
        OperatorSettings {
            proxy_image: "proxy".into(),
        }
    }

    fn proxy_env(children: &Children, name: &str) -> Option<String> {
        let pod = children.deployment.spec.as_ref()?.template.spec.as_ref()?;
        let proxy = pod.containers.iter().find(|c| c.name == PROXY_CONTAINER)?;
        proxy
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)?
            .value
            .clone()
    }

    #[test]
    fn the_user_function_port_is_user_port_else_the_first_else_8080() {
        for (ports, expected) in [
            (
                vec![port(None, 7000), port(Some("user-port"), 7001)],
                "7001",
            ),
            (vec![port(None, 7000), port(Some("metrics"), 7001)], "7000"),
            (vec![], "8080"),
        ] {
            let children = plan(&service(ports, None), &StoreLookup::None, &settings()).unwrap();
            assert_eq!(
                proxy_env(&children, "USER_FUNCTION_PORT").as_deref(),
                Some(expected)
            );
            assert_eq!(
                proxy_env(&children, "CLOUDSTATE_STORE").as_deref(),
                Some("memory")
            );
            let pod = children.deployment.spec.unwrap().template.spec.unwrap();
            assert_eq!(pod.containers[0].name, "user-function");
            // One node: no cluster flags.
            assert_eq!(pod.containers[1].args, None);
        }
    }

    #[test]
    fn an_embedded_store_runs_one_node_on_a_volume() {
        let store = |claim: Option<&str>| {
            StoreLookup::Found(Box::new(StatefulStore::new(
                "disk",
                StatefulStoreSpec {
                    in_memory: None,
                    embedded: Some(EmbeddedStore {
                        volume_claim: claim.map(Into::into),
                    }),
                    postgres: None,
                },
            )))
        };
        let children = plan(&service(vec![], None), &store(Some("data")), &settings()).unwrap();
        assert_eq!(
            proxy_env(&children, "CLOUDSTATE_STORE").as_deref(),
            Some("embedded:/var/lib/cloudstate")
        );
        let pod = children.deployment.spec.unwrap().template.spec.unwrap();
        let volume = &pod.volumes.unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data"
        );
        let children = plan(&service(vec![], None), &store(None), &settings()).unwrap();
        let pod = children.deployment.spec.unwrap().template.spec.unwrap();
        assert!(pod.volumes.unwrap()[0].empty_dir.is_some());
        let problem = plan(&service(vec![], Some(2)), &store(None), &settings()).unwrap_err();
        assert_eq!(problem.reason, "InvalidStore");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_they_hold() {
        let mut service = service(vec![], Some(2));
        let deployment = |available| Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(2),
                updated_replicas: Some(2),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        };
        let t1 = Time(k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap());
        let t2 = Time(k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap());
        let first = status(&service, Some(&deployment(1)), None, &t1);
        assert_eq!(first.summary, "PartiallyReady");
        service.status = Some(first);
        let same = status(&service, Some(&deployment(1)), None, &t2);
        assert_eq!(same.conditions[0].last_transition_time, t1);
        assert_eq!(Some(&same), service.status.as_ref(), "nothing to write");
        let ready = status(&service, Some(&deployment(2)), None, &t2);
        assert_eq!(ready.summary, "Ready");
        assert_eq!(ready.conditions[0].status, "True");
        assert_eq!(ready.conditions[0].last_transition_time, t2);
        assert_eq!(
            ready.conditions[1].last_transition_time, t1,
            "Upgrading did not change"
        );
    }
}
