//! Keyed counters: the test function's `Counter` value entity (directly, or through the
//! `Relay.ToCounter` action) and the counters example's CRDT counters.
//!
//! In `update` mode every call adds 1 to its key's counter; afterwards the check reads every
//! counter back and compares it with the acknowledged increments, like the cart check. In `get`
//! mode every key is first set to a value of its own (`key + 1`, not measured), then every call
//! reads a counter and must find exactly that value (anything else is a `BadReply`: an answer
//! from the wrong entity, or a lost write); the check reads every counter once more at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::ValueEnum;
use http::uri::PathAndQuery;
use prost::Message;
use serde::Serialize;

use crate::check::{CheckReport, KeyCheck};
use crate::keys::{KeyPlan, entity_id};
use crate::proto::{self, crdts, e2e};
use crate::runner::Workload;
use crate::transport::{CallError, Framed, GrpcClient, GrpcPool, Home};

/// How often the setup and the check try one key before giving up on it.
const ATTEMPTS: u32 = 3;

/// What the clients do with the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Add 1 to the key's counter (a write: the store persists every call).
    Update,
    /// Read the key's counter, which holds a known value (no write).
    Get,
}

/// Which counters, through which methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// `cloudstate.e2e.Counter`, a value entity: `Increment` and `Get`.
    Value,
    /// The same value entity, incremented through the `cloudstate.e2e.Relay.ToCounter` action,
    /// which forwards to `Counter.Increment` (reads stay direct).
    ValueViaRelay,
    /// The counters example's grow-only counter CRDT: `IncrementGCounter` and `GetGCounter`.
    GCounter,
    /// The counters example's positive-negative counter CRDT: `UpdatePNCounter` and
    /// `GetPNCounter`.
    PnCounter,
}

impl CounterKind {
    /// The method that adds to a counter.
    pub fn increment_path(self) -> PathAndQuery {
        match self {
            CounterKind::Value => proto::path(e2e::COUNTER, "Increment"),
            CounterKind::ValueViaRelay => proto::path(e2e::RELAY, "ToCounter"),
            CounterKind::GCounter => proto::path(crdts::SERVICE, "IncrementGCounter"),
            CounterKind::PnCounter => proto::path(crdts::SERVICE, "UpdatePNCounter"),
        }
    }

    /// The method that reads a counter.
    pub fn read_path(self) -> PathAndQuery {
        match self {
            CounterKind::Value | CounterKind::ValueViaRelay => proto::path(e2e::COUNTER, "Get"),
            CounterKind::GCounter => proto::path(crdts::SERVICE, "GetGCounter"),
            CounterKind::PnCounter => proto::path(crdts::SERVICE, "GetPNCounter"),
        }
    }

    /// The encoded request adding `by` to counter `id`.
    pub fn increment(self, id: &str, by: i64) -> Bytes {
        match self {
            CounterKind::Value | CounterKind::ValueViaRelay => e2e::IncrementRequest {
                id: id.to_owned(),
                by,
            }
            .encode_to_vec(),
            CounterKind::GCounter | CounterKind::PnCounter => crdts::UpdateCounter {
                key: id.to_owned(),
                value: by,
            }
            .encode_to_vec(),
        }
        .into()
    }

    /// The encoded request reading counter `id`.
    pub fn read(self, id: &str) -> Bytes {
        match self {
            CounterKind::Value | CounterKind::ValueViaRelay => {
                e2e::CounterId { id: id.to_owned() }.encode_to_vec()
            }
            CounterKind::GCounter | CounterKind::PnCounter => {
                crdts::Get { key: id.to_owned() }.encode_to_vec()
            }
        }
        .into()
    }

    /// The value in a reply of either method; `None` if the reply is not a value.
    pub fn value_of(self, reply: Bytes) -> Option<i64> {
        match self {
            CounterKind::Value | CounterKind::ValueViaRelay => {
                e2e::Value::decode(reply).ok().map(|value| value.value)
            }
            CounterKind::GCounter | CounterKind::PnCounter => crdts::CounterValue::decode(reply)
                .ok()
                .map(|value| value.value),
        }
    }
}

/// The value key `key` holds in `get` mode.
pub fn preset_value(key: usize) -> i64 {
    key as i64 + 1
}

/// Whether a reply to an increment is plausible: the counter's new value counts at least this
/// increment. (With clients sharing keys, the exact value depends on the interleaving.)
pub fn increment_reply_ok(value: Option<i64>) -> bool {
    value.is_some_and(|value| value >= 1)
}

