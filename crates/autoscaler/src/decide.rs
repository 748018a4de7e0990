//! The scaling decision: a pure function of the autoscaler's state, the load samples of the
//! cluster's nodes and the time.
//!
//! The algorithm is the original Cloudstate autoscaler's:
//! - **Stable**: average each concurrency over the window. If user function concurrency per
//!   node is above its target, scale up to ⌈concurrency × nodes / target⌉; else if request
//!   concurrency minus database concurrency is above its target, scale up the same way from
//!   it; else if both would need fewer nodes than there are, scale down to the larger of the
//!   two. Every step is bounded (`max_scale`, `max_scale_factor`) and so is the total
//!   (`min_nodes`, `max_nodes`).
//! - **ScalingUp**: after a scale-up, concurrency is not looked at until the deadline (new
//!   nodes start and take over shards). Only a request rate `request_rate_threshold_factor`
//!   times the rate at the scale-up, with concurrency still above a target, adds nodes at
//!   once, in proportion to the rate. The rate is compared once its window lies wholly after
//!   the scale-up, so a rise is not compared with a window that straddles it.
//! - **ScalingDown**: after a scale-down, wait for its (shorter) deadline.
//! - **Upgrading**: while the deployment rolls out a new version, nothing is scaled.
//!
//! When a wait ends only the samples of the last request rate window count, so the next
//! decision sees the load on the new number of nodes, not the one before.
//!
//! Two deliberate differences from the original: the rate-based step during a scale-up wait
//! grows the node count that was asked for (`desired`) in proportion to the rate, where the
//! original grew the members (which lag behind while new nodes start, so it under-scaled);
//! and an upgrade freezes scaling in every state, where the original still made rate-based
//! decisions during one.

use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::sample::Sample;
use crate::settings::Settings as S;

/// What the autoscaler remembers between decisions. It is small and serializable: the
/// decision-maker publishes it so that a successor can carry on (deadlines are wall-clock).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The phase the autoscaler is in.
    pub phase: Phase,
    /// Samples that ended before this time (ms since the UNIX epoch) are ignored.
    pub samples_from_ms: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            phase: Phase::Stable,
            samples_from_ms: 0,
        }
    }
}

/// The autoscaler's phases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "kebab-case")]
pub enum Phase {
    /// Watching concurrency.
    Stable,
    /// Waiting after a scale-up to `desired` nodes, decided at request rate `base_rate`
    /// (requests per second, whole cluster).
    ScalingUp {
        /// Nodes asked for.
        desired: u32,
        /// Request rate when the scale-up was decided.
        base_rate: f64,
        /// When the scale-up was decided, ms since the UNIX epoch.
        decided_ms: u64,
        /// End of the wait, ms since the UNIX epoch.
        deadline_ms: u64,
    },
    /// Waiting after a scale-down to `desired` nodes.
    ScalingDown {
        /// Nodes asked for.
        desired: u32,
        /// End of the wait, ms since the UNIX epoch.
        deadline_ms: u64,
    },
    /// A new version is rolling out; scaling is frozen.
    Upgrading {
        /// Nodes the deployment had when the upgrade was noticed.
        desired: u32,
    },
}

impl Phase {
    /// The phase's name, as in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Stable => "stable",
            Phase::ScalingUp { .. } => "scaling-up",
            Phase::ScalingDown { .. } => "scaling-down",
            Phase::Upgrading { .. } => "upgrading",
        }
    }

    /// Every phase name.
    pub const NAMES: [&'static str; 4] = ["stable", "scaling-up", "scaling-down", "upgrading"];
}

/// What the scaler reports of the deployment that runs the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// Replicas the deployment is set to.
    pub replicas: u32,
    /// Whether a new version is rolling out.
    pub upgrading: bool,
}

/// Everything a decision looks at besides the state.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Now, ms since the UNIX epoch.
    pub now_ms: u64,
    /// Nodes in the cluster that are up.
    pub members: u32,
    /// Load samples of the nodes (older ones are ignored).
    pub samples: &'a [Sample],
    /// The deployment, when the scaler knows one.
    pub deployment: Option<Deployment>,
}

