//! The Cloudstate autoscaler.
//!
//! Every node measures its load ([`LoadReading`] → [`Sample`]: request, user function and
//! database concurrency, request count) and sends it to the cluster's one decision-maker with
//! its membership data ([`Cluster`]). The decision-maker runs [`decide`], a pure function of
//! its [`State`], the samples and the time, and hands each decision to a [`Scaler`]: one that
//! only logs (the default) or one that sets a Kubernetes `StatefulService`'s replicas.
//!
//! [`simulation`] runs the decision over load curves; its table is in `docs/kubernetes.md`.

mod decide;
mod error;
mod kubernetes;
mod metrics;
mod runner;
mod sample;
mod scaler;
mod settings;
pub mod simulation;

pub use decide::{
    Decision, Deployment, Inputs, Phase, Reason, State, Summary, bound, decide, summarize,
};
pub use error::Error;
pub use kubernetes::KubernetesScaler;
pub use metrics::AutoscalerMetrics;
pub use runner::{Autoscaler, Clock, Cluster, LoadSource, Standalone, run_sampler, system_clock};
pub use sample::{LoadReading, Sample};
pub use scaler::{LogScaler, Scaler};
pub use settings::Settings;
