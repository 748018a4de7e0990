//! The engine's Prometheus metrics.
//!
//! Every client call passes through [`crate::Engine::call`] or
//! [`crate::Engine::call_streaming`] whatever its transport (gRPC or HTTP/JSON), so request
//! metrics are recorded here, once. Handles that are known per route are resolved when the
//! engine is built, so the hot path does not hash label sets except for the status code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::log_limit::LogLimit;

/// Labels of per-method metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

/// Labels of request counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

/// Labels of per-service metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

/// Labels of store metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~52 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// The engine's metrics; cheap to clone.
#[derive(Clone)]
pub struct EngineMetrics {
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    requests_in_flight: Gauge,
    active_entities: Family<ServiceLabels, Gauge>,
    passivations: Family<ServiceLabels, Counter>,
    entity_restarts: Family<ServiceLabels, Counter>,
    store_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    store_errors: Family<OperationLabels, Counter>,
    user_function_in_flight: Gauge,
    user_function_up: Gauge,
    user_function_losses: Counter,
    side_effect_failures: Counter,
    load: Arc<Load>,
}

/// The time-weighted load of the node, for the autoscaler: how many client calls, user
/// function calls and store writes were in progress, integrated over time.
struct Load {
    /// The meters' clock starts here.
    origin: Instant,
    requests: Meter,
    user_function: Meter,
    database: Meter,
    /// The last reading of each meter, to carry their integrals past the wrap (reads are
    /// rare: the sampler's, once a period).
    extended: Mutex<[Extended; 3]>,
}

impl Load {
    /// Microseconds since `origin`.
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Bits of a meter's word that count what is in progress (at most about a million at once).
const COUNT_BITS: u32 = 20;
/// Bits that hold the sum of times, in microseconds (wrapping after about 200 days).
const TIME_BITS: u32 = 64 - COUNT_BITS;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// Integrates a number of things in progress over time, lock-free and consistent, with one
/// atomic addition per start and per end. One word holds, modulo 2^44, A = (sum of end times)
/// − (sum of start times) in its upper bits and L = the number in progress in its lower
/// bits; the integral up to T is A + L·T. A start adds 1 − (t << 20), an end (t << 20) − 1:
/// the count never borrows from the times because it never goes below zero.
#[derive(Default)]
struct Meter {
    word: AtomicU64,
    started: AtomicU64,
}

impl Meter {
    fn start(&self, at_us: u64) {
        self.word
            .fetch_add(1u64.wrapping_sub(at_us << COUNT_BITS), Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self, at_us: u64) {
        self.word
            .fetch_add((at_us << COUNT_BITS).wrapping_sub(1), Ordering::Relaxed);
    }

    /// The integral up to `at_us` in microseconds, modulo 2^44, and the number started so far.
    fn read(&self, at_us: u64) -> (u64, u64) {
        let word = self.word.load(Ordering::Relaxed);
        let in_progress = word & ((1 << COUNT_BITS) - 1);
        let times = word >> COUNT_BITS;
        let busy = times.wrapping_add(in_progress.wrapping_mul(at_us)) & TIME_MASK;
        (busy, self.started.load(Ordering::Relaxed))
    }
}

/// A meter's integral carried on past its 44-bit wrap.
#[derive(Clone, Copy, Default)]
struct Extended {
    raw: u64,
    total_us: u64,
}

impl Extended {
    /// Takes a new raw reading; returns the integral in nanoseconds (wrapping).
    fn advance(&mut self, raw: u64) -> u64 {
        let delta = raw.wrapping_sub(self.raw) & TIME_MASK;
        self.raw = raw;
        self.total_us = self.total_us.wrapping_add(delta);
        self.total_us.wrapping_mul(1000)
    }
}

/// Load counters of a node at one moment (see [`EngineMetrics::load`]). The busy counters
/// are integrals over time of what was in progress, in nanoseconds, with wrapping arithmetic:
/// the difference between two readings divided by the time between them is the average
/// concurrency in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadCounters {
    /// When the reading was taken, nanoseconds on the counters' own monotonic clock.
    pub at_ns: u64,
    /// Integral of client calls in progress.
    pub request_busy_ns: u64,
    /// Client calls started so far.
    pub requests: u64,
    /// Integral of calls into the user function in progress.
    pub user_function_busy_ns: u64,
    /// Integral of store writes in progress.
    pub database_busy_ns: u64,
}

impl EngineMetrics {
    /// The node's load counters now.
    pub fn load(&self) -> LoadCounters {
        let load = &self.load;
        let at = load.now();
        let (requests_busy, requests) = load.requests.read(at);
        let raw = [
            requests_busy,
            load.user_function.read(at).0,
            load.database.read(at).0,
        ];
        let mut extended = load.extended.lock().unwrap_or_else(|e| e.into_inner());
        let [request, user_function, database] = &mut *extended;
        LoadCounters {
            at_ns: at.wrapping_mul(1000),
            request_busy_ns: request.advance(raw[0]),
            requests,
            user_function_busy_ns: user_function.advance(raw[1]),
            database_busy_ns: database.advance(raw[2]),
        }
    }

