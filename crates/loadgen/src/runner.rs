//! The closed-loop driver: `concurrency` clients, each sending its next call as soon as the
//! previous one is answered, for a warm-up and then a measured window.
//!
//! Each client records into its own histogram and counters (no locks, no shared cache lines
//! on the hot path); they are merged when the run is over.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::transport::CallError;

/// Significant decimal digits kept by the latency histograms.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Longest latency the histograms tell apart, in microseconds (one minute); longer calls are
/// recorded as one minute. The histograms have fixed bounds so that recording never resizes.
const HIGHEST_MICROS: u64 = 60_000_000;

/// An empty latency histogram of microseconds, with the bounds every run uses.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
        .context("creating a histogram")
}

/// What the clients do: the driver calls [`Workload::call`] in a loop for every client.
pub trait Workload: Send + Sync + 'static {
    /// A client's own state (its connection handle, its position in its key sequence, ...).
    type Client: Send + 'static;

    /// Creates client number `index`.
    fn client(&self, index: usize) -> Self::Client;

    /// Makes one call and waits for its answer.
    fn call(&self, client: &mut Self::Client)
    -> impl Future<Output = Result<(), CallError>> + Send;
}

/// When the warm-up ends and when the run ends.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Calls that start from here on are recorded.
    pub measure_from: Instant,
    /// No call starts after this.
    pub end: Instant,
}

impl Schedule {
    /// A schedule starting now: `warmup` unrecorded, then `duration` recorded.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Schedule {
            measure_from,
            end: measure_from + duration,
        }
    }

    /// Length of the measured window.
    pub fn measured(&self) -> Duration {
        self.end - self.measure_from
    }
}

/// Calls that failed, counted per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCounts([u64; CallError::KINDS]);

impl Default for ErrorCounts {
    fn default() -> Self {
        ErrorCounts([0; CallError::KINDS])
    }
}

impl ErrorCounts {
    /// Counts one failure.
    pub fn add(&mut self, error: CallError) {
        self.0[error.index()] += 1;
    }

    /// Adds another set of counts to this one.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// The non-zero counts, by kind name (`Unavailable`, `ClientTimeout`, ...).
    pub fn by_name(&self) -> std::collections::BTreeMap<String, u64> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (CallError::name_of(index), *count))
            .collect()
    }
}

/// What a run recorded.
#[derive(Debug)]
pub struct Recorded {
    /// Latency of the calls that succeeded in the measured window, in microseconds.
    pub latency: Histogram<u64>,
    /// Failures of calls started in the measured window.
    pub errors: ErrorCounts,
    /// Failures of calls started during the warm-up.
    pub warmup_errors: ErrorCounts,
    /// Successful calls per second of the measured window (by the second they started in).
    pub per_second: Vec<u64>,
}

impl Recorded {
    /// Nothing recorded yet, for a run following `schedule`.
    pub fn new(schedule: &Schedule) -> anyhow::Result<Self> {
        let seconds = schedule.measured().as_secs_f64().ceil() as usize;
        Ok(Recorded {
            latency: histogram()?,
            errors: ErrorCounts::default(),
            warmup_errors: ErrorCounts::default(),
            per_second: vec![0; seconds.max(1)],
        })
    }

    /// Records a successful call that started in second `second` of the window.
    pub fn success(&mut self, second: usize, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        if let Some(count) = self.per_second.get_mut(second) {
            *count += 1;
        }
    }

    fn merge(&mut self, other: &Recorded) -> anyhow::Result<()> {
        self.latency
            .add(&other.latency)
            .context("merging histograms")?;
        self.errors.merge(&other.errors);
        self.warmup_errors.merge(&other.warmup_errors);
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            *mine += theirs;
        }
        Ok(())
    }
}

