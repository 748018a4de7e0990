//! Table tests of the decision: the original autoscaler's specification examples, then every
//! branch of each phase.

use cloudstate_autoscaler::{
    Decision, Deployment, Inputs, Phase, Reason, Sample, Settings, State, decide,
};

const NOW: u64 = 10_000_000;

/// The settings of the original's specification: targets 1 (user function) and 10 (request),
/// at most 4 nodes per step.
fn spec_settings() -> Settings {
    Settings {
        user_function_target_concurrency: 1.0,
        request_target_concurrency: 10.0,
        max_scale: 4,
        ..Settings::default()
    }
}

/// A one-second sample of `node` ending `ago` ms before now.
fn sample(node: &str, ago: u64, uf: f64, request: f64, database: f64, requests: u64) -> Sample {
    Sample {
        node: node.into(),
        at_ms: NOW - ago,
        interval_ms: 1000,
        request_concurrency: request,
        requests,
        user_function_concurrency: uf,
        database_concurrency: database,
    }
}

fn uf(node: &str, concurrency: f64) -> Sample {
    sample(node, 500, concurrency, 0.0, 0.0, 10)
}

fn run(
    settings: &Settings,
    state: &State,
    members: u32,
    samples: &[Sample],
    deployment: Option<Deployment>,
) -> Decision {
    decide(
        settings,
        state,
        &Inputs {
            now_ms: NOW,
            members,
            samples,
            deployment,
        },
    )
}

fn stable() -> State {
    State::default()
}

#[test]
fn the_original_specification_examples() {
    let spec = spec_settings();
    let factor = Settings {
        max_scale_factor: 2.0,
        ..spec_settings()
    };
    let three_samples = [
        sample("a", 3500, 0.5, 0.0, 0.0, 0),
        sample("a", 2500, 0.5, 0.0, 0.0, 0),
        sample("a", 1500, 0.5, 0.0, 0.0, 0),
        sample("a", 500, 3.0, 0.0, 0.0, 0),
    ];
    // (case, settings, members, samples, nodes asked for)
    type Case<'a> = (&'a str, &'a Settings, u32, Vec<Sample>, Option<u32>);
    let cases: Vec<Case> = vec![
        ("UF 1.1 on one node", &spec, 1, vec![uf("a", 1.1)], Some(2)),
        ("UF 2.2 on one node", &spec, 1, vec![uf("a", 2.2)], Some(3)),
        (
            "UF 6 is capped at 4 more",
            &spec,
            1,
            vec![uf("a", 6.0)],
            Some(5),
        ),
        (
            "UF 6 with factor 2",
            &factor,
            1,
            vec![uf("a", 6.0)],
            Some(3),
        ),
        (
            "average of 0.5, 0.5, 0.5, 3.0",
            &spec,
            1,
            three_samples.to_vec(),
            Some(2),
        ),
        (
            "three nodes at 0.5, 1.0, 2.0",
            &spec,
            3,
            vec![uf("a", 0.5), uf("b", 1.0), uf("c", 2.0)],
            Some(4),
        ),
        (
            "three nodes at 1.0, 1.0, 2.2",
            &spec,
            3,
            vec![uf("a", 1.0), uf("b", 1.0), uf("c", 2.2)],
            Some(5),
        ),
        (
            "UF exactly at target",
            &spec,
            2,
            vec![uf("a", 1.0), uf("b", 1.0)],
            None,
        ),
    ];
    for (name, settings, members, samples, expected) in cases {
        let decision = run(settings, &stable(), members, &samples, None);
        assert_eq!(decision.scale_to, expected, "{name}: {decision:?}");
        if let Some(nodes) = expected {
            assert_eq!(decision.reason, Reason::UserFunctionConcurrency, "{name}");
            assert!(
                matches!(decision.state.phase, Phase::ScalingUp { desired, .. } if desired == nodes),
                "{name}: {:?}",
                decision.state
            );
        }
    }
}

#[test]
fn a_scale_up_wait_ignores_concurrency() {
    let state = State {
        phase: Phase::ScalingUp {
            desired: 2,
            base_rate: 20.0,
            decided_ms: 0,
            deadline_ms: NOW + 60_000,
        },
        samples_from_ms: 0,
    };
    let samples = [
        sample("a", 500, 6.0, 0.0, 0.0, 10),
        sample("b", 500, 6.0, 0.0, 0.0, 10),
    ];
    let decision = run(&spec_settings(), &state, 2, &samples, None);
    assert_eq!(decision.scale_to, None);
    assert_eq!(decision.reason, Reason::Waiting);
    assert_eq!(decision.state, state);
}

