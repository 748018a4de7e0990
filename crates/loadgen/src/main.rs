//! `cloudstate-loadgen`: load for the Cloudstate proxy (closed loop, or open loop at a fixed
//! rate with `--rate`), and the gRPC echo baseline.
//!
//! - `cart` drives the shopping cart through the proxy, then checks that every cart holds
//!   exactly what was acknowledged (exit status 2 if not).
//! - `value` drives the test function's `Counter` value entity (increments, checked like the
//!   cart, or reads of preset values), directly or through the `Relay.ToCounter` action.
//! - `crdt` increments the counters example's GCounter or PNCounter, checked the same way.
//! - `bounce` calls `Relay.Bounce`, a chain of forwards through the proxy; `hop-cost` turns the
//!   results of several hop counts into the marginal cost of one hop.
//! - `presence-latency` measures the time from a state change (a user connecting or
//!   disconnecting) to a streamed `Monitor` call seeing it.
//! - `restate-counter` drives the peer the proxy is compared with: a keyed counter on Restate,
//!   over its HTTP ingress, checked like the cart.
//! - `entities` activates rounds of carts and reports the memory an active entity costs and
//!   what comes back once they have passivated.
//! - `pgbench` runs PostgreSQL's own benchmark and reports it in the same form: the database's
//!   limit the PostgreSQL store is compared with.
//! - `echo-server` and `echo` measure a bare loopback gRPC round trip with the same client
//!   machinery: the limit the proxy is compared with. `echo --client tonic` measures the same
//!   with a minimal tonic client, to show that the load generator's client is not the limit.

mod bounce;
mod cart;
mod check;
mod codec;
mod counter;
mod cpu;
mod echo;
mod entities;
mod hops;
mod keys;
mod pgbench;
mod presence;
mod proto;
mod report;
mod restate;
mod runner;
mod transport;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use cart::{CartPool, CartWorkload, Protocol};
use check::Check;
use counter::{CounterKind, CounterWorkload, Mode};
use cpu::Watched;
use echo::EchoPool;
use keys::KeyPlan;
use report::Summary;
use runner::{Pace, Schedule};
use transport::tonic::TonicPool;
use transport::{GrpcPool, HttpPool};

/// Exit status when the correctness check fails.
const CHECK_FAILED: u8 = 2;

/// Load generator for the Cloudstate proxy.
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
    /// Increment or read the test function's `Counter` value entities, then check them.
    Value(ValueArgs),
    /// Increment or read the counters example's CRDT counters, then check them.
    Crdt(CrdtArgs),
    /// Call `Relay.Bounce`: a chain of `--hops` forwards through the proxy per call.
    Bounce(BounceArgs),
    /// Connect and disconnect presence users; time until their `Monitor` streams see it.
    PresenceLatency(PresenceArgs),
    /// Add to counters of the Restate counter service over its HTTP ingress, then check them.
    RestateCounter(RestateArgs),
    /// Memory per active entity: rounds of new carts, each round until they have passivated.
    Entities(EntitiesArgs),
    /// Run pgbench (the command after `--`) and report its transactions like a run.
    Pgbench(PgbenchArgs),
    /// The marginal cost of one forward hop, from the JSON results of `bounce` runs.
    HopCost(HopCostArgs),
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

    /// Clients, each with one call in flight at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// Open loop: calls due per second, all clients together (each client takes every
    /// `--concurrency`-th slot; latency counts from when a call was due). Without it, each
    /// client calls again as soon as it is answered (closed loop).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,

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

    #[command(flatten)]
    report: ReportArgs,
}

/// Flags about what a run reports.
#[derive(Debug, Args)]
struct ReportArgs {
    /// Also report the CPU used by this process, as NAME=PID (repeatable).
    #[arg(long = "watch-pid", value_name = "NAME=PID")]
    watch: Vec<Watched>,

    /// Also report the CPU used by this process and all its descendants (e.g. a PostgreSQL
    /// server and its backends), as NAME=PID (repeatable).
    #[arg(long = "watch-tree", value_name = "NAME=PID")]
    watch_tree: Vec<Watched>,

    /// Print one JSON line on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
}

impl ReportArgs {
    /// Every process to watch.
    fn watched(&self) -> Vec<Watched> {
        let trees = self
            .watch_tree
            .iter()
            .cloned()
            .map(Watched::with_descendants);
        self.watch.iter().cloned().chain(trees).collect()
    }
}