/// The counter workload: prepared requests per key, and per key the increments acknowledged
/// and failed.
#[derive(Debug)]
pub struct CounterWorkload {
    pool: GrpcPool,
    counter: CounterKind,
    mode: Mode,
    plan: KeyPlan,
    ids: Vec<String>,
    /// Per key, the request of the hot path: an increment by 1, or a read.
    requests: Vec<Framed>,
    path: PathAndQuery,
    acked: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
}

/// A counter client's state: its connection and its place in its key sequence.
#[derive(Debug)]
pub struct CounterWorker {
    client: GrpcClient,
    index: usize,
    iteration: u64,
}

impl CounterWorkload {
    /// A workload over `plan.keys()` counters named after `run_id`.
    pub fn new(
        pool: GrpcPool,
        counter: CounterKind,
        mode: Mode,
        plan: KeyPlan,
        run_id: &str,
    ) -> Self {
        let ids: Vec<String> = (0..plan.keys()).map(|key| entity_id(run_id, key)).collect();
        let requests = ids
            .iter()
            .map(|id| match mode {
                Mode::Update => Framed::new(&counter.increment(id, 1)),
                Mode::Get => Framed::new(&counter.read(id)),
            })
            .collect();
        let path = match mode {
            Mode::Update => counter.increment_path(),
            Mode::Get => counter.read_path(),
        };
        CounterWorkload {
            pool,
            counter,
            mode,
            ids,
            requests,
            path,
            acked: (0..plan.keys()).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..plan.keys()).map(|_| AtomicU64::new(0)).collect(),
            plan,
        }
    }

    /// The method the clients call.
    pub fn method(&self) -> &str {
        self.path.as_str()
    }

    /// In `get` mode, sets every counter to its [`preset_value`] (directly, whatever the
    /// counter kind), with up to `concurrency` calls in flight; nothing to do in `update` mode.
    pub async fn prepare(self: &Arc<Self>, concurrency: usize) -> anyhow::Result<()> {
        if self.mode == Mode::Update {
            return Ok(());
        }
        let results = self
            .each_key(concurrency, |workload, mut client, key| async move {
                let request = Framed::new(
                    &workload
                        .counter
                        .increment(&workload.ids[key], preset_value(key)),
                );
                let path = match workload.counter {
                    CounterKind::ValueViaRelay => CounterKind::Value.increment_path(),
                    counter => counter.increment_path(),
                };
                for attempt in 1..=ATTEMPTS {
                    let reply = client.unary(&path, &request).await;
                    match reply.map(|reply| workload.counter.value_of(reply)) {
                        Ok(Some(value)) if value == preset_value(key) => return true,
                        Ok(_) => return false,
                        Err(_) if attempt < ATTEMPTS => pause(attempt).await,
                        Err(_) => {}
                    }
                }
                false
            })
            .await;
        let failed = results.iter().filter(|(_, ok)| !ok).count();
        anyhow::ensure!(
            failed == 0,
            "could not set {failed} of {} counters to their values before the run",
            results.len()
        );
        Ok(())
    }

    /// Reads every counter back and compares it with what it must hold: in `update` mode the
    /// acknowledged increments (more only by failed ones), in `get` mode its preset value.
    /// Call it once the run is over.
    pub async fn check(self: &Arc<Self>, concurrency: usize) -> CheckReport {
        let observed = self
            .each_key(concurrency, |workload, mut client, key| async move {
                let request = Framed::new(&workload.counter.read(&workload.ids[key]));
                let path = workload.counter.read_path();
                for attempt in 1..=ATTEMPTS {
                    match client.unary(&path, &request).await {
                        Ok(reply) => return workload.counter.value_of(reply),
                        Err(_) if attempt < ATTEMPTS => pause(attempt).await,
                        Err(_) => {}
                    }
                }
                None
            })
            .await;
        CheckReport::new(observed.into_iter().map(|(key, observed)| {
            let (expected, failed) = match self.mode {
                Mode::Update => (
                    self.acked[key].load(Ordering::Relaxed),
                    self.failed[key].load(Ordering::Relaxed),
                ),
                Mode::Get => (preset_value(key) as u64, 0),
            };
            KeyCheck::new(key, expected, failed, observed)
        }))
    }

    /// Runs `task` once for every key, with up to `concurrency` keys in flight, each worker on
    /// its own connection; returns the results by key (a key whose task panicked is missing).
    async fn each_key<T, F, Fut>(self: &Arc<Self>, concurrency: usize, task: F) -> Vec<(usize, T)>
    where
        T: Send + 'static,
        F: Fn(Arc<Self>, GrpcClient, usize) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let keys = self.plan.keys();
        let workers = concurrency.clamp(1, keys);
        let mut tasks = Vec::with_capacity(workers);
        for worker in 0..workers {
            let workload = self.clone();
            let task = task.clone();
            tasks.push(tokio::spawn(async move {
                let mut results = Vec::new();
                for key in (worker..keys).step_by(workers) {
                    let client = workload.pool.client(worker);
                    results.push((key, task(workload.clone(), client, key).await));
                }
                results
            }));
        }
        let mut results = Vec::with_capacity(keys);
        for task in tasks {
            if let Ok(found) = task.await {
                results.extend(found);
            }
        }
        results.sort_by_key(|(key, _)| *key);
        results
    }
}

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
}

