//! A simulation of a cluster under a load curve, driven by [`decide`](crate::decide): the
//! table of its decisions is printed in `docs/kubernetes.md`, and the property tests use it.
//!
//! The model: requests arrive at `rate(t)` per second, spread evenly over the nodes that are
//! up. By Little's law a node's concurrency is its share of the rate times the time a request
//! spends: in the user function, in the store, and (for the share of requests forwarded to the
//! owning node, (n−1)/n with n nodes) on the extra hop. A scale-up adds nodes after a start-up
//! delay; a scale-down removes them at once. A deployment may be marked as upgrading for a
//! while.

use std::time::Duration;

use crate::settings::Settings as S;
use crate::{Deployment, Inputs, Phase, Sample, Settings, State, decide};

/// How requests behave, whatever their rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Model {
    /// Seconds a request spends in the user function.
    pub user_function_time: f64,
    /// Seconds a request spends waiting for the store.
    pub database_time: f64,
    /// Seconds a forwarded request spends on the hop to its owner.
    pub hop_time: f64,
    /// Time a new node takes to join.
    pub node_startup: Duration,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            user_function_time: 0.02,
            database_time: 0.01,
            hop_time: 0.002,
            node_startup: Duration::from_secs(20),
        }
    }
}

/// A named load curve.
pub struct Curve {
    /// Its name, as in the table.
    pub name: &'static str,
    /// Requests per second at a time (seconds from the start).
    pub rate: fn(f64) -> f64,
    /// How long it runs.
    pub duration: Duration,
    /// Nodes at the start.
    pub start_nodes: u32,
    /// From when to when (seconds) the deployment rolls out a new version.
    pub upgrade: Option<(f64, f64)>,
}

/// One moment of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Seconds from the start.
    pub at_seconds: u64,
    /// Requests per second.
    pub rate: f64,
    /// Nodes up when the decision was made.
    pub members: u32,
    /// Nodes the deployment is set to.
    pub replicas: u32,
    /// The autoscaler's phase after the decision.
    pub phase: &'static str,
    /// The decision's reason.
    pub reason: &'static str,
    /// Nodes asked for, if any.
    pub scale_to: Option<u32>,
    /// Average user function concurrency per node the decision saw.
    pub user_function_concurrency: f64,
    /// Average request concurrency per node the decision saw.
    pub request_concurrency: f64,
}

/// Runs `curve` with `settings` and `model`; returns every decision (one per tick).
pub fn simulate(settings: &Settings, model: &Model, curve: &Curve) -> Vec<Step> {
    let report = S::millis(settings.report_period).max(1);
    let tick = S::millis(settings.tick_period).max(1);
    let window = S::millis(settings.target_concurrency_window);
    let end = S::millis(curve.duration);
    let startup = S::millis(model.node_startup);
    // The simulation starts at an arbitrary epoch so that waits and windows are not clipped.
    let epoch = 1_000_000_000;
    let mut members = curve.start_nodes;
    let mut replicas = curve.start_nodes;
    // Nodes starting: (time they join, count).
    let mut joining: Vec<(u64, u32)> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut state = State::default();
    let mut steps = Vec::new();
    let mut now = 0;
    while now <= end {
        now += report;
        let seconds = now as f64 / 1000.0;
        for (_, count) in joining.iter().filter(|(at, _)| *at <= now) {
            members += count;
        }
        joining.retain(|(at, _)| *at > now);
        let rate = (curve.rate)(seconds).max(0.0);
        samples.retain(|s| s.at_ms + window >= epoch + now);
        let n = f64::from(members.max(1));
        let per_node = rate / n;
        let forwarded = (n - 1.0) / n;
        for node in 0..members {
            samples.push(Sample {
                node: format!("node-{node}"),
                at_ms: epoch + now,
                interval_ms: report,
                request_concurrency: per_node
                    * (model.user_function_time + model.database_time + forwarded * model.hop_time),
                requests: (per_node * report as f64 / 1000.0).round() as u64,
                user_function_concurrency: per_node * model.user_function_time,
                database_concurrency: per_node * model.database_time,
            });
        }
        if now % tick != 0 {
            continue;
        }
        let upgrading = curve
            .upgrade
            .is_some_and(|(from, to)| seconds >= from && seconds < to);
        let inputs = Inputs {
            now_ms: epoch + now,
            members,
            samples: &samples,
            deployment: Some(Deployment {
                replicas,
                upgrading,
            }),
        };
        let decision = decide(settings, &state, &inputs);
        let members_before = members;
        if let Some(target) = decision.scale_to {
            if target > replicas {
                let pending: u32 = joining.iter().map(|(_, count)| count).sum();
                let starting = target.saturating_sub(members + pending);
                if starting > 0 {
                    joining.push((now + startup, starting));
                }
            } else if target < members {
                members = target;
                joining.clear();
            }
            replicas = target;
        }
        let load = decision.summary.unwrap_or_default();
        steps.push(Step {
            at_seconds: now / 1000,
            rate,
            members: members_before,
            replicas,
            phase: decision.state.phase.name(),
            reason: decision.reason.name(),
            scale_to: decision.scale_to,
            user_function_concurrency: load.user_function_concurrency,
            request_concurrency: load.request_concurrency,
        });
        state = decision.state;
    }
    steps
}

