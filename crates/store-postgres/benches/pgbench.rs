//! The raw PostgreSQL ceiling the store's append rate compares with: `pgbench` running one-row
//! `INSERT` transactions (one commit, one WAL flush each) from 64 clients against a throw-away
//! cluster of the test harness (fsync on), the same kind of cluster the `append` bench uses.
//!
//! `cargo bench -p cloudstate-store-postgres --bench pgbench` prints the exact pgbench command,
//! its summary, and latency percentiles from its per-transaction log. `PGBENCH_SECONDS`
//! (default 10) sets the duration and `PGBENCH_CLIENTS` (default 64) the clients.

use std::{path::Path, process::Command};

use cloudstate_testutil::postgres::PostgresServer;

/// One row about the size of one journal event.
const SCRIPT: &str =
    "INSERT INTO bench_insert (payload) VALUES (convert_to(repeat('Z', 100), 'UTF8'));\n";

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test` of the bench target passes nothing.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let setting = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let seconds = setting("PGBENCH_SECONDS", 10);
    let clients = setting("PGBENCH_CLIENTS", 64);
    // Under the target directory rather than /tmp, which may be a tmpfs where fsync is free.
    let server = PostgresServer::start_in(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let script = work.path().join("insert.sql");
    std::fs::write(&script, SCRIPT).unwrap();

    let mut psql = server.client("psql");
    psql.args([
        "-v",
        "ON_ERROR_STOP=1",
        "-qc",
        "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
    ]);
    assert!(psql.status().unwrap().success());

    let mut pgbench = server.client("pgbench");
    pgbench
        .current_dir(work.path())
        .args(["-n", "-M", "prepared", "-l", "--log-prefix=tx"])
        .args(["-c", &clients.to_string(), "-j", "2"])
        .args(["-T", &seconds.to_string(), "-f"])
        .arg(&script);
    println!("server: {} (fsync on)", server.url());
    println!("script: {SCRIPT}");
    println!("command: {}", shown(&pgbench));
    let output = pgbench.output().unwrap();
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Per-transaction log lines: client_id transaction_no time(us) script_no time_epoch time_us
    let mut latencies: Vec<u64> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("tx."))
        .flat_map(|entry| {
            std::fs::read_to_string(entry.path())
                .unwrap()
                .lines()
                .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index] as f64 / 1000.0
    };
    println!(
        "latency of {} transactions: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(0.5),
        percentile(0.99),
        percentile(0.999),
        percentile(1.0)
    );
}

/// The command as it could be typed into a shell.
fn shown(command: &Command) -> String {
    let envs: Vec<String> = command
        .get_envs()
        .filter_map(|(key, value)| Some(format!("{}={}", key.to_str()?, value?.to_str()?)))
        .collect();
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    format!(
        "{} {} {}",
        envs.join(" "),
        command.get_program().to_string_lossy(),
        args.join(" ")
    )
}
