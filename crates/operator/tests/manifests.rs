//! The install manifests: the committed `deploy/` files are what the code generates, every
//! document is a Kubernetes object of the kind it claims (it reads back into its typed form),
//! the CRDs have structural schemas, and the shopping cart sample deploys.

use std::path::PathBuf;

use cloudstate_operator::manifests::files;
use cloudstate_operator::reconcile::{OperatorSettings, StoreLookup, plan};
use cloudstate_operator::resources::{StatefulService, StatefulStore};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The YAML documents of a file, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("valid YAML")
        .into_iter()
        .filter(|document| !document.is_null())
        .collect()
}

#[test]
fn the_committed_manifests_are_what_the_code_generates() {
    for (name, generated) in files().unwrap() {
        let path = deploy_dir().join(name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} differs from what the operator generates: run `cargo run -p cloudstate-operator -- manifests deploy`",
            path.display()
        );
    }
}

/// Reads `document` as a `K` and checks it says it is one.
fn typed<K: k8s_openapi::Resource + serde::de::DeserializeOwned>(document: &Value) -> K {
    assert_eq!(document["apiVersion"], K::API_VERSION, "{document}");
    assert_eq!(document["kind"], K::KIND, "{document}");
    serde_json::from_value(document.clone()).unwrap_or_else(|e| panic!("not a {}: {e}", K::KIND))
}

#[test]
fn every_document_is_the_kubernetes_object_it_claims_to_be() {
    let files = files().unwrap();
    let operator = documents(&files[1].1);
    let kinds: Vec<&str> = operator
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment"
        ]
    );
    let namespace: Namespace = typed(&operator[0]);
    let account: ServiceAccount = typed(&operator[1]);
    let role: ClusterRole = typed(&operator[2]);
    let binding: ClusterRoleBinding = typed(&operator[3]);
    let deployment: Deployment = typed(&operator[4]);
    assert_eq!(
        namespace.metadata.name.as_deref(),
        Some("cloudstate-system")
    );
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (Some(&subject.name), subject.namespace.as_ref()),
        (
            account.metadata.name.as_ref(),
            Some(&"cloudstate-system".to_owned())
        )
    );
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
    assert_eq!(pod.containers[0].args.as_ref().unwrap()[0], "run");

    let crds = documents(&files[0].1);
    assert_eq!(crds.len(), 2);
    for document in &crds {
        let crd: CustomResourceDefinition = typed(document);
        assert_eq!(crd.spec.group, "cloudstate.io");
        assert_eq!(
            crd.metadata.name.unwrap(),
            format!("{}.cloudstate.io", crd.spec.names.plural)
        );
        let version = &crd.spec.versions[0];
        assert_eq!(
            (version.name.as_str(), version.served, version.storage),
            ("v1alpha1", true, true)
        );
        let schema = version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        structural(schema, &crd.spec.names.kind);
    }
    let service: CustomResourceDefinition = serde_json::from_value(crds[0].clone()).unwrap();
    let scale = service.spec.versions[0]
        .subresources
        .as_ref()
        .unwrap()
        .scale
        .as_ref()
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

/// A structural schema (what the API server demands of a CRD): every node has a type, or
/// preserves unknown fields, or is an int-or-string.
fn structural(schema: &JSONSchemaProps, path: &str) {
    let special = schema.x_kubernetes_int_or_string == Some(true)
        || schema.x_kubernetes_preserve_unknown_fields == Some(true);
    assert!(schema.type_.is_some() || special, "{path} has no type");
    for (name, property) in schema.properties.iter().flatten() {
        structural(property, &format!("{path}.{name}"));
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        structural(items, &format!("{path}[]"));
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        structural(values, &format!("{path}{{}}"));
    }
    assert!(
        schema.any_of.is_none() && schema.one_of.is_none() || schema.type_.is_some() || special,
        "{path}"
    );
}

#[test]
fn the_shopping_cart_sample_deploys_on_postgres() {
    let text = std::fs::read_to_string(deploy_dir().join("samples/shopping-cart.yaml")).unwrap();
    let documents = documents(&text);
    let secret: Secret = typed(&documents[0]);
    let mut store: StatefulStore = serde_json::from_value(documents[1].clone()).unwrap();
    let mut service: StatefulService = serde_json::from_value(documents[2].clone()).unwrap();
    assert_eq!(documents[1]["apiVersion"], "cloudstate.io/v1alpha1");
    store.metadata.namespace = Some("shop".into());
    service.metadata.namespace = Some("shop".into());
    let postgres = store.spec.postgres.as_ref().expect("a PostgreSQL store");
    assert_eq!(Some(&postgres.secret), secret.metadata.name.as_ref());
    assert!(secret.string_data.unwrap().contains_key(&postgres.key));
    let settings = OperatorSettings {
        proxy_image: "proxy".into(),
    };
    let children = plan(&service, &StoreLookup::Found(Box::new(store)), &settings)
        .expect("the sample deploys");
    let pod = children.deployment.spec.unwrap().template.spec.unwrap();
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["shopping-cart", "cloudstate-proxy"]);
}