/// Runs `concurrency` clients of `workload` on the current runtime following `schedule`, and
/// returns what they recorded once every client has had its last answer.
pub async fn run<W: Workload>(
    workload: Arc<W>,
    concurrency: usize,
    schedule: Schedule,
) -> anyhow::Result<Recorded> {
    let mut tasks = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let workload = workload.clone();
        let mut recorded = Recorded::new(&schedule)?;
        tasks.push(tokio::spawn(async move {
            let mut client = workload.client(index);
            loop {
                let started = Instant::now();
                if started >= schedule.end {
                    break;
                }
                let result = workload.call(&mut client).await;
                let measured = started >= schedule.measure_from;
                match result {
                    Ok(()) if measured => recorded.success(
                        (started - schedule.measure_from).as_secs() as usize,
                        started.elapsed(),
                    ),
                    Ok(()) => {}
                    Err(error) if measured => recorded.errors.add(error),
                    Err(error) => recorded.warmup_errors.add(error),
                }
            }
            recorded
        }));
    }
    let mut total = Recorded::new(&schedule)?;
    for task in tasks {
        let recorded = task.await.context("a client task failed")?;
        total.merge(&recorded)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Answers at once; every third call fails.
    struct Flaky {
        calls: AtomicU64,
    }

    impl Workload for Flaky {
        type Client = ();

        fn client(&self, _index: usize) {}

        async fn call(&self, _client: &mut ()) -> Result<(), CallError> {
            tokio::task::yield_now().await;
            if self.calls.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
                Err(CallError::Status(tonic::Code::Unavailable))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn every_call_is_either_recorded_or_counted_as_an_error() {
        let workload = Arc::new(Flaky {
            calls: AtomicU64::new(0),
        });
        let schedule = Schedule::starting_now(Duration::ZERO, Duration::from_millis(50));
        let recorded = run(workload.clone(), 4, schedule).await.unwrap();
        let calls = workload.calls.load(Ordering::Relaxed);
        assert!(calls > 0);
        assert_eq!(
            recorded.latency.len()
                + recorded.errors.by_name().values().sum::<u64>()
                + recorded.warmup_errors.by_name().values().sum::<u64>(),
            calls
        );
        assert_eq!(
            recorded.per_second.iter().sum::<u64>(),
            recorded.latency.len()
        );
        assert_eq!(
            recorded.errors.by_name().keys().collect::<Vec<_>>(),
            ["Unavailable"]
        );
    }

    #[test]
    fn successes_are_recorded_in_microseconds_and_merged() {
        let schedule = Schedule::starting_now(Duration::ZERO, Duration::from_secs(2));
        let mut a = Recorded::new(&schedule).unwrap();
        a.success(0, Duration::from_millis(5));
        a.success(1, Duration::from_millis(20));
        a.success(7, Duration::from_secs(3600)); // past the window: latency only
        let mut b = Recorded::new(&schedule).unwrap();
        b.success(1, Duration::from_micros(250));
        let mut total = Recorded::new(&schedule).unwrap();
        total.merge(&a).unwrap();
        total.merge(&b).unwrap();
        assert_eq!(total.latency.len(), 4);
        assert_eq!(total.latency.min(), 250);
        assert!(
            total
                .latency
                .equivalent(total.latency.value_at_quantile(0.5), 5000)
        );
        assert!(
            total
                .latency
                .equivalent(total.latency.max(), HIGHEST_MICROS)
        );
        assert_eq!(total.per_second, [1, 2]);
    }

    #[test]
    fn error_counts_merge_and_name_their_kinds() {
        let mut a = ErrorCounts::default();
        a.add(CallError::Timeout);
        a.add(CallError::Status(tonic::Code::Unavailable));
        let mut b = ErrorCounts::default();
        b.add(CallError::Status(tonic::Code::Unavailable));
        a.merge(&b);
        let names = a.by_name();
        assert_eq!(names["Unavailable"], 2);
        assert_eq!(names["ClientTimeout"], 1);
        assert_eq!(names.len(), 2);
    }
}
