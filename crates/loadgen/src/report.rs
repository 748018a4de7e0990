//! The figures of a run: a short human summary, or one JSON line.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::Check;
use crate::cpu::CpuUsage;
use crate::runner::Recorded;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest call.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds (all zero when it is empty).
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        Latency {
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean().round() / 1000.0,
        }
    }
}

/// The latency of one kind of change (presence), in the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChangeLatency {
    /// Changes seen.
    pub count: u64,
    /// From the change to the streamed client seeing it.
    pub latency_ms: Latency,
}

impl ChangeLatency {
    /// The count and percentiles of a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        ChangeLatency {
            count: histogram.len(),
            latency_ms: Latency::from_micros(histogram),
        }
    }
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `cart`, `echo`, `value`, `crdt`, `bounce`, `presence-latency` or `pgbench`.
    pub scenario: String,
    /// The gRPC method driven, where there is one (`/cloudstate.e2e.Counter/Increment`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `update` or `get` (value and crdt only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Forwards per call (bounce only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hops: Option<u32>,
    /// The command run (pgbench only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Protocol spoken to the target.
    pub protocol: String,
    /// The gRPC client used (echo only): `lean`, or `tonic` for the reference client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `closed` (each client calls again once answered) or `open` (calls due at `rate`).
    pub pace: String,
    /// Open loop only: calls per second due, all clients together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// The target URI.
    pub target: String,
    /// Closed-loop clients.
    pub concurrency: usize,
    /// HTTP/2 connections the clients were spread over.
    pub connections: usize,
    /// Entity keys (keyed workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<usize>,
    /// Request payload size in bytes (echo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<usize>,
    /// The run's key prefix (keyed workloads and presence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Unrecorded warm-up, in seconds.
    pub warmup_s: f64,
    /// Measured window, in seconds.
    pub duration_s: f64,
    /// Successful calls started in the measured window.
    pub ops: u64,
    /// `ops` per second: of the measured window, or in an open loop of the time until the last
    /// of them was answered, if that is longer (a server that fell behind did not serve them
    /// at the rate they were due).
    pub throughput_ops_s: f64,
    /// Open loop only: how long after the window's end its last call was answered, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overrun_s: Option<f64>,
    /// Latency of the successful calls: from sending (closed loop) or from when the call was
    /// due (open loop, so that stalls are not omitted).
    pub latency_ms: Latency,
    /// Open loop only: from sending each successful call to its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_ms: Option<Latency>,
    /// Open loop only: how late calls were sent after they were due (the load generator's own
    /// timer and scheduling, plus waiting for a busy client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_lag_ms: Option<Latency>,
    /// Open loop only: calls due in the window that were never sent (their client was too far
    /// behind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsent: Option<u64>,
    /// Successful calls started in each second of the measured window.
    pub per_second: Vec<u64>,
    /// Failed calls started in the measured window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Failed calls started during the warm-up, by kind.
    pub warmup_errors: BTreeMap<String, u64>,
    /// Latency per kind of change (presence only: `connect`, `disconnect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<BTreeMap<String, ChangeLatency>>,
    /// The correctness check, where the workload has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// CPU use during the measured window, where /proc is readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuUsage>,
}

impl Summary {
    /// The figures common to every scenario; the caller fills in the scenario's own.
    pub fn new(scenario: &str, recorded: &Recorded, warmup_s: f64, duration_s: f64) -> Self {
        let ops = recorded.latency.len();
        let open = recorded.service.is_some();
        let served_in = duration_s + recorded.overrun.as_secs_f64();
        Summary {
            scenario: scenario.to_owned(),
            method: None,
            mode: None,
            hops: None,
            command: None,
            protocol: "grpc".to_owned(),
            client: None,
            pace: if open { "open" } else { "closed" }.to_owned(),
            rate: None,
            target: String::new(),
            concurrency: 0,
            connections: 0,
            keys: None,
            payload_bytes: None,
            run_id: None,
            warmup_s,
            duration_s,
            ops,
            throughput_ops_s: if served_in > 0.0 {
                (ops as f64 / served_in).round()
            } else {
                0.0
            },
            overrun_s: open.then_some(recorded.overrun.as_secs_f64()),
            latency_ms: Latency::from_micros(&recorded.latency),
            service_ms: recorded.service.as_ref().map(Latency::from_micros),
            send_lag_ms: recorded.send_lag.as_ref().map(Latency::from_micros),
            unsent: recorded.service.as_ref().map(|_| recorded.unsent),
            per_second: recorded.per_second.clone(),
            errors: recorded.errors.by_name(),
            warmup_errors: recorded.warmup_errors.by_name(),
            changes: None,
            check: None,
            cpu: None,
        }
    }