    /// Creates the metrics and registers them (prefixed `cloudstate_`) in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = EngineMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            requests_in_flight: Gauge::default(),
            active_entities: Family::default(),
            passivations: Family::default(),
            entity_restarts: Family::default(),
            store_duration: Family::new_with_constructor(latency_histogram),
            store_errors: Family::default(),
            user_function_in_flight: Gauge::default(),
            user_function_up: Gauge::default(),
            user_function_losses: Counter::default(),
            side_effect_failures: Counter::default(),
            load: Arc::new(Load {
                origin: Instant::now(),
                requests: Meter::default(),
                user_function: Meter::default(),
                database: Meter::default(),
                extended: Mutex::new([Extended::default(); 3]),
            }),
        };
        let registry = registry.sub_registry_with_prefix("cloudstate");
        registry.register(
            "requests",
            "Client calls by service, method and gRPC status code",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a call's arrival to its reply (the whole stream for streaming calls)",
            metrics.request_duration.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Client calls being served",
            metrics.requests_in_flight.clone(),
        );
        registry.register(
            "active_entities",
            "Entities loaded in memory",
            metrics.active_entities.clone(),
        );
        registry.register(
            "passivations",
            "Entities unloaded after being idle",
            metrics.passivations.clone(),
        );
        registry.register(
            "entity_restarts",
            "Entities restarted from the store after a failed command",
            metrics.entity_restarts.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Time of store operations (journal and value reads and writes)",
            metrics.store_duration.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed",
            metrics.store_errors.clone(),
        );
        registry.register(
            "user_function_in_flight",
            "Commands and action calls the user function is working on",
            metrics.user_function_in_flight.clone(),
        );
        registry.register(
            "user_function_up",
            "1 while the user function accepts connections, 0 while it is known to be down",
            metrics.user_function_up.clone(),
        );
        registry.register(
            "user_function_losses",
            "Times the user function stopped accepting connections",
            metrics.user_function_losses.clone(),
        );
        registry.register(
            "async_side_effect_failures",
            "Asynchronous side effects that failed",
            metrics.side_effect_failures.clone(),
        );
        metrics
    }

    /// Metrics of one method, resolved once.
    pub(crate) fn method(&self, service: &str, method: &str) -> MethodMetrics {
        MethodMetrics {
            service: service.to_owned(),
            method: method.to_owned(),
            ok: self.requests.get_or_create_owned(&RequestLabels {
                service: service.to_owned(),
                method: method.to_owned(),
                code: format!("{:?}", tonic::Code::Ok),
            }),
            duration: self.request_duration.get_or_create_owned(&MethodLabels {
                service: service.to_owned(),
                method: method.to_owned(),
            }),
            requests: self.requests.clone(),
            in_flight: self.requests_in_flight.clone(),
            load: self.load.clone(),
        }
    }

    /// Metrics of one service's entities, resolved once.
    pub(crate) fn entities(&self, service: &str) -> EntityMetrics {
        let labels = ServiceLabels {
            service: service.to_owned(),
        };
        EntityMetrics {
            active: self.active_entities.get_or_create_owned(&labels),
            passivations: self.passivations.get_or_create_owned(&labels),
            restarts: self.entity_restarts.get_or_create_owned(&labels),
        }
    }

    /// Times a store operation.
    pub(crate) async fn store<T, E: std::fmt::Display>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let start = Instant::now();
        let database = &self.load.database;
        database.start(self.load.now());
        let _done = EndOnDrop(database, &self.load);
        let result = work.await;
        let labels = OperationLabels { operation };
        self.store_duration
            .get_or_create(&labels)
            .observe(start.elapsed().as_secs_f64());
        if let Err(error) = &result {
            self.store_errors.get_or_create(&labels).inc();
            static LIMIT: LogLimit = LogLimit::new();
            if let Some(suppressed) = LIMIT.allow() {
                tracing::error!(operation, %error, suppressed, "store operation failed");
            }
        }
        result
    }

    /// Counts a call to the user function while `work` runs.
    pub(crate) async fn user_function<T>(&self, work: impl Future<Output = T>) -> T {
        self.user_function_in_flight.inc();
        let _done = DecOnDrop(&self.user_function_in_flight);
        self.load.user_function.start(self.load.now());
        let _ended = EndOnDrop(&self.load.user_function, &self.load);
        work.await
    }

    /// The user function's reachability metrics.
    pub(crate) fn user_function_health(&self) -> UserFunctionMetrics {
        UserFunctionMetrics {
            up: self.user_function_up.clone(),
            losses: self.user_function_losses.clone(),
        }
    }

    /// Counts a failed asynchronous side effect.
    pub(crate) fn side_effect_failed(&self) {
        self.side_effect_failures.inc();
    }
}

