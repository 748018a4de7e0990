//! `cloudstate-loadgen`: closed-loop load for the Cloudstate proxy, and the gRPC echo baseline.
//!
//! - `cart` drives the shopping cart through the proxy, then checks that every cart holds
//!   exactly what was acknowledged (exit status 2 if not).
//! - `echo-server` and `echo` measure a bare loopback gRPC round trip with the same client
//!   machinery: the limit the proxy is compared with.

mod cart;
mod check;
mod codec;
mod cpu;
mod echo;
mod keys;
mod report;
mod runner;
mod transport;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use cart::{CartPool, CartWorkload, Protocol};
use cpu::Watched;
use keys::KeyPlan;
use report::Summary;
use runner::Schedule;
use transport::{GrpcPool, HttpPool};

/// Exit status when the correctness check fails.
const CHECK_FAILED: u8 = 2;

/// Closed-loop load generator for the Cloudstate proxy.
#[derive(Debug, Parser)]
#[command(name = "cloudstate-loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Add items to shopping carts through the proxy, then check every cart.
    Cart(CartArgs),
    /// Drive an echo server (the loopback gRPC baseline).
    Echo(EchoArgs),
    /// Serve `/echo.Echo/Echo`: bytes in, same bytes out.
    EchoServer(EchoServerArgs),
}

/// Flags shared by the load-generating commands.
#[derive(Debug, Args)]
struct LoadArgs {
    /// The server to load.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    target: String,

    /// Closed-loop clients (calls in flight).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// HTTP/2 connections the clients are spread over (default: one per client).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    connections: Option<u32>,

    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Time under load before measuring (not recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,

    /// Longest wait for one answer; a call that takes longer counts as `ClientTimeout`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,

    /// Also report the CPU used by this process, as NAME=PID (repeatable).
    #[arg(long = "watch-pid", value_name = "NAME=PID")]
    watch: Vec<Watched>,

    /// Print one JSON line on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    fn concurrency(&self) -> usize {
        self.concurrency as usize
    }

    fn connections(&self) -> anyhow::Result<usize> {
        let connections = self.connections.unwrap_or(self.concurrency);
        anyhow::ensure!(
            connections <= self.concurrency,
            "--connections {connections} is more than --concurrency {}: some would stay idle",
            self.concurrency
        );
        Ok(connections as usize)
    }
}

#[derive(Debug, Args)]
struct CartArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Carts (entity keys) the clients spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    keys: u32,

    /// Protocol spoken to the proxy.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Bytes per request (default: the size of the cart's encoded AddLineItem).
    #[arg(long)]
    payload_size: Option<usize>,
}

#[derive(Debug, Args)]
struct EchoServerArgs {
    /// Port to listen on.
    #[arg(long)]
    port: u16,

    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cart(args) => run_cart(args).await,
        Command::Echo(args) => run_echo(args).await,
        Command::EchoServer(args) => serve_echo(args).await.map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("cloudstate-loadgen: {error:#}");
        ExitCode::FAILURE
    })
}

async fn run_cart(args: CartArgs) -> anyhow::Result<ExitCode> {
    let load = &args.load;
    let (concurrency, connections) = (load.concurrency(), load.connections()?);
    let keys = args.keys as usize;
    let run_id = random_run_id();
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = match args.protocol {
        Protocol::Grpc => {
            CartPool::Grpc(GrpcPool::connect(&load.target, connections, load.timeout).await?)
        }
        Protocol::Http => {
            anyhow::ensure!(
                connections == concurrency,
                "--protocol http keeps one HTTP/1.1 connection per client: leave out --connections"
            );
            CartPool::Http(HttpPool::connect(&load.target, connections, load.timeout).await?)
        }
    };
    let workload = Arc::new(CartWorkload::new(
        pool,
        args.protocol,
        KeyPlan::new(keys, concurrency),
        &run_id,
    ));
    let (recorded, cpu) = drive(load, workload.clone()).await?;
    eprintln!("checking {keys} carts");
    let check = workload.check(concurrency).await;
    let passed = check.passed;

    let mut summary = Summary::new(
        "cart",
        &recorded,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64(),
    );
    summary.protocol = format!("{:?}", args.protocol).to_lowercase();
    summary.target = load.target.clone();
    summary.concurrency = concurrency;
    summary.connections = connections;
    summary.keys = Some(keys);
    summary.run_id = Some(run_id);
    summary.check = Some(check);
    summary.cpu = cpu;
    print_summary(&summary, load.json);
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(CHECK_FAILED)
    })
}