/// The load of the cluster, summarised from the samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Average user function concurrency per node over the window.
    pub user_function_concurrency: f64,
    /// Average request concurrency per node over the window.
    pub request_concurrency: f64,
    /// Average database concurrency per node over the window.
    pub database_concurrency: f64,
    /// Requests per second, whole cluster, over the request rate window (the original summed
    /// per-node rates, which a node that just joined inflates).
    pub request_rate: f64,
    /// Nodes that sent samples in the window.
    pub nodes: u32,
}

/// Why a decision was made; shown in logs, metrics and the docs' simulation table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No samples in the window yet.
    NoSamples,
    /// Fewer nodes sent samples than are members.
    WaitingForSamples,
    /// The node count is outside the bounds.
    OutOfBounds,
    /// User function concurrency is above its target.
    UserFunctionConcurrency,
    /// Request concurrency (minus database concurrency) is above its target.
    RequestConcurrency,
    /// Both concurrencies need fewer nodes.
    LowConcurrency,
    /// Concurrency is where it should be (or scaling is bounded).
    Steady,
    /// The request rate rose during a scale-up wait.
    RequestRate,
    /// Waiting after a scale; the deployment has what was asked for.
    Waiting,
    /// Waiting after a scale; the deployment does not have what was asked for, ask again.
    Reassert,
    /// A new version is rolling out.
    Upgrading,
}

impl Reason {
    /// A short name for tables and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NoSamples => "no samples",
            Reason::WaitingForSamples => "waiting for samples",
            Reason::OutOfBounds => "out of bounds",
            Reason::UserFunctionConcurrency => "user function concurrency",
            Reason::RequestConcurrency => "request concurrency",
            Reason::LowConcurrency => "low concurrency",
            Reason::Steady => "steady",
            Reason::RequestRate => "request rate",
            Reason::Waiting => "waiting",
            Reason::Reassert => "reassert",
            Reason::Upgrading => "upgrading",
        }
    }
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The state to remember.
    pub state: State,
    /// Nodes to scale to, if anything is to be done.
    pub scale_to: Option<u32>,
    /// Why.
    pub reason: Reason,
    /// The load it was based on (`None` without samples).
    pub summary: Option<Summary>,
}

/// Decides what to do: a pure function of the settings, the state, the inputs and the time.
/// Every `scale_to` is within `[min_nodes, max_nodes]`.
pub fn decide(settings: &Settings, state: &State, inputs: &Inputs<'_>) -> Decision {
    let now = inputs.now_ms;
    if let Some(deployment) = inputs.deployment.filter(|d| d.upgrading) {
        let desired = match state.phase {
            Phase::Upgrading { desired } => desired,
            _ => deployment.replicas,
        };
        return Decision {
            state: State {
                phase: Phase::Upgrading { desired },
                samples_from_ms: state.samples_from_ms,
            },
            scale_to: None,
            reason: Reason::Upgrading,
            summary: summarize(settings, state.samples_from_ms, inputs),
        };
    }
    match state.phase {
        Phase::Stable => stable(settings, state.samples_from_ms, inputs),
        Phase::Upgrading { .. } => stable(settings, after_wait(settings, now), inputs),
        Phase::ScalingDown {
            desired,
            deadline_ms,
        } => {
            if now >= deadline_ms {
                return stable(settings, after_wait(settings, now), inputs);
            }
            waiting(
                settings,
                state.clone(),
                desired,
                summarize(settings, state.samples_from_ms, inputs),
                inputs,
            )
        }
        Phase::ScalingUp {
            desired,
            base_rate,
            decided_ms,
            deadline_ms,
        } => {
            if now >= deadline_ms {
                return stable(settings, after_wait(settings, now), inputs);
            }
            let summary = summarize(settings, state.samples_from_ms, inputs);
            // The rate is compared only once its window lies wholly after the decision: a
            // window that straddles a rise would compare the rise with itself.
            let rate_measured =
                now >= decided_ms.saturating_add(S::millis(settings.request_rate_window));
            if let Some(load) = summary.filter(|_| rate_measured) {
                let overloaded = above(
                    load.user_function_concurrency,
                    settings.user_function_target_concurrency,
                ) || above(
                    adjusted_request_concurrency(&load),
                    settings.request_target_concurrency,
                );
                if overloaded
                    && base_rate > 0.0
                    && above(
                        load.request_rate,
                        base_rate * settings.request_rate_threshold_factor,
                    )
                {
                    let wanted = nodes_for(f64::from(desired) * load.request_rate, base_rate);
                    let target = bound(settings, desired, wanted);
                    if target > desired {
                        return scale_up(
                            settings,
                            state.samples_from_ms,
                            target,
                            load,
                            now,
                            Reason::RequestRate,
                        );
                    }
                }
            }
            waiting(settings, state.clone(), desired, summary, inputs)
        }
    }
}