impl Workload for CounterWorkload {
    type Client = CounterWorker;

    fn client(&self, index: usize) -> CounterWorker {
        CounterWorker {
            client: self.pool.client(index),
            index,
            iteration: 0,
        }
    }

    fn home(&self, index: usize) -> Option<Home> {
        Some(self.pool.home(index).clone())
    }

    async fn call(&self, worker: &mut CounterWorker) -> Result<(), CallError> {
        let key = self.plan.key(worker.index, worker.iteration);
        worker.iteration += 1;
        let reply = worker.client.unary(&self.path, &self.requests[key]).await;
        let value = reply.map(|reply| self.counter.value_of(reply));
        match self.mode {
            Mode::Update => {
                let result = match value {
                    Ok(value) if increment_reply_ok(value) => Ok(()),
                    Ok(_) => Err(CallError::BadReply),
                    Err(error) => Err(error),
                };
                let counter = if result.is_ok() {
                    &self.acked[key]
                } else {
                    &self.failed[key]
                };
                counter.fetch_add(1, Ordering::Relaxed);
                result
            }
            Mode::Get => match value? {
                Some(value) if value == preset_value(key) => Ok(()),
                _ => Err(CallError::BadReply),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_entity_requests_are_the_e2e_messages() {
        let request = CounterKind::Value.increment("run-7", 1);
        assert_eq!(
            e2e::IncrementRequest::decode(request).unwrap(),
            e2e::IncrementRequest {
                id: "run-7".into(),
                by: 1
            }
        );
        assert_eq!(
            e2e::CounterId::decode(CounterKind::Value.read("run-7"))
                .unwrap()
                .id,
            "run-7"
        );
        assert_eq!(
            CounterKind::Value.increment_path().as_str(),
            "/cloudstate.e2e.Counter/Increment"
        );
        assert_eq!(
            CounterKind::ValueViaRelay.increment_path().as_str(),
            "/cloudstate.e2e.Relay/ToCounter"
        );
        assert_eq!(
            CounterKind::ValueViaRelay.read_path().as_str(),
            "/cloudstate.e2e.Counter/Get"
        );
        let reply = e2e::Value { value: 42 }.encode_to_vec().into();
        assert_eq!(CounterKind::ValueViaRelay.value_of(reply), Some(42));
    }

    #[test]
    fn crdt_requests_are_the_counters_messages() {
        let request = CounterKind::PnCounter.increment("run-7", 1);
        assert_eq!(
            crdts::UpdateCounter::decode(request).unwrap(),
            crdts::UpdateCounter {
                key: "run-7".into(),
                value: 1
            }
        );
        assert_eq!(
            crdts::Get::decode(CounterKind::GCounter.read("run-7"))
                .unwrap()
                .key,
            "run-7"
        );
        assert_eq!(
            CounterKind::GCounter.increment_path().as_str(),
            "/com.example.crdts.CrdtExample/IncrementGCounter"
        );
        assert_eq!(
            CounterKind::PnCounter.read_path().as_str(),
            "/com.example.crdts.CrdtExample/GetPNCounter"
        );
        let reply = crdts::CounterValue { value: 3 }.encode_to_vec().into();
        assert_eq!(CounterKind::GCounter.value_of(reply), Some(3));
    }

    #[test]
    fn replies_that_are_not_values_are_refused() {
        // Field 1 as a string instead of an int64.
        let garbage = Bytes::from_static(&[0x0a, 0x01, b'x']);
        assert_eq!(CounterKind::Value.value_of(garbage.clone()), None);
        assert_eq!(CounterKind::PnCounter.value_of(garbage), None);
        // An empty message is a counter at 0.
        assert_eq!(CounterKind::Value.value_of(Bytes::new()), Some(0));
    }

    #[test]
    fn an_increment_must_answer_a_count_that_includes_it() {
        assert!(increment_reply_ok(Some(1)));
        assert!(increment_reply_ok(Some(10_000)));
        assert!(!increment_reply_ok(Some(0)));
        assert!(!increment_reply_ok(Some(-1)));
        assert!(!increment_reply_ok(None));
    }

    #[test]
    fn preset_values_differ_per_key_and_are_never_zero() {
        assert_eq!(preset_value(0), 1);
        assert_eq!(preset_value(999), 1000);
    }
}
