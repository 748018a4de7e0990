//! Raw PostgreSQL next to the proxy: runs `pgbench` with a per-transaction log and reports its
//! transactions like a closed-loop run (same window rule, same histogram, same summary).
//!
//! pgbench has no warm-up, so it runs for the warm-up plus the measured window (plus one second,
//! as it counts its time from after connecting), and only the transactions that *started* in
//! the measured window are counted, as in the closed loop. A log line is
//! `client_id transaction_no time script_no time_epoch time_us [...]`, where `time` is the
//! transaction's latency in microseconds (or `failed` / `skipped`) and `time_epoch.time_us`
//! is when it ended.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::runner::{Recorded, Schedule};
use crate::transport::CallError;

/// One transaction of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// When it ended, in microseconds since the Unix epoch.
    pub end_us: u64,
    /// Its latency in microseconds; `None` if it failed.
    pub latency_us: Option<u64>,
}

/// Parses one line of pgbench's per-transaction log; `None` for a line that is not one (or a
/// transaction pgbench skipped, which never ran).
pub fn parse_line(line: &str) -> Option<Transaction> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let time = *fields.get(2)?;
    let seconds: u64 = fields.get(4)?.parse().ok()?;
    let micros: u64 = fields.get(5)?.parse().ok()?;
    let end_us = seconds.checked_mul(1_000_000)?.checked_add(micros)?;
    let latency_us = match time {
        "skipped" => return None,
        "failed" | "serialization" | "deadlock" => None,
        time => Some(time.parse().ok()?),
    };
    Some(Transaction { end_us, latency_us })
}

/// The measured window in microseconds since the Unix epoch: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Transactions that start from here on count.
    pub from_us: u64,
    /// No transaction starting from here counts.
    pub to_us: u64,
}

impl Window {
    /// The window of `schedule`, whose `Instant`s were taken at `now` (an `Instant`) and
    /// `wall` (the same moment on the wall clock).
    pub fn of(schedule: &Schedule, now: Instant, wall: SystemTime) -> Self {
        let wall_us = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros() as u64);
        let offset = |at: Instant| wall_us + at.saturating_duration_since(now).as_micros() as u64;
        Window {
            from_us: offset(schedule.measure_from),
            to_us: offset(schedule.end),
        }
    }
}

/// Records the transactions that started in `window` into `recorded`: the successful ones by
/// latency and second of the window, the failed ones as `Aborted` (pgbench only logs
/// failures it retried or gave up on: serialization errors, deadlocks). A failed transaction
/// has no latency, so it counts if it *ended* in the window.
pub fn record(
    transactions: impl IntoIterator<Item = Transaction>,
    window: Window,
    recorded: &mut Recorded,
) {
    for transaction in transactions {
        match transaction.latency_us {
            Some(latency) => {
                let start = transaction.end_us.saturating_sub(latency);
                if (window.from_us..window.to_us).contains(&start) {
                    let second = ((start - window.from_us) / 1_000_000) as usize;
                    recorded.success(second, Duration::from_micros(latency));
                }
            }
            None => {
                if (window.from_us..window.to_us).contains(&transaction.end_us) {
                    recorded.errors.add(CallError::Status(tonic::Code::Aborted));
                }
            }
        }
    }
}

/// The pgbench command with the flags that make it run for `seconds` and log every transaction
/// under `log_prefix`, inserted before the caller's arguments.
pub fn command_line(args: &[String], seconds: u64, log_prefix: &Path) -> Vec<String> {
    let mut line = vec![args[0].clone()];
    line.extend([
        "-T".to_owned(),
        seconds.to_string(),
        "-l".to_owned(),
        format!("--log-prefix={}", log_prefix.display()),
    ]);
    line.extend(args[1..].iter().cloned());
    line
}

/// How long pgbench runs for a warm-up and a measured window: both, rounded up to whole
/// seconds, plus one (pgbench counts from after connecting).
pub fn seconds_for(warmup: Duration, duration: Duration) -> u64 {
    (warmup + duration).as_secs_f64().ceil() as u64 + 1
}

