//! The marginal cost of one forward hop, from the results of `bounce` runs with different hop
//! counts (`cloudstate-loadgen hop-cost results/*.json`).
//!
//! For every hop count the run with the median throughput is taken (as in the benchmark
//! tables), and a least-squares line is fitted through the points (hops, figure) for each
//! figure: the slope is the cost of one more hop, the intercept the cost of the call itself.
//! The figures are the p50 and p99 latencies, and the CPU per call of each process and of the
//! whole machine (cores used divided by calls per second).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::report::format_ms;

/// The figures of one `bounce` run.
#[derive(Debug, Clone, PartialEq)]
pub struct HopRun {
    /// Forwards per call.
    pub hops: u32,
    /// Closed-loop clients.
    pub concurrency: u64,
    /// Calls per second.
    pub ops_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Cores used by the proxy, the user function, the load generator, and the whole machine.
    pub cores: Cores,
}

/// Cores used during a run; `None` where not measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cores {
    /// The proxy.
    pub proxy: Option<f64>,
    /// The user function.
    pub user_function: Option<f64>,
    /// The load generator.
    pub loadgen: Option<f64>,
    /// Everything busy on the machine, ours and others'.
    pub machine: Option<f64>,
    /// Everything busy that is not ours.
    pub other: Option<f64>,
}

impl HopRun {
    /// The figures of a JSON summary, if it is one of a `bounce` run.
    pub fn from_json(summary: &Value) -> Option<Self> {
        if summary.get("scenario")?.as_str()? != "bounce" {
            return None;
        }
        let cpu = summary.get("cpu");
        let process = |name: &str| cpu?.get("processes")?.get(name)?.as_f64();
        Some(HopRun {
            hops: u32::try_from(summary.get("hops")?.as_u64()?).ok()?,
            concurrency: summary.get("concurrency")?.as_u64()?,
            ops_s: summary.get("throughput_ops_s")?.as_f64()?,
            p50_ms: summary.get("latency_ms")?.get("p50")?.as_f64()?,
            p99_ms: summary.get("latency_ms")?.get("p99")?.as_f64()?,
            cores: Cores {
                proxy: process("proxy"),
                user_function: process("user-function"),
                loadgen: process("loadgen"),
                machine: cpu.and_then(|cpu| cpu.get("machine")?.as_f64()),
                other: cpu.and_then(|cpu| cpu.get("other")?.as_f64()),
            },
        })
    }

    /// Microseconds of CPU per call for a process that used `cores`.
    pub fn us_per_call(&self, cores: Option<f64>) -> Option<f64> {
        let cores = cores?;
        (self.ops_s > 0.0).then(|| cores / self.ops_s * 1e6)
    }

    /// CPU per call of everything of ours (proxy, user function, load generator).
    fn ours(&self) -> Option<f64> {
        let Cores {
            proxy,
            user_function,
            loadgen,
            ..
        } = self.cores;
        self.us_per_call(Some(proxy? + user_function? + loadgen?))
    }
}

/// For every hop count, the run with the median throughput (the lower middle one of an even
/// number), ordered by hop count.
pub fn median_runs(runs: &[HopRun]) -> Vec<HopRun> {
    let mut by_hops: BTreeMap<u32, Vec<&HopRun>> = BTreeMap::new();
    for run in runs {
        by_hops.entry(run.hops).or_default().push(run);
    }
    by_hops
        .into_values()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.ops_s.total_cmp(&b.ops_s));
            runs[(runs.len() - 1) / 2].clone()
        })
        .collect()
}

/// The least-squares line through `points`: `(intercept, slope)`; `None` with fewer than two
/// distinct x values.
pub fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if points.len() < 2 || sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    Some((mean_y - slope * mean_x, slope))
}

/// The line through the runs' (hops, figure) points, for the runs where the figure is known.
fn fit_by(runs: &[HopRun], figure: impl Fn(&HopRun) -> Option<f64>) -> Option<(f64, f64)> {
    let points: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|run| Some((f64::from(run.hops), figure(run)?)))
        .collect();
    fit(&points)
}

