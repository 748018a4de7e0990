//! The autoscaler's tasks: every node samples its load and publishes it; the decision-maker
//! collects the samples, decides every tick and hands decisions to the scaler.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::settings::Settings as S;
use crate::{
    AutoscalerMetrics, Decision, Error, Inputs, LoadReading, Sample, Scaler, Settings, State,
    decide,
};

/// The cluster as the autoscaler sees it: where samples go, who is up, who decides.
pub trait Cluster: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> String;
    /// Sends this node's newest sample to the decision-maker.
    fn publish_sample(&self, sample: &Sample);
    /// Recent samples the members sent; the autoscaler ignores repeats.
    fn samples(&self) -> Vec<Sample>;
    /// Nodes that are up.
    fn members(&self) -> u32;
    /// Whether this node makes the scaling decisions now.
    fn is_decision_maker(&self) -> bool;
    /// Publishes the decision-maker's state, so that a successor can carry on.
    fn publish_state(&self, state: &State);
    /// The state the last decision-maker published.
    fn published_state(&self) -> Option<State>;
}

/// A cluster of one node (no cluster configured): it is the only member and decides.
#[derive(Default)]
pub struct Standalone {
    node: String,
    samples: Mutex<VecDeque<Sample>>,
    state: Mutex<Option<State>>,
}

/// Samples a [`Standalone`] node keeps until they are collected.
const STANDALONE_SAMPLES: usize = 16;

impl Standalone {
    /// The cluster of the one node `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Standalone {
            node: node.into(),
            ..Standalone::default()
        }
    }
}

impl Cluster for Standalone {
    fn node_id(&self) -> String {
        self.node.clone()
    }

    fn publish_sample(&self, sample: &Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == STANDALONE_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample.clone());
    }

    fn samples(&self) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.iter().cloned().collect()
    }

    fn members(&self) -> u32 {
        1
    }

    fn is_decision_maker(&self) -> bool {
        true
    }

    fn publish_state(&self, state: &State) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.clone());
    }

    fn published_state(&self) -> Option<State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Where a node's load counters come from (the engine's metrics).
pub trait LoadSource: Send + Sync + 'static {
    /// The counters now.
    fn read(&self) -> LoadReading;
}

impl<F: Fn() -> LoadReading + Send + Sync + 'static> LoadSource for F {
    fn read(&self) -> LoadReading {
        self()
    }
}

/// A wall clock in milliseconds since the UNIX epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, S::millis)
    })
}

/// Samples this node's load every `period` and publishes it to the cluster, until `shutdown`.
pub async fn run_sampler(
    source: impl LoadSource,
    cluster: Arc<dyn Cluster>,
    period: Duration,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) {
    let node = cluster.node_id();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = source.read();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let reading = source.read();
        if let Some(sample) = reading.sample_since(&previous, &node, clock()) {
            cluster.publish_sample(&sample);
        }
        previous = reading;
    }
}

/// The decision-maker's loop: collects samples, decides every tick while this node is the
/// decision-maker, and hands decisions to the scaler.
pub struct Autoscaler {
    settings: Settings,
    cluster: Arc<dyn Cluster>,
    scaler: Arc<dyn Scaler>,
    metrics: AutoscalerMetrics,
    clock: Clock,
    /// `Some` while this node is the decision-maker.
    state: Option<State>,
    /// Samples of the window, oldest first.
    history: VecDeque<Sample>,
}

impl Autoscaler {
    /// An autoscaler with the wall clock; the settings are checked.
    pub fn new(
        settings: Settings,
        cluster: Arc<dyn Cluster>,
        scaler: Arc<dyn Scaler>,
        metrics: AutoscalerMetrics,
    ) -> Result<Self, Error> {
        settings.validate()?;
        Ok(Autoscaler {
            settings,
            cluster,
            scaler,
            metrics,
            clock: system_clock(),
            state: None,
            history: VecDeque::new(),
        })
    }

    /// Uses `clock` (milliseconds since the UNIX epoch) instead of the wall clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `shutdown`: collects samples every report period and decides every tick.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut collect = tokio::time::interval(self.settings.report_period);
        let mut decide = tokio::time::interval(self.settings.tick_period);
        collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        decide.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = collect.tick() => self.collect(),
                _ = decide.tick() => {
                    self.collect();
                    self.tick().await;
                }
            }
        }
    }

    /// Adds the cluster's new samples to the window's history and forgets the old ones.
    pub fn collect(&mut self) {
        let now = (self.clock)();
        let window_start = now.saturating_sub(S::millis(self.settings.target_concurrency_window));
        for sample in self.cluster.samples() {
            let known = self
                .history
                .iter()
                .any(|s| s.node == sample.node && s.at_ms == sample.at_ms);
            if !known && sample.at_ms > window_start {
                self.history.push_back(sample);
            }
        }
        self.history.retain(|s| s.at_ms > window_start);
    }

    /// Makes one decision if this node is the decision-maker, and carries it out.
    pub async fn tick(&mut self) -> Option<Decision> {
        let leading = self.cluster.is_decision_maker();
        self.metrics.set_decision_maker(leading);
        if !leading {
            self.state = None;
            return None;
        }
        let state = match self.state.take() {
            Some(state) => state,
            None => self.cluster.published_state().unwrap_or_default(),
        };
        let deployment = match self.scaler.deployment().await {
            Ok(deployment) => deployment,
            Err(error) => {
                tracing::warn!(%error, "autoscaler: cannot read the deployment; no decision");
                self.state = Some(state);
                return None;
            }
        };
        let samples: Vec<Sample> = self.history.iter().cloned().collect();
        let members = self.cluster.members();
        let inputs = Inputs {
            now_ms: (self.clock)(),
            members,
            samples: &samples,
            deployment,
        };
        let decision = decide(&self.settings, &state, &inputs);
        self.metrics.record(members, &decision);
        if decision.state != state {
            tracing::info!(
                from = state.phase.name(),
                to = decision.state.phase.name(),
                reason = decision.reason.name(),
                "autoscaler: phase changed"
            );
        }
        if let Some(nodes) = decision.scale_to {
            tracing::info!(
                members,
                nodes,
                reason = decision.reason.name(),
                load = ?decision.summary,
                "autoscaler: scaling"
            );
            if let Err(error) = self.scaler.scale(nodes).await {
                tracing::warn!(%error, nodes, "autoscaler: scaling failed; will ask again");
            }
        }
        self.cluster.publish_state(&decision.state);
        self.state = Some(decision.state.clone());
        Some(decision)
    }
}