/// Reads the transactions of every log file under `dir` whose name starts with `prefix`.
pub fn read_logs(dir: &Path, prefix: &str) -> anyhow::Result<Vec<Transaction>> {
    let mut transactions = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        transactions.extend(text.lines().filter_map(parse_line));
    }
    Ok(transactions)
}

/// A directory of its own for the logs, removed when dropped.
#[derive(Debug)]
pub struct LogDir(PathBuf);

impl LogDir {
    /// Creates `cloudstate-pgbench-<run id>` in the temporary directory.
    pub fn create(run_id: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("cloudstate-pgbench-{run_id}"));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(LogDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_give_the_end_and_the_latency() {
        assert_eq!(
            parse_line("3 117 2345 0 1700000000 500000"),
            Some(Transaction {
                end_us: 1_700_000_000_500_000,
                latency_us: Some(2345)
            })
        );
        // pgbench 15 and later may add retries and other fields.
        assert_eq!(
            parse_line("3 118 1200 0 1700000001 000001 0"),
            Some(Transaction {
                end_us: 1_700_000_001_000_001,
                latency_us: Some(1200)
            })
        );
        assert_eq!(
            parse_line("3 119 failed 0 1700000002 0"),
            Some(Transaction {
                end_us: 1_700_000_002_000_000,
                latency_us: None
            })
        );
        assert_eq!(parse_line("3 120 skipped 0 1700000002 0"), None);
        assert_eq!(parse_line("garbage"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn only_transactions_started_in_the_window_count() {
        let schedule = Schedule::starting_now(Duration::from_secs(2), Duration::from_secs(3));
        let mut recorded = Recorded::new(&schedule).unwrap();
        let window = Window {
            from_us: 10_000_000,
            to_us: 13_000_000,
        };
        let done = |end_us, latency_us| Transaction {
            end_us,
            latency_us: Some(latency_us),
        };
        record(
            [
                // Started before the window, ended inside: not counted.
                done(10_000_500, 1_000),
                // Started at the window's start: second 0.
                done(10_001_000, 1_000),
                // Second 2.
                done(12_500_000, 2_000),
                // Started at its end: not counted.
                done(13_000_100, 100),
                // A failure that ended inside counts as an error.
                Transaction {
                    end_us: 11_000_000,
                    latency_us: None,
                },
                Transaction {
                    end_us: 14_000_000,
                    latency_us: None,
                },
            ],
            window,
            &mut recorded,
        );
        assert_eq!(recorded.latency.len(), 2);
        assert_eq!(recorded.per_second, [1, 0, 1]);
        assert_eq!(recorded.errors.by_name()["Aborted"], 1);
    }

    #[test]
    fn the_window_follows_the_schedule_on_the_wall_clock() {
        let now = Instant::now();
        let schedule = Schedule {
            start: now,
            measure_from: now + Duration::from_secs(2),
            end: now + Duration::from_secs(22),
        };
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            Window::of(&schedule, now, wall),
            Window {
                from_us: 1_002_000_000,
                to_us: 1_022_000_000
            }
        );
    }

    #[test]
    fn pgbench_runs_past_the_window_and_logs_every_transaction() {
        assert_eq!(
            seconds_for(Duration::from_secs(2), Duration::from_secs(20)),
            23
        );
        assert_eq!(
            seconds_for(Duration::from_millis(500), Duration::from_secs(1)),
            3
        );
        let args: Vec<String> = ["pgbench", "-c", "64", "db"].map(String::from).to_vec();
        assert_eq!(
            command_line(&args, 23, Path::new("/tmp/x/tx")),
            [
                "pgbench",
                "-T",
                "23",
                "-l",
                "--log-prefix=/tmp/x/tx",
                "-c",
                "64",
                "db"
            ]
        );
    }
}
