//! The driver: `concurrency` clients, each making one call at a time, for a warm-up and then a
//! measured window.
//!
//! - **Closed loop** (the default): a client sends its next call as soon as the previous one is
//!   answered. Latency runs from sending a call to its answer; a stall shows up as fewer calls,
//!   not as higher percentiles.
//! - **Open loop** (`--rate`): calls are due at a fixed total rate, each client taking every
//!   `concurrency`-th slot of the schedule. Latency runs from the time a call was *due*, not
//!   from when it could be sent: a call that waits because its client is still busy with the
//!   previous one (the server stalled) counts its waiting, so stalls show in the percentiles
//!   (no coordinated omission). The time from sending to the answer is kept apart as the
//!   service time, and the time from due to sent as the send lag.
//!
//! Each client records into its own histograms and counters (no locks, no shared cache lines
//! on the hot path); they are merged when the run is over. A workload may name the task a
//! client runs in (its connection's [`Home`]); otherwise each client has a task of its own.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::transport::{CallError, Home};

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

    /// The task client number `index` runs in: its connection's, or (`None`) one of its own.
    fn home(&self, _index: usize) -> Option<Home> {
        None
    }

    /// Makes one call and waits for its answer.
    fn call(&self, client: &mut Self::Client)
    -> impl Future<Output = Result<(), CallError>> + Send;
}

/// When the run starts, when the warm-up ends and when the run ends.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The warm-up starts.
    pub start: Instant,
    /// Calls that start (or, in an open loop, are due) from here on are recorded.
    pub measure_from: Instant,
    /// No call starts (or is due) after this.
    pub end: Instant,
}

impl Schedule {
    /// A schedule starting now: `warmup` unrecorded, then `duration` recorded.
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now();
        let measure_from = start + warmup;
        Schedule {
            start,
            measure_from,
            end: measure_from + duration,
        }
    }

    /// Length of the measured window.
    pub fn measured(&self) -> Duration {
        self.end - self.measure_from
    }
}

/// How the clients pace their calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each client calls again as soon as it has its answer.
    Closed,
    /// Calls are due at this many per second in all, spread evenly over the clients.
    Open {
        /// Calls per second, all clients together.
        rate: f64,
    },
}

/// When one client's calls are due in an open loop: every `interval`, from `first` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    first: Instant,
    interval: Duration,
}

impl Slots {
    /// The slots of client `index` of `clients` at `rate` calls per second in all, from
    /// `start`: each client has every `clients`-th slot of the total schedule.
    pub fn of(index: usize, clients: usize, rate: f64, start: Instant) -> Self {
        let clients = clients.max(1);
        let total = Duration::from_secs_f64(1.0 / rate);
        Slots {
            first: start + total.mul_f64(index as f64),
            interval: total.mul_f64(clients as f64),
        }
    }

    /// When call number `n` (from 0) is due.
    pub fn due(&self, n: u64) -> Instant {
        self.first + self.interval.mul_f64(n as f64)
    }

    /// How many calls are due in `[from, to)`, counting from call number `n` on.
    pub fn due_between(&self, n: u64, from: Instant, to: Instant) -> u64 {
        let mut count = 0;
        let mut next = n;
        while self.due(next) < to {
            if self.due(next) >= from {
                count += 1;
            }
            next += 1;
        }
        count
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
    /// Successful calls per second of the measured window (by the second they started in,
    /// or in an open loop were due in).
    pub per_second: Vec<u64>,
    /// Open loop only: the time from sending each successful call to its answer.
    pub service: Option<Histogram<u64>>,
    /// Open loop only: how late each call was sent after it was due.
    pub send_lag: Option<Histogram<u64>>,
    /// Open loop only: calls due in the measured window that were never sent, because their
    /// client was still more than the timeout behind when the window had ended.
    pub unsent: u64,
    /// Open loop only: how long after the window's end the last of its calls was answered
    /// (zero if the server kept up).
    pub overrun: Duration,
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
            service: None,
            send_lag: None,
            unsent: 0,
            overrun: Duration::ZERO,
        })
    }

    /// Nothing recorded yet, for an open-loop run following `schedule`.
    pub fn open(schedule: &Schedule) -> anyhow::Result<Self> {
        let mut recorded = Recorded::new(schedule)?;
        recorded.service = Some(histogram()?);
        recorded.send_lag = Some(histogram()?);
        Ok(recorded)
    }

    /// Records a successful call that started in second `second` of the window.
    pub fn success(&mut self, second: usize, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros);
        if let Some(count) = self.per_second.get_mut(second) {
            *count += 1;
        }
    }

    /// Records the service time and send lag of an open-loop call.
    fn open_call(&mut self, service: Duration, lag: Duration) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = &mut self.service {
            histogram.saturating_record(micros(service));
        }
        if let Some(histogram) = &mut self.send_lag {
            histogram.saturating_record(micros(lag));
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
        for (mine, theirs) in [
            (&mut self.service, &other.service),
            (&mut self.send_lag, &other.send_lag),
        ] {
            if let (Some(mine), Some(theirs)) = (mine, theirs) {
                mine.add(theirs).context("merging histograms")?;
            }
        }
        self.unsent += other.unsent;
        self.overrun = self.overrun.max(other.overrun);
        Ok(())
    }
}

