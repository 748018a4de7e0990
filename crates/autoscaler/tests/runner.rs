//! The sampler and the decision loop together on one standalone node, in paused tokio time:
//! a constant load of three user function calls in progress makes the autoscaler ask the
//! scaler for three nodes, and the metrics show it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloudstate_autoscaler::{
    Autoscaler, AutoscalerMetrics, Clock, Cluster, Deployment, Error, LoadReading, Phase, Scaler,
    Settings, Standalone, run_sampler,
};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A scaler that reports each request on a channel.
struct Recording(mpsc::UnboundedSender<u32>);

#[async_trait]
impl Scaler for Recording {
    async fn deployment(&self) -> Result<Option<Deployment>, Error> {
        Ok(None)
    }

    async fn scale(&self, nodes: u32) -> Result<(), Error> {
        let _ = self.0.send(nodes);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_constant_load_on_one_node_asks_for_more_nodes() {
    let start = Instant::now();
    let clock: Clock = Arc::new(move || 1_000_000 + start.elapsed().as_millis() as u64);
    // Three user function calls always in progress, 60 requests a second, no store.
    let load = move || {
        let ns = start.elapsed().as_nanos() as u64;
        LoadReading {
            at_ns: ns,
            request_busy_ns: ns.wrapping_mul(4),
            requests: ns / 16_666_667,
            user_function_busy_ns: ns.wrapping_mul(3),
            database_busy_ns: 0,
        }
    };
    let cluster = Arc::new(Standalone::new("node-a"));
    let (scaled, mut scale_requests) = mpsc::unbounded_channel();
    let mut registry = Registry::default();
    let metrics = AutoscalerMetrics::new(&mut registry);
    let settings = Settings::default();
    let autoscaler = Autoscaler::new(
        settings.clone(),
        cluster.clone(),
        Arc::new(Recording(scaled)),
        metrics,
    )
    .unwrap()
    .with_clock(clock.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let sampler = tokio::spawn(run_sampler(
        load,
        cluster.clone(),
        settings.report_period,
        clock,
        std::future::pending(),
    ));
    let decider = tokio::spawn(autoscaler.run(stopped));

    // ⌈3 × 1 / 1⌉ = 3, within the step of two.
    assert_eq!(scale_requests.recv().await, Some(3));
    let state = cluster
        .published_state()
        .expect("the decision-maker publishes its state");
    assert!(
        matches!(state.phase, Phase::ScalingUp { desired: 3, .. }),
        "{state:?}"
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "cloudstate_autoscaler_desired_nodes 3",
        "cloudstate_autoscaler_current_nodes 1",
        "cloudstate_autoscaler_user_function_concurrency 3.0",
        "cloudstate_autoscaler_decision_maker 1",
        "cloudstate_autoscaler_phase{phase=\"scaling-up\"} 1",
        "cloudstate_autoscaler_scalings_total{reason=\"user function concurrency\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(
        Instant::now() - start <= settings.tick_period * 2,
        "decided on the first ticks with samples"
    );
    // The scale-up wait: nothing more is asked for before its deadline.
    tokio::time::sleep(settings.scale_up_stable_deadline - Duration::from_secs(10)).await;
    assert!(scale_requests.try_recv().is_err());
    stop.send(()).unwrap();
    decider.await.unwrap();
    sampler.abort();
}