impl LoadArgs {
    fn concurrency(&self) -> usize {
        self.concurrency as usize
    }

    fn pace(&self) -> Pace {
        match self.rate {
            Some(rate) => Pace::Open { rate },
            None => Pace::Closed,
        }
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

    /// Do not read the carts back after the run (for profiles, where every command counted
    /// must be one of the load's).
    #[arg(long)]
    no_check: bool,
}

#[derive(Debug, Args)]
struct RestateArgs {
    /// One HTTP/1.1 connection per client to Restate's ingress.
    #[command(flatten)]
    load: LoadArgs,

    /// Counters (keys of the `Counter` virtual object) the clients spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    keys: u32,
}

#[derive(Debug, Args)]
struct EntitiesArgs {
    /// The proxy, serving the shopping cart.
    #[arg(long, default_value = "http://127.0.0.1:9000")]
    target: String,

    /// New carts activated per round.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    entities: u32,

    /// Rounds, each with new keys.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,

    /// Calls in flight while activating (and HTTP/2 connections).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,

    /// Longest wait after a round for every entity to passivate (the proxy's
    /// `--passivation-timeout` decides when they do).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    passivation_wait: Duration,

    /// Longest wait for one answer.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,

    /// Processes whose resident memory is read, as NAME=PID (repeatable).
    #[arg(long = "watch-pid", value_name = "NAME=PID")]
    watch: Vec<Watched>,
}

/// Whether increments go to the value entity directly or through an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Via {
    /// `Counter.Increment`.
    Direct,
    /// `Relay.ToCounter`, which forwards to `Counter.Increment`.
    Relay,
}

#[derive(Debug, Args)]
struct ValueArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Counters (entity keys) the clients spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    keys: u32,

    /// `update`: Increment by 1 (checked at the end); `get`: read counters preset before the
    /// run (every reply checked).
    #[arg(long, value_enum, default_value_t = Mode::Update)]
    mode: Mode,

    /// Send the increments to the entity directly, or through the `Relay.ToCounter` action.
    #[arg(long, value_enum, default_value_t = Via::Direct)]
    via: Via,
}

/// The CRDT counters of the counters example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CrdtCounter {
    /// Grow-only counter: `IncrementGCounter`, `GetGCounter`.
    Gcounter,
    /// Positive-negative counter: `UpdatePNCounter`, `GetPNCounter`.
    Pncounter,
}

#[derive(Debug, Args)]
struct CrdtArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Counters (entity keys) the clients spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    keys: u32,

    /// `update`: add 1 (checked at the end); `get`: read counters preset before the run.
    #[arg(long, value_enum, default_value_t = Mode::Update)]
    mode: Mode,

    /// Which CRDT.
    #[arg(long, value_enum, default_value_t = CrdtCounter::Pncounter)]
    counter: CrdtCounter,
}

#[derive(Debug, Args)]
struct BounceArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Forwards per call before the reply (0: the action answers at once).
    #[arg(long, default_value_t = 0)]
    hops: u32,
}

#[derive(Debug, Args)]
struct PresenceArgs {
    /// `--concurrency` is the number of users: each client is one user with its own `Monitor`
    /// stream, alternately connecting and disconnecting.
    #[command(flatten)]
    load: LoadArgs,

    /// Open the `Monitor` streams on connections of their own (as many again), apart from
    /// the `Connect` calls; by default a user's two calls share its connection.
    #[arg(long)]
    monitors_apart: bool,
}

#[derive(Debug, Args)]
struct PgbenchArgs {
    /// Time before the measured window (transactions started in it are not counted).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,

    /// Measured window.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    #[command(flatten)]
    report: ReportArgs,

    /// The pgbench command and its arguments, e.g. `-- pgbench -n -M prepared -c 64 -j 2 -f
    /// insert.sql db`; `-T`, `-l` and `--log-prefix` are added.
    #[arg(last = true, required = true, value_name = "PGBENCH")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct HopCostArgs {
    /// JSON results of `bounce --json` runs (other lines and scenarios are ignored).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// The gRPC client an echo run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EchoClientKind {
    /// The load generator's own lean client (h2, one task per connection).
    Lean,
    /// A minimal tonic client (`Channel`, `ready()` and `unary()` per call), for comparison.
    Tonic,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[command(flatten)]
    load: LoadArgs,

    /// Bytes per request (default: the size of the cart's encoded AddLineItem).
    #[arg(long)]
    payload_size: Option<usize>,