/// Where the samples start after a wait: the last request rate window only.
fn after_wait(settings: &Settings, now: u64) -> u64 {
    now.saturating_sub(S::millis(settings.request_rate_window))
}

/// A wait: nothing to do, unless the deployment lost what was asked for.
fn waiting(
    settings: &Settings,
    state: State,
    desired: u32,
    summary: Option<Summary>,
    inputs: &Inputs<'_>,
) -> Decision {
    // Bounded again: the state may come from a decision-maker with other settings.
    let desired = desired.clamp(settings.min_nodes, settings.max_nodes);
    let lost = inputs.deployment.is_some_and(|d| d.replicas != desired);
    Decision {
        state,
        scale_to: lost.then_some(desired),
        reason: if lost {
            Reason::Reassert
        } else {
            Reason::Waiting
        },
        summary,
    }
}

fn stable(settings: &Settings, samples_from_ms: u64, inputs: &Inputs<'_>) -> Decision {
    let stay = |reason, summary| Decision {
        state: State {
            phase: Phase::Stable,
            samples_from_ms,
        },
        scale_to: None,
        reason,
        summary,
    };
    let members = inputs.members;
    let Some(load) = summarize(settings, samples_from_ms, inputs) else {
        return stay(Reason::NoSamples, None);
    };
    let now = inputs.now_ms;
    let bounded = members.clamp(settings.min_nodes, settings.max_nodes);
    if bounded > members {
        return scale_up(
            settings,
            samples_from_ms,
            bounded,
            load,
            now,
            Reason::OutOfBounds,
        );
    }
    if bounded < members {
        return scale_down(
            settings,
            samples_from_ms,
            bounded,
            load,
            now,
            Reason::OutOfBounds,
        );
    }
    if load.nodes < members {
        return stay(Reason::WaitingForSamples, Some(load));
    }
    let nodes = f64::from(members);
    let uf_target = settings.user_function_target_concurrency;
    let request_target = settings.request_target_concurrency;
    let request = adjusted_request_concurrency(&load);
    let desired_uf = nodes_for(load.user_function_concurrency * nodes, uf_target).max(1);
    let desired_request = nodes_for(request * nodes, request_target).max(1);
    let (wanted, reason) = if above(load.user_function_concurrency, uf_target) {
        (desired_uf, Reason::UserFunctionConcurrency)
    } else if above(request, request_target) {
        (desired_request, Reason::RequestConcurrency)
    } else if desired_uf < members && desired_request < members {
        (desired_uf.max(desired_request), Reason::LowConcurrency)
    } else {
        return stay(Reason::Steady, Some(load));
    };
    let target = bound(settings, members, wanted);
    if target > members {
        scale_up(settings, samples_from_ms, target, load, now, reason)
    } else if target < members && reason == Reason::LowConcurrency {
        scale_down(settings, samples_from_ms, target, load, now, reason)
    } else {
        stay(Reason::Steady, Some(load))
    }
}

fn scale_up(
    settings: &Settings,
    samples_from_ms: u64,
    target: u32,
    load: Summary,
    now: u64,
    reason: Reason,
) -> Decision {
    Decision {
        state: State {
            phase: Phase::ScalingUp {
                desired: target,
                base_rate: load.request_rate,
                decided_ms: now,
                deadline_ms: now.saturating_add(S::millis(settings.scale_up_stable_deadline)),
            },
            samples_from_ms,
        },
        scale_to: Some(target),
        reason,
        summary: Some(load),
    }
}

fn scale_down(
    settings: &Settings,
    samples_from_ms: u64,
    target: u32,
    load: Summary,
    now: u64,
    reason: Reason,
) -> Decision {
    Decision {
        state: State {
            phase: Phase::ScalingDown {
                desired: target,
                deadline_ms: now.saturating_add(S::millis(settings.scale_down_stable_deadline)),
            },
            samples_from_ms,
        },
        scale_to: Some(target),
        reason,
        summary: Some(load),
    }
}

