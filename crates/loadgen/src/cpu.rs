//! CPU used during the measured window, by the machine and by chosen processes (Linux /proc).
//!
//! On a shared machine the figures only mean something next to the load that was there:
//! this reports how many cores were busy in all, how many of them the load generator and the
//! watched processes (proxy, user function, echo server) used, and the rest ("other"). A
//! process may be watched with its descendants (`--watch-tree`): a PostgreSQL server runs one
//! process per connection.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;

use crate::runner::Schedule;

/// A process to watch, given as `name=pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Name shown in the results.
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Whether its descendants count too.
    pub tree: bool,
}

impl Watched {
    /// The same process with all its descendants.
    pub fn with_descendants(self) -> Self {
        Watched { tree: true, ..self }
    }
}

impl FromStr for Watched {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let (name, pid) = value
            .split_once('=')
            .ok_or_else(|| format!("`{value}` is not NAME=PID"))?;
        let pid = pid
            .parse()
            .map_err(|_| format!("`{pid}` is not a process id"))?;
        if name.is_empty() {
            return Err(format!("`{value}` has no name"));
        }
        Ok(Watched {
            name: name.to_owned(),
            pid,
            tree: false,
        })
    }
}

/// CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// Ticks of all CPUs, busy or not.
    total: u64,
    /// Idle and I/O-wait ticks of all CPUs.
    idle: u64,
    /// Number of CPUs.
    cpus: usize,
    /// User + system ticks of each watched process, by pid (several with its descendants);
    /// `None` if the process could not be read.
    processes: Vec<Option<Ticks>>,
}

/// User + system ticks per process id.
type Ticks = BTreeMap<u32, u64>;

/// CPU use over the measured window, in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuUsage {
    /// Number of CPUs of the machine.
    pub cpus: usize,
    /// Cores busy in all, whoever used them.
    pub machine: f64,
    /// Cores used by each watched process (the load generator is `loadgen`).
    pub processes: BTreeMap<String, f64>,
    /// Cores used by everything else on the machine.
    pub other: f64,
}

/// Samples the counters at the start and the end of the measured window and returns the
/// usage in between; `None` where /proc is not readable.
pub async fn measure(watched: &[Watched], schedule: Schedule) -> Option<CpuUsage> {
    let mut all = vec![Watched {
        name: "loadgen".to_owned(),
        pid: std::process::id(),
        tree: false,
    }];
    all.extend(watched.iter().cloned());
    tokio::time::sleep_until(schedule.measure_from.into()).await;
    let before = snapshot(&all);
    tokio::time::sleep_until(schedule.end.into()).await;
    let after = snapshot(&all);
    usage(&all, &before?, &after?)
}

fn snapshot(watched: &[Watched]) -> Option<Snapshot> {
    let (total, idle, cpus) = parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let table = if watched.iter().any(|process| process.tree) {
        process_table()
    } else {
        Vec::new()
    };
    let processes = watched
        .iter()
        .map(|process| {
            let own = read_pid_stat(process.pid)?;
            let mut ticks = Ticks::from([(process.pid, own.ticks)]);
            if process.tree {
                for pid in descendants(process.pid, &table) {
                    if let Some(entry) = table.iter().find(|entry| entry.pid == pid) {
                        ticks.insert(pid, entry.ticks);
                    }
                }
            }
            Some(ticks)
        })
        .collect();
    Some(Snapshot {
        total,
        idle,
        cpus,
        processes,
    })
}

fn usage(watched: &[Watched], before: &Snapshot, after: &Snapshot) -> Option<CpuUsage> {
    let elapsed = after.total.checked_sub(before.total)?;
    if elapsed == 0 || after.cpus == 0 {
        return None;
    }
    // Ticks of one CPU over the window.
    let per_cpu = elapsed as f64 / after.cpus as f64;
    let busy = elapsed.saturating_sub(after.idle.saturating_sub(before.idle));
    let machine = busy as f64 / per_cpu;
    let mut processes = BTreeMap::new();
    for (index, process) in watched.iter().enumerate() {
        if let (Some(Some(start)), Some(Some(end))) =
            (before.processes.get(index), after.processes.get(index))
        {
            processes.insert(
                process.name.clone(),
                ticks_between(start, end) as f64 / per_cpu,
            );
        }
    }
    let ours: f64 = processes.values().sum();
    Some(CpuUsage {
        cpus: after.cpus,
        machine,
        processes,
        other: (machine - ours).max(0.0),
    })
}

/// Ticks used between two samples of a process (tree): a process that appeared in between
/// counts with all its ticks; one that ended in between is lost (its ticks are not readable).
fn ticks_between(start: &Ticks, end: &Ticks) -> u64 {
    end.iter()
        .map(|(pid, ticks)| ticks.saturating_sub(start.get(pid).copied().unwrap_or(0)))
        .sum()
}

