//! The Cloudstate Kubernetes operator.
//!
//! A user applies a `StatefulService` (their user function's containers, a store, replicas or
//! autoscaling bounds); the operator makes a Deployment of those containers with
//! `cloudstate-proxy` injected beside them, a headless Service through which the proxies find
//! each other, a Service for clients, and a ServiceAccount, Role and RoleBinding with the
//! rights the proxy needs; every object is owned by the resource, so deleting it deletes them.
//!
//! - [`resources`]: the custom resources as Rust types (their CRDs are generated from them);
//! - [`reconcile`]: pure functions from a resource and what was observed to the desired
//!   objects and status;
//! - [`controller`]: the kube-rs controller that fetches, applies and reports;
//! - [`manifests`]: the install manifests under `deploy/` (CRDs, RBAC, the operator).

pub mod controller;
mod error;
pub mod manifests;
pub mod reconcile;
pub mod resources;

pub use error::Error;