/// Runs `concurrency` clients of `workload` on the current runtime following `schedule` at
/// `pace`, and returns what they recorded once every client has had its last answer.
pub async fn run<W: Workload>(
    workload: Arc<W>,
    concurrency: usize,
    schedule: Schedule,
    pace: Pace,
) -> anyhow::Result<Recorded> {
    let mut clients = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let client = workload.client(index);
        let (workload, home) = (workload.clone(), workload.home(index));
        let recorded = match pace {
            Pace::Closed => Recorded::new(&schedule)?,
            Pace::Open { .. } => Recorded::open(&schedule)?,
        };
        let future = async move {
            match pace {
                Pace::Closed => closed_loop(&*workload, client, schedule, recorded).await,
                Pace::Open { rate } => {
                    let slots = Slots::of(index, concurrency, rate, schedule.start);
                    open_loop(&*workload, client, schedule, slots, recorded).await
                }
            }
        };
        clients.push(match home {
            Some(home) => home.run(future),
            None => {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let _ = sender.send(future.await);
                });
                receiver
            }
        });
    }
    let mut total = match pace {
        Pace::Closed => Recorded::new(&schedule)?,
        Pace::Open { .. } => Recorded::open(&schedule)?,
    };
    for client in clients {
        let recorded = client.await.context("a client task failed")?;
        total.merge(&recorded)?;
    }
    Ok(total)
}

/// One closed-loop client: the next call as soon as the previous one is answered.
async fn closed_loop<W: Workload>(
    workload: &W,
    mut client: W::Client,
    schedule: Schedule,
    mut recorded: Recorded,
) -> Recorded {
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
}

/// One open-loop client: each call is sent when it is due, or at once if the client is late;
/// its latency counts from when it was due.
async fn open_loop<W: Workload>(
    workload: &W,
    mut client: W::Client,
    schedule: Schedule,
    slots: Slots,
    mut recorded: Recorded,
) -> Recorded {
    // How far behind its schedule a client may fall before it gives up the rest of the window.
    let give_up = schedule.end + Duration::from_secs(5);
    let mut n = 0;
    loop {
        let due = slots.due(n);
        if due >= schedule.end {
            break;
        }
        if Instant::now() >= give_up {
            recorded.unsent += slots.due_between(n, schedule.measure_from, schedule.end);
            break;
        }
        n += 1;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        let result = workload.call(&mut client).await;
        let answered = Instant::now();
        let measured = due >= schedule.measure_from;
        match result {
            Ok(()) if measured => {
                recorded.success(
                    (due - schedule.measure_from).as_secs() as usize,
                    answered - due,
                );
                recorded.open_call(answered - sent, sent - due);
                recorded.overrun = recorded
                    .overrun
                    .max(answered.saturating_duration_since(schedule.end));
            }
            Ok(()) => {}
            Err(error) if measured => recorded.errors.add(error),
            Err(error) => recorded.warmup_errors.add(error),
        }
    }
    recorded
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
        let recorded = run(workload.clone(), 4, schedule, Pace::Closed)
            .await
            .unwrap();
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

    /// Answers at once, except call number `stall_at`, which takes `stall`.
    struct Stalling {
        calls: AtomicU64,
        stall_at: u64,
        stall: Duration,
    }

    impl Workload for Stalling {
        type Client = ();

        fn client(&self, _index: usize) {}

        async fn call(&self, _client: &mut ()) -> Result<(), CallError> {
            if self.calls.fetch_add(1, Ordering::Relaxed) == self.stall_at {
                tokio::time::sleep(self.stall).await;
            }
            Ok(())
        }
    }

    #[test]
    fn open_loop_slots_interleave_the_clients() {
        let start = Instant::now();
        let slots: Vec<Slots> = (0..4).map(|i| Slots::of(i, 4, 1000.0, start)).collect();
        let ms = |at: Instant| (at - start).as_secs_f64() * 1000.0;
        // 1,000 calls/s over 4 clients: a call every ms, each client every 4th.
        for (index, slot) in slots.iter().enumerate() {
            for n in 0..3 {
                let expected = (index + 4 * n as usize) as f64;
                assert!((ms(slot.due(n)) - expected).abs() < 1e-6);
            }
        }
        let from = start + Duration::from_millis(2);
        let to = start + Duration::from_millis(10);
        // Client 1 is due at 1, 5, 9, 13 ms: 5 and 9 are in [2, 10).
        assert_eq!(slots[1].due_between(0, from, to), 2);
        assert_eq!(slots[1].due_between(2, from, to), 1);
    }

    #[tokio::test]
    async fn an_open_loop_counts_a_stall_in_every_call_due_during_it() {
        let stall = Duration::from_millis(50);
        let workload = Arc::new(Stalling {
            calls: AtomicU64::new(0),
            stall_at: 20,
            stall,
        });
        let schedule = Schedule::starting_now(Duration::ZERO, Duration::from_millis(200));
        let pace = Pace::Open { rate: 1000.0 };
        let recorded = run(workload.clone(), 1, schedule, pace).await.unwrap();
        // Every call due in the window was made, however slow the machine.
        assert_eq!(recorded.latency.len(), 200);
        assert_eq!(workload.calls.load(Ordering::Relaxed), 200);
        assert_eq!(recorded.unsent, 0);
        // The calls due during the stall waited for it: their latency runs from when they were
        // due. Call 20 + k was due k ms after the stall began and sent when it ended.
        let waited = recorded.latency.count_between(25_000, HIGHEST_MICROS);
        assert!(waited >= 25, "{waited} calls waited 25 ms or more");
        let service = recorded.service.as_ref().unwrap();
        assert_eq!(service.len(), 200);
        assert!(service.max() >= 50_000);
        // The service time of the calls after the stall is not what they waited.
        assert!(service.count_between(25_000, HIGHEST_MICROS) < waited);
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