    /// Which gRPC client makes the calls.
    #[arg(long, value_enum, default_value_t = EchoClientKind::Lean)]
    client: EchoClientKind,
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
        Command::Value(args) => {
            let counter = match args.via {
                Via::Direct => CounterKind::Value,
                Via::Relay => CounterKind::ValueViaRelay,
            };
            run_counter("value", &args.load, args.keys, counter, args.mode).await
        }
        Command::Crdt(args) => {
            let counter = match args.counter {
                CrdtCounter::Gcounter => CounterKind::GCounter,
                CrdtCounter::Pncounter => CounterKind::PnCounter,
            };
            run_counter("crdt", &args.load, args.keys, counter, args.mode).await
        }
        Command::Bounce(args) => run_bounce(args).await,
        Command::PresenceLatency(args) => run_presence(args).await,
        Command::RestateCounter(args) => run_restate(args).await,
        Command::Entities(args) => run_entities(args).await,
        Command::Pgbench(args) => run_pgbench(args).await,
        Command::HopCost(args) => hop_cost(args),
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
        KeyPlan::new(keys, concurrency),
        &run_id,
    ));
    let (recorded, cpu) = drive(load, workload.clone()).await?;
    let check = if args.no_check {
        None
    } else {
        eprintln!("checking {keys} carts");
        Some(Check::Keys(workload.check(concurrency).await))
    };

    let mut summary = summary("cart", load, &recorded, connections);
    summary.protocol = format!("{:?}", args.protocol).to_lowercase();
    summary.keys = Some(keys);
    summary.run_id = Some(run_id);
    summary.check = check;
    summary.cpu = cpu;
    Ok(finish(&summary, load.report.json))
}

async fn run_restate(args: RestateArgs) -> anyhow::Result<ExitCode> {
    let load = &args.load;
    let (concurrency, connections) = (load.concurrency(), load.connections()?);
    anyhow::ensure!(
        connections == concurrency,
        "restate-counter keeps one HTTP/1.1 connection per client: leave out --connections"
    );
    let keys = args.keys as usize;
    let run_id = random_run_id();
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = HttpPool::connect(&load.target, connections, load.timeout).await?;
    let workload = Arc::new(restate::RestateWorkload::new(
        pool,
        KeyPlan::new(keys, concurrency),
        &run_id,
    ));
    let (recorded, cpu) = drive(load, workload.clone()).await?;
    eprintln!("checking {keys} counters");
    let check = workload.check(concurrency).await;

    let mut summary = summary("restate-counter", load, &recorded, connections);
    summary.protocol = "http".to_owned();
    summary.method = Some("POST /Counter/<key>/add".to_owned());
    summary.keys = Some(keys);
    summary.run_id = Some(run_id);
    summary.check = Some(Check::Keys(check));
    summary.cpu = cpu;
    Ok(finish(&summary, load.report.json))
}

