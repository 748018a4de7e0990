//! `cloudstate-tck`: runs the TCK against a proxy and/or a user function.
//!
//! ```text
//! cloudstate-tck --proxy-cmd target/debug/cloudstate-proxy --store memory \
//!                --service-cmd target/debug/tck-model
//! ```
//!
//! Prints one line per case (`PASS name`, `FAIL name: reason`, `PENDING name: reason`), then
//! `N passed, M failed, P pending`; exits with 1 if any case failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use cloudstate_tck::runner::format_outcome;
use cloudstate_tck::{Config, Side, catalogue, run};

/// Runs the Cloudstate TCK: backend cases check a proxy (through a recording relay between
/// it and the user function), frontend cases check a support library's model services.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Shell command starting the proxy; it gets HTTP_PORT, HTTP_INTERFACE, USER_FUNCTION_HOST,
    /// USER_FUNCTION_PORT (the relay) and CLOUDSTATE_STORE in its environment, and
    /// {proxy_port}, {relay_port}, {store} substituted.
    #[arg(long, env = "TCK_PROXY_CMD")]
    proxy_cmd: Option<String>,
    /// Where the proxy listens: the one --proxy-cmd starts (default a free port on 127.0.0.1),
    /// or one already running with its user function at --relay-addr.
    #[arg(long, env = "TCK_PROXY_ADDR")]
    proxy_addr: Option<SocketAddr>,
    /// Shell command starting the user function serving the TCK model services; it gets HOST
    /// and PORT in its environment and {service_port} substituted.
    #[arg(long, env = "TCK_SERVICE_CMD")]
    service_cmd: Option<String>,
    /// Where the user function listens: the one --service-cmd starts (default a free port on
    /// 127.0.0.1), or one already running.
    #[arg(long, env = "TCK_SERVICE_ADDR")]
    service_addr: Option<SocketAddr>,
    /// Where the recording relay listens (default: a free port when the runner starts the
    /// proxy, 127.0.0.1:8090 otherwise).
    #[arg(long, env = "TCK_RELAY_ADDR")]
    relay_addr: Option<SocketAddr>,
    /// The proxy's store, passed on as CLOUDSTATE_STORE (`memory`, `embedded:<dir>`,
    /// `postgres://...`); cases that restart the proxy need a durable one.
    #[arg(long, env = "TCK_STORE")]
    store: Option<String>,
    /// Shell command starting tck-misbehaving (default: the one next to this program).
    #[arg(long, env = "TCK_MISBEHAVING_CMD")]
    misbehaving_cmd: Option<String>,
    /// Only the cases whose name contains this text (case-insensitive).
    #[arg(long)]
    filter: Option<String>,
    /// Only the backend (proxy) or the frontend (support library) cases.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Print what crossed the protocol for every failed case.
    #[arg(long)]
    trace: bool,
    /// Keep the logs of the processes the runner starts in this directory.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// List the cases (name, side, original case) instead of running them.
    #[arg(long)]
    list: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Only {
    Backend,
    Frontend,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.list {
        for case in catalogue() {
            let side = match case.side {
                Side::Backend => "backend",
                Side::Frontend => "frontend",
            };
            println!("{side:8} {:28} {}", case.original, case.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let misbehaving_cmd = args.misbehaving_cmd.or_else(|| {
        let sibling = std::env::current_exe()
            .ok()?
            .with_file_name("tck-misbehaving");
        sibling.exists().then(|| sibling.display().to_string())
    });
    let config = Config {
        service_cmd: args.service_cmd,
        service_addr: args.service_addr,
        proxy_cmd: args.proxy_cmd,
        proxy_addr: args.proxy_addr,
        relay_addr: args.relay_addr,
        store: args.store,
        misbehaving_cmd,
        filter: args.filter,
        only: args.only.map(|only| match only {
            Only::Backend => Side::Backend,
            Only::Frontend => Side::Frontend,
        }),
        trace: args.trace,
        log_dir: args.log_dir,
    };
    let report = run(&config, &mut |line| println!("{line}")).await?;
    println!("{report}");
    if report.failed() > 0 {
        for (name, outcome) in &report.outcomes {
            if matches!(outcome, cloudstate_tck::Outcome::Fail(_)) {
                eprintln!(
                    "{}",
                    format_outcome(name, outcome).lines().next().unwrap_or(name)
                );
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