/// The curves of the docs' table.
pub fn curves() -> Vec<Curve> {
    vec![
        Curve {
            name: "step: 40/s, then 400/s from 1 min",
            rate: |t| if t < 60.0 { 40.0 } else { 400.0 },
            duration: Duration::from_secs(600),
            start_nodes: 1,
            upgrade: None,
        },
        Curve {
            name: "ramp: 0 to 600/s over 10 min",
            rate: |t| t,
            duration: Duration::from_secs(600),
            start_nodes: 1,
            upgrade: None,
        },
        Curve {
            name: "spike: 100/s, 1,000/s for 30 s at 2 min",
            rate: |t| {
                if (120.0..150.0).contains(&t) {
                    1000.0
                } else {
                    100.0
                }
            },
            duration: Duration::from_secs(480),
            start_nodes: 2,
            upgrade: None,
        },
        Curve {
            name: "drop: 400/s on 8 nodes, 20/s from 1 min",
            rate: |t| if t < 60.0 { 400.0 } else { 20.0 },
            duration: Duration::from_secs(300),
            start_nodes: 8,
            upgrade: None,
        },
        Curve {
            name: "step during an upgrade (1 to 4 min)",
            rate: |t| if t < 90.0 { 40.0 } else { 300.0 },
            duration: Duration::from_secs(480),
            start_nodes: 1,
            upgrade: Some((60.0, 240.0)),
        },
    ]
}

/// The docs' table: for each curve, the decisions that scaled or changed the phase.
pub fn table() -> String {
    let settings = Settings::default();
    let model = Model::default();
    let mut out = String::new();
    out.push_str(&format!(
        "Model: {} ms in the user function, {} ms in the store, {} ms per forwarding hop per \
         request; new nodes join after {} s. Settings: the defaults.\n",
        model.user_function_time * 1000.0,
        model.database_time * 1000.0,
        model.hop_time * 1000.0,
        model.node_startup.as_secs(),
    ));
    for curve in curves() {
        out.push_str(&format!("\n**{}**\n\n", curve.name));
        out.push_str(
            "| t (s) | rate (/s) | nodes up | UF conc. | req. conc. | decision | phase after |\n",
        );
        out.push_str("|---:|---:|---:|---:|---:|---|---|\n");
        let mut phase = Phase::Stable.name();
        for step in simulate(&settings, &model, &curve) {
            if step.scale_to.is_none() && step.phase == phase {
                continue;
            }
            let decision = match step.scale_to {
                Some(nodes) => format!("scale to {nodes} ({})", step.reason),
                None => step.reason.to_owned(),
            };
            out.push_str(&format!(
                "| {} | {:.0} | {} | {:.2} | {:.2} | {} | {} |\n",
                step.at_seconds,
                step.rate,
                step.members,
                step.user_function_concurrency,
                step.request_concurrency,
                decision,
                step.phase,
            ));
            phase = step.phase;
        }
    }
    out
}