    /// The summary for people: a few aligned lines.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let mut what = format!(
            "{} over {} to {}: {} on {}",
            self.scenario,
            self.protocol,
            self.target,
            counted(self.concurrency as u64, "client"),
            counted(self.connections as u64, "connection")
        );
        if let Some(method) = &self.method {
            what.push_str(&format!(", {method}"));
        }
        if let Some(hops) = self.hops {
            what.push_str(&format!(", {}", counted(u64::from(hops), "hop")));
        }
        if let Some(keys) = self.keys {
            what.push_str(&format!(", {}", counted(keys as u64, "key")));
        }
        if let Some(bytes) = self.payload_bytes {
            what.push_str(&format!(", {bytes}-byte payload"));
        }
        if let Some(client) = &self.client {
            what.push_str(&format!(", {client} client"));
        }
        if let Some(rate) = self.rate {
            what.push_str(&format!(
                ", open loop at {} calls/s",
                format_count(rate as u64)
            ));
        }
        if let Some(run_id) = &self.run_id {
            what.push_str(&format!(" (run {run_id})"));
        }
        let _ = writeln!(out, "{what}");
        let _ = writeln!(
            out,
            "window       {:.1} s measured after a {:.1} s warm-up",
            self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            out,
            "throughput   {} ops/s ({} calls)",
            format_count(self.throughput_ops_s as u64),
            format_count(self.ops)
        );
        let percentiles = |l: &Latency| {
            format!(
                "p50 {} | p90 {} | p99 {} | p99.9 {} | max {}",
                format_ms(l.p50),
                format_ms(l.p90),
                format_ms(l.p99),
                format_ms(l.p999),
                format_ms(l.max)
            )
        };
        let _ = writeln!(out, "latency ms   {}", percentiles(&self.latency_ms));
        if let Some(service) = &self.service_ms {
            let _ = writeln!(out, "service ms   {} (from sending)", percentiles(service));
        }
        if let Some(lag) = &self.send_lag_ms {
            let _ = writeln!(out, "send lag ms  {} (sent after due)", percentiles(lag));
        }
        if let Some(overrun) = self.overrun_s.filter(|&overrun| overrun > 0.0) {
            let _ = writeln!(
                out,
                "overrun      the window's calls were answered until {overrun:.2} s after its end"
            );
        }
        if let Some(unsent) = self.unsent.filter(|&unsent| unsent > 0) {
            let _ = writeln!(
                out,
                "unsent       {} calls due but never sent",
                format_count(unsent)
            );
        }
        if let Some((min, max)) = full_seconds_range(&self.per_second, self.duration_s) {
            let _ = writeln!(
                out,
                "per second   min {} | max {} ops",
                format_count(min),
                format_count(max)
            );
        }
        let _ = writeln!(
            out,
            "errors       {} (warm-up: {})",
            format_errors(&self.errors),
            format_errors(&self.warmup_errors)
        );
        for (kind, change) in self.changes.iter().flatten() {
            let l = &change.latency_ms;
            let _ = writeln!(
                out,
                "{:<12} {} seen, ms p50 {} | p99 {} | max {}",
                kind,
                format_count(change.count),
                format_ms(l.p50),
                format_ms(l.p99),
                format_ms(l.max)
            );
        }
        if let Some(check) = &self.check {
            let _ = writeln!(out, "check        {}", check.summary());
        }
        if let Some(cpu) = &self.cpu {
            let mut line = format!(
                "cpu (cores)  machine {:.2} of {} busy",
                cpu.machine, cpu.cpus
            );
            for (name, cores) in &cpu.processes {
                line.push_str(&format!(" | {name} {cores:.2}"));
            }
            line.push_str(&format!(" | other {:.2}", cpu.other));
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// The summary for scripts: one JSON object on one line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }
}

