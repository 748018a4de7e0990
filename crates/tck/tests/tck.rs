//! The TCK as part of the test suite: the runner, in process, against the real binaries: the
//! Rust SDK's model services (`tck-model`) as a frontend, and the proxy (`cloudstate-proxy`) as
//! a backend with each store: memory, embedded and PostgreSQL. Every case must pass or be
//! pending; a failure prints the case's line and what crossed the protocol.

use cloudstate_tck::runner::format_outcome;
use cloudstate_tck::{Config, Outcome, Side, run};
use cloudstate_testutil::binary;
use cloudstate_testutil::postgres::PostgresServer;

/// The runner's configuration for our binaries, with `store` (backend runs).
fn config(only: Side, store: Option<String>) -> Config {
    let path = |package: &str, name: &str| binary(package, name).display().to_string();
    Config {
        service_cmd: Some(path("cloudstate-tck", "tck-model")),
        proxy_cmd: Some(path("cloudstate-proxy", "cloudstate-proxy")),
        misbehaving_cmd: Some(path("cloudstate-tck", "tck-misbehaving")),
        store,
        only: Some(only),
        trace: true,
        ..Config::default()
    }
}

/// Runs the TCK with `config`, printing every line, and fails if any case failed.
async fn passes(config: Config) {
    let report = run(&config, &mut |line| println!("{line}"))
        .await
        .expect("the runner runs");
    println!("{report}");
    let failed: Vec<String> = report
        .outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Fail(_)))
        .map(|(name, outcome)| format_outcome(name, outcome))
        .collect();
    assert!(
        failed.is_empty(),
        "{} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(report.passed() > 0, "no case ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_sdk_passes_the_model_cases() {
    passes(config(Side::Frontend, None)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_passes_with_the_memory_store() {
    passes(config(Side::Backend, Some("memory".into()))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_passes_with_the_embedded_store() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = format!("embedded:{}", dir.path().join("store").display());
    passes(config(Side::Backend, Some(store))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_passes_with_the_postgres_store() {
    let server = PostgresServer::shared().expect("PostgreSQL starts");
    let url = server.create_database().expect("a database");
    passes(config(Side::Backend, Some(url))).await;
}