/// Request concurrency that is not spent waiting for the store.
fn adjusted_request_concurrency(load: &Summary) -> f64 {
    (load.request_concurrency - load.database_concurrency).max(0.0)
}

/// Relative tolerance of comparisons: a load exactly at a boundary must not flip between two
/// node counts because of rounding in the averages.
const TOLERANCE: f64 = 1e-9;

/// Whether `value` is above `target`, beyond rounding.
fn above(value: f64, target: f64) -> bool {
    value > target * (1.0 + TOLERANCE)
}

/// Nodes needed to carry `total` at `per_node` each: ⌈total / per_node⌉, beyond rounding.
fn nodes_for(total: f64, per_node: f64) -> u32 {
    to_nodes((total / per_node * (1.0 - TOLERANCE)).ceil())
}

/// A node count from a non-negative float, saturating.
fn to_nodes(value: f64) -> u32 {
    if value.is_nan() || value <= 0.0 {
        0
    } else if value >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        value as u32
    }
}

/// Moves from `from` towards `wanted` by at most one step, within `[min_nodes, max_nodes]`.
pub fn bound(settings: &Settings, from: u32, wanted: u32) -> u32 {
    let mut change = from.abs_diff(wanted);
    if settings.max_scale_factor > 0.0 {
        let by_factor = to_nodes((f64::from(from) * settings.max_scale_factor).floor()).max(1);
        change = change.min(by_factor);
    }
    if settings.max_scale > 0 {
        change = change.min(settings.max_scale);
    }
    let stepped = if wanted >= from {
        from.saturating_add(change)
    } else {
        from - change
    };
    stepped.clamp(settings.min_nodes, settings.max_nodes)
}

/// Summarises the samples that ended in the windows (and not before `samples_from_ms`).
pub fn summarize(
    settings: &Settings,
    samples_from_ms: u64,
    inputs: &Inputs<'_>,
) -> Option<Summary> {
    let now = inputs.now_ms;
    let window_start = now
        .saturating_sub(S::millis(settings.target_concurrency_window))
        .max(samples_from_ms);
    let rate_start = now
        .saturating_sub(S::millis(settings.request_rate_window))
        .max(samples_from_ms);
    let mut weight = 0.0;
    let (mut uf, mut request, mut database) = (0.0, 0.0, 0.0);
    // Requests within the rate window, and the earliest time those samples cover.
    let (mut requests, mut rate_covered_from, mut rate_covered_to) = (0u64, now, 0);
    let mut nodes: Vec<&str> = Vec::new();
    for sample in inputs.samples {
        if sample.at_ms <= window_start || sample.at_ms > now || sample.interval_ms == 0 {
            continue;
        }
        let interval = sample.interval_ms as f64;
        weight += interval;
        uf += interval * finite(sample.user_function_concurrency);
        request += interval * finite(sample.request_concurrency);
        database += interval * finite(sample.database_concurrency);
        if !nodes.contains(&sample.node.as_str()) {
            nodes.push(&sample.node);
        }
        if sample.at_ms > rate_start {
            requests = requests.saturating_add(sample.requests);
            rate_covered_from =
                rate_covered_from.min(sample.at_ms.saturating_sub(sample.interval_ms));
            rate_covered_to = rate_covered_to.max(sample.at_ms);
        }
    }
    if weight == 0.0 {
        return None;
    }
    // The whole cluster's requests over the time the samples cover: a node that joined
    // recently adds its requests, not a rate of its own over a shorter time.
    let covered = rate_covered_to.saturating_sub(rate_covered_from.max(rate_start));
    let request_rate = if covered == 0 {
        0.0
    } else {
        requests as f64 * 1000.0 / covered as f64
    };
    Some(Summary {
        user_function_concurrency: uf / weight,
        request_concurrency: request / weight,
        database_concurrency: database / weight,
        request_rate,
        nodes: u32::try_from(nodes.len()).unwrap_or(u32::MAX),
    })
}

/// A concurrency from the network: anything but a finite non-negative number counts as zero.
fn finite(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}