async fn run_entities(args: EntitiesArgs) -> anyhow::Result<ExitCode> {
    let plan = entities::Plan {
        entities: args.entities as usize,
        rounds: args.rounds as usize,
        concurrency: args.concurrency as usize,
        passivation_wait: args.passivation_wait,
    };
    let connections = plan.concurrency;
    eprintln!("connecting to {} ({connections} connections)", args.target);
    let pool = GrpcPool::connect(&args.target, connections, args.timeout).await?;
    let metrics = HttpPool::connect(&args.target, 1, args.timeout).await?;
    let mut report = entities::run(pool, metrics, &random_run_id(), &plan, &args.watch).await?;
    report.target = args.target;
    for round in &report.rounds {
        eprintln!(
            "round {}: {} active, RSS {:?}; passivated after {:?} s, RSS {:?}; errors {:?}",
            round.round,
            round
                .active_entities
                .map_or("?".to_owned(), |n| n.to_string()),
            round.rss_active,
            round.passivated_after_s,
            round.rss_passivated,
            round.errors
        );
    }
    eprintln!(
        "bytes per active entity: {:?}",
        report.bytes_per_active_entity
    );
    println!("{}", serde_json::to_string(&report)?);
    let failed = report
        .rounds
        .iter()
        .any(|round| !round.errors.is_empty() || round.passivated_after_s.is_none());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `value` and `crdt`: keyed counters, checked at the end.
async fn run_counter(
    scenario: &str,
    load: &LoadArgs,
    keys: u32,
    counter: CounterKind,
    mode: Mode,
) -> anyhow::Result<ExitCode> {
    let (concurrency, connections) = (load.concurrency(), load.connections()?);
    let keys = keys as usize;
    let run_id = random_run_id();
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = GrpcPool::connect(&load.target, connections, load.timeout).await?;
    let workload = Arc::new(CounterWorkload::new(
        pool,
        counter,
        mode,
        KeyPlan::new(keys, concurrency),
        &run_id,
    ));
    if mode == Mode::Get {
        eprintln!("setting {keys} counters to their values");
        workload.prepare(concurrency).await?;
    }
    let (recorded, cpu) = drive(load, workload.clone()).await?;
    eprintln!("checking {keys} counters");
    let check = workload.check(concurrency).await;

    let mut summary = summary(scenario, load, &recorded, connections);
    summary.method = Some(workload.method().to_owned());
    summary.mode = Some(format!("{mode:?}").to_lowercase());
    summary.keys = Some(keys);
    summary.run_id = Some(run_id);
    summary.check = Some(Check::Keys(check));
    summary.cpu = cpu;
    Ok(finish(&summary, load.report.json))
}

async fn run_bounce(args: BounceArgs) -> anyhow::Result<ExitCode> {
    let load = &args.load;
    let connections = load.connections()?;
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = GrpcPool::connect(&load.target, connections, load.timeout).await?;
    let workload = Arc::new(bounce::BounceWorkload::new(pool, args.hops));
    let (recorded, cpu) = drive(load, workload.clone()).await?;

    let mut summary = summary("bounce", load, &recorded, connections);
    summary.method = Some(workload.method().to_owned());
    summary.hops = Some(args.hops);
    summary.cpu = cpu;
    Ok(finish(&summary, load.report.json))
}

async fn run_presence(args: PresenceArgs) -> anyhow::Result<ExitCode> {
    let load = &args.load;
    let (users, connections) = (load.concurrency(), load.connections()?);
    let run_id = random_run_id();
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = GrpcPool::connect(&load.target, connections, load.timeout).await?;
    let monitor_pool = if args.monitors_apart {
        eprintln!("connecting again for the monitors ({connections} connections)");
        GrpcPool::connect(&load.target, connections, load.timeout).await?
    } else {
        pool.clone()
    };
    eprintln!("opening {users} Monitor streams");
    let monitors = presence::open_monitors(&monitor_pool, &run_id, users, load.timeout).await?;
    let schedule = Schedule::starting_now(load.warmup, load.duration);
    let workload = Arc::new(presence::PresenceWorkload::new(
        pool,
        monitor_pool,
        &run_id,
        monitors,
        schedule,
        load.timeout,
    )?);
    let (recorded, cpu) = drive_with(load, workload.clone(), schedule).await?;
    eprintln!("checking that {users} users end offline");
    let check = workload.check().await;

    let mut summary = summary("presence-latency", load, &recorded, connections);
    summary.method = Some(format!("/{}/Connect", proto::presence::SERVICE));
    if args.monitors_apart {
        summary.connections *= 2;
    }
    summary.keys = Some(users);
    summary.run_id = Some(run_id);
    summary.changes = Some(
        workload
            .changes()?
            .into_iter()
            .map(|(kind, latency)| (kind.to_owned(), latency))
            .collect(),
    );
    summary.check = Some(Check::Presence(check));
    summary.cpu = cpu;
    Ok(finish(&summary, load.report.json))
}

async fn run_pgbench(args: PgbenchArgs) -> anyhow::Result<ExitCode> {
    let run_id = random_run_id();
    let logs = pgbench::LogDir::create(&run_id)?;
    let seconds = pgbench::seconds_for(args.warmup, args.duration);
    let line = pgbench::command_line(&args.command, seconds, &logs.path().join("tx"));
    eprintln!("running {}", line.join(" "));
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut child = tokio::process::Command::new(&line[0])
        .args(&line[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", line[0]))?;
    let mut watched = args.report.watched();
    if let Some(pid) = child.id() {
        watched.push(Watched {
            name: "pgbench".to_owned(),
            pid,
            tree: false,
        });
    }
    let schedule = Schedule::starting_now(args.warmup, args.duration);
    let stdout = child.stdout.take();
    let (output, cpu) = tokio::join!(
        async {
            let mut text = String::new();
            if let Some(mut stdout) = stdout {
                use tokio::io::AsyncReadExt;
                stdout.read_to_string(&mut text).await?;
            }
            Ok::<_, std::io::Error>((text, child.wait().await?))
        },
        cpu::measure(&watched, schedule)
    );
    let (text, status) = output.context("running pgbench")?;
    eprint!("{text}");
    anyhow::ensure!(status.success(), "pgbench failed ({status})");

    let mut recorded = runner::Recorded::new(&schedule)?;
    let window = pgbench::Window::of(&schedule, now, wall);
    pgbench::record(
        pgbench::read_logs(logs.path(), "tx")?,
        window,
        &mut recorded,
    );
    let mut summary = Summary::new(
        "pgbench",
        &recorded,
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
    );
    summary.protocol = "postgres".to_owned();
    summary.command = Some(args.command.join(" "));
    summary.concurrency = pgbench_clients(&args.command);
    summary.connections = summary.concurrency;
    summary.cpu = cpu;
    Ok(finish(&summary, args.report.json))
}

/// The `-c` (or `--client`) value of a pgbench command line: its clients (1 by default).
fn pgbench_clients(command: &[String]) -> usize {
    let mut args = command.iter();
    while let Some(arg) = args.next() {
        if arg == "-c" || arg == "--client" {
            return args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        }
        if let Some(n) = arg.strip_prefix("--client=").or(arg.strip_prefix("-c")) {
            return n.parse().unwrap_or(1);
        }
    }
    1
}

fn hop_cost(args: HopCostArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        runs.extend(
            text.lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .filter_map(|summary| hops::HopRun::from_json(&summary)),
        );
    }
    anyhow::ensure!(!runs.is_empty(), "no bounce results in the files given");
    print!("{}", hops::report(&runs)?);
    Ok(ExitCode::SUCCESS)
}

async fn run_echo(args: EchoArgs) -> anyhow::Result<ExitCode> {
    let load = &args.load;
    let connections = load.connections()?;
    let payload_size = args.payload_size.unwrap_or_else(default_payload_size);
    eprintln!("connecting to {} ({connections} connections)", load.target);
    let pool = match args.client {
        EchoClientKind::Lean => {
            EchoPool::Lean(GrpcPool::connect(&load.target, connections, load.timeout).await?)
        }
        EchoClientKind::Tonic => {
            EchoPool::Tonic(TonicPool::connect(&load.target, connections, load.timeout).await?)
        }
    };
    let workload = Arc::new(echo::EchoWorkload::new(pool, payload_size));
    let (recorded, cpu) = drive(load, workload).await?;

    let mut summary = summary("echo", load, &recorded, connections);
    summary.payload_bytes = Some(payload_size);
    summary.client = Some(format!("{:?}", args.client).to_lowercase());
    summary.cpu = cpu;
    Ok(finish(&summary, load.report.json))
}

/// The figures every closed-loop run reports.
fn summary(
    scenario: &str,
    load: &LoadArgs,
    recorded: &runner::Recorded,
    connections: usize,
) -> Summary {
    let mut summary = Summary::new(
        scenario,
        recorded,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64(),
    );
    summary.target = load.target.clone();
    summary.concurrency = load.concurrency();
    summary.connections = connections;
    summary.rate = load.rate;
    summary
}

/// Prints the summary; the exit status says whether the check, if any, passed.
fn finish(summary: &Summary, json: bool) -> ExitCode {
    print_summary(summary, json);
    match &summary.check {
        Some(check) if !check.passed() => ExitCode::from(CHECK_FAILED),
        _ => ExitCode::SUCCESS,
    }
}

/// Runs the clients and samples the CPU over the measured window.
async fn drive<W: runner::Workload>(
    load: &LoadArgs,
    workload: Arc<W>,
) -> anyhow::Result<(runner::Recorded, Option<cpu::CpuUsage>)> {
    let schedule = Schedule::starting_now(load.warmup, load.duration);
    drive_with(load, workload, schedule).await
}

/// [`drive`] with a schedule made beforehand.
async fn drive_with<W: runner::Workload>(
    load: &LoadArgs,
    workload: Arc<W>,
    schedule: Schedule,
) -> anyhow::Result<(runner::Recorded, Option<cpu::CpuUsage>)> {
    let pace = match load.rate {
        Some(rate) => format!(" (open loop, {rate} calls/s due)"),
        None => String::new(),
    };
    eprintln!(
        "{} clients{pace}: warming up for {:?}, then measuring for {:?}",
        load.concurrency, load.warmup, load.duration
    );
    let watched = load.report.watched();
    let (recorded, cpu) = tokio::join!(
        runner::run(workload, load.concurrency(), schedule, load.pace()),
        cpu::measure(&watched, schedule)
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
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    eprintln!("echo-server listening on {address}");
    echo::serve(listener, shutdown_signal()).await
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

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{value}` is not a positive number of calls per second"
        )),
    }
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
        assert_eq!(args.load.pace(), Pace::Closed);
    }

    #[test]
    fn a_rate_makes_an_open_loop() {
        let cli = Cli::try_parse_from(["cloudstate-loadgen", "echo", "--rate", "2500"]).unwrap();
        let Command::Echo(args) = cli.command else {
            panic!("not echo")
        };
        assert_eq!(args.load.pace(), Pace::Open { rate: 2500.0 });
        assert_eq!(args.client, EchoClientKind::Lean);
        for bad in ["0", "-1", "x", "inf"] {
            assert!(Cli::try_parse_from(["cloudstate-loadgen", "cart", "--rate", bad]).is_err());
        }
        let cli = Cli::try_parse_from(["cloudstate-loadgen", "echo", "--client", "tonic"]).unwrap();
        let Command::Echo(args) = cli.command else {
            panic!("not echo")
        };
        assert_eq!(args.client, EchoClientKind::Tonic);
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
    fn new_workloads_have_their_documented_defaults() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["cloudstate-loadgen"].iter().chain(args))
                .unwrap()
                .command
        };
        let Command::Value(value) = parse(&["value"]) else {
            panic!("not value")
        };
        assert_eq!(
            (value.keys, value.mode, value.via),
            (1000, Mode::Update, Via::Direct)
        );
        let Command::Value(value) = parse(&["value", "--mode", "get", "--via", "relay"]) else {
            panic!("not value")
        };
        assert_eq!((value.mode, value.via), (Mode::Get, Via::Relay));
        let Command::Crdt(crdt) = parse(&["crdt"]) else {
            panic!("not crdt")
        };
        assert_eq!(
            (crdt.keys, crdt.mode, crdt.counter),
            (1000, Mode::Update, CrdtCounter::Pncounter)
        );
        let Command::Bounce(bounce) = parse(&["bounce", "--hops", "8"]) else {
            panic!("not bounce")
        };
        assert_eq!(bounce.hops, 8);
        let Command::PresenceLatency(presence) =
            parse(&["presence-latency", "--concurrency", "100"])
        else {
            panic!("not presence-latency")
        };
        assert_eq!(presence.load.concurrency(), 100);
    }

    #[test]
    fn trees_and_single_processes_are_both_watched() {
        let cli = Cli::try_parse_from([
            "cloudstate-loadgen",
            "cart",
            "--watch-pid",
            "proxy=10",
            "--watch-tree",
            "postgres=20",
        ])
        .unwrap();
        let Command::Cart(args) = cli.command else {
            panic!("not cart")
        };
        let watched = args.load.report.watched();
        assert_eq!(
            watched
                .iter()
                .map(|w| (w.name.as_str(), w.pid, w.tree))
                .collect::<Vec<_>>(),
            [("proxy", 10, false), ("postgres", 20, true)]
        );
    }

    #[test]
    fn pgbench_takes_the_command_after_the_double_dash() {
        let cli = Cli::try_parse_from([
            "cloudstate-loadgen",
            "pgbench",
            "--duration",
            "20s",
            "--json",
            "--",
            "pgbench",
            "-n",
            "-c",
            "64",
            "db",
        ])
        .unwrap();
        let Command::Pgbench(args) = cli.command else {
            panic!("not pgbench")
        };
        assert_eq!(args.command, ["pgbench", "-n", "-c", "64", "db"]);
        assert!(args.report.json);
        assert_eq!(pgbench_clients(&args.command), 64);
        assert!(Cli::try_parse_from(["cloudstate-loadgen", "pgbench"]).is_err());
    }

    #[test]
    fn pgbench_clients_come_from_its_flags() {
        let clients = |args: &[&str]| {
            pgbench_clients(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(clients(&["pgbench", "-c", "64"]), 64);
        assert_eq!(clients(&["pgbench", "-c8"]), 8);
        assert_eq!(clients(&["pgbench", "--client=16", "db"]), 16);
        assert_eq!(clients(&["pgbench", "db"]), 1);
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