async fn run_echo(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let load = &args.load;
    let (concurrency, connections) = (load.concurrency(), load.connections()?);
    let payload_size = args.payload_size.unwrap_or_else(default_payload_size);
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = GrpcPool::connect(&load.target, connections, load.timeout).await?;
    let workload = Arc::new(echo::EchoWorkload::new(pool, payload_size));
    let (recorded, cpu) = drive(load, workload).await?;

    let mut summary = Summary::new(
        "echo",
        &recorded,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64(),
    );
    summary.target = load.target.clone();
    summary.concurrency = concurrency;
    summary.connections = connections;
    summary.payload_bytes = Some(payload_size);
    summary.cpu = cpu;
    print_summary(&summary, load.json);
    Ok(ExitCode::SUCCESS)
}

/// Runs the closed loop and samples the CPU over the measured window.
async fn drive<W: runner::Workload>(
    load: &LoadArgs,
    workload: Arc<W>,
) -> anyhow::Result<(runner::Recorded, Option<cpu::CpuUsage>)> {
    let schedule = Schedule::starting_now(load.warmup, load.duration);
    eprintln!(
        "{} clients: warming up for {:?}, then measuring for {:?}",
        load.concurrency, load.warmup, load.duration
    );
    let (recorded, cpu) = tokio::join!(
        runner::run(workload, load.concurrency(), schedule),
        cpu::measure(&load.watch, schedule)
    );
    Ok((recorded?, cpu))
}

fn print_summary(summary: &Summary, json: bool) {
    if json {
        eprint!("{}", summary.human());
        println!("{}", summary.json());
    } else {
        print!("{}", summary.human());
    }
}

async fn serve_echo(args: EchoServerArgs) -> anyhow::Result<()> {
    let address = SocketAddr::new(args.host, args.port);
    eprintln!("echo-server listening on {address}");
    echo::serve(address, shutdown_signal()).await
}

/// The size of the cart's `AddLineItem` for the last of the default 1,000 keys.
fn default_payload_size() -> usize {
    use prost::Message;
    cart::add_line_item(cart::user_id(&random_run_id(), 999)).encoded_len()
}

/// Eight random hex digits, so that every run starts from empty carts.
fn random_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // `RandomState` is seeded from the operating system's random source.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|error| format!("`{value}` is not a duration like 500ms, 10s or 1m: {error}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = interrupt.await;
            return;
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_have_the_documented_defaults() {
        let cli = Cli::try_parse_from(["cloudstate-loadgen", "cart"]).unwrap();
        let Command::Cart(args) = cli.command else {
            panic!("not cart")
        };
        assert_eq!(args.load.target, "http://127.0.0.1:9000");
        assert_eq!(args.load.concurrency(), 64);
        assert_eq!(args.load.connections().unwrap(), 64);
        assert_eq!(args.keys, 1000);
        assert_eq!(args.load.duration, Duration::from_secs(10));
        assert_eq!(args.load.warmup, Duration::from_secs(2));
        assert_eq!(args.protocol, Protocol::Grpc);
    }

    #[test]
    fn connections_may_be_fewer_than_clients_but_not_more() {
        let parse = |connections: &str| {
            let cli = Cli::try_parse_from([
                "cloudstate-loadgen",
                "echo",
                "--concurrency",
                "8",
                "--connections",
                connections,
            ])
            .unwrap();
            let Command::Echo(args) = cli.command else {
                panic!("not echo")
            };
            args.load.connections()
        };
        assert_eq!(parse("1").unwrap(), 1);
        assert!(parse("9").is_err());
        assert!(Cli::try_parse_from(["cloudstate-loadgen", "cart", "--keys", "0"]).is_err());
    }

    #[test]
    fn run_ids_are_eight_hex_digits_and_differ() {
        let (a, b) = (random_run_id(), random_run_id());
        assert_eq!(a.len(), 8);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_default_echo_payload_is_an_add_line_item() {
        assert_eq!(default_payload_size(), 19);
    }
}