/// One line of the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessEntry {
    pid: u32,
    parent: u32,
    ticks: u64,
}

/// Every process of the machine (those that could be read).
fn process_table() -> Vec<ProcessEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_pid_stat)
        .collect()
}

fn read_pid_stat(pid: u32) -> Option<ProcessEntry> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (parent, ticks) = parse_pid_stat(&text)?;
    Some(ProcessEntry { pid, parent, ticks })
}

/// The descendants of `root` (children, their children, ...) in `table`.
fn descendants(root: u32, table: &[ProcessEntry]) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for entry in table
            .iter()
            .filter(|entry| entry.parent == parent && entry.pid != root)
        {
            if !found.contains(&entry.pid) {
                found.push(entry.pid);
                frontier.push(entry.pid);
            }
        }
    }
    found
}

/// Total ticks, idle ticks and CPU count from the text of /proc/stat.
fn parse_proc_stat(text: &str) -> Option<(u64, u64, usize)> {
    let mut lines = text.lines();
    let fields: Vec<u64> = lines
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let cpus = lines
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    Some((total, idle, cpus))
}

/// The parent's pid and the user + system ticks of a process from the text of /proc/PID/stat.
fn parse_pid_stat(text: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may hold spaces and parentheses: start after the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // Field 4 (ppid), fields 14 (utime) and 15 (stime), counted from 1 with the name as field 2.
    let parent: u32 = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((parent, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_STAT: &str = "cpu  100 5 50 800 20 1 4 0 0 0\n\
        cpu0 50 2 25 400 10 1 2 0 0 0\n\
        cpu1 50 3 25 400 10 0 2 0 0 0\n\
        intr 12345\n";

    #[test]
    fn proc_stat_gives_totals_and_cpu_count() {
        assert_eq!(parse_proc_stat(PROC_STAT), Some((980, 820, 2)));
        assert_eq!(parse_proc_stat("nonsense"), None);
    }

    #[test]
    fn pid_stat_sums_user_and_system_time() {
        let text = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 9 0";
        assert_eq!(parse_pid_stat(text), Some((1, 42)));
        assert_eq!(parse_pid_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn usage_is_expressed_in_cores() {
        let watched = [
            Watched::from_str("loadgen=1").unwrap(),
            Watched::from_str("proxy=2").unwrap(),
        ];
        let before = Snapshot {
            total: 1000,
            idle: 500,
            cpus: 2,
            processes: vec![Some(Ticks::from([(1, 10)])), Some(Ticks::from([(2, 100)]))],
        };
        // 200 ticks = 100 per CPU; 40 idle: 1.6 cores busy, 0.5 + 0.8 of them ours.
        let after = Snapshot {
            total: 1200,
            idle: 540,
            cpus: 2,
            processes: vec![Some(Ticks::from([(1, 60)])), Some(Ticks::from([(2, 180)]))],
        };
        let usage = usage(&watched, &before, &after).unwrap();
        assert!((usage.machine - 1.6).abs() < 1e-9);
        assert!((usage.processes["loadgen"] - 0.5).abs() < 1e-9);
        assert!((usage.processes["proxy"] - 0.8).abs() < 1e-9);
        assert!((usage.other - 0.3).abs() < 1e-9);
    }

    #[test]
    fn a_tree_counts_every_descendant_once() {
        let entry = |pid, parent| ProcessEntry {
            pid,
            parent,
            ticks: 0,
        };
        let table = [
            entry(1, 0),
            entry(10, 1),
            entry(11, 10),
            entry(12, 10),
            entry(13, 11),
            entry(20, 1),
        ];
        let mut found = descendants(10, &table);
        found.sort_unstable();
        assert_eq!(found, [11, 12, 13]);
        assert!(descendants(13, &table).is_empty());
    }

    #[test]
    fn a_process_born_in_the_window_counts_in_full() {
        let start = Ticks::from([(10, 100), (11, 50), (99, 7)]);
        // 11 used 25 more, 12 was born and used 30, 99 ended (lost).
        let end = Ticks::from([(10, 110), (11, 75), (12, 30)]);
        assert_eq!(ticks_between(&start, &end), 10 + 25 + 30);
    }

    #[test]
    fn watched_processes_are_name_equals_pid() {
        assert_eq!(
            Watched::from_str("proxy=123"),
            Ok(Watched {
                name: "proxy".into(),
                pid: 123,
                tree: false
            })
        );
        assert!(Watched::from_str("proxy").is_err());
        assert!(Watched::from_str("=1").is_err());
        assert!(Watched::from_str("proxy=x").is_err());
    }
}