/// The markdown table of the median runs and the marginal cost per hop; runs with different
/// numbers of clients are not comparable and are refused.
pub fn report(runs: &[HopRun]) -> anyhow::Result<String> {
    let clients: std::collections::BTreeSet<u64> = runs.iter().map(|run| run.concurrency).collect();
    anyhow::ensure!(
        clients.len() <= 1,
        "the runs have different numbers of clients ({clients:?}): give the results of one \
         client count at a time"
    );
    let runs = median_runs(runs);
    let mut out = String::new();
    let us = |value: Option<f64>| value.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"));
    let _ = writeln!(
        out,
        "| hops | ops/s | p50 ms | p99 ms | proxy µs/call | user function µs/call | \
         loadgen µs/call | machine µs/call | other cores |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            run.hops,
            run.ops_s,
            format_ms(run.p50_ms),
            format_ms(run.p99_ms),
            us(run.us_per_call(run.cores.proxy)),
            us(run.us_per_call(run.cores.user_function)),
            us(run.us_per_call(run.cores.loadgen)),
            us(run.us_per_call(run.cores.machine)),
            run.cores
                .other
                .map_or_else(|| "–".to_owned(), |other| format!("{other:.2}")),
        );
    }
    let hops: Vec<String> = runs.iter().map(|run| run.hops.to_string()).collect();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Marginal cost of one hop (least-squares slope over hops {}, median runs, {}):",
        hops.join(", "),
        crate::report::counted(clients.first().copied().unwrap_or(0), "client")
    );
    let line = |name: &str, unit: &str, fitted: Option<(f64, f64)>, ms: bool| match fitted {
        Some((intercept, slope)) if ms => format!(
            "- {name}: {} {unit} per hop (call without hops: {} {unit})",
            format_ms(slope),
            format_ms(intercept)
        ),
        Some((intercept, slope)) => format!(
            "- {name}: {slope:.1} {unit} per hop (call without hops: {intercept:.1} {unit})"
        ),
        None => format!("- {name}: not enough runs"),
    };
    for text in [
        line("p50", "ms", fit_by(&runs, |run| Some(run.p50_ms)), true),
        line("p99", "ms", fit_by(&runs, |run| Some(run.p99_ms)), true),
        line(
            "proxy CPU",
            "µs",
            fit_by(&runs, |run| run.us_per_call(run.cores.proxy)),
            false,
        ),
        line(
            "user function CPU",
            "µs",
            fit_by(&runs, |run| run.us_per_call(run.cores.user_function)),
            false,
        ),
        line(
            "proxy + user function + loadgen CPU",
            "µs",
            fit_by(&runs, HopRun::ours),
            false,
        ),
        line(
            "machine CPU (all busy cores / calls per second)",
            "µs",
            fit_by(&runs, |run| run.us_per_call(run.cores.machine)),
            false,
        ),
    ] {
        let _ = writeln!(out, "{text}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(hops: u32, ops_s: f64, p50_ms: f64) -> HopRun {
        HopRun {
            hops,
            concurrency: 64,
            ops_s,
            p50_ms,
            p99_ms: p50_ms * 2.0,
            cores: Cores {
                proxy: Some(1.0),
                user_function: Some(0.5),
                loadgen: Some(0.25),
                machine: Some(2.0),
                other: Some(0.25),
            },
        }
    }

    #[test]
    fn a_line_through_exact_points_gives_its_slope_and_intercept() {
        let (intercept, slope) = fit(&[(0.0, 1.0), (1.0, 1.5), (2.0, 2.0), (8.0, 5.0)]).unwrap();
        assert!((intercept - 1.0).abs() < 1e-9);
        assert!((slope - 0.5).abs() < 1e-9);
    }

    #[test]
    fn noisy_points_give_the_least_squares_slope() {
        // y = x + noise (+1, -1, +1, -1): slope 1 - 0.4 = 0.6 by the normal equations.
        let (intercept, slope) = fit(&[(0.0, 1.0), (1.0, 0.0), (2.0, 3.0), (3.0, 2.0)]).unwrap();
        assert!((slope - 0.6).abs() < 1e-9, "{slope}");
        assert!((intercept - 0.6).abs() < 1e-9, "{intercept}");
    }

    #[test]
    fn a_single_hop_count_has_no_slope() {
        assert_eq!(fit(&[(2.0, 1.0), (2.0, 3.0)]), None);
        assert_eq!(fit(&[(2.0, 1.0)]), None);
        assert_eq!(fit(&[]), None);
    }

    #[test]
    fn the_median_run_of_each_hop_count_is_taken() {
        let runs = [
            run(1, 9000.0, 3.0),
            run(0, 10_000.0, 1.0),
            run(1, 8000.0, 4.0),
            run(1, 9500.0, 2.0),
            run(0, 11_000.0, 0.9),
        ];
        let medians = median_runs(&runs);
        assert_eq!(
            medians
                .iter()
                .map(|r| (r.hops, r.ops_s))
                .collect::<Vec<_>>(),
            [(0, 10_000.0), (1, 9000.0)]
        );
    }

    #[test]
    fn cpu_per_call_is_cores_over_throughput() {
        let r = run(0, 10_000.0, 1.0);
        assert_eq!(r.us_per_call(Some(1.0)), Some(100.0));
        assert_eq!(r.us_per_call(None), None);
        assert_eq!(r.ours(), Some(175.0));
        assert_eq!(run(0, 0.0, 1.0).us_per_call(Some(1.0)), None);
    }

    #[test]
    fn summaries_of_other_scenarios_are_ignored() {
        let bounce = serde_json::json!({
            "scenario": "bounce", "hops": 4, "concurrency": 64, "throughput_ops_s": 5000.0,
            "latency_ms": {"p50": 10.0, "p99": 20.0},
            "cpu": {"machine": 1.9, "other": 0.1,
                    "processes": {"proxy": 1.0, "user-function": 0.5, "loadgen": 0.3}}
        });
        let parsed = HopRun::from_json(&bounce).unwrap();
        assert_eq!(parsed.hops, 4);
        assert_eq!(parsed.cores.user_function, Some(0.5));
        assert_eq!(parsed.cores.machine, Some(1.9));
        let echo = serde_json::json!({"scenario": "echo", "throughput_ops_s": 1.0});
        assert_eq!(HopRun::from_json(&echo), None);
    }

    #[test]
    fn the_report_shows_the_slope_per_hop() {
        // 100 µs of proxy CPU per call at 0 hops, 50 more per hop; p50 1 ms + 0.5 ms per hop.
        let runs: Vec<HopRun> = [0, 1, 2, 4]
            .into_iter()
            .map(|hops| {
                let ops_s = 10_000.0 / (1.0 + 0.5 * f64::from(hops));
                let mut r = run(hops, ops_s, 1.0 + 0.5 * f64::from(hops));
                r.cores.proxy = Some(1.0);
                r
            })
            .collect();
        let text = report(&runs).unwrap();
        assert!(text.contains("median runs, 64 clients):"), "{text}");
        assert!(text.contains("| 0 | 10000 | 1.00 | 2.00 | 100 |"), "{text}");
        assert!(text.contains("| 4 | 3333 | 3.00 | 6.00 | 300 |"), "{text}");
        assert!(
            text.contains("- p50: 0.500 ms per hop (call without hops: 1.00 ms)"),
            "{text}"
        );
        assert!(
            text.contains("- proxy CPU: 50.0 µs per hop (call without hops: 100.0 µs)"),
            "{text}"
        );
    }

    #[test]
    fn runs_with_different_client_counts_are_refused() {
        let mut one_client = run(1, 1000.0, 1.0);
        one_client.concurrency = 1;
        assert!(report(&[run(0, 1000.0, 1.0), one_client]).is_err());
    }
}
