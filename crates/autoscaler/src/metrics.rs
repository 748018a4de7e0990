//! The autoscaler's Prometheus metrics: desired and current nodes, the inputs, the state.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{Decision, Phase};

/// Labels of the phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// Labels of the decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The autoscaler's metrics (prefixed `cloudstate_autoscaler_`); cheap to clone.
#[derive(Clone, Default)]
pub struct AutoscalerMetrics {
    decision_maker: Gauge,
    current_nodes: Gauge,
    desired_nodes: Gauge,
    user_function_concurrency: Gauge<f64, AtomicU64>,
    request_concurrency: Gauge<f64, AtomicU64>,
    database_concurrency: Gauge<f64, AtomicU64>,
    request_rate: Gauge<f64, AtomicU64>,
    phase: Family<PhaseLabels, Gauge>,
    scalings: Family<ReasonLabels, Counter>,
}

impl AutoscalerMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = AutoscalerMetrics::default();
        let registry = registry.sub_registry_with_prefix("cloudstate_autoscaler");
        registry.register(
            "decision_maker",
            "1 on the node that makes the cluster's scaling decisions",
            metrics.decision_maker.clone(),
        );
        registry.register(
            "current_nodes",
            "Nodes in the cluster that are up",
            metrics.current_nodes.clone(),
        );
        registry.register(
            "desired_nodes",
            "Nodes the autoscaler wants (the current nodes unless it scaled)",
            metrics.desired_nodes.clone(),
        );
        registry.register(
            "user_function_concurrency",
            "Average user function concurrency per node over the window",
            metrics.user_function_concurrency.clone(),
        );
        registry.register(
            "request_concurrency",
            "Average request concurrency per node over the window",
            metrics.request_concurrency.clone(),
        );
        registry.register(
            "database_concurrency",
            "Average database concurrency per node over the window",
            metrics.database_concurrency.clone(),
        );
        registry.register(
            "request_rate",
            "Requests per second of the whole cluster over the rate window",
            metrics.request_rate.clone(),
        );
        registry.register(
            "phase",
            "1 for the autoscaler's current phase",
            metrics.phase.clone(),
        );
        registry.register(
            "scalings",
            "Scaling decisions by reason",
            metrics.scalings.clone(),
        );
        metrics
    }

    /// Records whether this node makes the decisions.
    pub(crate) fn set_decision_maker(&self, yes: bool) {
        self.decision_maker.set(i64::from(yes));
    }

    /// Records one decision.
    pub(crate) fn record(&self, members: u32, decision: &Decision) {
        self.current_nodes.set(i64::from(members));
        let desired = match decision.state.phase {
            Phase::Stable => members,
            Phase::ScalingUp { desired, .. }
            | Phase::ScalingDown { desired, .. }
            | Phase::Upgrading { desired } => desired,
        };
        self.desired_nodes.set(i64::from(desired));
        if let Some(load) = &decision.summary {
            self.user_function_concurrency
                .set(load.user_function_concurrency);
            self.request_concurrency.set(load.request_concurrency);
            self.database_concurrency.set(load.database_concurrency);
            self.request_rate.set(load.request_rate);
        }
        let current = decision.state.phase.name();
        for phase in Phase::NAMES {
            self.phase
                .get_or_create(&PhaseLabels { phase })
                .set(i64::from(phase == current));
        }
        if decision.scale_to.is_some() {
            self.scalings
                .get_or_create(&ReasonLabels {
                    reason: decision.reason.name(),
                })
                .inc();
        }
    }
}
