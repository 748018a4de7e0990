//! The engine's Prometheus metrics.
//!
//! Every client call passes through [`crate::Engine::call`] or
//! [`crate::Engine::call_streaming`] whatever its transport (gRPC or HTTP/JSON), so request
//! metrics are recorded here, once. Handles that are known per route are resolved when the
//! engine is built, so the hot path does not hash label sets except for the status code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    side_effect_failures: Counter,
    load: Arc<Load>,
}

/// The time-weighted load of the node, for the autoscaler: how many client calls, user
/// function calls and store operations were in progress, integrated over time.
struct Load {
    /// The meters' clock starts here.
    origin: Instant,
    requests: Meter,
    user_function: Meter,
    database: Meter,
}

impl Load {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Integrates a number of things in progress over time with two atomic additions per start
/// and per end, and no lock: with S the sum of start times, E the sum of end times and L the
/// number in progress, the integral up to T is E − S + L·T. Everything wraps; only
/// differences between two readings are used.
#[derive(Default)]
struct Meter {
    started: AtomicU64,
    start_times: AtomicU64,
    ended: AtomicU64,
    end_times: AtomicU64,
}

impl Meter {
    fn start(&self, at: u64) {
        self.start_times.fetch_add(at, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self, at: u64) {
        self.end_times.fetch_add(at, Ordering::Relaxed);
        self.ended.fetch_add(1, Ordering::Relaxed);
    }

    /// The integral up to `at` (wrapping) and the number started so far.
    fn read(&self, at: u64) -> (u64, u64) {
        let ended = self.ended.load(Ordering::Relaxed);
        let end_times = self.end_times.load(Ordering::Relaxed);
        let start_times = self.start_times.load(Ordering::Relaxed);
        let started = self.started.load(Ordering::Relaxed);
        let in_progress = started.wrapping_sub(ended);
        let busy = end_times
            .wrapping_sub(start_times)
            .wrapping_add(in_progress.wrapping_mul(at));
        (busy, started)
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
        let at = self.load.now();
        let (request_busy_ns, requests) = self.load.requests.read(at);
        LoadCounters {
            at_ns: at,
            request_busy_ns,
            requests,
            user_function_busy_ns: self.load.user_function.read(at).0,
            database_busy_ns: self.load.database.read(at).0,
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
            side_effect_failures: Counter::default(),
            load: Arc::new(Load {
                origin: Instant::now(),
                requests: Meter::default(),
                user_function: Meter::default(),
                database: Meter::default(),
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
    pub(crate) async fn store<T, E>(
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
        if result.is_err() {
            self.store_errors.get_or_create(&labels).inc();
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

    /// Counts a failed asynchronous side effect.
    pub(crate) fn side_effect_failed(&self) {
        self.side_effect_failures.inc();
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
        // Start times near the top of u64, so the sums wrap.
        let base = u64::MAX - 10;
        meter.start(base);
        meter.start(base + 2);
        let (busy_before, started) = meter.read(base + 4);
        assert_eq!(started, 2);
        meter.end(base.wrapping_add(14));
        let (busy_after, _) = meter.read(base.wrapping_add(20));
        // From base+4 to base+20: one call all along (16), the other until base+14 (10).
        assert_eq!(busy_after.wrapping_sub(busy_before), 26);
    }
}
