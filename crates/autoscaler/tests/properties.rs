//! Property tests of the decision, directly and through the simulation: never below the
//! fewest nodes nor above the most, no oscillation under a constant load, a scale-up within
//! one window of a step up in load.

use std::time::Duration;

use cloudstate_autoscaler::simulation::{Curve, Model, simulate};
use cloudstate_autoscaler::{Deployment, Inputs, Phase, Sample, Settings, State, decide};
use proptest::prelude::*;

const NOW: u64 = 1_000_000_000;

fn settings() -> impl Strategy<Value = Settings> {
    (1u32..5, 0u32..20, 0u32..5, 0.0f64..3.0).prop_map(|(min, extra, max_scale, factor)| Settings {
        min_nodes: min,
        max_nodes: min + extra,
        max_scale,
        max_scale_factor: factor,
        ..Settings::default()
    })
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Stable),
        (0u32..40, 0.0f64..1000.0, 0u64..NOW, 0u64..2 * NOW).prop_map(
            |(desired, base_rate, decided_ms, deadline_ms)| {
                Phase::ScalingUp {
                    desired,
                    base_rate,
                    decided_ms,
                    deadline_ms,
                }
            }
        ),
        (0u32..40, 0u64..2 * NOW).prop_map(|(desired, deadline_ms)| Phase::ScalingDown {
            desired,
            deadline_ms
        }),
        (0u32..40).prop_map(|desired| Phase::Upgrading { desired }),
    ]
}

fn samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec(
        (
            0u8..6,
            0u64..120_000,
            0u64..3000,
            prop::num::f64::ANY,
            prop::num::f64::ANY,
            prop::num::f64::ANY,
            0u64..10_000,
        ),
        0..40,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .map(
                |(node, ago, interval_ms, uf, request, database, requests)| Sample {
                    node: format!("n{node}"),
                    at_ms: NOW - ago,
                    interval_ms,
                    request_concurrency: request,
                    requests,
                    user_function_concurrency: uf,
                    database_concurrency: database,
                },
            )
            .collect()
    })
}

/// A curve of the rate in `RATE` (a `fn` pointer cannot capture it).
fn constant_curve(start_nodes: u32) -> Curve {
    Curve {
        name: "constant",
        rate: |_| RATE.with(|rate| *rate.borrow()),
        duration: Duration::from_secs(900),
        start_nodes,
        upgrade: None,
    }
}

thread_local! {
    static RATE: std::cell::RefCell<f64> = const { std::cell::RefCell::new(0.0) };
    static STEP: std::cell::RefCell<(f64, f64, f64)> = const { std::cell::RefCell::new((0.0, 0.0, 0.0)) };
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the state, samples, members and deployment: a decision never asks for fewer
    /// nodes than the fewest or more than the most.
    #[test]
    fn never_below_min_nor_above_max(
        settings in settings(),
        phase in phase(),
        samples_from_ms in 0u64..NOW,
        members in 0u32..40,
        samples in samples(),
        deployment in prop::option::of((0u32..40, any::<bool>())),
    ) {
        let state = State { phase, samples_from_ms };
        let inputs = Inputs {
            now_ms: NOW,
            members,
            samples: &samples,
            deployment: deployment.map(|(replicas, upgrading)| Deployment { replicas, upgrading }),
        };
        let decision = decide(&settings, &state, &inputs);
        if let Some(nodes) = decision.scale_to {
            prop_assert!(
                (settings.min_nodes..=settings.max_nodes).contains(&nodes),
                "{nodes} outside [{}, {}]: {decision:?}", settings.min_nodes, settings.max_nodes
            );
        }
        if let Phase::ScalingUp { desired, .. } | Phase::ScalingDown { desired, .. } = decision.state.phase
            && decision.state.phase != state.phase
        {
            prop_assert!((settings.min_nodes..=settings.max_nodes).contains(&desired));
        }
    }

    /// Under a constant load the node count moves one way only, and once it reaches what the
    /// load needs it stays there.
    #[test]
    fn no_oscillation_under_a_constant_load(
        rate in 0.0f64..2000.0,
        start_nodes in 1u32..30,
        max_scale in 1u32..5,
    ) {
        RATE.with(|r| *r.borrow_mut() = rate);
        let settings = Settings { max_scale, ..Settings::default() };
        let model = Model::default();
        // User function concurrency decides here (request concurrency stays far below 50).
        let needed = ((rate * model.user_function_time) * (1.0 - 1e-9)).ceil().max(1.0) as u32;
        let steps = simulate(&settings, &model, &constant_curve(start_nodes));
        let mut replicas = start_nodes;
        let mut directions = Vec::new();
        let mut reached = replicas == needed;
        for step in &steps {
            if let Some(nodes) = step.scale_to.filter(|nodes| *nodes != replicas) {
                prop_assert!(!reached, "scaled to {nodes} after reaching {needed}: {step:?}");
                directions.push((step.at_seconds, nodes > replicas));
                replicas = nodes;
                reached = replicas == needed;
            }
        }
        prop_assert!(
            directions.windows(2).all(|pair| pair[0].1 == pair[1].1),
            "direction changed: {directions:?}"
        );
        prop_assert!(
            directions.iter().all(|(_, up)| *up == (needed > start_nodes)),
            "moved away from {needed}: {directions:?}"
        );
    }

    /// After a step up in load that the nodes cannot carry, a scale-up is decided within
    /// one concurrency window (plus a tick).
    #[test]
    fn a_step_up_in_load_scales_up_within_one_window(
        nodes in 1u32..10,
        busy in 0.9f64..0.99,
        factor in 1.2f64..6.0,
        step_at in 60.0f64..300.0,
    ) {
        // 20 ms in the user function: 50 requests/s are one user function call in progress,
        // so `nodes` carry `before` (nodes − 1 could not) but not `after`.
        let before = 50.0 * f64::from(nodes) * busy;
        let after = before * factor;
        STEP.with(|s| *s.borrow_mut() = (step_at, before, after));
        let curve = Curve {
            name: "step",
            rate: |t| STEP.with(|s| { let (at, before, after) = *s.borrow(); if t < at { before } else { after } }),
            duration: Duration::from_secs_f64(step_at + 120.0),
            start_nodes: nodes,
            upgrade: None,
        };
        let settings = Settings::default();
        let steps = simulate(&settings, &Model::default(), &curve);
        let first_scale = steps.iter().find(|step| step.scale_to.is_some());
        let deadline = step_at
            + settings.target_concurrency_window.as_secs_f64()
            + settings.tick_period.as_secs_f64();
        match first_scale {
            Some(step) => {
                prop_assert!(step.scale_to > Some(nodes), "{step:?}");
                prop_assert!(step.at_seconds as f64 >= step_at, "scaled before the step: {step:?}");
                prop_assert!(step.at_seconds as f64 <= deadline, "too late: {step:?}, step at {step_at}");
            }
            None => prop_assert!(false, "never scaled up"),
        }
    }
}
