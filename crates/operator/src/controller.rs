//! The `StatefulService` controller: looks up the store, applies what [`plan`] says with
//! server-side apply (so repeating it changes nothing), and writes the status [`status`]
//! computes, guarded by the resource version it was computed from.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::reconcile::{OperatorSettings, StoreLookup, plan, status};
use crate::resources::{StatefulService, StatefulStore};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "cloudstate-operator";

/// How often a service is looked at again when nothing changed.
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a service whose store is missing is looked at again (store changes also wake it).
const STORE_RETRY: Duration = Duration::from_secs(30);

/// What every reconciliation needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's settings.
    pub settings: OperatorSettings,
}

/// Brings the objects of one `StatefulService` in line with its spec and reports its status.
pub async fn reconcile(
    service: Arc<StatefulService>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    if service.meta().deletion_timestamp.is_some() {
        // Everything it made has it as owner: the garbage collector deletes them.
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().ok_or(Error::NotNamespaced)?;
    let name = service.name_any();
    let client = &context.client;
    let store = match &service.spec.store {
        None => StoreLookup::None,
        Some(reference) => {
            let stores: Api<StatefulStore> = Api::namespaced(client.clone(), &namespace);
            match stores.get_opt(&reference.name).await? {
                Some(store) => StoreLookup::Found(Box::new(store)),
                None => StoreLookup::Missing(reference.name.clone()),
            }
        }
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let (new_status, next) = match plan(&service, &store, &context.settings) {
        Ok(children) => {
            apply(client, &namespace, &children.service_account).await?;
            apply(client, &namespace, &children.role).await?;
            apply(client, &namespace, &children.role_binding).await?;
            apply(client, &namespace, &children.cluster_service).await?;
            apply(client, &namespace, &children.service).await?;
            let deployment: Deployment = apply(client, &namespace, &children.deployment).await?;
            (
                status(&service, Some(&deployment), None, &now),
                Action::requeue(RESYNC),
            )
        }
        Err(problem) => {
            tracing::warn!(service = %name, %namespace, reason = problem.reason, message = %problem.message, "cannot deploy");
            let retry = if matches!(store, StoreLookup::Missing(_)) {
                STORE_RETRY
            } else {
                RESYNC
            };
            (
                status(&service, None, Some(&problem), &now),
                Action::requeue(retry),
            )
        }
    };
    if service.status.as_ref() != Some(&new_status) {
        let services: Api<StatefulService> = Api::namespaced(client.clone(), &namespace);
        // The resource version makes the write fail (409) if the service changed meanwhile.
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": service.resource_version() },
            "status": new_status,
        });
        services
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(next)
}

/// Applies `object` with server-side apply, taking ownership of the fields it sets.
async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    // k8s-openapi objects carry their apiVersion and kind, which server-side apply needs.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(object)).await?)
}

/// How soon to retry after a failed reconciliation.
pub fn error_policy(
    service: Arc<StatefulService>,
    error: &Error,
    _context: Arc<Context>,
) -> Action {
    let delay = if error.is_conflict() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(15)
    };
    tracing::warn!(service = %service.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller until the process is stopped: watches services, what they own, and
/// stores (a store's change wakes the services that name it).
pub async fn run(client: Client, namespace: Option<String>, settings: OperatorSettings) {
    let (services, deployments, kube_services, accounts, roles, bindings, stores) = match &namespace
    {
        Some(namespace) => (
            Api::<StatefulService>::namespaced(client.clone(), namespace),
            Api::<Deployment>::namespaced(client.clone(), namespace),
            Api::<Service>::namespaced(client.clone(), namespace),
            Api::<ServiceAccount>::namespaced(client.clone(), namespace),
            Api::<Role>::namespaced(client.clone(), namespace),
            Api::<RoleBinding>::namespaced(client.clone(), namespace),
            Api::<StatefulStore>::namespaced(client.clone(), namespace),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let owned =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=cloudstate-operator");
    let controller = Controller::new(services, watcher::Config::default());
    let cache = controller.store();
    let context = Arc::new(Context { client, settings });
    controller
        .owns(deployments, owned.clone())
        .owns(kube_services, owned.clone())
        .owns(accounts, owned.clone())
        .owns(roles, owned.clone())
        .owns(bindings, owned)
        .watches(
            stores,
            watcher::Config::default(),
            move |store: StatefulStore| {
                let namespace = store.namespace();
                let name = store.name_any();
                cache
                    .state()
                    .into_iter()
                    .filter(|service| {
                        service.namespace() == namespace
                            && service.spec.store.as_ref().is_some_and(|s| s.name == name)
                    })
                    .map(|service| ObjectRef::from_obj(&*service))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(service = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile error"),
            }
        })
        .await;
}
