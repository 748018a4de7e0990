//! `cloudstate-proxy`: the sidecar in front of a Cloudstate user function.
//!
//! Start-up: open the store, start serving (health endpoints answer at once, user methods
//! answer UNAVAILABLE until discovery is done), call discovery until the user function answers,
//! check what it declared, then serve its methods. SIGINT/SIGTERM stop accepting connections
//! and let in-flight calls finish.
//!
//! `cloudstate-proxy inspect ...` prints what a store holds instead (see `inspect.rs`).

mod config;
mod inspect;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cloudstate_autoscaler::{
    Autoscaler, AutoscalerMetrics, Cluster, KubernetesScaler, LoadReading, LogScaler, Scaler,
    Settings, Standalone, run_sampler, system_clock,
};
use cloudstate_engine::{Engine, EngineMetrics, ServiceModel, UserFunction};
use cloudstate_ingress::Ingress;
use cloudstate_store::{MemoryStore, Store};
use cloudstate_store_embedded::EmbeddedStore;
use cloudstate_store_postgres::PostgresStore;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use config::{Config, ConfigError, LogFormat, ScalerChoice, StoreConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "inspect")
    {
        if let Err(error) = inspect::run(std::env::args_os().skip(1)).await {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let config = match Config::load(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Invalid(error)) => error.exit(),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    let autoscaler = match config.autoscaler.settings() {
        Ok(settings) => config.autoscaler.autoscaler_enabled.then_some(settings),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };
    init_logging(config.server.log_format);
    if let Err(error) = run(config, autoscaler).await {
        tracing::error!("{error:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(config: Config, autoscaler: Option<Settings>) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = match &config.store.store {
        StoreConfig::Memory => Arc::new(MemoryStore::new()),
        StoreConfig::Embedded(dir) => Arc::new(
            EmbeddedStore::open(dir)
                .with_context(|| format!("opening the embedded store in {}", dir.display()))?,
        ),
        StoreConfig::Postgres(url) => Arc::new(
            PostgresStore::connect(url, config.store.postgres_options())
                .await
                .context("opening the PostgreSQL store")?,
        ),
    };
    let address = SocketAddr::new(config.server.http_interface, config.server.http_port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    tracing::info!(%address, store = ?config.store.store, "cloudstate-proxy listening");

    let mut registry = Registry::default();
    let metrics = EngineMetrics::new(&mut registry);
    let autoscaler_metrics = autoscaler
        .as_ref()
        .map(|_| AutoscalerMetrics::new(&mut registry));
    let mut ingress = Ingress::new(store.clone(), Arc::new(registry));
    if let Some(origins) = config.server.cors_allowed_origins.clone() {
        tracing::info!(%origins, "CORS: allowing browser calls from these origins");
        ingress = ingress.with_cors(origins);
    }
    let stop_accepting = Arc::new(Notify::new());
    let mut server = {
        let (ingress, stop) = (ingress.clone(), stop_accepting.clone());
        tokio::spawn(async move { ingress.serve(listener, stop.notified_owned()).await })
    };

    let options = &config.user_function;
    let engine_config = config.engine.engine_config();
    let user_function = UserFunction::new(
        &options.user_function_host,
        options.user_function_port,
        engine_config.max_message_size,
    )
    .context("invalid user function address")?;
    let discovery = user_function.discover_with_retry(
        Duration::from_millis(100),
        options.discovery_max_backoff.into(),
    );
    let spec = tokio::select! {
        spec = discovery => spec,
        result = &mut server => return result.context("server task failed")?.map_err(Into::into),
        () = shutdown_signal() => {
            tracing::info!("stopped before discovery completed");
            return Ok(());
        }
    };
    let model = match ServiceModel::build(&spec) {
        Ok(model) => model,
        Err(error) => {
            // Awaited: the process exits next, which would drop a report sent in the background.
            user_function
                .report_error_before_exit(error.to_string(), Duration::from_secs(2))
                .await;
            return Err(error.into());
        }
    };
    for service in model.services() {
        tracing::info!(
            service = %service.name,
            kind = ?service.kind,
            persistence_id = %service.persistence_id,
            "serving"
        );
    }
    let load = metrics.clone();
    let engine = Engine::new(model, store, user_function, engine_config, metrics);
    ingress.set_engine(engine.clone())?;
    tracing::info!("ready");
    let autoscaler_tasks = match (autoscaler, autoscaler_metrics) {
        (Some(settings), Some(metrics)) => start_autoscaler(
            settings,
            &config.autoscaler.autoscaler_scaler,
            load,
            metrics,
        )?,
        _ => Vec::new(),
    };

    tokio::select! {
        () = shutdown_signal() => {}
        result = &mut server => return result.context("server task failed")?.map_err(Into::into),
    }
    for task in autoscaler_tasks {
        task.abort();
    }
    // Stop accepting, let in-flight calls finish (boundedly), then close the entities' streams.
    let shutdown_timeout = Duration::from(config.server.shutdown_timeout);
    tracing::info!(timeout = ?shutdown_timeout, "shutting down: finishing in-flight calls");
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    stop_accepting.notify_one();
    match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(result) => result.context("server task failed")??,
        Err(_) => tracing::warn!("in-flight calls did not finish in time; stopping anyway"),
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    engine.shutdown(remaining.max(Duration::from_secs(1))).await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the autoscaler: this node samples its load from the engine's metrics and, as the
/// decision-maker, decides and hands decisions to the scaler. Without cluster membership the
/// node is a cluster of its own (see docs/kubernetes.md).
fn start_autoscaler(
    settings: Settings,
    choice: &ScalerChoice,
    load: EngineMetrics,
    metrics: AutoscalerMetrics,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let node = std::env::var("POD_NAME").unwrap_or_else(|_| "local".into());
    let cluster: Arc<dyn Cluster> = Arc::new(Standalone::new(node));
    let scaler: Arc<dyn Scaler> = match choice {
        ScalerChoice::Log => Arc::new(LogScaler),
        ScalerChoice::StatefulService(name) => Arc::new(
            KubernetesScaler::in_cluster(name).context("the autoscaler's Kubernetes scaler")?,
        ),
    };
    tracing::info!(scaler = %choice, settings = ?settings, "autoscaler running");
    let reading = move || {
        let counters = load.load();
        LoadReading {
            at_ns: counters.at_ns,
            request_busy_ns: counters.request_busy_ns,
            requests: counters.requests,
            user_function_busy_ns: counters.user_function_busy_ns,
            database_busy_ns: counters.database_busy_ns,
        }
    };
    let sampler = tokio::spawn(run_sampler(
        reading,
        cluster.clone(),
        settings.report_period,
        system_clock(),
        std::future::pending(),
    ));
    let decider = Autoscaler::new(settings, cluster, scaler, metrics)?;
    let decider = tokio::spawn(decider.run(std::future::pending()));
    Ok(vec![sampler, decider])
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