#[test]
fn request_concurrency_minus_database_concurrency_scales_up() {
    let settings = spec_settings();
    // 25 requests in progress per node, 10 of them waiting for the store: 15 > 10.
    let samples = [
        sample("a", 500, 0.5, 25.0, 10.0, 0),
        sample("b", 500, 0.5, 25.0, 10.0, 0),
    ];
    let decision = run(&settings, &stable(), 2, &samples, None);
    assert_eq!(decision.reason, Reason::RequestConcurrency);
    assert_eq!(decision.scale_to, Some(3), "⌈15 × 2 / 10⌉ = 3");
    // The same requests mostly waiting for the store: no scaling.
    let samples = [
        sample("a", 500, 1.0, 25.0, 20.0, 0),
        sample("b", 500, 1.0, 25.0, 20.0, 0),
    ];
    let decision = run(&settings, &stable(), 2, &samples, None);
    assert_eq!(decision.reason, Reason::Steady);
    assert_eq!(decision.scale_to, None);
}

#[test]
fn low_concurrency_scales_down_by_bounded_steps_to_what_both_need() {
    let settings = spec_settings();
    // Six nodes at UF 0.25 need 2 by user function concurrency; request concurrency
    // 5 − 1 = 4 per node needs ⌈4 × 6 / 10⌉ = 3: the larger wins.
    let samples: Vec<Sample> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|node| sample(node, 500, 0.25, 5.0, 1.0, 0))
        .collect();
    let decision = run(&settings, &stable(), 6, &samples, None);
    assert_eq!(decision.reason, Reason::LowConcurrency);
    assert_eq!(decision.scale_to, Some(3));
    assert!(matches!(
        decision.state.phase,
        Phase::ScalingDown { desired: 3, deadline_ms } if deadline_ms == NOW + 30_000
    ));
    let small_steps = Settings {
        max_scale: 1,
        ..settings
    };
    assert_eq!(
        run(&small_steps, &stable(), 6, &samples, None).scale_to,
        Some(5)
    );
}

#[test]
fn the_node_count_stays_within_its_bounds() {
    let settings = Settings {
        min_nodes: 2,
        max_nodes: 4,
        ..spec_settings()
    };
    let idle = [uf("a", 0.0)];
    let decision = run(&settings, &stable(), 1, &idle, None);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (Some(2), Reason::OutOfBounds)
    );
    let idle: Vec<Sample> = (0..7).map(|n| uf(&format!("n{n}"), 0.0)).collect();
    let decision = run(&settings, &stable(), 7, &idle, None);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (Some(4), Reason::OutOfBounds)
    );
    let busy = [uf("a", 9.0), uf("b", 9.0), uf("c", 9.0)];
    assert_eq!(run(&settings, &stable(), 3, &busy, None).scale_to, Some(4));
    let busy = [uf("a", 9.0), uf("b", 9.0), uf("c", 9.0), uf("d", 9.0)];
    let decision = run(&settings, &stable(), 4, &busy, None);
    assert_eq!((decision.scale_to, decision.reason), (None, Reason::Steady));
    let idle = [uf("a", 0.0), uf("b", 0.0)];
    let decision = run(&settings, &stable(), 2, &idle, None);
    assert_eq!((decision.scale_to, decision.reason), (None, Reason::Steady));
}

#[test]
fn nothing_is_decided_without_samples_from_every_member() {
    let settings = spec_settings();
    let decision = run(&settings, &stable(), 1, &[], None);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (None, Reason::NoSamples)
    );
    let old = [sample("a", 61_000, 9.0, 0.0, 0.0, 0)];
    let decision = run(&settings, &stable(), 1, &old, None);
    assert_eq!(
        decision.reason,
        Reason::NoSamples,
        "a sample older than the window"
    );
    let decision = run(&settings, &stable(), 2, &[uf("a", 9.0)], None);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (None, Reason::WaitingForSamples)
    );
    let ignored = State {
        phase: Phase::Stable,
        samples_from_ms: NOW - 100,
    };
    let decision = run(&settings, &ignored, 1, &[uf("a", 9.0)], None);
    assert_eq!(
        decision.reason,
        Reason::NoSamples,
        "samples before samples_from are ignored"
    );
}

#[test]
fn garbage_concurrencies_count_as_zero() {
    let samples = [uf("a", f64::NAN), uf("b", f64::INFINITY), uf("c", -4.0)];
    let decision = run(&spec_settings(), &stable(), 3, &samples, None);
    assert_eq!(decision.scale_to, Some(1));
    assert_eq!(decision.summary.unwrap().user_function_concurrency, 0.0);
}