/// Whether the user function is reachable, and how often it was lost.
#[derive(Clone, Debug)]
pub(crate) struct UserFunctionMetrics {
    up: Gauge,
    losses: Counter,
}

impl UserFunctionMetrics {
    /// Sets the up gauge.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Records the loss of the user function.
    pub fn lost(&self) {
        self.set_up(false);
        self.losses.inc();
    }
}

/// Decrements a gauge when dropped, so cancelled futures are counted out too.
struct DecOnDrop<'a>(&'a Gauge);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Ends a meter's interval when dropped, so cancelled futures are counted out too.
struct EndOnDrop<'a>(&'a Meter, &'a Load);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.end(self.1.now());
    }
}

/// Request metrics of one method.
#[derive(Clone)]
pub(crate) struct MethodMetrics {
    service: String,
    method: String,
    /// The count of successful calls, resolved once: the common case hashes nothing.
    ok: Counter,
    duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    in_flight: Gauge,
    load: Arc<Load>,
}

impl MethodMetrics {
    /// Starts timing a call; the returned guard records it when finished (or dropped).
    pub fn start(&self) -> CallTimer {
        self.in_flight.inc();
        self.load.requests.start(self.load.now());
        CallTimer {
            metrics: self.clone(),
            start: Instant::now(),
            code: None,
        }
    }
}

/// Records one call's duration and status code when dropped.
pub(crate) struct CallTimer {
    metrics: MethodMetrics,
    start: Instant,
    code: Option<tonic::Code>,
}

impl CallTimer {
    /// Sets the call's status code.
    pub fn finish(mut self, code: tonic::Code) {
        self.code = Some(code);
    }
}

impl Drop for CallTimer {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
        let load = &self.metrics.load;
        load.requests.end(load.now());
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
        // A call dropped without a code was cancelled by its client.
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        if code == tonic::Code::Ok {
            self.metrics.ok.inc();
            return;
        }
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                service: self.metrics.service.clone(),
                method: self.metrics.method.clone(),
                code: format!("{code:?}"),
            })
            .inc();
    }
}

/// Entity metrics of one service.
#[derive(Clone)]
pub(crate) struct EntityMetrics {
    /// Entities loaded.
    pub active: Gauge,
    /// Entities unloaded when idle.
    pub passivations: Counter,
    /// Entities restarted after a failed command.
    pub restarts: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_integrates_what_is_in_progress_across_wrapping() {
        let meter = Meter::default();
        // Times near the top of the 44 bits, so the sums wrap.
        let base = TIME_MASK - 10;
        meter.start(base);
        meter.start(base + 2);
        let (before, started) = meter.read(base + 4);
        assert_eq!(started, 2);
        meter.end(base + 14);
        let (after, _) = meter.read(base + 20);
        // From base+4 to base+20: one call all along (16), the other until base+14 (10).
        assert_eq!(after.wrapping_sub(before) & TIME_MASK, 26);
        let mut extended = Extended::default();
        let first = extended.advance(before);
        assert_eq!(extended.advance(after).wrapping_sub(first), 26_000);
    }

    #[test]
    fn the_engine_reports_load_in_nanoseconds() {
        let mut registry = Registry::default();
        let metrics = EngineMetrics::new(&mut registry);
        let first = metrics.load();
        metrics.load.user_function.start(metrics.load.now());
        let second = metrics.load();
        assert!(second.at_ns >= first.at_ns);
        assert!(
            second
                .user_function_busy_ns
                .wrapping_sub(first.user_function_busy_ns)
                < 1 << 40
        );
        assert_eq!(second.requests, 0);
    }
}
