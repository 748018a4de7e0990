//! Serves the counters user function on `HOST:PORT` (default `127.0.0.1:8080`) until Ctrl-C or
//! SIGTERM. Logs go to stderr, filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let addr = cloudstate::address_from_env().await?;
    tracing::info!(%addr, "counters user function starting");
    counters::server()?.serve(addr).await?;
    Ok(())
}