#[test]
fn a_rising_request_rate_scales_up_during_the_wait() {
    let settings = spec_settings();
    let waiting = State {
        phase: Phase::ScalingUp {
            desired: 2,
            base_rate: 100.0,
            decided_ms: NOW - 6_000,
            deadline_ms: NOW + 60_000,
        },
        samples_from_ms: 0,
    };
    // 2 nodes × 90 requests/s = 180/s > 1.5 × 100, still overloaded: ⌈2 × 180 / 100⌉ = 4.
    let busy = [
        sample("a", 500, 1.5, 0.0, 0.0, 90),
        sample("b", 500, 1.5, 0.0, 0.0, 90),
    ];
    let decision = run(&settings, &waiting, 2, &busy, None);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (Some(4), Reason::RequestRate)
    );
    assert!(matches!(
        decision.state.phase,
        Phase::ScalingUp { desired: 4, base_rate, decided_ms: NOW, deadline_ms }
            if base_rate == 180.0 && deadline_ms == NOW + 180_000
    ));
    // Within a rate window of the scale-up the rate is not compared.
    let recent = State {
        phase: Phase::ScalingUp {
            desired: 2,
            base_rate: 100.0,
            decided_ms: NOW - 5_999,
            deadline_ms: NOW + 60_000,
        },
        samples_from_ms: 0,
    };
    assert_eq!(
        run(&settings, &recent, 2, &busy, None).reason,
        Reason::Waiting
    );
    // The same rate with concurrency below target: wait.
    let calm = [
        sample("a", 500, 0.5, 0.0, 0.0, 90),
        sample("b", 500, 0.5, 0.0, 0.0, 90),
    ];
    assert_eq!(
        run(&settings, &waiting, 2, &calm, None).reason,
        Reason::Waiting
    );
    // A rate below the threshold: wait.
    let slow = [
        sample("a", 500, 1.5, 0.0, 0.0, 70),
        sample("b", 500, 1.5, 0.0, 0.0, 70),
    ];
    assert_eq!(
        run(&settings, &waiting, 2, &slow, None).reason,
        Reason::Waiting
    );
}

#[test]
fn when_a_wait_ends_only_the_last_rate_window_counts() {
    let settings = spec_settings();
    for phase in [
        Phase::ScalingUp {
            desired: 2,
            base_rate: 10.0,
            decided_ms: 0,
            deadline_ms: NOW,
        },
        Phase::ScalingDown {
            desired: 2,
            deadline_ms: NOW - 1,
        },
    ] {
        let state = State {
            phase,
            samples_from_ms: 0,
        };
        // Old overload (before the new nodes) and calm now.
        let samples = [
            sample("a", 20_500, 9.0, 0.0, 0.0, 10),
            sample("a", 500, 0.8, 0.0, 0.0, 10),
            sample("b", 500, 0.8, 0.0, 0.0, 10),
        ];
        let decision = run(&settings, &state, 2, &samples, None);
        assert_eq!(
            (decision.scale_to, decision.reason),
            (None, Reason::Steady),
            "{decision:?}"
        );
        assert_eq!(
            decision.state,
            State {
                phase: Phase::Stable,
                samples_from_ms: NOW - 6_000
            }
        );
    }
}

#[test]
fn a_wait_asks_again_when_the_deployment_lost_the_scale() {
    let state = State {
        phase: Phase::ScalingDown {
            desired: 3,
            deadline_ms: NOW + 10_000,
        },
        samples_from_ms: 0,
    };
    let deployment = |replicas| {
        Some(Deployment {
            replicas,
            upgrading: false,
        })
    };
    let decision = run(&spec_settings(), &state, 3, &[], deployment(5));
    assert_eq!(
        (decision.scale_to, decision.reason),
        (Some(3), Reason::Reassert)
    );
    let decision = run(&spec_settings(), &state, 3, &[], deployment(3));
    assert_eq!(
        (decision.scale_to, decision.reason),
        (None, Reason::Waiting)
    );
}

#[test]
fn an_upgrade_freezes_scaling_until_it_is_done() {
    let settings = spec_settings();
    let busy = [uf("a", 5.0)];
    let upgrading = Some(Deployment {
        replicas: 1,
        upgrading: true,
    });
    let decision = run(&settings, &stable(), 1, &busy, upgrading);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (None, Reason::Upgrading)
    );
    assert_eq!(decision.state.phase, Phase::Upgrading { desired: 1 });
    let waiting = State {
        phase: Phase::ScalingUp {
            desired: 3,
            base_rate: 1.0,
            decided_ms: 0,
            deadline_ms: NOW + 1000,
        },
        samples_from_ms: 0,
    };
    let decision = run(&settings, &waiting, 1, &busy, upgrading);
    assert_eq!(
        (decision.scale_to, &decision.state.phase),
        (None, &Phase::Upgrading { desired: 1 })
    );
    // Done: decide again on the last rate window's samples.
    let done = Some(Deployment {
        replicas: 1,
        upgrading: false,
    });
    let decision = run(&settings, &decision.state, 1, &busy, done);
    assert_eq!(
        (decision.scale_to, decision.reason),
        (Some(5), Reason::UserFunctionConcurrency)
    );
    assert_eq!(decision.state.samples_from_ms, NOW - 6_000);
}

#[test]
fn the_state_round_trips_as_json() {
    let state = State {
        phase: Phase::ScalingUp {
            desired: 3,
            base_rate: 12.5,
            decided_ms: 70,
            deadline_ms: 77,
        },
        samples_from_ms: 5,
    };
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(
        json,
        r#"{"phase":{"phase":"scaling-up","desired":3,"base_rate":12.5,"decided_ms":70,"deadline_ms":77},"samples_from_ms":5}"#
    );
    assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
}