/// Lowest and highest per-second counts over the whole seconds of the window.
fn full_seconds_range(per_second: &[u64], duration_s: f64) -> Option<(u64, u64)> {
    let full = (duration_s.floor() as usize).min(per_second.len());
    let seconds = &per_second[..full];
    Some((*seconds.iter().min()?, *seconds.iter().max()?))
}

/// Milliseconds with three significant digits or so: `0.412`, `2.35`, `12.3`, `1234`.
pub fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// A count with thousands separators: `123,456`.
pub fn format_count(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `1 key`, `1,000 keys`.
pub fn counted(count: u64, noun: &str) -> String {
    let s = if count == 1 { "" } else { "s" };
    format!("{} {noun}{s}", format_count(count))
}

/// `none`, or `Unavailable 3, ClientTimeout 1`.
fn format_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(name, count)| format!("{name} {}", format_count(*count)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::ErrorCounts;
    use crate::transport::CallError;

    fn recorded(latencies_us: &[u64]) -> Recorded {
        let mut latency = Histogram::new(3).unwrap();
        for &us in latencies_us {
            latency.record(us).unwrap();
        }
        Recorded {
            latency,
            errors: ErrorCounts::default(),
            warmup_errors: ErrorCounts::default(),
            per_second: vec![latencies_us.len() as u64],
            service: None,
            send_lag: None,
            unsent: 0,
            overrun: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn milliseconds_keep_about_three_significant_digits() {
        assert_eq!(format_ms(0.0), "0.000");
        assert_eq!(format_ms(0.4123), "0.412");
        assert_eq!(format_ms(2.347), "2.35");
        assert_eq!(format_ms(12.34), "12.3");
        assert_eq!(format_ms(1234.4), "1234");
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1,000");
        assert_eq!(format_count(1234567), "1,234,567");
        assert_eq!(counted(1, "key"), "1 key");
        assert_eq!(counted(1000, "key"), "1,000 keys");
    }

    #[test]
    fn percentiles_come_from_the_histogram_in_milliseconds() {
        let latencies: Vec<u64> = (1..=1000).collect();
        let latency = Latency::from_micros(&recorded(&latencies).latency);
        assert!((latency.p50 - 0.5).abs() < 0.001, "{latency:?}");
        assert!((latency.p99 - 0.99).abs() < 0.001, "{latency:?}");
        assert!((latency.max - 1.0).abs() < 0.001, "{latency:?}");
        let empty = Latency::from_micros(&recorded(&[]).latency);
        assert_eq!(empty.max, 0.0);
    }

    #[test]
    fn the_human_summary_shows_throughput_latency_and_errors() {
        let mut run = recorded(&[1000, 2000, 3000, 4000]);
        run.errors.add(CallError::Status(tonic::Code::Unavailable));
        run.per_second = vec![2, 2];
        let mut summary = Summary::new("cart", &run, 2.0, 2.0);
        summary.target = "http://127.0.0.1:9000".into();
        summary.concurrency = 64;
        summary.connections = 64;
        summary.keys = Some(1000);
        let text = summary.human();
        assert!(text.starts_with(
            "cart over grpc to http://127.0.0.1:9000: 64 clients on 64 connections, 1,000 keys\n"
        ));
        assert!(text.contains("throughput   2 ops/s (4 calls)"), "{text}");
        assert!(text.contains("latency ms   p50 2.00 | p90 4.00"), "{text}");
        assert!(text.contains("per second   min 2 | max 2 ops"), "{text}");
        assert!(
            text.contains("errors       Unavailable 1 (warm-up: none)"),
            "{text}"
        );
    }

    #[test]
    fn the_json_line_has_the_same_figures() {
        let summary = Summary::new("echo", &recorded(&[500, 1500]), 1.0, 1.0);
        let line = summary.json();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["scenario"], "echo");
        assert_eq!(value["ops"], 2);
        assert_eq!(value["throughput_ops_s"], 2.0);
        assert_eq!(value["latency_ms"]["max"], 1.5);
        assert_eq!(value["pace"], "closed");
        assert!(value.get("check").is_none());
        assert!(value.get("service_ms").is_none());
    }
}
